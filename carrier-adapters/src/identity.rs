//! Identity documents as issued in Vietnam, as SIM certificates and owner checks name
//! them: CCCD (citizen identity card, 12 digits), CMND (the older identity card, 9 or 12
//! digits), passport (hộ chiếu, one letter and 7 digits) and, for enterprises, MST (mã
//! số thuế: 10 digits, or 13 for a branch, written `0101234567-001`). In certificates
//! each is a UID attribute `CCCD:…`, `CMND:…`, `HC:…`, `MST:…`.

use std::fmt;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IdKind {
    Cccd,
    Cmnd,
    Passport,
    Mst,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct IdError(pub String);

impl IdKind {
    pub const ALL: [IdKind; 4] = [IdKind::Cccd, IdKind::Cmnd, IdKind::Passport, IdKind::Mst];

    pub fn as_str(self) -> &'static str {
        match self {
            IdKind::Cccd => "cccd",
            IdKind::Cmnd => "cmnd",
            IdKind::Passport => "passport",
            IdKind::Mst => "mst",
        }
    }

    /// The prefix of its UID attribute in a certificate.
    pub fn uid_prefix(self) -> &'static str {
        match self {
            IdKind::Cccd => "CCCD",
            IdKind::Cmnd => "CMND",
            IdKind::Passport => "HC",
            IdKind::Mst => "MST",
        }
    }

    pub fn from_uid_prefix(prefix: &str) -> Option<IdKind> {
        IdKind::ALL
            .into_iter()
            .find(|k| k.uid_prefix().eq_ignore_ascii_case(prefix))
    }

    /// Whether it names an organisation rather than a person.
    pub fn is_enterprise(self) -> bool {
        self == IdKind::Mst
    }

    /// What a number of this kind looks like, for error messages.
    pub fn format(self) -> &'static str {
        match self {
            IdKind::Cccd => "a CCCD has 12 digits",
            IdKind::Cmnd => "a CMND has 9 or 12 digits",
            IdKind::Passport => "a passport number is one letter and 7 digits (e.g. C1234567)",
            IdKind::Mst => "an MST has 10 digits, or 13 for a branch (0101234567-001)",
        }
    }

    /// The number in its canonical form, or why it is not one of this kind.
    pub fn normalise(self, number: &str) -> Result<String, IdError> {
        let n = number.trim();
        let digits = |s: &str, lens: &[usize]| {
            lens.contains(&s.len()) && s.bytes().all(|b| b.is_ascii_digit())
        };
        let ok = match self {
            IdKind::Cccd => digits(n, &[12]).then(|| n.to_owned()),
            IdKind::Cmnd => digits(n, &[9, 12]).then(|| n.to_owned()),
            IdKind::Passport => {
                let upper = n.to_ascii_uppercase();
                let mut chars = upper.chars();
                let letter = chars.next().is_some_and(|c| c.is_ascii_uppercase());
                (letter && digits(chars.as_str(), &[7])).then_some(upper)
            }
            IdKind::Mst => match n.split_once('-') {
                Some((head, branch)) if digits(head, &[10]) && digits(branch, &[3]) => {
                    Some(format!("{head}-{branch}"))
                }
                None if digits(n, &[10]) => Some(n.to_owned()),
                None if digits(n, &[13]) => Some(format!("{}-{}", &n[..10], &n[10..])),
                _ => None,
            },
        };
        ok.ok_or_else(|| {
            IdError(format!(
                "{n:?} is not a {}: {}",
                self.as_str(),
                self.format()
            ))
        })
    }

    /// The kind a bare number most likely is: 9 digits CMND, 12 CCCD (CMNDs of 12 digits
    /// exist but were replaced by CCCD: name them explicitly), a letter and 7 digits a
    /// passport, 10 or 13 digits (or `…-…`) an MST.
    pub fn infer(number: &str) -> Option<IdKind> {
        [IdKind::Cmnd, IdKind::Cccd, IdKind::Passport, IdKind::Mst]
            .into_iter()
            .filter(|k| !(*k == IdKind::Cmnd && number.trim().len() == 12))
            .find(|k| k.normalise(number).is_ok())
    }
}

impl fmt::Display for IdKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for IdKind {
    type Err = IdError;
    fn from_str(s: &str) -> Result<IdKind, IdError> {
        IdKind::ALL
            .into_iter()
            .find(|k| k.as_str().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| IdError(format!("{s:?} is not cccd, cmnd, passport or mst")))
    }
}

/// A kind (given, else inferred) and the number in canonical form.
pub fn parse(kind: Option<IdKind>, number: &str) -> Result<(IdKind, String), IdError> {
    let kind = match kind {
        Some(k) => k,
        None => IdKind::infer(number).ok_or_else(|| {
            IdError(format!(
                "{:?} is no CCCD (12 digits), CMND (9), passport (C1234567) or MST (10 or 13 digits)",
                number.trim()
            ))
        })?,
    };
    Ok((kind, kind.normalise(number)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_kind_takes_its_own_numbers_only() {
        assert_eq!(
            parse(None, "001099012345").unwrap(),
            (IdKind::Cccd, "001099012345".into())
        );
        assert_eq!(
            parse(None, " 012345678 ").unwrap(),
            (IdKind::Cmnd, "012345678".into())
        );
        assert_eq!(
            parse(Some(IdKind::Cmnd), "001099012345").unwrap().0,
            IdKind::Cmnd
        );
        assert_eq!(
            parse(None, "c1234567").unwrap(),
            (IdKind::Passport, "C1234567".into())
        );
        assert_eq!(
            parse(None, "0101234567").unwrap(),
            (IdKind::Mst, "0101234567".into())
        );
        assert_eq!(
            parse(None, "0101234567001").unwrap(),
            (IdKind::Mst, "0101234567-001".into())
        );
        assert_eq!(
            parse(Some(IdKind::Mst), "0101234567-001").unwrap().1,
            "0101234567-001"
        );
        for (kind, bad) in [
            (Some(IdKind::Cccd), "012345678"),
            (Some(IdKind::Passport), "12345678"),
            (Some(IdKind::Mst), "01012345"),
            (Some(IdKind::Mst), "0101234567-1"),
            (None, "12345678901"),
            (None, "AB123456"),
            (None, ""),
        ] {
            assert!(parse(kind, bad).is_err(), "{kind:?} {bad}");
        }
        assert_eq!(IdKind::from_uid_prefix("HC"), Some(IdKind::Passport));
        assert_eq!("MST".parse::<IdKind>().unwrap(), IdKind::Mst);
    }
}
