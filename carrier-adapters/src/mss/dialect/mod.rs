//! How each carrier's MSSP speaks ETSI TS 102 204: one module per carrier
//! ([`viettel`], [`vinaphone`], [`mobifone`]), read by both the gateway's adapters and the
//! simulator's MSSPs, so each difference is written down once:
//!
//! | carrier   | SOAP | part element  | result delivery                        | MSS_Format | callback auth |
//! |-----------|------|---------------|----------------------------------------|------------|---------------|
//! | Viettel   | 1.1  | unqualified   | MSSP calls `AP_URL` (asynchServerServer) | PKCS7 (CMS) | HMAC header |
//! | VinaPhone | 1.2  | qualified     | AP polls `MSS_StatusQuery` (asynchClientServer) | PKCS7 (CMS) | — |
//! | MobiFone  | 1.1  | qualified     | AP polls `MSS_StatusQuery` (asynchClientServer) | PKCS1, certificate fetched separately | — |

pub mod mobifone;
pub mod viettel;
pub mod vinaphone;

use super::{MessagingMode, PartStyle, SoapVersion, FORMAT_PKCS1, FORMAT_PKCS7};
use crate::Carrier;

/// Header with the callback's Unix time (seconds).
pub const CALLBACK_TIMESTAMP_HEADER: &str = "X-MSS-Timestamp";
/// Header with `v1=` + hex HMAC-SHA256(secret, timestamp + "." + body).
pub const CALLBACK_SIGNATURE_HEADER: &str = "X-MSS-Signature";
/// How old a callback may be.
pub const CALLBACK_MAX_AGE_SECS: i64 = 300;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignatureFormat {
    /// CMS SignedData with the certificate inside.
    Pkcs7,
    /// Raw RSA signature over DigestInfo(SHA-256(data)); the certificate is fetched from
    /// the MSSP's certificate endpoint.
    Pkcs1,
}

impl SignatureFormat {
    pub fn uri(self) -> &'static str {
        match self {
            SignatureFormat::Pkcs7 => FORMAT_PKCS7,
            SignatureFormat::Pkcs1 => FORMAT_PKCS1,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dialect {
    pub carrier: Carrier,
    pub soap: SoapVersion,
    pub part_style: PartStyle,
    pub mode: MessagingMode,
    pub format: SignatureFormat,
    pub signature_profile: &'static str,
}

impl Dialect {
    /// The dialect of a carrier that offers SIM signatures.
    pub fn of(carrier: Carrier) -> Option<Dialect> {
        match carrier {
            Carrier::Viettel => Some(viettel::DIALECT),
            Carrier::Vinaphone => Some(vinaphone::DIALECT),
            Carrier::Mobifone => Some(mobifone::DIALECT),
            _ => None,
        }
    }

    pub fn calls_back(&self) -> bool {
        self.mode == MessagingMode::AsynchServerServer
    }
}

/// `v1=<hex>` for a callback body.
pub fn callback_signature(secret: &[u8], timestamp: i64, body: &[u8]) -> String {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret);
    let mut ctx = ring::hmac::Context::with_key(&key);
    ctx.update(timestamp.to_string().as_bytes());
    ctx.update(b".");
    ctx.update(body);
    let tag = ctx.sign();
    format!("v1={}", hex::encode(tag.as_ref()))
}

/// Checks a callback's signature (constant time) and age.
pub fn verify_callback(
    secret: &[u8],
    timestamp: &str,
    signature: &str,
    body: &[u8],
    now: i64,
) -> bool {
    let Ok(ts) = timestamp.trim().parse::<i64>() else {
        return false;
    };
    if (now - ts).abs() > CALLBACK_MAX_AGE_SECS {
        return false;
    }
    let Some(hex) = signature.trim().strip_prefix("v1=") else {
        return false;
    };
    let Ok(tag) = hex::decode(hex) else {
        return false;
    };
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret);
    let mut msg = ts.to_string().into_bytes();
    msg.push(b'.');
    msg.extend_from_slice(body);
    ring::hmac::verify(&key, &msg, &tag).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn three_carriers_three_dialects() {
        let v = Dialect::of(Carrier::Viettel).unwrap();
        let vn = Dialect::of(Carrier::Vinaphone).unwrap();
        let m = Dialect::of(Carrier::Mobifone).unwrap();
        assert!(v.calls_back() && !vn.calls_back() && !m.calls_back());
        assert_eq!(m.format, SignatureFormat::Pkcs1);
        assert_eq!(vn.soap, SoapVersion::Soap12);
        assert!(Dialect::of(Carrier::Gmobile).is_none());
    }

    #[test]
    fn callback_signatures_check_secret_body_and_age() {
        let sig = callback_signature(b"secret", 1_000, b"<x/>");
        assert!(verify_callback(b"secret", "1000", &sig, b"<x/>", 1_100));
        assert!(!verify_callback(b"other", "1000", &sig, b"<x/>", 1_100));
        assert!(!verify_callback(b"secret", "1000", &sig, b"<y/>", 1_100));
        assert!(!verify_callback(b"secret", "1001", &sig, b"<x/>", 1_100));
        assert!(!verify_callback(
            b"secret",
            "1000",
            &sig,
            b"<x/>",
            1_000 + 301
        ));
        assert!(!verify_callback(b"secret", "1000", "v1=zz", b"<x/>", 1_100));
        assert!(!verify_callback(b"secret", "abc", &sig, b"<x/>", 1_100));
    }
}
