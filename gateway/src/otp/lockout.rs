//! Account lockout: failed checks counted per (client, account_ref); at the limit the
//! account is locked for OTP until an operator unlocks it.

use serde_json::json;
use uuid::Uuid;

use super::deps::Deps;
use super::error::OtpError;
use crate::audit;
use crate::failure::Failure;
use crate::store::Cached;

/// Whether the account is locked (and, in a transaction, lock its row against
/// concurrent checks).
pub(super) async fn account_locked(
    tx: &deadpool_postgres::Transaction<'_>,
    client: Uuid,
    account: &str,
) -> Result<bool, Failure> {
    let row = tx
        .query_opt_cached(
            "SELECT locked_at IS NOT NULL FROM account_lockouts
             WHERE client_id = $1 AND account_ref = $2 FOR UPDATE",
            &[&client, &account],
        )
        .await?;
    Ok(row.is_some_and(|r| r.get(0)))
}

/// Counts a failed check against the account and locks it at `limit`.
pub(super) async fn count_failed_check(
    deps: &Deps,
    tx: &deadpool_postgres::Transaction<'_>,
    client: Uuid,
    account: &str,
    limit: i32,
) -> Result<(), OtpError> {
    let row = tx
        .query_one_cached(
            "INSERT INTO account_lockouts (client_id, account_ref, failed_checks) VALUES ($1, $2, 1)
             ON CONFLICT (client_id, account_ref) DO UPDATE
                SET failed_checks = account_lockouts.failed_checks + 1, updated_at = now()
             RETURNING failed_checks, locked_at IS NOT NULL",
            &[&client, &account],
        )
        .await?;
    let (failed, locked): (i32, bool) = (row.get(0), row.get(1));
    if failed >= limit && !locked {
        tx.execute_cached(
            "UPDATE account_lockouts SET locked_at = now() WHERE client_id = $1 AND account_ref = $2",
            &[&client, &account],
        )
        .await?;
        audit::record(
            tx,
            &deps.keys,
            audit::Event {
                event: "account.locked",
                client: Some(client),
                msisdn: None,
                subject: None,
                detail: json!({ "account_ref": account, "failed_checks": failed }),
            },
        )
        .await?;
        tracing::warn!(%client, "account locked for OTP after {failed} failed checks");
    }
    Ok(())
}

/// Unlocks an account (operators). Returns whether it was locked.
pub async fn unlock_account(deps: &Deps, client: Uuid, account: &str) -> Result<bool, OtpError> {
    let mut db = deps.pool.get().await?;
    let tx = db.transaction().await?;
    let n = tx
        .execute_cached(
            "UPDATE account_lockouts SET locked_at = NULL, failed_checks = 0, updated_at = now()
             WHERE client_id = $1 AND account_ref = $2 AND locked_at IS NOT NULL",
            &[&client, &account],
        )
        .await?;
    if n == 1 {
        audit::record(
            &tx,
            &deps.keys,
            audit::Event {
                event: "account.unlocked",
                client: Some(client),
                msisdn: None,
                subject: None,
                detail: json!({ "account_ref": account }),
            },
        )
        .await?;
    }
    tx.commit().await?;
    Ok(n == 1)
}
