//! Revocation is current: the signer's certificate is checked by OCSP at its CA (every
//! answer checked), falling back to the CRL, refused when no status can be had; and
//! both sides are tried against an independent implementation (OpenSSL's `ocsp` client
//! against our simulated responders, our client against OpenSSL's responder).

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, SystemTime};

use carrier_adapters::ocsp::{self, CertState, OcspError, SignedBy};
use serde_json::{json, Value};

use crate::helpers::{spawn_app, spawn_app_with, Options, TestApp};

const NUMBERS: [(&str, &str); 3] = [
    ("84971234567", "viettel"),
    ("84828123088", "vinaphone"),
    ("84901234567", "mobifone"),
];
const VINAPHONE: &str = "84828123088";

fn detail(v: &Value) -> &str {
    v["status_detail"].as_str().unwrap_or("")
}

#[tokio::test]
async fn revoked_two_seconds_before_the_request_is_revoked_on_every_network_every_time() {
    let app = spawn_app().await;
    for (e164, carrier) in NUMBERS {
        let first = app.sign_and_wait(e164).await;
        assert_eq!(first["status"], "signed", "{carrier}: {first}");
        assert_eq!(first["revocation"], "ocsp", "{carrier}: {first}");
        app.put_subscriber(e164, json!({"certificate": "revoked"}))
            .await;
        tokio::time::sleep(Duration::from_secs(2)).await;
        for attempt in 0..2 {
            let again = app.sign_and_wait(e164).await;
            assert_eq!(again["status"], "revoked", "{carrier} #{attempt}: {again}");
            assert!(detail(&again).contains("ocsp"), "{carrier}: {again}");
        }
    }
}

#[tokio::test]
async fn ocsp_answers_that_cannot_be_trusted_fall_back_to_the_crl() {
    let app = spawn_app().await;
    // No status at all (before any CRL was fetched): refused by default, and the
    // detail says why.
    app.set_ca_faults("vinaphone", json!({"ocsp": "down", "crl": "down"}))
        .await;
    let done = app.sign_and_wait(VINAPHONE).await;
    assert_eq!(done["status"], "carrier_error", "{done}");
    let why = detail(&done);
    assert!(why.contains("no revocation status"), "{done}");
    assert!(why.contains("OCSP") && why.contains("CRL"), "{done}");

    // Each answer that cannot be trusted is set aside for the CRL (which, once fetched,
    // stays a valid answer until its nextUpdate or `revocation_cache_max`).
    for (faults, via) in [
        (json!({"ocsp": "delegated"}), "ocsp"),
        (json!({"ocsp": "wrong_signer"}), "crl"),
        (json!({"ocsp": "stale"}), "crl"),
        (json!({"ocsp": "try_later"}), "crl"),
        (json!({"ocsp": "down"}), "crl"),
        (json!({}), "ocsp"),
    ] {
        app.set_ca_faults("vinaphone", faults.clone()).await;
        let done = app.sign_and_wait(VINAPHONE).await;
        assert_eq!(done["status"], "signed", "{faults}: {done}");
        assert_eq!(done["revocation"], via, "{faults}: {done}");
    }

    // The CA's own responder disowns the certificate: refused, not looked up elsewhere.
    app.set_ca_faults("vinaphone", json!({"ocsp": "unknown"}))
        .await;
    let done = app.sign_and_wait(VINAPHONE).await;
    assert_eq!(done["status"], "carrier_error", "{done}");
    assert!(detail(&done).contains("does not know"), "{done}");
}

#[tokio::test]
async fn a_forged_or_replayed_good_answer_does_not_hide_a_revocation() {
    let app = spawn_app().await;
    app.put_subscriber(VINAPHONE, json!({"certificate": "revoked"}))
        .await;
    for mode in ["wrong_signer", "stale"] {
        app.set_ca_faults("vinaphone", json!({"ocsp": mode})).await;
        let done = app.sign_and_wait(VINAPHONE).await;
        assert_eq!(done["status"], "revoked", "{mode}: {done}");
        assert!(detail(&done).contains("crl"), "{mode}: {done}");
    }
}

#[tokio::test]
async fn without_any_status_a_signature_is_accepted_only_where_configured() {
    let app = spawn_app_with(Options {
        tweak: Some(Box::new(|s| {
            s.mss
                .get_mut("vinaphone")
                .unwrap()
                .require_revocation_status = false;
        })),
        ..Options::default()
    })
    .await;
    app.set_ca_faults("vinaphone", json!({"ocsp": "down", "crl": "down"}))
        .await;
    let done = app.sign_and_wait(VINAPHONE).await;
    assert_eq!(done["status"], "signed", "{done}");
    assert_eq!(done["revocation"], "not_checked", "{done}");
    // The other networks keep the default.
    app.set_ca_faults("viettel", json!({"ocsp": "down", "crl": "down"}))
        .await;
    let done = app.sign_and_wait("84971234567").await;
    assert_eq!(done["status"], "carrier_error", "{done}");
}

#[tokio::test]
async fn ocsp_answers_are_reused_only_until_their_next_update_and_the_bound() {
    let bound = Duration::from_secs(3);
    let app = spawn_app_with(Options {
        tweak: Some(Box::new(move |s| {
            s.mss.get_mut("viettel").unwrap().revocation_cache_max = bound;
        })),
        ..Options::default()
    })
    .await;
    let viettel = "84971234567";
    // Answers valid for an hour: reused, but for at most the bound.
    app.set_ca_faults("viettel", json!({"ocsp_next_update": "1h"}))
        .await;
    // The answer is cached between these two instants, so it is reused at least until
    // `asked + bound` and at most until `answered + bound`.
    let asked = std::time::Instant::now();
    assert_eq!(app.sign_and_wait(viettel).await["status"], "signed");
    let answered = std::time::Instant::now();
    app.put_subscriber(viettel, json!({"certificate": "revoked"}))
        .await;
    let cached = app.sign_and_wait(viettel).await;
    if asked.elapsed() < bound {
        assert_eq!(
            cached["status"], "signed",
            "reused within the bound: {cached}"
        );
    }
    tokio::time::sleep((answered + bound + Duration::from_millis(200)) - std::time::Instant::now())
        .await;
    let done = app.sign_and_wait(viettel).await;
    assert_eq!(done["status"], "revoked", "past the bound: {done}");
}

// ---- independent peers: OpenSSL ----

fn openssl(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl runs (the CI installs it)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "openssl {args:?}: {text}");
    text
}

fn scratch(name: &str) -> tempdir::Dir {
    tempdir::Dir::new(name)
}

mod tempdir {
    /// A directory removed when dropped.
    pub struct Dir(pub std::path::PathBuf);
    impl Dir {
        pub fn new(name: &str) -> Dir {
            let p = std::env::temp_dir().join(format!(
                "{name}-{}-{}",
                std::process::id(),
                uuid::Uuid::new_v4().simple()
            ));
            std::fs::create_dir_all(&p).unwrap();
            Dir(p)
        }
    }
    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

async fn text(app: &TestApp, path: &str) -> String {
    app.http
        .get(format!("{}{path}", app.sim))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// `openssl ocsp` asking about `ee.pem` (issued by `ca.pem`) at `url`: what it prints.
fn ask_openssl(dir: &Path, url: &str) -> String {
    let out = Command::new("openssl")
        .args([
            "ocsp", "-issuer", "ca.pem", "-cert", "ee.pem", "-CAfile", "ca.pem", "-url", url,
        ])
        .current_dir(dir)
        .output()
        .expect("openssl runs (the CI installs it)");
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[tokio::test]
async fn openssl_ocsp_trusts_and_agrees_with_every_simulated_responder() {
    let app = spawn_app().await;
    let dir = scratch("ocsp-openssl-client");
    for (e164, carrier) in NUMBERS {
        // MobiFone publishes SIM certificates; the others' come from a signature.
        let signed = app.sign_and_wait(e164).await;
        assert_eq!(signed["status"], "signed", "{signed}");
        let cert = signed["certificate_pem"].as_str().unwrap();
        std::fs::write(dir.0.join("ee.pem"), cert).unwrap();
        std::fs::write(
            dir.0.join("ca.pem"),
            text(&app, &format!("/ca/{carrier}.pem")).await,
        )
        .unwrap();
        let aia = openssl(&dir.0, &["x509", "-in", "ee.pem", "-noout", "-ocsp_uri"]);
        let url = aia.trim().to_owned();
        assert!(url.ends_with(&format!("/ca/{carrier}/ocsp")), "{url}");
        let ask = || {
            let (d, url) = (dir.0.clone(), url.clone());
            async move {
                tokio::task::spawn_blocking(move || ask_openssl(&d, &url))
                    .await
                    .unwrap()
            }
        };
        let good = ask().await;
        assert!(good.contains("Response verify OK"), "{carrier}: {good}");
        assert!(good.contains("ee.pem: good"), "{carrier}: {good}");

        app.set_ca_faults(carrier, json!({"ocsp": "delegated"}))
            .await;
        let delegated = ask().await;
        assert!(
            delegated.contains("Response verify OK"),
            "{carrier}: {delegated}"
        );

        app.set_ca_faults(carrier, json!({"ocsp": "wrong_signer"}))
            .await;
        let forged = ask().await;
        assert!(
            forged.contains("Response Verify Failure"),
            "{carrier}: {forged}"
        );
        app.set_ca_faults(carrier, json!({})).await;

        app.put_subscriber(e164, json!({"certificate": "revoked"}))
            .await;
        let revoked = ask().await;
        assert!(
            revoked.contains("Response verify OK"),
            "{carrier}: {revoked}"
        );
        assert!(revoked.contains("ee.pem: revoked"), "{carrier}: {revoked}");
    }
}

/// An OpenSSL CA with an index of issued certificates and an `openssl ocsp` responder.
struct OpensslCa {
    dir: tempdir::Dir,
    ca_der: Vec<u8>,
    ee_der: Vec<u8>,
    serial: String,
}

impl OpensslCa {
    fn new() -> OpensslCa {
        let dir = scratch("ocsp-openssl-ca");
        let d = &dir.0;
        std::fs::write(
            d.join("ext.cnf"),
            "[ee]\nextendedKeyUsage = clientAuth\n[responder]\nextendedKeyUsage = OCSPSigning\n",
        )
        .unwrap();
        openssl(
            d,
            &[
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-keyout",
                "ca.key",
                "-out",
                "ca.pem",
                "-subj",
                "/C=VN/O=Peer/CN=OpenSSL peer CA",
                "-days",
                "30",
            ],
        );
        openssl(
            d,
            &[
                "req",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-keyout",
                "ee.key",
                "-out",
                "ee.csr",
                "-subj",
                "/C=VN/CN=NGUYEN VAN PEER",
            ],
        );
        openssl(
            d,
            &[
                "x509",
                "-req",
                "-in",
                "ee.csr",
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-set_serial",
                "0x5A17",
                "-days",
                "10",
                "-extfile",
                "ext.cnf",
                "-extensions",
                "ee",
                "-out",
                "ee.pem",
            ],
        );
        openssl(
            d,
            &[
                "req",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-keyout",
                "resp.key",
                "-out",
                "resp.csr",
                "-subj",
                "/C=VN/CN=OpenSSL peer OCSP",
            ],
        );
        openssl(
            d,
            &[
                "x509",
                "-req",
                "-in",
                "resp.csr",
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-set_serial",
                "0x5A18",
                "-days",
                "10",
                "-extfile",
                "ext.cnf",
                "-extensions",
                "responder",
                "-out",
                "resp.pem",
            ],
        );
        // A responder no CA vouches for.
        openssl(
            d,
            &[
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-keyout",
                "rogue.key",
                "-out",
                "rogue.pem",
                "-subj",
                "/C=VN/O=Peer/CN=OpenSSL peer CA",
                "-days",
                "30",
            ],
        );
        for name in ["ca", "ee"] {
            openssl(
                d,
                &[
                    "x509",
                    "-in",
                    &format!("{name}.pem"),
                    "-outform",
                    "DER",
                    "-out",
                    &format!("{name}.der"),
                ],
            );
        }
        OpensslCa {
            ca_der: std::fs::read(d.join("ca.der")).unwrap(),
            ee_der: std::fs::read(d.join("ee.der")).unwrap(),
            serial: "5A17".into(),
            dir,
        }
    }

    /// `openssl ocsp` serving one request on a free port, the EE `V`alid or `R`evoked,
    /// signed by `signer` (`ca`, `resp` or `rogue`).
    fn responder(&self, revoked: bool, signer: &str) -> (Child, String) {
        let d = &self.dir.0;
        let line = if revoked {
            format!(
                "R\t301231000000Z\t261201000000Z\t{}\tunknown\t/C=VN/CN=NGUYEN VAN PEER\n",
                self.serial
            )
        } else {
            format!(
                "V\t301231000000Z\t\t{}\tunknown\t/C=VN/CN=NGUYEN VAN PEER\n",
                self.serial
            )
        };
        std::fs::write(d.join("index.txt"), line).unwrap();
        std::fs::write(d.join("index.txt.attr"), "unique_subject = no\n").unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new("openssl")
            .args([
                "ocsp",
                "-index",
                "index.txt",
                "-port",
                &port.to_string(),
                "-CA",
                "ca.pem",
                "-rsigner",
                &format!("{signer}.pem"),
                "-rkey",
                &format!("{signer}.key"),
                "-nrequest",
                "1",
            ])
            .current_dir(d)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("openssl ocsp starts");
        (child, format!("http://127.0.0.1:{port}"))
    }

    async fn ask(&self, revoked: bool, signer: &str) -> Result<ocsp::Answer, OcspError> {
        let (query, body) = self.fetch(revoked, signer).await;
        ocsp::check(&query, &body, &self.ca_der, SystemTime::now())
    }

    /// A query with a fresh nonce and the responder's answer to it.
    async fn fetch(&self, revoked: bool, signer: &str) -> (ocsp::Query, Vec<u8>) {
        let (mut child, url) = self.responder(revoked, signer);
        let nonce: Vec<u8> = (0..32).map(|_| rand_byte()).collect();
        let query = ocsp::query(&self.ee_der, &self.ca_der, &nonce).unwrap();
        let http = reqwest::Client::new();
        let mut body = None;
        for _ in 0..100 {
            match http
                .post(&url)
                .header("Content-Type", "application/ocsp-request")
                .body(query.der.clone())
                .send()
                .await
            {
                Ok(r) => {
                    body = Some(r.bytes().await.unwrap().to_vec());
                    break;
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
        let _ = child.kill();
        let _ = child.wait();
        (query, body.expect("the OpenSSL responder answers"))
    }
}

fn rand_byte() -> u8 {
    uuid::Uuid::new_v4().as_bytes()[0]
}

#[tokio::test]
async fn our_ocsp_client_reads_and_checks_an_openssl_responder() {
    let ca = OpensslCa::new();
    let good = ca.ask(false, "ca").await.unwrap();
    assert_eq!(good.state, CertState::Good);
    assert_eq!(good.signed_by, SignedBy::Issuer);
    assert!(good.nonce_echoed, "openssl echoes the nonce");

    let revoked = ca.ask(true, "ca").await.unwrap();
    assert!(
        matches!(revoked.state, CertState::Revoked { .. }),
        "{revoked:?}"
    );

    let delegated = ca.ask(true, "resp").await.unwrap();
    assert_eq!(delegated.signed_by, SignedBy::Delegated);
    assert!(matches!(delegated.state, CertState::Revoked { .. }));

    // The answer to another request (another nonce), or altered on the way: refused.
    let (query, body) = ca.fetch(false, "ca").await;
    let other = ocsp::query(&ca.ee_der, &ca.ca_der, &[7; 32]).unwrap();
    assert_eq!(
        ocsp::check(&other, &body, &ca.ca_der, SystemTime::now()).unwrap_err(),
        OcspError::NonceMismatch
    );
    // producedAt, the first GeneralizedTime: its last second digit changed.
    let mut altered = body.clone();
    let at = altered
        .windows(2)
        .position(|w| w == [0x18, 0x0f])
        .expect("producedAt")
        + 2
        + 13;
    altered[at] ^= 0x01;
    assert_eq!(
        ocsp::check(&query, &altered, &ca.ca_der, SystemTime::now()).unwrap_err(),
        OcspError::BadSignature
    );
    // Checked by a clock a day behind, its thisUpdate lies in the future: refused.
    let a_day_ago = SystemTime::now() - Duration::from_secs(86_400);
    assert_eq!(
        ocsp::check(&query, &body, &ca.ca_der, a_day_ago).unwrap_err(),
        OcspError::NotYetValid
    );

    // Same name as the CA, another key: refused, whatever it says.
    let forged = ca.ask(false, "rogue").await.unwrap_err();
    assert!(
        matches!(
            forged,
            OcspError::BadSignature | OcspError::UnauthorisedSigner(_)
        ),
        "{forged:?}"
    );
}
