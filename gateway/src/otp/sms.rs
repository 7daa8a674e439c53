//! A verification's SMS rows in the outbox: queued with its code, withdrawn while unsent
//! once the code no longer works.

use uuid::Uuid;

use crate::domain::Msisdn;
use crate::failure::Failure;
use crate::store::Cached;

/// Queues the SMS carrying a code. The caller wakes this instance's dispatcher after the
/// commit; other instances find it on their next poll. (No NOTIFY: PostgreSQL serialises
/// every committing transaction that notified on one lock, held across the WAL flush,
/// which capped sends at one per fsync.)
#[allow(clippy::too_many_arguments)]
pub(super) async fn queue_sms(
    tx: &deadpool_postgres::Transaction<'_>,
    id: Uuid,
    version: i32,
    route: &str,
    msisdn: &Msisdn,
    sender: &str,
    sealed: &[u8],
    // The request's id goes with the SMS, for the dispatcher's log lines.
    request_id: Option<&str>,
    // The end user's address, which the per-address windows count.
    client_ip: Option<std::net::IpAddr>,
) -> Result<(), Failure> {
    tx.execute_cached(
        "INSERT INTO sms_outbox (challenge_id, code_version, route, msisdn, sender, body_sealed,
            request_id, client_ip)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        &[
            &id,
            &version,
            &route,
            &msisdn.e164(),
            &sender,
            &sealed,
            &request_id,
            &client_ip,
        ],
    )
    .await?;
    Ok(())
}

/// Withdraws the challenge's SMS that no dispatcher has sent yet.
pub(super) async fn cancel_unsent_sms(
    tx: &deadpool_postgres::Transaction<'_>,
    id: Uuid,
) -> Result<(), Failure> {
    tx.execute_cached(
        "UPDATE sms_outbox SET status = 'canceled', body_sealed = NULL
         WHERE challenge_id = $1 AND status = 'queued'",
        &[&id],
    )
    .await?;
    Ok(())
}
