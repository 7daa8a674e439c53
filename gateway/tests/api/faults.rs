//! Accepted means delivered, under the faults carriers and databases really have: an SMSC
//! that drops every session after a few PDUs, one that refuses binds for a while, the
//! database's connections killed under load, a carrier down until codes have expired,
//! clients that send their bodies a byte at a time. The simulator's own fault switches,
//! real sockets, a real PostgreSQL.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::helpers::{spawn_app, spawn_app_with, wait_for, Options, TestApp};

impl TestApp {
    /// One route's (bound binds, successful binds since start).
    async fn binds_of(&self, route: &str) -> (u64, u64) {
        let r = self.route_health(route).await;
        let total = r["binds"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| b["binds_total"].as_u64().unwrap())
            .sum();
        (r["bound_binds"].as_u64().unwrap(), total)
    }

    async fn wait_unbound(&self, route: &str) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.binds_of(route).await.0 != 0 {
            assert!(Instant::now() < deadline, "{route} never went down");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn try_create(&self, msisdn: &str) -> reqwest::Response {
        self.post("/v1/otp")
            .json(&json!({ "msisdn": msisdn, "purpose": "login" }))
            .send()
            .await
            .unwrap()
    }
}

/// Settings for load from one address to many numbers of one prefix: the guards that
/// would (rightly) stop it are off, and the client's rate is not the limit.
fn loadable(s: &mut gateway::config::Settings) {
    s.guards.sequential_enabled = false;
    s.guards.conversion_enabled = false;
    s.limits.client_requests_per_second = 1_000_000;
    s.limits.client_burst = 1_000_000;
}

/// Viettel's SMSC drops every session after 3 PDUs (the bind and two submits) while 120
/// OTPs are created, for far longer than the retry schedule (3 attempts, 0.1–0.5 s apart)
/// lasts. Every accepted OTP reaches its handset, none fails, no row spends more than its
/// attempts, the bind is not redialled in a tight loop, and duplicates are bounded by
/// what each dropped session had answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flapping_smsc_loses_and_fails_no_accepted_otp() {
    const TOTAL: usize = 120;
    let app = spawn_app_with(Options {
        tweak: Some(Box::new(|s| {
            loadable(s);
            s.outbox.retry_base = Duration::from_millis(100);
            s.outbox.retry_max = Duration::from_millis(500);
            s.outbox.max_attempts = 3;
        })),
        ..Options::default()
    })
    .await;
    let (_, binds_before) = app.binds_of("viettel").await;
    app.set_faults("viettel", json!({"drop_after_pdus": 3}))
        .await;
    let flap_started = Instant::now();
    let app = Arc::new(app);
    let next = Arc::new(AtomicUsize::new(0));
    let accepted = Arc::new(Mutex::new(Vec::new()));
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let (app, next, accepted) = (app.clone(), next.clone(), accepted.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= TOTAL {
                    break;
                }
                let msisdn = format!("097{:07}", 1_000_000 + i);
                let resp = app.try_create(&msisdn).await;
                assert_eq!(resp.status(), 201, "{:?}", resp.text().await);
                accepted.lock().unwrap().push(format!("84{}", &msisdn[1..]));
                // About 6 s of creates in all, the SMSC flapping throughout.
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    // The flap goes on a while after the last create.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (_, binds_after) = app.binds_of("viettel").await;
    let flapped_for = flap_started.elapsed();
    app.set_faults("viettel", json!({})).await;
    let sessions = binds_after - binds_before;

    let accepted = accepted.lock().unwrap().clone();
    assert_eq!(accepted.len(), TOTAL);
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut received: HashMap<String, usize> = HashMap::new();
    loop {
        for number in &accepted {
            let n = app.handset(number).await.len();
            received.insert(number.clone(), n);
        }
        let missing = received.values().filter(|n| **n == 0).count();
        if missing == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{missing} of {TOTAL} accepted OTPs never reached their handset"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let db = app.pool.get().await.unwrap();
    let by_status: HashMap<String, i64> = db
        .query(
            "SELECT status, count(*) FROM sms_outbox GROUP BY status",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    let max_attempts: i32 = db
        .query_one("SELECT coalesce(max(attempts), 0) FROM sms_outbox", &[])
        .await
        .unwrap()
        .get(0);
    let duplicates: usize = received.values().map(|n| n - 1).sum();
    eprintln!(
        "flapping SMSC: {flapped_for:?} flapping, {sessions} sessions, {TOTAL} accepted, \
         0 lost, outbox {by_status:?}, {duplicates} duplicates, most attempts {max_attempts}"
    );
    assert_eq!(by_status.get("failed"), None, "{by_status:?}");
    assert_eq!(
        by_status.get("submitted"),
        Some(&(TOTAL as i64)),
        "{by_status:?}"
    );
    // Nothing the SMSC itself did went wrong: no attempt was spent at all.
    assert_eq!(max_attempts, 0, "a row spent {max_attempts} attempts");
    // Each session answers at most two submits before it drops; only those answered
    // and then lost with the connection can go out twice.
    assert!(
        duplicates <= 2 * sessions as usize,
        "{duplicates} duplicates over {sessions} sessions"
    );
    // The back-off grows while sessions die young: no redial every few milliseconds.
    let per_second = sessions as f64 / flapped_for.as_secs_f64();
    assert!(
        per_second <= 3.0,
        "{sessions} sessions in {flapped_for:?}: the bind is redialled too fast"
    );
}

/// Viettel's SMSC refuses binds for 8 s (the old back-off had doubled to 6.4 s by then);
/// with the default reconnect settings the first bind after it takes binds again comes
/// within 2 s, and the OTP queued meanwhile goes out.
#[tokio::test]
async fn the_first_bind_after_the_smsc_is_back_comes_within_two_seconds() {
    let app = spawn_app_with(Options::default()).await;
    app.set_faults(
        "viettel",
        json!({"refuse_binds": true, "drop_after_pdus": 1}),
    )
    .await;
    app.create_otp("0971230001", "login").await;
    app.wait_for_code("84971230001", 1).await;
    app.wait_unbound("viettel").await;
    app.create_otp("0971230002", "login").await;
    tokio::time::sleep(Duration::from_secs(8)).await;
    app.set_faults("viettel", json!({})).await;
    let back = Instant::now();
    while app.binds_of("viettel").await.0 == 0 {
        assert!(
            back.elapsed() < Duration::from_secs(2),
            "viettel not bound {:?} after its SMSC took binds again",
            back.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let rebind = back.elapsed();
    eprintln!("rebind after the SMSC took binds again: {rebind:?}");
    app.wait_for_code("84971230002", 1).await;
}

/// Terminates every other connection to the test's database `rounds` times, 120 ms
/// apart; returns how many it terminated.
async fn kill_connections(killer: &tokio_postgres::Client, rounds: usize) -> i64 {
    let mut killed = 0i64;
    for _ in 0..rounds {
        tokio::time::sleep(Duration::from_millis(120)).await;
        let n: i64 = killer
            .query_one(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
                 WHERE datname = current_database() AND pid <> pg_backend_pid()",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        killed += n;
    }
    killed
}

/// Signature requests while every database connection is killed, again and again: the
/// answers are 202 or 503, never 500; a request ends `signed` only if the portal got its
/// id (202), and is billed only then.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn database_kills_during_signature_requests_never_sign_or_bill_what_was_not_answered() {
    let app = Arc::new(spawn_app().await);
    let (killer, connection) = tokio_postgres::connect(&app.db_url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let answers = Arc::new(Mutex::new(Vec::new()));
    let mut tasks = Vec::new();
    for _ in 0..3 {
        let (app, answers, stop) = (app.clone(), answers.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let resp = app
                    .post("/v1/signatures")
                    .json(&serde_json::json!({"msisdn": "0828123088", "purpose": "login"}))
                    .send()
                    .await
                    .unwrap();
                let status = resp.status().as_u16();
                let body: Value = resp.json().await.unwrap_or(Value::Null);
                answers.lock().unwrap().push((status, body));
            }
        }));
    }
    let killed = kill_connections(&killer, 15).await;
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.unwrap();
    }
    assert!(killed > 0, "no connection was killed");
    let answers = answers.lock().unwrap().clone();
    for (status, body) in &answers {
        assert!(*status == 202 || *status == 503, "{status}: {body}");
    }
    let answered: Vec<uuid::Uuid> = answers
        .iter()
        .filter(|a| a.0 == 202)
        .map(|a| a.1["id"].as_str().unwrap().parse().unwrap())
        .collect();
    assert!(
        !answered.is_empty(),
        "no request got through between the kills"
    );
    // Let every request end (the person confirms; stragglers expire or end otherwise).
    tokio::time::sleep(Duration::from_secs(3)).await;
    let not_answered_but_signed: i64 = killer
        .query_one(
            "SELECT count(*) FROM signature_requests WHERE status = 'signed' AND NOT (id = ANY($1))",
            &[&answered],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        not_answered_but_signed, 0,
        "a request nobody got an id for ended signed"
    );
    let billed_unanswered: i64 = killer
        .query_one(
            "SELECT count(*) FROM usage_events WHERE item = 'signature_request' AND NOT (subject_id = ANY($1))",
            &[&answered],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        billed_unanswered, 0,
        "a request nobody got an id for was billed"
    );
    eprintln!(
        "signature requests under database kills: {killed} connections terminated; {} answers: {} × 202, {} × 503",
        answers.len(),
        answered.len(),
        answers.len() - answered.len()
    );
}

/// Terminates every connection the gateway holds to its database, again and again, while
/// OTPs are created: the answers are 201 or 503 (problem+json with Retry-After), never
/// 500; every 201 is stored with its SMS; once the killing stops, creates succeed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn database_connections_killed_under_load_are_503_never_500() {
    let app = Arc::new(
        spawn_app_with(Options {
            tweak: Some(Box::new(loadable)),
            ..Options::default()
        })
        .await,
    );
    let (killer, connection) = tokio_postgres::connect(&app.db_url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let next = Arc::new(AtomicUsize::new(0));
    let answers = Arc::new(Mutex::new(Vec::new()));
    let mut tasks = Vec::new();
    for _ in 0..6 {
        let (app, next, answers, stop) = (app.clone(), next.clone(), answers.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let resp = app.try_create(&format!("098{:07}", 2_000_000 + i)).await;
                let status = resp.status().as_u16();
                let content_type = resp
                    .headers()
                    .get("content-type")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_owned();
                let retry_after = resp.headers().get("retry-after").is_some();
                let body: Value = resp.json().await.unwrap_or(Value::Null);
                answers
                    .lock()
                    .unwrap()
                    .push((status, content_type, retry_after, body));
            }
        }));
    }
    let killed = kill_connections(&killer, 25).await;
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.unwrap();
    }
    let answers = answers.lock().unwrap().clone();
    let count = |s: u16| answers.iter().filter(|a| a.0 == s).count();
    eprintln!(
        "database kills: {killed} connections terminated; {} answers: {} × 201, {} × 503, {} × 500",
        answers.len(),
        count(201),
        count(503),
        count(500)
    );
    for (status, content_type, retry_after, body) in &answers {
        assert!(
            *status == 201 || *status == 503,
            "{status} while the database connections were killed: {body}"
        );
        if *status == 503 {
            assert_eq!(content_type, "application/problem+json", "{body}");
            assert_eq!(body["type"], "/problems/unavailable", "{body}");
            assert!(retry_after, "a 503 without Retry-After: {body}");
        }
    }
    assert!(killed > 0, "no connection was killed");
    // Every accepted OTP is stored with its SMS.
    let ids: Vec<uuid::Uuid> = answers
        .iter()
        .filter(|a| a.0 == 201)
        .map(|a| a.3["id"].as_str().unwrap().parse().unwrap())
        .collect();
    let stored: i64 = killer
        .query_one(
            "SELECT count(DISTINCT c.id) FROM otp_challenges c
             JOIN sms_outbox o ON o.challenge_id = c.id WHERE c.id = ANY($1)",
            &[&ids],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(stored as usize, ids.len(), "an accepted OTP was not stored");
    // And the gateway serves again.
    let resp = app.try_create("0989999999").await;
    assert_eq!(resp.status(), 201, "{:?}", resp.text().await);
}

/// The classification behind those 503s, on real errors of a real server: a connection
/// the server terminated and a lost deadlock are "unavailable now"; a bad statement is a
/// bug (500).
#[tokio::test]
async fn database_errors_are_told_apart_from_bugs() {
    use gateway::store::{db_conflict, db_unavailable};
    let app = spawn_app_with(Options::default()).await;
    let connect = || async {
        let (client, connection) = tokio_postgres::connect(&app.db_url, tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(connection);
        client
    };
    let c = connect().await;
    let bug = c.simple_query("SELEC 1").await.unwrap_err();
    assert!(!db_unavailable(&bug), "{bug}");
    let terminated = c
        .simple_query("SELECT pg_terminate_backend(pg_backend_pid())")
        .await
        .unwrap_err();
    assert!(db_unavailable(&terminated), "{terminated:?}");
    let after = c.simple_query("SELECT 1").await.unwrap_err();
    assert!(db_unavailable(&after), "{after:?}");

    // Two transactions that lock two rows in opposite orders: one loses a deadlock.
    let (a, b) = (connect().await, connect().await);
    a.batch_execute("CREATE TABLE dl (id int PRIMARY KEY); INSERT INTO dl VALUES (1), (2)")
        .await
        .unwrap();
    a.batch_execute("BEGIN; UPDATE dl SET id = id WHERE id = 1")
        .await
        .unwrap();
    b.batch_execute("BEGIN; UPDATE dl SET id = id WHERE id = 2")
        .await
        .unwrap();
    let (ra, rb) = tokio::join!(
        a.batch_execute("UPDATE dl SET id = id WHERE id = 2"),
        b.batch_execute("UPDATE dl SET id = id WHERE id = 1"),
    );
    let lost = ra
        .err()
        .or(rb.err())
        .expect("one of them lost the deadlock");
    assert!(db_conflict(&lost) && db_unavailable(&lost), "{lost:?}");
}

/// MobiFone's SMSC is down while codes end: one expires (its TTL passes), one is approved,
/// one is still good, one has two seconds left. When the SMSC is back only the good ones
/// are submitted, each with its code's remaining life as `validity_period`; the expired
/// and the approved end unsent (`expired`, `canceled`) and unbilled; the one whose life
/// runs out at the SMSC is given up there (EXPIRED receipt, nothing on the handset).
#[tokio::test]
async fn codes_that_end_while_their_carrier_is_down_are_never_sent() {
    let app = spawn_app_with(Options {
        tweak: Some(Box::new(|s| {
            loadable(s);
            s.outbox.retry_base = Duration::from_millis(100);
            s.outbox.retry_max = Duration::from_millis(300);
        })),
        ..Options::default()
    })
    .await;
    app.set_faults(
        "mobifone",
        json!({"refuse_binds": true, "drop_after_pdus": 1}),
    )
    .await;
    app.create_otp("0901110000", "login").await;
    app.wait_for_code("84901110000", 1).await;
    app.wait_unbound("mobifone").await;
    let id_of = |v: Value| v["id"].as_str().unwrap().parse::<uuid::Uuid>().unwrap();
    let expired = id_of(app.create_otp("0901110001", "login").await);
    let approved = id_of(app.create_otp("0901110002", "login").await);
    let good = id_of(app.create_otp("0901110003", "login").await);
    let short = id_of(app.create_otp("0901110004", "login").await);
    let db = app.pool.get().await.unwrap();
    // The TTL passes for one (as after an outage longer than it), the portal approves
    // another (by a code it had from elsewhere: the row is what the dispatcher sees).
    db.execute(
        "UPDATE otp_challenges SET expires_at = now() - interval '1 second' WHERE id = $1",
        &[&expired],
    )
    .await
    .unwrap();
    db.execute(
        "UPDATE otp_challenges SET status = 'approved', approved_at = now() WHERE id = $1",
        &[&approved],
    )
    .await
    .unwrap();
    db.execute(
        "UPDATE otp_challenges SET expires_at = now() + interval '8 seconds' WHERE id = $1",
        &[&short],
    )
    .await
    .unwrap();
    // While MobiFone is still down, the ended ones are ended already (the claim does not
    // reach a down route; the sweep does): no `queued` SMS waits out the outage.
    wait_for(
        Duration::from_secs(10),
        "ended codes still queued during the outage",
        || async {
            let queued: i64 = db
                .query_one(
                    "SELECT count(*) FROM sms_outbox WHERE challenge_id = ANY($1) AND status = 'queued'",
                    &[&vec![expired, approved]],
                )
                .await
                .unwrap()
                .get(0);
            if queued == 0 {
                Ok(())
            } else {
                Err(format!("{queued} queued"))
            }
        },
    )
    .await;
    assert_eq!(
        app.binds_of("mobifone").await.0,
        0,
        "mobifone came back too early"
    );
    let billed_before: i64 = db
        .query_one("SELECT coalesce(sum(quantity), 0)::bigint FROM usage_events WHERE item = 'otp_sms_segment'", &[])
        .await
        .unwrap()
        .get(0);
    // Back, but slow to deliver: 10 s from submit to handset.
    app.set_faults("mobifone", json!({"receipt_delay": "10s"}))
        .await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while app.handset("84901110003").await.is_empty() {
        assert!(Instant::now() < deadline, "the good code never arrived");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let good_expires: chrono::DateTime<chrono::Utc> = db
        .query_one(
            "SELECT expires_at FROM otp_challenges WHERE id = $1",
            &[&good],
        )
        .await
        .unwrap()
        .get(0);
    let message = app.handset("84901110003").await[0].clone();
    let valid_until: chrono::DateTime<chrono::Utc> =
        message["valid_until"].as_str().unwrap().parse().unwrap();
    assert!(
        (valid_until - good_expires).num_milliseconds().abs() < 2000,
        "validity_period ends {valid_until}, the code {good_expires}"
    );
    // The short one was submitted with less than 8 s of life and waits 10 s at the SMSC
    // (or, on a slow machine, its code ran out before the bind was back and it was never
    // submitted): either way it ends expired.
    let short_delivery = wait_for(
        Duration::from_secs(20),
        "the short code's delivery ends",
        || async {
            let d: Value = app.api_json(&format!("/v1/otp/{short}")).await;
            match d["delivery"]["status"].as_str() {
                Some("expired" | "delivered") => Ok(d["delivery"].clone()),
                _ => Err(d.to_string()),
            }
        },
    )
    .await;
    let outbox = |id: uuid::Uuid| {
        let db = &db;
        async move {
            let r = db
                .query_one(
                    "SELECT status, last_error FROM sms_outbox WHERE challenge_id = $1",
                    &[&id],
                )
                .await
                .unwrap();
            (r.get::<_, String>(0), r.get::<_, Option<String>>(1))
        }
    };
    let expired_row = outbox(expired).await;
    let approved_row = outbox(approved).await;
    let short_row = outbox(short).await;
    eprintln!(
        "carrier down past the TTL: expired {expired_row:?}, approved {approved_row:?}, \
         short-lived {short_row:?} / {short_delivery}"
    );
    assert_eq!(
        expired_row,
        ("expired".into(), Some("challenge_expired".into()))
    );
    assert_eq!(
        approved_row,
        ("canceled".into(), Some("challenge_approved".into()))
    );
    assert!(
        app.handset("84901110001").await.is_empty(),
        "an expired code was sent"
    );
    assert!(
        app.handset("84901110002").await.is_empty(),
        "an approved code was sent"
    );
    assert_eq!(short_delivery["status"], "expired", "{short_delivery}");
    assert!(
        app.handset("84901110004").await.is_empty(),
        "a code past its life reached the phone"
    );
    let expired_view: Value = app
        .get(&format!("/v1/otp/{expired}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        expired_view["delivery"]["status"], "expired",
        "{expired_view}"
    );
    // Billed: what was submitted (the good one, and the short-lived one if it went
    // out), never the two that ended unsent.
    let billed_after: i64 = db
        .query_one("SELECT coalesce(sum(quantity), 0)::bigint FROM usage_events WHERE item = 'otp_sms_segment'", &[])
        .await
        .unwrap()
        .get(0);
    let submitted: i64 = db
        .query_one(
            "SELECT count(*) FROM sms_outbox WHERE challenge_id = ANY($1) AND status = 'submitted'",
            &[&vec![expired, approved, good, short]],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(billed_after - billed_before, submitted);
    assert!(submitted >= 1);
}

/// A body sent a byte at a time is cut off with 408 once `server.body_timeout` has passed
/// and its connection closed, while other requests are served meanwhile; one address
/// holds at most `server.max_connections_per_ip` connections.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_bodies_get_408_and_one_address_cannot_hold_every_connection() {
    let app = spawn_app_with(Options {
        tweak: Some(Box::new(|s| {
            s.server.body_timeout = Duration::from_secs(1);
            s.server.max_connections_per_ip = 8;
        })),
        ..Options::default()
    })
    .await;
    let addr = app.api.trim_start_matches("http://").to_owned();
    let body = json!({"msisdn": "0971239999", "purpose": "login"}).to_string();
    let slow = |body: String| {
        let (addr, key) = (addr.clone(), app.key.clone());
        tokio::spawn(async move {
            let mut s = tokio::net::TcpStream::connect(&addr).await.unwrap();
            let head = format!(
                "POST /v1/otp HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {key}\r\n\
                 Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
                body.len()
            );
            s.write_all(head.as_bytes()).await.unwrap();
            let started = Instant::now();
            let mut answer = Vec::new();
            for byte in body.bytes() {
                if s.write_all(&[byte]).await.is_err() {
                    break;
                }
                let mut buf = [0u8; 4096];
                match tokio::time::timeout(Duration::from_millis(200), s.read(&mut buf)).await {
                    Ok(Ok(0)) | Ok(Err(_)) => break,
                    Ok(Ok(n)) => answer.extend_from_slice(&buf[..n]),
                    Err(_) => {}
                }
                if started.elapsed() > Duration::from_secs(10) {
                    break;
                }
            }
            // Whatever is left of the answer, then the close.
            let mut rest = Vec::new();
            let closed = tokio::time::timeout(Duration::from_secs(3), s.read_to_end(&mut rest))
                .await
                .is_ok();
            answer.extend_from_slice(&rest);
            (
                started.elapsed(),
                String::from_utf8_lossy(&answer).into_owned(),
                closed,
            )
        })
    };
    let slow_ones: Vec<_> = (0..5).map(|_| slow(body.clone())).collect();
    // Meanwhile the API answers others.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let served = Instant::now();
    let ok = app.create_otp("0971238888", "login").await;
    assert_eq!(ok["status"], "pending");
    assert!(
        served.elapsed() < Duration::from_secs(3),
        "the slow bodies held the API up"
    );
    for s in slow_ones {
        let (took, answer, closed) = s.await.unwrap();
        assert!(answer.starts_with("HTTP/1.1 408"), "{answer:?}");
        assert!(answer.contains("/problems/request-timeout"), "{answer}");
        assert!(closed, "the connection stayed open after the 408");
        assert!(
            took < Duration::from_secs(4),
            "the 408 came {took:?} after the head (deadline 1 s)"
        );
    }

    // Eight idle connections from 127.0.0.1 are the most it may hold: a ninth is
    // answered 429 and closed; once they close, it is served again.
    let mut idle = Vec::new();
    for _ in 0..8 {
        idle.push(tokio::net::TcpStream::connect(&addr).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut extra = tokio::net::TcpStream::connect(&addr).await.unwrap();
    extra
        .write_all(format!("GET /healthz HTTP/1.1\r\nHost: {addr}\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), extra.read_to_end(&mut answer))
        .await
        .expect("the extra connection was not closed")
        .unwrap();
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 429"), "{answer}");
    assert!(
        answer.contains("connections open from this address"),
        "{answer}"
    );
    drop(idle);
    // A new connection (not one of the client's pooled ones, counted before the flood).
    wait_for(
        Duration::from_secs(5),
        "a new connection is served",
        || async {
            let r = reqwest::Client::new()
                .get(format!("{}/healthz", app.api))
                .send()
                .await
                .unwrap();
            if r.status() == 200 {
                Ok(())
            } else {
                Err(format!("still refused: {}", r.status()))
            }
        },
    )
    .await;
}
