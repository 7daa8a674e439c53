//! The carriers' callbacks (`MSS_Notification`): a signature's result pushed by the
//! carrier's MSSP. Authenticated by the carrier's HMAC over the body and checked for
//! age, matched to our request by AP_TransID (and MSSP_TransID), applied once (a replay
//! is acknowledged without effect), and valid on any instance: everything it needs is
//! in Postgres. The HTTP layer reads the body and writes the SOAP answer.

use carrier_adapters::mss::dialect;
use carrier_adapters::mss::{
    self, MssMessage, MsspInfo, ReceiptReq, SoapContent, SoapVersion, Status, StatusCode,
};
use carrier_adapters::Carrier;
use secrecy::ExposeSecret;

use super::service::SignatureService;
use crate::mssp::MsspClient;
use crate::store::Cached;

/// Why a callback was not taken, as the SOAP fault says it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refused {
    /// The carrier's fault (`env:Sender`): bad or stale signature (HTTP 401).
    Unauthorized,
    /// The carrier's fault (`env:Sender`), with the ETSI status (HTTP 400).
    BadRequest { status: StatusCode, reason: String },
    /// Ours (`env:Receiver`, HTTP 503): the carrier should try again later.
    Retry { reason: String },
}

/// The headers and body of a callback.
pub struct Callback<'a> {
    pub timestamp: &'a str,
    pub signature: &'a str,
    pub body: &'a [u8],
}

/// Takes a callback from `carrier`'s MSSP. Returns the SOAP version to answer in (the
/// envelope's once read, else `version`) and the `MSS_ReceiptReq` to answer with.
pub async fn receive(
    svc: &SignatureService,
    carrier: Carrier,
    mssp: &MsspClient,
    mut version: SoapVersion,
    callback: Callback<'_>,
) -> (SoapVersion, Result<MssMessage, Refused>) {
    let authentic = dialect::verify_callback(
        mssp.route.callback_secret.expose_secret().as_bytes(),
        callback.timestamp,
        callback.signature,
        callback.body,
        chrono::Utc::now().timestamp(),
    );
    if !authentic {
        tracing::warn!(%carrier, "callback with a bad or stale signature refused");
        return (version, Err(Refused::Unauthorized));
    }
    let parsed = mss::parse_envelope(callback.body, mss::DEFAULT_MAX_BYTES);
    if let Ok((v, _)) = &parsed {
        version = *v;
    }
    let bad = |status, reason: &str| {
        Err(Refused::BadRequest {
            status,
            reason: reason.to_owned(),
        })
    };
    let resp = match parsed {
        Ok((
            _,
            SoapContent::Message {
                message: MssMessage::StatusResp(resp),
                ..
            },
        )) => resp,
        Ok(_) => {
            return (
                version,
                bad(StatusCode::WrongParam, "expected MSS_StatusResp"),
            )
        }
        Err(e) => return (version, bad(e.status(), &e.to_string())),
    };
    let retry = |reason: &str| {
        Err(Refused::Retry {
            reason: reason.to_owned(),
        })
    };
    let found = match super::view::find_by_ap_trans_id(svc, carrier, &resp.ap.ap_trans_id).await {
        Ok(f) => f,
        Err(e) => {
            tracing::error!(error = %e, "callback lookup failed");
            return (version, retry("INTERNAL_ERROR"));
        }
    };
    let Some((id, mssp_trans_id)) = found else {
        return (version, bad(StatusCode::WrongParam, "unknown AP_TransID"));
    };
    // The carrier's acceptance of the push is not recorded yet (the answer to our
    // MSS_Signature is still on its way): nothing is applied to a request the portal may
    // never hear of; the carrier tries again.
    if mssp_trans_id.is_none() {
        tracing::info!(signature = %id, "callback before the push's acceptance was recorded; asking for a retry");
        return (
            version,
            retry("the transaction is not yet known here; try again"),
        );
    }
    if let (Some(ours), Some(theirs)) = (&mssp_trans_id, &resp.mssp_trans_id) {
        if ours != theirs {
            return (
                version,
                bad(StatusCode::WrongParam, "MSSP_TransID does not match"),
            );
        }
    }
    // Applied once: a replay of the same callback is acknowledged without effect.
    let digest = ring::digest::digest(&ring::digest::SHA256, callback.body);
    let first = match svc.pool.get().await {
        Ok(db) => db
            .execute_cached(
                "INSERT INTO mss_callbacks (digest, carrier) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                &[&digest.as_ref(), &carrier.as_str()],
            )
            .await
            .map(|n| n == 1),
        Err(e) => {
            tracing::error!(error = %e, "callback store unavailable");
            return (version, retry("INTERNAL_ERROR"));
        }
    };
    match first {
        Ok(true) => {
            if let Err(e) = super::verify::apply_status(svc, id, &resp).await {
                tracing::error!(signature = %id, error = %e, "callback not applied");
                // Let the carrier retry: forget that we saw it.
                if let Ok(db) = svc.pool.get().await {
                    let _ = db
                        .execute_cached(
                            "DELETE FROM mss_callbacks WHERE digest = $1",
                            &[&digest.as_ref()],
                        )
                        .await;
                }
                return (version, retry("INTERNAL_ERROR"));
            }
        }
        Ok(false) => tracing::info!(signature = %id, "replayed callback acknowledged, not applied"),
        Err(e) => {
            tracing::error!(error = %e, "callback store failed");
            return (version, retry("INTERNAL_ERROR"));
        }
    }
    // The WSDL's MSS_Notification answers with an MSS_ReceiptReq.
    let receipt = MssMessage::ReceiptReq(ReceiptReq {
        ap: resp.ap.clone(),
        mssp: MsspInfo {
            mssp_id: resp.mssp.mssp_id.clone(),
            instant: None,
        },
        mssp_trans_id: resp
            .mssp_trans_id
            .clone()
            .or(mssp_trans_id)
            .unwrap_or_else(|| "unknown".into()),
        msisdn: resp.msisdn.clone(),
        status: Some(Status::new(StatusCode::RequestOk)),
        message: None,
    });
    (version, Ok(receipt))
}
