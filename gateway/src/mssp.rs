//! Talking to the carriers' MSSPs: SOAP requests in each carrier's dialect, the trust
//! material (CA roots) to verify their signatures with, the signer certificate's
//! revocation status (OCSP, falling back to the CRL), certificate fetch for the PKCS#1
//! dialect, and the carrier owner check.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{anyhow, bail, Context};
use base64::Engine;
use carrier_adapters::mss::dialect::Dialect;
use carrier_adapters::mss::{self, MssMessage, Operation, SoapContent};
use carrier_adapters::ocsp::{self, CertState};
use carrier_adapters::signature::{self, TrustStore};
use carrier_adapters::{Carrier, Msisdn};
use secrecy::ExposeSecret;
use tokio::sync::Mutex;

use crate::config::MssRoute;

/// One carrier's MSSP.
pub struct MsspClient {
    pub carrier: Carrier,
    pub dialect: Dialect,
    pub route: MssRoute,
    http: reqwest::Client,
    roots: Mutex<Option<Vec<Vec<u8>>>>,
    /// OCSP answers by CertID (DER), each until its nextUpdate or the configured bound.
    ocsp_cache: std::sync::Mutex<HashMap<Vec<u8>, Cached<Revocation>>>,
    /// CRLs by URL, each until its nextUpdate or the configured bound.
    crl_cache: Mutex<HashMap<String, Cached<Vec<u8>>>>,
}

#[derive(Clone)]
struct Cached<T> {
    value: T,
    until: Instant,
}

/// Most OCSP answers kept per carrier; the oldest go first.
const OCSP_CACHE_ENTRIES: usize = 10_000;

/// How long one OCSP or CRL fetch may take.
const REVOCATION_FETCH_TIMEOUT: Duration = Duration::from_secs(5);

/// Largest CRL read.
const MAX_CRL_BYTES: usize = 16 * 1024 * 1024;

/// Why a SOAP call to an MSSP gave no answer.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// No answer came: the request may or may not have reached the carrier.
    #[error("{carrier} MSSP could not be reached: {reason}")]
    Unreachable { carrier: Carrier, reason: String },
    #[error("{carrier} MSSP did not answer within {after:?}")]
    Timeout { carrier: Carrier, after: Duration },
    /// It answered, with something that is not a SOAP message or fault we can read.
    #[error("{carrier} MSSP answered HTTP {status} with an unreadable body: {reason}")]
    Unreadable {
        carrier: Carrier,
        status: u16,
        reason: String,
    },
}

impl CallError {
    /// What the portal is told (`status_detail`).
    pub fn detail(&self) -> String {
        match self {
            CallError::Unreachable { .. } => "the carrier's MSSP could not be reached".into(),
            CallError::Timeout { after, .. } => {
                format!(
                    "the carrier's MSSP did not answer within {} s",
                    after.as_secs()
                )
            }
            CallError::Unreadable { status, reason, .. } => {
                format!("the carrier's MSSP answered (HTTP {status}) but its answer could not be read: {reason}")
            }
        }
    }
}

/// The signer certificate's revocation status, and where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Revocation {
    Good {
        via: &'static str,
    },
    Revoked {
        via: &'static str,
    },
    /// The CA's own responder does not know the certificate.
    Unknown {
        detail: String,
    },
    /// No status could be had (responder and CRL unreachable, stale or invalid).
    NoStatus {
        detail: String,
    },
}

/// Until when an answer may be reused: its nextUpdate, at most `bound` from now, never
/// when it has no nextUpdate.
fn reuse_until(next_update: Option<SystemTime>, bound: Duration) -> Option<Instant> {
    let left = next_update?.duration_since(SystemTime::now()).ok()?;
    Some(Instant::now() + left.min(bound))
}

/// Pauses before each new attempt of a request whose connection could not be made.
fn connect_retries() -> carrier_adapters::retry::Schedule {
    carrier_adapters::retry::Schedule::listed([
        Duration::from_millis(100),
        Duration::from_millis(400),
        Duration::from_secs(1),
    ])
}

impl MsspClient {
    pub fn new(carrier: Carrier, route: MssRoute) -> anyhow::Result<MsspClient> {
        let dialect = Dialect::of(carrier)
            .ok_or_else(|| anyhow!("{carrier} has no SIM signature service"))?;
        let mut builder = reqwest::Client::builder()
            .timeout(route.request_timeout)
            .min_tls_version(reqwest::tls::Version::TLS_1_2);
        for source in &route.tls_roots {
            let pem = pem_source(source).with_context(|| format!("mss.{carrier}.tls_roots"))?;
            for cert in reqwest::Certificate::from_pem_bundle(pem.as_bytes())
                .with_context(|| format!("mss.{carrier}.tls_roots: not PEM certificates"))?
            {
                builder = builder.add_root_certificate(cert);
            }
        }
        if let Some(identity) = &route.tls_client_identity {
            let pem = pem_source(identity.expose_secret())
                .with_context(|| format!("mss.{carrier}.tls_client_identity"))?;
            let identity = reqwest::Identity::from_pem(pem.as_bytes()).with_context(|| {
                format!(
                    "mss.{carrier}.tls_client_identity: needs a PEM certificate and private key"
                )
            })?;
            builder = builder.identity(identity);
        }
        let http = builder.build()?;
        Ok(MsspClient {
            carrier,
            dialect,
            route,
            http,
            roots: Mutex::new(None),
            ocsp_cache: std::sync::Mutex::new(HashMap::new()),
            crl_cache: Mutex::new(HashMap::new()),
        })
    }

    /// Sends one request and reads the answer (a message or a fault).
    #[tracing::instrument(name = "mssp.call", skip_all, fields(carrier = %self.carrier, operation = operation.element_name()))]
    pub async fn call(
        &self,
        operation: Operation,
        message: &MssMessage,
    ) -> Result<SoapContent, CallError> {
        let body = mss::write_envelope(
            self.dialect.soap,
            operation,
            message,
            self.dialect.part_style,
        );
        // Made on behalf of an API request: the carrier's logs can be matched with ours.
        let request_id = crate::telemetry::request_id::current();
        let timeout = || CallError::Timeout {
            carrier: self.carrier,
            after: self.route.request_timeout,
        };
        let retries = connect_retries();
        let mut attempt = 0;
        let resp = loop {
            let mut request = self
                .http
                .post(&self.route.endpoint)
                .header("Content-Type", self.dialect.soap.content_type())
                .header("SOAPAction", format!("\"#{}\"", operation.element_name()));
            if let Some(id) = &request_id {
                request = request.header("X-Request-Id", id.as_str());
            }
            match request.body(body.clone()).send().await {
                Ok(resp) => break resp,
                // No connection was made, so nothing reached the MSSP: safe to try again
                // (a burst of new connections can overflow its listen queue). Anything
                // later (a timeout, a reset after the request went out) is not retried:
                // the carrier may have acted on it.
                Err(e) if e.is_connect() && retries.pause(attempt + 1).is_some() => {
                    attempt += 1;
                    let pause = retries.wait(attempt, None).unwrap_or_default();
                    tracing::info!(carrier = %self.carrier, error = %e, ?pause, "MSSP connection failed; trying again");
                    tokio::time::sleep(pause).await;
                }
                Err(e) if e.is_timeout() => return Err(timeout()),
                Err(e) => {
                    return Err(CallError::Unreachable {
                        carrier: self.carrier,
                        reason: format!("{e:#}"),
                    })
                }
            }
        };
        let status = resp.status().as_u16();
        let bytes = match resp.bytes().await {
            Ok(b) => b,
            Err(e) if e.is_timeout() => return Err(timeout()),
            Err(e) => {
                return Err(CallError::Unreadable {
                    carrier: self.carrier,
                    status,
                    reason: format!("the body broke off: {e}"),
                })
            }
        };
        match mss::parse_envelope(&bytes, mss::DEFAULT_MAX_BYTES) {
            Ok((_, content)) => Ok(content),
            Err(e) => Err(CallError::Unreadable {
                carrier: self.carrier,
                status,
                reason: e.to_string(),
            }),
        }
    }

    /// The CA roots, loaded on first use. Revocation is checked apart
    /// ([`MsspClient::revocation`]), against current status.
    pub async fn trust_store(&self) -> anyhow::Result<TrustStore> {
        let mut roots = self.roots.lock().await;
        if roots.is_none() {
            *roots = Some(self.load_roots().await?);
        }
        TrustStore::new(roots.clone().unwrap_or_default(), Vec::new()).map_err(|e| anyhow!("{e}"))
    }

    /// The revocation status of `cert_der` (issued by `issuer_der`) now: by OCSP at the
    /// responder the certificate names (or `ocsp_url`), each answer checked (nonce,
    /// signer and its authority, times); when OCSP gives no usable answer, by the CA's
    /// CRL, itself checked (issuer's signature, nextUpdate).
    #[tracing::instrument(name = "mssp.revocation", skip_all, fields(carrier = %self.carrier))]
    pub async fn revocation(&self, cert_der: &[u8], issuer_der: &[u8]) -> Revocation {
        let mut why = Vec::new();
        match self.ocsp_status(cert_der, issuer_der, &mut why).await {
            Some(r) => return r,
            None => {
                tracing::warn!(carrier = %self.carrier, reasons = why.join("; "), "no OCSP answer; trying the CRL")
            }
        }
        match self.crl_status(cert_der, issuer_der).await {
            Ok(true) => Revocation::Revoked { via: "crl" },
            Ok(false) => Revocation::Good { via: "crl" },
            Err(e) => {
                why.push(format!("CRL: {e:#}"));
                Revocation::NoStatus {
                    detail: why.join("; "),
                }
            }
        }
    }

    async fn ocsp_status(
        &self,
        cert_der: &[u8],
        issuer_der: &[u8],
        why: &mut Vec<String>,
    ) -> Option<Revocation> {
        let urls = match &self.route.ocsp_url {
            Some(url) => vec![url.clone()],
            None => match ocsp::responder_urls(cert_der) {
                Ok(urls) => urls,
                Err(e) => {
                    why.push(format!("OCSP: {e}"));
                    return None;
                }
            },
        };
        if urls.is_empty() {
            why.push("OCSP: the certificate names no responder".into());
            return None;
        }
        let mut nonce = [0u8; 32];
        if ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut nonce).is_err() {
            why.push("OCSP: no randomness for the nonce".into());
            return None;
        }
        let query = match ocsp::query(cert_der, issuer_der, &nonce) {
            Ok(q) => q,
            Err(e) => {
                why.push(format!("OCSP: {e}"));
                return None;
            }
        };
        let key = query.cache_key();
        if let Some(hit) = self.cached_ocsp(&key) {
            return Some(hit);
        }
        for url in urls {
            match self.ask_ocsp(&url, &query, issuer_der).await {
                Ok(answer) => {
                    let result = match answer.state {
                        CertState::Good => Revocation::Good { via: "ocsp" },
                        CertState::Revoked { .. } => Revocation::Revoked { via: "ocsp" },
                        CertState::Unknown => Revocation::Unknown {
                            detail:
                                "the CA's OCSP responder does not know the signer's certificate"
                                    .into(),
                        },
                    };
                    if let Some(until) =
                        reuse_until(answer.next_update, self.route.revocation_cache_max)
                    {
                        self.cache_ocsp(key, result.clone(), until);
                    }
                    return Some(result);
                }
                Err(e) => why.push(format!("OCSP {url}: {e:#}")),
            }
        }
        None
    }

    fn cached_ocsp(&self, key: &[u8]) -> Option<Revocation> {
        let cache = self.ocsp_cache.lock().unwrap_or_else(|p| p.into_inner());
        cache
            .get(key)
            .filter(|c| c.until > Instant::now())
            .map(|c| c.value.clone())
    }

    fn cache_ocsp(&self, key: Vec<u8>, value: Revocation, until: Instant) {
        let mut cache = self.ocsp_cache.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        cache.retain(|_, c| c.until > now);
        while cache.len() >= OCSP_CACHE_ENTRIES {
            let Some(oldest) = cache
                .iter()
                .min_by_key(|(_, c)| c.until)
                .map(|(k, _)| k.clone())
            else {
                break;
            };
            cache.remove(&oldest);
        }
        cache.insert(key, Cached { value, until });
    }

    async fn ask_ocsp(
        &self,
        url: &str,
        query: &ocsp::Query,
        issuer_der: &[u8],
    ) -> anyhow::Result<ocsp::Answer> {
        let resp = self
            .http
            .post(url)
            .timeout(REVOCATION_FETCH_TIMEOUT.min(self.route.request_timeout))
            .header("Content-Type", "application/ocsp-request")
            .header("Accept", "application/ocsp-response")
            .body(query.der.clone())
            .send()
            .await
            .context("unreachable")?;
        let status = resp.status();
        if !status.is_success() {
            bail!("answered HTTP {status}");
        }
        let body = read_limited(resp, ocsp::MAX_RESPONSE_BYTES).await?;
        let answer = ocsp::check(query, &body, issuer_der, SystemTime::now())?;
        if !answer.nonce_echoed {
            tracing::info!(carrier = %self.carrier, %url, "OCSP answer without our nonce (pre-produced)");
        }
        Ok(answer)
    }

    /// `Ok(true)`: on the CA's current CRL.
    async fn crl_status(&self, cert_der: &[u8], issuer_der: &[u8]) -> anyhow::Result<bool> {
        let url = match &self.route.crl_url {
            Some(url) => url.clone(),
            None => signature::crl_urls(cert_der)
                .into_iter()
                .next()
                .ok_or_else(|| anyhow!("no CRL is configured or named by the certificate"))?,
        };
        let mut cache = self.crl_cache.lock().await;
        let cached = cache
            .get(&url)
            .filter(|c| c.until > Instant::now())
            .map(|c| c.value.clone());
        let crl = match cached {
            Some(crl) => crl,
            None => {
                let resp = self
                    .http
                    .get(&url)
                    .timeout(REVOCATION_FETCH_TIMEOUT.min(self.route.request_timeout))
                    .send()
                    .await
                    .with_context(|| format!("{url} unreachable"))?;
                let status = resp.status();
                if !status.is_success() {
                    cache.remove(&url);
                    bail!("{url} answered HTTP {status}");
                }
                let crl = read_limited(resp, MAX_CRL_BYTES).await?;
                match reuse_until(
                    signature::crl_next_update(&crl),
                    self.route.revocation_cache_max,
                ) {
                    Some(until) => {
                        cache.insert(
                            url.clone(),
                            Cached {
                                value: crl.clone(),
                                until,
                            },
                        );
                    }
                    None => {
                        cache.remove(&url);
                    }
                }
                crl
            }
        };
        drop(cache);
        signature::crl_status(cert_der, issuer_der, &crl, SystemTime::now())
            .map_err(|e| anyhow!("{url}: {e}"))
    }

    async fn load_roots(&self) -> anyhow::Result<Vec<Vec<u8>>> {
        let mut roots = Vec::new();
        for source in &self.route.ca_roots {
            let text = if source.trim_start().starts_with("-----BEGIN") {
                source.clone()
            } else if source.starts_with("http://") || source.starts_with("https://") {
                tracing::warn!(carrier = %self.carrier, url = %source, "trusting a CA root fetched over the network (test set-ups only)");
                String::from_utf8(self.fetch(source).await?).context("CA root is not PEM text")?
            } else {
                std::fs::read_to_string(source)
                    .with_context(|| format!("reading CA root {source}"))?
            };
            roots.extend(pem_certificates(&text)?);
        }
        if roots.is_empty() {
            bail!("no CA root configured for {}", self.carrier);
        }
        Ok(roots)
    }

    async fn fetch(&self, url: &str) -> anyhow::Result<Vec<u8>> {
        let resp = self.http.get(url).send().await?.error_for_status()?;
        Ok(resp.bytes().await?.to_vec())
    }

    /// The SIM certificate (PKCS#1 dialect), DER.
    pub async fn fetch_certificate(&self, msisdn: &Msisdn) -> anyhow::Result<Vec<u8>> {
        let template = self
            .route
            .certificate_url
            .as_ref()
            .ok_or_else(|| anyhow!("mss.{}.certificate_url is not set", self.carrier))?;
        let url = template.replace("{msisdn}", msisdn.e164());
        let resp = self
            .http
            .get(url)
            .basic_auth(&self.route.ap_id, Some(self.route.ap_pwd.expose_secret()))
            .send()
            .await?
            .error_for_status()?;
        let text = resp.text().await?;
        pem_certificates(&text)?
            .into_iter()
            .next()
            .ok_or_else(|| anyhow!("the MSSP sent no certificate"))
    }

    /// The carrier's owner check: `full`, `partial`, `none` or `unknown_subscriber`.
    pub async fn owner_check(
        &self,
        msisdn: &Msisdn,
        id_type: carrier_adapters::identity::IdKind,
        id_number: &str,
        full_name: Option<&str>,
        date_of_birth: Option<&str>,
    ) -> anyhow::Result<String> {
        let url = self
            .route
            .owner_check_url
            .as_ref()
            .ok_or_else(|| anyhow!("mss.{}.owner_check_url is not set", self.carrier))?;
        let resp = self
            .http
            .post(url)
            .bearer_auth(self.route.owner_check_key.expose_secret())
            .json(&serde_json::json!({
                "msisdn": msisdn.e164(),
                "id_type": id_type.as_str(),
                "id_number": id_number,
                "full_name": full_name,
                "date_of_birth": date_of_birth,
            }))
            .send()
            .await?
            .error_for_status()?;
        let body: serde_json::Value = resp.json().await?;
        match body["match"].as_str() {
            Some(m @ ("full" | "partial" | "none" | "unknown_subscriber")) => Ok(m.to_owned()),
            _ => bail!("the carrier's owner check answered {body}"),
        }
    }
}

/// A response body, refused when it is larger than `limit`.
async fn read_limited(mut resp: reqwest::Response, limit: usize) -> anyhow::Result<Vec<u8>> {
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await.context("reading the answer")? {
        if body.len() + chunk.len() > limit {
            bail!("the answer is larger than {limit} bytes");
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// Inline PEM as is, otherwise the contents of the file it names.
fn pem_source(source: &str) -> anyhow::Result<String> {
    if source.trim_start().starts_with("-----BEGIN") {
        Ok(source.to_owned())
    } else {
        std::fs::read_to_string(source).with_context(|| format!("reading {source}"))
    }
}

/// The DER of each certificate in PEM text (rustls-pki-types' PEM reader; other
/// blocks, such as keys, are passed over).
pub fn pem_certificates(text: &str) -> anyhow::Result<Vec<Vec<u8>>> {
    use rustls_pki_types::pem::PemObject;
    rustls_pki_types::CertificateDer::pem_slice_iter(text.as_bytes())
        .map(|c| {
            c.map(|c| c.to_vec())
                .map_err(|e| anyhow!("not PEM certificates: {e:?}"))
        })
        .collect()
}

/// The MSSPs configured, by carrier.
pub fn clients(
    routes: &BTreeMap<String, MssRoute>,
) -> anyhow::Result<BTreeMap<Carrier, Arc<MsspClient>>> {
    let mut out = BTreeMap::new();
    for (name, route) in routes {
        let carrier: Carrier = name.parse().map_err(|e| anyhow!("mss.{name}: {e}"))?;
        out.insert(carrier, Arc::new(MsspClient::new(carrier, route.clone())?));
    }
    Ok(out)
}

/// PEM text of a DER object.
pub fn pem_encode(label: &str, der: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(chunk).unwrap_or_default());
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

// The tests build routes from the simulator's layout (the `demo` feature).
#[cfg(all(test, feature = "demo"))]
mod tests {
    use super::*;
    use secrecy::SecretString;

    fn ca_pem() -> String {
        let ca = simulator::pki::SimCa::new(
            "Test TLS CA",
            "Test",
            simulator::pki::generate_key().unwrap(),
        )
        .unwrap();
        ca.certificate_pem()
    }

    #[test]
    fn tls_roots_and_client_identity_are_loaded_or_refused_clearly() {
        let mut route = MssRoute::simulator("viettel", "https://mss.example.vn");
        route.tls_roots = vec![ca_pem()];
        MsspClient::new(Carrier::Viettel, route.clone()).unwrap();

        let path = std::env::temp_dir().join(format!("mss-root-{}.pem", std::process::id()));
        std::fs::write(&path, ca_pem()).unwrap();
        route.tls_roots = vec![path.display().to_string()];
        MsspClient::new(Carrier::Viettel, route.clone()).unwrap();
        std::fs::remove_file(&path).unwrap();

        route.tls_roots = vec!["/nonexistent/root.pem".into()];
        let err = MsspClient::new(Carrier::Viettel, route.clone())
            .err()
            .unwrap();
        assert!(format!("{err:#}").contains("tls_roots"), "{err:#}");

        route.tls_roots = vec![];
        route.tls_client_identity = Some(SecretString::from(ca_pem()));
        let err = MsspClient::new(Carrier::Viettel, route).err().unwrap();
        assert!(format!("{err:#}").contains("private key"), "{err:#}");
    }

    /// A refused connection sent nothing, so the request is made again; here the MSSP
    /// starts listening 150 ms after the first attempt and the request reaches it.
    #[tokio::test]
    async fn a_refused_connection_is_tried_again_until_the_mssp_listens() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        // A free port with nothing listening on it yet.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let route = MssRoute::simulator("viettel", &format!("http://127.0.0.1:{port}"));
        let client = MsspClient::new(Carrier::Viettel, route).unwrap();
        let mssp = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(150)).await;
            let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
                .await
                .unwrap();
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut request = vec![0u8; 64 * 1024];
            let n = socket.read(&mut request).await.unwrap();
            socket
                .write_all(b"HTTP/1.1 500 Internal Server Error\r\ncontent-length: 4\r\nconnection: close\r\n\r\nbusy")
                .await
                .unwrap();
            String::from_utf8_lossy(&request[..n]).into_owned()
        });
        let query = MssMessage::StatusReq(mss::StatusReq {
            ap: mss::ApInfo {
                ap_id: "http://dichvucong.gov.vn/ap".into(),
                ap_trans_id: "T1".into(),
                ap_pwd: "sim-ap-pass".into(),
                instant: "2026-11-27T00:00:00Z".into(),
                ap_url: None,
            },
            mssp: mss::MsspInfo {
                mssp_id: "http://mssp.viettel.sim.vn".into(),
                instant: None,
            },
            mssp_trans_id: "M1".into(),
            msisdn: None,
        });
        let err = client
            .call(Operation::StatusQuery, &query)
            .await
            .expect_err("the stand-in MSSP answers 500");
        assert!(
            matches!(err, CallError::Unreadable { status: 500, .. }),
            "{err:?}"
        );
        // It got through: the answer was read (before, the first refusal ended the call).
        assert!(format!("{err:#}").contains("answered HTTP 500"), "{err:#}");
        let seen = mssp.await.unwrap();
        assert!(seen.contains("MSS_StatusReq"), "{seen}");
    }

    #[test]
    fn pem_certificates_are_read_and_other_blocks_passed_over() {
        let cert = ca_pem();
        let bundle = format!(
            "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIB8/\n-----END PRIVATE KEY-----\n{cert}{cert}"
        );
        let ders = pem_certificates(&bundle).unwrap();
        assert_eq!(ders.len(), 2);
        assert_eq!(pem_encode("CERTIFICATE", &ders[0]), cert);
        assert!(pem_certificates("no pem here").unwrap().is_empty());
        assert!(
            pem_certificates("-----BEGIN CERTIFICATE-----\n!!!\n-----END CERTIFICATE-----\n")
                .is_err()
        );
    }

    #[test]
    fn only_carriers_with_sim_signatures_get_a_client() {
        assert!(MsspClient::new(
            Carrier::Gmobile,
            MssRoute::simulator("gmobile", "http://127.0.0.1:8081")
        )
        .is_err());
    }
}
