//! SIM signatures (SIM ký số): push a signature request to the SIM through the carrier's
//! MSSP, take the result by callback or by polling, verify it ourselves, and record the
//! signer's identity. Every state change is one short transaction; the end of a request
//! is announced with `NOTIFY signature_done` (long-pollers on any instance wake) and a
//! webhook queued in the same transaction.

pub mod callbacks;
mod error;
pub mod owner_check;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::store::tables::signature_requests::{
    ByApTransId, Due, Request, ToVerify, Withdrawal, BY_AP_TRANS_ID, DUE, REQUEST, TO_VERIFY,
    WITHDRAWAL,
};
use crate::store::tables::FromRow;
use base64::Engine;
use carrier_adapters::mss::dialect::SignatureFormat;
use carrier_adapters::mss::{
    self, ApInfo, Data, MssMessage, MsspInfo, Operation, ReceiptReq, SignatureReq, SoapContent,
    StatusCode, StatusReq, StatusResp,
};
use carrier_adapters::signature::{self, VerifyError, Window};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

pub use error::SignatureError;

use crate::config::Settings;
use crate::crypto::ServerKeys;
use crate::domain::Msisdn;
use crate::failure::Failure;
use crate::mssp::MsspClient;
use crate::store::Cached;
use crate::telemetry::funnel::Funnel;

/// The signature service and what it depends on, given explicitly.
pub struct SignatureService {
    pub pool: deadpool_postgres::Pool,
    pub keys: Arc<ServerKeys>,
    pub settings: Arc<Settings>,
    /// The carriers' MSSPs.
    pub mssps: Arc<BTreeMap<carrier_adapters::Carrier, Arc<MsspClient>>>,
    /// Ids of signature requests that ended (on any instance).
    pub signature_events: tokio::sync::broadcast::Sender<Uuid>,
    pub funnel: Arc<Funnel>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignaturePurpose {
    Register,
    Login,
    AddMethod,
}

impl SignaturePurpose {
    pub fn parse(s: &str) -> Option<SignaturePurpose> {
        match s {
            "register" => Some(SignaturePurpose::Register),
            "login" => Some(SignaturePurpose::Login),
            "add_method" => Some(SignaturePurpose::AddMethod),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            SignaturePurpose::Register => "register",
            SignaturePurpose::Login => "login",
            SignaturePurpose::AddMethod => "add_method",
        }
    }

    /// What the phone shows when the portal gives no text.
    pub fn default_display_text(self) -> &'static str {
        match self {
            SignaturePurpose::Register => "Xác nhận đăng ký tài khoản Cổng Dịch vụ công",
            SignaturePurpose::Login => "Xác nhận đăng nhập Cổng Dịch vụ công",
            SignaturePurpose::AddMethod => "Xác nhận thêm phương thức xác thực Cổng Dịch vụ công",
        }
    }
}

#[derive(Debug, Clone)]
pub struct NewSignature {
    pub msisdn: Msisdn,
    pub purpose: SignaturePurpose,
    pub display_text: String,
    pub data_to_sign: Vec<u8>,
    pub timeout_seconds: u32,
    pub callback_url: Option<String>,
}

/// A SIM ký số signature request. / Yêu cầu ký số trên SIM.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SignatureView {
    pub id: Uuid,
    /// `pending`, then `signed` (verified), `user_cancel`, `expired`, `pin_blocked`,
    /// `card_blocked`, `no_key`, `no_cert`, `revoked`, `invalid_signature`,
    /// `carrier_error` or `canceled`.
    #[schema(example = "signed")]
    pub status: String,
    /// More about an unsuccessful end (the carrier's status code and text).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status_detail: Option<String>,
    #[schema(example = "vinaphone")]
    pub carrier: String,
    #[schema(example = "082****088")]
    pub msisdn_masked: String,
    #[schema(example = "login")]
    pub purpose: String,
    /// Exactly what the SIM is asked to sign (base64).
    pub data_to_sign: String,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ended_at: Option<DateTime<Utc>>,
    /// When signed: the verified signature and who made it.
    #[serde(flatten)]
    pub signed: SignedView,
}

/// A verified signature and its signer, as read from the certificate: every field is
/// present once the request is `signed`, and none before.
/// / Chữ ký đã kiểm tra và thông tin người ký lấy từ chứng thư số.
#[derive(Debug, Default, Serialize, utoipa::ToSchema)]
pub struct SignedView {
    /// The CMS SignedData (base64 DER) over `data_to_sign`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signature_cms: Option<String>,
    /// The signer's certificate.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub certificate_pem: Option<String>,
    /// The signing time the signature states.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signed_at: Option<DateTime<Utc>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subject: Option<SignerSubject>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub issuer: Option<SignerIssuer>,
    /// The certificate's validity (RFC 3339).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub not_before: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub not_after: Option<String>,
    /// The certificate's serial number (hex).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub serial: Option<String>,
    /// How the certificate was found not revoked when the signature was verified:
    /// `ocsp` (the CA's responder, answer checked), `crl` (its CRL, when OCSP gave no
    /// answer) or `not_checked` (no status could be had and the carrier is configured
    /// to accept that).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(example = "ocsp")]
    pub revocation: Option<String>,
}

/// The webhook sent to a signature request's `callback_url` when it ends.
/// / Sự kiện gửi tới `callback_url` khi yêu cầu ký kết thúc.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SignatureEvent {
    /// Always `signature.completed` (whatever the outcome: see `data.status`).
    #[serde(rename = "type")]
    #[schema(example = "signature.completed")]
    pub kind: &'static str,
    /// When the event was made (RFC 3339).
    pub timestamp: String,
    /// The request as `GET /v1/signatures/{id}` shows it.
    pub data: SignatureView,
}

/// Who signed, from the verified certificate: stored as `signer` (jsonb).
#[derive(Debug, Serialize, Deserialize)]
pub struct Signer {
    pub subject: SignerSubject,
    pub issuer: SignerIssuer,
    /// The certificate's validity (RFC 3339).
    pub not_before: String,
    pub not_after: String,
    /// The certificate's serial number (hex).
    pub serial: String,
    /// How its revocation status was had: `ocsp`, `crl` or `not_checked`.
    #[serde(default)]
    pub revocation: Option<String>,
}

#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SignerSubject {
    /// The holder's name (Họ và tên).
    #[schema(example = "NGUYỄN VĂN AN")]
    pub common_name: Option<String>,
    /// Identity numbers in the certificate: `CCCD`, `CMND`, `MST`, `HC` (passport).
    pub identifiers: Vec<SignerIdentifier>,
    pub organization: Option<String>,
}

#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SignerIdentifier {
    #[serde(rename = "type")]
    #[schema(example = "CCCD")]
    pub kind: String,
    #[schema(example = "001099012345")]
    pub value: String,
}

#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SignerIssuer {
    /// The CA (tổ chức cung cấp dịch vụ chứng thực).
    #[schema(example = "VNPT-CA SIM")]
    pub common_name: Option<String>,
}

fn view(row: &Request) -> Result<SignatureView, SignatureError> {
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

fn rfc3339(t: SystemTime) -> String {
    DateTime::<Utc>::from(t).to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

fn ap_info(mssp: &MsspClient, svc: &SignatureService, ap_trans_id: &str) -> ApInfo {
    use secrecy::ExposeSecret;
    ApInfo {
        ap_id: mssp.route.ap_id.clone(),
        ap_trans_id: ap_trans_id.to_owned(),
        ap_pwd: mssp.route.ap_pwd.expose_secret().to_owned(),
        instant: rfc3339(SystemTime::now()),
        ap_url: mssp.dialect.calls_back().then(|| {
            format!(
                "{}/carriers/{}/mss",
                svc.settings
                    .signatures
                    .public_base_url
                    .trim_end_matches('/'),
                mssp.carrier
            )
        }),
    }
}

fn mssp_info(mssp: &MsspClient) -> MsspInfo {
    MsspInfo {
        mssp_id: mssp.route.mssp_id.clone(),
        instant: None,
    }
}

/// The gateway status an ETSI status ends a request with (`None`: not an end).
fn ending(code: StatusCode) -> Option<&'static str> {
    Some(match code {
        StatusCode::RequestOk
        | StatusCode::Signature
        | StatusCode::ValidSignature
        | StatusCode::OutstandingTransaction => return None,
        StatusCode::ExpiredTransaction => "expired",
        StatusCode::UserCancel => "user_cancel",
        StatusCode::PinNrBlocked => "pin_blocked",
        StatusCode::CardBlocked => "card_blocked",
        StatusCode::NoKeyFound => "no_key",
        StatusCode::NoCertFound => "no_cert",
        StatusCode::RevokedCertificate => "revoked",
        StatusCode::InvalidSignature => "invalid_signature",
        _ => "carrier_error",
    })
}

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
async fn end_signed(
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
