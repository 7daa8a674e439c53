//! Webhooks to the portal, Standard Webhooks style: `webhook-id`, `webhook-timestamp`,
//! `webhook-signature: v1,<base64 HMAC-SHA256 of "id.timestamp.body">` under the client's
//! `whsec_` secret. Deliveries sit in Postgres and are retried on a schedule with jitter,
//! never sooner than the receiver's `Retry-After`: a 2xx ends a delivery, 410 Gone
//! disables the endpoint for that client, 408/425/429/5xx and network errors are retried,
//! any other 4xx fails the delivery at once (the receiver refuses it).

use crate::store::tables::FromRow;
use crate::store::Cached;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use base64::Engine;
use carrier_adapters::retry::{http_verdict, parse_retry_after, HttpVerdict, Schedule};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::config::WebhookSettings;
use crate::failure::Failure;

/// What the delivery worker needs: the database and its settings.
pub struct Deliveries {
    pub pool: deadpool_postgres::Pool,
    pub settings: WebhookSettings,
}

/// Queues a delivery inside the caller's transaction.
pub async fn enqueue(
    tx: &deadpool_postgres::Transaction<'_>,
    client: Uuid,
    url: &str,
    payload: &serde_json::Value,
) -> Result<(), Failure> {
    let event_id = format!("msg_{}", Uuid::now_v7().simple());
    tx.execute_cached(
        "INSERT INTO webhook_deliveries (client_id, url, event_id, payload) VALUES ($1, $2, $3, $4)",
        &[&client, &url, &event_id, &payload.to_string()],
    )
    .await?;
    Ok(())
}

/// OTP events (`otp.sent`, `otp.delivered`, `otp.failed`, `otp.fallback`,
/// `otp.approved`, `otp.expired`), queued for the clients that gave an OTP callback URL
/// (`api_clients.otp_callback_url`), in the caller's transaction: `$1` the challenges,
/// `$2` the event types, `$3` what each adds to `data` (its channel, send, reason …).
/// A verification's events go out in the order they are queued (`subject_id`).
pub const OTP_EVENTS_SQL: &str = "INSERT INTO webhook_deliveries (client_id, url, event_id, payload, subject_id)
    SELECT c.client_id, k.otp_callback_url, 'msg_' || replace(gen_random_uuid()::text, '-', ''),
        jsonb_build_object(
            'type', e.type,
            'timestamp', to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'),
            'data', jsonb_build_object(
                'id', c.id,
                'status', CASE WHEN c.status = 'pending' AND c.expires_at <= now() THEN 'expired'
                               ELSE c.status END,
                'purpose', c.purpose,
                'carrier', c.carrier,
                'channels', to_jsonb(c.channels),
                'expires_at', to_char(c.expires_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')
            ) || e.detail)::text,
        c.id
    FROM unnest($1::uuid[], $2::text[], $3::jsonb[]) WITH ORDINALITY AS e(challenge_id, type, detail, n)
    JOIN otp_challenges c ON c.id = e.challenge_id
    JOIN api_clients k ON k.id = c.client_id
    WHERE k.otp_callback_url IS NOT NULL
    ORDER BY e.n";

/// The OTP event types, as OpenAPI's `webhooks` lists them.
pub const OTP_EVENT_TYPES: [&str; 6] = [
    "otp.sent",
    "otp.delivered",
    "otp.failed",
    "otp.fallback",
    "otp.approved",
    "otp.expired",
];

/// Queues OTP events (see [`OTP_EVENTS_SQL`]).
pub async fn otp_events(
    db: &impl deadpool_postgres::GenericClient,
    events: &[(Uuid, &str, serde_json::Value)],
) -> Result<(), Failure> {
    if events.is_empty() {
        return Ok(());
    }
    let ids: Vec<Uuid> = events.iter().map(|e| e.0).collect();
    let types: Vec<&str> = events.iter().map(|e| e.1).collect();
    let details: Vec<&serde_json::Value> = events.iter().map(|e| &e.2).collect();
    db.execute_cached(OTP_EVENTS_SQL, &[&ids, &types, &details])
        .await?;
    Ok(())
}

/// `v1,<base64>` for a message.
pub fn sign(secret: &str, id: &str, timestamp: i64, body: &str) -> anyhow::Result<String> {
    let raw = secret.strip_prefix("whsec_").unwrap_or(secret);
    let key = base64::engine::general_purpose::STANDARD
        .decode(raw)
        .map_err(|_| anyhow::anyhow!("webhook secret is not base64"))?;
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &key);
    let tag = ring::hmac::sign(&key, format!("{id}.{timestamp}.{body}").as_bytes());
    Ok(format!(
        "v1,{}",
        base64::engine::general_purpose::STANDARD.encode(tag.as_ref())
    ))
}

#[derive(postgres_from_row::FromRow)]
struct Delivery {
    id: i64,
    url: String,
    event_id: String,
    payload: String,
    attempts: i32,
    secret: String,
    disabled: bool,
}

pub async fn run(state: Arc<Deliveries>, shutdown: CancellationToken) {
    let http = match reqwest::Client::builder()
        .timeout(state.settings.timeout)
        .redirect(reqwest::redirect::Policy::none())
        .build()
    {
        Ok(h) => h,
        Err(e) => {
            tracing::error!(error = %e, "webhook client could not be built");
            return;
        }
    };
    loop {
        if let Err(e) = pass(&state, &http).await {
            tracing::warn!(error = format!("{e:#}"), "webhook pass failed");
        }
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tokio::time::sleep(state.settings.poll_interval) => {}
        }
    }
}

async fn pass(state: &Deliveries, http: &reqwest::Client) -> anyhow::Result<()> {
    let due: Vec<Delivery> = {
        let db = state.pool.get().await?;
        db.query_cached(
            "UPDATE webhook_deliveries d SET claimed_until = now() + interval '60 seconds',
                attempts = d.attempts + 1
             WHERE d.id IN (
                SELECT id FROM webhook_deliveries w
                WHERE status = 'pending' AND next_attempt_at <= now()
                  AND (claimed_until IS NULL OR claimed_until < now())
                  -- A subject's events in order: none while an earlier one is pending.
                  AND (w.subject_id IS NULL OR NOT EXISTS (
                        SELECT 1 FROM webhook_deliveries p
                        WHERE p.subject_id = w.subject_id AND p.status = 'pending'
                          AND p.id < w.id))
                ORDER BY next_attempt_at LIMIT 32
                FOR UPDATE SKIP LOCKED)
             RETURNING d.id, d.url, d.event_id, d.payload, d.attempts,
                (SELECT webhook_secret FROM api_clients c WHERE c.id = d.client_id) AS secret,
                EXISTS (SELECT 1 FROM disabled_webhook_urls w
                        WHERE w.client_id = d.client_id AND w.url = d.url) AS disabled",
            &[],
        )
        .await?
        .iter()
        .map(Delivery::try_from_row)
        .collect::<Result<_, _>>()?
    };
    futures::future::join_all(due.into_iter().map(|d| deliver(state, http, d))).await;
    Ok(())
}

#[tracing::instrument(name = "webhook.deliver", skip_all, fields(delivery = d.id, attempt = d.attempts))]
async fn deliver(state: &Deliveries, http: &reqwest::Client, d: Delivery) {
    let outcome = if d.disabled {
        Outcome::Disabled
    } else {
        let ts = chrono::Utc::now().timestamp();
        match sign(&d.secret, &d.event_id, ts, &d.payload) {
            Err(e) => Outcome::Retry(None, e.to_string(), None),
            Ok(signature) => {
                let sent = http
                    .post(&d.url)
                    .header("content-type", "application/json")
                    .header("webhook-id", &d.event_id)
                    .header("webhook-timestamp", ts.to_string())
                    .header("webhook-signature", signature)
                    .body(d.payload.clone())
                    .send()
                    .await;
                match sent {
                    Ok(r) => {
                        let status = r.status().as_u16();
                        match http_verdict(status) {
                            HttpVerdict::Delivered => Outcome::Delivered(status),
                            HttpVerdict::Gone => Outcome::Gone,
                            // The receiver's trouble or load: again, not before it asks.
                            HttpVerdict::Retry => Outcome::Retry(
                                Some(status),
                                format!("HTTP {}", r.status()),
                                r.headers()
                                    .get(reqwest::header::RETRY_AFTER)
                                    .and_then(|v| v.to_str().ok())
                                    .and_then(|v| parse_retry_after(v, SystemTime::now())),
                            ),
                            // It refuses this request: sending it again changes nothing.
                            HttpVerdict::Refused => Outcome::Refused(status),
                        }
                    }
                    Err(e) => Outcome::Retry(None, e.to_string(), None),
                }
            }
        }
    };
    if let Err(e) = record(state, &d, outcome).await {
        tracing::warn!(delivery = d.id, error = %e, "webhook result not recorded");
    }
}

enum Outcome {
    Delivered(u16),
    Gone,
    Disabled,
    /// A 4xx other than 408, 410, 425 and 429.
    Refused(u16),
    /// With the receiver's `Retry-After`, when it sent one.
    Retry(Option<u16>, String, Option<Duration>),
}

async fn record(state: &Deliveries, d: &Delivery, outcome: Outcome) -> anyhow::Result<()> {
    let db = state.pool.get().await?;
    match outcome {
        Outcome::Delivered(code) => {
            db.execute_cached(
                "UPDATE webhook_deliveries SET status = 'delivered', delivered_at = now(),
                    last_status = $2, last_error = NULL, claimed_until = NULL WHERE id = $1",
                &[&d.id, &i32::from(code)],
            )
            .await?;
        }
        Outcome::Gone => {
            db.execute_cached(
                "WITH d AS (UPDATE webhook_deliveries SET status = 'disabled', last_status = 410,
                        claimed_until = NULL WHERE id = $1 RETURNING client_id, url)
                 INSERT INTO disabled_webhook_urls (client_id, url) SELECT client_id, url FROM d
                 ON CONFLICT DO NOTHING",
                &[&d.id],
            )
            .await?;
            tracing::warn!(
                delivery = d.id,
                "webhook endpoint answered 410 Gone; disabled"
            );
        }
        Outcome::Disabled => {
            db.execute_cached(
                "UPDATE webhook_deliveries SET status = 'disabled', claimed_until = NULL WHERE id = $1",
                &[&d.id],
            )
            .await?;
        }
        Outcome::Refused(code) => {
            db.execute_cached(
                "UPDATE webhook_deliveries SET status = 'failed', last_status = $2,
                    last_error = $3, claimed_until = NULL WHERE id = $1",
                &[
                    &d.id,
                    &i32::from(code),
                    &format!("HTTP {code}: refused by the receiver; not retried"),
                ],
            )
            .await?;
            tracing::warn!(
                delivery = d.id,
                status = code,
                "webhook refused by its receiver; not retried"
            );
        }
        Outcome::Retry(code, error, retry_after) => {
            let schedule = Schedule::listed(state.settings.retry_delays())
                .with_jitter(0.2)
                .waiting_at_most(state.settings.longest_retry_after);
            match schedule.wait(d.attempts.max(1) as u32, retry_after) {
                Some(delay) => {
                    db.execute_cached(
                        "UPDATE webhook_deliveries SET next_attempt_at = now() + make_interval(secs => $2::float8),
                            last_status = $3, last_error = $4, claimed_until = NULL WHERE id = $1",
                        &[&d.id, &delay.as_secs_f64(), &code.map(i32::from), &error],
                    )
                    .await?;
                }
                None => {
                    db.execute_cached(
                        "UPDATE webhook_deliveries SET status = 'failed', last_status = $2,
                            last_error = $3, claimed_until = NULL WHERE id = $1",
                        &[&d.id, &code.map(i32::from), &error],
                    )
                    .await?;
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example from the Standard Webhooks specification.
    #[test]
    fn signs_like_the_standard_webhooks_reference() {
        let sig = sign(
            "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1614265330,
            r#"{"test": 2432232314}"#,
        )
        .unwrap();
        assert_eq!(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    }
}
