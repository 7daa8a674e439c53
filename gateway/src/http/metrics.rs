//! Operator views: `GET /metrics` (Prometheus text) and `GET /v1/health/carriers`
//! (JSON), both from this instance's binds plus a few queue depths from Postgres.

use std::fmt::Write;

use actix_web::{web, HttpResponse};
use serde_json::json;

use crate::http::state::AppState;

fn escape_label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

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
                "binds": group.snapshots(),
            })
        })
        .collect();
    HttpResponse::Ok().json(json!({ "routes": routes }))
}

/// Prometheus metrics: requests by route, the OTP funnel and signature outcomes per
/// carrier, SMPP binds, the outbox's depth and oldest age, the webhook backlog.
#[utoipa::path(
    get, path = "/metrics", tag = "operators", operation_id = "metrics",
    summary = "Prometheus metrics / Số liệu giám sát",
    responses((status = 200, description = "Prometheus text format 0.0.4",
        content_type = "text/plain; version=0.0.4", body = String)),
)]
pub async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    let mut out = String::new();
    let mut lines = Vec::new();
    for group in state.binds.values() {
        for (i, b) in group.snapshots().iter().enumerate() {
            let l = format!("route=\"{}\",bind=\"{}\"", escape_label(&b.route), i + 1);
            lines.push((
                "gateway_smpp_bind_up",
                l.clone(),
                f64::from(u8::from(b.bound)),
            ));
            lines.push(("gateway_smpp_binds_total", l.clone(), b.binds_total as f64));
            lines.push(("gateway_smpp_window_size", l.clone(), b.window_size as f64));
            lines.push((
                "gateway_smpp_window_in_use",
                l.clone(),
                b.window_in_use as f64,
            ));
            lines.push((
                "gateway_smpp_submits_total",
                l.clone(),
                b.submitted_total as f64,
            ));
            lines.push((
                "gateway_smpp_submits_per_second",
                l.clone(),
                b.submits_per_second,
            ));
            lines.push((
                "gateway_smpp_receipts_total",
                l.clone(),
                b.receipts_total as f64,
            ));
            if let Some(ms) = b.last_receipt_latency_ms {
                lines.push((
                    "gateway_smpp_last_receipt_latency_seconds",
                    l.clone(),
                    ms as f64 / 1000.0,
                ));
            }
            lines.push((
                "gateway_smpp_throttled_seconds",
                l.clone(),
                b.throttled_for_ms as f64 / 1000.0,
            ));
            for (status, n) in &b.errors_by_status {
                lines.push((
                    "gateway_smpp_submit_errors_total",
                    format!("{l},status=\"{}\"", escape_label(status)),
                    *n as f64,
                ));
            }
        }
    }
    let families: [(&str, &str, &str); 10] = [
        (
            "gateway_smpp_bind_up",
            "gauge",
            "1 when the SMPP session is bound.",
        ),
        (
            "gateway_smpp_binds_total",
            "counter",
            "Successful binds of the session since start (a flapping SMSC makes it climb).",
        ),
        (
            "gateway_smpp_window_size",
            "gauge",
            "Most submit_sm outstanding on the bind.",
        ),
        (
            "gateway_smpp_window_in_use",
            "gauge",
            "submit_sm awaiting a response.",
        ),
        (
            "gateway_smpp_submits_total",
            "counter",
            "submit_sm accepted by the SMSC.",
        ),
        (
            "gateway_smpp_submits_per_second",
            "gauge",
            "Accepted submits per second over the last 10 s.",
        ),
        (
            "gateway_smpp_receipts_total",
            "counter",
            "Delivery receipts received.",
        ),
        (
            "gateway_smpp_last_receipt_latency_seconds",
            "gauge",
            "Submit to receipt, for the latest receipt.",
        ),
        (
            "gateway_smpp_throttled_seconds",
            "gauge",
            "Remaining pause after the SMSC throttled.",
        ),
        (
            "gateway_smpp_submit_errors_total",
            "counter",
            "Failed submits by outcome (command_status).",
        ),
    ];
    let mut emitted = std::collections::BTreeSet::new();
    for (name, labels, value) in &lines {
        if emitted.insert(*name) {
            if let Some((n, kind, help)) = families.iter().find(|(n, _, _)| n == name) {
                let _ = writeln!(out, "# HELP {n} {help}\n# TYPE {n} {kind}");
            }
        }
        let _ = writeln!(out, "{name}{{{labels}}} {value}");
    }
    {
        use std::sync::atomic::Ordering;
        let _ = writeln!(
            out,
            "# HELP gateway_guard_blocked_total Sends refused by the SMS pumping guards.\n# TYPE gateway_guard_blocked_total counter"
        );
        for (guard, n) in [
            ("sequential", &state.otp.guard_counters().sequential),
            ("conversion", &state.otp.guard_counters().conversion),
        ] {
            let _ = writeln!(
                out,
                "gateway_guard_blocked_total{{guard=\"{guard}\"}} {}",
                n.load(Ordering::Relaxed)
            );
        }
    }
    state.request_metrics.render(&mut out);
    state.funnel.render(&mut out);
    if let Ok(q) = queues(&state).await {
        let gauges = [
            (
                "gateway_outbox_queued",
                "SMS waiting in the outbox.",
                q.outbox_queued as f64,
            ),
            (
                "gateway_outbox_oldest_queued_seconds",
                "Age of the oldest SMS waiting in the outbox (0 when empty).",
                q.outbox_oldest_seconds,
            ),
            (
                "gateway_signature_requests_pending",
                "SIM signature requests awaiting a result.",
                q.signatures_pending as f64,
            ),
            (
                "gateway_webhooks_pending",
                "Webhook deliveries not yet delivered.",
                q.webhooks_pending as f64,
            ),
        ];
        for (name, help, value) in gauges {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}"
            );
        }
    }
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(out)
}

/// The queues the operators watch, shared by every instance (from Postgres).
pub struct Queues {
    pub outbox_queued: i64,
    pub outbox_oldest_seconds: f64,
    /// SMS that failed for good in the last hour.
    pub outbox_failed_last_hour: i64,
    pub signatures_pending: i64,
    pub webhooks_pending: i64,
}

/// All the queue figures in one statement (for `/metrics` and `/status`).
pub async fn queues(state: &AppState) -> Result<Queues, crate::http::error::ApiError> {
    use crate::db::Cached;
    let db = state.pool.get().await?;
    let row = db
        .query_one_cached(
            "SELECT (SELECT count(*) FROM sms_outbox WHERE status = 'queued'),
                    (SELECT coalesce(EXTRACT(EPOCH FROM now() - min(created_at)), 0)::float8
                       FROM sms_outbox WHERE status = 'queued'),
                    (SELECT count(*) FROM sms_outbox WHERE status = 'failed'
                       AND created_at > now() - interval '1 hour'),
                    (SELECT count(*) FROM signature_requests WHERE status = 'pending'),
                    (SELECT count(*) FROM webhook_deliveries WHERE status = 'pending')",
            &[],
        )
        .await?;
    Ok(Queues {
        outbox_queued: row.get(0),
        outbox_oldest_seconds: row.get(1),
        outbox_failed_last_hour: row.get(2),
        signatures_pending: row.get(3),
        webhooks_pending: row.get(4),
    })
}
