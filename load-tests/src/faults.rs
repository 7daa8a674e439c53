//! `loadgen run --fault …`: the simulator's fault switches (and kills of the gateway's
//! database connections) applied on a schedule during a run, and afterwards the truth of
//! every OTP the run had accepted: delivered, lost, failed, sent twice, sent after its
//! code expired, or rightly not sent because its code had ended first.
//!
//! A fault is `TARGET:SETTINGS@START+LENGTH`:
//! - `viettel:drop_after_pdus=3@10s+60s`: Viettel's SMSC drops each session after
//!   3 PDUs from 10 s into the run for 60 s; `SETTINGS` are the simulator's
//!   `PUT /smsc/{name}/faults` fields as `key=value` pairs joined by `,`
//!   (`refuse_binds=true,drop_after_pdus=1`, `response_delay=6s`, `lose_receipts=0.2`);
//!   at the end of the window the SMSC's faults are cleared.
//! - `postgres:terminate@20s+5s`: every 200 ms of the window, every connection to the
//!   gateway's database is terminated (`pg_terminate_backend`), as a database restart
//!   or a failover does to them.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use futures::StreamExt;
use serde::Serialize;
use serde_json::Value;

use crate::scenario::Ctx;

#[derive(Debug, Clone, PartialEq)]
pub enum FaultTarget {
    /// A simulated SMSC, with the faults to switch on.
    Smsc { name: String, faults: Value },
    /// The gateway's database connections.
    PostgresTerminate,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Fault {
    pub target: FaultTarget,
    pub start: Duration,
    pub length: Duration,
}

impl std::str::FromStr for Fault {
    type Err = String;

    fn from_str(s: &str) -> Result<Fault, String> {
        let usage = || {
            format!("{s:?}: a fault is TARGET:SETTINGS@START+LENGTH (viettel:drop_after_pdus=3@10s+60s, postgres:terminate@20s+5s)")
        };
        let (what, when) = s.rsplit_once('@').ok_or_else(usage)?;
        let (start, length) = when.split_once('+').ok_or_else(usage)?;
        let duration =
            |v: &str| humantime::parse_duration(v.trim()).map_err(|e| format!("{s:?}: {v:?}: {e}"));
        let (start, length) = (duration(start)?, duration(length)?);
        if length.is_zero() {
            return Err(format!("{s:?}: the fault's length is zero"));
        }
        let (target, settings) = what.split_once(':').ok_or_else(usage)?;
        let target = match target.trim() {
            "postgres" if settings.trim() == "terminate" => FaultTarget::PostgresTerminate,
            "postgres" => return Err(format!("{s:?}: postgres takes `terminate`")),
            name if !name.is_empty() => {
                let mut faults = serde_json::Map::new();
                for pair in settings.split(',').filter(|p| !p.trim().is_empty()) {
                    let (key, value) = pair
                        .split_once('=')
                        .ok_or_else(|| format!("{s:?}: {pair:?} is not key=value"))?;
                    // Numbers and booleans as JSON, anything else (`6s`) as a string.
                    let value = serde_json::from_str::<Value>(value.trim())
                        .ok()
                        .filter(|v| v.is_number() || v.is_boolean())
                        .unwrap_or_else(|| Value::String(value.trim().to_owned()));
                    faults.insert(key.trim().to_owned(), value);
                }
                if faults.is_empty() {
                    return Err(format!("{s:?}: no fault settings"));
                }
                FaultTarget::Smsc {
                    name: name.to_owned(),
                    faults: Value::Object(faults),
                }
            }
            _ => return Err(usage()),
        };
        Ok(Fault {
            target,
            start,
            length,
        })
    }
}

/// What the faults did, for the report.
#[derive(Debug, Clone, Serialize)]
pub struct AppliedFault {
    pub fault: String,
    pub start_s: f64,
    pub length_s: f64,
    /// Database connections terminated (postgres faults).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub connections_terminated: Option<u64>,
}

/// Runs `faults` from `start` (the run's start) on; the handle gives what they did.
pub fn schedule(
    http: reqwest::Client,
    sim: String,
    database_url: Option<String>,
    faults: Vec<(String, Fault)>,
    start: Instant,
) -> tokio::task::JoinHandle<anyhow::Result<Vec<AppliedFault>>> {
    tokio::spawn(async move {
        let runs = faults.into_iter().map(|(text, fault)| {
            let (http, sim, database_url) = (http.clone(), sim.clone(), database_url.clone());
            async move {
                tokio::time::sleep_until((start + fault.start).into()).await;
                let until = start + fault.start + fault.length;
                let terminated = match &fault.target {
                    FaultTarget::Smsc { name, faults } => {
                        put_faults(&http, &sim, name, faults).await?;
                        tokio::time::sleep_until(until.into()).await;
                        put_faults(&http, &sim, name, &serde_json::json!({})).await?;
                        None
                    }
                    FaultTarget::PostgresTerminate => {
                        let url = database_url.as_deref().ok_or_else(|| {
                            anyhow::anyhow!(
                                "a postgres fault needs the gateway's database (--gateway-database-url with --api)"
                            )
                        })?;
                        Some(terminate_until(url, until).await?)
                    }
                };
                Ok::<_, anyhow::Error>(AppliedFault {
                    fault: text,
                    start_s: fault.start.as_secs_f64(),
                    length_s: fault.length.as_secs_f64(),
                    connections_terminated: terminated,
                })
            }
        });
        futures::future::join_all(runs).await.into_iter().collect()
    })
}

async fn put_faults(
    http: &reqwest::Client,
    sim: &str,
    smsc: &str,
    faults: &Value,
) -> anyhow::Result<()> {
    let resp = http
        .put(format!("{sim}/smsc/{smsc}/faults"))
        .json(faults)
        .send()
        .await?;
    anyhow::ensure!(
        resp.status().is_success(),
        "the simulator refused the faults of {smsc}: {} {}",
        resp.status(),
        resp.text().await.unwrap_or_default()
    );
    Ok(())
}

/// Terminates every other connection to the database of `url` every 200 ms until
/// `until`; how many it terminated.
async fn terminate_until(url: &str, until: Instant) -> anyhow::Result<u64> {
    let (db, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls).await?;
    tokio::spawn(connection);
    let mut killed = 0u64;
    while Instant::now() < until {
        let n: i64 = db
            .query_one(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
                 WHERE datname = current_database() AND pid <> pg_backend_pid()",
                &[],
            )
            .await?
            .get(0);
        killed += n as u64;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Ok(killed)
}

/// The fate of every accepted OTP of a run.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct DeliveryTruth {
    /// OTPs answered 201.
    pub accepted: u64,
    /// Reached their handset at least once.
    pub delivered: u64,
    /// Neither on the handset nor ended by the gateway when the wait
    /// (`--receipt-timeout`) ran out: lost.
    pub lost: u64,
    /// Ended `failed` by the gateway.
    pub failed: u64,
    /// Not delivered because the code ended first: never submitted (`expired` or
    /// `canceled` unsent by the gateway), or given up by the SMSC past its validity
    /// period (an EXPIRED receipt).
    pub unsent_ended: u64,
    /// SMS beyond the first on a handset.
    pub duplicates: u64,
    /// SMS that reached a handset after their code had expired.
    pub stale: u64,
}

/// One OTP as found.
#[derive(Debug, Default)]
struct Found {
    messages: usize,
    stale: usize,
    /// The gateway's delivery status.
    delivery: String,
}

impl Found {
    fn decided(&self) -> bool {
        self.messages > 0 || matches!(self.delivery.as_str(), "failed" | "expired" | "canceled")
    }
}

/// Waits (at most `timeout`) until every accepted OTP has reached its handset or been
/// ended by the gateway, then counts. `otps` are (id, E.164 number): each number gets
/// one OTP per run, so its handset's messages are that OTP's.
pub async fn truth(ctx: &Ctx, otps: &[(String, String)], timeout: Duration) -> DeliveryTruth {
    let deadline = Instant::now() + timeout;
    let mut found: HashMap<&str, Found> = HashMap::new();
    loop {
        let open: Vec<&(String, String)> = otps
            .iter()
            .filter(|(id, _)| !found.get(id.as_str()).is_some_and(Found::decided))
            .collect();
        if open.is_empty() {
            break;
        }
        let results: Vec<(&str, Found)> = futures::stream::iter(open)
            .map(|(id, e164)| async move { (id.as_str(), look(ctx, id, e164).await) })
            .buffer_unordered(32)
            .collect()
            .await;
        found.extend(results);
        if Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // Duplicates can arrive after the first copy: one last look at the delivered ones
    // once the queue had time to settle.
    let settle: Vec<(&str, Found)> = futures::stream::iter(otps.iter())
        .map(|(id, e164)| async move { (id.as_str(), look(ctx, id, e164).await) })
        .buffer_unordered(32)
        .collect()
        .await;
    found.extend(settle);
    let mut t = DeliveryTruth {
        accepted: otps.len() as u64,
        ..DeliveryTruth::default()
    };
    for f in found.values() {
        t.duplicates += f.messages.saturating_sub(1) as u64;
        t.stale += f.stale as u64;
        if f.messages > 0 {
            t.delivered += 1;
        } else {
            match f.delivery.as_str() {
                "failed" => t.failed += 1,
                "expired" | "canceled" => t.unsent_ended += 1,
                _ => t.lost += 1,
            }
        }
    }
    t
}

/// The OTP's handset and its view at the gateway.
async fn look(ctx: &Ctx, id: &str, e164: &str) -> Found {
    // An answer that is not a 200 (a 503 during a database fault) decides nothing: the
    // OTP is looked up again on the next round.
    let messages: Vec<Value> = match ctx
        .http
        .get(format!("{}/handsets/{e164}/messages", ctx.target.sim))
        .send()
        .await
    {
        Ok(r) if r.status().is_success() => r.json().await.unwrap_or_default(),
        _ => Vec::new(),
    };
    let view: Value = match ctx
        .http
        .get(format!("{}/v1/otp/{id}", ctx.api(0)))
        .bearer_auth(&ctx.target.key)
        .send()
        .await
    {
        Ok(r) if r.status().is_success() => r.json().await.unwrap_or(Value::Null),
        _ => Value::Null,
    };
    let time = |v: &Value| {
        v.as_str()
            .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
    };
    let expires = time(&view["expires_at"]);
    let stale = messages
        .iter()
        .filter(|m| matches!((time(&m["received_at"]), expires), (Some(r), Some(e)) if r > e))
        .count();
    Found {
        messages: messages.len(),
        stale,
        delivery: view["delivery"]["status"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn faults_parse_as_written() {
        let f: Fault = "viettel:drop_after_pdus=3,refuse_binds=true,response_delay=6s@10s+1m"
            .parse()
            .unwrap();
        assert_eq!(f.start, Duration::from_secs(10));
        assert_eq!(f.length, Duration::from_secs(60));
        assert_eq!(
            f.target,
            FaultTarget::Smsc {
                name: "viettel".into(),
                faults: serde_json::json!({
                    "drop_after_pdus": 3, "refuse_binds": true, "response_delay": "6s"
                }),
            }
        );
        let p: Fault = "postgres:terminate@0s+5s".parse().unwrap();
        assert_eq!(p.target, FaultTarget::PostgresTerminate);
        for bad in [
            "viettel:drop_after_pdus=3",
            "viettel@1s+1s",
            "viettel:@1s+1s",
            "viettel:x=1@1s+0s",
            "postgres:restart@1s+1s",
            "viettel:x@1s+1s",
        ] {
            assert!(bad.parse::<Fault>().is_err(), "{bad} parsed");
        }
    }
}
