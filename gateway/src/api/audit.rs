//! `GET /v1/audit?from&to&msisdn`: the calling client's own security events.

use actix_web::{web, HttpResponse};
use chrono::{Duration, Utc};
use serde::Deserialize;

use super::auth::ApiClient;
use super::error::ApiError;
use crate::domain::Msisdn;
use crate::startup::AppState;

#[derive(Debug, Deserialize)]
pub struct AuditQuery {
    from: Option<String>,
    to: Option<String>,
    msisdn: Option<String>,
}

/// At most this many events per call.
const PAGE: i64 = 1000;

pub async fn list(
    query: web::Query<AuditQuery>,
    client: ApiClient,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let now = Utc::now();
    let from = super::query_time("from", query.from.as_deref(), now - Duration::days(1))?;
    let to = super::query_time("to", query.to.as_deref(), now + Duration::seconds(1))?;
    let msisdn = query
        .msisdn
        .as_deref()
        .map(Msisdn::parse)
        .transpose()
        .map_err(|e| ApiError::InvalidMsisdn(e.to_string()))?;
    let db = state.pool.get().await?;
    let events = crate::audit::query(
        &db,
        &state.keys,
        crate::audit::Filter {
            client: Some(client.id),
            from,
            to,
            msisdn: msisdn.as_ref(),
            after_id: 0,
            limit: PAGE,
        },
    )
    .await?;
    Ok(HttpResponse::Ok().json(serde_json::json!({ "events": events })))
}
