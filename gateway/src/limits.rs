//! Limits that hold across all gateway instances: counted in Postgres, inside the
//! transaction that would send, under a transaction-scoped advisory lock on the
//! (number, purpose) pair so that two instances cannot both squeeze past the limit.

use crate::api::error::ApiError;
use crate::config::WindowLimit;
use crate::db::Cached;

/// The advisory lock that serialises sends to one number for one purpose.
pub fn phone_purpose_lock(msisdn: &str, purpose: &str) -> String {
    format!("phone-purpose:{msisdn}:{purpose}")
}

/// The advisory lock that serialises OTPs from one end-user address.
pub fn ip_lock(ip: std::net::IpAddr) -> String {
    format!("ip:{ip}")
}

/// Takes the transaction-scoped advisory locks named by `keys`, in sorted order (so that
/// two transactions never wait on each other crosswise), in one round trip.
pub async fn take_locks(
    tx: &deadpool_postgres::Transaction<'_>,
    mut keys: Vec<String>,
) -> Result<(), ApiError> {
    if keys.is_empty() {
        return Ok(());
    }
    keys.sort();
    keys.dedup();
    tx.query_one_cached(
        "SELECT count(pg_advisory_xact_lock(hashtextextended(k, 7))) FROM unnest($1::text[]) k",
        &[&keys],
    )
    .await?;
    Ok(())
}

/// Seconds since each recent SMS to `msisdn` for `purpose` (newest first, by the database
/// clock), as many as the limits can need. Read under `phone_purpose_lock`.
pub async fn phone_purpose_ages(
    tx: &deadpool_postgres::Transaction<'_>,
    limits: &[WindowLimit],
    msisdn: &str,
    purpose: &str,
) -> Result<Vec<f64>, ApiError> {
    let Some((longest, most)) = lookback(limits) else {
        return Ok(Vec::new());
    };
    let rows = tx
        .query_cached(
            "SELECT EXTRACT(EPOCH FROM (now() - o.created_at))::float8
             FROM sms_outbox o JOIN otp_challenges c ON c.id = o.challenge_id
             WHERE o.msisdn = $1 AND c.purpose = $2
               AND o.created_at > now() - make_interval(secs => $3::float8)
             ORDER BY o.created_at DESC LIMIT $4",
            &[&msisdn, &purpose, &longest, &most],
        )
        .await?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

/// How far back (seconds) and how many recent events the windows can need; `None`
/// when there is no window.
pub(crate) fn lookback(limits: &[WindowLimit]) -> Option<(f64, i64)> {
    let longest = limits.iter().map(|l| l.window).max()?;
    Some((
        longest.as_secs_f64(),
        limits.iter().map(|l| l.max).max().unwrap_or(1),
    ))
}

/// 429 when one more SMS to the number for the purpose would exceed a window.
pub fn phone_purpose_refusal(ages: &[f64], limits: &[WindowLimit]) -> Result<(), ApiError> {
    refuse_if_over(
        ages,
        limits,
        "too many codes sent to this number for this purpose; try again later",
    )
}

/// Refuses with 429 and `Retry-After` when one more SMS to `msisdn` for `purpose` would
/// exceed any window (locks, reads and decides; for sends that check nothing else).
pub async fn check_phone_purpose(
    tx: &deadpool_postgres::Transaction<'_>,
    limits: &[WindowLimit],
    msisdn: &str,
    purpose: &str,
) -> Result<(), ApiError> {
    if limits.is_empty() {
        return Ok(());
    }
    take_locks(tx, vec![phone_purpose_lock(msisdn, purpose)]).await?;
    let ages = phone_purpose_ages(tx, limits, msisdn, purpose).await?;
    phone_purpose_refusal(&ages, limits)
}

/// Seconds since each recent OTP from this end-user address (newest first). Read under
/// `ip_lock`.
pub async fn ip_ages(
    tx: &deadpool_postgres::Transaction<'_>,
    limits: &[WindowLimit],
    ip: std::net::IpAddr,
) -> Result<Vec<f64>, ApiError> {
    let Some((longest, most)) = lookback(limits) else {
        return Ok(Vec::new());
    };
    let rows = tx
        .query_cached(
            "SELECT EXTRACT(EPOCH FROM (now() - created_at))::float8 FROM otp_challenges
             WHERE client_ip = $1 AND created_at > now() - make_interval(secs => $2::float8)
             ORDER BY created_at DESC LIMIT $3",
            &[&ip, &longest, &most],
        )
        .await?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

/// 429 when one more OTP from the address would exceed a window.
pub fn ip_refusal(ages: &[f64], limits: &[WindowLimit]) -> Result<(), ApiError> {
    refuse_if_over(
        ages,
        limits,
        "too many codes requested from this address; try again later",
    )
}

/// Seconds until one more event fits every window, given the ages (seconds, newest
/// first) of the recent events; refuses with 429 when that is not now.
fn refuse_if_over(ages: &[f64], limits: &[WindowLimit], detail: &str) -> Result<(), ApiError> {
    let mut wait: Option<f64> = None;
    for limit in limits {
        let window = limit.window.as_secs_f64();
        let in_window: Vec<f64> = ages.iter().copied().filter(|a| *a < window).collect();
        if in_window.len() as i64 >= limit.max {
            // When the max-th newest event leaves the window, one more fits.
            let until = window - in_window[(limit.max - 1) as usize];
            wait = Some(wait.map_or(until, |w| w.max(until)));
        }
    }
    match wait {
        None => Ok(()),
        Some(seconds) => Err(ApiError::RateLimited {
            retry_after: seconds.ceil().max(1.0) as u64,
            detail: detail.into(),
        }),
    }
}

/// The client's SMS of this UTC day so far, and the seconds until the next UTC midnight.
pub async fn daily_sent(
    tx: &deadpool_postgres::Transaction<'_>,
    client: uuid::Uuid,
) -> Result<(i64, f64), ApiError> {
    let row = tx
        .query_one_cached(
            "SELECT coalesce(sum(sms), 0)::bigint,
                    EXTRACT(EPOCH FROM (date_trunc('day', now() AT TIME ZONE 'UTC') + interval '1 day'
                        - (now() AT TIME ZONE 'UTC')))::float8
             FROM client_daily_sms
             WHERE client_id = $1 AND day = (now() AT TIME ZONE 'UTC')::date",
            &[&client],
        )
        .await?;
    Ok((row.get(0), row.get(1)))
}

/// 429 until the next UTC midnight when the quota is used up.
pub fn daily_refusal(sent: i64, until_midnight: f64, quota: i64) -> Result<(), ApiError> {
    if sent >= quota {
        return Err(ApiError::RateLimited {
            retry_after: until_midnight.ceil().max(1.0) as u64,
            detail: "this client's daily SMS quota is used up".into(),
        });
    }
    Ok(())
}

/// Counts one SMS of today against the client's quota. It takes a row lock on one of
/// the client's counter rows, held until the transaction ends: take it after every other
/// lock of the send except the new challenge's conversion bucket (which no transaction
/// takes before this one).
/// The row is the connection's own (by backend pid), so sends on different connections
/// never wait for each other's row; the check sums at most 64 rows.
pub const COUNT_DAILY_SQL: &str = "INSERT INTO client_daily_sms (client_id, day, shard, sms)
     VALUES ($1, (now() AT TIME ZONE 'UTC')::date, (pg_backend_pid() % 64)::smallint, 1)
     ON CONFLICT (client_id, day, shard) DO UPDATE SET sms = client_daily_sms.sms + 1";

pub async fn count_daily(
    tx: &deadpool_postgres::Transaction<'_>,
    client: uuid::Uuid,
) -> Result<(), ApiError> {
    tx.execute_cached(COUNT_DAILY_SQL, &[&client]).await?;
    Ok(())
}

/// Counts one SMS against the client's daily quota (UTC day of the send, creates and
/// resends alike), refusing with 429 until the next UTC midnight when it is used up.
/// Sends in flight on other connections are not visible until they commit, so at the
/// moment the quota is reached it may be exceeded by at most the number of concurrent
/// sends.
pub async fn take_client_daily(
    tx: &deadpool_postgres::Transaction<'_>,
    quota: Option<i64>,
    client: uuid::Uuid,
) -> Result<(), ApiError> {
    let Some(quota) = quota else {
        return Ok(());
    };
    let (sent, until_midnight) = daily_sent(tx, client).await?;
    daily_refusal(sent, until_midnight, quota)?;
    count_daily(tx, client).await
}

/// Each client's request rate on this instance: its share (the configured total divided
/// by `limits.instances`) of the client's own rate, or of the default one.
pub struct ClientRates {
    default_rps: u32,
    default_burst: u32,
    instances: u32,
    limiters: std::sync::Mutex<std::collections::HashMap<uuid::Uuid, ClientLimiter>>,
}

type DirectLimiter = governor::DefaultDirectRateLimiter;
/// A client's (rate, burst) and the limiter built for them.
type ClientLimiter = ((u32, u32), std::sync::Arc<DirectLimiter>);

impl ClientRates {
    pub fn new(settings: &crate::config::LimitSettings) -> Self {
        ClientRates {
            default_rps: settings.client_requests_per_second,
            default_burst: settings.client_burst,
            instances: settings.instances.max(1),
            limiters: Default::default(),
        }
    }

    /// Counts one request of `client`; `Err(wait)` when it is over its rate.
    pub fn check(
        &self,
        client: uuid::Uuid,
        rps: Option<u32>,
        burst: Option<u32>,
    ) -> Result<(), std::time::Duration> {
        let share = |total: u32| {
            std::num::NonZeroU32::new((total / self.instances).max(1)).expect("at least 1")
        };
        let wanted = (
            rps.unwrap_or(self.default_rps),
            burst.unwrap_or(self.default_burst),
        );
        let limiter = {
            let mut map = self
                .limiters
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            match map.get(&client) {
                // A changed rate (`gateway client set`) starts a fresh limiter.
                Some((rate, limiter)) if *rate == wanted => limiter.clone(),
                _ => {
                    let limiter = std::sync::Arc::new(governor::RateLimiter::direct(
                        governor::Quota::per_second(share(wanted.0)).allow_burst(share(wanted.1)),
                    ));
                    map.insert(client, (wanted, limiter.clone()));
                    limiter
                }
            }
        };
        limiter.check().map_err(|not_until| {
            use governor::clock::Clock;
            not_until.wait_time_from(governor::clock::DefaultClock::default().now())
        })
    }
}
