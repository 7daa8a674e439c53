//! The supervisor of one bind: it dials, binds, keeps the session alive, answers the
//! SMSC's PDUs (receipts go to the sink, acknowledged once stored), and redials with
//! back-off when the session dies. It hands the bound client to the [`super::Esme`]
//! handle through a watch channel.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use futures::StreamExt;
use rusmpp::pdus::{BindReceiver, BindTransceiver, BindTransmitter, DeliverSmResp};
use rusmpp::types::COctetString;
use rusmpp::values::{InterfaceVersion, Npi, Ton};
use rusmpp::{Command, CommandStatus, Pdu};
use rusmppc::{ConnectionBuilder, Event};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::config::{BindMode, EsmeConfig, SmppVersion};
use super::pdu::{delivery_report, DeliveryReport};
use super::stats::BindStats;

/// Where receipts go. `Ok` acknowledges the `deliver_sm`; `Err` answers
/// `ESME_RX_T_APPN` so that the SMSC delivers the receipt again later.
pub trait ReceiptSink: Send + Sync + 'static {
    fn deliver(
        &self,
        route: &str,
        report: DeliveryReport,
    ) -> BoxFuture<'static, Result<(), String>>;
}
pub(super) async fn supervise(
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
            sender_tps: Default::default(),
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
}
