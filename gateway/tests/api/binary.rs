//! The real `gateway` binary: its subcommands, configuration from the environment, the
//! demo's printed walk-through run by a shell exactly as printed, and logs that never
//! carry a code, a key or a full phone number.

use std::io::{BufReader, Read};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::helpers::{base_database_url, extract_code};

const BIN: &str = env!("CARGO_BIN_EXE_gateway");

/// A database for one test, dropped at the end.
pub struct Db {
    pub url: String,
}

impl Db {
    pub fn new() -> Db {
        let base = base_database_url();
        let (prefix, _) = base.rsplit_once('/').unwrap();
        Db {
            url: format!("{prefix}/gw_test_{}", uuid::Uuid::new_v4().simple()),
        }
    }
}

impl Drop for Db {
    fn drop(&mut self) {
        let url = self.url.clone();
        let _ = std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap()
                .block_on(gateway::store::drop_database(&url))
        })
        .join();
    }
}

pub struct Running(pub Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn gateway(db: &Db) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("DATABASE_URL", &db.url)
        .env("RUST_LOG", "info");
    cmd
}

#[tokio::test]
async fn serve_migrate_and_client_add_work_from_the_environment_and_logs_hold_no_secrets() {
    let db = Db::new();
    let out = gateway(&db).arg("migrate").output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Every file of migrations/ is applied the first time.
    let files = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/../migrations"))
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .path()
                .extension()
                .is_some_and(|x| x == "sql")
        })
        .count();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        stdout.contains(&format!("migrations applied: {files}")),
        "{stdout}"
    );
    let out = gateway(&db).arg("migrate").output().unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("migrations applied: 0"));

    // Number portability import: all or nothing.
    let csv = std::env::temp_dir().join(format!("mnp-{}.csv", uuid::Uuid::new_v4().simple()));
    std::fs::write(
        &csv,
        "msisdn,carrier\n0971234567,mobifone\n0828123088,viettel\n",
    )
    .unwrap();
    let out = gateway(&db)
        .arg("mnp")
        .arg("import")
        .arg(&csv)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("ported numbers imported: 2"));
    std::fs::write(&csv, "0901234567,vinaphone\n0901234568,nowhere\n").unwrap();
    let out = gateway(&db)
        .arg("mnp")
        .arg("import")
        .arg(&csv)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("line 2"));
    std::fs::remove_file(&csv).unwrap();

    let out = gateway(&db)
        .args(["client", "add", "--name", "portal"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let key = stdout
        .split_whitespace()
        .find(|w| w.starts_with("gk_"))
        .expect("the key is printed once")
        .to_owned();

    // The client's policy, set and shown by the CLI; a bad value is refused with a reason.
    let out = gateway(&db)
        .args([
            "client",
            "set",
            "--name",
            "portal",
            "--purposes",
            "login,register",
            "--sender",
            "Viettel=UBND-HN",
            "--daily-sms",
            "5000",
            "--rps",
            "default",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = gateway(&db)
        .args(["client", "show", "--name", "portal"])
        .output()
        .unwrap();
    let shown: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        shown["allowed_purposes"],
        serde_json::json!(["login", "register"])
    );
    assert_eq!(
        shown["sender_ids"],
        serde_json::json!({"viettel": "UBND-HN"})
    );
    assert_eq!(shown["daily_sms_quota"], 5000);
    assert_eq!(shown["requests_per_second"], serde_json::Value::Null);
    let out = gateway(&db)
        .args(["client", "set", "--name", "portal", "--daily-sms", "lots"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--daily-sms"));

    // Without a server key, serve refuses to start and says why.
    let out = gateway(&db).arg("serve").output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("GATEWAY__OTP__HMAC_KEY"));
    // Nor without a carrier: no SMSC is taken from the simulator's layout.
    let out = gateway(&db)
        .arg("serve")
        .env(
            "GATEWAY__OTP__HMAC_KEY",
            "a-test-server-key-of-more-than-32-bytes",
        )
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("no [smpp.*] route") && stderr.contains("demo --print-config"),
        "{stderr}"
    );

    let shutdown = tokio_util::sync::CancellationToken::new();
    let sim = simulator::start(
        simulator::SimConfig::ephemeral(Duration::from_millis(20)),
        shutdown.clone(),
    )
    .await
    .unwrap();
    let port = free_port();
    let mut cmd = gateway(&db);
    cmd.arg("serve")
        .env(
            "GATEWAY__OTP__HMAC_KEY",
            "a-test-server-key-of-more-than-32-bytes",
        )
        .env("GATEWAY__SERVER__LISTEN", format!("127.0.0.1:{port}"))
        .env("GATEWAY__OUTBOX__POLL_INTERVAL", "100ms")
        .env("GATEWAY__SERVER__SHUTDOWN_DRAIN", "2s")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    for (name, addr) in &sim.smsc_addrs {
        let upper = name.to_uppercase();
        cmd.env(
            format!("GATEWAY__SMPP__{upper}__PORT"),
            addr.port().to_string(),
        )
        .env(
            format!("GATEWAY__SMPP__{upper}__HOST"),
            addr.ip().to_string(),
        )
        .env(
            format!("GATEWAY__SMPP__{upper}__PASSWORD"),
            simulator::config::DEFAULT_PASSWORD,
        );
    }
    let mut child = Running(cmd.spawn().unwrap());
    let stderr = child.0.stderr.take().unwrap();
    let api = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(r) = http.get(format!("{api}/health")).send().await {
            let body: serde_json::Value = r.json().await.unwrap();
            if body["smpp"]["mobifone"]["bound"] == true {
                break;
            }
        }
        assert!(Instant::now() < deadline, "gateway serve did not come up");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let created: serde_json::Value = http
        .post(format!("{api}/v1/otp"))
        .bearer_auth(&key)
        .header("X-Request-Id", "portal-req-0001")
        .json(&serde_json::json!({"msisdn": "0901234567", "purpose": "login"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = created["id"].as_str().unwrap().to_owned();
    let code = loop {
        let msgs = sim.handsets.messages("84901234567");
        if let Some(m) = msgs.first() {
            break extract_code(&m.text).unwrap();
        }
        assert!(Instant::now() < deadline, "no SMS");
        tokio::time::sleep(Duration::from_millis(30)).await;
    };
    let checked: serde_json::Value = http
        .post(format!("{api}/v1/otp/{id}/check"))
        .bearer_auth(&key)
        .json(&serde_json::json!({"code": code}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(checked["status"], "approved");

    // SIGTERM: a clean stop. For the drain (2 s) it is not ready, and still serves.
    assert_eq!(
        http.get(format!("{api}/readyz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let pid = child.0.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    let started = Instant::now();
    let not_ready = loop {
        let r = http.get(format!("{api}/readyz")).send().await.unwrap();
        if r.status() == 503 {
            break r.json::<serde_json::Value>().await.unwrap();
        }
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "still ready after SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(not_ready["shutting_down"], true, "{not_ready}");
    assert_eq!(not_ready["database"], true, "{not_ready}");
    let during_drain = http
        .post(format!("{api}/v1/otp"))
        .bearer_auth(&key)
        .json(&serde_json::json!({"msisdn": "0901234568", "purpose": "login"}))
        .send()
        .await
        .unwrap();
    assert_eq!(during_drain.status(), 201, "not served during the drain");
    // And its SMS still goes out: the dispatcher stops only after HTTP has.
    let sent = Instant::now();
    while sim.handsets.messages("84901234568").is_empty() {
        assert!(
            sent.elapsed() < Duration::from_secs(10),
            "the OTP accepted during the drain was never sent"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let status = loop {
        if let Some(s) = child.0.try_wait().unwrap() {
            break s;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "serve did not stop on SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "{status:?}");
    let mut logs = String::new();
    BufReader::new(stderr).read_to_string(&mut logs).unwrap();
    assert!(logs.contains("OTP created"), "{logs}");
    // The dispatcher's line for the SMS's submit carries the creating request's id (SMPP
    // has no field for it), with the SMSC's message id, so either finds the other.
    let submitted = logs
        .lines()
        .find(|l| l.contains("sms submitted"))
        .unwrap_or_else(|| panic!("no submit logged:\n{logs}"));
    assert!(submitted.contains("portal-req-0001"), "{submitted}");
    assert!(submitted.contains("message_id="), "{submitted}");
    assert!(
        !logs.contains('\u{1b}'),
        "logs to a pipe are plain text, without colour codes"
    );
    assert!(
        logs.contains("090****567"),
        "numbers are logged masked: {logs}"
    );
    for secret in [
        code.as_str(),
        key.as_str(),
        "0901234567",
        "84901234567",
        "84901234568",
        "a-test-server-key",
    ] {
        assert!(
            !logs.contains(secret),
            "{secret:?} leaked into the logs:\n{logs}"
        );
    }
    // Usage exports as CSV (no prices configured here: amounts are 0).
    let out = gateway(&db)
        .args(["usage", "export", "--format", "csv"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let csv = String::from_utf8_lossy(&out.stdout).into_owned();
    let mut lines = csv.lines();
    assert_eq!(
        lines.next(),
        Some("client,day,carrier,item,events,quantity,amount_vnd")
    );
    let row = lines.next().expect("one usage row");
    assert!(row.starts_with("\"portal\","), "{row}");
    assert!(
        // The OTP before SIGTERM and the one accepted during the drain.
        row.ends_with(",mobifone,otp_sms_segment,2,2,0.0000"),
        "{row}"
    );
    // The audit trail exports as JSON lines.
    let out = gateway(&db).args(["audit", "export"]).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let events: Vec<&str> = lines.iter().map(|e| e["event"].as_str().unwrap()).collect();
    for want in [
        "client.key_added",
        "otp.created",
        "sms.submitted",
        "otp.checked",
    ] {
        assert!(events.contains(&want), "{want} not in {events:?}");
    }
    shutdown.cancel();
}

#[tokio::test]
async fn the_demo_walkthrough_works_by_copy_paste() {
    let demo = crate::demo::Demo::start().await;
    let printed = demo.banner.clone();
    let script = &printed[printed.find("export API=").expect("walk-through printed")..];
    let out = Command::new("bash")
        .arg("-c")
        .arg(script)
        .output()
        .expect("bash runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains(r#""status":"pending""#),
        "script:\n{script}\nstdout:\n{stdout}\nstderr:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("Mã OTP đăng ký Cổng DVC: "), "{stdout}");
    assert!(
        stdout.contains(r#""valid":true,"status":"approved""#),
        "{stdout}"
    );
    assert!(
        stdout.contains(r#""delivery":{"status":"delivered""#),
        "{stdout}"
    );
}

/// A README walk-through (`name`: `sim`, `zalo`), as a user pastes it after the demo's
/// own `export` line.
fn readme_walkthrough(name: &str) -> String {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md"))
        .expect("README.md beside the workspace");
    let start = readme
        .find(&format!("<!-- {name}-walkthrough:start -->"))
        .expect("the walk-through's start marker");
    let end = readme
        .find(&format!("<!-- {name}-walkthrough:end -->"))
        .expect("the walk-through's end marker");
    let block = &readme[start..end];
    let code = &block[block.find("```sh\n").expect("a sh block") + 6..];
    code[..code.find("```").expect("the block ends")].to_owned()
}

/// Runs `script` in bash after the demo's own `export` line, as a user pastes it; its
/// standard output, once it succeeded.
async fn run_after_export(demo: &crate::demo::Demo, script: &str) -> String {
    let export = demo
        .banner
        .lines()
        .find(|l| l.starts_with("export API="))
        .expect("the demo prints its export line")
        .to_owned();
    let full = format!("set -e\n{export}\n{script}");
    let out = tokio::task::spawn_blocking(move || {
        Command::new("bash")
            .arg("-c")
            .arg(&full)
            .output()
            .expect("bash runs")
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

#[tokio::test]
async fn the_readme_zalo_walkthrough_works_by_copy_paste() {
    let demo = crate::demo::Demo::start().await;
    let stdout = run_after_export(&demo, &readme_walkthrough("zalo")).await;
    // The first code came by Zalo and was approved; the SMS was never needed.
    assert!(stdout.contains("Mã xác thực Cổng Dịch vụ công"), "{stdout}");
    assert_eq!(
        stdout
            .matches(r#""valid":true,"status":"approved""#)
            .count(),
        2,
        "{stdout}"
    );
    assert!(
        stdout.contains(r#""channel":"zalo","send":1,"step":0,"state":"delivered""#),
        "{stdout}"
    );
    assert!(
        stdout.contains(
            r#""channel":"sms","send":1,"step":1,"state":"canceled","error":"challenge_approved""#
        ),
        "{stdout}"
    );
    // The second fell back: Zalo refused it, the SMS carried it.
    assert!(
        stdout.contains(r#""state":"failed","error":"zns_-118""#),
        "{stdout}"
    );
    assert!(
        stdout.contains(r#""channel":"sms","send":1,"step":1,"state":"submitted""#),
        "{stdout}"
    );
    // The resend by SMS alone reached the handset.
    assert!(stdout.contains(r#""channels":["sms"]"#), "{stdout}");
    assert!(stdout.contains("Mã OTP đăng nhập Cổng DVC: "), "{stdout}");
}

#[tokio::test]
async fn the_readme_sim_walkthrough_works_by_copy_paste_on_every_run_of_the_demo() {
    let script = readme_walkthrough("sim");
    let mut db = None;
    // The second run is on the first run's database: its simulator starts again from
    // transaction id 1, and the walk-through must still work.
    for run in 1..=2 {
        let demo = match db.take() {
            None => crate::demo::Demo::start().await,
            Some(db) => crate::demo::Demo::start_on(db).await,
        };
        let stdout = run_after_export(&demo, &script).await;
        let signed = stdout.matches(r#""status":"signed""#).count();
        assert_eq!(signed, 2, "run {run}: both signatures signed:\n{stdout}");
        assert!(
            stdout.contains(r#""revocation":"ocsp""#),
            "run {run}: {stdout}"
        );
        assert!(
            stdout.contains(r#""result":"signed""#),
            "run {run}: {stdout}"
        );
        assert!(stdout.contains(r#""match":"full""#), "run {run}: {stdout}");
        db = Some(demo.stop());
    }
}
