//! Request ids and request metrics.

use serde_json::json;

use crate::helpers::spawn_app;

#[tokio::test]
async fn every_answer_carries_a_request_id_and_is_counted_by_route_pattern() {
    let app = spawn_app().await;
    let created = app
        .post("/v1/otp")
        .header("X-Request-Id", "portal-req-42")
        .json(&json!({"msisdn": "0971234567", "purpose": "login"}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    assert_eq!(created.headers()["x-request-id"], "portal-req-42");
    let id = created.json::<serde_json::Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    // Without one, or with one that is not a sane token, the gateway makes its own.
    for given in [None, Some("two words")] {
        let mut req = app.get(&format!("/v1/otp/{id}"));
        if let Some(g) = given {
            req = req.header("X-Request-Id", g);
        }
        let resp = req.send().await.unwrap();
        assert_eq!(resp.status(), 200);
        let made = resp.headers()["x-request-id"].to_str().unwrap();
        assert!(uuid::Uuid::parse_str(made).is_ok(), "{made}");
    }
    // Problems carry it too.
    let missing = app
        .get(&format!("/v1/otp/{}", uuid::Uuid::new_v4()))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
    assert!(missing.headers().contains_key("x-request-id"));

    let metrics = app.metrics_text().await;
    for line in [
        r#"gateway_http_requests_total{method="POST",route="/v1/otp",status="201"} 1"#,
        r#"gateway_http_requests_total{method="GET",route="/v1/otp/{id}",status="200"} 2"#,
        r#"gateway_http_requests_total{method="GET",route="/v1/otp/{id}",status="404"} 1"#,
        r#"gateway_http_request_duration_seconds_count{method="GET",route="/v1/otp/{id}"} 3"#,
    ] {
        assert!(metrics.contains(line), "{line} not in:\n{metrics}");
    }
    assert!(
        metrics.contains("\ngateway_outbox_oldest_queued_seconds "),
        "{metrics}"
    );
    // Never the raw path: no OTP id in any label.
    assert!(!metrics.contains(&id));
}

#[tokio::test]
async fn the_otp_funnel_and_signature_outcomes_are_counted_by_carrier() {
    let app = spawn_app().await;
    let created = app.create_otp("0971234567", "login").await;
    let code = app.wait_for_code("84971234567", 1).await;
    let checked = app.check(created["id"].as_str().unwrap(), &code).await;
    assert_eq!(checked["status"], "approved");
    let signature: serde_json::Value = app
        .post("/v1/signatures")
        .json(&json!({"msisdn": "0971234567", "purpose": "login"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = signature["id"].as_str().unwrap().to_owned();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let now: serde_json::Value = app
            .get(&format!("/v1/signatures/{id}?wait=5"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if now["status"] != "pending" {
            assert_eq!(now["status"], "signed", "{now}");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{now}");
    }
    let want = [
        r#"gateway_otp_funnel_total{stage="created",carrier="viettel"} 1"#,
        r#"gateway_otp_funnel_total{stage="sent",carrier="viettel"} 1"#,
        r#"gateway_otp_funnel_total{stage="delivered",carrier="viettel"} 1"#,
        r#"gateway_otp_funnel_total{stage="approved",carrier="viettel"} 1"#,
        r#"gateway_signatures_total{carrier="viettel",status="signed"} 1"#,
    ];
    // The receipt may land just after the code reached the handset.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let metrics = app.metrics_text().await;
        if want.iter().all(|w| metrics.contains(w)) {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{metrics}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn the_status_page_is_for_the_admin_key_only_and_masks_numbers() {
    use base64::Engine;
    const ADMIN: &str = "admin-key-for-status-0123456789";
    let app = crate::helpers::spawn_app_with(crate::helpers::Options {
        tweak: Some(Box::new(|s| {
            s.admin.api_key = Some(secrecy::SecretString::from(ADMIN));
        })),
        ..Default::default()
    })
    .await;
    app.create_otp("0971234567", "login").await;
    let url = format!("{}/status", app.api);
    let anonymous = app.http.get(&url).send().await.unwrap();
    assert_eq!(anonymous.status(), 401);
    assert!(anonymous.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .starts_with("Basic"));
    let client_key = app
        .http
        .get(&url)
        .bearer_auth(&app.key)
        .send()
        .await
        .unwrap();
    assert_eq!(client_key.status(), 401);

    let page = app.http.get(&url).bearer_auth(ADMIN).send().await.unwrap();
    assert_eq!(page.status(), 200);
    assert!(page.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    let html = page.text().await.unwrap();
    assert!(
        html.contains("Gateway status") && html.contains("viettel"),
        "{html}"
    );
    assert!(html.contains("097****567"), "{html}");
    assert!(
        !html.contains("971234567"),
        "a full number on the page: {html}"
    );

    let basic = base64::engine::general_purpose::STANDARD.encode(format!("ops:{ADMIN}"));
    let json: serde_json::Value = app
        .http
        .get(&url)
        .header("Authorization", format!("Basic {basic}"))
        .header("Accept", "application/json")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(json["recent_otp"][0]["msisdn"], "097****567");
    assert_eq!(json["recent_otp"][0]["status"], "pending");
    assert!(json["routes"].as_array().unwrap().len() >= 3, "{json}");
    assert!(json["outbox"]["queued"].is_i64());

    // Without an admin key configured there is no status page.
    let plain = crate::helpers::spawn_app().await;
    let none = plain
        .http
        .get(format!("{}/status", plain.api))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap();
    assert_eq!(none.status(), 404);
}

/// `/metrics` is read by an independent parser: the Python Prometheus client's strict
/// OpenMetrics parser (the format Prometheus asks for first) takes the whole scrape,
/// with its counters, gauges and histograms, and finds the families by type.
#[tokio::test]
async fn the_metrics_scrape_parses_as_openmetrics_by_an_independent_client() {
    let app = spawn_app().await;
    let created = app
        .post("/v1/otp")
        .json(&json!({"msisdn": "0971234568", "purpose": "login"}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    let resp = app
        .http
        .get(format!("{}/metrics", app.api))
        .send()
        .await
        .unwrap();
    let content_type = resp.headers()["content-type"].to_str().unwrap().to_owned();
    assert!(
        content_type.starts_with("application/openmetrics-text; version=1.0.0"),
        "{content_type}"
    );
    let text = resp.text().await.unwrap();
    let script = r#"
import sys
from prometheus_client.openmetrics.parser import text_string_to_metric_families
for f in text_string_to_metric_families(sys.stdin.read()):
    print(f.name, f.type, len(f.samples))
"#;
    let mut child = std::process::Command::new("python3")
        .args(["-c", script])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("python3 runs (.ci/run installs prometheus-client from PyPI)");
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "the parser refused the scrape: {}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    for family in [
        "gateway_http_requests counter",
        "gateway_http_request_duration_seconds histogram",
        "gateway_otp_funnel counter",
        "gateway_smpp_bind_up gauge",
        "gateway_outbox_queued gauge",
    ] {
        assert!(
            stdout.lines().any(|l| l.starts_with(&format!("{family} "))),
            "{family} not parsed from the scrape:\n{stdout}"
        );
    }
}
