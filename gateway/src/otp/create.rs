//! The one create path. Any number of creates, in arrival order, in one transaction:
//! Idempotency-Keys seen before are answered as the first time; then the advisory locks
//! (sorted), the snapshot (one pipelined flight of set-based reads), admission (pure,
//! `admission::admit`), one statement that writes the challenges, their SMS, their audit
//! rows and the quota counts, and one commit; then what follows a commit (the
//! dispatcher woken, counters, refusals audited). A lone create is a batch of one.
//!
//! What a batch cannot settle on its own goes through this same path again after it,
//! as a batch of one that sees the committed state: an Idempotency-Key repeated within
//! the batch, one another transaction took meanwhile, or every request of a batch that
//! failed as a whole (each first looks for its own challenge, by its id made before the
//! batch, in case the commit went through and only its answer was lost).

use std::collections::{BTreeSet, HashMap};

use futures::future::BoxFuture;
use serde_json::json;
use uuid::Uuid;

use super::admission::{self, Ask, Fate, Kind};
use super::deps::Deps;
use super::error::OtpError;
use super::model::{replay, view, NewOtp, OtpView, Prepared};
use super::snapshot;
use crate::clients::ApiClient;
use crate::domain::Channel;
use crate::failure::Failure;
use crate::store::tables::otp_challenges::{Challenge, Keyed, CHALLENGE, KEYED};
use crate::store::tables::FromRow;
use crate::store::Cached;

/// One create: who asks, what, and the secrets made for it before it was queued.
pub struct Job {
    pub(crate) client: ApiClient,
    pub(crate) req: NewOtp,
    pub(crate) prepared: Prepared,
}

/// A create's answer: the verification, and whether it is a replay.
pub type Reply = Result<(OtpView, bool), OtpError>;

/// What a job became in its batch's transaction.
enum Outcome {
    /// Written and committed.
    Written(OtpView),
    /// Answered without a write (an Idempotency-Key seen before).
    Answered(Reply),
    /// Refused by admission (audited after the transaction).
    Refused(Fate),
    /// Its Idempotency-Key repeats an earlier job's in the batch: it goes after it.
    Later,
    /// Admitted, but another transaction took its Idempotency-Key meanwhile.
    KeyTaken,
}

/// Creates the jobs' verifications; the answers are in the jobs' order.
pub fn run(deps: &Deps, jobs: Vec<Job>) -> BoxFuture<'_, Vec<Reply>> {
    Box::pin(async move {
        let outcomes = match transaction(deps, &jobs).await {
            Err(e) if e.is_db_conflict() => {
                // Nothing of it committed: a deadlock or serialization race lost.
                tracing::info!(error = %e, size = jobs.len(), "create batch lost a database conflict; running it again");
                transaction(deps, &jobs).await
            }
            other => other,
        };
        match outcomes {
            Ok(outcomes) => finish(deps, jobs, outcomes).await,
            Err(e) if jobs.len() == 1 => vec![Err(e.into())],
            Err(e) => {
                tracing::warn!(error = %e, size = jobs.len(), "create batch failed; creating one by one");
                let mut replies = Vec::with_capacity(jobs.len());
                for job in jobs {
                    replies.push(
                        match find_created(deps, job.client.id, job.prepared.id).await {
                            Ok(Some(view)) => {
                                deps.funnel.otp("created", &view.carrier, 1);
                                Ok((view, false))
                            }
                            Ok(None) => run(deps, vec![job]).await.remove(0),
                            Err(e) => Err(e),
                        },
                    );
                }
                replies
            }
        }
    })
}

/// The answers, and what follows the commit.
async fn finish(deps: &Deps, jobs: Vec<Job>, outcomes: Vec<Outcome>) -> Vec<Reply> {
    if outcomes.iter().any(|o| matches!(o, Outcome::Written(_))) {
        deps.outbox_wake.notify_one();
    }
    if outcomes.iter().any(
        |o| matches!(o, Outcome::Written(v) if v.channels.first().is_some_and(|c| c == "zalo")),
    ) {
        deps.zns_wake.notify_one();
    }
    let mut replies = Vec::with_capacity(jobs.len());
    for (job, outcome) in jobs.into_iter().zip(outcomes) {
        replies.push(match outcome {
            Outcome::Written(view) => {
                deps.conversion_counts.created(
                    job.client.id,
                    job.req.msisdn.e164(),
                    view.created_at,
                );
                deps.funnel.otp("created", &view.carrier, 1);
                tracing::info!(
                    otp = %view.id, msisdn = %job.req.msisdn, purpose = %job.req.purpose,
                    request_id = job.prepared.request_id.as_deref().unwrap_or("-"),
                    "OTP created"
                );
                Ok((view, false))
            }
            Outcome::Answered(reply) => reply,
            Outcome::Refused(fate) => Err(super::refusal::refused(
                deps,
                fate,
                job.client.id,
                &job.req.msisdn,
                None,
                job.req.purpose,
            )
            .await),
            Outcome::Later | Outcome::KeyTaken => run(deps, vec![job]).await.remove(0),
        });
    }
    replies
}

/// The admission view of a create.
fn ask(job: &Job) -> Ask<'_> {
    Ask {
        kind: Kind::Create,
        client: &job.client,
        msisdn: &job.req.msisdn,
        purpose: job.req.purpose,
        locale: job.req.locale,
        client_ip: job.req.client_ip,
        account_ref: job.req.account_ref.as_deref(),
        sms: job.prepared.channels.contains(&Channel::Sms),
    }
}

/// The batch's transaction.
async fn transaction(deps: &Deps, jobs: &[Job]) -> Result<Vec<Outcome>, Failure> {
    let settings = &deps.settings;
    let mut db = deps.pool.get().await?;
    let mut outcomes: Vec<Option<Outcome>> = (0..jobs.len()).map(|_| None).collect();

    // Idempotency-Keys: one seen before is answered as the first time (limits or not);
    // one repeated within the batch goes after it.
    let keyed: BTreeSet<(Uuid, String)> = jobs
        .iter()
        .filter_map(|j| j.req.idempotency_key.clone().map(|k| (j.client.id, k)))
        .collect();
    let mut existing: HashMap<(Uuid, String), Keyed> = HashMap::new();
    if !keyed.is_empty() {
        let (clients, keys): (Vec<Uuid>, Vec<&str>) =
            keyed.iter().map(|(c, k)| (*c, k.as_str())).unzip();
        for row in db
            .query_cached(EXISTING_KEYS_SQL.as_str(), &[&clients, &keys])
            .await?
        {
            let row = Keyed::try_from_row(&row)?;
            existing.insert((row.client_id, row.idempotency_key.clone()), row);
        }
    }
    let mut live = Vec::new();
    let mut first_use = BTreeSet::new();
    for (i, job) in jobs.iter().enumerate() {
        if let Some(key) = &job.req.idempotency_key {
            let key = (job.client.id, key.clone());
            if let Some(row) = existing.get(&key) {
                outcomes[i] = Some(Outcome::Answered(replay(row.clone(), &job.prepared.hash)));
                continue;
            }
            if !first_use.insert(key) {
                outcomes[i] = Some(Outcome::Later);
                continue;
            }
        }
        live.push(i);
    }
    if !live.is_empty() {
        let tx = db.transaction().await?;
        let asks: Vec<Ask> = live.iter().map(|&i| ask(&jobs[i])).collect();
        let needs = admission::needs(settings, &asks);
        let mut snapshot = snapshot::take(&tx, settings, &needs).await?;
        let fates = admission::admit(settings, &mut snapshot, &asks);
        let mut admitted = Vec::new();
        for (&i, fate) in live.iter().zip(fates) {
            match fate {
                Fate::Admitted(to) => admitted.push((i, to)),
                refused => outcomes[i] = Some(Outcome::Refused(refused)),
            }
        }
        if admitted.is_empty() {
            tx.rollback().await?;
        } else {
            let written = write(deps, &tx, jobs, &admitted).await?;
            tx.commit().await?;
            for (i, _) in &admitted {
                outcomes[*i] = Some(match written.get(&jobs[*i].prepared.id) {
                    Some(view) => Outcome::Written(view.clone()),
                    None => Outcome::KeyTaken,
                });
            }
        }
    }
    outcomes
        .into_iter()
        .map(|o| o.ok_or_else(|| Failure::internal("a create was left without an outcome")))
        .collect()
}

/// The admitted creates' challenges, SMS, audit rows and quota counts, in one statement
/// (a challenge whose Idempotency-Key another transaction took meanwhile is skipped, and
/// everything of it). Returns the views of the challenges written, by id.
async fn write(
    deps: &Deps,
    tx: &deadpool_postgres::Transaction<'_>,
    jobs: &[Job],
    admitted: &[(usize, admission::Admitted)],
) -> Result<HashMap<Uuid, OtpView>, Failure> {
    let settings = &deps.settings;
    let n = admitted.len();
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
    let mut channels = Vec::with_capacity(n);
    let mut timeouts = Vec::with_capacity(n);
    let mut events = Vec::with_capacity(n);
    let mut sms_steps: Vec<Option<i16>> = Vec::with_capacity(n);
    let mut steps = Vec::with_capacity(n);
    // The ZNS steps, for the creates that have one.
    let (mut z_ids, mut z_steps, mut z_counts, mut z_templates, mut z_sealed, mut z_request_ids) =
        (vec![], vec![], vec![], vec![], vec![], vec![]);
    for (i, to) in admitted {
        let job = &jobs[*i];
        let req = &job.req;
        ids.push(job.prepared.id);
        clients.push(job.client.id);
        msisdns.push(req.msisdn.e164().to_owned());
        carriers.push(to.carrier.as_str());
        purposes.push(req.purpose.as_str());
        locales.push(req.locale.as_str());
        lengths.push(i16::from(req.code_length));
        ttls.push(req.ttl_seconds as i32);
        macs.push(job.prepared.mac.clone());
        keys.push(req.idempotency_key.clone());
        hashes.push(job.prepared.hash.clone());
        account_refs.push(req.account_ref.clone());
        client_ips.push(req.client_ip);
        routes.push(to.route.as_str());
        senders.push(to.sender.as_str());
        sealed.push(
            job.prepared
                .sealed_on(&job.client, to.carrier.as_str(), req)?
                .to_vec(),
        );
        request_ids.push(job.prepared.request_id.clone());
        masked.push(req.msisdn.masked());
        lookup_keys.push(deps.keys.lookup_key(req.msisdn.e164()));
        details.push(json!({
            "purpose": req.purpose.as_str(),
            "carrier": to.carrier.as_str(),
            "route": to.route,
        }));
        counted.push(admission::daily_quota(settings, &job.client).is_some());
        let workflow = &job.prepared.channels;
        let names: Vec<&str> = workflow.iter().map(|c| c.as_str()).collect();
        channels.push(names.join(","));
        timeouts.push(job.prepared.channel_timeout_ms);
        events.push(job.client.otp_callback_url.is_some());
        let position = |c: Channel| workflow.iter().position(|w| *w == c).map(|p| p as i16);
        sms_steps.push(position(Channel::Sms));
        steps.push(workflow.len() as i16);
        if let (Some(step), Some((template, sealed))) =
            (position(Channel::Zalo), job.prepared.zns.as_ref())
        {
            z_ids.push(job.prepared.id);
            z_steps.push(step);
            z_counts.push(workflow.len() as i16);
            z_templates.push(template.as_str());
            z_sealed.push(sealed.clone());
            z_request_ids.push(job.prepared.request_id.clone());
        }
    }
    let resend_ms = settings.otp.resend_interval.as_millis() as f64;
    // Inserts from arrays: one plan for any batch and any table size (planned once, as
    // the reads: the snapshot set `INDEXED_PLAN_ONCE`).
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
                &channels,
                &timeouts,
                &events,
                &sms_steps,
                &steps,
            ],
        )
        .await?;
    if !z_ids.is_empty() {
        tx.execute_cached(
            INSERT_ZNS_SQL,
            &[
                &z_ids,
                &z_steps,
                &z_counts,
                &z_templates,
                &z_sealed,
                &z_request_ids,
            ],
        )
        .await?;
    }
    let mut out = HashMap::with_capacity(rows.len());
    for r in &rows {
        let v = view(Challenge::try_from_row(r)?, None)
            .map_err(|e| Failure::internal(format!("{e:#}")))?;
        out.insert(v.id, v);
    }
    Ok(out)
}

/// The challenges already created under the batch's Idempotency-Keys.
static EXISTING_KEYS_SQL: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!(
        "SELECT {CHALLENGE}, {KEYED}
         FROM unnest($1::uuid[], $2::text[]) AS k(client_id, key)
         JOIN otp_challenges c ON c.client_id = k.client_id AND c.idempotency_key = k.key"
    )
});

/// The batch's challenges, SMS (with the end user's address, which the per-address
/// windows count), audit rows and quota counts (only for clients with a quota), in one
/// statement.
pub static INSERT_BATCH_SQL: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!(
        "WITH x AS (
            SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::text[], $5::text[],
                $6::text[], $7::int2[], $8::int4[], $9::bytea[], $10::text[], $11::bytea[],
                $12::text[], $13::inet[], $17::text[], $18::text[], $19::bytea[], $20::text[],
                $21::text[], $22::bytea[], $23::jsonb[], $24::bool[], $25::text[], $26::int4[],
                $27::bool[], $28::int2[], $29::int2[])
                AS x(id, client_id, msisdn, carrier, purpose, locale, code_length, ttl, mac,
                     idem, hash, account_ref, client_ip, route, sender, sealed, request_id,
                     masked, lookup_key, detail, counted, channels, timeout_ms, events,
                     sms_step, steps)),
         c AS (
            INSERT INTO otp_challenges AS c (id, client_id, msisdn, carrier, purpose, locale,
                code_length, ttl_seconds, code_mac, max_attempts, max_sends, expires_at,
                resend_available_at, idempotency_key, request_hash, account_ref, client_ip,
                channels, channel_timeout_ms, events)
            SELECT id, client_id, msisdn, carrier, purpose, locale, code_length, ttl, mac,
                $14::int4, $15::int4, now() + make_interval(secs => ttl),
                now() + make_interval(secs => $16::float8 / 1000), idem, hash, account_ref,
                client_ip, string_to_array(channels, ','), timeout_ms, events
            FROM x
            ON CONFLICT (client_id, idempotency_key) DO NOTHING
            RETURNING {CHALLENGE}),
         o AS (
            INSERT INTO sms_outbox (challenge_id, code_version, route, msisdn, sender,
                body_sealed, request_id, client_ip, step, status, deadline, watch, watch_at)
            SELECT x.id, 1, x.route, x.msisdn, x.sender, x.sealed, x.request_id, x.client_ip,
                x.sms_step, CASE WHEN x.sms_step = 0 THEN 'queued' ELSE 'held' END,
                CASE WHEN x.sms_step = 0 AND x.steps > 1
                     THEN now() + make_interval(secs => x.timeout_ms / 1000.0) END,
                x.sms_step = 0 AND (x.events OR x.steps > 1), now()
            FROM x JOIN c ON c.id = x.id WHERE x.sms_step IS NOT NULL),
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

/// The ZNS steps of the batch's creates that have one (those whose challenge was
/// written): the first step queued, a later one held.
pub const INSERT_ZNS_SQL: &str = "INSERT INTO zns_outbox (challenge_id, client_id, code_version,
        step, msisdn, template_id, data_sealed, status, deadline, client_ip, request_id,
        activated_at, watch, watch_at)
    SELECT z.id, c.client_id, c.code_version, z.step, c.msisdn, z.template, z.sealed,
        CASE WHEN z.step = 0 THEN 'queued' ELSE 'held' END,
        d.deadline, c.client_ip, z.request_id, CASE WHEN z.step = 0 THEN now() END, z.step = 0,
        -- Looked at when it is sent, fails or is received (each sets watch_at), else
        -- at its deadline or the code's end.
        coalesce(d.deadline, c.expires_at)
    FROM unnest($1::uuid[], $2::int2[], $3::int2[], $4::text[], $5::bytea[], $6::text[])
        AS z(id, step, steps, template, sealed, request_id)
    JOIN otp_challenges c ON c.id = z.id
    CROSS JOIN LATERAL (SELECT CASE WHEN z.step = 0 AND z.steps > 1
        THEN now() + make_interval(secs => c.channel_timeout_ms / 1000.0) END AS deadline) d";

/// The challenge `id` of `client`, if it was created: after a batch whose commit's
/// outcome is unknown (its connection was lost), before creating it alone.
async fn find_created(deps: &Deps, client: Uuid, id: Uuid) -> Result<Option<OtpView>, OtpError> {
    let db = deps.pool.get().await?;
    let row = db
        .query_opt_cached(
            &format!(
                "SELECT {CHALLENGE} FROM otp_challenges c WHERE c.id = $1 AND c.client_id = $2"
            ),
            &[&id, &client],
        )
        .await?;
    row.map(|r| view(Challenge::try_from_row(&r)?, None))
        .transpose()
}
