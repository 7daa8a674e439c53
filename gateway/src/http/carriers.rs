//! `POST /carriers/{carrier}/mss`: results the carriers' MSSPs call back with
//! (`MSS_Notification`). This reads the body (bounded, with the body deadline) and
//! answers in SOAP; what a callback does is `signatures::callbacks`.

use actix_web::{web, HttpRequest, HttpResponse};
use carrier_adapters::mss::dialect::{CALLBACK_SIGNATURE_HEADER, CALLBACK_TIMESTAMP_HEADER};
use carrier_adapters::mss::{self, Fault, Operation, SoapVersion, StatusCode};
use carrier_adapters::Carrier;
use futures::StreamExt;

use crate::http::state::AppState;
use crate::signatures::callbacks::{self, Refused};

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
    let version = req
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
    let (timestamp, signature) = (
        header(CALLBACK_TIMESTAMP_HEADER),
        header(CALLBACK_SIGNATURE_HEADER),
    );
    let (version, answer) = callbacks::receive(
        &state.signatures,
        carrier,
        &mssp,
        version,
        callbacks::Callback {
            timestamp: &timestamp,
            signature: &signature,
            body: &body,
        },
    )
    .await;
    match answer {
        Ok(receipt) => soap(
            version,
            200,
            mss::write_envelope(
                version,
                Operation::NotificationResponse,
                &receipt,
                mssp.dialect.part_style,
            ),
        ),
        Err(Refused::Unauthorized) => fault(
            version,
            401,
            StatusCode::UnauthorizedAccess,
            "UNAUTHORIZED_ACCESS",
        ),
        Err(Refused::BadRequest { status, reason }) => fault(version, 400, status, &reason),
        Err(Refused::Retry { reason }) => receiver_fault(version, 503, &reason),
    }
}

/// A Zalo OA event as Zalo posts it (`user_received_message` for ZNS deliveries).
#[derive(serde::Deserialize, utoipa::ToSchema)]
#[allow(dead_code)] // documentation: the handler reads the raw body, whose bytes are signed
pub(crate) struct ZaloEvent {
    #[schema(example = "1234567890123456789")]
    app_id: String,
    #[schema(example = "user_received_message")]
    event_name: String,
    /// Milliseconds since the epoch, as Zalo writes it; signed with the body.
    #[schema(example = "1733616000000")]
    timestamp: String,
    oa_id: Option<String>,
    message: Option<ZaloEventMessage>,
}

#[derive(serde::Deserialize, utoipa::ToSchema)]
#[allow(dead_code)]
pub(crate) struct ZaloEventMessage {
    msg_id: String,
    tracking_id: Option<String>,
    delivery_time: Option<String>,
}

/// Zalo reports a ZNS message received (`user_received_message`) / Zalo báo tin ZNS đã đến
///
/// Called by Zalo (the OA app's webhook URL, set in Zalo's developer console), not by the
/// portal. The body is Zalo's JSON event, authenticated by `X-ZEvent-Signature`
/// (`mac=` + SHA-256 of app id, body, timestamp and the app's secret key). Other event
/// names are acknowledged and ignored.
#[utoipa::path(
    post, path = "/carriers/zalo/events", tag = "carriers", operation_id = "zaloEvent",
    params(("X-ZEvent-Signature" = String, Header, description = "`mac=<hex SHA-256>`")),
    request_body(content = ZaloEvent, content_type = "application/json",
        description = "A Zalo OA event, e.g. `user_received_message`"),
    responses(
        (status = 200, description = "Taken"),
        (status = 400, response = super::schemas::Problem400),
        (status = 401, response = super::schemas::Problem401),
        (status = 404, response = super::schemas::Problem404),
        (status = 503, response = super::schemas::Problem503),
    ),
)]
pub async fn zalo_event(
    req: HttpRequest,
    body: web::Bytes,
    state: web::Data<AppState>,
) -> Result<HttpResponse, crate::http::error::ApiError> {
    use crate::http::error::ApiError;
    use carrier_adapters::zns::{parse_event, EventError};
    use secrecy::ExposeSecret;
    let Some(zalo) = &state.settings.zalo else {
        return Err(ApiError::NotFound);
    };
    let signature = req
        .headers()
        .get("X-ZEvent-Signature")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let text = std::str::from_utf8(&body)
        .map_err(|_| ApiError::MalformedJson("the event is not UTF-8".into()))?;
    match parse_event(
        text,
        signature,
        &zalo.app_id,
        zalo.secret_key.expose_secret(),
    ) {
        Ok(event) => {
            let marked = crate::outbox::zns::received(
                &state.pool,
                &event.msg_id,
                event.delivery_time.as_deref(),
            )
            .await
            .map_err(|e| {
                if crate::store::chain_unavailable(&e) {
                    ApiError::Unavailable(e)
                } else {
                    ApiError::Internal(e)
                }
            })?;
            tracing::info!(msg_id = %event.msg_id, marked, "ZNS delivery event");
            Ok(HttpResponse::Ok().json(serde_json::json!({ "received": true })))
        }
        Err(EventError::NotDelivery(name)) => {
            tracing::debug!(event = %name, "Zalo event not ours to act on");
            Ok(HttpResponse::Ok().json(serde_json::json!({ "received": true })))
        }
        Err(e @ (EventError::BadSignature | EventError::OtherApp)) => {
            tracing::warn!(error = %e, "Zalo event refused");
            Err(ApiError::Unauthorized)
        }
        Err(EventError::Unreadable(e)) => Err(ApiError::MalformedJson(e)),
    }
}
