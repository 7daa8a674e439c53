//! `sms_outbox` (one row per SMS to send) with its parts and their receipts, as the
//! latest delivery of a challenge reads them.

use chrono::{DateTime, Utc};
use postgres_from_row::FromRow;

/// The columns that `outbox::receipts::LATEST_DELIVERY_JOINS` adds to a reading of
/// challenges: [`LatestDelivery`].
pub const LATEST_DELIVERY: &str = "o.status AS o_status, o.route AS o_route, \
     o.smsc_message_id, o.submitted_at, o.last_error, r.parts, r.delivered, r.bad_state, \
     r.bad_error, r.last_at AS r_at";

/// A challenge's latest SMS and its parts' receipts; every column is NULL before its
/// first SMS.
#[derive(Debug, Clone, FromRow)]
pub struct LatestDelivery {
    pub o_status: Option<String>,
    pub o_route: Option<String>,
    pub smsc_message_id: Option<String>,
    pub submitted_at: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
    pub parts: Option<i32>,
    pub delivered: Option<i32>,
    pub bad_state: Option<String>,
    pub bad_error: Option<String>,
    pub r_at: Option<DateTime<Utc>>,
}

/// A row the dispatcher claims (`outbox::claim_sql`), with its challenge's state.
#[derive(Debug, Clone, FromRow)]
pub struct Claim {
    pub id: i64,
    pub route: String,
    pub msisdn: String,
    pub sender: String,
    pub body_sealed: Option<Vec<u8>>,
    /// Failures the carrier caused so far.
    pub attempts: i32,
    pub client_id: Option<uuid::Uuid>,
    pub request_id: Option<String>,
    /// Why it must not be sent any more (its challenge ended, or a resend superseded it).
    pub ended: Option<String>,
    /// Seconds its code is still valid, measured by the database (`None`: not an OTP's).
    pub valid_for: Option<f64>,
    /// Seconds since it was queued.
    pub age: Option<f64>,
}
