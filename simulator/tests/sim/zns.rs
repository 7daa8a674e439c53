//! The simulated ZNS driven as any ZNS client would: OAuth refresh, sends, status
//! queries, and the signed delivery callback received by a plain HTTP server here.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use sha2::Digest;
use simulator::{RunningSimulator, SimConfig};
use tokio_util::sync::CancellationToken;

struct Zns {
    sim: RunningSimulator,
    base: String,
    http: reqwest::Client,
    _shutdown: tokio_util::sync::DropGuard,
}

async fn zns() -> Zns {
    let shutdown = CancellationToken::new();
    let sim = simulator::start(
        SimConfig::ephemeral(Duration::from_millis(20)),
        shutdown.clone(),
    )
    .await
    .unwrap();
    Zns {
        base: format!("http://{}/zns", sim.http_addr),
        sim,
        http: reqwest::Client::new(),
        _shutdown: shutdown.drop_guard(),
    }
}

impl Zns {
    async fn refresh(&self, refresh_token: &str, secret: &str) -> Value {
        self.http
            .post(format!("{}/oauth/v4/oa/access_token", self.base))
            .header("secret_key", secret)
            .form(&[
                ("app_id", self.sim.zns.config.app_id.as_str()),
                ("grant_type", "refresh_token"),
                ("refresh_token", refresh_token),
            ])
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    async fn token(&self) -> String {
        let t = self
            .refresh(
                &self.sim.zns.config.refresh_token,
                &self.sim.zns.config.secret_key,
            )
            .await;
        t["access_token"].as_str().unwrap().to_owned()
    }

    async fn send(&self, token: &str, body: Value) -> Value {
        let resp = self
            .http
            .post(format!("{}/message/template", self.base))
            .header("access_token", token)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        resp.json().await.unwrap()
    }

    async fn put(&self, path: &str, body: Value) -> reqwest::StatusCode {
        self.http
            .put(format!("{}{path}", self.base))
            .json(&body)
            .send()
            .await
            .unwrap()
            .status()
    }

    async fn get(&self, url: &str, token: &str) -> Value {
        self.http
            .get(url)
            .header("access_token", token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    async fn inbox(&self, e164: &str) -> Vec<Value> {
        let url = format!("http://{}/handsets/{e164}/zalo", self.sim.http_addr);
        self.get(&url, "").await.as_array().unwrap().clone()
    }
}

fn otp(phone: &str) -> Value {
    json!({
        "phone": phone,
        "template_id": "230001",
        "template_data": {"otp": "482913", "minutes": "5"},
        "tracking_id": "verification-1",
    })
}

/// Receives the simulator's callbacks: (signature header, raw body).
async fn receiver() -> (String, Arc<Mutex<Vec<(String, String)>>>) {
    let got = Arc::new(Mutex::new(Vec::new()));
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let kept = got.clone();
    let server = actix_web::HttpServer::new(move || {
        let kept = kept.clone();
        actix_web::App::new().route(
            "/zalo-events",
            actix_web::web::post().to(move |req: actix_web::HttpRequest, body: String| {
                let kept = kept.clone();
                async move {
                    let sig = req
                        .headers()
                        .get("X-ZEvent-Signature")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or_default()
                        .to_owned();
                    kept.lock().unwrap().push((sig, body));
                    actix_web::HttpResponse::Ok().finish()
                }
            }),
        )
    })
    .workers(1)
    .listen(listener)
    .unwrap()
    .run();
    tokio::spawn(server);
    (format!("http://{addr}/zalo-events"), got)
}

async fn eventually<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "{what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_template_reaches_the_zalo_app_and_its_delivery_is_called_back_signed() {
    let z = zns().await;
    let (url, events) = receiver().await;
    assert_eq!(z.put("/webhook", json!({ "url": url })).await, 200);
    let token = z.token().await;

    let sent = z.send(&token, otp("0971234567")).await;
    assert_eq!(sent["error"], 0, "{sent}");
    let msg_id = sent["data"]["msg_id"].as_str().unwrap().to_owned();
    assert_eq!(sent["data"]["quota"]["remainingQuota"], "99999");

    let (signature, body) = eventually("the delivery callback", || {
        events.lock().unwrap().first().cloned()
    })
    .await;
    let event: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(event["event_name"], "user_received_message");
    assert_eq!(event["message"]["msg_id"], msg_id.as_str());
    assert_eq!(event["message"]["tracking_id"], "verification-1");
    // The signature as Zalo defines it, computed here.
    let cfg = &z.sim.zns.config;
    let timestamp = event["timestamp"].as_str().unwrap();
    let mut h = sha2::Sha256::new();
    h.update(format!("{}{body}{timestamp}{}", cfg.app_id, cfg.secret_key));
    assert_eq!(signature, format!("mac={}", hex::encode(h.finalize())));

    let inbox = z.inbox("84971234567").await;
    assert_eq!(inbox.len(), 1);
    assert_eq!(
        inbox[0]["text"],
        "Mã xác thực Cổng Dịch vụ công của bạn là 482913. Mã có hiệu lực 5 phút. Không chia sẻ mã này với bất kỳ ai."
    );
    let status = z
        .get(
            &format!(
                "{}/message/status?message_id={msg_id}&phone=84971234567",
                z.base
            ),
            &token,
        )
        .await;
    assert_eq!(status["data"]["status"], 1, "{status}");
    assert!(status["data"]["delivery_time"].is_string(), "{status}");
    // Another number's status query about this message finds nothing.
    let other = z
        .get(
            &format!(
                "{}/message/status?message_id={msg_id}&phone=84971234568",
                z.base
            ),
            &token,
        )
        .await;
    assert_eq!(other["error"], -107, "{other}");
}

#[tokio::test]
async fn refresh_tokens_work_once_and_a_bad_token_sends_nothing() {
    let z = zns().await;
    let cfg = z.sim.zns.config.clone();
    let first = z.refresh(&cfg.refresh_token, &cfg.secret_key).await;
    assert!(first["access_token"].is_string(), "{first}");
    assert_eq!(first["expires_in"], "90000");
    // The refresh token is spent; the new one works, once.
    assert!(
        z.refresh(&cfg.refresh_token, &cfg.secret_key).await["error"]
            .as_i64()
            .unwrap()
            < 0
    );
    let next = first["refresh_token"].as_str().unwrap();
    assert!(
        z.refresh(next, "wrong secret").await["error"]
            .as_i64()
            .unwrap()
            < 0
    );
    let second = z.refresh(next, &cfg.secret_key).await;
    assert!(second["access_token"].is_string(), "{second}");

    for token in ["", "made-up"] {
        assert_eq!(z.send(token, otp("0971234567")).await["error"], -124);
    }
    // Revoked by Zalo: the token stops working.
    let token = second["access_token"].as_str().unwrap();
    assert_eq!(z.put("/faults", json!({"revoke_tokens": true})).await, 200);
    assert_eq!(z.send(token, otp("0971234567")).await["error"], -124);
    assert_eq!(z.put("/faults", json!({})).await, 200);
    assert_eq!(z.send(token, otp("0971234567")).await["error"], 0);
}

#[tokio::test]
async fn each_refusal_has_its_code() {
    let z = zns().await;
    let token = z.token().await;
    assert_eq!(
        z.put("/users/0971234599", json!({"zalo": false})).await,
        200
    );
    let with = |f: &dyn Fn(&mut Value)| {
        let mut body = otp("0971234567");
        f(&mut body);
        body
    };
    for (body, code) in [
        (with(&|b| b["phone"] = json!("12345")), -108),
        (with(&|b| b["template_id"] = json!("999999")), -109),
        // Not approved yet.
        (with(&|b| b["template_id"] = json!("230002")), -109),
        (with(&|b| b["template_data"] = json!({})), -111),
        (
            with(&|b| b["template_data"] = json!({"otp": "482913"})),
            -112,
        ),
        (
            with(&|b| b["template_data"]["name"] = json!("NGUYỄN VĂN AN")),
            -112,
        ),
        (
            with(&|b| b["template_data"]["otp"] = json!("x".repeat(31))),
            -112,
        ),
        (with(&|b| b["phone"] = json!("0971234599")), -118),
    ] {
        let answer = z.send(&token, body.clone()).await;
        assert_eq!(answer["error"], code, "{body}: {answer}");
        assert!(answer["message"].as_str().is_some_and(|m| !m.is_empty()));
    }
    assert!(z.inbox("84971234567").await.is_empty());
    assert!(z.inbox("84971234599").await.is_empty());

    // Approved, the new template sends.
    let approved = json!({"text": "Mã OTP của bạn: <otp>", "status": "ENABLE"});
    assert_eq!(z.put("/templates/230002", approved).await, 200);
    let answer = z
        .send(
            &token,
            json!({"phone": "0971234567", "template_id": "230002", "template_data": {"otp": "1234"}}),
        )
        .await;
    assert_eq!(answer["error"], 0, "{answer}");
    let info = z
        .get(
            &format!("{}/template/info?template_id=230002", z.base),
            &token,
        )
        .await;
    assert_eq!(info["data"]["status"], "ENABLE", "{info}");
    assert_eq!(info["data"]["listParams"][0]["name"], "otp", "{info}");
    // A template with no parameter is not one.
    assert_eq!(
        z.put(
            "/templates/230003",
            json!({"text": "Xin chào", "status": "ENABLE"})
        )
        .await,
        422
    );

    // Out of quota; development mode (for the OA's admins) does not spend it.
    assert_eq!(z.put("/quota", json!({"daily": 1})).await, 200);
    assert_eq!(z.send(&token, otp("0971234567")).await["error"], 0);
    assert_eq!(z.send(&token, otp("0971234567")).await["error"], -115);
    let mut dev = otp("0971234567");
    dev["mode"] = json!("development");
    assert_eq!(z.send(&token, dev).await["error"], 0);
    let quota = z.get(&format!("{}/message/quota", z.base), &token).await;
    assert_eq!(quota["data"]["remainingQuota"], 0, "{quota}");
}

#[tokio::test]
async fn faults_an_outage_and_a_message_that_never_arrives() {
    let z = zns().await;
    let token = z.token().await;
    assert_eq!(z.put("/faults", json!({"unavailable": true})).await, 200);
    let resp = z
        .http
        .post(format!("{}/message/template", z.base))
        .header("access_token", &token)
        .json(&otp("0971234567"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 503);

    assert_eq!(z.put("/faults", json!({"no_delivery": true})).await, 200);
    let sent = z.send(&token, otp("0971234567")).await;
    assert_eq!(sent["error"], 0, "{sent}");
    let msg_id = sent["data"]["msg_id"].as_str().unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let status = z
        .get(
            &format!(
                "{}/message/status?message_id={msg_id}&phone=0971234567",
                z.base
            ),
            &token,
        )
        .await;
    assert_eq!(status["data"]["status"], 0, "{status}");
    assert!(status["data"]["delivery_time"].is_null(), "{status}");
    assert!(z.inbox("84971234567").await.is_empty());
    assert_eq!(z.put("/faults", json!({"no_such_fault": true})).await, 422);
}
