//! The ZNS dispatcher: claims queued Zalo steps (`FOR UPDATE SKIP LOCKED`, with a lease),
//! sends each through the Zalo client, and records the outcomes in one transaction per
//! batch (billing and audit with them). A step whose code expired or was superseded
//! before it went is never sent. Messages Zalo took but has not reported received are
//! asked after (`GET /message/status`) in case their delivery event was lost; delivery
//! events and answers are written by [`received`].
//!
//! What follows a step (the next channel, the OTP events) is `workflow`'s.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use carrier_adapters::zns::{Delivery, SendRequest};
use deadpool_postgres::Pool;
use postgres_from_row::FromRow;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::config::OutboxSettings;
use crate::crypto::ServerKeys;
use crate::store::Cached;
use crate::zalo::{ZaloClient, ZaloError};

pub struct ZnsDispatcher {
    pub pool: Pool,
    pub keys: Arc<ServerKeys>,
    pub zalo: Arc<ZaloClient>,
    pub settings: OutboxSettings,
    pub wake: Arc<Notify>,
    /// The workflow pass, woken when a step failed for good (its fallback goes at once).
    pub workflow_wake: Arc<Notify>,
    pub funnel: Arc<crate::telemetry::funnel::Funnel>,
}

/// Steps one claim takes.
const BATCH: i64 = 32;

/// The oldest due Zalo steps, leased for `$1` seconds, each with why it must not be
/// sent any more (`ended`).
const CLAIM_SQL: &str = "WITH claimed AS (
        UPDATE zns_outbox z SET claimed_until = now() + make_interval(secs => $1::float8)
        WHERE z.id IN (
            SELECT id FROM zns_outbox
            WHERE status = 'queued' AND next_attempt_at <= now()
              AND (claimed_until IS NULL OR claimed_until < now())
            ORDER BY next_attempt_at, id
            LIMIT 32
            FOR UPDATE SKIP LOCKED)
        RETURNING z.id, z.challenge_id, z.client_id, z.code_version, z.msisdn, z.template_id,
            z.data_sealed, z.attempts, z.request_id)
     SELECT cl.id, cl.challenge_id, cl.client_id, cl.msisdn, cl.template_id, cl.data_sealed,
        cl.attempts, cl.request_id,
        CASE WHEN c.status <> 'pending' THEN c.status
             WHEN c.expires_at <= now() THEN 'expired'
             WHEN cl.code_version <> c.code_version THEN 'superseded'
        END AS ended,
        extract(epoch FROM c.expires_at - clock_timestamp())::float8 AS valid_for
     FROM claimed cl JOIN otp_challenges c ON c.id = cl.challenge_id";

#[derive(Debug, FromRow)]
struct Claimed {
    id: i64,
    challenge_id: Uuid,
    client_id: Uuid,
    msisdn: String,
    template_id: String,
    data_sealed: Option<Vec<u8>>,
    attempts: i32,
    request_id: Option<String>,
    ended: Option<String>,
    /// Seconds its code is still good, measured by the database at the claim.
    valid_for: f64,
}

#[derive(Debug, Clone)]
enum Outcome {
    Sent {
        msg_id: String,
    },
    /// Zalo refused it for good (no Zalo account, template, quota, the number, a
    /// refresh token it no longer takes): the next channel.
    Failed {
        error: String,
    },
    /// Not this time (Zalo unreachable or busy): again after `after`, until the step's
    /// deadline gives way to the next channel.
    Retry {
        after: Duration,
        error: String,
    },
    /// Its code ended before it went.
    Unsent {
        status: &'static str,
        reason: String,
    },
}

impl ZnsDispatcher {
    /// Sends until shutdown; asks after unconfirmed messages beside it.
    pub async fn run(self, shutdown: CancellationToken) {
        let me = Arc::new(self);
        let poller = tokio::spawn(me.clone().poll_loop(shutdown.clone()));
        loop {
            loop {
                match me.pass().await {
                    Ok(n) if n as i64 == BATCH && !shutdown.is_cancelled() => continue,
                    Ok(_) => break,
                    Err(e) => {
                        tracing::warn!(error = format!("{e:#}"), "ZNS pass failed");
                        break;
                    }
                }
            }
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = me.wake.notified() => {}
                _ = tokio::time::sleep(me.settings.poll_interval) => {}
            }
        }
        let _ = poller.await;
        tracing::info!("ZNS dispatcher stopped");
    }

    /// One batch: claimed, sent, recorded. Returns how many were claimed.
    async fn pass(&self) -> anyhow::Result<usize> {
        let batch: Vec<Claimed> = {
            let db = self.pool.get().await?;
            db.query_cached(CLAIM_SQL, &[&self.settings.claim_timeout.as_secs_f64()])
                .await?
                .iter()
                .map(Claimed::try_from_row)
                .collect::<Result<_, _>>()?
        };
        let n = batch.len();
        if n == 0 {
            return Ok(0);
        }
        let claimed_at = std::time::Instant::now();
        let outcomes =
            futures::future::join_all(batch.iter().map(|row| self.send(row, claimed_at))).await;
        self.record_durably(&batch, outcomes).await?;
        Ok(n)
    }

    /// Records a batch's outcomes durably (`durable::record_durably`): Zalo has the
    /// messages, and one sent again would be a duplicate in the person's Zalo app.
    async fn record_durably(
        &self,
        batch: &[Claimed],
        outcomes: Vec<Outcome>,
    ) -> anyhow::Result<()> {
        super::durable::record_durably(self.settings.claim_timeout, "ZNS outcomes", || {
            self.record(batch, outcomes.clone())
        })
        .await
    }

    async fn send(&self, row: &Claimed, claimed_at: std::time::Instant) -> Outcome {
        let span = tracing::info_span!(
            "zns",
            zns = row.id,
            request_id = row.request_id.as_deref().unwrap_or("-"),
        );
        tracing::Instrument::instrument(self.send_in_span(row, claimed_at), span).await
    }

    async fn send_in_span(&self, row: &Claimed, claimed_at: std::time::Instant) -> Outcome {
        match row.ended.as_deref() {
            None => {}
            Some("expired") => {
                return Outcome::Unsent {
                    status: "expired",
                    reason: "challenge_expired".into(),
                }
            }
            Some("superseded") => {
                return Outcome::Unsent {
                    status: "canceled",
                    reason: "superseded_by_resend".into(),
                }
            }
            Some(other) => {
                return Outcome::Unsent {
                    status: "canceled",
                    reason: format!("challenge_{other}"),
                }
            }
        }
        let data = match row
            .data_sealed
            .as_deref()
            .map(|sealed| self.keys.open(sealed, &row.msisdn))
        {
            Some(Ok(json)) => serde_json::from_str::<BTreeMap<String, String>>(&json),
            Some(Err(e)) => {
                tracing::error!(error = %e, "ZNS template data cannot be opened (server key changed?)");
                return Outcome::Failed {
                    error: "zns_data_unreadable".into(),
                };
            }
            None => {
                return Outcome::Failed {
                    error: "no template data to send".into(),
                }
            }
        };
        let Ok(template_data) = data else {
            return Outcome::Failed {
                error: "template data unreadable".into(),
            };
        };
        // The code may have run out since the claim: a message of an expired code is
        // never sent.
        if claimed_at + Duration::from_secs_f64(row.valid_for.max(0.0)) <= std::time::Instant::now()
        {
            return Outcome::Unsent {
                status: "expired",
                reason: "challenge_expired".into(),
            };
        }
        let req = SendRequest {
            phone: row.msisdn.clone(),
            template_id: row.template_id.clone(),
            template_data,
            tracking_id: row.id.to_string(),
        };
        let masked = carrier_adapters::Msisdn::parse(&row.msisdn)
            .map(|m| m.masked())
            .unwrap_or_default();
        match self.zalo.send(&req).await {
            Ok(accepted) => {
                tracing::info!(msisdn = %masked, msg_id = %accepted.msg_id, "ZNS message sent");
                Outcome::Sent {
                    msg_id: accepted.msg_id,
                }
            }
            Err(ZaloError::Refused(r)) if r.is_final() => {
                tracing::info!(msisdn = %masked, error = %r, "ZNS refused; the next channel is tried");
                Outcome::Failed { error: r.label() }
            }
            Err(e @ ZaloError::RefreshRefused(_)) => {
                tracing::error!(error = %e, "Zalo refuses the refresh token: ZNS steps fall back until an operator gives a new one ([zalo].refresh_token)");
                Outcome::Failed {
                    error: "zns_refresh_token_refused".into(),
                }
            }
            Err(e) => {
                let error = match &e {
                    ZaloError::Refused(r) => r.label(),
                    ZaloError::Unavailable(_) => "zns_unavailable".into(),
                    _ => "zns_error".into(),
                };
                tracing::warn!(error = %e, "ZNS send will be retried");
                Outcome::Retry {
                    after: carrier_adapters::retry::Schedule::doubling(
                        self.settings.retry_base,
                        self.settings.retry_max,
                    )
                    .pause((row.attempts + 1).clamp(1, 32) as u32)
                    .unwrap_or(self.settings.retry_max),
                    error,
                }
            }
        }
    }

    /// The batch's outcomes in one transaction: sent steps billed and audited, failed
    /// ones watched (the workflow moves on from them), retries put back.
    async fn record(&self, batch: &[Claimed], outcomes: Vec<Outcome>) -> anyhow::Result<()> {
        let (mut sent_ids, mut sent_mids) = (vec![], vec![]);
        let mut billable = Vec::new();
        let (mut audit_clients, mut audit_masked, mut audit_keys, mut audit_subjects) =
            (vec![], vec![], vec![], vec![]);
        let (mut fail_ids, mut fail_errs) = (vec![], vec![]);
        let (mut retry_ids, mut retry_secs, mut retry_errs) = (vec![], vec![], vec![]);
        let (mut unsent_ids, mut unsent_status, mut unsent_reasons) = (vec![], vec![], vec![]);
        for (row, outcome) in batch.iter().zip(outcomes) {
            match outcome {
                Outcome::Sent { msg_id } => {
                    sent_ids.push(row.id);
                    sent_mids.push(msg_id);
                    billable.push((row.client_id, row.challenge_id));
                    let msisdn = carrier_adapters::Msisdn::parse(&row.msisdn).ok();
                    audit_clients.push(row.client_id);
                    audit_masked.push(msisdn.map(|m| m.masked()));
                    audit_keys.push(self.keys.lookup_key(&row.msisdn));
                    audit_subjects.push(row.challenge_id);
                }
                Outcome::Failed { error } => {
                    fail_ids.push(row.id);
                    fail_errs.push(error);
                }
                Outcome::Retry { after, error } => {
                    retry_ids.push(row.id);
                    retry_secs.push(after.as_secs_f64());
                    retry_errs.push(error);
                }
                Outcome::Unsent { status, reason } => {
                    unsent_ids.push(row.id);
                    unsent_status.push(status.to_owned());
                    unsent_reasons.push(reason);
                }
            }
        }
        let mut db = self.pool.get().await?;
        let tx = db.transaction().await?;
        if !sent_ids.is_empty() {
            // Whatever happened to the row meanwhile (a resend or a cancel while the
            // call was in flight): Zalo took the message, so its id, time and price are
            // kept, and its delivery event can be matched.
            tx.execute_cached(
                "UPDATE zns_outbox z SET status = CASE WHEN z.status = 'queued' THEN 'sent' ELSE z.status END,
                    msg_id = v.mid, sent_at = now(), data_sealed = NULL, claimed_until = NULL,
                    last_error = CASE WHEN z.status = 'queued' THEN NULL ELSE z.last_error END,
                    watch = true, watch_at = now()
                 FROM unnest($1::bigint[], $2::text[]) AS v(id, mid)
                 WHERE z.id = v.id",
                &[&sent_ids, &sent_mids],
            )
            .await?;
            let events: Vec<(Uuid, &str, &str, i32, Option<Uuid>)> = billable
                .iter()
                .map(|(client, challenge)| {
                    (*client, "zalo", "otp_zns_message", 1, Some(*challenge))
                })
                .collect();
            crate::billing::record(&tx, &events).await?;
            tx.execute_cached(
                "INSERT INTO audit_events (client_id, event, msisdn_masked, msisdn_key, subject_id, detail)
                 SELECT a.client_id, 'zns.sent', a.masked, a.key, a.subject, '{}'::jsonb
                 FROM unnest($1::uuid[], $2::text[], $3::bytea[], $4::uuid[])
                    AS a(client_id, masked, key, subject)",
                &[&audit_clients, &audit_masked, &audit_keys, &audit_subjects],
            )
            .await?;
        }
        if !fail_ids.is_empty() {
            tx.execute_cached(
                "UPDATE zns_outbox z SET status = 'failed', last_error = v.err, data_sealed = NULL,
                    claimed_until = NULL, watch = true, watch_at = now()
                 FROM unnest($1::bigint[], $2::text[]) AS v(id, err)
                 WHERE z.id = v.id AND z.status = 'queued'",
                &[&fail_ids, &fail_errs],
            )
            .await?;
        }
        if !retry_ids.is_empty() {
            tx.execute_cached(
                "UPDATE zns_outbox z SET next_attempt_at = now() + make_interval(secs => v.secs),
                    attempts = z.attempts + 1, last_error = v.err, claimed_until = NULL
                 FROM unnest($1::bigint[], $2::float8[], $3::text[]) AS v(id, secs, err)
                 WHERE z.id = v.id AND z.status = 'queued'",
                &[&retry_ids, &retry_secs, &retry_errs],
            )
            .await?;
        }
        if !unsent_ids.is_empty() {
            tx.execute_cached(
                "UPDATE zns_outbox z SET status = v.status, last_error = v.reason,
                    data_sealed = NULL, claimed_until = NULL, watch = false
                 FROM unnest($1::bigint[], $2::text[], $3::text[]) AS v(id, status, reason)
                 WHERE z.id = v.id AND z.status = 'queued'",
                &[&unsent_ids, &unsent_status, &unsent_reasons],
            )
            .await?;
        }
        tx.commit().await?;
        if !fail_ids.is_empty() {
            self.workflow_wake.notify_one();
        }
        self.funnel.otp("sent", "zalo", sent_ids.len() as u64);
        self.funnel.otp("unsent", "zalo", unsent_ids.len() as u64);
        Ok(())
    }

    /// Asks Zalo after the messages it took that have not been reported received
    /// (`zalo.status_poll_after`), each at most once per that interval, for an hour.
    async fn poll_loop(self: Arc<Self>, shutdown: CancellationToken) {
        let every = self
            .zalo
            .settings()
            .status_poll_after
            .max(Duration::from_millis(200));
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tokio::time::sleep(every / 2) => {}
            }
            if let Err(e) = self.poll(every).await {
                tracing::warn!(error = format!("{e:#}"), "ZNS status poll failed");
            }
        }
    }

    async fn poll(&self, after: Duration) -> anyhow::Result<()> {
        let due: Vec<(String, String)> = {
            let db = self.pool.get().await?;
            db.query_cached(
                "UPDATE zns_outbox z SET polled_at = now()
                 WHERE z.id IN (
                    SELECT id FROM zns_outbox
                    WHERE status = 'sent' AND sent_at > now() - interval '1 hour'
                      AND sent_at < now() - make_interval(secs => $1::float8)
                      AND (polled_at IS NULL OR polled_at < now() - make_interval(secs => $1::float8))
                    ORDER BY sent_at LIMIT 32
                    FOR UPDATE SKIP LOCKED)
                 RETURNING z.msg_id, z.msisdn",
                &[&after.as_secs_f64()],
            )
            .await?
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect()
        };
        for (msg_id, msisdn) in due {
            match self.zalo.status(&msg_id, &msisdn).await {
                Ok(Delivery::Received { at }) => {
                    received(&self.pool, &msg_id, at.as_deref()).await?;
                }
                Ok(Delivery::Pending) => {}
                Err(e) => tracing::info!(error = %e, "ZNS status not had; asked again later"),
            }
        }
        Ok(())
    }
}

/// Zalo says message `msg_id` reached the Zalo app (a delivery event, or a status
/// answer), at `at_ms` (ms since the epoch) if it says when. Returns whether a step of
/// ours was newly marked received; the workflow makes its event.
pub async fn received(pool: &Pool, msg_id: &str, at_ms: Option<&str>) -> anyhow::Result<bool> {
    let at: Option<f64> = at_ms
        .and_then(|t| t.parse::<f64>().ok())
        .map(|ms| ms / 1000.0);
    let db = pool.get().await?;
    let n = db
        .execute_cached(
            "UPDATE zns_outbox SET delivered_at = coalesce(to_timestamp($2::float8), now()),
                status = CASE WHEN status = 'sent' THEN 'delivered' ELSE status END,
                watch = true, watch_at = now()
             WHERE msg_id = $1 AND delivered_at IS NULL",
            &[&msg_id, &at],
        )
        .await?;
    Ok(n > 0)
}
