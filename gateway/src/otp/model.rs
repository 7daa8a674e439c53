//! What the OTP service takes and answers: the parsed request, the views, the secrets
//! made for a create before it is queued, and the challenge row's reading.

use chrono::{DateTime, Utc};
use serde::Serialize;
use uuid::Uuid;

use super::error::OtpError;
use carrier_adapters::template::Template;

use crate::clients::{template_key, ApiClient};
use crate::config::Settings;
use crate::crypto::ServerKeys;
use crate::domain::{sms_text, Channel, Locale, Msisdn, Purpose};
use crate::failure::Failure;
pub use crate::outbox::receipts::DeliveryView;
use crate::store::tables::otp_challenges::{Challenge, Keyed};

/// What the portal asked for, parsed.
#[derive(Debug, Clone)]
pub struct NewOtp {
    pub msisdn: Msisdn,
    pub purpose: Purpose,
    pub locale: Locale,
    pub code_length: u8,
    pub ttl_seconds: u32,
    pub idempotency_key: Option<String>,
    /// The portal's opaque account reference, for account lockout.
    pub account_ref: Option<String>,
    /// The end user's address, for per-IP limits.
    pub client_ip: Option<std::net::IpAddr>,
    /// The channels to try, in order (`None`: the client's policy, else SMS only).
    pub channels: Option<Vec<Channel>>,
    /// How long each step has to confirm delivery (`None`: `otp.channel_timeout`).
    pub channel_timeout: Option<std::time::Duration>,
}

/// A verification: one challenge, its code(s) sent by SMS. / Phiên xác thực OTP.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct OtpView {
    pub id: Uuid,
    /// `pending`, `approved`, `expired`, `max_attempts_reached` or `canceled`.
    #[schema(example = "pending")]
    pub status: String,
    /// The number with its middle hidden, as the portal shows it.
    #[schema(example = "082****088")]
    pub msisdn_masked: String,
    /// The network that serves the number now (after portability): `viettel`,
    /// `vinaphone`, `mobifone`, `vietnamobile`, `gmobile`, `itelecom` or `reddi`.
    #[schema(example = "vinaphone")]
    pub carrier: String,
    #[schema(example = "login")]
    pub purpose: String,
    pub created_at: DateTime<Utc>,
    /// After this the code no longer works.
    pub expires_at: DateTime<Utc>,
    /// From this time "Gửi lại OTP" may send a new code.
    pub resend_available_at: DateTime<Utc>,
    /// Codes sent so far.
    pub sends: i32,
    pub max_sends: i32,
    /// Wrong codes still allowed.
    pub attempts_left: i32,
    /// The channels this code is sent by, in the order they are tried (`sms`,
    /// `zalo`): the next is tried when one fails or has not confirmed delivery within
    /// its timeout.
    #[schema(example = json!(["zalo", "sms"]))]
    pub channels: Vec<String>,
    /// The latest SMS's delivery.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delivery: Option<DeliveryView>,
    /// Every attempt to deliver a code, oldest first (`GET /v1/otp/{id}` shows them).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub attempts: Vec<AttemptView>,
}

/// One attempt to deliver a code by one channel. / Một lần gửi mã qua một kênh.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema, postgres_from_row::FromRow)]
pub struct AttemptView {
    /// `sms` or `zalo`.
    #[schema(example = "zalo")]
    pub channel: String,
    /// Which code: 1 for the first, one more for each resend.
    pub send: i32,
    /// Its place in the send's workflow, from 0.
    pub step: i32,
    /// `held` (waits for the steps before it), `queued`, then for SMS `submitted`
    /// (the latest SMS's receipt is in `delivery`), for Zalo `sent` and `delivered`;
    /// or `failed`, `timed_out` (the next channel was tried), `canceled` (not needed,
    /// or superseded), `expired` (the code ran out before it went).
    #[schema(example = "delivered")]
    pub state: String,
    /// Why it failed or ended, when it did (`zns_-118`: no Zalo account, …).
    pub error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub sent_at: Option<DateTime<Utc>>,
    pub delivered_at: Option<DateTime<Utc>>,
}

/// An OTP event, POSTed to the client's OTP callback URL (Standard Webhooks).
/// / Sự kiện OTP gửi tới URL callback của ứng dụng.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct OtpEvent {
    /// `otp.sent`, `otp.delivered`, `otp.failed`, `otp.fallback`, `otp.approved` or
    /// `otp.expired`.
    #[serde(rename = "type")]
    #[schema(example = "otp.fallback")]
    pub kind: String,
    /// When it happened (RFC 3339, UTC).
    pub timestamp: String,
    pub data: OtpEventData,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct OtpEventData {
    /// The verification.
    pub id: Uuid,
    /// The verification's status then.
    #[schema(example = "pending")]
    pub status: String,
    pub purpose: String,
    /// The network that serves the number.
    pub carrier: String,
    /// The send's channels, in order.
    pub channels: Vec<String>,
    pub expires_at: String,
    /// The attempt's channel (not on `otp.approved` and `otp.expired`).
    #[schema(example = "zalo")]
    pub channel: Option<String>,
    /// Which code: 1, then one more per resend.
    pub send: Option<i32>,
    /// The attempt's place in the send's workflow, from 0.
    pub step: Option<i32>,
    /// `otp.fallback`: the channel tried next.
    #[schema(example = "sms")]
    pub next_channel: Option<String>,
    /// `otp.fallback`, `otp.failed`: why (`timeout`, `zns_-118` no Zalo account,
    /// `undeliverable`, …).
    #[schema(example = "zns_-118")]
    pub reason: Option<String>,
}

/// The result of a check. / Kết quả kiểm tra mã.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CheckView {
    pub id: Uuid,
    /// Whether the code matched (and so approved the verification).
    pub valid: bool,
    /// The verification's status after the check.
    #[schema(example = "approved")]
    pub status: String,
    pub attempts_left: i32,
}

pub(crate) fn view(row: Challenge, delivery: Option<DeliveryView>) -> Result<OtpView, OtpError> {
    let msisdn = Msisdn::parse(&row.msisdn)
        .map_err(|e| Failure::Internal(anyhow::anyhow!("stored msisdn unreadable: {e}")))?;
    let status = if row.status == "pending" && row.expired_now {
        "expired".into()
    } else {
        row.status
    };
    Ok(OtpView {
        id: row.id,
        status,
        msisdn_masked: msisdn.masked(),
        carrier: row.carrier,
        purpose: row.purpose,
        created_at: row.created_at,
        expires_at: row.expires_at,
        resend_available_at: row.resend_available_at,
        sends: row.sends,
        max_sends: row.max_sends,
        attempts_left: (row.max_attempts - row.attempts).max(0),
        channels: row.channels,
        delivery,
        attempts: Vec::new(),
    })
}

pub(crate) fn request_hash(req: &NewOtp) -> Vec<u8> {
    let mut text = format!(
        "{}|{}|{}|{}|{}|{}",
        req.msisdn.e164(),
        req.purpose,
        req.locale.as_str(),
        req.code_length,
        req.ttl_seconds,
        req.account_ref.as_deref().unwrap_or_default()
    );
    // Only when given, so that a request without them hashes as it always did.
    if let Some(channels) = &req.channels {
        let names: Vec<&str> = channels.iter().map(|c| c.as_str()).collect();
        text.push_str(&format!("|channels={}", names.join(",")));
    }
    if let Some(t) = req.channel_timeout {
        text.push_str(&format!("|channel_timeout={}", t.as_millis()));
    }
    crate::crypto::sha256(text.as_bytes())
}

/// The channels a send goes by: the request's, else the client's policy, else SMS;
/// with the ZNS template when Zalo is among them (refused when it cannot be used).
pub(crate) fn workflow<'a>(
    settings: &'a Settings,
    client: &ApiClient,
    requested: Option<&[Channel]>,
    purpose: Purpose,
    locale: Locale,
) -> Result<(Vec<Channel>, Option<&'a str>), OtpError> {
    let mut channels = requested
        .map(<[Channel]>::to_vec)
        .or_else(|| client.otp_channels.clone())
        .unwrap_or_else(|| vec![Channel::Sms]);
    if !channels.contains(&Channel::Zalo) {
        return Ok((channels, None));
    }
    let unavailable = match &settings.zalo {
        None => Err("this gateway has no Zalo OA app configured ([zalo])".to_owned()),
        Some(zalo) => zalo
            .template_for(purpose.as_str(), locale.as_str())
            .ok_or_else(|| {
                format!(
                    "no ZNS template is configured for {} ({}) in zalo.templates",
                    purpose.as_str(),
                    locale.as_str()
                )
            }),
    };
    match unavailable {
        Ok(template) => Ok((channels, Some(template))),
        // The client's default names Zalo, but Zalo cannot carry this code here: the
        // other channels of the default do, if it has any. A request that names Zalo
        // itself is told.
        Err(_) if requested.is_none() && channels.len() > 1 => {
            channels.retain(|c| *c != Channel::Zalo);
            Ok((channels, None))
        }
        Err(detail) => Err(OtpError::ChannelUnavailable {
            channel: Channel::Zalo,
            detail,
        }),
    }
}

/// The ZNS `template_data` that carries `code`, as JSON, sealed for `msisdn` as an
/// SMS text is.
pub(crate) fn seal_zns_data(
    keys: &ServerKeys,
    settings: &Settings,
    msisdn: &Msisdn,
    code: &str,
    ttl_seconds: u32,
) -> Result<Vec<u8>, Failure> {
    let zalo = settings
        .zalo
        .as_ref()
        .ok_or_else(|| Failure::internal("a ZNS send without [zalo]"))?;
    let mut data = serde_json::Map::new();
    data.insert(zalo.code_parameter.clone(), code.into());
    if !zalo.minutes_parameter.is_empty() {
        data.insert(
            zalo.minutes_parameter.clone(),
            ttl_seconds.div_ceil(60).to_string().into(),
        );
    }
    let json = serde_json::Value::Object(data).to_string();
    Ok(keys.seal(&json, msisdn.e164())?)
}

/// The answer to a create whose Idempotency-Key names `existing` (a row with
/// `request_hash`): the first answer again for the same request, 422 for another.
pub(crate) fn replay(existing: Keyed, hash: &[u8]) -> Result<(OtpView, bool), OtpError> {
    if existing.request_hash.as_deref() != Some(hash) {
        return Err(OtpError::IdempotencyKeyReused);
    }
    Ok((view(existing.challenge, None)?, true))
}

/// A create's secrets and derived values, made in the request's task (CPU work spread
/// over the HTTP workers) before it is queued: the code itself is dropped here and
/// never leaves this function except as its MAC and sealed SMS texts.
#[derive(Clone)]
pub(crate) struct Prepared {
    pub id: Uuid,
    pub mac: Vec<u8>,
    /// The SMS in the gateway's own words.
    pub sealed: Vec<u8>,
    /// The SMS in each template the client registered for this purpose and language,
    /// by carrier: which one goes is known once admission has found the serving network.
    pub sealed_for: Vec<(String, Vec<u8>)>,
    pub hash: Vec<u8>,
    /// The X-Request-Id of the request, stored with its SMS.
    pub request_id: Option<String>,
    /// The channels, in order.
    pub channels: Vec<Channel>,
    /// The ZNS template and its data (the code in it), sealed, when Zalo is a step.
    pub zns: Option<(String, Vec<u8>)>,
    /// Each step's time to confirm delivery.
    pub channel_timeout_ms: i32,
}

impl Prepared {
    /// The sealed SMS for the serving network: in the client's template there, else
    /// in the gateway's words. A template the client registered there but that could
    /// not be read is a fault of ours for this send alone (the others of a batch go on).
    pub fn sealed_on(
        &self,
        client: &ApiClient,
        carrier: &str,
        req: &NewOtp,
    ) -> Result<&[u8], Failure> {
        match self.sealed_for.iter().find(|(c, _)| c == carrier) {
            Some((_, sealed)) => Ok(sealed),
            None if client
                .template_for(carrier, req.purpose, req.locale)
                .is_some() =>
            {
                Err(Failure::internal(format!(
                    "the stored template {carrier}:{} cannot be read",
                    template_key(req.purpose, req.locale)
                )))
            }
            None => Ok(&self.sealed),
        }
    }
}

/// The SMS carrying `code`: in the template `client` registered with `carrier` for the
/// purpose and language, else in the gateway's own words.
pub(crate) fn text_for(
    client: &ApiClient,
    carrier: &str,
    purpose: Purpose,
    locale: Locale,
    code: &str,
    ttl_seconds: u32,
) -> Result<String, Failure> {
    match client.template_for(carrier, purpose, locale) {
        Some(source) => render(source, carrier, purpose, locale, code, ttl_seconds),
        None => Ok(sms_text(purpose, locale, code, ttl_seconds)),
    }
}

/// `code` in a stored template (checked when it was set; a fault of ours if it no
/// longer reads).
fn render(
    source: &str,
    carrier: &str,
    purpose: Purpose,
    locale: Locale,
    code: &str,
    ttl_seconds: u32,
) -> Result<String, Failure> {
    Template::parse(source)
        .map(|t| t.render(code, ttl_seconds))
        .map_err(|e| {
            Failure::internal(format!(
                "stored template {carrier}:{}: {e}",
                template_key(purpose, locale)
            ))
        })
}

pub(crate) fn prepare(
    keys: &ServerKeys,
    settings: &Settings,
    client: &ApiClient,
    req: &NewOtp,
) -> Result<Prepared, OtpError> {
    let (channels, zns_template) = workflow(
        settings,
        client,
        req.channels.as_deref(),
        req.purpose,
        req.locale,
    )?;
    let channel_timeout = req.channel_timeout.unwrap_or(settings.otp.channel_timeout);
    if channels.len() > 1 && channel_timeout.as_secs() >= u64::from(req.ttl_seconds) {
        // The next channel would never be tried: the code would end first.
        return Err(OtpError::InvalidField {
            field: "channel_timeout_seconds",
            detail: format!(
                "each channel's time ({} s) must be shorter than the code's life ({} s)",
                channel_timeout.as_secs(),
                req.ttl_seconds
            ),
        });
    }
    let id = Uuid::now_v7();
    let code = keys.random_code(req.code_length as usize)?;
    let zns = match zns_template {
        Some(template) => Some((
            template.to_owned(),
            seal_zns_data(keys, settings, &req.msisdn, &code, req.ttl_seconds)?,
        )),
        None => None,
    };
    let mac = keys.code_mac(id, 1, req.purpose.as_str(), req.msisdn.e164(), &code);
    let text = sms_text(req.purpose, req.locale, &code, req.ttl_seconds);
    let sealed = keys.seal(&text, req.msisdn.e164())?;
    drop(text);
    let mut sealed_for = Vec::new();
    for carrier in client.sms_templates.keys() {
        let Some(source) = client.template_for(carrier, req.purpose, req.locale) else {
            continue;
        };
        // One that cannot be read fails only the sends it would carry (`sealed_on`).
        match render(
            source,
            carrier,
            req.purpose,
            req.locale,
            &code,
            req.ttl_seconds,
        ) {
            Ok(text) => sealed_for.push((carrier.clone(), keys.seal(&text, req.msisdn.e164())?)),
            Err(e) => tracing::error!(error = %e, "stored template unreadable"),
        }
    }
    drop(code);
    Ok(Prepared {
        id,
        mac,
        sealed,
        sealed_for,
        hash: request_hash(req),
        request_id: crate::telemetry::request_id::current(),
        channels,
        zns,
        channel_timeout_ms: channel_timeout.as_millis().min(i32::MAX as u128) as i32,
    })
}
