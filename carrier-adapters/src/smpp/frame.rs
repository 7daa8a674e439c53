//! Framing for the SMSC side: rusmpp's decoder on each complete PDU, but a PDU whose
//! body does not decode becomes a value (so the server can answer `generic_nack` with
//! the right sequence number and keep the session), not a fatal stream error.
//!
//! Only a broken length field is fatal, since framing is lost after it.

use bytes::{Buf, BytesMut};
use rusmpp::decode::DecodeWithLength;
use rusmpp::{Command, CommandStatus};
use tokio_util::codec::{Decoder, Encoder};

const HEADER_LEN: usize = 16;

/// One PDU read off the wire.
#[derive(Debug)]
#[allow(clippy::large_enum_variant)] // Commands are the common case: boxing them would cost every PDU an allocation.
pub enum Frame {
    Command(Command),
    /// The header was readable, the body was not.
    Undecodable {
        command_id: u32,
        sequence_number: u32,
        /// The command_status to answer with (`ESME_RINVCMDLEN`, `ESME_RINVCMDID`, …).
        status: CommandStatus,
        reason: String,
    },
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FrameError {
    #[error("command_length {length} is outside {HEADER_LEN}..={max}")]
    BadLength { length: usize, max: usize },
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

#[derive(Debug)]
pub struct FrameCodec {
    max_length: usize,
}

impl FrameCodec {
    pub fn new(max_length: usize) -> Self {
        Self { max_length }
    }
}

impl Default for FrameCodec {
    fn default() -> Self {
        Self::new(8192)
    }
}

impl Decoder for FrameCodec {
    type Item = Frame;
    type Error = FrameError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Frame>, FrameError> {
        if src.len() < 4 {
            return Ok(None);
        }
        let length = u32::from_be_bytes([src[0], src[1], src[2], src[3]]) as usize;
        if !(HEADER_LEN..=self.max_length).contains(&length) {
            return Err(FrameError::BadLength {
                length,
                max: self.max_length,
            });
        }
        if src.len() < length {
            src.reserve(length - src.len());
            return Ok(None);
        }
        let mut pdu = src.split_to(length);
        let command_id = u32::from_be_bytes([pdu[4], pdu[5], pdu[6], pdu[7]]);
        let sequence_number = u32::from_be_bytes([pdu[12], pdu[13], pdu[14], pdu[15]]);
        pdu.advance(4);
        match Command::decode(&mut pdu, length - 4) {
            Ok((command, _)) => Ok(Some(Frame::Command(command))),
            Err(err) => Ok(Some(Frame::Undecodable {
                command_id,
                sequence_number,
                status: match rusmpp::CommandId::from(command_id) {
                    rusmpp::CommandId::Other(_) => CommandStatus::EsmeRinvcmdid,
                    _ => CommandStatus::EsmeRinvcmdlen,
                },
                reason: err.to_string(),
            })),
        }
    }
}

impl Encoder<Command> for FrameCodec {
    type Error = FrameError;

    fn encode(&mut self, command: Command, dst: &mut BytesMut) -> Result<(), FrameError> {
        rusmpp::tokio_codec::CommandCodec::new()
            .encode(command, dst)
            .map_err(|e| match e {
                rusmpp::tokio_codec::EncodeError::Io(io) => FrameError::Io(io),
                other => FrameError::Io(std::io::Error::other(other.to_string())),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rusmpp::Pdu;

    fn encode(command: Command) -> BytesMut {
        let mut buf = BytesMut::new();
        FrameCodec::default().encode(command, &mut buf).unwrap();
        buf
    }

    #[test]
    fn decodes_at_every_split_point() {
        let wire = encode(Command::new(CommandStatus::EsmeRok, 7, Pdu::EnquireLink));
        let mut twice = wire.clone();
        twice.extend_from_slice(&wire);
        for split in 0..=twice.len() {
            let mut codec = FrameCodec::default();
            let mut buf = BytesMut::from(&twice[..split]);
            let mut got = Vec::new();
            while let Some(f) = codec.decode(&mut buf).unwrap() {
                got.push(f);
            }
            buf.extend_from_slice(&twice[split..]);
            while let Some(f) = codec.decode(&mut buf).unwrap() {
                got.push(f);
            }
            assert_eq!(got.len(), 2, "split at {split}");
            assert!(buf.is_empty());
        }
    }

    #[test]
    fn bad_body_keeps_framing() {
        // bind_transmitter (0x00000002) whose body is one octet without a NUL terminator.
        let mut buf = BytesMut::new();
        buf.extend_from_slice(&17u32.to_be_bytes());
        buf.extend_from_slice(&2u32.to_be_bytes());
        buf.extend_from_slice(&0u32.to_be_bytes());
        buf.extend_from_slice(&42u32.to_be_bytes());
        buf.extend_from_slice(b"x");
        buf.extend_from_slice(&encode(Command::new(
            CommandStatus::EsmeRok,
            43,
            Pdu::EnquireLink,
        )));
        let mut codec = FrameCodec::default();
        match codec.decode(&mut buf).unwrap() {
            Some(Frame::Undecodable {
                command_id: 2,
                sequence_number: 42,
                ..
            }) => {}
            other => panic!("unexpected {other:?}"),
        }
        match codec.decode(&mut buf).unwrap() {
            Some(Frame::Command(c)) => assert_eq!(c.sequence_number(), 43),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn bad_length_is_fatal() {
        let mut buf = BytesMut::from(&[0u8, 0, 0, 8, 0, 0, 0, 0x15][..]);
        assert!(matches!(
            FrameCodec::default().decode(&mut buf),
            Err(FrameError::BadLength { length: 8, .. })
        ));
        let mut buf = BytesMut::from(&[0x7fu8, 0, 0, 0][..]);
        assert!(FrameCodec::default().decode(&mut buf).is_err());
    }
}
