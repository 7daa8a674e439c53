//! Reading envelopes and messages; hostile XML is refused by `xml`.

use base64::Engine;

use super::message::*;
use super::xml::{self, Element};

fn missing(element: &str, what: &str) -> MssError {
    MssError::Missing {
        element: element.to_owned(),
        what: what.to_owned(),
    }
}

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
