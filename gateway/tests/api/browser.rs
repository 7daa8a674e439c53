//! End to end in headless Chromium (Debian's `chromium` and `chromium-driver`, driven
//! over WebDriver with fantoccini): the real `gateway demo`, the web handset a person
//! uses, and the gateway's API. Screenshots of each page are saved under
//! `target/test-artifacts/browser/`.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{json, Value};

use crate::binary::{free_port, Running};
use crate::demo::Demo;

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// ChromeDriver on a free port and a headless Chromium session through it.
struct Browser {
    client: Client,
    _driver: Running,
}

impl Browser {
    async fn start() -> Browser {
        assert!(
            std::path::Path::new(CHROMIUM).exists() && std::path::Path::new(CHROMEDRIVER).exists(),
            "the browser tests need Chromium and ChromeDriver: apt-get install chromium chromium-driver"
        );
        let port = free_port();
        let driver = Running(
            Command::new(CHROMEDRIVER)
                .arg(format!("--port={port}"))
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("chromedriver starts"),
        );
        let url = format!("http://127.0.0.1:{port}");
        let started = Instant::now();
        loop {
            if reqwest::get(format!("{url}/status")).await.is_ok() {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "chromedriver did not answer"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            json!({
                "binary": CHROMIUM,
                "args": [
                    "--headless", "--no-sandbox", "--disable-gpu",
                    "--disable-background-networking", "--disable-component-update",
                    "--no-first-run", "--disable-dev-shm-usage", "--window-size=1280,900",
                    "--lang=vi-VN",
                ],
            }),
        );
        let client = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(caps)
            .connect(&url)
            .await
            .expect("a Chromium session");
        Browser {
            client,
            _driver: driver,
        }
    }

    /// Saves what the page shows now as `name`.png among the test artifacts.
    async fn screenshot(&self, name: &str) -> PathBuf {
        let png = self.client.screenshot().await.unwrap();
        assert!(png.starts_with(b"\x89PNG"), "a PNG screenshot");
        let dir = PathBuf::from(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../target/test-artifacts/browser"
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(format!("{name}.png"));
        std::fs::write(&path, png).unwrap();
        path
    }

    /// The text content of the first element matching `css` once `pred` holds of it
    /// (read from the DOM, so that a message the page shows briefly is not missed).
    async fn wait_text(&self, css: &str, what: &str, pred: impl Fn(&str) -> bool) -> String {
        let started = Instant::now();
        loop {
            let text = self
                .client
                .execute(
                    "const e = document.querySelector(arguments[0]); return e ? e.textContent : null;",
                    vec![json!(css)],
                )
                .await;
            if let Ok(Value::String(text)) = text {
                if pred(&text) {
                    return text;
                }
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "waited 30 s for {what} ({css})"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    async fn click(&self, css: &str) {
        self.client
            .find(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("no {css}: {e}"))
            .click()
            .await
            .unwrap();
    }

    async fn close(self) {
        let _ = self.client.close().await;
    }
}

fn api(demo: &Demo, req: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
    req.bearer_auth(&demo.key)
}

#[tokio::test]
async fn a_person_reads_the_sms_and_signs_with_the_pin_on_the_web_handset() {
    let demo = Demo::start().await;
    let browser = Browser::start().await;
    let http = reqwest::Client::new();

    // 1. An OTP by SMS: created through the API, read on the handset page.
    let otp: Value = api(&demo, http.post(format!("{}/v1/otp", demo.api)))
        .json(&json!({"msisdn": "0828123088", "purpose": "login"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let otp_id = otp["id"].as_str().expect("an OTP id").to_owned();
    browser
        .client
        .goto(&format!("{}/", demo.sim))
        .await
        .unwrap();
    browser.click(r#"[data-demo="0828123088"]"#).await;
    let sms = browser
        .wait_text("#inbox .sms .text", "the SMS on the handset", |t| {
            t.contains("Mã OTP")
        })
        .await;
    assert_eq!(
        browser
            .client
            .find(Locator::Css("#bar-number"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap(),
        "0828123088"
    );
    browser.screenshot("1-handset-sms").await;
    // Beside the SMS, the phone's Zalo inbox: a ZNS message sent as any ZNS client does.
    let token: Value = http
        .post(format!("{}/zns/oauth/v4/oa/access_token", demo.sim))
        .header("secret_key", "sim-zalo-app-secret")
        .form(&[
            ("app_id", "1234567890123456789"),
            ("grant_type", "refresh_token"),
            ("refresh_token", "sim-zalo-refresh-token"),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let sent: Value = http
        .post(format!("{}/zns/message/template", demo.sim))
        .header("access_token", token["access_token"].as_str().unwrap())
        .json(&json!({"phone": "0828123088", "template_id": "230001",
            "template_data": {"otp": "777111", "minutes": "5"}}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(sent["error"], 0, "{sent}");
    browser
        .wait_text(
            "#zalo-inbox .sms .text",
            "the Zalo message on the handset",
            |t| t.contains("777111"),
        )
        .await;
    let code: String = sms
        .split(|c: char| !c.is_ascii_digit())
        .find(|w| w.len() >= 4)
        .unwrap_or_else(|| panic!("a code in {sms:?}"))
        .to_owned();
    let check: Value = api(
        &demo,
        http.post(format!("{}/v1/otp/{otp_id}/check", demo.api)),
    )
    .json(&json!({ "code": code }))
    .send()
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    assert_eq!(check["valid"], true, "{check}");
    assert_eq!(check["status"], "approved", "{check}");

    // 2. SIM ký số: the subscriber set to answer by hand on this page, a login request
    // through the API, the PIN typed on the page's pad.
    browser
        .client
        .find(Locator::Css("#behaviour"))
        .await
        .unwrap()
        .select_by_value("manual")
        .await
        .unwrap();
    browser.click("#save-sub").await;
    browser
        .wait_text("#sub-status", "the subscriber saved", |t| {
            t.contains("saved")
        })
        .await;
    let sig: Value = api(&demo, http.post(format!("{}/v1/signatures", demo.api)))
        .json(&json!({
            "msisdn": "0828123088",
            "purpose": "login",
            "display_text": "Xác nhận đăng nhập Cổng Dịch vụ công quốc gia",
        }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let sig_id = sig["id"].as_str().expect("a signature id").to_owned();
    assert_eq!(sig["status"], "pending", "{sig}");
    let title = browser
        .wait_text("#prompt.open #prompt-title", "the PIN prompt", |t| {
            !t.is_empty()
        })
        .await;
    assert_eq!(title, "VINAPHONE — Nhập mã authentication PIN");
    let text = browser
        .client
        .find(Locator::Css("#prompt-text"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        text.contains("Xác nhận đăng nhập Cổng Dịch vụ công quốc gia"),
        "{text}"
    );
    for digit in ["1", "2", "3", "4"] {
        browser
            .click(&format!(r#"#pad button[data-key="{digit}"]"#))
            .await;
    }
    assert_eq!(
        browser
            .client
            .find(Locator::Css("#pin"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap(),
        "••••",
        "the PIN is shown masked"
    );
    browser.screenshot("2-handset-pin-prompt").await;
    browser.click("#ok").await;
    let answer = browser
        .wait_text("#prompt-result", "the handset's answer", |t| !t.is_empty())
        .await;
    assert_eq!(answer, "signed");
    browser.screenshot("3-handset-pin-confirmed").await;

    // The signature, verified by the gateway, with the signer read from the certificate.
    let done: Value = api(
        &demo,
        http.get(format!("{}/v1/signatures/{sig_id}?wait=30", demo.api)),
    )
    .send()
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    assert_eq!(done["status"], "signed", "{done}");
    assert!(done["signature_cms"]
        .as_str()
        .is_some_and(|s| !s.is_empty()));
    assert!(
        done["subject"]["identifiers"]
            .as_array()
            .is_some_and(|ids| ids.iter().any(|i| i["type"] == "CCCD")),
        "{done}"
    );

    // 3. The operators' pages render: the API reference and the status page.
    browser
        .client
        .goto(&format!("{}/docs/", demo.api))
        .await
        .unwrap();
    browser
        .wait_text(".swagger-ui .info .title", "the API reference", |t| {
            t.contains("OTP and SIM-signature gateway")
        })
        .await;
    browser
        .wait_text(".swagger-ui .opblock-tag", "the operations", |t| {
            !t.is_empty()
        })
        .await;
    browser.screenshot("4-api-reference").await;
    let host = demo.api.trim_start_matches("http://");
    browser
        .client
        .goto(&format!("http://operator:{}@{host}/status", demo.admin_key))
        .await
        .unwrap();
    let page = browser
        .wait_text("body", "the status page", |t| t.contains("vinaphone"))
        .await;
    assert!(
        page.contains("082****088"),
        "masked numbers listed:\n{page}"
    );
    assert!(
        !page.contains("0828123088"),
        "no full number on the status page"
    );
    browser.screenshot("5-status-page").await;
    browser.close().await;
}
