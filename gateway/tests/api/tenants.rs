//! Per-client policy: allowed purposes, brandnames per carrier, rate and quota overrides,
//! changed with `gateway client set` and applied at once on every instance.

use std::time::Duration;

use gateway::clients::{self, PolicyChange};
use serde_json::{json, Value};

use crate::helpers::{spawn_app, spawn_app_with, Options};

#[tokio::test]
async fn a_client_may_ask_only_for_its_purposes_on_every_instance() {
    let a = spawn_app().await;
    let b = a.second_instance(&a.api).await;
    clients::set_policy(
        &a.pool,
        "test-portal",
        &PolicyChange {
            purposes: Some(Some(vec!["login".into(), "add_method".into()])),
            ..PolicyChange::default()
        },
    )
    .await
    .unwrap();
    let otp = |api: &str, purpose: &str| {
        a.http
            .post(format!("{api}/v1/otp"))
            .bearer_auth(&a.key)
            .json(&json!({"msisdn": "0971234501", "purpose": purpose}))
            .send()
    };
    for api in [&a.api, &b.api] {
        let refused = otp(api, "register").await.unwrap();
        assert_eq!(refused.status(), 403);
        let problem: Value = refused.json().await.unwrap();
        assert_eq!(problem["type"], "/problems/purpose-not-allowed");
        assert!(problem["detail"].as_str().unwrap().contains("register"));
    }
    assert_eq!(otp(&b.api, "login").await.unwrap().status(), 201);
    // SIM signatures too.
    let signature = |purpose: &str| {
        a.http
            .post(format!("{}/v1/signatures", b.api))
            .bearer_auth(&a.key)
            .json(&json!({"msisdn": "0971234567", "purpose": purpose}))
            .send()
    };
    assert_eq!(signature("register").await.unwrap().status(), 403);
    assert_eq!(signature("add_method").await.unwrap().status(), 202);
    // Nothing was written for the refused requests.
    assert_eq!(a.count("otp_challenges").await, 1);
    assert_eq!(a.count("signature_requests").await, 1);

    // Back to every purpose.
    clients::set_policy(
        &a.pool,
        "test-portal",
        &PolicyChange {
            purposes: Some(None),
            ..PolicyChange::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(otp(&a.api, "register").await.unwrap().status(), 201);
    let changes = a.audit_events(Some("client.policy_changed")).await;
    assert_eq!(changes.len(), 2, "{changes:?}");
    assert_eq!(
        changes[0]["detail"]["allowed_purposes"],
        json!(["login", "add_method"])
    );
}

#[tokio::test]
async fn bad_policies_are_refused_and_change_nothing() {
    let app = spawn_app().await;
    for change in [
        PolicyChange {
            purposes: Some(Some(vec!["spam".into()])),
            ..PolicyChange::default()
        },
        PolicyChange {
            purposes: Some(Some(vec![])),
            ..PolicyChange::default()
        },
        PolicyChange {
            senders: vec![("viettel".into(), "A NAME TOO LONG".into())],
            ..PolicyChange::default()
        },
        PolicyChange {
            senders: vec![("viettel".into(), "Tên".into())],
            ..PolicyChange::default()
        },
        PolicyChange {
            senders: vec![("orange".into(), "DVC".into())],
            ..PolicyChange::default()
        },
        PolicyChange {
            daily_sms_quota: Some(Some(-1)),
            ..PolicyChange::default()
        },
        PolicyChange {
            requests_per_second: Some(Some(0)),
            ..PolicyChange::default()
        },
    ] {
        assert!(
            clients::set_policy(&app.pool, "test-portal", &change)
                .await
                .is_err(),
            "{change:?} accepted"
        );
    }
    assert!(
        clients::set_policy(&app.pool, "nobody", &PolicyChange::default())
            .await
            .is_err()
    );
    let policy = clients::policy(&app.pool, "test-portal").await.unwrap();
    assert_eq!(
        serde_json::to_value(&policy).unwrap(),
        json!({
            "allowed_purposes": null,
            "sender_ids": {},
            "daily_sms_quota": null,
            "requests_per_second": null,
            "request_burst": null
        })
    );
    assert!(app
        .audit_events(Some("client.policy_changed"))
        .await
        .is_empty());
}

#[tokio::test]
async fn each_carrier_gets_the_clients_own_brandname() {
    let app = spawn_app().await;
    clients::set_policy(
        &app.pool,
        "test-portal",
        &PolicyChange {
            senders: vec![
                ("viettel".into(), "UBND-HN".into()),
                ("mobifone".into(), "8088".into()),
            ],
            ..PolicyChange::default()
        },
    )
    .await
    .unwrap();
    let route_sender = |route: &str| app.settings.smpp[route].sender.clone();
    for (msisdn, e164, want) in [
        ("0971234567", "84971234567", "UBND-HN".to_owned()),
        ("0901234567", "84901234567", "8088".to_owned()),
        ("0828123088", "84828123088", route_sender("vinaphone")),
    ] {
        app.create_otp(msisdn, "login").await;
        app.wait_for_code(e164, 1).await;
        let messages = app.handset(e164).await;
        assert_eq!(messages[0]["from"], want.as_str(), "{messages:?}");
    }
    // Removing the brandname goes back to the route's.
    clients::set_policy(
        &app.pool,
        "test-portal",
        &PolicyChange {
            senders: vec![("viettel".into(), String::new())],
            ..PolicyChange::default()
        },
    )
    .await
    .unwrap();
    app.create_otp("0971234567", "register").await;
    app.wait_for_code("84971234567", 2).await;
    let messages = app.handset("84971234567").await;
    assert_eq!(messages[1]["from"], route_sender("viettel").as_str());
}

#[tokio::test]
async fn a_clients_own_daily_quota_counts_sends_and_resends_on_every_instance() {
    let a = spawn_app_with(Options {
        resend_interval: Duration::ZERO,
        ..Options::default()
    })
    .await;
    let b = a.second_instance(&a.api).await;
    let quota = |n: Option<i64>| PolicyChange {
        daily_sms_quota: Some(n),
        ..PolicyChange::default()
    };
    clients::set_policy(&a.pool, "test-portal", &quota(Some(3)))
        .await
        .unwrap();
    let create = |api: &str, n: &str| {
        a.http
            .post(format!("{api}/v1/otp"))
            .bearer_auth(&a.key)
            .json(&json!({"msisdn": n, "purpose": "login"}))
            .send()
    };
    let first: Value = create(&a.api, "0971000011")
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    // A resend is an SMS of today too.
    let resent = a
        .http
        .post(format!(
            "{}/v1/otp/{}/resend",
            b.api,
            first["id"].as_str().unwrap()
        ))
        .bearer_auth(&a.key)
        .send()
        .await
        .unwrap();
    assert_eq!(resent.status(), 200);
    assert_eq!(create(&b.api, "0971000012").await.unwrap().status(), 201);
    let refused = create(&a.api, "0971000013").await.unwrap();
    assert_eq!(refused.status(), 429);
    assert!(refused.headers().contains_key("retry-after"));
    let problem: Value = refused.json().await.unwrap();
    assert!(problem["detail"].as_str().unwrap().contains("daily"));
    assert_eq!(create(&b.api, "0971000013").await.unwrap().status(), 429);
    // The refused sends did not count: raising the quota by one allows exactly one more.
    clients::set_policy(&a.pool, "test-portal", &quota(Some(4)))
        .await
        .unwrap();
    assert_eq!(create(&b.api, "0971000013").await.unwrap().status(), 201);
    assert_eq!(create(&a.api, "0971000014").await.unwrap().status(), 429);
    // Back to the configured default (a million a day).
    clients::set_policy(&a.pool, "test-portal", &quota(None))
        .await
        .unwrap();
    assert_eq!(create(&a.api, "0971000014").await.unwrap().status(), 201);
    let db = a.pool.get().await.unwrap();
    let counted: i64 = db
        .query_one("SELECT sum(sms)::bigint FROM client_daily_sms", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(counted, 5);
}

#[tokio::test]
async fn a_clients_own_request_rate_applies_to_it_alone() {
    let app = spawn_app().await;
    let other = clients::add(&app.pool, "other-portal").await.unwrap();
    clients::set_policy(
        &app.pool,
        "test-portal",
        &PolicyChange {
            requests_per_second: Some(Some(1)),
            request_burst: Some(Some(2)),
            ..PolicyChange::default()
        },
    )
    .await
    .unwrap();
    let get = |key: &str| {
        app.http
            .get(format!("{}/v1/otp/{}", app.api, uuid::Uuid::new_v4()))
            .bearer_auth(key.to_owned())
            .send()
    };
    let mut mine = Vec::new();
    let mut theirs = Vec::new();
    for _ in 0..6 {
        mine.push(get(&app.key).await.unwrap().status().as_u16());
        theirs.push(get(&other.key).await.unwrap().status().as_u16());
    }
    assert_eq!(&mine[..2], &[404, 404]);
    assert!(mine.contains(&429), "{mine:?}");
    assert!(theirs.iter().all(|s| *s == 404), "{theirs:?}");
    // Back to the default (200/s, burst 400): the next request passes at once.
    clients::set_policy(
        &app.pool,
        "test-portal",
        &PolicyChange {
            requests_per_second: Some(None),
            request_burst: Some(None),
            ..PolicyChange::default()
        },
    )
    .await
    .unwrap();
    for _ in 0..5 {
        assert_eq!(get(&app.key).await.unwrap().status(), 404);
    }
}
