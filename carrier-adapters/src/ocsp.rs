//! Online certificate status (RFC 6960) without trusting the network: the request for
//! one certificate (SHA-1 CertID, as every responder understands it, and an RFC 8954
//! nonce), and the checks on the answer: that it is a successful basic response, that
//! it is signed by the certificate's issuer or by a responder the issuer delegated to
//! (id-kp-OCSPSigning, issued by the issuer, valid now), that it answers for exactly
//! this certificate, echoes our nonce when it carries one, and is current
//! (thisUpdate not in the future, nextUpdate not past).
//!
//! The ASN.1 types are RustCrypto's `x509-ocsp`; signatures are checked with ring.

use std::time::{Duration, SystemTime};

use der::asn1::{ObjectIdentifier, OctetString};
use der::{Decode, Encode};
use x509_cert::ext::pkix::name::GeneralName;
use x509_cert::ext::pkix::AuthorityInfoAccessSyntax;
use x509_cert::spki::AlgorithmIdentifierOwned;
use x509_cert::Certificate;
use x509_ocsp::ext::Nonce;
use x509_ocsp::{
    BasicOcspResponse, CertId, CertStatus, OcspRequest, OcspResponse, OcspResponseStatus, Request,
    ResponderId, TbsRequest,
};

const OID_SHA1: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.14.3.2.26");
const OID_NONCE: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.48.1.2");
const OID_OCSP_BASIC: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.48.1.1");
const OID_AD_OCSP: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.48.1");
const OID_AIA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.1.1");
const OID_EKU: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.29.37");
const OID_KP_OCSP_SIGNING: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.3.9");

/// How far the responder's clock may be from ours.
pub const CLOCK_SKEW: Duration = Duration::from_secs(60);

/// Largest OCSP response read.
pub const MAX_RESPONSE_BYTES: usize = 64 * 1024;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum OcspError {
    #[error("not a readable OCSP message: {0}")]
    Malformed(String),
    #[error("the responder answered {0:?}, not a status")]
    NotSuccessful(OcspResponseStatus),
    #[error("the response is signed by a responder the CA did not authorise: {0}")]
    UnauthorisedSigner(String),
    #[error("the response's signature does not verify")]
    BadSignature,
    #[error("unsupported signature algorithm {0}")]
    Unsupported(String),
    #[error("the response does not answer for this certificate")]
    NotAnswered,
    #[error("the response carries another nonce than the request's (a replay?)")]
    NonceMismatch,
    #[error("the response is stale: its nextUpdate has passed")]
    Stale,
    #[error("the response's thisUpdate lies in the future")]
    NotYetValid,
}

fn malformed(e: impl std::fmt::Display) -> OcspError {
    OcspError::Malformed(e.to_string())
}

/// One certificate's status query.
#[derive(Debug, Clone)]
pub struct Query {
    /// The DER `OCSPRequest` to POST as `application/ocsp-request`.
    pub der: Vec<u8>,
    pub cert_id: CertId,
    pub nonce: Vec<u8>,
}

impl Query {
    /// The CertID's DER: one certificate's key for caching answers.
    pub fn cache_key(&self) -> Vec<u8> {
        self.cert_id.to_der().unwrap_or_default()
    }
}

/// What the responder says of the certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CertState {
    Good,
    Revoked { at: SystemTime },
    Unknown,
}

/// Who signed a checked response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignedBy {
    Issuer,
    Delegated,
}

/// A response that passed every check.
#[derive(Debug, Clone)]
pub struct Answer {
    pub state: CertState,
    pub this_update: SystemTime,
    /// `None`: the responder says newer information is always available (do not cache).
    pub next_update: Option<SystemTime>,
    pub signed_by: SignedBy,
    /// Whether the response echoed the request's nonce (responders that pre-produce
    /// their answers send none; RFC 8954 allows that).
    pub nonce_echoed: bool,
}

/// The OCSP responder URLs of a certificate's Authority Information Access extension.
pub fn responder_urls(cert_der: &[u8]) -> Result<Vec<String>, OcspError> {
    let cert = Certificate::from_der(cert_der).map_err(malformed)?;
    let Some(ext) = cert
        .tbs_certificate
        .extensions
        .as_ref()
        .and_then(|exts| exts.iter().find(|e| e.extn_id == OID_AIA))
    else {
        return Ok(Vec::new());
    };
    let aia = AuthorityInfoAccessSyntax::from_der(ext.extn_value.as_bytes()).map_err(malformed)?;
    Ok(aia
        .0
        .iter()
        .filter(|a| a.access_method == OID_AD_OCSP)
        .filter_map(|a| match &a.access_location {
            GeneralName::UniformResourceIdentifier(uri) => Some(uri.to_string()),
            _ => None,
        })
        .collect())
}

fn sha1(bytes: &[u8]) -> Vec<u8> {
    ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, bytes)
        .as_ref()
        .to_vec()
}

fn key_bits(cert: &Certificate) -> Result<&[u8], OcspError> {
    cert.tbs_certificate
        .subject_public_key_info
        .subject_public_key
        .as_bytes()
        .ok_or_else(|| malformed("public key bit string"))
}

/// The CertID of `cert` as issued by `issuer` (SHA-1, RFC 6960 §4.1.1).
pub fn cert_id(cert: &Certificate, issuer: &Certificate) -> Result<CertId, OcspError> {
    let name = cert.tbs_certificate.issuer.to_der().map_err(malformed)?;
    Ok(CertId {
        hash_algorithm: AlgorithmIdentifierOwned {
            oid: OID_SHA1,
            parameters: Some(der::Any::null()),
        },
        issuer_name_hash: OctetString::new(sha1(&name)).map_err(malformed)?,
        issuer_key_hash: OctetString::new(sha1(key_bits(issuer)?)).map_err(malformed)?,
        serial_number: cert.tbs_certificate.serial_number.clone(),
    })
}

/// The status query for `cert_der`, issued by `issuer_der`, with `nonce` (1 to 32
/// random octets).
pub fn query(cert_der: &[u8], issuer_der: &[u8], nonce: &[u8]) -> Result<Query, OcspError> {
    let cert = Certificate::from_der(cert_der).map_err(malformed)?;
    let issuer = Certificate::from_der(issuer_der).map_err(malformed)?;
    let id = cert_id(&cert, &issuer)?;
    let nonce_ext = x509_cert::ext::Extension {
        extn_id: OID_NONCE,
        critical: false,
        extn_value: OctetString::new(
            Nonce::new(nonce.to_vec())
                .and_then(|n| n.to_der())
                .map_err(malformed)?,
        )
        .map_err(malformed)?,
    };
    let request = OcspRequest {
        tbs_request: TbsRequest {
            version: Default::default(),
            requestor_name: None,
            request_list: vec![Request {
                req_cert: id.clone(),
                single_request_extensions: None,
            }],
            request_extensions: Some(vec![nonce_ext]),
        },
        optional_signature: None,
    };
    Ok(Query {
        der: request.to_der().map_err(malformed)?,
        cert_id: id,
        nonce: nonce.to_vec(),
    })
}

/// ring's verification algorithm for an X.509 signature algorithm (SHA-1 refused).
fn algorithm(
    alg: &AlgorithmIdentifierOwned,
) -> Result<&'static dyn ring::signature::VerificationAlgorithm, OcspError> {
    use ring::signature as s;
    Ok(match alg.oid.to_string().as_str() {
        "1.2.840.113549.1.1.11" => &s::RSA_PKCS1_2048_8192_SHA256,
        "1.2.840.113549.1.1.12" => &s::RSA_PKCS1_2048_8192_SHA384,
        "1.2.840.113549.1.1.13" => &s::RSA_PKCS1_2048_8192_SHA512,
        "1.2.840.10045.4.3.2" => &s::ECDSA_P256_SHA256_ASN1,
        "1.2.840.10045.4.3.3" => &s::ECDSA_P384_SHA384_ASN1,
        other => return Err(OcspError::Unsupported(other.to_owned())),
    })
}

/// Whether `signature` over `message` verifies with `signer`'s public key.
fn signed_by(
    signer: &Certificate,
    alg: &AlgorithmIdentifierOwned,
    message: &[u8],
    signature: &[u8],
) -> Result<bool, OcspError> {
    let algorithm = algorithm(alg)?;
    Ok(
        ring::signature::UnparsedPublicKey::new(algorithm, key_bits(signer)?)
            .verify(message, signature)
            .is_ok(),
    )
}

/// Whether `cert` was issued (signed) by `issuer`.
pub fn issued_by(cert: &Certificate, issuer: &Certificate) -> bool {
    if cert.tbs_certificate.issuer != issuer.tbs_certificate.subject {
        return false;
    }
    let (Ok(tbs), Some(sig)) = (cert.tbs_certificate.to_der(), cert.signature.as_bytes()) else {
        return false;
    };
    signed_by(issuer, &cert.signature_algorithm, &tbs, sig).unwrap_or(false)
}

fn responder_is(id: &ResponderId, cert: &Certificate) -> bool {
    match id {
        ResponderId::ByName(name) => *name == cert.tbs_certificate.subject,
        ResponderId::ByKey(hash) => key_bits(cert).is_ok_and(|k| hash.as_bytes() == sha1(k)),
    }
}

fn has_ocsp_signing(cert: &Certificate) -> bool {
    cert.tbs_certificate
        .extensions
        .as_ref()
        .and_then(|exts| exts.iter().find(|e| e.extn_id == OID_EKU))
        .and_then(|e| {
            x509_cert::ext::pkix::ExtendedKeyUsage::from_der(e.extn_value.as_bytes()).ok()
        })
        .is_some_and(|eku| eku.0.contains(&OID_KP_OCSP_SIGNING))
}

fn valid_at(cert: &Certificate, now: SystemTime) -> bool {
    let v = &cert.tbs_certificate.validity;
    v.not_before.to_system_time() <= now + CLOCK_SKEW
        && now <= v.not_after.to_system_time() + CLOCK_SKEW
}

/// Checks a responder's answer to `query` for a certificate issued by `issuer_der`.
pub fn check(
    query: &Query,
    response_der: &[u8],
    issuer_der: &[u8],
    now: SystemTime,
) -> Result<Answer, OcspError> {
    let response = OcspResponse::from_der(response_der).map_err(malformed)?;
    if response.response_status != OcspResponseStatus::Successful {
        return Err(OcspError::NotSuccessful(response.response_status));
    }
    let issuer = Certificate::from_der(issuer_der).map_err(malformed)?;
    let bytes = response
        .response_bytes
        .ok_or_else(|| malformed("a successful response without responseBytes"))?;
    if bytes.response_type != OID_OCSP_BASIC {
        return Err(malformed(format!(
            "response type {} is not id-pkix-ocsp-basic",
            bytes.response_type
        )));
    }
    let basic = BasicOcspResponse::from_der(bytes.response.as_bytes()).map_err(malformed)?;
    let tbs = basic.tbs_response_data.to_der().map_err(malformed)?;
    let signature = basic
        .signature
        .as_bytes()
        .ok_or_else(|| malformed("signature bit string"))?;
    let responder = &basic.tbs_response_data.responder_id;

    // Who may sign: the issuer itself, or a certificate it issued for OCSP signing.
    let signed = if responder_is(responder, &issuer) {
        if !signed_by(&issuer, &basic.signature_algorithm, &tbs, signature)? {
            return Err(OcspError::BadSignature);
        }
        SignedBy::Issuer
    } else {
        let delegate = basic
            .certs
            .iter()
            .flatten()
            .find(|c| responder_is(responder, c))
            .ok_or_else(|| {
                OcspError::UnauthorisedSigner(
                    "neither the CA nor a certificate in the response".into(),
                )
            })?;
        if !issued_by(delegate, &issuer) {
            return Err(OcspError::UnauthorisedSigner(
                "its certificate was not issued by the CA".into(),
            ));
        }
        if !has_ocsp_signing(delegate) {
            return Err(OcspError::UnauthorisedSigner(
                "its certificate lacks id-kp-OCSPSigning".into(),
            ));
        }
        if !valid_at(delegate, now) {
            return Err(OcspError::UnauthorisedSigner(
                "its certificate is not valid now".into(),
            ));
        }
        if !signed_by(delegate, &basic.signature_algorithm, &tbs, signature)? {
            return Err(OcspError::BadSignature);
        }
        SignedBy::Delegated
    };

    let nonce_echoed = match basic.tbs_response_data.nonce() {
        Some(n) if n.0.as_bytes() == query.nonce.as_slice() => true,
        Some(_) => return Err(OcspError::NonceMismatch),
        None => false,
    };
    let ours = &query.cert_id;
    let single = basic
        .tbs_response_data
        .responses
        .iter()
        .find(|r| {
            r.cert_id.hash_algorithm.oid == ours.hash_algorithm.oid
                && r.cert_id.issuer_name_hash == ours.issuer_name_hash
                && r.cert_id.issuer_key_hash == ours.issuer_key_hash
                && r.cert_id.serial_number == ours.serial_number
        })
        .ok_or(OcspError::NotAnswered)?;
    let this_update = single.this_update.0.to_system_time();
    let next_update = single.next_update.map(|t| t.0.to_system_time());
    if this_update > now + CLOCK_SKEW {
        return Err(OcspError::NotYetValid);
    }
    if next_update.is_some_and(|n| n + CLOCK_SKEW < now) {
        return Err(OcspError::Stale);
    }
    let state = match single.cert_status {
        CertStatus::Good(_) => CertState::Good,
        CertStatus::Revoked(info) => CertState::Revoked {
            at: info.revocation_time.0.to_system_time(),
        },
        CertStatus::Unknown(_) => CertState::Unknown,
    };
    Ok(Answer {
        state,
        this_update,
        next_update,
        signed_by: signed,
        nonce_echoed,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn garbage_is_malformed_not_a_panic() {
        let q = Query {
            der: vec![],
            cert_id: CertId {
                hash_algorithm: AlgorithmIdentifierOwned {
                    oid: OID_SHA1,
                    parameters: None,
                },
                issuer_name_hash: OctetString::new(vec![0; 20]).unwrap(),
                issuer_key_hash: OctetString::new(vec![0; 20]).unwrap(),
                serial_number: x509_cert::serial_number::SerialNumber::from(1u32),
            },
            nonce: vec![1; 32],
        };
        for bytes in [&b""[..], b"\x30\x03\x0a\x01\x00", b"\x30\x80", &[0xff; 40]] {
            assert!(matches!(
                check(&q, bytes, bytes, SystemTime::now()),
                Err(OcspError::Malformed(_))
            ));
        }
        // tryLater, as a busy responder answers.
        let try_later = OcspResponse::try_later().to_der().unwrap();
        assert_eq!(
            check(&q, &try_later, b"", SystemTime::now()).unwrap_err(),
            OcspError::NotSuccessful(OcspResponseStatus::TryLater)
        );
    }
}
