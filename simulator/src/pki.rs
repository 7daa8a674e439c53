//! Simulated SIM PKI: one CA per carrier, RSA-2048 SIM keys, certificates with
//! Vietnamese names and repeated UID identifiers (`CCCD:…`, `CMND:…`, `MST:…`), a CRL,
//! and the two signature formats the MSSPs return (CMS SignedData, raw PKCS#1).
//!
//! Built with the RustCrypto x509-cert builder throughout (rcgen cannot repeat an
//! attribute in a name, and one library keeps issuer names byte-identical).

use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use anyhow::{anyhow, Context};
use cms::builder::{create_signing_time_attribute, SignedDataBuilder, SignerInfoBuilder};
use cms::cert::{CertificateChoices, IssuerAndSerialNumber};
use cms::signed_data::{EncapsulatedContentInfo, SignerIdentifier};
use der::asn1::{BitString, OctetString, SetOfVec, Utf8StringRef};
use der::{Any, Decode, Encode};
use rsa::pkcs1v15::SigningKey;
use rsa::signature::{SignatureEncoding, Signer};
use rsa::RsaPrivateKey;
use sha2::Sha256;
use x509_cert::attr::AttributeTypeAndValue;
use x509_cert::builder::{Builder, CertificateBuilder, Profile};
use x509_cert::crl::{CertificateList, RevokedCert, TbsCertList};
use x509_cert::ext::pkix::ExtendedKeyUsage;
use x509_cert::name::{Name, RdnSequence, RelativeDistinguishedName};
use x509_cert::serial_number::SerialNumber;
use x509_cert::spki::{
    AlgorithmIdentifierOwned, DynSignatureAlgorithmIdentifier, SubjectPublicKeyInfoOwned,
};
use x509_cert::time::{Time, Validity};
use x509_cert::Certificate;

const OID_CN: &str = "2.5.4.3";
const OID_C: &str = "2.5.4.6";
const OID_ST: &str = "2.5.4.8";
const OID_O: &str = "2.5.4.10";
const OID_UID: &str = "0.9.2342.19200300.100.1.1";
const OID_DATA: &str = "1.2.840.113549.1.7.1";
const OID_SHA256: &str = "2.16.840.1.101.3.4.2.1";
const OID_CLIENT_AUTH: &str = "1.3.6.1.5.5.7.3.2";
const OID_EMAIL_PROTECTION: &str = "1.3.6.1.5.5.7.3.4";

const DAY: Duration = Duration::from_secs(86_400);

fn oid(s: &str) -> der::asn1::ObjectIdentifier {
    der::asn1::ObjectIdentifier::new_unwrap(s)
}

/// One attribute per RDN, in order, as UTF8String (Vietnamese names need it).
fn name(parts: &[(&str, &str)]) -> anyhow::Result<Name> {
    let mut rdns = Vec::with_capacity(parts.len());
    for (o, value) in parts {
        // countryName is PrintableString by definition.
        let value = if *o == OID_C {
            Any::from(der::asn1::PrintableStringRef::new(value)?)
        } else {
            Any::from(Utf8StringRef::new(value)?)
        };
        let atv = AttributeTypeAndValue { oid: oid(o), value };
        rdns.push(RelativeDistinguishedName(SetOfVec::try_from(vec![atv])?));
    }
    Ok(RdnSequence(rdns))
}

fn time(t: SystemTime) -> anyhow::Result<Time> {
    Time::try_from(t).map_err(|e| anyhow!("time out of range: {e}"))
}

/// A new RSA-2048 key (a few hundred milliseconds: call from a blocking thread).
pub fn generate_key() -> anyhow::Result<RsaPrivateKey> {
    RsaPrivateKey::new(&mut rand::thread_rng(), 2048).context("RSA key generation")
}

/// Who a SIM certificate names.
#[derive(Debug, Clone)]
pub struct SubjectInfo {
    pub full_name: String,
    /// `("CCCD", "001099012345")`, … each becomes one UID attribute `CCCD:001099012345`.
    pub identifiers: Vec<(String, String)>,
    pub province: Option<String>,
    pub organization: Option<String>,
}

/// When a certificate is valid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lifetime {
    /// Issued a year ago, valid for two more.
    Current,
    /// Ran out a month ago.
    Expired,
}

pub struct SimCa {
    pub name: String,
    key: SigningKey<Sha256>,
    cert: Certificate,
    cert_der: Vec<u8>,
    revoked: Mutex<Vec<(SerialNumber, SystemTime)>>,
    next_serial: Mutex<u64>,
    crl_number: Mutex<u64>,
}

impl std::fmt::Debug for SimCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimCa").field("name", &self.name).finish()
    }
}

impl SimCa {
    /// A self-signed CA named `common_name` (e.g. "Viettel-CA SIM (simulated)").
    pub fn new(common_name: &str, organization: &str, key: RsaPrivateKey) -> anyhow::Result<SimCa> {
        let signer = SigningKey::<Sha256>::new(key);
        let subject = name(&[(OID_C, "VN"), (OID_O, organization), (OID_CN, common_name)])?;
        let spki = SubjectPublicKeyInfoOwned::from_key(signer.as_ref().to_public_key())?;
        let now = SystemTime::now();
        let validity = Validity {
            not_before: time(now - 3650 * DAY)?,
            not_after: time(now + 3650 * DAY)?,
        };
        let builder = CertificateBuilder::new(
            Profile::Root,
            SerialNumber::from(1u32),
            validity,
            subject,
            spki,
            &signer,
        )?;
        let cert = builder.build::<rsa::pkcs1v15::Signature>()?;
        let cert_der = cert.to_der()?;
        Ok(SimCa {
            name: common_name.to_owned(),
            key: signer,
            cert,
            cert_der,
            revoked: Mutex::new(Vec::new()),
            next_serial: Mutex::new(0x1000),
            crl_number: Mutex::new(0),
        })
    }

    pub fn certificate_der(&self) -> &[u8] {
        &self.cert_der
    }

    pub fn certificate_pem(&self) -> String {
        pem("CERTIFICATE", &self.cert_der)
    }

    /// Issues a SIM certificate for `key`; returns its DER.
    pub fn issue(
        &self,
        subject: &SubjectInfo,
        key: &RsaPrivateKey,
        lifetime: Lifetime,
    ) -> anyhow::Result<Vec<u8>> {
        let serial = {
            let mut next = self.next_serial.lock().unwrap_or_else(|p| p.into_inner());
            *next += 1;
            // Mix in the clock so serials differ across simulator runs.
            let nanos = SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(0);
            SerialNumber::new(&((nanos & 0x00FF_FFFF_FFFF_0000) | (*next & 0xFFFF)).to_be_bytes())?
        };
        let mut parts: Vec<(&str, &str)> = vec![(OID_C, "VN")];
        if let Some(p) = &subject.province {
            parts.push((OID_ST, p));
        }
        if let Some(o) = &subject.organization {
            parts.push((OID_O, o));
        }
        parts.push((OID_CN, &subject.full_name));
        let uids: Vec<String> = subject
            .identifiers
            .iter()
            .map(|(kind, value)| format!("{kind}:{value}"))
            .collect();
        for uid in &uids {
            parts.push((OID_UID, uid));
        }
        let now = SystemTime::now();
        let validity = match lifetime {
            Lifetime::Current => Validity {
                not_before: time(now - 365 * DAY)?,
                not_after: time(now + 730 * DAY)?,
            },
            Lifetime::Expired => Validity {
                not_before: time(now - 3 * 365 * DAY)?,
                not_after: time(now - 30 * DAY)?,
            },
        };
        let spki = SubjectPublicKeyInfoOwned::from_key(key.to_public_key())?;
        let mut builder = CertificateBuilder::new(
            Profile::Leaf {
                issuer: self.cert.tbs_certificate.subject.clone(),
                enable_key_agreement: false,
                enable_key_encipherment: false,
            },
            serial,
            validity,
            name(&parts)?,
            spki,
            &self.key,
        )?;
        builder.add_extension(&ExtendedKeyUsage(vec![
            oid(OID_CLIENT_AUTH),
            oid(OID_EMAIL_PROTECTION),
        ]))?;
        let cert = builder.build::<rsa::pkcs1v15::Signature>()?;
        Ok(cert.to_der()?)
    }

    /// Puts a certificate on the CRL.
    pub fn revoke(&self, cert_der: &[u8]) -> anyhow::Result<()> {
        let cert = Certificate::from_der(cert_der)?;
        let serial = cert.tbs_certificate.serial_number;
        let mut revoked = self.revoked.lock().unwrap_or_else(|p| p.into_inner());
        if !revoked.iter().any(|(s, _)| *s == serial) {
            revoked.push((serial, SystemTime::now() - Duration::from_secs(60)));
        }
        Ok(())
    }

    fn crl_extensions(&self) -> anyhow::Result<Vec<x509_cert::ext::Extension>> {
        use x509_cert::ext::pkix::{AuthorityKeyIdentifier, SubjectKeyIdentifier};
        let ski = self
            .cert
            .tbs_certificate
            .extensions
            .as_ref()
            .and_then(|exts| exts.iter().find(|e| e.extn_id == oid("2.5.29.14")))
            .context("the CA certificate has no subject key identifier")?;
        let ski = SubjectKeyIdentifier::from_der(ski.extn_value.as_bytes())?;
        let aki = AuthorityKeyIdentifier {
            key_identifier: Some(ski.0),
            authority_cert_issuer: None,
            authority_cert_serial_number: None,
        };
        let number = {
            let mut n = self.crl_number.lock().unwrap_or_else(|p| p.into_inner());
            *n += 1;
            *n
        };
        let number = der::asn1::Uint::new(&number.to_be_bytes())?;
        Ok(vec![
            x509_cert::ext::Extension {
                extn_id: oid("2.5.29.20"),
                critical: false,
                extn_value: OctetString::new(number.to_der()?)?,
            },
            x509_cert::ext::Extension {
                extn_id: oid("2.5.29.35"),
                critical: false,
                extn_value: OctetString::new(aki.to_der()?)?,
            },
        ])
    }

    /// The current CRL, DER, valid for a day.
    pub fn crl_der(&self) -> anyhow::Result<Vec<u8>> {
        let revoked = self
            .revoked
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let now = SystemTime::now();
        let revoked_certificates = if revoked.is_empty() {
            None
        } else {
            Some(
                revoked
                    .into_iter()
                    .map(|(serial_number, at)| {
                        Ok(RevokedCert {
                            serial_number,
                            revocation_date: time(at)?,
                            crl_entry_extensions: None,
                        })
                    })
                    .collect::<anyhow::Result<Vec<_>>>()?,
            )
        };
        let tbs = TbsCertList {
            version: x509_cert::Version::V2,
            signature: self.key.signature_algorithm_identifier()?,
            issuer: self.cert.tbs_certificate.subject.clone(),
            this_update: time(now - Duration::from_secs(60))?,
            next_update: Some(time(now + DAY)?),
            revoked_certificates,
            // RFC 5280 §5.2 requires the CRL number and the authority key identifier.
            crl_extensions: Some(self.crl_extensions()?),
        };
        let signature = self.key.sign(&tbs.to_der()?);
        let crl = CertificateList {
            tbs_cert_list: tbs,
            signature_algorithm: self.key.signature_algorithm_identifier()?,
            signature: BitString::from_bytes(&signature.to_bytes())?,
        };
        Ok(crl.to_der()?)
    }
}

/// A SIM's key and certificate.
pub struct SimCredential {
    pub key: SigningKey<Sha256>,
    pub cert_der: Vec<u8>,
}

impl SimCredential {
    pub fn new(key: RsaPrivateKey, cert_der: Vec<u8>) -> SimCredential {
        SimCredential {
            key: SigningKey::<Sha256>::new(key),
            cert_der,
        }
    }

    /// CMS SignedData (attached content, SHA-256, RSA PKCS#1 v1.5, signing time, the
    /// signer's certificate), DER.
    pub fn sign_cms(&self, content: &[u8]) -> anyhow::Result<Vec<u8>> {
        let cert = Certificate::from_der(&self.cert_der)?;
        let econtent = EncapsulatedContentInfo {
            econtent_type: oid(OID_DATA),
            econtent: Some(Any::new(
                der::Tag::OctetString,
                OctetString::new(content)?.as_bytes(),
            )?),
        };
        let digest = AlgorithmIdentifierOwned {
            oid: oid(OID_SHA256),
            parameters: None,
        };
        let sid = SignerIdentifier::IssuerAndSerialNumber(IssuerAndSerialNumber {
            issuer: cert.tbs_certificate.issuer.clone(),
            serial_number: cert.tbs_certificate.serial_number.clone(),
        });
        let mut signer_info =
            SignerInfoBuilder::new(&self.key, sid, digest.clone(), &econtent, None)
                .map_err(|e| anyhow!("signer info: {e}"))?;
        signer_info
            .add_signed_attribute(create_signing_time_attribute().map_err(|e| anyhow!("{e}"))?)
            .map_err(|e| anyhow!("{e}"))?;
        let mut builder = SignedDataBuilder::new(&econtent);
        builder
            .add_digest_algorithm(digest)
            .map_err(|e| anyhow!("{e}"))?
            .add_certificate(CertificateChoices::Certificate(cert))
            .map_err(|e| anyhow!("{e}"))?
            .add_signer_info::<SigningKey<Sha256>, rsa::pkcs1v15::Signature>(signer_info)
            .map_err(|e| anyhow!("{e}"))?;
        let content_info = builder.build().map_err(|e| anyhow!("{e}"))?;
        Ok(content_info.to_der()?)
    }

    /// The raw RSA PKCS#1 v1.5 signature over DigestInfo(SHA-256(content)).
    pub fn sign_pkcs1(&self, content: &[u8]) -> Vec<u8> {
        self.key.sign(content).to_vec()
    }

    pub fn certificate_pem(&self) -> String {
        pem("CERTIFICATE", &self.cert_der)
    }
}

pub fn pem(label: &str, der: &[u8]) -> String {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(chunk).unwrap_or_default());
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}
