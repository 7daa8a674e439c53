//! The PDUs the ESME writes and reads, built and read without a connection: a
//! `submit_sm` for one part of an SMS, SMPP's relative validity format and a delivery
//! receipt out of a `deliver_sm`. Pure, and what the `smpp_pdu` fuzz target drives.

use std::str::FromStr;
use std::time::Duration;

use rusmpp::pdus::{DeliverSm, SubmitSm};
use rusmpp::tlvs::TlvValue;
use rusmpp::types::{COctetString, EmptyOrFullCOctetString, OctetString};
use rusmpp::values::{DataCoding, EsmClass, Npi, RegisteredDelivery, ServiceType, Ton};

use crate::receipt::{self, ReceiptState};
use crate::sms_text::EncodedText;

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
    /// The latest a wait for the brandname's limit (`SenderTps`) may end: past it nothing
    /// of the message is sent ([`SubmitError::SenderBusy`]), so that a caller holding
    /// the message on a lease gives it back before the lease ends. `None`: no bound.
    pub wait_until: Option<std::time::Instant>,
}
/// A delivery receipt as read off a `deliver_sm`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryReport {
    /// As the SMSC wrote it (from `receipted_message_id`, else from the text).
    pub message_id: String,
    pub state: ReceiptState,
    pub error: Option<String>,
}
/// A field of an SMS that SMPP cannot carry (too long, a NUL inside, …).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Unencodable(pub String);

fn cstr<const MIN: usize, const MAX: usize>(
    value: &str,
    field: &str,
) -> Result<COctetString<MIN, MAX>, Unencodable> {
    COctetString::from_str(value).map_err(|e| Unencodable(format!("{field} {value:?}: {e}")))
}

/// One `submit_sm` for one part of `sms` (`udhi`: the payload starts with a UDH), valid
/// for `validity` when given.
pub(super) fn build_submit_sm(
    sms: &OutgoingSms,
    payload: &[u8],
    udhi: bool,
    validity: Option<Duration>,
) -> Result<SubmitSm, Unencodable> {
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
                .map_err(|e| Unencodable(format!("validity_period: {e}")))?,
            None => EmptyOrFullCOctetString::empty(),
        })
        .data_coding(DataCoding::from(sms.text.encoding.data_coding()))
        .short_message(OctetString::from_slice(payload).map_err(|e| Unencodable(e.to_string()))?)
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

#[cfg(test)]
mod tests {
    use super::*;

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
