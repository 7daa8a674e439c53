//! A simulated SMSC: an SMPP 3.4/5.0 server that any conforming ESME can bind to.
//!
//! It checks bind credentials, accepts `submit_sm` for the networks it serves, hands the
//! text to the virtual handset after a delay and then sends a delivery receipt
//! (`deliver_sm`, esm_class 0x04, with `receipted_message_id` and `message_state`) on a
//! receiver or transceiver bind of the same system_id, holding it until one is bound.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::str::FromStr;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use carrier_adapters::receipt::{self, ReceiptState};
use carrier_adapters::smpp::frame::{Frame, FrameCodec};
use carrier_adapters::template::{self, Template};
use carrier_adapters::{sms_text, Carrier, Msisdn};
use chrono::Utc;
use futures::{SinkExt, StreamExt};
use rusmpp::pdus::{
    BindReceiverResp, BindTransceiverResp, BindTransmitterResp, DeliverSm, SubmitSm, SubmitSmResp,
};
use rusmpp::tlvs::{MessageDeliveryRequestTlvValue, TlvValue};
use rusmpp::types::{COctetString, OctetString};
use rusmpp::values::{EsmClass, InterfaceVersion, MessageState, Npi, Ton};
use rusmpp::{Command, CommandStatus, Pdu};
use serde::{Deserialize, Serialize};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_util::codec::{FramedRead, FramedWrite};
use tokio_util::sync::CancellationToken;

use crate::handset::{HandsetMessage, Handsets};

/// Longest PDU accepted (SMPP allows more, no real submit needs it).
const MAX_PDU_LEN: usize = 4096;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmscConfig {
    /// `viettel`, `vinaphone`, `mobifone` or `aggregator`.
    pub name: String,
    pub listen: SocketAddr,
    pub system_id: String,
    pub password: String,
    /// Networks whose numbers this SMSC delivers to; others get `ESME_RINVDSTADR`.
    pub networks: Vec<Carrier>,
    /// Time from `submit_sm_resp` to handset delivery and receipt.
    #[serde(with = "humantime_serde")]
    pub receipt_delay: Duration,
    /// Scripted misbehaviour (also settable at run time: `PUT /smsc/{name}/faults`).
    #[serde(default)]
    pub faults: SmscFaults,
    /// Brandnames and their templates registered with this carrier (also settable at
    /// run time: `PUT /smsc/{name}/brandnames`).
    #[serde(default)]
    pub brandnames: Brandnames,
}

/// The status an enforcing SMSC answers a text that is not one of its brandname's
/// registered templates with: a vendor-specific command_status (0x400-0x4FF), as
/// carriers' brandname gateways answer their own policy refusals.
pub const TEMPLATE_NOT_REGISTERED: u32 = 0x0000_0401;

/// What a carrier has registered: each brandname and the templates it may send. An
/// enforcing SMSC refuses a submit from any other sender (`ESME_RINVSRCADR`) and a text
/// that is none of its sender's templates (`TEMPLATE_NOT_REGISTERED`); one that does not
/// enforce takes anything.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Brandnames {
    pub enforce: bool,
    /// Brandname → its templates (`{code}`, `{minutes}`, `{seconds}` as parameters).
    pub brandnames: std::collections::BTreeMap<String, Vec<String>>,
}

/// `Brandnames`, checked: each brandname valid and each template parsed.
#[derive(Debug, Clone, Default)]
struct Registered {
    enforce: bool,
    brandnames: std::collections::BTreeMap<String, Vec<Template>>,
}

impl Brandnames {
    fn check(&self) -> Result<Registered, String> {
        let mut brandnames = std::collections::BTreeMap::new();
        for (name, templates) in &self.brandnames {
            if !template::valid_brandname(name) {
                return Err(format!(
                    "brandname {name:?} must be 1..=11 letters, digits, space or .-_&, or up to 15 digits"
                ));
            }
            let parsed = templates
                .iter()
                .map(|t| Template::parse(t).map_err(|e| format!("{name}: {t:?}: {e}")))
                .collect::<Result<Vec<_>, _>>()?;
            brandnames.insert(name.clone(), parsed);
        }
        Ok(Registered {
            enforce: self.enforce,
            brandnames,
        })
    }
}

/// What a misbehaving SMSC does. Everything off by default.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SmscFaults {
    /// Answer every bind with ESME_RBINDFAIL.
    pub refuse_binds: bool,
    /// Close each connection (no unbind) after answering this many PDUs.
    pub drop_after_pdus: Option<u64>,
    /// Wait this long before answering a submit_sm.
    #[serde(with = "humantime_serde")]
    pub response_delay: Option<Duration>,
    /// Answer ESME_RTHROTTLED to submits beyond this many per second.
    pub throttle_above_tps: Option<u32>,
    /// Fraction (0..=1) of delivery receipts never sent.
    pub lose_receipts: f64,
    /// Receipt delay instead of the configured one.
    #[serde(with = "humantime_serde")]
    pub receipt_delay: Option<Duration>,
    /// Deliver (and send the receipt) before answering the submit_sm.
    pub receipt_before_response: bool,
    /// Write the message id in receipts in decimal (responses stay hex).
    pub decimal_receipt_ids: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BindKind {
    Transmitter,
    Receiver,
    Transceiver,
}

impl BindKind {
    fn can_submit(self) -> bool {
        matches!(self, BindKind::Transmitter | BindKind::Transceiver)
    }

    fn can_receive(self) -> bool {
        matches!(self, BindKind::Receiver | BindKind::Transceiver)
    }
}

/// A connection that can take SMSC-originated PDUs (receipts).
#[derive(Clone)]
struct Outlet {
    connection: u64,
    tx: mpsc::Sender<Command>,
    sequence: Arc<AtomicU32>,
    /// Receipts sent and not yet acknowledged, by sequence number: held again if the
    /// connection ends first, as an SMSC keeps a receipt until the ESME takes it.
    unacked: Arc<Mutex<std::collections::HashMap<u32, DeliverSm>>>,
}

impl Outlet {
    fn next_sequence(&self) -> u32 {
        self.sequence.fetch_add(1, Ordering::Relaxed)
    }
}

/// State shared by all connections of one SMSC.
pub struct Smsc {
    config: SmscConfig,
    handsets: Arc<Handsets>,
    registry: Arc<crate::registry::Registry>,
    next_message_id: AtomicU64,
    next_connection: AtomicU64,
    receivers: Mutex<Vec<Outlet>>,
    /// Receipts waiting for a receiver bind.
    held_receipts: Mutex<VecDeque<DeliverSm>>,
    submitted: AtomicU64,
    faults: Mutex<SmscFaults>,
    registered: Mutex<(Brandnames, Registered)>,
    /// Parts of concatenated messages waiting for the rest: (from, to, reference).
    concat: Mutex<std::collections::HashMap<PartsKey, Vec<Option<Vec<u8>>>>>,
    /// Start of the current one-second window and submits in it (throttling fault).
    window: Mutex<(std::time::Instant, u32)>,
}

impl std::fmt::Debug for Smsc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Smsc")
            .field("name", &self.config.name)
            .finish()
    }
}

/// What `GET /health` shows of an SMSC.
#[derive(Debug, Clone, Serialize)]
pub struct SmscStatus {
    pub name: String,
    pub receiver_binds: usize,
    pub held_receipts: usize,
    pub submitted: u64,
}

impl Smsc {
    pub fn new(
        config: SmscConfig,
        handsets: Arc<Handsets>,
        registry: Arc<crate::registry::Registry>,
    ) -> Result<Arc<Smsc>, String> {
        let registered = config
            .brandnames
            .check()
            .map_err(|e| format!("[smsc] {}: brandnames: {e}", config.name))?;
        // Start ids from the clock so that ids differ across simulator restarts.
        let base = (Utc::now().timestamp_millis() as u64 & 0xFFFF_FFFF) << 16;
        Ok(Arc::new(Smsc {
            handsets,
            registry,
            next_message_id: AtomicU64::new(base),
            next_connection: AtomicU64::new(1),
            receivers: Mutex::new(Vec::new()),
            held_receipts: Mutex::new(VecDeque::new()),
            submitted: AtomicU64::new(0),
            faults: Mutex::new(config.faults.clone()),
            registered: Mutex::new((config.brandnames.clone(), registered)),
            concat: Mutex::new(std::collections::HashMap::new()),
            window: Mutex::new((std::time::Instant::now(), 0)),
            config,
        }))
    }

    pub fn name(&self) -> &str {
        &self.config.name
    }

    pub fn faults(&self) -> SmscFaults {
        lock(&self.faults).clone()
    }

    pub fn set_faults(&self, faults: SmscFaults) {
        *lock(&self.faults) = faults;
    }

    pub fn brandnames(&self) -> Brandnames {
        lock(&self.registered).0.clone()
    }

    /// Replaces the registry; refused (and nothing changed) if a brandname or template
    /// is not one a carrier would register.
    pub fn set_brandnames(&self, brandnames: Brandnames) -> Result<(), String> {
        let checked = brandnames.check()?;
        *lock(&self.registered) = (brandnames, checked);
        Ok(())
    }

    /// A sender this SMSC does not take (enforcing, and not registered).
    fn unregistered_sender(&self, sender: &str) -> bool {
        let r = lock(&self.registered);
        r.1.enforce && !r.1.brandnames.contains_key(sender)
    }

    /// A whole text that is none of its sender's templates (enforcing).
    fn unregistered_text(&self, sender: &str, text: &str) -> bool {
        let r = lock(&self.registered);
        r.1.enforce
            && !r
                .1
                .brandnames
                .get(sender)
                .is_some_and(|ts| ts.iter().any(|t| t.matches(text)))
    }

    /// Whether one more submit fits under the throttling fault's TPS.
    fn over_tps(&self) -> bool {
        let Some(limit) = self.faults().throttle_above_tps else {
            return false;
        };
        let mut w = lock(&self.window);
        if w.0.elapsed() >= Duration::from_secs(1) {
            *w = (std::time::Instant::now(), 0);
        }
        w.1 += 1;
        w.1 > limit
    }

    pub fn status(&self) -> SmscStatus {
        SmscStatus {
            name: self.config.name.clone(),
            receiver_binds: lock(&self.receivers).len(),
            held_receipts: lock(&self.held_receipts).len(),
            submitted: self.submitted.load(Ordering::Relaxed),
        }
    }

    /// Accepts connections until `shutdown`; each connection is served by its own task.
    pub async fn serve(self: Arc<Self>, listener: TcpListener, shutdown: CancellationToken) {
        loop {
            let accepted = tokio::select! {
                _ = shutdown.cancelled() => break,
                a = listener.accept() => a,
            };
            match accepted {
                Ok((stream, peer)) => {
                    let smsc = self.clone();
                    let shutdown = shutdown.clone();
                    tokio::spawn(async move { smsc.connection(stream, peer, shutdown).await });
                }
                Err(e) => {
                    tracing::warn!(smsc = %self.config.name, error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }

    async fn connection(
        self: Arc<Self>,
        stream: TcpStream,
        peer: SocketAddr,
        shutdown: CancellationToken,
    ) {
        let _ = stream.set_nodelay(true);
        let connection = self.next_connection.fetch_add(1, Ordering::Relaxed);
        let (read, write) = stream.into_split();
        let mut reader = FramedRead::new(read, FrameCodec::new(MAX_PDU_LEN));
        let (tx, mut rx) = mpsc::channel::<Command>(1024);
        let writer = tokio::spawn(async move {
            let mut writer = FramedWrite::new(write, FrameCodec::new(MAX_PDU_LEN));
            while let Some(command) = rx.recv().await {
                let closing = matches!(command.pdu(), Some(Pdu::UnbindResp));
                if writer.send(command).await.is_err() || closing {
                    break;
                }
            }
        });
        let outlet = Outlet {
            connection,
            tx: tx.clone(),
            sequence: Arc::new(AtomicU32::new(1)),
            unacked: Arc::default(),
        };
        tracing::debug!(smsc = %self.config.name, %peer, connection, "connected");
        let mut bound: Option<BindKind> = None;
        let mut pdus: u64 = 0;
        loop {
            let frame = tokio::select! {
                _ = shutdown.cancelled() => {
                    if bound.is_some() {
                        let _ = tx.send(Command::new(CommandStatus::EsmeRok, outlet.next_sequence(), Pdu::Unbind)).await;
                    }
                    break;
                }
                f = reader.next() => f,
            };
            let frame = match frame {
                None => break,
                Some(Ok(frame)) => frame,
                Some(Err(e)) => {
                    tracing::info!(smsc = %self.config.name, %peer, error = %e, "framing lost; closing");
                    let _ = tx
                        .send(Command::new(
                            CommandStatus::EsmeRinvcmdlen,
                            0,
                            Pdu::GenericNack,
                        ))
                        .await;
                    break;
                }
            };
            match self.handle(frame, &mut bound, &outlet).await {
                Flow::Continue => {}
                Flow::Close => break,
            }
            pdus += 1;
            if self.faults().drop_after_pdus.is_some_and(|n| pdus >= n) {
                tracing::info!(smsc = %self.config.name, connection, "fault: dropping the connection");
                // Answers already given go out; then the socket closes without an unbind.
                lock(&self.receivers).retain(|o| o.connection != connection);
                self.rehold(&outlet);
                drop(tx);
                drop(outlet);
                let _ = tokio::time::timeout(Duration::from_secs(1), writer).await;
                return;
            }
        }
        lock(&self.receivers).retain(|o| o.connection != connection);
        self.rehold(&outlet);
        drop(tx);
        drop(outlet);
        let _ = tokio::time::timeout(Duration::from_secs(1), writer).await;
        tracing::debug!(smsc = %self.config.name, %peer, connection, "closed");
    }

    async fn handle(
        self: &Arc<Self>,
        frame: Frame,
        bound: &mut Option<BindKind>,
        outlet: &Outlet,
    ) -> Flow {
        let command = match frame {
            Frame::Command(command) => command,
            Frame::Undecodable {
                command_id,
                sequence_number,
                status,
                reason,
            } => {
                tracing::info!(smsc = %self.config.name, command_id = format!("{command_id:#010x}"), %reason, "undecodable PDU");
                self.reply(
                    outlet,
                    Command::new(status, sequence_number, Pdu::GenericNack),
                )
                .await;
                return Flow::Continue;
            }
        };
        let seq = command.sequence_number();
        let Some(pdu) = command.pdu() else {
            let status = match command.id() {
                rusmpp::CommandId::Other(_) => CommandStatus::EsmeRinvcmdid,
                _ => CommandStatus::EsmeRinvcmdlen,
            };
            self.reply(outlet, Command::new(status, seq, Pdu::GenericNack))
                .await;
            return Flow::Continue;
        };
        match pdu {
            Pdu::BindTransmitter(b) => {
                let status = self.bind_status(bound, b.system_id.as_str(), b.password.as_str());
                let resp = BindTransmitterResp::builder()
                    .system_id(self.resp_system_id())
                    .sc_interface_version(Some(InterfaceVersion::Smpp5_0))
                    .build();
                self.reply(outlet, Command::new(status, seq, resp)).await;
                self.finish_bind(status, bound, BindKind::Transmitter, outlet)
                    .await;
            }
            Pdu::BindReceiver(b) => {
                let status = self.bind_status(bound, b.system_id.as_str(), b.password.as_str());
                let resp = BindReceiverResp::builder()
                    .system_id(self.resp_system_id())
                    .sc_interface_version(Some(InterfaceVersion::Smpp5_0))
                    .build();
                self.reply(outlet, Command::new(status, seq, resp)).await;
                self.finish_bind(status, bound, BindKind::Receiver, outlet)
                    .await;
            }
            Pdu::BindTransceiver(b) => {
                let status = self.bind_status(bound, b.system_id.as_str(), b.password.as_str());
                let resp = BindTransceiverResp::builder()
                    .system_id(self.resp_system_id())
                    .sc_interface_version(Some(InterfaceVersion::Smpp5_0))
                    .build();
                self.reply(outlet, Command::new(status, seq, resp)).await;
                self.finish_bind(status, bound, BindKind::Transceiver, outlet)
                    .await;
            }
            Pdu::SubmitSm(submit) => {
                let faults = self.faults();
                let (status, message_id) = match *bound {
                    Some(kind) if kind.can_submit() && self.over_tps() => {
                        (CommandStatus::EsmeRthrottled, String::new())
                    }
                    Some(kind) if kind.can_submit() => match self.accept_submit(submit) {
                        Ok(delivery) => {
                            let id = delivery.message_id.clone();
                            if faults.receipt_before_response {
                                self.deliver(delivery).await;
                            } else {
                                let smsc = self.clone();
                                let delay =
                                    faults.receipt_delay.unwrap_or(self.config.receipt_delay);
                                tokio::spawn(async move {
                                    tokio::time::sleep(delay).await;
                                    smsc.deliver(delivery).await;
                                });
                            }
                            (CommandStatus::EsmeRok, id)
                        }
                        Err(status) => (status, String::new()),
                    },
                    _ => (CommandStatus::EsmeRinvbndsts, String::new()),
                };
                if let Some(delay) = faults.response_delay {
                    tokio::time::sleep(delay).await;
                }
                let resp = SubmitSmResp::builder()
                    .message_id(COctetString::from_str(&message_id).unwrap_or_default())
                    .build();
                self.reply(outlet, Command::new(status, seq, resp)).await;
            }
            Pdu::EnquireLink => {
                self.reply(
                    outlet,
                    Command::new(CommandStatus::EsmeRok, seq, Pdu::EnquireLinkResp),
                )
                .await;
            }
            Pdu::Unbind => {
                self.reply(
                    outlet,
                    Command::new(CommandStatus::EsmeRok, seq, Pdu::UnbindResp),
                )
                .await;
                return Flow::Close;
            }
            Pdu::DeliverSmResp(_) => {
                let receipt = lock(&outlet.unacked).remove(&seq);
                if command.status != CommandStatus::EsmeRok {
                    // The ESME could not take it now: offer it again later.
                    tracing::info!(smsc = %self.config.name, status = ?command.status, "receipt refused; will resend");
                    if let Some(receipt) = receipt {
                        let smsc = self.clone();
                        tokio::spawn(async move {
                            tokio::time::sleep(Duration::from_secs(1)).await;
                            smsc.send_receipt(receipt).await;
                        });
                    }
                }
            }
            // Responses to what we sent: nothing to answer.
            Pdu::EnquireLinkResp | Pdu::UnbindResp | Pdu::GenericNack | Pdu::DataSmResp(_) => {
                if command.status != CommandStatus::EsmeRok {
                    tracing::info!(smsc = %self.config.name, status = ?command.status, "ESME answered with an error");
                }
            }
            _ => {
                self.reply(
                    outlet,
                    Command::new(CommandStatus::EsmeRinvcmdid, seq, Pdu::GenericNack),
                )
                .await;
            }
        }
        Flow::Continue
    }

    fn resp_system_id(&self) -> COctetString<1, 16> {
        let name: String = format!("{}-SIM", self.config.name.to_uppercase())
            .chars()
            .take(15)
            .collect();
        COctetString::from_str(&name).unwrap_or_default()
    }

    fn bind_status(
        &self,
        bound: &Option<BindKind>,
        system_id: &str,
        password: &str,
    ) -> CommandStatus {
        if self.faults().refuse_binds {
            CommandStatus::EsmeRbindfail
        } else if bound.is_some() {
            CommandStatus::EsmeRalybnd
        } else if system_id != self.config.system_id {
            CommandStatus::EsmeRinvsysid
        } else if password != self.config.password {
            CommandStatus::EsmeRinvpaswd
        } else {
            CommandStatus::EsmeRok
        }
    }

    async fn finish_bind(
        &self,
        status: CommandStatus,
        bound: &mut Option<BindKind>,
        kind: BindKind,
        outlet: &Outlet,
    ) {
        if status != CommandStatus::EsmeRok {
            tracing::info!(smsc = %self.config.name, ?status, "bind refused");
            return;
        }
        *bound = Some(kind);
        tracing::info!(smsc = %self.config.name, ?kind, "bound");
        if kind.can_receive() {
            lock(&self.receivers).push(outlet.clone());
            let held: Vec<DeliverSm> = lock(&self.held_receipts).drain(..).collect();
            for receipt in held {
                self.send_receipt(receipt).await;
            }
        }
    }

    async fn reply(&self, outlet: &Outlet, command: Command) {
        let _ = outlet.tx.send(command).await;
    }

    /// Validates a submit; returns what to deliver.
    fn accept_submit(&self, submit: &SubmitSm) -> Result<PendingDelivery, CommandStatus> {
        let sender = submit.source_addr.as_str();
        if sender.is_empty() || self.unregistered_sender(sender) {
            return Err(CommandStatus::EsmeRinvsrcadr);
        }
        let destination = Msisdn::parse(submit.destination_addr.as_str())
            .map_err(|_| CommandStatus::EsmeRinvdstadr)?;
        // The SMSC serves the number's real network: a ported-away number is not its.
        if !self
            .config
            .networks
            .contains(&self.registry.network_of(&destination))
        {
            return Err(CommandStatus::EsmeRinvdstadr);
        }
        let esm: u8 = submit.esm_class.into();
        let mut payload: Vec<u8> = submit.short_message().as_ref().to_vec();
        if payload.is_empty() {
            for tlv in submit.tlvs() {
                if let Some(TlvValue::MessagePayload(p)) = tlv.value() {
                    payload = p.value.as_ref().to_vec();
                }
            }
        }
        let mut part_of = None;
        if esm & 0x40 != 0 {
            // UDH present: a concatenation header says which part this is; skip the rest.
            let udhl = *payload.first().ok_or(CommandStatus::EsmeRinvesmclass)? as usize;
            if payload.len() < udhl + 1 {
                return Err(CommandStatus::EsmeRinvesmclass);
            }
            part_of = sms_text::concatenation(&payload).map(|(c, _)| c);
            payload.drain(..=udhl);
        }
        let data_coding: u8 = submit.data_coding.into();
        let decode = |bytes: &[u8]| {
            sms_text::decode(data_coding, bytes).map_err(|e| match e {
                sms_text::DecodeTextError::UnsupportedDataCoding(_) => CommandStatus::EsmeRinvdcs,
                _ => CommandStatus::EsmeRinvmsglen,
            })
        };
        let text = match part_of {
            Some(sms_text::Concatenation {
                reference,
                total,
                seq,
            }) if total > 1 && seq >= 1 && seq <= total => {
                // The handset shows the message once every part has arrived.
                let key = (
                    submit.source_addr.as_str().to_owned(),
                    destination.e164().to_owned(),
                    reference,
                );
                let mut pending = lock(&self.concat);
                let parts = pending
                    .entry(key.clone())
                    .or_insert_with(|| vec![None; total as usize]);
                if parts.len() != total as usize {
                    *parts = vec![None; total as usize];
                }
                parts[seq as usize - 1] = Some(payload.clone());
                if parts.iter().all(Option::is_some) {
                    let whole: Vec<u8> = parts.iter().flatten().flatten().copied().collect();
                    pending.remove(&key);
                    Some(decode(&whole)?)
                } else {
                    // Each part is still a valid text on its own.
                    decode(&payload)?;
                    None
                }
            }
            _ => Some(decode(&payload)?),
        };
        // The template is checked on the whole text: a concatenated message's on its
        // last part (the parts before it were taken; the carrier drops them with it).
        if let Some(text) = &text {
            if self.unregistered_text(sender, text) {
                tracing::info!(smsc = %self.config.name, sender, "text is no registered template of the brandname: refused");
                return Err(CommandStatus::Other(TEMPLATE_NOT_REGISTERED));
            }
        }
        // A relative validity_period bounds how long the message may wait for its
        // delivery; an absolute one is taken as no bound; anything else is refused.
        let validity = submit.validity_period.to_string();
        let valid_until = if validity.is_empty() || validity.ends_with(['+', '-']) {
            None
        } else {
            let period = carrier_adapters::smpp::pdu::parse_relative_validity(&validity)
                .ok_or(CommandStatus::EsmeRinvexpiry)?;
            Some(
                Utc::now()
                    + chrono::Duration::from_std(period)
                        .map_err(|_| CommandStatus::EsmeRinvexpiry)?,
            )
        };
        let id = format!("{:X}", self.next_message_id.fetch_add(1, Ordering::Relaxed));
        self.submitted.fetch_add(1, Ordering::Relaxed);
        let want_receipt = u8::from(submit.registered_delivery) & 0x03 != 0;
        Ok(PendingDelivery {
            message_id: id,
            from: submit.source_addr.as_str().to_owned(),
            to: destination.e164().to_owned(),
            text,
            want_receipt,
            submitted_at: Utc::now(),
            valid_until,
        })
    }

    async fn deliver(&self, d: PendingDelivery) {
        // Past its validity period an SMSC gives a message up: the handset never sees it
        // and the receipt says EXPIRED.
        let expired = d.valid_until.is_some_and(|until| until <= Utc::now());
        if expired {
            tracing::info!(smsc = %self.config.name, message_id = %d.message_id, "validity period over: not delivered");
        } else if let Some(text) = &d.text {
            tracing::debug!(smsc = %self.config.name, message_id = %d.message_id, "delivered to handset");
            self.handsets.deliver(
                &d.to,
                HandsetMessage {
                    from: d.from.clone(),
                    text: text.clone(),
                    received_at: Utc::now(),
                    carrier: self.config.name.clone(),
                    smsc_message_id: d.message_id.clone(),
                    valid_until: d.valid_until,
                },
            );
        }
        if !d.want_receipt {
            return;
        }
        let faults = self.faults();
        if faults.lose_receipts > 0.0 && rand::random::<f64>() < faults.lose_receipts {
            tracing::info!(smsc = %self.config.name, "fault: receipt lost");
            return;
        }
        let receipt_id = if faults.decimal_receipt_ids {
            u64::from_str_radix(&d.message_id, 16)
                .map(|n| n.to_string())
                .unwrap_or_else(|_| d.message_id.clone())
        } else {
            d.message_id.clone()
        };
        let fmt = "%y%m%d%H%M";
        let state = if expired {
            ReceiptState::Expired
        } else {
            ReceiptState::Delivered
        };
        let text = receipt::format(
            &receipt_id,
            state,
            0,
            &d.submitted_at.format(fmt).to_string(),
            &Utc::now().format(fmt).to_string(),
            d.text.as_deref().unwrap_or_default(),
        );
        let deliver = DeliverSm::builder()
            .source_addr_ton(Ton::International)
            .source_addr_npi(Npi::Isdn)
            .source_addr(COctetString::from_str(&d.to).unwrap_or_default())
            .dest_addr_ton(Ton::Alphanumeric)
            .dest_addr_npi(Npi::Unknown)
            .destination_addr(COctetString::from_str(&d.from).unwrap_or_default())
            .esm_class(EsmClass::from(0x04u8))
            .short_message(OctetString::from_slice(text.as_bytes()).unwrap_or_default())
            .push_tlv(MessageDeliveryRequestTlvValue::ReceiptedMessageId(
                COctetString::from_str(&receipt_id).unwrap_or_default(),
            ))
            .push_tlv(MessageDeliveryRequestTlvValue::MessageState(
                MessageState::from(state.message_state()),
            ))
            .build();
        self.send_receipt(deliver).await;
    }

    async fn send_receipt(&self, deliver: DeliverSm) {
        let outlets: Vec<Outlet> = lock(&self.receivers).clone();
        for outlet in outlets {
            let seq = outlet.next_sequence();
            lock(&outlet.unacked).insert(seq, deliver.clone());
            let command = Command::new(CommandStatus::EsmeRok, seq, deliver.clone());
            if outlet.tx.send(command).await.is_ok() {
                return;
            }
            lock(&outlet.unacked).remove(&seq);
        }
        lock(&self.held_receipts).push_back(deliver);
    }

    /// A connection ended: its unacknowledged receipts wait for the next receiver bind.
    fn rehold(&self, outlet: &Outlet) {
        let pending: Vec<DeliverSm> = lock(&outlet.unacked).drain().map(|(_, d)| d).collect();
        if !pending.is_empty() {
            tracing::info!(smsc = %self.config.name, receipts = pending.len(), "receipts not acknowledged; held");
            lock(&self.held_receipts).extend(pending);
        }
    }
}

/// A concatenated message in progress: (source, destination, reference).
type PartsKey = (String, String, u16);

enum Flow {
    Continue,
    Close,
}

struct PendingDelivery {
    message_id: String,
    from: String,
    to: String,
    /// `None` for a part of a message whose other parts have not all arrived.
    text: Option<String>,
    want_receipt: bool,
    submitted_at: chrono::DateTime<Utc>,
    /// From the submit's relative `validity_period`.
    valid_until: Option<chrono::DateTime<Utc>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
