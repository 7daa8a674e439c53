//! Channel workflows against the simulated ZNS and SMSCs: Zalo first with SMS as the
//! fallback (on a refusal and on a timeout), a resend by a named channel, a ZNS message
//! whose code ended never sent, OTP events in order and signed, each attempt billed by
//! its own price, across two gateway instances.

use std::str::FromStr;
use std::time::{Duration, Instant};

use rust_decimal::Decimal;
use serde_json::{json, Value};

use crate::helpers::{
    spawn_app_with, wait_for, webhook_receiver, webhook_receiver_with, Options, SecondInstance,
    Seen, TestApp,
};

const NUMBER: &str = "0971234567";
const E164: &str = "84971234567";

/// Two gateway instances on one database, with a price for each channel; Zalo calls the
/// second back, so that every workflow runs across both (each has its own ZNS
/// dispatcher and workflow pass).
async fn app_with(
    tweak: impl FnOnce(&mut gateway::config::Settings) + Send + 'static,
) -> (TestApp, SecondInstance) {
    let app = spawn_app_with(Options {
        resend_interval: Duration::from_millis(500),
        tweak: Some(Box::new(move |s| {
            let price = |carrier: &str, item: &str, vnd: &str| gateway::config::PriceEntry {
                carrier: carrier.into(),
                item: item.into(),
                price_vnd: Decimal::from_str(vnd).unwrap(),
                effective_from: chrono::DateTime::UNIX_EPOCH,
            };
            s.billing.prices = vec![
                price("zalo", "otp_zns_message", "200.5"),
                price("*", "otp_sms_segment", "650.25"),
            ];
            s.otp.workflow_interval = Duration::from_millis(100);
            s.outbox.retry_base = Duration::from_millis(200);
            s.outbox.retry_max = Duration::from_millis(400);
            tweak(s)
        })),
    })
    .await;
    let other = app
        .second_instance(&app.settings.signatures.public_base_url)
        .await;
    app.put_sim(
        "/zns/webhook",
        &json!({ "url": format!("{}/carriers/zalo/events", other.api) }),
    )
    .await;
    (app, other)
}

async fn create(app: &TestApp, api: &str, body: Value) -> Value {
    let resp = app
        .http
        .post(format!("{api}/v1/otp"))
        .bearer_auth(&app.key)
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = resp.status();
    let body: Value = resp.json().await.unwrap();
    assert_eq!(status, 201, "{body}");
    body
}

async fn otp(app: &TestApp, id: &str) -> Value {
    app.api_json(&format!("/v1/otp/{id}")).await
}

/// The attempts of `id` as (channel, state, error).
async fn attempts(app: &TestApp, id: &str) -> Vec<(String, String, Option<String>)> {
    otp(app, id).await["attempts"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|a| {
            (
                a["channel"].as_str().unwrap().to_owned(),
                a["state"].as_str().unwrap().to_owned(),
                a["error"].as_str().map(str::to_owned),
            )
        })
        .collect()
}

async fn wait_attempts(
    app: &TestApp,
    id: &str,
    within: Duration,
    want: &[(&str, &str)],
) -> Vec<(String, String, Option<String>)> {
    wait_for(within, &format!("attempts {want:?}"), || async {
        let got = attempts(app, id).await;
        let states: Vec<(&str, &str)> = got
            .iter()
            .map(|(c, s, _)| (c.as_str(), s.as_str()))
            .collect();
        if states == want {
            Ok(got.clone())
        } else {
            Err(format!("{got:?}"))
        }
    })
    .await
}

/// The code in the latest message of the number's Zalo inbox.
async fn zalo_code(app: &TestApp, e164: &str, count: usize) -> String {
    wait_for(Duration::from_secs(10), "a ZNS message", || async {
        let inbox: Vec<Value> = app.sim_json(&format!("/handsets/{e164}/zalo")).await;
        match inbox.get(count - 1) {
            Some(m) => {
                let text = m["text"].as_str().unwrap_or_default();
                let code: String = text
                    .split(|c: char| !c.is_ascii_digit())
                    .find(|run| run.len() >= 4)
                    .unwrap_or_default()
                    .to_owned();
                if code.is_empty() {
                    Err(format!("no code in {text:?}"))
                } else {
                    Ok(code)
                }
            }
            None => Err(format!("{} messages", inbox.len())),
        }
    })
    .await
}

async fn check(app: &TestApp, api: &str, id: &str, code: &str) -> Value {
    app.http
        .post(format!("{api}/v1/otp/{id}/check"))
        .bearer_auth(&app.key)
        .json(&json!({ "code": code }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// The client's usage rows of one verification: (item, carrier, amount).
async fn billed(app: &TestApp, id: &str) -> Vec<(String, String, Decimal)> {
    let db = app.pool.get().await.unwrap();
    let id = uuid::Uuid::parse_str(id).unwrap();
    // SMS usage names no subject: it is found by its client and carrier.
    db.query(
        "SELECT item, carrier, amount FROM usage_events
         WHERE subject_id = $1 OR (subject_id IS NULL AND item = 'otp_sms_segment')
         ORDER BY id",
        &[&id],
    )
    .await
    .unwrap()
    .iter()
    .map(|r| (r.get(0), r.get(1), r.get(2)))
    .collect()
}

/// The events the receiver took, each checked against its signature, once each (a retry
/// repeats its `webhook-id`), in the order of their last attempt: (type, data).
fn events(app: &TestApp, seen: &Seen) -> Vec<(String, Value)> {
    let mut taken: Vec<(String, String, Value)> = Vec::new();
    for (headers, body, _) in seen.lock().unwrap().iter() {
        let header = |n: &str| headers.get(n).unwrap().to_str().unwrap().to_owned();
        let ts: i64 = header("webhook-timestamp").parse().unwrap();
        let id = header("webhook-id");
        assert_eq!(
            header("webhook-signature"),
            gateway::webhooks::sign(&app.webhook_secret, &id, ts, body).unwrap(),
            "a signed event"
        );
        let v: Value = serde_json::from_str(body).unwrap();
        taken.retain(|(seen_id, _, _)| *seen_id != id);
        taken.push((
            id,
            v["type"].as_str().unwrap().to_owned(),
            v["data"].clone(),
        ));
    }
    taken.into_iter().map(|(_, t, d)| (t, d)).collect()
}

async fn wait_events(
    app: &TestApp,
    seen: &Seen,
    want: &[(&str, Option<&str>)],
) -> Vec<(String, Value)> {
    wait_for(
        Duration::from_secs(10),
        &format!("events {want:?}"),
        || async {
            let got = events(app, seen);
            let shape: Vec<(String, Option<String>)> = got
                .iter()
                .map(|(t, d)| (t.clone(), d["channel"].as_str().map(str::to_owned)))
                .collect();
            let want: Vec<(String, Option<String>)> = want
                .iter()
                .map(|(t, c)| (t.to_string(), c.map(str::to_owned)))
                .collect();
            if shape == want {
                Ok(got)
            } else {
                Err(format!("{shape:?}"))
            }
        },
    )
    .await
}

fn set_policy(channels: Option<&[&str]>, url: Option<&str>) -> gateway::clients::PolicyChange {
    gateway::clients::PolicyChange {
        otp_channels: channels.map(|c| Some(c.iter().map(|s| s.to_string()).collect())),
        otp_callback_url: url.map(|u| Some(u.to_owned())),
        ..Default::default()
    }
}

#[tokio::test]
async fn zalo_first_delivers_and_the_sms_fallback_is_never_sent() {
    let (app, other) = app_with(|_| {}).await;
    // The receiver fails the first event: the ones after it wait for its retry, so the
    // portal still sees them in order.
    let (url, seen) = webhook_receiver_with(vec![(503, Some("2"))]).await;
    gateway::clients::set_policy(
        &app.pool,
        "test-portal",
        &set_policy(Some(&["zalo", "sms"]), Some(&url)),
    )
    .await
    .unwrap();
    let created = create(
        &app,
        &app.api,
        json!({"msisdn": NUMBER, "purpose": "login"}),
    )
    .await;
    let id = created["id"].as_str().unwrap().to_owned();
    assert_eq!(created["channels"], json!(["zalo", "sms"]));
    let code = zalo_code(&app, E164, 1).await;
    // The delivery event reached the gateway: the step is delivered, the SMS still held.
    wait_attempts(
        &app,
        &id,
        Duration::from_secs(10),
        &[("zalo", "delivered"), ("sms", "held")],
    )
    .await;
    // The person reads the message; the portal has been told it arrived.
    wait_events(
        &app,
        &seen,
        &[("otp.sent", Some("zalo")), ("otp.delivered", Some("zalo"))],
    )
    .await;
    assert_eq!(seen.lock().unwrap().len(), 3, "the first event was retried");
    let checked = check(&app, &other.api, &id, &code).await;
    assert_eq!(checked["status"], "approved", "{checked}");
    let got = attempts(&app, &id).await;
    assert_eq!(
        got[1],
        (
            "sms".into(),
            "canceled".into(),
            Some("challenge_approved".into())
        )
    );
    assert!(app.handset(E164).await.is_empty(), "no SMS was sent");
    let seen_events = wait_events(
        &app,
        &seen,
        &[
            ("otp.sent", Some("zalo")),
            ("otp.delivered", Some("zalo")),
            ("otp.approved", None),
        ],
    )
    .await;
    assert!(seen_events.iter().all(|(_, d)| d["id"] == id.as_str()));
    assert_eq!(seen_events[2].1["status"], "approved");
    // One ZNS message, billed at its own price; no SMS.
    assert_eq!(
        billed(&app, &id).await,
        [(
            "otp_zns_message".into(),
            "zalo".into(),
            Decimal::from_str("200.5").unwrap()
        )]
    );
}

#[tokio::test]
async fn no_zalo_account_falls_back_to_sms_across_two_instances() {
    // The portal creates on one instance and checks on the other.
    let (app, other) = app_with(|_| {}).await;
    let (url, seen) = webhook_receiver(vec![]).await;
    gateway::clients::set_policy(&app.pool, "test-portal", &set_policy(None, Some(&url)))
        .await
        .unwrap();
    app.put_sim(&format!("/zns/users/{E164}"), &json!({"zalo": false}))
        .await;
    let created = create(
        &app,
        &app.api,
        json!({"msisdn": NUMBER, "purpose": "login", "channels": ["zalo", "sms"]}),
    )
    .await;
    let id = created["id"].as_str().unwrap().to_owned();
    let code = app.wait_for_code(E164, 1).await;
    let got = wait_attempts(
        &app,
        &id,
        Duration::from_secs(10),
        &[("zalo", "failed"), ("sms", "submitted")],
    )
    .await;
    assert_eq!(got[0].2.as_deref(), Some("zns_-118"), "no Zalo account");
    wait_events(
        &app,
        &seen,
        &[
            ("otp.fallback", Some("zalo")),
            ("otp.sent", Some("sms")),
            ("otp.delivered", Some("sms")),
        ],
    )
    .await;
    assert_eq!(
        check(&app, &other.api, &id, &code).await["status"],
        "approved"
    );
    let got = wait_events(
        &app,
        &seen,
        &[
            ("otp.fallback", Some("zalo")),
            ("otp.sent", Some("sms")),
            ("otp.delivered", Some("sms")),
            ("otp.approved", None),
        ],
    )
    .await;
    assert_eq!(got[0].1["reason"], "zns_-118");
    assert_eq!(got[0].1["next_channel"], "sms");
    // Zalo refused it: nothing billed for it; the SMS by its price.
    let bill = billed(&app, &id).await;
    assert_eq!(bill.len(), 1, "{bill:?}");
    assert_eq!(bill[0].0, "otp_sms_segment");
    assert_eq!(
        app.sim_json::<Vec<Value>>(&format!("/handsets/{E164}/zalo"))
            .await
            .len(),
        0
    );
}

#[tokio::test]
async fn a_zns_message_not_received_in_time_gives_way_to_sms_and_both_are_billed() {
    let (app, other) = app_with(|_| {}).await;
    app.put_sim("/zns/faults", &json!({"no_delivery": true}))
        .await;
    let started = Instant::now();
    let created = create(
        &app,
        &app.api,
        json!({"msisdn": NUMBER, "purpose": "login", "channels": ["zalo", "sms"],
               "channel_timeout_seconds": 5}),
    )
    .await;
    let id = created["id"].as_str().unwrap().to_owned();
    wait_attempts(
        &app,
        &id,
        Duration::from_secs(4),
        &[("zalo", "sent"), ("sms", "held")],
    )
    .await;
    let code = app.wait_for_code(E164, 1).await;
    assert!(
        started.elapsed() >= Duration::from_secs(5),
        "the SMS went before the ZNS step's time was up"
    );
    let got = wait_attempts(
        &app,
        &id,
        Duration::from_secs(5),
        &[("zalo", "timed_out"), ("sms", "submitted")],
    )
    .await;
    assert_eq!(got[0].2.as_deref(), Some("timeout"));
    assert_eq!(
        check(&app, &other.api, &id, &code).await["status"],
        "approved"
    );
    let mut items: Vec<String> = billed(&app, &id).await.into_iter().map(|b| b.0).collect();
    items.sort();
    assert_eq!(items, ["otp_sms_segment", "otp_zns_message"]);
}

#[tokio::test]
async fn templates_zalo_will_not_take_fall_back_and_one_not_configured_is_refused() {
    let (app, other) = app_with(|s| {
        let zalo = s.zalo.as_mut().unwrap();
        zalo.templates = [("login".to_owned(), "230001".to_owned())].into();
    })
    .await;
    // The gateway has no ZNS template for registering: refused at once, nothing sent.
    let resp = app
        .post("/v1/otp")
        .json(&json!({"msisdn": NUMBER, "purpose": "register", "channels": ["zalo"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 422);
    let problem: Value = resp.json().await.unwrap();
    assert_eq!(problem["type"], "/problems/channel-unavailable");
    assert_eq!(problem["channel"], "zalo");
    // Zalo withdrew its approval of the template: the SMS carries the code.
    app.put_sim(
        "/zns/templates/230001",
        &json!({"name": "OTP", "text": "Mã OTP <otp>, hiệu lực <minutes> phút", "status": "PENDING_REVIEW"}),
    )
    .await;
    let created = create(
        &app,
        &app.api,
        json!({"msisdn": NUMBER, "purpose": "login", "channels": ["zalo", "sms"]}),
    )
    .await;
    let id = created["id"].as_str().unwrap().to_owned();
    let code = app.wait_for_code(E164, 1).await;
    let got = wait_attempts(
        &app,
        &id,
        Duration::from_secs(5),
        &[("zalo", "failed"), ("sms", "submitted")],
    )
    .await;
    assert_eq!(got[0].2.as_deref(), Some("zns_-109"));
    assert_eq!(
        check(&app, &other.api, &id, &code).await["status"],
        "approved"
    );
    // A client whose default names Zalo first: where Zalo cannot carry the code, the
    // default's SMS does (a request that names Zalo itself is told, as above).
    gateway::clients::set_policy(
        &app.pool,
        "test-portal",
        &set_policy(Some(&["zalo", "sms"]), None),
    )
    .await
    .unwrap();
    let by_default = create(
        &app,
        &app.api,
        json!({"msisdn": "0971234568", "purpose": "register"}),
    )
    .await;
    assert_eq!(by_default["channels"], json!(["sms"]), "{by_default}");
    // A step's time as long as the code's life would leave no time for the next one.
    let resp = app
        .post("/v1/otp")
        .json(
            &json!({"msisdn": "0971234569", "purpose": "login", "channels": ["zalo", "sms"],
                      "ttl_seconds": 60, "channel_timeout_seconds": 60}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 422);
    let problem: Value = resp.json().await.unwrap();
    assert_eq!(problem["field"], "channel_timeout_seconds", "{problem}");
    // A channel the API does not know is the request's fault.
    let resp = app
        .post("/v1/otp")
        .json(&json!({"msisdn": NUMBER, "purpose": "login", "channels": ["sms", "sms"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 422);
}

#[tokio::test]
async fn a_resend_names_its_channel_and_a_zns_code_that_ended_is_never_sent() {
    let (app, other) = app_with(|_| {}).await;
    // Zalo is down: the ZNS step waits, retried.
    app.put_sim("/zns/faults", &json!({"unavailable": true}))
        .await;
    let created = create(
        &app,
        &app.api,
        json!({"msisdn": NUMBER, "purpose": "login", "channels": ["zalo"]}),
    )
    .await;
    let id = created["id"].as_str().unwrap().to_owned();
    tokio::time::sleep(Duration::from_millis(700)).await;
    // "Gửi lại OTP" by SMS: the new code by SMS alone; the old ZNS code is withdrawn.
    let bad = app
        .post(&format!("/v1/otp/{id}/resend"))
        .json(&json!({"channel": "pigeon"}))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 422);
    let resent: Value = app
        .post(&format!("/v1/otp/{id}/resend"))
        .json(&json!({"channel": "sms"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(resent["channels"], json!(["sms"]), "{resent}");
    let code = app.wait_for_code(E164, 1).await;
    let got = attempts(&app, &id).await;
    assert_eq!(
        got,
        [
            (
                "zalo".into(),
                "canceled".into(),
                Some("superseded_by_resend".into())
            ),
            ("sms".into(), "submitted".into(), None),
        ]
    );
    // Another verification whose code runs out while Zalo is down.
    let expiring = create(
        &app,
        &app.api,
        json!({"msisdn": "0971234568", "purpose": "login", "channels": ["zalo"]}),
    )
    .await;
    let other_id = expiring["id"].as_str().unwrap().to_owned();
    app.pool
        .get()
        .await
        .unwrap()
        .execute(
            "UPDATE otp_challenges SET expires_at = now() WHERE id = $1",
            &[&uuid::Uuid::parse_str(&other_id).unwrap()],
        )
        .await
        .unwrap();
    // Any send claimed before the code ran out has failed against the outage by now.
    tokio::time::sleep(Duration::from_millis(800)).await;
    // Zalo back: neither old code goes out.
    app.put_sim("/zns/faults", &json!({})).await;
    let got = wait_attempts(
        &app,
        &other_id,
        Duration::from_secs(10),
        &[("zalo", "expired")],
    )
    .await;
    assert_eq!(got[0].2.as_deref(), Some("challenge_expired"));
    tokio::time::sleep(Duration::from_millis(500)).await;
    for e164 in [E164, "84971234568"] {
        let inbox: Vec<Value> = app.sim_json(&format!("/handsets/{e164}/zalo")).await;
        assert!(inbox.is_empty(), "{e164}: {inbox:?}");
    }
    // A resend with no body, whatever its declared type, goes by the channels again.
    tokio::time::sleep(Duration::from_millis(600)).await;
    let again = app
        .post(&format!("/v1/otp/{id}/resend"))
        .header("Content-Type", "text/plain")
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 200);
    let again: Value = again.json().await.unwrap();
    assert_eq!(again["channels"], json!(["sms"]), "{again}");
    let new_code = app.wait_for_code(E164, 2).await;
    if new_code != code {
        assert_eq!(
            check(&app, &other.api, &id, &code).await["valid"],
            false,
            "the superseded code no longer works"
        );
    }
    assert_eq!(
        check(&app, &other.api, &id, &new_code).await["status"],
        "approved"
    );
    // Nothing billed for the ZNS steps that never went.
    let db = app.pool.get().await.unwrap();
    let zns_billed: i64 = db
        .query_one(
            "SELECT count(*) FROM usage_events WHERE item = 'otp_zns_message'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(zns_billed, 0);
}

#[tokio::test]
async fn an_sms_the_carrier_blocks_falls_back_to_zalo_and_a_last_failure_is_reported() {
    let (app, other) = app_with(|_| {}).await;
    let (url, seen) = webhook_receiver(vec![]).await;
    gateway::clients::set_policy(&app.pool, "test-portal", &set_policy(None, Some(&url)))
        .await
        .unwrap();
    // Viettel's SMSC takes only a brandname the gateway does not send from: it refuses
    // the SMS for good (ESME_RINVSRCADR).
    app.put_sim(
        "/smsc/viettel/brandnames",
        &json!({"enforce": true, "brandnames": {"UBND-HN": ["Ma OTP {code}"]}}),
    )
    .await;
    let created = create(
        &app,
        &app.api,
        json!({"msisdn": NUMBER, "purpose": "login", "channels": ["sms", "zalo"]}),
    )
    .await;
    let id = created["id"].as_str().unwrap().to_owned();
    let code = zalo_code(&app, E164, 1).await;
    let got = wait_attempts(
        &app,
        &id,
        Duration::from_secs(10),
        &[("sms", "failed"), ("zalo", "delivered")],
    )
    .await;
    assert!(
        got[0]
            .2
            .as_deref()
            .unwrap_or_default()
            .contains("0x0000000a"),
        "{got:?}"
    );
    wait_events(
        &app,
        &seen,
        &[
            ("otp.fallback", Some("sms")),
            ("otp.sent", Some("zalo")),
            ("otp.delivered", Some("zalo")),
        ],
    )
    .await;
    assert_eq!(
        check(&app, &other.api, &id, &code).await["status"],
        "approved"
    );
    let events_seen = wait_events(
        &app,
        &seen,
        &[
            ("otp.fallback", Some("sms")),
            ("otp.sent", Some("zalo")),
            ("otp.delivered", Some("zalo")),
            ("otp.approved", None),
        ],
    )
    .await;
    assert_eq!(events_seen[0].1["next_channel"], "zalo");

    // SMS alone, refused the same way: nothing is left to try, and the portal is told.
    let created = create(
        &app,
        &app.api,
        json!({"msisdn": "0971234568", "purpose": "login", "channels": ["sms"]}),
    )
    .await;
    let id = created["id"].as_str().unwrap().to_owned();
    let failed = wait_for(Duration::from_secs(10), "otp.failed", || async {
        events(&app, &seen)
            .into_iter()
            .find(|(t, d)| t == "otp.failed" && d["id"] == id.as_str())
            .ok_or_else(|| format!("{:?}", events(&app, &seen)))
    })
    .await;
    assert_eq!(failed.1["channel"], "sms");
    assert!(
        failed.1["reason"]
            .as_str()
            .unwrap_or_default()
            .contains("0x0000000a"),
        "{failed:?}"
    );
}
