//! Configuration in layers: built-in defaults → optional TOML file → `DATABASE_URL` →
//! `GATEWAY__SECTION__KEY` environment variables. Durations are humantime (`30s`, `5m`).
//! Values are range-checked at start so that a bad deployment fails loudly.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use carrier_adapters::smpp::{BindMode, EsmeConfig, SmppVersion};
use carrier_adapters::Carrier;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

pub const DEFAULT_DATABASE_URL: &str = "postgres://postgres@127.0.0.1:5432/gateway";

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    pub server: ServerSettings,
    pub database: DatabaseSettings,
    pub otp: OtpSettings,
    pub outbox: OutboxSettings,
    /// SMPP routes by name; a carrier uses the route of its own name, else `default_route`.
    pub smpp: BTreeMap<String, SmppRoute>,
    pub default_route: String,
    pub signatures: SignatureSettings,
    /// MSSP connections by carrier (`viettel`, `vinaphone`, `mobifone`). A table given
    /// in a file or the environment must be complete: nothing of it comes from the
    /// simulator's layout (which is used only when no `mss` table is given at all).
    #[serde(deserialize_with = "complete_mss_routes")]
    pub mss: BTreeMap<String, MssRoute>,
    pub webhooks: WebhookSettings,
    pub limits: LimitSettings,
    pub admin: AdminSettings,
    pub billing: BillingSettings,
    /// SMS pumping guards: defaults, and overrides per client name.
    pub guards: GuardSettings,
    pub guards_by_client: BTreeMap<String, GuardSettings>,
    pub log: LogSettings,
    /// The Zalo Official Account's app that sends ZNS; none: no Zalo channel.
    pub zalo: Option<ZaloSettings>,
}

/// A Zalo OA app (`[zalo]`): every key but `request_timeout` is required.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ZaloSettings {
    /// ZNS API base (`https://business.openapi.zalo.me`).
    pub api_base: String,
    /// OAuth base (`https://oauth.zaloapp.com`).
    pub oauth_base: String,
    pub app_id: String,
    pub oa_id: String,
    /// The app's secret key: OAuth, and the key delivery events are signed with.
    pub secret_key: SecretString,
    /// The refresh token to start from when the database holds none. Each refresh
    /// gives a new one, which the gateway keeps (sealed) in the database: this one is
    /// read once.
    pub refresh_token: SecretString,
    #[serde(with = "humantime_serde", default = "default_zalo_timeout")]
    pub request_timeout: Duration,
    /// The approved ZNS template that carries a code, by `purpose:locale`, `purpose`
    /// or `*` (looked up in that order): `{ "*" = "230001" }`.
    #[serde(default)]
    pub templates: BTreeMap<String, String>,
    /// The template's parameter that takes the code.
    #[serde(default = "default_code_parameter")]
    pub code_parameter: String,
    /// The template's parameter that takes the minutes the code is valid ("" if the
    /// template has none).
    #[serde(default = "default_minutes_parameter")]
    pub minutes_parameter: String,
    /// A message Zalo took but has not reported received this long is asked after
    /// (`GET /message/status`), in case its delivery event was lost.
    #[serde(with = "humantime_serde", default = "default_status_poll_after")]
    pub status_poll_after: Duration,
}

fn default_zalo_timeout() -> Duration {
    Duration::from_secs(5)
}

fn default_code_parameter() -> String {
    "otp".into()
}

fn default_minutes_parameter() -> String {
    "minutes".into()
}

fn default_status_poll_after() -> Duration {
    Duration::from_secs(5)
}

impl ZaloSettings {
    /// The ZNS template for a purpose and language, if one is configured.
    pub fn template_for(&self, purpose: &str, locale: &str) -> Option<&str> {
        [
            format!("{purpose}:{locale}"),
            purpose.to_owned(),
            "*".to_owned(),
        ]
        .iter()
        .find_map(|k| self.templates.get(k))
        .map(String::as_str)
    }
}

/// Price tables, loaded into Postgres at start (an entry is identified by carrier, item
/// and effective date; a later date changes the price from then on).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BillingSettings {
    pub prices: Vec<PriceEntry>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PriceEntry {
    /// A carrier name, or `*` for every carrier without its own price.
    pub carrier: String,
    /// `otp_sms_segment`, `signature_request` or `owner_check`.
    pub item: String,
    /// Exact VND, as a string (`"850"`, `"412.5"`).
    pub price_vnd: rust_decimal::Decimal,
    /// RFC 3339.
    pub effective_from: chrono::DateTime<chrono::Utc>,
}

/// SMS pumping guards (per client; each can be turned off).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GuardSettings {
    /// Refuse when one client sends to this many distinct numbers of one block of 100
    /// consecutive numbers (`0971234500`–`0971234599`) within `sequential_window`.
    pub sequential_enabled: bool,
    pub sequential_max_numbers: i64,
    #[serde(with = "humantime_serde")]
    pub sequential_window: Duration,
    /// Refuse a prefix (e.g. `097`) whose conversion (approved ÷ sent) over the last
    /// `conversion_window` falls below `conversion_factor` × its level over the last 7
    /// days, once `conversion_min_sent` codes were sent in the window.
    pub conversion_enabled: bool,
    #[serde(with = "humantime_serde")]
    pub conversion_window: Duration,
    pub conversion_min_sent: i64,
    pub conversion_factor: f64,
}

impl Default for GuardSettings {
    fn default() -> Self {
        GuardSettings {
            sequential_enabled: true,
            sequential_max_numbers: 10,
            sequential_window: Duration::from_secs(600),
            conversion_enabled: true,
            conversion_window: Duration::from_secs(3600),
            conversion_min_sent: 50,
            conversion_factor: 0.3,
        }
    }
}

impl Settings {
    /// The guards for a client (its override, else the defaults).
    pub fn guards_for(&self, client_name: Option<&str>) -> &GuardSettings {
        client_name
            .and_then(|n| self.guards_by_client.get(n))
            .unwrap_or(&self.guards)
    }
}

/// Operators' calls (`/v1/admin/…`): off unless a key is configured.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AdminSettings {
    pub api_key: Option<SecretString>,
}

/// Limits that hold across all instances (counted in Postgres).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitSettings {
    /// Most SMS to one number for one purpose within each window (creates and resends).
    pub phone_purpose: Vec<WindowLimit>,
    /// API requests per second per client across all instances, with a burst; each
    /// instance enforces its share (divided by `instances`).
    pub client_requests_per_second: u32,
    pub client_burst: u32,
    /// How many gateway instances share the per-client rate.
    pub instances: u32,
    /// Most SMS per client per day (UTC), counted in Postgres.
    pub client_daily_sms: Option<i64>,
    /// Failed checks in total after which an account (`account_ref`) is locked for OTP.
    pub account_failed_checks: i32,
    /// Most OTPs per end-user IP (the portal's `client_ip`) within each window.
    pub ip: Vec<WindowLimit>,
    /// Proxies whose `X-Forwarded-For` names the end user when the body has no
    /// `client_ip`; from anyone else the header is ignored.
    pub trusted_proxies: Vec<std::net::IpAddr>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WindowLimit {
    pub max: i64,
    #[serde(with = "humantime_serde")]
    pub window: Duration,
}

impl Default for LimitSettings {
    fn default() -> Self {
        let w = |max, secs| WindowLimit {
            max,
            window: Duration::from_secs(secs),
        };
        LimitSettings {
            phone_purpose: vec![w(3, 600), w(5, 3600), w(10, 86_400)],
            client_requests_per_second: 200,
            client_burst: 400,
            instances: 1,
            client_daily_sms: Some(1_000_000),
            account_failed_checks: 100,
            ip: vec![w(10, 600), w(50, 86_400)],
            trusted_proxies: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SignatureSettings {
    /// Our public base URL: carriers that call back are given
    /// `{public_base_url}/carriers/{carrier}/mss` as AP_URL.
    pub public_base_url: String,
    pub default_timeout_seconds: u32,
    /// Pending requests are polled (or, for callback carriers, swept) this often.
    #[serde(with = "humantime_serde")]
    pub poll_min: Duration,
    #[serde(with = "humantime_serde")]
    pub poll_max: Duration,
    /// A request is given up as expired this long after its timeout.
    #[serde(with = "humantime_serde")]
    pub expiry_grace: Duration,
}

#[derive(Debug, Clone)]
pub struct MssRoute {
    /// The MSSP's SOAP endpoint.
    pub endpoint: String,
    /// The MSSP_ID the MSSP is addressed by (its URI, as the carrier gives it).
    pub mssp_id: String,
    pub ap_id: String,
    pub ap_pwd: SecretString,
    /// Secret of the callback HMAC (carriers that call back).
    pub callback_secret: SecretString,
    /// Trusted CA roots: PEM file paths, inline PEM, or (test set-ups only) http URLs
    /// fetched when first needed.
    pub ca_roots: Vec<String>,
    /// The CA's OCSP responder (RFC 6960), when it is not the one the certificate's
    /// Authority Information Access names (the default).
    pub ocsp_url: Option<String>,
    /// Where the CA publishes its CRL, the fallback when OCSP gives no answer; unset:
    /// the certificate's CRL Distribution Points. Cached until its nextUpdate.
    pub crl_url: Option<String>,
    /// Longest an OCSP answer or a CRL is reused, even when its nextUpdate is later. An
    /// OCSP answer without nextUpdate is never reused.
    pub revocation_cache_max: Duration,
    /// When neither OCSP nor the CRL gives the signer's status, the result is refused
    /// (`carrier_error`, the detail says why). `false` accepts it, noting in the signer
    /// that revocation was not checked.
    pub require_revocation_status: bool,
    /// Whether the carrier's MSSP withdraws a pending prompt from the phone when it gets
    /// our `MSS_ReceiptReq` for it (the portal's cancel); `false`: a canceled request's
    /// prompt stays on the phone until it expires (its answer is ignored).
    pub cancel_at_carrier: bool,
    /// PKCS#1 dialect: where the SIM certificate is fetched (`{msisdn}` is replaced).
    pub certificate_url: Option<String>,
    pub owner_check_url: Option<String>,
    pub owner_check_key: SecretString,
    pub request_timeout: Duration,
    /// Extra CA roots for the MSSP's HTTPS endpoints (PEM file paths or inline PEM), on
    /// top of the public web roots.
    pub tls_roots: Vec<String>,
    /// Client certificate and private key for mutual TLS (PEM file path or inline PEM).
    pub tls_client_identity: Option<SecretString>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WebhookSettings {
    /// Delays before each retry (`["5s", "30s", …]`); jitter of up to 20 % is added, and a
    /// retry never comes before the receiver's `Retry-After`.
    pub retry_schedule: Vec<humantime_serde::Serde<Duration>>,
    /// A `Retry-After` longer than this fails the delivery instead of waiting for it.
    #[serde(with = "humantime_serde")]
    pub longest_retry_after: Duration,
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    #[serde(with = "humantime_serde")]
    pub poll_interval: Duration,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerSettings {
    pub listen: SocketAddr,
    /// Largest request body accepted, in bytes.
    pub max_body_bytes: usize,
    pub workers: usize,
    /// The whole request head must arrive within this (else 408 and the connection
    /// closes).
    #[serde(with = "humantime_serde")]
    pub header_timeout: Duration,
    /// The whole request body must arrive within this, counted from the end of the head
    /// (else 408 and the connection closes): a client that sends a byte at a time does
    /// not hold a connection and a worker's attention for ever.
    #[serde(with = "humantime_serde")]
    pub body_timeout: Duration,
    /// Most connections open at once from one peer address; a request on one more is
    /// answered 429 and its connection closed (an idle one is closed after
    /// `header_timeout`). Behind a load balancer or proxy every client shares its address: raise
    /// it there.
    pub max_connections_per_ip: usize,
    /// On SIGTERM, how long `/readyz` answers 503 while requests are still served, before
    /// the listener closes: long enough for a load balancer to see it (its probe interval
    /// times its failure threshold). 0: close at once.
    #[serde(with = "humantime_serde")]
    pub shutdown_drain: Duration,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DatabaseSettings {
    pub url: String,
    pub pool_size: usize,
    /// Create the database when it does not exist.
    pub create: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OtpSettings {
    /// Server key for code MACs and for sealing SMS texts at rest (≥ 32 bytes).
    /// Every instance must share it.
    pub hmac_key: Option<SecretString>,
    pub max_attempts: i32,
    pub max_sends: i32,
    #[serde(with = "humantime_serde")]
    pub resend_interval: Duration,
    #[serde(with = "humantime_serde")]
    pub default_ttl: Duration,
    pub default_code_length: u8,
    /// Create batchers per instance: creates arriving together share one transaction of
    /// set-based statements. Fewer batchers make larger batches (2 did best here, see
    /// BENCHMARKS.md); 0 creates each request in its own transaction.
    pub create_batchers: usize,
    /// The most creates one batch takes.
    pub create_batch_max: usize,
    /// How long a step of a channel workflow (`["zalo", "sms"]`) has to confirm delivery
    /// before the next channel is tried; a request may give its own.
    #[serde(with = "humantime_serde")]
    pub channel_timeout: Duration,
    /// How often each instance moves channel workflows on (fallbacks, timeouts) and
    /// makes the OTP events.
    #[serde(with = "humantime_serde")]
    pub workflow_interval: Duration,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OutboxSettings {
    pub batch_size: i64,
    /// Batches this instance has in flight at once (each claims, sends and records on
    /// its own; `FOR UPDATE SKIP LOCKED` keeps them apart).
    pub workers: usize,
    /// How often dispatchers look for work that no notification announced.
    #[serde(with = "humantime_serde")]
    pub poll_interval: Duration,
    /// A claimed row whose dispatcher died is claimable again after this.
    #[serde(with = "humantime_serde")]
    pub claim_timeout: Duration,
    /// Failures the carrier caused (a transient refusal such as ESME_RTHROTTLED or
    /// ESME_RSYSERR, no answer within the response timeout) before a message fails.
    /// A bind that is down or drops while the request is in flight spends none.
    pub max_attempts: i32,
    #[serde(with = "humantime_serde")]
    pub retry_base: Duration,
    #[serde(with = "humantime_serde")]
    pub retry_max: Duration,
    /// A message still unsent this long after it was queued fails (`max_age`). An OTP's
    /// SMS ends sooner, when its code expires.
    #[serde(with = "humantime_serde")]
    pub max_age: Duration,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SmppRoute {
    pub host: String,
    pub port: u16,
    pub system_id: String,
    pub password: SecretString,
    pub system_type: String,
    pub version: SmppVersion,
    /// Brandname (sender id) used on this route.
    pub sender: String,
    /// Sessions this instance opens to the SMSC (all instances together must stay
    /// within the carrier's contracted binds).
    pub binds: usize,
    /// `transceiver`, or `transmitter_receiver`: each session is a transmitter plus a
    /// receiver for the receipts.
    pub bind_type: BindType,
    /// Most submit_sm per second per bind (this instance's share of the contracted TPS).
    pub tps: Option<u32>,
    /// Route to use when every bind of this one has been down for `fallback_after`.
    pub fallback: Option<String>,
    #[serde(with = "humantime_serde")]
    pub fallback_after: Duration,
    pub window: usize,
    #[serde(with = "humantime_serde")]
    pub enquire_link_interval: Duration,
    #[serde(with = "humantime_serde")]
    pub response_timeout: Duration,
    #[serde(with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// First pause before redialling (it doubles while dials fail).
    #[serde(with = "humantime_serde")]
    pub reconnect_min: Duration,
    /// Longest pause while the SMSC's host answers (refused connection or bind, dropped
    /// session): keeps the first bind after it is back within about this long. At most
    /// `reconnect_max`.
    #[serde(with = "humantime_serde")]
    pub reconnect_max_answering: Duration,
    /// Longest pause while the host does not answer at all (connect timed out, host or
    /// network unreachable).
    #[serde(with = "humantime_serde")]
    pub reconnect_max: Duration,
    /// A session bound this long starts the back-off over.
    #[serde(with = "humantime_serde")]
    pub stable_after: Duration,
    /// The carrier blocks SMS that are not a template registered for the brandname: a
    /// client must have registered one for the purpose and language (`gateway client
    /// set --template`) or its create is refused at once. (A client that registered any
    /// template with a carrier is held to its templates there, whatever this says.)
    pub require_registered_templates: bool,
    /// Most submit_sm per second per brandname, where the carrier limits it
    /// (`{ "UBND-HN" = 10 }`): every part of a concatenated SMS counts, across all binds
    /// of the route. This instance's share, as `tps` is.
    pub sender_tps: BTreeMap<String, u32>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogSettings {
    /// `text` or `json`.
    pub format: String,
    /// tracing EnvFilter directives; `RUST_LOG` wins when set.
    pub filter: String,
}

impl Default for Settings {
    /// No carrier: every `[smpp.X]` and `[mss.X]` route comes from the file or the
    /// environment (`gateway demo`, and `gateway demo --print-config` for a standalone
    /// simulator, give the simulator's).
    fn default() -> Self {
        Settings {
            server: ServerSettings::default(),
            database: DatabaseSettings::default(),
            otp: OtpSettings::default(),
            outbox: OutboxSettings::default(),
            smpp: BTreeMap::new(),
            default_route: "aggregator".into(),
            signatures: SignatureSettings::default(),
            mss: BTreeMap::new(),
            webhooks: WebhookSettings::default(),
            limits: LimitSettings::default(),
            admin: AdminSettings::default(),
            billing: BillingSettings::default(),
            guards: GuardSettings::default(),
            guards_by_client: BTreeMap::new(),
            log: LogSettings::default(),
            zalo: None,
        }
    }
}

impl Default for SignatureSettings {
    fn default() -> Self {
        SignatureSettings {
            public_base_url: "http://127.0.0.1:8080".into(),
            default_timeout_seconds: 120,
            poll_min: Duration::from_secs(1),
            poll_max: Duration::from_secs(5),
            expiry_grace: Duration::from_secs(15),
        }
    }
}

/// An `[mss.X]` table as written: every key optional here, so that what is missing can
/// be named all at once.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct MssTable {
    endpoint: Option<String>,
    mssp_id: Option<String>,
    ap_id: Option<String>,
    ap_pwd: Option<SecretString>,
    callback_secret: Option<SecretString>,
    ca_roots: Option<Vec<String>>,
    ocsp_url: Option<String>,
    crl_url: Option<String>,
    #[serde(with = "humantime_serde")]
    revocation_cache_max: Option<Duration>,
    require_revocation_status: Option<bool>,
    cancel_at_carrier: Option<bool>,
    certificate_url: Option<String>,
    owner_check_url: Option<String>,
    owner_check_key: Option<SecretString>,
    #[serde(with = "humantime_serde")]
    request_timeout: Option<Duration>,
    tls_roots: Option<Vec<String>>,
    tls_client_identity: Option<SecretString>,
}

impl MssTable {
    /// The route, or the keys that carrier `name` needs and the table lacks.
    fn complete(self, name: &str) -> Result<MssRoute, Vec<&'static str>> {
        let dialect = name
            .parse::<Carrier>()
            .ok()
            .and_then(carrier_adapters::mss::dialect::Dialect::of);
        let calls_back = dialect.is_some_and(|d| d.calls_back());
        let pkcs1 = dialect
            .is_some_and(|d| d.format == carrier_adapters::mss::dialect::SignatureFormat::Pkcs1);
        let mut missing = Vec::new();
        let mut need = |present: bool, key: &'static str| {
            if !present {
                missing.push(key);
            }
        };
        need(self.endpoint.is_some(), "endpoint");
        need(self.mssp_id.is_some(), "mssp_id");
        need(self.ap_id.is_some(), "ap_id");
        need(self.ap_pwd.is_some(), "ap_pwd");
        need(
            self.ca_roots.as_ref().is_some_and(|r| !r.is_empty()),
            "ca_roots",
        );
        // The carrier calls back: its callbacks are authenticated with this.
        need(
            !calls_back || self.callback_secret.is_some(),
            "callback_secret",
        );
        // PKCS#1 signatures come without the certificate: it is fetched here.
        need(!pkcs1 || self.certificate_url.is_some(), "certificate_url");
        need(
            self.owner_check_url.is_none() || self.owner_check_key.is_some(),
            "owner_check_key",
        );
        if !missing.is_empty() {
            return Err(missing);
        }
        Ok(MssRoute {
            endpoint: self.endpoint.unwrap_or_default(),
            mssp_id: self.mssp_id.unwrap_or_default(),
            ap_id: self.ap_id.unwrap_or_default(),
            ap_pwd: self.ap_pwd.unwrap_or_else(|| SecretString::from("")),
            callback_secret: self
                .callback_secret
                .unwrap_or_else(|| SecretString::from("")),
            ca_roots: self.ca_roots.unwrap_or_default(),
            ocsp_url: self.ocsp_url,
            crl_url: self.crl_url,
            revocation_cache_max: self.revocation_cache_max.unwrap_or(Duration::from_secs(60)),
            require_revocation_status: self.require_revocation_status.unwrap_or(true),
            cancel_at_carrier: self.cancel_at_carrier.unwrap_or(true),
            certificate_url: self.certificate_url,
            owner_check_url: self.owner_check_url,
            owner_check_key: self
                .owner_check_key
                .unwrap_or_else(|| SecretString::from("")),
            request_timeout: self.request_timeout.unwrap_or(Duration::from_secs(10)),
            tls_roots: self.tls_roots.unwrap_or_default(),
            tls_client_identity: self.tls_client_identity,
        })
    }
}

/// `[mss.X]` tables, each complete or refused with every key it lacks named.
fn complete_mss_routes<'de, D>(de: D) -> Result<BTreeMap<String, MssRoute>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    let tables = BTreeMap::<String, MssTable>::deserialize(de)?;
    let mut routes = BTreeMap::new();
    let mut errors = Vec::new();
    for (name, table) in tables {
        match table.complete(&name) {
            Ok(route) => {
                routes.insert(name, route);
            }
            Err(missing) => errors.push(format!("mss.{name} lacks {}", missing.join(", "))),
        }
    }
    if errors.is_empty() {
        Ok(routes)
    } else {
        Err(serde::de::Error::custom(format!(
            "{} (a carrier's table must be complete: nothing of it is taken from the simulator's layout)",
            errors.join("; ")
        )))
    }
}

#[cfg(feature = "demo")]
impl MssRoute {
    /// The bundled simulator's MSSP of `carrier` at `base`.
    pub fn simulator(carrier: &str, base: &str) -> MssRoute {
        MssRoute {
            endpoint: format!("{base}/mssp/{carrier}"),
            mssp_id: format!("http://mssp.{carrier}.sim.vn"),
            ap_id: "http://dichvucong.gov.vn/ap".into(),
            ap_pwd: SecretString::from("sim-ap-pass"),
            callback_secret: SecretString::from(format!("sim-callback-{carrier}")),
            ca_roots: vec![format!("{base}/ca/{carrier}.pem")],
            ocsp_url: None,
            crl_url: Some(format!("{base}/ca/{carrier}.crl")),
            revocation_cache_max: Duration::from_secs(60),
            require_revocation_status: true,
            cancel_at_carrier: true,
            certificate_url: (carrier == "mobifone")
                .then(|| format!("{base}/mssp/{carrier}/certificates/{{msisdn}}")),
            owner_check_url: Some(format!("{base}/carriers/{carrier}/owner-check")),
            owner_check_key: SecretString::from(format!("sim-owner-{carrier}")),
            request_timeout: Duration::from_secs(10),
            tls_roots: Vec::new(),
            tls_client_identity: None,
        }
    }
}

impl WebhookSettings {
    pub fn retry_delays(&self) -> Vec<Duration> {
        self.retry_schedule.iter().map(|d| **d).collect()
    }
}

impl Default for WebhookSettings {
    fn default() -> Self {
        WebhookSettings {
            retry_schedule: [5, 30, 120, 600, 1800, 3600, 7200]
                .into_iter()
                .map(|s| Duration::from_secs(s).into())
                .collect(),
            longest_retry_after: Duration::from_secs(6 * 3600),
            timeout: Duration::from_secs(10),
            poll_interval: Duration::from_millis(500),
        }
    }
}

impl Default for ServerSettings {
    fn default() -> Self {
        ServerSettings {
            listen: "127.0.0.1:8080".parse().expect("valid address"),
            max_body_bytes: 16 * 1024,
            workers: 2,
            header_timeout: Duration::from_secs(5),
            body_timeout: Duration::from_secs(5),
            max_connections_per_ip: 512,
            shutdown_drain: Duration::ZERO,
        }
    }
}

impl Default for DatabaseSettings {
    fn default() -> Self {
        DatabaseSettings {
            url: DEFAULT_DATABASE_URL.into(),
            pool_size: 16,
            create: true,
        }
    }
}

impl Default for OtpSettings {
    fn default() -> Self {
        OtpSettings {
            hmac_key: None,
            max_attempts: 5,
            max_sends: 5,
            resend_interval: Duration::from_secs(30),
            default_ttl: Duration::from_secs(300),
            default_code_length: 6,
            create_batchers: 2,
            create_batch_max: 64,
            channel_timeout: Duration::from_secs(30),
            workflow_interval: Duration::from_millis(500),
        }
    }
}

impl Default for OutboxSettings {
    fn default() -> Self {
        OutboxSettings {
            batch_size: 64,
            workers: 4,
            poll_interval: Duration::from_millis(500),
            claim_timeout: Duration::from_secs(30),
            max_attempts: 10,
            retry_base: Duration::from_secs(1),
            retry_max: Duration::from_secs(60),
            max_age: Duration::from_secs(30 * 60),
        }
    }
}

impl Default for SmppRoute {
    fn default() -> Self {
        // host, port and password have no default: a route names its SMSC and its
        // credentials, or is refused (`Settings::validate`).
        SmppRoute {
            host: String::new(),
            port: 0,
            system_id: String::new(),
            password: SecretString::from(""),
            system_type: String::new(),
            version: SmppVersion::V34,
            sender: "DVCQG".into(),
            binds: 1,
            bind_type: BindType::Transceiver,
            tps: None,
            fallback: None,
            fallback_after: Duration::from_secs(60),
            window: 10,
            enquire_link_interval: Duration::from_secs(30),
            response_timeout: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(5),
            reconnect_min: Duration::from_millis(200),
            reconnect_max_answering: Duration::from_secs(1),
            reconnect_max: Duration::from_secs(30),
            stable_after: Duration::from_secs(10),
            require_registered_templates: false,
            sender_tps: BTreeMap::new(),
        }
    }
}

impl Default for LogSettings {
    fn default() -> Self {
        LogSettings {
            format: "text".into(),
            filter: "info".into(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BindType {
    Transceiver,
    TransmitterReceiver,
}

impl SmppRoute {
    /// The sessions one "bind" of this route opens, sharing `sender_tps` (made once per
    /// route with `sender_limits`).
    pub fn esme_configs(
        &self,
        route: &str,
        sender_tps: &Arc<carrier_adapters::smpp::SenderTps>,
    ) -> Vec<EsmeConfig> {
        let modes: &[BindMode] = match self.bind_type {
            BindType::Transceiver => &[BindMode::Transceiver],
            BindType::TransmitterReceiver => &[BindMode::Transmitter, BindMode::Receiver],
        };
        modes
            .iter()
            .map(|mode| EsmeConfig {
                mode: *mode,
                sender_tps: sender_tps.clone(),
                ..self.esme_config(route)
            })
            .collect()
    }

    /// The route's brandname limits, to share among its binds.
    pub fn sender_limits(&self) -> Arc<carrier_adapters::smpp::SenderTps> {
        Arc::new(carrier_adapters::smpp::SenderTps::new(&self.sender_tps))
    }

    pub fn esme_config(&self, route: &str) -> EsmeConfig {
        EsmeConfig {
            mode: BindMode::Transceiver,
            route: route.to_owned(),
            host: self.host.clone(),
            port: self.port,
            system_id: self.system_id.clone(),
            password: self.password.expose_secret().to_owned(),
            system_type: self.system_type.clone(),
            version: self.version,
            window: self.window,
            tps: self.tps,
            enquire_link_interval: self.enquire_link_interval,
            response_timeout: self.response_timeout,
            connect_timeout: self.connect_timeout,
            reconnect_min: self.reconnect_min,
            reconnect_max_answering: self.reconnect_max_answering,
            reconnect_max: self.reconnect_max,
            stable_after: self.stable_after,
            sender_tps: Default::default(),
        }
    }
}

impl Settings {
    /// Loads the layers. `file` is optional; a named file that is missing is an error.
    pub fn load(file: Option<&Path>) -> anyhow::Result<Settings> {
        let mut builder = config::Config::builder();
        if let Some(path) = file {
            if !path.exists() {
                bail!("config file {} does not exist", path.display());
            }
            builder = builder.add_source(config::File::from(path).format(config::FileFormat::Toml));
        }
        builder = builder.add_source(
            config::Environment::with_prefix("GATEWAY")
                .prefix_separator("__")
                .separator("__")
                .try_parsing(true),
        );
        let layered = builder.build().context("reading configuration")?;
        let mut settings: Settings = layered
            .try_deserialize()
            .context("configuration has an invalid value")?;
        // A route named in the file or environment replaces the built-in simulator
        // routes as a whole; its system_id defaults to its name.
        for (name, route) in settings.smpp.iter_mut() {
            if route.system_id.is_empty() {
                route.system_id = name.clone();
            }
        }
        if std::env::var_os("GATEWAY__DATABASE__URL").is_none() {
            if let Ok(url) = std::env::var("DATABASE_URL") {
                settings.database.url = url;
            }
        }
        settings.validate()?;
        Ok(settings)
    }

    /// Range checks: refuse to start with values that cannot work.
    pub fn validate(&self) -> anyhow::Result<()> {
        let otp = &self.otp;
        if !(1..=20).contains(&otp.max_attempts) {
            bail!("otp.max_attempts must be 1..=20");
        }
        if !(1..=20).contains(&otp.max_sends) {
            bail!("otp.max_sends must be 1..=20");
        }
        if !(4..=10).contains(&otp.default_code_length) {
            bail!("otp.default_code_length must be 4..=10");
        }
        if !(60..=900).contains(&otp.default_ttl.as_secs()) {
            bail!("otp.default_ttl must be 60s..=15m");
        }
        if let Some(key) = &otp.hmac_key {
            if key.expose_secret().len() < 32 {
                bail!("otp.hmac_key must be at least 32 bytes");
            }
        }
        if !(1..=64).contains(&self.outbox.workers) {
            bail!("outbox.workers must be 1..=64");
        }
        if !(1..=1000).contains(&self.outbox.batch_size) {
            bail!("outbox.batch_size must be 1..=1000");
        }
        if self.server.max_body_bytes < 256 {
            bail!("server.max_body_bytes must be at least 256");
        }
        for (name, t) in [
            ("server.header_timeout", self.server.header_timeout),
            ("server.body_timeout", self.server.body_timeout),
        ] {
            if t < Duration::from_millis(100) || t > Duration::from_secs(300) {
                bail!("{name} must be 100ms..=5m");
            }
        }
        if self.server.shutdown_drain > Duration::from_secs(300) {
            bail!("server.shutdown_drain must be at most 5m");
        }
        if self.server.max_connections_per_ip == 0 {
            bail!("server.max_connections_per_ip must be at least 1");
        }
        if self.outbox.max_age < Duration::from_secs(60) {
            bail!("outbox.max_age must be at least 1m");
        }
        if !(1..=1000).contains(&self.outbox.max_attempts) {
            bail!("outbox.max_attempts must be 1..=1000");
        }
        if !self.smpp.is_empty() && !self.smpp.contains_key(&self.default_route) {
            bail!(
                "default_route {:?} names no [smpp.*] route",
                self.default_route
            );
        }
        let incomplete: Vec<String> = self
            .smpp
            .iter()
            .filter_map(|(name, route)| {
                let missing: Vec<&str> = [
                    ("host", route.host.is_empty()),
                    ("port", route.port == 0),
                    ("password", route.password.expose_secret().is_empty()),
                ]
                .into_iter()
                .filter_map(|(key, missing)| missing.then_some(key))
                .collect();
                (!missing.is_empty()).then(|| format!("smpp.{name} lacks {}", missing.join(", ")))
            })
            .collect();
        if !incomplete.is_empty() {
            bail!(
                "{} (a route names its SMSC and credentials: nothing of it is taken from the simulator's layout)",
                incomplete.join("; ")
            );
        }
        for (name, route) in &self.smpp {
            if route.system_id.is_empty() || route.system_id.len() > 15 {
                bail!("smpp.{name}.system_id must be 1..=15 characters");
            }
            if route.password.expose_secret().len() > 8 {
                bail!("smpp.{name}.password must be at most 8 characters (SMPP limit)");
            }
            if route.sender.is_empty() || route.sender.len() > 11 {
                bail!("smpp.{name}.sender must be 1..=11 characters");
            }
            for (brandname, tps) in &route.sender_tps {
                if !carrier_adapters::template::valid_brandname(brandname) {
                    bail!("smpp.{name}.sender_tps: {brandname:?} is not a brandname");
                }
                if *tps == 0 {
                    bail!("smpp.{name}.sender_tps.{brandname} must be at least 1 (leave it out for no limit)");
                }
            }
            if !(1..=1000).contains(&route.window) {
                bail!("smpp.{name}.window must be 1..=1000");
            }
            if !(1..=32).contains(&route.binds) {
                bail!("smpp.{name}.binds must be 1..=32");
            }
            if let Some(fallback) = &route.fallback {
                if fallback == name || !self.smpp.contains_key(fallback) {
                    bail!("smpp.{name}.fallback {fallback:?} names no other [smpp.*] route");
                }
            }
            if route.tps == Some(0) {
                bail!("smpp.{name}.tps must be at least 1 (or unset)");
            }
            // reconnect_max_answering above reconnect_max is taken as reconnect_max, so
            // that a configuration written before it existed still starts.
            if route.reconnect_min.is_zero()
                || route.reconnect_min > route.reconnect_max
                || route.reconnect_min > route.reconnect_max_answering
            {
                bail!("smpp.{name}: need 0 < reconnect_min <= reconnect_max and reconnect_max_answering");
            }
        }
        for (name, route) in &self.mss {
            if name.parse::<Carrier>().is_err() {
                bail!("mss.{name}: not a carrier");
            }
            if route.endpoint.is_empty() {
                bail!("mss.{name}.endpoint is empty");
            }
            if route.ca_roots.is_empty() {
                bail!("mss.{name}.ca_roots is empty: signatures could not be verified");
            }
        }
        if !(30..=300).contains(&self.signatures.default_timeout_seconds) {
            bail!("signatures.default_timeout_seconds must be 30..=300");
        }
        if self.limits.instances == 0
            || self.limits.client_requests_per_second < self.limits.instances
            || self.limits.client_burst < self.limits.instances
        {
            bail!("limits: instances must be >= 1 and the client rate and burst at least one per instance");
        }
        for limit in &self.limits.phone_purpose {
            if limit.max < 1
                || limit.window.is_zero()
                || limit.window > Duration::from_secs(7 * 86_400)
            {
                bail!("limits.phone_purpose: each limit needs max >= 1 and a window of at most 7 days");
            }
        }
        if self.webhooks.retry_schedule.is_empty() {
            bail!("webhooks.retry_schedule is empty");
        }
        for p in &self.billing.prices {
            if !matches!(
                p.item.as_str(),
                "otp_sms_segment" | "otp_zns_message" | "signature_request" | "owner_check"
            ) {
                bail!("billing.prices: unknown item {:?}", p.item);
            }
            if p.carrier != "*" && p.carrier != "zalo" && p.carrier.parse::<Carrier>().is_err() {
                bail!("billing.prices: unknown carrier {:?}", p.carrier);
            }
            if p.price_vnd.is_sign_negative() {
                bail!("billing.prices: a price cannot be negative");
            }
        }
        if !matches!(self.log.format.as_str(), "text" | "json") {
            bail!("log.format must be text or json");
        }
        if let Some(z) = &self.zalo {
            for (key, url) in [
                ("zalo.api_base", &z.api_base),
                ("zalo.oauth_base", &z.oauth_base),
            ] {
                reqwest::Url::parse(url).map_err(|e| anyhow::anyhow!("{key}: {e}"))?;
            }
            if z.app_id.trim().is_empty() || z.oa_id.trim().is_empty() {
                bail!("zalo.app_id and zalo.oa_id must be given");
            }
            if z.code_parameter.trim().is_empty() {
                bail!("zalo.code_parameter must name the template's parameter for the code");
            }
            for (key, id) in &z.templates {
                let known = key == "*"
                    || key.split_once(':').map_or_else(
                        || key.parse::<crate::domain::Purpose>().is_ok(),
                        |(p, l)| {
                            p.parse::<crate::domain::Purpose>().is_ok()
                                && l.parse::<crate::domain::Locale>().is_ok()
                        },
                    );
                if !known || id.trim().is_empty() {
                    bail!("zalo.templates: {key:?} = {id:?}: a key is `*`, a purpose or purpose:locale, and the value a template id");
                }
            }
        }
        if self.otp.channel_timeout < Duration::from_secs(1)
            || self.otp.channel_timeout > Duration::from_secs(600)
        {
            bail!("otp.channel_timeout must be 1s..=10m");
        }
        if self.otp.workflow_interval.is_zero()
            || self.otp.workflow_interval > Duration::from_secs(10)
        {
            bail!("otp.workflow_interval must be more than 0 and at most 10s");
        }
        Ok(())
    }

    /// The route a carrier's numbers go out on.
    pub fn route_for(&self, carrier: Carrier) -> (&str, &SmppRoute) {
        let name = carrier.as_str();
        match self.smpp.get_key_value(name) {
            Some((k, v)) => (k.as_str(), v),
            None => (self.default_route.as_str(), &self.smpp[&self.default_route]),
        }
    }

    /// The bundled simulator's standalone layout (`carrier-sim` with its defaults: SMSCs
    /// on 127.0.0.1:2775-2778, HTTP on 127.0.0.1:8081), as `simulator_toml` writes it.
    #[cfg(feature = "demo")]
    pub fn standalone_simulator_toml() -> String {
        let smscs: Vec<(String, SocketAddr)> = ["viettel", "vinaphone", "mobifone", "aggregator"]
            .iter()
            .zip(2775u16..)
            .map(|(name, port)| (name.to_string(), SocketAddr::from(([127, 0, 0, 1], port))))
            .collect();
        simulator_toml(SocketAddr::from(([127, 0, 0, 1], 8081)), &smscs, 1, 10)
    }

    /// Points every route at a running simulator (demo and tests).
    #[cfg(feature = "demo")]
    pub fn use_simulator(&mut self, sim: &simulator::RunningSimulator) {
        let base = format!("http://{}", sim.http_addr);
        for mssp in &sim.mssps {
            let carrier = mssp.config.carrier.as_str();
            let mut route = MssRoute::simulator(carrier, &base);
            // The simulator's CA is generated at start: trust it directly.
            route.ca_roots = vec![mssp.ca.certificate_pem()];
            route.ap_id = mssp.config.ap_id.clone();
            route.ap_pwd = SecretString::from(mssp.config.ap_pwd.clone());
            route.callback_secret = SecretString::from(mssp.config.callback_secret.clone());
            route.owner_check_key = SecretString::from(mssp.config.owner_check_key.clone());
            self.mss.insert(carrier.to_owned(), route);
        }
        let zns = &sim.zns.config;
        self.zalo = Some(ZaloSettings {
            api_base: format!("{base}/zns"),
            oauth_base: format!("{base}/zns/oauth"),
            app_id: zns.app_id.clone(),
            oa_id: zns.oa_id.clone(),
            secret_key: SecretString::from(zns.secret_key.clone()),
            refresh_token: SecretString::from(zns.refresh_token.clone()),
            request_timeout: default_zalo_timeout(),
            templates: simulator_zns_templates(),
            code_parameter: default_code_parameter(),
            minutes_parameter: default_minutes_parameter(),
            status_poll_after: default_status_poll_after(),
        });
        for (name, addr) in &sim.smsc_addrs {
            let route = self.smpp.entry(name.clone()).or_default();
            route.host = addr.ip().to_string();
            route.port = addr.port();
            route.system_id = name.clone();
            route.password = SecretString::from(simulator::config::DEFAULT_PASSWORD);
        }
    }
}

/// The `[smpp.*]`, `[mss.*]` and `[zalo]` tables of a configuration that points at a standalone
/// `carrier-sim` (HTTP at `http`, the SMSCs at `smscs`), with `binds` sessions of `window`
/// each per route: what `loadgen` gives the gateway it starts. Append it after the file's
/// top-level keys.
#[cfg(feature = "demo")]
pub fn simulator_toml(
    http: SocketAddr,
    smscs: &[(String, SocketAddr)],
    binds: usize,
    window: usize,
) -> String {
    use toml::{Table, Value};
    let text = |s: &str| Value::String(s.to_owned());
    let base = format!("http://{http}");
    let mut smpp = Table::new();
    for (name, addr) in smscs {
        let mut route = Table::new();
        route.insert("host".into(), text(&addr.ip().to_string()));
        route.insert("port".into(), Value::Integer(i64::from(addr.port())));
        route.insert("password".into(), text(simulator::config::DEFAULT_PASSWORD));
        route.insert("binds".into(), Value::Integer(binds as i64));
        route.insert("window".into(), Value::Integer(window as i64));
        smpp.insert(name.clone(), Value::Table(route));
    }
    let mut mss = Table::new();
    for carrier in ["viettel", "vinaphone", "mobifone"] {
        let r = MssRoute::simulator(carrier, &base);
        let mut route = Table::new();
        route.insert("endpoint".into(), text(&r.endpoint));
        route.insert("mssp_id".into(), text(&r.mssp_id));
        route.insert("ap_id".into(), text(&r.ap_id));
        route.insert("ap_pwd".into(), text(r.ap_pwd.expose_secret()));
        route.insert(
            "callback_secret".into(),
            text(r.callback_secret.expose_secret()),
        );
        route.insert(
            "ca_roots".into(),
            Value::Array(r.ca_roots.iter().map(|c| text(c)).collect()),
        );
        for (key, value) in [
            ("crl_url", &r.crl_url),
            ("owner_check_url", &r.owner_check_url),
            ("certificate_url", &r.certificate_url),
        ] {
            if let Some(v) = value {
                route.insert(key.into(), text(v));
            }
        }
        route.insert(
            "owner_check_key".into(),
            text(r.owner_check_key.expose_secret()),
        );
        mss.insert(carrier.to_owned(), Value::Table(route));
    }
    let zns = simulator::zns::ZnsConfig::default();
    let mut zalo = Table::new();
    for (key, value) in [
        ("api_base", format!("{base}/zns")),
        ("oauth_base", format!("{base}/zns/oauth")),
        ("app_id", zns.app_id),
        ("oa_id", zns.oa_id),
        ("secret_key", zns.secret_key),
        ("refresh_token", zns.refresh_token),
    ] {
        zalo.insert(key.into(), text(&value));
    }
    let mut templates = Table::new();
    for (key, id) in simulator_zns_templates() {
        templates.insert(key, text(&id));
    }
    zalo.insert("templates".into(), Value::Table(templates));
    let mut doc = Table::new();
    doc.insert("smpp".into(), Value::Table(smpp));
    doc.insert("mss".into(), Value::Table(mss));
    doc.insert("zalo".into(), Value::Table(zalo));
    toml::to_string(&doc).expect("a table of strings and numbers serialises")
}

/// The simulated ZNS's approved OTP template, for every purpose and language.
#[cfg(feature = "demo")]
fn simulator_zns_templates() -> BTreeMap<String, String> {
    let zns = simulator::zns::ZnsConfig::default();
    let approved = zns
        .templates
        .iter()
        .find(|t| t.status == simulator::zns::TemplateStatus::Enable)
        .expect("the simulated ZNS has an approved template");
    BTreeMap::from([("*".to_owned(), approved.id.clone())])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[cfg(feature = "demo")]
    fn the_simulator_toml_reads_back_as_the_simulator_layout() {
        let http: SocketAddr = "127.0.0.1:18081".parse().unwrap();
        let smscs: Vec<(String, SocketAddr)> = ["viettel", "vinaphone", "mobifone", "aggregator"]
            .iter()
            .enumerate()
            .map(|(i, n)| {
                (
                    n.to_string(),
                    SocketAddr::from(([127, 0, 0, 1], 12775 + i as u16)),
                )
            })
            .collect();
        let path = std::env::temp_dir().join(format!("gw-sim-{}.toml", std::process::id()));
        std::fs::write(&path, simulator_toml(http, &smscs, 3, 50)).unwrap();
        let s = Settings::load(Some(&path)).unwrap();
        std::fs::remove_file(&path).unwrap();
        let (name, route) = s.route_for(Carrier::Mobifone);
        assert_eq!(
            (name, route.port, route.binds, route.window),
            ("mobifone", 12777, 3, 50)
        );
        assert_eq!(route.system_id, "mobifone");
        assert_eq!(s.route_for(Carrier::Reddi).0, "aggregator");
        let zalo = s.zalo.as_ref().expect("the simulator's ZNS");
        assert_eq!(zalo.api_base, "http://127.0.0.1:18081/zns");
        assert_eq!(zalo.app_id, simulator::zns::ZnsConfig::default().app_id);
        for carrier in ["viettel", "vinaphone", "mobifone"] {
            let want = MssRoute::simulator(carrier, "http://127.0.0.1:18081");
            let got = &s.mss[carrier];
            assert_eq!(got.endpoint, want.endpoint);
            assert_eq!(got.ca_roots, want.ca_roots);
            assert_eq!(got.certificate_url, want.certificate_url);
            assert_eq!(
                got.callback_secret.expose_secret(),
                want.callback_secret.expose_secret()
            );
        }
    }

    #[test]
    fn a_carrier_table_must_be_complete_and_names_what_it_lacks() {
        let load = |text: &str| {
            let path = std::env::temp_dir().join(format!(
                "gw-mss-{}-{}.toml",
                std::process::id(),
                text.len()
            ));
            std::fs::write(&path, text).unwrap();
            let s = Settings::load(Some(&path));
            std::fs::remove_file(&path).unwrap();
            s
        };
        // A production table that leaves keys out used to take the Viettel simulator's
        // (127.0.0.1, sim-ap-pass): now it is refused, every missing key named.
        let err = load(
            "[mss.viettel]\nendpoint = \"https://mss.viettel.example/soap\"\nap_pwd = \"x\"\n",
        )
        .unwrap_err();
        let text = format!("{err:#}");
        for key in [
            "mss.viettel",
            "mssp_id",
            "ap_id",
            "ca_roots",
            "callback_secret",
        ] {
            assert!(text.contains(key), "{key} not named: {text}");
        }
        assert!(!text.contains("ap_pwd,"), "ap_pwd was given: {text}");
        // MobiFone signs in PKCS#1: its certificate source is required; an owner check
        // needs its key.
        let err = load(
            "[mss.mobifone]\nendpoint = \"https://m\"\nmssp_id = \"http://m\"\nap_id = \"a\"\n\
             ap_pwd = \"p\"\nca_roots = [\"/etc/ca.pem\"]\nowner_check_url = \"https://m/oc\"\n",
        )
        .unwrap_err();
        let text = format!("{err:#}");
        assert!(
            text.contains("certificate_url") && text.contains("owner_check_key"),
            "{text}"
        );
        // Complete: loaded, with the optional keys at their documented defaults.
        let s = load(
            "[mss.vinaphone]\nendpoint = \"https://v\"\nmssp_id = \"http://v\"\nap_id = \"a\"\n\
             ap_pwd = \"p\"\nca_roots = [\"/etc/ca.pem\"]\n",
        )
        .unwrap();
        assert_eq!(
            s.mss.len(),
            1,
            "the file's tables replace the simulator layout"
        );
        let r = &s.mss["vinaphone"];
        assert_eq!(r.endpoint, "https://v");
        assert_eq!(r.crl_url, None);
        assert_eq!(r.request_timeout, Duration::from_secs(10));
        assert!(r.require_revocation_status && r.cancel_at_carrier);
    }

    #[test]
    #[cfg(feature = "demo")]
    fn defaults_are_valid_and_route_every_carrier() {
        // The defaults hold no carrier; the standalone simulator's layout routes them all.
        let d = Settings::default();
        d.validate().unwrap();
        assert!(d.smpp.is_empty() && d.mss.is_empty());
        let path = std::env::temp_dir().join(format!("gw-standalone-{}.toml", std::process::id()));
        std::fs::write(&path, Settings::standalone_simulator_toml()).unwrap();
        let s = Settings::load(Some(&path)).unwrap();
        std::fs::remove_file(&path).unwrap();
        assert_eq!(s.route_for(Carrier::Viettel).0, "viettel");
        assert_eq!(s.route_for(Carrier::Mobifone).0, "mobifone");
        assert_eq!(s.route_for(Carrier::Gmobile).0, "aggregator");
        assert_eq!(s.route_for(Carrier::Reddi).1.port, 2778);
    }

    #[test]
    fn a_file_layers_over_the_defaults() {
        let path = std::env::temp_dir().join(format!("gw-config-{}.toml", std::process::id()));
        std::fs::write(
            &path,
            r#"
default_route = "viettel"
[otp]
resend_interval = "45s"
max_attempts = 3
[smpp.viettel]
host = "10.1.2.3"
port = 3000
password = "pw-12345"
sender = "BRAND"
"#,
        )
        .unwrap();
        let s = Settings::load(Some(&path)).unwrap();
        std::fs::remove_file(&path).unwrap();
        assert_eq!(s.otp.resend_interval, Duration::from_secs(45));
        assert_eq!(s.otp.max_attempts, 3);
        assert_eq!(s.otp.max_sends, 5, "unset values keep their defaults");
        // Only the routes named are there.
        assert_eq!(s.smpp.len(), 1);
        let (name, route) = s.route_for(Carrier::Mobifone);
        assert_eq!(name, "viettel");
        assert_eq!(route.system_id, "viettel");
        assert_eq!(route.sender, "BRAND");
        assert_eq!(route.port, 3000);
    }

    #[test]
    fn an_smpp_route_must_name_its_smsc_and_credentials() {
        let path = std::env::temp_dir().join(format!("gw-smpp-{}.toml", std::process::id()));
        // Before, this took the simulator's 127.0.0.1:2775 and its password.
        std::fs::write(&path, "[smpp.viettel]\nsender = \"BRAND\"\n[smpp.aggregator]\nhost = \"10.0.0.9\"\nport = 2775\n").unwrap();
        let err = Settings::load(Some(&path)).unwrap_err();
        std::fs::remove_file(&path).unwrap();
        let text = format!("{err:#}");
        assert!(
            text.contains("smpp.viettel lacks host, port, password"),
            "{text}"
        );
        assert!(text.contains("smpp.aggregator lacks password"), "{text}");
    }

    #[test]
    fn unknown_keys_and_missing_files_are_errors() {
        let path = std::env::temp_dir().join(format!("gw-config-bad-{}.toml", std::process::id()));
        std::fs::write(&path, "[otp]\nmax_atempts = 3\n").unwrap();
        let err = Settings::load(Some(&path)).unwrap_err();
        std::fs::remove_file(&path).unwrap();
        assert!(format!("{err:#}").contains("max_atempts"), "{err:#}");
        assert!(Settings::load(Some(Path::new("/nonexistent/gateway.toml"))).is_err());
    }

    #[test]
    fn short_hmac_key_is_refused() {
        let mut s = Settings::default();
        s.otp.hmac_key = Some(SecretString::from("short"));
        assert!(s.validate().is_err());
    }

    #[test]
    fn brandname_limits_and_the_zalo_table_are_checked() {
        let route = || SmppRoute {
            host: "10.0.0.9".into(),
            port: 2775,
            system_id: "x".into(),
            password: SecretString::from("pw"),
            ..SmppRoute::default()
        };
        let mut s = Settings::default();
        s.otp.hmac_key = Some(SecretString::from("0123456789abcdef0123456789abcdef"));
        s.smpp.insert("aggregator".into(), route());
        s.validate().unwrap();
        for (brandname, tps, why) in [
            ("A NAME TOO LONG", 5, "is not a brandname"),
            ("UBND-HN", 0, "at least 1"),
        ] {
            let mut bad = s.clone();
            let mut r = route();
            r.sender_tps = [(brandname.to_owned(), tps)].into();
            bad.smpp.insert("aggregator".into(), r);
            let err = format!("{:#}", bad.validate().unwrap_err());
            assert!(err.contains(why), "{err}");
        }
        let mut bad = s.clone();
        bad.zalo = Some(ZaloSettings {
            api_base: "not a url".into(),
            oauth_base: "https://oauth.zaloapp.com".into(),
            app_id: "1".into(),
            oa_id: "2".into(),
            secret_key: SecretString::from("k"),
            refresh_token: SecretString::from("r"),
            request_timeout: Duration::from_secs(5),
            templates: BTreeMap::from([("*".into(), "230001".into())]),
            code_parameter: "otp".into(),
            minutes_parameter: String::new(),
            status_poll_after: Duration::from_secs(5),
        });
        assert!(format!("{:#}", bad.validate().unwrap_err()).contains("zalo.api_base"));
        let mut z = bad.zalo.clone().unwrap();
        z.api_base = "https://business.openapi.zalo.me".into();
        z.templates = BTreeMap::from([("signin".into(), "230001".into())]);
        bad.zalo = Some(z.clone());
        assert!(format!("{:#}", bad.validate().unwrap_err()).contains("zalo.templates"));
        z.templates = BTreeMap::from([
            ("*".into(), "1".into()),
            ("login".into(), "2".into()),
            ("login:en".into(), "3".into()),
        ]);
        assert_eq!(z.template_for("login", "en"), Some("3"));
        assert_eq!(z.template_for("login", "vi"), Some("2"));
        assert_eq!(z.template_for("register", "vi"), Some("1"));
    }
}
