//! Verifying SIM signatures without trusting the carrier's word: CMS SignedData (RustCrypto
//! `cms` parses; it has no verify API, so the checks are here), raw PKCS#1 signatures,
//! the chain to configured CA roots at signing time with revocation by CRL
//! (rustls-webpki), and the signer's identity read from the certificate subject by OID.

use std::time::{Duration, SystemTime};

use cms::cert::CertificateChoices;
use cms::content_info::ContentInfo;
use cms::signed_data::{
    EncapsulatedContentInfo, SignedData, SignerIdentifier, SignerInfo, SignerInfos,
};
use der::asn1::{ObjectIdentifier, OctetString, SetOfVec};
use der::{Any, Decode, Encode, Tag, Tagged};
use rustls_pki_types::{CertificateDer, UnixTime};
use x509_cert::Certificate;

const OID_SIGNED_DATA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.7.2");
const OID_DATA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.7.1");
const OID_CONTENT_TYPE: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.9.3");
const OID_MESSAGE_DIGEST: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.9.4");
const OID_SIGNING_TIME: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.9.5");
const OID_SHA256: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.2.1");
const OID_RSA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");
const OID_SHA256_RSA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.11");
const OID_CN: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.4.3");
const OID_O: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.4.10");
const OID_UID: ObjectIdentifier = ObjectIdentifier::new_unwrap("0.9.2342.19200300.100.1.1");

/// How far a claimed signing time may lie outside the transaction.
const CLOCK_SKEW: Duration = Duration::from_secs(300);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum VerifyError {
    #[error("not a readable signature: {0}")]
    Malformed(String),
    #[error("the signed content is not the data that was sent for signing")]
    ContentMismatch,
    #[error("the messageDigest attribute does not match the content")]
    DigestMismatch,
    #[error("the signature does not verify with the signer's certificate")]
    BadSignature,
    #[error("unsupported algorithm {0}")]
    Unsupported(String),
    #[error("the signer's certificate does not chain to a trusted CA")]
    UnknownCa,
    #[error("the signer's certificate was not valid at signing time (expired)")]
    Expired,
    #[error("the signer's certificate was not yet valid at signing time")]
    NotYetValid,
    #[error("the signer's certificate is revoked")]
    Revoked,
    #[error("revocation status unknown: {0}")]
    RevocationUnknown(String),
    #[error("the certificate path is invalid: {0}")]
    Chain(String),
    #[error("the claimed signing time lies outside the transaction")]
    SigningTimeOutOfRange,
}

fn malformed(e: impl std::fmt::Display) -> VerifyError {
    VerifyError::Malformed(e.to_string())
}

/// Trusted CA roots and the CRLs to check revocation with (DER).
#[derive(Debug, Clone, Default)]
pub struct TrustStore {
    roots: Vec<Vec<u8>>,
    crls: Vec<Vec<u8>>,
}

impl TrustStore {
    /// Checks that every root and CRL parses.
    pub fn new(roots: Vec<Vec<u8>>, crls: Vec<Vec<u8>>) -> Result<TrustStore, VerifyError> {
        for root in &roots {
            webpki::anchor_from_trusted_cert(&CertificateDer::from(root.as_slice()))
                .map_err(|e| malformed(format!("trusted root: {e}")))?;
        }
        for crl in &crls {
            webpki::BorrowedCertRevocationList::from_der(crl)
                .map_err(|e| malformed(format!("CRL: {e}")))?;
        }
        Ok(TrustStore { roots, crls })
    }
}

/// A signer's identity, read from the certificate subject by OID.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub common_name: Option<String>,
    /// `("CCCD", "001099012345")` for each UID `CCCD:001099012345`, in order.
    pub identifiers: Vec<(String, String)>,
    pub organization: Option<String>,
}

/// A verified signature and what it proves.
#[derive(Debug, Clone)]
pub struct Verified {
    /// CMS SignedData (for PKCS#1 input, one assembled around the signature).
    pub cms_der: Vec<u8>,
    pub certificate_der: Vec<u8>,
    /// The certificate that issued the signer's (for its revocation status).
    pub issuer_der: Vec<u8>,
    pub subject: Identity,
    pub issuer_common_name: Option<String>,
    pub serial_hex: String,
    pub not_before: SystemTime,
    pub not_after: SystemTime,
    /// The signer's claimed time when present, else the verification time.
    pub signed_at: SystemTime,
}

/// When the signature may have been made: the transaction start and now.
#[derive(Debug, Clone, Copy)]
pub struct Window {
    pub started: SystemTime,
    pub now: SystemTime,
}

fn attr_value(attrs: &cms::signed_data::SignedAttributes, oid: ObjectIdentifier) -> Option<&Any> {
    attrs
        .iter()
        .find(|a| a.oid == oid)
        .and_then(|a| a.values.iter().next())
}

/// Verifies a CMS SignedData over exactly `expected_content`.
pub fn verify_cms(
    cms_der: &[u8],
    expected_content: &[u8],
    trust: &TrustStore,
    window: Window,
) -> Result<Verified, VerifyError> {
    let info = ContentInfo::from_der(cms_der).map_err(malformed)?;
    if info.content_type != OID_SIGNED_DATA {
        return Err(malformed(format!(
            "content type {} is not signedData",
            info.content_type
        )));
    }
    let signed: SignedData = info.content.decode_as().map_err(malformed)?;
    if signed.encap_content_info.econtent_type != OID_DATA {
        return Err(malformed("encapsulated content is not id-data"));
    }
    // Attached content must be exactly ours; detached content is ours by definition and
    // bound by the digest below.
    if let Some(econtent) = &signed.encap_content_info.econtent {
        let bytes = if econtent.tag() == Tag::OctetString {
            econtent.value().to_vec()
        } else {
            return Err(malformed("eContent is not an OCTET STRING"));
        };
        if bytes != expected_content {
            return Err(VerifyError::ContentMismatch);
        }
    }
    let signer = match signed.signer_infos.0.as_slice() {
        [one] => one,
        [] => return Err(malformed("no signer")),
        _ => return Err(malformed("more than one signer")),
    };
    let certs: Vec<Certificate> = signed
        .certificates
        .as_ref()
        .map(|set| {
            set.0
                .iter()
                .filter_map(|c| match c {
                    CertificateChoices::Certificate(cert) => Some(cert.clone()),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default();
    let cert = find_signer_cert(&signer.sid, &certs)?;
    let cert_der = cert.to_der().map_err(malformed)?;
    if signer.digest_alg.oid != OID_SHA256 {
        return Err(VerifyError::Unsupported(format!(
            "digest {}",
            signer.digest_alg.oid
        )));
    }
    let digest = ring::digest::digest(&ring::digest::SHA256, expected_content);
    let mut signing_time = None;
    let signed_bytes = match &signer.signed_attrs {
        Some(attrs) => {
            let content_type = attr_value(attrs, OID_CONTENT_TYPE)
                .ok_or_else(|| malformed("no content-type attribute"))?
                .decode_as::<ObjectIdentifier>()
                .map_err(malformed)?;
            if content_type != signed.encap_content_info.econtent_type {
                return Err(malformed("content-type attribute differs from the content"));
            }
            let message_digest = attr_value(attrs, OID_MESSAGE_DIGEST)
                .ok_or_else(|| malformed("no message-digest attribute"))?
                .decode_as::<OctetString>()
                .map_err(malformed)?;
            if message_digest.as_bytes() != digest.as_ref() {
                return Err(VerifyError::DigestMismatch);
            }
            if let Some(t) = attr_value(attrs, OID_SIGNING_TIME) {
                let t = x509_cert::time::Time::from_der(&t.to_der().map_err(malformed)?)
                    .map_err(malformed)?;
                signing_time = Some(t.to_system_time());
            }
            // The signature covers the attributes encoded as a DER SET OF.
            attrs.to_der().map_err(malformed)?
        }
        None => expected_content.to_vec(),
    };
    match signer.signature_algorithm.oid {
        o if o == OID_RSA || o == OID_SHA256_RSA => {}
        other => return Err(VerifyError::Unsupported(format!("signature {other}"))),
    }
    verify_rsa(cert, &signed_bytes, signer.signature.as_bytes())?;
    let signed_at = match signing_time {
        Some(t) => {
            if t + CLOCK_SKEW < window.started || t > window.now + CLOCK_SKEW {
                return Err(VerifyError::SigningTimeOutOfRange);
            }
            t
        }
        None => window.now,
    };
    let issuer_der = check_chain(&cert_der, &certs, trust, signed_at)?;
    finish(cms_der.to_vec(), cert, cert_der, issuer_der, signed_at)
}

/// Verifies a raw PKCS#1 v1.5 signature (over DigestInfo(SHA-256(content))) made with the
/// key of `certificate_der`, and assembles the equivalent CMS SignedData.
pub fn verify_pkcs1(
    signature: &[u8],
    certificate_der: &[u8],
    content: &[u8],
    trust: &TrustStore,
    window: Window,
) -> Result<Verified, VerifyError> {
    let cert = Certificate::from_der(certificate_der).map_err(malformed)?;
    verify_rsa(&cert, content, signature)?;
    let issuer_der = check_chain(certificate_der, &[], trust, window.now)?;
    let cms = cms_from_pkcs1(signature, &cert, content)?;
    finish(cms, &cert, certificate_der.to_vec(), issuer_der, window.now)
}

/// A CMS SignedData without signed attributes carries exactly a PKCS#1 signature over
/// the content, so the portal gets one format whatever the carrier returns.
fn cms_from_pkcs1(
    signature: &[u8],
    cert: &Certificate,
    content: &[u8],
) -> Result<Vec<u8>, VerifyError> {
    let sha256 = spki::AlgorithmIdentifierOwned {
        oid: OID_SHA256,
        parameters: None,
    };
    let signer = SignerInfo {
        version: cms::content_info::CmsVersion::V1,
        sid: SignerIdentifier::IssuerAndSerialNumber(cms::cert::IssuerAndSerialNumber {
            issuer: cert.tbs_certificate.issuer.clone(),
            serial_number: cert.tbs_certificate.serial_number.clone(),
        }),
        digest_alg: sha256.clone(),
        signed_attrs: None,
        signature_algorithm: spki::AlgorithmIdentifierOwned {
            oid: OID_RSA,
            parameters: Some(Any::null()),
        },
        signature: OctetString::new(signature).map_err(malformed)?,
        unsigned_attrs: None,
    };
    let signed = SignedData {
        version: cms::content_info::CmsVersion::V1,
        digest_algorithms: SetOfVec::try_from(vec![sha256]).map_err(malformed)?,
        encap_content_info: EncapsulatedContentInfo {
            econtent_type: OID_DATA,
            econtent: Some(Any::new(Tag::OctetString, content).map_err(malformed)?),
        },
        certificates: Some(cms::signed_data::CertificateSet(
            SetOfVec::try_from(vec![CertificateChoices::Certificate(cert.clone())])
                .map_err(malformed)?,
        )),
        crls: None,
        signer_infos: SignerInfos(SetOfVec::try_from(vec![signer]).map_err(malformed)?),
    };
    let info = ContentInfo {
        content_type: OID_SIGNED_DATA,
        content: Any::encode_from(&signed).map_err(malformed)?,
    };
    info.to_der().map_err(malformed)
}

fn find_signer_cert<'a>(
    sid: &SignerIdentifier,
    certs: &'a [Certificate],
) -> Result<&'a Certificate, VerifyError> {
    let found = certs.iter().find(|c| match sid {
        SignerIdentifier::IssuerAndSerialNumber(iasn) => {
            c.tbs_certificate.issuer == iasn.issuer
                && c.tbs_certificate.serial_number == iasn.serial_number
        }
        SignerIdentifier::SubjectKeyIdentifier(ski) => c
            .tbs_certificate
            .extensions
            .as_ref()
            .and_then(|exts| {
                exts.iter()
                    .find(|e| e.extn_id == ObjectIdentifier::new_unwrap("2.5.29.14"))
            })
            .is_some_and(|e| e.extn_value.as_bytes().ends_with(ski.0.as_bytes())),
    });
    found.ok_or_else(|| malformed("the signer's certificate is not in the SignedData"))
}

fn verify_rsa(cert: &Certificate, message: &[u8], signature: &[u8]) -> Result<(), VerifyError> {
    let spki = &cert.tbs_certificate.subject_public_key_info;
    if spki.algorithm.oid != OID_RSA {
        return Err(VerifyError::Unsupported(format!(
            "key {}",
            spki.algorithm.oid
        )));
    }
    let key = spki
        .subject_public_key
        .as_bytes()
        .ok_or_else(|| malformed("public key bit string"))?;
    ring::signature::UnparsedPublicKey::new(&ring::signature::RSA_PKCS1_2048_8192_SHA256, key)
        .verify(message, signature)
        .map_err(|_| VerifyError::BadSignature)
}

/// Checks the path from `cert_der` to a trusted root (and the CRLs the store holds);
/// returns the DER of the certificate that issued it.
fn check_chain(
    cert_der: &[u8],
    others: &[Certificate],
    trust: &TrustStore,
    at: SystemTime,
) -> Result<Vec<u8>, VerifyError> {
    let anchors: Vec<_> = trust
        .roots
        .iter()
        .map(|r| {
            webpki::anchor_from_trusted_cert(&CertificateDer::from(r.as_slice()))
                .map(|a| a.to_owned())
        })
        .collect::<Result<_, _>>()
        .map_err(|e| malformed(e.to_string()))?;
    let intermediates: Vec<CertificateDer<'static>> = others
        .iter()
        .filter_map(|c| c.to_der().ok())
        .filter(|d| d.as_slice() != cert_der)
        .map(CertificateDer::from)
        .collect();
    let crls: Vec<webpki::CertRevocationList<'_>> = trust
        .crls
        .iter()
        .map(|c| webpki::BorrowedCertRevocationList::from_der(c).map(Into::into))
        .collect::<Result<_, _>>()
        .map_err(|e| malformed(e.to_string()))?;
    let crl_refs: Vec<&webpki::CertRevocationList<'_>> = crls.iter().collect();
    let revocation = if crl_refs.is_empty() {
        None
    } else {
        Some(
            webpki::RevocationOptionsBuilder::new(&crl_refs)
                .map_err(|_| malformed("no CRLs"))?
                .with_depth(webpki::RevocationCheckDepth::EndEntity)
                .with_status_policy(webpki::UnknownStatusPolicy::Deny)
                .with_expiration_policy(webpki::ExpirationPolicy::Enforce)
                .build(),
        )
    };
    let cert_der = CertificateDer::from(cert_der);
    let ee = webpki::EndEntityCert::try_from(&cert_der).map_err(|e| malformed(e.to_string()))?;
    let unix = at
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_err(|_| malformed("time before 1970"))?;
    ee.verify_for_usage(
        webpki::ALL_VERIFICATION_ALGS,
        &anchors,
        &intermediates,
        UnixTime::since_unix_epoch(unix),
        webpki::KeyUsage::client_auth(),
        revocation,
        None,
    )
    .map_err(|e| match e {
        webpki::Error::UnknownIssuer => VerifyError::UnknownCa,
        webpki::Error::CertExpired { .. } => VerifyError::Expired,
        webpki::Error::CertNotValidYet { .. } => VerifyError::NotYetValid,
        webpki::Error::CertRevoked => VerifyError::Revoked,
        webpki::Error::UnknownRevocationStatus | webpki::Error::CrlExpired { .. } => {
            VerifyError::RevocationUnknown(e.to_string())
        }
        webpki::Error::InvalidSignatureForPublicKey => VerifyError::UnknownCa,
        other => VerifyError::Chain(other.to_string()),
    })?;
    // The path verified, so its first step up is among these.
    let ee = Certificate::from_der(&cert_der).map_err(malformed)?;
    others
        .iter()
        .filter_map(|c| c.to_der().ok())
        .chain(trust.roots.iter().cloned())
        .filter(|d| d.as_slice() != cert_der.as_ref())
        .find(|d| Certificate::from_der(d).is_ok_and(|c| crate::ocsp::issued_by(&ee, &c)))
        .ok_or_else(|| VerifyError::Chain("the issuer is not among the certificates".into()))
}

/// Whether `cert_der`, issued by `issuer_der`, is on `crl_der` (`Ok(true)`: revoked).
/// The CRL must be the issuer's, signed by it and current at `now` (webpki's checks);
/// otherwise the answer is an error, never "not revoked".
pub fn crl_status(
    cert_der: &[u8],
    issuer_der: &[u8],
    crl_der: &[u8],
    now: SystemTime,
) -> Result<bool, VerifyError> {
    let store = TrustStore::new(vec![issuer_der.to_vec()], vec![crl_der.to_vec()])?;
    match check_chain(cert_der, &[], &store, now) {
        Ok(_) => Ok(false),
        Err(VerifyError::Revoked) => Ok(true),
        Err(e) => Err(e),
    }
}

/// A CRL's nextUpdate, when it has one.
pub fn crl_next_update(crl_der: &[u8]) -> Option<SystemTime> {
    x509_cert::crl::CertificateList::from_der(crl_der)
        .ok()?
        .tbs_cert_list
        .next_update
        .map(|t| t.to_system_time())
}

/// The CRL distribution point URLs of a certificate.
pub fn crl_urls(cert_der: &[u8]) -> Vec<String> {
    use x509_cert::ext::pkix::name::{DistributionPointName, GeneralName};
    let Ok(cert) = Certificate::from_der(cert_der) else {
        return Vec::new();
    };
    let Some(ext) = cert.tbs_certificate.extensions.as_ref().and_then(|exts| {
        exts.iter()
            .find(|e| e.extn_id == ObjectIdentifier::new_unwrap("2.5.29.31"))
    }) else {
        return Vec::new();
    };
    let Ok(points) =
        x509_cert::ext::pkix::CrlDistributionPoints::from_der(ext.extn_value.as_bytes())
    else {
        return Vec::new();
    };
    points
        .0
        .iter()
        .filter_map(|p| match &p.distribution_point {
            Some(DistributionPointName::FullName(names)) => Some(names),
            _ => None,
        })
        .flatten()
        .filter_map(|n| match n {
            GeneralName::UniformResourceIdentifier(uri) => Some(uri.to_string()),
            _ => None,
        })
        .collect()
}

fn finish(
    cms_der: Vec<u8>,
    cert: &Certificate,
    certificate_der: Vec<u8>,
    issuer_der: Vec<u8>,
    signed_at: SystemTime,
) -> Result<Verified, VerifyError> {
    let tbs = &cert.tbs_certificate;
    Ok(Verified {
        cms_der,
        subject: identity_of(&tbs.subject),
        issuer_common_name: identity_of(&tbs.issuer).common_name,
        serial_hex: hex_upper(tbs.serial_number.as_bytes()),
        not_before: tbs.validity.not_before.to_system_time(),
        not_after: tbs.validity.not_after.to_system_time(),
        signed_at,
        certificate_der,
        issuer_der,
    })
}

/// Hex of a DER INTEGER's value, without the sign octet DER adds to positive numbers.
fn hex_upper(bytes: &[u8]) -> String {
    let bytes = match bytes {
        [0, rest @ ..] if !rest.is_empty() => rest,
        _ => bytes,
    };
    hex::encode_upper(bytes)
}

fn string_value(value: &Any) -> Option<String> {
    match value.tag() {
        Tag::Utf8String | Tag::PrintableString | Tag::Ia5String | Tag::TeletexString => {
            std::str::from_utf8(value.value()).ok().map(str::to_owned)
        }
        Tag::BmpString => {
            let units: Vec<u16> = value
                .value()
                .chunks_exact(2)
                .map(|c| u16::from_be_bytes([c[0], c[1]]))
                .collect();
            String::from_utf16(&units).ok()
        }
        _ => None,
    }
}

/// Reads CN, O and every UID (`TYPE:value`) from a name, by OID.
pub fn identity_of(name: &x509_cert::name::Name) -> Identity {
    let mut identity = Identity {
        common_name: None,
        identifiers: Vec::new(),
        organization: None,
    };
    for rdn in name.0.iter() {
        for atv in rdn.0.iter() {
            let Some(value) = string_value(&atv.value) else {
                continue;
            };
            if atv.oid == OID_CN && identity.common_name.is_none() {
                identity.common_name = Some(value);
            } else if atv.oid == OID_O && identity.organization.is_none() {
                identity.organization = Some(value);
            } else if atv.oid == OID_UID {
                let (kind, id) = match value.split_once(':') {
                    Some((k, v)) => (k.trim().to_ascii_uppercase(), v.trim().to_owned()),
                    None => ("UID".to_owned(), value.trim().to_owned()),
                };
                identity.identifiers.push((kind, id));
            }
        }
    }
    identity
}

/// The identity in a DER certificate.
pub fn certificate_identity(certificate_der: &[u8]) -> Result<Identity, VerifyError> {
    let cert = Certificate::from_der(certificate_der).map_err(malformed)?;
    Ok(identity_of(&cert.tbs_certificate.subject))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(file: &str) -> Vec<u8> {
        std::fs::read(crate::etsi_spec_dir().join(file)).unwrap()
    }

    fn pem_to_der(pem: &[u8]) -> Vec<u8> {
        use base64::Engine;
        let text = std::str::from_utf8(pem).unwrap();
        let b64: String = text.lines().filter(|l| !l.starts_with("-----")).collect();
        base64::engine::general_purpose::STANDARD
            .decode(b64)
            .unwrap()
    }

    fn sample() -> (Vec<u8>, Vec<u8>, TrustStore) {
        let resp = crate::mss::parse_document(&spec("sample-MSS_StatusResp.xml"), 1 << 20).unwrap();
        let crate::mss::MssMessage::StatusResp(resp) = resp else {
            panic!()
        };
        let cms = resp.signature.unwrap();
        let info = ContentInfo::from_der(&cms).unwrap();
        let signed: SignedData = info.content.decode_as().unwrap();
        let content = signed.encap_content_info.econtent.unwrap().value().to_vec();
        let root = pem_to_der(&spec("sample-simulated-ca.pem"));
        (cms, content, TrustStore::new(vec![root], vec![]).unwrap())
    }

    fn window() -> Window {
        Window {
            started: SystemTime::UNIX_EPOCH,
            now: SystemTime::now(),
        }
    }

    #[test]
    fn the_reference_signature_verifies_and_names_its_signer() {
        let (cms, content, trust) = sample();
        let v = verify_cms(&cms, &content, &trust, window()).unwrap();
        assert_eq!(v.subject.common_name.as_deref(), Some("Nguyễn Văn An"));
        assert_eq!(
            v.subject.identifiers,
            vec![("CCCD".to_owned(), "001099012345".to_owned())]
        );
        assert_eq!(v.issuer_common_name.as_deref(), Some("SIMULATED-CA v2"));
    }

    #[test]
    fn other_content_tampering_and_unknown_roots_fail() {
        let (cms, content, trust) = sample();
        let mut other = content.clone();
        other[0] ^= 1;
        assert_eq!(
            verify_cms(&cms, &other, &trust, window()).unwrap_err(),
            VerifyError::ContentMismatch
        );
        // Flip a bit of the signature value (the last bytes of the DER).
        let mut tampered = cms.clone();
        let n = tampered.len();
        tampered[n - 5] ^= 0x01;
        assert_eq!(
            verify_cms(&tampered, &content, &trust, window()).unwrap_err(),
            VerifyError::BadSignature
        );
        let empty = TrustStore::default();
        assert_eq!(
            verify_cms(&cms, &content, &empty, window()).unwrap_err(),
            VerifyError::UnknownCa
        );
        assert!(matches!(
            verify_cms(b"\x30\x03\x02\x01\x00", &content, &trust, window()),
            Err(VerifyError::Malformed(_))
        ));
        assert!(matches!(
            verify_cms(&cms[..cms.len() / 2], &content, &trust, window()),
            Err(VerifyError::Malformed(_))
        ));
    }
}
