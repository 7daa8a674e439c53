//! The schemas the handlers' OpenAPI annotations name: the problem body, one response
//! per problem status, and the phone number and address formats.

use serde::Serialize;
use utoipa::openapi::example::ExampleBuilder;
use utoipa::openapi::schema::{ObjectBuilder, Type};
use utoipa::openapi::{ContentBuilder, RefOr, Response, ResponseBuilder, Schema};
use utoipa::{PartialSchema, ToSchema};

use super::error::PROBLEMS;

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
    /// The network that would block the SMS (`template-not-registered`).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(example = "viettel")]
    carrier: Option<String>,
    /// The brandname it would be sent from there (`template-not-registered`).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(example = "UBND-HN")]
    brandname: Option<String>,
    /// The template that is missing, `purpose:locale` (`template-not-registered`).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(example = "login:vi")]
    template: Option<String>,
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
pub(crate) fn phone_schema(carriers: &[carrier_adapters::Carrier]) -> Schema {
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
            "template-not-registered" => {
                example["carrier"] = "viettel".into();
                example["brandname"] = "UBND-HN".into();
                example["template"] = "login:vi".into();
            }
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
        "template-not-registered" => "viettel blocks SMS that are not registered for brandname UBND-HN: no template for login (vi) is registered with it",
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
