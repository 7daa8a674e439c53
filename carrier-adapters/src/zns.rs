//! Zalo Notification Service (ZNS), the codec: what a send, a status query and a token
//! refresh carry, what Zalo's answers mean for the message, and the delivery event
//! with its signature. Pure: the HTTP calls are the gateway's.
//!
//! Zalo answers HTTP 200 with `error` 0 or a negative code. What each code means for
//! an OTP is [`Refusal`]: try the next channel (the number has no Zalo account, the
//! template cannot be used, the quota is spent), get a new access token, or try the
//! same send again later.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sha2::Digest;

/// `POST {api}/message/template`, header `access_token`. Its `Debug` leaves out the
/// template data (it holds the code) and masks the number.
#[derive(Clone, Serialize, PartialEq)]
pub struct SendRequest {
    /// The number as Zalo takes it: `84…`, no `+`.
    pub phone: String,
    pub template_id: String,
    pub template_data: BTreeMap<String, String>,
    /// Ours, echoed in the delivery event: which send this is.
    pub tracking_id: String,
}

impl std::fmt::Debug for SendRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let masked = crate::Msisdn::parse(&self.phone)
            .map(|m| m.masked())
            .unwrap_or_else(|_| "(not a number)".into());
        f.debug_struct("SendRequest")
            .field("phone", &masked)
            .field("template_id", &self.template_id)
            .field(
                "template_data",
                &self.template_data.keys().collect::<Vec<_>>(),
            )
            .field("tracking_id", &self.tracking_id)
            .finish()
    }
}

/// A send Zalo took.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accepted {
    pub msg_id: String,
    /// Zalo's send time (ms since the epoch), as it wrote it.
    pub sent_time: Option<String>,
    pub remaining_quota: Option<u64>,
}

/// Why Zalo did not take a send, by what it means for the OTP.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The number has no Zalo account (or it is deactivated, or takes no ZNS): the
    /// next channel.
    #[error("no Zalo account can receive it ({code}: {message})")]
    NoZaloAccount { code: i32, message: String },
    /// The template is unknown, not approved, or its data does not fit it: the next
    /// channel, and an operator should look.
    #[error("the ZNS template cannot be used ({code}: {message})")]
    Template { code: i32, message: String },
    /// The OA's quota is spent: the next channel.
    #[error("the ZNS quota is spent ({code}: {message})")]
    Quota { code: i32, message: String },
    /// Zalo refuses the number itself.
    #[error("Zalo refuses the number ({code}: {message})")]
    Phone { code: i32, message: String },
    /// The access token is not (or no longer) valid: refresh it and send again.
    #[error("the access token is invalid ({code}: {message})")]
    AccessToken { code: i32, message: String },
    /// Anything else Zalo answers: may work later.
    #[error("ZNS error {code}: {message}")]
    Other { code: i32, message: String },
}

impl Refusal {
    pub fn from_code(code: i32, message: String) -> Refusal {
        match code {
            -118 => Refusal::NoZaloAccount { code, message },
            -109 | -111 | -112 => Refusal::Template { code, message },
            -115 => Refusal::Quota { code, message },
            -108 => Refusal::Phone { code, message },
            -124 => Refusal::AccessToken { code, message },
            _ => Refusal::Other { code, message },
        }
    }

    pub fn code(&self) -> i32 {
        match self {
            Refusal::NoZaloAccount { code, .. }
            | Refusal::Template { code, .. }
            | Refusal::Quota { code, .. }
            | Refusal::Phone { code, .. }
            | Refusal::AccessToken { code, .. }
            | Refusal::Other { code, .. } => *code,
        }
    }

    /// Whether the same send can never work (so the next channel is the way on).
    pub fn is_final(&self) -> bool {
        !matches!(self, Refusal::AccessToken { .. } | Refusal::Other { .. })
    }

    /// Short stable label for storage and metrics: `zns_-118`.
    pub fn label(&self) -> String {
        format!("zns_{}", self.code())
    }
}

/// An answer that is not the JSON Zalo writes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a ZNS answer: {0}")]
pub struct Unreadable(pub String);

#[derive(Deserialize)]
struct Envelope {
    error: i32,
    #[serde(default)]
    message: String,
    #[serde(default)]
    data: Option<serde_json::Value>,
}

fn envelope(body: &[u8]) -> Result<Envelope, Unreadable> {
    serde_json::from_slice(body).map_err(|e| Unreadable(e.to_string()))
}

/// A number or a string holding one (Zalo writes both).
fn number(v: Option<&serde_json::Value>) -> Option<u64> {
    match v? {
        serde_json::Value::Number(n) => n.as_u64(),
        serde_json::Value::String(s) => s.parse().ok(),
        _ => None,
    }
}

fn text(v: Option<&serde_json::Value>) -> Option<String> {
    match v? {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// The answer to a send.
pub fn parse_send(body: &[u8]) -> Result<Result<Accepted, Refusal>, Unreadable> {
    let e = envelope(body)?;
    if e.error != 0 {
        return Ok(Err(Refusal::from_code(e.error, e.message)));
    }
    let data = e.data.unwrap_or_default();
    let msg_id = text(data.get("msg_id"))
        .filter(|s| !s.is_empty())
        .ok_or_else(|| Unreadable("a successful send without msg_id".into()))?;
    Ok(Ok(Accepted {
        msg_id,
        sent_time: text(data.get("sent_time")),
        remaining_quota: number(data.get("quota").and_then(|q| q.get("remainingQuota"))),
    }))
}

/// Where a sent message is, by a status query (`GET {api}/message/status`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivery {
    /// Received in the Zalo app, at this time (ms since the epoch).
    Received { at: Option<String> },
    /// Sent, not received yet.
    Pending,
}

/// The answer to a status query.
pub fn parse_status(body: &[u8]) -> Result<Result<Delivery, Refusal>, Unreadable> {
    let e = envelope(body)?;
    if e.error != 0 {
        return Ok(Err(Refusal::from_code(e.error, e.message)));
    }
    let data = e.data.unwrap_or_default();
    let at = text(data.get("delivery_time"));
    Ok(Ok(match number(data.get("status")) {
        Some(1) => Delivery::Received { at },
        _ if at.is_some() => Delivery::Received { at },
        _ => Delivery::Pending,
    }))
}

/// A new pair of tokens from `POST {oauth}/v4/oa/access_token` (its `Debug` shows
/// neither).
#[derive(Clone, PartialEq, Eq)]
pub struct Tokens {
    pub access_token: String,
    /// Works once: it must be kept in place of the one used.
    pub refresh_token: String,
    pub expires_in_seconds: u64,
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokens")
            .field("expires_in_seconds", &self.expires_in_seconds)
            .finish_non_exhaustive()
    }
}

/// Why a refresh gave no tokens.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RefreshError {
    #[error("Zalo refused the refresh token ({code}: {detail}); an operator must give a new one")]
    Refused { code: i64, detail: String },
    #[error(transparent)]
    Unreadable(#[from] Unreadable),
}

/// The form of a refresh (header `secret_key` apart).
pub fn refresh_form<'a>(app_id: &'a str, refresh_token: &'a str) -> [(&'static str, &'a str); 3] {
    [
        ("app_id", app_id),
        ("grant_type", "refresh_token"),
        ("refresh_token", refresh_token),
    ]
}

pub fn parse_refresh(body: &[u8]) -> Result<Tokens, RefreshError> {
    let v: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| Unreadable(e.to_string()))?;
    if let (Some(access), Some(refresh)) =
        (text(v.get("access_token")), text(v.get("refresh_token")))
    {
        return Ok(Tokens {
            access_token: access,
            refresh_token: refresh,
            expires_in_seconds: number(v.get("expires_in")).unwrap_or(3600),
        });
    }
    let code = v
        .get("error")
        .and_then(serde_json::Value::as_i64)
        .unwrap_or(0);
    let detail = ["error_description", "error_reason", "error_name", "message"]
        .iter()
        .find_map(|k| text(v.get(*k)))
        .unwrap_or_else(|| "no tokens in the answer".into());
    Err(RefreshError::Refused { code, detail })
}

/// A delivery event Zalo posts to the OA's callback URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceivedEvent {
    pub app_id: String,
    pub msg_id: String,
    pub tracking_id: Option<String>,
    pub delivery_time: Option<String>,
    pub timestamp: String,
}

/// Why an event is not taken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EventError {
    #[error("the X-ZEvent-Signature does not match the body")]
    BadSignature,
    #[error("another app's event")]
    OtherApp,
    #[error("not a ZNS event: {0}")]
    Unreadable(String),
    /// Any other event name: not ours to act on.
    #[error("event {0:?} is not a delivery event")]
    NotDelivery(String),
}

/// `mac=` and the hex SHA-256 of app id + body + timestamp + secret key: the
/// `X-ZEvent-Signature` Zalo sends with an event.
pub fn event_signature(app_id: &str, body: &str, timestamp: &str, secret_key: &str) -> String {
    let mut h = sha2::Sha256::new();
    h.update(app_id.as_bytes());
    h.update(body.as_bytes());
    h.update(timestamp.as_bytes());
    h.update(secret_key.as_bytes());
    format!("mac={}", hex::encode(h.finalize()))
}

/// Reads a delivery event, checking that it is this app's and signed with its key
/// (compared in constant time).
pub fn parse_event(
    body: &str,
    signature: &str,
    app_id: &str,
    secret_key: &str,
) -> Result<ReceivedEvent, EventError> {
    let v: serde_json::Value =
        serde_json::from_str(body).map_err(|e| EventError::Unreadable(e.to_string()))?;
    let timestamp =
        text(v.get("timestamp")).ok_or_else(|| EventError::Unreadable("no timestamp".into()))?;
    let expected = event_signature(app_id, body, &timestamp, secret_key);
    let given = signature.trim();
    if !bool::from(subtle::ConstantTimeEq::ct_eq(
        expected.as_bytes(),
        given.as_bytes(),
    )) {
        return Err(EventError::BadSignature);
    }
    if text(v.get("app_id")).as_deref() != Some(app_id) {
        return Err(EventError::OtherApp);
    }
    let name = text(v.get("event_name")).unwrap_or_default();
    if name != "user_received_message" {
        return Err(EventError::NotDelivery(name));
    }
    let message = v.get("message");
    Ok(ReceivedEvent {
        app_id: app_id.to_owned(),
        msg_id: text(message.and_then(|m| m.get("msg_id")))
            .ok_or_else(|| EventError::Unreadable("no message.msg_id".into()))?,
        tracking_id: text(message.and_then(|m| m.get("tracking_id"))),
        delivery_time: text(message.and_then(|m| m.get("delivery_time"))),
        timestamp,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sends_accepted_and_refused() {
        let ok = br#"{"error":0,"message":"Success","data":{"msg_id":"a1b2","sent_time":"1626147376000","quota":{"dailyQuota":"500","remainingQuota":"499"}}}"#;
        assert_eq!(
            parse_send(ok).unwrap().unwrap(),
            Accepted {
                msg_id: "a1b2".into(),
                sent_time: Some("1626147376000".into()),
                remaining_quota: Some(499),
            }
        );
        for (code, want_final, kind) in [
            (-118, true, "no_account"),
            (-109, true, "template"),
            (-112, true, "template"),
            (-115, true, "quota"),
            (-108, true, "phone"),
            (-124, false, "token"),
            (-100, false, "other"),
        ] {
            let body = format!(r#"{{"error":{code},"message":"x"}}"#);
            let refusal = parse_send(body.as_bytes()).unwrap().unwrap_err();
            assert_eq!(refusal.code(), code);
            assert_eq!(refusal.is_final(), want_final, "{code}");
            assert_eq!(refusal.label(), format!("zns_{code}"));
            let got = match refusal {
                Refusal::NoZaloAccount { .. } => "no_account",
                Refusal::Template { .. } => "template",
                Refusal::Quota { .. } => "quota",
                Refusal::Phone { .. } => "phone",
                Refusal::AccessToken { .. } => "token",
                Refusal::Other { .. } => "other",
            };
            assert_eq!(got, kind, "{code}");
        }
        assert!(parse_send(b"<html>busy</html>").is_err());
        assert!(parse_send(br#"{"error":0,"data":{}}"#).is_err());
    }

    #[test]
    fn debug_shows_no_code_token_or_number() {
        let req = SendRequest {
            phone: "84971234567".into(),
            template_id: "1".into(),
            template_data: [("otp".to_owned(), "482913".to_owned())].into(),
            tracking_id: "t".into(),
        };
        let shown = format!("{req:?}");
        assert!(
            !shown.contains("482913") && !shown.contains("971234567"),
            "{shown}"
        );
        let t = Tokens {
            access_token: "AAA-secret".into(),
            refresh_token: "RRR-secret".into(),
            expires_in_seconds: 1,
        };
        assert!(!format!("{t:?}").contains("secret"));
    }

    #[test]
    fn status_and_refresh() {
        assert_eq!(
            parse_status(br#"{"error":0,"data":{"status":1,"delivery_time":"1700000000000"}}"#)
                .unwrap()
                .unwrap(),
            Delivery::Received {
                at: Some("1700000000000".into())
            }
        );
        assert_eq!(
            parse_status(br#"{"error":0,"data":{"status":0,"delivery_time":null}}"#)
                .unwrap()
                .unwrap(),
            Delivery::Pending
        );
        let t = parse_refresh(br#"{"access_token":"A","refresh_token":"R","expires_in":"90000"}"#)
            .unwrap();
        assert_eq!(
            (
                t.access_token.as_str(),
                t.refresh_token.as_str(),
                t.expires_in_seconds
            ),
            ("A", "R", 90000)
        );
        assert!(matches!(
            parse_refresh(br#"{"error":-14014,"error_name":"Invalid refresh token"}"#),
            Err(RefreshError::Refused { code: -14014, .. })
        ));
    }

    #[test]
    fn events_are_taken_only_signed_by_the_app() {
        let body = r#"{"app_id":"42","event_name":"user_received_message","message":{"msg_id":"m1","tracking_id":"t1","delivery_time":"5"},"timestamp":"5"}"#;
        let sig = event_signature("42", body, "5", "secret");
        let e = parse_event(body, &sig, "42", "secret").unwrap();
        assert_eq!(e.msg_id, "m1");
        assert_eq!(e.tracking_id.as_deref(), Some("t1"));
        assert_eq!(
            parse_event(body, &sig, "42", "other"),
            Err(EventError::BadSignature)
        );
        assert_eq!(
            parse_event(body, "mac=00", "42", "secret"),
            Err(EventError::BadSignature)
        );
        let tampered = body.replace("m1", "m2");
        assert_eq!(
            parse_event(&tampered, &sig, "42", "secret"),
            Err(EventError::BadSignature)
        );
        let other = body.replace("\"42\"", "\"43\"");
        let other_sig = event_signature("42", &other, "5", "secret");
        assert_eq!(
            parse_event(&other, &other_sig, "42", "secret"),
            Err(EventError::OtherApp)
        );
    }
}
