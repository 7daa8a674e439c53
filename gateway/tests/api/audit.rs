//! The audit trail: events of every step, masked numbers, no secrets, and a table the
//! database refuses to change.

use serde_json::{json, Value};

use crate::helpers::spawn_app;

#[tokio::test]
async fn security_events_are_recorded_masked_and_cannot_be_changed() {
    let app = spawn_app().await;
    let id = app.create_otp("0828123088", "login").await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let code = app.wait_for_code("84828123088", 1).await;
    let wrong = if code == "000000" { "111111" } else { "000000" };
    app.check(&id, wrong).await;
    app.check(&id, &code).await;
    app.create_otp("0971234567", "register").await;
    let resp = app
        .post("/v1/subscriber-checks")
        .json(&json!({"msisdn": "0828123088", "id_number": "001099000000"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    // Let the outbox record its submits.
    app.wait_for_code("84971234567", 1).await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let db = app.pool.get().await.unwrap();
        let n: i64 = db
            .query_one(
                "SELECT count(*) FROM audit_events WHERE event = 'sms.submitted'",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        if n >= 2 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "submits not recorded");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }

    let events = app.audit_event_names().await;
    for want in ["otp.created", "sms.submitted", "otp.checked", "owner_check"] {
        assert!(
            events.iter().any(|e| e == want),
            "{want} missing from {events:?}"
        );
    }
    // Filtered by number: only that number's events, masked.
    let one: Value = app
        .get("/v1/audit?msisdn=%2B84%20828%20123%20088")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let list = one["events"].as_array().unwrap();
    assert!(list.len() >= 4, "{one}");
    assert!(
        list.iter().all(|e| e["msisdn_masked"] == "082****088"),
        "{one}"
    );
    let checked: Vec<&Value> = list
        .iter()
        .filter(|e| e["event"] == "otp.checked")
        .collect();
    assert_eq!(checked.len(), 2);
    assert_eq!(checked[0]["detail"]["valid"], false);
    assert_eq!(checked[1]["detail"]["status"], "approved");
    // No secret and no full number anywhere in the table.
    let db = app.pool.get().await.unwrap();
    let rows = db
        .query("SELECT row_to_json(a)::text FROM audit_events a", &[])
        .await
        .unwrap();
    for row in rows {
        let text: String = row.get(0);
        for secret in [code.as_str(), "0828123088", "84828123088", app.key.as_str()] {
            assert!(!text.contains(secret), "{secret} in {text}");
        }
    }
    // Append-only, enforced by the database.
    for sql in [
        "UPDATE audit_events SET event = 'x'",
        "DELETE FROM audit_events",
        "TRUNCATE audit_events",
    ] {
        let err = db.execute(sql, &[]).await.unwrap_err();
        assert!(
            err.to_string().contains("append-only") || format!("{err:?}").contains("append-only"),
            "{sql}: {err:?}"
        );
    }
    // Another client sees none of it.
    let other = gateway::clients::add(&app.pool, "other").await.unwrap().key;
    let theirs: Value = app
        .http
        .get(format!("{}/v1/audit", app.api))
        .bearer_auth(&other)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let theirs = theirs["events"].as_array().unwrap();
    assert_eq!(theirs.len(), 1, "only its own key creation: {theirs:?}");
    assert_eq!(theirs[0]["event"], "client.key_added");
    let bad = app.get("/v1/audit?from=yesterday").send().await.unwrap();
    assert_eq!(bad.status(), 422);
}
