//! Simulated SIM PKI: one CA per carrier, RSA-2048 SIM keys, certificates with
//! Vietnamese names and repeated UID identifiers (`CCCD:…`, `CMND:…`, `MST:…`), a CRL,
//! and the two signature formats the MSSPs return (CMS SignedData, raw PKCS#1).
//!
//! Built with the RustCrypto x509-cert builder throughout (rcgen cannot repeat an
//! attribute in a name, and one library keeps issuer names byte-identical).

use std::collections::HashSet;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, SystemTime};

use anyhow::{anyhow, Context};
use cms::builder::{create_signing_time_attribute, SignedDataBuilder, SignerInfoBuilder};
use cms::cert::{CertificateChoices, IssuerAndSerialNumber};
use cms::signed_data::{EncapsulatedContentInfo, SignerIdentifier};
use der::asn1::{BitString, Ia5String, OctetString, SetOfVec, Utf8StringRef};
use der::{Any, Decode, Encode};
use rsa::pkcs1v15::SigningKey;
use rsa::signature::{SignatureEncoding, Signer};
use rsa::RsaPrivateKey;
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use x509_cert::attr::AttributeTypeAndValue;
use x509_cert::builder::{Builder, CertificateBuilder, Profile};
use x509_cert::crl::{CertificateList, RevokedCert, TbsCertList};
use x509_cert::ext::pkix::crl::dp::DistributionPoint;
use x509_cert::ext::pkix::name::{DistributionPointName, GeneralName};
use x509_cert::ext::pkix::{
    AccessDescription, AuthorityInfoAccessSyntax, CrlDistributionPoints, ExtendedKeyUsage,
};
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
const OID_OCSP_SIGNING: &str = "1.3.6.1.5.5.7.3.9";
const OID_AD_OCSP: &str = "1.3.6.1.5.5.7.48.1";

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The digest a CertID names (SHA-1 or SHA-256), `None` for others.
fn sha_by_oid(alg: &der::asn1::ObjectIdentifier, bytes: &[u8]) -> Option<Vec<u8>> {
    use sha2::Digest;
    match alg.to_string().as_str() {
        "1.3.14.3.2.26" => Some(sha1::Sha1::digest(bytes).to_vec()),
        "2.16.840.1.101.3.4.2.1" => Some(Sha256::digest(bytes).to_vec()),
        _ => None,
    }
}

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

/// The simulated CA's key of `carrier`: always the same (derived from a fixed seed),
/// so that a restarted simulator is the same CA and the roots a gateway trusts stay
/// valid, as a real CA's do. Public, like everything simulated: trust it in tests only.
pub fn ca_key(carrier: carrier_adapters::Carrier) -> anyhow::Result<RsaPrivateKey> {
    use rand::SeedableRng;
    let seed = carrier
        .as_str()
        .bytes()
        .fold(0x5EED_CA00_u64, |h, b| h.rotate_left(8) ^ u64::from(b));
    let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(seed);
    RsaPrivateKey::new(&mut rng, 2048).context("RSA key generation")
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

/// How the CA's OCSP responder behaves (a fault switch of the simulator).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OcspMode {
    /// Signed by the CA, the request's nonce echoed, thisUpdate now.
    #[default]
    Normal,
    /// Signed by a delegated responder certificate (id-kp-OCSPSigning) the CA issued.
    Delegated,
    /// Signed by a responder the CA never certified, saying `good` whatever the truth.
    WrongSigner,
    /// An old `good` answer replayed: thisUpdate two days ago, nextUpdate a day ago.
    Stale,
    /// `unknown` for every certificate.
    Unknown,
    /// The OCSP `tryLater` status.
    TryLater,
    /// HTTP 503, no OCSP at all.
    Down,
}

/// Whether the CA publishes its CRL.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CrlMode {
    #[default]
    Normal,
    /// HTTP 503.
    Down,
}

/// The CA's fault switches (`GET`/`PUT /ca/{carrier}/faults`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CaFaults {
    pub ocsp: OcspMode,
    pub crl: CrlMode,
    /// nextUpdate of good answers, from now; none by default (RFC 6960 §2.4: newer
    /// status is always available, so the answer is not cached).
    #[serde(with = "humantime_serde")]
    pub ocsp_next_update: Option<Duration>,
}

/// A responder's key and certificate.
struct Responder {
    key: SigningKey<Sha256>,
    cert: Certificate,
}

pub struct SimCa {
    pub name: String,
    key: SigningKey<Sha256>,
    cert: Certificate,
    cert_der: Vec<u8>,
    revoked: Mutex<Vec<(SerialNumber, SystemTime)>>,
    /// Every serial this CA issued: anything else is `unknown` to its responder.
    issued: Mutex<HashSet<Vec<u8>>>,
    next_serial: Mutex<u64>,
    crl_number: Mutex<u64>,
    /// Where the OCSP responder and the CRL are (`http://…/ca/{carrier}`), written into
    /// the Authority Information Access and CRL Distribution Points of what it issues.
    base_url: Mutex<Option<String>>,
    faults: Mutex<CaFaults>,
    delegated: OnceLock<Responder>,
    rogue: OnceLock<Responder>,
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
            issued: Mutex::new(HashSet::new()),
            next_serial: Mutex::new(0x1000),
            crl_number: Mutex::new(0),
            base_url: Mutex::new(None),
            faults: Mutex::new(CaFaults::default()),
            delegated: OnceLock::new(),
            rogue: OnceLock::new(),
        })
    }

    /// Where this CA's responder and CRL are served; certificates issued from now on
    /// name them.
    pub fn set_base_url(&self, url: &str) {
        *lock(&self.base_url) = Some(url.trim_end_matches('/').to_owned());
    }

    pub fn ocsp_url(&self) -> Option<String> {
        lock(&self.base_url).as_ref().map(|b| format!("{b}/ocsp"))
    }

    pub fn faults(&self) -> CaFaults {
        lock(&self.faults).clone()
    }

    pub fn set_faults(&self, faults: CaFaults) {
        *lock(&self.faults) = faults;
    }

    /// The next serial: random 63 bits (RFC 5280 asks for unpredictable serials), so
    /// serials differ across simulator runs.
    fn new_serial(&self) -> anyhow::Result<SerialNumber> {
        let mut next = lock(&self.next_serial);
        *next += 1;
        let random: u64 = rand::random::<u64>() & 0x7FFF_FFFF_FFFF_0000;
        Ok(SerialNumber::new(
            &(random | (*next & 0xFFFF)).to_be_bytes(),
        )?)
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
        let serial = self.new_serial()?;
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
        if let Some(base) = lock(&self.base_url).clone() {
            builder.add_extension(&AuthorityInfoAccessSyntax(vec![AccessDescription {
                access_method: oid(OID_AD_OCSP),
                access_location: GeneralName::UniformResourceIdentifier(Ia5String::new(&format!(
                    "{base}/ocsp"
                ))?),
            }]))?;
            builder.add_extension(&CrlDistributionPoints(vec![DistributionPoint {
                distribution_point: Some(DistributionPointName::FullName(vec![
                    GeneralName::UniformResourceIdentifier(Ia5String::new(&format!("{base}.crl"))?),
                ])),
                reasons: None,
                crl_issuer: None,
            }]))?;
        }
        let cert = builder.build::<rsa::pkcs1v15::Signature>()?;
        lock(&self.issued).insert(cert.tbs_certificate.serial_number.as_bytes().to_vec());
        Ok(cert.to_der()?)
    }

    /// A responder certificate for `key`, issued by this CA (`delegated`), or by a
    /// throw-away CA of the same name (`rogue`: what a forger would present).
    fn responder(&self, rogue: bool) -> anyhow::Result<Responder> {
        let key = generate_key()?;
        let now = SystemTime::now();
        let validity = Validity {
            not_before: time(now - DAY)?,
            not_after: time(now + 30 * DAY)?,
        };
        let issuer_key = if rogue {
            SigningKey::<Sha256>::new(generate_key()?)
        } else {
            self.key.clone()
        };
        let spki = SubjectPublicKeyInfoOwned::from_key(key.to_public_key())?;
        let mut builder = CertificateBuilder::new(
            Profile::Leaf {
                issuer: self.cert.tbs_certificate.subject.clone(),
                enable_key_agreement: false,
                enable_key_encipherment: false,
            },
            self.new_serial()?,
            validity,
            name(&[
                (OID_C, "VN"),
                (OID_CN, &format!("{} OCSP responder", self.name)),
            ])?,
            spki,
            &issuer_key,
        )?;
        builder.add_extension(&ExtendedKeyUsage(vec![oid(OID_OCSP_SIGNING)]))?;
        let cert = builder.build::<rsa::pkcs1v15::Signature>()?;
        Ok(Responder {
            key: SigningKey::<Sha256>::new(key),
            cert,
        })
    }

    /// Answers a DER OCSPRequest as the fault switches say; `None`: HTTP 503.
    pub fn ocsp_response(&self, request_der: &[u8]) -> Option<Vec<u8>> {
        let faults = self.faults();
        let response = match faults.ocsp {
            OcspMode::Down => return None,
            OcspMode::TryLater => Ok(x509_ocsp::OcspResponse::try_later()),
            _ => self.ocsp_answer(request_der, &faults),
        };
        let response = response.unwrap_or_else(|e| {
            tracing::info!(ca = %self.name, error = %e, "malformed OCSP request");
            x509_ocsp::OcspResponse::malformed_request()
        });
        response.to_der().ok()
    }

    fn ocsp_answer(
        &self,
        request_der: &[u8],
        faults: &CaFaults,
    ) -> anyhow::Result<x509_ocsp::OcspResponse> {
        use x509_ocsp::{CertStatus, OcspGeneralizedTime, ResponderId, SingleResponse};
        let request = x509_ocsp::OcspRequest::from_der(request_der)?;
        let now = SystemTime::now();
        let (this_update, next_update) = match faults.ocsp {
            OcspMode::Stale => (now - 2 * DAY, Some(now - DAY)),
            _ => (now, faults.ocsp_next_update.map(|d| now + d)),
        };
        let my_key = self
            .cert
            .tbs_certificate
            .subject_public_key_info
            .subject_public_key
            .raw_bytes()
            .to_vec();
        // Looked up per serial: the sets are not copied for each request.
        let issued = |serial: &SerialNumber| lock(&self.issued).contains(serial.as_bytes());
        let revoked_at = |serial: &SerialNumber| {
            lock(&self.revoked)
                .iter()
                .find(|(s, _)| s == serial)
                .map(|(_, at)| *at)
        };
        let mut singles = Vec::new();
        let my_name = self.cert.tbs_certificate.subject.to_der()?;
        for one in &request.tbs_request.request_list {
            let id = &one.req_cert;
            let hash = |bytes: &[u8]| sha_by_oid(&id.hash_algorithm.oid, bytes);
            let ours = hash(&my_name).is_some_and(|h| h == id.issuer_name_hash.as_bytes())
                && hash(&my_key).is_some_and(|h| h == id.issuer_key_hash.as_bytes());
            // A replayed old answer and a forger both say what suits the attacker.
            let lying = matches!(faults.ocsp, OcspMode::Stale | OcspMode::WrongSigner);
            let status = if !ours || faults.ocsp == OcspMode::Unknown {
                CertStatus::unknown()
            } else if lying && issued(&id.serial_number) {
                CertStatus::good()
            } else if let Some(at) = revoked_at(&id.serial_number) {
                CertStatus::revoked(x509_ocsp::RevokedInfo {
                    revocation_time: OcspGeneralizedTime::try_from(at)?,
                    revocation_reason: None,
                })
            } else if issued(&id.serial_number) {
                CertStatus::good()
            } else {
                CertStatus::unknown()
            };
            singles.push(SingleResponse {
                cert_id: id.clone(),
                cert_status: status,
                this_update: OcspGeneralizedTime::try_from(this_update)?,
                next_update: next_update.map(OcspGeneralizedTime::try_from).transpose()?,
                single_extensions: None,
            });
        }
        let (responder_id, key, chain) = match faults.ocsp {
            OcspMode::Delegated | OcspMode::WrongSigner => {
                let cell = if faults.ocsp == OcspMode::Delegated {
                    &self.delegated
                } else {
                    &self.rogue
                };
                let responder = match cell.get() {
                    Some(r) => r,
                    None => {
                        let made = self.responder(faults.ocsp == OcspMode::WrongSigner)?;
                        let _ = cell.set(made);
                        cell.get().context("responder just made")?
                    }
                };
                (
                    ResponderId::ByName(responder.cert.tbs_certificate.subject.clone()),
                    responder.key.clone(),
                    Some(vec![responder.cert.clone()]),
                )
            }
            _ => (
                ResponderId::ByName(self.cert.tbs_certificate.subject.clone()),
                self.key.clone(),
                None,
            ),
        };
        let mut builder = x509_ocsp::builder::OcspResponseBuilder::new(responder_id);
        for single in singles {
            builder = builder.with_single_response(single);
        }
        if let Some(nonce) = request.nonce() {
            builder = builder
                .with_extension(nonce)
                .map_err(|e| anyhow!("OCSP nonce: {e:?}"))?;
        }
        let mut key = key;
        builder
            .sign::<_, rsa::pkcs1v15::Signature>(
                &mut key,
                chain,
                OcspGeneralizedTime::try_from(now)?,
            )
            .map_err(|e| anyhow!("signing the OCSP response: {e:?}"))
    }

    /// Revokes a certificate: on the CRL and `revoked` at the OCSP responder from now.
    pub fn revoke(&self, cert_der: &[u8]) -> anyhow::Result<()> {
        let cert = Certificate::from_der(cert_der)?;
        let serial = cert.tbs_certificate.serial_number;
        let mut revoked = lock(&self.revoked);
        if !revoked.iter().any(|(s, _)| *s == serial) {
            revoked.push((serial, SystemTime::now()));
        }
        Ok(())
    }

    /// Whether this CA issued `cert_der`.
    pub fn issued(&self, cert_der: &[u8]) -> bool {
        Certificate::from_der(cert_der).is_ok_and(|c| {
            c.tbs_certificate.issuer == self.cert.tbs_certificate.subject
                && lock(&self.issued).contains(c.tbs_certificate.serial_number.as_bytes())
        })
    }

    /// Whether the CA publishes its CRL now (the `crl` fault switch).
    pub fn crl_published(&self) -> bool {
        self.faults().crl == CrlMode::Normal
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
