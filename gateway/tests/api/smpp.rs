//! SMPP delivery against a misbehaving SMSC: receipts in another base or before the
//! response, lost receipts, throttling, dropped connections, refused binds.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::helpers::{spawn_app_with, Options, TestApp};

impl TestApp {
    async fn delivery_of(&self, id: &str) -> Value {
        let body: Value = self
            .get(&format!("/v1/otp/{id}"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        body["delivery"].clone()
    }

    async fn wait_delivery_status(&self, id: &str, want: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let d = self.delivery_of(id).await;
            if d["status"] == want {
                return d;
            }
            assert!(
                Instant::now() < deadline,
                "delivery of {id} never became {want}: {d}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// A counter of `/v1/health/carriers`'s route, summed over its binds.
fn sum_over_binds(route: &Value, counter: &str) -> u64 {
    route["binds"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b[counter].as_u64().unwrap())
        .sum()
}

async fn app() -> TestApp {
    spawn_app_with(Options {
        tweak: Some(Box::new(|s| {
            s.outbox.retry_base = Duration::from_millis(100);
            s.outbox.retry_max = Duration::from_millis(500);
            s.outbox.max_attempts = 50;
            for route in s.smpp.values_mut() {
                route.reconnect_min = Duration::from_millis(50);
                route.reconnect_max = Duration::from_millis(200);
            }
        })),
        ..Options::default()
    })
    .await
}

#[tokio::test]
async fn receipts_in_decimal_and_before_the_response_still_match() {
    let app = app().await;
    app.set_faults(
        "vinaphone",
        json!({"decimal_receipt_ids": true, "receipt_before_response": true}),
    )
    .await;
    let id = app.create_otp("0828123088", "login").await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let d = app.wait_delivery_status(&id, "delivered").await;
    // The response id was hex; the receipt's decimal id matched it anyway.
    let hex = d["message_id"].as_str().unwrap();
    assert!(u64::from_str_radix(hex, 16).is_ok(), "{d}");
    let db = app.pool.get().await.unwrap();
    let stored: String = db
        .query_one("SELECT message_id FROM delivery_receipts", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(stored, u64::from_str_radix(hex, 16).unwrap().to_string());
}

#[tokio::test]
async fn a_lost_receipt_leaves_the_message_submitted() {
    let app = app().await;
    app.set_faults("viettel", json!({"lose_receipts": 1.0}))
        .await;
    let id = app.create_otp("0971234567", "login").await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    app.wait_for_code("84971234567", 1).await;
    let d = app.wait_delivery_status(&id, "submitted").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(app.delivery_of(&id).await["status"], "submitted", "{d}");
}

#[tokio::test]
async fn throttled_dropped_and_refused_binds_do_not_lose_messages() {
    let app = app().await;
    // Throttling: beyond 2 submits a second the SMSC says ESME_RTHROTTLED; we retry.
    app.set_faults("mobifone", json!({"throttle_above_tps": 2}))
        .await;
    let mut ids = Vec::new();
    for i in 0..6 {
        let n = format!("09012340{i:02}");
        ids.push(
            app.create_otp(&n, "login").await["id"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    for id in &ids {
        app.wait_delivery_status(id, "delivered").await;
    }
    let db = app.pool.get().await.unwrap();
    let throttled: i64 = db
        .query_one(
            // An attempt is spent by each failure the SMSC caused (a throttle).
            "SELECT count(*) FROM sms_outbox WHERE route = 'mobifone' AND attempts >= 1",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(throttled > 0, "some submits were throttled and retried");
    let metrics = app.metrics_text().await;
    assert!(
        metrics.contains(r#"gateway_smpp_submit_errors_total{route="mobifone",bind="1",status="command_status_0x00000058"}"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"gateway_smpp_bind_up{route="viettel",bind="1"} 1"#),
        "{metrics}"
    );
    assert!(
        // OpenMetrics names a counter's family without its `_total` samples' suffix.
        metrics.contains("# TYPE gateway_smpp_submits counter")
            && metrics.contains("\ngateway_smpp_submits_total{"),
        "{metrics}"
    );

    // Dropped connections: the bind comes back and every message arrives.
    app.set_faults("viettel", json!({"drop_after_pdus": 3}))
        .await;
    let mut ids = Vec::new();
    for i in 0..5 {
        let n = format!("09712340{i:02}");
        ids.push(
            app.create_otp(&n, "login").await["id"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    for (i, _) in ids.iter().enumerate() {
        app.wait_for_code(&format!("849712340{i:02}"), 1).await;
    }

    // Refused binds: nothing goes out until the SMSC takes binds again, then all does.
    app.set_faults(
        "vinaphone",
        json!({"refuse_binds": true, "drop_after_pdus": 1}),
    )
    .await;
    // Force a reconnect: the next PDU on the current bind drops it.
    let id = app.create_otp("0881230000", "login").await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    tokio::time::sleep(Duration::from_millis(500)).await;
    app.set_faults("vinaphone", json!({})).await;
    app.wait_for_code("84881230000", 1).await;
    app.wait_delivery_status(&id, "delivered").await;
}

#[tokio::test]
async fn several_binds_per_route_share_the_load_within_their_tps() {
    let app = spawn_app_with(Options {
        tweak: Some(Box::new(|s| {
            let route = s.smpp.get_mut("vinaphone").unwrap();
            route.binds = 2;
            route.tps = Some(50);
        })),
        ..Options::default()
    })
    .await;
    let vina = app.route_health("vinaphone").await;
    assert_eq!(vina["bound_binds"], 2, "{vina}");
    assert_eq!(vina["binds"][0]["tps_limit"], 50);
    let mut ids = Vec::new();
    for i in 0..12 {
        // One number per block of 100, clear of the pumping guard.
        let n = format!("088{:07}", 1_000_000 + i * 100);
        ids.push(
            app.create_otp(&n, "login").await["id"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    for id in &ids {
        app.wait_delivery_status(id, "delivered").await;
    }
    let vina = app.route_health("vinaphone").await;
    let submitted = sum_over_binds(&vina, "submitted_total");
    assert_eq!(submitted, 12, "{vina}");
    let receipts = sum_over_binds(&vina, "receipts_total");
    assert_eq!(receipts, 12, "{vina}");
}

#[tokio::test]
async fn a_ported_number_goes_to_the_network_that_serves_it() {
    let app = app().await;
    // 0971234567 has a Viettel prefix but moved to MobiFone.
    let resp = app
        .http
        .put(format!("{}/ported/84971234567", app.sim))
        .json(&json!({"carrier": "mobifone"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);

    // Without the porting record the gateway routes by prefix and Viettel refuses it.
    let id = app.create_otp("0971234567", "login").await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let d = app.wait_delivery_status(&id, "failed").await;
    assert_eq!(
        d["error"], "command_status_0x0000000b",
        "ESME_RINVDSTADR: {d}"
    );

    // With it (imported as an operator would), the OTP goes to MobiFone.
    let rows = gateway::mnp::read_csv("msisdn,carrier\n0971234567,mobifone\n".as_bytes()).unwrap();
    assert_eq!(gateway::mnp::import(&app.pool, &rows).await.unwrap(), 1);
    let created = app.create_otp("0971234567", "login").await;
    assert_eq!(created["carrier"], "mobifone");
    let id = created["id"].as_str().unwrap().to_owned();
    let d = app.wait_delivery_status(&id, "delivered").await;
    assert_eq!(d["route"], "mobifone");
    let messages = app.handset("84971234567").await;
    assert_eq!(messages.len(), 1);
    assert_eq!(messages[0]["carrier"], "mobifone");
}

/// A carrier's limit per brandname holds across the route's binds and counts every part:
/// 6 two-part SMS at 4 parts per second take at least 2 s (the first 4 parts at once,
/// then one every 250 ms), where a limit per message would let them all go in 0.5 s.
#[tokio::test]
async fn a_brandnames_tps_counts_every_part_across_the_binds() {
    let app = spawn_app_with(Options {
        tweak: Some(Box::new(|s| {
            let route = s.smpp.get_mut("vinaphone").unwrap();
            route.binds = 2;
            route.sender_tps = [("UBND-HN".to_owned(), 4)].into();
        })),
        ..Options::default()
    })
    .await;
    gateway::clients::set_policy(
        &app.pool,
        "test-portal",
        &gateway::clients::PolicyChange {
            senders: vec![("vinaphone".into(), "UBND-HN".into())],
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let started = Instant::now();
    let mut ids = Vec::new();
    for i in 0..6 {
        let n = format!("088{:07}", 2_000_000 + i * 100);
        // 10 digits and 899 s: two UCS2 parts.
        let resp = app
            .post("/v1/otp")
            .json(&json!({"msisdn": n, "purpose": "add_method", "code_length": 10, "ttl_seconds": 899}))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 201);
        ids.push(
            resp.json::<Value>().await.unwrap()["id"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    for id in &ids {
        let d = app.wait_delivery_status(id, "delivered").await;
        assert_eq!(d["parts"], 2, "{d}");
    }
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(2000),
        "12 parts at 4 per second went out in {took:?}"
    );
    let vina = app.route_health("vinaphone").await;
    let submitted = sum_over_binds(&vina, "submitted_total");
    assert_eq!(submitted, 12, "{vina}");
    assert_eq!(vina["sender_tps"], json!({"UBND-HN": 4}), "{vina}");
}

/// A brandname at its limit longer than a claim's lease: its SMS go back to the queue
/// unsent, inside the lease, instead of waiting past it and being claimed and sent a
/// second time. Every OTP arrives, once.
#[tokio::test]
async fn a_brandname_at_its_limit_gives_rows_back_before_their_lease_ends() {
    let app = spawn_app_with(Options {
        tweak: Some(Box::new(|s| {
            s.outbox.claim_timeout = Duration::from_secs(2);
            s.smpp.get_mut("viettel").unwrap().sender_tps = [("UBND-HN".to_owned(), 2)].into();
        })),
        ..Options::default()
    })
    .await;
    gateway::clients::set_policy(
        &app.pool,
        "test-portal",
        &gateway::clients::PolicyChange {
            senders: vec![("viettel".into(), "UBND-HN".into())],
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let numbers: Vec<String> = (0..10)
        .map(|i| format!("098{:07}", 3_000_000 + i * 100))
        .collect();
    let mut ids = Vec::new();
    for n in &numbers {
        ids.push(
            app.create_otp(n, "login").await["id"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    for id in &ids {
        app.wait_delivery_status(id, "delivered").await;
    }
    // Give a second claim the time it would need to send anything again.
    tokio::time::sleep(Duration::from_secs(3)).await;
    for n in &numbers {
        let e164 = format!("84{}", &n[1..]);
        assert_eq!(
            app.handset(&e164).await.len(),
            1,
            "{e164} got its OTP more than once"
        );
    }
    let vina = app.route_health("viettel").await;
    let submitted = sum_over_binds(&vina, "submitted_total");
    assert_eq!(submitted, 10, "{vina}");
}

#[tokio::test]
async fn a_text_longer_than_one_sms_goes_in_parts_and_is_delivered_when_all_are() {
    let app = app().await;
    // 10 digits and 899 s make the Vietnamese add_method text 76 characters: two UCS2 parts.
    let resp = app
        .post("/v1/otp")
        .json(&json!({"msisdn": "0828123088", "purpose": "add_method", "code_length": 10, "ttl_seconds": 899}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    let id = resp.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let code = app.wait_for_code("84828123088", 1).await;
    let messages = app.handset("84828123088").await;
    assert_eq!(
        messages.len(),
        1,
        "the handset shows one message: {messages:?}"
    );
    assert_eq!(
        messages[0]["text"],
        format!("Mã OTP thêm xác thực Cổng DVC: {code}. Hiệu lực 899 giây. Không chia sẻ.")
    );
    let d = app.wait_delivery_status(&id, "delivered").await;
    assert_eq!(d["parts"], 2, "{d}");
    let db = app.pool.get().await.unwrap();
    let receipts: i64 = db
        .query_one("SELECT count(*) FROM delivery_receipts", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(receipts, 2, "one receipt per part");
}

#[tokio::test]
async fn a_route_down_too_long_falls_back_to_the_aggregator() {
    let app = spawn_app_with(Options {
        tweak: Some(Box::new(|s| {
            let viettel = s.smpp.get_mut("viettel").unwrap();
            viettel.fallback = Some("aggregator".into());
            viettel.fallback_after = Duration::from_millis(500);
            viettel.reconnect_min = Duration::from_millis(50);
            viettel.reconnect_max = Duration::from_millis(100);
            s.outbox.retry_base = Duration::from_millis(100);
            s.outbox.retry_max = Duration::from_millis(300);
        })),
        ..Options::default()
    })
    .await;
    // Viettel's SMSC drops the bind at the next PDU and refuses new ones.
    // Viettel's SMSC answers one more PDU, drops the bind and refuses new ones.
    app.set_faults(
        "viettel",
        json!({"refuse_binds": true, "drop_after_pdus": 1}),
    )
    .await;
    app.create_otp("0970000001", "login").await;
    app.wait_for_code("84970000001", 1).await;
    let created = app.create_otp("0971234567", "login").await;
    let id = created["id"].as_str().unwrap().to_owned();
    let d = app.wait_delivery_status(&id, "delivered").await;
    assert_eq!(d["route"], "aggregator", "{d}");
    let messages = app.handset("84971234567").await;
    assert_eq!(messages.last().unwrap()["carrier"], "aggregator");
    // Once Viettel takes binds again, its numbers go to Viettel again.
    app.set_faults("viettel", json!({})).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let h: Value = app
            .http
            .get(format!("{}/health", app.api))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if h["smpp"]["viettel"]["bound"] == true {
            break;
        }
        assert!(Instant::now() < deadline, "viettel never rebound");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let id = app.create_otp("0971234568", "login").await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let d = app.wait_delivery_status(&id, "delivered").await;
    assert_eq!(d["route"], "viettel", "{d}");
}

#[tokio::test]
async fn slow_responses_and_late_receipts_still_end_delivered() {
    let app = app().await;
    app.set_faults(
        "vinaphone",
        json!({"response_delay": "300ms", "receipt_delay": "800ms"}),
    )
    .await;
    let id = app.create_otp("0828123088", "login").await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let d = app.wait_delivery_status(&id, "delivered").await;
    let submitted =
        chrono::DateTime::parse_from_rfc3339(d["submitted_at"].as_str().unwrap()).unwrap();
    let receipt = chrono::DateTime::parse_from_rfc3339(d["receipt_at"].as_str().unwrap()).unwrap();
    assert!(
        (receipt - submitted).num_milliseconds() >= 400,
        "the receipt came late, as scripted: {d}"
    );
    // A response slower than the response timeout: the submit is retried, not lost.
    app.set_faults("vinaphone", json!({"response_delay": "6s"}))
        .await;
    let id = app.create_otp("0828123089", "login").await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    tokio::time::sleep(Duration::from_millis(5500)).await;
    app.set_faults("vinaphone", json!({})).await;
    app.wait_delivery_status(&id, "delivered").await;
}

#[tokio::test]
async fn transmitter_and_receiver_binds_carry_submits_and_receipts() {
    let app = spawn_app_with(Options {
        tweak: Some(Box::new(|s| {
            s.smpp.get_mut("mobifone").unwrap().bind_type =
                gateway::config::BindType::TransmitterReceiver;
        })),
        ..Options::default()
    })
    .await;
    let id = app.create_otp("0901234567", "login").await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    app.wait_delivery_status(&id, "delivered").await;
    let mobi = app.route_health("mobifone").await;
    let binds = mobi["binds"].as_array().unwrap();
    assert_eq!(binds.len(), 2, "{mobi}");
    assert_eq!(binds[0]["mode"], "transmitter");
    assert_eq!(binds[0]["submitted_total"], 1);
    assert_eq!(binds[1]["mode"], "receiver");
    assert_eq!(binds[1]["receipts_total"], 1);
}

/// Readiness is the instance's: a carrier whose SMSC refuses binds leaves `/readyz` at
/// 200 (the gateway still accepts and queues its OTPs), and `/v1/health/carriers`,
/// `/readyz`'s own `carriers` and `/metrics` say which carrier is down.
#[tokio::test]
async fn a_carrier_outage_leaves_the_instance_ready_and_says_which() {
    let app = spawn_app_with(Options::default()).await;
    let get = |path: &'static str| {
        let url = format!("{}{path}", app.api);
        let http = app.http.clone();
        async move {
            let r = http.get(url).send().await.unwrap();
            let status = r.status().as_u16();
            (status, r.text().await.unwrap())
        }
    };
    let json = |text: &str| serde_json::from_str::<Value>(text).unwrap();
    let (status, ready) = get("/readyz").await;
    assert_eq!(status, 200, "{ready}");
    let ready = json(&ready);
    assert_eq!(ready["database"], true);
    assert_eq!(ready["shutting_down"], false);
    assert_eq!(ready["carriers"]["vinaphone"]["routed"], true);
    // Every network has a route: the small ones go through the aggregator.
    assert_eq!(ready["carriers"]["reddi"]["route"], "aggregator");
    assert_eq!(get("/healthz").await.0, 200);

    // VinaPhone's SMSC drops the bind and refuses new ones.
    app.set_faults(
        "vinaphone",
        json!({"refuse_binds": true, "drop_after_pdus": 1}),
    )
    .await;
    app.create_otp("0881239999", "login").await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while app.route_health("vinaphone").await["bound_binds"] != 0 {
        assert!(Instant::now() < deadline, "vinaphone never went down");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (status, ready) = get("/readyz").await;
    assert_eq!(
        status, 200,
        "a carrier outage made the instance not ready: {ready}"
    );
    let ready = json(&ready);
    assert_eq!(ready["status"], "ready");
    assert_eq!(ready["carriers"]["vinaphone"]["routed"], false, "{ready}");
    assert_eq!(ready["carriers"]["viettel"]["routed"], true, "{ready}");
    let (_, metrics) = get("/metrics").await;
    assert!(
        metrics.contains("gateway_smpp_bind_up{route=\"vinaphone\",bind=\"1\"} 0"),
        "metrics do not show vinaphone down"
    );
    // Still accepting: an OTP to a VinaPhone number is 201 and waits in the queue.
    let queued = app.create_otp("0881239998", "login").await;
    assert_eq!(queued["status"], "pending", "{queued}");
    assert_eq!(get("/healthz").await.0, 200, "liveness ignores carriers");

    app.set_faults("vinaphone", json!({})).await;
    app.wait_for_code("84881239998", 1).await;
}

/// Receipts the test's own bind hands over, acknowledged at once.
struct Acknowledge;

impl carrier_adapters::smpp::ReceiptSink for Acknowledge {
    fn deliver(
        &self,
        _route: &str,
        _report: carrier_adapters::smpp::DeliveryReport,
    ) -> futures::future::BoxFuture<'static, Result<(), String>> {
        Box::pin(async { Ok(()) })
    }
}

/// The dispatcher asks each bind whether it is up several times per SMS (to choose a
/// route and the bind with the most room). rusmppc 0.4 answers `Client::is_active` by
/// queueing a message to its connection task, which takes five per poll: asked often
/// enough, those messages queued ahead of the submits and receipt acknowledgements
/// without bound, and under load a submit waited seconds before it was even written.
/// Asking must cost the connection nothing.
#[tokio::test]
async fn asking_whether_a_bind_is_up_does_not_delay_its_submits() {
    let app = app().await;
    let shutdown = tokio_util::sync::CancellationToken::new();
    let route = &app.settings.smpp["viettel"];
    let config = route
        .esme_configs("viettel", &route.sender_limits())
        .remove(0);
    let (esme, task) = carrier_adapters::smpp::Esme::start(
        config,
        std::sync::Arc::new(Acknowledge),
        shutdown.clone(),
    );
    assert!(
        esme.wait_bound(Duration::from_secs(10)).await,
        "never bound"
    );
    for _ in 0..200_000 {
        assert!(esme.is_bound());
    }
    let sms = carrier_adapters::smpp::OutgoingSms {
        source: "DVC".into(),
        destination: "84971234567".into(),
        text: carrier_adapters::sms_text::encode("Ma OTP: 123456"),
        request_receipt: true,
        valid_until: Some(Instant::now() + Duration::from_secs(300)),
        wait_until: None,
    };
    // Written at once, answered within the simulator's own time: far inside 10 s (it
    // took minutes behind the 200 000 queued checks).
    let ids = tokio::time::timeout(Duration::from_secs(10), esme.submit(&sms))
        .await
        .expect("the submit was held behind the bind checks")
        .expect("submit refused");
    assert_eq!(ids.len(), 1);
    app.wait_for_code("84971234567", 1).await;
    shutdown.cancel();
    let _ = task.await;
}
