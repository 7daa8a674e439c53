//! Canceling a verification: it ends, and its unsent SMS is withdrawn.

use serde_json::json;
use uuid::Uuid;

use super::deps::Deps;
use super::error::OtpError;
use super::model::{view, OtpView};
use super::sms::cancel_unsent;
use crate::audit;
use crate::domain::Msisdn;
use crate::store::tables::otp_challenges::{Challenge, CHALLENGE};
use crate::store::tables::FromRow;
use crate::store::Cached;

/// Ends a pending (or expired) verification.
pub async fn cancel(deps: &Deps, client: Uuid, id: Uuid) -> Result<OtpView, OtpError> {
    let mut db = deps.pool.get().await?;
    let tx = db.transaction().await?;
    let row = tx
        .query_opt_cached(
            &format!(
                "UPDATE otp_challenges c SET status = 'canceled', updated_at = now()
                 WHERE c.id = $1 AND c.client_id = $2 AND c.status IN ('pending', 'expired')
                 RETURNING {CHALLENGE}"
            ),
            &[&id, &client],
        )
        .await?
        .map(|r| Challenge::try_from_row(&r))
        .transpose()?;
    let Some(row) = row else {
        let existing = tx
            .query_opt_cached(
                "SELECT status FROM otp_challenges WHERE id = $1 AND client_id = $2",
                &[&id, &client],
            )
            .await?
            .ok_or(OtpError::NotFound)?;
        return Err(OtpError::NotPending {
            status: existing.get(0),
        });
    };
    cancel_unsent(&tx, id, "challenge_canceled").await?;
    let canceled_msisdn = Msisdn::parse(&row.msisdn).ok();
    audit::record(
        &tx,
        &deps.keys,
        audit::Event {
            event: "otp.canceled",
            client: Some(client),
            msisdn: canceled_msisdn.as_ref(),
            subject: Some(id),
            detail: json!({}),
        },
    )
    .await?;
    tx.commit().await?;
    tracing::info!(otp = %id, "OTP canceled");
    view(row, None)
}
