//! Channel workflows move on here: every `otp.workflow_interval`, each instance takes
//! the steps someone waits on (`watch`, claimed with `FOR UPDATE SKIP LOCKED`), decides
//! for each (`decide`, pure) and writes what follows in one transaction: the next
//! channel released when a step failed for good or has not confirmed delivery by its
//! deadline, a Zalo step that ran out marked `timed_out`, and the OTP events
//! (`otp.sent`, `otp.delivered`, `otp.fallback`, `otp.failed`, `otp.expired`) for the
//! clients that want them. Held steps of a verification that ended are ended too.

use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::Pool;
use postgres_from_row::FromRow;
use serde_json::json;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::receipts::SMS_RECEIPTS_JOIN;
use crate::store::Cached;

pub struct Workflow {
    pub pool: Pool,
    pub interval: Duration,
    /// Woken when a step is released to them.
    pub sms_wake: Arc<Notify>,
    pub zns_wake: Arc<Notify>,
    /// Wakes this pass before its interval: a step failed for good on this instance.
    pub wake: Arc<Notify>,
}

/// A watched step, as both outboxes read it.
#[derive(Debug, Clone, FromRow)]
pub struct Watched {
    pub channel: String,
    pub id: i64,
    pub challenge_id: Uuid,
    pub send: i32,
    pub step: i16,
    pub status: String,
    pub error: Option<String>,
    pub notified: Option<String>,
    /// Its deadline passed, undelivered, and nothing of it is in flight.
    pub overdue: bool,
    pub delivered: bool,
    /// An SMS receipt's final state other than delivered.
    pub bad_state: Option<String>,
    pub events: bool,
    /// Its code is the verification's current one, and still good.
    pub live: bool,
    pub next_channel: Option<String>,
    pub next_status: Option<String>,
}

/// What becomes of a watched step.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Decision {
    /// Events to make, in order: (type, what it adds to `data`).
    pub events: Vec<(&'static str, serde_json::Value)>,
    /// Release the next step.
    pub advance: bool,
    /// A step that ran out: a Zalo one is `timed_out`; an SMS one still queued is
    /// withdrawn (one that went out stays as it is).
    pub timed_out: bool,
    pub notified: Option<String>,
    /// Whether to look at it again.
    pub keep_watching: bool,
}

/// Receipt states that mean an SMS will not arrive.
fn failed_receipt(state: &str) -> bool {
    matches!(state, "undeliverable" | "expired" | "rejected" | "deleted")
}

/// What follows for one watched step.
pub fn decide(w: &Watched) -> Decision {
    let mut d = Decision {
        notified: w.notified.clone(),
        ..Decision::default()
    };
    let base = |extra: serde_json::Value| {
        let mut v = json!({ "channel": w.channel, "send": w.send, "step": w.step });
        if let (Some(o), Some(e)) = (v.as_object_mut(), extra.as_object()) {
            o.extend(e.clone());
        }
        v
    };
    let went = w.delivered || matches!(w.status.as_str(), "submitted" | "sent" | "delivered");
    let receipt_failed = w.bad_state.as_deref().is_some_and(failed_receipt);
    let failed = w.status == "failed" || receipt_failed;
    let finished =
        |n: &Option<String>| matches!(n.as_deref(), Some("delivered" | "fallback" | "failed"));
    if w.events && went && d.notified.is_none() {
        d.events.push(("otp.sent", base(json!({}))));
        d.notified = Some("sent".into());
    }
    if w.events && w.delivered && !matches!(d.notified.as_deref(), Some("delivered")) {
        d.events.push(("otp.delivered", base(json!({}))));
        d.notified = Some("delivered".into());
    }
    let reason = if failed {
        w.bad_state
            .clone()
            .filter(|_| receipt_failed)
            .or_else(|| w.error.clone())
            .unwrap_or_else(|| "failed".into())
    } else {
        "timeout".into()
    };
    let gave_up = failed || (w.overdue && !w.delivered);
    let next_held = w.next_status.as_deref() == Some("held");
    if gave_up && w.live && next_held && !finished(&d.notified) {
        d.advance = true;
        d.timed_out = !failed;
        if w.events {
            d.events.push((
                "otp.fallback",
                base(json!({
                    "next_channel": w.next_channel,
                    "reason": reason,
                })),
            ));
        }
        d.notified = Some("fallback".into());
    } else if failed && w.live && w.next_channel.is_none() && !finished(&d.notified) {
        if w.events {
            d.events
                .push(("otp.failed", base(json!({ "reason": reason }))));
        }
        d.notified = Some("failed".into());
    }
    let settled = matches!(
        w.status.as_str(),
        "failed" | "canceled" | "expired" | "timed_out"
    ) || receipt_failed;
    d.keep_watching = w.live
        && !settled
        && !(w.delivered && (!w.events || d.notified.as_deref() == Some("delivered")))
        // Someone still waits on it: a later step (until it gave way) or the events.
        && ((next_held && !d.advance) || w.events);
    d
}

/// The step after a watched one (`o`), in either outbox.
const NEXT_STEP: &str = "LEFT JOIN LATERAL (
        SELECT 'sms' AS channel, n.status FROM sms_outbox n
        WHERE n.challenge_id = o.challenge_id AND n.code_version = o.code_version
          AND n.step = o.step + 1
        UNION ALL
        SELECT 'zalo', n.status FROM zns_outbox n
        WHERE n.challenge_id = o.challenge_id AND n.code_version = o.code_version
          AND n.step = o.step + 1
        LIMIT 1) nx ON true";

/// Whether a watched step's code is its verification's current one, and still good.
const LIVE: &str =
    "(c.status = 'pending' AND c.expires_at > now() AND c.code_version = o.code_version)";

/// The SMS steps due to be looked at, with their verification's state, their receipts
/// and the step after them. Each is locked with its verification (skipping those another
/// transaction holds: a check, resend or cancel takes the verification first, so the two
/// never wait on each other), and read as locked. `$1`: the most to take.
static WATCHED_SMS_SQL: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!(
        "SELECT 'sms' AS channel, o.id, o.challenge_id, coalesce(o.code_version, 1) AS send,
            o.step, o.status, o.last_error AS error, o.notified,
            (o.deadline IS NOT NULL AND o.deadline <= now()
                AND (o.claimed_until IS NULL OR o.claimed_until < now())
                AND NOT coalesce(r.parts > 0 AND r.delivered = r.parts, false)) AS overdue,
            coalesce(r.parts > 0 AND r.delivered = r.parts, false) AS delivered,
            r.bad_state, c.events, {LIVE} AS live,
            nx.channel AS next_channel, nx.status AS next_status
        FROM sms_outbox o
        JOIN otp_challenges c ON c.id = o.challenge_id
        {SMS_RECEIPTS_JOIN}
        {NEXT_STEP}
        WHERE o.watch AND o.watch_at <= now()
        ORDER BY o.watch_at LIMIT $1
        FOR NO KEY UPDATE OF o, c SKIP LOCKED"
    )
});

/// As [`WATCHED_SMS_SQL`], for the Zalo steps.
static WATCHED_ZNS_SQL: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!(
        "SELECT 'zalo' AS channel, o.id, o.challenge_id, o.code_version AS send, o.step,
            o.status, o.last_error AS error, o.notified,
            (o.deadline IS NOT NULL AND o.deadline <= now() AND o.delivered_at IS NULL
                AND o.status IN ('queued', 'sent')
                AND (o.claimed_until IS NULL OR o.claimed_until < now())) AS overdue,
            o.delivered_at IS NOT NULL AS delivered, NULL::text AS bad_state, c.events,
            {LIVE} AS live, nx.channel AS next_channel, nx.status AS next_status
        FROM zns_outbox o
        JOIN otp_challenges c ON c.id = o.challenge_id
        {NEXT_STEP}
        WHERE o.watch AND o.watch_at <= now()
        ORDER BY o.watch_at LIMIT $1
        FOR NO KEY UPDATE OF o, c SKIP LOCKED"
    )
});

/// Releases the steps after `($1 challenge, $2 version, $3 step)`: queued now, with a
/// deadline when a step follows them too. Returns the channels released.
const RELEASE_SQL: &str = "
    WITH v AS (SELECT * FROM unnest($1::uuid[], $2::int4[], $3::int2[]) AS v(cid, ver, step)),
    s AS (
        UPDATE sms_outbox o SET status = 'queued', next_attempt_at = now(), watch = true,
            watch_at = now(),
            deadline = CASE WHEN EXISTS (
                    SELECT 1 FROM zns_outbox n WHERE n.challenge_id = o.challenge_id
                      AND n.code_version = o.code_version AND n.step = o.step + 1)
                THEN now() + make_interval(secs => c.channel_timeout_ms / 1000.0) END
        FROM v, otp_challenges c
        WHERE o.challenge_id = v.cid AND o.code_version = v.ver AND o.step = v.step + 1
          AND o.status = 'held' AND c.id = v.cid
        RETURNING 'sms'::text AS channel),
    z AS (
        UPDATE zns_outbox o SET status = 'queued', next_attempt_at = now(), watch = true,
            watch_at = now(), activated_at = now(),
            deadline = CASE WHEN EXISTS (
                    SELECT 1 FROM sms_outbox n WHERE n.challenge_id = o.challenge_id
                      AND n.code_version = o.code_version AND n.step = o.step + 1)
                THEN now() + make_interval(secs => c.channel_timeout_ms / 1000.0) END
        FROM v, otp_challenges c
        WHERE o.challenge_id = v.cid AND o.code_version = v.ver AND o.step = v.step + 1
          AND o.status = 'held' AND c.id = v.cid
        RETURNING 'zalo'::text AS channel)
    SELECT channel FROM s UNION ALL SELECT channel FROM z";

/// Held steps of `table` whose verification ended, or whose code was superseded: never
/// sent (`erase`: what of the row goes with them).
fn end_held_sql(table: &str, erase: &str) -> String {
    format!(
        "UPDATE {table} o SET
            status = CASE WHEN c.status = 'expired' OR (c.status = 'pending' AND c.expires_at <= now())
                          THEN 'expired' ELSE 'canceled' END,
            last_error = CASE
                WHEN c.code_version <> o.code_version THEN 'superseded_by_resend'
                WHEN c.status = 'pending' AND c.expires_at <= now() THEN 'challenge_expired'
                ELSE 'challenge_' || c.status END,
            {erase}
        FROM otp_challenges c
        WHERE o.status = 'held' AND c.id = o.challenge_id
          AND (c.status <> 'pending' OR c.expires_at <= now() OR c.code_version <> o.code_version)"
    )
}

static END_HELD_SMS_SQL: std::sync::LazyLock<String> =
    std::sync::LazyLock::new(|| end_held_sql("sms_outbox", "body_sealed = NULL"));
static END_HELD_ZNS_SQL: std::sync::LazyLock<String> =
    std::sync::LazyLock::new(|| end_held_sql("zns_outbox", "data_sealed = NULL, watch = false"));

/// Verifications whose clients want events and whose code ran out unused: `expired`.
const EXPIRE_SQL: &str = "UPDATE otp_challenges c SET status = 'expired', updated_at = now()
    WHERE c.id IN (
        SELECT id FROM otp_challenges
        WHERE status = 'pending' AND events AND expires_at <= now()
        ORDER BY expires_at LIMIT 256
        FOR UPDATE SKIP LOCKED)
    RETURNING c.id";

/// Per outbox: the watched steps' ids, what was last told of each, whether to go on
/// watching it.
type Marks = (Vec<i64>, Vec<Option<String>>, Vec<bool>);

/// Watched steps looked at per pass, of each outbox.
const WATCH_BATCH: i64 = 256;

impl Workflow {
    pub async fn run(self, shutdown: CancellationToken) {
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tokio::time::sleep(self.interval) => {}
                _ = self.wake.notified() => {}
            }
            let mut released = Vec::new();
            let mut outcome = Ok(());
            // A full pass leaves more due: again at once (bounded, so that a flood cannot
            // hold the loop from shutdown).
            for _ in 0..64 {
                match self.pass().await {
                    Ok((r, full)) => {
                        released.extend(r);
                        if !full || shutdown.is_cancelled() {
                            break;
                        }
                    }
                    Err(e) => {
                        outcome = Err(e);
                        break;
                    }
                }
            }
            match outcome.map(|()| released) {
                Ok(released) => {
                    if released.iter().any(|c| c == "sms") {
                        self.sms_wake.notify_one();
                    }
                    if released.iter().any(|c| c == "zalo") {
                        self.zns_wake.notify_one();
                    }
                }
                Err(e) => tracing::warn!(error = format!("{e:#}"), "workflow pass failed"),
            }
        }
        tracing::info!("OTP workflow stopped");
    }

    /// One pass; returns the channels of the steps it released, and whether it took as
    /// many watched steps as it may (more may be due).
    pub async fn pass(&self) -> anyhow::Result<(Vec<String>, bool)> {
        let mut db = self.pool.get().await?;
        let tx = db.transaction().await?;
        let mut events: Vec<(Uuid, &str, serde_json::Value)> = Vec::new();
        for row in tx.query_cached(EXPIRE_SQL, &[]).await? {
            events.push((row.get(0), "otp.expired", json!({})));
        }
        tx.execute_cached(&END_HELD_SMS_SQL, &[]).await?;
        tx.execute_cached(&END_HELD_ZNS_SQL, &[]).await?;
        let mut watched: Vec<Watched> = Vec::new();
        let mut full = false;
        for sql in [WATCHED_SMS_SQL.as_str(), WATCHED_ZNS_SQL.as_str()] {
            let rows = tx.query_cached(sql, &[&WATCH_BATCH]).await?;
            full |= rows.len() as i64 == WATCH_BATCH;
            for row in &rows {
                watched.push(Watched::try_from_row(row)?);
            }
        }
        let recheck = self.interval.max(Duration::from_millis(250)) * 2;
        let (mut adv_cids, mut adv_vers, mut adv_steps) = (vec![], vec![], vec![]);
        let (mut timed_out, mut sms_timed_out) = (vec![], vec![]);
        let mut upd: [Marks; 2] = Default::default();
        for w in &watched {
            let d = decide(w);
            for (kind, detail) in d.events {
                events.push((w.challenge_id, kind, detail));
            }
            if d.advance {
                adv_cids.push(w.challenge_id);
                adv_vers.push(w.send);
                adv_steps.push(w.step);
            }
            if d.timed_out {
                match w.channel.as_str() {
                    "zalo" => timed_out.push(w.id),
                    _ => sms_timed_out.push(w.id),
                }
            }
            let table = usize::from(w.channel == "zalo");
            upd[table].0.push(w.id);
            upd[table].1.push(d.notified);
            upd[table].2.push(d.keep_watching);
        }
        if !timed_out.is_empty() {
            tx.execute_cached(
                "UPDATE zns_outbox SET status = 'timed_out', last_error = 'timeout',
                    data_sealed = NULL
                 WHERE id = ANY($1) AND status IN ('queued', 'sent')",
                &[&timed_out],
            )
            .await?;
        }
        if !sms_timed_out.is_empty() {
            // Its deadline has done its work; one still queued (its bind down) is not sent
            // after the next channel took over.
            tx.execute_cached(
                "UPDATE sms_outbox SET deadline = NULL,
                    status = CASE WHEN status = 'queued' THEN 'canceled' ELSE status END,
                    last_error = CASE WHEN status = 'queued' THEN 'timeout' ELSE last_error END,
                    body_sealed = CASE WHEN status = 'queued' THEN NULL ELSE body_sealed END
                 WHERE id = ANY($1)",
                &[&sms_timed_out],
            )
            .await?;
        }
        let released: Vec<String> = if adv_cids.is_empty() {
            Vec::new()
        } else {
            tx.query_cached(RELEASE_SQL, &[&adv_cids, &adv_vers, &adv_steps])
                .await?
                .iter()
                .map(|r| r.get(0))
                .collect()
        };
        for (table, (ids, notified, keep)) in ["sms_outbox", "zns_outbox"].iter().zip(&upd) {
            if ids.is_empty() {
                continue;
            }
            tx.execute_cached(
                &format!(
                    "UPDATE {table} o SET notified = v.n, watch = v.keep,
                        watch_at = now() + make_interval(secs => $4::float8)
                     FROM unnest($1::bigint[], $2::text[], $3::bool[]) AS v(id, n, keep)
                     WHERE o.id = v.id"
                ),
                &[ids, notified, keep, &recheck.as_secs_f64()],
            )
            .await?;
        }
        crate::webhooks::otp_events(&tx, &events).await?;
        tx.commit().await?;
        Ok((released, full))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(channel: &str, status: &str) -> Watched {
        Watched {
            channel: channel.into(),
            id: 1,
            challenge_id: Uuid::nil(),
            send: 1,
            step: 0,
            status: status.into(),
            error: None,
            notified: None,
            overdue: false,
            delivered: false,
            bad_state: None,
            events: true,
            live: true,
            next_channel: None,
            next_status: None,
        }
    }

    fn kinds(d: &Decision) -> Vec<&str> {
        d.events.iter().map(|(k, _)| *k).collect()
    }

    #[test]
    fn a_zalo_step_without_an_account_falls_back_to_sms() {
        let mut w = step("zalo", "failed");
        w.error = Some("zns_-118".into());
        w.next_channel = Some("sms".into());
        w.next_status = Some("held".into());
        let d = decide(&w);
        assert!(d.advance && !d.timed_out && !d.keep_watching);
        assert_eq!(kinds(&d), ["otp.fallback"]);
        assert_eq!(d.events[0].1["reason"], "zns_-118");
        assert_eq!(d.events[0].1["next_channel"], "sms");
        // Once it has given way, the next pass does nothing more with it.
        w.notified = d.notified;
        assert_eq!(decide(&w).events.len(), 0);
        assert!(!decide(&w).advance);
    }

    #[test]
    fn a_step_that_has_not_confirmed_by_its_deadline_gives_way() {
        let mut w = step("zalo", "sent");
        w.next_channel = Some("sms".into());
        w.next_status = Some("held".into());
        let d = decide(&w);
        assert_eq!(kinds(&d), ["otp.sent"]);
        assert!(!d.advance && d.keep_watching);
        w.notified = d.notified;
        w.overdue = true;
        let d = decide(&w);
        assert!(d.advance && d.timed_out);
        assert_eq!(kinds(&d), ["otp.fallback"]);
        assert_eq!(d.events[0].1["reason"], "timeout");
        // Delivered in time: no fallback, watched no more once told.
        let mut w = step("zalo", "delivered");
        w.delivered = true;
        w.next_channel = Some("sms".into());
        w.next_status = Some("held".into());
        let d = decide(&w);
        assert_eq!(kinds(&d), ["otp.sent", "otp.delivered"]);
        assert!(!d.advance && !d.keep_watching);
    }

    #[test]
    fn the_last_step_failing_is_the_verifications_failure() {
        let mut w = step("sms", "submitted");
        w.notified = Some("sent".into());
        w.bad_state = Some("undeliverable".into());
        let d = decide(&w);
        assert_eq!(kinds(&d), ["otp.failed"]);
        assert!(!d.keep_watching);
        // Without events nothing is made, and nothing waits on it.
        let mut quiet = step("sms", "failed");
        quiet.events = false;
        let d = decide(&quiet);
        assert!(d.events.is_empty() && !d.keep_watching && !d.advance);
    }

    #[test]
    fn a_step_of_an_ended_or_superseded_code_moves_nothing_on() {
        let mut w = step("zalo", "failed");
        w.live = false;
        w.next_channel = Some("sms".into());
        w.next_status = Some("held".into());
        let d = decide(&w);
        assert!(!d.advance && !d.keep_watching);
        assert!(d.events.is_empty());
    }
}
