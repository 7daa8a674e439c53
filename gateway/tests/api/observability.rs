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

    let metrics = app
        .http
        .get(format!("{}/metrics", app.api))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for line in [
        r#"gateway_http_requests_total{method="POST",route="/v1/otp",status="201"} 1"#,
        r#"gateway_http_requests_total{method="GET",route="/v1/otp/{id}",status="200"} 2"#,
        r#"gateway_http_requests_total{method="GET",route="/v1/otp/{id}",status="404"} 1"#,
        r#"gateway_http_request_duration_seconds_count{method="GET",route="/v1/otp/{id}"} 3"#,
    ] {
        assert!(metrics.contains(line), "{line} not in:\n{metrics}");
    }
    // Never the raw path: no OTP id in any label.
    assert!(!metrics.contains(&id));
}
