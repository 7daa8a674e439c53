//! The simulator's SMSCs driven by a plain SMPP client over real TCP: rusmpp's codec and
//! hand-written PDUs, no gateway code, as any other ESME would.

use std::str::FromStr;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use rusmpp::pdus::{BindReceiver, BindTransmitter, SubmitSm};
use rusmpp::tlvs::TlvValue;
use rusmpp::tokio_codec::CommandCodec;
use rusmpp::types::{COctetString, OctetString};
use rusmpp::values::{DataCoding, EsmClass, InterfaceVersion, Npi, RegisteredDelivery, Ton};
use rusmpp::{Command, CommandStatus, Pdu};
use simulator::{RunningSimulator, SimConfig};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio_util::codec::Framed;
use tokio_util::sync::CancellationToken;

struct Client {
    framed: Framed<TcpStream, CommandCodec>,
    seq: u32,
}

impl Client {
    async fn connect(sim: &RunningSimulator, smsc: &str) -> Client {
        let stream = TcpStream::connect(sim.smsc_addr(smsc).unwrap())
            .await
            .unwrap();
        Client {
            framed: Framed::new(stream, CommandCodec::new()),
            seq: 0,
        }
    }

    async fn send(&mut self, pdu: impl Into<Pdu>) -> u32 {
        self.seq += 1;
        self.framed
            .send(Command::new(CommandStatus::EsmeRok, self.seq, pdu.into()))
            .await
            .unwrap();
        self.seq
    }

    async fn send_raw(&mut self, bytes: &[u8]) {
        self.framed.get_mut().write_all(bytes).await.unwrap();
    }

    async fn recv(&mut self) -> Command {
        tokio::time::timeout(Duration::from_secs(5), self.framed.next())
            .await
            .expect("a PDU within 5 s")
            .expect("connection open")
            .expect("decodable PDU")
    }

    async fn bind_tx(&mut self, system_id: &str, password: &str) -> Command {
        let seq = self
            .send(
                BindTransmitter::builder()
                    .system_id(COctetString::from_str(system_id).unwrap())
                    .password(COctetString::from_str(password).unwrap())
                    .interface_version(InterfaceVersion::Smpp3_4)
                    .build(),
            )
            .await;
        let resp = self.recv().await;
        assert_eq!(resp.sequence_number(), seq);
        assert_eq!(resp.id(), rusmpp::CommandId::BindTransmitterResp);
        resp
    }
}

async fn sim() -> (RunningSimulator, CancellationToken) {
    let shutdown = CancellationToken::new();
    let sim = simulator::start(
        SimConfig::ephemeral(Duration::from_millis(20)),
        shutdown.clone(),
    )
    .await
    .unwrap();
    (sim, shutdown)
}

fn submit(dest: &str, text: &str) -> SubmitSm {
    let ucs2: Vec<u8> = text.encode_utf16().flat_map(|u| u.to_be_bytes()).collect();
    SubmitSm::builder()
        .source_addr_ton(Ton::Alphanumeric)
        .source_addr(COctetString::from_str("DVCQG").unwrap())
        .dest_addr_ton(Ton::International)
        .dest_addr_npi(Npi::Isdn)
        .destination_addr(COctetString::from_str(dest).unwrap())
        .esm_class(EsmClass::from(0u8))
        .registered_delivery(RegisteredDelivery::from(1u8))
        .data_coding(DataCoding::Ucs2)
        .short_message(OctetString::from_slice(&ucs2).unwrap())
        .build()
}

#[tokio::test]
async fn bind_checks_credentials() {
    let (sim, _stop) = sim().await;
    let mut c = Client::connect(&sim, "viettel").await;
    assert_eq!(
        c.bind_tx("viettel", "wrong").await.status,
        CommandStatus::EsmeRinvpaswd
    );
    assert_eq!(
        c.bind_tx("mobifone", "sim-pass").await.status,
        CommandStatus::EsmeRinvsysid
    );
    assert_eq!(
        c.bind_tx("viettel", "sim-pass").await.status,
        CommandStatus::EsmeRok
    );
    assert_eq!(
        c.bind_tx("viettel", "sim-pass").await.status,
        CommandStatus::EsmeRalybnd
    );
}

#[tokio::test]
async fn submit_before_bind_and_to_foreign_networks_is_refused() {
    let (sim, _stop) = sim().await;
    let mut c = Client::connect(&sim, "viettel").await;
    c.send(submit("84971234567", "x")).await;
    assert_eq!(c.recv().await.status, CommandStatus::EsmeRinvbndsts);
    c.bind_tx("viettel", "sim-pass").await;
    // A VinaPhone number is not Viettel's to deliver.
    c.send(submit("84828123088", "x")).await;
    assert_eq!(c.recv().await.status, CommandStatus::EsmeRinvdstadr);
    c.send(submit("12345", "x")).await;
    assert_eq!(c.recv().await.status, CommandStatus::EsmeRinvdstadr);
}

#[tokio::test]
async fn unknown_and_broken_pdus_get_generic_nack_and_the_session_survives() {
    let (sim, _stop) = sim().await;
    let mut c = Client::connect(&sim, "vinaphone").await;
    // command_id 0x00000099 does not exist.
    let mut unknown = Vec::new();
    for word in [16u32, 0x0000_0099, 0, 77] {
        unknown.extend_from_slice(&word.to_be_bytes());
    }
    c.send_raw(&unknown).await;
    let nack = c.recv().await;
    assert_eq!(nack.id(), rusmpp::CommandId::GenericNack);
    assert_eq!(nack.status, CommandStatus::EsmeRinvcmdid);
    assert_eq!(nack.sequence_number(), 77);
    // A bind_transmitter whose body is cut short.
    let mut broken = Vec::new();
    for word in [18u32, 0x0000_0002, 0, 78] {
        broken.extend_from_slice(&word.to_be_bytes());
    }
    broken.extend_from_slice(b"ab");
    c.send_raw(&broken).await;
    let nack = c.recv().await;
    assert_eq!(nack.id(), rusmpp::CommandId::GenericNack);
    assert_eq!(nack.sequence_number(), 78);
    // Still talking.
    let seq = c.send(Pdu::EnquireLink).await;
    let resp = c.recv().await;
    assert_eq!(resp.id(), rusmpp::CommandId::EnquireLinkResp);
    assert_eq!(resp.sequence_number(), seq);
    let seq = c.send(Pdu::Unbind).await;
    let resp = c.recv().await;
    assert_eq!(resp.id(), rusmpp::CommandId::UnbindResp);
    assert_eq!(resp.sequence_number(), seq);
}

#[tokio::test]
async fn message_reaches_the_handset_and_the_receipt_reaches_a_receiver_bind() {
    let (sim, _stop) = sim().await;
    let mut tx = Client::connect(&sim, "mobifone").await;
    tx.bind_tx("mobifone", "sim-pass").await;
    let text = "Mã OTP đăng nhập Cổng DVC: 482910. Hiệu lực 5 phút. Không chia sẻ.";
    tx.send(submit("84901234567", text)).await;
    let resp = tx.recv().await;
    assert_eq!(resp.status, CommandStatus::EsmeRok);
    let message_id = match resp.pdu() {
        Some(Pdu::SubmitSmResp(r)) => r.message_id().as_str().to_owned(),
        other => panic!("unexpected {other:?}"),
    };
    // The receipt waits for a receiver bind of the same system_id.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut rx = Client::connect(&sim, "mobifone").await;
    rx.send(
        BindReceiver::builder()
            .system_id(COctetString::from_str("mobifone").unwrap())
            .password(COctetString::from_str("sim-pass").unwrap())
            .interface_version(InterfaceVersion::Smpp5_0)
            .build(),
    )
    .await;
    assert_eq!(rx.recv().await.status, CommandStatus::EsmeRok);
    let deliver = rx.recv().await;
    let Some(Pdu::DeliverSm(d)) = deliver.pdu() else {
        panic!("expected deliver_sm, got {deliver:?}");
    };
    assert_eq!(u8::from(d.esm_class), 0x04);
    let receipt = String::from_utf8_lossy(d.short_message().as_ref()).into_owned();
    let parsed = carrier_adapters::receipt::parse(&receipt).unwrap();
    assert_eq!(parsed.id, message_id);
    assert_eq!(
        parsed.state,
        carrier_adapters::receipt::ReceiptState::Delivered
    );
    assert!(d.tlvs().iter().any(|t| matches!(
        t.value(),
        Some(TlvValue::ReceiptedMessageId(id)) if id.as_str() == message_id
    )));

    let messages: serde_json::Value = reqwest::get(format!(
        "http://{}/handsets/0901234567/messages",
        sim.http_addr
    ))
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    assert_eq!(messages[0]["text"], text);
    assert_eq!(messages[0]["from"], "DVCQG");
    assert_eq!(messages[0]["carrier"], "mobifone");
    assert_eq!(messages[0]["smsc_message_id"], message_id);
}

#[tokio::test]
async fn handset_api_refuses_bad_numbers() {
    let (sim, _stop) = sim().await;
    let resp = reqwest::get(format!("http://{}/handsets/12ab/messages", sim.http_addr))
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    assert_eq!(resp.headers()["content-type"], "application/problem+json");
    let empty: serde_json::Value = reqwest::get(format!(
        "http://{}/handsets/84971234567/messages",
        sim.http_addr
    ))
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    assert_eq!(empty, serde_json::json!([]));
}
