//! SMS pumping guards: refuse sends that look like traffic pumping (bursts to
//! consecutive numbers, a prefix whose codes stop being used), record what was blocked in
//! the audit trail and the metrics, and warn in the log.

use crate::limits::Limited;
use crate::store::Cached;
use std::sync::atomic::{AtomicU64, Ordering};

use serde_json::json;
use uuid::Uuid;

use crate::audit;
use crate::config::GuardSettings;
use crate::crypto::ServerKeys;
use crate::domain::Msisdn;

/// Refusals by guard, for `/metrics`.
#[derive(Debug, Default)]
pub struct GuardCounters {
    pub sequential: AtomicU64,
    pub conversion: AtomicU64,
}

/// Codes created and approved since the last flush, per (client, prefix, hour), added to
/// `otp_prefix_hourly` about once a second by `run_flusher`. Counts not yet flushed when
/// an instance dies are lost: the guard is a statistical signal, and a second of
/// undercounting does not change it.
#[derive(Debug, Default)]
pub struct ConversionCounts {
    pending: std::sync::Mutex<std::collections::HashMap<BucketKey, (i32, i32)>>,
}

/// (client, prefix, hour as Unix seconds).
type BucketKey = (Uuid, String, i64);

impl ConversionCounts {
    fn add(
        &self,
        client: Uuid,
        e164: &str,
        created: chrono::DateTime<chrono::Utc>,
        sent: i32,
        approved: i32,
    ) {
        let hour = created.timestamp().div_euclid(3600) * 3600;
        let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        let entry = pending
            .entry((client, e164[..4.min(e164.len())].to_owned(), hour))
            .or_default();
        entry.0 += sent;
        entry.1 += approved;
    }

    /// A code created (committed) at `created`.
    pub fn created(&self, client: Uuid, e164: &str, created: chrono::DateTime<chrono::Utc>) {
        self.add(client, e164, created, 1, 0);
    }

    /// A code created at `created` that was approved.
    pub fn approved(&self, client: Uuid, e164: &str, created: chrono::DateTime<chrono::Utc>) {
        self.add(client, e164, created, 0, 1);
    }

    /// Adds the pending counts to the table in one statement; on failure they are kept
    /// for the next try.
    pub async fn flush(&self, pool: &deadpool_postgres::Pool) -> anyhow::Result<()> {
        let batch = std::mem::take(&mut *self.pending.lock().unwrap_or_else(|p| p.into_inner()));
        if batch.is_empty() {
            return Ok(());
        }
        let mut clients = Vec::with_capacity(batch.len());
        let mut prefixes = Vec::with_capacity(batch.len());
        let mut hours = Vec::with_capacity(batch.len());
        let mut sent = Vec::with_capacity(batch.len());
        let mut approved = Vec::with_capacity(batch.len());
        for ((client, prefix, hour), (s, a)) in &batch {
            clients.push(*client);
            prefixes.push(prefix.as_str());
            hours.push(*hour as f64);
            sent.push(*s);
            approved.push(*a);
        }
        let written = async {
            let db = pool.get().await?;
            db.execute_cached(
                "INSERT INTO otp_prefix_hourly AS h (client_id, prefix, hour, shard, sent, approved)
                 SELECT c, p, to_timestamp(t), 0, s, a
                 FROM unnest($1::uuid[], $2::text[], $3::float8[], $4::int[], $5::int[]) AS u(c, p, t, s, a)
                 ON CONFLICT (client_id, prefix, hour, shard) DO UPDATE
                    SET sent = h.sent + EXCLUDED.sent, approved = h.approved + EXCLUDED.approved",
                &[&clients, &prefixes, &hours, &sent, &approved],
            )
            .await?;
            anyhow::Ok(())
        }
        .await;
        if let Err(e) = written {
            // Put them back (added to whatever came in meanwhile).
            let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
            for (key, (s, a)) in batch {
                let entry = pending.entry(key).or_default();
                entry.0 += s;
                entry.1 += a;
            }
            return Err(e);
        }
        Ok(())
    }
}

/// Flushes the conversion counts every second until shutdown (the caller flushes once
/// more after the last request).
pub async fn run_flusher(
    counts: std::sync::Arc<ConversionCounts>,
    pool: deadpool_postgres::Pool,
    shutdown: tokio_util::sync::CancellationToken,
) {
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(std::time::Duration::from_secs(1)) => {}
        }
        if let Err(e) = counts.flush(&pool).await {
            tracing::warn!(
                error = format!("{e:#}"),
                "conversion counts not written; will retry"
            );
        }
    }
}

/// The guard that refused, and for how long.
#[derive(Debug, Clone, PartialEq)]
pub struct Blocked {
    pub guard: &'static str,
    pub retry_after: u64,
    pub detail: serde_json::Value,
}

/// The consecutive-numbers guard's decision: `others` distinct other numbers of the
/// `block` (84 + 7 digits) had codes from the client within the window.
pub fn sequential_refusal(g: &GuardSettings, block: &str, others: i64) -> Option<Blocked> {
    (others + 1 > g.sequential_max_numbers).then(|| Blocked {
        guard: "sequential",
        retry_after: g.sequential_window.as_secs().max(1),
        detail: json!({ "block": format!("0{}xx", &block[2..]), "numbers": others + 1 }),
    })
}

/// Sent and approved codes of a prefix in the recent window, then in the rest of the
/// last 7 days.
pub type ConversionWindow = (i64, i64, i64, i64);

/// The conversion guard's decision for `prefix` (84 + two digits).
pub fn conversion_refusal(
    g: &GuardSettings,
    prefix: &str,
    (sent, ok, base_sent, base_ok): ConversionWindow,
) -> Option<Blocked> {
    if sent >= g.conversion_min_sent && base_sent >= g.conversion_min_sent && base_ok > 0 {
        let rate = ok as f64 / sent as f64;
        let normal = base_ok as f64 / base_sent as f64;
        if rate < normal * g.conversion_factor {
            return Some(Blocked {
                guard: "conversion",
                retry_after: g.conversion_window.as_secs().max(1),
                detail: json!({
                    "prefix": format!("0{}", &prefix[2..]),
                    "conversion": (rate * 1000.0).round() / 1000.0,
                    "normal": (normal * 1000.0).round() / 1000.0,
                    "sent": sent,
                }),
            });
        }
    }
    None
}

/// Records a refusal (audit in its own statement: the send's transaction is rolled
/// back) and turns it into the API's answer.
pub async fn refuse(
    db: &impl deadpool_postgres::GenericClient,
    keys: &ServerKeys,
    counters: &GuardCounters,
    client: Uuid,
    msisdn: &Msisdn,
    blocked: Blocked,
) -> Limited {
    match blocked.guard {
        "sequential" => counters.sequential.fetch_add(1, Ordering::Relaxed),
        _ => counters.conversion.fetch_add(1, Ordering::Relaxed),
    };
    tracing::warn!(%client, msisdn = %msisdn, guard = blocked.guard, detail = %blocked.detail, "SMS pumping guard refused a send");
    let _ = audit::record(
        db,
        keys,
        audit::Event {
            event: "guard.blocked",
            client: Some(client),
            msisdn: Some(msisdn),
            subject: None,
            detail: json!({ "guard": blocked.guard, "detail": blocked.detail }),
        },
    )
    .await;
    Limited {
        retry_after: blocked.retry_after,
        detail: "refused by the SMS pumping guard; try again later".into(),
    }
}
