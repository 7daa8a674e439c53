//! The snapshot admission decides from: the advisory locks the counts are read under,
//! then every read for a set of asks in one pipelined flight of set-based statements
//! (each finds its rows through an index by the keys it is given: planned once per
//! connection, `store::INDEXED_PLAN_ONCE`).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;

use uuid::Uuid;

use super::admission::{GuardKey, Needs, Snapshot};
use crate::config::Settings;
use crate::domain::Carrier;
use crate::failure::Failure;
use crate::store::Cached;

/// Ages (seconds) of recent events per key, newest first.
type Ages<K> = HashMap<K, Vec<f64>>;

/// Takes the locks `needs` names (sorted, so that two transactions never wait on each
/// other crosswise) and reads the snapshot under them. The transaction runs with the
/// planned-once settings from here on.
pub async fn take(
    tx: &deadpool_postgres::Transaction<'_>,
    settings: &Settings,
    needs: &Needs,
) -> Result<Snapshot, Failure> {
    tokio::try_join!(
        async {
            tx.batch_execute(&crate::store::INDEXED_PLAN_ONCE)
                .await
                .map_err(Failure::from)
        },
        take_locks(tx, &needs.locks),
    )?;
    let numbers: Vec<String> = needs.numbers.iter().cloned().collect();
    let (phone_ages, ip_ages, locked, block_numbers, conversion, ported, daily) = tokio::try_join!(
        phone_purpose_ages(tx, &settings.limits.phone_purpose, &needs.pairs),
        ip_ages(tx, &settings.limits.ip, &needs.ips),
        locked_accounts(tx, &needs.accounts),
        block_numbers(tx, &needs.blocks),
        conversion_counts(tx, &needs.prefixes),
        ported(tx, &numbers),
        daily_sent(tx, &needs.quota_clients),
    )?;
    Ok(Snapshot {
        phone_ages,
        ip_ages,
        locked,
        block_numbers,
        conversion,
        ported,
        daily,
    })
}

/// The transaction-scoped advisory locks named by `keys` (sorted), in one round trip.
async fn take_locks(
    tx: &deadpool_postgres::Transaction<'_>,
    keys: &[String],
) -> Result<(), Failure> {
    if keys.is_empty() {
        return Ok(());
    }
    tx.query_one_cached(
        "SELECT count(pg_advisory_xact_lock(hashtextextended(k, 7))) FROM unnest($1::text[]) k",
        &[&keys],
    )
    .await?;
    Ok(())
}

/// Seconds since each recent send per (number, purpose), newest first. A send is
/// counted once, by its first step: an SMS, or a ZNS message (whose SMS fallback, if
/// any, is a later step).
pub const PHONE_PURPOSE_AGES_SQL: &str = "SELECT k.m, k.p, a.age
             FROM unnest($1::text[], $2::text[]) AS k(m, p)
             CROSS JOIN LATERAL (
                SELECT EXTRACT(EPOCH FROM (now() - s.created_at))::float8 AS age
                FROM (SELECT o.created_at FROM sms_outbox o
                      JOIN otp_challenges c ON c.id = o.challenge_id
                      WHERE o.msisdn = k.m AND c.purpose = k.p AND o.step = 0
                        AND o.created_at > now() - make_interval(secs => $3::float8)
                      UNION ALL
                      SELECT z.created_at FROM zns_outbox z
                      JOIN otp_challenges c ON c.id = z.challenge_id
                      WHERE z.msisdn = k.m AND c.purpose = k.p AND z.step = 0
                        AND z.created_at > now() - make_interval(secs => $3::float8)) s
                ORDER BY s.created_at DESC LIMIT $4) a
             ORDER BY k.m, k.p, a.age";

/// Seconds since each recent send per end-user address (creates and resends alike,
/// each by its first step), newest first.
pub const IP_AGES_SQL: &str = "SELECT k.ip, a.age
             FROM unnest($1::inet[]) AS k(ip)
             CROSS JOIN LATERAL (
                SELECT EXTRACT(EPOCH FROM (now() - s.created_at))::float8 AS age
                FROM (SELECT created_at FROM sms_outbox
                      WHERE client_ip = k.ip AND step = 0
                        AND created_at > now() - make_interval(secs => $2::float8)
                      UNION ALL
                      SELECT created_at FROM zns_outbox
                      WHERE client_ip = k.ip AND step = 0
                        AND created_at > now() - make_interval(secs => $2::float8)) s
                ORDER BY s.created_at DESC LIMIT $3) a
             ORDER BY k.ip, a.age";

/// The batch's accounts with a lockout row, locked in order.
pub const LOCKED_ACCOUNTS_SQL: &str = "SELECT l.client_id, l.account_ref, l.locked_at IS NOT NULL
             FROM account_lockouts l
             JOIN unnest($1::uuid[], $2::text[]) AS k(client_id, account_ref)
               ON l.client_id = k.client_id AND l.account_ref = k.account_ref
             ORDER BY l.client_id, l.account_ref
             FOR UPDATE OF l";

/// The distinct numbers per (client, block of 100) within each window.
pub const BLOCK_NUMBERS_SQL: &str = "SELECT k.i, n.msisdn
             FROM unnest($1::uuid[], $2::text[], $3::float8[], $4::int4[]) AS k(client_id, block, w, i)
             CROSS JOIN LATERAL (
                SELECT DISTINCT msisdn FROM otp_challenges
                WHERE msisdn BETWEEN k.block || '00' AND k.block || '99'
                  AND client_id = k.client_id
                  AND created_at > now() - make_interval(secs => k.w)) n";

/// The conversion guard's sent/approved counts per (client, prefix, window).
pub const CONVERSION_COUNTS_SQL: &str = "SELECT k.i, s.*
             FROM unnest($1::uuid[], $2::text[], $3::float8[], $4::int4[]) AS k(client_id, prefix, w, i)
             CROSS JOIN LATERAL (
                WITH b AS (
                    SELECT hour >= date_trunc('hour', now() - make_interval(secs => k.w)) AS recent,
                           sent, approved
                    FROM otp_prefix_hourly
                    WHERE client_id = k.client_id AND prefix = k.prefix
                      AND hour > now() - interval '7 days')
                SELECT coalesce(sum(sent) FILTER (WHERE recent), 0)::bigint,
                       coalesce(sum(approved) FILTER (WHERE recent), 0)::bigint,
                       coalesce(sum(sent) FILTER (WHERE NOT recent), 0)::bigint,
                       coalesce(sum(approved) FILTER (WHERE NOT recent), 0)::bigint
                FROM b) s";

/// The network that serves each ported number now.
pub const PORTED_SQL: &str = "SELECT msisdn, carrier FROM ported_numbers WHERE msisdn = ANY($1)";

/// Each client's SMS of this UTC day so far, and the seconds until the next midnight.
pub const DAILY_SENT_SQL: &str = "SELECT k.client_id, coalesce(sum(d.sms), 0)::bigint,
                    EXTRACT(EPOCH FROM (date_trunc('day', now() AT TIME ZONE 'UTC') + interval '1 day'
                        - (now() AT TIME ZONE 'UTC')))::float8
             FROM unnest($1::uuid[]) AS k(client_id)
             LEFT JOIN client_daily_sms d
               ON d.client_id = k.client_id AND d.day = (now() AT TIME ZONE 'UTC')::date
             GROUP BY k.client_id";

async fn phone_purpose_ages(
    tx: &deadpool_postgres::Transaction<'_>,
    limits: &[crate::config::WindowLimit],
    pairs: &BTreeSet<(String, String)>,
) -> Result<Ages<(String, String)>, Failure> {
    let Some((longest, most)) = crate::limits::lookback(limits) else {
        return Ok(HashMap::new());
    };
    if pairs.is_empty() {
        return Ok(HashMap::new());
    }
    let (msisdns, purposes): (Vec<&str>, Vec<&str>) =
        pairs.iter().map(|(m, p)| (m.as_str(), p.as_str())).unzip();
    let rows = tx
        .query_cached(
            PHONE_PURPOSE_AGES_SQL,
            &[&msisdns, &purposes, &longest, &most],
        )
        .await?;
    let mut out: Ages<(String, String)> = HashMap::new();
    for r in rows {
        out.entry((r.get(0), r.get(1))).or_default().push(r.get(2));
    }
    Ok(out)
}

async fn ip_ages(
    tx: &deadpool_postgres::Transaction<'_>,
    limits: &[crate::config::WindowLimit],
    ips: &BTreeSet<IpAddr>,
) -> Result<Ages<IpAddr>, Failure> {
    let Some((longest, most)) = crate::limits::lookback(limits) else {
        return Ok(HashMap::new());
    };
    if ips.is_empty() {
        return Ok(HashMap::new());
    }
    let ips: Vec<IpAddr> = ips.iter().copied().collect();
    let rows = tx
        .query_cached(IP_AGES_SQL, &[&ips, &longest, &most])
        .await?;
    let mut out: Ages<IpAddr> = HashMap::new();
    for r in rows {
        out.entry(r.get(0)).or_default().push(r.get(1));
    }
    Ok(out)
}

/// The batch's locked accounts; their rows stay locked (in sorted order) against
/// concurrent checks until the batch ends, as on the single path.
async fn locked_accounts(
    tx: &deadpool_postgres::Transaction<'_>,
    accounts: &BTreeSet<(Uuid, String)>,
) -> Result<BTreeSet<(Uuid, String)>, Failure> {
    if accounts.is_empty() {
        return Ok(BTreeSet::new());
    }
    let (clients, refs): (Vec<Uuid>, Vec<&str>) =
        accounts.iter().map(|(c, a)| (*c, a.as_str())).unzip();
    let rows = tx
        .query_cached(LOCKED_ACCOUNTS_SQL, &[&clients, &refs])
        .await?;
    Ok(rows
        .iter()
        .filter(|r| r.get::<_, bool>(2))
        .map(|r| (r.get(0), r.get(1)))
        .collect())
}

/// The distinct numbers of each block that had codes from the client in the window.
async fn block_numbers(
    tx: &deadpool_postgres::Transaction<'_>,
    blocks: &BTreeSet<GuardKey>,
) -> Result<HashMap<GuardKey, BTreeSet<String>>, Failure> {
    if blocks.is_empty() {
        return Ok(HashMap::new());
    }
    let clients: Vec<Uuid> = blocks.iter().map(|b| b.0).collect();
    let prefixes: Vec<&str> = blocks.iter().map(|b| b.1.as_str()).collect();
    let windows: Vec<f64> = blocks.iter().map(|b| b.2 as f64 / 1000.0).collect();
    let ordinals: Vec<i32> = (0..blocks.len() as i32).collect();
    let rows = tx
        .query_cached(
            BLOCK_NUMBERS_SQL,
            &[&clients, &prefixes, &windows, &ordinals],
        )
        .await?;
    let keys: Vec<&GuardKey> = blocks.iter().collect();
    let mut out: HashMap<GuardKey, BTreeSet<String>> = HashMap::new();
    for r in rows {
        let i: i32 = r.get(0);
        out.entry(keys[i as usize].clone())
            .or_default()
            .insert(r.get(1));
    }
    Ok(out)
}

/// The conversion guard's counts per (client, prefix, window).
async fn conversion_counts(
    tx: &deadpool_postgres::Transaction<'_>,
    prefixes: &BTreeSet<GuardKey>,
) -> Result<HashMap<GuardKey, crate::guards::ConversionWindow>, Failure> {
    if prefixes.is_empty() {
        return Ok(HashMap::new());
    }
    let clients: Vec<Uuid> = prefixes.iter().map(|b| b.0).collect();
    let names: Vec<&str> = prefixes.iter().map(|b| b.1.as_str()).collect();
    let windows: Vec<f64> = prefixes.iter().map(|b| b.2 as f64 / 1000.0).collect();
    let ordinals: Vec<i32> = (0..prefixes.len() as i32).collect();
    let rows = tx
        .query_cached(
            CONVERSION_COUNTS_SQL,
            &[&clients, &names, &windows, &ordinals],
        )
        .await?;
    let keys: Vec<&GuardKey> = prefixes.iter().collect();
    Ok(rows
        .iter()
        .map(|r| {
            let i: i32 = r.get(0);
            (
                keys[i as usize].clone(),
                (r.get(1), r.get(2), r.get(3), r.get(4)),
            )
        })
        .collect())
}

/// The network that serves each ported number now.
async fn ported(
    tx: &deadpool_postgres::Transaction<'_>,
    numbers: &[String],
) -> Result<HashMap<String, Carrier>, Failure> {
    let rows = tx.query_cached(PORTED_SQL, &[&numbers]).await?;
    rows.iter()
        .map(|r| {
            let carrier: String = r.get(1);
            carrier
                .parse()
                .map(|c| (r.get(0), c))
                .map_err(|e| Failure::Internal(anyhow::anyhow!("ported_numbers: {e}")))
        })
        .collect()
}

/// Each client's SMS of this UTC day so far, and the seconds until the next midnight.
async fn daily_sent(
    tx: &deadpool_postgres::Transaction<'_>,
    clients: &BTreeSet<Uuid>,
) -> Result<BTreeMap<Uuid, (i64, f64)>, Failure> {
    if clients.is_empty() {
        return Ok(BTreeMap::new());
    }
    let clients: Vec<Uuid> = clients.iter().copied().collect();
    let rows = tx.query_cached(DAILY_SENT_SQL, &[&clients]).await?;
    Ok(rows
        .iter()
        .map(|r| (r.get(0), (r.get(1), r.get(2))))
        .collect())
}
