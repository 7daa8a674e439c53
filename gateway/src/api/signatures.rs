//! `/v1/signatures` and `/v1/subscriber-checks` handlers.

use std::time::Duration;

use actix_web::{http::StatusCode, web, HttpRequest, HttpResponse};
use base64::Engine;
use ring::rand::SecureRandom;
use serde::Deserialize;
use uuid::Uuid;

use super::auth::ApiClient;
use super::body::read_json;
use super::error::ApiError;
use crate::domain::Msisdn;
use crate::signatures::{self, NewSignature, SignaturePurpose};
use crate::startup::AppState;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateBody {
    msisdn: String,
    purpose: String,
    display_text: Option<String>,
    data_to_sign: Option<String>,
    timeout_seconds: Option<i64>,
    callback_url: Option<String>,
}

const MAX_DATA_TO_SIGN: usize = 1024;

fn parse_id(raw: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(raw).map_err(|_| ApiError::NotFound)
}

fn invalid(field: &'static str, detail: impl Into<String>) -> ApiError {
    ApiError::InvalidField {
        field,
        detail: detail.into(),
    }
}

fn parse_create(body: CreateBody, state: &AppState) -> Result<NewSignature, ApiError> {
    let msisdn = Msisdn::parse(&body.msisdn).map_err(|e| ApiError::InvalidMsisdn(e.to_string()))?;
    let purpose = SignaturePurpose::parse(&body.purpose).ok_or_else(|| {
        invalid(
            "purpose",
            format!(
                "purpose must be register, login or add_method; got {:?}",
                body.purpose
            ),
        )
    })?;
    let display_text = match body.display_text {
        None => purpose.default_display_text().to_owned(),
        Some(t) => {
            let t = t.trim().to_owned();
            let chars = t.chars().count();
            if chars == 0 || chars > 160 || t.chars().any(char::is_control) {
                return Err(invalid(
                    "display_text",
                    "display_text must be 1..=160 characters without control characters",
                ));
            }
            t
        }
    };
    let data_to_sign = match body.data_to_sign {
        None => {
            let mut challenge = vec![0u8; 32];
            ring::rand::SystemRandom::new()
                .fill(&mut challenge)
                .map_err(|_| ApiError::Internal(anyhow::anyhow!("system RNG failed")))?;
            challenge
        }
        Some(b64) => {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(b64.trim())
                .map_err(|_| invalid("data_to_sign", "data_to_sign must be base64"))?;
            if bytes.is_empty() || bytes.len() > MAX_DATA_TO_SIGN {
                return Err(invalid(
                    "data_to_sign",
                    format!("data_to_sign must be 1..={MAX_DATA_TO_SIGN} bytes"),
                ));
            }
            bytes
        }
    };
    let timeout_seconds = match body.timeout_seconds {
        None => state.settings.signatures.default_timeout_seconds,
        Some(n) => u32::try_from(n)
            .ok()
            .filter(|n| (30..=300).contains(n))
            .ok_or_else(|| {
                invalid(
                    "timeout_seconds",
                    format!("timeout_seconds must be 30..=300; got {n}"),
                )
            })?,
    };
    let callback_url = match body.callback_url {
        None => None,
        Some(u) => {
            let parsed = reqwest::Url::parse(u.trim())
                .map_err(|e| invalid("callback_url", format!("callback_url is not a URL: {e}")))?;
            if !matches!(parsed.scheme(), "http" | "https")
                || parsed.host().is_none()
                || u.len() > 2048
            {
                return Err(invalid(
                    "callback_url",
                    "callback_url must be an http(s) URL of at most 2048 characters",
                ));
            }
            Some(parsed.to_string())
        }
    };
    Ok(NewSignature {
        msisdn,
        purpose,
        display_text,
        data_to_sign,
        timeout_seconds,
        callback_url,
    })
}

pub async fn create(
    req: HttpRequest,
    payload: web::Payload,
    client: ApiClient,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let body: CreateBody =
        read_json(&req, payload, state.settings.server.max_body_bytes, false).await?;
    let new = parse_create(body, &state)?;
    client.allow_purpose(new.purpose.as_str())?;
    let view = signatures::create(&state, client.id, new).await?;
    Ok(HttpResponse::build(StatusCode::ACCEPTED)
        .insert_header(("Location", format!("/v1/signatures/{}", view.id)))
        .json(view))
}

#[derive(Debug, Deserialize)]
pub struct WaitQuery {
    wait: Option<String>,
}

pub async fn get(
    path: web::Path<String>,
    query: web::Query<WaitQuery>,
    client: ApiClient,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let id = parse_id(&path)?;
    let wait = match query.wait.as_deref() {
        None => 0,
        Some(w) => w
            .parse::<u64>()
            .ok()
            .filter(|w| *w <= 60)
            .ok_or_else(|| invalid("wait", "wait must be 0..=60 seconds"))?,
    };
    let view = signatures::wait(&state, client.id, id, Duration::from_secs(wait)).await?;
    Ok(HttpResponse::Ok().json(view))
}

pub async fn cancel(
    path: web::Path<String>,
    client: ApiClient,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let id = parse_id(&path)?;
    Ok(HttpResponse::Ok().json(signatures::cancel(&state, client.id, id).await?))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct OwnerCheckBody {
    msisdn: String,
    id_number: String,
    full_name: Option<String>,
    date_of_birth: Option<String>,
}

/// `POST /v1/subscriber-checks`: is this number registered to this person? The answer
/// never reveals the registered owner's data.
pub async fn subscriber_check(
    req: HttpRequest,
    payload: web::Payload,
    client: ApiClient,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let body: OwnerCheckBody =
        read_json(&req, payload, state.settings.server.max_body_bytes, false).await?;
    let msisdn = Msisdn::parse(&body.msisdn).map_err(|e| ApiError::InvalidMsisdn(e.to_string()))?;
    let id_number = body.id_number.trim();
    if !(9..=12).contains(&id_number.len()) || !id_number.bytes().all(|b| b.is_ascii_digit()) {
        return Err(invalid(
            "id_number",
            "id_number must be a CCCD (12 digits) or CMND (9 digits)",
        ));
    }
    if let Some(dob) = &body.date_of_birth {
        if chrono::NaiveDate::parse_from_str(dob.trim(), "%Y-%m-%d").is_err() {
            return Err(invalid("date_of_birth", "date_of_birth must be YYYY-MM-DD"));
        }
    }
    if body
        .full_name
        .as_deref()
        .is_some_and(|n| n.trim().is_empty() || n.chars().count() > 200)
    {
        return Err(invalid("full_name", "full_name must be 1..=200 characters"));
    }
    let carrier = msisdn.carrier();
    let mssp = state
        .mssps
        .get(&carrier)
        .filter(|m| m.route.owner_check_url.is_some())
        .ok_or_else(|| invalid("msisdn", format!("{carrier} offers no owner check here")))?;
    let result = mssp
        .owner_check(
            &msisdn,
            id_number,
            body.full_name.as_deref().map(str::trim),
            body.date_of_birth.as_deref().map(str::trim),
        )
        .await
        .map_err(|e| ApiError::Unavailable(e.context("carrier owner check failed")))?;
    tracing::info!(msisdn = %msisdn, %carrier, result = %result, "owner check");
    let db = state.pool.get().await?;
    crate::audit::record(
        &db,
        &state.keys,
        crate::audit::Event {
            event: "owner_check",
            client: Some(client.id),
            msisdn: Some(&msisdn),
            subject: None,
            detail: serde_json::json!({ "match": result, "carrier": carrier.as_str() }),
        },
    )
    .await?;
    crate::billing::record(
        &db,
        &[(client.id, carrier.as_str(), "owner_check", 1, None)],
    )
    .await?;
    Ok(HttpResponse::Ok().json(serde_json::json!({ "match": result, "carrier": carrier })))
}
