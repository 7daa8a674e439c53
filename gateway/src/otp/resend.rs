//! Resending: a new code that replaces the old one ("Gửi lại OTP"). A resend is a send
//! like a create's: it is admitted by the same rules (`admission::admit`, from a
//! snapshot read the same way), for the verification's number, purpose, end-user
//! address and account, and counts for the sends after it as a create's does.

use serde_json::json;
use uuid::Uuid;

use super::admission::{self, Ask, Fate, Kind};
use super::deps::Deps;
use super::error::OtpError;
use super::model::{view, OtpView};
use super::sms::{cancel_unsent, queue_sms, queue_zns, Step};
use super::snapshot;
use crate::audit;
use crate::clients::ApiClient;
use crate::domain::{Channel, Locale, Msisdn, Purpose};
use crate::failure::Failure;
use crate::store::tables::otp_challenges::{Challenge, Resent, CHALLENGE, RESENT};
use crate::store::tables::FromRow;
use crate::store::Cached;

/// Sends a new code for verification `id`. A transaction that lost a deadlock or
/// serialization race (nothing of it committed) is run once more.
#[tracing::instrument(name = "otp.resend", skip_all, fields(client = %api_client.id, otp = %id))]
pub async fn resend(
    deps: &Deps,
    api_client: &ApiClient,
    id: Uuid,
    channel: Option<Channel>,
) -> Result<OtpView, OtpError> {
    match attempt(deps, api_client, id, channel).await {
        Err(e) if e.is_db_conflict() => {
            tracing::info!(error = %e, "resend lost a database conflict; running it again");
            attempt(deps, api_client, id, channel).await
        }
        other => other,
    }
}

async fn attempt(
    deps: &Deps,
    api_client: &ApiClient,
    id: Uuid,
    channel: Option<Channel>,
) -> Result<OtpView, OtpError> {
    let client = api_client.id;
    let settings = &deps.settings;
    let mut db = deps.pool.get().await?;
    let tx = db.transaction().await?;
    let row = tx
        .query_opt_cached(
            &format!(
                "SELECT {CHALLENGE}, {RESENT}
                 FROM otp_challenges c WHERE c.id = $1 AND c.client_id = $2 FOR UPDATE"
            ),
            &[&id, &client],
        )
        .await?
        .ok_or(OtpError::NotFound)?;
    let row = Resent::try_from_row(&row)?;
    // The verification's own rules: still open, not too early, sends left.
    let status = row.challenge.status.clone();
    // An expired code may be replaced ("Gửi lại OTP" after the time ran out).
    if status != "pending" && status != "expired" {
        return Err(OtpError::NotPending { status });
    }
    let wait = row.wait_secs;
    if wait > 0 {
        return Err(OtpError::ResendTooEarly {
            retry_after: wait as u64,
        });
    }
    let (sends, max_sends) = (row.challenge.sends, row.challenge.max_sends);
    if sends >= max_sends {
        return Err(OtpError::MaxSendsReached { max_sends });
    }
    let msisdn = Msisdn::parse(&row.challenge.msisdn)
        .map_err(|e| Failure::internal(format!("stored msisdn unreadable: {e}")))?;
    let purpose: Purpose = row.challenge.purpose.parse().map_err(Failure::internal)?;
    let locale: Locale = row.locale.parse().map_err(Failure::internal)?;
    let client_ip = row.client_ip;
    let account_ref = row.account_ref;
    // The channels: the one the resend names ("Gửi lại OTP" by SMS), else the
    // verification's workflow again.
    let stored = Channel::parse_workflow(&row.challenge.channels).map_err(Failure::internal)?;
    let requested = channel.map(|c| vec![c]).unwrap_or(stored);
    let (channels, zns_template) =
        super::model::workflow(settings, api_client, Some(&requested), purpose, locale)?;

    // The send's rules: the same as a create's.
    let ask = Ask {
        kind: Kind::Resend,
        client: api_client,
        msisdn: &msisdn,
        purpose,
        locale,
        client_ip,
        account_ref: account_ref.as_deref(),
        sms: channels.contains(&Channel::Sms),
    };
    let asks = std::slice::from_ref(&ask);
    let needs = admission::needs(settings, asks);
    let mut snapshot = snapshot::take(&tx, settings, &needs).await?;
    let to = match admission::admit(settings, &mut snapshot, asks).remove(0) {
        Fate::Admitted(to) => to,
        refused => {
            tx.rollback().await?;
            return Err(
                super::refusal::refused(deps, refused, client, &msisdn, Some(id), purpose).await,
            );
        }
    };

    let (code_length, ttl_seconds) = (row.code_length, row.ttl_seconds);
    let version = row.code_version + 1;
    let code = deps.keys.random_code(code_length as usize)?;
    let mac = deps
        .keys
        .code_mac(id, version, purpose.as_str(), msisdn.e164(), &code);
    let text = super::model::text_for(
        api_client,
        to.carrier.as_str(),
        purpose,
        locale,
        &code,
        ttl_seconds as u32,
    )?;
    let zns = match zns_template {
        Some(template) => Some((
            template,
            super::model::seal_zns_data(&deps.keys, settings, &msisdn, &code, ttl_seconds as u32)?,
        )),
        None => None,
    };
    drop(code);
    let sealed = deps.keys.seal(&text, msisdn.e164())?;
    drop(text);
    let names: Vec<&str> = channels.iter().map(|c| c.as_str()).collect();
    let resend_ms = settings.otp.resend_interval.as_millis() as f64;

    let updated = tx
        .query_one_cached(
            &format!(
                "UPDATE otp_challenges c SET code_mac = $2, code_version = $3, sends = sends + 1,
                    status = 'pending', updated_at = now(),
                    expires_at = now() + make_interval(secs => ttl_seconds),
                    resend_available_at = now() + make_interval(secs => $4::float8 / 1000),
                    channels = string_to_array($5, ',')
                 WHERE c.id = $1 RETURNING {CHALLENGE}, c.channel_timeout_ms, c.events"
            ),
            &[&id, &mac, &version, &resend_ms, &names.join(",")],
        )
        .await?;
    // The old code no longer works: an unsent message carrying it is pointless.
    cancel_unsent(&tx, id, "superseded_by_resend").await?;
    let request_id = crate::telemetry::request_id::current();
    let step_of = |c: Channel| Step {
        step: channels.iter().position(|w| *w == c).unwrap_or(0) as i16,
        steps: channels.len() as i16,
        timeout_ms: updated.get("channel_timeout_ms"),
        events: updated.get("events"),
    };
    if channels.contains(&Channel::Sms) {
        queue_sms(
            &tx,
            id,
            version,
            &to.route,
            &msisdn,
            &to.sender,
            &sealed,
            request_id.as_deref(),
            client_ip,
            &step_of(Channel::Sms),
        )
        .await?;
    }
    if let Some((template, sealed)) = &zns {
        queue_zns(
            &tx,
            id,
            template,
            sealed,
            request_id.as_deref(),
            &step_of(Channel::Zalo),
        )
        .await?;
    }
    if admission::daily_quota(settings, api_client).is_some() {
        // Last: it takes the quota counter's row lock.
        crate::limits::count_daily(&tx, client).await?;
    }
    audit::record(
        &tx,
        &deps.keys,
        audit::Event {
            event: "otp.resent",
            client: Some(client),
            msisdn: Some(&msisdn),
            subject: Some(id),
            detail: json!({ "send": sends + 1, "route": to.route, "channels": names }),
        },
    )
    .await?;
    tx.commit().await?;
    deps.outbox_wake.notify_one();
    if zns.is_some() {
        deps.zns_wake.notify_one();
    }
    // The conversion guard counts verifications, not their codes: a resend adds none.
    tracing::info!(otp = %id, msisdn = %msisdn, send = sends + 1, "OTP resent");
    view(Challenge::try_from_row(&updated)?, None)
}
