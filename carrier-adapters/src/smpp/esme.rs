//! The ESME side of one SMPP bind: a supervisor task connects, binds as transceiver,
//! keeps the bind alive, reconnects with back-off, and hands delivery receipts to a sink.
//! Callers submit through [`Esme::submit`], bounded by a window of outstanding requests.
//!
//! Built on rusmppc, with the traps around it handled here: the TCP stream is opened by
//! us with TCP_NODELAY, the interface-version check is off for SMPP 3.4 binds, and the
//! window (rusmppc has none) is a semaphore.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use futures::StreamExt;
use rusmpp::pdus::{
    BindReceiver, BindTransceiver, BindTransmitter, DeliverSm, DeliverSmResp, SubmitSm,
};
use rusmpp::tlvs::TlvValue;
use rusmpp::types::{COctetString, EmptyOrFullCOctetString, OctetString};
use rusmpp::values::{
    DataCoding, EsmClass, InterfaceVersion, Npi, RegisteredDelivery, ServiceType, Ton,
};
use rusmpp::{Command, CommandStatus, Pdu};
use rusmppc::{ConnectionBuilder, Event};
use tokio::net::TcpStream;
use tokio::sync::{watch, Semaphore};
use tokio_util::sync::CancellationToken;

use crate::receipt::{self, ReceiptState};
use crate::sms_text::EncodedText;

/// SMPP interface version announced in the bind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum SmppVersion {
    #[serde(rename = "3.4")]
    V34,
    #[serde(rename = "5.0")]
    V50,
}

/// How a session binds: one transceiver, or a transmitter (submits) or a receiver
/// (receipts) of a transmitter + receiver pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BindMode {
    Transceiver,
    Transmitter,
    Receiver,
}

impl BindMode {
    pub fn can_submit(self) -> bool {
        self != BindMode::Receiver
    }
}

#[derive(Debug, Clone)]
pub struct EsmeConfig {
    pub mode: BindMode,
    /// Route name, for logs (`viettel`, `aggregator`, …).
    pub route: String,
    pub host: String,
    pub port: u16,
    pub system_id: String,
    pub password: String,
    pub system_type: String,
    pub version: SmppVersion,
    /// Most submit_sm outstanding at once on this bind.
    pub window: usize,
    /// Most submit_sm per second on this bind (the carrier's contracted TPS share).
    pub tps: Option<u32>,
    pub enquire_link_interval: Duration,
    pub response_timeout: Duration,
    pub connect_timeout: Duration,
    /// First pause before dialling again; it doubles while dials keep failing.
    pub reconnect_min: Duration,
    /// Largest pause while the SMSC's host answers (a refused connection, a refused bind,
    /// a session that dropped): the SMSC is restarting or flapping, not gone, and the
    /// first bind after it is back must come soon.
    pub reconnect_max_answering: Duration,
    /// Largest pause while the host does not answer at all (connect timed out or the
    /// network is unreachable).
    pub reconnect_max: Duration,
    /// A session that stays bound this long resets the back-off; one that dies sooner
    /// (an SMSC dropping every session after a few PDUs) keeps it growing.
    pub stable_after: Duration,
}

/// An SMS ready to submit.
#[derive(Debug, Clone)]
pub struct OutgoingSms {
    /// Brandname (alphanumeric) or short code.
    pub source: String,
    /// E.164 digits without `+`.
    pub destination: String,
    pub text: EncodedText,
    pub request_receipt: bool,
    /// Until when the message is worth delivering (an OTP: its code's expiry). Each part
    /// carries what is left of it as a relative `validity_period`, measured right before
    /// the part is written (after any wait for the window, the TPS limit or a throttling
    /// pause); a part whose time is up is not sent ([`SubmitError::Expired`]). `None`
    /// leaves the SMSC's default.
    pub valid_until: Option<std::time::Instant>,
}

/// A delivery receipt as read off a `deliver_sm`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryReport {
    /// As the SMSC wrote it (from `receipted_message_id`, else from the text).
    pub message_id: String,
    pub state: ReceiptState,
    pub error: Option<String>,
}

/// Where receipts go. `Ok` acknowledges the `deliver_sm`; `Err` answers
/// `ESME_RX_T_APPN` so that the SMSC delivers the receipt again later.
pub trait ReceiptSink: Send + Sync + 'static {
    fn deliver(
        &self,
        route: &str,
        report: DeliveryReport,
    ) -> BoxFuture<'static, Result<(), String>>;
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SubmitError {
    #[error("route {route} has no bound session")]
    NotBound { route: String },
    #[error("SMSC answered submit_sm with {status:?} ({code:#010x})")]
    Rejected { status: CommandStatus, code: u32 },
    #[error("no submit_sm_resp for sequence {sequence_number} within {timeout:?}")]
    Timeout {
        sequence_number: u32,
        timeout: Duration,
    },
    #[error("the bind was lost while the request was outstanding: {0}")]
    ConnectionLost(String),
    #[error("the message cannot be encoded: {0}")]
    Invalid(String),
    #[error("the message's validity ended before it could be submitted")]
    Expired,
}

impl SubmitError {
    /// Whether trying the same message again later may succeed.
    pub fn is_transient(&self) -> bool {
        match self {
            SubmitError::NotBound { .. }
            | SubmitError::Timeout { .. }
            | SubmitError::ConnectionLost(_) => true,
            SubmitError::Rejected { status, .. } => matches!(
                status,
                CommandStatus::EsmeRthrottled
                    | CommandStatus::EsmeRmsgqful
                    | CommandStatus::EsmeRsyserr
                    | CommandStatus::EsmeRxTAppn
                    | CommandStatus::EsmeRsubmitfail
            ),
            SubmitError::Invalid(_) | SubmitError::Expired => false,
        }
    }

    /// Whether the SMSC itself failed the request (a refusal, no answer in time), as
    /// opposed to the bind being down or dying with the request in flight. Only these
    /// spend one of a message's attempts: a flapping bind must not fail messages.
    pub fn carrier_caused(&self) -> bool {
        match self {
            SubmitError::Rejected { .. } | SubmitError::Timeout { .. } => true,
            SubmitError::NotBound { .. }
            | SubmitError::ConnectionLost(_)
            | SubmitError::Invalid(_)
            | SubmitError::Expired => false,
        }
    }

    /// Short stable label for storage and metrics.
    pub fn label(&self) -> String {
        match self {
            SubmitError::NotBound { .. } => "not_bound".into(),
            SubmitError::Rejected { code, .. } => format!("command_status_{code:#010x}"),
            SubmitError::Timeout { .. } => "response_timeout".into(),
            SubmitError::ConnectionLost(_) => "connection_lost".into(),
            SubmitError::Invalid(_) => "invalid_message".into(),
            SubmitError::Expired => "validity_ended".into(),
        }
    }
}

/// Handle on one supervised bind. Cheap to clone.
#[derive(Clone)]
pub struct Esme {
    route: Arc<str>,
    client: watch::Receiver<Option<rusmppc::Client>>,
    window: Arc<Semaphore>,
    window_size: usize,
    response_timeout: Duration,
    tps: Option<u32>,
    limiter: Option<Arc<governor::DefaultDirectRateLimiter>>,
    throttle: Arc<std::sync::Mutex<Throttle>>,
    stats: Arc<BindStats>,
    /// Concatenation reference numbers, one per multi-part message.
    next_reference: Arc<std::sync::atomic::AtomicU8>,
    mode: BindMode,
    /// Bumped by each bind, before its client is handed out: a response timeout on a
    /// session that has since ended is the bind's death, not the SMSC's slowness.
    session: Arc<std::sync::atomic::AtomicU64>,
}

/// Slow-down after ESME_RTHROTTLED / ESME_RMSGQFUL: the whole bind waits, doubling the
/// pause while the SMSC keeps refusing.
#[derive(Debug)]
struct Throttle {
    until: Option<std::time::Instant>,
    pause: Duration,
}

const THROTTLE_MIN: Duration = Duration::from_millis(100);
const THROTTLE_MAX: Duration = Duration::from_secs(5);
/// Submit times remembered for receipt latency; beyond this the oldest are forgotten.
const LATENCY_MEMORY: usize = 50_000;

/// Counters of one bind, for metrics and health.
#[derive(Debug, Default)]
pub struct BindStats {
    submitted: std::sync::atomic::AtomicU64,
    receipts: std::sync::atomic::AtomicU64,
    errors: std::sync::Mutex<std::collections::BTreeMap<String, u64>>,
    last_receipt_latency_ms: std::sync::atomic::AtomicU64,
    submit_times: std::sync::Mutex<(
        std::collections::HashMap<String, std::time::Instant>,
        std::collections::VecDeque<String>,
    )>,
    /// Submits per second over the last minute: (second, count) buckets.
    recent: std::sync::Mutex<std::collections::VecDeque<(u64, u64)>>,
    /// Since when the session has been down (`None` while bound).
    down_since: std::sync::Mutex<Option<std::time::Instant>>,
    /// Successful binds since start (a flapping SMSC shows as a fast-growing count).
    binds: std::sync::atomic::AtomicU64,
}

impl BindStats {
    fn set_bound(&self, bound: bool) {
        let mut down = self.down_since.lock().unwrap_or_else(|p| p.into_inner());
        match (bound, *down) {
            (true, _) => *down = None,
            (false, None) => *down = Some(std::time::Instant::now()),
            (false, Some(_)) => {}
        }
    }

    fn record_submit(&self, message_id: &str) {
        use std::sync::atomic::Ordering;
        self.submitted.fetch_add(1, Ordering::Relaxed);
        let key = crate::receipt::normalise_message_id(message_id);
        {
            let mut times = self.submit_times.lock().unwrap_or_else(|p| p.into_inner());
            if times.1.len() >= LATENCY_MEMORY {
                if let Some(old) = times.1.pop_front() {
                    times.0.remove(&old);
                }
            }
            times.0.insert(key.clone(), std::time::Instant::now());
            times.1.push_back(key);
        }
        let second = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let mut recent = self.recent.lock().unwrap_or_else(|p| p.into_inner());
        match recent.back_mut() {
            Some((s, n)) if *s == second => *n += 1,
            _ => recent.push_back((second, 1)),
        }
        while recent.front().is_some_and(|(s, _)| *s + 60 < second) {
            recent.pop_front();
        }
    }

    fn record_error(&self, label: &str) {
        *self
            .errors
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(label.to_owned())
            .or_default() += 1;
    }

    fn record_receipt(&self, message_id: &str) {
        use std::sync::atomic::Ordering;
        self.receipts.fetch_add(1, Ordering::Relaxed);
        let key = crate::receipt::normalise_message_id(message_id);
        let (dec, hex) = crate::receipt::alternate_message_ids(&key);
        let times = self.submit_times.lock().unwrap_or_else(|p| p.into_inner());
        let sent = [Some(key), dec, hex]
            .into_iter()
            .flatten()
            .find_map(|k| times.0.get(&k).copied());
        if let Some(sent) = sent {
            self.last_receipt_latency_ms
                .store(sent.elapsed().as_millis() as u64, Ordering::Relaxed);
        }
    }

    fn submits_per_second(&self) -> f64 {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let recent = self.recent.lock().unwrap_or_else(|p| p.into_inner());
        // The last ten whole seconds.
        let n: u64 = recent
            .iter()
            .filter(|(s, _)| *s < now && *s + 10 >= now)
            .map(|(_, n)| n)
            .sum();
        n as f64 / 10.0
    }
}

/// What metrics and health show of a bind.
#[derive(Debug, Clone, serde::Serialize)]
pub struct BindSnapshot {
    pub route: String,
    pub mode: BindMode,
    pub bound: bool,
    pub window_size: usize,
    pub window_in_use: usize,
    pub tps_limit: Option<u32>,
    pub submitted_total: u64,
    pub submits_per_second: f64,
    pub errors_by_status: std::collections::BTreeMap<String, u64>,
    pub receipts_total: u64,
    pub last_receipt_latency_ms: Option<u64>,
    pub throttled_for_ms: u64,
    /// Successful binds since start.
    pub binds_total: u64,
}

impl std::fmt::Debug for Esme {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Esme")
            .field("route", &self.route)
            .field("bound", &self.is_bound())
            .finish()
    }
}

impl Esme {
    /// Starts the supervisor; it runs until `shutdown` is cancelled, then unbinds.
    pub fn start(
        config: EsmeConfig,
        sink: Arc<dyn ReceiptSink>,
        shutdown: CancellationToken,
    ) -> (Esme, tokio::task::JoinHandle<()>) {
        let (tx, rx) = watch::channel(None);
        let limiter = config.tps.and_then(std::num::NonZeroU32::new).map(|tps| {
            Arc::new(governor::RateLimiter::direct(governor::Quota::per_second(
                tps,
            )))
        });
        let stats = Arc::new(BindStats::default());
        stats.set_bound(false);
        let session = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let esme = Esme {
            route: config.route.clone().into(),
            client: rx,
            window: Arc::new(Semaphore::new(config.window.max(1))),
            window_size: config.window.max(1),
            response_timeout: config.response_timeout,
            tps: config.tps,
            limiter,
            throttle: Arc::new(std::sync::Mutex::new(Throttle {
                until: None,
                pause: THROTTLE_MIN,
            })),
            stats: stats.clone(),
            next_reference: Arc::new(std::sync::atomic::AtomicU8::new(1)),
            mode: config.mode,
            session: session.clone(),
        };
        let task = tokio::spawn(supervise(config, sink, tx, shutdown, stats, session));
        (esme, task)
    }

    pub fn route(&self) -> &str {
        &self.route
    }

    /// Whether the session is bound: the supervisor holds the client from the bind until
    /// the connection ends. Asked several times per SMS, so it must not touch the
    /// connection: rusmppc's `Client::is_active` queues a message to the connection task
    /// (which takes five per poll), and asked that often those messages queued ahead of
    /// submits and receipt acknowledgements without bound. A submit on a session that
    /// has just died fails with `ConnectionLost` and is retried.
    pub fn is_bound(&self) -> bool {
        self.client.borrow().is_some()
    }

    pub fn mode(&self) -> BindMode {
        self.mode
    }

    /// How long the session has been down (`None` while bound).
    pub fn down_for(&self) -> Option<Duration> {
        if self.is_bound() {
            return None;
        }
        self.stats
            .down_since
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .map(|since| since.elapsed())
            .or(Some(Duration::ZERO))
    }

    /// Waits until the bind is up, at most `timeout`.
    pub async fn wait_bound(&self, timeout: Duration) -> bool {
        let mut rx = self.client.clone();
        tokio::time::timeout(timeout, rx.wait_for(|c| c.is_some()))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    /// Free places in the window (0 when not bound).
    pub fn available(&self) -> usize {
        if self.is_bound() {
            self.window.available_permits()
        } else {
            0
        }
    }

    pub fn snapshot(&self) -> BindSnapshot {
        use std::sync::atomic::Ordering;
        let throttled_for_ms = self
            .throttle
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .until
            .map(|u| {
                u.saturating_duration_since(std::time::Instant::now())
                    .as_millis() as u64
            })
            .unwrap_or(0);
        let latency = self.stats.last_receipt_latency_ms.load(Ordering::Relaxed);
        BindSnapshot {
            route: self.route.to_string(),
            mode: self.mode,
            bound: self.is_bound(),
            window_size: self.window_size,
            window_in_use: self.window_size - self.window.available_permits(),
            tps_limit: self.tps,
            submitted_total: self.stats.submitted.load(Ordering::Relaxed),
            submits_per_second: self.stats.submits_per_second(),
            errors_by_status: self
                .stats
                .errors
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone(),
            receipts_total: self.stats.receipts.load(Ordering::Relaxed),
            last_receipt_latency_ms: (self.stats.receipts.load(Ordering::Relaxed) > 0
                && latency > 0)
                .then_some(latency),
            throttled_for_ms,
            binds_total: self.stats.binds.load(Ordering::Relaxed),
        }
    }

    /// Submits a message and returns the SMSC's message id of each part: one part when
    /// it fits, else UDH-concatenated parts (GSM-7 153 / UCS2 67 characters each), each
    /// with its own id and receipt. Waits for the bind's TPS limit, its window and any
    /// throttling pause before each part.
    pub async fn submit(&self, sms: &OutgoingSms) -> Result<Vec<String>, SubmitError> {
        let reference = self
            .next_reference
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let parts = crate::sms_text::split(&sms.text, reference);
        let udhi = parts.len() > 1;
        let mut ids = Vec::with_capacity(parts.len());
        for part in &parts {
            ids.push(self.submit_part(sms, part, udhi).await?);
        }
        Ok(ids)
    }

    async fn submit_part(
        &self,
        sms: &OutgoingSms,
        payload: &[u8],
        udhi: bool,
    ) -> Result<String, SubmitError> {
        let result = self.submit_inner(sms, payload, udhi).await;
        match &result {
            Ok(id) => {
                self.stats.record_submit(id);
                self.throttle
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .pause = THROTTLE_MIN;
            }
            Err(e) => {
                self.stats.record_error(&e.label());
                if let SubmitError::Rejected { status, .. } = e {
                    if matches!(
                        status,
                        CommandStatus::EsmeRthrottled | CommandStatus::EsmeRmsgqful
                    ) {
                        let mut t = self.throttle.lock().unwrap_or_else(|p| p.into_inner());
                        let now = std::time::Instant::now();
                        // Submits that were in flight together count as one refusal: the
                        // pause grows only when the SMSC refuses again after it ended.
                        if t.until.is_none_or(|u| u <= now) {
                            t.until = Some(now + t.pause);
                            tracing::info!(target: "smpp::esme", route = %self.route, pause = ?t.pause, "SMSC throttles: slowing the bind down");
                            t.pause = (t.pause * 2).min(THROTTLE_MAX);
                        }
                    }
                }
            }
        }
        result
    }

    async fn submit_inner(
        &self,
        sms: &OutgoingSms,
        payload: &[u8],
        udhi: bool,
    ) -> Result<String, SubmitError> {
        // Checked before the waits too: an invalid message fails without waiting.
        build_submit_sm(sms, payload, udhi, None)?;
        let pause = self
            .throttle
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .until
            .map(|u| u.saturating_duration_since(std::time::Instant::now()));
        if let Some(pause) = pause.filter(|p| !p.is_zero()) {
            tokio::time::sleep(pause).await;
        }
        if let Some(limiter) = &self.limiter {
            limiter.until_ready().await;
        }
        let _permit = self
            .window
            .acquire()
            .await
            .map_err(|_| SubmitError::ConnectionLost("bind closed".into()))?;
        // The session first, then its client: a rebind in between makes a later timeout
        // count as the bind's death (no attempt spent), never the other way round.
        let session = self.session.load(std::sync::atomic::Ordering::Relaxed);
        let client = self
            .client
            .borrow()
            .clone()
            .ok_or_else(|| SubmitError::NotBound {
                route: self.route.to_string(),
            })?;
        let validity = match sms.valid_until {
            Some(until) => {
                let left = until.saturating_duration_since(std::time::Instant::now());
                if left < Duration::from_millis(100) {
                    return Err(SubmitError::Expired);
                }
                Some(left)
            }
            None => None,
        };
        let submit = build_submit_sm(sms, payload, udhi, validity)?;
        match client.submit_sm(submit).await {
            Ok(resp) => Ok(resp.message_id().as_str().to_owned()),
            Err(rusmppc::error::Error::UnexpectedResponse { response }) => {
                let code = u32::from(response.status);
                Err(SubmitError::Rejected {
                    status: response.status,
                    code,
                })
            }
            Err(rusmppc::error::Error::ResponseTimeout { .. })
                if !self.is_bound()
                    || self.session.load(std::sync::atomic::Ordering::Relaxed) != session =>
            {
                Err(SubmitError::ConnectionLost(
                    "the session ended while its response was awaited".into(),
                ))
            }
            Err(rusmppc::error::Error::ResponseTimeout {
                sequence_number, ..
            }) => Err(SubmitError::Timeout {
                sequence_number,
                timeout: self.response_timeout,
            }),
            Err(rusmppc::error::Error::Encode(e)) => Err(SubmitError::Invalid(e.to_string())),
            Err(other) => Err(SubmitError::ConnectionLost(other.to_string())),
        }
    }
}

fn cstr<const MIN: usize, const MAX: usize>(
    value: &str,
    field: &str,
) -> Result<COctetString<MIN, MAX>, SubmitError> {
    COctetString::from_str(value)
        .map_err(|e| SubmitError::Invalid(format!("{field} {value:?}: {e}")))
}

/// One `submit_sm` for one part of `sms` (`udhi`: the payload starts with a UDH), valid
/// for `validity` when given.
fn build_submit_sm(
    sms: &OutgoingSms,
    payload: &[u8],
    udhi: bool,
    validity: Option<Duration>,
) -> Result<SubmitSm, SubmitError> {
    let alphanumeric = sms.source.chars().any(|c| !c.is_ascii_digit());
    let (source_ton, source_npi) = if alphanumeric {
        (Ton::Alphanumeric, Npi::Unknown)
    } else {
        (Ton::National, Npi::Isdn)
    };
    Ok(SubmitSm::builder()
        .service_type(ServiceType::default())
        .source_addr_ton(source_ton)
        .source_addr_npi(source_npi)
        .source_addr(cstr(&sms.source, "source_addr")?)
        .dest_addr_ton(Ton::International)
        .dest_addr_npi(Npi::Isdn)
        .destination_addr(cstr(&sms.destination, "destination_addr")?)
        // EsmClass::default() is 0x08 in rusmpp 0.4; we need the default mode, 0x00,
        // with the UDH indicator (0x40) on concatenated parts.
        .esm_class(EsmClass::from(if udhi { 0x40u8 } else { 0u8 }))
        .registered_delivery(RegisteredDelivery::from(u8::from(sms.request_receipt)))
        .validity_period(match validity {
            Some(v) => EmptyOrFullCOctetString::from_str(&relative_validity(v))
                .map_err(|e| SubmitError::Invalid(format!("validity_period: {e}")))?,
            None => EmptyOrFullCOctetString::empty(),
        })
        .data_coding(DataCoding::from(sms.text.encoding.data_coding()))
        .short_message(
            OctetString::from_slice(payload).map_err(|e| SubmitError::Invalid(e.to_string()))?,
        )
        .build())
}

/// SMPP's relative time format (`YYMMDDhhmmsstnnR`, SMPP 3.4 §7.1.1) for `validity`,
/// rounded up to the next tenth of a second and capped at 99 years.
pub fn relative_validity(validity: Duration) -> String {
    let tenths_total = validity.as_millis().div_ceil(100) as u64;
    let tenths = tenths_total % 10;
    let secs = tenths_total / 10;
    let (s, m, h) = (secs % 60, (secs / 60) % 60, (secs / 3600) % 24);
    let days = secs / 86_400;
    // Relative: a "month" is 30 days and a "year" 365, as SMSCs read them.
    let (years, rest) = ((days / 365).min(99), days % 365);
    let (months, d) = (rest / 30, rest % 30);
    format!("{years:02}{months:02}{d:02}{h:02}{m:02}{s:02}{tenths}00R")
}

/// Reads SMPP's relative time format back (`YYMMDDhhmmsstnnR`); `None` when `value` is
/// not one (an absolute time ends in `+` or `-`, and is not read here).
pub fn parse_relative_validity(value: &str) -> Option<Duration> {
    let b = value.as_bytes();
    if b.len() != 16 || b[15] != b'R' || !b[..15].iter().all(u8::is_ascii_digit) {
        return None;
    }
    let n = |i: usize| u64::from(b[i] - b'0') * 10 + u64::from(b[i + 1] - b'0');
    let (years, months, days, h, m, s) = (n(0), n(2), n(4), n(6), n(8), n(10));
    let tenths = u64::from(b[12] - b'0');
    let secs = ((years * 365 + months * 30 + days) * 24 + h) * 3600 + m * 60 + s;
    Some(Duration::from_secs(secs) + Duration::from_millis(tenths * 100))
}

/// Reads a delivery receipt out of a `deliver_sm`; `None` for a mobile-originated message.
pub fn delivery_report(deliver: &DeliverSm) -> Option<Result<DeliveryReport, String>> {
    let esm: u8 = deliver.esm_class.into();
    // Bits 5..2 are the message type; 0b0001 is an SMSC delivery receipt, 0b1000 an
    // intermediate notification.
    let message_type = (esm >> 2) & 0x0F;
    if message_type != 0b0001 && message_type != 0b1000 {
        return None;
    }
    let mut receipted_id = None;
    let mut tlv_state = None;
    for tlv in deliver.tlvs() {
        match tlv.value() {
            Some(TlvValue::ReceiptedMessageId(id)) => receipted_id = Some(id.as_str().to_owned()),
            Some(TlvValue::MessageState(state)) => {
                tlv_state = ReceiptState::from_message_state(u8::from(*state))
            }
            _ => {}
        }
    }
    let text = String::from_utf8_lossy(deliver.short_message().as_ref()).into_owned();
    let parsed = receipt::parse(&text);
    let report = match (parsed, receipted_id, tlv_state) {
        (Ok(p), id, state) => DeliveryReport {
            message_id: id.unwrap_or(p.id),
            state: state.unwrap_or(p.state),
            error: p.error,
        },
        // The TLVs alone are a complete receipt (SMPP 5.0 style).
        (Err(_), Some(id), Some(state)) => DeliveryReport {
            message_id: id,
            state,
            error: None,
        },
        (Err(e), _, _) => return Some(Err(format!("unreadable receipt: {e}"))),
    };
    Some(Ok(report))
}

async fn supervise(
    config: EsmeConfig,
    sink: Arc<dyn ReceiptSink>,
    state: watch::Sender<Option<rusmppc::Client>>,
    shutdown: CancellationToken,
    stats: Arc<BindStats>,
    session: Arc<std::sync::atomic::AtomicU64>,
) {
    let mut backoff = Backoff::new(&config);
    loop {
        if shutdown.is_cancelled() {
            break;
        }
        let bound = tokio::select! {
            _ = shutdown.cancelled() => break,
            r = connect_and_bind(&config) => r,
        };
        let pause = match bound {
            Ok((client, events)) => {
                tracing::info!(target: "smpp::esme", route = %config.route, "bound");
                session.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let since = std::time::Instant::now();
                state.send_replace(Some(client.clone()));
                stats.set_bound(true);
                stats
                    .binds
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                run_session(&config, &client, events, &sink, &shutdown, &stats).await;
                state.send_replace(None);
                stats.set_bound(false);
                if shutdown.is_cancelled() {
                    let _ = tokio::time::timeout(Duration::from_secs(2), client.unbind()).await;
                    let _ = client.close().await;
                    break;
                }
                let _ = client.close().await;
                let lasted = since.elapsed();
                let pause = backoff.session_ended(lasted);
                tracing::warn!(target: "smpp::esme", route = %config.route, lasted = ?lasted, retry_in = ?pause, "bind lost; reconnecting");
                pause
            }
            Err(e) => {
                let pause = backoff.dial_failed(e.answering);
                tracing::warn!(target: "smpp::esme", route = %config.route, error = %e.message, retry_in = ?pause, "bind failed");
                pause
            }
        };
        // Up to a quarter more, so that the binds of many instances do not redial an
        // SMSC in step.
        let pause = crate::retry::jitter(pause, 0.25);
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tokio::time::sleep(pause) => {}
        }
    }
    tracing::info!(target: "smpp::esme", route = %config.route, "stopped");
}

/// The pause before the next dial. The first is `reconnect_min`; it doubles while dials
/// fail or sessions die young; it is capped at `reconnect_max_answering` while the
/// SMSC's host answers (a restart or a flap: the first bind after it is back must come
/// within a couple of seconds) and at `reconnect_max` only while nothing answers. Only a
/// session that stayed up for `stable_after` starts it over: resetting it on every bind
/// would redial an SMSC that drops each session after a few PDUs several times a second.
#[derive(Debug, Clone)]
pub(crate) struct Backoff {
    /// The next pause.
    delay: Duration,
    min: Duration,
    cap_answering: Duration,
    cap_silent: Duration,
    stable_after: Duration,
}

impl Backoff {
    pub(crate) fn new(config: &EsmeConfig) -> Backoff {
        let min = config.reconnect_min.max(Duration::from_millis(1));
        let cap_silent = config.reconnect_max.max(min);
        Backoff {
            delay: min,
            min,
            cap_answering: config.reconnect_max_answering.clamp(min, cap_silent),
            cap_silent,
            stable_after: config.stable_after,
        }
    }

    /// The pause to take now, under `cap`; the next one doubles. A pause that grew while
    /// nothing answered comes back down to the lower cap as soon as the host answers.
    fn take(&mut self, cap: Duration) -> Duration {
        let pause = self.delay.min(cap);
        self.delay = (pause * 2).min(cap);
        pause
    }

    /// A dial failed: the pause before the next one.
    pub(crate) fn dial_failed(&mut self, answering: bool) -> Duration {
        let cap = if answering {
            self.cap_answering
        } else {
            self.cap_silent
        };
        self.take(cap)
    }

    /// A session ended after `lasted`: the pause before redialling.
    pub(crate) fn session_ended(&mut self, lasted: Duration) -> Duration {
        if lasted >= self.stable_after {
            self.delay = self.min;
        }
        self.take(self.cap_answering)
    }
}

/// Why a dial did not end bound, and whether the SMSC's host answered at all.
#[derive(Debug)]
struct DialError {
    message: String,
    /// The host answered: the connection was refused, or it opened and the bind failed.
    answering: bool,
}

impl DialError {
    fn answering(message: String) -> DialError {
        DialError {
            message,
            answering: true,
        }
    }
}

type Events = Box<dyn futures::Stream<Item = Event> + Unpin + Send>;

async fn connect_and_bind(config: &EsmeConfig) -> Result<(rusmppc::Client, Events), DialError> {
    let addr = format!("{}:{}", config.host, config.port);
    let stream = tokio::time::timeout(config.connect_timeout, TcpStream::connect(&addr))
        .await
        .map_err(|_| DialError {
            message: format!("connect to {addr} timed out"),
            answering: false,
        })?
        .map_err(|e| DialError {
            message: format!("connect to {addr}: {e}"),
            // A refusal (RST) comes from the host itself: the SMSC process is away, the
            // machine is there, and it may be back any moment.
            answering: e.kind() == std::io::ErrorKind::ConnectionRefused,
        })?;
    stream
        .set_nodelay(true)
        .map_err(|e| DialError::answering(format!("TCP_NODELAY: {e}")))?;
    let builder = ConnectionBuilder::new()
        .max_command_length(8192)
        .enquire_link_interval(config.enquire_link_interval)
        .enquire_link_response_timeout(config.response_timeout)
        .response_timeout(config.response_timeout)
        // rusmppc only speaks of 5.0; 3.4 PDUs are a subset it encodes the same way.
        .with_interface_version_check(config.version == SmppVersion::V50);
    let (client, events, connection) = builder.no_spawn().connected(stream);
    tokio::spawn(drive(connection));
    let version = match config.version {
        SmppVersion::V34 => InterfaceVersion::Smpp3_4,
        SmppVersion::V50 => InterfaceVersion::Smpp5_0,
    };
    let (system_id, password, system_type) = (
        cstr_plain(&config.system_id, "system_id").map_err(DialError::answering)?,
        cstr_plain(&config.password, "password").map_err(DialError::answering)?,
        cstr_plain(&config.system_type, "system_type").map_err(DialError::answering)?,
    );
    // The three bind PDUs carry the same fields; only their type differs.
    macro_rules! bind_pdu {
        ($pdu:ident) => {
            $pdu::builder()
                .system_id(system_id)
                .password(password)
                .system_type(system_type)
                .interface_version(version)
                .addr_ton(Ton::Unknown)
                .addr_npi(Npi::Unknown)
                .address_range(COctetString::empty())
                .build()
        };
    }
    let bound = match config.mode {
        BindMode::Transceiver => client
            .bind_transceiver(bind_pdu!(BindTransceiver))
            .await
            .map(|_| ()),
        BindMode::Transmitter => client
            .bind_transmitter(bind_pdu!(BindTransmitter))
            .await
            .map(|_| ()),
        BindMode::Receiver => client
            .bind_receiver(bind_pdu!(BindReceiver))
            .await
            .map(|_| ()),
    };
    match bound {
        Ok(()) => Ok((client, Box::new(events))),
        Err(e) => {
            let _ = client.close().await;
            Err(DialError::answering(match e {
                rusmppc::error::Error::UnexpectedResponse { response } => {
                    format!("bind refused with {:?}", response.status)
                }
                other => format!("bind: {other}"),
            }))
        }
    }
}

/// Runs rusmppc's connection future, polling it again on a short tick as well as on its
/// own wake-ups: rusmppc 0.4 caps the work done per poll (5 actions, 5 sink steps) and can
/// return with requests still queued and no waker registered for them, which stalls a
/// burst of submits until unrelated I/O arrives. The tick bounds that stall.
async fn drive(connection: impl std::future::Future<Output = ()>) {
    let mut connection = std::pin::pin!(connection);
    let mut tick = tokio::time::interval(Duration::from_millis(10));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    std::future::poll_fn(|cx| {
        while tick.poll_tick(cx).is_ready() {}
        connection.as_mut().poll(cx)
    })
    .await
}

fn cstr_plain<const MIN: usize, const MAX: usize>(
    value: &str,
    field: &str,
) -> Result<COctetString<MIN, MAX>, String> {
    COctetString::from_str(value).map_err(|e| format!("{field}: {e}"))
}

async fn run_session(
    config: &EsmeConfig,
    client: &rusmppc::Client,
    mut events: Events,
    sink: &Arc<dyn ReceiptSink>,
    shutdown: &CancellationToken,
    stats: &Arc<BindStats>,
) {
    loop {
        let event = tokio::select! {
            _ = shutdown.cancelled() => return,
            e = events.next() => e,
        };
        match event {
            None => return,
            Some(Event::Incoming(command)) => {
                handle_incoming(config, client, command, sink, stats).await;
            }
            Some(Event::Error(e)) => {
                tracing::warn!(target: "smpp::esme", route = %config.route, error = %e, "session error");
                if !client.is_active() {
                    return;
                }
            }
        }
    }
}

async fn handle_incoming(
    config: &EsmeConfig,
    client: &rusmppc::Client,
    command: Command,
    sink: &Arc<dyn ReceiptSink>,
    stats: &Arc<BindStats>,
) {
    let sequence_number = command.sequence_number();
    match command.pdu() {
        Some(Pdu::DeliverSm(deliver)) => {
            let status = match delivery_report(deliver) {
                Some(Ok(report)) => {
                    stats.record_receipt(&report.message_id);
                    // Acknowledge only once the receipt is stored.
                    let client = client.clone();
                    let sink = sink.clone();
                    let route = config.route.clone();
                    tokio::spawn(async move {
                        let status = match sink.deliver(&route, report).await {
                            Ok(()) => CommandStatus::EsmeRok,
                            Err(e) => {
                                tracing::warn!(target: "smpp::esme", %route, error = %e, "receipt not stored; asking the SMSC to retry");
                                CommandStatus::EsmeRxTAppn
                            }
                        };
                        send_deliver_resp(&client, sequence_number, status).await;
                    });
                    return;
                }
                Some(Err(e)) => {
                    tracing::warn!(target: "smpp::esme", route = %config.route, error = %e, "unreadable receipt acknowledged");
                    CommandStatus::EsmeRok
                }
                None => {
                    tracing::info!(target: "smpp::esme", route = %config.route, "mobile-originated message ignored");
                    CommandStatus::EsmeRok
                }
            };
            send_deliver_resp(client, sequence_number, status).await;
        }
        Some(Pdu::Unbind) => {
            tracing::info!(target: "smpp::esme", route = %config.route, "SMSC unbinds");
            let _ = client.unbind_resp(sequence_number).await;
            let _ = client.close().await;
        }
        Some(Pdu::EnquireLink) => {
            let _ = client.enquire_link_resp(sequence_number).await;
        }
        _ => {
            let _ = client.generic_nack(sequence_number).await;
        }
    }
}

async fn send_deliver_resp(client: &rusmppc::Client, sequence_number: u32, status: CommandStatus) {
    let result = if status == CommandStatus::EsmeRok {
        client
            .deliver_sm_resp(sequence_number, DeliverSmResp::default())
            .await
    } else {
        client
            .status(status)
            .deliver_sm_resp(sequence_number, DeliverSmResp::default())
            .await
    };
    if let Err(e) = result {
        tracing::warn!(target: "smpp::esme", error = %e, "deliver_sm_resp not sent");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> EsmeConfig {
        EsmeConfig {
            mode: BindMode::Transceiver,
            route: "viettel".into(),
            host: "127.0.0.1".into(),
            port: 1,
            system_id: "x".into(),
            password: "x".into(),
            system_type: String::new(),
            version: SmppVersion::V34,
            window: 10,
            tps: None,
            enquire_link_interval: Duration::from_secs(30),
            response_timeout: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(5),
            reconnect_min: Duration::from_millis(200),
            reconnect_max_answering: Duration::from_secs(1),
            reconnect_max: Duration::from_secs(30),
            stable_after: Duration::from_secs(10),
        }
    }

    #[test]
    fn a_session_that_dies_young_keeps_the_back_off_growing_up_to_the_low_cap() {
        let mut b = Backoff::new(&config());
        // An SMSC that drops every session after a few PDUs: 0.2, 0.4, 0.8, then 1 s.
        let pauses: Vec<_> = (0..5)
            .map(|_| b.session_ended(Duration::from_millis(50)))
            .collect();
        assert_eq!(
            pauses,
            [200, 400, 800, 1000, 1000].map(Duration::from_millis)
        );
        // A session that held starts it over.
        assert_eq!(
            b.session_ended(Duration::from_secs(11)),
            Duration::from_millis(200)
        );
        assert_eq!(
            b.session_ended(Duration::from_secs(1)),
            Duration::from_millis(400)
        );
    }

    #[test]
    fn only_a_host_that_does_not_answer_reaches_the_high_cap() {
        let mut b = Backoff::new(&config());
        assert_eq!(
            b.dial_failed(true),
            Duration::from_millis(200),
            "the first pause"
        );
        for _ in 0..10 {
            b.dial_failed(true);
        }
        assert_eq!(
            b.dial_failed(true),
            Duration::from_secs(1),
            "refused binds stay low"
        );
        for _ in 0..10 {
            b.dial_failed(false);
        }
        assert_eq!(b.dial_failed(false), Duration::from_secs(30));
        // The host answers again (a refused bind): back under the low cap at once.
        assert_eq!(b.dial_failed(true), Duration::from_secs(1));
    }

    #[test]
    fn a_low_cap_above_the_high_one_is_the_high_one() {
        let mut c = config();
        c.reconnect_max = Duration::from_millis(300);
        let mut b = Backoff::new(&c);
        for _ in 0..5 {
            b.dial_failed(true);
        }
        assert_eq!(b.dial_failed(true), Duration::from_millis(300));
    }

    #[test]
    fn jitter_is_at_most_a_quarter_and_not_always_the_same() {
        let base = Duration::from_secs(1);
        let samples: Vec<_> = (0..64)
            .map(|_| crate::retry::jitter(base, 0.25) - base)
            .collect();
        assert!(samples.iter().all(|j| *j <= base / 4));
        assert!(samples.iter().any(|j| *j != samples[0]), "{samples:?}");
    }

    #[test]
    fn relative_validity_is_written_and_read_as_smpp_says() {
        assert_eq!(
            relative_validity(Duration::from_secs(270)),
            "000000000430000R"
        );
        assert_eq!(
            relative_validity(Duration::from_millis(59_950)),
            "000000000100000R",
            "rounded up to the next tenth"
        );
        assert_eq!(
            relative_validity(Duration::from_secs(2 * 86_400 + 3 * 3600 + 1)),
            "000002030001000R"
        );
        for secs in [1u64, 59, 299, 3600, 86_399, 40 * 86_400] {
            let d = Duration::from_secs(secs);
            assert_eq!(parse_relative_validity(&relative_validity(d)), Some(d));
        }
        assert_eq!(
            parse_relative_validity("000000000430500R"),
            Some(Duration::from_millis(270_500))
        );
        assert_eq!(parse_relative_validity("261202101500000+"), None);
        assert_eq!(parse_relative_validity("00000000043000R"), None);
        assert_eq!(parse_relative_validity(""), None);
    }
}
