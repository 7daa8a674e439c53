//! The Zalo client against the simulated ZNS: tokens refreshed once for all instances
//! and kept (sealed) across restarts, refusals by their meaning, outages as such.

use std::collections::BTreeMap;
use std::sync::Arc;

use carrier_adapters::zns::{Delivery, Refusal, SendRequest};
use gateway::crypto::ServerKeys;
use gateway::zalo::{ZaloClient, ZaloError};
use serde_json::json;

use crate::helpers::{spawn_app, wait_for, TestApp};

fn keys(app: &TestApp) -> ServerKeys {
    ServerKeys::from_secret(app.settings.otp.hmac_key.as_ref().unwrap()).unwrap()
}

fn client(app: &TestApp) -> ZaloClient {
    ZaloClient::new(
        app.settings.zalo.clone().expect("the simulator's ZNS"),
        app.pool.clone(),
        Arc::new(keys(app)),
    )
    .unwrap()
}

/// Ends the stored access token now, as time would: the next instance must refresh.
async fn expire_access_token(app: &TestApp) {
    app.pool
        .get()
        .await
        .unwrap()
        .execute("UPDATE zalo_tokens SET access_expires_at = now()", &[])
        .await
        .unwrap();
}

fn otp(phone: &str, tracking: &str) -> SendRequest {
    SendRequest {
        phone: phone.into(),
        template_id: "230001".into(),
        template_data: BTreeMap::from([
            ("otp".to_owned(), "482913".to_owned()),
            ("minutes".to_owned(), "5".to_owned()),
        ]),
        tracking_id: tracking.into(),
    }
}

#[tokio::test]
async fn instances_share_one_refresh_and_a_restart_goes_on_from_the_last_token() {
    let app = spawn_app().await;
    // Two instances, sending at once from cold: the single-use refresh token is spent
    // once, and every send goes through.
    let (a, b) = (Arc::new(client(&app)), Arc::new(client(&app)));
    let sends = (0..8).map(|i| {
        let c = if i % 2 == 0 { a.clone() } else { b.clone() };
        tokio::spawn(async move { c.send(&otp("84971234567", &format!("t{i}"))).await })
    });
    for send in futures::future::join_all(sends).await {
        let accepted = send.unwrap().expect("sent");
        assert!(!accepted.msg_id.is_empty());
    }
    // The configured refresh token is spent now; a restarted instance whose access
    // token has run out refreshes with the one Zalo gave last, from the database.
    expire_access_token(&app).await;
    let restarted = client(&app);
    let accepted = restarted
        .send(&otp("84971234567", "after-restart"))
        .await
        .unwrap();
    let delivered = wait_for(
        std::time::Duration::from_secs(5),
        "the message in the Zalo app",
        || async {
            match restarted.status(&accepted.msg_id, "84971234567").await {
                Ok(d @ Delivery::Received { .. }) => Ok(d),
                other => Err(format!("{other:?}")),
            }
        },
    )
    .await;
    assert!(matches!(delivered, Delivery::Received { at: Some(_) }));
    let inbox: Vec<serde_json::Value> = app.sim_json("/handsets/84971234567/zalo").await;
    assert_eq!(inbox.len(), 9);

    // The tokens are sealed at rest.
    let db = app.pool.get().await.unwrap();
    let row = db
        .query_one(
            "SELECT access_token_sealed, refresh_token_sealed FROM zalo_tokens",
            &[],
        )
        .await
        .unwrap();
    for col in 0..2 {
        let sealed: Vec<u8> = row.get(col);
        assert!(!String::from_utf8_lossy(&sealed).contains("sim-zalo"));
    }
}

#[tokio::test]
async fn refusals_keep_their_meaning_and_an_outage_is_not_a_refusal() {
    let app = spawn_app().await;
    let c = client(&app);
    app.put_sim("/zns/users/0971234599", &json!({"zalo": false}))
        .await;
    match c.send(&otp("84971234599", "no-zalo")).await {
        Err(ZaloError::Refused(r @ Refusal::NoZaloAccount { .. })) => assert!(r.is_final()),
        other => panic!("{other:?}"),
    }
    let mut pending = otp("84971234567", "pending-template");
    pending.template_id = "230002".into();
    assert!(matches!(
        c.send(&pending).await,
        Err(ZaloError::Refused(Refusal::Template { .. }))
    ));
    // Zalo revokes the tokens: Zalo's answer is given, and a token it gave moments ago
    // is not refreshed again and again (each refresh would spend one).
    let refreshed = || async {
        let db = app.pool.get().await.unwrap();
        let at: chrono::DateTime<chrono::Utc> = db
            .query_one("SELECT refreshed_at FROM zalo_tokens", &[])
            .await
            .unwrap()
            .get(0);
        at
    };
    let before = refreshed().await;
    app.put_sim("/zns/faults", &json!({"revoke_tokens": true}))
        .await;
    for i in 0..3 {
        assert!(matches!(
            c.send(&otp("84971234567", &format!("revoked-{i}"))).await,
            Err(ZaloError::Refused(Refusal::AccessToken { .. }))
        ));
    }
    assert_eq!(refreshed().await, before, "refreshed during the revocation");
    app.put_sim("/zns/faults", &json!({"unavailable": true}))
        .await;
    assert!(matches!(
        c.send(&otp("84971234567", "down")).await,
        Err(ZaloError::Unavailable(_))
    ));
    // Back: the refresh token kept through all that still works (the access token run
    // out, a restarted instance must refresh with it).
    app.put_sim("/zns/faults", &json!({})).await;
    expire_access_token(&app).await;
    client(&app)
        .send(&otp("84971234567", "back"))
        .await
        .unwrap();
}

/// Zalo refuses the stored refresh token (spent elsewhere, or its commit lost): nothing
/// is sent until an operator configures a new one, which then takes over, once. An
/// instance still configured with the old one does not bring it back.
#[tokio::test]
async fn a_new_refresh_token_in_the_configuration_takes_over_once() {
    let app = spawn_app().await;
    let keys = keys(&app);
    let old = client(&app);
    old.send(&otp("84971234567", "first")).await.unwrap();
    // Someone spends the stored refresh token: take it out as the gateway sealed it.
    let zalo = app.settings.zalo.clone().unwrap();
    let db = app.pool.get().await.unwrap();
    let sealed: Vec<u8> = db
        .query_one("SELECT refresh_token_sealed FROM zalo_tokens", &[])
        .await
        .unwrap()
        .get(0);
    let stored = keys
        .open(&sealed, &format!("zalo_tokens:{}:refresh", zalo.app_id))
        .unwrap();
    let refresh = |token: String| {
        let zalo = zalo.clone();
        async move {
            let tokens: serde_json::Value = reqwest::Client::new()
                .post(format!("{}/v4/oa/access_token", zalo.oauth_base))
                .header(
                    "secret_key",
                    secrecy::ExposeSecret::expose_secret(&zalo.secret_key),
                )
                .form(&carrier_adapters::zns::refresh_form(&zalo.app_id, &token))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            tokens["refresh_token"].as_str().unwrap().to_owned()
        }
    };
    let operators = refresh(stored).await;
    expire_access_token(&app).await;
    let restarted = client(&app);
    assert!(matches!(
        restarted.send(&otp("84971234567", "refused")).await,
        Err(ZaloError::RefreshRefused(_))
    ));
    // The operator's new token.
    let mut settings = app.settings.zalo.clone().unwrap();
    settings.refresh_token = secrecy::SecretString::from(operators);
    let keys = Arc::new(keys);
    let new = ZaloClient::new(settings, app.pool.clone(), keys.clone()).unwrap();
    new.send(&otp("84971234567", "taken over")).await.unwrap();
    // An instance still configured with the first token uses the chain, after the
    // access token has run out too.
    expire_access_token(&app).await;
    client(&app)
        .send(&otp("84971234567", "old configuration"))
        .await
        .unwrap();
    new.send(&otp("84971234567", "and again")).await.unwrap();
}
