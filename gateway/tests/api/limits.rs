//! Limits across two gateway instances (per end-user address, per account, the pumping
//! guard), and enumeration resistance: a number or account that exists is answered
//! exactly as one that does not.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::helpers::{spawn_app_with, Options, TestApp};

fn post_otp(app: &TestApp, api: &str, body: Value) -> reqwest::RequestBuilder {
    app.http
        .post(format!("{api}/v1/otp"))
        .bearer_auth(&app.key)
        .json(&body)
}

#[tokio::test]
async fn the_end_user_address_limit_holds_across_instances() {
    let a = spawn_app_with(Options {
        tweak: Some(Box::new(|s| {
            s.limits.ip = vec![gateway::config::WindowLimit {
                max: 3,
                window: Duration::from_secs(600),
            }];
        })),
        ..Options::default()
    })
    .await;
    let b = a.second_instance(&a.api).await;
    let create = |api: &str, n: &str| {
        post_otp(
            &a,
            api,
            json!({"msisdn": n, "purpose": "login", "client_ip": "203.0.113.50"}),
        )
        .send()
    };
    assert_eq!(create(&a.api, "0971000201").await.unwrap().status(), 201);
    assert_eq!(create(&b.api, "0971000302").await.unwrap().status(), 201);
    assert_eq!(create(&a.api, "0971000403").await.unwrap().status(), 201);
    for api in [&b.api, &a.api] {
        let refused = create(api, "0971000504").await.unwrap();
        assert_eq!(refused.status(), 429);
        assert!(refused.headers().contains_key("retry-after"));
    }
    // Concurrent requests from one address on both instances cannot squeeze past.
    let burst: Vec<_> = (0..6)
        .map(|i| {
            let api = if i % 2 == 0 { &a.api } else { &b.api };
            post_otp(
                &a,
                api,
                json!({"msisdn": format!("09710{i}0605"), "purpose": "login", "client_ip": "198.51.100.60"}),
            )
            .send()
        })
        .collect();
    let statuses: Vec<u16> = futures::future::join_all(burst)
        .await
        .into_iter()
        .map(|r| r.unwrap().status().as_u16())
        .collect();
    assert_eq!(
        statuses.iter().filter(|s| **s == 201).count(),
        3,
        "{statuses:?}"
    );
}

#[tokio::test]
async fn failed_checks_on_both_instances_add_up_to_the_account_lock() {
    let a = spawn_app_with(Options {
        tweak: Some(Box::new(|s| s.limits.account_failed_checks = 6)),
        ..Options::default()
    })
    .await;
    let b = a.second_instance(&a.api).await;
    let mut ids = Vec::new();
    for n in ["0971000701", "0971000802"] {
        let created: Value = post_otp(
            &a,
            &a.api,
            json!({"msisdn": n, "purpose": "login", "account_ref": "citizen-9"}),
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
        ids.push(created["id"].as_str().unwrap().to_owned());
    }
    let check = |api: &str, id: &str| {
        a.http
            .post(format!("{api}/v1/otp/{id}/check"))
            .bearer_auth(&a.key)
            .json(&json!({"code": "000000"}))
            .send()
    };
    // Three wrong codes on each challenge, alternating instances: six in all.
    for i in 0..6 {
        let api = if i % 2 == 0 { &a.api } else { &b.api };
        let r = check(api, &ids[i / 3]).await.unwrap();
        assert_eq!(r.status(), 200, "check {i}");
    }
    for api in [&a.api, &b.api] {
        let refused = check(api, &ids[1]).await.unwrap();
        assert_eq!(refused.status(), 429);
        let problem: Value = refused.json().await.unwrap();
        assert_eq!(problem["type"], "/problems/account-locked");
        let created = post_otp(
            &a,
            api,
            json!({"msisdn": "0971000903", "purpose": "login", "account_ref": "citizen-9"}),
        )
        .send()
        .await
        .unwrap();
        assert_eq!(created.status(), 429);
    }
}

#[tokio::test]
async fn the_consecutive_numbers_guard_counts_across_instances() {
    let a = spawn_app_with(Options::default()).await;
    let b = a.second_instance(&a.api).await;
    let limit = a.settings.guards.sequential_max_numbers;
    for i in 0..limit {
        let api = if i % 2 == 0 { &a.api } else { &b.api };
        let r = post_otp(
            &a,
            api,
            json!({"msisdn": format!("09712399{i:02}"), "purpose": "register"}),
        )
        .send()
        .await
        .unwrap();
        assert_eq!(r.status(), 201, "number {i}");
    }
    for api in [&a.api, &b.api] {
        let r = post_otp(
            &a,
            api,
            json!({"msisdn": "0971239999", "purpose": "register"}),
        )
        .send()
        .await
        .unwrap();
        assert_eq!(r.status(), 429);
    }
}

/// Statuses, the body's shape and the time taken are the same for a number the carrier
/// knows (a subscriber with a history here, an account with failed checks) and for one
/// nobody knows: the gateway never consults the carrier on the request path, and its
/// refusals do not depend on what exists.
#[tokio::test]
async fn known_and_unknown_numbers_and_accounts_are_answered_alike() {
    const PAIRS: usize = 30;
    let app = spawn_app_with(Options {
        tweak: Some(Box::new(|s| {
            s.limits.client_requests_per_second = 100_000;
            s.limits.client_burst = 100_000;
        })),
        ..Options::default()
    })
    .await;
    // Known: subscribers of the simulated carrier, each with an earlier verification,
    // and an account with failed checks. One number per block of 100, so that the
    // consecutive-numbers guard stays out of it.
    let known: Vec<String> = (0..PAIRS).map(|i| format!("09715{i:03}11")).collect();
    let unknown: Vec<String> = (0..PAIRS).map(|i| format!("09716{i:03}22")).collect();
    for n in &known {
        let e164 = format!("84{}", &n[1..]);
        let put = app
            .http
            .put(format!("{}/subscribers/{e164}", app.sim))
            .json(&json!({
                "full_name": "Nguyễn Văn An", "id_number": "001099012345",
                "date_of_birth": "1999-01-02", "sim_pki": true,
                "behaviour": "confirm", "certificate": "valid"
            }))
            .send()
            .await
            .unwrap();
        assert!(put.status().is_success(), "{}", put.text().await.unwrap());
    }
    for n in &unknown {
        let e164 = format!("84{}", &n[1..]);
        let got = app
            .http
            .get(format!("{}/subscribers/{e164}", app.sim))
            .send()
            .await
            .unwrap();
        assert_eq!(got.status(), 404, "{n} must be unknown to the carrier");
    }
    let history = app.create_otp(&known[0], "register").await;
    app.check(history["id"].as_str().unwrap(), "000000").await;

    // Creates: three rounds per number (the per-number limit allows three), then a
    // fourth that is refused; known and unknown interleaved so that noise hits both.
    let create = |n: &str, account: &str| {
        post_otp(
            &app,
            &app.api,
            json!({"msisdn": n, "purpose": "login", "account_ref": account}),
        )
        .send()
    };
    let mut times: [Vec<Duration>; 4] = Default::default(); // created k/u, refused k/u
    let mut shapes: [Option<(u16, Vec<String>, Value)>; 4] = Default::default();
    for round in 0..4 {
        for i in 0..PAIRS {
            for (side, n, account) in [
                (0, &known[i], "known-account".to_owned()),
                (1, &unknown[i], format!("never-seen-{round}-{i}")),
            ] {
                let started = Instant::now();
                let r = create(n, &account).await.unwrap();
                let took = started.elapsed();
                let status = r.status().as_u16();
                let retry_after = r.headers().contains_key("retry-after");
                let body: Value = r.json().await.unwrap();
                let slot = if round < 3 { side } else { 2 + side };
                assert_eq!(status, if round < 3 { 201 } else { 429 }, "{n}: {body}");
                assert_eq!(retry_after, round == 3);
                times[slot].push(took);
                let mut keys: Vec<String> = body.as_object().unwrap().keys().cloned().collect();
                keys.sort();
                // What may differ: ids, times, the number itself. What must not: the rest.
                let fixed = if round < 3 {
                    json!([
                        body["status"],
                        body["carrier"],
                        body["purpose"],
                        body["attempts_left"],
                        body["max_sends"]
                    ])
                } else {
                    json!([body["type"], body["title"], body["status"], body["detail"]])
                };
                match &shapes[slot] {
                    None => shapes[slot] = Some((status, keys, fixed)),
                    Some(first) => assert_eq!(first, &(status, keys, fixed)),
                }
            }
        }
    }
    assert_eq!(shapes[0], shapes[1], "created: known vs unknown");
    assert_eq!(shapes[2], shapes[3], "refused: known vs unknown");

    // Time within noise: the medians of interleaved samples differ by less than half of
    // the larger one plus 3 ms (a carrier or registry lookup on one path only would
    // stand out far beyond that on localhost with hundreds of samples).
    let median = |v: &Vec<Duration>| {
        let mut v = v.clone();
        v.sort();
        v[v.len() / 2]
    };
    for (what, k, u) in [("created", 0, 1), ("refused", 2, 3)] {
        let (mk, mu) = (median(&times[k]), median(&times[u]));
        let bound = mk.max(mu) / 2 + Duration::from_millis(3);
        let diff = mk.abs_diff(mu);
        eprintln!("{what}: median known {mk:?}, unknown {mu:?}");
        assert!(
            diff <= bound,
            "{what}: known {mk:?} vs unknown {mu:?} (bound {bound:?})"
        );
    }
}

#[tokio::test]
async fn each_instance_enforces_its_share_of_the_clients_rate() {
    // A total of 1 request/s with a burst of 4, shared by two instances: 2 each.
    let a = spawn_app_with(Options {
        tweak: Some(Box::new(|s| {
            s.limits.client_requests_per_second = 1;
            s.limits.client_burst = 4;
            s.limits.instances = 2;
        })),
        ..Options::default()
    })
    .await;
    let b = a.second_instance(&a.api).await;
    for api in [&a.api, &b.api] {
        let mut statuses = Vec::new();
        for _ in 0..3 {
            let r = a
                .http
                .get(format!("{api}/v1/otp/{}", uuid::Uuid::new_v4()))
                .bearer_auth(&a.key)
                .send()
                .await
                .unwrap();
            statuses.push(r.status().as_u16());
        }
        assert_eq!(statuses, [404, 404, 429], "{api}");
    }
}

/// A resend is a send like a create's: the end-user address's window counts it and
/// refuses it, a locked account cannot get one, and the pumping guard applies.
#[tokio::test]
async fn a_resend_is_held_to_the_same_limits_and_guards_as_a_create() {
    let app = spawn_app_with(Options {
        resend_interval: Duration::from_millis(0),
        tweak: Some(Box::new(|s| {
            s.limits.ip = vec![gateway::config::WindowLimit {
                max: 3,
                window: Duration::from_secs(600),
            }];
            s.limits.account_failed_checks = 1;
            s.guards.sequential_enabled = true;
            s.guards.sequential_max_numbers = 2;
        })),
    })
    .await;
    let create = |n: &str, ip: &str, account: &str| {
        post_otp(
            &app,
            &app.api,
            json!({"msisdn": n, "purpose": "login", "client_ip": ip, "account_ref": account}),
        )
        .send()
    };
    let resend = |id: &str| {
        app.http
            .post(format!("{}/v1/otp/{id}/resend", app.api))
            .bearer_auth(&app.key)
            .send()
    };
    // The address: two creates and one resend use its three codes; the next resend is
    // refused as a fourth create would be.
    let first: Value = create("0971001101", "203.0.113.70", "acct-1")
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = first["id"].as_str().unwrap().to_owned();
    assert_eq!(
        create("0971009902", "203.0.113.70", "acct-2")
            .await
            .unwrap()
            .status(),
        201
    );
    assert_eq!(resend(&id).await.unwrap().status(), 200);
    let refused = resend(&id).await.unwrap();
    assert_eq!(refused.status(), 429);
    let body: Value = refused.json().await.unwrap();
    assert_eq!(body["type"], "/problems/rate-limited");
    assert!(
        body["detail"].as_str().unwrap().contains("address"),
        "{body}"
    );
    assert_eq!(
        create("0971008803", "203.0.113.70", "acct-3")
            .await
            .unwrap()
            .status(),
        429,
        "the resend counted as the address's third code"
    );

    // The account: one failed check locks it; its verification can then not resend.
    let locked: Value = create("0971002201", "198.51.100.71", "acct-locked")
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let locked_id = locked["id"].as_str().unwrap();
    let check = app
        .http
        .post(format!("{}/v1/otp/{locked_id}/check", app.api))
        .bearer_auth(&app.key)
        .json(&json!({"code": "000000"}))
        .send()
        .await
        .unwrap();
    assert_eq!(check.status(), 200);
    let refused = resend(locked_id).await.unwrap();
    assert_eq!(refused.status(), 429);
    let body: Value = refused.json().await.unwrap();
    assert_eq!(body["type"], "/problems/account-locked", "{body}");

    // The consecutive-numbers guard: a verification made while its block was quiet
    // cannot resend once two other numbers of the block had codes (as a create to it
    // would be refused). The two others are written as the guard would have let them in
    // under a looser setting: copies of the first with other numbers.
    let a: Value = create("0971003301", "192.0.2.1", "g-1")
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let a_id: uuid::Uuid = a["id"].as_str().unwrap().parse().unwrap();
    let db = app.pool.get().await.unwrap();
    for other in ["84971003302", "84971003303"] {
        db.execute(
            "INSERT INTO otp_challenges SELECT (jsonb_populate_record(c, jsonb_build_object(
                 'id', gen_random_uuid(), 'msisdn', $2::text, 'idempotency_key', null))).*
             FROM otp_challenges c WHERE c.id = $1",
            &[&a_id, &other],
        )
        .await
        .unwrap();
    }
    assert_eq!(
        create("0971003304", "192.0.2.4", "g-4")
            .await
            .unwrap()
            .status(),
        429,
        "a create to the block is refused"
    );
    let refused = resend(&a_id.to_string()).await.unwrap();
    assert_eq!(refused.status(), 429);
    let body: Value = refused.json().await.unwrap();
    assert!(
        body["detail"].as_str().unwrap().contains("pumping guard"),
        "{body}"
    );
    let audited: i64 = app
        .pool
        .get()
        .await
        .unwrap()
        .query_one(
            "SELECT count(*) FROM audit_events WHERE event = 'otp.rate_limited'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(audited >= 2, "refused resends are audited ({audited})");
}
