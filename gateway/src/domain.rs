//! Domain values that parse rather than validate: purpose, locale, OTP options, and the
//! SMS text for each purpose and locale.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

pub use carrier_adapters::{Carrier, Msisdn, MsisdnError};

/// Why the portal asks for an OTP (the seed's flows).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Purpose {
    Register,
    Login,
    ChangePhone,
    AddMethod,
    ResetPassword,
}

impl Purpose {
    pub const ALL: [Purpose; 5] = [
        Purpose::Register,
        Purpose::Login,
        Purpose::ChangePhone,
        Purpose::AddMethod,
        Purpose::ResetPassword,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Purpose::Register => "register",
            Purpose::Login => "login",
            Purpose::ChangePhone => "change_phone",
            Purpose::AddMethod => "add_method",
            Purpose::ResetPassword => "reset_password",
        }
    }
}

impl FromStr for Purpose {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Purpose::ALL
            .into_iter()
            .find(|p| p.as_str() == s)
            .ok_or_else(|| format!("unknown purpose {s:?}"))
    }
}

impl fmt::Display for Purpose {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Locale {
    #[default]
    Vi,
    En,
}

impl Locale {
    pub fn as_str(self) -> &'static str {
        match self {
            Locale::Vi => "vi",
            Locale::En => "en",
        }
    }
}

impl FromStr for Locale {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "vi" => Ok(Locale::Vi),
            "en" => Ok(Locale::En),
            other => Err(format!("unknown locale {other:?}")),
        }
    }
}

/// Allowed code lengths and lifetimes.
/// A way a code reaches the person: SMS over SMPP, or a Zalo ZNS message.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Serialize,
    Deserialize,
    Hash,
    PartialOrd,
    Ord,
    utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Channel {
    Sms,
    Zalo,
}

impl Channel {
    pub const ALL: [Channel; 2] = [Channel::Sms, Channel::Zalo];

    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Sms => "sms",
            Channel::Zalo => "zalo",
        }
    }

    /// An ordered workflow: 1 or 2 channels, none twice.
    pub fn parse_workflow<S: AsRef<str>>(names: &[S]) -> Result<Vec<Channel>, String> {
        if names.is_empty() || names.len() > Channel::ALL.len() {
            return Err(format!(
                "give 1 to {} channels, in the order to try them",
                Channel::ALL.len()
            ));
        }
        let mut out: Vec<Channel> = Vec::with_capacity(names.len());
        for name in names {
            let c: Channel = name.as_ref().parse()?;
            if out.contains(&c) {
                return Err(format!("channel {} is named twice", c.as_str()));
            }
            out.push(c);
        }
        Ok(out)
    }
}

impl FromStr for Channel {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Channel::ALL
            .into_iter()
            .find(|c| c.as_str() == s)
            .ok_or_else(|| format!("unknown channel {s:?}; known: sms, zalo"))
    }
}

impl fmt::Display for Channel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

pub const CODE_LENGTHS: std::ops::RangeInclusive<u8> = 4..=10;
pub const TTL_SECONDS: std::ops::RangeInclusive<u32> = 60..=900;

/// The SMS that carries a code. Vietnamese texts are kept short enough that, with the
/// default code length and lifetime, every purpose fits one UCS2 part (70 characters).
pub fn sms_text(purpose: Purpose, locale: Locale, code: &str, ttl_seconds: u32) -> String {
    match locale {
        Locale::Vi => {
            let action = match purpose {
                Purpose::Register => "đăng ký",
                Purpose::Login => "đăng nhập",
                Purpose::ChangePhone => "đổi SĐT",
                Purpose::AddMethod => "thêm xác thực",
                Purpose::ResetPassword => "đặt lại MK",
            };
            let validity = if ttl_seconds % 60 == 0 {
                format!("{} phút", ttl_seconds / 60)
            } else {
                format!("{ttl_seconds} giây")
            };
            format!("Mã OTP {action} Cổng DVC: {code}. Hiệu lực {validity}. Không chia sẻ.")
        }
        Locale::En => {
            let action = match purpose {
                Purpose::Register => "registration",
                Purpose::Login => "login",
                Purpose::ChangePhone => "phone change",
                Purpose::AddMethod => "new sign-in method",
                Purpose::ResetPassword => "password reset",
            };
            let validity = if ttl_seconds % 60 == 0 {
                format!("{} min", ttl_seconds / 60)
            } else {
                format!("{ttl_seconds} s")
            };
            format!("Public Service Portal {action} code: {code}. Valid for {validity}. Do not share it.")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use carrier_adapters::sms_text::{encode, Encoding};

    #[test]
    fn vietnamese_texts_fit_one_ucs2_part_at_defaults() {
        for purpose in Purpose::ALL {
            let text = sms_text(purpose, Locale::Vi, "123456", 300);
            let encoded = encode(&text);
            assert_eq!(encoded.encoding, Encoding::Ucs2, "{text}");
            assert!(
                encoded.fits_single_part(),
                "{} units: {text}",
                encoded.units
            );
        }
        assert_eq!(
            sms_text(Purpose::Register, Locale::Vi, "123456", 300),
            "Mã OTP đăng ký Cổng DVC: 123456. Hiệu lực 5 phút. Không chia sẻ."
        );
    }

    #[test]
    fn english_texts_are_gsm7_single_part_at_any_length() {
        for purpose in Purpose::ALL {
            let text = sms_text(purpose, Locale::En, "1234567890", 899);
            let encoded = encode(&text);
            assert_eq!(encoded.encoding, Encoding::Gsm7, "{text}");
            assert!(encoded.fits_single_part(), "{text}");
        }
    }

    #[test]
    fn purposes_parse_from_their_names() {
        for p in Purpose::ALL {
            assert_eq!(p.as_str().parse::<Purpose>().unwrap(), p);
        }
        assert!("logout".parse::<Purpose>().is_err());
    }
}
