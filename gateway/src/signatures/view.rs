//! Reading requests: the portal's view of one, waiting for its end, and finding the one
//! a carrier's message is about.

use std::time::Duration;

use base64::Engine;
use uuid::Uuid;

use super::error::SignatureError;
use super::model::{SignatureView, SignedView, Signer};
use super::service::SignatureService;
use crate::domain::Msisdn;
use crate::failure::Failure;
use crate::store::tables::signature_requests::{ByApTransId, Request, BY_AP_TRANS_ID, REQUEST};
use crate::store::tables::FromRow;
use crate::store::Cached;

pub(super) fn view(row: &Request) -> Result<SignatureView, SignatureError> {
    let msisdn = Msisdn::parse(&row.msisdn)
        .map_err(|e| Failure::Internal(anyhow::anyhow!("stored msisdn unreadable: {e}")))?;
    let signed = match &row.signature_cms {
        Some(cms) => {
            let cert = row.certificate_der.as_deref().unwrap_or_default();
            let signer: Signer = serde_json::from_value(row.signer.clone().unwrap_or_default())
                .map_err(|e| Failure::Internal(anyhow::anyhow!("stored signer unreadable: {e}")))?;
            SignedView {
                signature_cms: Some(base64::engine::general_purpose::STANDARD.encode(cms)),
                certificate_pem: Some(crate::mssp::pem_encode("CERTIFICATE", cert)),
                signed_at: row.signed_at,
                subject: Some(signer.subject),
                issuer: Some(signer.issuer),
                not_before: Some(signer.not_before),
                not_after: Some(signer.not_after),
                serial: Some(signer.serial),
                revocation: signer.revocation,
            }
        }
        None => SignedView::default(),
    };
    Ok(SignatureView {
        id: row.id,
        status: row.status.clone(),
        status_detail: row.status_detail.clone(),
        carrier: row.carrier.clone(),
        msisdn_masked: msisdn.masked(),
        purpose: row.purpose.clone(),
        data_to_sign: base64::engine::general_purpose::STANDARD.encode(&row.data_to_sign),
        created_at: row.created_at,
        expires_at: row.expires_at,
        ended_at: row.ended_at,
        signed,
    })
}

pub async fn get(
    svc: &SignatureService,
    client: Uuid,
    id: Uuid,
) -> Result<SignatureView, SignatureError> {
    let db = svc.pool.get().await?;
    let row = db
        .query_opt_cached(
            &format!("SELECT {REQUEST} FROM signature_requests WHERE id = $1 AND client_id = $2"),
            &[&id, &client],
        )
        .await?
        .ok_or(SignatureError::NotFound)?;
    view(&Request::try_from_row(&row)?)
}

/// `GET ?wait=N`: answers at once unless pending, else when the request ends on any
/// instance or after `wait`.
pub async fn wait(
    svc: &SignatureService,
    client: Uuid,
    id: Uuid,
    wait: Duration,
) -> Result<SignatureView, SignatureError> {
    let mut events = svc.signature_events.subscribe();
    let current = get(svc, client, id).await?;
    if current.status != "pending" || wait.is_zero() {
        return Ok(current);
    }
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        tokio::select! {
            _ = tokio::time::sleep_until(deadline) => break,
            e = events.recv() => match e {
                Ok(done) if done == id => break,
                Ok(_) => {}
                // Missed events: look again.
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                    let now = get(svc, client, id).await?;
                    if now.status != "pending" {
                        return Ok(now);
                    }
                }
                Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
            }
        }
    }
    get(svc, client, id).await
}

/// Finds the request a carrier's message is about.
pub async fn find_by_ap_trans_id(
    svc: &SignatureService,
    carrier: carrier_adapters::Carrier,
    ap_trans_id: &str,
) -> Result<Option<(Uuid, Option<String>)>, SignatureError> {
    let db = svc.pool.get().await?;
    let row = db
        .query_opt_cached(
            &format!("SELECT {BY_AP_TRANS_ID} FROM signature_requests WHERE ap_trans_id = $1 AND carrier = $2"),
            &[&ap_trans_id, &carrier.as_str()],
        )
        .await?;
    Ok(row
        .map(|r| ByApTransId::try_from_row(&r))
        .transpose()?
        .map(|r| (r.id, r.mssp_trans_id)))
}
