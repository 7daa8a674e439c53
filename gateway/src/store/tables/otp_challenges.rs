//! `otp_challenges`: one row per verification (its code's MAC, its counters, its
//! timers).

use chrono::{DateTime, Utc};
use postgres_from_row::FromRow;
use uuid::Uuid;

/// What every reading of a challenge selects, from `otp_challenges c`: [`Challenge`].
pub const CHALLENGE: &str = "c.id, c.status, c.msisdn, c.carrier, c.purpose, c.created_at, \
     c.expires_at, c.resend_available_at, c.sends, c.max_sends, c.attempts, c.max_attempts, \
     (c.expires_at <= now()) AS expired_now, c.channels";

/// A challenge as the views show it ([`CHALLENGE`]).
#[derive(Debug, Clone, FromRow)]
pub struct Challenge {
    pub id: Uuid,
    pub status: String,
    pub msisdn: String,
    pub carrier: String,
    pub purpose: String,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub resend_available_at: DateTime<Utc>,
    pub sends: i32,
    pub max_sends: i32,
    pub attempts: i32,
    pub max_attempts: i32,
    /// Past its expiry, whatever its status says.
    pub expired_now: bool,
    /// Its workflow: the channels tried, in order.
    pub channels: Vec<String>,
}

/// [`CHALLENGE`] and what an Idempotency-Key replay compares: [`Keyed`].
pub const KEYED: &str = "c.request_hash, c.client_id, c.idempotency_key";

/// A challenge found by its Idempotency-Key.
#[derive(Debug, Clone, FromRow)]
pub struct Keyed {
    #[from_row(flatten)]
    pub challenge: Challenge,
    pub request_hash: Option<Vec<u8>>,
    pub client_id: Uuid,
    pub idempotency_key: String,
}

/// What a check reads, under the row's lock: [`Checked`].
pub const CHECKED: &str = "status, attempts, max_attempts, code_mac, code_version, purpose, \
     msisdn, account_ref, created_at, carrier, (expires_at <= now()) AS expired_now, events";

#[derive(Debug, FromRow)]
pub struct Checked {
    pub status: String,
    pub attempts: i32,
    pub max_attempts: i32,
    pub code_mac: Vec<u8>,
    pub code_version: i32,
    pub purpose: String,
    pub msisdn: String,
    pub account_ref: Option<String>,
    pub created_at: DateTime<Utc>,
    pub carrier: String,
    pub expired_now: bool,
    /// Whether its client wanted OTP events when it was made.
    pub events: bool,
}

/// [`CHALLENGE`] and what a resend needs to make and send a new code: [`Resent`].
pub const RESENT: &str = "c.locale, c.code_length, c.ttl_seconds, c.code_version, c.client_ip, \
     c.account_ref, \
     GREATEST(0, CEIL(EXTRACT(EPOCH FROM (c.resend_available_at - now()))))::bigint AS wait_secs";

#[derive(Debug, FromRow)]
pub struct Resent {
    #[from_row(flatten)]
    pub challenge: Challenge,
    pub locale: String,
    pub code_length: i16,
    pub ttl_seconds: i32,
    pub code_version: i32,
    pub client_ip: Option<std::net::IpAddr>,
    pub account_ref: Option<String>,
    /// Seconds until a resend is allowed (0: now).
    pub wait_secs: i64,
}
