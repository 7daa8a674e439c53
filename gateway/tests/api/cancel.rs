//! The portal's cancel reaches the phone: the carrier withdraws the prompt (our
//! MSS_ReceiptReq for the pending transaction), so nobody can sign what the gateway
//! already ended; where a carrier cannot, the portal is told so and the answer given on
//! the phone changes nothing.

use std::time::Duration;

use serde_json::{json, Value};

use crate::helpers::{spawn_app, spawn_app_with, Options, TestApp};

async fn prompts(app: &TestApp, e164: &str) -> Vec<Value> {
    app.sim_json(&format!("/handsets/{e164}/prompts")).await
}

async fn confirm(app: &TestApp, e164: &str, prompt: &str) -> Value {
    app.http
        .post(format!(
            "{}/handsets/{e164}/prompts/{prompt}/confirm",
            app.sim
        ))
        .json(&json!({"pin": "1234"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

async fn pending_prompt(app: &TestApp, e164: &str) -> (String, String) {
    app.put_subscriber(e164, json!({"behaviour": "manual"}))
        .await;
    let created = app
        .request_signature(json!({"msisdn": e164, "purpose": "login"}))
        .await;
    assert_eq!(created["status"], "pending", "{created}");
    let shown = prompts(app, e164).await;
    assert_eq!(shown.len(), 1, "{shown:?}");
    (
        created["id"].as_str().unwrap().to_owned(),
        shown[0]["id"].as_str().unwrap().to_owned(),
    )
}

async fn cancel(app: &TestApp, id: &str) -> Value {
    let resp = app
        .post(&format!("/v1/signatures/{id}/cancel"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    resp.json().await.unwrap()
}

#[tokio::test]
async fn the_portals_cancel_withdraws_the_prompt_from_the_phone_on_every_network() {
    let app = spawn_app().await;
    for e164 in ["84971234567", "84828123088", "84901234567"] {
        let (id, prompt) = pending_prompt(&app, e164).await;
        let canceled = cancel(&app, &id).await;
        assert_eq!(canceled["status"], "canceled", "{canceled}");
        assert!(
            canceled["status_detail"]
                .as_str()
                .unwrap()
                .contains("withdrew the prompt"),
            "{canceled}"
        );
        assert!(prompts(&app, e164).await.is_empty(), "{e164}: prompt gone");
        // The person is too late: there is nothing to sign.
        assert_eq!(
            confirm(&app, e164, &prompt).await,
            json!({"result": "not_pending"})
        );
        assert_eq!(app.signature(&id, 0).await["status"], "canceled");
    }
}

#[tokio::test]
async fn where_the_carrier_cannot_withdraw_a_prompt_its_answer_changes_nothing() {
    let app = spawn_app_with(Options {
        tweak: Some(Box::new(|s| {
            s.mss.get_mut("vinaphone").unwrap().cancel_at_carrier = false;
        })),
        ..Options::default()
    })
    .await;
    let e164 = "84828123088";
    let (id, prompt) = pending_prompt(&app, e164).await;
    let canceled = cancel(&app, &id).await;
    assert_eq!(canceled["status"], "canceled");
    assert!(
        canceled["status_detail"]
            .as_str()
            .unwrap()
            .contains("offers no cancel"),
        "{canceled}"
    );
    // The phone still shows it and the person signs; the gateway keeps what it said.
    assert_eq!(prompts(&app, e164).await.len(), 1);
    assert_eq!(
        confirm(&app, e164, &prompt).await,
        json!({"result": "signed"})
    );
    tokio::time::sleep(Duration::from_secs(1)).await; // a few polls
    let after = app.signature(&id, 0).await;
    assert_eq!(after["status"], "canceled", "{after}");
    assert!(after.get("signature_cms").is_none(), "{after}");
}
