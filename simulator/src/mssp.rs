//! Simulated MSSPs: ETSI TS 102 204 over SOAP, one per carrier, each in its carrier's
//! dialect (see `carrier_adapters::mss::dialect`). A signature request becomes a prompt
//! on the virtual handset; the simulated person answers it as the registry says, or a
//! person or test answers it over HTTP; the result goes back by callback (Viettel) or
//! waits for `MSS_StatusQuery` (VinaPhone, MobiFone).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use carrier_adapters::mss::dialect::{self, Dialect, SignatureFormat};
use carrier_adapters::mss::{
    self, ApInfo, Fault, MessagingMode, MssMessage, MsspInfo, Operation, ReceiptResp, SignatureReq,
    SignatureResp, SoapContent, SoapVersion, Status, StatusCode, StatusResp,
};
use carrier_adapters::{Carrier, Msisdn};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::pki::{self, Lifetime, SimCa, SimCredential, SubjectInfo};
use crate::registry::{Behaviour, CertificateState, Registry};

/// Largest SOAP request accepted.
pub const MAX_SOAP_BYTES: usize = 64 * 1024;
/// Largest data to be signed.
const MAX_DTBS: usize = 4096;
const MAX_PIN_TRIES: u8 = 3;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MsspConfig {
    /// `viettel`, `vinaphone` or `mobifone`.
    pub carrier: Carrier,
    pub ap_id: String,
    pub ap_pwd: String,
    /// Shared secret for callbacks (dialects that call back).
    pub callback_secret: String,
    /// Bearer key of the owner-check endpoint.
    pub owner_check_key: String,
    /// How long the simulated person takes to answer.
    #[serde(with = "humantime_serde")]
    pub answer_delay: Duration,
    /// The MSSP_ID it names itself by (default `http://mssp.{carrier}.sim.vn`).
    #[serde(default)]
    pub mssp_id: Option<String>,
    /// Whether an `MSS_ReceiptReq` for a pending transaction withdraws its prompt from the
    /// phone (the AP's cancel); `false` answers it with a fault and keeps the prompt.
    #[serde(default = "yes")]
    pub withdraws_on_receipt: bool,
}

fn yes() -> bool {
    true
}

impl MsspConfig {
    pub fn default_for(carrier: Carrier) -> MsspConfig {
        MsspConfig {
            carrier,
            ap_id: "http://dichvucong.gov.vn/ap".into(),
            ap_pwd: "sim-ap-pass".into(),
            callback_secret: format!("sim-callback-{}", carrier.as_str()),
            owner_check_key: format!("sim-owner-{}", carrier.as_str()),
            answer_delay: Duration::from_millis(1500),
            mssp_id: None,
            withdraws_on_receipt: true,
        }
    }

    pub fn mssp_id(&self) -> String {
        self.mssp_id
            .clone()
            .unwrap_or_else(|| format!("http://mssp.{}.sim.vn", self.carrier.as_str()))
    }
}

pub fn ca_name(carrier: Carrier) -> (&'static str, &'static str) {
    match carrier {
        Carrier::Viettel => ("Viettel-CA SIM (simulated)", "Viettel Group (simulated)"),
        Carrier::Vinaphone => ("VNPT-CA SIM (simulated)", "VNPT (simulated)"),
        _ => ("MobiFone-CA (simulated)", "MobiFone (simulated)"),
    }
}

#[derive(Debug, Clone)]
enum TxState {
    Pending,
    Done {
        status: StatusCode,
        signature: Option<Vec<u8>>,
    },
}

#[derive(Debug, Clone)]
struct Transaction {
    mssp_trans_id: String,
    ap: ApInfo,
    msisdn: Msisdn,
    dtbs: Vec<u8>,
    display: String,
    created_at: DateTime<Utc>,
    expires_at: DateTime<Utc>,
    wrong_pins: u8,
    state: TxState,
    /// The SOAP version the AP spoke: its callback comes in the same.
    soap: SoapVersion,
}

/// A pending prompt as the handset shows it.
#[derive(Debug, Clone, Serialize)]
pub struct Prompt {
    pub id: String,
    pub carrier: Carrier,
    pub text: String,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub pin_tries_left: u8,
}

/// What answering a prompt did.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum Answer {
    Signed,
    WrongPin { tries_left: u8 },
    PinBlocked,
    Canceled,
    NoCertificate,
    NotPending,
}

pub struct Mssp {
    pub config: MsspConfig,
    pub dialect: Dialect,
    pub ca: Arc<SimCa>,
    registry: Arc<Registry>,
    transactions: Mutex<HashMap<String, Transaction>>,
    next_id: AtomicU64,
    http: reqwest::Client,
}

impl std::fmt::Debug for Mssp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mssp")
            .field("carrier", &self.config.carrier)
            .finish()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A SOAP answer: status code and body.
pub struct SoapReply {
    pub http_status: u16,
    pub content_type: &'static str,
    pub body: String,
}

impl Mssp {
    /// What a restart of the MSSP does: every transaction is forgotten and transaction
    /// ids start again from 1, so ids the gateway has seen come back for new requests
    /// (real MSSPs reuse or recycle theirs too).
    pub fn restart(&self) {
        lock(&self.transactions).clear();
        self.next_id.store(1, Ordering::Relaxed);
        tracing::info!(mssp = %self.config.carrier, "restarted: transactions forgotten, ids from 1");
    }

    pub fn new(
        config: MsspConfig,
        ca: Arc<SimCa>,
        registry: Arc<Registry>,
    ) -> anyhow::Result<Arc<Mssp>> {
        let dialect = Dialect::of(config.carrier)
            .ok_or_else(|| anyhow::anyhow!("{} offers no SIM signatures", config.carrier))?;
        Ok(Arc::new(Mssp {
            config,
            dialect,
            ca,
            registry,
            transactions: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(1),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()?,
        }))
    }

    fn mssp_info(&self) -> MsspInfo {
        MsspInfo {
            mssp_id: self.config.mssp_id(),
            instant: Some(Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)),
        }
    }

    /// A fault as the SOAP HTTP binding of `version` sends it: SOAP 1.1, HTTP 500; SOAP
    /// 1.2, 400 for the sender's fault and 500 for ours.
    fn fault(&self, version: SoapVersion, status: StatusCode, reason: &str) -> SoapReply {
        let fault = Fault {
            sender: status.code() < 900,
            status,
            reason: reason.to_owned(),
        };
        SoapReply {
            http_status: version.fault_http_status(fault.sender),
            content_type: version.content_type(),
            body: mss::write_fault(version, &fault),
        }
    }

    fn reply(&self, version: SoapVersion, operation: Operation, message: MssMessage) -> SoapReply {
        SoapReply {
            http_status: 200,
            content_type: version.content_type(),
            body: mss::write_envelope(version, operation, &message, self.dialect.part_style),
        }
    }

    fn authorised(&self, ap: &ApInfo) -> bool {
        ap.ap_id == self.config.ap_id && ap.ap_pwd == self.config.ap_pwd
    }

    /// Answers one SOAP request, in the SOAP version it came in (its envelope, else its
    /// Content-Type, else the dialect's).
    pub async fn handle_soap(self: &Arc<Self>, body: &[u8], content_type: &str) -> SoapReply {
        let (v, content) = match mss::parse_envelope(body, MAX_SOAP_BYTES) {
            Ok(parsed) => parsed,
            Err(e) => {
                let v = SoapVersion::of_content_type(content_type).unwrap_or(self.dialect.soap);
                return self.fault(v, e.status(), &e.to_string());
            }
        };
        let message = match content {
            SoapContent::Message { message, .. } => message,
            SoapContent::Fault(_) => {
                return self.fault(v, StatusCode::WrongParam, "a fault is not a request")
            }
        };
        match message {
            MssMessage::SignatureReq(req) => self.signature(v, req).await,
            MssMessage::StatusReq(req) => {
                if !self.authorised(&req.ap) {
                    return self.fault(v, StatusCode::UnauthorizedAccess, "UNAUTHORIZED_ACCESS");
                }
                let tx = lock(&self.transactions).get(&req.mssp_trans_id).cloned();
                let Some(tx) = tx.filter(|t| t.ap.ap_id == req.ap.ap_id) else {
                    return self.fault(v, StatusCode::WrongParam, "unknown MSSP_TransID");
                };
                let (status, signature) = match tx.state {
                    TxState::Pending => (StatusCode::OutstandingTransaction, None),
                    TxState::Done { status, signature } => (status, signature),
                };
                self.reply(
                    v,
                    Operation::StatusQueryResponse,
                    MssMessage::StatusResp(StatusResp {
                        ap: req.ap,
                        mssp: self.mssp_info(),
                        msisdn: tx.msisdn.e164().to_owned(),
                        mssp_trans_id: Some(tx.mssp_trans_id),
                        signature,
                        status: Status::new(status),
                    }),
                )
            }
            MssMessage::ReceiptReq(req) => {
                if !self.authorised(&req.ap) {
                    return self.fault(v, StatusCode::UnauthorizedAccess, "UNAUTHORIZED_ACCESS");
                }
                // A receipt for a transaction still pending: the AP is done with it (it
                // canceled), so its prompt leaves the phone.
                let pending = lock(&self.transactions)
                    .get(&req.mssp_trans_id)
                    .is_some_and(|t| {
                        t.ap.ap_id == req.ap.ap_id && matches!(t.state, TxState::Pending)
                    });
                if pending {
                    if !self.config.withdraws_on_receipt {
                        return self.fault(
                            v,
                            StatusCode::WrongParam,
                            "the transaction is outstanding; this MSSP cannot withdraw it",
                        );
                    }
                    self.withdraw(&req.mssp_trans_id);
                }
                self.reply(
                    v,
                    Operation::ReceiptResponse,
                    MssMessage::ReceiptResp(ReceiptResp {
                        ap: req.ap,
                        mssp: self.mssp_info(),
                        status: Status::new(StatusCode::RequestOk),
                    }),
                )
            }
            _ => self.fault(v, StatusCode::WrongParam, "not a request an MSSP answers"),
        }
    }

    async fn signature(self: &Arc<Self>, v: SoapVersion, req: SignatureReq) -> SoapReply {
        if !self.authorised(&req.ap) {
            return self.fault(v, StatusCode::UnauthorizedAccess, "UNAUTHORIZED_ACCESS");
        }
        if req.mode != self.dialect.mode {
            return self.fault(
                v,
                StatusCode::IncompatibleInterface,
                &format!("this MSSP works in {} mode", self.dialect.mode.as_str()),
            );
        }
        if req.mode == MessagingMode::AsynchServerServer && req.ap.ap_url.is_none() {
            return self.fault(
                v,
                StatusCode::MissingParam,
                "AP_URL is required for asynchServerServer",
            );
        }
        if let Some(format) = &req.mss_format {
            if format != self.dialect.format.uri() {
                return self.fault(v, StatusCode::UnsupportedProfile, "MSS_Format not offered");
            }
        }
        let Ok(msisdn) = Msisdn::parse(&req.msisdn) else {
            return self.fault(
                v,
                StatusCode::WrongParam,
                "MSISDN is not a Vietnamese mobile number",
            );
        };
        let dtbs = match req.data_to_be_signed.encoding.as_deref() {
            Some(e) if e.eq_ignore_ascii_case("base64") => {
                match base64::engine::general_purpose::STANDARD
                    .decode(req.data_to_be_signed.value.trim())
                {
                    Ok(b) => b,
                    Err(_) => {
                        return self.fault(
                            v,
                            StatusCode::WrongParam,
                            "DataToBeSigned is not base64",
                        )
                    }
                }
            }
            _ => req.data_to_be_signed.value.clone().into_bytes(),
        };
        if dtbs.is_empty() || dtbs.len() > MAX_DTBS {
            return self.fault(v, StatusCode::WrongDataLength, "WRONG_DATA_LENGTH");
        }
        let subscriber = self.registry.get(&msisdn);
        match subscriber {
            Some((record, carrier)) if carrier == self.config.carrier && record.sim_pki => {}
            _ => return self.fault(v, StatusCode::NoKeyFound, "NO_KEY_FOUND"),
        }
        let timeout = req.timeout_seconds.unwrap_or(120).clamp(10, 600);
        let id = format!(
            "{}{:08}",
            &self.config.carrier.as_str()[..2].to_uppercase(),
            self.next_id.fetch_add(1, Ordering::Relaxed)
        );
        let now = Utc::now();
        let tx = Transaction {
            mssp_trans_id: id.clone(),
            ap: req.ap.clone(),
            msisdn: msisdn.clone(),
            dtbs,
            display: req
                .data_to_be_displayed
                .as_ref()
                .map(|d| d.value.clone())
                .unwrap_or_default(),
            created_at: now,
            expires_at: now + chrono::Duration::seconds(i64::from(timeout)),
            wrong_pins: 0,
            state: TxState::Pending,
            soap: v,
        };
        lock(&self.transactions).insert(id.clone(), tx);
        tracing::info!(mssp = %self.config.carrier, tx = %id, msisdn = %msisdn, "signature prompt pushed");
        // The person, as scripted, and the expiry.
        let me = self.clone();
        let tx_id = id.clone();
        tokio::spawn(async move { me.play(tx_id).await });
        let me = self.clone();
        let tx_id = id.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(u64::from(timeout))).await;
            me.finish(&tx_id, StatusCode::ExpiredTransaction, None)
                .await;
        });
        self.reply(
            v,
            Operation::SignatureResponse,
            MssMessage::SignatureResp(SignatureResp {
                ap: req.ap,
                mssp: self.mssp_info(),
                msisdn: msisdn.e164().to_owned(),
                mssp_trans_id: id,
                signature: None,
                status: Status::new(StatusCode::RequestOk),
            }),
        )
    }

    /// The scripted person answers.
    async fn play(self: Arc<Self>, tx_id: String) {
        tokio::time::sleep(self.config.answer_delay).await;
        let Some(msisdn) = lock(&self.transactions)
            .get(&tx_id)
            .map(|t| t.msisdn.clone())
        else {
            return;
        };
        let Some((record, _)) = self.registry.get(&msisdn) else {
            return;
        };
        match record.behaviour {
            Behaviour::Manual | Behaviour::Timeout => {}
            Behaviour::Confirm => {
                self.answer(&tx_id, Some(&record.pin)).await;
            }
            Behaviour::Cancel => {
                self.answer(&tx_id, None).await;
            }
            Behaviour::WrongPin => {
                let wrong = if record.pin == "0000" { "9999" } else { "0000" };
                for _ in 0..MAX_PIN_TRIES {
                    self.answer(&tx_id, Some(wrong)).await;
                }
            }
            Behaviour::CardBlocked => {
                self.finish(&tx_id, StatusCode::CardBlocked, None).await;
            }
        }
    }

    /// The pending prompts of a number.
    pub fn prompts(&self, msisdn: &Msisdn) -> Vec<Prompt> {
        let txs = lock(&self.transactions);
        let mut prompts: Vec<Prompt> = txs
            .values()
            .filter(|t| &t.msisdn == msisdn && matches!(t.state, TxState::Pending))
            .map(|t| Prompt {
                id: t.mssp_trans_id.clone(),
                carrier: self.config.carrier,
                text: t.display.clone(),
                created_at: t.created_at,
                expires_at: t.expires_at,
                pin_tries_left: MAX_PIN_TRIES - t.wrong_pins,
            })
            .collect();
        prompts.sort_by_key(|p| p.created_at);
        prompts
    }

    pub fn owns_prompt(&self, msisdn: &Msisdn, id: &str) -> bool {
        lock(&self.transactions)
            .get(id)
            .is_some_and(|t| &t.msisdn == msisdn)
    }

    /// Confirm with a PIN (`Some`) or cancel (`None`).
    pub async fn answer(&self, tx_id: &str, pin: Option<&str>) -> Answer {
        let (msisdn, dtbs) = {
            let txs = lock(&self.transactions);
            match txs.get(tx_id) {
                Some(t) if matches!(t.state, TxState::Pending) => {
                    (t.msisdn.clone(), t.dtbs.clone())
                }
                _ => return Answer::NotPending,
            }
        };
        let Some(pin) = pin else {
            self.finish(tx_id, StatusCode::UserCancel, None).await;
            return Answer::Canceled;
        };
        let Some((record, _)) = self.registry.get(&msisdn) else {
            return Answer::NotPending;
        };
        if pin != record.pin {
            let tries_left = {
                let mut txs = lock(&self.transactions);
                let Some(t) = txs.get_mut(tx_id) else {
                    return Answer::NotPending;
                };
                t.wrong_pins += 1;
                MAX_PIN_TRIES.saturating_sub(t.wrong_pins)
            };
            if tries_left == 0 {
                self.finish(tx_id, StatusCode::PinNrBlocked, None).await;
                return Answer::PinBlocked;
            }
            return Answer::WrongPin { tries_left };
        }
        let credential = match self.credential(&msisdn).await {
            Ok(Some(c)) => c,
            Ok(None) => {
                self.finish(tx_id, StatusCode::NoCertFound, None).await;
                return Answer::NoCertificate;
            }
            Err(e) => {
                tracing::error!(error = %e, "simulated SIM could not sign");
                self.finish(tx_id, StatusCode::InternalError, None).await;
                return Answer::NotPending;
            }
        };
        let format = self.dialect.format;
        let signed = tokio::task::spawn_blocking(move || match format {
            SignatureFormat::Pkcs7 => credential.sign_cms(&dtbs),
            SignatureFormat::Pkcs1 => Ok(credential.sign_pkcs1(&dtbs)),
        })
        .await;
        match signed {
            Ok(Ok(signature)) => {
                self.finish(tx_id, StatusCode::Signature, Some(signature))
                    .await;
                Answer::Signed
            }
            _ => {
                self.finish(tx_id, StatusCode::InternalError, None).await;
                Answer::NotPending
            }
        }
    }

    /// Brings the certificate this CA issued for `msisdn` in line with the registry: one
    /// in use that the record now says is revoked is revoked at the CA, as a CA revokes
    /// (same key, same certificate, its status changes). Returns the credential when it
    /// matches the record and was issued here (a number ported in gets a new one).
    pub fn sync_certificate(&self, msisdn: &Msisdn) -> anyhow::Result<Option<Arc<SimCredential>>> {
        let Some((record, _)) = self.registry.get(msisdn) else {
            return Ok(None);
        };
        let Some((c, state)) = self.registry.issued_credential(msisdn) else {
            return Ok(None);
        };
        if !self.ca.issued(&c.cert_der) {
            return Ok(None);
        }
        if state == record.certificate {
            return Ok(Some(c));
        }
        if state == CertificateState::Valid && record.certificate == CertificateState::Revoked {
            self.ca.revoke(&c.cert_der)?;
            self.registry
                .set_credential(msisdn, c.clone(), CertificateState::Revoked);
            tracing::info!(mssp = %self.config.carrier, msisdn = %msisdn, "SIM certificate revoked");
            return Ok(Some(c));
        }
        Ok(None)
    }

    /// The SIM's key and certificate as the registry says; `None` when it has no
    /// certificate.
    pub async fn credential(&self, msisdn: &Msisdn) -> anyhow::Result<Option<Arc<SimCredential>>> {
        let Some((record, _)) = self.registry.get(msisdn) else {
            return Ok(None);
        };
        if record.certificate == CertificateState::None {
            return Ok(None);
        }
        if let Some(c) = self.sync_certificate(msisdn)? {
            return Ok(Some(c));
        }
        let ca = self.ca.clone();
        let state = record.certificate;
        // A person's certificate names the person; an enterprise's names the
        // organisation (CN and O) and its MST.
        let kind = record.id_kind();
        let subject = SubjectInfo {
            full_name: match (&record.organization, kind.is_enterprise()) {
                (Some(org), true) => org.clone(),
                _ => record.full_name.clone(),
            },
            identifiers: vec![(kind.uid_prefix().into(), record.id_number.clone())],
            province: None,
            organization: record.organization.clone().filter(|_| kind.is_enterprise()),
        };
        let credential = tokio::task::spawn_blocking(move || -> anyhow::Result<SimCredential> {
            let key = pki::generate_key()?;
            let lifetime = if state == CertificateState::Expired {
                Lifetime::Expired
            } else {
                Lifetime::Current
            };
            let cert = ca.issue(&subject, &key, lifetime)?;
            if state == CertificateState::Revoked {
                ca.revoke(&cert)?;
            }
            Ok(SimCredential::new(key, cert))
        })
        .await??;
        let credential = Arc::new(credential);
        self.registry
            .set_credential(msisdn, credential.clone(), state);
        Ok(Some(credential))
    }

    /// Withdraws a pending prompt at the AP's request: no answer can be given to it any
    /// more, and no callback is sent (the AP ended it).
    fn withdraw(&self, tx_id: &str) {
        let mut txs = lock(&self.transactions);
        if let Some(t) = txs.get_mut(tx_id) {
            if matches!(t.state, TxState::Pending) {
                t.state = TxState::Done {
                    status: StatusCode::ExpiredTransaction,
                    signature: None,
                };
                tracing::info!(mssp = %self.config.carrier, tx = %tx_id, "prompt withdrawn by the AP");
            }
        }
    }

    /// Ends a pending transaction once; calls back when the dialect does.
    async fn finish(&self, tx_id: &str, status: StatusCode, signature: Option<Vec<u8>>) {
        let tx = {
            let mut txs = lock(&self.transactions);
            let Some(t) = txs.get_mut(tx_id) else {
                return;
            };
            if !matches!(t.state, TxState::Pending) {
                return;
            }
            t.state = TxState::Done {
                status,
                signature: signature.clone(),
            };
            t.clone()
        };
        tracing::info!(mssp = %self.config.carrier, tx = %tx_id, status = %status, "transaction ended");
        if !self.dialect.calls_back() {
            return;
        }
        let Some(url) = tx.ap.ap_url.clone() else {
            return;
        };
        let body = mss::write_envelope(
            tx.soap,
            Operation::Notification,
            &MssMessage::StatusResp(StatusResp {
                ap: tx.ap.clone(),
                mssp: self.mssp_info(),
                msisdn: tx.msisdn.e164().to_owned(),
                mssp_trans_id: Some(tx.mssp_trans_id.clone()),
                signature,
                status: Status::new(status),
            }),
            self.dialect.part_style,
        );
        let http = self.http.clone();
        let secret = self.config.callback_secret.clone();
        let content_type = tx.soap.content_type();
        tokio::spawn(async move {
            for attempt in 0..5u32 {
                let ts = Utc::now().timestamp();
                let sig = dialect::callback_signature(secret.as_bytes(), ts, body.as_bytes());
                let sent = http
                    .post(&url)
                    .header("Content-Type", content_type)
                    .header(dialect::CALLBACK_TIMESTAMP_HEADER, ts.to_string())
                    .header(dialect::CALLBACK_SIGNATURE_HEADER, sig)
                    .body(body.clone())
                    .send()
                    .await;
                match sent {
                    Ok(r) if r.status().is_success() => return,
                    Ok(r) => tracing::warn!(status = %r.status(), attempt, "callback refused"),
                    Err(e) => tracing::warn!(error = %e, attempt, "callback failed"),
                }
                tokio::time::sleep(Duration::from_millis(500 * 2u64.pow(attempt))).await;
            }
        });
    }
}
