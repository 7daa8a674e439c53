//! `spawn_app()`: a fresh database, the real simulator and the real gateway on port 0.
//! Logs are shown only when `TEST_LOG` is set.

use std::sync::{Arc, Mutex, Once};
use std::time::{Duration, Instant};

use gateway::config::Settings;
use gateway::startup::Application;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

static TRACING: Once = Once::new();

pub fn base_database_url() -> String {
    std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

/// The same server as `DATABASE_URL`, another database.
fn database_url(name: &str) -> String {
    let base = base_database_url();
    let (prefix, _) = base
        .rsplit_once('/')
        .expect("DATABASE_URL has a database name");
    format!("{prefix}/{name}")
}

pub struct TestApp {
    pub api: String,
    pub sim: String,
    pub key: String,
    pub webhook_secret: String,
    /// The settings this instance runs with (for a second instance on the same database).
    pub settings: Settings,
    pub mssps: Vec<std::sync::Arc<simulator::mssp::Mssp>>,
    pub http: reqwest::Client,
    pub pool: deadpool_postgres::Pool,
    pub db_url: String,
    shutdown: CancellationToken,
    sim_shutdown: CancellationToken,
    simulator: Option<simulator::RunningSimulator>,
}

pub type SettingsTweak = Box<dyn FnOnce(&mut Settings) + Send>;

pub struct Options {
    pub resend_interval: Duration,
    /// Last changes to the settings (e.g. a second instance on the same database).
    pub tweak: Option<SettingsTweak>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            resend_interval: Duration::from_secs(30),
            tweak: None,
        }
    }
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(Options::default()).await
}

pub async fn spawn_app_with(options: Options) -> TestApp {
    TRACING.call_once(|| {
        if std::env::var_os("TEST_LOG").is_some() {
            gateway::telemetry::init("text", "info");
        }
    });
    let sim_shutdown = CancellationToken::new();
    let sim = simulator::start(
        simulator::SimConfig::ephemeral(Duration::from_millis(50)),
        sim_shutdown.clone(),
    )
    .await
    .expect("simulator starts");

    let db_name = format!("gw_test_{}", uuid::Uuid::new_v4().simple());
    let db_url = database_url(&db_name);
    let mut settings = Settings::default();
    settings.database.url = db_url.clone();
    settings.database.pool_size = 8;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    settings.signatures.public_base_url = format!("http://{}", listener.local_addr().unwrap());
    settings.signatures.poll_min = Duration::from_millis(100);
    settings.signatures.poll_max = Duration::from_millis(400);
    settings.signatures.expiry_grace = Duration::from_secs(1);
    settings.webhooks.poll_interval = Duration::from_millis(100);
    settings.webhooks.retry_schedule = vec![Duration::from_millis(200).into(); 3];
    settings.server.workers = 1;
    settings.otp.hmac_key = Some(gateway::crypto::generate_server_key().unwrap());
    settings.otp.resend_interval = options.resend_interval;
    settings.outbox.poll_interval = Duration::from_millis(100);
    settings.use_simulator(&sim);
    if let Some(tweak) = options.tweak {
        tweak(&mut settings);
    }
    let kept_settings = settings.clone();
    let app = Application::build_with_listener(settings, listener)
        .await
        .expect("gateway builds");
    let pool = app.pool.clone();
    let api = format!("http://{}", app.addr());
    let shutdown = app.shutdown_token();
    tokio::spawn(app.run_until_stopped());
    let client = gateway::clients::add(&pool, "test-portal").await.unwrap();
    let key = client.key.clone();

    let test_app = TestApp {
        api,
        sim: format!("http://{}", sim.http_addr),
        key,
        webhook_secret: client.webhook_secret.clone(),
        settings: kept_settings,
        mssps: sim.mssps.clone(),
        http: reqwest::Client::new(),
        pool,
        db_url,
        shutdown,
        sim_shutdown,
        simulator: Some(sim),
    };
    test_app.wait_bound().await;
    test_app
}

/// Another gateway instance on the same database and simulator.
pub struct SecondInstance {
    pub api: String,
    shutdown: CancellationToken,
}

impl Drop for SecondInstance {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

impl TestApp {
    pub async fn second_instance(&self, public_base_url: &str) -> SecondInstance {
        let mut settings = self.settings.clone();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        settings.signatures.public_base_url = public_base_url.to_owned();
        let app = Application::build_with_listener(settings, listener)
            .await
            .expect("second instance builds");
        let api = format!("http://{}", app.addr());
        let shutdown = app.shutdown_token();
        tokio::spawn(app.run_until_stopped());
        SecondInstance { api, shutdown }
    }

    async fn wait_bound(&self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let health: Value = self.get_json(&format!("{}/health", self.api)).await;
            let all_bound = health["smpp"]
                .as_object()
                .is_some_and(|m| !m.is_empty() && m.values().all(|b| b["bound"] == true));
            if all_bound {
                return;
            }
            assert!(Instant::now() < deadline, "binds not up: {health}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn post(&self, path: &str) -> reqwest::RequestBuilder {
        self.http
            .post(format!("{}{path}", self.api))
            .bearer_auth(&self.key)
    }

    pub fn get(&self, path: &str) -> reqwest::RequestBuilder {
        self.http
            .get(format!("{}{path}", self.api))
            .bearer_auth(&self.key)
    }

    pub fn delete(&self, path: &str) -> reqwest::RequestBuilder {
        self.http
            .delete(format!("{}{path}", self.api))
            .bearer_auth(&self.key)
    }

    /// The `/metrics` page, as text.
    pub async fn metrics_text(&self) -> String {
        self.http
            .get(format!("{}/metrics", self.api))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// Stops the whole simulator (every SMSC and MSSP forgets everything: transactions,
    /// ids, issued certificates, the registry's changes) and starts it again on the same
    /// addresses, under the running gateway.
    pub async fn restart_simulator(&mut self) {
        self.sim_shutdown.cancel();
        let old = self.simulator.take().expect("a simulator runs");
        let http = old.http_addr;
        let smscs = old.smsc_addrs.clone();
        old.stopped().await;
        let mut config = simulator::SimConfig::ephemeral(Duration::from_millis(50));
        config.http.listen = http;
        for smsc in &mut config.smsc {
            if let Some((_, addr)) = smscs.iter().find(|(name, _)| *name == smsc.name) {
                smsc.listen = *addr;
            }
        }
        self.sim_shutdown = CancellationToken::new();
        let sim = simulator::start(config, self.sim_shutdown.clone())
            .await
            .expect("the simulator starts again on its addresses");
        self.mssps = sim.mssps.clone();
        self.simulator = Some(sim);
    }

    /// PUTs JSON to the simulator's HTTP API; it must answer 200.
    pub async fn put_sim(&self, path: &str, body: &Value) -> Value {
        let resp = self
            .http
            .put(format!("{}{path}", self.sim))
            .json(body)
            .send()
            .await
            .unwrap();
        let status = resp.status();
        let text = resp.text().await.unwrap();
        assert_eq!(status, 200, "PUT {path}: {text}");
        serde_json::from_str(&text).unwrap_or(Value::Null)
    }

    /// Sets the simulator's faults of one SMSC (`{}` clears them).
    pub async fn set_faults(&self, smsc: &str, faults: Value) {
        self.put_sim(&format!("/smsc/{smsc}/faults"), &faults).await;
    }

    /// Sets the fault switches of one carrier's simulated CA (`{}` clears them).
    pub async fn set_ca_faults(&self, carrier: &str, faults: Value) {
        self.put_sim(&format!("/ca/{carrier}/faults"), &faults)
            .await;
    }

    /// `/v1/health/carriers` for one route.
    pub async fn route_health(&self, route: &str) -> Value {
        let health: Value = self
            .get_json(&format!("{}/v1/health/carriers", self.api))
            .await;
        health["routes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["route"] == route)
            .unwrap_or_else(|| panic!("no route {route}: {health}"))
            .clone()
    }

    /// Creates an OTP and returns the 201 body.
    pub async fn create_otp(&self, msisdn: &str, purpose: &str) -> Value {
        let resp = self
            .post("/v1/otp")
            .json(&serde_json::json!({ "msisdn": msisdn, "purpose": purpose }))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 201, "{:?}", resp.text().await);
        resp.json().await.unwrap()
    }

    pub async fn check(&self, id: &str, code: &str) -> Value {
        let resp = self
            .post(&format!("/v1/otp/{id}/check"))
            .json(&serde_json::json!({ "code": code }))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        resp.json().await.unwrap()
    }

    /// GETs a JSON document from `url`, whatever the status.
    pub async fn get_json<T: serde::de::DeserializeOwned>(&self, url: &str) -> T {
        self.http
            .get(url)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap_or_else(|e| panic!("GET {url}: {e}"))
    }

    /// GETs a JSON document from the gateway's API, with the test client's key.
    pub async fn api_json<T: serde::de::DeserializeOwned>(&self, path: &str) -> T {
        self.get(path)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap_or_else(|e| panic!("GET {path}: {e}"))
    }

    /// GETs a JSON document from the simulator's HTTP API.
    pub async fn sim_json<T: serde::de::DeserializeOwned>(&self, path: &str) -> T {
        self.get_json(&format!("{}{path}", self.sim)).await
    }

    pub async fn handset(&self, e164: &str) -> Vec<Value> {
        self.sim_json(&format!("/handsets/{e164}/messages")).await
    }

    /// Waits until the handset holds `count` messages and returns the code in the last.
    pub async fn wait_for_code(&self, e164: &str, count: usize) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let messages = self.handset(e164).await;
            if messages.len() >= count {
                let text = messages[count - 1]["text"].as_str().unwrap().to_owned();
                return extract_code(&text).unwrap_or_else(|| panic!("no code in {text:?}"));
            }
            assert!(
                Instant::now() < deadline,
                "handset {e164} has {} of {count} messages",
                messages.len()
            );
            tokio::time::sleep(Duration::from_millis(30)).await;
        }
    }

    /// This client's audit events (all, or those named `event`), oldest first.
    pub async fn audit_events(&self, event: Option<&str>) -> Vec<Value> {
        let body: Value = self
            .get("/v1/audit")
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        body["events"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| event.is_none_or(|name| e["event"] == name))
            .cloned()
            .collect()
    }

    /// The names of this client's audit events, oldest first.
    pub async fn audit_event_names(&self) -> Vec<String> {
        self.audit_events(None)
            .await
            .iter()
            .map(|e| e["event"].as_str().unwrap().to_owned())
            .collect()
    }

    pub async fn count(&self, table: &str) -> i64 {
        let db = self.pool.get().await.unwrap();
        db.query_one(&format!("SELECT count(*) FROM {table}"), &[])
            .await
            .unwrap()
            .get(0)
    }
}

/// Asks `check` every 100 ms until it gives `Some`, and returns that; fails saying
/// `what` (and the last `Err`) after `within`.
pub async fn wait_for<T, F, Fut>(within: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, String>>,
{
    let deadline = Instant::now() + within;
    loop {
        match check().await {
            Ok(v) => return v,
            Err(last) => assert!(Instant::now() < deadline, "{what}: {last}"),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The code is the only run of 4+ digits after "DVC: " / "code: ".
pub fn extract_code(text: &str) -> Option<String> {
    let start = text.find(": ")? + 2;
    let code: String = text[start..]
        .chars()
        .take_while(|c| c.is_ascii_digit())
        .collect();
    (code.len() >= 4).then_some(code)
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.shutdown.cancel();
        self.sim_shutdown.cancel();
        let url = self.db_url.clone();
        // Drop runs inside the test's runtime: use a thread with its own runtime.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                if let Err(e) = gateway::store::drop_database(&url).await {
                    eprintln!("could not drop test database: {e}");
                }
            });
        })
        .join();
    }
}

/// A webhook receiver on port 0 that records what it is sent.
pub type Seen = Arc<
    Mutex<
        Vec<(
            actix_web::http::header::HeaderMap,
            String,
            std::time::Instant,
        )>,
    >,
>;

/// A receiver answering `statuses` in turn (then 200).
pub async fn webhook_receiver(statuses: Vec<u16>) -> (String, Seen) {
    webhook_receiver_with(statuses.into_iter().map(|s| (s, None)).collect()).await
}

/// A receiver answering each `(status, Retry-After)` in turn (then 200).
pub async fn webhook_receiver_with(answers: Vec<(u16, Option<&'static str>)>) -> (String, Seen) {
    use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
    let seen: Seen = Arc::default();
    let queue = Arc::new(Mutex::new(answers));
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let seen2 = seen.clone();
    let server = HttpServer::new(move || {
        let seen = seen2.clone();
        let queue = queue.clone();
        App::new().default_service(web::to(move |req: HttpRequest, body: String| {
            let seen = seen.clone();
            let queue = queue.clone();
            async move {
                seen.lock()
                    .unwrap()
                    .push((req.headers().clone(), body, std::time::Instant::now()));
                let mut q = queue.lock().unwrap();
                let (status, retry_after) = if q.is_empty() {
                    (200, None)
                } else {
                    q.remove(0)
                };
                let mut resp =
                    HttpResponse::build(actix_web::http::StatusCode::from_u16(status).unwrap());
                if let Some(after) = retry_after {
                    resp.insert_header(("Retry-After", after));
                }
                resp.finish()
            }
        }))
    })
    .workers(1)
    .disable_signals()
    .listen(listener)
    .unwrap()
    .run();
    tokio::spawn(server);
    (format!("http://{addr}/hooks/signatures"), seen)
}
