//! `GET /v1/usage?from&to&group_by=day|carrier`: the client's billable usage and its
//! exact amount in VND.

use actix_web::{web, HttpResponse};
use chrono::{Duration, Utc};
use serde::Deserialize;

use super::auth::ApiClient;
use super::error::ApiError;
use crate::billing::GroupBy;
use crate::http::state::AppState;

#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct UsageQuery {
    /// RFC 3339; default 30 days ago.
    #[param(format = DateTime)]
    from: Option<String>,
    /// RFC 3339; default now.
    #[param(format = DateTime)]
    to: Option<String>,
    /// `day` (default) or `carrier`.
    #[param(pattern = "^(day|carrier)$")]
    group_by: Option<String>,
}

/// The client's billable usage. / Sản lượng và cước.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub(crate) struct UsageView {
    from: chrono::DateTime<Utc>,
    to: chrono::DateTime<Utc>,
    #[schema(example = "day")]
    group_by: &'static str,
    #[schema(example = "VND")]
    currency: &'static str,
    rows: Vec<crate::billing::UsageRow>,
    /// The exact total, as a decimal string.
    #[schema(example = "1250.0000")]
    total_vnd: String,
}

/// The client's billable usage and its exact amount / Sản lượng và cước
///
/// SMS segments, signature requests and owner checks, by day or by carrier, priced by
/// the carriers' price lists in force at each event; amounts in VND as decimal strings.
#[utoipa::path(
    get, path = "/v1/usage", tag = "account", operation_id = "usage",
    security(("api_key" = [])),
    params(UsageQuery),
    responses(
        (status = 200, description = "Usage / Sản lượng", body = UsageView),
        (status = 401, response = super::schemas::Problem401),
        (status = 422, response = super::schemas::Problem422),
        (status = 429, response = super::schemas::Problem429),
        (status = 500, response = super::schemas::Problem500),
        (status = 503, response = super::schemas::Problem503),
    ),
)]
pub async fn get(
    query: web::Query<UsageQuery>,
    client: ApiClient,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let now = Utc::now();
    let from = super::query::query_time("from", query.from.as_deref(), now - Duration::days(30))?;
    let to = super::query::query_time("to", query.to.as_deref(), now + Duration::seconds(1))?;
    let group_by = match query.group_by.as_deref() {
        None | Some("day") => GroupBy::Day,
        Some("carrier") => GroupBy::Carrier,
        Some(other) => {
            return Err(ApiError::InvalidField {
                field: "group_by",
                detail: format!("group_by must be day or carrier; got {other:?}"),
            })
        }
    };
    let db = state.pool.get().await?;
    let (rows, total) = crate::billing::usage(&db, Some(client.id), from, to, group_by).await?;
    Ok(HttpResponse::Ok().json(UsageView {
        from,
        to,
        group_by: if group_by == GroupBy::Day {
            "day"
        } else {
            "carrier"
        },
        currency: "VND",
        rows,
        total_vnd: total.to_string(),
    }))
}
