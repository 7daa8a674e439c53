//! OTP challenges: create, resend, check, cancel, read. Each is one short transaction;
//! times come from the database clock so that instances agree.

use crate::db::Cached;
use chrono::{DateTime, Utc};
use serde::Serialize;
use tokio_postgres::Row;
use uuid::Uuid;

use serde_json::json;

use crate::api::auth::ApiClient;
use crate::api::error::ApiError;
use crate::audit;
use crate::domain::{sms_text, Locale, Msisdn, Purpose};
use crate::startup::AppState;

/// What the portal asked for, parsed.
#[derive(Debug, Clone)]
pub struct NewOtp {
    pub msisdn: Msisdn,
    pub purpose: Purpose,
    pub locale: Locale,
    pub code_length: u8,
    pub ttl_seconds: u32,
    pub idempotency_key: Option<String>,
    /// The portal's opaque account reference, for account lockout.
    pub account_ref: Option<String>,
    /// The end user's address, for per-IP limits.
    pub client_ip: Option<std::net::IpAddr>,
}

/// A verification: one challenge, its code(s) sent by SMS. / Phiên xác thực OTP.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct OtpView {
    pub id: Uuid,
    /// `pending`, `approved`, `expired`, `max_attempts_reached` or `canceled`.
    #[schema(example = "pending")]
    pub status: String,
    /// The number with its middle hidden, as the portal shows it.
    #[schema(example = "082****088")]
    pub msisdn_masked: String,
    /// The network that serves the number now (after portability): `viettel`,
    /// `vinaphone`, `mobifone`, `vietnamobile`, `gmobile`, `itelecom` or `reddi`.
    #[schema(example = "vinaphone")]
    pub carrier: String,
    #[schema(example = "login")]
    pub purpose: String,
    pub created_at: DateTime<Utc>,
    /// After this the code no longer works.
    pub expires_at: DateTime<Utc>,
    /// From this time "Gửi lại OTP" may send a new code.
    pub resend_available_at: DateTime<Utc>,
    /// Codes sent so far.
    pub sends: i32,
    pub max_sends: i32,
    /// Wrong codes still allowed.
    pub attempts_left: i32,
    /// The latest SMS's delivery.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delivery: Option<DeliveryView>,
}

/// Where the latest SMS of a verification is. / Trạng thái gửi tin nhắn.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct DeliveryView {
    /// `queued`, `submitted`, `failed`, `canceled`, or the receipt's state
    /// (`delivered`, `undeliverable`, `expired`, `rejected`, …).
    #[schema(example = "delivered")]
    pub status: String,
    /// The SMPP route (carrier bind) it went out on.
    #[schema(example = "vinaphone")]
    pub route: String,
    /// The first part's SMSC message id.
    pub message_id: Option<String>,
    /// How many SMS the text went out as.
    pub parts: i32,
    pub submitted_at: Option<DateTime<Utc>>,
    pub receipt_at: Option<DateTime<Utc>>,
    /// Why it failed, when it did.
    pub error: Option<String>,
}

/// The result of a check. / Kết quả kiểm tra mã.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CheckView {
    pub id: Uuid,
    /// Whether the code matched (and so approved the verification).
    pub valid: bool,
    /// The verification's status after the check.
    #[schema(example = "approved")]
    pub status: String,
    pub attempts_left: i32,
}

pub(crate) const CHALLENGE_COLUMNS: &str =
    "c.id, c.status, c.msisdn, c.carrier, c.purpose, c.created_at, \
     c.expires_at, c.resend_available_at, c.sends, c.max_sends, c.attempts, c.max_attempts, \
     (c.expires_at <= now()) AS expired_now";

/// The challenge row of a create (nothing on an Idempotency-Key conflict).
static INSERT_CHALLENGE_SQL: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!(
        "INSERT INTO otp_challenges AS c (id, client_id, msisdn, carrier, purpose, locale,
            code_length, ttl_seconds, code_mac, max_attempts, max_sends, expires_at,
            resend_available_at, idempotency_key, request_hash, account_ref, client_ip)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11,
            now() + make_interval(secs => $8::int), now() + make_interval(secs => $12::float8 / 1000),
            $13, $14, $15, $16)
         ON CONFLICT (client_id, idempotency_key) DO NOTHING
         RETURNING {CHALLENGE_COLUMNS}"
    )
});

pub(crate) fn view(row: &Row, delivery: Option<DeliveryView>) -> Result<OtpView, ApiError> {
    let msisdn: String = row.get("msisdn");
    let msisdn = Msisdn::parse(&msisdn)
        .map_err(|e| ApiError::Internal(anyhow::anyhow!("stored msisdn unreadable: {e}")))?;
    let mut status: String = row.get("status");
    if status == "pending" && row.get::<_, bool>("expired_now") {
        status = "expired".into();
    }
    let attempts: i32 = row.get("attempts");
    let max_attempts: i32 = row.get("max_attempts");
    Ok(OtpView {
        id: row.get("id"),
        status,
        msisdn_masked: msisdn.masked(),
        carrier: row.get("carrier"),
        purpose: row.get("purpose"),
        created_at: row.get("created_at"),
        expires_at: row.get("expires_at"),
        resend_available_at: row.get("resend_available_at"),
        sends: row.get("sends"),
        max_sends: row.get("max_sends"),
        attempts_left: (max_attempts - attempts).max(0),
        delivery,
    })
}

fn request_hash(req: &NewOtp) -> Vec<u8> {
    crate::crypto::sha256(
        format!(
            "{}|{}|{}|{}|{}|{}",
            req.msisdn.e164(),
            req.purpose,
            req.locale.as_str(),
            req.code_length,
            req.ttl_seconds,
            req.account_ref.as_deref().unwrap_or_default()
        )
        .as_bytes(),
    )
}

/// Whether the account is locked (and, in a transaction, lock its row against
/// concurrent checks).
async fn account_locked(
    tx: &deadpool_postgres::Transaction<'_>,
    client: Uuid,
    account: &str,
) -> Result<bool, ApiError> {
    let row = tx
        .query_opt_cached(
            "SELECT locked_at IS NOT NULL FROM account_lockouts
             WHERE client_id = $1 AND account_ref = $2 FOR UPDATE",
            &[&client, &account],
        )
        .await?;
    Ok(row.is_some_and(|r| r.get(0)))
}

/// Counts a failed check against the account and locks it at `limit`.
async fn count_failed_check(
    state: &AppState,
    tx: &deadpool_postgres::Transaction<'_>,
    client: Uuid,
    account: &str,
    limit: i32,
) -> Result<(), ApiError> {
    let row = tx
        .query_one_cached(
            "INSERT INTO account_lockouts (client_id, account_ref, failed_checks) VALUES ($1, $2, 1)
             ON CONFLICT (client_id, account_ref) DO UPDATE
                SET failed_checks = account_lockouts.failed_checks + 1, updated_at = now()
             RETURNING failed_checks, locked_at IS NOT NULL",
            &[&client, &account],
        )
        .await?;
    let (failed, locked): (i32, bool) = (row.get(0), row.get(1));
    if failed >= limit && !locked {
        tx.execute_cached(
            "UPDATE account_lockouts SET locked_at = now() WHERE client_id = $1 AND account_ref = $2",
            &[&client, &account],
        )
        .await?;
        audit::record(
            tx,
            &state.keys,
            audit::Event {
                event: "account.locked",
                client: Some(client),
                msisdn: None,
                subject: None,
                detail: json!({ "account_ref": account, "failed_checks": failed }),
            },
        )
        .await?;
        tracing::warn!(%client, "account locked for OTP after {failed} failed checks");
    }
    Ok(())
}

/// Unlocks an account (operators). Returns whether it was locked.
pub async fn unlock_account(
    state: &AppState,
    client: Uuid,
    account: &str,
) -> Result<bool, ApiError> {
    let mut db = state.pool.get().await?;
    let tx = db.transaction().await?;
    let n = tx
        .execute_cached(
            "UPDATE account_lockouts SET locked_at = NULL, failed_checks = 0, updated_at = now()
             WHERE client_id = $1 AND account_ref = $2 AND locked_at IS NOT NULL",
            &[&client, &account],
        )
        .await?;
    if n == 1 {
        audit::record(
            &tx,
            &state.keys,
            audit::Event {
                event: "account.unlocked",
                client: Some(client),
                msisdn: None,
                subject: None,
                detail: json!({ "account_ref": account }),
            },
        )
        .await?;
    }
    tx.commit().await?;
    Ok(n == 1)
}

/// Queues the SMS carrying a code. The caller wakes this instance's dispatcher after the
/// commit; other instances find it on their next poll. (No NOTIFY: PostgreSQL serialises
/// every committing transaction that notified on one lock, held across the WAL flush,
/// which capped sends at one per fsync.)
#[allow(clippy::too_many_arguments)]
async fn queue_sms(
    tx: &deadpool_postgres::Transaction<'_>,
    id: Uuid,
    version: i32,
    route: &str,
    msisdn: &Msisdn,
    sender: &str,
    sealed: &[u8],
    // The request's id goes with the SMS, for the dispatcher's log lines.
    request_id: Option<&str>,
) -> Result<(), ApiError> {
    tx.execute_cached(
        "INSERT INTO sms_outbox (challenge_id, code_version, route, msisdn, sender, body_sealed,
            request_id)
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
        &[
            &id,
            &version,
            &route,
            &msisdn.e164(),
            &sender,
            &sealed,
            &request_id,
        ],
    )
    .await?;
    Ok(())
}

/// The client's daily SMS quota: its own, or the configured default.
pub(crate) fn daily_quota(state: &AppState, client: &ApiClient) -> Option<i64> {
    client
        .daily_sms_quota
        .or(state.settings.limits.client_daily_sms)
}

/// Records a limit's refusal of a send (in its own statement, after the send's
/// transaction was rolled back); returns the error to answer with.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn refused(
    state: &AppState,
    db: &deadpool_postgres::Object,
    error: ApiError,
    client: Uuid,
    msisdn: &Msisdn,
    subject: Option<Uuid>,
    purpose: Purpose,
) -> ApiError {
    if matches!(error, ApiError::RateLimited { .. }) {
        let recorded = audit::record(
            db,
            &state.keys,
            audit::Event {
                event: "otp.rate_limited",
                client: Some(client),
                msisdn: Some(msisdn),
                subject,
                detail: json!({ "purpose": purpose.as_str() }),
            },
        )
        .await;
        if let Err(e) = recorded {
            return e.into();
        }
    }
    error
}

/// Withdraws the challenge's SMS that no dispatcher has sent yet.
async fn cancel_unsent_sms(
    tx: &deadpool_postgres::Transaction<'_>,
    id: Uuid,
) -> Result<(), ApiError> {
    tx.execute_cached(
        "UPDATE sms_outbox SET status = 'canceled', body_sealed = NULL
         WHERE challenge_id = $1 AND status = 'queued'",
        &[&id],
    )
    .await?;
    Ok(())
}

/// The answer to a create whose Idempotency-Key names `existing` (a row with
/// `request_hash`): the first answer again for the same request, 422 for another.
pub(crate) fn replay(existing: &Row, hash: &[u8]) -> Result<(OtpView, bool), ApiError> {
    if existing
        .get::<_, Option<Vec<u8>>>("request_hash")
        .as_deref()
        != Some(hash)
    {
        return Err(ApiError::IdempotencyKeyReused);
    }
    Ok((view(existing, None)?, true))
}

/// A create's secrets and derived values, made in the request's task (CPU work spread
/// over the HTTP workers) before it is queued: the code itself is dropped here and
/// never leaves this function except as its MAC and sealed SMS text.
#[derive(Clone)]
pub(crate) struct Prepared {
    pub id: Uuid,
    pub mac: Vec<u8>,
    pub sealed: Vec<u8>,
    pub hash: Vec<u8>,
    /// The X-Request-Id of the request, stored with its SMS.
    pub request_id: Option<String>,
}

pub(crate) fn prepare(state: &AppState, req: &NewOtp) -> Result<Prepared, ApiError> {
    let id = Uuid::now_v7();
    let code = state.keys.random_code(req.code_length as usize)?;
    let mac = state
        .keys
        .code_mac(id, 1, req.purpose.as_str(), req.msisdn.e164(), &code);
    let text = sms_text(req.purpose, req.locale, &code, req.ttl_seconds);
    drop(code);
    let sealed = state.keys.seal(&text, req.msisdn.e164())?;
    drop(text);
    Ok(Prepared {
        id,
        mac,
        sealed,
        hash: request_hash(req),
        request_id: crate::api::requests::current_id(),
    })
}

/// Creates a verification: through this instance's create batcher (requests arriving
/// together share one transaction of set-based statements), or on its own when the
/// batcher is off.
#[tracing::instrument(name = "otp.create", skip_all, fields(client = %api_client.id, purpose = req.purpose.as_str()))]
pub async fn create(
    state: &AppState,
    api_client: &ApiClient,
    req: NewOtp,
) -> Result<(OtpView, bool), ApiError> {
    api_client.allow_purpose(req.purpose.as_str())?;
    let prepared = prepare(state, &req)?;
    match &state.create_queue {
        Some(queue) => queue.submit(api_client.clone(), req, prepared).await,
        None => create_one(state, api_client, req, prepared).await,
    }
}

/// The challenge `id` of `client`, if it was created: after a batch whose commit's
/// outcome is unknown (its connection was lost), before creating it alone.
pub(crate) async fn find_created(
    state: &AppState,
    client: Uuid,
    id: Uuid,
) -> Result<Option<OtpView>, ApiError> {
    let db = state.pool.get().await?;
    let row = db
        .query_opt_cached(
            &format!(
                "SELECT {CHALLENGE_COLUMNS} FROM otp_challenges c WHERE c.id = $1 AND c.client_id = $2"
            ),
            &[&id, &client],
        )
        .await?;
    row.map(|r| view(&r, None)).transpose()
}

/// One create in its own transaction: the path when batching is off, and for the
/// requests a batch hands back (a repeated Idempotency-Key within the batch, or a batch
/// that failed as a whole). A transaction that lost a deadlock or serialization race
/// (nothing of it committed) is run once more before the caller gets a 503.
pub(crate) async fn create_one(
    state: &AppState,
    api_client: &ApiClient,
    req: NewOtp,
    prepared: Prepared,
) -> Result<(OtpView, bool), ApiError> {
    match create_one_attempt(state, api_client, req.clone(), prepared.clone()).await {
        Err(e) if e.is_db_conflict() => {
            tracing::info!(error = %e, "create lost a database conflict; running it again");
            create_one_attempt(state, api_client, req, prepared).await
        }
        other => other,
    }
}

async fn create_one_attempt(
    state: &AppState,
    api_client: &ApiClient,
    req: NewOtp,
    prepared: Prepared,
) -> Result<(OtpView, bool), ApiError> {
    let client = api_client.id;
    let settings = &state.settings;
    let Prepared {
        id,
        mac,
        sealed,
        hash,
        request_id,
    } = prepared;
    let resend_ms = settings.otp.resend_interval.as_millis() as f64;

    let mut db = state.pool.get().await?;
    // A retry with a known Idempotency-Key is answered as the first time, limits or not.
    if let Some(key) = &req.idempotency_key {
        if let Some(existing) = db
            .query_opt_cached(
                &format!(
                    "SELECT {CHALLENGE_COLUMNS}, c.request_hash FROM otp_challenges c
                     WHERE c.client_id = $1 AND c.idempotency_key = $2"
                ),
                &[&client, key],
            )
            .await?
        {
            return replay(&existing, &hash);
        }
    }
    let tx = db.transaction().await?;
    // Round trip 1: the advisory locks the limits are counted under.
    let e164 = req.msisdn.e164();
    let purpose = req.purpose.as_str();
    let mut locks = Vec::new();
    if !settings.limits.phone_purpose.is_empty() {
        locks.push(crate::limits::phone_purpose_lock(e164, purpose));
    }
    if let (Some(ip), false) = (req.client_ip, settings.limits.ip.is_empty()) {
        locks.push(crate::limits::ip_lock(ip));
    }
    crate::limits::take_locks(&tx, locks).await?;
    // Round trip 2: everything the decision needs, pipelined on the connection.
    let guards = settings.guards_for(Some(&api_client.name));
    let quota = daily_quota(state, api_client);
    let (phone_ages, ip_ages, locked, blocked, carrier, daily) = tokio::try_join!(
        crate::limits::phone_purpose_ages(&tx, &settings.limits.phone_purpose, e164, purpose),
        async {
            match req.client_ip {
                Some(ip) => crate::limits::ip_ages(&tx, &settings.limits.ip, ip).await,
                None => Ok(Vec::new()),
            }
        },
        async {
            match &req.account_ref {
                Some(account) => account_locked(&tx, client, account).await,
                None => Ok(false),
            }
        },
        crate::guards::check(&tx, guards, client, &req.msisdn),
        async {
            // The network that serves the number now (number portability), not its
            // prefix's.
            crate::mnp::carrier_of(&tx, &req.msisdn)
                .await
                .map_err(ApiError::from)
        },
        async {
            match quota {
                Some(_) => crate::limits::daily_sent(&tx, client).await.map(Some),
                None => Ok(None),
            }
        },
    )?;
    // The decision, in order: the number, the address, the account, the guards, the quota.
    let limited = crate::limits::phone_purpose_refusal(&phone_ages, &settings.limits.phone_purpose)
        .and_then(|()| crate::limits::ip_refusal(&ip_ages, &settings.limits.ip));
    if let Err(e) = limited {
        tx.rollback().await?;
        return Err(refused(state, &db, e, client, &req.msisdn, None, req.purpose).await);
    }
    if locked {
        return Err(ApiError::AccountLocked);
    }
    if let Some(blocked) = blocked {
        tx.rollback().await?;
        return Err(crate::guards::refuse(
            &db,
            &state.keys,
            &state.guard_counters,
            client,
            &req.msisdn,
            blocked,
        )
        .await);
    }
    if let (Some((sent, until_midnight)), Some(quota)) = (daily, quota) {
        if let Err(e) = crate::limits::daily_refusal(sent, until_midnight, quota) {
            tx.rollback().await?;
            return Err(refused(state, &db, e, client, &req.msisdn, None, req.purpose).await);
        }
    }
    let (route, route_cfg) = settings.route_for(carrier);
    let sender = api_client.sender_for(carrier.as_str(), &route_cfg.sender);
    // Round trip 3: the writes. The quota counter's row lock is taken before the
    // challenge's conversion bucket (its trigger), in every transaction: both statements
    // are prepared first so that the pipeline sends them in this order.
    tx.prepare_cached(crate::limits::COUNT_DAILY_SQL).await?;
    tx.prepare_cached(&INSERT_CHALLENGE_SQL).await?;
    let insert_challenge = async {
        tx.query_opt_cached(
            &INSERT_CHALLENGE_SQL,
            &[
                &id,
                &client,
                &e164,
                &carrier.as_str(),
                &purpose,
                &req.locale.as_str(),
                &i16::from(req.code_length),
                &(req.ttl_seconds as i32),
                &mac,
                &settings.otp.max_attempts,
                &settings.otp.max_sends,
                &resend_ms,
                &req.idempotency_key,
                &hash,
                &req.account_ref,
                &req.client_ip,
            ],
        )
        .await
        .map_err(ApiError::from)
    };
    let count = async {
        match quota {
            Some(_) => crate::limits::count_daily(&tx, client).await,
            None => Ok(()),
        }
    };
    let created_audit = audit::Event {
        event: "otp.created",
        client: Some(client),
        msisdn: Some(&req.msisdn),
        subject: Some(id),
        detail: json!({ "purpose": purpose, "carrier": carrier.as_str(), "route": route }),
    };
    let queue = || {
        queue_sms(
            &tx,
            id,
            1,
            route,
            &req.msisdn,
            sender,
            &sealed,
            request_id.as_deref(),
        )
    };
    let row = if req.idempotency_key.is_none() {
        // Nothing can conflict: the SMS and the audit row go in the same flight.
        let ((), row, (), ()) = tokio::try_join!(count, insert_challenge, queue(), async {
            audit::record(&tx, &state.keys, created_audit)
                .await
                .map_err(ApiError::from)
        },)?;
        row
    } else {
        let ((), row) = tokio::try_join!(count, insert_challenge)?;
        if row.is_some() {
            queue().await?;
            audit::record(&tx, &state.keys, created_audit).await?;
        }
        row
    };
    let Some(row) = row else {
        // The same Idempotency-Key was used before: answer as the first time, if the
        // request is the same.
        tx.rollback().await?;
        let existing = db
            .query_one_cached(
                &format!(
                    "SELECT {CHALLENGE_COLUMNS}, c.request_hash FROM otp_challenges c
                     WHERE c.client_id = $1 AND c.idempotency_key = $2"
                ),
                &[&client, &req.idempotency_key],
            )
            .await?;
        return replay(&existing, &hash);
    };
    tx.commit().await?;
    state.outbox_wake.notify_one();
    state
        .conversion_counts
        .created(client, e164, row.get("created_at"));
    state.funnel.otp("created", carrier.as_str(), 1);
    tracing::info!(otp = %id, msisdn = %req.msisdn, purpose = %req.purpose, route, "OTP created");
    Ok((view(&row, None)?, false))
}

/// Sends a new code that replaces the old one.
#[tracing::instrument(name = "otp.resend", skip_all, fields(client = %api_client.id, otp = %id))]
pub async fn resend(
    state: &AppState,
    api_client: &ApiClient,
    id: Uuid,
) -> Result<OtpView, ApiError> {
    let client = api_client.id;
    let settings = &state.settings;
    let mut db = state.pool.get().await?;
    let tx = db.transaction().await?;
    let row = tx
        .query_opt_cached(
            &format!(
                "SELECT {CHALLENGE_COLUMNS}, c.locale, c.code_length, c.ttl_seconds, c.code_version,
                    GREATEST(0, CEIL(EXTRACT(EPOCH FROM (c.resend_available_at - now()))))::bigint AS wait_secs
                 FROM otp_challenges c WHERE c.id = $1 AND c.client_id = $2 FOR UPDATE"
            ),
            &[&id, &client],
        )
        .await?
        .ok_or(ApiError::NotFound)?;
    let status: String = row.get("status");
    // An expired code may be replaced ("Gửi lại OTP" after the time ran out).
    if status != "pending" && status != "expired" {
        return Err(ApiError::NotPending { status });
    }
    let wait: i64 = row.get("wait_secs");
    if wait > 0 {
        return Err(ApiError::ResendTooEarly {
            retry_after: wait as u64,
        });
    }
    let sends: i32 = row.get("sends");
    let max_sends: i32 = row.get("max_sends");
    if sends >= max_sends {
        return Err(ApiError::MaxSendsReached { max_sends });
    }
    let msisdn = Msisdn::parse(row.get("msisdn"))
        .map_err(|e| ApiError::Internal(anyhow::anyhow!("stored msisdn unreadable: {e}")))?;
    let purpose: Purpose = row
        .get::<_, &str>("purpose")
        .parse()
        .map_err(|e: String| ApiError::Internal(anyhow::anyhow!(e)))?;
    let locale: Locale = row
        .get::<_, &str>("locale")
        .parse()
        .map_err(|e: String| ApiError::Internal(anyhow::anyhow!(e)))?;
    let code_length: i16 = row.get("code_length");
    let ttl_seconds: i32 = row.get("ttl_seconds");
    let version: i32 = row.get::<_, i32>("code_version") + 1;

    let code = state.keys.random_code(code_length as usize)?;
    let mac = state
        .keys
        .code_mac(id, version, purpose.as_str(), msisdn.e164(), &code);
    let text = sms_text(purpose, locale, &code, ttl_seconds as u32);
    drop(code);
    let sealed = state.keys.seal(&text, msisdn.e164())?;
    let limited = match crate::limits::check_phone_purpose(
        &tx,
        &settings.limits.phone_purpose,
        msisdn.e164(),
        purpose.as_str(),
    )
    .await
    {
        // Last: it takes the quota counter's row lock (see `take_client_daily`).
        Ok(()) => {
            crate::limits::take_client_daily(&tx, daily_quota(state, api_client), client).await
        }
        Err(e) => Err(e),
    };
    if let Err(e) = limited {
        tx.rollback().await?;
        return Err(refused(state, &db, e, client, &msisdn, Some(id), purpose).await);
    }
    let carrier = crate::mnp::carrier_of(&tx, &msisdn).await?;
    let (route, route_cfg) = settings.route_for(carrier);
    let resend_ms = settings.otp.resend_interval.as_millis() as f64;

    let updated = tx
        .query_one_cached(
            &format!(
                "UPDATE otp_challenges c SET code_mac = $2, code_version = $3, sends = sends + 1,
                    status = 'pending', updated_at = now(),
                    expires_at = now() + make_interval(secs => ttl_seconds),
                    resend_available_at = now() + make_interval(secs => $4::float8 / 1000)
                 WHERE c.id = $1 RETURNING {CHALLENGE_COLUMNS}"
            ),
            &[&id, &mac, &version, &resend_ms],
        )
        .await?;
    // The old code no longer works: an unsent SMS carrying it is pointless.
    cancel_unsent_sms(&tx, id).await?;
    let sender = api_client.sender_for(carrier.as_str(), &route_cfg.sender);
    let request_id = crate::api::requests::current_id();
    queue_sms(
        &tx,
        id,
        version,
        route,
        &msisdn,
        sender,
        &sealed,
        request_id.as_deref(),
    )
    .await?;
    audit::record(
        &tx,
        &state.keys,
        audit::Event {
            event: "otp.resent",
            client: Some(client),
            msisdn: Some(&msisdn),
            subject: Some(id),
            detail: json!({ "send": sends + 1, "route": route }),
        },
    )
    .await?;
    tx.commit().await?;
    state.outbox_wake.notify_one();
    tracing::info!(otp = %id, msisdn = %msisdn, send = sends + 1, "OTP resent");
    view(&updated, None)
}

/// Counts the attempt and compares in constant time, under the row lock.
#[tracing::instrument(name = "otp.check", skip_all, fields(client = %client, otp = %id))]
pub async fn check(
    state: &AppState,
    client: Uuid,
    id: Uuid,
    candidate: &str,
) -> Result<CheckView, ApiError> {
    let mut db = state.pool.get().await?;
    let tx = db.transaction().await?;
    let row = tx
        .query_opt_cached(
            "SELECT status, attempts, max_attempts, code_mac, code_version, purpose, msisdn, account_ref,
                    created_at, carrier, (expires_at <= now()) AS expired_now
             FROM otp_challenges WHERE id = $1 AND client_id = $2 FOR UPDATE",
            &[&id, &client],
        )
        .await?
        .ok_or(ApiError::NotFound)?;
    let status: String = row.get("status");
    let attempts: i32 = row.get("attempts");
    let max_attempts: i32 = row.get("max_attempts");
    let result = |valid: bool, status: &str, attempts: i32| CheckView {
        id,
        valid,
        status: status.to_owned(),
        attempts_left: (max_attempts - attempts).max(0),
    };
    if status != "pending" {
        tx.rollback().await?;
        return Ok(result(false, &status, attempts));
    }
    if row.get::<_, bool>("expired_now") {
        tx.execute_cached(
            "UPDATE otp_challenges SET status = 'expired', updated_at = now() WHERE id = $1",
            &[&id],
        )
        .await?;
        tx.commit().await?;
        state.funnel.otp("expired", row.get("carrier"), 1);
        return Ok(result(false, "expired", attempts));
    }
    let account: Option<String> = row.get("account_ref");
    if let Some(account) = &account {
        if account_locked(&tx, client, account).await? {
            tx.rollback().await?;
            return Err(ApiError::AccountLocked);
        }
    }
    let attempts = attempts + 1;
    let valid = state.keys.verify_code(
        row.get("code_mac"),
        id,
        row.get("code_version"),
        row.get("purpose"),
        row.get("msisdn"),
        candidate,
    );
    let new_status = if valid {
        "approved"
    } else if attempts >= max_attempts {
        "max_attempts_reached"
    } else {
        "pending"
    };
    tx.execute_cached(
        "UPDATE otp_challenges SET attempts = $2, status = $3, updated_at = now(),
            approved_at = CASE WHEN $3 = 'approved' THEN now() END
         WHERE id = $1",
        &[&id, &attempts, &new_status],
    )
    .await?;
    if new_status != "pending" {
        cancel_unsent_sms(&tx, id).await?;
    }
    if let (false, Some(account)) = (valid, &account) {
        count_failed_check(
            state,
            &tx,
            client,
            account,
            state.settings.limits.account_failed_checks,
        )
        .await?;
    }
    let checked_msisdn = Msisdn::parse(row.get("msisdn")).ok();
    for event in ["otp.checked", "otp.locked"] {
        if event == "otp.locked" && new_status != "max_attempts_reached" {
            continue;
        }
        audit::record(
            &tx,
            &state.keys,
            audit::Event {
                event,
                client: Some(client),
                msisdn: checked_msisdn.as_ref(),
                subject: Some(id),
                detail: json!({ "valid": valid, "status": new_status, "attempts": attempts }),
            },
        )
        .await?;
    }
    tx.commit().await?;
    if valid {
        state
            .conversion_counts
            .approved(client, row.get("msisdn"), row.get("created_at"));
        state.funnel.otp("approved", row.get("carrier"), 1);
    } else if new_status == "max_attempts_reached" {
        state.funnel.otp("locked", row.get("carrier"), 1);
    }
    tracing::info!(otp = %id, valid, status = new_status, "OTP checked");
    Ok(result(valid, new_status, attempts))
}

pub async fn cancel(state: &AppState, client: Uuid, id: Uuid) -> Result<OtpView, ApiError> {
    let mut db = state.pool.get().await?;
    let tx = db.transaction().await?;
    let row = tx
        .query_opt_cached(
            &format!(
                "UPDATE otp_challenges c SET status = 'canceled', updated_at = now()
                 WHERE c.id = $1 AND c.client_id = $2 AND c.status IN ('pending', 'expired')
                 RETURNING {CHALLENGE_COLUMNS}"
            ),
            &[&id, &client],
        )
        .await?;
    let Some(row) = row else {
        let existing = tx
            .query_opt_cached(
                "SELECT status FROM otp_challenges WHERE id = $1 AND client_id = $2",
                &[&id, &client],
            )
            .await?
            .ok_or(ApiError::NotFound)?;
        return Err(ApiError::NotPending {
            status: existing.get(0),
        });
    };
    cancel_unsent_sms(&tx, id).await?;
    let canceled_msisdn = Msisdn::parse(row.get("msisdn")).ok();
    audit::record(
        &tx,
        &state.keys,
        audit::Event {
            event: "otp.canceled",
            client: Some(client),
            msisdn: canceled_msisdn.as_ref(),
            subject: Some(id),
            detail: json!({}),
        },
    )
    .await?;
    tx.commit().await?;
    tracing::info!(otp = %id, "OTP canceled");
    view(&row, None)
}

pub async fn get(state: &AppState, client: Uuid, id: Uuid) -> Result<OtpView, ApiError> {
    let db = state.pool.get().await?;
    let row = db
        .query_opt_cached(
            &format!(
                "SELECT {CHALLENGE_COLUMNS},
                    o.status AS o_status, o.route AS o_route, o.smsc_message_id, o.submitted_at,
                    o.last_error, r.parts, r.delivered, r.bad_state, r.bad_error, r.last_at AS r_at
                 FROM otp_challenges c
                 LEFT JOIN LATERAL (
                    SELECT * FROM sms_outbox WHERE challenge_id = c.id ORDER BY id DESC LIMIT 1
                 ) o ON true
                 LEFT JOIN LATERAL (
                    -- Every part's latest receipt: delivered when all parts are; the
                    -- first bad final state otherwise.
                    SELECT count(*)::int AS parts,
                        count(*) FILTER (WHERE pr.state = 'delivered')::int AS delivered,
                        (array_agg(pr.state ORDER BY pr.received_at)
                            FILTER (WHERE pr.state IS NOT NULL AND pr.state <> 'delivered'))[1] AS bad_state,
                        (array_agg(pr.error_code ORDER BY pr.received_at)
                            FILTER (WHERE pr.state IS NOT NULL AND pr.state <> 'delivered'))[1] AS bad_error,
                        max(pr.received_at) AS last_at
                    FROM sms_parts p
                    LEFT JOIN LATERAL (
                        SELECT * FROM delivery_receipts d
                        WHERE d.route = o.route
                          AND d.message_id IN (p.message_key, p.message_key_dec, p.message_key_hex)
                        ORDER BY d.received_at DESC LIMIT 1
                    ) pr ON true
                    WHERE p.outbox_id = o.id
                 ) r ON true
                 WHERE c.id = $1 AND c.client_id = $2"
            ),
            &[&id, &client],
        )
        .await?
        .ok_or(ApiError::NotFound)?;
    let delivery = row
        .get::<_, Option<String>>("o_status")
        .map(|outbox_status| {
            let parts: i32 = row.get::<_, Option<i32>>("parts").unwrap_or(0);
            let delivered: i32 = row.get::<_, Option<i32>>("delivered").unwrap_or(0);
            let bad: Option<String> = row.get("bad_state");
            let status = match (&bad, parts > 0 && delivered == parts) {
                (Some(state), _) => state.clone(),
                (None, true) => "delivered".to_owned(),
                (None, false) => outbox_status,
            };
            DeliveryView {
                status,
                route: row.get("o_route"),
                message_id: row.get("smsc_message_id"),
                parts: parts.max(1),
                submitted_at: row.get("submitted_at"),
                receipt_at: row.get("r_at"),
                error: row
                    .get::<_, Option<String>>("bad_error")
                    .filter(|e| !e.trim_start_matches('0').is_empty())
                    .or(row.get("last_error")),
            }
        });
    view(&row, delivery)
}
