//! The run over time as an SVG: completed flows and errors per second on top, latency
//! (p50 and p99 of each second) below. Plain SVG written directly: two line charts do
//! not need a plotting library and its font stack, and the file opens in any browser.

use std::fmt::Write;

use crate::stats::SeriesPoint;

const WIDTH: f64 = 900.0;
const PANEL: f64 = 260.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 20.0;
const TOP: f64 = 64.0;
const GAP: f64 = 60.0;

/// One panel's lines: (label, colour, values per second).
type Lines<'a> = [(&'a str, &'a str, Vec<f64>)];

pub fn svg(title: &str, series: &[SeriesPoint], warmup_seconds: u64) -> String {
    let height = TOP + 2.0 * PANEL + GAP + 50.0;
    let mut out = String::new();
    let _ = writeln!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" viewBox="0 0 {WIDTH} {height}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(out, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        out,
        r#"<text x="{LEFT}" y="22" font-size="15" font-weight="bold">{}</text>"#,
        escape(title)
    );
    let seconds = series.len().max(2) as f64 - 1.0;
    panel(
        &mut out,
        TOP,
        "per second",
        &[
            (
                "completed",
                "#1f77b4",
                series.iter().map(|p| p.ok as f64).collect(),
            ),
            (
                "errors",
                "#d62728",
                series.iter().map(|p| p.errors as f64).collect(),
            ),
        ],
        seconds,
        warmup_seconds,
    );
    panel(
        &mut out,
        TOP + PANEL + GAP,
        "latency (ms)",
        &[
            ("p50", "#2ca02c", series.iter().map(|p| p.p50_ms).collect()),
            ("p99", "#ff7f0e", series.iter().map(|p| p.p99_ms).collect()),
        ],
        seconds,
        warmup_seconds,
    );
    let _ = writeln!(
        out,
        r#"<text x="{}" y="{}" text-anchor="middle">seconds since start (shaded: warm-up, not in the summary)</text>"#,
        LEFT + (WIDTH - LEFT - RIGHT) / 2.0,
        height - 12.0
    );
    out.push_str("</svg>\n");
    out
}

fn panel(out: &mut String, top: f64, label: &str, lines: &Lines, seconds: f64, warmup: u64) {
    let plot_w = WIDTH - LEFT - RIGHT;
    let max = lines
        .iter()
        .flat_map(|(_, _, v)| v.iter().copied())
        .fold(0.0f64, f64::max);
    let max = nice_ceiling(max);
    let x = |t: f64| LEFT + t / seconds * plot_w;
    let y = |v: f64| top + PANEL - v / max * PANEL;
    if warmup > 0 {
        let _ = writeln!(
            out,
            r##"<rect x="{LEFT}" y="{top}" width="{:.1}" height="{PANEL}" fill="#eeeeee"/>"##,
            x(warmup as f64) - LEFT
        );
    }
    let _ = writeln!(
        out,
        r##"<rect x="{LEFT}" y="{top}" width="{plot_w}" height="{PANEL}" fill="none" stroke="#999"/>"##
    );
    for i in 0..=4 {
        let v = max * i as f64 / 4.0;
        let _ = writeln!(
            out,
            r##"<line x1="{LEFT}" x2="{}" y1="{y:.1}" y2="{y:.1}" stroke="#ddd"/><text x="{}" y="{:.1}" text-anchor="end">{}</text>"##,
            LEFT + plot_w,
            LEFT - 6.0,
            y(v) + 4.0,
            label_number(v),
            y = y(v),
        );
    }
    // Whole seconds, at most about ten labels.
    let step = ((seconds / 10.0).ceil() as u64).max(1);
    for t in (0..=seconds as u64).step_by(step as usize) {
        let t = t as f64;
        let _ = writeln!(
            out,
            r#"<text x="{:.1}" y="{}" text-anchor="middle">{}</text>"#,
            x(t),
            top + PANEL + 16.0,
            t.round()
        );
    }
    let _ = writeln!(
        out,
        r#"<text x="{LEFT}" y="{}" font-weight="bold">{}</text>"#,
        top - 8.0,
        escape(label)
    );
    for (n, (name, colour, values)) in lines.iter().enumerate() {
        let points: Vec<String> = values
            .iter()
            .enumerate()
            .map(|(t, v)| format!("{:.1},{:.1}", x(t as f64), y(*v)))
            .collect();
        let _ = writeln!(
            out,
            r#"<polyline fill="none" stroke="{colour}" stroke-width="1.6" points="{}"/>"#,
            points.join(" ")
        );
        let lx = LEFT + plot_w - 200.0 + n as f64 * 100.0;
        let _ = writeln!(
            out,
            r#"<rect x="{lx}" y="{}" width="12" height="3" fill="{colour}"/><text x="{}" y="{}">{}</text>"#,
            top - 13.0,
            lx + 16.0,
            top - 8.0,
            escape(name)
        );
    }
}

/// The smallest 1, 2 or 5 × 10^k at or above `v` (at least 1).
fn nice_ceiling(v: f64) -> f64 {
    if v <= 1.0 {
        return 1.0;
    }
    let magnitude = 10f64.powf(v.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * magnitude)
        .find(|c| *c >= v)
        .unwrap_or(10.0 * magnitude)
}

fn label_number(v: f64) -> String {
    if v >= 10_000.0 {
        format!("{}k", (v / 1000.0).round())
    } else if v.fract() == 0.0 {
        format!("{v}")
    } else {
        format!("{v:.1}")
    }
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nice_ceilings() {
        assert_eq!(nice_ceiling(0.0), 1.0);
        assert_eq!(nice_ceiling(3.2), 5.0);
        assert_eq!(nice_ceiling(7.0), 10.0);
        assert_eq!(nice_ceiling(1234.0), 2000.0);
        assert_eq!(nice_ceiling(2000.0), 2000.0);
    }

    #[test]
    fn the_svg_is_well_formed_and_has_every_line() {
        let series: Vec<SeriesPoint> = (0..30)
            .map(|t| SeriesPoint {
                t,
                ok: 1000 + t * 10,
                errors: u64::from(t == 7),
                p50_ms: 2.0,
                p99_ms: 9.5,
            })
            .collect();
        let svg = svg("otp-send <1000/s> & more", &series, 5);
        let mut reader = quick_xml::Reader::from_str(&svg);
        let mut polylines = 0;
        loop {
            match reader.read_event().expect("well-formed XML") {
                quick_xml::events::Event::Eof => break,
                quick_xml::events::Event::Empty(e) if e.name().as_ref() == b"polyline" => {
                    polylines += 1
                }
                _ => {}
            }
        }
        assert_eq!(polylines, 4);
        assert!(svg.contains("otp-send &lt;1000/s&gt; &amp; more"));
    }
}
