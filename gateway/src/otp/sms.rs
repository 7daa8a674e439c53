//! A verification's SMS rows in the outbox: queued with its code, withdrawn while unsent
//! once the code no longer works.

use uuid::Uuid;

use crate::domain::Msisdn;
use crate::failure::Failure;
use crate::store::Cached;

/// A step's place in its send's workflow.
pub(super) struct Step {
    pub step: i16,
    pub steps: i16,
    /// The time the step has to confirm delivery before the next is tried.
    pub timeout_ms: i32,
    /// Whether the client wants OTP events.
    pub events: bool,
}

/// Queues the SMS carrying a code (held, when it is not the send's first step). The
/// caller wakes this instance's dispatcher after the commit; other instances find it on
/// their next poll. (No NOTIFY: PostgreSQL serialises every committing transaction that
/// notified on one lock, held across the WAL flush, which capped sends at one per fsync.)
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
    at: &Step,
) -> Result<(), Failure> {
    tx.execute_cached(
        "INSERT INTO sms_outbox (challenge_id, code_version, route, msisdn, sender, body_sealed,
            request_id, client_ip, step, status, deadline, watch, watch_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9::int2,
            CASE WHEN $9::int2 = 0 THEN 'queued' ELSE 'held' END,
            CASE WHEN $9::int2 = 0 AND $10::int2 > 1
                 THEN now() + make_interval(secs => $11::int4 / 1000.0) END,
            $9::int2 = 0 AND ($12::bool OR $10::int2 > 1), now())",
        &[
            &id,
            &version,
            &route,
            &msisdn.e164(),
            &sender,
            &sealed,
            &request_id,
            &client_ip,
            &at.step,
            &at.steps,
            &at.timeout_ms,
            &at.events,
        ],
    )
    .await?;
    Ok(())
}

/// Queues the ZNS message carrying a code (held, when it is not the send's first step).
#[allow(clippy::too_many_arguments)]
pub(super) async fn queue_zns(
    tx: &deadpool_postgres::Transaction<'_>,
    id: Uuid,
    template: &str,
    sealed: &[u8],
    request_id: Option<&str>,
    at: &Step,
) -> Result<(), Failure> {
    tx.execute_cached(
        crate::otp::create::INSERT_ZNS_SQL,
        &[
            &vec![id],
            &vec![at.step],
            &vec![at.steps],
            &vec![template],
            &vec![sealed.to_vec()],
            &vec![request_id],
        ],
    )
    .await?;
    Ok(())
}

/// Withdraws the challenge's SMS and ZNS messages that have not gone out yet, for
/// `reason` (`superseded_by_resend`, `challenge_canceled`, …).
pub(super) async fn cancel_unsent(
    tx: &deadpool_postgres::Transaction<'_>,
    id: Uuid,
    reason: &str,
) -> Result<(), Failure> {
    tx.execute_cached(
        "UPDATE sms_outbox SET status = 'canceled', body_sealed = NULL, watch = false,
            last_error = $2
         WHERE challenge_id = $1 AND status IN ('queued', 'held')",
        &[&id, &reason],
    )
    .await?;
    tx.execute_cached(
        "UPDATE zns_outbox SET status = 'canceled', data_sealed = NULL,
            last_error = $2
         WHERE challenge_id = $1 AND status IN ('queued', 'held')",
        &[&id, &reason],
    )
    .await?;
    Ok(())
}
