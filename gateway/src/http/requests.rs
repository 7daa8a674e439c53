//! Every request: an id (the caller's `X-Request-Id` when it is a sane token, else a new
//! one), echoed in the response and carried in a tracing span around the handler and
//! into the MSS calls it makes; one log line when it ends; and its count and latency in
//! `/metrics`, by route pattern (never by raw path, which holds ids).

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::middleware::Next;
use tracing::Instrument;

use crate::telemetry::request_id::REQUEST_ID;

const HEADER: &str = "x-request-id";

/// Latency buckets, in seconds.
const BUCKETS: [f64; 11] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

#[derive(Debug, Default)]
struct Histogram {
    /// Cumulative counts per bucket (`le`), then +Inf.
    buckets: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

/// Request counts by (method, route, status) and latency by (method, route).
#[derive(Debug, Default)]
pub struct RequestMetrics {
    counts: Mutex<BTreeMap<(String, String, u16), u64>>,
    latency: Mutex<BTreeMap<(String, String), Histogram>>,
}

impl RequestMetrics {
    fn record(&self, method: &str, route: &str, status: u16, seconds: f64) {
        *self
            .counts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry((method.to_owned(), route.to_owned(), status))
            .or_insert(0) += 1;
        let mut latency = self.latency.lock().unwrap_or_else(|p| p.into_inner());
        let h = latency
            .entry((method.to_owned(), route.to_owned()))
            .or_default();
        for (i, le) in BUCKETS.iter().enumerate() {
            if seconds <= *le {
                h.buckets[i] += 1;
            }
        }
        h.count += 1;
        h.sum += seconds;
    }

    /// The Prometheus text of both families.
    pub fn render(&self, out: &mut String) {
        use std::fmt::Write;
        let esc = |v: &str| v.replace('\\', "\\\\").replace('"', "\\\"");
        let _ = writeln!(
            out,
            "# HELP gateway_http_requests_total HTTP requests by method, route pattern and status.\n# TYPE gateway_http_requests_total counter"
        );
        for ((method, route, status), n) in
            self.counts.lock().unwrap_or_else(|p| p.into_inner()).iter()
        {
            let _ = writeln!(
                out,
                "gateway_http_requests_total{{method=\"{}\",route=\"{}\",status=\"{status}\"}} {n}",
                esc(method),
                esc(route)
            );
        }
        let _ = writeln!(
            out,
            "# HELP gateway_http_request_duration_seconds Time to answer, by method and route pattern.\n# TYPE gateway_http_request_duration_seconds histogram"
        );
        for ((method, route), h) in self
            .latency
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
        {
            let labels = format!("method=\"{}\",route=\"{}\"", esc(method), esc(route));
            for (i, le) in BUCKETS.iter().enumerate() {
                let _ = writeln!(
                    out,
                    "gateway_http_request_duration_seconds_bucket{{{labels},le=\"{le}\"}} {}",
                    h.buckets[i]
                );
            }
            let _ = writeln!(
                out,
                "gateway_http_request_duration_seconds_bucket{{{labels},le=\"+Inf\"}} {}\n\
                 gateway_http_request_duration_seconds_sum{{{labels}}} {}\n\
                 gateway_http_request_duration_seconds_count{{{labels}}} {}",
                h.count, h.sum, h.count
            );
        }
    }
}

/// A caller's id is kept when it is 1 to 64 characters of letters, digits and `-_.:`.
fn sane(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b))
}

pub async fn middleware(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let started = Instant::now();
    let id = req
        .headers()
        .get(HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|v| sane(v))
        .map(str::to_owned)
        .unwrap_or_else(|| uuid::Uuid::now_v7().to_string());
    let method = req.method().to_string();
    // The pattern (`/v1/otp/{id}`), never the raw path; unmatched paths are one series.
    let route = req
        .match_pattern()
        .unwrap_or_else(|| "unmatched".to_owned());
    let metrics = req
        .app_data::<actix_web::web::Data<RequestMetrics>>()
        .cloned();
    let span = tracing::info_span!("request", request_id = %id, method = %method, route = %route);
    let result = REQUEST_ID
        .scope(id.clone(), next.call(req).instrument(span.clone()))
        .await;
    let seconds = started.elapsed().as_secs_f64();
    let status = match &result {
        Ok(resp) => resp.status().as_u16(),
        Err(e) => e.as_response_error().status_code().as_u16(),
    };
    if let Some(metrics) = metrics {
        metrics.record(&method, &route, status, seconds);
    }
    if route != "/health" && route != "/healthz" && route != "/readyz" && route != "/metrics" {
        span.in_scope(|| {
            tracing::info!(
                status,
                ms = (seconds * 1000.0 * 10.0).round() / 10.0,
                "request"
            )
        });
    }
    let mut resp = result?;
    if let Ok(value) = HeaderValue::from_str(&id) {
        resp.headers_mut()
            .insert(HeaderName::from_static(HEADER), value);
    }
    Ok(resp)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_from_callers_are_kept_only_when_sane() {
        assert!(sane("abc-123_x.y:z"));
        assert!(!sane(""));
        assert!(!sane(&"a".repeat(65)));
        assert!(!sane("a b"));
        assert!(!sane("a\nb"));
    }

    #[test]
    fn histograms_are_cumulative() {
        let m = RequestMetrics::default();
        m.record("POST", "/v1/otp", 201, 0.007);
        m.record("POST", "/v1/otp", 429, 0.2);
        let mut out = String::new();
        m.render(&mut out);
        assert!(out.contains(
            r#"gateway_http_requests_total{method="POST",route="/v1/otp",status="201"} 1"#
        ));
        assert!(out.contains(
            r#"gateway_http_request_duration_seconds_bucket{method="POST",route="/v1/otp",le="0.005"} 0"#
        ));
        assert!(out.contains(
            r#"gateway_http_request_duration_seconds_bucket{method="POST",route="/v1/otp",le="0.01"} 1"#
        ));
        assert!(out.contains(
            r#"gateway_http_request_duration_seconds_bucket{method="POST",route="/v1/otp",le="0.25"} 2"#
        ));
        assert!(out.contains(
            r#"gateway_http_request_duration_seconds_count{method="POST",route="/v1/otp"} 2"#
        ));
    }
}
