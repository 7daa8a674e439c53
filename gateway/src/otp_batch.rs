//! Creates batched across requests. The requests that arrive while this instance's
//! batchers are busy are taken together and run as one transaction of set-based
//! statements: one to take every advisory lock (sorted), one pipelined flight of reads
//! (each limit's, the guards', portability, the quotas) for the whole batch, one
//! statement that inserts the challenges, their SMS and their audit rows and counts the
//! quotas, and one commit. A lone request is a batch of one: nothing waits for company.
//!
//! Decisions are the single path's (`otp::create_one`), taken in arrival order: each
//! request's limits see what the database holds plus what the batch has accepted before
//! it, so two requests for one number in one batch count like two transactions would.
//! What the batch cannot settle on its own (an Idempotency-Key repeated within it, or
//! the batch failing as a whole) goes through the single path after it, which sees the
//! committed state.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;
use std::sync::Arc;

use serde_json::json;
use tokio::sync::{mpsc, oneshot, Mutex};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::api::auth::ApiClient;
use crate::api::error::ApiError;
use crate::db::Cached;
use crate::domain::Carrier;
use crate::otp::{NewOtp, OtpView, Prepared, CHALLENGE_COLUMNS};
use crate::startup::AppState;

type Reply = Result<(OtpView, bool), ApiError>;

struct Job {
    client: ApiClient,
    req: NewOtp,
    prepared: Prepared,
    reply: oneshot::Sender<Reply>,
}

/// The queue the API hands creates to.
pub struct CreateQueue {
    sender: mpsc::Sender<Job>,
    receiver: Arc<Mutex<mpsc::Receiver<Job>>>,
}

impl CreateQueue {
    pub fn new(capacity: usize) -> CreateQueue {
        let (sender, receiver) = mpsc::channel(capacity.max(1));
        CreateQueue {
            sender,
            receiver: Arc::new(Mutex::new(receiver)),
        }
    }

    pub(crate) async fn submit(&self, client: ApiClient, req: NewOtp, prepared: Prepared) -> Reply {
        let (reply, answer) = oneshot::channel();
        let job = Job {
            client,
            req,
            prepared,
            reply,
        };
        if self.sender.send(job).await.is_err() {
            return Err(ApiError::Unavailable(anyhow::anyhow!(
                "the create batcher has stopped"
            )));
        }
        answer.await.unwrap_or_else(|_| {
            Err(ApiError::Unavailable(anyhow::anyhow!(
                "the create batcher stopped before answering"
            )))
        })
    }
}

/// One batcher: takes what is queued (up to `max`), runs it, and again. Several run at
/// once, each on its own connection; while they are busy, arrivals queue up and make
/// the next batch larger.
pub async fn run(state: Arc<AppState>, max: usize, shutdown: CancellationToken) {
    let Some(queue) = state.create_queue.as_ref() else {
        return;
    };
    let receiver = queue.receiver.clone();
    loop {
        let mut jobs = Vec::new();
        {
            let mut rx = receiver.lock().await;
            tokio::select! {
                _ = shutdown.cancelled() => return,
                job = rx.recv() => match job {
                    Some(job) => jobs.push(job),
                    None => return,
                },
            }
            while jobs.len() < max {
                match rx.try_recv() {
                    Ok(job) => jobs.push(job),
                    Err(_) => break,
                }
            }
        }
        state.funnel.create_batch(jobs.len());
        run_batch(&state, jobs).await;
    }
}

/// What a job became.
enum Fate {
    /// Accepted into the batch's writes.
    Accepted,
    /// Answered without a write.
    Answered(Box<Reply>),
    /// Refused by a window limit or the quota (audited after the batch).
    Limited(ApiError),
    /// Refused by a pumping guard (audited after the batch).
    Guarded(crate::guards::Blocked),
    /// Left to the single path after the batch.
    Alone,
}

async fn run_batch(state: &AppState, jobs: Vec<Job>) {
    let mut fates: Vec<Fate> = (0..jobs.len()).map(|_| Fate::Alone).collect();
    let mut batch_failed = false;
    let written = match decide_and_write(state, &jobs, &mut fates).await {
        Ok(rows) => rows,
        Err(e) => {
            // Each request gets its own transaction. Usually nothing was committed, but
            // a connection lost during the commit leaves that unknown: each first looks
            // for its own challenge (by its id, made before the batch).
            tracing::warn!(error = %e, size = jobs.len(), "create batch failed; creating one by one");
            fates.iter_mut().for_each(|f| *f = Fate::Alone);
            batch_failed = true;
            HashMap::new()
        }
    };
    if !written.is_empty() {
        state.outbox_wake.notify_one();
    }
    for (job, fate) in jobs.into_iter().zip(fates) {
        let Job {
            client,
            req,
            prepared,
            reply,
        } = job;
        let answer = match fate {
            Fate::Answered(answer) => *answer,
            Fate::Accepted => match written.get(&prepared.id) {
                Some(view) => {
                    let view = view.clone();
                    state
                        .conversion_counts
                        .created(client.id, req.msisdn.e164(), view.created_at);
                    state.funnel.otp("created", &view.carrier, 1);
                    tracing::info!(
                        otp = %view.id, msisdn = %req.msisdn, purpose = %req.purpose,
                        request_id = prepared.request_id.as_deref().unwrap_or("-"),
                        "OTP created"
                    );
                    Ok((view, false))
                }
                // Its Idempotency-Key was taken meanwhile: answer as a replay.
                None => crate::otp::create_one(state, &client, req, prepared).await,
            },
            Fate::Limited(e) => match state.pool.get().await {
                Ok(db) => Err(crate::otp::refused(
                    state,
                    &db,
                    e,
                    client.id,
                    &req.msisdn,
                    None,
                    req.purpose,
                )
                .await),
                Err(pool) => Err(pool.into()),
            },
            Fate::Guarded(blocked) => match state.pool.get().await {
                Ok(db) => Err(crate::guards::refuse(
                    &db,
                    &state.keys,
                    &state.guard_counters,
                    client.id,
                    &req.msisdn,
                    blocked,
                )
                .await),
                Err(pool) => Err(pool.into()),
            },
            Fate::Alone if batch_failed => {
                match crate::otp::find_created(state, client.id, prepared.id).await {
                    Ok(Some(view)) => {
                        state.funnel.otp("created", &view.carrier, 1);
                        Ok((view, false))
                    }
                    Ok(None) => crate::otp::create_one(state, &client, req, prepared).await,
                    Err(e) => Err(e),
                }
            }
            Fate::Alone => crate::otp::create_one(state, &client, req, prepared).await,
        };
        let _ = reply.send(answer);
    }
}

/// Ages (seconds) of recent events per key, newest first.
type Ages<K> = HashMap<K, Vec<f64>>;

/// The batch's transaction. Returns the views of the challenges it inserted, by id.
async fn decide_and_write(
    state: &AppState,
    jobs: &[Job],
    fates: &mut [Fate],
) -> Result<HashMap<Uuid, OtpView>, ApiError> {
    let settings = &state.settings;
    let mut db = state.pool.get().await?;

    // Idempotency-Keys: one seen before is answered as the first time (limits or not);
    // one repeated within the batch goes alone after it.
    let keyed: BTreeSet<(Uuid, String)> = jobs
        .iter()
        .filter_map(|j| j.req.idempotency_key.clone().map(|k| (j.client.id, k)))
        .collect();
    let mut existing: HashMap<(Uuid, String), tokio_postgres::Row> = HashMap::new();
    if !keyed.is_empty() {
        let (clients, keys): (Vec<Uuid>, Vec<&str>) =
            keyed.iter().map(|(c, k)| (*c, k.as_str())).unzip();
        for row in db
            .query_cached(
                &format!(
                    "SELECT {CHALLENGE_COLUMNS}, c.request_hash, c.client_id, c.idempotency_key
                     FROM unnest($1::uuid[], $2::text[]) AS k(client_id, key)
                     JOIN otp_challenges c ON c.client_id = k.client_id AND c.idempotency_key = k.key"
                ),
                &[&clients, &keys],
            )
            .await?
        {
            existing.insert((row.get("client_id"), row.get("idempotency_key")), row);
        }
    }
    let mut live = Vec::new();
    let mut first_use = BTreeSet::new();
    for (i, job) in jobs.iter().enumerate() {
        if let Some(key) = &job.req.idempotency_key {
            let key = (job.client.id, key.clone());
            if let Some(row) = existing.get(&key) {
                fates[i] = Fate::Answered(Box::new(crate::otp::replay(row, &job.prepared.hash)));
                continue;
            }
            if !first_use.insert(key) {
                continue; // a repeat within the batch: alone, after it
            }
        }
        live.push(i);
    }
    if live.is_empty() {
        return Ok(HashMap::new());
    }

    let tx = db.transaction().await?;
    // Every statement of this transaction finds its rows through an index by the keys it
    // is given: one plan per connection, index paths only (`db::INDEXED_PLAN_ONCE`).
    // Planning them per run was about a quarter of a core at 700 OTP/s.
    let mut locks = Vec::new();
    for &i in &live {
        let req = &jobs[i].req;
        if !settings.limits.phone_purpose.is_empty() {
            locks.push(crate::limits::phone_purpose_lock(
                req.msisdn.e164(),
                req.purpose.as_str(),
            ));
        }
        if let (Some(ip), false) = (req.client_ip, settings.limits.ip.is_empty()) {
            locks.push(crate::limits::ip_lock(ip));
        }
    }
    // The settings and every lock of the batch, sorted, in one flight.
    tokio::try_join!(
        async {
            tx.batch_execute(&crate::db::INDEXED_PLAN_ONCE)
                .await
                .map_err(ApiError::from)
        },
        crate::limits::take_locks(&tx, locks),
    )?;

    // The reads, for the whole batch, in one pipelined flight.
    let pairs: BTreeSet<(String, String)> = live
        .iter()
        .map(|&i| {
            let r = &jobs[i].req;
            (r.msisdn.e164().to_owned(), r.purpose.as_str().to_owned())
        })
        .collect();
    let ips: BTreeSet<IpAddr> = live.iter().filter_map(|&i| jobs[i].req.client_ip).collect();
    let accounts: BTreeSet<(Uuid, String)> = live
        .iter()
        .filter_map(|&i| {
            let j = &jobs[i];
            j.req.account_ref.clone().map(|a| (j.client.id, a))
        })
        .collect();
    let numbers: Vec<String> = live
        .iter()
        .map(|&i| jobs[i].req.msisdn.e164().to_owned())
        .collect();
    // (client, block, window) of the consecutive-numbers guard; (client, prefix, window)
    // of the conversion guard.
    let mut blocks: BTreeSet<(Uuid, String, u64)> = BTreeSet::new();
    let mut prefixes: BTreeSet<(Uuid, String, u64)> = BTreeSet::new();
    for &i in &live {
        let j = &jobs[i];
        let g = settings.guards_for(Some(&j.client.name));
        let e164 = j.req.msisdn.e164();
        if g.sequential_enabled {
            blocks.insert((
                j.client.id,
                e164[..e164.len() - 2].to_owned(),
                g.sequential_window.as_millis() as u64,
            ));
        }
        if g.conversion_enabled {
            prefixes.insert((
                j.client.id,
                e164[..4].to_owned(),
                g.conversion_window.as_millis() as u64,
            ));
        }
    }
    let quota_clients: BTreeSet<Uuid> = live
        .iter()
        .filter(|&&i| crate::otp::daily_quota(state, &jobs[i].client).is_some())
        .map(|&i| jobs[i].client.id)
        .collect();
    let (phone_ages, ip_ages, locked, block_numbers, conversion, ported, daily) = tokio::try_join!(
        phone_purpose_ages(&tx, &settings.limits.phone_purpose, &pairs),
        ip_ages(&tx, &settings.limits.ip, &ips),
        locked_accounts(&tx, &accounts),
        block_numbers(&tx, &blocks),
        conversion_counts(&tx, &prefixes),
        ported(&tx, &numbers),
        daily_sent(&tx, &quota_clients),
    )?;
    let (mut phone_ages, mut ip_ages, mut block_numbers, mut daily) =
        (phone_ages, ip_ages, block_numbers, daily);

    // The decisions, in arrival order, each seeing the batch's earlier acceptances.
    struct Row<'a> {
        job: &'a Job,
        carrier: Carrier,
        route: &'a str,
        sender: &'a str,
    }
    let mut accepted: Vec<(usize, Row)> = Vec::new();
    for &i in &live {
        let job = &jobs[i];
        let req = &job.req;
        let client = job.client.id;
        let e164 = req.msisdn.e164();
        let pair = (e164.to_owned(), req.purpose.as_str().to_owned());
        let phone = phone_ages.entry(pair.clone()).or_default();
        let ip = req
            .client_ip
            .map(|ip| ip_ages.entry(ip).or_default().clone());
        let limited = crate::limits::phone_purpose_refusal(phone, &settings.limits.phone_purpose)
            .and_then(|()| match &ip {
                Some(ages) => crate::limits::ip_refusal(ages, &settings.limits.ip),
                None => Ok(()),
            });
        if let Err(e) = limited {
            fates[i] = Fate::Limited(e);
            continue;
        }
        if let Some(account) = &req.account_ref {
            if locked.contains(&(client, account.clone())) {
                fates[i] = Fate::Answered(Box::new(Err(ApiError::AccountLocked)));
                continue;
            }
        }
        let g = settings.guards_for(Some(&job.client.name));
        let block = &e164[..e164.len() - 2];
        let block_key = (
            client,
            block.to_owned(),
            g.sequential_window.as_millis() as u64,
        );
        if g.sequential_enabled {
            let others = block_numbers
                .get(&block_key)
                .map_or(0, |set| set.iter().filter(|n| n.as_str() != e164).count());
            if let Some(blocked) = crate::guards::sequential_refusal(g, block, others as i64) {
                fates[i] = Fate::Guarded(blocked);
                continue;
            }
        }
        if g.conversion_enabled {
            let prefix = &e164[..4];
            let key = (
                client,
                prefix.to_owned(),
                g.conversion_window.as_millis() as u64,
            );
            let counts = conversion.get(&key).copied().unwrap_or_default();
            if let Some(blocked) = crate::guards::conversion_refusal(g, prefix, counts) {
                fates[i] = Fate::Guarded(blocked);
                continue;
            }
        }
        if let Some(quota) = crate::otp::daily_quota(state, &job.client) {
            let (sent, until_midnight) = daily.get(&client).copied().unwrap_or((0, 86_400.0));
            if let Err(e) = crate::limits::daily_refusal(sent, until_midnight, quota) {
                fates[i] = Fate::Limited(e);
                continue;
            }
            daily.insert(client, (sent + 1, until_midnight));
        }
        // Accepted: what it adds counts for the batch's later requests.
        phone.insert(0, 0.0);
        if let Some(ip) = req.client_ip {
            ip_ages.entry(ip).or_default().insert(0, 0.0);
        }
        if g.sequential_enabled {
            block_numbers
                .entry(block_key)
                .or_default()
                .insert(e164.to_owned());
        }
        let carrier = ported
            .get(e164)
            .copied()
            .unwrap_or_else(|| req.msisdn.carrier());
        let (route, route_cfg) = settings.route_for(carrier);
        let sender = job.client.sender_for(carrier.as_str(), &route_cfg.sender);
        fates[i] = Fate::Accepted;
        accepted.push((
            i,
            Row {
                job,
                carrier,
                route,
                sender,
            },
        ));
    }
    if accepted.is_empty() {
        tx.rollback().await?;
        return Ok(HashMap::new());
    }

    // The writes: challenges, their SMS, their audit rows and the quota counts, in one
    // statement (a challenge whose Idempotency-Key another request took meanwhile is
    // skipped, and so is everything of it).
    let n = accepted.len();
    let mut ids = Vec::with_capacity(n);
    let mut clients = Vec::with_capacity(n);
    let mut msisdns = Vec::with_capacity(n);
    let mut carriers = Vec::with_capacity(n);
    let mut purposes = Vec::with_capacity(n);
    let mut locales = Vec::with_capacity(n);
    let mut lengths = Vec::with_capacity(n);
    let mut ttls = Vec::with_capacity(n);
    let mut macs = Vec::with_capacity(n);
    let mut keys = Vec::with_capacity(n);
    let mut hashes = Vec::with_capacity(n);
    let mut account_refs = Vec::with_capacity(n);
    let mut client_ips = Vec::with_capacity(n);
    let mut routes = Vec::with_capacity(n);
    let mut senders = Vec::with_capacity(n);
    let mut sealed = Vec::with_capacity(n);
    let mut request_ids = Vec::with_capacity(n);
    let mut masked = Vec::with_capacity(n);
    let mut lookup_keys = Vec::with_capacity(n);
    let mut details = Vec::with_capacity(n);
    let mut counted = Vec::with_capacity(n);
    for (_, row) in &accepted {
        let (job, req) = (row.job, &row.job.req);
        ids.push(job.prepared.id);
        clients.push(job.client.id);
        msisdns.push(req.msisdn.e164().to_owned());
        carriers.push(row.carrier.as_str());
        purposes.push(req.purpose.as_str());
        locales.push(req.locale.as_str());
        lengths.push(i16::from(req.code_length));
        ttls.push(req.ttl_seconds as i32);
        macs.push(job.prepared.mac.clone());
        keys.push(req.idempotency_key.clone());
        hashes.push(job.prepared.hash.clone());
        account_refs.push(req.account_ref.clone());
        client_ips.push(req.client_ip);
        routes.push(row.route);
        senders.push(row.sender);
        sealed.push(job.prepared.sealed.clone());
        request_ids.push(job.prepared.request_id.clone());
        masked.push(req.msisdn.masked());
        lookup_keys.push(state.keys.lookup_key(req.msisdn.e164()));
        details.push(json!({
            "purpose": req.purpose.as_str(),
            "carrier": row.carrier.as_str(),
            "route": row.route,
        }));
        counted.push(crate::otp::daily_quota(state, &job.client).is_some());
    }
    let resend_ms = settings.otp.resend_interval.as_millis() as f64;
    // Inserts from arrays: one plan for any batch and any table size (planned once, as
    // the reads: the transaction began with `INDEXED_PLAN_ONCE`).
    let rows = tx
        .query_cached(
            &INSERT_BATCH_SQL,
            &[
                &ids,
                &clients,
                &msisdns,
                &carriers,
                &purposes,
                &locales,
                &lengths,
                &ttls,
                &macs,
                &keys,
                &hashes,
                &account_refs,
                &client_ips,
                &settings.otp.max_attempts,
                &settings.otp.max_sends,
                &resend_ms,
                &routes,
                &senders,
                &sealed,
                &request_ids,
                &masked,
                &lookup_keys,
                &details,
                &counted,
            ],
        )
        .await?;
    tx.commit().await?;
    rows.iter()
        .map(|r| crate::otp::view(r, None).map(|v| (v.id, v)))
        .collect()
}

/// The batch's challenges, SMS, audit rows and quota counts (only for clients with a
/// quota), in one statement.
static INSERT_BATCH_SQL: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!(
        "WITH x AS (
            SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::text[], $5::text[],
                $6::text[], $7::int2[], $8::int4[], $9::bytea[], $10::text[], $11::bytea[],
                $12::text[], $13::inet[], $17::text[], $18::text[], $19::bytea[], $20::text[],
                $21::text[], $22::bytea[], $23::jsonb[], $24::bool[])
                AS x(id, client_id, msisdn, carrier, purpose, locale, code_length, ttl, mac,
                     idem, hash, account_ref, client_ip, route, sender, sealed, request_id,
                     masked, lookup_key, detail, counted)),
         c AS (
            INSERT INTO otp_challenges AS c (id, client_id, msisdn, carrier, purpose, locale,
                code_length, ttl_seconds, code_mac, max_attempts, max_sends, expires_at,
                resend_available_at, idempotency_key, request_hash, account_ref, client_ip)
            SELECT id, client_id, msisdn, carrier, purpose, locale, code_length, ttl, mac,
                $14::int4, $15::int4, now() + make_interval(secs => ttl),
                now() + make_interval(secs => $16::float8 / 1000), idem, hash, account_ref,
                client_ip
            FROM x
            ON CONFLICT (client_id, idempotency_key) DO NOTHING
            RETURNING {CHALLENGE_COLUMNS}),
         o AS (
            INSERT INTO sms_outbox (challenge_id, code_version, route, msisdn, sender,
                body_sealed, request_id)
            SELECT x.id, 1, x.route, x.msisdn, x.sender, x.sealed, x.request_id
            FROM x JOIN c ON c.id = x.id),
         a AS (
            INSERT INTO audit_events (client_id, event, msisdn_masked, msisdn_key, subject_id,
                detail)
            SELECT x.client_id, 'otp.created', x.masked, x.lookup_key, x.id, x.detail
            FROM x JOIN c ON c.id = x.id),
         d AS (
            INSERT INTO client_daily_sms (client_id, day, shard, sms)
            SELECT x.client_id, (now() AT TIME ZONE 'UTC')::date,
                (pg_backend_pid() % 64)::smallint, count(*)
            FROM x JOIN c ON c.id = x.id WHERE x.counted
            GROUP BY x.client_id
            ON CONFLICT (client_id, day, shard) DO UPDATE SET sms = client_daily_sms.sms + EXCLUDED.sms)
         SELECT * FROM c"
    )
});

/// Seconds since each recent SMS per (number, purpose), newest first.
pub const PHONE_PURPOSE_AGES_SQL: &str = "SELECT k.m, k.p, a.age
             FROM unnest($1::text[], $2::text[]) AS k(m, p)
             CROSS JOIN LATERAL (
                SELECT EXTRACT(EPOCH FROM (now() - o.created_at))::float8 AS age
                FROM sms_outbox o JOIN otp_challenges c ON c.id = o.challenge_id
                WHERE o.msisdn = k.m AND c.purpose = k.p
                  AND o.created_at > now() - make_interval(secs => $3::float8)
                ORDER BY o.created_at DESC LIMIT $4) a
             ORDER BY k.m, k.p, a.age";

/// Seconds since each recent challenge per client address, newest first.
pub const IP_AGES_SQL: &str = "SELECT k.ip, a.age
             FROM unnest($1::inet[]) AS k(ip)
             CROSS JOIN LATERAL (
                SELECT EXTRACT(EPOCH FROM (now() - created_at))::float8 AS age
                FROM otp_challenges
                WHERE client_ip = k.ip AND created_at > now() - make_interval(secs => $2::float8)
                ORDER BY created_at DESC LIMIT $3) a
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
) -> Result<Ages<(String, String)>, ApiError> {
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
) -> Result<Ages<IpAddr>, ApiError> {
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
) -> Result<BTreeSet<(Uuid, String)>, ApiError> {
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
    blocks: &BTreeSet<(Uuid, String, u64)>,
) -> Result<HashMap<(Uuid, String, u64), BTreeSet<String>>, ApiError> {
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
    let keys: Vec<&(Uuid, String, u64)> = blocks.iter().collect();
    let mut out: HashMap<(Uuid, String, u64), BTreeSet<String>> = HashMap::new();
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
    prefixes: &BTreeSet<(Uuid, String, u64)>,
) -> Result<HashMap<(Uuid, String, u64), crate::guards::ConversionWindow>, ApiError> {
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
    let keys: Vec<&(Uuid, String, u64)> = prefixes.iter().collect();
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
) -> Result<HashMap<String, Carrier>, ApiError> {
    let rows = tx.query_cached(PORTED_SQL, &[&numbers]).await?;
    rows.iter()
        .map(|r| {
            let carrier: String = r.get(1);
            carrier
                .parse()
                .map(|c| (r.get(0), c))
                .map_err(|e| ApiError::Internal(anyhow::anyhow!("ported_numbers: {e}")))
        })
        .collect()
}

/// Each client's SMS of this UTC day so far, and the seconds until the next midnight.
async fn daily_sent(
    tx: &deadpool_postgres::Transaction<'_>,
    clients: &BTreeSet<Uuid>,
) -> Result<BTreeMap<Uuid, (i64, f64)>, ApiError> {
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
