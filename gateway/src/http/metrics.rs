//! Operator views: `GET /metrics` (Prometheus text) and `GET /v1/health/carriers`
//! (JSON), both from this instance's binds plus a few queue depths from Postgres.

use std::sync::atomic::{AtomicU64, Ordering};

use actix_web::{web, HttpResponse};
use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use serde_json::json;

use crate::http::error::ApiError;
use crate::http::state::AppState;

/// Each SMPP route's binds: state, window, rates and errors.
#[utoipa::path(
    get, path = "/v1/health/carriers", tag = "operators", operation_id = "carrierBinds",
    summary = "SMPP binds per route / Kết nối SMPP tới từng nhà mạng",
    responses((status = 200, description = "Every route's binds", body = Object)),
)]
pub async fn carriers(state: web::Data<AppState>) -> HttpResponse {
    let routes: Vec<_> = state
        .binds
        .values()
        .map(|group| {
            json!({
                "route": group.route(),
                "bound_binds": group.bound_count(),
                // The carrier's limits per brandname (parts per second, this instance).
                "sender_tps": state
                    .settings
                    .smpp
                    .get(group.route())
                    .map(|r| r.sender_tps.clone())
                    .unwrap_or_default(),
                "binds": group.snapshots(),
            })
        })
        .collect();
    HttpResponse::Ok().json(json!({ "routes": routes }))
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BindLabels {
    route: String,
    bind: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BindStatusLabels {
    route: String,
    bind: String,
    status: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct GuardLabels {
    guard: &'static str,
}

type Ratio = Gauge<f64, AtomicU64>;

/// What `/metrics` answers with (OpenMetrics text, which Prometheus reads).
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Prometheus metrics: requests by route, the OTP funnel and signature outcomes per
/// carrier, SMPP binds, the outbox's depth and oldest age, the webhook backlog. Encoded
/// by prometheus-client from a registry made for the scrape: the counters this instance
/// keeps, and the binds' and queues' state read now.
#[utoipa::path(
    get, path = "/metrics", tag = "operators", operation_id = "metrics",
    summary = "Prometheus metrics / Số liệu giám sát",
    responses((status = 200, description = "OpenMetrics text 1.0.0 (Prometheus reads it)",
        content_type = "application/openmetrics-text; version=1.0.0; charset=utf-8", body = String)),
)]
pub async fn metrics(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let mut registry = Registry::default();
    let up = Family::<BindLabels, Gauge>::default();
    let binds = Family::<BindLabels, Counter>::default();
    let window = Family::<BindLabels, Gauge>::default();
    let in_use = Family::<BindLabels, Gauge>::default();
    let submits = Family::<BindLabels, Counter>::default();
    let rate = Family::<BindLabels, Ratio>::default();
    let receipts = Family::<BindLabels, Counter>::default();
    let latency = Family::<BindLabels, Ratio>::default();
    let throttled = Family::<BindLabels, Ratio>::default();
    let errors = Family::<BindStatusLabels, Counter>::default();
    for group in state.binds.values() {
        for (i, b) in group.snapshots().iter().enumerate() {
            let l = BindLabels {
                route: b.route.clone(),
                bind: (i + 1).to_string(),
            };
            up.get_or_create(&l).set(i64::from(u8::from(b.bound)));
            binds.get_or_create(&l).inc_by(b.binds_total);
            window.get_or_create(&l).set(b.window_size as i64);
            in_use.get_or_create(&l).set(b.window_in_use as i64);
            submits.get_or_create(&l).inc_by(b.submitted_total);
            rate.get_or_create(&l).set(b.submits_per_second);
            receipts.get_or_create(&l).inc_by(b.receipts_total);
            if let Some(ms) = b.last_receipt_latency_ms {
                latency.get_or_create(&l).set(ms as f64 / 1000.0);
            }
            throttled
                .get_or_create(&l)
                .set(b.throttled_for_ms as f64 / 1000.0);
            for (status, n) in &b.errors_by_status {
                errors
                    .get_or_create(&BindStatusLabels {
                        route: l.route.clone(),
                        bind: l.bind.clone(),
                        status: status.clone(),
                    })
                    .inc_by(*n);
            }
        }
    }
    registry.register(
        "gateway_smpp_bind_up",
        "1 when the SMPP session is bound",
        up,
    );
    registry.register(
        "gateway_smpp_binds",
        "Successful binds of the session since start (a flapping SMSC makes it climb)",
        binds,
    );
    registry.register(
        "gateway_smpp_window_size",
        "Most submit_sm outstanding on the bind",
        window,
    );
    registry.register(
        "gateway_smpp_window_in_use",
        "submit_sm awaiting a response",
        in_use,
    );
    registry.register(
        "gateway_smpp_submits",
        "submit_sm accepted by the SMSC",
        submits,
    );
    registry.register(
        "gateway_smpp_submits_per_second",
        "Accepted submits per second over the last 10 s",
        rate,
    );
    registry.register(
        "gateway_smpp_receipts",
        "Delivery receipts received",
        receipts,
    );
    registry.register(
        "gateway_smpp_last_receipt_latency_seconds",
        "Submit to receipt, for the latest receipt",
        latency,
    );
    registry.register(
        "gateway_smpp_throttled_seconds",
        "Remaining pause after the SMSC throttled",
        throttled,
    );
    registry.register(
        "gateway_smpp_submit_errors",
        "Failed submits by outcome (command_status)",
        errors,
    );
    let guards = Family::<GuardLabels, Counter>::default();
    for (guard, n) in [
        ("sequential", &state.otp.guard_counters().sequential),
        ("conversion", &state.otp.guard_counters().conversion),
    ] {
        guards
            .get_or_create(&GuardLabels { guard })
            .inc_by(n.load(Ordering::Relaxed));
    }
    registry.register(
        "gateway_guard_blocked",
        "Sends refused by the SMS pumping guards",
        guards,
    );
    state.request_metrics.register(&mut registry);
    state.funnel.register(&mut registry);
    if let Ok(q) = crate::telemetry::queues::queues(&state.pool).await {
        let gauge = |v: i64| {
            let g = Gauge::<i64>::default();
            g.set(v);
            g
        };
        registry.register(
            "gateway_outbox_queued",
            "SMS waiting in the outbox",
            gauge(q.outbox_queued),
        );
        let oldest = Ratio::default();
        oldest.set(q.outbox_oldest_seconds);
        registry.register(
            "gateway_outbox_oldest_queued_seconds",
            "Age of the oldest SMS waiting in the outbox (0 when empty)",
            oldest,
        );
        registry.register(
            "gateway_signature_requests_pending",
            "SIM signature requests awaiting a result",
            gauge(q.signatures_pending),
        );
        registry.register(
            "gateway_webhooks_pending",
            "Webhook deliveries not yet delivered",
            gauge(q.webhooks_pending),
        );
    }
    let mut out = String::new();
    encode(&mut out, &registry)
        .map_err(|e| ApiError::Internal(anyhow::anyhow!("encoding the metrics: {e}")))?;
    Ok(HttpResponse::Ok().content_type(CONTENT_TYPE).body(out))
}
