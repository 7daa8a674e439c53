//! `GET /v1/usage?from&to&group_by=day|carrier`: the client's billable usage and its
//! exact amount in VND.

use actix_web::{web, HttpResponse};
use chrono::{Duration, Utc};
use serde::Deserialize;

use super::auth::ApiClient;
use super::error::ApiError;
use crate::billing::GroupBy;
use crate::startup::AppState;

#[derive(Debug, Deserialize)]
pub struct UsageQuery {
    from: Option<String>,
    to: Option<String>,
    group_by: Option<String>,
}

pub async fn get(
    query: web::Query<UsageQuery>,
    client: ApiClient,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let now = Utc::now();
    let from = super::query_time("from", query.from.as_deref(), now - Duration::days(30))?;
    let to = super::query_time("to", query.to.as_deref(), now + Duration::seconds(1))?;
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
    Ok(HttpResponse::Ok().json(serde_json::json!({
        "from": from,
        "to": to,
        "group_by": if group_by == GroupBy::Day { "day" } else { "carrier" },
        "currency": "VND",
        "rows": rows,
        "total_vnd": total.to_string(),
    })))
}
