//! `GET /status`: the operators' page, read-only, behind the admin key (Bearer, or Basic
//! with the key as password so that a browser can ask for it). HTML by default, JSON
//! with `Accept: application/json`. Numbers are masked; nothing secret is shown.

use actix_web::{http::header, web, HttpRequest, HttpResponse};
use askama::Template;
use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;

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
        let html = Page { status: &body }
            .render()
            .map_err(|e| ApiError::Internal(anyhow::anyhow!("status page: {e}")))?;
        HttpResponse::Ok()
            .content_type("text/html; charset=utf-8")
            .body(html)
    };
    Ok(resp)
}

/// What the page shows, as JSON and as HTML.
#[derive(Debug, Serialize)]
struct Status {
    routes: Vec<RouteStatus>,
    outbox: OutboxStatus,
    signature_requests_pending: i64,
    webhooks_pending: i64,
    recent_otp: Vec<Recent>,
    recent_signatures: Vec<Recent>,
}

#[derive(Debug, Serialize)]
struct RouteStatus {
    route: String,
    bound: usize,
    binds: usize,
    submits_per_second: f64,
    submitted_total: u64,
    window_in_use: usize,
    errors: u64,
}

#[derive(Debug, Serialize)]
struct OutboxStatus {
    queued: i64,
    oldest_queued_seconds: f64,
    failed_last_hour: i64,
}

/// A recent verification or signature request, its number masked.
#[derive(Debug, Serialize)]
struct Recent {
    at: DateTime<Utc>,
    msisdn: String,
    carrier: String,
    purpose: String,
    status: String,
}

impl Recent {
    /// As the JSON writes it.
    fn at_rfc3339(&self) -> String {
        self.at.to_rfc3339_opts(SecondsFormat::AutoSi, true)
    }
}

/// The HTML page (askama: escaped, checked at compile time).
#[derive(Template)]
#[template(path = "status.html")]
struct Page<'a> {
    status: &'a Status,
}

async fn gather(state: &AppState) -> Result<Status, ApiError> {
    let routes = state
        .binds
        .values()
        .map(|g| {
            let snaps = g.snapshots();
            RouteStatus {
                route: g.route().to_owned(),
                bound: g.bound_count(),
                binds: snaps.len(),
                submits_per_second: snaps.iter().map(|b| b.submits_per_second).sum(),
                submitted_total: snaps.iter().map(|b| b.submitted_total).sum(),
                window_in_use: snaps.iter().map(|b| b.window_in_use).sum(),
                errors: snaps
                    .iter()
                    .map(|b| b.errors_by_status.values().sum::<u64>())
                    .sum(),
            }
        })
        .collect();
    let q = crate::telemetry::queues::queues(&state.pool).await?;
    let (recent_otp, recent_signatures) =
        crate::telemetry::queues::recent(&state.pool, 20, 10).await?;
    let masked = |rows: Vec<crate::telemetry::queues::Recent>| -> Vec<Recent> {
        rows.into_iter()
            .map(|r| Recent {
                at: r.created_at,
                msisdn: Msisdn::parse(&r.msisdn)
                    .map(|m| m.masked())
                    .unwrap_or_else(|_| "?".into()),
                carrier: r.carrier,
                purpose: r.purpose,
                status: r.status,
            })
            .collect()
    };
    Ok(Status {
        routes,
        outbox: OutboxStatus {
            queued: q.outbox_queued,
            oldest_queued_seconds: (q.outbox_oldest_seconds * 10.0).round() / 10.0,
            failed_last_hour: q.outbox_failed_last_hour,
        },
        signature_requests_pending: q.signatures_pending,
        webhooks_pending: q.webhooks_pending,
        recent_otp: masked(recent_otp),
        recent_signatures: masked(recent_signatures),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_escapes_what_it_shows_and_lists_both_tables() {
        let recent = |status: &str| Recent {
            at: DateTime::parse_from_rfc3339("2026-12-03T08:00:00Z")
                .unwrap()
                .with_timezone(&Utc),
            msisdn: "097****567".into(),
            carrier: "viettel".into(),
            purpose: "login".into(),
            status: status.into(),
        };
        let status = Status {
            routes: vec![RouteStatus {
                route: "vi<b>ettel".into(),
                bound: 1,
                binds: 2,
                submits_per_second: 1.5,
                submitted_total: 7,
                window_in_use: 0,
                errors: 0,
            }],
            outbox: OutboxStatus {
                queued: 3,
                oldest_queued_seconds: 0.4,
                failed_last_hour: 0,
            },
            signature_requests_pending: 0,
            webhooks_pending: 0,
            recent_otp: vec![recent("<script>alert(1)</script>")],
            recent_signatures: vec![recent("signed")],
        };
        let html = Page { status: &status }.render().unwrap();
        assert!(
            html.contains("vi&#60;b&#62;ettel") || html.contains("vi&lt;b&gt;ettel"),
            "{html}"
        );
        assert!(!html.contains("<script>"), "{html}");
        assert!(html.contains("Recent OTPs") && html.contains("Recent signature requests"));
        assert!(html.contains("2026-12-03T08:00:00Z"), "{html}");
        assert!(html.contains("3 queued (oldest 0.4 s)"), "{html}");
    }
}
