//! The subscriber registry shared by the SMSCs, MSSPs and owner checks: who owns each
//! number, whether the SIM carries a signing key, its certificate state and how the
//! simulated person behaves at the PIN prompt. Seeded with a synthetic population.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use carrier_adapters::identity::{self, IdKind};
use carrier_adapters::{Carrier, Msisdn};
use serde::{Deserialize, Serialize};

use crate::pki::SimCredential;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Behaviour {
    /// Waits for a person or a test to answer the prompt over HTTP.
    Manual,
    /// Confirms with the right PIN after the configured delay.
    Confirm,
    /// Presses cancel.
    Cancel,
    /// Never answers; the transaction expires.
    Timeout,
    /// Types a wrong PIN three times: PIN_NR_BLOCKED.
    WrongPin,
    /// The SIM card is blocked: CARD_BLOCKED.
    CardBlocked,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CertificateState {
    Valid,
    Expired,
    Revoked,
    /// The SIM has a key but no certificate was issued: NO_CERT_FOUND.
    None,
}

/// What `PUT /subscribers/{msisdn}` takes and `GET` shows (without the PIN).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubscriberRecord {
    /// The person; for an enterprise SIM, its legal representative.
    pub full_name: String,
    pub id_number: String,
    /// `cccd`, `cmnd`, `passport` or `mst` (an enterprise); inferred from `id_number`
    /// when left out.
    #[serde(default)]
    pub id_type: Option<IdKind>,
    /// The enterprise's name (with `id_type` `mst`).
    #[serde(default)]
    pub organization: Option<String>,
    /// `YYYY-MM-DD`.
    pub date_of_birth: String,
    pub sim_pki: bool,
    #[serde(default = "default_pin", skip_serializing)]
    pub pin: String,
    pub behaviour: Behaviour,
    pub certificate: CertificateState,
}

fn default_pin() -> String {
    "1234".into()
}

impl SubscriberRecord {
    /// The identity made explicit and canonical: the kind given or inferred, the number
    /// as that kind writes it; an enterprise (MST) has its name, a person has none.
    pub fn normalised(mut self) -> Result<SubscriberRecord, identity::IdError> {
        let (kind, number) = identity::parse(self.id_type, &self.id_number)?;
        self.id_type = Some(kind);
        self.id_number = number;
        self.organization = self
            .organization
            .map(|o| o.trim().to_owned())
            .filter(|o| !o.is_empty());
        match (kind.is_enterprise(), &self.organization) {
            (true, None) => {
                return Err(identity::IdError(
                    "an enterprise (id_type mst) needs its organization name".into(),
                ))
            }
            (false, Some(_)) => {
                return Err(identity::IdError(
                    "organization is for enterprises (id_type mst)".into(),
                ))
            }
            _ => {}
        }
        Ok(self)
    }

    pub fn id_kind(&self) -> IdKind {
        self.id_type
            .or_else(|| IdKind::infer(&self.id_number))
            .unwrap_or(IdKind::Cccd)
    }

    /// What its certificate names: the holder and the identity numbers.
    fn identity(&self) -> (&str, &str, IdKind, Option<&str>) {
        (
            &self.full_name,
            &self.id_number,
            self.id_kind(),
            self.organization.as_deref(),
        )
    }
}

/// A subscriber with its network and, once it has signed, its key and certificate.
pub struct Subscriber {
    pub msisdn: Msisdn,
    pub record: SubscriberRecord,
    /// Issued lazily (key generation takes time) and reissued when the record changes.
    pub credential: Option<Arc<SimCredential>>,
    pub credential_state: Option<CertificateState>,
}

#[derive(Default)]
pub struct Registry {
    subscribers: Mutex<HashMap<String, Subscriber>>,
    /// Numbers ported away from the network their prefix names.
    ported: Mutex<HashMap<String, Carrier>>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry").finish_non_exhaustive()
    }
}

const FAMILY: [&str; 12] = [
    "Nguyễn", "Trần", "Lê", "Phạm", "Hoàng", "Huỳnh", "Phan", "Vũ", "Võ", "Đặng", "Bùi", "Đỗ",
];
const MIDDLE: [&str; 8] = ["Văn", "Thị", "Hữu", "Minh", "Thanh", "Ngọc", "Đức", "Thu"];
const GIVEN: [&str; 16] = [
    "An", "Bình", "Châu", "Dũng", "Giang", "Hà", "Hùng", "Lan", "Linh", "Long", "Mai", "Nam",
    "Phương", "Quân", "Thảo", "Tuấn",
];
/// CCCD province codes (first three digits).
const PROVINCES: [&str; 6] = ["001", "079", "031", "048", "038", "092"];

/// Numbers documented in the README for the demo: each confirms after a short delay.
pub const DEMO_NUMBERS: [(&str, Carrier); 3] = [
    ("84971234567", Carrier::Viettel),
    ("84828123088", Carrier::Vinaphone),
    ("84901234567", Carrier::Mobifone),
];

/// Numbers documented in the README whose SIM certificates carry the other kinds of
/// identity: an older CMND, a passport, and enterprises by MST (a head office and a
/// branch). Each confirms after a short delay.
pub const IDENTITY_SAMPLES: [(&str, &str, IdKind, &str, Option<&str>); 4] = [
    ("84981999001", "Lê Văn Cũ", IdKind::Cmnd, "012345678", None),
    (
        "84911999002",
        "Trần Thị Hộ Chiếu",
        IdKind::Passport,
        "C1234567",
        None,
    ),
    (
        "84931999003",
        "Nguyễn Văn Giám Đốc",
        IdKind::Mst,
        "0101234567",
        Some("Công ty TNHH Dịch vụ số An Bình (mô phỏng)"),
    ),
    (
        "84981999004",
        "Phạm Thị Chi Nhánh",
        IdKind::Mst,
        "0101234567-001",
        Some("Chi nhánh Hà Nội – Công ty TNHH Dịch vụ số An Bình (mô phỏng)"),
    ),
];

impl Registry {
    /// A deterministic synthetic population: the demo numbers, 20 subscribers per
    /// carrier with varied behaviour, and the identity samples.
    pub fn seeded() -> Registry {
        let registry = Registry::default();
        let mut n: u64 = 0;
        let person = |n: u64| {
            let name = format!(
                "{} {} {}",
                FAMILY[(n % 12) as usize],
                MIDDLE[((n / 3) % 8) as usize],
                GIVEN[((n * 7) % 16) as usize]
            );
            let year = 1960 + (n * 13 % 45);
            let gender_century = if n % 2 == 0 { 0 } else { 1 } + if year >= 2000 { 2 } else { 0 };
            let id = format!(
                "{}{}{:02}{:06}",
                PROVINCES[(n % 6) as usize],
                gender_century,
                year % 100,
                (n * 7919 + 12345) % 1_000_000
            );
            let dob = format!("{year}-{:02}-{:02}", 1 + n % 12, 1 + n % 28);
            (name, id, dob)
        };
        for (msisdn, _) in DEMO_NUMBERS {
            let (full_name, id_number, date_of_birth) = person(n);
            n += 1;
            registry.put(
                Msisdn::parse(msisdn).expect("demo number parses"),
                SubscriberRecord {
                    full_name,
                    id_number,
                    id_type: Some(IdKind::Cccd),
                    organization: None,
                    date_of_birth,
                    sim_pki: true,
                    pin: default_pin(),
                    behaviour: Behaviour::Confirm,
                    certificate: CertificateState::Valid,
                },
            );
        }
        let behaviours = [
            Behaviour::Confirm,
            Behaviour::Confirm,
            Behaviour::Confirm,
            Behaviour::Manual,
            Behaviour::Cancel,
            Behaviour::Timeout,
            Behaviour::WrongPin,
            Behaviour::CardBlocked,
        ];
        for (carrier, prefix) in [
            (Carrier::Viettel, "8498"),
            (Carrier::Vinaphone, "8491"),
            (Carrier::Mobifone, "8493"),
        ] {
            for i in 0..20u64 {
                let (full_name, id_number, date_of_birth) = person(n);
                n += 1;
                let msisdn = Msisdn::parse(&format!("{prefix}{:07}", 1_000_000 + i * 1_117))
                    .expect("seeded number parses");
                debug_assert_eq!(msisdn.carrier(), carrier);
                registry.put(
                    msisdn,
                    SubscriberRecord {
                        full_name,
                        id_number,
                        id_type: Some(IdKind::Cccd),
                        organization: None,
                        date_of_birth,
                        sim_pki: i % 5 != 4,
                        pin: default_pin(),
                        behaviour: behaviours[(i % 8) as usize],
                        certificate: match i % 10 {
                            8 => CertificateState::Expired,
                            9 => CertificateState::Revoked,
                            _ => CertificateState::Valid,
                        },
                    },
                );
            }
        }
        for (msisdn, full_name, id_type, id_number, organization) in IDENTITY_SAMPLES {
            let (_, _, date_of_birth) = person(n);
            n += 1;
            registry.put(
                Msisdn::parse(msisdn).expect("sample number parses"),
                SubscriberRecord {
                    full_name: full_name.into(),
                    id_number: id_number.into(),
                    id_type: Some(id_type),
                    organization: organization.map(Into::into),
                    date_of_birth,
                    sim_pki: true,
                    pin: default_pin(),
                    behaviour: Behaviour::Confirm,
                    certificate: CertificateState::Valid,
                },
            );
        }
        registry
    }

    /// Stores a subscriber. When its identity changed, the certificate that named the
    /// old one is dropped (the next signature gets one re-issued) and returned, for its
    /// CA to revoke.
    pub fn put(&self, msisdn: Msisdn, record: SubscriberRecord) -> Option<Arc<SimCredential>> {
        let mut subs = self.subscribers.lock().unwrap_or_else(|p| p.into_inner());
        let key = msisdn.e164().to_owned();
        match subs.get_mut(&key) {
            Some(existing) => {
                let changed = existing.record.identity() != record.identity();
                existing.record = record;
                if changed {
                    existing.credential_state = None;
                    return existing.credential.take();
                }
                // Keep the key; the certificate follows the new state on next use.
                None
            }
            None => {
                subs.insert(
                    key,
                    Subscriber {
                        msisdn,
                        record,
                        credential: None,
                        credential_state: None,
                    },
                );
                None
            }
        }
    }

    /// The subscriber and the network that serves the number now.
    pub fn get(&self, msisdn: &Msisdn) -> Option<(SubscriberRecord, Carrier)> {
        let network = self.network_of(msisdn);
        let subs = self.subscribers.lock().unwrap_or_else(|p| p.into_inner());
        subs.get(msisdn.e164()).map(|s| (s.record.clone(), network))
    }

    /// The network that serves a number: its porting record, else its prefix.
    pub fn network_of(&self, msisdn: &Msisdn) -> Carrier {
        self.ported
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(msisdn.e164())
            .copied()
            .unwrap_or(msisdn.carrier())
    }

    /// Ports a number to `carrier` (`None`: back to its prefix's network).
    pub fn port(&self, msisdn: &Msisdn, carrier: Option<Carrier>) {
        let mut ported = self.ported.lock().unwrap_or_else(|p| p.into_inner());
        match carrier {
            Some(c) if c != msisdn.carrier() => {
                ported.insert(msisdn.e164().to_owned(), c);
            }
            _ => {
                ported.remove(msisdn.e164());
            }
        }
    }

    pub fn len(&self) -> usize {
        self.subscribers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The current credential if it matches the record's certificate state.
    pub fn credential(&self, msisdn: &Msisdn) -> Option<(Arc<SimCredential>, CertificateState)> {
        let subs = self.subscribers.lock().unwrap_or_else(|p| p.into_inner());
        let s = subs.get(msisdn.e164())?;
        match (&s.credential, s.credential_state) {
            (Some(c), Some(state)) if state == s.record.certificate => Some((c.clone(), state)),
            _ => None,
        }
    }

    /// The credential issued last, whatever the record says now.
    pub fn issued_credential(
        &self,
        msisdn: &Msisdn,
    ) -> Option<(Arc<SimCredential>, CertificateState)> {
        let subs = self.subscribers.lock().unwrap_or_else(|p| p.into_inner());
        let s = subs.get(msisdn.e164())?;
        Some((s.credential.clone()?, s.credential_state?))
    }

    pub fn set_credential(
        &self,
        msisdn: &Msisdn,
        credential: Arc<SimCredential>,
        state: CertificateState,
    ) {
        let mut subs = self.subscribers.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(s) = subs.get_mut(msisdn.e164()) {
            s.credential = Some(credential);
            s.credential_state = Some(state);
        }
    }
}

/// What an owner check answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OwnerMatch {
    Full,
    Partial,
    None,
    UnknownSubscriber,
}

fn normalise_name(s: &str) -> String {
    s.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .to_lowercase()
}

/// The identity must match, kind and number (CMND 012345678 is not CCCD 012345678…);
/// the name and date of birth, when given, must match too for a full match. An
/// enterprise is checked by its MST, its name given as `full_name` (the organisation's).
pub fn owner_match(
    record: &SubscriberRecord,
    id_type: IdKind,
    id_number: &str,
    full_name: Option<&str>,
    dob: Option<&str>,
) -> OwnerMatch {
    let Ok(asked) = id_type.normalise(id_number) else {
        return OwnerMatch::None;
    };
    if record.id_kind() != id_type || record.id_number != asked {
        return OwnerMatch::None;
    }
    let registered_name = match (&record.organization, id_type.is_enterprise()) {
        (Some(org), true) => org.as_str(),
        _ => record.full_name.as_str(),
    };
    let name_ok = full_name.is_none_or(|n| normalise_name(n) == normalise_name(registered_name));
    // An enterprise has no date of birth.
    let dob_ok = id_type.is_enterprise() && dob.is_none()
        || !id_type.is_enterprise() && dob.is_none_or(|d| d.trim() == record.date_of_birth);
    if name_ok && dob_ok {
        OwnerMatch::Full
    } else {
        OwnerMatch::Partial
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeded_population_is_consistent() {
        let r = Registry::seeded();
        assert_eq!(r.len(), 67);
        for (n, carrier) in DEMO_NUMBERS {
            let (rec, c) = r.get(&Msisdn::parse(n).unwrap()).unwrap();
            assert_eq!(c, carrier);
            assert!(rec.sim_pki);
            assert_eq!(rec.id_number.len(), 12);
        }
    }

    #[test]
    fn owner_matching() {
        let rec = SubscriberRecord {
            full_name: "Nguyễn Văn  An".into(),
            id_number: "001099012345".into(),
            id_type: Some(IdKind::Cccd),
            organization: None,
            date_of_birth: "1999-01-02".into(),
            sim_pki: true,
            pin: "1234".into(),
            behaviour: Behaviour::Confirm,
            certificate: CertificateState::Valid,
        };
        assert_eq!(
            owner_match(&rec, IdKind::Cccd, "001099012345", None, None),
            OwnerMatch::Full
        );
        assert_eq!(
            owner_match(
                &rec,
                IdKind::Cccd,
                "001099012345",
                Some("NGUYỄN VĂN AN"),
                Some("1999-01-02")
            ),
            OwnerMatch::Full
        );
        assert_eq!(
            owner_match(
                &rec,
                IdKind::Cccd,
                "001099012345",
                Some("Trần Văn An"),
                None
            ),
            OwnerMatch::Partial
        );
        assert_eq!(
            owner_match(&rec, IdKind::Cccd, "001099012345", None, Some("2000-01-01")),
            OwnerMatch::Partial
        );
        assert_eq!(
            owner_match(
                &rec,
                IdKind::Cccd,
                "001099099999",
                Some("Nguyễn Văn An"),
                None
            ),
            OwnerMatch::None
        );
        // The same digits as another kind of document are another document.
        assert_eq!(
            owner_match(&rec, IdKind::Cmnd, "001099012345", None, None),
            OwnerMatch::None
        );
        let firm = SubscriberRecord {
            full_name: "Nguyễn Văn Giám Đốc".into(),
            id_number: "0101234567001".into(),
            id_type: None,
            organization: Some("Công ty An Bình".into()),
            ..rec.clone()
        }
        .normalised()
        .unwrap();
        assert_eq!(firm.id_type, Some(IdKind::Mst));
        assert_eq!(firm.id_number, "0101234567-001");
        assert_eq!(
            owner_match(
                &firm,
                IdKind::Mst,
                "0101234567001",
                Some("CÔNG TY AN BÌNH"),
                None
            ),
            OwnerMatch::Full
        );
        assert_eq!(
            owner_match(&firm, IdKind::Mst, "0101234567", None, None),
            OwnerMatch::None,
            "the head office is not the branch"
        );
        assert!(SubscriberRecord {
            organization: None,
            ..firm.clone()
        }
        .normalised()
        .is_err());
    }
}
