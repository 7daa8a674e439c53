//! MobiFone: we poll, and the signature comes bare.
//!
//! Requests are `asynchClientServer` over SOAP 1.1 with qualified parts. The result's
//! `MSS_Signature` is `MSS_Format` PKCS1: the raw RSA PKCS#1 v1.5 signature over
//! DigestInfo(SHA-256(data to be signed)), without a certificate. The SIM certificate is
//! fetched separately from the MSSP's certificate endpoint (HTTP Basic with AP_ID and
//! AP_PWD), then checked like any other: chain, validity, CRL.

use super::{Dialect, SignatureFormat};
use crate::mss::{MessagingMode, PartStyle, SoapVersion};
use crate::Carrier;

pub const DIALECT: Dialect = Dialect {
    carrier: Carrier::Mobifone,
    soap: SoapVersion::Soap11,
    part_style: PartStyle::Qualified,
    mode: MessagingMode::AsynchClientServer,
    format: SignatureFormat::Pkcs1,
    signature_profile: "http://mobifone.vn/mobile-id/profile/sign",
};
