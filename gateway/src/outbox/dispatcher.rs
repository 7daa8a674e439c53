//! The dispatcher. Dispatchers on every instance claim queued rows in batches (`FOR UPDATE SKIP LOCKED`,
//! with a claim lease so a dead instance's rows come back), submit them over the route's
//! bind, and write the results back in one statement per batch. They wake when this
//! instance queues a message, and on a poll interval (`outbox.poll_interval`) for the
//! messages other instances queued.

use crate::store::tables::sms_outbox::Claim;
use crate::store::tables::FromRow;
use crate::store::Cached;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use carrier_adapters::receipt::{alternate_message_ids, normalise_message_id};
use carrier_adapters::smpp::{BindGroup, OutgoingSms, SubmitError};
use carrier_adapters::sms_text;
use deadpool_postgres::Pool;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::config::OutboxSettings;
use crate::crypto::ServerKeys;

pub struct Dispatcher {
    pub funnel: Arc<crate::telemetry::funnel::Funnel>,
    pub pool: Pool,
    pub keys: Arc<ServerKeys>,
    pub binds: Arc<BTreeMap<String, BindGroup>>,
    /// Route → (fallback route, after how long down).
    pub fallbacks: BTreeMap<String, (String, Duration)>,
    pub settings: OutboxSettings,
    pub wake: Arc<Notify>,
    /// The channel workflows' pass, woken when an SMS failed for good (a later channel
    /// of its send goes at once).
    pub workflow_wake: Arc<Notify>,
}

struct Claimed {
    id: i64,
    route: String,
    msisdn: String,
    sender: String,
    body_sealed: Option<Vec<u8>>,
    /// Failures the carrier caused so far.
    attempts: i32,
    client: Option<uuid::Uuid>,
    /// The X-Request-Id of the request that queued it.
    request_id: Option<String>,
    /// Why it must not be sent any more: its challenge ended (`approved`, `canceled`,
    /// `max_attempts_reached`, `expired`) or a resend superseded its code.
    ended: Option<String>,
    /// When its code stops being valid (`None`: not an OTP's SMS).
    valid_until: Option<std::time::Instant>,
    /// Queued longer than `outbox.max_age`.
    too_old: bool,
}

#[derive(Clone)]
enum Outcome {
    /// The message ids of the parts, in order.
    Submitted {
        id: i64,
        /// The route it actually went out on (a fallback when the route was down).
        route: String,
        message_ids: Vec<String>,
    },
    Retry {
        id: i64,
        after: Duration,
        error: String,
        /// Whether the carrier caused it (a transient refusal, no answer): spends an
        /// attempt. A bind that was down or died under the request spends none.
        counted: bool,
    },
    Failed {
        id: i64,
        error: String,
    },
    /// Not sent because its challenge ended first: `status` is the row's end
    /// (`expired` or `canceled`), `reason` says which end of the challenge.
    Unsent {
        id: i64,
        status: &'static str,
        reason: String,
    },
}

/// How soon a message whose bind died under it is offered again (no attempt spent): a
/// moment, so that a flapping bind's next session takes it.
const REQUEUE_AFTER: Duration = Duration::from_millis(100);

/// Queued SMS of the down routes (`$1`) whose verification is no longer pending: ended
/// unsent, as the claim ends them.
pub const SWEEP_UNSENT_SQL: &str = "UPDATE sms_outbox o SET
        status = CASE WHEN c.status = 'expired' OR (c.status = 'pending' AND c.expires_at <= now())
                      THEN 'expired' ELSE 'canceled' END,
        last_error = CASE
            WHEN c.status = 'pending' AND c.expires_at <= now() THEN 'challenge_expired'
            WHEN c.status = 'pending' THEN 'superseded_by_resend'
            ELSE 'challenge_' || c.status END,
        body_sealed = NULL, claimed_until = NULL
    FROM otp_challenges c
    WHERE c.id = o.challenge_id AND o.status = 'queued' AND o.route = ANY($1)
      AND (o.claimed_until IS NULL OR o.claimed_until < now())
      AND (c.status <> 'pending' OR c.expires_at <= now()
           OR o.code_version IS DISTINCT FROM c.code_version)";

/// Queued SMS of the down routes (`$1`) older than `$2` seconds: failed.
pub const SWEEP_OLD_SQL: &str = "UPDATE sms_outbox o SET status = 'failed', last_error = 'max_age',
        body_sealed = NULL, claimed_until = NULL
    WHERE o.status = 'queued' AND o.route = ANY($1)
      AND (o.claimed_until IS NULL OR o.claimed_until < now())
      AND o.created_at < now() - make_interval(secs => $2::float8)";

/// The claim's settings for its transaction, then [`claim_sql`]: the oldest due rows of
/// the bound routes (`$2`), leased for `$1` seconds, each with its challenge's state.
/// Run with bitmap scans off and its plan made once per connection (`store::PLAN_ONCE`), it
/// walks `sms_outbox_ready` in its order and stops at the limit; hash and merge joins
/// are off so that the challenges are read by primary key, never whole. The limit is
/// written into the statement (a validated integer from the configuration): given as a
/// parameter, the one plan would be made for a tenth of the queue, which on a deep
/// backlog is a read of the whole table.
pub fn claim_settings() -> String {
    format!(
        "{}; SET LOCAL enable_bitmapscan = off; SET LOCAL enable_hashjoin = off; SET LOCAL enable_mergejoin = off; SET LOCAL enable_seqscan = off",
        crate::store::PLAN_ONCE
    )
}

/// See [`claim_settings`]. A claim spends no attempt: attempts count the failures the
/// carrier caused, written with the outcome. Each row comes with why it must not be sent
/// any more (`ended`), the seconds left of its code (`valid_for`) and its age.
pub fn claim_sql(batch_size: i64) -> String {
    format!(
        "WITH claimed AS (
            UPDATE sms_outbox o SET claimed_until = now() + make_interval(secs => $1::float8)
            WHERE o.id IN (
                SELECT id FROM sms_outbox
                WHERE status = 'queued' AND next_attempt_at <= now()
                  AND (claimed_until IS NULL OR claimed_until < now())
                  AND route = ANY($2)
                ORDER BY next_attempt_at, id
                LIMIT {batch_size}
                FOR UPDATE SKIP LOCKED)
            RETURNING o.id, o.route, o.msisdn, o.sender, o.body_sealed, o.attempts,
                o.challenge_id, o.code_version, o.request_id, o.created_at)
         SELECT cl.id, cl.route, cl.msisdn, cl.sender, cl.body_sealed, cl.attempts,
            c.client_id, cl.request_id,
            CASE WHEN c.id IS NULL THEN NULL
                 WHEN c.status <> 'pending' THEN c.status
                 WHEN c.expires_at <= now() THEN 'expired'
                 WHEN cl.code_version IS DISTINCT FROM c.code_version THEN 'superseded'
            END AS ended,
            extract(epoch FROM c.expires_at - clock_timestamp())::float8 AS valid_for,
            extract(epoch FROM now() - cl.created_at)::float8 AS age
         FROM claimed cl LEFT JOIN otp_challenges c ON c.id = cl.challenge_id"
    )
}

/// Submitted SMS: their ids at the SMSC, the text erased.
pub const RECORD_SUBMITTED_SQL: &str = "UPDATE sms_outbox o SET status = 'submitted', smsc_message_id = v.mid,
                    message_key = v.key, message_key_dec = v.dec, message_key_hex = v.hex,
                    route = v.route, submitted_at = now(), body_sealed = NULL,
                    claimed_until = NULL, last_error = NULL
                 FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[])
                    AS v(id, mid, key, dec, hex, route)
                 WHERE o.id = v.id";

/// One `sms.submitted` audit event per submitted SMS.
pub const AUDIT_SUBMITTED_SQL: &str =
    "INSERT INTO audit_events (client_id, event, msisdn_masked, msisdn_key, subject_id, detail)
                 SELECT c.client_id, 'sms.submitted', o.msisdn_masked, o.msisdn_key, o.challenge_id,
                        jsonb_build_object('route', o.route, 'outbox_id', o.id, 'parts', o.parts)
                 FROM (SELECT x.id, x.route, x.challenge_id, v.masked AS msisdn_masked,
                              v.key AS msisdn_key, v.parts
                       FROM sms_outbox x
                       JOIN unnest($1::bigint[], $2::text[], $3::bytea[], $4::int[])
                            AS v(id, masked, key, parts) ON v.id = x.id) o
                 LEFT JOIN otp_challenges c ON c.id = o.challenge_id";

/// SMS to try again later; `$4` is 1 for a failure the carrier caused (it waits its
/// back-off), 0 for one that spends no attempt: that one keeps its place in the queue
/// (`next_attempt_at`) and is only held back for the moment (`claimed_until`).
pub const RECORD_RETRY_SQL: &str =
    "UPDATE sms_outbox o SET
                    next_attempt_at = CASE WHEN v.inc = 0 THEN o.next_attempt_at
                                      ELSE now() + make_interval(secs => v.secs) END,
                    claimed_until = CASE WHEN v.inc = 0 THEN now() + make_interval(secs => v.secs) END,
                    last_error = v.err, attempts = o.attempts + v.inc
                 FROM unnest($1::bigint[], $2::float8[], $3::text[], $4::int[]) AS v(id, secs, err, inc)
                 WHERE o.id = v.id AND o.status = 'queued'";

/// SMS not sent because their challenge ended first (`expired` or `canceled`, with the
/// reason), never billed.
pub const RECORD_UNSENT_SQL: &str = "UPDATE sms_outbox o SET status = v.status, body_sealed = NULL,
                    claimed_until = NULL, last_error = v.reason
                 FROM unnest($1::bigint[], $2::text[], $3::text[]) AS v(id, status, reason)
                 WHERE o.id = v.id AND o.status = 'queued'";

/// SMS that failed for good (unless canceled meanwhile).
pub const RECORD_FAILED_SQL: &str = "UPDATE sms_outbox o SET status = 'failed', body_sealed = NULL,
                    claimed_until = NULL, last_error = v.err
                 FROM unnest($1::bigint[], $2::text[]) AS v(id, err)
                 WHERE o.id = v.id AND o.status = 'queued'";

impl Dispatcher {
    /// Runs `outbox.workers` claim–send–record loops until shutdown; each finishes the
    /// batch it claimed.
    pub async fn run(self, shutdown: CancellationToken) {
        let me = Arc::new(self);
        let mut workers: Vec<_> = (0..me.settings.workers.max(1))
            .map(|_| tokio::spawn(me.clone().work(shutdown.clone())))
            .collect();
        workers.push(tokio::spawn(me.clone().sweep_loop(shutdown.clone())));
        for w in workers {
            let _ = w.await;
        }
        tracing::info!("outbox dispatcher stopped");
    }

    async fn work(self: Arc<Self>, shutdown: CancellationToken) {
        loop {
            match self.drain(&shutdown).await {
                Ok(()) => {}
                Err(e) => tracing::warn!(error = format!("{e:#}"), "outbox pass failed"),
            }
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(self.settings.poll_interval) => {}
            }
        }
    }

    /// Claims and sends batches until nothing is ready or shutdown begins; a batch that
    /// was claimed is always finished and recorded.
    async fn drain(&self, shutdown: &CancellationToken) -> anyhow::Result<()> {
        loop {
            if shutdown.is_cancelled() {
                return Ok(());
            }
            let batch = self.claim().await?;
            if batch.is_empty() {
                return Ok(());
            }
            if batch.len() as i64 == self.settings.batch_size {
                // More is waiting: let another worker claim the next batch meanwhile.
                self.wake.notify_one();
            }
            let numbers: Vec<(carrier_adapters::Msisdn, i64, Option<uuid::Uuid>)> = batch
                .iter()
                .filter_map(|r| {
                    carrier_adapters::Msisdn::parse(&r.msisdn)
                        .ok()
                        .map(|m| (m, r.id, r.client))
                })
                .collect();
            let outcomes =
                futures::future::join_all(batch.into_iter().map(|row| self.send(row))).await;
            self.record_durably(outcomes, &numbers).await?;
        }
    }

    /// Records a batch's outcomes durably (`durable::record_durably`).
    async fn record_durably(
        &self,
        outcomes: Vec<Outcome>,
        msisdns: &[(carrier_adapters::Msisdn, i64, Option<uuid::Uuid>)],
    ) -> anyhow::Result<()> {
        super::durable::record_durably(self.settings.claim_timeout, "outbox outcomes", || {
            self.record(outcomes.clone(), msisdns)
        })
        .await
    }

    /// Every few seconds, ends the queued SMS that the claim does not reach because their
    /// route is down: those whose verification ended (unsent, as the claim would end
    /// them) and those older than `outbox.max_age` (failed). Without it they would wait
    /// out an outage as `queued` and be ended only when the carrier is back.
    async fn sweep_loop(self: Arc<Self>, shutdown: CancellationToken) {
        let every = (self.settings.poll_interval * 10)
            .clamp(Duration::from_secs(1), Duration::from_secs(10));
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tokio::time::sleep(every) => {}
            }
            if let Err(e) = self.sweep().await {
                tracing::warn!(error = format!("{e:#}"), "outbox sweep failed");
            }
        }
    }

    async fn sweep(&self) -> anyhow::Result<()> {
        let down: Vec<String> = self
            .binds
            .keys()
            .filter(|route| self.route_to_use(route).is_none())
            .cloned()
            .collect();
        if down.is_empty() {
            return Ok(());
        }
        let db = self.pool.get().await?;
        let max_age = self.settings.max_age.as_secs_f64();
        let unsent = db.execute_cached(SWEEP_UNSENT_SQL, &[&down]).await?;
        let old = db.execute_cached(SWEEP_OLD_SQL, &[&down, &max_age]).await?;
        if unsent + old > 0 {
            tracing::info!(unsent, too_old = old, routes = ?down, "queued SMS of down routes ended");
        }
        self.funnel.otp("unsent", "-", unsent);
        Ok(())
    }

    /// Claims ready rows of routes whose bind is up; rows of a route that is down stay
    /// queued without spending attempts, so a flapping bind does not fail messages.
    async fn claim(&self) -> anyhow::Result<Vec<Claimed>> {
        let bound: Vec<String> = self
            .binds
            .keys()
            .filter(|route| self.route_to_use(route).is_some())
            .cloned()
            .collect();
        if bound.is_empty() {
            return Ok(Vec::new());
        }
        let mut db = self.pool.get().await?;
        let lease = self.settings.claim_timeout.as_secs_f64();
        // The oldest due rows, through sms_outbox_ready in its order, stopping at the
        // limit. The planner's statistics of a queue lag behind it (analysed when few
        // rows were queued, it expects a handful): it would rather bitmap-scan every
        // queued row and sort them, on each claim, which made the claim's cost grow with
        // the backlog it is there to drain. Bitmap scans are off for this transaction,
        // and the plan, the index walk at any table size, is made once per connection.
        let tx = db.transaction().await?;
        tx.batch_execute(&claim_settings()).await?;
        let sql = claim_sql(self.settings.batch_size);
        // Taken before the query: the code's life, measured by the database during it,
        // is never overestimated.
        let now = std::time::Instant::now();
        let rows = tx.query_cached(&sql, &[&lease, &bound]).await?;
        tx.commit().await?;
        let max_age = self.settings.max_age.as_secs_f64();
        rows.iter()
            .map(|r| {
                let r = Claim::try_from_row(r)?;
                Ok(Claimed {
                    id: r.id,
                    route: r.route,
                    msisdn: r.msisdn,
                    sender: r.sender,
                    body_sealed: r.body_sealed,
                    attempts: r.attempts,
                    client: r.client_id,
                    request_id: r.request_id,
                    ended: r.ended,
                    valid_until: r
                        .valid_for
                        .map(|secs| now + Duration::from_secs_f64(secs.max(0.0))),
                    too_old: r.age.is_some_and(|age| age >= max_age),
                })
            })
            .collect()
    }

    /// The route a row of `route` goes out on now: itself when bound, its fallback when
    /// it has been down long enough and the fallback is bound.
    fn route_to_use(&self, route: &str) -> Option<(&str, &BindGroup)> {
        let (name, group) = self.binds.get_key_value(route)?;
        if group.is_bound() {
            return Some((name.as_str(), group));
        }
        let (fallback, after) = self.fallbacks.get(route)?;
        let fallback_group = self.binds.get(fallback)?;
        (group.down_for().is_some_and(|d| d >= *after) && fallback_group.is_bound())
            .then_some((fallback.as_str(), fallback_group))
    }

    /// The pause after the carrier's `attempts`-th failure of a message.
    fn backoff(&self, attempts: i32) -> Duration {
        carrier_adapters::retry::Schedule::doubling(
            self.settings.retry_base,
            self.settings.retry_max,
        )
        .pause(attempts.clamp(1, 32) as u32)
        .unwrap_or(self.settings.retry_max)
    }

    /// Sends one claimed SMS, inside a span that carries the id of the API request that
    /// queued it, so that every log line of its submit can be found from the request's.
    async fn send(&self, row: Claimed) -> Outcome {
        let span = tracing::info_span!(
            "sms",
            outbox = row.id,
            request_id = row.request_id.as_deref().unwrap_or("-"),
        );
        tracing::Instrument::instrument(self.send_in_span(row), span).await
    }

    async fn send_in_span(&self, row: Claimed) -> Outcome {
        if let Some(reason) = unsendable(&row, std::time::Instant::now()) {
            return reason;
        }
        if row.too_old {
            return Outcome::Failed {
                id: row.id,
                error: "max_age".into(),
            };
        }
        let Some(sealed) = row.body_sealed.as_deref() else {
            return Outcome::Failed {
                id: row.id,
                error: "no text to send".into(),
            };
        };
        let text = match self.keys.open(sealed, &row.msisdn) {
            Ok(t) => t,
            Err(e) => {
                return Outcome::Failed {
                    id: row.id,
                    error: format!("cannot open text: {e}"),
                }
            }
        };
        if !self.binds.contains_key(&row.route) {
            return Outcome::Failed {
                id: row.id,
                error: format!("no SMPP route named {}", row.route),
            };
        }
        let Some((route, group)) = self.route_to_use(&row.route) else {
            // The bind went down between the claim and now: nothing was sent.
            return Outcome::Retry {
                id: row.id,
                after: REQUEUE_AFTER,
                error: "not_bound".into(),
                counted: false,
            };
        };
        if route != row.route {
            tracing::info!(outbox = row.id, from = %row.route, to = route, "route down: using its fallback");
        }
        // The SMSC keeps the message no longer than its code is good for; the bind
        // measures what is left right before each part goes out (after waiting for its
        // window or TPS), and sends nothing once it is over.
        let sms = OutgoingSms {
            source: row.sender.clone(),
            destination: row.msisdn.clone(),
            text: sms_text::encode(&text),
            request_receipt: true,
            valid_until: row.valid_until,
            // A brandname at its carrier's limit gives the row back well inside the
            // claim's lease, unsent, rather than be sent again by the next claim.
            wait_until: Some(std::time::Instant::now() + self.settings.claim_timeout / 4),
        };
        drop(text);
        match group.submit(&sms).await {
            Ok(message_ids) => {
                tracing::info!(
                    route,
                    msisdn = %carrier_adapters::Msisdn::parse(&row.msisdn).map(|m| m.masked()).unwrap_or_default(),
                    parts = message_ids.len(),
                    message_id = message_ids.first().map(String::as_str).unwrap_or(""),
                    "sms submitted"
                );
                Outcome::Submitted {
                    id: row.id,
                    route: route.to_owned(),
                    message_ids,
                }
            }
            Err(SubmitError::Expired) => Outcome::Unsent {
                id: row.id,
                status: "expired",
                reason: "challenge_expired".into(),
            },
            Err(e) if e.is_transient() && !e.carrier_caused() => {
                // Not the SMSC's doing: the bind was down or died with the request in
                // flight, or the brandname stayed at its limit (nothing sent). Back to
                // the queue without spending an attempt. If the SMSC had taken it before
                // the bind died, the retry is a duplicate; at most the bind's window.
                tracing::info!(outbox = row.id, route = %row.route, error = %e, "not submitted; queued again");
                Outcome::Retry {
                    id: row.id,
                    after: REQUEUE_AFTER,
                    error: e.label(),
                    counted: false,
                }
            }
            Err(e) if e.is_transient() && row.attempts + 1 < self.settings.max_attempts => {
                tracing::warn!(outbox = row.id, route = %row.route, error = %e, "submit will be retried");
                Outcome::Retry {
                    id: row.id,
                    after: self.backoff(row.attempts + 1),
                    error: e.label(),
                    counted: true,
                }
            }
            Err(e) => {
                tracing::warn!(outbox = row.id, route = %row.route, error = %e, "submit failed for good");
                Outcome::Failed {
                    id: row.id,
                    error: e.label(),
                }
            }
        }
    }

    /// One statement per kind of outcome for the whole batch.
    async fn record(
        &self,
        outcomes: Vec<Outcome>,
        msisdns: &[(carrier_adapters::Msisdn, i64, Option<uuid::Uuid>)],
    ) -> anyhow::Result<()> {
        let (mut ok_ids, mut ok_mids, mut ok_keys, mut ok_routes) =
            (vec![], vec![], vec![], vec![]);
        let (mut ok_dec, mut ok_hex): (Vec<Option<String>>, Vec<Option<String>>) = (vec![], vec![]);
        let (mut part_rows, mut part_nos, mut part_keys, mut part_dec, mut part_hex) =
            (vec![], vec![], vec![], vec![], vec![]);
        let (mut audit_ids, mut audit_masked, mut audit_keys, mut audit_parts) =
            (vec![], vec![], vec![], vec![]);
        // (client, route, segments, outbox id) of each submitted SMS, to bill.
        let mut usage: Vec<(uuid::Uuid, String, i32, i64)> = Vec::new();
        let (mut retry_ids, mut retry_secs, mut retry_errs, mut retry_incs) =
            (vec![], vec![], vec![], vec![]);
        let (mut fail_ids, mut fail_errs) = (vec![], vec![]);
        let (mut unsent_ids, mut unsent_status, mut unsent_reasons) = (vec![], vec![], vec![]);
        for o in outcomes {
            match o {
                Outcome::Submitted {
                    id,
                    route,
                    message_ids,
                } => {
                    ok_routes.push(route);
                    if let Some((msisdn, _, client)) = msisdns.iter().find(|(_, i, _)| *i == id) {
                        if let Some(client) = client {
                            usage.push((
                                *client,
                                ok_routes.last().cloned().unwrap_or_default(),
                                message_ids.len() as i32,
                                id,
                            ));
                        }
                        audit_ids.push(id);
                        audit_masked.push(msisdn.masked());
                        audit_keys.push(self.keys.lookup_key(msisdn.e164()));
                        audit_parts.push(message_ids.len() as i32);
                    }
                    for (i, mid) in message_ids.iter().enumerate() {
                        let (dec, hex) = alternate_message_ids(mid);
                        part_rows.push(id);
                        part_nos.push(i as i32 + 1);
                        part_keys.push(normalise_message_id(mid));
                        part_dec.push(dec);
                        part_hex.push(hex);
                    }
                    let first = message_ids.into_iter().next().unwrap_or_default();
                    ok_ids.push(id);
                    ok_keys.push(normalise_message_id(&first));
                    let (dec, hex) = alternate_message_ids(&first);
                    ok_dec.push(dec);
                    ok_hex.push(hex);
                    ok_mids.push(first);
                }
                Outcome::Retry {
                    id,
                    after,
                    error,
                    counted,
                } => {
                    retry_ids.push(id);
                    retry_secs.push(after.as_secs_f64());
                    retry_errs.push(error);
                    retry_incs.push(i32::from(counted));
                }
                Outcome::Failed { id, error } => {
                    fail_ids.push(id);
                    fail_errs.push(error);
                }
                Outcome::Unsent { id, status, reason } => {
                    unsent_ids.push(id);
                    unsent_status.push(status.to_owned());
                    unsent_reasons.push(reason);
                }
            }
        }
        let mut db = self.pool.get().await?;
        let tx = db.transaction().await?;
        // Each statement joins the batch's ids to primary keys: one plan per connection,
        // index paths only (planned per run, the record transaction's two joins cost more
        // to plan than to run).
        tx.batch_execute(&crate::store::INDEXED_PLAN_ONCE).await?;
        if !ok_ids.is_empty() {
            tx.execute_cached(
                RECORD_SUBMITTED_SQL,
                &[&ok_ids, &ok_mids, &ok_keys, &ok_dec, &ok_hex, &ok_routes],
            )
            .await?;
            tx.execute_cached(
                AUDIT_SUBMITTED_SQL,
                &[&audit_ids, &audit_masked, &audit_keys, &audit_parts],
            )
            .await?;
            let billable: Vec<(uuid::Uuid, &str, &str, i32, Option<uuid::Uuid>)> = usage
                .iter()
                .map(|(client, route, segments, _)| {
                    (*client, route.as_str(), "otp_sms_segment", *segments, None)
                })
                .collect();
            crate::billing::record(&tx, &billable).await?;
            tx.execute_cached(
                "INSERT INTO sms_parts (outbox_id, part, message_key, message_key_dec, message_key_hex)
                 SELECT * FROM unnest($1::bigint[], $2::int[], $3::text[], $4::text[], $5::text[])
                 ON CONFLICT (outbox_id, part) DO UPDATE SET message_key = EXCLUDED.message_key,
                    message_key_dec = EXCLUDED.message_key_dec, message_key_hex = EXCLUDED.message_key_hex",
                &[&part_rows, &part_nos, &part_keys, &part_dec, &part_hex],
            )
            .await?;
        }
        if !retry_ids.is_empty() {
            tx.execute_cached(
                RECORD_RETRY_SQL,
                &[&retry_ids, &retry_secs, &retry_errs, &retry_incs],
            )
            .await?;
        }
        if !unsent_ids.is_empty() {
            tx.execute_cached(
                RECORD_UNSENT_SQL,
                &[&unsent_ids, &unsent_status, &unsent_reasons],
            )
            .await?;
        }
        if !fail_ids.is_empty() {
            tx.execute_cached(RECORD_FAILED_SQL, &[&fail_ids, &fail_errs])
                .await?;
        }
        tx.commit().await?;
        if !fail_ids.is_empty() {
            self.workflow_wake.notify_one();
        }
        for route in &ok_routes {
            self.funnel.otp("sent", route, 1);
        }
        self.funnel.otp("unsent", "-", unsent_ids.len() as u64);
        self.funnel.otp(
            "requeued",
            "-",
            retry_incs.iter().filter(|inc| **inc == 0).count() as u64,
        );
        Ok(())
    }
}

/// A claimed row that must not go out: its challenge ended or its code was superseded
/// (the dispatcher ends it unsent, unbilled), or its code expired while it waited.
fn unsendable(row: &Claimed, now: std::time::Instant) -> Option<Outcome> {
    let (status, reason) = match row.ended.as_deref() {
        Some("expired") => ("expired", "challenge_expired".to_owned()),
        Some("superseded") => ("canceled", "superseded_by_resend".to_owned()),
        Some(other) => ("canceled", format!("challenge_{other}")),
        None if row.valid_until.is_some_and(|t| t <= now) => {
            ("expired", "challenge_expired".to_owned())
        }
        None => return None,
    };
    Some(Outcome::Unsent {
        id: row.id,
        status,
        reason,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(ended: Option<&str>, valid_for: Option<Duration>) -> Claimed {
        Claimed {
            id: 7,
            route: "viettel".into(),
            msisdn: "84971234567".into(),
            sender: "DVC".into(),
            body_sealed: None,
            attempts: 0,
            client: None,
            request_id: None,
            ended: ended.map(str::to_owned),
            valid_until: valid_for.map(|d| std::time::Instant::now() + d),
            too_old: false,
        }
    }

    fn fate(row: &Claimed) -> Option<(&'static str, String)> {
        match unsendable(row, std::time::Instant::now()) {
            Some(Outcome::Unsent { status, reason, .. }) => Some((status, reason)),
            Some(_) => panic!("not an unsent outcome"),
            None => None,
        }
    }

    #[test]
    fn only_the_sms_of_a_pending_unexpired_code_goes_out() {
        let live = Some(Duration::from_secs(60));
        assert_eq!(fate(&row(None, live)), None);
        assert_eq!(fate(&row(None, None)), None, "not an OTP's SMS");
        assert_eq!(
            fate(&row(None, Some(Duration::ZERO))),
            Some(("expired", "challenge_expired".into()))
        );
        assert_eq!(
            fate(&row(Some("expired"), live)),
            Some(("expired", "challenge_expired".into()))
        );
        for (ended, reason) in [
            ("approved", "challenge_approved"),
            ("canceled", "challenge_canceled"),
            ("max_attempts_reached", "challenge_max_attempts_reached"),
            ("superseded", "superseded_by_resend"),
        ] {
            assert_eq!(
                fate(&row(Some(ended), live)),
                Some(("canceled", reason.into())),
                "{ended}"
            );
        }
    }
}
