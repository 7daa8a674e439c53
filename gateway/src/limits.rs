//! Limits that hold across all gateway instances: the windows' and the daily quota's
//! refusals (decided by `otp::admission` from counts read in the send's transaction,
//! under advisory locks, so that two instances cannot both squeeze past a limit), the
//! quota's counter, and each client's request rate on this instance.

use crate::config::WindowLimit;
use crate::failure::Failure;
use crate::store::Cached;

/// A limit refused the send: wait `retry_after` seconds.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{detail}")]
pub struct Limited {
    pub retry_after: u64,
    pub detail: String,
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
pub fn phone_purpose_refusal(ages: &[f64], limits: &[WindowLimit]) -> Result<(), Limited> {
    refuse_if_over(
        ages,
        limits,
        "too many codes sent to this number for this purpose; try again later",
    )
}

/// 429 when one more OTP from the address would exceed a window.
pub fn ip_refusal(ages: &[f64], limits: &[WindowLimit]) -> Result<(), Limited> {
    refuse_if_over(
        ages,
        limits,
        "too many codes requested from this address; try again later",
    )
}

/// Seconds until one more event fits every window, given the ages (seconds, newest
/// first) of the recent events; refuses with 429 when that is not now.
fn refuse_if_over(ages: &[f64], limits: &[WindowLimit], detail: &str) -> Result<(), Limited> {
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
        Some(seconds) => Err(Limited {
            retry_after: seconds.ceil().max(1.0) as u64,
            detail: detail.into(),
        }),
    }
}

/// 429 until the next UTC midnight when the quota is used up.
pub fn daily_refusal(sent: i64, until_midnight: f64, quota: i64) -> Result<(), Limited> {
    if sent >= quota {
        return Err(Limited {
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
) -> Result<(), Failure> {
    tx.execute_cached(COUNT_DAILY_SQL, &[&client]).await?;
    Ok(())
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
