//! Our PDU handling on top of rusmpp's decoder, on arbitrary bytes: the SMSC framing
//! (never panics, never loses framing on a bad body), receipt extraction from any
//! deliver_sm, and the receipt text parser.
#![no_main]

use bytes::BytesMut;
use carrier_adapters::smpp::pdu::delivery_report;
use carrier_adapters::smpp::frame::{Frame, FrameCodec};
use carrier_adapters::{receipt, sms_text};
use libfuzzer_sys::fuzz_target;
use rusmpp::Pdu;
use tokio_util::codec::Decoder;

fuzz_target!(|data: &[u8]| {
    let mut codec = FrameCodec::new(4096);
    let mut buf = BytesMut::from(data);
    let mut consumed_before = buf.len();
    while let Ok(Some(frame)) = codec.decode(&mut buf) {
        // Every frame consumes input: no endless loop on a bad body.
        assert!(buf.len() < consumed_before);
        consumed_before = buf.len();
        if let Frame::Command(command) = frame {
            if let Some(Pdu::DeliverSm(deliver)) = command.pdu() {
                let _ = delivery_report(deliver);
            }
            if let Some(Pdu::SubmitSm(submit)) = command.pdu() {
                let dc: u8 = submit.data_coding.into();
                let _ = sms_text::decode(dc, submit.short_message().as_ref());
            }
        }
    }
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = receipt::parse(text);
    }
});
