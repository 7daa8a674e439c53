//! Brandnames and registered SMS templates: the gateway sends a code in the template the
//! client registered with the serving network, refuses at once a send the network
//! would block, and the simulated SMSCs block what is not registered with them.

use std::time::Duration;

use gateway::clients::{self, PolicyChange};
use serde_json::{json, Value};

use crate::helpers::{spawn_app, spawn_app_with, wait_for, Options, TestApp};

const LOGIN_VI: &str =
    "Ma OTP dang nhap Cong DVC cua UBND Ha Noi: {code}. Hieu luc {minutes} phut.";
const REGISTER_VI: &str = "Ma dang ky DVC: {code} (hieu luc {seconds} giay). Khong chia se.";

fn template(carrier: &str, key: &str, text: &str) -> (String, String, String, String) {
    let mut k = key.split(':');
    (
        carrier.into(),
        k.next().unwrap().into(),
        k.next().unwrap().into(),
        text.into(),
    )
}

async fn register(app: &TestApp, senders: &[(&str, &str)], templates: &[(&str, &str, &str)]) {
    clients::set_policy(
        &app.pool,
        "test-portal",
        &PolicyChange {
            senders: senders
                .iter()
                .map(|(c, b)| (c.to_string(), b.to_string()))
                .collect(),
            templates: templates
                .iter()
                .map(|(c, k, t)| template(c, k, t))
                .collect(),
            ..PolicyChange::default()
        },
    )
    .await
    .unwrap();
}

/// The brandname UBND-HN and its login and register templates (Vietnamese) on Viettel.
async fn register_with_viettel(app: &TestApp) {
    register(
        app,
        &[("viettel", "UBND-HN")],
        &[
            ("viettel", "login:vi", LOGIN_VI),
            ("viettel", "register:vi", REGISTER_VI),
        ],
    )
    .await;
}

async fn create(app: &TestApp, body: Value) -> (u16, Value) {
    let resp = app.post("/v1/otp").json(&body).send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap())
}

/// The OTP's delivery once it has left the queue.
async fn settled_delivery(app: &TestApp, id: &str) -> Value {
    wait_for(Duration::from_secs(10), "the SMS to settle", || async {
        let otp: Value = app.api_json(&format!("/v1/otp/{id}")).await;
        let status = otp["delivery"]["status"].as_str().unwrap_or("").to_owned();
        if ["", "queued", "submitted"].contains(&status.as_str()) {
            Err(format!("{otp}"))
        } else {
            Ok(otp["delivery"].clone())
        }
    })
    .await
}

#[tokio::test]
async fn a_code_goes_in_the_template_registered_with_the_serving_network() {
    let app = spawn_app_with(Options {
        resend_interval: Duration::ZERO,
        ..Options::default()
    })
    .await;
    register_with_viettel(&app).await;
    // Viettel's SMSC takes only what is registered with it: the same brandname and
    // templates.
    app.put_sim(
        "/smsc/viettel/brandnames",
        &json!({"enforce": true, "brandnames": {"UBND-HN": [LOGIN_VI, REGISTER_VI]}}),
    )
    .await;

    let otp = app.create_otp("0971234567", "login").await;
    let code = app.wait_for_code("84971234567", 1).await;
    let messages = app.handset("84971234567").await;
    assert_eq!(messages[0]["from"], "UBND-HN");
    assert_eq!(
        messages[0]["text"],
        format!("Ma OTP dang nhap Cong DVC cua UBND Ha Noi: {code}. Hieu luc 5 phut.")
    );
    assert_eq!(
        settled_delivery(&app, otp["id"].as_str().unwrap()).await["status"],
        "delivered"
    );
    // A resend is in the same template, and its code is the one that works.
    let id = otp["id"].as_str().unwrap();
    let resp = app
        .post(&format!("/v1/otp/{id}/resend"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200, "{:?}", resp.text().await);
    let second = app.wait_for_code("84971234567", 2).await;
    let messages = app.handset("84971234567").await;
    assert!(
        messages[1]["text"].as_str().unwrap().starts_with(&format!(
            "Ma OTP dang nhap Cong DVC cua UBND Ha Noi: {second}."
        )),
        "{messages:?}"
    );
    assert_eq!(app.check(id, &second).await["status"], "approved");

    // Another template of the same brandname, with its own parameter.
    app.create_otp("0971234568", "register").await;
    let code = app.wait_for_code("84971234568", 1).await;
    assert_eq!(
        app.handset("84971234568").await[0]["text"],
        format!("Ma dang ky DVC: {code} (hieu luc 300 giay). Khong chia se.")
    );
    // A network the client registered nothing with still gets the gateway's own text.
    app.create_otp("0828123088", "login").await;
    app.wait_for_code("84828123088", 1).await;
    let text = app.handset("84828123088").await[0]["text"].clone();
    assert!(
        text.as_str()
            .unwrap()
            .starts_with("Mã OTP đăng nhập Cổng DVC: "),
        "{text}"
    );
}

#[tokio::test]
async fn a_send_the_network_would_block_is_refused_at_once() {
    let app = spawn_app_with(Options {
        resend_interval: Duration::ZERO,
        tweak: Some(Box::new(|s| {
            s.smpp
                .get_mut("mobifone")
                .unwrap()
                .require_registered_templates = true;
        })),
    })
    .await;
    register_with_viettel(&app).await;
    let before = app.count("sms_outbox").await;
    let mobifone_sender = app.settings.smpp["mobifone"].sender.clone();
    for (body, carrier, brandname, key) in [
        // Registered with Viettel, but not this language.
        (
            json!({"msisdn": "0971234567", "purpose": "login", "locale": "en"}),
            "viettel",
            "UBND-HN",
            "login:en",
        ),
        // Nor this purpose.
        (
            json!({"msisdn": "0971234567", "purpose": "reset_password"}),
            "viettel",
            "UBND-HN",
            "reset_password:vi",
        ),
        // MobiFone takes registered templates only, and the client has none there.
        (
            json!({"msisdn": "0901234567", "purpose": "login"}),
            "mobifone",
            mobifone_sender.as_str(),
            "login:vi",
        ),
    ] {
        let (status, problem) = create(&app, body.clone()).await;
        assert_eq!(status, 422, "{body}: {problem}");
        assert_eq!(
            problem["type"], "/problems/template-not-registered",
            "{problem}"
        );
        assert_eq!(problem["carrier"], carrier, "{problem}");
        assert_eq!(problem["brandname"], brandname, "{problem}");
        assert_eq!(problem["template"], key, "{problem}");
        let detail = problem["detail"].as_str().unwrap();
        assert!(
            detail.contains(carrier) && detail.contains(brandname),
            "{detail}"
        );
    }
    assert_eq!(app.count("sms_outbox").await, before, "nothing was queued");
    assert_eq!(app.count("otp_challenges").await, 0);
    let refused = app.audit_events(Some("otp.template_unregistered")).await;
    assert_eq!(refused.len(), 3, "{refused:?}");
    assert_eq!(refused[2]["detail"]["carrier"], "mobifone");

    // A resend is held to the same rule: its template removed meanwhile, it is refused
    // and the verification's code stays the one sent.
    let otp = app.create_otp("0971234567", "login").await;
    let code = app.wait_for_code("84971234567", 1).await;
    register(&app, &[], &[("viettel", "login:vi", "")]).await;
    let id = otp["id"].as_str().unwrap();
    let resp = app
        .post(&format!("/v1/otp/{id}/resend"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 422);
    let problem: Value = resp.json().await.unwrap();
    assert_eq!(problem["template"], "login:vi", "{problem}");
    assert_eq!(app.check(id, &code).await["status"], "approved");
}

#[tokio::test]
async fn the_smsc_blocks_what_is_not_registered_with_it() {
    let app = spawn_app().await;
    app.put_sim(
        "/smsc/viettel/brandnames",
        &json!({"enforce": true, "brandnames": {"UBND-HN": [LOGIN_VI]}}),
    )
    .await;
    // The route's brandname is not registered with the carrier: ESME_RINVSRCADR.
    let otp = app.create_otp("0971234567", "login").await;
    let delivery = settled_delivery(&app, otp["id"].as_str().unwrap()).await;
    assert_eq!(delivery["status"], "failed", "{delivery}");
    assert!(
        delivery["error"].as_str().unwrap().contains("0x0000000a"),
        "{delivery}"
    );
    // The brandname is, but the gateway's own text is not its template: the carrier's
    // template refusal (a permanent one: the message fails, it is not retried).
    register(&app, &[("viettel", "UBND-HN")], &[]).await;
    let otp = app.create_otp("0971234568", "login").await;
    let delivery = settled_delivery(&app, otp["id"].as_str().unwrap()).await;
    assert_eq!(delivery["status"], "failed", "{delivery}");
    assert!(
        delivery["error"].as_str().unwrap().contains("0x00000401"),
        "{delivery}"
    );
    assert!(app.handset("84971234567").await.is_empty());
    assert!(app.handset("84971234568").await.is_empty());
    // With the template registered on both sides it goes through.
    register(&app, &[], &[("viettel", "login:vi", LOGIN_VI)]).await;
    let otp = app.create_otp("0971234569", "login").await;
    app.wait_for_code("84971234569", 1).await;
    assert_eq!(
        settled_delivery(&app, otp["id"].as_str().unwrap()).await["status"],
        "delivered"
    );
    // The simulator refuses a registry a carrier would not take.
    for bad in [
        json!({"enforce": true, "brandnames": {"A NAME TOO LONG": []}}),
        json!({"enforce": true, "brandnames": {"UBND-HN": ["no code here"]}}),
        json!({"enforce": "yes"}),
    ] {
        let resp = app
            .http
            .put(format!("{}/smsc/viettel/brandnames", app.sim))
            .json(&bad)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 422, "{bad}");
    }
    let kept: Value = app.sim_json("/smsc/viettel/brandnames").await;
    assert_eq!(kept["brandnames"]["UBND-HN"][0], LOGIN_VI);
}

#[tokio::test]
async fn templates_a_carrier_would_refuse_are_not_registered() {
    let app = spawn_app().await;
    for (carrier, key, text) in [
        ("viettel", "login:vi", "Ma OTP: {otp}"),
        ("viettel", "login:vi", "Hieu luc {minutes} phut"),
        ("viettel", "login:vi", "Mã OTP 🔑 {code}"),
        ("viettel", "login:vi", "{code}{minutes}"),
        ("viettel", "unknown:vi", "Ma {code}"),
        ("viettel", "login:fr", "Code {code}"),
        ("orange", "login:vi", "Ma {code}"),
    ] {
        let change = PolicyChange {
            templates: vec![template(carrier, key, text)],
            ..PolicyChange::default()
        };
        let refused = clients::set_policy(&app.pool, "test-portal", &change).await;
        assert!(refused.is_err(), "{carrier}:{key}={text} accepted");
    }
    let policy = clients::policy(&app.pool, "test-portal").await.unwrap();
    assert!(policy.sms_templates.is_empty(), "{policy:?}");
    // One that is fine is kept, and shown.
    register(
        &app,
        &[],
        &[("vinaphone", "login:en", "Your DVC code: {code}")],
    )
    .await;
    let policy = clients::policy(&app.pool, "test-portal").await.unwrap();
    assert_eq!(
        serde_json::to_value(&policy).unwrap()["sms_templates"],
        json!({"vinaphone": {"login:en": "Your DVC code: {code}"}})
    );
}

/// A stored template that cannot be read (written around `client set`, or by a version
/// with other rules) fails only the sends it would carry.
#[tokio::test]
async fn an_unreadable_stored_template_fails_only_its_own_network() {
    let app = spawn_app().await;
    register(&app, &[], &[("viettel", "login:vi", LOGIN_VI)]).await;
    app.pool
        .get()
        .await
        .unwrap()
        .execute(
            "UPDATE api_clients SET sms_templates = sms_templates
                || '{\"mobifone\": {\"login:vi\": \"no code here\"}}'::jsonb",
            &[],
        )
        .await
        .unwrap();
    let (status, problem) = create(&app, json!({"msisdn": "0901234567", "purpose": "login"})).await;
    assert_eq!(status, 500, "{problem}");
    assert_eq!(problem["type"], "/problems/internal");
    app.create_otp("0971234567", "login").await;
    let code = app.wait_for_code("84971234567", 1).await;
    assert!(app.handset("84971234567").await[0]["text"]
        .as_str()
        .unwrap()
        .contains(&code));
    assert_eq!(app.count("otp_challenges").await, 1);
}
