//! What a run measured: a latency histogram per step (HdrHistogram, microseconds), errors
//! by kind, and a per-second series for the plot. Workers record into shards of their
//! own and the shards are merged at the end, losslessly.

use std::collections::BTreeMap;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

/// Highest latency recorded exactly: ten minutes, in microseconds.
const MAX_MICROS: u64 = 600_000_000;

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_MICROS, 3).expect("valid histogram bounds")
}

/// One second of the run: completed flows, errors, and the latency of the step that
/// the plot shows.
#[derive(Debug, Clone)]
struct Second {
    ok: u64,
    errors: u64,
    latency: Histogram<u64>,
}

impl Default for Second {
    fn default() -> Self {
        Second {
            ok: 0,
            errors: 0,
            // Two significant digits are plenty for a plot and keep a second small.
            latency: Histogram::new_with_bounds(1, MAX_MICROS, 2).expect("valid bounds"),
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct Recorder {
    steps: BTreeMap<String, Histogram<u64>>,
    errors: BTreeMap<String, u64>,
    ok: u64,
    series: Vec<Second>,
}

impl Recorder {
    /// A step's latency, counted in the summary only when `measured` (after warm-up).
    pub fn step(&mut self, step: &str, latency: Duration, measured: bool) {
        if !measured {
            return;
        }
        let micros = (latency.as_micros() as u64).clamp(1, MAX_MICROS);
        self.steps
            .entry(step.to_owned())
            .or_insert_with(histogram)
            .record(micros)
            .expect("clamped into range");
    }

    /// A whole flow that succeeded, ending `second` seconds into the run, with the
    /// latency the plot shows.
    pub fn ok(&mut self, second: usize, latency: Duration, measured: bool) {
        let s = self.second(second);
        s.ok += 1;
        let micros = (latency.as_micros() as u64).clamp(1, MAX_MICROS);
        s.latency.record(micros).expect("clamped into range");
        if measured {
            self.ok += 1;
        }
    }

    /// A flow that failed, by kind (`http 503`, `timeout`, `wrong code`, …).
    pub fn error(&mut self, second: usize, kind: &str, measured: bool) {
        self.second(second).errors += 1;
        if measured {
            *self.errors.entry(kind.to_owned()).or_insert(0) += 1;
        }
    }

    /// Failures found after the run (receipts that never came): the summary only.
    pub fn late_errors(&mut self, kind: &str, n: u64) {
        if n > 0 {
            *self.errors.entry(kind.to_owned()).or_insert(0) += n;
        }
    }

    fn second(&mut self, second: usize) -> &mut Second {
        if self.series.len() <= second {
            self.series.resize_with(second + 1, Second::default);
        }
        &mut self.series[second]
    }

    /// Adds another recorder's counts to this one.
    pub fn merge(&mut self, other: &Recorder) {
        for (step, h) in &other.steps {
            self.steps
                .entry(step.clone())
                .or_insert_with(histogram)
                .add(h)
                .expect("same bounds");
        }
        for (kind, n) in &other.errors {
            *self.errors.entry(kind.clone()).or_insert(0) += n;
        }
        self.ok += other.ok;
        for (i, s) in other.series.iter().enumerate() {
            let mine = self.second(i);
            mine.ok += s.ok;
            mine.errors += s.errors;
            mine.latency.add(&s.latency).expect("same bounds");
        }
    }

    pub fn ok_count(&self) -> u64 {
        self.ok
    }

    #[cfg(test)]
    pub fn error_count(&self) -> u64 {
        self.errors.values().sum()
    }

    #[cfg(test)]
    pub fn latency(&self, step: &str) -> Option<Latency> {
        self.steps.get(step).map(Latency::of)
    }

    pub fn steps(&self) -> BTreeMap<String, Latency> {
        self.steps
            .iter()
            .map(|(k, h)| (k.clone(), Latency::of(h)))
            .collect()
    }

    pub fn errors(&self) -> &BTreeMap<String, u64> {
        &self.errors
    }

    pub fn series(&self) -> Vec<SeriesPoint> {
        self.series
            .iter()
            .enumerate()
            .map(|(t, s)| SeriesPoint {
                t: t as u64,
                ok: s.ok,
                errors: s.errors,
                p50_ms: ms(s.latency.value_at_quantile(0.5)),
                p99_ms: ms(s.latency.value_at_quantile(0.99)),
            })
            .collect()
    }
}

fn ms(micros: u64) -> f64 {
    (micros as f64 / 10.0).round() / 100.0
}

/// Percentiles of one step, in milliseconds.
#[derive(Debug, Clone, Copy, Serialize, PartialEq)]
pub struct Latency {
    pub count: u64,
    pub mean: f64,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
}

impl Latency {
    fn of(h: &Histogram<u64>) -> Latency {
        Latency {
            count: h.len(),
            mean: (h.mean() / 10.0).round() / 100.0,
            p50: ms(h.value_at_quantile(0.5)),
            p90: ms(h.value_at_quantile(0.9)),
            p99: ms(h.value_at_quantile(0.99)),
            p999: ms(h.value_at_quantile(0.999)),
            max: ms(h.max()),
        }
    }
}

#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct SeriesPoint {
    /// Seconds since the start (warm-up included).
    pub t: u64,
    pub ok: u64,
    pub errors: u64,
    pub p50_ms: f64,
    pub p99_ms: f64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_of_a_known_distribution() {
        let mut r = Recorder::default();
        for ms in 1..=1000u64 {
            r.step("x", Duration::from_millis(ms), true);
        }
        let l = r.latency("x").unwrap();
        assert_eq!(l.count, 1000);
        // Three significant digits: within 0.1 % of the exact values.
        for (got, want) in [
            (l.p50, 500.0),
            (l.p90, 900.0),
            (l.p99, 990.0),
            (l.max, 1000.0),
        ] {
            assert!((got - want).abs() <= want * 0.001 + 0.01, "{got} vs {want}");
        }
        assert!((l.mean - 500.5).abs() < 0.6, "{}", l.mean);
    }

    #[test]
    fn merging_shards_equals_recording_in_one() {
        let mut one = Recorder::default();
        let mut shards = vec![Recorder::default(); 4];
        for i in 0..10_000u64 {
            let latency = Duration::from_micros(100 + (i * 7919) % 50_000);
            let second = (i / 1000) as usize;
            let measured = i >= 2_000;
            one.step("POST /v1/otp", latency, measured);
            shards[(i % 4) as usize].step("POST /v1/otp", latency, measured);
            if i % 97 == 0 {
                one.error(second, "http 503", measured);
                shards[(i % 4) as usize].error(second, "http 503", measured);
            } else {
                one.ok(second, latency, measured);
                shards[(i % 4) as usize].ok(second, latency, measured);
            }
        }
        let mut merged = Recorder::default();
        for s in &shards {
            merged.merge(s);
        }
        assert_eq!(merged.steps(), one.steps());
        assert_eq!(merged.errors(), one.errors());
        assert_eq!(merged.ok_count(), one.ok_count());
        let (a, b) = (merged.series(), one.series());
        assert_eq!(a.len(), 10);
        for (x, y) in a.iter().zip(&b) {
            assert_eq!(
                (x.ok, x.errors, x.p50_ms, x.p99_ms),
                (y.ok, y.errors, y.p50_ms, y.p99_ms)
            );
        }
    }

    #[test]
    fn warm_up_is_left_out_of_the_summary_but_not_the_series() {
        let mut r = Recorder::default();
        r.step("x", Duration::from_millis(5), false);
        r.ok(0, Duration::from_millis(5), false);
        r.error(0, "timeout", false);
        assert!(r.latency("x").is_none());
        assert_eq!((r.ok_count(), r.error_count()), (0, 0));
        assert_eq!((r.series()[0].ok, r.series()[0].errors), (1, 1));
    }
}
