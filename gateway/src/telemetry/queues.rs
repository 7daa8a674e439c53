//! What the operators watch that every instance shares, read from PostgreSQL: the
//! queues (outbox, pending signatures, webhooks) for `/metrics` and `/status`, and the
//! latest verifications and signature requests for `/status`.

use chrono::{DateTime, Utc};
use deadpool_postgres::Pool;
use postgres_from_row::FromRow;

use crate::failure::Failure;
use crate::store::Cached;

/// The queues, in one statement.
#[derive(Debug, Clone, FromRow)]
pub struct Queues {
    pub outbox_queued: i64,
    pub outbox_oldest_seconds: f64,
    /// SMS that failed for good in the last hour.
    pub outbox_failed_last_hour: i64,
    pub signatures_pending: i64,
    pub webhooks_pending: i64,
}

const QUEUES_SQL: &str = "SELECT
    (SELECT count(*) FROM sms_outbox WHERE status = 'queued') AS outbox_queued,
    (SELECT coalesce(EXTRACT(EPOCH FROM now() - min(created_at)), 0)::float8
       FROM sms_outbox WHERE status = 'queued') AS outbox_oldest_seconds,
    (SELECT count(*) FROM sms_outbox WHERE status = 'failed'
       AND created_at > now() - interval '1 hour') AS outbox_failed_last_hour,
    (SELECT count(*) FROM signature_requests WHERE status = 'pending') AS signatures_pending,
    (SELECT count(*) FROM webhook_deliveries WHERE status = 'pending') AS webhooks_pending";

pub async fn queues(pool: &Pool) -> Result<Queues, Failure> {
    let db = pool.get().await?;
    let row = db.query_one_cached(QUEUES_SQL, &[]).await?;
    Ok(Queues::try_from_row(&row)?)
}

/// One recent verification or signature request, as `/status` lists it (the number is
/// still whole here: the page masks it).
#[derive(Debug, Clone, FromRow)]
pub struct Recent {
    pub created_at: DateTime<Utc>,
    pub msisdn: String,
    pub carrier: String,
    pub purpose: String,
    pub status: String,
}

/// The latest verifications and signature requests, newest first. By id: ids are
/// UUIDv7 (time-ordered), so the primary key hands out the newest rows without reading
/// the table; created_at has no index of its own.
pub async fn recent(
    pool: &Pool,
    otp: i64,
    signatures: i64,
) -> Result<(Vec<Recent>, Vec<Recent>), Failure> {
    let db = pool.get().await?;
    let latest = |sql: &'static str, limit: i64| {
        let db = &db;
        async move {
            db.query_cached(sql, &[&limit])
                .await?
                .iter()
                .map(Recent::try_from_row)
                .collect::<Result<Vec<_>, _>>()
        }
    };
    Ok(tokio::try_join!(
        latest(
            "SELECT created_at, msisdn, carrier, purpose, status FROM otp_challenges
             ORDER BY id DESC LIMIT $1",
            otp,
        ),
        latest(
            "SELECT created_at, msisdn, carrier, purpose, status FROM signature_requests
             ORDER BY id DESC LIMIT $1",
            signatures,
        ),
    )?)
}
