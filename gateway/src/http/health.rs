//! Liveness, readiness and health, for orchestrators and load balancers.

use actix_web::{web, HttpResponse};
use serde_json::json;

use super::state::AppState;

/// Liveness: the process answers. Nothing it depends on is checked, so an orchestrator
/// does not restart a healthy process because the database or a carrier is away.
#[utoipa::path(
    get, path = "/healthz", tag = "operators", operation_id = "healthz",
    summary = "Liveness: the process answers / Tiến trình còn chạy",
    responses((status = 200, description = "Alive", body = Object, example = json!({"status": "ok"}))),
)]
pub(crate) async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({ "status": "ok" }))
}

/// Readiness: this instance can take requests: the database answers (within 2 s) and
/// the instance is not shutting down. Carriers are not part of it: with a carrier down
/// the gateway still accepts and queues every OTP, so a load balancer must keep sending
/// to it; their state is in `carriers` here, `/v1/health/carriers` and `/metrics`.
#[utoipa::path(
    get, path = "/readyz", tag = "operators", operation_id = "readyz",
    summary = "Readiness: the database answers, not shutting down / Sẵn sàng phục vụ",
    responses(
        (status = 200, description = "Ready (carriers shown, not counted)", body = Object, example = json!({
            "status": "ready", "database": true, "shutting_down": false,
            "carriers": {"viettel": {"route": "viettel", "routed": true, "via": "viettel"}}})),
        (status = 503, description = "Not ready, with the reasons", body = Object, example = json!({
            "status": "not_ready", "database": false, "shutting_down": false,
            "carriers": {"vinaphone": {"route": "vinaphone", "routed": false, "via": null}}})),
    ),
)]
pub(crate) async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    let shutting_down = state.shutting_down.is_cancelled();
    let db_ok = database_answers(&state).await;
    let bound = |route: &str| state.binds.get(route).is_some_and(|g| g.is_bound());
    let mut carriers = serde_json::Map::new();
    for carrier in crate::domain::Carrier::ALL {
        let (route, cfg) = state.settings.route_for(carrier);
        let via = if bound(route) {
            Some(route)
        } else {
            cfg.fallback.as_deref().filter(|f| bound(f))
        };
        carriers.insert(
            carrier.as_str().to_owned(),
            json!({ "route": route, "routed": via.is_some(), "via": via }),
        );
    }
    let ready = db_ok && !shutting_down;
    let body = json!({
        "status": if ready { "ready" } else { "not_ready" },
        "database": db_ok,
        "shutting_down": shutting_down,
        "carriers": carriers,
    });
    ok_or_unavailable(ready, body)
}

async fn database_answers(state: &AppState) -> bool {
    crate::store::answers(&state.pool, std::time::Duration::from_secs(2)).await
}

fn ok_or_unavailable(ok: bool, body: serde_json::Value) -> HttpResponse {
    if ok {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable().json(body)
    }
}

/// Liveness plus a database round trip and the state of each SMPP bind.
#[utoipa::path(
    get, path = "/health", tag = "operators", operation_id = "health",
    summary = "Database and SMPP binds at a glance / Tình trạng chung",
    responses(
        (status = 200, description = "The database answers", body = Object, example = json!({
            "status": "ok", "database": true, "smpp": {"viettel": {"bound": true}}})),
        (status = 503, description = "The database does not answer", body = Object),
    ),
)]
pub(crate) async fn health(state: web::Data<AppState>) -> HttpResponse {
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
