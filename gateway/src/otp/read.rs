//! Reading a verification, with its latest SMS's delivery (read by `outbox::receipts`).

use uuid::Uuid;

use super::deps::Deps;
use super::error::OtpError;
use super::model::{view, AttemptView, OtpView};
use crate::outbox::receipts::{delivery_of, LATEST_DELIVERY_JOINS};
use crate::store::tables::otp_challenges::{Challenge, CHALLENGE};
use crate::store::tables::sms_outbox::{LatestDelivery, LATEST_DELIVERY};
use crate::store::tables::FromRow;
use crate::store::Cached;

/// The verification `id` of `client`.
pub async fn get(deps: &Deps, client: Uuid, id: Uuid) -> Result<OtpView, OtpError> {
    let db = deps.pool.get().await?;
    let row = db
        .query_opt_cached(
            &format!(
                "SELECT {CHALLENGE}, {LATEST_DELIVERY}
                 FROM otp_challenges c
                 {LATEST_DELIVERY_JOINS}
                 WHERE c.id = $1 AND c.client_id = $2"
            ),
            &[&id, &client],
        )
        .await?
        .ok_or(OtpError::NotFound)?;
    let delivery = delivery_of(LatestDelivery::try_from_row(&row)?);
    let mut found = view(Challenge::try_from_row(&row)?, delivery)?;
    found.attempts = db
        .query_cached(ATTEMPTS_SQL, &[&id])
        .await?
        .iter()
        .map(AttemptView::try_from_row)
        .collect::<Result<_, _>>()
        .map_err(crate::failure::Failure::from)?;
    Ok(found)
}

/// Every attempt of a verification, by send and step.
const ATTEMPTS_SQL: &str = "SELECT 'sms' AS channel, coalesce(code_version, 1) AS send,
        step::int4 AS step, status AS state, last_error AS error, created_at,
        submitted_at AS sent_at, NULL::timestamptz AS delivered_at, id
     FROM sms_outbox WHERE challenge_id = $1
     UNION ALL
     SELECT 'zalo', code_version, step::int4, status, last_error, created_at, sent_at,
        delivered_at, id
     FROM zns_outbox WHERE challenge_id = $1
     ORDER BY send, step, id";
