//! `POST /carriers/{carrier}/mss`: results the carriers' MSSPs call back with
//! (`MSS_Notification`). Authenticated by the carrier's HMAC header, checked for age,
//! idempotent (a replayed callback is answered and not applied), and valid on any
//! instance: everything it needs is in Postgres.

use crate::db::Cached;
use actix_web::{web, HttpRequest, HttpResponse};
use carrier_adapters::mss::dialect::{self, CALLBACK_SIGNATURE_HEADER, CALLBACK_TIMESTAMP_HEADER};
use carrier_adapters::mss::{
    self, Fault, MssMessage, MsspInfo, Operation, ReceiptReq, SoapContent, SoapVersion, Status,
    StatusCode,
};
use carrier_adapters::Carrier;
use futures::StreamExt;
use secrecy::ExposeSecret;

use crate::http::state::AppState;
use crate::signatures;

fn soap(version: SoapVersion, status: u16, body: String) -> HttpResponse {
    HttpResponse::build(
        actix_web::http::StatusCode::from_u16(status)
            .unwrap_or(actix_web::http::StatusCode::INTERNAL_SERVER_ERROR),
    )
    .content_type(version.content_type())
    .body(body)
}

/// The carrier's fault (`env:Sender`), with the ETSI status.
fn fault(version: SoapVersion, http: u16, status: StatusCode, reason: &str) -> HttpResponse {
    soap_fault(version, http, true, status, reason)
}

/// Our fault (`env:Receiver`): 503, so that the carrier tries again later.
fn receiver_fault(version: SoapVersion, http: u16, reason: &str) -> HttpResponse {
    soap_fault(version, http, false, StatusCode::InternalError, reason)
}

fn soap_fault(
    version: SoapVersion,
    http: u16,
    sender: bool,
    status: StatusCode,
    reason: &str,
) -> HttpResponse {
    let fault = Fault {
        sender,
        status,
        reason: reason.to_owned(),
    };
    soap(version, http, mss::write_fault(version, &fault))
}

/// A carrier's MSSP reports a signature's end (MSS_Notification) / Nhà mạng báo kết quả ký
///
/// Called by Viettel's, VinaPhone's and MobiFone's MSSPs, not by the portal. The body is a
/// SOAP envelope (1.1 or 1.2 by the carrier's dialect) holding an `MSS_StatusResp`; it is
/// authenticated by the HMAC in the carrier's signature and timestamp headers over the
/// body. Answers an `MSS_ReceiptResp`, or a SOAP fault with the ETSI status code.
#[utoipa::path(
    post, path = "/carriers/{carrier}/mss", tag = "carriers", operation_id = "mssNotification",
    params(("carrier" = String, Path, description = "A carrier that calls back: `viettel`, `vinaphone` or `mobifone` (by configuration)")),
    request_body(content = String, content_type = "application/soap+xml",
        description = "SOAP envelope with MSS_StatusResp (text/xml for SOAP 1.1 dialects)"),
    responses(
        (status = 200, description = "MSS_ReceiptResp", content(
            (String = "application/soap+xml"), (String = "text/xml"))),
        (status = 400, description = "SOAP fault: not a notification, or an unknown transaction", content(
            (String = "application/soap+xml"), (String = "text/xml"))),
        (status = 401, description = "SOAP fault: bad or stale signature", content(
            (String = "application/soap+xml"), (String = "text/xml"))),
        (status = 404, description = "Not a carrier that calls back here"),
        (status = 413, description = "SOAP fault: message too large", content(
            (String = "application/soap+xml"), (String = "text/xml"))),
        (status = 503, description = "SOAP fault: the gateway could not store it; the carrier retries", content(
            (String = "application/soap+xml"), (String = "text/xml"))),
    ),
)]
pub async fn notification(
    req: HttpRequest,
    path: web::Path<String>,
    mut payload: web::Payload,
    state: web::Data<AppState>,
) -> HttpResponse {
    let Ok(carrier) = path.parse::<Carrier>() else {
        return HttpResponse::NotFound().finish();
    };
    let Some(mssp) = state
        .signatures
        .mssps
        .get(&carrier)
        .cloned()
        .filter(|m| m.dialect.calls_back())
    else {
        return HttpResponse::NotFound().finish();
    };
    // Answered in the SOAP version the carrier speaks: its envelope's once read, until
    // then its Content-Type's, else the dialect's.
    let mut version = req
        .headers()
        .get("Content-Type")
        .and_then(|v| v.to_str().ok())
        .and_then(SoapVersion::of_content_type)
        .unwrap_or(mssp.dialect.soap);
    let mut body = Vec::new();
    while let Some(chunk) = payload.next().await {
        let chunk = match chunk {
            Ok(chunk) => chunk,
            Err(e) if super::deadline::is_body_timeout(&e) => {
                let mut resp = fault(version, 408, StatusCode::WrongParam, "body too slow");
                resp.head_mut()
                    .set_connection_type(actix_web::http::ConnectionType::Close);
                return resp;
            }
            Err(_) => return fault(version, 400, StatusCode::WrongParam, "unreadable body"),
        };
        if body.len() + chunk.len() > mss::DEFAULT_MAX_BYTES {
            return fault(
                version,
                413,
                StatusCode::WrongDataLength,
                "message too large",
            );
        }
        body.extend_from_slice(&chunk);
    }
    let header = |name: &str| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    let authentic = dialect::verify_callback(
        mssp.route.callback_secret.expose_secret().as_bytes(),
        &header(CALLBACK_TIMESTAMP_HEADER),
        &header(CALLBACK_SIGNATURE_HEADER),
        &body,
        chrono::Utc::now().timestamp(),
    );
    if !authentic {
        tracing::warn!(%carrier, "callback with a bad or stale signature refused");
        return fault(
            version,
            401,
            StatusCode::UnauthorizedAccess,
            "UNAUTHORIZED_ACCESS",
        );
    }
    let parsed = mss::parse_envelope(&body, mss::DEFAULT_MAX_BYTES);
    if let Ok((v, _)) = &parsed {
        version = *v;
    }
    let resp = match parsed {
        Ok((
            _,
            SoapContent::Message {
                message: MssMessage::StatusResp(resp),
                ..
            },
        )) => resp,
        Ok(_) => {
            return fault(
                version,
                400,
                StatusCode::WrongParam,
                "expected MSS_StatusResp",
            )
        }
        Err(e) => return fault(version, 400, e.status(), &e.to_string()),
    };
    let found =
        match signatures::find_by_ap_trans_id(&state.signatures, carrier, &resp.ap.ap_trans_id)
            .await
        {
            Ok(f) => f,
            Err(e) => {
                tracing::error!(error = %e, "callback lookup failed");
                return receiver_fault(version, 503, "INTERNAL_ERROR");
            }
        };
    let Some((id, mssp_trans_id)) = found else {
        return fault(version, 400, StatusCode::WrongParam, "unknown AP_TransID");
    };
    // The carrier's acceptance of the push is not recorded yet (the answer to our
    // MSS_Signature is still on its way): nothing is applied to a request the portal may
    // never hear of; the carrier tries again.
    if mssp_trans_id.is_none() {
        tracing::info!(signature = %id, "callback before the push's acceptance was recorded; asking for a retry");
        return receiver_fault(
            version,
            503,
            "the transaction is not yet known here; try again",
        );
    }
    if let (Some(ours), Some(theirs)) = (&mssp_trans_id, &resp.mssp_trans_id) {
        if ours != theirs {
            return fault(
                version,
                400,
                StatusCode::WrongParam,
                "MSSP_TransID does not match",
            );
        }
    }
    // Applied once: a replay of the same callback is acknowledged without effect.
    let digest = ring::digest::digest(&ring::digest::SHA256, &body);
    let first = match state.pool.get().await {
        Ok(db) => db
            .execute_cached(
                "INSERT INTO mss_callbacks (digest, carrier) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                &[&digest.as_ref(), &carrier.as_str()],
            )
            .await
            .map(|n| n == 1),
        Err(e) => {
            tracing::error!(error = %e, "callback store unavailable");
            return receiver_fault(version, 503, "INTERNAL_ERROR");
        }
    };
    match first {
        Ok(true) => {
            if let Err(e) = signatures::apply_status(&state.signatures, id, &resp).await {
                tracing::error!(signature = %id, error = %e, "callback not applied");
                // Let the carrier retry: forget that we saw it.
                if let Ok(db) = state.pool.get().await {
                    let _ = db
                        .execute_cached(
                            "DELETE FROM mss_callbacks WHERE digest = $1",
                            &[&digest.as_ref()],
                        )
                        .await;
                }
                return receiver_fault(version, 503, "INTERNAL_ERROR");
            }
        }
        Ok(false) => tracing::info!(signature = %id, "replayed callback acknowledged, not applied"),
        Err(e) => {
            tracing::error!(error = %e, "callback store failed");
            return receiver_fault(version, 503, "INTERNAL_ERROR");
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
    soap(
        version,
        200,
        mss::write_envelope(
            version,
            Operation::NotificationResponse,
            &receipt,
            mssp.dialect.part_style,
        ),
    )
}
