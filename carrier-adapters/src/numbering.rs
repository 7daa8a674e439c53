//! The Vietnamese mobile numbering plan: phone numbers as parsed values and the
//! network each prefix was allocated to.
//!
//! A [`Msisdn`] can only be built by [`Msisdn::parse`], so holding one proves the number
//! is a Vietnamese mobile number in a range allocated to a known network.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Country code of Vietnam.
const COUNTRY_CODE: &str = "84";
/// Digits of a Vietnamese mobile number after the country code (national significant number).
const NSN_LEN: usize = 9;

/// A mobile network of the Vietnamese numbering plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum Carrier {
    Viettel,
    Vinaphone,
    Mobifone,
    Vietnamobile,
    Gmobile,
    Itelecom,
    Reddi,
}

/// Prefixes (national format, leading `0`) allocated to each network.
const PREFIXES: &[(&str, Carrier)] = &[
    ("086", Carrier::Viettel),
    ("096", Carrier::Viettel),
    ("097", Carrier::Viettel),
    ("098", Carrier::Viettel),
    ("032", Carrier::Viettel),
    ("033", Carrier::Viettel),
    ("034", Carrier::Viettel),
    ("035", Carrier::Viettel),
    ("036", Carrier::Viettel),
    ("037", Carrier::Viettel),
    ("038", Carrier::Viettel),
    ("039", Carrier::Viettel),
    ("088", Carrier::Vinaphone),
    ("091", Carrier::Vinaphone),
    ("094", Carrier::Vinaphone),
    ("081", Carrier::Vinaphone),
    ("082", Carrier::Vinaphone),
    ("083", Carrier::Vinaphone),
    ("084", Carrier::Vinaphone),
    ("085", Carrier::Vinaphone),
    ("089", Carrier::Mobifone),
    ("090", Carrier::Mobifone),
    ("093", Carrier::Mobifone),
    ("070", Carrier::Mobifone),
    ("076", Carrier::Mobifone),
    ("077", Carrier::Mobifone),
    ("078", Carrier::Mobifone),
    ("079", Carrier::Mobifone),
    ("052", Carrier::Vietnamobile),
    ("056", Carrier::Vietnamobile),
    ("058", Carrier::Vietnamobile),
    ("092", Carrier::Vietnamobile),
    ("059", Carrier::Gmobile),
    ("099", Carrier::Gmobile),
    ("087", Carrier::Itelecom),
    ("055", Carrier::Reddi),
];

impl Carrier {
    pub const ALL: [Carrier; 7] = [
        Carrier::Viettel,
        Carrier::Vinaphone,
        Carrier::Mobifone,
        Carrier::Vietnamobile,
        Carrier::Gmobile,
        Carrier::Itelecom,
        Carrier::Reddi,
    ];

    /// The stable lower-case name used on the wire, in config and in storage.
    pub fn as_str(self) -> &'static str {
        match self {
            Carrier::Viettel => "viettel",
            Carrier::Vinaphone => "vinaphone",
            Carrier::Mobifone => "mobifone",
            Carrier::Vietnamobile => "vietnamobile",
            Carrier::Gmobile => "gmobile",
            Carrier::Itelecom => "itelecom",
            Carrier::Reddi => "reddi",
        }
    }

    /// The network a national-format prefix (`0` + two digits) belongs to.
    pub fn from_prefix(prefix: &str) -> Option<Carrier> {
        PREFIXES
            .iter()
            .find(|(p, _)| *p == prefix)
            .map(|(_, carrier)| *carrier)
    }

    /// National-format prefixes allocated to this network.
    pub fn prefixes(self) -> impl Iterator<Item = &'static str> {
        PREFIXES
            .iter()
            .filter(move |(_, c)| *c == self)
            .map(|(p, _)| *p)
    }
}

impl fmt::Display for Carrier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Carrier {
    type Err = UnknownCarrier;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Carrier::ALL
            .into_iter()
            .find(|c| c.as_str().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| UnknownCarrier(s.to_owned()))
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("unknown carrier {0:?}")]
pub struct UnknownCarrier(String);

/// Why a string is not a Vietnamese mobile number.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum MsisdnError {
    #[error("the phone number is empty")]
    Empty,
    #[error("the phone number contains {0:?}, which is neither a digit nor a separator")]
    InvalidCharacter(char),
    #[error("the phone number is not a Vietnamese number (country code +84)")]
    NotVietnamese,
    #[error(
        "the phone number has {digits} digits; a Vietnamese mobile number has 10 (0xx xxx xxxx)"
    )]
    WrongLength { digits: usize },
    #[error("the phone number is a landline; a mobile number is needed")]
    Landline,
    #[error("the prefix {prefix} is not allocated to any Vietnamese mobile network")]
    UnallocatedPrefix { prefix: String },
}

/// A Vietnamese mobile number, stored as E.164 digits without `+` (`84828123088`).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Msisdn {
    e164: String,
    carrier: Carrier,
}

impl Msisdn {
    /// Parses the forms people and systems write: `0828123088`, `84828123088`,
    /// `+84 828 123 088`, `828.123.088`, `(+84) 828-123-088`, `0084828123088`.
    pub fn parse(input: &str) -> Result<Msisdn, MsisdnError> {
        let trimmed = input.trim();
        if trimmed.is_empty() {
            return Err(MsisdnError::Empty);
        }
        let mut digits = String::with_capacity(16);
        let mut plus = false;
        for ch in trimmed.chars() {
            match ch {
                '0'..='9' => digits.push(ch),
                '+' if digits.is_empty() && !plus => plus = true,
                ' ' | '.' | '-' | '(' | ')' | '\u{a0}' => {}
                _ => return Err(MsisdnError::InvalidCharacter(ch)),
            }
        }
        if digits.is_empty() {
            return Err(MsisdnError::Empty);
        }
        let nsn: &str = if plus {
            // International format: the country code must be Vietnam's.
            digits
                .strip_prefix(COUNTRY_CODE)
                .ok_or(MsisdnError::NotVietnamese)?
        } else if let Some(rest) = digits.strip_prefix("00") {
            rest.strip_prefix(COUNTRY_CODE)
                .ok_or(MsisdnError::NotVietnamese)?
        } else if let Some(rest) = digits.strip_prefix('0') {
            rest
        } else if digits.len() == COUNTRY_CODE.len() + NSN_LEN && digits.starts_with(COUNTRY_CODE) {
            &digits[COUNTRY_CODE.len()..]
        } else if digits.len() == NSN_LEN {
            // Written without trunk prefix or country code: `828.123.088`.
            &digits
        } else if digits.len() > NSN_LEN + 1 && !digits.starts_with(COUNTRY_CODE) {
            return Err(MsisdnError::NotVietnamese);
        } else {
            return Err(MsisdnError::WrongLength {
                digits: digits.len(),
            });
        };
        // Landlines are 02x area codes followed by 8 digits (10 digits after the 0).
        if nsn.starts_with('2') {
            return Err(MsisdnError::Landline);
        }
        if nsn.len() != NSN_LEN {
            return Err(MsisdnError::WrongLength {
                digits: nsn.len() + 1,
            });
        }
        let prefix = format!("0{}", &nsn[..2]);
        let carrier =
            Carrier::from_prefix(&prefix).ok_or(MsisdnError::UnallocatedPrefix { prefix })?;
        Ok(Msisdn {
            e164: format!("{COUNTRY_CODE}{nsn}"),
            carrier,
        })
    }

    /// E.164 digits without `+`: `84828123088`.
    pub fn e164(&self) -> &str {
        &self.e164
    }

    /// National format: `0828123088`.
    pub fn national(&self) -> String {
        format!("0{}", &self.e164[COUNTRY_CODE.len()..])
    }

    /// The network that holds the prefix (number portability may move the subscriber).
    pub fn carrier(&self) -> Carrier {
        self.carrier
    }

    /// The form shown to users and written to logs: `082****088`.
    pub fn masked(&self) -> String {
        let national = self.national();
        format!("{}****{}", &national[..3], &national[national.len() - 3..])
    }
}

impl fmt::Display for Msisdn {
    /// Displays masked, so that a number formatted into a log line never leaks.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.masked())
    }
}

impl fmt::Debug for Msisdn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Msisdn({})", self.masked())
    }
}

impl FromStr for Msisdn {
    type Err = MsisdnError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Msisdn::parse(s)
    }
}

impl AsRef<str> for Msisdn {
    fn as_ref(&self) -> &str {
        &self.e164
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_the_written_forms() {
        for input in [
            "0828123088",
            "84828123088",
            "+84 828 123 088",
            "828.123.088",
            "+84828123088",
            "(+84) 828-123-088",
            "0084828123088",
            " 082 8123 088 ",
        ] {
            let msisdn = Msisdn::parse(input).unwrap_or_else(|e| panic!("{input}: {e}"));
            assert_eq!(msisdn.e164(), "84828123088", "{input}");
            assert_eq!(msisdn.carrier(), Carrier::Vinaphone);
            assert_eq!(msisdn.masked(), "082****088");
            assert_eq!(msisdn.national(), "0828123088");
        }
    }

    #[test]
    fn assigns_each_network() {
        let cases = [
            ("0971234567", Carrier::Viettel),
            ("0321234567", Carrier::Viettel),
            ("0881234567", Carrier::Vinaphone),
            ("0901234567", Carrier::Mobifone),
            ("0701234567", Carrier::Mobifone),
            ("0921234567", Carrier::Vietnamobile),
            ("0991234567", Carrier::Gmobile),
            ("0871234567", Carrier::Itelecom),
            ("0551234567", Carrier::Reddi),
        ];
        for (input, carrier) in cases {
            assert_eq!(Msisdn::parse(input).unwrap().carrier(), carrier, "{input}");
        }
    }

    #[test]
    fn refuses_what_is_not_a_vietnamese_mobile() {
        use MsisdnError::*;
        let cases: &[(&str, MsisdnError)] = &[
            ("", Empty),
            ("  ", Empty),
            ("+1 415 555 2671", NotVietnamese),
            ("+4917012345678", NotVietnamese),
            ("024 3825 1234", Landline),
            ("+84 24 3825 1234", Landline),
            ("09712345678901", WrongLength { digits: 14 }),
            ("84971234567890", WrongLength { digits: 14 }),
            ("097123456", WrongLength { digits: 9 }),
            (
                "0801234567",
                UnallocatedPrefix {
                    prefix: "080".into(),
                },
            ),
            ("0971a34567", InvalidCharacter('a')),
            ("++84971234567", InvalidCharacter('+')),
        ];
        for (input, expected) in cases {
            assert_eq!(Msisdn::parse(input).as_ref(), Err(expected), "{input:?}");
        }
    }

    #[test]
    fn display_and_debug_are_masked() {
        let m = Msisdn::parse("0971234567").unwrap();
        assert_eq!(m.to_string(), "097****567");
        assert!(!format!("{m:?}").contains("1234"));
    }

    fn valid_prefix() -> impl Strategy<Value = &'static str> {
        proptest::sample::select(PREFIXES.iter().map(|(p, _)| *p).collect::<Vec<_>>())
    }

    proptest! {
        #[test]
        fn every_written_form_parses_to_the_same_number(
            prefix in valid_prefix(),
            rest in "[0-9]{7}",
            form in 0usize..6,
        ) {
            let national = format!("{prefix}{rest}");
            let nsn = &national[1..];
            let written = match form {
                0 => national.clone(),
                1 => format!("84{nsn}"),
                2 => format!("+84 {} {} {}", &nsn[..3], &nsn[3..6], &nsn[6..]),
                3 => format!("{}.{}.{}", &nsn[..3], &nsn[3..6], &nsn[6..]),
                4 => format!("0084{nsn}"),
                _ => format!("({}) {}-{}", &national[..4], &national[4..7], &national[7..]),
            };
            let parsed = Msisdn::parse(&written).unwrap();
            prop_assert_eq!(parsed.e164(), format!("84{nsn}"));
            prop_assert_eq!(parsed.national(), national.clone());
            prop_assert_eq!(Some(parsed.carrier()), Carrier::from_prefix(prefix));
            // Parsing the stored form gives the same value back.
            prop_assert_eq!(Msisdn::parse(parsed.e164()).unwrap(), parsed.clone());
            let masked = parsed.masked();
            prop_assert_eq!(masked.len(), 10);
            prop_assert_eq!(&masked[3..7], "****");
        }

        #[test]
        fn never_panics_and_only_accepts_eleven_e164_digits(input in "\\PC{0,24}") {
            if let Ok(m) = Msisdn::parse(&input) {
                prop_assert_eq!(m.e164().len(), 11);
                prop_assert!(m.e164().starts_with("84"));
                prop_assert!(m.e164().bytes().all(|b| b.is_ascii_digit()));
            }
        }

        #[test]
        fn wrong_digit_counts_are_refused(digits in "[1-9][0-9]{9,14}") {
            // Ten or more significant digits without a trunk 0 or country code is never valid.
            prop_assume!(!(digits.len() == 11 && digits.starts_with("84")));
            prop_assert!(Msisdn::parse(&digits).is_err());
        }
    }
}
