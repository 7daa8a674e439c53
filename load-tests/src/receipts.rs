//! After an `otp-send` run: wait for the delivery receipts of the SMS it caused and
//! record the end-to-end time from the OTP's creation to its receipt, both by the
//! gateway's (database) clock.

use std::time::{Duration, Instant};

use crate::scenario::Ctx;
use crate::stats::Recorder;

pub const STEP: &str = "receipt (end to end)";

/// Polls (every half second, until `deadline`) until the gateway's outbox holds no
/// queued SMS.
pub async fn wait_until_sent(db: &tokio_postgres::Client, deadline: Instant) -> anyhow::Result<()> {
    while Instant::now() < deadline {
        let queued: i64 = db
            .query_one(
                "SELECT count(*) FROM sms_outbox WHERE status = 'queued'",
                &[],
            )
            .await?
            .get(0);
        if queued == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    Ok(())
}

/// Every OTP's receipt, read from the gateway's database in one query per poll.
pub async fn from_database(
    url: &str,
    ids: &[String],
    timeout: Duration,
    rec: &mut Recorder,
) -> anyhow::Result<()> {
    let ids: Vec<uuid::Uuid> = ids.iter().filter_map(|i| i.parse().ok()).collect();
    if ids.is_empty() {
        return Ok(());
    }
    let (db, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls).await?;
    tokio::spawn(connection);
    // Single-part texts: the first delivered receipt of each OTP's SMS. The simulator
    // answers submit_sm with the ids its receipts carry, so the normalised key matches
    // and every step is an index lookup.
    let query = "SELECT EXTRACT(EPOCH FROM (min(d.received_at) - c.created_at))::float8 * 1000
                 FROM otp_challenges c
                 JOIN sms_outbox o ON o.challenge_id = c.id
                 JOIN sms_parts p ON p.outbox_id = o.id
                 JOIN delivery_receipts d ON d.route = o.route AND d.message_id = p.message_key
                 WHERE c.id = ANY($1) AND d.state = 'delivered'
                 GROUP BY c.id, c.created_at";
    let deadline = Instant::now() + timeout;
    // While SMS are still queued, poll only their count (a partial index): the join over
    // every id, repeated every half second, would take the database's CPU from the
    // gateway that is draining the backlog and lengthen what it measures.
    wait_until_sent(&db, deadline).await?;
    let rows = loop {
        let rows = db.query(query, &[&ids]).await?;
        if rows.len() == ids.len() || Instant::now() > deadline {
            break rows;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let missing = ids.len() as u64 - rows.len() as u64;
    for row in rows {
        let ms: f64 = row.get(0);
        rec.step(STEP, Duration::from_secs_f64(ms.max(0.0) / 1000.0), true);
    }
    rec.late_errors(
        &format!("no receipt within {}", humantime::format_duration(timeout)),
        missing,
    );
    Ok(())
}

/// A sample of up to 1000 receipts, read through the API (when the database is not at
/// hand).
pub async fn from_api(ctx: &Ctx, ids: &[String], timeout: Duration, rec: &mut Recorder) {
    let step = (ids.len() / 1000).max(1);
    let sample: Vec<&String> = ids.iter().step_by(step).collect();
    let deadline = Instant::now() + timeout;
    let mut missing = 0u64;
    for chunk in sample.chunks(16) {
        let results =
            futures::future::join_all(chunk.iter().map(|id| one(ctx, id, deadline))).await;
        for r in results {
            match r {
                Some(latency) => rec.step(STEP, latency, true),
                None => missing += 1,
            }
        }
    }
    rec.late_errors(
        &format!(
            "no receipt within {} (sampled)",
            humantime::format_duration(timeout)
        ),
        missing,
    );
}

async fn one(ctx: &Ctx, id: &str, deadline: Instant) -> Option<Duration> {
    loop {
        let view: serde_json::Value = ctx
            .http
            .get(format!("{}/v1/otp/{id}", ctx.target.apis[0]))
            .bearer_auth(&ctx.target.key)
            .send()
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        if view["delivery"]["status"] == "delivered" {
            let created =
                chrono::DateTime::parse_from_rfc3339(view["created_at"].as_str()?).ok()?;
            let receipt =
                chrono::DateTime::parse_from_rfc3339(view["delivery"]["receipt_at"].as_str()?)
                    .ok()?;
            return (receipt - created).to_std().ok();
        }
        if Instant::now() > deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}
