//! SMS templates as carriers register them for a brandname (the CSKH rules that follow
//! Decree 91/2020/NĐ-CP): a fixed text with a few named parameters (three at most: each of these once), in Vietnamese or
//! English. The gateway renders a code into the template registered for the serving
//! network; the simulator's SMSCs check what they are sent against the same templates.
//!
//! A template's parameters are written `{code}` (the one-time code: required, once),
//! `{minutes}` (the code's lifetime in whole minutes, rounded down, at least 1) and
//! `{seconds}` (its lifetime in seconds). Each is a run of digits once rendered.

use std::fmt;

use crate::sms_text;

/// Most SMS parts a template may take once rendered with the longest code (10 digits)
/// and lifetime: carriers bill and throttle every part, and an OTP that needs more is
/// a text to shorten.
pub const MAX_PARTS: usize = 2;

/// A parameter of a template.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Parameter {
    Code,
    Minutes,
    Seconds,
}

impl Parameter {
    pub const ALL: [Parameter; 3] = [Parameter::Code, Parameter::Minutes, Parameter::Seconds];

    pub fn name(self) -> &'static str {
        match self {
            Parameter::Code => "code",
            Parameter::Minutes => "minutes",
            Parameter::Seconds => "seconds",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Text(String),
    Parameter(Parameter),
}

/// A registered template, parsed and checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    source: String,
    segments: Vec<Segment>,
}

/// Why a template cannot be registered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    #[error("a template cannot be empty")]
    Empty,
    #[error("unknown parameter {{{0}}}; known: {{code}}, {{minutes}}, {{seconds}}")]
    UnknownParameter(String),
    #[error("an unclosed or stray brace at character {0} (counted from 0)")]
    Brace(usize),
    #[error("the template needs {{code}}")]
    NoCode,
    #[error("{{{0}}} appears more than once")]
    Repeated(&'static str),
    #[error("two parameters with no text between them cannot be told apart")]
    Adjacent,
    #[error("{0:?} is not Vietnamese or English text (carriers refuse other scripts and symbols)")]
    Script(char),
    #[error("rendered with a 10-digit code it takes {0} SMS parts; at most {MAX_PARTS}")]
    TooLong(usize),
}

/// The letters of Vietnamese beyond ASCII, lower case (precomposed, NFC).
const VIETNAMESE: &str = "àáảãạăằắẳẵặâầấẩẫậđèéẻẽẹêềếểễệìíỉĩịòóỏõọôồốổỗộơờớởỡợùúủũụưừứửữựỳýỷỹỵ";

/// Letters of Vietnamese and English, digits, spaces and the punctuation of ordinary
/// text.
fn allowed(c: char) -> bool {
    c.is_ascii_alphanumeric()
        || " .,:;!?()-/'\"%&+#@*_=\n".contains(c)
        || c.to_lowercase().all(|l| VIETNAMESE.contains(l))
}

impl Template {
    /// Reads a template, in its composed form (NFC: a letter typed as a base and a
    /// combining mark is the one precomposed letter), which `source` then gives.
    pub fn parse(source: &str) -> Result<Template, TemplateError> {
        use unicode_normalization::UnicodeNormalization;
        let source: String = source.nfc().collect();
        let source = source.as_str();
        if source.trim().is_empty() {
            return Err(TemplateError::Empty);
        }
        let mut segments = Vec::new();
        let mut text = String::new();
        let mut chars = source.chars().enumerate();
        while let Some((at, c)) = chars.next() {
            match c {
                '{' => {
                    let mut name = String::new();
                    loop {
                        match chars.next() {
                            Some((_, '}')) => break,
                            Some((at, '{')) => return Err(TemplateError::Brace(at)),
                            Some((_, c)) => name.push(c),
                            None => return Err(TemplateError::Brace(at)),
                        }
                    }
                    let parameter = Parameter::ALL
                        .into_iter()
                        .find(|p| p.name() == name)
                        .ok_or(TemplateError::UnknownParameter(name))?;
                    if !text.is_empty() {
                        segments.push(Segment::Text(std::mem::take(&mut text)));
                    } else if matches!(segments.last(), Some(Segment::Parameter(_))) {
                        return Err(TemplateError::Adjacent);
                    }
                    segments.push(Segment::Parameter(parameter));
                }
                '}' => return Err(TemplateError::Brace(at)),
                c if allowed(c) => text.push(c),
                c => return Err(TemplateError::Script(c)),
            }
        }
        if !text.is_empty() {
            segments.push(Segment::Text(text));
        }
        let parameters: Vec<Parameter> = segments
            .iter()
            .filter_map(|s| match s {
                Segment::Parameter(p) => Some(*p),
                Segment::Text(_) => None,
            })
            .collect();
        for p in Parameter::ALL {
            if parameters.iter().filter(|&&q| q == p).count() > 1 {
                return Err(TemplateError::Repeated(p.name()));
            }
        }
        if !parameters.contains(&Parameter::Code) {
            return Err(TemplateError::NoCode);
        }
        let template = Template {
            source: source.to_owned(),
            segments,
        };
        let longest = template.render("0000000000", 900);
        let encoded = sms_text::encode(&longest);
        let parts = sms_text::split(&encoded, 0).len();
        if parts > MAX_PARTS {
            return Err(TemplateError::TooLong(parts));
        }
        Ok(template)
    }

    /// The template as registered.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The SMS for `code`, valid for `ttl_seconds`.
    pub fn render(&self, code: &str, ttl_seconds: u32) -> String {
        let mut out = String::with_capacity(self.source.len() + code.len());
        for segment in &self.segments {
            match segment {
                Segment::Text(t) => out.push_str(t),
                Segment::Parameter(Parameter::Code) => out.push_str(code),
                Segment::Parameter(Parameter::Minutes) => {
                    out.push_str(&(ttl_seconds / 60).max(1).to_string())
                }
                Segment::Parameter(Parameter::Seconds) => out.push_str(&ttl_seconds.to_string()),
            }
        }
        out
    }

    /// Whether `text` is this template with its parameters filled in (each a run of
    /// 1 to 10 digits), as an SMSC that enforces registered templates checks it.
    pub fn matches(&self, text: &str) -> bool {
        fn rest(segments: &[Segment], text: &str) -> bool {
            match segments.split_first() {
                None => text.is_empty(),
                Some((Segment::Text(t), more)) => {
                    text.strip_prefix(t.as_str()).is_some_and(|r| rest(more, r))
                }
                Some((Segment::Parameter(_), more)) => {
                    let digits = text.bytes().take_while(u8::is_ascii_digit).count();
                    (1..=digits.min(10)).any(|n| rest(more, &text[n..]))
                }
            }
        }
        rest(&self.segments, text)
    }
}

impl fmt::Display for Template {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

/// A brandname as carriers register alphanumeric senders: 1 to 11 characters of
/// letters, digits, space and `.-_&`; or a number of up to 15 digits.
pub fn valid_brandname(s: &str) -> bool {
    let numeric = !s.is_empty() && s.len() <= 15 && s.bytes().all(|b| b.is_ascii_digit());
    let alphanumeric = !s.is_empty()
        && s.len() <= 11
        && s.trim() == s
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b" .-_&".contains(&b));
    numeric || alphanumeric
}

#[cfg(test)]
mod tests {
    use super::*;

    const VI: &str = "Ma OTP dang nhap Cong DVC: {code}. Hieu luc {minutes} phut.";

    #[test]
    fn renders_and_matches_its_own_text() {
        let t = Template::parse(VI).unwrap();
        let text = t.render("123456", 300);
        assert_eq!(text, "Ma OTP dang nhap Cong DVC: 123456. Hieu luc 5 phut.");
        assert!(t.matches(&text));
        assert!(t.matches(&t.render("0123456789", 90)));
        assert_eq!(
            t.render("1234", 90),
            "Ma OTP dang nhap Cong DVC: 1234. Hieu luc 1 phut."
        );
    }

    #[test]
    fn a_text_off_the_template_does_not_match() {
        let t = Template::parse(VI).unwrap();
        for text in [
            "Ma OTP dang nhap Cong DVC: 123456. Hieu luc 5 phut",
            "Ma OTP dang nhap Cong DVC: abc. Hieu luc 5 phut.",
            "Ma OTP dang nhap Cong DVC: . Hieu luc 5 phut.",
            "Ma OTP dang nhap Cong DVC: 12345678901. Hieu luc 5 phut.",
            "Mã OTP đăng nhập Cổng DVC: 123456. Hiệu lực 5 phút.",
            "Ma OTP dang nhap Cong DVC: 123456. Hieu luc 5 phut. Bam vao http://x",
        ] {
            assert!(!t.matches(text), "{text}");
        }
    }

    #[test]
    fn vietnamese_with_diacritics_is_text() {
        let t = Template::parse(
            "Mã OTP đăng ký Cổng DVC: {code}. Hiệu lực {seconds} giây. Không chia sẻ.",
        )
        .unwrap();
        assert!(t.matches(&t.render("987654", 120)));
    }

    #[test]
    fn refuses_what_carriers_refuse() {
        use TemplateError::*;
        for (source, want) in [
            ("", Empty),
            ("Ma {otp}", UnknownParameter("otp".into())),
            ("Ma {code", Brace(3)),
            ("Ma } {code}", Brace(3)),
            ("Mã } {code}", Brace(3)),
            ("Hieu luc {minutes} phut", NoCode),
            ("{code} {code}", Repeated("code")),
            ("Ma {code}{minutes}", Adjacent),
            ("Mã OTP 🔑 {code}", Script('🔑')),
            ("验证码 {code}", Script('验')),
        ] {
            assert_eq!(Template::parse(source), Err(want), "{source}");
        }
        let long = format!("{} {{code}}", "Mã xác thực ".repeat(20));
        assert!(matches!(Template::parse(&long), Err(TooLong(_))));
    }

    #[test]
    fn brandnames() {
        assert!(valid_brandname("UBND-HN"));
        assert!(valid_brandname("DVC QG"));
        assert!(valid_brandname("8088"));
        assert!(!valid_brandname("DICHVUCONG-QG"));
        assert!(!valid_brandname(" DVC"));
        assert!(!valid_brandname("Bộ CA"));
        assert!(!valid_brandname(""));
    }
}
