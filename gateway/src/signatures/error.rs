//! Why the signature service did not do what it was asked.

use crate::failure::Failure;

#[derive(Debug, thiserror::Error)]
pub enum SignatureError {
    /// No such request for this client.
    #[error("not found")]
    NotFound,
    #[error("{detail}")]
    InvalidField { field: &'static str, detail: String },
    #[error("the signature request is {status}, not pending")]
    NotPending { status: String },
    #[error(transparent)]
    Failure(#[from] Failure),
}
crate::failure_from!(SignatureError);
