//! What the OTP service takes and answers: the parsed request, the views, the secrets
//! made for a create before it is queued, and the challenge row's reading.

use chrono::{DateTime, Utc};
use serde::Serialize;
use uuid::Uuid;

use super::error::OtpError;
use carrier_adapters::template::Template;

use crate::clients::{template_key, ApiClient};
use crate::crypto::ServerKeys;
use crate::domain::{sms_text, Locale, Msisdn, Purpose};
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
    /// The latest SMS's delivery.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delivery: Option<DeliveryView>,
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
        delivery,
    })
}

pub(crate) fn request_hash(req: &NewOtp) -> Vec<u8> {
    crate::crypto::sha256(
        format!(
            "{}|{}|{}|{}|{}|{}",
            req.msisdn.e164(),
            req.purpose,
            req.locale.as_str(),
            req.code_length,
            req.ttl_seconds,
            req.account_ref.as_deref().unwrap_or_default()
        )
        .as_bytes(),
    )
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
    client: &ApiClient,
    req: &NewOtp,
) -> Result<Prepared, OtpError> {
    let id = Uuid::now_v7();
    let code = keys.random_code(req.code_length as usize)?;
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
    })
}
