//! Operators' calls, authenticated by the admin key (`admin.api_key`); absent unless one
//! is configured.

use actix_web::{http::header, web, HttpRequest, HttpResponse};
use secrecy::ExposeSecret;
use uuid::Uuid;

use super::error::ApiError;
use crate::http::state::AppState;

/// The admin key from `Authorization: Bearer KEY`, or from Basic auth (any user name,
/// the key as password: what a browser asks for).
fn given_key(req: &HttpRequest) -> String {
    use base64::Engine;
    let value = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if let Some(key) = value.strip_prefix("Bearer ") {
        return key.to_owned();
    }
    value
        .strip_prefix("Basic ")
        .and_then(|b| {
            base64::engine::general_purpose::STANDARD
                .decode(b.trim())
                .ok()
        })
        .and_then(|d| String::from_utf8(d).ok())
        .and_then(|d| d.split_once(':').map(|(_, key)| key.to_owned()))
        .unwrap_or_default()
}

pub(crate) fn authorise(req: &HttpRequest, state: &AppState) -> Result<(), ApiError> {
    let Some(admin) = &state.settings.admin.api_key else {
        return Err(ApiError::NotFound);
    };
    let given = given_key(req);
    // Compare digests so that the comparison's time says nothing about the key.
    let a = crate::crypto::sha256(given.trim().as_bytes());
    let b = crate::crypto::sha256(admin.expose_secret().as_bytes());
    if a == b {
        Ok(())
    } else {
        Err(ApiError::Unauthorized)
    }
}

/// Unlock an account locked for OTP / Mở khóa tài khoản
///
/// Ends the lockout that failed checks put on the client's `account_ref`; audited.
#[utoipa::path(
    post, path = "/v1/admin/clients/{client_id}/accounts/{account_ref}/unlock",
    tag = "operators", operation_id = "unlockAccount",
    security(("admin_key" = [])),
    params(
        ("client_id" = Uuid, Path, description = "The client (`gateway client list`)"),
        ("account_ref" = String, Path, description = "The `account_ref` the client sent"),
    ),
    responses(
        (status = 200, description = "`unlocked`: whether the account was locked", body = Object,
            example = json!({"unlocked": true})),
        (status = 401, response = super::schemas::Problem401),
        (status = 404, response = super::schemas::Problem404),
        (status = 500, response = super::schemas::Problem500),
        (status = 503, response = super::schemas::Problem503),
    ),
)]
pub async fn unlock(
    req: HttpRequest,
    path: web::Path<(String, String)>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    authorise(&req, &state)?;
    let (client, account) = path.into_inner();
    let client = Uuid::parse_str(&client).map_err(|_| ApiError::NotFound)?;
    let unlocked = state.otp.unlock_account(client, &account).await?;
    Ok(HttpResponse::Ok().json(serde_json::json!({ "unlocked": unlocked })))
}
