//! The OpenAPI 3.1 document, built from the handlers' `#[utoipa::path]` annotations, the
//! views' schemas and the table of problems (`error::PROBLEMS`); served at
//! `/openapi.json`, with Swagger UI at `/docs/`.

use std::sync::LazyLock;

use actix_web::{web, HttpResponse};
use serde::Serialize;
use utoipa::openapi::example::ExampleBuilder;
use utoipa::openapi::schema::{ObjectBuilder, Type};
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::openapi::{ContentBuilder, RefOr, Response, ResponseBuilder, Schema};
use utoipa::{Modify, OpenApi, PartialSchema, ToSchema};

use super::error::PROBLEMS;
use crate::startup::AppState;

/// An RFC 9457 problem: every error the API answers with, as `application/problem+json`.
#[derive(Serialize, ToSchema)]
#[allow(dead_code)] // Only its schema is used; `ApiError` writes the bodies.
pub struct Problem {
    /// `/problems/{slug}`: stable, for programs to switch on.
    #[serde(rename = "type")]
    kind: ProblemType,
    /// A short English title of the type.
    title: String,
    /// The HTTP status, repeated.
    status: u16,
    /// What happened, in English, for people.
    detail: String,
    /// The request field at fault (`invalid-field`, `invalid-msisdn`).
    #[serde(skip_serializing_if = "Option::is_none")]
    field: Option<String>,
    /// Seconds to wait before trying again (`429`), also sent as `Retry-After`.
    #[serde(skip_serializing_if = "Option::is_none")]
    retry_after: Option<u64>,
}

/// The `type` of a problem: one of `error::PROBLEMS`.
#[derive(Serialize)]
pub struct ProblemType;

impl PartialSchema for ProblemType {
    fn schema() -> RefOr<Schema> {
        let mut description = String::from("The kind of problem:\n\n");
        for p in PROBLEMS {
            description.push_str(&format!(
                "- `/problems/{}` ({}): {} — {}\n",
                p.slug, p.status, p.en, p.vi
            ));
        }
        ObjectBuilder::new()
            .schema_type(Type::String)
            .enum_values(Some(
                PROBLEMS.iter().map(|p| format!("/problems/{}", p.slug)),
            ))
            .description(Some(description))
            .into()
    }
}

impl ToSchema for ProblemType {}

/// A Vietnamese mobile number: the pattern is built from the numbering plan the gateway
/// routes by, so a number it documents as valid is one it accepts.
pub struct Phone;

impl PartialSchema for Phone {
    fn schema() -> RefOr<Schema> {
        phone_schema(&carrier_adapters::Carrier::ALL).into()
    }
}

/// An IPv4 or IPv6 address.
pub struct IpAddress;

impl PartialSchema for IpAddress {
    fn schema() -> RefOr<Schema> {
        let format = |f: utoipa::openapi::KnownFormat| {
            ObjectBuilder::new()
                .schema_type(Type::String)
                .format(Some(utoipa::openapi::SchemaFormat::KnownFormat(f)))
        };
        utoipa::openapi::OneOfBuilder::new()
            .item(format(utoipa::openapi::KnownFormat::Ipv4))
            .item(format(utoipa::openapi::KnownFormat::Ipv6))
            .description(Some("An IPv4 or IPv6 address."))
            .examples(["203.113.131.5"])
            .into()
    }
}

impl ToSchema for IpAddress {}

/// A number of one of `carriers`' networks, by prefix.
fn phone_schema(carriers: &[carrier_adapters::Carrier]) -> Schema {
    let mut prefixes: Vec<&str> = carriers
        .iter()
        .flat_map(|c| c.prefixes())
        .map(|p| &p[1..])
        .collect();
    prefixes.sort_unstable();
    ObjectBuilder::new()
        .schema_type(Type::String)
        .pattern(Some(format!(
            "^\\s*(\\+84|0084|84|0)?({})[0-9]{{7}}\\s*$",
            prefixes.join("|")
        )))
        .description(Some(
            "A Vietnamese mobile number in national (`0826123088`), international \
             (`84826123088`, `0084826123088`) or E.164 (`+84826123088`) form; spaces, dots, \
             dashes and brackets between digits are also read. Landlines and unallocated \
             prefixes are refused. / Số di động Việt Nam.",
        ))
        .examples(["0826123088"])
        .into()
}

impl ToSchema for Phone {}

/// The response for every problem of one status: its types listed, one example each.
fn problem_response(status: u16) -> Response {
    let kinds: Vec<_> = PROBLEMS.iter().filter(|p| p.status == status).collect();
    let mut description = String::from("Problem details (RFC 9457):");
    for p in &kinds {
        description.push_str(&format!("\n- `/problems/{}`: {} / {}", p.slug, p.en, p.vi));
    }
    let mut content =
        ContentBuilder::new().schema(Some(utoipa::openapi::Ref::from_schema_name("Problem")));
    for p in &kinds {
        let mut example = serde_json::json!({
            "type": format!("/problems/{}", p.slug),
            "title": p.title,
            "status": p.status,
            "detail": example_detail(p.slug),
        });
        match p.slug {
            "invalid-field" => example["field"] = "purpose".into(),
            "invalid-msisdn" => example["field"] = "msisdn".into(),
            _ => {}
        }
        if status == 429 {
            example["retry_after"] = if p.slug == "account-locked" { 3600 } else { 42 }.into();
        }
        content = content.examples_from_iter([(
            p.slug,
            ExampleBuilder::new()
                .summary(p.title)
                .value(Some(example))
                .build(),
        )]);
    }
    ResponseBuilder::new()
        .description(description)
        .content("application/problem+json", content.build())
        .build()
}

/// What `detail` says for each kind, as the gateway writes it.
fn example_detail(slug: &str) -> &'static str {
    match slug {
        "malformed-json" => "unknown field `phone`, expected one of `msisdn`, `purpose`, `locale`, `code_length`, `ttl_seconds`, `account_ref`, `client_ip` at line 1 column 8",
        "unauthorized" => "missing or invalid API key",
        "purpose-not-allowed" => "this client may not ask for purpose \"register\"",
        "not-found" => "not found",
        "method-not-allowed" => "method not allowed; this path takes GET",
        "verification-not-pending" => "the verification is approved, not pending",
        "payload-too-large" => "request body is larger than 16384 bytes",
        "request-timeout" => "the request body did not arrive within 5 s",
        "unsupported-media-type" => "request body must be application/json",
        "invalid-field" => "purpose must be one of register, login, change_phone, add_method, reset_password; got \"signup\"",
        "invalid-msisdn" => "not a Vietnamese mobile number: 0123",
        "idempotency-key-reused" => "Idempotency-Key was used with a different request",
        "resend-too-early" => "a new code can be sent in 42 s",
        "max-sends-reached" => "this verification already sent 3 codes; start a new one",
        "rate-limited" => "too many codes sent to this number; try again later",
        "account-locked" => "this account is locked for OTP after too many failed checks; an operator can unlock it",
        "internal" => "internal error",
        _ => "service temporarily unavailable",
    }
}

macro_rules! problem_responses {
    ($($name:ident = $status:literal),* $(,)?) => {$(
        #[doc = concat!("Problems answered with status ", stringify!($status), ".")]
        pub struct $name;
        impl<'r> utoipa::ToResponse<'r> for $name {
            fn response() -> (&'r str, RefOr<Response>) {
                (stringify!($name), problem_response($status).into())
            }
        }
    )*};
}

problem_responses!(
    Problem400 = 400,
    Problem401 = 401,
    Problem403 = 403,
    Problem404 = 404,
    Problem408 = 408,
    Problem409 = 409,
    Problem413 = 413,
    Problem415 = 415,
    Problem422 = 422,
    Problem429 = 429,
    Problem500 = 500,
    Problem503 = 503,
);

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
        super::health,
        super::healthz,
        super::readyz,
        super::metrics::metrics,
        super::metrics::carriers,
    ),
    components(
        schemas(Problem, crate::signatures::SignatureEvent),
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
    let signing: Vec<_> = state.mssps.keys().copied().collect();
    let checking: Vec<_> = state
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
    doc["webhooks"] = webhooks();
    HttpResponse::Ok().json(doc)
}

/// OpenAPI 3.1's `webhooks`: what the gateway POSTs to a client's `callback_url`.
fn webhooks() -> serde_json::Value {
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
