//! Admission: which sends may go out, decided from a snapshot of what the database
//! holds and the requests in arrival order. Pure (no I/O, and no clock: ages are the
//! database's), and the only place the rules live: a create batch, a lone create and a
//! resend are all decided here, so each rule exists once.
//!
//! The rules, in order: a template registered with the serving network (where one is
//! needed), the number's windows (per purpose), the end user's address's
//! windows, the account lockout, the consecutive-numbers guard, the conversion guard,
//! the client's daily quota. A send admitted counts for the requests after it, as the
//! database would count it once written.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;

use uuid::Uuid;

use crate::clients::ApiClient;
use crate::config::Settings;
use crate::domain::{Carrier, Locale, Msisdn, Purpose};
use crate::guards::{Blocked, ConversionWindow};
use crate::limits::Limited;

/// What a send is: the first code of a new verification, or a new code for one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Create,
    Resend,
}

/// One send asked for, as admission sees it.
#[derive(Debug, Clone)]
pub struct Ask<'a> {
    pub kind: Kind,
    pub client: &'a ApiClient,
    pub msisdn: &'a Msisdn,
    pub purpose: Purpose,
    pub locale: Locale,
    /// The end user's address (a resend: the one the verification was created for).
    pub client_ip: Option<IpAddr>,
    pub account_ref: Option<&'a str>,
    /// Whether an SMS is among the send's channels (the template rule is the SMS
    /// networks').
    pub sms: bool,
}

/// (client, block of 100 numbers or prefix, window in ms): a guard's counting key.
pub type GuardKey = (Uuid, String, u64);

/// What the database holds that the rules read, for a set of asks.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Snapshot {
    /// Seconds since each recent SMS per (number, purpose), newest first.
    pub phone_ages: HashMap<(String, String), Vec<f64>>,
    /// Seconds since each recent SMS per end-user address, newest first.
    pub ip_ages: HashMap<IpAddr, Vec<f64>>,
    /// The locked (client, account_ref) pairs.
    pub locked: BTreeSet<(Uuid, String)>,
    /// The distinct numbers of each block that had new verifications in the window.
    pub block_numbers: HashMap<GuardKey, BTreeSet<String>>,
    /// The conversion guard's counts per prefix.
    pub conversion: HashMap<GuardKey, ConversionWindow>,
    /// The network that serves each ported number now.
    pub ported: HashMap<String, Carrier>,
    /// Each client's SMS of this UTC day, and the seconds until the next midnight.
    pub daily: BTreeMap<Uuid, (i64, f64)>,
}

/// What to lock and read for a set of asks.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Needs {
    /// Advisory locks the counts are read under (sorted when taken).
    pub locks: Vec<String>,
    pub pairs: BTreeSet<(String, String)>,
    pub ips: BTreeSet<IpAddr>,
    pub accounts: BTreeSet<(Uuid, String)>,
    pub blocks: BTreeSet<GuardKey>,
    pub prefixes: BTreeSet<GuardKey>,
    pub numbers: BTreeSet<String>,
    pub quota_clients: BTreeSet<Uuid>,
}

/// A send that may go: where to.
#[derive(Debug, Clone, PartialEq)]
pub struct Admitted {
    pub carrier: Carrier,
    pub route: String,
    pub sender: String,
}

/// What became of an ask.
#[derive(Debug, Clone, PartialEq)]
pub enum Fate {
    Admitted(Admitted),
    /// A window or the daily quota (audited as `otp.rate_limited`).
    Limited(Limited),
    /// A pumping guard (audited as `guard.blocked`).
    Guarded(Blocked),
    AccountLocked,
    /// The serving network takes only registered templates, and the client has none
    /// for this purpose and language there.
    Unregistered(Unregistered),
}

/// A send the serving network would block: no template registered for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unregistered {
    pub carrier: Carrier,
    pub brandname: String,
    pub purpose: Purpose,
    pub locale: Locale,
}

/// The advisory lock that serialises sends to one number for one purpose.
pub fn phone_purpose_lock(msisdn: &str, purpose: &str) -> String {
    format!("phone-purpose:{msisdn}:{purpose}")
}

/// The advisory lock that serialises sends for one end-user address.
pub fn ip_lock(ip: IpAddr) -> String {
    format!("ip:{ip}")
}

/// The client's daily SMS quota: its own, or the configured default.
pub fn daily_quota(settings: &Settings, client: &ApiClient) -> Option<i64> {
    client.daily_sms_quota.or(settings.limits.client_daily_sms)
}

/// The consecutive-numbers guard's block of a number (84 + 7 digits).
fn block_of(e164: &str) -> &str {
    &e164[..e164.len() - 2]
}

/// The conversion guard's prefix of a number (84 + two digits).
fn prefix_of(e164: &str) -> &str {
    &e164[..4]
}

fn block_key(settings: &Settings, ask: &Ask) -> Option<GuardKey> {
    let g = settings.guards_for(Some(&ask.client.name));
    g.sequential_enabled.then(|| {
        (
            ask.client.id,
            block_of(ask.msisdn.e164()).to_owned(),
            g.sequential_window.as_millis() as u64,
        )
    })
}

fn prefix_key(settings: &Settings, ask: &Ask) -> Option<GuardKey> {
    let g = settings.guards_for(Some(&ask.client.name));
    g.conversion_enabled.then(|| {
        (
            ask.client.id,
            prefix_of(ask.msisdn.e164()).to_owned(),
            g.conversion_window.as_millis() as u64,
        )
    })
}

fn pair(ask: &Ask) -> (String, String) {
    (
        ask.msisdn.e164().to_owned(),
        ask.purpose.as_str().to_owned(),
    )
}

/// What must be locked and read to decide `asks`.
pub fn needs(settings: &Settings, asks: &[Ask]) -> Needs {
    let limits = &settings.limits;
    let mut n = Needs::default();
    for ask in asks {
        let e164 = ask.msisdn.e164();
        if !limits.phone_purpose.is_empty() {
            n.locks.push(phone_purpose_lock(e164, ask.purpose.as_str()));
            n.pairs.insert(pair(ask));
        }
        if let (Some(ip), false) = (ask.client_ip, limits.ip.is_empty()) {
            n.locks.push(ip_lock(ip));
            n.ips.insert(ip);
        }
        if let Some(account) = ask.account_ref {
            n.accounts.insert((ask.client.id, account.to_owned()));
        }
        n.blocks.extend(block_key(settings, ask));
        n.prefixes.extend(prefix_key(settings, ask));
        n.numbers.insert(e164.to_owned());
        if daily_quota(settings, ask.client).is_some() {
            n.quota_clients.insert(ask.client.id);
        }
    }
    n.locks.sort();
    n.locks.dedup();
    n
}

/// The fate of each ask, in order; each admitted one counts in `snapshot` for the rest.
pub fn admit(settings: &Settings, snapshot: &mut Snapshot, asks: &[Ask]) -> Vec<Fate> {
    asks.iter()
        .map(|ask| {
            let fate = decide(settings, snapshot, ask);
            if matches!(fate, Fate::Admitted(_)) {
                record(settings, snapshot, ask);
            }
            fate
        })
        .collect()
}

/// One ask against the snapshot.
fn decide(settings: &Settings, s: &Snapshot, ask: &Ask) -> Fate {
    let e164 = ask.msisdn.e164();
    let carrier = s
        .ported
        .get(e164)
        .copied()
        .unwrap_or_else(|| ask.msisdn.carrier());
    let (route, route_cfg) = settings.route_for(carrier);
    let sender = ask.client.sender_for(carrier.as_str(), &route_cfg.sender);
    let registered = ask
        .client
        .template_for(carrier.as_str(), ask.purpose, ask.locale)
        .is_some();
    let held_to_templates =
        route_cfg.require_registered_templates || ask.client.registered_with(carrier.as_str());
    if ask.sms && held_to_templates && !registered {
        return Fate::Unregistered(Unregistered {
            carrier,
            brandname: sender.to_owned(),
            purpose: ask.purpose,
            locale: ask.locale,
        });
    }
    let limits = &settings.limits;
    let none = Vec::new();
    let phone = s.phone_ages.get(&pair(ask)).unwrap_or(&none);
    if let Err(e) = crate::limits::phone_purpose_refusal(phone, &limits.phone_purpose) {
        return Fate::Limited(e);
    }
    if let Some(ip) = ask.client_ip {
        let ages = s.ip_ages.get(&ip).unwrap_or(&none);
        if let Err(e) = crate::limits::ip_refusal(ages, &limits.ip) {
            return Fate::Limited(e);
        }
    }
    if let Some(account) = ask.account_ref {
        if s.locked.contains(&(ask.client.id, account.to_owned())) {
            return Fate::AccountLocked;
        }
    }
    let g = settings.guards_for(Some(&ask.client.name));
    if let Some(key) = block_key(settings, ask) {
        let others = s
            .block_numbers
            .get(&key)
            .map_or(0, |set| set.iter().filter(|n| n.as_str() != e164).count());
        if let Some(blocked) = crate::guards::sequential_refusal(g, &key.1, others as i64) {
            return Fate::Guarded(blocked);
        }
    }
    if let Some(key) = prefix_key(settings, ask) {
        let counts = s.conversion.get(&key).copied().unwrap_or_default();
        if let Some(blocked) = crate::guards::conversion_refusal(g, &key.1, counts) {
            return Fate::Guarded(blocked);
        }
    }
    if let Some(quota) = daily_quota(settings, ask.client) {
        let (sent, until_midnight) = s
            .daily
            .get(&ask.client.id)
            .copied()
            .unwrap_or((0, 86_400.0));
        if let Err(e) = crate::limits::daily_refusal(sent, until_midnight, quota) {
            return Fate::Limited(e);
        }
    }
    Fate::Admitted(Admitted {
        carrier,
        route: route.to_owned(),
        sender: sender.to_owned(),
    })
}

/// What an admitted send adds once written: an SMS to the number and for the address
/// (now), a number in its block (a new verification only: a resend adds no
/// verification), one SMS of the client's day. The conversion guard's counts are not
/// the transaction's (they are flushed in the background), so they do not change.
fn record(settings: &Settings, s: &mut Snapshot, ask: &Ask) {
    s.phone_ages.entry(pair(ask)).or_default().insert(0, 0.0);
    if let Some(ip) = ask.client_ip {
        s.ip_ages.entry(ip).or_default().insert(0, 0.0);
    }
    if ask.kind == Kind::Create {
        if let Some(key) = block_key(settings, ask) {
            s.block_numbers
                .entry(key)
                .or_default()
                .insert(ask.msisdn.e164().to_owned());
        }
    }
    if daily_quota(settings, ask.client).is_some() {
        let day = s.daily.entry(ask.client.id).or_insert((0, 86_400.0));
        day.0 += 1;
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use proptest::prelude::*;

    use super::*;
    use crate::config::WindowLimit;

    fn client(i: u8, quota: Option<i64>) -> ApiClient {
        ApiClient {
            id: Uuid::from_u128(u128::from(i) + 1),
            name: format!("client-{i}"),
            allowed_purposes: None,
            sender_ids: Default::default(),
            sms_templates: Default::default(),
            daily_sms_quota: quota,
            requests_per_second: None,
            request_burst: None,
            otp_channels: None,
            otp_callback_url: None,
        }
    }

    fn settings(phone_max: i64, ip_max: i64, seq_max: i64, quota: Option<i64>) -> Settings {
        let mut s = Settings::default();
        // A route per network and the aggregator for the rest (the defaults hold none).
        for (name, port) in [
            ("viettel", 2775),
            ("vinaphone", 2776),
            ("mobifone", 2777),
            ("aggregator", 2778),
        ] {
            s.smpp.insert(
                name.to_owned(),
                crate::config::SmppRoute {
                    host: "10.0.0.1".into(),
                    port,
                    system_id: name.to_owned(),
                    password: secrecy::SecretString::from("pw"),
                    ..Default::default()
                },
            );
        }
        s.validate().unwrap();
        s.limits.phone_purpose = vec![WindowLimit {
            window: Duration::from_secs(600),
            max: phone_max,
        }];
        s.limits.ip = vec![WindowLimit {
            window: Duration::from_secs(3600),
            max: ip_max,
        }];
        s.limits.client_daily_sms = quota;
        s.guards.sequential_enabled = true;
        s.guards.sequential_max_numbers = seq_max;
        s
    }

    /// The snapshot the database would show for request `i` had requests `0..i` been
    /// committed one by one: built afresh from the first snapshot and the earlier
    /// admissions, independently of `admit`'s own bookkeeping.
    fn as_committed(settings: &Settings, first: &Snapshot, before: &[(Ask, bool)]) -> Snapshot {
        let mut s = first.clone();
        for (ask, admitted) in before {
            if !admitted {
                continue;
            }
            let e164 = ask.msisdn.e164().to_owned();
            s.phone_ages
                .entry((e164.clone(), ask.purpose.as_str().to_owned()))
                .or_default()
                .insert(0, 0.0);
            if let Some(ip) = ask.client_ip {
                s.ip_ages.entry(ip).or_default().insert(0, 0.0);
            }
            let g = settings.guards_for(Some(&ask.client.name));
            if ask.kind == Kind::Create && g.sequential_enabled {
                let key = (
                    ask.client.id,
                    e164[..e164.len() - 2].to_owned(),
                    g.sequential_window.as_millis() as u64,
                );
                s.block_numbers.entry(key).or_default().insert(e164);
            }
            if daily_quota(settings, ask.client).is_some() {
                s.daily.entry(ask.client.id).or_insert((0, 86_400.0)).0 += 1;
            }
        }
        s
    }

    proptest! {
        /// Any batch admits exactly what the same requests, admitted one by one in
        /// arrival order (each against what the earlier ones committed), would admit.
        #[test]
        fn a_batch_admits_what_its_requests_one_by_one_would(
            phone_max in 1i64..4,
            ip_max in 1i64..5,
            seq_max in 1i64..4,
            quota in proptest::option::of(0i64..6),
            own_quota in proptest::option::of(0i64..6),
            seen in proptest::collection::vec((0u8..4, 0u8..2, 0.0f64..900.0), 0..6),
            locked_account in 0u8..3,
            asks in proptest::collection::vec(
                (0u8..2, 0u8..4, 0u8..2, proptest::option::of(0u8..3), proptest::option::of(0u8..3), any::<bool>(), any::<bool>()),
                1..12,
            ),
        ) {
            let settings = settings(phone_max, ip_max, seq_max, quota);
            // Client 1 registered one template with Viettel: its other sends there are
            // refused.
            let mut registered = client(1, own_quota);
            registered.sms_templates.insert(
                "viettel".into(),
                [("login:vi".to_owned(), "Ma {code}".to_owned())].into(),
            );
            let clients = [client(0, None), registered];
            let numbers: Vec<Msisdn> = ["0981000001", "0981000002", "0981000050", "0911000001"]
                .iter()
                .map(|n| Msisdn::parse(n).unwrap())
                .collect();
            let purposes = [Purpose::Login, Purpose::Register];
            let ips: Vec<IpAddr> = ["10.0.0.1", "10.0.0.2", "2001:db8::1"]
                .iter()
                .map(|ip| ip.parse().unwrap())
                .collect();
            let accounts = ["acct-a", "acct-b", "acct-c"];
            let asks: Vec<Ask> = asks
                .iter()
                .map(|&(c, n, p, ip, acct, resend, english)| Ask {
                    kind: if resend { Kind::Resend } else { Kind::Create },
                    client: &clients[c as usize],
                    msisdn: &numbers[n as usize],
                    purpose: purposes[p as usize],
                    locale: if english { Locale::En } else { Locale::Vi },
                    client_ip: ip.map(|i| ips[i as usize]),
                    account_ref: acct.map(|a| accounts[a as usize]),
                    sms: true,
                })
                .collect();
            // What the database held before: some recent SMS, a locked account, the
            // day's count so far.
            let mut first = Snapshot::default();
            for &(n, p, age) in &seen {
                let e164 = numbers[n as usize].e164().to_owned();
                first.phone_ages
                    .entry((e164, purposes[p as usize].as_str().to_owned()))
                    .or_default()
                    .push(age);
                first.ip_ages.entry(ips[0]).or_default().push(age);
            }
            first.phone_ages.values_mut().for_each(|a| a.sort_by(f64::total_cmp));
            first.ip_ages.values_mut().for_each(|a| a.sort_by(f64::total_cmp));
            first.locked.insert((clients[0].id, accounts[locked_account as usize].to_owned()));
            first.daily.insert(clients[1].id, (1, 3600.0));

            let mut batch = first.clone();
            let together = admit(&settings, &mut batch, &asks);

            let mut before: Vec<(Ask, bool)> = Vec::new();
            for (i, ask) in asks.iter().enumerate() {
                let mut alone = as_committed(&settings, &first, &before);
                let fate = admit(&settings, &mut alone, std::slice::from_ref(ask));
                prop_assert_eq!(&fate[0], &together[i], "request {}", i);
                before.push((ask.clone(), matches!(fate[0], Fate::Admitted(_))));
            }
            prop_assert_eq!(batch, as_committed(&settings, &first, &before));
        }
    }

    /// Each rule refuses on its own, in its place in the order.
    #[test]
    fn each_rule_refuses_with_its_own_answer() {
        let settings = settings(1, 1, 1, Some(1));
        let c = client(0, None);
        let n = Msisdn::parse("0981000001").unwrap();
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        let ask = |ip: Option<IpAddr>, acct: Option<&'static str>| Ask {
            kind: Kind::Create,
            client: &c,
            msisdn: &n,
            purpose: Purpose::Login,
            locale: Locale::Vi,
            client_ip: ip,
            account_ref: acct,
            sms: true,
        };
        let mut s = Snapshot::default();
        let fates = admit(&settings, &mut s, &[ask(Some(ip), None), ask(None, None)]);
        assert!(matches!(fates[0], Fate::Admitted(_)), "{fates:?}");
        assert!(
            matches!(&fates[1], Fate::Limited(l) if l.detail.contains("this number")),
            "{fates:?}"
        );
        let other = Msisdn::parse("0981000077").unwrap();
        let mut s = Snapshot::default();
        s.ip_ages.insert(ip, vec![1.0]);
        let by_ip = Ask {
            msisdn: &other,
            ..ask(Some(ip), None)
        };
        assert!(matches!(
            &admit(&settings, &mut s, &[by_ip])[0],
            Fate::Limited(l) if l.detail.contains("address")
        ));
        let mut s = Snapshot::default();
        s.locked.insert((c.id, "acct".into()));
        assert_eq!(
            admit(&settings, &mut s, &[ask(None, Some("acct"))]),
            vec![Fate::AccountLocked]
        );
        let mut s = Snapshot::default();
        let window = settings.guards_for(None).sequential_window.as_millis() as u64;
        s.block_numbers.insert(
            (c.id, "849810000".into(), window),
            BTreeSet::from(["84981000002".to_owned()]),
        );
        assert!(matches!(
            &admit(&settings, &mut s, &[ask(None, None)])[0],
            Fate::Guarded(b) if b.guard == "sequential"
        ));
        let mut s = Snapshot::default();
        s.daily.insert(c.id, (1, 10.0));
        assert!(matches!(
            &admit(&settings, &mut s, &[ask(None, None)])[0],
            Fate::Limited(l) if l.retry_after == 10
        ));
    }

    /// Where a template is needed and none is registered, the send is refused before
    /// any window counts it; a registered one is sent from the client's brandname.
    #[test]
    fn a_network_that_takes_only_registered_templates() {
        let mut settings = settings(5, 5, 5, None);
        settings
            .smpp
            .get_mut("vinaphone")
            .unwrap()
            .require_registered_templates = true;
        let mut c = client(0, None);
        let viettel = Msisdn::parse("0981000001").unwrap();
        let vinaphone = Msisdn::parse("0911000001").unwrap();
        let ask = |c: &'_ ApiClient, n: &'_ Msisdn, locale| {
            admit(
                &settings,
                &mut Snapshot::default(),
                &[Ask {
                    kind: Kind::Create,
                    client: c,
                    msisdn: n,
                    purpose: Purpose::Login,
                    locale,
                    client_ip: None,
                    account_ref: None,
                    sms: true,
                }],
            )
            .remove(0)
        };
        // Nothing registered: Viettel takes the built-in text, VinaPhone refuses it.
        assert!(matches!(ask(&c, &viettel, Locale::Vi), Fate::Admitted(_)));
        assert_eq!(
            ask(&c, &vinaphone, Locale::Vi),
            Fate::Unregistered(Unregistered {
                carrier: Carrier::Vinaphone,
                brandname: settings.smpp["vinaphone"].sender.clone(),
                purpose: Purpose::Login,
                locale: Locale::Vi,
            })
        );
        // A template for login in Vietnamese on each: English stays refused on both.
        c.sender_ids.insert("viettel".into(), "UBND-HN".into());
        for carrier in ["viettel", "vinaphone"] {
            c.sms_templates.insert(
                carrier.into(),
                [("login:vi".to_owned(), "Ma {code}".to_owned())].into(),
            );
        }
        assert!(matches!(
            ask(&c, &viettel, Locale::Vi),
            Fate::Admitted(Admitted { ref sender, .. }) if sender == "UBND-HN"
        ));
        assert!(matches!(ask(&c, &vinaphone, Locale::Vi), Fate::Admitted(_)));
        assert!(matches!(
            ask(&c, &viettel, Locale::En),
            Fate::Unregistered(Unregistered { carrier: Carrier::Viettel, ref brandname, .. }) if brandname == "UBND-HN"
        ));
        assert!(matches!(
            ask(&c, &vinaphone, Locale::En),
            Fate::Unregistered(_)
        ));
    }
}
