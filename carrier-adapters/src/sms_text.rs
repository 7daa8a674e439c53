//! Text to SMS payload and back: GSM 03.38 default alphabet (one octet per septet,
//! unpacked, as SMPP carries it with data_coding 0) or UCS2 (UTF-16BE, data_coding 8).
//!
//! Vietnamese with diacritics is not representable in GSM-7, so it goes out as UCS2.

/// GSM 03.38 default alphabet, indexed by septet value.
const GSM7_BASIC: [char; 128] = [
    '@', '£', '$', '¥', 'è', 'é', 'ù', 'ì', 'ò', 'Ç', '\n', 'Ø', 'ø', '\r', 'Å', 'å', //
    'Δ', '_', 'Φ', 'Γ', 'Λ', 'Ω', 'Π', 'Ψ', 'Σ', 'Θ', 'Ξ', '\u{1b}', 'Æ', 'æ', 'ß', 'É', //
    ' ', '!', '"', '#', '¤', '%', '&', '\'', '(', ')', '*', '+', ',', '-', '.', '/', //
    '0', '1', '2', '3', '4', '5', '6', '7', '8', '9', ':', ';', '<', '=', '>', '?', //
    '¡', 'A', 'B', 'C', 'D', 'E', 'F', 'G', 'H', 'I', 'J', 'K', 'L', 'M', 'N', 'O', //
    'P', 'Q', 'R', 'S', 'T', 'U', 'V', 'W', 'X', 'Y', 'Z', 'Ä', 'Ö', 'Ñ', 'Ü', '§', //
    '¿', 'a', 'b', 'c', 'd', 'e', 'f', 'g', 'h', 'i', 'j', 'k', 'l', 'm', 'n', 'o', //
    'p', 'q', 'r', 's', 't', 'u', 'v', 'w', 'x', 'y', 'z', 'ä', 'ö', 'ñ', 'ü', 'à', //
];

/// GSM 03.38 extension table: escape (0x1B) followed by these septets.
const GSM7_EXTENSION: [(u8, char); 10] = [
    (0x0A, '\u{c}'),
    (0x14, '^'),
    (0x28, '{'),
    (0x29, '}'),
    (0x2F, '\\'),
    (0x3C, '['),
    (0x3D, '~'),
    (0x3E, ']'),
    (0x40, '|'),
    (0x65, '€'),
];

const ESCAPE: u8 = 0x1B;

/// SMPP data_coding values we send and understand.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// data_coding 0: SMSC default alphabet, GSM 03.38 septets one per octet.
    Gsm7,
    /// data_coding 8: UCS2, big-endian.
    Ucs2,
}

impl Encoding {
    pub fn data_coding(self) -> u8 {
        match self {
            Encoding::Gsm7 => 0x00,
            Encoding::Ucs2 => 0x08,
        }
    }

    /// How many characters (septets for GSM-7, code units for UCS2) fit in one SMS
    /// without concatenation.
    pub fn single_part_capacity(self) -> usize {
        match self {
            Encoding::Gsm7 => 160,
            Encoding::Ucs2 => 70,
        }
    }
}

/// A text ready for `short_message` / `message_payload`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncodedText {
    pub encoding: Encoding,
    pub bytes: Vec<u8>,
    /// Length in the encoding's units (septets or UTF-16 code units).
    pub units: usize,
}

impl EncodedText {
    /// Whether the text fits one SMS without concatenation.
    pub fn fits_single_part(&self) -> bool {
        self.units <= self.encoding.single_part_capacity()
    }
}

fn gsm7_septets(ch: char) -> Option<(u8, Option<u8>)> {
    if let Some(pos) = GSM7_BASIC.iter().position(|&c| c == ch) {
        if pos as u8 != ESCAPE {
            return Some((pos as u8, None));
        }
    }
    GSM7_EXTENSION
        .iter()
        .find(|(_, c)| *c == ch)
        .map(|(code, _)| (ESCAPE, Some(*code)))
}

/// Encodes in GSM-7 when every character is in the default alphabet, otherwise UCS2.
pub fn encode(text: &str) -> EncodedText {
    let mut gsm = Vec::with_capacity(text.len());
    for ch in text.chars() {
        match gsm7_septets(ch) {
            Some((first, second)) => {
                gsm.push(first);
                gsm.extend(second);
            }
            None => return encode_ucs2(text),
        }
    }
    EncodedText {
        encoding: Encoding::Gsm7,
        units: gsm.len(),
        bytes: gsm,
    }
}

pub fn encode_ucs2(text: &str) -> EncodedText {
    let units: Vec<u16> = text.encode_utf16().collect();
    EncodedText {
        encoding: Encoding::Ucs2,
        units: units.len(),
        bytes: units.iter().flat_map(|u| u.to_be_bytes()).collect(),
    }
}

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum DecodeTextError {
    #[error("UCS2 payload has an odd length ({0} octets)")]
    OddUcs2Length(usize),
    #[error("GSM-7 octet {0:#04x} is above 0x7F")]
    InvalidSeptet(u8),
    #[error("data_coding {0:#04x} is not supported")]
    UnsupportedDataCoding(u8),
}

/// Decodes a `short_message` given its SMPP data_coding.
pub fn decode(data_coding: u8, bytes: &[u8]) -> Result<String, DecodeTextError> {
    match data_coding {
        0x00 => decode_gsm7(bytes),
        // IA5 (ASCII) and Latin-1: every octet is its own code point.
        0x01 | 0x03 => Ok(bytes.iter().map(|&b| b as char).collect()),
        0x08 => {
            if bytes.len() % 2 != 0 {
                return Err(DecodeTextError::OddUcs2Length(bytes.len()));
            }
            let units = bytes
                .chunks_exact(2)
                .map(|c| u16::from_be_bytes([c[0], c[1]]));
            Ok(char::decode_utf16(units)
                .map(|r| r.unwrap_or(char::REPLACEMENT_CHARACTER))
                .collect())
        }
        other => Err(DecodeTextError::UnsupportedDataCoding(other)),
    }
}

fn decode_gsm7(bytes: &[u8]) -> Result<String, DecodeTextError> {
    let mut out = String::with_capacity(bytes.len());
    let mut iter = bytes.iter().copied();
    while let Some(b) = iter.next() {
        if b > 0x7F {
            return Err(DecodeTextError::InvalidSeptet(b));
        }
        if b == ESCAPE {
            match iter.next() {
                Some(code) => {
                    let ch = GSM7_EXTENSION
                        .iter()
                        .find(|(c, _)| *c == code)
                        .map(|(_, ch)| *ch)
                        // Unknown extension: the spec says show the basic character.
                        .unwrap_or(GSM7_BASIC[(code & 0x7F) as usize]);
                    out.push(ch);
                }
                None => out.push(' '),
            }
        } else {
            out.push(GSM7_BASIC[b as usize]);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn plain_text_goes_as_gsm7() {
        let e = encode("Your code is 123456 {valid 5 min}");
        assert_eq!(e.encoding, Encoding::Gsm7);
        assert_eq!(e.units, 35);
        assert_eq!(
            decode(0, &e.bytes).unwrap(),
            "Your code is 123456 {valid 5 min}"
        );
    }

    #[test]
    fn vietnamese_goes_as_ucs2() {
        let text = "Mã OTP đăng ký Cổng DVC: 123456";
        let e = encode(text);
        assert_eq!(e.encoding, Encoding::Ucs2);
        assert_eq!(e.bytes.len(), text.chars().count() * 2);
        assert_eq!(&e.bytes[..4], &[0x00, b'M', 0x00, 0xE3]);
        assert_eq!(decode(8, &e.bytes).unwrap(), text);
    }

    #[test]
    fn bad_payloads_are_errors() {
        assert_eq!(
            decode(8, &[0, 1, 2]),
            Err(DecodeTextError::OddUcs2Length(3))
        );
        assert_eq!(
            decode(0, &[0x80]),
            Err(DecodeTextError::InvalidSeptet(0x80))
        );
        assert_eq!(
            decode(0x04, b"x"),
            Err(DecodeTextError::UnsupportedDataCoding(4))
        );
    }

    proptest! {
        #[test]
        fn any_text_round_trips(text in "\\PC{0,80}") {
            let e = encode(&text);
            prop_assert_eq!(decode(e.encoding.data_coding(), &e.bytes).unwrap(), text);
        }
    }
}
