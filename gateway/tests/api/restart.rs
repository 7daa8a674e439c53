//! The whole simulator restarts under a live gateway: every MSSP forgets its
//! transactions and hands out ids from 1 again, every SMSC drops its binds. Every
//! request the gateway had still ends right, and what is asked afterwards works.

use std::time::Duration;

use serde_json::json;

use crate::helpers::{spawn_app, wait_for};

#[tokio::test]
async fn the_simulator_restarted_under_a_live_gateway_ends_every_request_right() {
    let mut app = spawn_app().await;
    // Two requests waiting for a person on each network: the MSSPs' ids 1 and 2.
    let waiting = ["84985550401", "84915550402", "84935550403"];
    let mut before = Vec::new();
    for e164 in waiting {
        app.put_subscriber(e164, json!({"behaviour": "manual"}))
            .await;
        for _ in 0..2 {
            let created = app
                .request_signature(json!({"msisdn": e164, "purpose": "login"}))
                .await;
            assert_eq!(created["status"], "pending", "{created}");
            before.push(created["id"].as_str().unwrap().to_owned());
        }
    }

    app.restart_simulator().await;

    // New requests get the ids of live ones again, and sign (the CA is the same CA).
    for e164 in ["84971234567", "84828123088", "84901234567"] {
        let done = app.sign_and_wait(e164).await;
        assert_eq!(done["status"], "signed", "{e164} after the restart: {done}");
        assert_eq!(done["revocation"], "ocsp", "{done}");
    }
    // Each request from before ends as a carrier error saying why, none stays pending
    // and none ends signed: the id reused, or unknown to the carrier when polled.
    for id in &before {
        let ended = wait_for(Duration::from_secs(20), "the old request ends", || async {
            let s = app.signature(id, 2).await;
            if s["status"] == "pending" {
                Err(s.to_string())
            } else {
                Ok(s)
            }
        })
        .await;
        assert_eq!(ended["status"], "carrier_error", "{ended}");
        let detail = ended["status_detail"].as_str().unwrap_or("");
        assert!(
            detail.contains("reused") || detail.contains("unknown MSSP_TransID"),
            "{ended}"
        );
    }
    // SMS went back to work on the new binds too.
    let otp = app.create_otp("0971234567", "login").await;
    let code = app.wait_for_code("84971234567", 1).await;
    assert_eq!(
        app.check(otp["id"].as_str().unwrap(), &code).await["status"],
        "approved"
    );
}
