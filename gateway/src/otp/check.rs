//! Checking the code the person typed: the attempt counted and the code compared in
//! constant time under the challenge's row lock.

use serde_json::json;
use uuid::Uuid;

use super::deps::Deps;
use super::error::OtpError;
use super::lockout::{account_locked, count_failed_check};
use super::model::CheckView;
use super::sms::cancel_unsent;
use crate::audit;
use crate::domain::Msisdn;
use crate::store::tables::otp_challenges::{Checked, CHECKED};
use crate::store::tables::FromRow;
use crate::store::Cached;

/// Counts the attempt and compares in constant time, under the row lock.
#[tracing::instrument(name = "otp.check", skip_all, fields(client = %client, otp = %id))]
pub async fn check(
    deps: &Deps,
    client: Uuid,
    id: Uuid,
    candidate: &str,
) -> Result<CheckView, OtpError> {
    let mut db = deps.pool.get().await?;
    let tx = db.transaction().await?;
    let row = tx
        .query_opt_cached(
            &format!(
                "SELECT {CHECKED} FROM otp_challenges WHERE id = $1 AND client_id = $2 FOR UPDATE"
            ),
            &[&id, &client],
        )
        .await?
        .ok_or(OtpError::NotFound)?;
    let row = Checked::try_from_row(&row)?;
    let (status, attempts, max_attempts) = (&row.status, row.attempts, row.max_attempts);
    let result = |valid: bool, status: &str, attempts: i32| CheckView {
        id,
        valid,
        status: status.to_owned(),
        attempts_left: (max_attempts - attempts).max(0),
    };
    if status != "pending" {
        tx.rollback().await?;
        return Ok(result(false, status, attempts));
    }
    if row.expired_now {
        tx.execute_cached(
            "UPDATE otp_challenges SET status = 'expired', updated_at = now() WHERE id = $1",
            &[&id],
        )
        .await?;
        if row.events {
            crate::webhooks::otp_events(&tx, &[(id, "otp.expired", json!({}))]).await?;
        }
        tx.commit().await?;
        deps.funnel.otp("expired", &row.carrier, 1);
        return Ok(result(false, "expired", attempts));
    }
    let account = &row.account_ref;
    if let Some(account) = account {
        if account_locked(&tx, client, account).await? {
            tx.rollback().await?;
            return Err(OtpError::AccountLocked);
        }
    }
    let attempts = attempts + 1;
    let valid = deps.keys.verify_code(
        &row.code_mac,
        id,
        row.code_version,
        &row.purpose,
        &row.msisdn,
        candidate,
    );
    let new_status = if valid {
        "approved"
    } else if attempts >= max_attempts {
        "max_attempts_reached"
    } else {
        "pending"
    };
    tx.execute_cached(
        "UPDATE otp_challenges SET attempts = $2, status = $3, updated_at = now(),
            approved_at = CASE WHEN $3 = 'approved' THEN now() END
         WHERE id = $1",
        &[&id, &attempts, &new_status],
    )
    .await?;
    if new_status != "pending" {
        cancel_unsent(&tx, id, &format!("challenge_{new_status}")).await?;
    }
    if valid && row.events {
        crate::webhooks::otp_events(&tx, &[(id, "otp.approved", json!({}))]).await?;
    }
    if let (false, Some(account)) = (valid, account) {
        count_failed_check(
            deps,
            &tx,
            client,
            account,
            deps.settings.limits.account_failed_checks,
        )
        .await?;
    }
    let checked_msisdn = Msisdn::parse(&row.msisdn).ok();
    for event in ["otp.checked", "otp.locked"] {
        if event == "otp.locked" && new_status != "max_attempts_reached" {
            continue;
        }
        audit::record(
            &tx,
            &deps.keys,
            audit::Event {
                event,
                client: Some(client),
                msisdn: checked_msisdn.as_ref(),
                subject: Some(id),
                detail: json!({ "valid": valid, "status": new_status, "attempts": attempts }),
            },
        )
        .await?;
    }
    tx.commit().await?;
    if valid {
        deps.conversion_counts
            .approved(client, &row.msisdn, row.created_at);
        deps.funnel.otp("approved", &row.carrier, 1);
    } else if new_status == "max_attempts_reached" {
        deps.funnel.otp("locked", &row.carrier, 1);
    }
    tracing::info!(otp = %id, valid, status = new_status, "OTP checked");
    Ok(result(valid, new_status, attempts))
}
