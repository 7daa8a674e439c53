//! SOAP as the standards say, tried from outside: a client generated from the public
//! ETSI/Kiuru WSDL (zeep) does the whole push + status flow at each simulated MSSP; the
//! MSSPs answer in the SOAP version of the request with the binding's fault statuses;
//! and the gateway reads an MSSP that writes its wrappers unqualified, and reports an
//! unreadable answer as exactly that, unbilled.

use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use base64::Engine;
use carrier_adapters::mss::{self, MssMessage, Operation, SoapContent, SoapVersion, StatusCode};
use carrier_adapters::signature::{verify_cms, verify_pkcs1, TrustStore, Window};
use carrier_adapters::Carrier;
use serde_json::{json, Value};

use crate::helpers::{spawn_app, spawn_app_with, Options};

/// `shared/spec/etsi-ts-102-204` beside the checkout (or above it), or `$ETSI_SPEC_DIR`.
fn etsi_spec_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("ETSI_SPEC_DIR") {
        return dir.into();
    }
    let manifest = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest
        .ancestors()
        .map(|a| a.join("shared/spec/etsi-ts-102-204"))
        .find(|p| p.is_dir())
        .expect("the ETSI test data is in shared/spec beside the checkout; or set ETSI_SPEC_DIR")
}

fn zeep_flow(endpoint: &str, msisdn: &str, mode: &str, format: &str, data: &[u8]) -> Value {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/peers/etsi_zeep_client.py");
    let wsdl = etsi_spec_dir().join("swisscom-mobileid-client-java/etsi204-kiuru.wsdl");
    let out = Command::new("python3")
        .arg(script)
        .arg(wsdl)
        .args([
            endpoint,
            msisdn,
            mode,
            format,
            &base64::engine::general_purpose::STANDARD.encode(data),
        ])
        .output()
        .expect("python3 runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "the zeep client failed (the CI installs zeep==4.3.3):\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("{e}: {stdout}"))
}

#[tokio::test]
async fn a_wsdl_generated_zeep_client_pushes_and_polls_at_every_simulated_mssp() {
    let app = spawn_app().await;
    for (carrier, msisdn, mode, format) in [
        (
            Carrier::Viettel,
            "+84971234567",
            "asynchServerServer",
            mss::FORMAT_PKCS7,
        ),
        (
            Carrier::Vinaphone,
            "+84828123088",
            "asynchClientServer",
            mss::FORMAT_PKCS7,
        ),
        (
            Carrier::Mobifone,
            "+84901234567",
            "asynchClientServer",
            mss::FORMAT_PKCS1,
        ),
    ] {
        let endpoint = format!("{}/mssp/{}", app.sim, carrier.as_str());
        let data = format!("zeep challenge for {carrier}").into_bytes();
        let started = SystemTime::now();
        let result = tokio::task::spawn_blocking({
            let data = data.clone();
            move || zeep_flow(&endpoint, msisdn, mode, format, &data)
        })
        .await
        .unwrap();
        assert_eq!(result["push_status"], 100, "{carrier}: {result}");
        assert_eq!(result["final_status"], 500, "{carrier}: {result}");
        // What zeep read back is a real signature over our data by the carrier's CA.
        let signature = base64::engine::general_purpose::STANDARD
            .decode(result["signature_b64"].as_str().unwrap())
            .unwrap();
        let mssp = app
            .mssps
            .iter()
            .find(|m| m.config.carrier == carrier)
            .unwrap();
        let trust = TrustStore::new(vec![mssp.ca.certificate_der().to_vec()], vec![]).unwrap();
        let window = Window {
            started: started - Duration::from_secs(1),
            now: SystemTime::now(),
        };
        let verified = if format == mss::FORMAT_PKCS7 {
            verify_cms(&signature, &data, &trust, window)
        } else {
            let msisdn = carrier_adapters::Msisdn::parse(msisdn).unwrap();
            let cert = mssp.credential(&msisdn).await.unwrap().unwrap();
            verify_pkcs1(&signature, &cert.cert_der, &data, &trust, window)
        };
        assert!(verified.is_ok(), "{carrier}: {verified:?}");
    }
}

async fn post_soap(url: &str, content_type: &str, body: String) -> (u16, String, String) {
    let resp = reqwest::Client::new()
        .post(url)
        .header("Content-Type", content_type)
        .body(body)
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let ct = resp
        .headers()
        .get("Content-Type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    (status, ct, resp.text().await.unwrap())
}

fn status_query(mssp_trans_id: &str) -> MssMessage {
    MssMessage::StatusReq(mss::StatusReq {
        ap: mss::ApInfo {
            ap_id: "http://dichvucong.gov.vn/ap".into(),
            ap_trans_id: "S1".into(),
            ap_pwd: "sim-ap-pass".into(),
            instant: "2026-12-02T00:00:00Z".into(),
            ap_url: None,
        },
        mssp: mss::MsspInfo {
            mssp_id: "http://mssp.example".into(),
            instant: None,
        },
        mssp_trans_id: mssp_trans_id.into(),
        msisdn: None,
    })
}

#[tokio::test]
async fn simulated_mssps_answer_in_the_version_asked_with_the_bindings_fault_statuses() {
    let app = spawn_app().await;
    for carrier in ["viettel", "vinaphone", "mobifone"] {
        let url = format!("{}/mssp/{carrier}", app.sim);
        for version in [SoapVersion::Soap11, SoapVersion::Soap12] {
            // A query about a transaction the MSSP never had: the sender's fault.
            let body = mss::write_envelope(
                version,
                Operation::StatusQuery,
                &status_query("NO-SUCH-ID"),
                mss::PartStyle::Qualified,
            );
            let (status, ct, text) = post_soap(&url, version.content_type(), body).await;
            let (answered_in, content) =
                mss::parse_envelope(text.as_bytes(), mss::DEFAULT_MAX_BYTES).unwrap();
            assert_eq!(answered_in, version, "{carrier}: {text}");
            assert_eq!(
                SoapVersion::of_content_type(&ct),
                Some(version),
                "{carrier}: {ct}"
            );
            let SoapContent::Fault(fault) = content else {
                panic!("{carrier}: {text}")
            };
            assert_eq!(fault.status, StatusCode::WrongParam);
            let expected = if version == SoapVersion::Soap12 {
                400
            } else {
                500
            };
            assert_eq!(status, expected, "{carrier} {version:?}: {text}");
            if version == SoapVersion::Soap12 {
                assert!(text.contains("soap:Sender"), "{text}");
            }
        }
        // Not even XML: the Content-Type says which SOAP the fault should speak.
        let (status, ct, text) = post_soap(
            &url,
            "application/soap+xml; charset=utf-8",
            "not xml".into(),
        )
        .await;
        assert_eq!(status, 400, "{carrier}: {text}");
        assert!(ct.starts_with("application/soap+xml"), "{ct}");
        let (status, ct, _) = post_soap(&url, "text/xml", "not xml".into()).await;
        assert_eq!(status, 500);
        assert!(ct.starts_with("text/xml"), "{ct}");
    }
}

/// What an MSSP that writes RPC/literal by the WSDL (no namespace on the wrapper, nor on
/// the part) answers to MSS_Signature; or, in `garbage` mode, an HTML error page.
async fn stand_in_mssp(garbage: Arc<AtomicUsize>) -> String {
    use actix_web::{web, App, HttpResponse, HttpServer};
    const RPC_SIGNATURE_RESP: &str = r#"<soap-env:Envelope xmlns:soap-env="http://www.w3.org/2003/05/soap-envelope"><soap-env:Body><MSS_SignatureResponse><MSS_SignatureResp MajorVersion="1" MinorVersion="1" MSSP_TransID="RPC-42"><ns0:AP_Info xmlns:ns0="http://uri.etsi.org/TS102204/v1.1.2#" AP_ID="http://dichvucong.gov.vn/ap" AP_TransID="T1" AP_PWD="x" Instant="2026-12-02T00:00:00Z"/><ns0:MSSP_Info xmlns:ns0="http://uri.etsi.org/TS102204/v1.1.2#"><ns0:MSSP_ID><ns0:URI>http://mssp.vinaphone.sim.vn</ns0:URI></ns0:MSSP_ID></ns0:MSSP_Info><ns0:MobileUser xmlns:ns0="http://uri.etsi.org/TS102204/v1.1.2#"><ns0:MSISDN>84828123088</ns0:MSISDN></ns0:MobileUser><ns0:Status xmlns:ns0="http://uri.etsi.org/TS102204/v1.1.2#"><ns0:StatusCode Value="100"/><ns0:StatusMessage>REQUEST_OK</ns0:StatusMessage></ns0:Status></MSS_SignatureResp></MSS_SignatureResponse></soap-env:Body></soap-env:Envelope>"#;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let server = HttpServer::new(move || {
        let garbage = garbage.clone();
        App::new().default_service(web::to(move || {
            let html = garbage.load(Ordering::SeqCst) > 0;
            async move {
                if html {
                    HttpResponse::Ok()
                        .content_type("text/html")
                        .body("<html><body>502 Bad Gateway</body></html>")
                } else {
                    HttpResponse::Ok()
                        .content_type("application/soap+xml; charset=utf-8")
                        .body(RPC_SIGNATURE_RESP)
                }
            }
        }))
    })
    .workers(1)
    .disable_signals()
    .listen(listener)
    .unwrap()
    .run();
    tokio::spawn(server);
    format!("http://{addr}/mssp")
}

async fn usage_items(app: &crate::helpers::TestApp) -> Vec<(String, i64)> {
    let db = app.pool.get().await.unwrap();
    db.query(
        "SELECT item, count(*) FROM usage_events GROUP BY item ORDER BY item",
        &[],
    )
    .await
    .unwrap()
    .iter()
    .map(|r| (r.get(0), r.get(1)))
    .collect()
}

#[tokio::test]
async fn an_mssp_with_unqualified_wrappers_is_read_and_an_unreadable_one_reported_unbilled() {
    let garbage = Arc::new(AtomicUsize::new(0));
    let endpoint = stand_in_mssp(garbage.clone()).await;
    let app = spawn_app_with(Options {
        tweak: Some(Box::new(move |s| {
            s.mss.get_mut("vinaphone").unwrap().endpoint = endpoint;
        })),
        ..Options::default()
    })
    .await;
    let created = app
        .request_signature(json!({"msisdn": "0828123088", "purpose": "login"}))
        .await;
    assert_eq!(created["status"], "pending", "{created}");
    let db = app.pool.get().await.unwrap();
    let trans: Option<String> = db
        .query_one(
            "SELECT mssp_trans_id FROM signature_requests WHERE id = $1::text::uuid",
            &[&created["id"].as_str().unwrap()],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(trans.as_deref(), Some("RPC-42"));
    assert_eq!(
        usage_items(&app).await,
        vec![("signature_request".into(), 1)]
    );

    garbage.store(1, Ordering::SeqCst);
    let created = app
        .request_signature(json!({"msisdn": "0828123088", "purpose": "login"}))
        .await;
    assert_eq!(created["status"], "carrier_error", "{created}");
    let detail = created["status_detail"].as_str().unwrap();
    assert!(
        detail.contains("answer could not be read") && !detail.contains("reached"),
        "{detail}"
    );
    // The failed push costs nothing and is audited as requested and ended.
    assert_eq!(
        usage_items(&app).await,
        vec![("signature_request".into(), 1)]
    );
    let audited: i64 = db
        .query_one(
            "SELECT count(*) FROM audit_events WHERE subject_id = $1::text::uuid",
            &[&created["id"].as_str().unwrap()],
        )
        .await
        .unwrap()
        .get(0);
    assert!(audited >= 2, "requested and ended: {audited}");
}
