//! `signature_requests`: one row per SIM ký số request (what is signed, the carrier's
//! ids, the verified result, the poller's timers).

use chrono::{DateTime, Utc};
use postgres_from_row::FromRow;
use uuid::Uuid;

/// What a reading of a request for its view or its end selects: [`Request`].
pub const REQUEST: &str =
    "id, client_id, status, status_detail, carrier, msisdn, purpose, data_to_sign, created_at, \
     expires_at, ended_at, signature_cms, certificate_der, signer, signed_at, callback_url";

/// A request as its view and its end's announcement read it ([`REQUEST`]).
#[derive(Debug, Clone, FromRow)]
pub struct Request {
    pub id: Uuid,
    pub client_id: Uuid,
    pub status: String,
    pub status_detail: Option<String>,
    pub carrier: String,
    pub msisdn: String,
    pub purpose: String,
    pub data_to_sign: Vec<u8>,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub ended_at: Option<DateTime<Utc>>,
    pub signature_cms: Option<Vec<u8>>,
    pub certificate_der: Option<Vec<u8>>,
    /// The verified signer (`signatures::Signer` as JSON), once signed.
    pub signer: Option<serde_json::Value>,
    pub signed_at: Option<DateTime<Utc>>,
    pub callback_url: Option<String>,
}

/// What a cancel needs to withdraw the prompt at the carrier: [`Withdrawal`].
pub const WITHDRAWAL: &str = "status, carrier, ap_trans_id, mssp_trans_id, msisdn";

#[derive(Debug, FromRow)]
pub struct Withdrawal {
    pub status: String,
    pub carrier: String,
    pub ap_trans_id: String,
    pub mssp_trans_id: Option<String>,
    pub msisdn: String,
}

/// What verifying a carrier's answer compares it with: [`ToVerify`].
pub const TO_VERIFY: &str = "carrier, msisdn, data_to_sign, created_at, status";

#[derive(Debug, FromRow)]
pub struct ToVerify {
    pub carrier: String,
    pub msisdn: String,
    pub data_to_sign: Vec<u8>,
    pub created_at: DateTime<Utc>,
    pub status: String,
}

/// A request found by the id we gave the carrier: [`ByApTransId`].
pub const BY_AP_TRANS_ID: &str = "id, mssp_trans_id";

#[derive(Debug, FromRow)]
pub struct ByApTransId {
    pub id: Uuid,
    pub mssp_trans_id: Option<String>,
}

/// What the poller claims, from `signature_requests s`, with `$1` the grace after expiry
/// past which a request is swept: [`Due`].
pub const DUE: &str = "s.id, s.carrier, s.ap_trans_id, s.mssp_trans_id, s.msisdn, \
     s.poll_attempts, (s.expires_at + make_interval(secs => $1::float8) < now()) AS overdue";

/// A pending request whose poll is due.
#[derive(Debug, FromRow)]
pub struct Due {
    pub id: Uuid,
    pub carrier: String,
    pub ap_trans_id: String,
    pub mssp_trans_id: Option<String>,
    pub msisdn: String,
    pub poll_attempts: i32,
    /// Past its expiry and the grace: swept, not polled.
    pub overdue: bool,
}
