//! The simulator's HTTP API: virtual handsets and health.

use std::sync::Arc;

use actix_web::dev::Server;
use actix_web::http::StatusCode;
use actix_web::{web, App, HttpResponse, HttpServer};
use carrier_adapters::Msisdn;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::handset::Handsets;
use crate::smsc::Smsc;

#[derive(Clone)]
pub struct State {
    pub handsets: Arc<Handsets>,
    pub smscs: Vec<Arc<Smsc>>,
}

fn problem(status: StatusCode, kind: &str, title: &str, detail: String) -> HttpResponse {
    HttpResponse::build(status)
        .content_type("application/problem+json")
        .json(json!({
            "type": format!("/problems/{kind}"),
            "title": title,
            "status": status.as_u16(),
            "detail": detail,
        }))
}

fn parse_msisdn(raw: &str) -> Result<Msisdn, Box<HttpResponse>> {
    Msisdn::parse(raw).map_err(|e| {
        Box::new(problem(
            StatusCode::BAD_REQUEST,
            "invalid-msisdn",
            "Invalid phone number",
            e.to_string(),
        ))
    })
}

async fn handset_messages(state: web::Data<State>, path: web::Path<String>) -> HttpResponse {
    match parse_msisdn(&path) {
        Ok(msisdn) => HttpResponse::Ok().json(state.handsets.messages(msisdn.e164())),
        Err(resp) => *resp,
    }
}

async fn clear_handset(state: web::Data<State>, path: web::Path<String>) -> HttpResponse {
    match parse_msisdn(&path) {
        Ok(msisdn) => {
            let removed = state.handsets.clear(msisdn.e164());
            HttpResponse::Ok().json(json!({ "removed": removed }))
        }
        Err(resp) => *resp,
    }
}

async fn health(state: web::Data<State>) -> HttpResponse {
    let smscs: Vec<_> = state.smscs.iter().map(|s| s.status()).collect();
    HttpResponse::Ok().json(json!({ "status": "ok", "smsc": smscs }))
}

async fn not_found() -> HttpResponse {
    problem(
        StatusCode::NOT_FOUND,
        "not-found",
        "Not found",
        "no such resource on the carrier simulator".into(),
    )
}

/// Serves the API on `listener` until `shutdown`.
pub fn serve(
    listener: std::net::TcpListener,
    state: State,
    shutdown: CancellationToken,
) -> std::io::Result<tokio::task::JoinHandle<()>> {
    let data = web::Data::new(state);
    let server: Server = HttpServer::new(move || {
        App::new()
            .app_data(data.clone())
            .route("/health", web::get().to(health))
            .route(
                "/handsets/{msisdn}/messages",
                web::get().to(handset_messages),
            )
            .route(
                "/handsets/{msisdn}/messages",
                web::delete().to(clear_handset),
            )
            .default_service(web::to(not_found))
    })
    .workers(1)
    .disable_signals()
    .shutdown_timeout(1)
    .listen(listener)?
    .run();
    let handle = server.handle();
    let task = tokio::spawn(async move {
        let stopper = tokio::spawn(async move {
            shutdown.cancelled().await;
            handle.stop(true).await;
        });
        let _ = server.await;
        stopper.abort();
    });
    Ok(task)
}
