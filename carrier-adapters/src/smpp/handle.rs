//! The ESME side of one SMPP bind, as its callers see it: a cheap handle through which
//! they submit, bounded by a window of outstanding requests, a TPS limit and the SMSC's
//! throttling, while a supervisor task ([`super::session`]) connects, binds as
//! transceiver, keeps the bind alive, reconnects with back-off and hands delivery
//! receipts to a sink.
//!
//! Built on rusmppc, with the traps around it handled here and in the session: the TCP
//! stream is opened by us with TCP_NODELAY, the interface-version check is off for SMPP
//! 3.4 binds, and the window (rusmppc has none) is a semaphore.

use std::sync::Arc;
use std::time::Duration;

use rusmpp::CommandStatus;
use tokio::sync::{watch, Semaphore};
use tokio_util::sync::CancellationToken;

use super::config::{BindMode, EsmeConfig};
use super::pdu::{build_submit_sm, OutgoingSms, Unencodable};
use super::session::{supervise, ReceiptSink};
use super::stats::{BindSnapshot, BindStats};

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
    /// The brandname's limit left no room before the caller's `wait_until`: nothing
    /// was sent.
    #[error("brandname {sender} is at its TPS limit")]
    SenderBusy { sender: String },
}

impl SubmitError {
    /// Whether trying the same message again later may succeed.
    pub fn is_transient(&self) -> bool {
        match self {
            SubmitError::NotBound { .. }
            | SubmitError::Timeout { .. }
            | SubmitError::ConnectionLost(_)
            | SubmitError::SenderBusy { .. } => true,
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
            | SubmitError::Expired
            | SubmitError::SenderBusy { .. } => false,
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
            SubmitError::SenderBusy { .. } => "sender_tps".into(),
        }
    }
}
impl From<Unencodable> for SubmitError {
    fn from(e: Unencodable) -> Self {
        SubmitError::Invalid(e.0)
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
    sender_tps: Arc<crate::smpp::SenderTps>,
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
            sender_tps: config.sender_tps.clone(),
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
    /// with its own id and receipt. Takes the brandname's limit for every part first (up
    /// to `wait_until`), then waits for the bind's TPS limit, its window and any
    /// throttling pause before each part.
    pub async fn submit(&self, sms: &OutgoingSms) -> Result<Vec<String>, SubmitError> {
        let reference = self
            .next_reference
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let parts = crate::sms_text::split(&sms.text, reference);
        // The brandname's limit for the whole message first: a message is sent whole or
        // not at all, and no part waits for it holding a slot of the bind's window.
        if !self
            .sender_tps
            .take(&sms.source, parts.len(), sms.wait_until)
            .await
        {
            return Err(SubmitError::SenderBusy {
                sender: sms.source.clone(),
            });
        }
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
