//! Why the OTP service did not do what it was asked.

use crate::clients::PurposeNotAllowed;
use crate::failure::Failure;
use crate::limits::Limited;

#[derive(Debug, thiserror::Error)]
pub enum OtpError {
    /// No such verification for this client.
    #[error("not found")]
    NotFound,
    #[error("{detail}")]
    InvalidField { field: &'static str, detail: String },
    #[error("Idempotency-Key was used with a different request")]
    IdempotencyKeyReused,
    #[error(transparent)]
    PurposeNotAllowed(#[from] PurposeNotAllowed),
    #[error(
        "this account is locked for OTP after too many failed checks; an operator can unlock it"
    )]
    AccountLocked,
    #[error("the verification is {status}, not pending")]
    NotPending { status: String },
    #[error("a new code can be sent in {retry_after} s")]
    ResendTooEarly { retry_after: u64 },
    #[error("this verification already sent {max_sends} codes; start a new one")]
    MaxSendsReached { max_sends: i32 },
    /// The serving network takes only registered templates and none is registered.
    #[error(
        "{} blocks SMS that are not registered for brandname {}: no template for {} ({}) is registered with it",
        .0.carrier, .0.brandname, .0.purpose, .0.locale.as_str()
    )]
    TemplateUnregistered(super::admission::Unregistered),
    /// A channel of the workflow cannot carry this code here.
    #[error("channel {}: {detail}", channel.as_str())]
    ChannelUnavailable {
        channel: crate::domain::Channel,
        detail: String,
    },
    /// A limit or a pumping guard refused the send.
    #[error(transparent)]
    Limited(#[from] Limited),
    #[error(transparent)]
    Failure(#[from] Failure),
}
crate::failure_from!(OtpError);

impl OtpError {
    /// A database conflict: the transaction may be run once more.
    pub fn is_db_conflict(&self) -> bool {
        matches!(self, OtpError::Failure(f) if f.is_db_conflict())
    }
}
