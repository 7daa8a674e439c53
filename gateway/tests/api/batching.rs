//! Creates batched across requests: requests that queue while the batcher is busy run
//! as one transaction, and every limit, guard and Idempotency-Key decides as it would
//! one request at a time.

use std::time::Duration;

use serde_json::{json, Value};

use crate::helpers::{spawn_app_with, Options, TestApp};

async fn metric(app: &TestApp, name: &str) -> u64 {
    app.metrics_text()
        .await
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .unwrap_or_else(|| panic!("no {name} in /metrics"))
        .trim()
        .parse()
        .unwrap()
}

fn create(
    app: &TestApp,
    msisdn: &str,
    key: Option<&str>,
) -> impl std::future::Future<Output = (u16, Value, bool)> {
    let mut req = app
        .http
        .post(format!("{}/v1/otp", app.api))
        .bearer_auth(&app.key)
        .json(&json!({"msisdn": msisdn, "purpose": "login"}));
    if let Some(key) = key {
        req = req.header("Idempotency-Key", key);
    }
    async move {
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let replayed = resp.headers().contains_key("idempotent-replayed");
        (status, resp.json().await.unwrap(), replayed)
    }
}

#[tokio::test]
async fn requests_queued_together_run_as_one_batch_and_keep_every_limit() {
    let app = spawn_app_with(Options {
        resend_interval: Duration::ZERO,
        tweak: Some(Box::new(|s| {
            s.otp.create_batchers = 1;
            s.guards.sequential_max_numbers = 3;
        })),
    })
    .await;
    // An Idempotency-Key used before the batch.
    let (status, _, _) = create(&app, "0971140000", Some("k-old")).await;
    assert_eq!(status, 201);

    // The one batcher is held inside a batch: its request's limit lock is taken here.
    let (hold, connection) = tokio_postgres::connect(&app.db_url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    let lock = "phone-purpose:84971110000:login";
    hold.execute("SELECT pg_advisory_lock(hashtextextended($1, 7))", &[&lock])
        .await
        .unwrap();
    let held = tokio::spawn(create(&app, "0971110000", None));
    tokio::time::sleep(Duration::from_millis(300)).await;

    // Meanwhile twelve requests queue up.
    let mut queued = Vec::new();
    for _ in 0..5 {
        queued.push(tokio::spawn(create(&app, "0971110100", None)));
    }
    for _ in 0..2 {
        queued.push(tokio::spawn(create(&app, "0971130000", Some("k-new"))));
    }
    queued.push(tokio::spawn(create(&app, "0971150000", Some("k-old"))));
    for n in 1..=4 {
        queued.push(tokio::spawn(create(&app, &format!("097112000{n}"), None)));
    }
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(
        metric(&app, "gateway_otp_create_batches_total").await,
        2,
        "the batcher is still inside its second batch"
    );
    hold.execute(
        "SELECT pg_advisory_unlock(hashtextextended($1, 7))",
        &[&lock],
    )
    .await
    .unwrap();
    assert_eq!(held.await.unwrap().0, 201);
    let answers: Vec<(u16, Value, bool)> = futures::future::join_all(queued)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();

    // All twelve went in one batch.
    assert_eq!(metric(&app, "gateway_otp_create_batches_total").await, 3);
    assert_eq!(metric(&app, "gateway_otp_create_batched_total").await, 14);

    // Five to one number: the first three pass its 3-per-10-minutes limit.
    // (They reach the server in any order: count, do not index.)
    let mut statuses: Vec<u16> = answers[..5].iter().map(|a| a.0).collect();
    statuses.sort_unstable();
    assert_eq!(statuses, [201, 201, 201, 429, 429], "{answers:?}");
    assert!(answers[..5]
        .iter()
        .filter(|a| a.0 == 429)
        .all(|a| a.1["type"] == "/problems/rate-limited"));
    // One Idempotency-Key twice: one verification, answered twice.
    let (first, second) = (&answers[5], &answers[6]);
    assert_eq!((first.0, second.0), (201, 201));
    assert_eq!(first.1["id"], second.1["id"]);
    assert!(first.2 != second.2, "exactly one answer is a replay");
    // A key used before, with another body.
    assert_eq!(answers[7].0, 422);
    assert_eq!(answers[7].1["type"], "/problems/idempotency-key-reused");
    // Four numbers of one block of 100: the consecutive-numbers guard lets three through.
    let mut block: Vec<u16> = answers[8..].iter().map(|a| a.0).collect();
    block.sort_unstable();
    assert_eq!(block, [201, 201, 201, 429], "{answers:?}");

    // What was written is what was answered: one challenge and one SMS per 201, and
    // the refusals audited.
    let db = app.pool.get().await.unwrap();
    let challenges: i64 = db
        .query_one("SELECT count(*) FROM otp_challenges", &[])
        .await
        .unwrap()
        .get(0);
    let sms: i64 = db
        .query_one("SELECT count(*) FROM sms_outbox", &[])
        .await
        .unwrap()
        .get(0);
    // k-old before, the held one, 3 + 1 (k-new) + 3 in the batch.
    assert_eq!((challenges, sms), (9, 9));
    let audited: Vec<(String, i64)> = db
        .query(
            "SELECT event, count(*) FROM audit_events
             WHERE event IN ('otp.created', 'otp.rate_limited', 'guard.blocked')
             GROUP BY event ORDER BY event",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(
        audited,
        [
            ("guard.blocked".to_owned(), 1),
            ("otp.created".to_owned(), 9),
            ("otp.rate_limited".to_owned(), 2)
        ]
    );
}

/// The one create path, against the database: any batch admits exactly what the same
/// requests, created one by one in arrival order, admit. Each run takes a sequence of
/// creates drawn (by seed) from a few numbers of one block, two purposes, two end-user
/// addresses, accounts (one locked), two clients (one with a daily quota) and repeated
/// Idempotency-Keys, under tight windows and the consecutive-numbers guard; once as one
/// batch, once as batches of one, each on a fresh database.
#[tokio::test]
async fn a_batch_admits_exactly_what_its_requests_one_by_one_admit() {
    use gateway::clients::ApiClient;
    use gateway::domain::{Locale, Msisdn, Purpose};
    use gateway::otp::{Deps, NewOtp, OtpError, OtpService};
    use std::sync::Arc;

    let tight = |s: &mut gateway::config::Settings| {
        s.limits.phone_purpose = vec![gateway::config::WindowLimit {
            max: 2,
            window: Duration::from_secs(600),
        }];
        s.limits.ip = vec![gateway::config::WindowLimit {
            max: 4,
            window: Duration::from_secs(600),
        }];
        s.guards.sequential_enabled = true;
        s.guards.sequential_max_numbers = 3;
        s.otp.create_batchers = 0;
    };
    // What became of each request, as the portal would tell.
    fn outcome(r: &Result<(gateway::otp::OtpView, bool), OtpError>) -> String {
        match r {
            Ok((v, replay)) => format!("created {} {}", v.carrier, replay),
            Err(OtpError::Limited(l)) => format!("limited: {}", l.detail),
            Err(e) => format!("{e}"),
        }
    }
    async fn service(
        app: &TestApp,
        settings: gateway::config::Settings,
    ) -> (OtpService, [ApiClient; 2]) {
        let mut clients = Vec::new();
        for (name, quota) in [("portal-a", None), ("portal-b", Some(5))] {
            let id = gateway::clients::add(&app.pool, name).await.unwrap().id;
            clients.push(ApiClient {
                id,
                name: name.into(),
                allowed_purposes: None,
                sender_ids: Default::default(),
                sms_templates: Default::default(),
                daily_sms_quota: quota,
                requests_per_second: None,
                request_burst: None,
                otp_channels: None,
                otp_callback_url: None,
            });
        }
        app.pool
            .get()
            .await
            .unwrap()
            .execute(
                "INSERT INTO account_lockouts (client_id, account_ref, failed_checks, locked_at)
                 VALUES ($1, 'locked', 9, now())",
                &[&clients[0].id],
            )
            .await
            .unwrap();
        let keys =
            gateway::crypto::ServerKeys::from_secret(settings.otp.hmac_key.as_ref().unwrap())
                .unwrap();
        let svc = OtpService::new(Deps {
            pool: app.pool.clone(),
            keys: Arc::new(keys),
            settings: Arc::new(settings),
            outbox_wake: Default::default(),
            zns_wake: Default::default(),
            guard_counters: Default::default(),
            conversion_counts: Default::default(),
            funnel: Default::default(),
        });
        (svc, clients.try_into().unwrap())
    }

    for seed in [7u64, 1234, 99_991] {
        let together = spawn_app_with(Options {
            tweak: Some(Box::new(tight)),
            ..Options::default()
        })
        .await;
        let alone = spawn_app_with(Options {
            tweak: Some(Box::new(tight)),
            ..Options::default()
        })
        .await;
        let (batch_svc, batch_clients) = service(&together, together.settings.clone()).await;
        let (one_svc, one_clients) = service(&alone, alone.settings.clone()).await;
        // A small xorshift: the same sequence for both runs.
        let mut x = seed;
        let mut next = |n: u64| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x % n
        };
        let numbers = [
            "0971004401",
            "0971004402",
            "0971004403",
            "0971004404",
            "0911004405",
        ];
        let ips = ["203.0.113.80", "2001:db8::80"];
        let accounts = [None, Some("acct"), Some("locked")];
        let mut sequence = Vec::new();
        for _ in 0..24 {
            let c = next(2) as usize;
            let req = NewOtp {
                msisdn: Msisdn::parse(numbers[next(5) as usize]).unwrap(),
                purpose: [Purpose::Login, Purpose::Register][next(2) as usize],
                locale: Locale::Vi,
                code_length: 6,
                ttl_seconds: 300,
                idempotency_key: (next(4) == 0).then(|| format!("key-{}", next(3))),
                account_ref: accounts[next(3) as usize].map(str::to_owned),
                client_ip: (next(3) > 0).then(|| ips[next(2) as usize].parse().unwrap()),
                channels: None,
                channel_timeout: None,
            };
            sequence.push((c, req));
        }
        let batch: Vec<(ApiClient, NewOtp)> = sequence
            .iter()
            .map(|(c, r)| (batch_clients[*c].clone(), r.clone()))
            .collect();
        let as_one_batch: Vec<String> = batch_svc
            .create_together(batch)
            .await
            .iter()
            .map(outcome)
            .collect();
        let mut one_by_one = Vec::new();
        for (c, r) in &sequence {
            let reply = one_svc
                .create_together(vec![(one_clients[*c].clone(), r.clone())])
                .await;
            one_by_one.push(outcome(&reply[0]));
        }
        assert_eq!(as_one_batch, one_by_one, "seed {seed}");
        let created = as_one_batch
            .iter()
            .filter(|o| o.starts_with("created"))
            .count();
        let refused = as_one_batch.len() - created;
        assert!(
            created > 0 && refused > 0,
            "seed {seed}: the sequence tries both ({as_one_batch:?})"
        );
        // Both databases hold the same: as many challenges and SMS per number.
        let count = |app: &TestApp| {
            let pool = app.pool.clone();
            async move {
                let db = pool.get().await.unwrap();
                let rows = db
                    .query(
                        "SELECT c.msisdn, count(*) FROM otp_challenges c
                         JOIN sms_outbox o ON o.challenge_id = c.id GROUP BY 1 ORDER BY 1",
                        &[],
                    )
                    .await
                    .unwrap();
                rows.iter()
                    .map(|r| (r.get::<_, String>(0), r.get::<_, i64>(1)))
                    .collect::<Vec<_>>()
            }
        };
        assert_eq!(count(&together).await, count(&alone).await, "seed {seed}");
    }
}
