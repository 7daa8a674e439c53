//! VinaPhone (VNPT): we poll.
//!
//! Requests are `asynchClientServer`: the MSSP answers `REQUEST_OK` with its
//! transaction id and the result is fetched with `MSS_StatusQuery`, which answers
//! `OUTSTANDING_TRANSACTION` (504) until the person has answered. SOAP 1.2, with the part
//! elements qualified (`mss:MSS_StatusReq`) as VNPT's stack writes them. Signatures are
//! CMS SignedData.

use super::{Dialect, SignatureFormat};
use crate::mss::{MessagingMode, PartStyle, SoapVersion};
use crate::Carrier;

pub const DIALECT: Dialect = Dialect {
    carrier: Carrier::Vinaphone,
    soap: SoapVersion::Soap12,
    part_style: PartStyle::Qualified,
    mode: MessagingMode::AsynchClientServer,
    format: SignatureFormat::Pkcs7,
    signature_profile: "http://vnpt-ca.vn/mss/profile/digitalSignature",
};
