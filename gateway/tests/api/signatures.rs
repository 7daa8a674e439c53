//! SIM ký số end to end: HTTP → dialect adapter → simulated MSSP → callback or poll →
//! verification → GET, for every outcome, and the attacks a callback endpoint sees.

use std::time::{Duration, SystemTime};

use base64::Engine;
use carrier_adapters::mss::{
    self, dialect, ApInfo, MssMessage, MsspInfo, Operation, Status, StatusCode, StatusResp,
};
use carrier_adapters::signature::{verify_cms, TrustStore, Window};
use carrier_adapters::{Carrier, Msisdn};
use serde_json::{json, Value};
use simulator::pki::{generate_key, Lifetime, SimCa, SimCredential, SubjectInfo};

use crate::helpers::{spawn_app, webhook_receiver, webhook_receiver_with, TestApp};

const VIETTEL: &str = "84971234567";
const VINAPHONE: &str = "84828123088";
const MOBIFONE: &str = "84901234567";

impl TestApp {
    pub(crate) async fn put_subscriber(&self, e164: &str, changes: Value) {
        let mut body: Value = self
            .http
            .get(format!("{}/subscribers/{e164}", self.sim))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap_or_else(|_| json!({}));
        if body.get("full_name").is_none() {
            body = json!({
                "full_name": "Phạm Thị Hồng", "id_number": "001190000001", "date_of_birth": "1990-05-06",
                "sim_pki": true, "behaviour": "confirm", "certificate": "valid"
            });
        }
        let obj = body.as_object_mut().unwrap();
        obj.remove("msisdn");
        obj.remove("carrier");
        for (k, v) in changes.as_object().unwrap() {
            obj.insert(k.clone(), v.clone());
        }
        self.put_sim(&format!("/subscribers/{e164}"), &body).await;
    }

    pub(crate) async fn subscriber(&self, e164: &str) -> Value {
        self.sim_json(&format!("/subscribers/{e164}")).await
    }

    pub(crate) async fn request_signature(&self, body: Value) -> Value {
        let resp = self
            .post("/v1/signatures")
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 202, "{:?}", resp.text().await);
        resp.json().await.unwrap()
    }

    pub(crate) async fn signature(&self, id: &str, wait: u64) -> Value {
        self.get(&format!("/v1/signatures/{id}?wait={wait}"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    pub(crate) async fn sign_and_wait(&self, msisdn: &str) -> Value {
        let created = self
            .request_signature(json!({"msisdn": msisdn, "purpose": "login"}))
            .await;
        self.signature(created["id"].as_str().unwrap(), 20).await
    }

    fn trust_for(&self, carrier: Carrier) -> TrustStore {
        let mssp = self
            .mssps
            .iter()
            .find(|m| m.config.carrier == carrier)
            .unwrap();
        TrustStore::new(
            vec![mssp.ca.certificate_der().to_vec()],
            vec![mssp.ca.crl_der().unwrap()],
        )
        .unwrap()
    }
}

#[tokio::test]
async fn each_carrier_signs_and_the_identity_comes_from_the_certificate() {
    let app = spawn_app().await;
    for (e164, carrier, ca) in [
        (VIETTEL, Carrier::Viettel, "Viettel-CA SIM (simulated)"),
        (VINAPHONE, Carrier::Vinaphone, "VNPT-CA SIM (simulated)"),
        (MOBIFONE, Carrier::Mobifone, "MobiFone-CA (simulated)"),
    ] {
        let owner = app.subscriber(e164).await;
        let data = b"portal challenge 42";
        let created = app
            .request_signature(json!({
                "msisdn": e164, "purpose": "register",
                "data_to_sign": base64::engine::general_purpose::STANDARD.encode(data),
                "display_text": "Xác nhận đăng ký tài khoản",
            }))
            .await;
        assert_eq!(created["status"], "pending");
        assert_eq!(created["carrier"], carrier.as_str());
        let id = created["id"].as_str().unwrap();
        let done = app.signature(id, 20).await;
        assert_eq!(done["status"], "signed", "{carrier}: {done}");
        assert_eq!(
            done["subject"]["common_name"], owner["full_name"],
            "{carrier}"
        );
        assert_eq!(
            done["subject"]["identifiers"],
            json!([{"type": "CCCD", "value": owner["id_number"]}])
        );
        assert_eq!(done["issuer"]["common_name"], ca);
        assert!(done["certificate_pem"]
            .as_str()
            .unwrap()
            .starts_with("-----BEGIN CERTIFICATE-----"));
        for field in ["not_before", "not_after", "serial", "signed_at"] {
            assert!(done[field].is_string(), "{field} missing: {done}");
        }
        // The CMS we hand out verifies on its own, over exactly the portal's data.
        let cms = base64::engine::general_purpose::STANDARD
            .decode(done["signature_cms"].as_str().unwrap())
            .unwrap();
        let window = Window {
            started: SystemTime::now() - Duration::from_secs(120),
            now: SystemTime::now(),
        };
        verify_cms(&cms, data, &app.trust_for(carrier), window).unwrap();
        assert!(verify_cms(&cms, b"other", &app.trust_for(carrier), window).is_err());
    }
}

#[tokio::test]
async fn every_outcome_reaches_the_portal() {
    let app = spawn_app().await;
    // (number on a polled carrier, number on the callback carrier) per scripted outcome.
    let cases: [(Value, &str); 7] = [
        (json!({"behaviour": "cancel"}), "user_cancel"),
        (json!({"behaviour": "wrong_pin"}), "pin_blocked"),
        (json!({"behaviour": "card_blocked"}), "card_blocked"),
        (json!({"sim_pki": false}), "no_key"),
        (json!({"certificate": "none"}), "no_cert"),
        (json!({"certificate": "revoked"}), "revoked"),
        (json!({"certificate": "expired"}), "invalid_signature"),
    ];
    for (i, (changes, want)) in cases.into_iter().enumerate() {
        for prefix in ["8491", "8498", "8493"] {
            let e164 = format!("{prefix}55500{i:02}");
            app.put_subscriber(&e164, changes.clone()).await;
            let done = app.sign_and_wait(&e164).await;
            assert_eq!(done["status"], want, "{e164} {changes}: {done}");
            assert!(
                done.get("signature_cms").is_none(),
                "nothing stored as signed: {done}"
            );
            if want == "invalid_signature" {
                assert!(
                    done["status_detail"].as_str().unwrap().contains("expired"),
                    "{done}"
                );
            }
        }
    }
    // A number the carrier does not know.
    let done = app.sign_and_wait("0981110000").await;
    assert_eq!(done["status"], "no_key");
    let db = app.pool.get().await.unwrap();
    let signed: i64 = db
        .query_one(
            "SELECT count(*) FROM signature_requests WHERE signature_cms IS NOT NULL",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(signed, 0);
}

#[tokio::test]
async fn unanswered_requests_expire_on_every_carrier() {
    let app = spawn_app().await;
    let mut ids = Vec::new();
    for e164 in ["84985550100", "84915550100"] {
        app.put_subscriber(e164, json!({"behaviour": "timeout"}))
            .await;
        let created = app
            .request_signature(json!({"msisdn": e164, "purpose": "login", "timeout_seconds": 30}))
            .await;
        ids.push(created["id"].as_str().unwrap().to_owned());
    }
    // Let the time run out without waiting for it.
    let db = app.pool.get().await.unwrap();
    db.execute(
        "UPDATE signature_requests SET expires_at = now() - interval '5 seconds', next_poll_at = now()",
        &[],
    )
    .await
    .unwrap();
    for id in ids {
        let done = app.signature(&id, 10).await;
        assert_eq!(done["status"], "expired", "{done}");
    }
}

#[tokio::test]
async fn a_person_answers_on_the_handset() {
    let app = spawn_app().await;
    let e164 = "84915550200";
    app.put_subscriber(e164, json!({"behaviour": "manual", "pin": "2468"}))
        .await;
    let created = app
        .request_signature(json!({"msisdn": e164, "purpose": "add_method"}))
        .await;
    let id = created["id"].as_str().unwrap();
    let prompts: Value = app.sim_json(&format!("/handsets/{e164}/prompts")).await;
    assert_eq!(prompts.as_array().unwrap().len(), 1, "{prompts}");
    assert_eq!(
        prompts[0]["text"],
        "Xác nhận thêm phương thức xác thực Cổng Dịch vụ công"
    );
    let prompt = prompts[0]["id"].as_str().unwrap();
    let answer = |pin: &str| {
        app.http
            .post(format!(
                "{}/handsets/{e164}/prompts/{prompt}/confirm",
                app.sim
            ))
            .json(&json!({ "pin": pin }))
            .send()
    };
    let wrong: Value = answer("1111").await.unwrap().json().await.unwrap();
    assert_eq!(wrong, json!({"result": "wrong_pin", "tries_left": 2}));
    assert_eq!(app.signature(id, 0).await["status"], "pending");
    let right: Value = answer("2468").await.unwrap().json().await.unwrap();
    assert_eq!(right, json!({"result": "signed"}));
    assert_eq!(app.signature(id, 20).await["status"], "signed");
}

#[tokio::test]
async fn the_portal_can_cancel_and_other_clients_cannot_see() {
    let app = spawn_app().await;
    let e164 = "84985550300";
    app.put_subscriber(e164, json!({"behaviour": "manual"}))
        .await;
    let id = app
        .request_signature(json!({"msisdn": e164, "purpose": "login"}))
        .await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let other = gateway::clients::add(&app.pool, "other-portal")
        .await
        .unwrap()
        .key;
    let peek = app
        .http
        .get(format!("{}/v1/signatures/{id}", app.api))
        .bearer_auth(&other)
        .send()
        .await
        .unwrap();
    assert_eq!(peek.status(), 404);
    let cancel = app
        .post(&format!("/v1/signatures/{id}/cancel"))
        .send()
        .await
        .unwrap();
    assert_eq!(cancel.status(), 200);
    assert_eq!(cancel.json::<Value>().await.unwrap()["status"], "canceled");
    let again = app
        .post(&format!("/v1/signatures/{id}/cancel"))
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 409);
}

#[tokio::test]
async fn a_callback_landing_on_another_instance_completes_the_request() {
    let a = spawn_app().await;
    // B pushes the request but gives the carrier A's address to call back.
    let b = a.second_instance(&a.api).await;
    let created: Value = a
        .http
        .post(format!("{}/v1/signatures", b.api))
        .bearer_auth(&a.key)
        .json(&json!({"msisdn": VIETTEL, "purpose": "login"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = created["id"].as_str().unwrap();
    // B's long-poll is woken by A's commit (LISTEN/NOTIFY).
    let done: Value = a
        .http
        .get(format!("{}/v1/signatures/{id}?wait=20", b.api))
        .bearer_auth(&a.key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(done["status"], "signed", "{done}");
    let db = a.pool.get().await.unwrap();
    let callbacks: i64 = db
        .query_one("SELECT count(*) FROM mss_callbacks", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(callbacks, 1, "the result came by callback, to A");
}

/// A signed callback as the Viettel MSSP would send it.
struct Forger<'a> {
    app: &'a TestApp,
}

impl Forger<'_> {
    fn body(
        &self,
        ap_trans_id: &str,
        mssp_trans_id: &str,
        signature: Option<Vec<u8>>,
        code: StatusCode,
    ) -> String {
        mss::write_envelope(
            mss::SoapVersion::Soap11,
            Operation::Notification,
            &MssMessage::StatusResp(StatusResp {
                ap: ApInfo {
                    ap_id: "http://dichvucong.gov.vn/ap".into(),
                    ap_trans_id: ap_trans_id.into(),
                    ap_pwd: "sim-ap-pass".into(),
                    instant: "2026-11-27T08:00:00Z".into(),
                    ap_url: None,
                },
                mssp: MsspInfo {
                    mssp_id: "http://mssp.viettel.sim.vn".into(),
                    instant: None,
                },
                msisdn: VIETTEL.into(),
                mssp_trans_id: Some(mssp_trans_id.into()),
                signature,
                status: Status::new(code),
            }),
            mss::PartStyle::Unqualified,
        )
    }

    async fn send(&self, body: &str, secret: &str, age: i64) -> reqwest::Response {
        let ts = chrono::Utc::now().timestamp() - age;
        let sig = dialect::callback_signature(secret.as_bytes(), ts, body.as_bytes());
        self.app
            .http
            .post(format!("{}/carriers/viettel/mss", self.app.api))
            .header("Content-Type", "text/xml; charset=utf-8")
            .header(dialect::CALLBACK_TIMESTAMP_HEADER, ts.to_string())
            .header(dialect::CALLBACK_SIGNATURE_HEADER, sig)
            .body(body.to_owned())
            .send()
            .await
            .unwrap()
    }

    /// A pending request on a manual Viettel subscriber: (id, AP_TransID, MSSP_TransID, data).
    async fn pending(&self) -> (String, String, String, Vec<u8>) {
        let created = self
            .app
            .request_signature(json!({"msisdn": VIETTEL, "purpose": "login"}))
            .await;
        let id = created["id"].as_str().unwrap().to_owned();
        let db = self.app.pool.get().await.unwrap();
        let row = db
            .query_one(
                "SELECT ap_trans_id, mssp_trans_id, data_to_sign FROM signature_requests WHERE id = $1::text::uuid",
                &[&id],
            )
            .await
            .unwrap();
        (id, row.get(0), row.get(1), row.get(2))
    }
}

const SECRET: &str = "sim-callback-viettel";

#[tokio::test]
async fn forged_replayed_tampered_and_hostile_callbacks_are_refused() {
    let app = spawn_app().await;
    app.put_subscriber(VIETTEL, json!({"behaviour": "manual"}))
        .await;
    let forger = Forger { app: &app };
    let mssp = app
        .mssps
        .iter()
        .find(|m| m.config.carrier == Carrier::Viettel)
        .unwrap()
        .clone();
    let sim_credential = mssp
        .credential(&Msisdn::parse(VIETTEL).unwrap())
        .await
        .unwrap()
        .unwrap();

    // 1. Wrong secret, stale timestamp, no headers: 401 and nothing changes.
    let (id, ap, ms, data) = forger.pending().await;
    let good = forger.body(
        &ap,
        &ms,
        Some(sim_credential.sign_cms(&data).unwrap()),
        StatusCode::Signature,
    );
    for (secret, age) in [("not-the-secret", 0), (SECRET, 3600)] {
        let resp = forger.send(&good, secret, age).await;
        assert_eq!(resp.status(), 401);
        let fault = resp.text().await.unwrap();
        assert!(fault.contains("_104"), "{fault}");
    }
    let bare = app
        .http
        .post(format!("{}/carriers/viettel/mss", app.api))
        .body(good.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(bare.status(), 401);
    assert_eq!(app.signature(&id, 0).await["status"], "pending");

    // 2. Hostile and malformed XML with a valid HMAC: a SOAP fault, nothing stored.
    let bomb = format!(
        r#"<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaa"><!ENTITY b "&a;&a;&a;">]><x>&b;</x>{}"#,
        ""
    );
    for body in [bomb.as_str(), "<soap:Envelope>", "not xml at all"] {
        let resp = forger.send(body, SECRET, 0).await;
        assert_eq!(resp.status(), 400, "{body}");
    }
    let oversize = format!("<x>{}</x>", "a".repeat(300 * 1024));
    assert_eq!(forger.send(&oversize, SECRET, 0).await.status(), 413);
    assert_eq!(
        forger
            .send(
                &forger.body("Tunknown", &ms, None, StatusCode::Signature),
                SECRET,
                0
            )
            .await
            .status(),
        400
    );
    assert_eq!(app.signature(&id, 0).await["status"], "pending");

    // 3. A real SIM signature over other data: refused.
    let other = forger.body(
        &ap,
        &ms,
        Some(sim_credential.sign_cms(b"other data").unwrap()),
        StatusCode::Signature,
    );
    assert_eq!(forger.send(&other, SECRET, 0).await.status(), 200);
    let done = app.signature(&id, 0).await;
    assert_eq!(done["status"], "invalid_signature", "{done}");
    assert!(done.get("signature_cms").is_none());

    // 4. The right data signed under an unknown CA.
    let (id, ap, ms, data) = forger.pending().await;
    let rogue_ca = SimCa::new(
        "Viettel-CA SIM (simulated)",
        "Rogue",
        generate_key().unwrap(),
    )
    .unwrap();
    let key = generate_key().unwrap();
    let subject = SubjectInfo {
        full_name: "Kẻ Giả Mạo".into(),
        identifiers: vec![("CCCD".into(), "001099999999".into())],
        province: None,
        organization: None,
    };
    let cert = rogue_ca.issue(&subject, &key, Lifetime::Current).unwrap();
    let rogue = SimCredential::new(key, cert);
    let body = forger.body(
        &ap,
        &ms,
        Some(rogue.sign_cms(&data).unwrap()),
        StatusCode::Signature,
    );
    assert_eq!(forger.send(&body, SECRET, 0).await.status(), 200);
    let done = app.signature(&id, 0).await;
    assert_eq!(done["status"], "invalid_signature", "{done}");
    assert!(
        done["status_detail"]
            .as_str()
            .unwrap()
            .contains("trusted CA"),
        "{done}"
    );

    // 5. A tampered signature.
    let (id, ap, ms, data) = forger.pending().await;
    let mut cms = sim_credential.sign_cms(&data).unwrap();
    let n = cms.len();
    cms[n - 2] ^= 0x55;
    let body = forger.body(&ap, &ms, Some(cms), StatusCode::Signature);
    assert_eq!(forger.send(&body, SECRET, 0).await.status(), 200);
    assert_eq!(app.signature(&id, 0).await["status"], "invalid_signature");

    // 6. The genuine result, then the same callback replayed: applied once.
    let (id, ap, ms, data) = forger.pending().await;
    let body = forger.body(
        &ap,
        &ms,
        Some(sim_credential.sign_cms(&data).unwrap()),
        StatusCode::Signature,
    );
    let first = forger.send(&body, SECRET, 0).await;
    assert_eq!(first.status(), 200);
    assert!(first.text().await.unwrap().contains("MSS_ReceiptReq"));
    let signed = app.signature(&id, 0).await;
    assert_eq!(signed["status"], "signed");
    let replay = forger.send(&body, SECRET, 0).await;
    assert_eq!(replay.status(), 200);
    let after = app.signature(&id, 0).await;
    assert_eq!(
        after["ended_at"], signed["ended_at"],
        "a replay changes nothing"
    );
    // A forged ending for a finished request cannot overwrite it either.
    let late = forger.body(&ap, &ms, None, StatusCode::UserCancel);
    assert_eq!(forger.send(&late, SECRET, 0).await.status(), 200);
    assert_eq!(app.signature(&id, 0).await["status"], "signed");
}

/// A number with a Viettel prefix ported to VinaPhone keeps its SIM ký số there: its
/// signature is pushed to VinaPhone's MSSP and signed with VNPT-CA's certificate, and its
/// owner check asks VinaPhone. Before the porting record reaches the gateway, Viettel's
/// MSSP does not know the number.
#[tokio::test]
async fn a_ported_number_signs_and_is_checked_at_its_new_network() {
    let app = spawn_app().await;
    let ported = "84971112233";
    let resp = app
        .http
        .put(format!("{}/ported/{ported}", app.sim))
        .json(&json!({"carrier": "vinaphone"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    app.put_subscriber(
        ported,
        json!({"full_name": "Trần Văn Chuyển", "id_number": "001099000777"}),
    )
    .await;
    let by_prefix = app
        .request_signature(json!({"msisdn": ported, "purpose": "login"}))
        .await;
    assert_eq!(by_prefix["carrier"], "viettel");
    let ended = app.signature(by_prefix["id"].as_str().unwrap(), 20).await;
    assert_ne!(
        ended["status"], "signed",
        "Viettel signed for a number it lost: {ended}"
    );

    let rows = gateway::mnp::read_csv("msisdn,carrier\n0971112233,vinaphone\n".as_bytes()).unwrap();
    assert_eq!(gateway::mnp::import(&app.pool, &rows).await.unwrap(), 1);
    let done = app.sign_and_wait(ported).await;
    assert_eq!(done["carrier"], "vinaphone", "{done}");
    assert_eq!(done["status"], "signed", "{done}");
    assert_eq!(done["issuer"]["common_name"], "VNPT-CA SIM (simulated)");
    assert_eq!(
        done["subject"]["identifiers"],
        json!([{"type": "CCCD", "value": "001099000777"}])
    );
    let answer: Value = app
        .post("/v1/subscriber-checks")
        .json(&json!({"msisdn": ported, "id_number": "001099000777"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(answer, json!({"match": "full", "carrier": "vinaphone"}));
    // Its old network's other numbers still sign at Viettel.
    assert_eq!(app.sign_and_wait(VIETTEL).await["carrier"], "viettel");
}

/// Viettel's MSSP restarts under a live gateway: its transaction ids start from 1 again.
/// A new request that gets the id of a finished one is created and signed as any other
/// (it was a 500, a duplicate key, before); one that gets the id of a request still
/// pending takes it, and the older one, which the carrier no longer knows, ends
/// `carrier_error` saying so. The finished request keeps its result.
#[tokio::test]
async fn a_carrier_that_reuses_its_transaction_ids_breaks_nothing() {
    let app = spawn_app().await;
    let (waiting, signer) = ("84971230077", "84971230078");
    app.put_subscriber(
        waiting,
        json!({"behaviour": "manual", "id_number": "001099000771"}),
    )
    .await;
    app.put_subscriber(signer, json!({"id_number": "001099000772"}))
        .await;
    let first = app.sign_and_wait(VIETTEL).await;
    assert_eq!(first["status"], "signed", "{first}");
    let pending = app
        .request_signature(json!({"msisdn": waiting, "purpose": "login", "timeout_seconds": 120}))
        .await;
    let pending_id = pending["id"].as_str().unwrap().to_owned();
    let db = app.pool.get().await.unwrap();
    let carrier_ids = || async {
        db.query(
            "SELECT id::text, mssp_trans_id FROM signature_requests ORDER BY created_at",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect::<Vec<(String, String)>>()
    };
    let mssp_ids = carrier_ids().await;
    assert_eq!(mssp_ids.len(), 2, "{mssp_ids:?}");

    app.mssps
        .iter()
        .find(|m| m.config.carrier == Carrier::Viettel)
        .unwrap()
        .restart();
    // Gets the finished request's id.
    let again = app.sign_and_wait(signer).await;
    assert_eq!(again["status"], "signed", "{again}");
    // Gets the pending request's id.
    let third = app.sign_and_wait(VIETTEL).await;
    assert_eq!(third["status"], "signed", "{third}");
    let reused = carrier_ids().await;
    assert_eq!(
        reused[2].1, mssp_ids[0].1,
        "the MSSP did not reuse its first id"
    );
    assert_eq!(
        reused[3].1, mssp_ids[1].1,
        "the MSSP did not reuse its second id"
    );
    let old = app.signature(&pending_id, 0).await;
    assert_eq!(old["status"], "carrier_error", "{old}");
    assert!(
        old["status_detail"]
            .as_str()
            .is_some_and(|d| d.contains("reused")),
        "{old}"
    );
    let first_again = app.signature(first["id"].as_str().unwrap(), 0).await;
    assert_eq!(first_again["status"], "signed");
    assert_eq!(first_again["ended_at"], first["ended_at"]);
}

#[tokio::test]
async fn owner_checks_answer_only_the_match() {
    let app = spawn_app().await;
    let owner = app.subscriber(VINAPHONE).await;
    let id = owner["id_number"].as_str().unwrap();
    let name = owner["full_name"].as_str().unwrap();
    let dob = owner["date_of_birth"].as_str().unwrap();
    let check = |body: Value| app.post("/v1/subscriber-checks").json(&body).send();
    let cases = [
        (
            json!({"msisdn": "0828123088", "id_number": id, "full_name": name, "date_of_birth": dob}),
            "full",
        ),
        (
            json!({"msisdn": "0828123088", "id_number": id, "full_name": "Someone Else"}),
            "partial",
        ),
        (
            json!({"msisdn": "0828123088", "id_number": "001099000000"}),
            "none",
        ),
        (
            json!({"msisdn": "0881119999", "id_number": id}),
            "unknown_subscriber",
        ),
    ];
    for (body, want) in cases {
        let resp = check(body.clone()).await.unwrap();
        assert_eq!(resp.status(), 200, "{body}");
        let answer: Value = resp.json().await.unwrap();
        assert_eq!(
            answer,
            json!({"match": want, "carrier": "vinaphone"}),
            "{body}"
        );
    }
    for (body, status) in [
        (json!({"msisdn": "0828123088", "id_number": "12ab"}), 422),
        (
            json!({"msisdn": "0828123088", "id_number": id, "date_of_birth": "06/05/1990"}),
            422,
        ),
        (json!({"msisdn": "0991234567", "id_number": id}), 422),
        (json!({"msisdn": "+14155550000", "id_number": id}), 422),
        (json!({"msisdn": "0828123088"}), 400),
    ] {
        let resp = check(body.clone()).await.unwrap();
        assert_eq!(resp.status().as_u16(), status, "{body}");
        assert_eq!(resp.headers()["content-type"], "application/problem+json");
    }
}

#[tokio::test]
async fn bad_signature_requests_get_problem_json_and_write_nothing() {
    let app = spawn_app().await;
    let long = "x".repeat(161);
    let cases: Vec<(Value, u16, &str)> = vec![
        (
            json!({"msisdn": "0971234567", "purpose": "pay"}),
            422,
            "invalid-field",
        ),
        (
            json!({"msisdn": "0971234567", "purpose": "login", "display_text": long}),
            422,
            "invalid-field",
        ),
        (
            json!({"msisdn": "0971234567", "purpose": "login", "data_to_sign": "%%%"}),
            422,
            "invalid-field",
        ),
        (
            json!({"msisdn": "0971234567", "purpose": "login", "timeout_seconds": 29}),
            422,
            "invalid-field",
        ),
        (
            json!({"msisdn": "0971234567", "purpose": "login", "timeout_seconds": 301}),
            422,
            "invalid-field",
        ),
        (
            json!({"msisdn": "0971234567", "purpose": "login", "callback_url": "ftp://x/y"}),
            422,
            "invalid-field",
        ),
        (
            json!({"msisdn": "0991234567", "purpose": "login"}),
            422,
            "invalid-field",
        ),
        (
            json!({"msisdn": "024 3825 1234", "purpose": "login"}),
            422,
            "invalid-msisdn",
        ),
        (json!({"msisdn": "0971234567"}), 400, "malformed-json"),
    ];
    for (body, status, kind) in cases {
        let resp = app.post("/v1/signatures").json(&body).send().await.unwrap();
        assert_eq!(resp.status().as_u16(), status, "{body}");
        let problem: Value = resp.json().await.unwrap();
        assert_eq!(problem["type"], format!("/problems/{kind}"), "{body}");
    }
    assert_eq!(app.count("signature_requests").await, 0);
    let resp = app
        .get(&format!("/v1/signatures/{}?wait=61", uuid::Uuid::new_v4()))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 422);
}

/// A portal endpoint that records webhooks and answers with the statuses it is given.
/// What a webhook receiver saw: headers, body, when.
#[tokio::test]
async fn webhooks_are_signed_retried_and_disabled_on_410() {
    let app = spawn_app().await;
    // First delivery fails with 500, the retry succeeds.
    let (url, seen) = webhook_receiver(vec![500]).await;
    let created = app
        .request_signature(json!({"msisdn": VINAPHONE, "purpose": "login", "callback_url": url}))
        .await;
    let id = created["id"].as_str().unwrap().to_owned();
    assert_eq!(app.signature(&id, 20).await["status"], "signed");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while seen.lock().unwrap().len() < 2 {
        assert!(std::time::Instant::now() < deadline, "webhook not retried");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (headers, body, _) = seen.lock().unwrap()[1].clone();
    let hid = headers.get("webhook-id").unwrap().to_str().unwrap();
    let ts: i64 = headers
        .get("webhook-timestamp")
        .unwrap()
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    let sig = headers.get("webhook-signature").unwrap().to_str().unwrap();
    assert_eq!(
        sig,
        gateway::webhooks::sign(&app.webhook_secret, hid, ts, &body).unwrap()
    );
    assert_eq!(
        seen.lock().unwrap()[0].0.get("webhook-id").unwrap(),
        hid,
        "the retry is the same message"
    );
    let payload: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(payload["type"], "signature.completed");
    assert_eq!(payload["data"]["id"], id);
    assert_eq!(payload["data"]["status"], "signed");

    // 410 Gone: the endpoint is disabled and gets nothing more.
    let (gone_url, gone_seen) = webhook_receiver(vec![410]).await;
    let db = app.pool.get().await.unwrap();
    let wait_disabled = |want: i64| {
        let db = &db;
        async move {
            let deadline = std::time::Instant::now() + Duration::from_secs(10);
            loop {
                let disabled: i64 = db
                    .query_one(
                        "SELECT count(*) FROM webhook_deliveries WHERE status = 'disabled'",
                        &[],
                    )
                    .await
                    .unwrap()
                    .get(0);
                if disabled >= want {
                    return;
                }
                assert!(
                    std::time::Instant::now() < deadline,
                    "{disabled} of {want} disabled"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };
    for n in 1..=2 {
        let created = app
            .request_signature(
                json!({"msisdn": VINAPHONE, "purpose": "login", "callback_url": gone_url}),
            )
            .await;
        app.signature(created["id"].as_str().unwrap(), 20).await;
        // The first delivery meets 410 and disables the URL; the second is not sent.
        wait_disabled(n).await;
    }
    assert_eq!(gone_seen.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn webhooks_wait_for_retry_after_and_stop_when_the_receiver_refuses() {
    let app = spawn_app().await;
    // 429 asking for 2 s (the test schedule would retry after 0.2 s), then 200.
    let (url, seen) = webhook_receiver_with(vec![(429, Some("2"))]).await;
    let created = app
        .request_signature(json!({"msisdn": VINAPHONE, "purpose": "login", "callback_url": url}))
        .await;
    assert_eq!(
        app.signature(created["id"].as_str().unwrap(), 20).await["status"],
        "signed"
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while seen.lock().unwrap().len() < 2 {
        assert!(std::time::Instant::now() < deadline, "webhook not retried");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let times: Vec<_> = seen.lock().unwrap().iter().map(|s| s.2).collect();
    assert!(
        times[1] - times[0] >= Duration::from_secs(2),
        "retried after {:?}, before the receiver's Retry-After",
        times[1] - times[0]
    );

    // 400: the receiver refuses this delivery; it is not sent again.
    let (url, seen) = webhook_receiver(vec![400]).await;
    let created = app
        .request_signature(json!({"msisdn": VINAPHONE, "purpose": "login", "callback_url": url}))
        .await;
    assert_eq!(
        app.signature(created["id"].as_str().unwrap(), 20).await["status"],
        "signed"
    );
    tokio::time::sleep(Duration::from_secs(2)).await; // ten retry periods of the test schedule
    assert_eq!(
        seen.lock().unwrap().len(),
        1,
        "a refused delivery was retried"
    );
    let db = app.pool.get().await.unwrap();
    let row = db
        .query_one(
            "SELECT status, last_status, attempts FROM webhook_deliveries WHERE url = $1",
            &[&url],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "failed");
    assert_eq!(row.get::<_, Option<i32>>(1), Some(400));
    assert_eq!(row.get::<_, i32>(2), 1);
}
