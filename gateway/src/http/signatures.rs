//! `/v1/signatures` and `/v1/subscriber-checks` handlers.

use std::time::Duration;

use actix_web::{http::StatusCode, web, HttpRequest, HttpResponse};
use base64::Engine;
use ring::rand::SecureRandom;
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::auth::ApiClient;
use super::body::read_json;
use super::error::ApiError;
use super::schemas::{
    Problem400, Problem401, Problem403, Problem404, Problem408, Problem409, Problem413, Problem415,
    Problem422, Problem429, Problem500, Problem503,
};
use crate::domain::Msisdn;
use crate::http::state::AppState;
use crate::signatures::{self, NewSignature, SignaturePurpose, SignatureView};

/// A signature to ask of the SIM in a phone.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = SignatureCreate)]
pub(crate) struct CreateBody {
    /// The SIM ký số subscriber's number.
    #[schema(value_type = super::schemas::Phone)]
    msisdn: String,
    /// `register`, `login` or `add_method`.
    #[schema(pattern = "^(register|login|add_method)$")]
    purpose: String,
    /// What the phone shows above the PIN prompt, 1..=160 characters (default: a text
    /// for the purpose). / Nội dung hiển thị trên điện thoại.
    #[schema(
        min_length = 1,
        max_length = 160,
        pattern = "^[^\\x00-\\x1f\\x7f-\\x9f]*[^\\x00-\\x1f\\x7f-\\x9f\\s][^\\x00-\\x1f\\x7f-\\x9f]*$"
    )]
    display_text: Option<String>,
    /// What to sign, base64 of 1..=1024 bytes (default: 32 random bytes).
    #[schema(
        min_length = 4,
        max_length = 1368,
        pattern = "^\\s*([A-Za-z0-9+/]{4})*([A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=|[A-Za-z0-9+/]{4})\\s*$"
    )]
    data_to_sign: Option<String>,
    /// Seconds the person has to answer, 30..=300 (default `signatures.default_timeout_seconds`).
    #[schema(minimum = 30, maximum = 300)]
    #[serde(default, deserialize_with = "super::body::opt_integer")]
    timeout_seconds: Option<i64>,
    /// Where to POST the request (as `GET /v1/signatures/{id}` shows it) when it ends;
    /// signed with the client's webhook secret. Omit it to long-poll instead.
    #[schema(
        max_length = 2048,
        pattern = "^\\s*[Hh][Tt][Tt][Pp][Ss]?://(([A-Za-z0-9-]+\\.)*[A-Za-z][A-Za-z0-9-]*|((25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])\\.){3}(25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9]))(:(6553[0-5]|655[0-2][0-9]|65[0-4][0-9]{2}|6[0-4][0-9]{3}|[1-5][0-9]{4}|[0-9]{1,4}))?([/?#][\\x21-\\x7e]*)?\\s*$",
        example = "https://portal.example.gov.vn/hooks/sim-signature"
    )]
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
            // Padding bits need not be zero: "00==" is one byte, as most encoders read it.
            let lenient = base64::engine::GeneralPurpose::new(
                &base64::alphabet::STANDARD,
                base64::engine::GeneralPurposeConfig::new().with_decode_allow_trailing_bits(true),
            );
            let bytes = lenient
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
            // As the documented pattern says: a host name of letters, digits and
            // hyphens (the last label starting with a letter), or an IPv4 address.
            let host_ok = parsed.host_str().is_some_and(|h| {
                let labels: Vec<&str> = h.split('.').collect();
                h.parse::<std::net::Ipv4Addr>().is_ok()
                    || (labels.iter().all(|l| {
                        !l.is_empty() && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                    }) && labels
                        .last()
                        .and_then(|l| l.chars().next())
                        .is_some_and(|c| c.is_ascii_alphabetic()))
            });
            if !matches!(parsed.scheme(), "http" | "https") || !host_ok || u.len() > 2048 {
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

/// Ask the SIM for a signature (SIM ký số) / Yêu cầu ký số trên SIM
///
/// The request is stored and pushed to the carrier's MSSP; the phone shows
/// `display_text` and asks for the PIN. Answers 202 at once: the result comes by
/// long-polling `GET /v1/signatures/{id}?wait=30`, or by `callback_url`. A signature
/// is returned only after it has been verified against `data_to_sign`, the CA and its CRL.
///
/// Gửi yêu cầu ký tới SIM; người dùng xác nhận và nhập PIN trên điện thoại.
#[utoipa::path(
    post, path = "/v1/signatures", tag = "signatures", operation_id = "createSignature",
    security(("api_key" = [])),
    request_body(content = CreateBody, examples(
        ("vi" = (summary = "Đăng nhập bằng SIM ký số", value = json!({
            "msisdn": "0826123088", "purpose": "login",
            "display_text": "Xác nhận đăng nhập Cổng Dịch vụ công quốc gia"}))),
        ("en" = (summary = "Register with a SIM signature, result by webhook", value = json!({
            "msisdn": "+84826123088", "purpose": "register",
            "display_text": "Confirm your registration on the National Public Service Portal",
            "timeout_seconds": 120, "callback_url": "https://portal.example.gov.vn/hooks/sim-signature"}))),
    )),
    responses(
        (status = 202, description = "Pushed to the phone; pending / Đã gửi tới điện thoại",
            body = SignatureView, headers(("Location" = String, description = "`/v1/signatures/{id}`"))),
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
    let body: CreateBody =
        read_json(&req, payload, state.settings.server.max_body_bytes, false).await?;
    let new = parse_create(body, &state)?;
    client.allow_purpose(new.purpose.as_str())?;
    let view = signatures::create(&state.signatures, client.id, new).await?;
    Ok(HttpResponse::build(StatusCode::ACCEPTED)
        .insert_header(("Location", format!("/v1/signatures/{}", view.id)))
        .json(view))
}

#[derive(Debug, Deserialize, IntoParams)]
pub struct WaitQuery {
    /// Seconds to wait for the request to end before answering, 0..=60 (long poll).
    #[param(value_type = Option<u32>, maximum = 60)]
    wait: Option<String>,
}

/// Read a signature request, waiting for its end if asked / Xem kết quả ký
#[utoipa::path(
    get, path = "/v1/signatures/{id}", tag = "signatures", operation_id = "getSignature",
    security(("api_key" = [])),
    params(("id" = Uuid, Path, description = "The request's id"), WaitQuery),
    responses(
        (status = 200, description = "The request, signed with the signer's identity once it is / Yêu cầu ký và người ký", body = SignatureView),
        (status = 401, response = Problem401),
        (status = 404, response = Problem404),
        (status = 422, response = Problem422),
        (status = 429, response = Problem429),
        (status = 500, response = Problem500),
        (status = 503, response = Problem503),
    ),
)]
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
    let view =
        signatures::wait(&state.signatures, client.id, id, Duration::from_secs(wait)).await?;
    Ok(HttpResponse::Ok().json(view))
}

/// Cancel a pending signature request / Hủy yêu cầu ký
#[utoipa::path(
    post, path = "/v1/signatures/{id}/cancel", tag = "signatures", operation_id = "cancelSignature",
    security(("api_key" = [])),
    params(("id" = Uuid, Path, description = "The request's id")),
    responses(
        (status = 200, description = "Canceled / Đã hủy", body = SignatureView),
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
    Ok(HttpResponse::Ok().json(signatures::cancel(&state.signatures, client.id, id).await?))
}

/// Who the portal believes owns the number.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct OwnerCheckBody {
    msisdn: String,
    id_type: Option<String>,
    id_number: String,
    full_name: Option<String>,
    date_of_birth: Option<String>,
}

/// Written by hand: which numbers are valid depends on `id_type`, so the body is one of
/// six shapes (one per kind, and the kind left out for a person's or an enterprise's
/// number), each with its own number pattern.
impl utoipa::PartialSchema for OwnerCheckBody {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::Schema> {
        use utoipa::openapi::schema::{
            AdditionalProperties, ObjectBuilder, OneOfBuilder, SchemaFormat, SchemaType, Type,
        };
        use utoipa::openapi::KnownFormat;
        let string = |description: &str| {
            ObjectBuilder::new()
                .schema_type(Type::String)
                .description(Some(description.to_owned()))
        };
        // Optional fields may also be sent as null.
        let optional = |description: &str| {
            ObjectBuilder::new()
                .schema_type(SchemaType::from_iter([Type::String, Type::Null]))
                .description(Some(description.to_owned()))
        };
        let shape = |kind: Option<&str>, number: &str, example: &str, enterprise: bool| {
            let mut o = ObjectBuilder::new()
                .title(Some(match (kind, enterprise) {
                    (Some(k), _) => k.to_owned(),
                    (None, false) => "person, kind read from the number".to_owned(),
                    (None, true) => "enterprise, kind read from the number".to_owned(),
                }))
                .property(
                    "msisdn",
                    <super::schemas::Phone as utoipa::PartialSchema>::schema(),
                )
                .required("msisdn");
            match kind {
                Some(kind) => {
                    o = o
                    .property(
                        "id_type",
                        string(
                            "The kind of identity document: `cccd` (12 digits), `cmnd` (9 or 12 \
                             digits), `passport` (one letter and 7 digits) or `mst` (an \
                             enterprise's tax code: 10 digits, or 13 for a branch, \
                             `0101234567-001`). / Loại giấy tờ: CCCD, CMND, hộ chiếu, mã số thuế.",
                        )
                        .enum_values(Some([kind])),
                    )
                    .required("id_type");
                }
                None => {
                    o = o.property(
                        "id_type",
                        ObjectBuilder::new()
                            .schema_type(Type::Null)
                            .description(Some("Left out (or null): read from the number.")),
                    );
                }
            }
            o = o
                .property(
                    "id_number",
                    string(if kind.is_some() {
                        "The number on that document; only that kind of number of the \
                         registered owner matches. / Số giấy tờ."
                    } else {
                        "The number; its kind is read from it (9 digits CMND, 12 CCCD, a \
                         letter and 7 digits a passport, 10 or 13 an MST). / Số giấy tờ."
                    })
                    .pattern(Some(number.to_owned()))
                    .examples([example]),
                )
                .required("id_number")
                .property(
                    "full_name",
                    optional(if enterprise {
                        "For a full match, the enterprise's registered name, 1..=200 \
                         characters. / Tên doanh nghiệp."
                    } else {
                        "For a full match, 1..=200 characters. / Họ và tên."
                    })
                    .min_length(Some(1))
                    .max_length(Some(200))
                    .pattern(Some("\\S")),
                );
            if !enterprise {
                o = o.property(
                    "date_of_birth",
                    optional("For a full match, `YYYY-MM-DD`. / Ngày sinh.")
                        .format(Some(SchemaFormat::KnownFormat(KnownFormat::Date))),
                );
            }
            o.additional_properties(Some(AdditionalProperties::FreeForm(false)))
        };
        OneOfBuilder::new()
            .description(Some(
                "Who the portal believes owns the number: an identity document and, for a \
                 full match, the name and date of birth. / Người được cho là chủ thuê bao.",
            ))
            .item(shape(
                Some("cccd"),
                "^\\s*[0-9]{12}\\s*$",
                "001099012345",
                false,
            ))
            .item(shape(
                Some("cmnd"),
                "^\\s*([0-9]{9}|[0-9]{12})\\s*$",
                "012345678",
                false,
            ))
            .item(shape(
                Some("passport"),
                "^\\s*[A-Za-z][0-9]{7}\\s*$",
                "C1234567",
                false,
            ))
            .item(shape(
                Some("mst"),
                "^\\s*([0-9]{10}|[0-9]{13}|[0-9]{10}-[0-9]{3})\\s*$",
                "0101234567",
                true,
            ))
            .item(shape(
                None,
                "^\\s*([0-9]{9}|[0-9]{12}|[A-Za-z][0-9]{7})\\s*$",
                "001099012345",
                false,
            ))
            .item(shape(
                None,
                "^\\s*([0-9]{10}|[0-9]{13}|[0-9]{10}-[0-9]{3})\\s*$",
                "0101234567",
                true,
            ))
            .into()
    }
}

impl ToSchema for OwnerCheckBody {
    fn name() -> std::borrow::Cow<'static, str> {
        "SubscriberCheck".into()
    }
}

/// What the carrier answered; never the registered owner's data.
#[derive(serde::Serialize, ToSchema)]
#[schema(as = SubscriberCheckResult)]
pub(crate) struct OwnerCheckView {
    /// `full` (number, identity number and the name and date of birth given all match),
    /// `partial` (the identity number matches, not all else), `none`, or
    /// `unknown_subscriber`. / Kết quả: chính chủ, khớp một phần, không khớp, không có thuê bao.
    #[serde(rename = "match")]
    #[schema(example = "full", pattern = "^(full|partial|none|unknown_subscriber)$")]
    result: String,
    #[schema(example = "viettel")]
    carrier: String,
}

/// Is this number registered to this person? (thuê bao chính chủ) / Kiểm tra chính chủ
///
/// Asks the carrier that serves the number. The answer never reveals the registered
/// owner's data; each check is audited and billed.
#[utoipa::path(
    post, path = "/v1/subscriber-checks", tag = "signatures", operation_id = "checkSubscriber",
    security(("api_key" = [])),
    request_body(content = OwnerCheckBody, examples(
        ("vi" = (summary = "Đăng ký bằng thuê bao di động chính chủ", value = json!({
            "msisdn": "0826123088", "id_number": "001099012345",
            "full_name": "Nguyễn Văn An", "date_of_birth": "1999-05-17"}))),
        ("en" = (summary = "Identity number only (at best a partial match)", value = json!({
            "msisdn": "+84826123088", "id_number": "001099012345"}))),
    )),
    responses(
        (status = 200, description = "The carrier's answer / Kết quả của nhà mạng", body = OwnerCheckView),
        (status = 400, response = Problem400),
        (status = 401, response = Problem401),
        (status = 408, response = Problem408),
        (status = 413, response = Problem413),
        (status = 415, response = Problem415),
        (status = 422, response = Problem422),
        (status = 429, response = Problem429),
        (status = 500, response = Problem500),
        (status = 503, response = Problem503),
    ),
)]
pub async fn subscriber_check(
    req: HttpRequest,
    payload: web::Payload,
    client: ApiClient,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let body: OwnerCheckBody =
        read_json(&req, payload, state.settings.server.max_body_bytes, false).await?;
    let msisdn = Msisdn::parse(&body.msisdn).map_err(|e| ApiError::InvalidMsisdn(e.to_string()))?;
    let found = crate::signatures::owner_check::check(
        &state.signatures,
        client.id,
        crate::signatures::owner_check::OwnerCheck {
            msisdn,
            id_type: body.id_type,
            id_number: body.id_number,
            full_name: body.full_name,
            date_of_birth: body.date_of_birth,
        },
    )
    .await?;
    Ok(HttpResponse::Ok().json(OwnerCheckView {
        result: found.result,
        carrier: found.carrier.as_str().to_owned(),
    }))
}
