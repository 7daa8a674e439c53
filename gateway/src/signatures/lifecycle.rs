//! A request's life: created and pushed to the SIM, canceled by the portal, ended once
//! (announced to long-pollers and by webhook in the ending transaction).

use base64::Engine;
use carrier_adapters::mss::{
    self, Data, MssMessage, Operation, ReceiptReq, SignatureReq, SoapContent, StatusCode,
};
use carrier_adapters::signature;
use chrono::{DateTime, Utc};
use serde_json::json;
use uuid::Uuid;

use super::error::SignatureError;
use super::messages::{ap_info, ending, mssp_info, rfc3339};
use super::model::{
    NewSignature, SignatureEvent, SignatureView, Signer, SignerIdentifier, SignerIssuer,
    SignerSubject,
};
use super::service::SignatureService;
use super::view::{get, view};
use crate::domain::Msisdn;
use crate::failure::Failure;
use crate::store::tables::signature_requests::{Request, Withdrawal, REQUEST, WITHDRAWAL};
use crate::store::tables::FromRow;
use crate::store::Cached;

/// Creates the request, pushes it to the MSSP and records its transaction id.
#[tracing::instrument(name = "signature.create", skip_all, fields(client = %client, purpose = req.purpose.as_str()))]
pub async fn create(
    svc: &SignatureService,
    client: Uuid,
    req: NewSignature,
) -> Result<SignatureView, SignatureError> {
    let db = svc.pool.get().await?;
    // The SIM lives at the network that serves the number now (number portability), as
    // its SMS do.
    let carrier = crate::mnp::carrier_of(&db, &req.msisdn).await?;
    let mssp = svc
        .mssps
        .get(&carrier)
        .cloned()
        .ok_or_else(|| SignatureError::InvalidField {
            field: "msisdn",
            detail: format!("{carrier} offers no SIM signature service here"),
        })?;
    let id = Uuid::now_v7();
    let ap_trans_id = format!("T{}", id.simple());
    let settings = &svc.settings.signatures;
    // Carriers that call back are still polled now and then, in case a callback is lost.
    let first_poll = if mssp.dialect.calls_back() {
        settings.poll_max * 4
    } else {
        settings.poll_min
    };
    // The request and its audit record, together; billed only once the carrier accepts
    // the push (below), so a push that fails costs nothing.
    let mut db = db;
    let tx = db.transaction().await?;
    let inserted = tx
        .query_one_cached(
        &format!("INSERT INTO signature_requests (id, client_id, msisdn, carrier, purpose, display_text,
            data_to_sign, ap_trans_id, timeout_seconds, callback_url, expires_at, next_poll_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10,
            now() + make_interval(secs => $9::int), now() + make_interval(secs => $11::float8))
         RETURNING {REQUEST}"),
        &[
            &id,
            &client,
            &req.msisdn.e164(),
            &carrier.as_str(),
            &req.purpose.as_str(),
            &req.display_text,
            &req.data_to_sign,
            &ap_trans_id,
            &(req.timeout_seconds as i32),
            &req.callback_url,
            &first_poll.as_secs_f64(),
        ],
    )
    .await?;
    let inserted = Request::try_from_row(&inserted)?;
    crate::audit::record(
        &tx,
        &svc.keys,
        crate::audit::Event {
            event: "signature.requested",
            client: Some(client),
            msisdn: Some(&req.msisdn),
            subject: Some(id),
            detail: json!({ "purpose": req.purpose.as_str(), "carrier": carrier.as_str() }),
        },
    )
    .await?;
    tx.commit().await?;
    drop(db);

    let message = MssMessage::SignatureReq(SignatureReq {
        ap: ap_info(&mssp, svc, &ap_trans_id),
        mssp: mssp_info(&mssp),
        msisdn: req.msisdn.e164().to_owned(),
        mode: mssp.dialect.mode,
        timeout_seconds: Some(req.timeout_seconds),
        data_to_be_signed: Data {
            value: base64::engine::general_purpose::STANDARD.encode(&req.data_to_sign),
            mime_type: Some("application/octet-stream".into()),
            encoding: Some("base64".into()),
        },
        data_to_be_displayed: Some(Data {
            value: req.display_text.clone(),
            mime_type: Some("text/plain".into()),
            encoding: Some("UTF-8".into()),
        }),
        signature_profile: Some(mssp.dialect.signature_profile.to_owned()),
        mss_format: Some(mssp.dialect.format.uri().to_owned()),
    });
    match mssp.call(Operation::Signature, &message).await {
        Ok(SoapContent::Message {
            message: MssMessage::SignatureResp(resp),
            ..
        }) => match ending(resp.status.code) {
            None => {
                // The MSSP cannot have two live transactions under one id: a live request
                // of ours that still holds this one was forgotten by the carrier (it
                // restarted, or recycled the id). It ends as such, before this request
                // takes the id, so that polls and callbacks never reach the wrong one.
                let db = svc.pool.get().await?;
                let stale: Vec<Uuid> = db
                    .query_cached(
                        "SELECT id FROM signature_requests
                         WHERE carrier = $1 AND mssp_trans_id = $2 AND status = 'pending' AND id <> $3",
                        &[&carrier.as_str(), &resp.mssp_trans_id, &id],
                    )
                    .await?
                    .iter()
                    .map(|r| r.get(0))
                    .collect();
                drop(db);
                for old in stale {
                    tracing::warn!(signature = %old, carrier = %carrier, "the carrier reused a live request's transaction id: it forgot that request");
                    end(
                        svc,
                        old,
                        "carrier_error",
                        Some("the carrier reused this request's transaction id: it no longer knows it".into()),
                    )
                    .await?;
                }
                // Accepted: its id and its billing, together. Until this commits, neither
                // a callback nor a poll can end the request (they need the carrier's id),
                // so a request the portal never got an answer for cannot end `signed`.
                let mut db = svc.pool.get().await?;
                let tx = db.transaction().await?;
                let accepted = tx
                    .execute_cached(
                        "UPDATE signature_requests SET mssp_trans_id = $2, updated_at = now()
                         WHERE id = $1 AND status = 'pending'",
                        &[&id, &resp.mssp_trans_id],
                    )
                    .await?;
                if accepted == 1 {
                    crate::billing::record(
                        &tx,
                        &[(client, carrier.as_str(), "signature_request", 1, Some(id))],
                    )
                    .await?;
                }
                tx.commit().await?;
                if accepted == 1 {
                    // Accepted and billed: the answer is the pending request as stored,
                    // with no further read that a database fault could turn into a 503
                    // for a request the carrier is already showing on the phone.
                    tracing::info!(signature = %id, msisdn = %req.msisdn, %carrier, "signature requested");
                    return view(&inserted);
                }
            }
            Some(status) => {
                end(svc, id, status, Some(resp.status.code.to_string())).await?;
            }
        },
        Ok(SoapContent::Fault(fault)) => {
            let status = ending(fault.status).unwrap_or("carrier_error");
            end(
                svc,
                id,
                status,
                Some(format!("{}: {}", fault.status, fault.reason)),
            )
            .await?;
        }
        Ok(SoapContent::Message { message, .. }) => {
            end(
                svc,
                id,
                "carrier_error",
                Some(format!(
                    "unexpected {} from the MSSP",
                    message.element_name()
                )),
            )
            .await?;
        }
        Err(e) => {
            tracing::warn!(signature = %id, error = %e, "MSSP request failed");
            end(svc, id, "carrier_error", Some(e.detail())).await?;
        }
    }
    tracing::info!(signature = %id, msisdn = %req.msisdn, %carrier, "signature requested");
    get(svc, client, id).await
}

#[tracing::instrument(name = "signature.cancel", skip_all, fields(client = %client, signature = %id))]
pub async fn cancel(
    svc: &SignatureService,
    client: Uuid,
    id: Uuid,
) -> Result<SignatureView, SignatureError> {
    let db = svc.pool.get().await?;
    let row = db
        .query_opt_cached(
            &format!(
                "SELECT {WITHDRAWAL} FROM signature_requests WHERE id = $1 AND client_id = $2"
            ),
            &[&id, &client],
        )
        .await?
        .ok_or(SignatureError::NotFound)?;
    drop(db);
    let row = Withdrawal::try_from_row(&row)?;
    let status = &row.status;
    // Ended here first: from now on no answer of the carrier can make it `signed`.
    if status != "pending"
        || !end(svc, id, "canceled", Some("canceled by the portal".into())).await?
    {
        let now = get(svc, client, id).await?;
        return Err(SignatureError::NotPending { status: now.status });
    }
    // Then withdrawn from the phone, where the carrier allows it.
    let carrier: Option<carrier_adapters::Carrier> = row.carrier.parse().ok();
    let mssp = carrier.and_then(|c| svc.mssps.get(&c).cloned());
    let detail = match (mssp, row.mssp_trans_id.clone()) {
        (Some(mssp), Some(mssp_trans_id)) if mssp.route.cancel_at_carrier => {
            let receipt = MssMessage::ReceiptReq(ReceiptReq {
                ap: ap_info(&mssp, svc, &row.ap_trans_id),
                mssp: mssp_info(&mssp),
                mssp_trans_id,
                msisdn: row.msisdn.clone(),
                status: Some(mss::Status::new(StatusCode::UserCancel)),
                message: Some(Data {
                    value: "Giao dịch đã được hủy / The request was canceled".into(),
                    mime_type: Some("text/plain".into()),
                    encoding: Some("UTF-8".into()),
                }),
            });
            match mssp.call(Operation::Receipt, &receipt).await {
                Ok(SoapContent::Message {
                    message: MssMessage::ReceiptResp(r),
                    ..
                }) if r.status.code == StatusCode::RequestOk => {
                    "canceled by the portal; the carrier withdrew the prompt from the phone".into()
                }
                Ok(SoapContent::Fault(f)) => format!(
                    "canceled by the portal; the carrier did not withdraw the prompt ({}: {}), so the phone may show it until it expires; any answer is ignored",
                    f.status, f.reason
                ),
                Ok(_) => "canceled by the portal; the carrier's answer to the withdrawal was not a receipt, so the phone may show the prompt until it expires; any answer is ignored".into(),
                Err(e) => format!(
                    "canceled by the portal; {} — the phone may show the prompt until it expires; any answer is ignored",
                    e.detail()
                ),
            }
        }
        (Some(mssp), Some(_)) if !mssp.route.cancel_at_carrier => {
            "canceled by the portal; this carrier offers no cancel, so the phone may show the prompt until it expires; any answer is ignored".to_owned()
        }
        _ => "canceled by the portal".to_owned(),
    };
    let db = svc.pool.get().await?;
    db.execute_cached(
        "UPDATE signature_requests SET status_detail = $2, updated_at = now()
         WHERE id = $1 AND status = 'canceled'",
        &[&id, &detail],
    )
    .await?;
    drop(db);
    get(svc, client, id).await
}

/// Ends a pending request once (no-op if it already ended). Returns whether it ended it.
pub async fn end(
    svc: &SignatureService,
    id: Uuid,
    status: &str,
    detail: Option<String>,
) -> Result<bool, SignatureError> {
    let mut db = svc.pool.get().await?;
    let tx = db.transaction().await?;
    let row = tx
        .query_opt_cached(
            &format!(
                "UPDATE signature_requests SET status = $2, status_detail = $3, ended_at = now(),
                    updated_at = now(), claimed_until = NULL
                 WHERE id = $1 AND status = 'pending' RETURNING {REQUEST}"
            ),
            &[&id, &status, &detail],
        )
        .await?;
    let Some(row) = row.map(|r| Request::try_from_row(&r)).transpose()? else {
        tx.rollback().await?;
        return Ok(false);
    };
    announce(svc, &tx, &row).await?;
    tx.commit().await?;
    svc.funnel.signature(&row.carrier, status);
    tracing::info!(signature = %id, status, "signature request ended");
    Ok(true)
}

/// Records a verified signature.
pub(super) async fn end_signed(
    svc: &SignatureService,
    id: Uuid,
    verified: &signature::Verified,
    revocation: &str,
) -> Result<bool, SignatureError> {
    let subject = &verified.subject;
    let signer = Signer {
        subject: SignerSubject {
            common_name: subject.common_name.clone(),
            identifiers: subject
                .identifiers
                .iter()
                .map(|(kind, value)| SignerIdentifier {
                    kind: kind.clone(),
                    value: value.clone(),
                })
                .collect(),
            organization: subject.organization.clone(),
        },
        issuer: SignerIssuer {
            common_name: verified.issuer_common_name.clone(),
        },
        not_before: rfc3339(verified.not_before),
        not_after: rfc3339(verified.not_after),
        serial: verified.serial_hex.clone(),
        revocation: Some(revocation.to_owned()),
    };
    let signer = serde_json::to_value(&signer).map_err(|e| Failure::Internal(e.into()))?;
    let signed_at = DateTime::<Utc>::from(verified.signed_at);
    let mut db = svc.pool.get().await?;
    let tx = db.transaction().await?;
    let row = tx
        .query_opt_cached(
            &format!(
                "UPDATE signature_requests SET status = 'signed', status_detail = NULL, ended_at = now(),
                    updated_at = now(), claimed_until = NULL, signature_cms = $2,
                    certificate_der = $3, signer = $4, signed_at = $5
                 WHERE id = $1 AND status = 'pending' RETURNING {REQUEST}"
            ),
            &[&id, &verified.cms_der, &verified.certificate_der, &signer, &signed_at],
        )
        .await?;
    let Some(row) = row.map(|r| Request::try_from_row(&r)).transpose()? else {
        tx.rollback().await?;
        return Ok(false);
    };
    announce(svc, &tx, &row).await?;
    tx.commit().await?;
    svc.funnel.signature(&row.carrier, "signed");
    tracing::info!(signature = %id, "signature verified and stored");
    Ok(true)
}

/// Wakes long-pollers everywhere and queues the webhook, in the ending transaction.
async fn announce(
    svc: &SignatureService,
    tx: &deadpool_postgres::Transaction<'_>,
    row: &Request,
) -> Result<(), SignatureError> {
    let id = row.id;
    let msisdn = Msisdn::parse(&row.msisdn).ok();
    crate::audit::record(
        tx,
        &svc.keys,
        crate::audit::Event {
            event: "signature.ended",
            client: Some(row.client_id),
            msisdn: msisdn.as_ref(),
            subject: Some(id),
            detail: json!({
                "status": row.status,
                "detail": row.status_detail,
                "carrier": row.carrier,
            }),
        },
    )
    .await?;
    tx.execute_cached("SELECT pg_notify('signature_done', $1)", &[&id.to_string()])
        .await?;
    if let Some(url) = &row.callback_url {
        let view = view(row)?;
        let payload = SignatureEvent {
            kind: "signature.completed",
            timestamp: Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            data: view,
        };
        let payload = serde_json::to_value(&payload).map_err(|e| Failure::Internal(e.into()))?;
        crate::webhooks::enqueue(tx, row.client_id, url, &payload).await?;
    }
    Ok(())
}
