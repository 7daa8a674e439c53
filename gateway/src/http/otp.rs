//! `/v1/otp` handlers: parse, call the service, shape the answer.

use actix_web::{http::StatusCode, web, HttpRequest, HttpResponse};
use serde::Deserialize;
use utoipa::ToSchema;
use uuid::Uuid;

use super::auth::ApiClient;
use super::body::read_json;
use super::error::ApiError;
use super::schemas::{
    Problem400, Problem401, Problem403, Problem404, Problem408, Problem409, Problem413, Problem415,
    Problem422, Problem429, Problem500, Problem503,
};
use crate::domain::{Channel, Locale, Msisdn, Purpose, CODE_LENGTHS, TTL_SECONDS};
use crate::http::state::AppState;
use crate::otp::{CheckView, NewOtp, OtpView};

/// A verification to start: one code sent by SMS to `msisdn`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = OtpCreate)]
pub(crate) struct CreateBody {
    /// The number, in national (`0826123088`), international (`84826123088`) or E.164
    /// (`+84826123088`) form. / Số điện thoại nhận mã.
    #[schema(value_type = super::schemas::Phone)]
    msisdn: String,
    /// What the code is for; it is named in the SMS. / Mục đích: đăng ký, đăng nhập, …
    #[schema(pattern = "^(register|login|change_phone|add_method|reset_password)$")]
    purpose: String,
    /// Language of the SMS: `vi` (default) or `en`. / Ngôn ngữ tin nhắn.
    #[schema(pattern = "^(vi|en)$")]
    locale: Option<String>,
    /// Digits in the code, 4..=10 (default `otp.default_code_length`).
    #[schema(minimum = 4, maximum = 10)]
    #[serde(default, deserialize_with = "super::body::opt_integer")]
    code_length: Option<i64>,
    /// Seconds the code is valid, 60..=900 (default `otp.default_ttl`).
    #[schema(minimum = 60, maximum = 900)]
    #[serde(default, deserialize_with = "super::body::opt_integer")]
    ttl_seconds: Option<i64>,
    /// The portal's opaque reference of the account, for the account lockout after
    /// failed checks. Never shown to anyone.
    #[schema(
        min_length = 1,
        max_length = 128,
        pattern = "^[^\\x00-\\x1f\\x7f-\\x9f]*[^\\x00-\\x1f\\x7f-\\x9f\\s][^\\x00-\\x1f\\x7f-\\x9f]*$"
    )]
    account_ref: Option<String>,
    /// The end user's IP address, for the per-address limits (else the left-most
    /// `X-Forwarded-For` entry when the request comes from a trusted proxy).
    #[schema(value_type = Option<super::schemas::IpAddress>)]
    client_ip: Option<String>,
    /// The channels to send the code by, in the order to try them: `zalo` (Zalo ZNS)
    /// and `sms`, each at most once. The next is tried when one fails (no Zalo account,
    /// template, quota, …) or has not confirmed delivery within `channel_timeout_seconds`.
    /// Default: the client's policy, else `["sms"]`. / Kênh gửi mã, theo thứ tự thử.
    #[schema(value_type = Option<Vec<crate::domain::Channel>>, min_items = 1, max_items = 2, example = json!(["zalo", "sms"]))]
    channels: Option<Vec<String>>,
    /// Seconds each channel has to confirm delivery before the next is tried, 5..=300
    /// (default `otp.channel_timeout`); with more than one channel, shorter than
    /// `ttl_seconds` (else 422: the next channel could never be tried).
    #[schema(minimum = 5, maximum = 300)]
    #[serde(default, deserialize_with = "super::body::opt_integer")]
    channel_timeout_seconds: Option<i64>,
}

/// How to resend: by one channel, or (empty body) by the verification's channels.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = OtpResend)]
pub(crate) struct ResendBody {
    /// Send the new code by this channel only ("Gửi lại OTP" by SMS: `sms`).
    #[schema(value_type = Option<crate::domain::Channel>)]
    channel: Option<String>,
}

/// The code the person typed.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = OtpCheck)]
pub(crate) struct CheckBody {
    /// 1 to 10 digits. / Mã OTP người dùng nhập.
    #[schema(example = "482913", pattern = "^\\s*[0-9]{1,10}\\s*$")]
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
        Some(a)
            if !a.trim().is_empty()
                && a.chars().count() <= 128
                && !a.chars().any(char::is_control) =>
        {
            Some(a.trim().to_owned())
        }
        Some(_) => {
            return Err(ApiError::InvalidField {
                field: "account_ref",
                detail: "account_ref must be 1..=128 characters without control characters".into(),
            })
        }
    };
    let channels = body
        .channels
        .map(|names| {
            Channel::parse_workflow(&names).map_err(|detail| ApiError::InvalidField {
                field: "channels",
                detail,
            })
        })
        .transpose()?;
    let channel_timeout = body
        .channel_timeout_seconds
        .map(|n| {
            u64::try_from(n)
                .ok()
                .filter(|n| (5..=300).contains(n))
                .map(std::time::Duration::from_secs)
                .ok_or_else(|| ApiError::InvalidField {
                    field: "channel_timeout_seconds",
                    detail: format!("channel_timeout_seconds must be 5..=300; got {n}"),
                })
        })
        .transpose()?;
    Ok(NewOtp {
        msisdn,
        purpose,
        locale,
        code_length,
        ttl_seconds,
        idempotency_key,
        account_ref,
        client_ip: None,
        channels,
        channel_timeout,
    })
}

fn idempotency_key(req: &HttpRequest) -> Result<Option<String>, ApiError> {
    match req.headers().get("Idempotency-Key") {
        None => Ok(None),
        Some(v) => {
            let key = v
                .to_str()
                .ok()
                // Visible ASCII through and through, as the documented pattern says: a key
                // with spaces is refused, not quietly trimmed into another key.
                .filter(|k| {
                    !k.is_empty() && k.len() <= 255 && k.bytes().all(|b| (0x21..=0x7e).contains(&b))
                });
            key.map(|k| Some(k.to_owned()))
                .ok_or(ApiError::InvalidField {
                    field: "Idempotency-Key",
                    detail: "Idempotency-Key must be 1..=255 visible ASCII characters".into(),
                })
        }
    }
}

/// Start a verification: send a code by SMS / Gửi mã OTP
///
/// The challenge and its SMS are committed before the answer, so a 201 is never lost;
/// the SMS leaves on the carrier's SMPP bind within moments (see `delivery`). With the
/// same `Idempotency-Key` and body, a retry answers the first verification again
/// (`Idempotent-Replayed: true`) and sends nothing.
///
/// Tạo phiên xác thực và gửi mã OTP qua SMS tới số điện thoại.
#[utoipa::path(
    post, path = "/v1/otp", tag = "otp", operation_id = "createOtp",
    security(("api_key" = [])),
    params(("Idempotency-Key" = Option<String>, Header, min_length = 1, max_length = 255, pattern = "^[\\x21-\\x7e]+$",
        description = "A retry with the same key and body sends nothing new")),
    request_body(content = CreateBody, examples(
        ("vi" = (summary = "Đăng nhập bằng CCCD + OTP (tin nhắn tiếng Việt)", value = json!({
            "msisdn": "0826123088", "purpose": "login", "locale": "vi",
            "account_ref": "cccd:001099012345", "client_ip": "203.113.131.5"}))),
        ("en" = (summary = "Register by phone, SMS in English, 8 digits for 3 minutes", value = json!({
            "msisdn": "+84826123088", "purpose": "register", "locale": "en",
            "code_length": 8, "ttl_seconds": 180}))),
    )),
    responses(
        (status = 201, description = "Created and queued for sending / Đã tạo, đang gửi SMS",
            body = OtpView, headers(
                ("Location" = String, description = "`/v1/otp/{id}`"),
                ("Idempotent-Replayed" = String, description = "`true` when this answers an earlier request with the same Idempotency-Key"))),
        (status = 400, response = Problem400),
        (status = 401, response = Problem401),
        (status = 403, response = Problem403),
        (status = 408, response = Problem408),
        (status = 413, response = Problem413),
        (status = 415, response = Problem415),
        (status = 422, response = Problem422),
        (status = 429, response = Problem429),
        (status = 500, response = Problem500),
        (status = 503, response = Problem503),
    ),
)]
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
    let (view, replayed) = state.otp.create(&client, new).await?;
    let mut resp = HttpResponse::build(StatusCode::CREATED);
    resp.insert_header(("Location", format!("/v1/otp/{}", view.id)));
    if replayed {
        resp.insert_header(("Idempotent-Replayed", "true"));
    }
    Ok(resp.json(view))
}

/// Send a new code ("Gửi lại OTP") / Gửi lại mã OTP
///
/// A new code replaces the old one (which stops working) and goes by SMS to the same
/// number, once `resend_available_at` has passed and while `sends < max_sends`.
#[utoipa::path(
    post, path = "/v1/otp/{id}/resend", tag = "otp", operation_id = "resendOtp",
    security(("api_key" = [])),
    params(("id" = Uuid, Path, description = "The verification's id")),
    request_body(content = Option<ResendBody>, description = "Optional: `{\"channel\": \"sms\"}` sends the new code by that channel only", examples(
        ("sms" = (summary = "Gửi lại OTP qua SMS", value = json!({"channel": "sms"}))),
    )),
    responses(
        (status = 200, description = "A new code is on its way / Đã gửi lại mã", body = OtpView),
        (status = 400, response = Problem400),
        (status = 401, response = Problem401),
        (status = 404, response = Problem404),
        (status = 408, response = Problem408),
        (status = 409, response = Problem409),
        (status = 413, response = Problem413),
        (status = 415, response = Problem415),
        (status = 422, response = Problem422),
        (status = 429, response = Problem429),
        (status = 500, response = Problem500),
        (status = 503, response = Problem503),
    ),
)]
pub async fn resend(
    req: HttpRequest,
    payload: web::Payload,
    path: web::Path<String>,
    client: ApiClient,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let id = parse_id(&path)?;
    // No body, `{}` and `null` alike: by the verification's channels.
    let body: ResendBody =
        read_json::<Option<ResendBody>>(&req, payload, state.settings.server.max_body_bytes, true)
            .await?
            .unwrap_or_default();
    let channel = body
        .channel
        .map(|c| {
            c.parse::<Channel>()
                .map_err(|detail| ApiError::InvalidField {
                    field: "channel",
                    detail,
                })
        })
        .transpose()?;
    Ok(HttpResponse::Ok().json(state.otp.resend(&client, id, channel).await?))
}

/// Check the code the person typed / Kiểm tra mã OTP
///
/// `valid: true` approves the verification (a code works once). A wrong code uses one
/// attempt; at the last one the verification ends as `max_attempts_reached`, and repeated
/// failures on one `account_ref` lock the account for OTP.
#[utoipa::path(
    post, path = "/v1/otp/{id}/check", tag = "otp", operation_id = "checkOtp",
    security(("api_key" = [])),
    params(("id" = Uuid, Path, description = "The verification's id")),
    request_body(content = CheckBody, examples(
        ("vi" = (summary = "Mã người dùng nhập trên màn hình \"Nhập mã OTP\"", value = json!({"code": "482913"}))),
        ("en" = (summary = "The code the person typed", value = json!({"code": "05917263"}))),
    )),
    responses(
        (status = 200, description = "Checked; `valid` says whether it matched / Kết quả kiểm tra", body = CheckView),
        (status = 400, response = Problem400),
        (status = 401, response = Problem401),
        (status = 404, response = Problem404),
        (status = 409, response = Problem409),
        (status = 408, response = Problem408),
        (status = 413, response = Problem413),
        (status = 415, response = Problem415),
        (status = 422, response = Problem422),
        (status = 429, response = Problem429),
        (status = 500, response = Problem500),
        (status = 503, response = Problem503),
    ),
)]
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
    Ok(HttpResponse::Ok().json(state.otp.check(client.id, id, code).await?))
}

/// Read a verification, with its SMS's delivery / Xem phiên xác thực
#[utoipa::path(
    get, path = "/v1/otp/{id}", tag = "otp", operation_id = "getOtp",
    security(("api_key" = [])),
    params(("id" = Uuid, Path, description = "The verification's id")),
    responses(
        (status = 200, description = "The verification / Phiên xác thực", body = OtpView),
        (status = 401, response = Problem401),
        (status = 404, response = Problem404),
        (status = 429, response = Problem429),
        (status = 500, response = Problem500),
        (status = 503, response = Problem503),
    ),
)]
pub async fn get(
    path: web::Path<String>,
    client: ApiClient,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let id = parse_id(&path)?;
    Ok(HttpResponse::Ok().json(state.otp.get(client.id, id).await?))
}

/// Cancel a pending verification / Hủy phiên xác thực
///
/// Its code stops working; an SMS not yet handed to the carrier is not sent.
#[utoipa::path(
    post, path = "/v1/otp/{id}/cancel", tag = "otp", operation_id = "cancelOtp",
    security(("api_key" = [])),
    params(("id" = Uuid, Path, description = "The verification's id")),
    responses(
        (status = 200, description = "Canceled / Đã hủy", body = OtpView),
        (status = 401, response = Problem401),
        (status = 404, response = Problem404),
        (status = 409, response = Problem409),
        (status = 429, response = Problem429),
        (status = 500, response = Problem500),
        (status = 503, response = Problem503),
    ),
)]
pub async fn cancel(
    path: web::Path<String>,
    client: ApiClient,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let id = parse_id(&path)?;
    Ok(HttpResponse::Ok().json(state.otp.cancel(client.id, id).await?))
}
