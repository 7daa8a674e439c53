//! A simulated Zalo Notification Service: an Official Account's app that sends approved
//! templates to the Zalo account of a phone number, with OAuth access tokens that are
//! refreshed (each refresh token works once), a daily quota, delivery by callback (the
//! `user_received_message` event, signed as Zalo signs it) and by status query, and
//! fault switches. Paths and bodies follow Zalo's published API under `/zns`, so any
//! ZNS client pointed at this base URL can use it (see the README).
//!
//! Error codes are those of Zalo's ZNS table that the simulated cases need: -107 message id invalid, -108 phone number invalid, -109 template id
//! invalid (also a template not approved, with its own message), -111 template data
//! empty, -112 template data invalid, -115 out of quota, -118 Zalo account not existed,
//! -124 access token invalid.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use carrier_adapters::Msisdn;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// The codes the simulated ZNS answers with.
pub mod code {
    pub const SUCCESS: i32 = 0;
    pub const UNKNOWN: i32 = -100;
    pub const MESSAGE_ID_INVALID: i32 = -107;
    pub const PHONE_INVALID: i32 = -108;
    pub const TEMPLATE_INVALID: i32 = -109;
    pub const TEMPLATE_DATA_EMPTY: i32 = -111;
    pub const TEMPLATE_DATA_INVALID: i32 = -112;
    pub const OUT_OF_QUOTA: i32 = -115;
    pub const NO_ZALO_ACCOUNT: i32 = -118;
    pub const ACCESS_TOKEN_INVALID: i32 = -124;
    /// OAuth: the refresh token is unknown, already used, or the app's secret is wrong.
    pub const REFRESH_TOKEN_INVALID: i32 = -14014;
}

/// Messages whose status the simulator remembers (a long load run forgets the oldest).
const MAX_MESSAGES: usize = 200_000;

/// Longest value of a template parameter (Zalo's limit for a code-type parameter).
pub const MAX_PARAMETER_LEN: usize = 30;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ZnsConfig {
    /// The Zalo app's id and secret key (OAuth, and the key callbacks are signed with).
    pub app_id: String,
    pub secret_key: String,
    pub oa_id: String,
    /// The refresh token the OA starts with; each refresh gives a new one.
    pub refresh_token: String,
    /// How long an access token works.
    #[serde(with = "humantime_serde")]
    pub access_token_ttl: Duration,
    pub daily_quota: u32,
    /// From a send to the message reaching the Zalo app.
    #[serde(with = "humantime_serde")]
    pub delivery_delay: Duration,
    pub templates: Vec<ZnsTemplate>,
}

impl Default for ZnsConfig {
    fn default() -> Self {
        ZnsConfig {
            app_id: "1234567890123456789".into(),
            secret_key: "sim-zalo-app-secret".into(),
            oa_id: "4318113958764539821".into(),
            refresh_token: "sim-zalo-refresh-token".into(),
            access_token_ttl: Duration::from_secs(90_000),
            daily_quota: 100_000,
            delivery_delay: Duration::from_millis(200),
            templates: vec![
                ZnsTemplate {
                    id: "230001".into(),
                    name: "OTP Cổng DVC".into(),
                    text: "Mã xác thực Cổng Dịch vụ công của bạn là <otp>. Mã có hiệu lực <minutes> phút. Không chia sẻ mã này với bất kỳ ai.".into(),
                    status: TemplateStatus::Enable,
                },
                ZnsTemplate {
                    id: "230002".into(),
                    name: "OTP Cổng DVC (bản mới, chờ duyệt)".into(),
                    text: "Mã OTP của bạn: <otp>".into(),
                    status: TemplateStatus::PendingReview,
                },
            ],
        }
    }
}

/// A ZNS template: its text names its parameters as `<name>`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ZnsTemplate {
    pub id: String,
    #[serde(default)]
    pub name: String,
    pub text: String,
    pub status: TemplateStatus,
}

impl ZnsTemplate {
    /// The parameters its text names, in order.
    pub fn params(&self) -> Vec<String> {
        let mut out = Vec::new();
        let mut rest = self.text.as_str();
        while let Some(open) = rest.find('<') {
            let Some(close) = rest[open..].find('>') else {
                break;
            };
            let name = &rest[open + 1..open + close];
            if !name.is_empty() && !out.iter().any(|p| p == name) {
                out.push(name.to_owned());
            }
            rest = &rest[open + close + 1..];
        }
        out
    }

    fn render(&self, data: &BTreeMap<String, String>) -> String {
        let mut text = self.text.clone();
        for (name, value) in data {
            text = text.replace(&format!("<{name}>"), value);
        }
        text
    }
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum TemplateStatus {
    Enable,
    PendingReview,
    Reject,
    Disable,
}

/// What a misbehaving ZNS does. Everything off by default.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ZnsFaults {
    /// Answer every API call with HTTP 503.
    pub unavailable: bool,
    /// Wait this long before answering a send.
    #[serde(with = "humantime_serde")]
    pub response_delay: Option<Duration>,
    /// Accept sends but never deliver them (no callback, status stays sent).
    pub no_delivery: bool,
    /// Deliver, but never call back (the status query still says delivered).
    pub lose_callbacks: bool,
    /// Treat every access token as invalid (-124), as after Zalo revoked them.
    pub revoke_tokens: bool,
}

/// A message in a phone's Zalo app.
#[derive(Debug, Clone, Serialize)]
pub struct ZaloMessage {
    pub msg_id: String,
    pub template_id: String,
    pub text: String,
    pub received_at: DateTime<Utc>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tracking_id: Option<String>,
}

#[derive(Debug, Clone)]
struct Sent {
    phone: String,
    sent_at: DateTime<Utc>,
    delivered_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Default)]
struct Inner {
    access_tokens: HashMap<String, std::time::Instant>,
    refresh_tokens: BTreeSet<String>,
    templates: BTreeMap<String, ZnsTemplate>,
    without_zalo: BTreeSet<String>,
    quota: u32,
    sent_today: u32,
    /// The UTC day `sent_today` counts.
    today: Option<chrono::NaiveDate>,
    messages: HashMap<String, Sent>,
    /// Message ids, oldest first: the oldest are forgotten beyond `MAX_MESSAGES`.
    order: std::collections::VecDeque<String>,
    inbox: HashMap<String, Vec<ZaloMessage>>,
    faults: ZnsFaults,
    webhook: Option<String>,
}

/// The simulated ZNS.
#[derive(Debug)]
pub struct Zns {
    pub config: ZnsConfig,
    inner: Mutex<Inner>,
    http: reqwest::Client,
}

/// A ZNS API answer: Zalo answers HTTP 200 with `error` 0 or a negative code.
#[derive(Debug, Clone, PartialEq)]
pub struct Answer {
    pub error: i32,
    pub message: String,
    pub data: Option<serde_json::Value>,
}

impl Answer {
    fn ok(data: serde_json::Value) -> Answer {
        Answer {
            error: code::SUCCESS,
            message: "Success".into(),
            data: Some(data),
        }
    }

    fn err(error: i32, message: impl Into<String>) -> Answer {
        Answer {
            error,
            message: message.into(),
            data: None,
        }
    }

    pub fn to_json(&self) -> serde_json::Value {
        let mut v = serde_json::json!({ "error": self.error, "message": self.message });
        if let Some(data) = &self.data {
            v["data"] = data.clone();
        }
        v
    }
}

/// A send as ZNS takes it (`POST /message/template`).
#[derive(Debug, Deserialize)]
pub struct SendRequest {
    pub phone: String,
    pub template_id: String,
    #[serde(default)]
    pub template_data: BTreeMap<String, serde_json::Value>,
    #[serde(default)]
    pub tracking_id: Option<String>,
    #[serde(default)]
    pub mode: Option<String>,
}

fn lock(m: &Mutex<Inner>) -> std::sync::MutexGuard<'_, Inner> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn millis(t: DateTime<Utc>) -> String {
    t.timestamp_millis().to_string()
}

fn token() -> String {
    use rand::Rng;
    let bytes: [u8; 24] = rand::thread_rng().gen();
    base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, bytes)
}

pub use carrier_adapters::zns::event_signature;

impl Zns {
    pub fn new(config: ZnsConfig) -> Arc<Zns> {
        let inner = Inner {
            refresh_tokens: [config.refresh_token.clone()].into(),
            templates: config
                .templates
                .iter()
                .map(|t| (t.id.clone(), t.clone()))
                .collect(),
            quota: config.daily_quota,
            ..Inner::default()
        };
        Arc::new(Zns {
            inner: Mutex::new(inner),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(5))
                .build()
                .expect("an HTTP client"),
            config,
        })
    }

    pub fn faults(&self) -> ZnsFaults {
        lock(&self.inner).faults.clone()
    }

    pub fn set_faults(&self, faults: ZnsFaults) {
        lock(&self.inner).faults = faults;
    }

    pub fn unavailable(&self) -> bool {
        lock(&self.inner).faults.unavailable
    }

    pub fn templates(&self) -> Vec<ZnsTemplate> {
        lock(&self.inner).templates.values().cloned().collect()
    }

    pub fn set_template(&self, template: ZnsTemplate) {
        lock(&self.inner)
            .templates
            .insert(template.id.clone(), template);
    }

    /// Whether the number has a Zalo account (every number has one unless set otherwise).
    pub fn has_zalo(&self, e164: &str) -> bool {
        !lock(&self.inner).without_zalo.contains(e164)
    }

    pub fn set_has_zalo(&self, e164: &str, has: bool) {
        let mut inner = lock(&self.inner);
        if has {
            inner.without_zalo.remove(e164);
        } else {
            inner.without_zalo.insert(e164.to_owned());
        }
    }

    /// Sets the daily quota and starts the day's count over.
    pub fn set_quota(&self, daily: u32) {
        let mut inner = lock(&self.inner);
        inner.quota = daily;
        inner.sent_today = 0;
    }

    pub fn quota(&self) -> (u32, u32) {
        let inner = lock(&self.inner);
        (inner.quota, inner.quota.saturating_sub(inner.sent_today))
    }

    pub fn set_webhook(&self, url: Option<String>) {
        lock(&self.inner).webhook = url;
    }

    pub fn webhook(&self) -> Option<String> {
        lock(&self.inner).webhook.clone()
    }

    pub fn inbox(&self, e164: &str) -> Vec<ZaloMessage> {
        lock(&self.inner)
            .inbox
            .get(e164)
            .cloned()
            .unwrap_or_default()
    }

    /// OAuth: a new access token and refresh token for a refresh token not used before.
    pub fn refresh(
        &self,
        secret_key: &str,
        app_id: &str,
        refresh_token: &str,
    ) -> serde_json::Value {
        let mut inner = lock(&self.inner);
        if secret_key != self.config.secret_key
            || app_id != self.config.app_id
            || !inner.refresh_tokens.remove(refresh_token)
        {
            return serde_json::json!({
                "error": code::REFRESH_TOKEN_INVALID,
                "error_name": "Invalid refresh token",
                "error_description": "the refresh token is unknown or was already used, or the app id or secret key is wrong",
            });
        }
        let access = token();
        let refresh = token();
        let now = std::time::Instant::now();
        inner.access_tokens.retain(|_, until| *until > now);
        inner
            .access_tokens
            .insert(access.clone(), now + self.config.access_token_ttl);
        inner.refresh_tokens.insert(refresh.clone());
        serde_json::json!({
            "access_token": access,
            "refresh_token": refresh,
            "expires_in": self.config.access_token_ttl.as_secs().to_string(),
        })
    }

    fn authorized(inner: &Inner, access_token: Option<&str>) -> bool {
        !inner.faults.revoke_tokens
            && access_token
                .and_then(|t| inner.access_tokens.get(t))
                .is_some_and(|until| *until > std::time::Instant::now())
    }

    /// `POST /message/template`.
    pub fn send(self: &Arc<Self>, access_token: Option<&str>, req: SendRequest) -> Answer {
        let mut inner = lock(&self.inner);
        if !Self::authorized(&inner, access_token) {
            return Answer::err(code::ACCESS_TOKEN_INVALID, "Access token is invalid");
        }
        let Ok(phone) = Msisdn::parse(&req.phone) else {
            return Answer::err(code::PHONE_INVALID, "Phone number is invalid");
        };
        let Some(template) = inner.templates.get(&req.template_id).cloned() else {
            return Answer::err(code::TEMPLATE_INVALID, "Template ID is invalid");
        };
        if template.status != TemplateStatus::Enable {
            return Answer::err(
                code::TEMPLATE_INVALID,
                format!(
                    "Template {} is {:?}, not approved for sending",
                    template.id, template.status
                ),
            );
        }
        if req.template_data.is_empty() {
            return Answer::err(code::TEMPLATE_DATA_EMPTY, "Template data is empty");
        }
        let mut data = BTreeMap::new();
        for (name, value) in &req.template_data {
            let value = match value {
                serde_json::Value::String(s) => s.clone(),
                serde_json::Value::Number(n) => n.to_string(),
                _ => {
                    return Answer::err(
                        code::TEMPLATE_DATA_INVALID,
                        format!("Template data {name} must be a string or a number"),
                    )
                }
            };
            if value.is_empty() || value.chars().count() > MAX_PARAMETER_LEN {
                return Answer::err(
                    code::TEMPLATE_DATA_INVALID,
                    format!("Template data {name} must be 1..={MAX_PARAMETER_LEN} characters"),
                );
            }
            data.insert(name.clone(), value);
        }
        let params = template.params();
        if let Some(missing) = params.iter().find(|p| !data.contains_key(*p)) {
            return Answer::err(
                code::TEMPLATE_DATA_INVALID,
                format!("Template data lacks {missing}"),
            );
        }
        if let Some(extra) = data.keys().find(|k| !params.contains(k)) {
            return Answer::err(
                code::TEMPLATE_DATA_INVALID,
                format!("Template {} has no parameter {extra}", template.id),
            );
        }
        if inner.without_zalo.contains(phone.e164()) {
            return Answer::err(
                code::NO_ZALO_ACCOUNT,
                "Zalo account not existed or has been deactivated",
            );
        }
        let development = req.mode.as_deref() == Some("development");
        let day = Utc::now().date_naive();
        if inner.today != Some(day) {
            inner.today = Some(day);
            inner.sent_today = 0;
        }
        if !development {
            if inner.sent_today >= inner.quota {
                return Answer::err(code::OUT_OF_QUOTA, "Out of quota");
            }
            inner.sent_today += 1;
        }
        let msg_id = hex::encode(rand::random::<[u8; 16]>());
        let now = Utc::now();
        inner.messages.insert(
            msg_id.clone(),
            Sent {
                phone: phone.e164().to_owned(),
                sent_at: now,
                delivered_at: None,
            },
        );
        inner.order.push_back(msg_id.clone());
        while inner.order.len() > MAX_MESSAGES {
            if let Some(old) = inner.order.pop_front() {
                inner.messages.remove(&old);
            }
        }
        let deliver = !inner.faults.no_delivery;
        let remaining = inner.quota.saturating_sub(inner.sent_today);
        let quota = inner.quota;
        drop(inner);
        if deliver {
            let zns = self.clone();
            let message = ZaloMessage {
                msg_id: msg_id.clone(),
                template_id: template.id.clone(),
                text: template.render(&data),
                received_at: now,
                tracking_id: req.tracking_id.clone(),
            };
            let e164 = phone.e164().to_owned();
            tokio::spawn(async move {
                tokio::time::sleep(zns.config.delivery_delay).await;
                zns.deliver(&e164, message).await;
            });
        }
        Answer::ok(serde_json::json!({
            "msg_id": msg_id,
            "sent_time": millis(now),
            "quota": {
                "dailyQuota": quota.to_string(),
                "remainingQuota": remaining.to_string(),
            },
        }))
    }

    async fn deliver(&self, e164: &str, mut message: ZaloMessage) {
        let now = Utc::now();
        message.received_at = now;
        let (webhook, lose) = {
            let mut inner = lock(&self.inner);
            if let Some(sent) = inner.messages.get_mut(&message.msg_id) {
                sent.delivered_at = Some(now);
            }
            // As the SMS inbox, the newest 200 per phone.
            let inbox = inner.inbox.entry(e164.to_owned()).or_default();
            inbox.push(message.clone());
            if inbox.len() > 200 {
                inbox.remove(0);
            }
            (inner.webhook.clone(), inner.faults.lose_callbacks)
        };
        tracing::debug!(msg_id = %message.msg_id, "ZNS message delivered to the Zalo app");
        let Some(url) = webhook.filter(|_| !lose) else {
            return;
        };
        let timestamp = millis(now);
        let body = serde_json::json!({
            "app_id": self.config.app_id,
            "oa_id": self.config.oa_id,
            "event_name": "user_received_message",
            "message": {
                "msg_id": message.msg_id,
                "delivery_time": timestamp,
                "tracking_id": message.tracking_id,
            },
            "timestamp": timestamp,
        })
        .to_string();
        let signature = event_signature(
            &self.config.app_id,
            &body,
            &timestamp,
            &self.config.secret_key,
        );
        // Zalo calls once and again a few times while the receiver fails.
        for attempt in 0..3u32 {
            let sent = self
                .http
                .post(&url)
                .header("content-type", "application/json")
                .header("X-ZEvent-Signature", &signature)
                .body(body.clone())
                .send()
                .await;
            match sent {
                Ok(r) if r.status().is_success() => return,
                Ok(r) => tracing::info!(status = %r.status(), "ZNS callback refused"),
                Err(e) => tracing::info!(error = %e, "ZNS callback failed"),
            }
            tokio::time::sleep(Duration::from_millis(200 * u64::from(attempt + 1))).await;
        }
    }

    /// `GET /message/status?message_id=…&phone=…`.
    pub fn status(&self, access_token: Option<&str>, message_id: &str, phone: &str) -> Answer {
        let inner = lock(&self.inner);
        if !Self::authorized(&inner, access_token) {
            return Answer::err(code::ACCESS_TOKEN_INVALID, "Access token is invalid");
        }
        let phone = Msisdn::parse(phone).map(|m| m.e164().to_owned()).ok();
        match inner.messages.get(message_id) {
            Some(sent) if Some(&sent.phone) == phone.as_ref() => Answer::ok(serde_json::json!({
                "delivery_time": sent.delivered_at.map(millis),
                "sent_time": millis(sent.sent_at),
                // 1: received in the Zalo app; 0: sent, not received yet.
                "status": i32::from(sent.delivered_at.is_some()),
                "message": if sent.delivered_at.is_some() { "The message was received" } else { "The message was sent, not received yet" },
            })),
            _ => Answer::err(code::MESSAGE_ID_INVALID, "Message ID is invalid"),
        }
    }

    /// `GET /template/info?template_id=…`.
    pub fn template_info(&self, access_token: Option<&str>, template_id: &str) -> Answer {
        let inner = lock(&self.inner);
        if !Self::authorized(&inner, access_token) {
            return Answer::err(code::ACCESS_TOKEN_INVALID, "Access token is invalid");
        }
        match inner.templates.get(template_id) {
            Some(t) => Answer::ok(serde_json::json!({
                "templateId": t.id,
                "templateName": t.name,
                "status": t.status,
                "listParams": t.params().iter().map(|p| serde_json::json!({
                    "name": p, "require": true, "type": "STRING", "maxLength": MAX_PARAMETER_LEN,
                })).collect::<Vec<_>>(),
                "previewText": t.text,
            })),
            None => Answer::err(code::TEMPLATE_INVALID, "Template ID is invalid"),
        }
    }

    /// `GET /message/quota`.
    pub fn quota_info(&self, access_token: Option<&str>) -> Answer {
        let inner = lock(&self.inner);
        if !Self::authorized(&inner, access_token) {
            return Answer::err(code::ACCESS_TOKEN_INVALID, "Access token is invalid");
        }
        Answer::ok(serde_json::json!({
            "dailyQuota": inner.quota,
            "remainingQuota": inner.quota.saturating_sub(inner.sent_today),
        }))
    }
}
