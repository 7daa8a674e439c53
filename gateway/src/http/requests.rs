//! Every request: an id (the caller's `X-Request-Id` when it is a sane token, else a new
//! one), echoed in the response and carried in a tracing span around the handler and
//! into the MSS calls it makes; one log line when it ends; and its count and latency in
//! `/metrics`, by route pattern (never by raw path, which holds ids).

use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::middleware::Next;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use tracing::Instrument;

use crate::telemetry::request_id::REQUEST_ID;

const HEADER: &str = "x-request-id";

/// Latency buckets, in seconds.
const BUCKETS: [f64; 11] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    method: String,
    route: String,
    status: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    method: String,
    route: String,
}

fn latency_histogram() -> Histogram {
    Histogram::new(BUCKETS)
}

/// Request counts by (method, route, status) and latency by (method, route).
#[derive(Debug)]
pub struct RequestMetrics {
    counts: Family<RequestLabels, Counter>,
    latency: Family<RouteLabels, Histogram, fn() -> Histogram>,
}

impl Default for RequestMetrics {
    fn default() -> Self {
        RequestMetrics {
            counts: Family::default(),
            latency: Family::new_with_constructor(latency_histogram),
        }
    }
}

impl RequestMetrics {
    fn record(&self, method: &str, route: &str, status: u16, seconds: f64) {
        self.counts
            .get_or_create(&RequestLabels {
                method: method.to_owned(),
                route: route.to_owned(),
                status: status.to_string(),
            })
            .inc();
        self.latency
            .get_or_create(&RouteLabels {
                method: method.to_owned(),
                route: route.to_owned(),
            })
            .observe(seconds);
    }

    /// Both families, into the registry a scrape encodes.
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "gateway_http_requests",
            "HTTP requests by method, route pattern and status",
            self.counts.clone(),
        );
        registry.register(
            "gateway_http_request_duration_seconds",
            "Time to answer, by method and route pattern",
            self.latency.clone(),
        );
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
        let mut registry = Registry::default();
        m.register(&mut registry);
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &registry).unwrap();
        assert!(out.contains(
            r#"gateway_http_requests_total{method="POST",route="/v1/otp",status="201"} 1"#
        ));
        assert!(out.contains(
            r#"gateway_http_request_duration_seconds_bucket{le="0.005",method="POST",route="/v1/otp"} 0"#
        ));
        assert!(out.contains(
            r#"gateway_http_request_duration_seconds_bucket{le="0.01",method="POST",route="/v1/otp"} 1"#
        ));
        assert!(out.contains(
            r#"gateway_http_request_duration_seconds_bucket{le="0.25",method="POST",route="/v1/otp"} 2"#
        ));
        assert!(out.contains(
            r#"gateway_http_request_duration_seconds_count{method="POST",route="/v1/otp"} 2"#
        ));
    }
}
