use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::helpers::{spawn_app, spawn_app_with, Options, TestApp};

async fn wait_delivery(app: &TestApp, id: &str, want: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let body: Value = app
            .get(&format!("/v1/otp/{id}"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if body["delivery"]["status"] == want {
            return body;
        }
        assert!(
            Instant::now() < deadline,
            "delivery never became {want}: {body}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn full_flow_sms_reaches_handset_code_approves_and_receipt_is_shown() {
    let app = spawn_app().await;
    let created = app.create_otp("+84 828 123 088", "register").await;
    assert_eq!(created["status"], "pending");
    assert_eq!(created["msisdn_masked"], "082****088");
    assert_eq!(created["carrier"], "vinaphone");
    assert_eq!(created["sends"], 1);
    assert_eq!(created["max_sends"], 5);
    assert_eq!(created["attempts_left"], 5);
    for field in ["id", "expires_at", "resend_available_at"] {
        assert!(created[field].is_string(), "{field} missing: {created}");
    }
    let id = created["id"].as_str().unwrap();

    let code = app.wait_for_code("84828123088", 1).await;
    assert_eq!(code.len(), 6);
    let messages = app.handset("84828123088").await;
    assert_eq!(messages[0]["from"], "DVCQG");
    assert_eq!(messages[0]["carrier"], "vinaphone");
    assert_eq!(
        messages[0]["text"],
        format!("Mã OTP đăng ký Cổng DVC: {code}. Hiệu lực 5 phút. Không chia sẻ.")
    );

    let checked = app.check(id, &code).await;
    assert_eq!(
        checked,
        json!({"id": id, "valid": true, "status": "approved", "attempts_left": 4})
    );

    // Used once: the same code again is not valid.
    let again = app.check(id, &code).await;
    assert_eq!(again["valid"], false);
    assert_eq!(again["status"], "approved");

    let shown = wait_delivery(&app, id, "delivered").await;
    assert_eq!(shown["status"], "approved");
    assert_eq!(shown["delivery"]["route"], "vinaphone");
    assert_eq!(
        shown["delivery"]["message_id"],
        messages[0]["smsc_message_id"]
    );
    assert!(shown["delivery"]["receipt_at"].is_string());
}

#[tokio::test]
async fn every_carrier_is_routed_to_its_smsc() {
    let app = spawn_app().await;
    for (number, e164, smsc) in [
        ("0971234567", "84971234567", "viettel"),
        ("0901234567", "84901234567", "mobifone"),
        ("0921234567", "84921234567", "aggregator"),
    ] {
        app.create_otp(number, "login").await;
        app.wait_for_code(e164, 1).await;
        assert_eq!(app.handset(e164).await[0]["carrier"], smsc);
    }
}

#[tokio::test]
async fn five_wrong_codes_lock_the_verification() {
    let app = spawn_app().await;
    let id = app.create_otp("0971234567", "login").await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let code = app.wait_for_code("84971234567", 1).await;
    let wrong = if code == "000000" { "111111" } else { "000000" };
    for left in (0..5).rev() {
        let r = app.check(&id, wrong).await;
        assert_eq!(r["valid"], false);
        assert_eq!(r["attempts_left"], left);
        let want = if left == 0 {
            "max_attempts_reached"
        } else {
            "pending"
        };
        assert_eq!(r["status"], want);
    }
    let r = app.check(&id, &code).await;
    assert_eq!(r["valid"], false);
    assert_eq!(r["status"], "max_attempts_reached");
}

#[tokio::test]
async fn expired_code_fails() {
    let app = spawn_app().await;
    let id = app.create_otp("0901234567", "login").await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let code = app.wait_for_code("84901234567", 1).await;
    // Let the lifetime pass without waiting: move expiry into the past.
    let db = app.pool.get().await.unwrap();
    db.execute(
        "UPDATE otp_challenges SET expires_at = now() - interval '1 second' WHERE id = $1::text::uuid",
        &[&id],
    )
    .await
    .unwrap();
    let shown: Value = app
        .get(&format!("/v1/otp/{id}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(shown["status"], "expired");
    let r = app.check(&id, &code).await;
    assert_eq!(r["valid"], false);
    assert_eq!(r["status"], "expired");
}

#[tokio::test]
async fn resend_replaces_the_code_and_the_old_one_stops_working() {
    let app = spawn_app_with(Options {
        resend_interval: Duration::ZERO,
        ..Options::default()
    })
    .await;
    let id = app.create_otp("0881234567", "change_phone").await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let old = app.wait_for_code("84881234567", 1).await;
    let resp = app
        .post(&format!("/v1/otp/{id}/resend"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["sends"], 2);
    let new = app.wait_for_code("84881234567", 2).await;
    if new != old {
        let r = app.check(&id, &old).await;
        assert_eq!(r["valid"], false);
        assert_eq!(r["status"], "pending");
    }
    let r = app.check(&id, &new).await;
    assert_eq!(r["valid"], true);
    assert_eq!(r["status"], "approved");
}

#[tokio::test]
async fn resend_too_early_is_429_with_retry_after() {
    let app = spawn_app().await;
    let id = app.create_otp("0881234567", "login").await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let resp = app
        .post(&format!("/v1/otp/{id}/resend"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 429);
    let retry: u64 = resp.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=30).contains(&retry), "{retry}");
    assert_eq!(resp.headers()["content-type"], "application/problem+json");
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["type"], "/problems/resend-too-early");
}

#[tokio::test]
async fn resend_stops_at_max_sends() {
    let app = spawn_app_with(Options {
        resend_interval: Duration::ZERO,
        // Per-number limits off here: this test is about the verification's own cap.
        tweak: Some(Box::new(|s| s.limits.phone_purpose.clear())),
    })
    .await;
    let id = app.create_otp("0881234567", "login").await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    for sends in 2..=5 {
        let resp = app
            .post(&format!("/v1/otp/{id}/resend"))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.json::<Value>().await.unwrap()["sends"], sends);
    }
    let resp = app
        .post(&format!("/v1/otp/{id}/resend"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 429);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["type"], "/problems/max-sends-reached");
    assert_eq!(app.count("sms_outbox").await, 5);
}

#[tokio::test]
async fn cancel_ends_the_verification() {
    let app = spawn_app().await;
    let id = app.create_otp("0551234567", "add_method").await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let code = app.wait_for_code("84551234567", 1).await;
    let resp = app
        .post(&format!("/v1/otp/{id}/cancel"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.json::<Value>().await.unwrap()["status"], "canceled");
    let r = app.check(&id, &code).await;
    assert_eq!(r["valid"], false);
    assert_eq!(r["status"], "canceled");
    // Canceling twice is a conflict, not a success; DELETE is not how to cancel.
    let resp = app.delete(&format!("/v1/otp/{id}")).send().await.unwrap();
    assert_eq!(resp.status(), 405);
    assert_eq!(resp.headers()["allow"], "GET");
    let resp = app
        .post(&format!("/v1/otp/{id}/cancel"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 409);
}

#[tokio::test]
async fn another_client_cannot_see_or_touch_the_otp() {
    let app = spawn_app().await;
    let id = app.create_otp("0971234567", "login").await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let other_key = gateway::clients::add(&app.pool, "other-portal")
        .await
        .unwrap()
        .key;
    let other = |req: reqwest::RequestBuilder| req.bearer_auth(&other_key);
    let get = other(app.http.get(format!("{}/v1/otp/{id}", app.api)))
        .send()
        .await
        .unwrap();
    assert_eq!(get.status(), 404);
    let check = other(app.http.post(format!("{}/v1/otp/{id}/check", app.api)))
        .json(&json!({"code": "123456"}))
        .send()
        .await
        .unwrap();
    assert_eq!(check.status(), 404);
    let del = other(app.http.post(format!("{}/v1/otp/{id}/cancel", app.api)))
        .send()
        .await
        .unwrap();
    assert_eq!(del.status(), 404);
    let resend = other(app.http.post(format!("{}/v1/otp/{id}/resend", app.api)))
        .send()
        .await
        .unwrap();
    assert_eq!(resend.status(), 404);
    // The owner still sees it untouched.
    let mine: Value = app
        .get(&format!("/v1/otp/{id}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(mine["status"], "pending");
    assert_eq!(mine["attempts_left"], 5);
}

#[tokio::test]
async fn idempotency_key_replays_and_refuses_a_different_request() {
    let app = spawn_app().await;
    let send = |body: Value| {
        app.post("/v1/otp")
            .header("Idempotency-Key", "req-42")
            .json(&body)
            .send()
    };
    let body = json!({"msisdn": "0828123088", "purpose": "login"});
    let first = send(body.clone()).await.unwrap();
    assert_eq!(first.status(), 201);
    let first: Value = first.json().await.unwrap();
    let second = send(body).await.unwrap();
    assert_eq!(second.status(), 201);
    assert_eq!(second.headers()["idempotent-replayed"], "true");
    let second: Value = second.json().await.unwrap();
    assert_eq!(first["id"], second["id"]);
    let different = send(json!({"msisdn": "0828123088", "purpose": "register"}))
        .await
        .unwrap();
    assert_eq!(different.status(), 422);
    assert_eq!(app.count("otp_challenges").await, 1);
    assert_eq!(app.count("sms_outbox").await, 1);
}

#[tokio::test]
async fn no_code_is_stored_in_clear() {
    let app = spawn_app().await;
    let id = app.create_otp("0828123088", "login").await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let code = app.wait_for_code("84828123088", 1).await;
    wait_delivery(&app, &id, "delivered").await;
    let db = app.pool.get().await.unwrap();
    let rows = db
        .query(
            "SELECT row_to_json(c)::text FROM otp_challenges c
             UNION ALL SELECT row_to_json(o)::text FROM sms_outbox o",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(rows.len(), 2);
    for row in rows {
        let text: String = row.get(0);
        assert!(!text.contains(&code), "code in clear: {text}");
    }
    let sealed: Option<Vec<u8>> = db
        .query_one("SELECT body_sealed FROM sms_outbox", &[])
        .await
        .unwrap()
        .get(0);
    assert!(sealed.is_none(), "text kept after submit");
}

#[tokio::test]
async fn bad_requests_get_problem_json_and_write_nothing() {
    let app = spawn_app().await;
    let url = format!("{}/v1/otp", app.api);
    let valid = r#"{"msisdn":"0828123088","purpose":"login"}"#;
    let big = format!(
        r#"{{"msisdn":"0828123088","purpose":"login","pad":"{}"}}"#,
        "x".repeat(20_000)
    );
    let cases: Vec<(&str, String, Option<&str>, u16, &str)> = vec![
        (
            "malformed JSON",
            "{\"msisdn\":".into(),
            Some(&app.key),
            400,
            "malformed-json",
        ),
        (
            "not an object",
            "[1,2]".into(),
            Some(&app.key),
            400,
            "malformed-json",
        ),
        (
            "empty body",
            "".into(),
            Some(&app.key),
            400,
            "malformed-json",
        ),
        (
            "missing purpose",
            r#"{"msisdn":"0828123088"}"#.into(),
            Some(&app.key),
            400,
            "malformed-json",
        ),
        (
            "unknown field",
            r#"{"msisdn":"0828123088","purpose":"login","x":1}"#.into(),
            Some(&app.key),
            400,
            "malformed-json",
        ),
        (
            "unknown purpose",
            r#"{"msisdn":"0828123088","purpose":"logout"}"#.into(),
            Some(&app.key),
            422,
            "invalid-field",
        ),
        (
            "foreign number",
            r#"{"msisdn":"+14155552671","purpose":"login"}"#.into(),
            Some(&app.key),
            422,
            "invalid-msisdn",
        ),
        (
            "landline",
            r#"{"msisdn":"024 3825 1234","purpose":"login"}"#.into(),
            Some(&app.key),
            422,
            "invalid-msisdn",
        ),
        (
            "14-digit number",
            r#"{"msisdn":"84971234567890","purpose":"login"}"#.into(),
            Some(&app.key),
            422,
            "invalid-msisdn",
        ),
        (
            "unallocated prefix",
            r#"{"msisdn":"0801234567","purpose":"login"}"#.into(),
            Some(&app.key),
            422,
            "invalid-msisdn",
        ),
        (
            "code_length 11",
            r#"{"msisdn":"0828123088","purpose":"login","code_length":11}"#.into(),
            Some(&app.key),
            422,
            "invalid-field",
        ),
        (
            "code_length 3",
            r#"{"msisdn":"0828123088","purpose":"login","code_length":3}"#.into(),
            Some(&app.key),
            422,
            "invalid-field",
        ),
        (
            "ttl too long",
            r#"{"msisdn":"0828123088","purpose":"login","ttl_seconds":901}"#.into(),
            Some(&app.key),
            422,
            "invalid-field",
        ),
        (
            "bad locale",
            r#"{"msisdn":"0828123088","purpose":"login","locale":"fr"}"#.into(),
            Some(&app.key),
            422,
            "invalid-field",
        ),
        (
            "oversized body",
            big,
            Some(&app.key),
            413,
            "payload-too-large",
        ),
        ("missing key", valid.into(), None, 401, "unauthorized"),
        (
            "invalid key",
            valid.into(),
            Some("gk_not-a-real-key-at-all-000000"),
            401,
            "unauthorized",
        ),
    ];
    for (name, body, key, status, kind) in cases {
        let mut req = app
            .http
            .post(&url)
            .header("content-type", "application/json")
            .body(body);
        if let Some(key) = key {
            req = req.bearer_auth(key);
        }
        let resp = req.send().await.unwrap();
        assert_eq!(resp.status().as_u16(), status, "{name}");
        assert_eq!(
            resp.headers()["content-type"],
            "application/problem+json",
            "{name}"
        );
        let problem: Value = resp.json().await.unwrap();
        assert_eq!(
            problem["type"],
            format!("/problems/{kind}"),
            "{name}: {problem}"
        );
        assert_eq!(problem["status"], status, "{name}");
        assert!(
            problem["title"].is_string() && problem["detail"].is_string(),
            "{name}"
        );
    }
    // Wrong media type.
    let resp = app
        .post("/v1/otp")
        .header("content-type", "text/plain")
        .body(valid)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 415);
    assert_eq!(app.count("otp_challenges").await, 0);
    assert_eq!(app.count("sms_outbox").await, 0);

    // Unknown ids and routes, wrong methods and bad check bodies are typed too.
    let resp = app.get("/v1/otp/not-a-uuid").send().await.unwrap();
    assert_eq!(resp.status(), 404);
    let resp = app
        .get(&format!("/v1/otp/{}", uuid::Uuid::new_v4()))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
    assert_eq!(resp.headers()["content-type"], "application/problem+json");
    let resp = app.get("/v2/nothing").send().await.unwrap();
    assert_eq!(resp.status(), 404);
    assert_eq!(resp.headers()["content-type"], "application/problem+json");
    let resp = app
        .http
        .put(&url)
        .bearer_auth(&app.key)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 405);
    let id = app.create_otp("0828123088", "login").await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    for bad in [
        json!({"code": "12ab56"}),
        json!({"code": ""}),
        json!({"pin": "1"}),
    ] {
        let resp = app
            .post(&format!("/v1/otp/{id}/check"))
            .json(&bad)
            .send()
            .await
            .unwrap();
        assert!(resp.status().is_client_error(), "{bad}");
        assert_eq!(resp.headers()["content-type"], "application/problem+json");
    }
    // Refused checks did not count as attempts.
    let shown: Value = app
        .get(&format!("/v1/otp/{id}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(shown["attempts_left"], 5);
}

#[tokio::test]
async fn english_locale_and_code_length_are_honoured() {
    let app = spawn_app().await;
    let resp = app
        .post("/v1/otp")
        .json(&json!({"msisdn": "0971234567", "purpose": "reset_password", "locale": "en", "code_length": 8, "ttl_seconds": 600}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    let code = app.wait_for_code("84971234567", 1).await;
    assert_eq!(code.len(), 8);
    let text = app.handset("84971234567").await[0]["text"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        text,
        format!(
            "Public Service Portal password reset code: {code}. Valid for 10 min. Do not share it."
        )
    );
}

#[tokio::test]
async fn sends_to_one_number_are_limited_across_instances() {
    let a = spawn_app_with(Options {
        resend_interval: Duration::ZERO,
        ..Options::default()
    })
    .await;
    let b = a.second_instance(&a.api).await;
    let create = |api: String, msisdn: &'static str, purpose: &'static str| {
        a.http
            .post(format!("{api}/v1/otp"))
            .bearer_auth(&a.key)
            .json(&json!({"msisdn": msisdn, "purpose": purpose}))
            .send()
    };
    // 3 per 10 minutes per number and purpose, counted in Postgres: A, B, A, then B is refused.
    assert_eq!(
        create(a.api.clone(), "0971112222", "login")
            .await
            .unwrap()
            .status(),
        201
    );
    let second = create(b.api.clone(), "0971112222", "login").await.unwrap();
    assert_eq!(second.status(), 201);
    let id = second.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        create(a.api.clone(), "0971112222", "login")
            .await
            .unwrap()
            .status(),
        201
    );
    let refused = create(b.api.clone(), "0971112222", "login").await.unwrap();
    assert_eq!(refused.status(), 429);
    let retry: u64 = refused.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((590..=600).contains(&retry), "{retry}");
    let problem: Value = refused.json().await.unwrap();
    assert_eq!(problem["type"], "/problems/rate-limited");
    // A resend is a send too.
    let resend = a
        .post(&format!("/v1/otp/{id}/resend"))
        .send()
        .await
        .unwrap();
    assert_eq!(resend.status(), 429);
    // Another purpose, or another number, is not affected.
    assert_eq!(
        create(a.api.clone(), "0971112222", "register")
            .await
            .unwrap()
            .status(),
        201
    );
    assert_eq!(
        create(b.api.clone(), "0971112223", "login")
            .await
            .unwrap()
            .status(),
        201
    );
    // Concurrent creates cannot squeeze past the limit together.
    let burst: Vec<_> = (0..6)
        .map(|i| {
            let api = if i % 2 == 0 {
                a.api.clone()
            } else {
                b.api.clone()
            };
            create(api, "0971113333", "login")
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
    assert_eq!(
        statuses.iter().filter(|s| **s == 429).count(),
        3,
        "{statuses:?}"
    );
}

#[tokio::test]
async fn a_client_is_held_to_its_request_rate() {
    let app = spawn_app_with(Options {
        tweak: Some(Box::new(|s| {
            s.limits.client_requests_per_second = 1;
            s.limits.client_burst = 2;
        })),
        ..Options::default()
    })
    .await;
    // A burst of 2 passes; at one request a second, six quick ones cannot all pass.
    let mut statuses = Vec::new();
    for _ in 0..6 {
        let r = app
            .get(&format!("/v1/otp/{}", uuid::Uuid::new_v4()))
            .send()
            .await
            .unwrap();
        let retry = r.headers().get("retry-after").is_some();
        statuses.push((r.status().as_u16(), retry));
    }
    assert_eq!(statuses[0].0, 404);
    assert_eq!(statuses[1].0, 404);
    assert!(statuses.iter().any(|s| s.0 == 429), "{statuses:?}");
    assert!(
        statuses.iter().filter(|s| s.0 == 429).all(|s| s.1),
        "Retry-After on every 429"
    );
}

#[tokio::test]
async fn a_client_is_held_to_its_daily_quota() {
    let app = spawn_app_with(Options {
        tweak: Some(Box::new(|s| s.limits.client_daily_sms = Some(2))),
        ..Options::default()
    })
    .await;
    for n in ["0971000001", "0971000002"] {
        let r = app
            .post("/v1/otp")
            .json(&json!({"msisdn": n, "purpose": "login"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
    }
    let refused = app
        .post("/v1/otp")
        .json(&json!({"msisdn": "0971000003", "purpose": "login"}))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 429);
    let retry: u64 = refused.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=86_400).contains(&retry), "{retry}");
    let problem: Value = refused.json().await.unwrap();
    assert!(
        problem["detail"].as_str().unwrap().contains("daily"),
        "{problem}"
    );
}

#[tokio::test]
async fn an_account_locks_after_its_failed_checks_and_an_operator_unlocks_it() {
    let app = spawn_app_with(Options {
        resend_interval: Duration::ZERO,
        tweak: Some(Box::new(|s| {
            s.limits.account_failed_checks = 7;
            s.limits.phone_purpose.clear();
            s.admin.api_key = Some(secrecy::SecretString::from(
                "admin-key-for-tests-0123456789",
            ));
        })),
    })
    .await;
    let create = |n: &str| {
        app.post("/v1/otp")
            .json(&json!({"msisdn": n, "purpose": "login", "account_ref": "acct-42"}))
            .send()
    };
    // 5 wrong checks on one challenge, 2 on another: 7 in total locks the account.
    let first = create("0971230001")
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap();
    assert!(first["id"].is_string(), "{first}");
    for _ in 0..5 {
        app.check(first["id"].as_str().unwrap(), "000000").await;
    }
    let second = create("0971230002")
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap();
    let id2 = second["id"].as_str().unwrap().to_owned();
    app.check(&id2, "000000").await;
    app.check(&id2, "000000").await;
    // Locked: no more checks, no new codes — for this account only.
    let refused = app
        .post(&format!("/v1/otp/{id2}/check"))
        .json(&json!({"code": "123456"}))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 429);
    assert!(refused.headers().contains_key("retry-after"));
    let problem: Value = refused.json().await.unwrap();
    assert_eq!(problem["type"], "/problems/account-locked");
    assert_eq!(create("0971230003").await.unwrap().status(), 429);
    let other = app
        .post("/v1/otp")
        .json(&json!({"msisdn": "0971230004", "purpose": "login", "account_ref": "acct-43"}))
        .send()
        .await
        .unwrap();
    assert_eq!(other.status(), 201);
    // The operator's unlock: wrong key refused, right key unlocks.
    let db = app.pool.get().await.unwrap();
    let client: uuid::Uuid = db
        .query_one("SELECT id FROM api_clients WHERE name = 'test-portal'", &[])
        .await
        .unwrap()
        .get(0);
    let url = format!(
        "{}/v1/admin/clients/{client}/accounts/acct-42/unlock",
        app.api
    );
    let wrong = app
        .http
        .post(&url)
        .bearer_auth(&app.key)
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
    let ok: Value = app
        .http
        .post(&url)
        .bearer_auth("admin-key-for-tests-0123456789")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(ok, json!({"unlocked": true}));
    assert_eq!(create("0971230005").await.unwrap().status(), 201);
    let events = app.audit_event_names().await;
    assert!(
        events.iter().any(|e| e == "account.locked")
            && events.iter().any(|e| e == "account.unlocked"),
        "{events:?}"
    );
}

#[tokio::test]
async fn a_disabled_client_is_refused_at_once_on_every_instance_and_keys_rotate() {
    let a = spawn_app().await;
    let b = a.second_instance(&a.api).await;
    let get = |api: &str, key: &str| {
        a.http
            .get(format!("{api}/v1/otp/{}", uuid::Uuid::new_v4()))
            .bearer_auth(key.to_owned())
            .send()
    };
    assert_eq!(get(&a.api, &a.key).await.unwrap().status(), 404);
    assert_eq!(get(&b.api, &a.key).await.unwrap().status(), 404);
    gateway::clients::set_disabled(&a.pool, "test-portal", true)
        .await
        .unwrap();
    assert_eq!(get(&a.api, &a.key).await.unwrap().status(), 401);
    assert_eq!(get(&b.api, &a.key).await.unwrap().status(), 401);
    gateway::clients::set_disabled(&a.pool, "test-portal", false)
        .await
        .unwrap();
    assert_eq!(get(&b.api, &a.key).await.unwrap().status(), 404);

    // Rotation with a grace period: both keys work, then only the new one.
    let new = gateway::clients::rotate_key(&a.pool, "test-portal", Duration::from_secs(3600))
        .await
        .unwrap();
    assert_eq!(get(&a.api, &a.key).await.unwrap().status(), 404);
    assert_eq!(get(&a.api, &new).await.unwrap().status(), 404);
    let newest = gateway::clients::rotate_key(&a.pool, "test-portal", Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(get(&a.api, &a.key).await.unwrap().status(), 401);
    assert_eq!(get(&b.api, &new).await.unwrap().status(), 401);
    assert_eq!(get(&b.api, &newest).await.unwrap().status(), 404);
    let listed = gateway::clients::list(&a.pool).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].active_keys, vec![newest[..10].to_owned()]);
}

#[tokio::test]
async fn codes_per_end_user_address_are_limited_and_forwarded_for_is_trusted_only_from_proxies() {
    let ip_limited = |trusted: bool| Options {
        tweak: Some(Box::new(move |s: &mut gateway::config::Settings| {
            s.limits.ip = vec![gateway::config::WindowLimit {
                max: 2,
                window: Duration::from_secs(600),
            }];
            if trusted {
                s.limits.trusted_proxies = vec!["127.0.0.1".parse().unwrap()];
            }
        })),
        ..Options::default()
    };
    let app = spawn_app_with(ip_limited(false)).await;
    let create = |n: &'static str, ip: Option<&'static str>, xff: Option<&'static str>| {
        let mut body = json!({"msisdn": n, "purpose": "login"});
        if let Some(ip) = ip {
            body["client_ip"] = json!(ip);
        }
        let mut req = app.post("/v1/otp").json(&body);
        if let Some(xff) = xff {
            req = req.header("X-Forwarded-For", xff);
        }
        req.send()
    };
    assert_eq!(
        create("0971000101", Some("203.0.113.7"), None)
            .await
            .unwrap()
            .status(),
        201
    );
    assert_eq!(
        create("0971000102", Some("203.0.113.7"), None)
            .await
            .unwrap()
            .status(),
        201
    );
    let refused = create("0971000103", Some("203.0.113.7"), None)
        .await
        .unwrap();
    assert_eq!(refused.status(), 429);
    assert!(refused.headers().contains_key("retry-after"));
    assert_eq!(
        create("0971000104", Some("2001:db8::1"), None)
            .await
            .unwrap()
            .status(),
        201
    );
    assert_eq!(
        create("0971000105", Some("not-an-ip"), None)
            .await
            .unwrap()
            .status(),
        422
    );
    // X-Forwarded-For from an untrusted peer is ignored: no per-IP limit applies.
    for n in ["0971000106", "0971000107", "0971000108"] {
        assert_eq!(
            create(n, None, Some("198.51.100.9"))
                .await
                .unwrap()
                .status(),
            201
        );
    }
    drop(app);

    // From a trusted proxy it names the end user.
    let app2 = spawn_app_with(ip_limited(true)).await;
    let create2 = |n: &'static str| {
        app2.post("/v1/otp")
            .json(&json!({"msisdn": n, "purpose": "login"}))
            .header("X-Forwarded-For", "198.51.100.9, 10.0.0.1")
            .send()
    };
    assert_eq!(create2("0971000201").await.unwrap().status(), 201);
    assert_eq!(create2("0971000202").await.unwrap().status(), 201);
    assert_eq!(create2("0971000203").await.unwrap().status(), 429);
}

#[tokio::test]
async fn an_idempotency_key_is_visible_ascii_as_documented() {
    let app = spawn_app().await;
    for (key, status) in [
        ("req 42", 422),
        ("req\t42", 422),
        ("ключ", 422),
        ("req-42", 201),
    ] {
        let resp = app
            .post("/v1/otp")
            .header("Idempotency-Key", key)
            .json(&json!({"msisdn": "0971234567", "purpose": "login"}))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), status, "{key:?}: {:?}", resp.text().await);
    }
}
