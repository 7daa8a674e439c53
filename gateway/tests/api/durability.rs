//! Accepted means sent: the gateway process is killed (SIGKILL) while thousands of OTPs
//! are being created and sent, restarted, and every OTP that got a 201 reaches its
//! handset. Duplicates (an SMS resent because the crash fell between its submit and the
//! write of its response) are counted.

use std::collections::HashSet;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::binary::{free_port, gateway, Db, Running};

const TOTAL: usize = 2000;
const KILL_AFTER: usize = 700;
const CONCURRENCY: usize = 16;

fn serve(db: &Db, port: u16, sim: &simulator::RunningSimulator) -> Running {
    let mut cmd: Command = gateway(db);
    cmd.arg("serve")
        .env(
            "GATEWAY__OTP__HMAC_KEY",
            "durability-test-server-key-32-bytes-long",
        )
        .env("GATEWAY__SERVER__LISTEN", format!("127.0.0.1:{port}"))
        .env("GATEWAY__OUTBOX__POLL_INTERVAL", "100ms")
        .env("GATEWAY__OUTBOX__CLAIM_TIMEOUT", "2s")
        // One batch in flight: the 2 s lease (short, so that the test ends soon) must
        // outlast a batch, and several workers sharing one bind's window of 10 make a
        // batch slower than that on a loaded machine.
        .env("GATEWAY__OUTBOX__WORKERS", WORKERS.to_string())
        .env("GATEWAY__OTP__RESEND_INTERVAL", "1s")
        // This test measures durability, not the per-client rate limit.
        .env("GATEWAY__LIMITS__CLIENT_REQUESTS_PER_SECOND", "1000000")
        .env("GATEWAY__LIMITS__CLIENT_BURST", "1000000")
        // Consecutive numbers on purpose: the pumping guard would (rightly) stop them.
        .env("GATEWAY__GUARDS__SEQUENTIAL_ENABLED", "false")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    for (name, addr) in &sim.smsc_addrs {
        let upper = name.to_uppercase();
        cmd.env(
            format!("GATEWAY__SMPP__{upper}__PORT"),
            addr.port().to_string(),
        )
        .env(
            format!("GATEWAY__SMPP__{upper}__HOST"),
            addr.ip().to_string(),
        )
        .env(
            format!("GATEWAY__SMPP__{upper}__PASSWORD"),
            simulator::config::DEFAULT_PASSWORD,
        );
    }
    Running(cmd.spawn().unwrap())
}

async fn wait_up(http: &reqwest::Client, api: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(r) = http.get(format!("{api}/health")).send().await {
            if r.status().is_success() {
                let body: serde_json::Value = r.json().await.unwrap();
                if body["smpp"]["viettel"]["bound"] == true {
                    return;
                }
            }
        }
        assert!(Instant::now() < deadline, "gateway did not come up");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Outbox workers of the gateway under test.
const WORKERS: usize = 1;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_while_sending_loses_nothing_that_was_accepted() {
    let db = Db::new();
    let out = gateway(&db)
        .args(["client", "add", "--name", "load"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let key = String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .find(|w| w.starts_with("gk_"))
        .unwrap()
        .to_owned();
    let shutdown = tokio_util::sync::CancellationToken::new();
    let sim = simulator::start(
        simulator::SimConfig::ephemeral(Duration::from_millis(5)),
        shutdown.clone(),
    )
    .await
    .unwrap();
    let port = free_port();
    let api = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    let first = Arc::new(Mutex::new(Some(serve(&db, port, &sim))));
    wait_up(&http, &api).await;

    // Distinct Viettel numbers, one OTP each.
    let accepted = Arc::new(Mutex::new(Vec::<String>::new()));
    let next = Arc::new(AtomicUsize::new(0));
    let mut workers = Vec::new();
    for _ in 0..CONCURRENCY {
        let (http, api, key) = (http.clone(), api.clone(), key.clone());
        let (accepted, next, first) = (accepted.clone(), next.clone(), first.clone());
        workers.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= TOTAL {
                    return;
                }
                let national = format!("097{:07}", 1_000_000 + i);
                let resp = http
                    .post(format!("{api}/v1/otp"))
                    .bearer_auth(&key)
                    .json(&serde_json::json!({"msisdn": national, "purpose": "login"}))
                    .send()
                    .await;
                if let Ok(r) = resp {
                    if r.status() == 201 {
                        let n = {
                            let mut a = accepted.lock().unwrap();
                            a.push(format!("84{}", &national[1..]));
                            a.len()
                        };
                        if n == KILL_AFTER {
                            // SIGKILL: no shutdown, no unbind, nothing flushed.
                            if let Some(mut child) = first.lock().unwrap().take() {
                                child.0.kill().unwrap();
                                let _ = child.0.wait();
                            }
                        }
                    }
                } else {
                    // The gateway is down: wait for the restart.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }));
    }
    // Restart as soon as the first process is gone.
    let second = loop {
        if first.lock().unwrap().is_none() {
            break serve(&db, port, &sim);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    for w in workers {
        w.await.unwrap();
    }
    wait_up(&http, &api).await;
    let accepted: Vec<String> = accepted.lock().unwrap().clone();
    assert!(
        accepted.len() > KILL_AFTER,
        "some OTPs were accepted after the restart too"
    );

    // Every accepted OTP reaches its handset.
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut missing: HashSet<String> = accepted.iter().cloned().collect();
    while !missing.is_empty() {
        missing.retain(|m| sim.handsets.messages(m).is_empty());
        if missing.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{} of {} accepted OTPs never reached their handset",
            missing.len(),
            accepted.len()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let duplicates: usize = accepted
        .iter()
        .map(|m| sim.handsets.messages(m).len().saturating_sub(1))
        .sum();
    eprintln!(
        "durability: {} accepted, all delivered, {duplicates} duplicate SMS after the SIGKILL",
        accepted.len()
    );
    // Only SMS submitted but not yet recorded at the kill may go twice: at most the
    // batches the killed instance had in flight.
    let in_flight = WORKERS * gateway::config::Settings::default().outbox.batch_size as usize;
    assert!(
        duplicates <= in_flight,
        "{duplicates} duplicates, more than {in_flight} in flight"
    );
    drop(second);
    shutdown.cancel();
}
