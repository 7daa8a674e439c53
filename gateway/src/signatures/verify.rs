//! A result from the MSSP, by callback or by poll: the signature checked by us (CMS or
//! PKCS#1 against the carrier's CA, inside the request's window, and the certificate's
//! revocation status) before the request can end `signed`.

use std::time::SystemTime;

use carrier_adapters::mss::dialect::SignatureFormat;
use carrier_adapters::mss::{StatusCode, StatusResp};
use carrier_adapters::signature::{self, VerifyError, Window};
use uuid::Uuid;

use super::error::SignatureError;
use super::lifecycle::{end, end_signed};
use super::messages::ending;
use super::service::SignatureService;
use crate::domain::Msisdn;
use crate::failure::Failure;
use crate::store::tables::signature_requests::{ToVerify, TO_VERIFY};
use crate::store::tables::FromRow;
use crate::store::Cached;

/// A result from the MSSP (callback or poll): verify and record it, or keep waiting.
#[tracing::instrument(name = "signature.result", skip_all, fields(signature = %id, status = %resp.status.code))]
pub async fn apply_status(
    svc: &SignatureService,
    id: Uuid,
    resp: &StatusResp,
) -> Result<(), SignatureError> {
    if let Some(status) = ending(resp.status.code) {
        end(svc, id, status, Some(resp.status.code.to_string())).await?;
        return Ok(());
    }
    if resp.status.code == StatusCode::OutstandingTransaction
        || resp.status.code == StatusCode::RequestOk
    {
        return Ok(());
    }
    let Some(sig) = resp.signature.as_deref() else {
        end(
            svc,
            id,
            "carrier_error",
            Some("the MSSP reported a signature but sent none".into()),
        )
        .await?;
        return Ok(());
    };
    let db = svc.pool.get().await?;
    let row = db
        .query_opt_cached(
            &format!("SELECT {TO_VERIFY} FROM signature_requests WHERE id = $1"),
            &[&id],
        )
        .await?
        .ok_or(SignatureError::NotFound)?;
    drop(db);
    let row = ToVerify::try_from_row(&row)?;
    if row.status != "pending" {
        return Ok(());
    }
    let carrier: carrier_adapters::Carrier = row
        .carrier
        .parse()
        .map_err(|e| Failure::Internal(anyhow::anyhow!("{e}")))?;
    let msisdn =
        Msisdn::parse(&row.msisdn).map_err(|e| Failure::Internal(anyhow::anyhow!("{e}")))?;
    let (data, created) = (row.data_to_sign, row.created_at);
    let Some(mssp) = svc.mssps.get(&carrier).cloned() else {
        end(
            svc,
            id,
            "carrier_error",
            Some("carrier no longer configured".into()),
        )
        .await?;
        return Ok(());
    };
    let trust = match mssp.trust_store().await {
        Ok(t) => t,
        Err(e) => {
            tracing::warn!(signature = %id, error = format!("{e:#}"), "trust material unavailable");
            end(
                svc,
                id,
                "carrier_error",
                Some("the CA's root could not be loaded".into()),
            )
            .await?;
            return Ok(());
        }
    };
    let window = Window {
        started: SystemTime::from(created),
        now: SystemTime::now(),
    };
    let verified = match mssp.dialect.format {
        SignatureFormat::Pkcs7 => signature::verify_cms(sig, &data, &trust, window),
        SignatureFormat::Pkcs1 => match mssp.fetch_certificate(&msisdn).await {
            Ok(cert) => signature::verify_pkcs1(sig, &cert, &data, &trust, window),
            Err(e) => {
                tracing::warn!(signature = %id, error = format!("{e:#}"), "certificate fetch failed");
                end(
                    svc,
                    id,
                    "carrier_error",
                    Some("the SIM certificate could not be fetched".into()),
                )
                .await?;
                return Ok(());
            }
        },
    };
    match verified {
        Ok(v) => {
            use crate::mssp::Revocation;
            match mssp.revocation(&v.certificate_der, &v.issuer_der).await {
                Revocation::Good { via } => {
                    end_signed(svc, id, &v, via).await?;
                }
                Revocation::Revoked { via } => {
                    tracing::warn!(signature = %id, via, "signer's certificate revoked");
                    let detail = format!("the signer's certificate is revoked ({via})");
                    end(svc, id, "revoked", Some(detail)).await?;
                }
                Revocation::Unknown { detail } => {
                    tracing::warn!(signature = %id, detail, "signer's certificate unknown to its CA");
                    end(svc, id, "carrier_error", Some(detail)).await?;
                }
                Revocation::NoStatus { detail } if mssp.route.require_revocation_status => {
                    tracing::warn!(signature = %id, detail, "no revocation status; refused");
                    let detail = format!("no revocation status could be had: {detail}");
                    end(svc, id, "carrier_error", Some(detail)).await?;
                }
                Revocation::NoStatus { detail } => {
                    tracing::warn!(signature = %id, detail, "no revocation status; accepted as configured");
                    end_signed(svc, id, &v, "not_checked").await?;
                }
            }
        }
        Err(e) => {
            let status = match e {
                VerifyError::Revoked => "revoked",
                VerifyError::RevocationUnknown(_) => "carrier_error",
                _ => "invalid_signature",
            };
            tracing::warn!(signature = %id, error = %e, "signature refused");
            end(svc, id, status, Some(e.to_string())).await?;
        }
    }
    Ok(())
}
