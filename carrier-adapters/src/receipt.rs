//! SMPP delivery receipts: the de-facto text format of SMPP 3.4 Appendix B
//! (`id:… sub:… dlvrd:… submit date:… done date:… stat:… err:… text:…`), read and written.
//!
//! Pure code: bytes in, values out.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// The final (or intermediate) state a receipt reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReceiptState {
    Delivered,
    Undeliverable,
    Expired,
    Rejected,
    Deleted,
    Unknown,
    Accepted,
    Enroute,
}

impl ReceiptState {
    /// The 7-letter code used in receipt text.
    pub fn code(self) -> &'static str {
        match self {
            ReceiptState::Delivered => "DELIVRD",
            ReceiptState::Undeliverable => "UNDELIV",
            ReceiptState::Expired => "EXPIRED",
            ReceiptState::Rejected => "REJECTD",
            ReceiptState::Deleted => "DELETED",
            ReceiptState::Unknown => "UNKNOWN",
            ReceiptState::Accepted => "ACCEPTD",
            ReceiptState::Enroute => "ENROUTE",
        }
    }

    /// The name we store and show (`delivered`, `undeliverable`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            ReceiptState::Delivered => "delivered",
            ReceiptState::Undeliverable => "undeliverable",
            ReceiptState::Expired => "expired",
            ReceiptState::Rejected => "rejected",
            ReceiptState::Deleted => "deleted",
            ReceiptState::Unknown => "unknown",
            ReceiptState::Accepted => "accepted",
            ReceiptState::Enroute => "enroute",
        }
    }

    /// The SMPP `message_state` TLV value (SMPP 5.0 §4.8.4.37).
    pub fn message_state(self) -> u8 {
        match self {
            ReceiptState::Enroute => 1,
            ReceiptState::Delivered => 2,
            ReceiptState::Expired => 3,
            ReceiptState::Deleted => 4,
            ReceiptState::Undeliverable => 5,
            ReceiptState::Accepted => 6,
            ReceiptState::Unknown => 7,
            ReceiptState::Rejected => 8,
        }
    }

    pub fn from_message_state(value: u8) -> Option<ReceiptState> {
        Some(match value {
            1 => ReceiptState::Enroute,
            2 => ReceiptState::Delivered,
            3 => ReceiptState::Expired,
            4 => ReceiptState::Deleted,
            5 => ReceiptState::Undeliverable,
            6 => ReceiptState::Accepted,
            7 => ReceiptState::Unknown,
            8 => ReceiptState::Rejected,
            _ => return None,
        })
    }

    /// Whether no further receipt is expected after this one.
    pub fn is_final(self) -> bool {
        !matches!(self, ReceiptState::Enroute | ReceiptState::Accepted)
    }

    fn from_code(code: &str) -> Option<ReceiptState> {
        let code = code.trim();
        [
            ReceiptState::Delivered,
            ReceiptState::Undeliverable,
            ReceiptState::Expired,
            ReceiptState::Rejected,
            ReceiptState::Deleted,
            ReceiptState::Unknown,
            ReceiptState::Accepted,
            ReceiptState::Enroute,
        ]
        .into_iter()
        .find(|s| s.code().eq_ignore_ascii_case(code))
    }
}

impl fmt::Display for ReceiptState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ReceiptState {
    type Err = ();

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ReceiptState::from_code(s)
            .or_else(|| {
                [
                    ReceiptState::Delivered,
                    ReceiptState::Undeliverable,
                    ReceiptState::Expired,
                    ReceiptState::Rejected,
                    ReceiptState::Deleted,
                    ReceiptState::Unknown,
                    ReceiptState::Accepted,
                    ReceiptState::Enroute,
                ]
                .into_iter()
                .find(|st| st.as_str() == s)
            })
            .ok_or(())
    }
}

/// A delivery receipt read from a `deliver_sm` text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceiptText {
    pub id: String,
    pub state: ReceiptState,
    /// Network or SMSC specific error code (`err:`), as written.
    pub error: Option<String>,
    pub submitted: Option<String>,
    pub done: Option<String>,
}

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum ReceiptParseError {
    #[error("receipt text has no id: field")]
    MissingId,
    #[error("receipt text has no stat: field")]
    MissingState,
    #[error("receipt state {0:?} is not one of DELIVRD, UNDELIV, EXPIRED, REJECTD, DELETED, UNKNOWN, ACCEPTD, ENROUTE")]
    UnknownState(String),
}

/// Finds `key` at the start of the text or after whitespace, case-insensitively.
fn field_start(lower: &str, key: &str) -> Option<usize> {
    let mut from = 0;
    while let Some(pos) = lower[from..].find(key) {
        let at = from + pos;
        if at == 0 || lower.as_bytes()[at - 1].is_ascii_whitespace() {
            return Some(at + key.len());
        }
        from = at + key.len();
    }
    None
}

fn field<'a>(text: &'a str, lower: &str, key: &str) -> Option<&'a str> {
    // `text:` is last and free-form: other fields are only looked for before it.
    let text_at = field_start(lower, "text:");
    if key == "text:" {
        return text_at.map(|start| &text[start..]);
    }
    let head_end = text_at.map(|s| s - "text:".len()).unwrap_or(lower.len());
    let start = field_start(&lower[..head_end], key)?;
    let end = text[start..head_end]
        .find(char::is_whitespace)
        .map(|i| start + i)
        .unwrap_or(head_end);
    Some(text[start..end].trim())
}

/// Parses the receipt text of a `deliver_sm` with esm_class 0x04.
pub fn parse(text: &str) -> Result<ReceiptText, ReceiptParseError> {
    let lower = text.to_ascii_lowercase();
    let id = field(text, &lower, "id:")
        .filter(|s| !s.is_empty())
        .ok_or(ReceiptParseError::MissingId)?;
    let stat = field(text, &lower, "stat:")
        .filter(|s| !s.is_empty())
        .ok_or(ReceiptParseError::MissingState)?;
    let state = ReceiptState::from_code(stat)
        .ok_or_else(|| ReceiptParseError::UnknownState(stat.into()))?;
    let non_empty = |s: &str| (!s.is_empty()).then(|| s.to_owned());
    Ok(ReceiptText {
        id: id.to_owned(),
        state,
        error: field(text, &lower, "err:").and_then(non_empty),
        submitted: field(text, &lower, "submit date:").and_then(non_empty),
        done: field(text, &lower, "done date:").and_then(non_empty),
    })
}

/// Writes the receipt text an SMSC sends (the simulator uses this).
pub fn format(
    id: &str,
    state: ReceiptState,
    error: u16,
    submit_date: &str,
    done_date: &str,
    text: &str,
) -> String {
    let delivered = u8::from(state == ReceiptState::Delivered);
    let excerpt: String = text.chars().take(20).collect();
    format!(
        "id:{id} sub:001 dlvrd:{delivered:03} submit date:{submit_date} done date:{done_date} stat:{} err:{error:03} text:{excerpt}",
        state.code()
    )
}

/// Canonical form of an SMSC message id so that `0A1F`, `a1f` and `00a1f` match:
/// trimmed, lower-case, leading zeros removed.
pub fn normalise_message_id(id: &str) -> String {
    let lower = id.trim().to_ascii_lowercase();
    let stripped = lower.trim_start_matches('0');
    if stripped.is_empty() {
        "0".to_owned()
    } else {
        stripped.to_owned()
    }
}

/// The other forms an SMSC may write the same id in (normalised): the decimal value of
/// a hex id and the hex form of a decimal id, for SMSCs that answer `submit_sm` in one
/// base and write receipts in the other.
pub fn alternate_message_ids(id: &str) -> (Option<String>, Option<String>) {
    let id = normalise_message_id(id);
    let as_decimal = u128::from_str_radix(&id, 16)
        .ok()
        .map(|n| n.to_string())
        .filter(|d| *d != id);
    let as_hex = id
        .bytes()
        .all(|b| b.is_ascii_digit())
        .then(|| id.parse::<u128>().ok())
        .flatten()
        .map(|n| format!("{n:x}"))
        .filter(|h| *h != id);
    (as_decimal, as_hex)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_the_appendix_b_format() {
        let r = parse("id:0123456789 sub:001 dlvrd:001 submit date:2611270805 done date:2611270806 stat:DELIVRD err:000 text:Ma OTP dang ky 12").unwrap();
        assert_eq!(r.id, "0123456789");
        assert_eq!(r.state, ReceiptState::Delivered);
        assert_eq!(r.error.as_deref(), Some("000"));
        assert_eq!(r.submitted.as_deref(), Some("2611270805"));
        assert_eq!(r.done.as_deref(), Some("2611270806"));
    }

    #[test]
    fn tolerates_case_order_and_missing_fields() {
        let r = parse("Stat:undeliv ID:ab12 Err:0x0b").unwrap();
        assert_eq!(r.id, "ab12");
        assert_eq!(r.state, ReceiptState::Undeliverable);
        assert_eq!(r.error.as_deref(), Some("0x0b"));
        assert_eq!(r.submitted, None);
    }

    #[test]
    fn text_field_may_contain_field_names() {
        let r = parse("id:77 stat:EXPIRED text:fake stat:DELIVRD").unwrap();
        assert_eq!(r.state, ReceiptState::Expired);
    }

    #[test]
    fn every_state_code() {
        for (code, state) in [
            ("DELIVRD", ReceiptState::Delivered),
            ("UNDELIV", ReceiptState::Undeliverable),
            ("EXPIRED", ReceiptState::Expired),
            ("REJECTD", ReceiptState::Rejected),
            ("DELETED", ReceiptState::Deleted),
            ("UNKNOWN", ReceiptState::Unknown),
            ("ACCEPTD", ReceiptState::Accepted),
            ("ENROUTE", ReceiptState::Enroute),
        ] {
            assert_eq!(parse(&format!("id:1 stat:{code}")).unwrap().state, state);
            assert_eq!(
                ReceiptState::from_message_state(state.message_state()),
                Some(state)
            );
        }
    }

    #[test]
    fn bad_receipts_are_errors() {
        assert_eq!(parse("stat:DELIVRD"), Err(ReceiptParseError::MissingId));
        assert_eq!(parse("id:1 err:000"), Err(ReceiptParseError::MissingState));
        assert_eq!(parse("id: stat:DELIVRD"), Err(ReceiptParseError::MissingId));
        assert_eq!(
            parse("id:1 stat:GONE"),
            Err(ReceiptParseError::UnknownState("GONE".into()))
        );
        assert_eq!(parse(""), Err(ReceiptParseError::MissingId));
    }

    #[test]
    fn message_ids_have_their_other_base() {
        assert_eq!(
            alternate_message_ids("00001C2806CD0000"),
            (Some("30958238367744".into()), None)
        );
        assert_eq!(
            alternate_message_ids("30958238367744"),
            (
                Some(
                    u128::from_str_radix("30958238367744", 16)
                        .unwrap()
                        .to_string()
                ),
                Some("1c2806cd0000".into())
            )
        );
        assert_eq!(alternate_message_ids("not-an-id"), (None, None));
    }

    #[test]
    fn message_ids_normalise() {
        assert_eq!(normalise_message_id("000A1F"), "a1f");
        assert_eq!(normalise_message_id("a1f "), "a1f");
        assert_eq!(normalise_message_id("0000"), "0");
    }

    proptest! {
        #[test]
        fn format_then_parse_round_trips(
            id in "[0-9A-Fa-f]{1,20}",
            state_idx in 0usize..8,
            err in 0u16..1000,
            text in "\\PC{0,30}",
        ) {
            let state = [
                ReceiptState::Delivered, ReceiptState::Undeliverable, ReceiptState::Expired,
                ReceiptState::Rejected, ReceiptState::Deleted, ReceiptState::Unknown,
                ReceiptState::Accepted, ReceiptState::Enroute,
            ][state_idx];
            let written = format(&id, state, err, "2611270805", "2611270806", &text);
            let parsed = parse(&written).unwrap();
            prop_assert_eq!(parsed.id, id);
            prop_assert_eq!(parsed.state, state);
            prop_assert_eq!(parsed.error, Some(format!("{err:03}")));
        }

        #[test]
        fn parse_never_panics(text in "\\PC{0,200}") {
            let _ = parse(&text);
        }
    }
}
