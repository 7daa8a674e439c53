//! RFC 9457 problem details: every error the API returns, with a stable `type`.
//! 5xx bodies carry no internals; the cause chain goes to the log.

use actix_web::http::{header, StatusCode};
use actix_web::{HttpResponse, ResponseError};
use serde_json::json;

use crate::clients::PurposeNotAllowed;
use crate::failure::Failure;
use crate::limits::Limited;
use crate::otp::OtpError;
use crate::signatures::SignatureError;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("missing or invalid API key")]
    Unauthorized,
    #[error("not found")]
    NotFound,
    #[error("{0}")]
    MalformedJson(String),
    #[error("request body must be application/json")]
    UnsupportedMediaType,
    #[error("request body is larger than {limit} bytes")]
    PayloadTooLarge { limit: usize },
    #[error("the request body did not arrive within {seconds} s")]
    RequestTimeout { seconds: f64 },
    #[error("{detail}")]
    InvalidField { field: &'static str, detail: String },
    #[error("{0}")]
    InvalidMsisdn(String),
    #[error("a new code can be sent in {retry_after} s")]
    ResendTooEarly { retry_after: u64 },
    #[error("{detail}")]
    RateLimited { retry_after: u64, detail: String },
    #[error(
        "this account is locked for OTP after too many failed checks; an operator can unlock it"
    )]
    AccountLocked,
    #[error("this verification already sent {max_sends} codes; start a new one")]
    MaxSendsReached { max_sends: i32 },
    #[error("the verification is {status}, not pending")]
    NotPending { status: String },
    #[error("Idempotency-Key was used with a different request")]
    IdempotencyKeyReused,
    #[error("this client may not ask for purpose {purpose:?}")]
    PurposeNotAllowed { purpose: String },
    #[error("{detail}")]
    TemplateUnregistered {
        carrier: String,
        brandname: String,
        template: String,
        detail: String,
    },
    #[error("{detail}")]
    ChannelUnavailable { channel: String, detail: String },
    #[error("method not allowed; this path takes {allow}")]
    MethodNotAllowed { allow: &'static str },
    #[error("service temporarily unavailable")]
    Unavailable(#[source] anyhow::Error),
    #[error("internal error")]
    Internal(anyhow::Error),
}

/// One kind of problem the API answers with: its `type` (`/problems/{slug}`), title and
/// status, and what it means in English and Vietnamese. The OpenAPI document is built
/// from this table, and a test checks every `ApiError` against it.
pub struct ProblemKind {
    pub slug: &'static str,
    pub title: &'static str,
    pub status: u16,
    pub en: &'static str,
    pub vi: &'static str,
}

pub const PROBLEMS: &[ProblemKind] = &[
    ProblemKind { slug: "malformed-json", title: "Malformed JSON body", status: 400,
        en: "The body is not JSON, or has an unknown field or a field of the wrong type.",
        vi: "Nội dung không phải JSON hợp lệ, hoặc có trường lạ hay sai kiểu." },
    ProblemKind { slug: "unauthorized", title: "Unauthorized", status: 401,
        en: "No API key, or the key is unknown, revoked or its client disabled.",
        vi: "Thiếu khóa API, hoặc khóa không tồn tại, đã thu hồi hay ứng dụng đã bị khóa." },
    ProblemKind { slug: "purpose-not-allowed", title: "Purpose not allowed", status: 403,
        en: "This client was not given this purpose.",
        vi: "Ứng dụng này không được phép dùng mục đích này." },
    ProblemKind { slug: "not-found", title: "Not found", status: 404,
        en: "No such resource for this client (another client's ids are not found either).",
        vi: "Không tìm thấy (mã của ứng dụng khác cũng không tìm thấy)." },
    ProblemKind { slug: "method-not-allowed", title: "Method not allowed", status: 405,
        en: "The path exists but not with this method.",
        vi: "Đường dẫn có nhưng không hỗ trợ phương thức này." },
    ProblemKind { slug: "verification-not-pending", title: "Verification not pending", status: 409,
        en: "The verification or signature request has already ended.",
        vi: "Phiên xác thực hoặc yêu cầu ký đã kết thúc." },
    ProblemKind { slug: "request-timeout", title: "Request timeout", status: 408,
        en: "The request body did not arrive in time (`server.body_timeout`); the connection is closed.",
        vi: "Nội dung yêu cầu không đến kịp thời hạn; kết nối bị đóng." },
    ProblemKind { slug: "payload-too-large", title: "Request body too large", status: 413,
        en: "The body is larger than the server accepts.",
        vi: "Nội dung yêu cầu quá lớn." },
    ProblemKind { slug: "unsupported-media-type", title: "Unsupported media type", status: 415,
        en: "The body must be application/json.",
        vi: "Nội dung phải là application/json." },
    ProblemKind { slug: "invalid-field", title: "Invalid field", status: 422,
        en: "A field (named in `field`) has a value out of its range; `detail` says which values are accepted.",
        vi: "Một trường (xem `field`) có giá trị không hợp lệ; `detail` nêu giá trị được chấp nhận." },
    ProblemKind { slug: "invalid-msisdn", title: "Invalid phone number", status: 422,
        en: "`msisdn` is not a Vietnamese mobile number (0xxxxxxxxx, 84xxxxxxxxx or +84xxxxxxxxx).",
        vi: "`msisdn` không phải số di động Việt Nam (0xxxxxxxxx, 84xxxxxxxxx hoặc +84xxxxxxxxx)." },
    ProblemKind { slug: "idempotency-key-reused", title: "Idempotency key reused", status: 422,
        en: "This Idempotency-Key was used with a different request body.",
        vi: "Idempotency-Key này đã dùng cho một yêu cầu khác." },
    ProblemKind { slug: "template-not-registered", title: "SMS template not registered", status: 422,
        en: "The network that serves the number blocks SMS that are not registered for the brandname, and this client registered no template for the purpose and language there; `carrier`, `brandname` and `template` (`purpose:locale`) say which (`gateway client set --template`).",
        vi: "Nhà mạng đang phục vụ số này chặn tin nhắn chưa đăng ký mẫu cho brandname, và ứng dụng chưa đăng ký mẫu cho mục đích và ngôn ngữ này; `carrier`, `brandname` và `template` cho biết mẫu nào cần đăng ký." },
    ProblemKind { slug: "channel-unavailable", title: "Channel unavailable", status: 422,
        en: "A channel the request (or the client's policy) names cannot carry this code: `zalo` needs a `[zalo]` app and an approved ZNS template for the purpose; `channel` says which.",
        vi: "Kênh được yêu cầu không gửi được mã này: `zalo` cần cấu hình ứng dụng Zalo OA và mẫu ZNS đã duyệt cho mục đích; `channel` cho biết kênh nào." },
    ProblemKind { slug: "resend-too-early", title: "Too early to resend", status: 429,
        en: "A new code can be sent after `retry_after` seconds (\"Gửi lại OTP\" waits).",
        vi: "Chỉ được gửi lại mã sau `retry_after` giây (nút \"Gửi lại OTP\" chờ)." },
    ProblemKind { slug: "max-sends-reached", title: "Too many codes sent", status: 429,
        en: "This verification sent its last code; start a new one.",
        vi: "Phiên xác thực đã gửi đủ số mã; hãy tạo phiên mới." },
    ProblemKind { slug: "rate-limited", title: "Too many requests", status: 429,
        en: "A limit on the number, the end user's address, the client's rate or its daily quota; wait `retry_after` seconds.",
        vi: "Vượt giới hạn theo số điện thoại, địa chỉ IP, tốc độ hoặc hạn mức ngày của ứng dụng; chờ `retry_after` giây." },
    ProblemKind { slug: "account-locked", title: "Account locked", status: 429,
        en: "Too many failed checks on this account; an operator can unlock it.",
        vi: "Tài khoản bị khóa OTP do nhập sai quá nhiều lần; quản trị viên có thể mở khóa." },
    ProblemKind { slug: "internal", title: "Internal error", status: 500,
        en: "A fault in the gateway; the log has the cause, the body has none.",
        vi: "Lỗi trong cổng; nguyên nhân ghi trong nhật ký, không trả về." },
    ProblemKind { slug: "unavailable", title: "Service unavailable", status: 503,
        en: "The database or the carrier did not answer; retry later.",
        vi: "Cơ sở dữ liệu hoặc nhà mạng không phản hồi; thử lại sau." },
];

impl ApiError {
    pub(crate) fn kind(&self) -> (&'static str, &'static str) {
        match self {
            ApiError::Unauthorized => ("unauthorized", "Unauthorized"),
            ApiError::NotFound => ("not-found", "Not found"),
            ApiError::MalformedJson(_) => ("malformed-json", "Malformed JSON body"),
            ApiError::UnsupportedMediaType => ("unsupported-media-type", "Unsupported media type"),
            ApiError::PayloadTooLarge { .. } => ("payload-too-large", "Request body too large"),
            ApiError::RequestTimeout { .. } => ("request-timeout", "Request timeout"),
            ApiError::InvalidField { .. } => ("invalid-field", "Invalid field"),
            ApiError::InvalidMsisdn(_) => ("invalid-msisdn", "Invalid phone number"),
            ApiError::ResendTooEarly { .. } => ("resend-too-early", "Too early to resend"),
            ApiError::RateLimited { .. } => ("rate-limited", "Too many requests"),
            ApiError::AccountLocked => ("account-locked", "Account locked"),
            ApiError::MaxSendsReached { .. } => ("max-sends-reached", "Too many codes sent"),
            ApiError::NotPending { .. } => ("verification-not-pending", "Verification not pending"),
            ApiError::IdempotencyKeyReused => ("idempotency-key-reused", "Idempotency key reused"),
            ApiError::PurposeNotAllowed { .. } => ("purpose-not-allowed", "Purpose not allowed"),
            ApiError::TemplateUnregistered { .. } => {
                ("template-not-registered", "SMS template not registered")
            }
            ApiError::ChannelUnavailable { .. } => ("channel-unavailable", "Channel unavailable"),
            ApiError::MethodNotAllowed { .. } => ("method-not-allowed", "Method not allowed"),
            ApiError::Unavailable(_) => ("unavailable", "Service unavailable"),
            ApiError::Internal(_) => ("internal", "Internal error"),
        }
    }
}

/// Seconds a client is asked to wait after a 503.
pub const UNAVAILABLE_RETRY_AFTER: u64 = 1;

impl From<Failure> for ApiError {
    fn from(e: Failure) -> Self {
        match e {
            Failure::Unavailable(e) => ApiError::Unavailable(e),
            Failure::Internal(e) => ApiError::Internal(e),
        }
    }
}

impl From<tokio_postgres::Error> for ApiError {
    fn from(e: tokio_postgres::Error) -> Self {
        Failure::from(e).into()
    }
}

impl From<anyhow::Error> for ApiError {
    fn from(e: anyhow::Error) -> Self {
        Failure::from(e).into()
    }
}

impl From<deadpool_postgres::PoolError> for ApiError {
    fn from(e: deadpool_postgres::PoolError) -> Self {
        Failure::from(e).into()
    }
}

impl From<Limited> for ApiError {
    fn from(e: Limited) -> Self {
        ApiError::RateLimited {
            retry_after: e.retry_after,
            detail: e.detail,
        }
    }
}

impl From<PurposeNotAllowed> for ApiError {
    fn from(e: PurposeNotAllowed) -> Self {
        ApiError::PurposeNotAllowed { purpose: e.purpose }
    }
}

impl From<OtpError> for ApiError {
    fn from(e: OtpError) -> Self {
        match e {
            OtpError::NotFound => ApiError::NotFound,
            OtpError::InvalidField { field, detail } => ApiError::InvalidField { field, detail },
            OtpError::IdempotencyKeyReused => ApiError::IdempotencyKeyReused,
            OtpError::PurposeNotAllowed(e) => e.into(),
            OtpError::AccountLocked => ApiError::AccountLocked,
            OtpError::NotPending { status } => ApiError::NotPending { status },
            OtpError::ResendTooEarly { retry_after } => ApiError::ResendTooEarly { retry_after },
            OtpError::MaxSendsReached { max_sends } => ApiError::MaxSendsReached { max_sends },
            e @ OtpError::TemplateUnregistered(_) => {
                let detail = e.to_string();
                let OtpError::TemplateUnregistered(u) = e else {
                    unreachable!()
                };
                ApiError::TemplateUnregistered {
                    carrier: u.carrier.as_str().to_owned(),
                    brandname: u.brandname,
                    template: crate::clients::template_key(u.purpose, u.locale),
                    detail,
                }
            }
            OtpError::ChannelUnavailable { channel, detail } => ApiError::ChannelUnavailable {
                channel: channel.as_str().to_owned(),
                detail,
            },
            OtpError::Limited(e) => e.into(),
            OtpError::Failure(e) => e.into(),
        }
    }
}

impl From<SignatureError> for ApiError {
    fn from(e: SignatureError) -> Self {
        match e {
            SignatureError::NotFound => ApiError::NotFound,
            SignatureError::InvalidField { field, detail } => {
                ApiError::InvalidField { field, detail }
            }
            SignatureError::NotPending { status } => ApiError::NotPending { status },
            SignatureError::Failure(e) => e.into(),
        }
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::NotFound => StatusCode::NOT_FOUND,
            ApiError::MalformedJson(_) => StatusCode::BAD_REQUEST,
            ApiError::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::RequestTimeout { .. } => StatusCode::REQUEST_TIMEOUT,
            ApiError::InvalidField { .. } | ApiError::InvalidMsisdn(_) => {
                StatusCode::UNPROCESSABLE_ENTITY
            }
            ApiError::ResendTooEarly { .. }
            | ApiError::MaxSendsReached { .. }
            | ApiError::RateLimited { .. }
            | ApiError::AccountLocked => StatusCode::TOO_MANY_REQUESTS,
            ApiError::NotPending { .. } => StatusCode::CONFLICT,
            ApiError::IdempotencyKeyReused
            | ApiError::TemplateUnregistered { .. }
            | ApiError::ChannelUnavailable { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::PurposeNotAllowed { .. } => StatusCode::FORBIDDEN,
            ApiError::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let status = self.status_code();
        let (kind, title) = self.kind();
        if status.is_server_error() {
            let chain = match self {
                ApiError::Unavailable(e) | ApiError::Internal(e) => format!("{e:#}"),
                other => other.to_string(),
            };
            tracing::error!(error = %chain, "request failed");
        }
        let mut body = json!({
            "type": format!("/problems/{kind}"),
            "title": title,
            "status": status.as_u16(),
            "detail": self.to_string(),
        });
        if let ApiError::InvalidField { field, .. } = self {
            body["field"] = json!(field);
        }
        if let ApiError::InvalidMsisdn(_) = self {
            body["field"] = json!("msisdn");
        }
        if let ApiError::TemplateUnregistered {
            carrier,
            brandname,
            template,
            ..
        } = self
        {
            body["carrier"] = json!(carrier);
            body["brandname"] = json!(brandname);
            body["template"] = json!(template);
        }
        if let ApiError::ChannelUnavailable { channel, .. } = self {
            body["channel"] = json!(channel);
        }
        let mut resp = HttpResponse::build(status);
        resp.insert_header((header::CONTENT_TYPE, "application/problem+json"));
        match self {
            ApiError::Unauthorized => {
                resp.insert_header((header::WWW_AUTHENTICATE, "Bearer"));
            }
            ApiError::ResendTooEarly { retry_after }
            | ApiError::RateLimited { retry_after, .. } => {
                body["retry_after"] = json!(retry_after);
                resp.insert_header((header::RETRY_AFTER, retry_after.to_string()));
            }
            ApiError::MethodNotAllowed { allow } => {
                resp.insert_header((header::ALLOW, *allow));
            }
            ApiError::AccountLocked => {
                // Locked until an operator unlocks; ask clients to wait an hour.
                body["retry_after"] = json!(3600);
                resp.insert_header((header::RETRY_AFTER, "3600"));
            }
            ApiError::RequestTimeout { .. } => {
                // The rest of the body may still come: the connection cannot be reused.
                resp.force_close();
            }
            ApiError::Unavailable(_) => {
                body["retry_after"] = json!(UNAVAILABLE_RETRY_AFTER);
                resp.insert_header((header::RETRY_AFTER, UNAVAILABLE_RETRY_AFTER.to_string()));
            }
            _ => {}
        }
        resp.body(body.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every variant's type, title and status is a row of `PROBLEMS` (the OpenAPI
    /// document is built from it), and every row is some variant's.
    #[test]
    fn every_error_is_a_documented_problem() {
        let all = [
            ApiError::Unauthorized,
            ApiError::NotFound,
            ApiError::MalformedJson(String::new()),
            ApiError::UnsupportedMediaType,
            ApiError::PayloadTooLarge { limit: 1 },
            ApiError::RequestTimeout { seconds: 1.0 },
            ApiError::InvalidField {
                field: "f",
                detail: String::new(),
            },
            ApiError::InvalidMsisdn(String::new()),
            ApiError::ResendTooEarly { retry_after: 1 },
            ApiError::RateLimited {
                retry_after: 1,
                detail: String::new(),
            },
            ApiError::AccountLocked,
            ApiError::MaxSendsReached { max_sends: 1 },
            ApiError::NotPending {
                status: String::new(),
            },
            ApiError::IdempotencyKeyReused,
            ApiError::PurposeNotAllowed {
                purpose: String::new(),
            },
            ApiError::TemplateUnregistered {
                carrier: String::new(),
                brandname: String::new(),
                template: String::new(),
                detail: String::new(),
            },
            ApiError::ChannelUnavailable {
                channel: String::new(),
                detail: String::new(),
            },
            ApiError::MethodNotAllowed { allow: "GET" },
            ApiError::Unavailable(anyhow::anyhow!("x")),
            ApiError::Internal(anyhow::anyhow!("x")),
        ];
        for e in &all {
            let (slug, title) = e.kind();
            let row = PROBLEMS
                .iter()
                .find(|p| p.slug == slug)
                .unwrap_or_else(|| panic!("{slug} is not in PROBLEMS"));
            assert_eq!(row.title, title, "{slug}");
            assert_eq!(row.status, e.status_code().as_u16(), "{slug}");
        }
        for row in PROBLEMS {
            assert!(
                all.iter().any(|e| e.kind().0 == row.slug),
                "{} is documented but no error has it",
                row.slug
            );
        }
    }
}
