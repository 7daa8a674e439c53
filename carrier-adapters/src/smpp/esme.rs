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
use rusmpp::types::{COctetString, OctetString};
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
    pub reconnect_min: Duration,
    pub reconnect_max: Duration,
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
            SubmitError::Invalid(_) => false,
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
        };
        let task = tokio::spawn(supervise(config, sink, tx, shutdown, stats));
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
        let submit = build_submit_sm(sms, payload, udhi)?;
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
        let client = self
            .client
            .borrow()
            .clone()
            .ok_or_else(|| SubmitError::NotBound {
                route: self.route.to_string(),
            })?;
        match client.submit_sm(submit).await {
            Ok(resp) => Ok(resp.message_id().as_str().to_owned()),
            Err(rusmppc::error::Error::UnexpectedResponse { response }) => {
                let code = u32::from(response.status);
                Err(SubmitError::Rejected {
                    status: response.status,
                    code,
                })
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

/// One `submit_sm` for one part of `sms` (`udhi`: the payload starts with a UDH).
fn build_submit_sm(sms: &OutgoingSms, payload: &[u8], udhi: bool) -> Result<SubmitSm, SubmitError> {
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
        .data_coding(DataCoding::from(sms.text.encoding.data_coding()))
        .short_message(
            OctetString::from_slice(payload).map_err(|e| SubmitError::Invalid(e.to_string()))?,
        )
        .build())
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
) {
    let mut delay = config.reconnect_min;
    loop {
        if shutdown.is_cancelled() {
            break;
        }
        let bound = tokio::select! {
            _ = shutdown.cancelled() => break,
            r = connect_and_bind(&config) => r,
        };
        match bound {
            Ok((client, events)) => {
                tracing::info!(target: "smpp::esme", route = %config.route, "bound");
                delay = config.reconnect_min;
                state.send_replace(Some(client.clone()));
                stats.set_bound(true);
                run_session(&config, &client, events, &sink, &shutdown, &stats).await;
                state.send_replace(None);
                stats.set_bound(false);
                if shutdown.is_cancelled() {
                    let _ = tokio::time::timeout(Duration::from_secs(2), client.unbind()).await;
                    let _ = client.close().await;
                    break;
                }
                let _ = client.close().await;
                tracing::warn!(target: "smpp::esme", route = %config.route, "bind lost; reconnecting");
            }
            Err(e) => {
                tracing::warn!(target: "smpp::esme", route = %config.route, error = %e, retry_in = ?delay, "bind failed");
            }
        }
        let jitter = jitter(delay);
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tokio::time::sleep(delay + jitter) => {}
        }
        delay = (delay * 2).min(config.reconnect_max);
    }
    tracing::info!(target: "smpp::esme", route = %config.route, "stopped");
}

fn jitter(base: Duration) -> Duration {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    base.mul_f64(f64::from(nanos % 1000) / 4000.0)
}

type Events = Box<dyn futures::Stream<Item = Event> + Unpin + Send>;

async fn connect_and_bind(config: &EsmeConfig) -> Result<(rusmppc::Client, Events), String> {
    let addr = format!("{}:{}", config.host, config.port);
    let stream = tokio::time::timeout(config.connect_timeout, TcpStream::connect(&addr))
        .await
        .map_err(|_| format!("connect to {addr} timed out"))?
        .map_err(|e| format!("connect to {addr}: {e}"))?;
    stream
        .set_nodelay(true)
        .map_err(|e| format!("TCP_NODELAY: {e}"))?;
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
        cstr_plain(&config.system_id, "system_id")?,
        cstr_plain(&config.password, "password")?,
        cstr_plain(&config.system_type, "system_type")?,
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
            Err(match e {
                rusmppc::error::Error::UnexpectedResponse { response } => {
                    format!("bind refused with {:?}", response.status)
                }
                other => format!("bind: {other}"),
            })
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
