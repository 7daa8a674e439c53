//! Limits that hold across all gateway instances: counted in Postgres, inside the
//! transaction that would send, under a transaction-scoped advisory lock on the
//! (number, purpose) pair so that two instances cannot both squeeze past the limit.

use crate::api::error::ApiError;
use crate::config::WindowLimit;

/// Refuses with 429 and `Retry-After` when one more SMS to `msisdn` for `purpose` would
/// exceed any window.
pub async fn check_phone_purpose(
    tx: &deadpool_postgres::Transaction<'_>,
    limits: &[WindowLimit],
    msisdn: &str,
    purpose: &str,
) -> Result<(), ApiError> {
    let Some(longest) = limits.iter().map(|l| l.window).max() else {
        return Ok(());
    };
    let most = limits.iter().map(|l| l.max).max().unwrap_or(1);
    tx.execute(
        "SELECT pg_advisory_xact_lock(hashtextextended($1, 7))",
        &[&format!("phone-purpose:{msisdn}:{purpose}")],
    )
    .await?;
    // Newest first: seconds since each recent send, by the database clock.
    let rows = tx
        .query(
            "SELECT EXTRACT(EPOCH FROM (now() - o.created_at))::float8
             FROM sms_outbox o JOIN otp_challenges c ON c.id = o.challenge_id
             WHERE o.msisdn = $1 AND c.purpose = $2
               AND o.created_at > now() - make_interval(secs => $3::float8)
             ORDER BY o.created_at DESC LIMIT $4",
            &[&msisdn, &purpose, &longest.as_secs_f64(), &most],
        )
        .await?;
    let ages: Vec<f64> = rows.iter().map(|r| r.get(0)).collect();
    refuse_if_over(
        &ages,
        limits,
        "too many codes sent to this number for this purpose; try again later",
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

/// Refuses with 429 (until the next UTC midnight) when the client has sent its daily
/// SMS quota. Sends are counted on the challenges created today.
pub async fn check_client_daily(
    tx: &deadpool_postgres::Transaction<'_>,
    quota: Option<i64>,
    client: uuid::Uuid,
) -> Result<(), ApiError> {
    let Some(quota) = quota else {
        return Ok(());
    };
    let row = tx
        .query_one(
            "SELECT coalesce(sum(sends), 0)::bigint,
                    EXTRACT(EPOCH FROM (date_trunc('day', now() AT TIME ZONE 'UTC') + interval '1 day'
                        - (now() AT TIME ZONE 'UTC')))::float8
             FROM otp_challenges
             WHERE client_id = $1
               AND created_at >= date_trunc('day', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'",
            &[&client],
        )
        .await?;
    let sent: i64 = row.get(0);
    if sent >= quota {
        let until_midnight: f64 = row.get(1);
        return Err(ApiError::RateLimited {
            retry_after: until_midnight.ceil().max(1.0) as u64,
            detail: "this client's daily SMS quota is used up".into(),
        });
    }
    Ok(())
}

/// Refuses with 429 when one more OTP from this end-user IP would exceed any window.
pub async fn check_ip(
    tx: &deadpool_postgres::Transaction<'_>,
    limits: &[WindowLimit],
    ip: std::net::IpAddr,
) -> Result<(), ApiError> {
    let Some(longest) = limits.iter().map(|l| l.window).max() else {
        return Ok(());
    };
    let most = limits.iter().map(|l| l.max).max().unwrap_or(1);
    tx.execute(
        "SELECT pg_advisory_xact_lock(hashtextextended($1, 7))",
        &[&format!("ip:{ip}")],
    )
    .await?;
    let rows = tx
        .query(
            "SELECT EXTRACT(EPOCH FROM (now() - created_at))::float8 FROM otp_challenges
             WHERE client_ip = $1 AND created_at > now() - make_interval(secs => $2::float8)
             ORDER BY created_at DESC LIMIT $3",
            &[&ip, &longest.as_secs_f64(), &most],
        )
        .await?;
    let ages: Vec<f64> = rows.iter().map(|r| r.get(0)).collect();
    refuse_if_over(
        &ages,
        limits,
        "too many codes requested from this address; try again later",
    )
}
