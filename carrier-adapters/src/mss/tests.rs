use std::path::PathBuf;
use std::process::Command;

use super::message::STATUS_TABLE;
use super::xml::XmlError;
use super::*;

fn ap() -> ApInfo {
    ApInfo {
        ap_id: "http://dvc.gov.vn/ap".into(),
        ap_trans_id: "A0193f2b1c".into(),
        ap_pwd: "p&ss<word>\"'".into(),
        instant: "2026-11-27T08:00:00Z".into(),
        ap_url: Some("https://gateway.example.vn/carriers/viettel/mss".into()),
    }
}

fn mssp() -> MsspInfo {
    MsspInfo {
        mssp_id: "http://mssp.viettel.vn".into(),
        instant: None,
    }
}

fn signature_req() -> SignatureReq {
    SignatureReq {
        ap: ap(),
        mssp: mssp(),
        msisdn: "84971234567".into(),
        mode: MessagingMode::AsynchServerServer,
        timeout_seconds: Some(120),
        data_to_be_signed: Data {
            value: "q83vEjRWeJA=".into(),
            mime_type: Some("application/octet-stream".into()),
            encoding: Some("base64".into()),
        },
        data_to_be_displayed: Some(Data {
            value: "Xác nhận đăng nhập Cổng Dịch vụ công".into(),
            mime_type: Some("text/plain".into()),
            encoding: Some("UTF-8".into()),
        }),
        signature_profile: Some("http://mobile-id.vn/digitalSignature".into()),
        mss_format: Some(FORMAT_PKCS7.into()),
    }
}

fn all_messages() -> Vec<MssMessage> {
    let status = Status::new(StatusCode::ValidSignature);
    vec![
        MssMessage::SignatureReq(signature_req()),
        MssMessage::SignatureResp(SignatureResp {
            ap: ap(),
            mssp: MsspInfo {
                mssp_id: "http://mssp.viettel.vn".into(),
                instant: Some("2026-11-27T08:00:01Z".into()),
            },
            msisdn: "84971234567".into(),
            mssp_trans_id: "M123".into(),
            signature: None,
            status: Status::new(StatusCode::RequestOk),
        }),
        MssMessage::StatusReq(StatusReq {
            ap: ap(),
            mssp: mssp(),
            mssp_trans_id: "M123".into(),
            msisdn: Some("84971234567".into()),
        }),
        MssMessage::StatusResp(StatusResp {
            ap: ap(),
            mssp: mssp(),
            msisdn: "84971234567".into(),
            mssp_trans_id: Some("M123".into()),
            signature: Some(vec![0x30, 0x82, 0x01, 0x00, 0xff, 0x00]),
            status: status.clone(),
        }),
        MssMessage::ReceiptReq(ReceiptReq {
            ap: ap(),
            mssp: mssp(),
            mssp_trans_id: "M123".into(),
            msisdn: "84971234567".into(),
            status: Some(Status::new(StatusCode::RequestOk)),
            message: Some(Data {
                value: "Đã xác nhận".into(),
                mime_type: Some("text/plain".into()),
                encoding: Some("UTF-8".into()),
            }),
        }),
        MssMessage::ReceiptResp(ReceiptResp {
            ap: ap(),
            mssp: mssp(),
            status: Status::new(StatusCode::RequestOk),
        }),
    ]
}

#[test]
fn every_message_round_trips_in_every_envelope_style() {
    for message in all_messages() {
        for version in [SoapVersion::Soap11, SoapVersion::Soap12] {
            for style in [PartStyle::Unqualified, PartStyle::Qualified] {
                let xml = write_envelope(version, Operation::Signature, &message, style);
                let (v, content) = parse_envelope(xml.as_bytes(), DEFAULT_MAX_BYTES)
                    .unwrap_or_else(|e| panic!("{e}: {xml}"));
                assert_eq!(v, version);
                assert_eq!(
                    content,
                    SoapContent::Message {
                        operation: Some(Operation::Signature),
                        message: message.clone()
                    }
                );
            }
        }
        let doc = write_document(&message);
        assert_eq!(
            parse_document(doc.as_bytes(), DEFAULT_MAX_BYTES).unwrap(),
            message
        );
    }
}

/// What zeep 4.3.3 sends for `MSS_Signature` from the Kiuru WSDL (RPC/literal, no
/// namespace on the binding's body): the operation wrapper and the part unqualified,
/// their contents qualified.
const ZEEP_SIGNATURE_REQ: &str = r#"<soap-env:Envelope xmlns:soap-env="http://www.w3.org/2003/05/soap-envelope">
  <soap-env:Body>
    <MSS_Signature>
      <MSS_SignatureReq MajorVersion="1" MinorVersion="1" TimeOut="120" MessagingMode="asynchClientServer">
        <ns0:AP_Info xmlns:ns0="http://uri.etsi.org/TS102204/v1.1.2#" AP_ID="http://dichvucong.gov.vn/ap" AP_TransID="T1" AP_PWD="sim-ap-pass" Instant="2026-12-02T00:00:00Z"/>
        <ns1:MSSP_Info xmlns:ns1="http://uri.etsi.org/TS102204/v1.1.2#">
          <ns1:MSSP_ID>
            <ns1:URI>http://mssp.vinaphone.sim.vn</ns1:URI>
          </ns1:MSSP_ID>
        </ns1:MSSP_Info>
        <ns2:MobileUser xmlns:ns2="http://uri.etsi.org/TS102204/v1.1.2#">
          <ns2:MSISDN>+84828123088</ns2:MSISDN>
        </ns2:MobileUser>
        <ns3:DataToBeSigned xmlns:ns3="http://uri.etsi.org/TS102204/v1.1.2#" MimeType="text/plain" Encoding="UTF-8">hello</ns3:DataToBeSigned>
        <ns4:SignatureProfile xmlns:ns4="http://uri.etsi.org/TS102204/v1.1.2#">
          <ns4:mssURI>http://uri.etsi.org/TS102204/v1.1.2#PKCS7</ns4:mssURI>
        </ns4:SignatureProfile>
      </MSS_SignatureReq>
    </MSS_Signature>
  </soap-env:Body>
</soap-env:Envelope>"#;

#[test]
fn an_unqualified_operation_wrapper_is_read_as_a_wsdl_generated_client_writes_it() {
    let (version, content) = parse_envelope(ZEEP_SIGNATURE_REQ.as_bytes(), DEFAULT_MAX_BYTES)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(version, SoapVersion::Soap12);
    let SoapContent::Message {
        operation,
        message: MssMessage::SignatureReq(req),
    } = content
    else {
        panic!("{content:?}")
    };
    assert_eq!(operation, Some(Operation::Signature));
    assert_eq!(req.msisdn, "+84828123088");
    assert_eq!(req.ap.ap_trans_id, "T1");
    assert_eq!(req.data_to_be_signed.value, "hello");
    assert_eq!(req.mode, MessagingMode::AsynchClientServer);
    // An unqualified element that is no operation is still not a message.
    let other = ZEEP_SIGNATURE_REQ.replace("MSS_Signature>", "Something>");
    assert!(matches!(
        parse_envelope(other.as_bytes(), DEFAULT_MAX_BYTES),
        Err(MssError::NoMessage)
    ));
}

#[test]
fn line_breaks_and_tabs_survive_a_round_trip() {
    let mut req = signature_req();
    req.data_to_be_displayed.as_mut().unwrap().value = "dòng 1\r\ndòng 2\tcột".into();
    req.ap.ap_pwd = "a\nb\tc\rd".into();
    let message = MssMessage::SignatureReq(req);
    let xml = write_envelope(
        SoapVersion::Soap11,
        Operation::Signature,
        &message,
        PartStyle::Qualified,
    );
    let (_, content) = parse_envelope(xml.as_bytes(), DEFAULT_MAX_BYTES).unwrap();
    assert_eq!(
        content,
        SoapContent::Message {
            operation: Some(Operation::Signature),
            message
        }
    );
}

#[test]
fn faults_carry_the_etsi_status() {
    for version in [SoapVersion::Soap11, SoapVersion::Soap12] {
        let fault = Fault {
            sender: true,
            status: StatusCode::UnauthorizedAccess,
            reason: "UNAUTHORIZED_ACCESS".into(),
        };
        let xml = write_fault(version, &fault);
        assert!(xml.contains("mss:_104"), "{xml}");
        let (_, content) = parse_envelope(xml.as_bytes(), DEFAULT_MAX_BYTES).unwrap();
        assert_eq!(content, SoapContent::Fault(fault));
    }
}

#[test]
fn status_codes_map_both_ways() {
    for (code, status, name) in STATUS_TABLE {
        assert_eq!(StatusCode::from_code(*code), *status);
        assert_eq!(status.code(), *code);
        assert_eq!(status.message(), *name);
    }
    assert_eq!(StatusCode::from_code(777), StatusCode::Other(777));
    assert_eq!(StatusCode::Other(777).code(), 777);
}

fn spec_dir() -> PathBuf {
    crate::etsi_spec_dir()
}

#[test]
fn reads_the_reference_status_response() {
    let sample = std::fs::read(spec_dir().join("sample-MSS_StatusResp.xml")).unwrap();
    let MssMessage::StatusResp(resp) = parse_document(&sample, DEFAULT_MAX_BYTES).unwrap() else {
        panic!("not a status response");
    };
    assert_eq!(resp.msisdn, "84912345678");
    assert_eq!(resp.status.code, StatusCode::ValidSignature);
    assert_eq!(resp.ap.ap_trans_id, "T0001");
    let cms = resp.signature.unwrap();
    assert_eq!(&cms[..2], &[0x30, 0x82], "a DER SEQUENCE");
    let sample = std::fs::read(spec_dir().join("sample-MSS_SignatureReq.xml")).unwrap();
    let MssMessage::SignatureReq(req) = parse_document(&sample, DEFAULT_MAX_BYTES).unwrap() else {
        panic!("not a signature request");
    };
    assert_eq!(req.mode, MessagingMode::AsynchClientServer);
    assert_eq!(req.data_to_be_signed.value, "Cổng DVC: đăng nhập");
    assert_eq!(req.mss_format.as_deref(), Some(FORMAT_PKCS7));
}

/// Every message we write validates against the ETSI schema (patched copy, see the
/// spec's SOURCE.txt) with xmllint.
#[test]
fn written_messages_validate_against_the_etsi_schema() {
    let spec = spec_dir();
    let dir = std::env::temp_dir().join(format!("mss-xsd-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let copy = Command::new("cp")
        .arg("-r")
        .arg(spec.join("laverca/."))
        .arg(&dir)
        .status()
        .unwrap();
    assert!(copy.success());
    let patch_text = std::fs::read_to_string(spec.join("laverca-xmllint.patch"))
        .unwrap()
        .replace("laverca/", "");
    let mut patch = Command::new("patch")
        .arg("-p0")
        .arg("--quiet")
        .current_dir(&dir)
        .stdin(std::process::Stdio::piped())
        .spawn()
        .expect("patch is installed");
    use std::io::Write;
    patch
        .stdin
        .take()
        .unwrap()
        .write_all(patch_text.as_bytes())
        .unwrap();
    assert!(patch.wait().unwrap().success());
    for message in all_messages() {
        let file = dir.join(format!("{}.xml", message.element_name()));
        std::fs::write(&file, write_document(&message)).unwrap();
        let out = Command::new("xmllint")
            .args(["--noout", "--nonet", "--schema"])
            .arg(dir.join("MSS-plus.xsd"))
            .arg(&file)
            .output()
            .expect("xmllint is installed (libxml2-utils)");
        assert!(
            out.status.success(),
            "{} does not validate:\n{}\n{}",
            message.element_name(),
            String::from_utf8_lossy(&out.stderr),
            write_document(&message)
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn hostile_xml_is_refused() {
    let envelope = |body: &str| {
        format!(
            r#"<soap:Envelope xmlns:soap="{SOAP11_NS}" xmlns:mss="{MSS_NS}"><soap:Body>{body}</soap:Body></soap:Envelope>"#
        )
    };
    let laughs = format!(
        r#"<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;">]>{}"#,
        envelope("<x>&lol2;</x>")
    );
    assert_eq!(
        parse_envelope(laughs.as_bytes(), DEFAULT_MAX_BYTES),
        Err(MssError::Xml(XmlError::Doctype))
    );
    let xxe = format!(
        r#"<!DOCTYPE foo [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>{}"#,
        envelope("<x>&xxe;</x>")
    );
    assert_eq!(
        parse_envelope(xxe.as_bytes(), DEFAULT_MAX_BYTES),
        Err(MssError::Xml(XmlError::Doctype))
    );
    let undeclared = envelope("<x>&xxe;</x>");
    assert_eq!(
        parse_envelope(undeclared.as_bytes(), DEFAULT_MAX_BYTES),
        Err(MssError::Xml(XmlError::Entity("xxe".into())))
    );
    let in_attr = envelope(r#"<x a="&xxe;"/>"#);
    assert!(matches!(
        parse_envelope(in_attr.as_bytes(), DEFAULT_MAX_BYTES),
        Err(MssError::Xml(_))
    ));
    let pi = envelope("<?php evil() ?>");
    assert_eq!(
        parse_envelope(pi.as_bytes(), DEFAULT_MAX_BYTES),
        Err(MssError::Xml(XmlError::ProcessingInstruction))
    );
    let big = envelope(&"<a/>".repeat(100));
    assert!(matches!(
        parse_envelope(big.as_bytes(), 200),
        Err(MssError::Xml(XmlError::TooLarge { .. }))
    ));
    let deep = envelope(&format!("{}{}", "<a>".repeat(40), "</a>".repeat(40)));
    assert_eq!(
        parse_envelope(deep.as_bytes(), DEFAULT_MAX_BYTES),
        Err(MssError::Xml(XmlError::TooDeep))
    );
    let wide = envelope(&format!("<a>{}</a>", "<b/>".repeat(5000)));
    assert_eq!(
        parse_envelope(wide.as_bytes(), DEFAULT_MAX_BYTES),
        Err(MssError::Xml(XmlError::TooManyElements))
    );
    for broken in [
        "",
        "<soap:Envelope>",
        "<a><b></a></b>",
        "not xml",
        "<x:y/>",
        "<a/><b/>",
    ] {
        assert!(
            parse_envelope(broken.as_bytes(), DEFAULT_MAX_BYTES).is_err(),
            "{broken:?}"
        );
    }
    // Predefined entities and character references are fine.
    let ok = xml::parse(b"<a b=\"&lt;&#x41;\">&amp;&#66;</a>", 1024).unwrap();
    assert_eq!(ok.text, "&B");
    assert_eq!(ok.attr("b"), Some("<A"));
}

#[test]
fn missing_and_invalid_fields_are_typed_errors() {
    let mut xml = write_envelope(
        SoapVersion::Soap11,
        Operation::Signature,
        &MssMessage::SignatureReq(signature_req()),
        PartStyle::Unqualified,
    );
    xml = xml.replace(" AP_PWD=", " X_PWD=");
    let err = parse_envelope(xml.as_bytes(), DEFAULT_MAX_BYTES).unwrap_err();
    assert_eq!(err.status(), StatusCode::MissingParam);
    assert!(err.to_string().contains("AP_PWD"), "{err}");

    let xml = write_envelope(
        SoapVersion::Soap11,
        Operation::Signature,
        &MssMessage::SignatureReq(signature_req()),
        PartStyle::Qualified,
    )
    .replace("asynchServerServer", "carrierPigeon");
    let err = parse_envelope(xml.as_bytes(), DEFAULT_MAX_BYTES).unwrap_err();
    assert_eq!(err.status(), StatusCode::WrongParam);

    let not_soap = write_document(&MssMessage::SignatureReq(signature_req()));
    assert!(matches!(
        parse_envelope(not_soap.as_bytes(), DEFAULT_MAX_BYTES),
        Err(MssError::NotSoap(_))
    ));
    let empty_body = format!(r#"<s:Envelope xmlns:s="{SOAP12_NS}"><s:Body/></s:Envelope>"#);
    assert_eq!(
        parse_envelope(empty_body.as_bytes(), DEFAULT_MAX_BYTES),
        Err(MssError::NoMessage)
    );
}
