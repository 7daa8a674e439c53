//! Identity as issued in Vietnam: SIM certificates naming a CMND, a passport (HC) or an
//! enterprise's MST with its name; a change of identity re-issues the certificate (the
//! old one revoked); the owner check compares the right kind of number.

use carrier_adapters::signature::crl_status;
use serde_json::{json, Value};
use simulator::registry::IDENTITY_SAMPLES;

use crate::helpers::{spawn_app, TestApp};

async fn check(app: &TestApp, body: Value) -> (u16, Value) {
    let resp = app
        .post("/v1/subscriber-checks")
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn cmnd_passport_and_enterprise_certificates_sign_with_their_identity() {
    let app = spawn_app().await;
    for (e164, person, kind, number, organization) in IDENTITY_SAMPLES {
        let done = app.sign_and_wait(e164).await;
        assert_eq!(done["status"], "signed", "{e164}: {done}");
        let subject = &done["subject"];
        assert_eq!(
            subject["identifiers"],
            json!([{"type": kind.uid_prefix(), "value": number}]),
            "{e164}: {subject}"
        );
        match organization {
            Some(org) => {
                // An enterprise's certificate names the enterprise, not its director.
                assert_eq!(subject["organization"], org, "{subject}");
                assert_eq!(subject["common_name"], org, "{subject}");
            }
            None => {
                assert_eq!(subject["organization"], Value::Null, "{subject}");
                assert_eq!(subject["common_name"], person, "{subject}");
            }
        }
    }
}

#[tokio::test]
async fn a_change_of_identity_reissues_the_certificate_and_revokes_the_old_one() {
    let app = spawn_app().await;
    let viettel = "84971234567";
    let before = app.sign_and_wait(viettel).await;
    assert_eq!(before["status"], "signed", "{before}");
    let old_pem = before["certificate_pem"].as_str().unwrap().to_owned();

    // The card was replaced: a CCCD with another number.
    app.put_subscriber(
        viettel,
        json!({"id_type": "cccd", "id_number": "001099555555"}),
    )
    .await;
    let after = app.sign_and_wait(viettel).await;
    assert_eq!(after["status"], "signed", "{after}");
    assert_ne!(after["serial"], before["serial"], "a new certificate");
    assert_eq!(
        after["subject"]["identifiers"],
        json!([{"type": "CCCD", "value": "001099555555"}])
    );

    // The old certificate is on the CA's CRL now.
    let ca_pem = app
        .http
        .get(format!("{}/ca/viettel.pem", app.sim))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let crl = app
        .http
        .get(format!("{}/ca/viettel.crl", app.sim))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let der = |pem: &str| gateway::mssp::pem_certificates(pem).unwrap().remove(0);
    assert_eq!(
        crl_status(
            &der(&old_pem),
            &der(&ca_pem),
            &crl,
            std::time::SystemTime::now()
        ),
        Ok(true),
        "the superseded certificate is revoked"
    );

    // A record that says one kind and holds another is refused by the simulator.
    let resp = app
        .http
        .put(format!("{}/subscribers/{viettel}", app.sim))
        .json(
            &json!({"full_name": "X", "id_type": "cccd", "id_number": "012345678",
            "date_of_birth": "1990-01-01", "sim_pki": true, "behaviour": "confirm",
            "certificate": "valid"}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 422);
}

#[tokio::test]
async fn the_owner_check_compares_the_right_kind_of_number() {
    let app = spawn_app().await;
    let cmnd = "0981999001";
    let passport = "0911999002";
    let firm = "0931999003";
    let branch = "0981999004";
    let org = "Công ty TNHH Dịch vụ số An Bình (mô phỏng)";
    for (body, expected) in [
        (json!({"msisdn": cmnd, "id_number": "012345678"}), "full"),
        (
            json!({"msisdn": cmnd, "id_type": "cmnd", "id_number": " 012345678 "}),
            "full",
        ),
        (json!({"msisdn": passport, "id_number": "c1234567"}), "full"),
        (
            json!({"msisdn": passport, "id_type": "passport", "id_number": "C7654321"}),
            "none",
        ),
        (
            json!({"msisdn": firm, "id_type": "mst", "id_number": "0101234567", "full_name": org}),
            "full",
        ),
        (
            json!({"msisdn": firm, "id_number": "0101234567", "full_name": "Someone Else Ltd"}),
            "partial",
        ),
        // The head office's MST is not its branch's, nor the other way round.
        (
            json!({"msisdn": firm, "id_number": "0101234567-001"}),
            "none",
        ),
        (
            json!({"msisdn": branch, "id_number": "0101234567001"}),
            "full",
        ),
        (json!({"msisdn": branch, "id_number": "0101234567"}), "none"),
    ] {
        let (status, answer) = check(&app, body.clone()).await;
        assert_eq!(status, 200, "{body}: {answer}");
        assert_eq!(answer["match"], expected, "{body}: {answer}");
    }
    // A CCCD holder is not matched by a CMND of the same digits.
    let demo: Value = app.subscriber("84971234567").await;
    let cccd = demo["id_number"].as_str().unwrap();
    let (_, answer) = check(&app, json!({"msisdn": "0971234567", "id_number": cccd})).await;
    assert_eq!(answer["match"], "full", "{answer}");
    let (_, answer) = check(
        &app,
        json!({"msisdn": "0971234567", "id_type": "cmnd", "id_number": cccd}),
    )
    .await;
    assert_eq!(answer["match"], "none", "{answer}");

    for (body, field) in [
        (
            json!({"msisdn": cmnd, "id_type": "cccd", "id_number": "012345678"}),
            "id_number",
        ),
        (
            json!({"msisdn": cmnd, "id_type": "ssn", "id_number": "012345678"}),
            "id_type",
        ),
        (
            json!({"msisdn": cmnd, "id_number": "12345678901"}),
            "id_number",
        ),
        (
            json!({"msisdn": firm, "id_number": "0101234567", "date_of_birth": "1990-01-01"}),
            "date_of_birth",
        ),
    ] {
        let (status, problem) = check(&app, body.clone()).await;
        assert_eq!(status, 422, "{body}: {problem}");
        assert!(
            problem.to_string().contains(field),
            "{body}: names {field}: {problem}"
        );
    }
}
