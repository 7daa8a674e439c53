//! `/v1/otp` handlers: parse, call the service, shape the answer.

use actix_web::{http::StatusCode, web, HttpRequest, HttpResponse};
use serde::Deserialize;
use uuid::Uuid;

use super::auth::ApiClient;
use super::body::read_json;
use super::error::ApiError;
use crate::domain::{Locale, Msisdn, Purpose, CODE_LENGTHS, TTL_SECONDS};
use crate::otp::{self, NewOtp};
use crate::startup::AppState;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateBody {
    msisdn: String,
    purpose: String,
    locale: Option<String>,
    code_length: Option<i64>,
    ttl_seconds: Option<i64>,
    account_ref: Option<String>,
    client_ip: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CheckBody {
    code: String,
}

fn parse_id(raw: &str) -> Result<Uuid, ApiError> {
    // A malformed id cannot name any verification: same answer as an unknown one.
    Uuid::parse_str(raw).map_err(|_| ApiError::NotFound)
}

/// The end user's address: the body's `client_ip`, else the left-most
/// `X-Forwarded-For` entry when the request comes from a trusted proxy.
fn end_user_ip(
    req: &HttpRequest,
    state: &AppState,
    given: Option<&str>,
) -> Result<Option<std::net::IpAddr>, ApiError> {
    if let Some(ip) = given {
        return ip
            .trim()
            .parse()
            .map(Some)
            .map_err(|_| ApiError::InvalidField {
                field: "client_ip",
                detail: "client_ip must be an IPv4 or IPv6 address".into(),
            });
    }
    let from_proxy = req
        .peer_addr()
        .is_some_and(|peer| state.settings.limits.trusted_proxies.contains(&peer.ip()));
    if !from_proxy {
        return Ok(None);
    }
    Ok(req
        .headers()
        .get("X-Forwarded-For")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(',').next())
        .and_then(|first| first.trim().parse().ok()))
}

fn parse_create(
    body: CreateBody,
    state: &AppState,
    idempotency_key: Option<String>,
) -> Result<NewOtp, ApiError> {
    let msisdn = Msisdn::parse(&body.msisdn).map_err(|e| ApiError::InvalidMsisdn(e.to_string()))?;
    let purpose: Purpose = body.purpose.parse().map_err(|_| ApiError::InvalidField {
        field: "purpose",
        detail: format!(
            "purpose must be one of register, login, change_phone, add_method, reset_password; got {:?}",
            body.purpose
        ),
    })?;
    let locale = match body.locale.as_deref() {
        None => Locale::Vi,
        Some(l) => l.parse().map_err(|_| ApiError::InvalidField {
            field: "locale",
            detail: format!("locale must be vi or en; got {l:?}"),
        })?,
    };
    let code_length = match body.code_length {
        None => state.settings.otp.default_code_length,
        Some(n) => u8::try_from(n)
            .ok()
            .filter(|n| CODE_LENGTHS.contains(n))
            .ok_or_else(|| ApiError::InvalidField {
                field: "code_length",
                detail: format!(
                    "code_length must be {}..={}; got {n}",
                    CODE_LENGTHS.start(),
                    CODE_LENGTHS.end()
                ),
            })?,
    };
    let ttl_seconds = match body.ttl_seconds {
        None => state.settings.otp.default_ttl.as_secs() as u32,
        Some(n) => u32::try_from(n)
            .ok()
            .filter(|n| TTL_SECONDS.contains(n))
            .ok_or_else(|| ApiError::InvalidField {
                field: "ttl_seconds",
                detail: format!(
                    "ttl_seconds must be {}..={}; got {n}",
                    TTL_SECONDS.start(),
                    TTL_SECONDS.end()
                ),
            })?,
    };
    let account_ref = match body.account_ref {
        None => None,
        Some(a) if !a.trim().is_empty() && a.len() <= 128 && !a.chars().any(char::is_control) => {
            Some(a.trim().to_owned())
        }
        Some(_) => {
            return Err(ApiError::InvalidField {
                field: "account_ref",
                detail: "account_ref must be 1..=128 characters without control characters".into(),
            })
        }
    };
    Ok(NewOtp {
        msisdn,
        purpose,
        locale,
        code_length,
        ttl_seconds,
        idempotency_key,
        account_ref,
        client_ip: None,
    })
}

fn idempotency_key(req: &HttpRequest) -> Result<Option<String>, ApiError> {
    match req.headers().get("Idempotency-Key") {
        None => Ok(None),
        Some(v) => {
            let key = v
                .to_str()
                .ok()
                .map(str::trim)
                .filter(|k| !k.is_empty() && k.len() <= 255);
            key.map(|k| Some(k.to_owned()))
                .ok_or(ApiError::InvalidField {
                    field: "Idempotency-Key",
                    detail: "Idempotency-Key must be 1..=255 visible ASCII characters".into(),
                })
        }
    }
}

pub async fn create(
    req: HttpRequest,
    payload: web::Payload,
    client: ApiClient,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let key = idempotency_key(&req)?;
    let body: CreateBody =
        read_json(&req, payload, state.settings.server.max_body_bytes, false).await?;
    let ip = end_user_ip(&req, &state, body.client_ip.as_deref())?;
    let mut new = parse_create(body, &state, key)?;
    new.client_ip = ip;
    let (view, replayed) = otp::create(&state, &client, new).await?;
    let mut resp = HttpResponse::build(StatusCode::CREATED);
    resp.insert_header(("Location", format!("/v1/otp/{}", view.id)));
    if replayed {
        resp.insert_header(("Idempotent-Replayed", "true"));
    }
    Ok(resp.json(view))
}

pub async fn resend(
    path: web::Path<String>,
    client: ApiClient,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let id = parse_id(&path)?;
    Ok(HttpResponse::Ok().json(otp::resend(&state, &client, id).await?))
}

pub async fn check(
    req: HttpRequest,
    payload: web::Payload,
    path: web::Path<String>,
    client: ApiClient,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let id = parse_id(&path)?;
    let body: CheckBody =
        read_json(&req, payload, state.settings.server.max_body_bytes, false).await?;
    let code = body.code.trim();
    if code.is_empty() || code.len() > 10 || !code.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ApiError::InvalidField {
            field: "code",
            detail: "code must be 1 to 10 digits".into(),
        });
    }
    Ok(HttpResponse::Ok().json(otp::check(&state, client.id, id, code).await?))
}

pub async fn get(
    path: web::Path<String>,
    client: ApiClient,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let id = parse_id(&path)?;
    Ok(HttpResponse::Ok().json(otp::get(&state, client.id, id).await?))
}

pub async fn cancel(
    path: web::Path<String>,
    client: ApiClient,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let id = parse_id(&path)?;
    Ok(HttpResponse::Ok().json(otp::cancel(&state, client.id, id).await?))
}
