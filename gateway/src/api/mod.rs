//! The REST API.

pub mod admin;
pub mod audit;
pub mod auth;
pub mod body;
pub mod carriers;
pub mod error;
pub mod metrics;
pub mod otp;
pub mod requests;
pub mod signatures;
pub mod status;
pub mod usage;

use actix_web::{web, HttpResponse};
use serde_json::json;

use crate::startup::AppState;
use error::ApiError;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/health", web::get().to(health))
        .route("/healthz", web::get().to(healthz))
        .route("/readyz", web::get().to(readyz))
        .route("/status", web::get().to(status::status))
        .route("/metrics", web::get().to(metrics::metrics))
        .route("/v1/health/carriers", web::get().to(metrics::carriers))
        .service(
            web::resource("/v1/otp")
                .route(web::post().to(otp::create))
                .default_service(web::to(method_not_allowed)),
        )
        .service(
            web::resource("/v1/otp/{id}")
                .route(web::get().to(otp::get))
                .route(web::delete().to(otp::cancel))
                .default_service(web::to(method_not_allowed)),
        )
        .service(
            web::resource("/v1/otp/{id}/resend")
                .route(web::post().to(otp::resend))
                .default_service(web::to(method_not_allowed)),
        )
        .service(
            web::resource("/v1/otp/{id}/check")
                .route(web::post().to(otp::check))
                .default_service(web::to(method_not_allowed)),
        )
        .service(
            web::resource("/v1/signatures")
                .route(web::post().to(signatures::create))
                .default_service(web::to(method_not_allowed)),
        )
        .service(
            web::resource("/v1/signatures/{id}")
                .route(web::get().to(signatures::get))
                .default_service(web::to(method_not_allowed)),
        )
        .service(
            web::resource("/v1/signatures/{id}/cancel")
                .route(web::post().to(signatures::cancel))
                .default_service(web::to(method_not_allowed)),
        )
        .service(
            web::resource("/v1/admin/clients/{client_id}/accounts/{account_ref}/unlock")
                .route(web::post().to(admin::unlock))
                .default_service(web::to(method_not_allowed)),
        )
        .service(
            web::resource("/v1/usage")
                .route(web::get().to(usage::get))
                .default_service(web::to(method_not_allowed)),
        )
        .service(
            web::resource("/v1/audit")
                .route(web::get().to(audit::list))
                .default_service(web::to(method_not_allowed)),
        )
        .service(
            web::resource("/v1/subscriber-checks")
                .route(web::post().to(signatures::subscriber_check))
                .default_service(web::to(method_not_allowed)),
        )
        .service(
            web::resource("/carriers/{carrier}/mss")
                .route(web::post().to(carriers::notification))
                .default_service(web::to(method_not_allowed)),
        );
}

/// An RFC 3339 time from a query parameter, or `default` when absent.
pub(crate) fn query_time(
    field: &'static str,
    raw: Option<&str>,
    default: chrono::DateTime<chrono::Utc>,
) -> Result<chrono::DateTime<chrono::Utc>, ApiError> {
    match raw {
        None => Ok(default),
        Some(t) => chrono::DateTime::parse_from_rfc3339(t)
            .map(|t| t.with_timezone(&chrono::Utc))
            .map_err(|_| ApiError::InvalidField {
                field,
                detail: format!("{field} must be an RFC 3339 time"),
            }),
    }
}

async fn method_not_allowed() -> Result<HttpResponse, ApiError> {
    Err(ApiError::MethodNotAllowed)
}

pub async fn not_found() -> Result<HttpResponse, ApiError> {
    Err(ApiError::NotFound)
}

/// Liveness plus a database round trip and the state of each SMPP bind.
/// Liveness: the process answers. Nothing it depends on is checked, so an orchestrator
/// does not restart a healthy process because the database or a carrier is away.
async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({ "status": "ok" }))
}

/// Readiness: the database answers (within 2 s) and every carrier's traffic has a bound
/// SMPP session on its route (or on that route's fallback). 503 with the reasons
/// otherwise.
async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    let db_ok = database_answers(&state).await;
    let bound = |route: &str| state.binds.get(route).is_some_and(|g| g.is_bound());
    let mut carriers = serde_json::Map::new();
    let mut all_routed = true;
    for carrier in crate::domain::Carrier::ALL {
        let (route, cfg) = state.settings.route_for(carrier);
        let via = if bound(route) {
            Some(route)
        } else {
            cfg.fallback.as_deref().filter(|f| bound(f))
        };
        all_routed &= via.is_some();
        carriers.insert(
            carrier.as_str().to_owned(),
            json!({ "route": route, "ready": via.is_some(), "via": via }),
        );
    }
    let ready = db_ok && all_routed;
    let body = json!({
        "status": if ready { "ready" } else { "not_ready" },
        "database": db_ok,
        "carriers": carriers,
    });
    ok_or_unavailable(ready, body)
}

/// `SELECT 1` answered within 2 s.
async fn database_answers(state: &AppState) -> bool {
    tokio::time::timeout(std::time::Duration::from_secs(2), async {
        match state.pool.get().await {
            Ok(c) => c.query_one("SELECT 1", &[]).await.is_ok(),
            Err(_) => false,
        }
    })
    .await
    .unwrap_or(false)
}

fn ok_or_unavailable(ok: bool, body: serde_json::Value) -> HttpResponse {
    if ok {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable().json(body)
    }
}

async fn health(state: web::Data<AppState>) -> HttpResponse {
    let db_ok = database_answers(&state).await;
    let binds: serde_json::Map<String, serde_json::Value> = state
        .binds
        .iter()
        .map(|(route, group)| (route.clone(), json!({ "bound": group.is_bound() })))
        .collect();
    let body = json!({
        "status": if db_ok { "ok" } else { "degraded" },
        "database": db_ok,
        "smpp": binds,
    });
    ok_or_unavailable(db_ok, body)
}
