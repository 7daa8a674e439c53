//! The OpenAPI 3.1 document, built from the handlers' `#[utoipa::path]` annotations, the
//! views' schemas and the table of problems (`error::PROBLEMS`); served at
//! `/openapi.json`, with Swagger UI at `/docs/`.

use std::sync::LazyLock;

use actix_web::{web, HttpResponse};
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::openapi::{RefOr, Schema};
use utoipa::{Modify, OpenApi};

use super::health;
use super::schemas::*;
use super::state::AppState;

/// The security schemes: the client's API key, and the operators' admin key.
struct Security;

impl Modify for Security {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        let mut api_key = Http::new(HttpAuthScheme::Bearer);
        api_key.description = Some(
            "The client's API key (`gateway client add` prints it once): \
             `Authorization: Bearer KEY`. / Khóa API của ứng dụng."
                .into(),
        );
        components.add_security_scheme("api_key", SecurityScheme::Http(api_key));
        let mut admin = Http::new(HttpAuthScheme::Bearer);
        admin.description = Some(
            "The operators' key (`admin.api_key`); absent unless configured, and then \
             every admin path answers 404. `/status` also takes it as the password of Basic \
             auth. / Khóa quản trị."
                .into(),
        );
        components.add_security_scheme("admin_key", SecurityScheme::Http(admin));
    }
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "OTP and SIM-signature gateway",
        description = "The gateway Vietnam's public-service portals call to prove that a person holds a phone: \
one-time codes by SMS (`/v1/otp`), SIM ký số signatures (`/v1/signatures`, ETSI TS 102 204 through \
Viettel, VinaPhone and MobiFone) and the carrier's owner check (`/v1/subscriber-checks`).\n\n\
Cổng xác thực số điện thoại cho Cổng Dịch vụ công: gửi mã OTP qua SMS, ký số trên SIM (SIM ký số) \
và kiểm tra thuê bao chính chủ với nhà mạng.\n\n\
Every error is `application/problem+json` (RFC 9457) with a stable `type`; every answer carries \
`X-Request-Id` (the caller's, when it sends a sane one). Phone numbers come back masked \
(`082****088`); codes never come back.",
        license(name = "Apache-2.0"),
    ),
    paths(
        super::otp::create,
        super::otp::get,
        super::otp::cancel,
        super::otp::resend,
        super::otp::check,
        super::signatures::create,
        super::signatures::get,
        super::signatures::cancel,
        super::signatures::subscriber_check,
        super::usage::get,
        super::audit::list,
        super::admin::unlock,
        super::status::status,
        super::carriers::notification,
        super::carriers::zalo_event,
        health::health,
        health::healthz,
        health::readyz,
        super::metrics::metrics,
        super::metrics::carriers,
    ),
    components(
        schemas(Problem, crate::signatures::SignatureEvent, crate::otp::OtpEvent),
        responses(
            Problem400, Problem401, Problem403, Problem404, Problem408, Problem409, Problem413,
            Problem415, Problem422, Problem429, Problem500, Problem503,
        ),
    ),
    modifiers(&Security),
    tags(
        (name = "otp", description = "One-time codes by SMS / Mã OTP qua SMS"),
        (name = "signatures", description = "SIM ký số (ETSI TS 102 204) and the owner check / Ký số trên SIM và kiểm tra chính chủ"),
        (name = "account", description = "The client's usage, bill and audit trail / Sản lượng, cước và nhật ký"),
        (name = "operators", description = "Operators: status, unlock, health, metrics / Vận hành"),
        (name = "carriers", description = "Called by the carriers, not by the portal / Nhà mạng gọi về"),
    ),
)]
pub struct ApiDoc;

/// The document, built once.
pub static DOCUMENT: LazyLock<utoipa::openapi::OpenApi> = LazyLock::new(ApiDoc::openapi);

/// `GET /openapi.json`: the document, with what depends on this deployment's
/// configuration filled in: which networks offer SIM signatures and the owner check.
pub async fn document(state: web::Data<AppState>) -> HttpResponse {
    let mut doc = DOCUMENT.clone();
    let signing: Vec<_> = state.signatures.mssps.keys().copied().collect();
    let checking: Vec<_> = state
        .signatures
        .mssps
        .iter()
        .filter(|(_, m)| m.route.owner_check_url.is_some())
        .map(|(c, _)| *c)
        .collect();
    restrict_msisdn(
        &mut doc,
        "SignatureCreate",
        &signing,
        "SIM signatures / ký số trên SIM",
    );
    restrict_msisdn(
        &mut doc,
        "SubscriberCheck",
        &checking,
        "the owner check / kiểm tra chính chủ",
    );
    let mut doc = serde_json::to_value(doc).unwrap_or_default();
    // No channel twice (utoipa has no attribute for it).
    if let Some(channels) = doc.pointer_mut("/components/schemas/OtpCreate/properties/channels") {
        channels["uniqueItems"] = serde_json::Value::Bool(true);
    }
    doc["webhooks"] = webhooks();
    HttpResponse::Ok().json(doc)
}

/// OpenAPI 3.1's `webhooks`: what the gateway POSTs to a client's `callback_url`.
fn webhooks() -> serde_json::Value {
    let mut hooks = signature_webhooks();
    for kind in crate::webhooks::OTP_EVENT_TYPES {
        let name = format!(
            "otp{}",
            kind.trim_start_matches("otp.")
                .split('_')
                .map(|w| w[..1].to_uppercase() + &w[1..])
                .collect::<String>()
        );
        hooks[&name] = serde_json::json!({
            "post": {
                "operationId": name,
                "tags": ["otp"],
                "summary": format!("`{kind}`: {}", otp_event_meaning(kind)),
                "description": "Sent to the client's OTP callback URL (`gateway client set \
                    --otp-callback-url`) in the Standard Webhooks format, as `signatureCompleted` \
                    is: verify `webhook-signature` and handle each `webhook-id` once. The events of \
                    one verification go out in the order they happened; `data.channel` is the \
                    attempt's channel.",
                "parameters": [
                    {"name": "webhook-id", "in": "header", "required": true, "schema": {"type": "string"}},
                    {"name": "webhook-timestamp", "in": "header", "required": true, "schema": {"type": "string"}},
                    {"name": "webhook-signature", "in": "header", "required": true, "schema": {"type": "string"}},
                ],
                "requestBody": {
                    "required": true,
                    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/OtpEvent"}}},
                },
                "responses": {
                    "2XX": {"description": "Received; not sent again"},
                    "410": {"description": "Gone: no more deliveries to this URL for this client"},
                    "default": {"description": "Sent again later"},
                },
            },
        });
    }
    hooks
}

fn otp_event_meaning(kind: &str) -> &'static str {
    match kind {
        "otp.sent" => "a channel took the code (SMSC or Zalo) / đã gửi",
        "otp.delivered" => "the code reached the phone or the Zalo app / đã đến máy",
        "otp.failed" => "the last channel failed; no other is left / gửi thất bại",
        "otp.fallback" => "a channel failed or timed out; the next is tried / chuyển kênh",
        "otp.approved" => "the right code was checked / xác thực thành công",
        "otp.expired" => "the code ran out unused / mã hết hạn",
        _ => "",
    }
}

fn signature_webhooks() -> serde_json::Value {
    serde_json::json!({
        "signatureCompleted": {
            "post": {
                "operationId": "signatureCompleted",
                "tags": ["signatures"],
                "summary": "A signature request ended / Yêu cầu ký đã kết thúc",
                "description": "Sent to the request's `callback_url` once, when it ends (signed, \
                    refused, expired, …), in the Standard Webhooks format: verify \
                    `webhook-signature` (`v1,` + base64 HMAC-SHA256 of \
                    `{webhook-id}.{webhook-timestamp}.{body}` under the client's `whsec_` \
                    secret) and refuse old timestamps. Retried with back-off until a 2xx; \
                    410 Gone stops deliveries to that URL. The same `webhook-id` may arrive \
                    more than once: handle it once.",
                "parameters": [
                    {"name": "webhook-id", "in": "header", "required": true, "schema": {"type": "string"},
                     "description": "The event's id, the same on every retry"},
                    {"name": "webhook-timestamp", "in": "header", "required": true, "schema": {"type": "string"},
                     "description": "Seconds since the epoch when this attempt was signed"},
                    {"name": "webhook-signature", "in": "header", "required": true, "schema": {"type": "string"},
                     "description": "`v1,<base64 HMAC-SHA256>`"},
                ],
                "requestBody": {
                    "required": true,
                    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/SignatureEvent"}}},
                },
                "responses": {
                    "2XX": {"description": "Received; not sent again"},
                    "410": {"description": "Gone: no more deliveries to this URL for this client"},
                    "default": {"description": "Sent again later"},
                },
            },
        },
    })
}

/// Narrows the `msisdn` of body schema `name` to the numbers of `carriers`: the gateway
/// refuses others (422, field `msisdn`).
fn restrict_msisdn(
    doc: &mut utoipa::openapi::OpenApi,
    name: &str,
    carriers: &[carrier_adapters::Carrier],
    service: &str,
) {
    let Some(RefOr::T(schema)) = doc
        .components
        .as_mut()
        .and_then(|c| c.schemas.get_mut(name))
    else {
        return;
    };
    // One object, or one of several shapes (`SubscriberCheck`): each has the field.
    let bodies: Vec<&mut utoipa::openapi::schema::Object> = match schema {
        Schema::Object(body) => vec![body],
        Schema::OneOf(one) => one
            .items
            .iter_mut()
            .filter_map(|item| match item {
                RefOr::T(Schema::Object(body)) => Some(body),
                _ => None,
            })
            .collect(),
        _ => return,
    };
    let mut msisdn = phone_schema(carriers);
    if let Schema::Object(o) = &mut msisdn {
        let names: Vec<&str> = carriers.iter().map(|c| c.as_str()).collect();
        o.description = Some(format!(
            "A number of a network that offers {service} on this gateway: {}. Numbers of \
             other networks are refused (422, field `msisdn`).",
            if names.is_empty() {
                "none".to_owned()
            } else {
                names.join(", ")
            }
        ));
        if carriers.is_empty() {
            o.pattern = Some("^$.".into());
        }
    }
    for body in bodies {
        body.properties
            .insert("msisdn".into(), msisdn.clone().into());
    }
}

/// `/docs` and `/docs/…`: Swagger UI over `/openapi.json` (its files are built into the
/// binary, so the page works without reaching the internet).
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/openapi.json", web::get().to(document))
        .route(
            "/docs",
            web::get().to(|| async {
                HttpResponse::PermanentRedirect()
                    .insert_header(("Location", "/docs/"))
                    .finish()
            }),
        )
        .service(
            utoipa_swagger_ui::SwaggerUi::new("/docs/{_:.*}")
                .config(utoipa_swagger_ui::Config::from("/openapi.json")),
        );
}
