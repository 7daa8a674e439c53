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

/// Characters (septets or UTF-16 units) per part of a concatenated message: the
/// 6-octet UDH takes the rest.
fn part_capacity(encoding: Encoding) -> usize {
    match encoding {
        Encoding::Gsm7 => 153,
        Encoding::Ucs2 => 67,
    }
}

/// Splits a text into `short_message` payloads: one without a header when it fits,
/// else parts each led by a concatenation UDH (IEI 0x00, 8-bit reference `reference`).
/// Never splits a GSM-7 escape from its character nor a UTF-16 surrogate pair.
pub fn split(text: &EncodedText, reference: u8) -> Vec<Vec<u8>> {
    if text.fits_single_part() {
        return vec![text.bytes.clone()];
    }
    let capacity = part_capacity(text.encoding);
    let mut chunks: Vec<&[u8]> = Vec::new();
    let mut rest: &[u8] = &text.bytes;
    while !rest.is_empty() {
        let mut take = match text.encoding {
            Encoding::Gsm7 => capacity.min(rest.len()),
            Encoding::Ucs2 => (capacity * 2).min(rest.len()),
        };
        if take < rest.len() {
            match text.encoding {
                // An escape as the last septet belongs with the next part.
                Encoding::Gsm7 if rest[take - 1] == ESCAPE => take -= 1,
                // A high surrogate as the last unit belongs with its low surrogate.
                Encoding::Ucs2 if (0xD8..=0xDB).contains(&rest[take - 2]) => take -= 2,
                _ => {}
            }
        }
        chunks.push(&rest[..take]);
        rest = &rest[take..];
    }
    let total = chunks.len().min(255) as u8;
    chunks
        .iter()
        .enumerate()
        .map(|(i, chunk)| {
            let mut part = vec![0x05, 0x00, 0x03, reference, total, (i + 1) as u8];
            part.extend_from_slice(chunk);
            part
        })
        .collect()
}

/// Which part of a concatenated message a payload is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Concatenation {
    pub reference: u16,
    pub total: u8,
    /// 1-based.
    pub seq: u8,
}

/// A concatenation header read from the front of a payload, and the payload after the
/// whole UDH.
pub fn concatenation(payload: &[u8]) -> Option<(Concatenation, &[u8])> {
    let udhl = *payload.first()? as usize;
    let header = payload.get(1..=udhl)?;
    let body = &payload[udhl + 1..];
    let mut i = 0;
    while i + 1 < header.len() {
        let (iei, len) = (header[i], header[i + 1] as usize);
        let data = header.get(i + 2..i + 2 + len)?;
        match (iei, data) {
            (0x00, [r, total, seq]) => {
                return Some((
                    Concatenation {
                        reference: u16::from(*r),
                        total: *total,
                        seq: *seq,
                    },
                    body,
                ))
            }
            (0x08, [r1, r2, total, seq]) => {
                return Some((
                    Concatenation {
                        reference: u16::from_be_bytes([*r1, *r2]),
                        total: *total,
                        seq: *seq,
                    },
                    body,
                ))
            }
            _ => {}
        }
        i += 2 + len;
    }
    None
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

    #[test]
    fn long_texts_split_with_headers_and_join_back() {
        let text: String = "Mã OTP đăng nhập Cổng Dịch vụ công quốc gia. ".repeat(4);
        let e = encode(&text);
        let parts = split(&e, 7);
        assert_eq!(parts.len(), 3);
        let mut joined = Vec::new();
        for (i, p) in parts.iter().enumerate() {
            assert!(p.len() <= 140, "part {i} is {} octets", p.len());
            let (c, body) = concatenation(p).unwrap();
            assert_eq!((c.reference, c.total, c.seq), (7, 3, i as u8 + 1));
            joined.extend_from_slice(body);
        }
        assert_eq!(decode(8, &joined).unwrap(), text);
        // One part: no header.
        assert_eq!(split(&encode("short"), 1), vec![b"short".to_vec()]);
    }

    #[test]
    fn splits_never_break_escapes_or_surrogates() {
        // 152 plain characters then '{' (escape + septet) across the 153 boundary.
        let gsm = format!("{}{{{}", "a".repeat(152), "tail".repeat(5));
        let parts = split(&encode(&gsm), 1);
        let first = concatenation(&parts[0]).unwrap().1;
        assert_eq!(*first.last().unwrap(), b'a');
        assert_eq!(first.len(), 152);
        // 66 units then an emoji (a surrogate pair) across the 67 boundary.
        let ucs = format!("{}😀 xin chào và hẹn gặp lại", "ă".repeat(66));
        let parts = split(&encode(&ucs), 1);
        let first = concatenation(&parts[0]).unwrap().1;
        assert_eq!(first.len(), 132);
        let joined: Vec<u8> = parts
            .iter()
            .flat_map(|p| concatenation(p).unwrap().1.to_vec())
            .collect();
        assert_eq!(decode(8, &joined).unwrap(), ucs);
    }

    proptest! {
        #[test]
        fn split_then_join_gives_the_text_back(text in "\\PC{0,400}", reference in any::<u8>()) {
            let e = encode(&text);
            let parts = split(&e, reference);
            let joined: Vec<u8> = if parts.len() == 1 {
                parts[0].clone()
            } else {
                parts.iter().map(|p| {
                    let (c, body) = concatenation(p).unwrap();
                    assert_eq!((c.reference, c.total as usize), (u16::from(reference), parts.len()));
                    body.to_vec()
                }).collect::<Vec<_>>().concat()
            };
            prop_assert_eq!(decode(e.encoding.data_coding(), &joined).unwrap(), text);
            for p in &parts {
                prop_assert!(p.len() <= 160);
            }
        }

        #[test]
        fn any_text_round_trips(text in "\\PC{0,80}") {
            let e = encode(&text);
            prop_assert_eq!(decode(e.encoding.data_coding(), &e.bytes).unwrap(), text);
        }
    }
}
