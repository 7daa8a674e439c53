//! SMS pumping guards: bursts to consecutive numbers, a prefix whose codes stop being
//! used; refusals audited and counted; a client can have a guard turned off.

use std::time::Duration;

use serde_json::{json, Value};

use crate::helpers::{spawn_app, spawn_app_with, Options};

#[tokio::test]
async fn a_burst_to_consecutive_numbers_is_refused_for_that_block() {
    let app = spawn_app().await;
    let create = |n: String| {
        app.post("/v1/otp")
            .json(&json!({"msisdn": n, "purpose": "register"}))
            .send()
    };
    for i in 0..10 {
        assert_eq!(
            create(format!("09712345{i:02}")).await.unwrap().status(),
            201
        );
    }
    let refused = create("0971234510".into()).await.unwrap();
    assert_eq!(refused.status(), 429);
    assert!(refused.headers().contains_key("retry-after"));
    let problem: Value = refused.json().await.unwrap();
    assert!(
        problem["detail"].as_str().unwrap().contains("pumping"),
        "{problem}"
    );
    // Another block is not affected.
    assert_eq!(create("0971234600".into()).await.unwrap().status(), 201);
    let blocked = app.audit_events(Some("guard.blocked")).await;
    assert_eq!(blocked.len(), 1);
    assert_eq!(blocked[0]["detail"]["guard"], "sequential");
    assert_eq!(blocked[0]["detail"]["detail"]["block"], "09712345xx");
    let metrics = app.metrics_text().await;
    assert!(
        metrics.contains(r#"gateway_guard_blocked_total{guard="sequential"} 1"#),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_client_can_have_the_guard_turned_off() {
    let app = spawn_app_with(Options {
        tweak: Some(Box::new(|s| {
            let relaxed = gateway::config::GuardSettings {
                sequential_enabled: false,
                ..Default::default()
            };
            s.guards_by_client.insert("test-portal".into(), relaxed);
        })),
        ..Options::default()
    })
    .await;
    for i in 0..12 {
        let r = app
            .post("/v1/otp")
            .json(&json!({"msisdn": format!("09712345{i:02}"), "purpose": "register"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
    }
}

#[tokio::test]
async fn a_prefix_whose_codes_stop_being_used_is_refused() {
    let app = spawn_app().await;
    let db = app.pool.get().await.unwrap();
    let client: uuid::Uuid = db
        .query_one("SELECT id FROM api_clients WHERE name = 'test-portal'", &[])
        .await
        .unwrap()
        .get(0);
    // Normal level: 097 numbers approved 80 % of the time over the past days; the last
    // hour: 60 codes to 097 numbers, none used. (The hourly counts the guard reads, as
    // the instances write them.)
    db.execute(
        "INSERT INTO otp_prefix_hourly (client_id, prefix, hour, shard, sent, approved)
         VALUES ($1, '8497', date_trunc('hour', now() - interval '2 days'), 0, 100, 80),
                ($1, '8497', date_trunc('hour', now() - interval '30 minutes'), 0, 60, 0),
                ($1, '8498', date_trunc('hour', now() - interval '2 days'), 0, 100, 80)",
        &[&client],
    )
    .await
    .unwrap();
    let refused = app
        .post("/v1/otp")
        .json(&json!({"msisdn": "0975550001", "purpose": "login"}))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 429);
    // Other prefixes are fine.
    let ok = app
        .post("/v1/otp")
        .json(&json!({"msisdn": "0985550001", "purpose": "login"}))
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 201);
    tokio::time::sleep(Duration::from_millis(50)).await;
    let blocked = app.audit_events(Some("guard.blocked")).await;
    assert_eq!(blocked.len(), 1, "{blocked:?}");
    assert_eq!(blocked[0]["detail"]["guard"], "conversion");
    assert_eq!(blocked[0]["detail"]["detail"]["prefix"], "097");
}

#[tokio::test]
async fn the_conversion_counts_follow_creates_and_approvals() {
    let app = spawn_app().await;
    let approved = app.create_otp("0975550101", "login").await;
    app.create_otp("0975550202", "login").await;
    app.create_otp("0915550303", "login").await;
    let code = app.wait_for_code("84975550101", 1).await;
    let checked = app.check(approved["id"].as_str().unwrap(), &code).await;
    assert_eq!(checked["status"], "approved");
    // Each instance writes its counts about once a second.
    let db = app.pool.get().await.unwrap();
    let want = vec![("8491".to_owned(), 1, 0), ("8497".to_owned(), 2, 1)];
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let rows = db
            .query(
                "SELECT prefix, sum(sent)::int, sum(approved)::int FROM otp_prefix_hourly
                 GROUP BY prefix ORDER BY prefix",
                &[],
            )
            .await
            .unwrap();
        let counts: Vec<(String, i32, i32)> = rows
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get(2)))
            .collect();
        if counts == want {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{counts:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
