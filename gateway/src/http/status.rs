//! `GET /status`: the operators' page, read-only, behind the admin key (Bearer, or Basic
//! with the key as password so that a browser can ask for it). HTML by default, JSON
//! with `Accept: application/json`. Numbers are masked; nothing secret is shown.

use actix_web::{http::header, web, HttpRequest, HttpResponse};
use serde_json::{json, Value};

use super::error::ApiError;
use crate::domain::Msisdn;
use crate::http::state::AppState;

/// The operators' status page / Trang trạng thái cho vận hành
///
/// Routes with their binds, rates, window use and errors; the outbox; pending
/// signatures and webhooks; the last OTPs and signature requests with masked numbers.
/// HTML (refreshing itself) by default, JSON with `Accept: application/json`.
#[utoipa::path(
    get, path = "/status", tag = "operators", operation_id = "status",
    security(("admin_key" = [])),
    responses(
        (status = 200, description = "The status", content(
            (String = "text/html"),
            (Object = "application/json"),
        )),
        (status = 401, description = "No or wrong admin key; asks for Basic auth",
            content_type = "text/plain", body = String,
            headers(("WWW-Authenticate" = String))),
        (status = 404, response = super::schemas::Problem404),
        (status = 500, response = super::schemas::Problem500),
        (status = 503, response = super::schemas::Problem503),
    ),
)]
pub async fn status(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    match super::admin::authorise(&req, &state) {
        Ok(()) => {}
        Err(ApiError::Unauthorized) => {
            return Ok(HttpResponse::Unauthorized()
                .insert_header((header::WWW_AUTHENTICATE, "Basic realm=\"gateway status\""))
                .insert_header((header::CACHE_CONTROL, "no-store"))
                .content_type("text/plain; charset=utf-8")
                .body("the admin key is needed (Bearer, or Basic with the key as password)\n"));
        }
        Err(e) => return Err(e),
    }
    let body = gather(&state).await?;
    let wants_json = req
        .headers()
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("application/json"));
    let resp = if wants_json {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::Ok()
            .content_type("text/html; charset=utf-8")
            .body(html(&body))
    };
    Ok(resp)
}

async fn gather(state: &AppState) -> Result<Value, ApiError> {
    let routes: Vec<Value> = state
        .binds
        .values()
        .map(|g| {
            let snaps = g.snapshots();
            json!({
                "route": g.route(),
                "bound": g.bound_count(),
                "binds": snaps.len(),
                "submits_per_second": snaps.iter().map(|b| b.submits_per_second).sum::<f64>(),
                "submitted_total": snaps.iter().map(|b| b.submitted_total).sum::<u64>(),
                "window_in_use": snaps.iter().map(|b| b.window_in_use).sum::<usize>(),
                "errors": snaps.iter().map(|b| b.errors_by_status.values().sum::<u64>()).sum::<u64>(),
            })
        })
        .collect();
    let q = crate::telemetry::queues::queues(&state.pool).await?;
    let (recent_otp, recent_signatures) =
        crate::telemetry::queues::recent(&state.pool, 20, 10).await?;
    let rows = |rows: Vec<crate::telemetry::queues::Recent>| -> Vec<Value> {
        rows.into_iter()
            .map(|r| {
                json!({
                    "at": r.created_at,
                    "msisdn": Msisdn::parse(&r.msisdn).map(|m| m.masked()).unwrap_or_else(|_| "?".into()),
                    "carrier": r.carrier,
                    "purpose": r.purpose,
                    "status": r.status,
                })
            })
            .collect()
    };
    Ok(json!({
        "routes": routes,
        "outbox": {
            "queued": q.outbox_queued,
            "oldest_queued_seconds": (q.outbox_oldest_seconds * 10.0).round() / 10.0,
            "failed_last_hour": q.outbox_failed_last_hour,
        },
        "signature_requests_pending": q.signatures_pending,
        "webhooks_pending": q.webhooks_pending,
        "recent_otp": rows(recent_otp),
        "recent_signatures": rows(recent_signatures),
    }))
}

fn esc(v: &Value) -> String {
    let s = match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn table(out: &mut String, columns: &[&str], rows: &[Value]) {
    out.push_str("<table><tr>");
    for c in columns {
        out.push_str(&format!("<th>{c}</th>"));
    }
    out.push_str("</tr>");
    for r in rows {
        out.push_str("<tr>");
        for c in columns {
            out.push_str(&format!("<td>{}</td>", esc(&r[*c])));
        }
        out.push_str("</tr>");
    }
    out.push_str("</table>");
}

fn html(b: &Value) -> String {
    let mut out = String::from(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta http-equiv=\"refresh\" content=\"10\"><title>Gateway status</title>\
         <style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse;margin-bottom:1.5em}\
         td,th{border:1px solid #ccc;padding:4px 8px;text-align:left}th{background:#f3f3f3}</style>\
         </head><body><h1>Gateway status</h1><p>This instance; refreshes every 10 s.</p><h2>Carriers</h2>",
    );
    table(
        &mut out,
        &[
            "route",
            "bound",
            "binds",
            "submits_per_second",
            "submitted_total",
            "window_in_use",
            "errors",
        ],
        b["routes"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default(),
    );
    out.push_str(&format!(
        "<h2>Queues</h2><p>Outbox: {} queued (oldest {} s), {} failed in the last hour. \
         Signature requests pending: {}. Webhooks pending: {}.</p>",
        esc(&b["outbox"]["queued"]),
        esc(&b["outbox"]["oldest_queued_seconds"]),
        esc(&b["outbox"]["failed_last_hour"]),
        esc(&b["signature_requests_pending"]),
        esc(&b["webhooks_pending"]),
    ));
    out.push_str("<h2>Recent OTPs</h2>");
    let cols = ["at", "msisdn", "carrier", "purpose", "status"];
    table(
        &mut out,
        &cols,
        b["recent_otp"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default(),
    );
    out.push_str("<h2>Recent signature requests</h2>");
    table(
        &mut out,
        &cols,
        b["recent_signatures"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default(),
    );
    out.push_str("</body></html>\n");
    out
}
