//! Viettel: the MSSP calls us back.
//!
//! Requests are `asynchServerServer` with `AP_URL` set; the final `MSS_StatusResp`
//! arrives as `MSS_Notification` at that URL, signed with an HMAC header over the body
//! (shared secret per AP), and we answer with `MSS_ReceiptReq`. SOAP 1.1 with the part
//! element unqualified (`xmlns=""`), exactly as the RPC/literal WSDL says. Signatures
//! are CMS SignedData with the certificate inside. We still poll such requests rarely,
//! so a lost callback does not leave a request pending until it expires.

use super::{Dialect, SignatureFormat};
use crate::mss::{MessagingMode, PartStyle, SoapVersion};
use crate::Carrier;

pub const DIALECT: Dialect = Dialect {
    carrier: Carrier::Viettel,
    soap: SoapVersion::Soap11,
    part_style: PartStyle::Unqualified,
    mode: MessagingMode::AsynchServerServer,
    format: SignatureFormat::Pkcs7,
    signature_profile: "http://mobile-ca.viettel.vn/profile/sign",
};
