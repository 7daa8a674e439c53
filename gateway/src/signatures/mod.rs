//! SIM signatures (SIM ký số): push a signature request to the SIM through the carrier's
//! MSSP, take the result by callback or by polling, verify it ourselves, and record the
//! signer's identity. Every state change is one short transaction; the end of a request
//! is announced with `NOTIFY signature_done` (long-pollers on any instance wake) and a
//! webhook queued in the same transaction.

pub mod callbacks;
mod error;
mod lifecycle;
mod messages;
mod model;
pub mod owner_check;
mod poller;
mod service;
mod verify;
mod view;

pub use error::SignatureError;
pub use lifecycle::{cancel, create, end};
pub use model::{
    NewSignature, SignatureEvent, SignaturePurpose, SignatureView, SignedView, Signer,
    SignerIdentifier, SignerIssuer, SignerSubject,
};
pub use poller::run_poller;
pub use service::SignatureService;
pub use verify::apply_status;
pub use view::{find_by_ap_trans_id, get, wait};
