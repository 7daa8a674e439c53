//! Writing messages, envelopes and faults as XML.

use base64::Engine;

use super::message::*;
use super::xml::escape;

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
