//! RFC 9457 problem details: every error the API returns, with a stable `type`.
//! 5xx bodies carry no internals; the cause chain goes to the log.

use actix_web::http::{header, StatusCode};
use actix_web::{HttpResponse, ResponseError};
use serde_json::json;

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
    #[error("method not allowed")]
    MethodNotAllowed,
    #[error("service temporarily unavailable")]
    Unavailable(#[source] anyhow::Error),
    #[error("internal error")]
    Internal(#[from] anyhow::Error),
}

impl ApiError {
    fn kind(&self) -> (&'static str, &'static str) {
        match self {
            ApiError::Unauthorized => ("unauthorized", "Unauthorized"),
            ApiError::NotFound => ("not-found", "Not found"),
            ApiError::MalformedJson(_) => ("malformed-json", "Malformed JSON body"),
            ApiError::UnsupportedMediaType => ("unsupported-media-type", "Unsupported media type"),
            ApiError::PayloadTooLarge { .. } => ("payload-too-large", "Request body too large"),
            ApiError::InvalidField { .. } => ("invalid-field", "Invalid field"),
            ApiError::InvalidMsisdn(_) => ("invalid-msisdn", "Invalid phone number"),
            ApiError::ResendTooEarly { .. } => ("resend-too-early", "Too early to resend"),
            ApiError::RateLimited { .. } => ("rate-limited", "Too many requests"),
            ApiError::AccountLocked => ("account-locked", "Account locked"),
            ApiError::MaxSendsReached { .. } => ("max-sends-reached", "Too many codes sent"),
            ApiError::NotPending { .. } => ("verification-not-pending", "Verification not pending"),
            ApiError::IdempotencyKeyReused => ("idempotency-key-reused", "Idempotency key reused"),
            ApiError::PurposeNotAllowed { .. } => ("purpose-not-allowed", "Purpose not allowed"),
            ApiError::MethodNotAllowed => ("method-not-allowed", "Method not allowed"),
            ApiError::Unavailable(_) => ("unavailable", "Service unavailable"),
            ApiError::Internal(_) => ("internal", "Internal error"),
        }
    }
}

impl From<tokio_postgres::Error> for ApiError {
    fn from(e: tokio_postgres::Error) -> Self {
        ApiError::Internal(e.into())
    }
}

impl From<deadpool_postgres::PoolError> for ApiError {
    fn from(e: deadpool_postgres::PoolError) -> Self {
        ApiError::Unavailable(e.into())
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
            ApiError::InvalidField { .. } | ApiError::InvalidMsisdn(_) => {
                StatusCode::UNPROCESSABLE_ENTITY
            }
            ApiError::ResendTooEarly { .. }
            | ApiError::MaxSendsReached { .. }
            | ApiError::RateLimited { .. }
            | ApiError::AccountLocked => StatusCode::TOO_MANY_REQUESTS,
            ApiError::NotPending { .. } => StatusCode::CONFLICT,
            ApiError::IdempotencyKeyReused => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::PurposeNotAllowed { .. } => StatusCode::FORBIDDEN,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
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
            ApiError::AccountLocked => {
                // Locked until an operator unlocks; ask clients to wait an hour.
                body["retry_after"] = json!(3600);
                resp.insert_header((header::RETRY_AFTER, "3600"));
            }
            _ => {}
        }
        resp.body(body.to_string())
    }
}
