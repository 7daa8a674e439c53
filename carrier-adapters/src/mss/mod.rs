//! ETSI TS 102 204 v1.1.2 (Mobile Signature Service) messages over SOAP: values, a
//! writer and a parser. Pure code: bytes in, values out.
//!
//! Messages are RPC/literal: the body holds an operation element (`mss:MSS_Signature`)
//! whose part (`MSS_SignatureReq`) is unqualified (`xmlns=""`) in the WSDL but qualified
//! by many implementations; both are accepted, and either can be written. The operation
//! element itself is accepted qualified or unqualified (a WSDL-generated client such as
//! zeep writes `<MSS_Signature>` in no namespace).

pub mod dialect;
pub mod xml;

use std::fmt;

use base64::Engine;

use xml::{escape, Element, XmlError};

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

const STATUS_TABLE: &[(u16, StatusCode, &str)] = &[
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

    fn parse(s: &str) -> Option<MessagingMode> {
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

    fn parse(name: &str) -> Option<Operation> {
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

fn missing(element: &str, what: &str) -> MssError {
    MssError::Missing {
        element: element.to_owned(),
        what: what.to_owned(),
    }
}

// ---------------------------------------------------------------------------------
// Writing

struct Writer {
    out: String,
}

impl Writer {
    fn open(&mut self, name: &str, attrs: &[(&str, Option<&str>)]) {
        self.out.push('<');
        self.out.push_str(name);
        for (k, v) in attrs {
            if let Some(v) = v {
                self.out.push(' ');
                self.out.push_str(k);
                self.out.push_str("=\"");
                self.out.push_str(&escape(v));
                self.out.push('"');
            }
        }
        self.out.push('>');
    }

    fn empty(&mut self, name: &str, attrs: &[(&str, Option<&str>)]) {
        self.open(name, attrs);
        self.out.pop();
        self.out.push_str("/>");
    }

    fn close(&mut self, name: &str) {
        self.out.push_str("</");
        self.out.push_str(name);
        self.out.push('>');
    }

    fn text_element(&mut self, name: &str, attrs: &[(&str, Option<&str>)], text: &str) {
        self.open(name, attrs);
        self.out.push_str(&escape(text));
        self.close(name);
    }

    fn ap_mssp(&mut self, ap: &ApInfo, mssp: &MsspInfo) {
        self.empty(
            "mss:AP_Info",
            &[
                ("AP_ID", Some(&ap.ap_id)),
                ("AP_TransID", Some(&ap.ap_trans_id)),
                ("AP_PWD", Some(&ap.ap_pwd)),
                ("Instant", Some(&ap.instant)),
                ("AP_URL", ap.ap_url.as_deref()),
            ],
        );
        self.open("mss:MSSP_Info", &[("Instant", mssp.instant.as_deref())]);
        self.open("mss:MSSP_ID", &[]);
        self.text_element("mss:URI", &[], &mssp.mssp_id);
        self.close("mss:MSSP_ID");
        self.close("mss:MSSP_Info");
    }

    fn mobile_user(&mut self, msisdn: &str) {
        self.open("mss:MobileUser", &[]);
        self.text_element("mss:MSISDN", &[], msisdn);
        self.close("mss:MobileUser");
    }

    fn data(&mut self, name: &str, data: &Data) {
        self.text_element(
            name,
            &[
                ("MimeType", data.mime_type.as_deref()),
                ("Encoding", data.encoding.as_deref()),
            ],
            &data.value,
        );
    }

    fn uri(&mut self, name: &str, uri: &str) {
        self.open(name, &[]);
        self.text_element("mss:mssURI", &[], uri);
        self.close(name);
    }

    fn signature(&mut self, bytes: &[u8]) {
        self.open("mss:MSS_Signature", &[]);
        self.text_element(
            "mss:Base64Signature",
            &[],
            &base64::engine::general_purpose::STANDARD.encode(bytes),
        );
        self.close("mss:MSS_Signature");
    }

    fn status(&mut self, status: &Status) {
        self.open("mss:Status", &[]);
        self.empty(
            "mss:StatusCode",
            &[("Value", Some(&status.code.code().to_string()))],
        );
        if let Some(m) = &status.message {
            self.text_element("mss:StatusMessage", &[], m);
        }
        self.close("mss:Status");
    }

    /// Writes the message element. `root` is `(element name, extra namespace attrs)`.
    fn message(&mut self, message: &MssMessage, name: &str, ns_attrs: &[(&str, Option<&str>)]) {
        let version = [("MajorVersion", Some("1")), ("MinorVersion", Some("1"))];
        let mut attrs: Vec<(&str, Option<&str>)> = ns_attrs.to_vec();
        attrs.extend_from_slice(&version);
        match message {
            MssMessage::SignatureReq(m) => {
                let timeout = m.timeout_seconds.map(|t| t.to_string());
                attrs.push(("MessagingMode", Some(m.mode.as_str())));
                attrs.push(("TimeOut", timeout.as_deref()));
                self.open(name, &attrs);
                self.ap_mssp(&m.ap, &m.mssp);
                self.mobile_user(&m.msisdn);
                self.data("mss:DataToBeSigned", &m.data_to_be_signed);
                if let Some(d) = &m.data_to_be_displayed {
                    self.data("mss:DataToBeDisplayed", d);
                }
                if let Some(p) = &m.signature_profile {
                    self.uri("mss:SignatureProfile", p);
                }
                if let Some(f) = &m.mss_format {
                    self.uri("mss:MSS_Format", f);
                }
            }
            MssMessage::SignatureResp(m) => {
                attrs.push(("MSSP_TransID", Some(&m.mssp_trans_id)));
                self.open(name, &attrs);
                self.ap_mssp(&m.ap, &m.mssp);
                self.mobile_user(&m.msisdn);
                if let Some(s) = &m.signature {
                    self.signature(s);
                }
                self.status(&m.status);
            }
            MssMessage::StatusReq(m) => {
                attrs.push(("MSSP_TransID", Some(&m.mssp_trans_id)));
                self.open(name, &attrs);
                self.ap_mssp(&m.ap, &m.mssp);
                if let Some(msisdn) = &m.msisdn {
                    self.mobile_user(msisdn);
                }
            }
            MssMessage::StatusResp(m) => {
                attrs.push(("MSSP_TransID", m.mssp_trans_id.as_deref()));
                self.open(name, &attrs);
                self.ap_mssp(&m.ap, &m.mssp);
                self.mobile_user(&m.msisdn);
                if let Some(s) = &m.signature {
                    self.signature(s);
                }
                self.status(&m.status);
            }
            MssMessage::ReceiptReq(m) => {
                attrs.push(("MSSP_TransID", Some(&m.mssp_trans_id)));
                self.open(name, &attrs);
                self.ap_mssp(&m.ap, &m.mssp);
                self.mobile_user(&m.msisdn);
                if let Some(s) = &m.status {
                    self.status(s);
                }
                if let Some(d) = &m.message {
                    self.data("mss:Message", d);
                }
            }
            MssMessage::ReceiptResp(m) => {
                self.open(name, &attrs);
                self.ap_mssp(&m.ap, &m.mssp);
                self.status(&m.status);
            }
        }
        self.close(name);
    }
}

/// The message as a standalone document with a qualified root (for schema validation
/// and logging).
pub fn write_document(message: &MssMessage) -> String {
    let mut w = Writer {
        out: String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"),
    };
    let name = format!("mss:{}", message.element_name());
    w.message(message, &name, &[("xmlns:mss", Some(MSS_NS))]);
    w.out
}

/// A SOAP envelope carrying `message` inside the `operation` element.
pub fn write_envelope(
    version: SoapVersion,
    operation: Operation,
    message: &MssMessage,
    style: PartStyle,
) -> String {
    let mut w = Writer {
        out: String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>"),
    };
    w.open(
        "soap:Envelope",
        &[
            ("xmlns:soap", Some(version.namespace())),
            ("xmlns:mss", Some(MSS_NS)),
        ],
    );
    w.open("soap:Body", &[]);
    let op = format!("mss:{}", operation.element_name());
    w.open(&op, &[]);
    match style {
        PartStyle::Unqualified => {
            w.message(message, message.element_name(), &[("xmlns", Some(""))])
        }
        PartStyle::Qualified => {
            let name = format!("mss:{}", message.element_name());
            w.message(message, &name, &[]);
        }
    }
    w.close(&op);
    w.close("soap:Body");
    w.close("soap:Envelope");
    w.out
}

/// A SOAP fault whose code is the ETSI status (`mss:_101`).
pub fn write_fault(version: SoapVersion, fault: &Fault) -> String {
    let mut w = Writer {
        out: String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>"),
    };
    w.open(
        "soap:Envelope",
        &[
            ("xmlns:soap", Some(version.namespace())),
            ("xmlns:mss", Some(MSS_NS)),
        ],
    );
    w.open("soap:Body", &[]);
    w.open("soap:Fault", &[]);
    let status_code = format!("mss:_{}", fault.status.code());
    match version {
        SoapVersion::Soap11 => {
            w.text_element("faultcode", &[], &status_code);
            w.text_element("faultstring", &[], &fault.reason);
        }
        SoapVersion::Soap12 => {
            let side = if fault.sender {
                "soap:Sender"
            } else {
                "soap:Receiver"
            };
            w.open("soap:Code", &[]);
            w.text_element("soap:Value", &[], side);
            w.open("soap:Subcode", &[]);
            w.text_element("soap:Value", &[], &status_code);
            w.close("soap:Subcode");
            w.close("soap:Code");
            w.open("soap:Reason", &[]);
            w.text_element("soap:Text", &[("xml:lang", Some("en"))], &fault.reason);
            w.close("soap:Reason");
        }
    }
    w.close("soap:Fault");
    w.close("soap:Body");
    w.close("soap:Envelope");
    w.out
}

// ---------------------------------------------------------------------------------
// Parsing

const MESSAGE_NAMES: [&str; 6] = [
    "MSS_SignatureReq",
    "MSS_SignatureResp",
    "MSS_StatusReq",
    "MSS_StatusResp",
    "MSS_ReceiptReq",
    "MSS_ReceiptResp",
];

/// Parses a SOAP 1.1 or 1.2 envelope holding an MSS message or a fault.
pub fn parse_envelope(
    input: &[u8],
    max_bytes: usize,
) -> Result<(SoapVersion, SoapContent), MssError> {
    let root = xml::parse(input, max_bytes)?;
    let version = match root.namespace.as_deref() {
        Some(SOAP11_NS) if root.name == "Envelope" => SoapVersion::Soap11,
        Some(SOAP12_NS) if root.name == "Envelope" => SoapVersion::Soap12,
        _ => {
            return Err(MssError::NotSoap(format!(
                "root element is {{{}}}{}",
                root.namespace.as_deref().unwrap_or(""),
                root.name
            )))
        }
    };
    let body = root
        .children
        .iter()
        .find(|c| c.is(version.namespace(), "Body"))
        .ok_or_else(|| MssError::NotSoap("no Body".into()))?;
    let first = body.children.first().ok_or(MssError::NoMessage)?;
    if first.is(version.namespace(), "Fault") {
        return Ok((version, SoapContent::Fault(parse_fault(version, first)?)));
    }
    // Document style (the message itself) or RPC style (operation → part).
    let (operation, part) = if is_message(first) {
        (None, first)
    } else if first.namespace.as_deref() == Some(MSS_NS)
        || (first.namespace.is_none() && Operation::parse(&first.name).is_some())
    {
        // The wrapper is qualified by most implementations, unqualified by clients
        // generated from the WSDL (its RPC/literal binding names no namespace).
        let op = Operation::parse(&first.name);
        let part = first
            .children
            .iter()
            .find(|c| is_message(c))
            .ok_or(MssError::NoMessage)?;
        (op, part)
    } else {
        return Err(MssError::NoMessage);
    };
    Ok((
        version,
        SoapContent::Message {
            operation,
            message: parse_message(part)?,
        },
    ))
}

/// Parses a standalone message document (`<mss:MSS_SignatureReq …>`).
pub fn parse_document(input: &[u8], max_bytes: usize) -> Result<MssMessage, MssError> {
    let root = xml::parse(input, max_bytes)?;
    if !is_message(&root) {
        return Err(MssError::NoMessage);
    }
    parse_message(&root)
}

/// A part is the message element, qualified or with `xmlns=""`.
fn is_message(e: &Element) -> bool {
    MESSAGE_NAMES.contains(&e.name.as_str())
        && (e.namespace.is_none() || e.namespace.as_deref() == Some(MSS_NS))
}

fn mss_child<'a>(e: &'a Element, name: &str) -> Option<&'a Element> {
    // Children of the message are qualified per the schema; tolerate unqualified ones
    // as some MSSPs write them.
    e.children.iter().find(|c| {
        c.name == name && (c.namespace.as_deref() == Some(MSS_NS) || c.namespace.is_none())
    })
}

fn req_child<'a>(e: &'a Element, name: &str) -> Result<&'a Element, MssError> {
    mss_child(e, name).ok_or_else(|| missing(&e.name, name))
}

fn req_attr(e: &Element, name: &str) -> Result<String, MssError> {
    e.attr(name)
        .map(str::to_owned)
        .ok_or_else(|| missing(&e.name, &format!("@{name}")))
}

fn parse_ap(m: &Element) -> Result<(ApInfo, MsspInfo), MssError> {
    let ap = req_child(m, "AP_Info")?;
    let mssp = req_child(m, "MSSP_Info")?;
    let mssp_id = req_child(mssp, "MSSP_ID")?;
    let uri = req_child(mssp_id, "URI")?;
    Ok((
        ApInfo {
            ap_id: req_attr(ap, "AP_ID")?,
            ap_trans_id: req_attr(ap, "AP_TransID")?,
            ap_pwd: req_attr(ap, "AP_PWD")?,
            instant: req_attr(ap, "Instant")?,
            ap_url: ap.attr("AP_URL").map(str::to_owned),
        },
        MsspInfo {
            mssp_id: uri.trimmed_text().to_owned(),
            instant: mssp.attr("Instant").map(str::to_owned),
        },
    ))
}

fn parse_msisdn(m: &Element) -> Result<String, MssError> {
    let user = req_child(m, "MobileUser")?;
    let msisdn = req_child(user, "MSISDN")?.trimmed_text();
    if msisdn.is_empty() {
        return Err(missing("MobileUser", "MSISDN"));
    }
    Ok(msisdn.to_owned())
}

fn parse_data(e: &Element) -> Data {
    Data {
        value: e.text.clone(),
        mime_type: e.attr("MimeType").map(str::to_owned),
        encoding: e.attr("Encoding").map(str::to_owned),
    }
}

fn parse_uri(e: Option<&Element>) -> Result<Option<String>, MssError> {
    match e {
        None => Ok(None),
        Some(e) => Ok(Some(req_child(e, "mssURI")?.trimmed_text().to_owned())),
    }
}

fn parse_signature(m: &Element) -> Result<Option<Vec<u8>>, MssError> {
    let Some(sig) = mss_child(m, "MSS_Signature") else {
        return Ok(None);
    };
    let b64 = req_child(sig, "Base64Signature")?;
    let cleaned: String = b64.text.chars().filter(|c| !c.is_whitespace()).collect();
    base64::engine::general_purpose::STANDARD
        .decode(cleaned.as_bytes())
        .map(Some)
        .map_err(|_| MssError::Invalid {
            what: "Base64Signature".into(),
            value: cleaned.chars().take(40).collect(),
        })
}

fn parse_status(e: &Element) -> Result<Status, MssError> {
    let code = req_child(e, "StatusCode")?;
    let value = req_attr(code, "Value")?;
    let number: u16 = value.trim().parse().map_err(|_| MssError::Invalid {
        what: "StatusCode/@Value".into(),
        value: value.clone(),
    })?;
    Ok(Status {
        code: StatusCode::from_code(number),
        message: mss_child(e, "StatusMessage").map(|m| m.trimmed_text().to_owned()),
    })
}

fn parse_message(m: &Element) -> Result<MssMessage, MssError> {
    let (ap, mssp) = parse_ap(m)?;
    Ok(match m.name.as_str() {
        "MSS_SignatureReq" => {
            let mode_raw = req_attr(m, "MessagingMode")?;
            let mode = MessagingMode::parse(&mode_raw).ok_or(MssError::Invalid {
                what: "@MessagingMode".into(),
                value: mode_raw,
            })?;
            let timeout_seconds = match m.attr("TimeOut") {
                None => None,
                Some(t) => Some(t.trim().parse().map_err(|_| MssError::Invalid {
                    what: "@TimeOut".into(),
                    value: t.to_owned(),
                })?),
            };
            MssMessage::SignatureReq(SignatureReq {
                ap,
                mssp,
                msisdn: parse_msisdn(m)?,
                mode,
                timeout_seconds,
                data_to_be_signed: parse_data(req_child(m, "DataToBeSigned")?),
                data_to_be_displayed: mss_child(m, "DataToBeDisplayed").map(parse_data),
                signature_profile: parse_uri(mss_child(m, "SignatureProfile"))?,
                mss_format: parse_uri(mss_child(m, "MSS_Format"))?,
            })
        }
        "MSS_SignatureResp" => MssMessage::SignatureResp(SignatureResp {
            ap,
            mssp,
            msisdn: parse_msisdn(m)?,
            mssp_trans_id: req_attr(m, "MSSP_TransID")?,
            signature: parse_signature(m)?,
            status: parse_status(req_child(m, "Status")?)?,
        }),
        "MSS_StatusReq" => MssMessage::StatusReq(StatusReq {
            ap,
            mssp,
            mssp_trans_id: req_attr(m, "MSSP_TransID")?,
            msisdn: mss_child(m, "MobileUser")
                .map(|_| parse_msisdn(m))
                .transpose()?,
        }),
        "MSS_StatusResp" => MssMessage::StatusResp(StatusResp {
            ap,
            mssp,
            msisdn: parse_msisdn(m)?,
            mssp_trans_id: m.attr("MSSP_TransID").map(str::to_owned),
            signature: parse_signature(m)?,
            status: parse_status(req_child(m, "Status")?)?,
        }),
        "MSS_ReceiptReq" => MssMessage::ReceiptReq(ReceiptReq {
            ap,
            mssp,
            mssp_trans_id: req_attr(m, "MSSP_TransID")?,
            msisdn: parse_msisdn(m)?,
            status: mss_child(m, "Status").map(parse_status).transpose()?,
            message: mss_child(m, "Message").map(parse_data),
        }),
        "MSS_ReceiptResp" => MssMessage::ReceiptResp(ReceiptResp {
            ap,
            mssp,
            status: parse_status(req_child(m, "Status")?)?,
        }),
        _ => return Err(MssError::NoMessage),
    })
}

fn parse_fault_code(value: &str) -> Option<StatusCode> {
    let local = value.rsplit(':').next()?;
    let digits = local.strip_prefix('_')?;
    digits.parse().ok().map(StatusCode::from_code)
}

fn parse_fault(version: SoapVersion, fault: &Element) -> Result<Fault, MssError> {
    match version {
        SoapVersion::Soap11 => {
            let code = fault
                .child("faultcode")
                .ok_or_else(|| missing("Fault", "faultcode"))?
                .trimmed_text();
            let reason = fault
                .child("faultstring")
                .map(|e| e.trimmed_text().to_owned())
                .unwrap_or_default();
            let status = parse_fault_code(code).unwrap_or(StatusCode::InternalError);
            Ok(Fault {
                sender: !code.ends_with("Server") && status.code() < 900,
                status,
                reason,
            })
        }
        SoapVersion::Soap12 => {
            let code = fault
                .child("Code")
                .ok_or_else(|| missing("Fault", "Code"))?;
            let side = code.child("Value").map(|v| v.trimmed_text()).unwrap_or("");
            let sub = code
                .child("Subcode")
                .and_then(|s| s.child("Value"))
                .map(|v| v.trimmed_text());
            let reason = fault
                .child("Reason")
                .and_then(|r| r.child("Text"))
                .map(|t| t.trimmed_text().to_owned())
                .unwrap_or_default();
            Ok(Fault {
                sender: side.ends_with("Sender"),
                status: sub
                    .and_then(parse_fault_code)
                    .unwrap_or(StatusCode::InternalError),
                reason,
            })
        }
    }
}

#[cfg(test)]
mod tests;
