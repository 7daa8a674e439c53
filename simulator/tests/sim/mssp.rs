//! The simulated MSSPs answer any ETSI TS 102 204 client, ours or not: faults for bad
//! requests, REQUEST_OK then the result by status query.

use std::time::Duration;

use base64::Engine;
use carrier_adapters::mss::{
    self, ApInfo, Data, MessagingMode, MssMessage, MsspInfo, Operation, PartStyle, SignatureReq,
    SoapContent, SoapVersion, StatusCode, StatusReq,
};
use simulator::SimConfig;
use tokio_util::sync::CancellationToken;

fn request(ap_pwd: &str, mode: MessagingMode, msisdn: &str) -> MssMessage {
    MssMessage::SignatureReq(SignatureReq {
        ap: ApInfo {
            ap_id: "http://dichvucong.gov.vn/ap".into(),
            ap_trans_id: "T1".into(),
            ap_pwd: ap_pwd.into(),
            instant: "2026-11-27T08:00:00Z".into(),
            ap_url: None,
        },
        mssp: MsspInfo {
            mssp_id: "http://mssp.vinaphone.vn".into(),
            instant: None,
        },
        msisdn: msisdn.into(),
        mode,
        timeout_seconds: Some(60),
        data_to_be_signed: Data {
            value: base64::engine::general_purpose::STANDARD.encode(b"abc"),
            mime_type: None,
            encoding: Some("base64".into()),
        },
        data_to_be_displayed: None,
        signature_profile: None,
        mss_format: None,
    })
}

async fn call(url: &str, operation: Operation, message: &MssMessage) -> SoapContent {
    let body = mss::write_envelope(
        SoapVersion::Soap12,
        operation,
        message,
        PartStyle::Qualified,
    );
    let resp = reqwest::Client::new()
        .post(url)
        .header("Content-Type", SoapVersion::Soap12.content_type())
        .body(body)
        .send()
        .await
        .unwrap();
    let bytes = resp.bytes().await.unwrap();
    mss::parse_envelope(&bytes, mss::DEFAULT_MAX_BYTES)
        .unwrap()
        .1
}

fn fault_status(content: &SoapContent) -> StatusCode {
    match content {
        SoapContent::Fault(f) => f.status,
        other => panic!("expected a fault, got {other:?}"),
    }
}

#[tokio::test]
async fn faults_for_bad_requests_and_a_polled_result_for_good_ones() {
    let shutdown = CancellationToken::new();
    let sim = simulator::start(
        SimConfig::ephemeral(Duration::from_millis(20)),
        shutdown.clone(),
    )
    .await
    .unwrap();
    let url = format!("http://{}/mssp/vinaphone", sim.http_addr);
    let wrong_pwd = call(
        &url,
        Operation::Signature,
        &request("nope", MessagingMode::AsynchClientServer, "84828123088"),
    )
    .await;
    assert_eq!(fault_status(&wrong_pwd), StatusCode::UnauthorizedAccess);
    let wrong_mode = call(
        &url,
        Operation::Signature,
        &request("sim-ap-pass", MessagingMode::Synch, "84828123088"),
    )
    .await;
    assert_eq!(fault_status(&wrong_mode), StatusCode::IncompatibleInterface);
    let other_network = call(
        &url,
        Operation::Signature,
        &request(
            "sim-ap-pass",
            MessagingMode::AsynchClientServer,
            "84971234567",
        ),
    )
    .await;
    assert_eq!(fault_status(&other_network), StatusCode::NoKeyFound);
    // Garbage and hostile bodies get a SOAP fault, not a crash: in VinaPhone's SOAP 1.2,
    // a Sender fault, HTTP 400 by the SOAP 1.2 HTTP binding.
    for body in ["", "<x", "<!DOCTYPE x [<!ENTITY a 'b'>]><x>&a;</x>"] {
        let resp = reqwest::Client::new()
            .post(&url)
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 400);
        let bytes = resp.bytes().await.unwrap();
        assert!(matches!(
            mss::parse_envelope(&bytes, mss::DEFAULT_MAX_BYTES)
                .unwrap()
                .1,
            SoapContent::Fault(_)
        ));
    }

    let SoapContent::Message {
        message: MssMessage::SignatureResp(resp),
        ..
    } = call(
        &url,
        Operation::Signature,
        &request(
            "sim-ap-pass",
            MessagingMode::AsynchClientServer,
            "84828123088",
        ),
    )
    .await
    else {
        panic!("expected MSS_SignatureResp");
    };
    assert_eq!(resp.status.code, StatusCode::RequestOk);
    let query = |id: String| {
        MssMessage::StatusReq(StatusReq {
            ap: ApInfo {
                ap_id: "http://dichvucong.gov.vn/ap".into(),
                ap_trans_id: "T2".into(),
                ap_pwd: "sim-ap-pass".into(),
                instant: "2026-11-27T08:00:01Z".into(),
                ap_url: None,
            },
            mssp: MsspInfo {
                mssp_id: "http://mssp.vinaphone.vn".into(),
                instant: None,
            },
            mssp_trans_id: id,
            msisdn: None,
        })
    };
    let unknown = call(&url, Operation::StatusQuery, &query("XX1".into())).await;
    assert_eq!(fault_status(&unknown), StatusCode::WrongParam);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let SoapContent::Message {
            message: MssMessage::StatusResp(status),
            ..
        } = call(
            &url,
            Operation::StatusQuery,
            &query(resp.mssp_trans_id.clone()),
        )
        .await
        else {
            panic!("expected MSS_StatusResp");
        };
        if status.status.code == StatusCode::OutstandingTransaction {
            assert!(std::time::Instant::now() < deadline, "never answered");
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        }
        assert_eq!(status.status.code, StatusCode::Signature);
        assert!(status.signature.is_some());
        break;
    }
    shutdown.cancel();
}
