//! Many signature requests held pending at once: the gateway keeps them in Postgres,
//! not in memory, so its memory should not grow with them.

use std::time::{Duration, Instant};

use futures::StreamExt;

use serde::Serialize;

use crate::numbers;
use crate::stack::Stack;

/// What holding many requests pending showed.
#[derive(Debug, Serialize)]
pub struct Pending {
    pub requested: u64,
    /// Requests the gateway did not answer 202, and the first such answer.
    pub refused: u64,
    pub first_refusal: Option<String>,
    pub pending_in_database: i64,
    /// This step's requests that were no longer pending when counted, by
    /// `status: status_detail`, so that a shortfall explains itself.
    pub not_pending: std::collections::BTreeMap<String, i64>,
    pub create_rate_per_s: f64,
    pub gateway_rss_mib: f64,
}

/// Registers `n` Viettel subscribers who never answer, requests a signature of each
/// (5-minute timeout), and reports how many are pending, how fast they were created and
/// the gateway's RSS once they are all pending.
pub async fn hold(stack: &Stack, n: u64) -> anyhow::Result<Pending> {
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(256)
        .pool_idle_timeout(Duration::from_secs(2))
        .timeout(Duration::from_secs(60))
        .build()?;
    let offset = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_micros() as u64
        ^ (1 << 50);
    // Viettel calls back: nothing is polled while they wait.
    let numbers: Vec<String> = (0..)
        .map(|i| numbers::number(offset, i))
        .filter(|m| {
            gateway::domain::Msisdn::parse(m)
                .is_ok_and(|m| m.carrier() == gateway::domain::Carrier::Viettel)
        })
        .take(n as usize)
        .collect();
    let sim = &stack.target.sim;
    let registered: Vec<anyhow::Result<()>> = futures::stream::iter(&numbers)
        .map(|m| {
            let http = http.clone();
            async move {
                let r = http
                    .put(format!("{sim}/subscribers/{}", numbers::e164(m)))
                    .json(&serde_json::json!({
                        "full_name": "Người Chờ", "id_number": "001099000001",
                        "date_of_birth": "1990-01-01", "sim_pki": true,
                        "behaviour": "timeout", "certificate": "valid"
                    }))
                    .send()
                    .await?;
                anyhow::ensure!(r.status().is_success(), "registering {m}: {}", r.status());
                Ok(())
            }
        })
        .buffer_unordered(64)
        .collect()
        .await;
    registered.into_iter().collect::<anyhow::Result<()>>()?;

    let started = Instant::now();
    let apis = &stack.target.apis;
    let key = &stack.target.key;
    let created: Vec<anyhow::Result<()>> = futures::stream::iter(numbers.iter().enumerate())
        .map(|(i, m)| {
            let http = http.clone();
            async move {
                let r = http
                    .post(format!("{}/v1/signatures", apis[i % apis.len()]))
                    .bearer_auth(key)
                    .json(&serde_json::json!({"msisdn": m, "purpose": "login", "timeout_seconds": 300}))
                    .send()
                    .await?;
                anyhow::ensure!(r.status().as_u16() == 202, "signature for {m}: {}", r.status());
                Ok(())
            }
        })
        .buffer_unordered(64)
        .collect()
        .await;
    let rate = n as f64 / started.elapsed().as_secs_f64();
    // Reported, not fatal: the figure is what the gateway holds.
    let refused = created.iter().filter(|r| r.is_err()).count() as u64;
    let first_refusal = created
        .into_iter()
        .find_map(|r| r.err())
        .map(|e| format!("{e:#}"));
    if let Some(e) = &first_refusal {
        eprintln!("   {refused} signature requests not accepted, first: {e}");
    }
    let (db, connection) =
        tokio_postgres::connect(&stack.database_url, tokio_postgres::NoTls).await?;
    tokio::spawn(connection);
    let pending: i64 = db
        .query_one(
            "SELECT count(*) FROM signature_requests WHERE status = 'pending'",
            &[],
        )
        .await?
        .get(0);
    // This step's requests that already ended, and why.
    let e164: Vec<String> = numbers.iter().map(|m| numbers::e164(m)).collect();
    let not_pending = db
        .query(
            "SELECT status || coalesce(': ' || status_detail, ''), count(*)
             FROM signature_requests WHERE msisdn = ANY($1) AND status <> 'pending'
             GROUP BY 1 ORDER BY 1",
            &[&e164],
        )
        .await?
        .into_iter()
        .map(|r| (r.get::<_, String>(0), r.get::<_, i64>(1)))
        .collect();
    // Let the sweeper run over them once or twice before reading the memory.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let rss = crate::stack::rss_mib(stack.gateway_pid()).unwrap_or(f64::NAN);
    Ok(Pending {
        requested: n,
        refused,
        first_refusal,
        pending_in_database: pending,
        not_pending,
        create_rate_per_s: (rate * 10.0).round() / 10.0,
        gateway_rss_mib: (rss * 10.0).round() / 10.0,
    })
}
