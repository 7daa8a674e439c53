//! The poller: asks the MSSP about pending requests with back-off (carriers that call
//! back are asked now and then too, in case a callback was lost) and ends those whose
//! answer never came.

use std::time::Duration;

use carrier_adapters::mss::{MssMessage, Operation, SoapContent, StatusReq};
use tokio_util::sync::CancellationToken;

use super::error::SignatureError;
use super::lifecycle::end;
use super::messages::{ap_info, ending, mssp_info};
use super::service::SignatureService;
use super::verify::apply_status;
use crate::domain::Msisdn;
use crate::failure::Failure;
use crate::mssp::MsspClient;
use crate::store::tables::signature_requests::{Due, DUE};
use crate::store::tables::FromRow;
use crate::store::Cached;

/// Polls pending requests (and sweeps those whose answer never came) on every instance,
/// each row claimed by one.
pub async fn run_poller(svc: std::sync::Arc<SignatureService>, shutdown: CancellationToken) {
    let tick = svc
        .settings
        .signatures
        .poll_min
        .min(Duration::from_millis(500));
    loop {
        if let Err(e) = poll_once(&svc).await {
            tracing::warn!(error = format!("{e:#}"), "signature poll pass failed");
        }
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tokio::time::sleep(tick) => {}
        }
    }
}

async fn poll_once(svc: &SignatureService) -> anyhow::Result<()> {
    let grace = svc.settings.signatures.expiry_grace.as_secs_f64();
    let due: Vec<Due> = {
        let db = svc.pool.get().await?;
        db.query_cached(
            &format!(
                "UPDATE signature_requests s SET claimed_until = now() + interval '30 seconds'
             WHERE s.id IN (
                SELECT id FROM signature_requests
                WHERE status = 'pending' AND next_poll_at <= now()
                  AND (claimed_until IS NULL OR claimed_until < now())
                ORDER BY next_poll_at LIMIT 32
                FOR UPDATE SKIP LOCKED)
             RETURNING {DUE}"
            ),
            &[&grace],
        )
        .await?
        .iter()
        .map(Due::try_from_row)
        .collect::<Result<_, _>>()?
    };
    futures::future::join_all(due.into_iter().map(|d| poll_one(svc, d))).await;
    Ok(())
}

async fn poll_one(svc: &SignatureService, due: Due) {
    let id = due.id;
    if let Err(e) = poll_one_inner(svc, due).await {
        tracing::warn!(signature = %id, error = %e, "poll failed");
    }
}

#[tracing::instrument(name = "signature.poll", skip_all, fields(signature = %due.id, carrier = %due.carrier))]
async fn poll_one_inner(svc: &SignatureService, due: Due) -> Result<(), SignatureError> {
    if due.overdue {
        end(
            svc,
            due.id,
            "expired",
            Some("no answer before the request timed out".into()),
        )
        .await?;
        return Ok(());
    }
    let carrier: carrier_adapters::Carrier = due
        .carrier
        .parse()
        .map_err(|e| Failure::Internal(anyhow::anyhow!("{e}")))?;
    let Some(mssp) = svc.mssps.get(&carrier).cloned() else {
        end(
            svc,
            due.id,
            "carrier_error",
            Some("carrier no longer configured".into()),
        )
        .await?;
        return Ok(());
    };
    let Some(mssp_trans_id) = due.mssp_trans_id.clone() else {
        // The push is still in flight (or was lost between insert and update): later.
        reschedule(svc, &due, &mssp).await?;
        return Ok(());
    };
    let query = MssMessage::StatusReq(StatusReq {
        ap: ap_info(&mssp, svc, &due.ap_trans_id),
        mssp: mssp_info(&mssp),
        mssp_trans_id,
        msisdn: Some(due.msisdn.clone()),
    });
    match mssp.call(Operation::StatusQuery, &query).await {
        Ok(SoapContent::Message {
            message: MssMessage::StatusResp(resp),
            ..
        }) => {
            // The answer must be about this transaction: the carrier's id and the number.
            let other_id = resp
                .mssp_trans_id
                .as_deref()
                .is_some_and(|theirs| Some(theirs) != due.mssp_trans_id.as_deref());
            let other_number = !resp.msisdn.trim().is_empty()
                && Msisdn::parse(&resp.msisdn)
                    .ok()
                    .map(|m| m.e164().to_owned())
                    != Some(due.msisdn.clone());
            if other_id || other_number {
                tracing::warn!(signature = %due.id, "the MSSP answered a status query about another transaction");
                end(
                    svc,
                    due.id,
                    "carrier_error",
                    Some(
                        "the carrier answered about another transaction (its id or number differs)"
                            .into(),
                    ),
                )
                .await?;
                return Ok(());
            }
            apply_status(svc, due.id, &resp).await?;
            reschedule(svc, &due, &mssp).await?;
        }
        Ok(SoapContent::Fault(f)) => {
            let status = ending(f.status).unwrap_or("carrier_error");
            end(
                svc,
                due.id,
                status,
                Some(format!("{}: {}", f.status, f.reason)),
            )
            .await?;
        }
        Ok(_) => reschedule(svc, &due, &mssp).await?,
        Err(e) => {
            tracing::warn!(signature = %due.id, error = %e, "status query failed; will retry");
            reschedule(svc, &due, &mssp).await?;
        }
    }
    Ok(())
}

/// Next poll with back-off, never later than the expiry sweep.
async fn reschedule(
    svc: &SignatureService,
    due: &Due,
    mssp: &MsspClient,
) -> Result<(), SignatureError> {
    let s = &svc.settings.signatures;
    let delay = if mssp.dialect.calls_back() {
        s.poll_max * 4
    } else {
        carrier_adapters::retry::Schedule::doubling(s.poll_min, s.poll_max)
            .pause(due.poll_attempts.clamp(0, 30) as u32 + 1)
            .unwrap_or(s.poll_max)
    };
    let grace = s.expiry_grace.as_secs_f64();
    let db = svc.pool.get().await?;
    db.execute_cached(
        "UPDATE signature_requests SET poll_attempts = poll_attempts + 1, claimed_until = NULL,
            next_poll_at = LEAST(now() + make_interval(secs => $2::float8),
                                 expires_at + make_interval(secs => $3::float8))
         WHERE id = $1 AND status = 'pending'",
        &[&due.id, &delay.as_secs_f64(), &grace],
    )
    .await?;
    Ok(())
}
