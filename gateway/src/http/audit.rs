//! `GET /v1/audit?from&to&msisdn`: the calling client's own security events.

use actix_web::{web, HttpResponse};
use chrono::{Duration, Utc};
use serde::Deserialize;

use super::auth::ApiClient;
use super::error::ApiError;
use crate::domain::Msisdn;
use crate::http::state::AppState;

#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct AuditQuery {
    /// RFC 3339; default a day ago.
    #[param(format = DateTime)]
    from: Option<String>,
    /// RFC 3339; default now.
    #[param(format = DateTime)]
    to: Option<String>,
    /// Only this number's events.
    #[param(value_type = Option<super::schemas::Phone>)]
    msisdn: Option<String>,
}

#[derive(serde::Serialize, utoipa::ToSchema)]
pub(crate) struct AuditPage {
    /// At most 1000, oldest first.
    events: Vec<crate::audit::AuditView>,
}

/// At most this many events per call.
const PAGE: i64 = 1000;

/// The client's own security events / Nhật ký an ninh
///
/// OTPs created, checked, refused by a limit, locked and unlocked accounts, signature
/// requests, owner checks; numbers masked.
#[utoipa::path(
    get, path = "/v1/audit", tag = "account", operation_id = "audit",
    security(("api_key" = [])),
    params(AuditQuery),
    responses(
        (status = 200, description = "Events / Sự kiện", body = AuditPage),
        (status = 401, response = super::schemas::Problem401),
        (status = 422, response = super::schemas::Problem422),
        (status = 429, response = super::schemas::Problem429),
        (status = 500, response = super::schemas::Problem500),
        (status = 503, response = super::schemas::Problem503),
    ),
)]
pub async fn list(
    query: web::Query<AuditQuery>,
    client: ApiClient,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let now = Utc::now();
    let from = super::query::query_time("from", query.from.as_deref(), now - Duration::days(1))?;
    let to = super::query::query_time("to", query.to.as_deref(), now + Duration::seconds(1))?;
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
    Ok(HttpResponse::Ok().json(AuditPage { events }))
}
