//! The ETSI TS 102 204 messages and their parts as values, the SOAP versions and
//! styles they travel in, and what can be wrong with one.

use std::fmt;

use super::xml::XmlError;

pub const MSS_NS: &str = "http://uri.etsi.org/TS102204/v1.1.2#";
pub const SOAP11_NS: &str = "http://schemas.xmlsoap.org/soap/envelope/";
pub const SOAP12_NS: &str = "http://www.w3.org/2003/05/soap-envelope";
/// MSS_Format URIs.
pub const FORMAT_PKCS7: &str = "http://uri.etsi.org/TS102204/v1.1.2#PKCS7";
pub const FORMAT_PKCS1: &str = "http://uri.etsi.org/TS102204/v1.1.2#PKCS1";
/// Default size bound for a SOAP message (a CMS with a certificate chain is a few KiB).
pub const DEFAULT_MAX_BYTES: usize = 256 * 1024;

/// ETSI TS 102 204 §10.2 status codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum StatusCode {
    RequestOk,
    WrongParam,
    MissingParam,
    WrongDataLength,
    UnauthorizedAccess,
    UnknownClient,
    InappropriateData,
    IncompatibleInterface,
    UnsupportedProfile,
    ExpiredTransaction,
    OtaError,
    UserCancel,
    PinNrBlocked,
    CardBlocked,
    NoKeyFound,
    PbSignatureProcess,
    NoCertFound,
    Signature,
    RevokedCertificate,
    ValidSignature,
    InvalidSignature,
    OutstandingTransaction,
    InternalError,
    Other(u16),
}

pub(super) const STATUS_TABLE: &[(u16, StatusCode, &str)] = &[
    (100, StatusCode::RequestOk, "REQUEST_OK"),
    (101, StatusCode::WrongParam, "WRONG_PARAM"),
    (102, StatusCode::MissingParam, "MISSING_PARAM"),
    (103, StatusCode::WrongDataLength, "WRONG_DATA_LENGTH"),
    (104, StatusCode::UnauthorizedAccess, "UNAUTHORIZED_ACCESS"),
    (105, StatusCode::UnknownClient, "UNKNOWN_CLIENT"),
    (107, StatusCode::InappropriateData, "INAPPROPRIATE_DATA"),
    (
        108,
        StatusCode::IncompatibleInterface,
        "INCOMPATIBLE_INTERFACE",
    ),
    (109, StatusCode::UnsupportedProfile, "UNSUPPORTED_PROFILE"),
    (208, StatusCode::ExpiredTransaction, "EXPIRED_TRANSACTION"),
    (209, StatusCode::OtaError, "OTA_ERROR"),
    (401, StatusCode::UserCancel, "USER_CANCEL"),
    (402, StatusCode::PinNrBlocked, "PIN_NR_BLOCKED"),
    (403, StatusCode::CardBlocked, "CARD_BLOCKED"),
    (404, StatusCode::NoKeyFound, "NO_KEY_FOUND"),
    (406, StatusCode::PbSignatureProcess, "PB_SIGNATURE_PROCESS"),
    (422, StatusCode::NoCertFound, "NO_CERT_FOUND"),
    (500, StatusCode::Signature, "SIGNATURE"),
    (501, StatusCode::RevokedCertificate, "REVOKED_CERTIFICATE"),
    (502, StatusCode::ValidSignature, "VALID_SIGNATURE"),
    (503, StatusCode::InvalidSignature, "INVALID_SIGNATURE"),
    (
        504,
        StatusCode::OutstandingTransaction,
        "OUTSTANDING_TRANSACTION",
    ),
    (900, StatusCode::InternalError, "INTERNAL_ERROR"),
];

impl StatusCode {
    pub fn from_code(code: u16) -> StatusCode {
        STATUS_TABLE
            .iter()
            .find(|(c, _, _)| *c == code)
            .map(|(_, s, _)| *s)
            .unwrap_or(StatusCode::Other(code))
    }

    pub fn code(self) -> u16 {
        match self {
            StatusCode::Other(c) => c,
            known => STATUS_TABLE
                .iter()
                .find(|(_, s, _)| *s == known)
                .map(|(c, _, _)| *c)
                .unwrap_or(900),
        }
    }

    pub fn message(self) -> &'static str {
        STATUS_TABLE
            .iter()
            .find(|(_, s, _)| *s == self)
            .map(|(_, _, m)| *m)
            .unwrap_or("UNKNOWN_STATUS")
    }
}

impl fmt::Display for StatusCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.code(), self.message())
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    pub code: StatusCode,
    pub message: Option<String>,
}

impl Status {
    pub fn new(code: StatusCode) -> Status {
        Status {
            code,
            message: Some(code.message().to_owned()),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessagingMode {
    Synch,
    AsynchClientServer,
    AsynchServerServer,
}

impl MessagingMode {
    pub fn as_str(self) -> &'static str {
        match self {
            MessagingMode::Synch => "synch",
            MessagingMode::AsynchClientServer => "asynchClientServer",
            MessagingMode::AsynchServerServer => "asynchServerServer",
        }
    }

    pub(super) fn parse(s: &str) -> Option<MessagingMode> {
        [
            MessagingMode::Synch,
            MessagingMode::AsynchClientServer,
            MessagingMode::AsynchServerServer,
        ]
        .into_iter()
        .find(|m| m.as_str() == s)
    }
}

/// `AP_Info`: who asks. `instant` is RFC 3339 (xs:dateTime).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApInfo {
    pub ap_id: String,
    pub ap_trans_id: String,
    pub ap_pwd: String,
    pub instant: String,
    pub ap_url: Option<String>,
}

/// `MSSP_Info`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MsspInfo {
    pub mssp_id: String,
    pub instant: Option<String>,
}

/// `DataType`: text with a MIME type and encoding (`base64` for binary data).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Data {
    pub value: String,
    pub mime_type: Option<String>,
    pub encoding: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignatureReq {
    pub ap: ApInfo,
    pub mssp: MsspInfo,
    pub msisdn: String,
    pub mode: MessagingMode,
    pub timeout_seconds: Option<u32>,
    pub data_to_be_signed: Data,
    pub data_to_be_displayed: Option<Data>,
    pub signature_profile: Option<String>,
    pub mss_format: Option<String>,
}

/// `MSS_Signature`: the signature bytes (CMS SignedData for PKCS7, the raw RSA value
/// for PKCS1) carried as `Base64Signature`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignatureResp {
    pub ap: ApInfo,
    pub mssp: MsspInfo,
    pub msisdn: String,
    pub mssp_trans_id: String,
    pub signature: Option<Vec<u8>>,
    pub status: Status,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusReq {
    pub ap: ApInfo,
    pub mssp: MsspInfo,
    pub mssp_trans_id: String,
    pub msisdn: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusResp {
    pub ap: ApInfo,
    pub mssp: MsspInfo,
    pub msisdn: String,
    pub mssp_trans_id: Option<String>,
    pub signature: Option<Vec<u8>>,
    pub status: Status,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceiptReq {
    pub ap: ApInfo,
    pub mssp: MsspInfo,
    pub mssp_trans_id: String,
    pub msisdn: String,
    pub status: Option<Status>,
    pub message: Option<Data>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceiptResp {
    pub ap: ApInfo,
    pub mssp: MsspInfo,
    pub status: Status,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MssMessage {
    SignatureReq(SignatureReq),
    SignatureResp(SignatureResp),
    StatusReq(StatusReq),
    StatusResp(StatusResp),
    ReceiptReq(ReceiptReq),
    ReceiptResp(ReceiptResp),
}

impl MssMessage {
    /// The element name of the message (the WSDL part).
    pub fn element_name(&self) -> &'static str {
        match self {
            MssMessage::SignatureReq(_) => "MSS_SignatureReq",
            MssMessage::SignatureResp(_) => "MSS_SignatureResp",
            MssMessage::StatusReq(_) => "MSS_StatusReq",
            MssMessage::StatusResp(_) => "MSS_StatusResp",
            MssMessage::ReceiptReq(_) => "MSS_ReceiptReq",
            MssMessage::ReceiptResp(_) => "MSS_ReceiptResp",
        }
    }
}

/// The SOAP operations of the WSDL; the element that wraps the part in the body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    Signature,
    SignatureResponse,
    StatusQuery,
    StatusQueryResponse,
    Receipt,
    ReceiptResponse,
    /// MSSP → AP in asynchServerServer mode: carries an `MSS_StatusResp`.
    Notification,
    NotificationResponse,
}

impl Operation {
    pub fn element_name(self) -> &'static str {
        match self {
            Operation::Signature => "MSS_Signature",
            Operation::SignatureResponse => "MSS_SignatureResponse",
            Operation::StatusQuery => "MSS_StatusQuery",
            Operation::StatusQueryResponse => "MSS_StatusQueryResponse",
            Operation::Receipt => "MSS_Receipt",
            Operation::ReceiptResponse => "MSS_ReceiptResponse",
            Operation::Notification => "MSS_Notification",
            Operation::NotificationResponse => "MSS_NotificationResponse",
        }
    }

    pub(super) fn parse(name: &str) -> Option<Operation> {
        [
            Operation::Signature,
            Operation::SignatureResponse,
            Operation::StatusQuery,
            Operation::StatusQueryResponse,
            Operation::Receipt,
            Operation::ReceiptResponse,
            Operation::Notification,
            Operation::NotificationResponse,
        ]
        .into_iter()
        .find(|o| o.element_name() == name)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SoapVersion {
    Soap11,
    Soap12,
}

impl SoapVersion {
    pub fn namespace(self) -> &'static str {
        match self {
            SoapVersion::Soap11 => SOAP11_NS,
            SoapVersion::Soap12 => SOAP12_NS,
        }
    }

    /// The version a request's Content-Type names (`text/xml`: 1.1,
    /// `application/soap+xml`: 1.2).
    pub fn of_content_type(content_type: &str) -> Option<SoapVersion> {
        let media = content_type.split(';').next()?.trim().to_ascii_lowercase();
        match media.as_str() {
            "text/xml" => Some(SoapVersion::Soap11),
            "application/soap+xml" => Some(SoapVersion::Soap12),
            _ => None,
        }
    }

    /// The HTTP status of a fault by the SOAP HTTP binding: SOAP 1.1 sends every fault
    /// with 500; SOAP 1.2 sends `env:Sender` with 400 and `env:Receiver` with 500.
    pub fn fault_http_status(self, sender: bool) -> u16 {
        match (self, sender) {
            (SoapVersion::Soap12, true) => 400,
            _ => 500,
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            SoapVersion::Soap11 => "text/xml; charset=utf-8",
            SoapVersion::Soap12 => "application/soap+xml; charset=utf-8",
        }
    }
}

/// How the part element inside the operation element is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PartStyle {
    /// `<MSS_SignatureReq xmlns="">`, as the RPC/literal WSDL says.
    Unqualified,
    /// `<mss:MSS_SignatureReq>`, as many MSSPs write it.
    Qualified,
}

/// A SOAP fault carrying an ETSI status code (`mss:_101`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fault {
    /// `true` when the fault is the sender's (SOAP Client / Sender).
    pub sender: bool,
    pub status: StatusCode,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
#[allow(clippy::large_enum_variant)] // Messages are the common case; faults are rare.
pub enum SoapContent {
    Message {
        operation: Option<Operation>,
        message: MssMessage,
    },
    Fault(Fault),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MssError {
    #[error(transparent)]
    Xml(#[from] XmlError),
    #[error("not a SOAP envelope: {0}")]
    NotSoap(String),
    #[error("the SOAP body holds no ETSI TS 102 204 message")]
    NoMessage,
    #[error("{element} is missing {what}")]
    Missing { element: String, what: String },
    #[error("{what} has an invalid value {value:?}")]
    Invalid { what: String, value: String },
}

impl MssError {
    /// The ETSI status a server answers this error with.
    pub fn status(&self) -> StatusCode {
        match self {
            MssError::Missing { .. } => StatusCode::MissingParam,
            _ => StatusCode::WrongParam,
        }
    }
}
