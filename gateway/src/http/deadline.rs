//! What a slow or greedy client may hold: a request body must arrive within
//! `server.body_timeout` of its head (else 408 `/problems/request-timeout`, or a SOAP
//! fault on the carriers' callback), and a request on a connection beyond
//! `server.max_connections_per_ip` of its peer address is answered 429
//! `/problems/rate-limited`; either way the connection is closed. The head's own limit is
//! actix's `client_request_timeout` (`server.header_timeout`, a plain 408), which also
//! closes a connection that sends nothing, so one beyond the bound lives at most that
//! long. The body deadline bounds bodies that a handler reads; actix drains the unread
//! body of a request answered without reading it.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{Extensions, Payload, ServiceRequest, ServiceResponse};
use actix_web::error::PayloadError;
use actix_web::middleware::Next;
use actix_web::{HttpMessage, ResponseError};
use futures::StreamExt;

use super::error::ApiError;

/// The message of the error a body stream yields when its time is up.
const BODY_TIMEOUT: &str = "request body timeout";

/// Whether a payload error is the body deadline's.
pub fn is_body_timeout(e: &PayloadError) -> bool {
    matches!(e, PayloadError::Io(io) if io.kind() == std::io::ErrorKind::TimedOut && io.to_string() == BODY_TIMEOUT)
}

/// Open connections per peer address, shared by the server's workers.
#[derive(Debug, Default, Clone)]
pub struct ConnectionCounts {
    open: Arc<Mutex<HashMap<IpAddr, usize>>>,
}

/// Held in a connection's extensions for its lifetime; counts it while it lives.
#[derive(Debug)]
pub struct ConnectionSlot {
    counts: ConnectionCounts,
    ip: IpAddr,
    /// This connection was one too many for its address.
    pub over_limit: bool,
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        let mut open = self.counts.open.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = open.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                open.remove(&self.ip);
            }
        }
    }
}

impl ConnectionCounts {
    /// For `HttpServer::on_connect`: counts the new connection of its peer address.
    pub fn on_connect(&self, limit: usize, connection: &dyn std::any::Any, ext: &mut Extensions) {
        let Some(peer) = connection
            .downcast_ref::<actix_web::rt::net::TcpStream>()
            .and_then(|s| s.peer_addr().ok())
        else {
            return;
        };
        // An IPv4 peer on a dual-stack socket is one address, however it is written.
        let ip = peer.ip().to_canonical();
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        let n = open.entry(ip).or_insert(0);
        *n += 1;
        let over_limit = *n > limit;
        drop(open);
        ext.insert(ConnectionSlot {
            counts: self.clone(),
            ip,
            over_limit,
        });
    }

    /// Connections open now from `ip`.
    pub fn open_from(&self, ip: IpAddr) -> usize {
        self.open
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&ip)
            .copied()
            .unwrap_or(0)
    }
}

/// The body deadline and the per-address connection bound, for every request.
pub async fn middleware(
    mut req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, actix_web::Error> {
    if req
        .conn_data::<ConnectionSlot>()
        .is_some_and(|slot| slot.over_limit)
    {
        let limit = req
            .app_data::<actix_web::web::Data<crate::http::state::AppState>>()
            .map(|s| s.settings.server.max_connections_per_ip)
            .unwrap_or_default();
        let mut resp = ApiError::RateLimited {
            retry_after: 1,
            detail: format!("more than {limit} connections open from this address"),
        }
        .error_response();
        resp.head_mut()
            .set_connection_type(actix_web::http::ConnectionType::Close);
        return Ok(req.into_response(resp).map_into_right_body());
    }
    let timeout = req
        .app_data::<actix_web::web::Data<crate::http::state::AppState>>()
        .map(|s| s.settings.server.body_timeout);
    if let Some(timeout) = timeout {
        let payload = req.take_payload();
        req.set_payload(with_deadline(payload, timeout));
    }
    let resp = next.call(req).await?;
    Ok(resp.map_into_left_body())
}

/// `payload`, ending with a timeout error if it has not ended within `timeout`.
fn with_deadline(payload: Payload, timeout: Duration) -> Payload {
    let deadline = tokio::time::Instant::now() + timeout;
    let stream = futures::stream::unfold(Some(payload), move |payload| async move {
        let mut payload = payload?;
        match tokio::time::timeout_at(deadline, payload.next()).await {
            Ok(Some(item)) => Some((item, Some(payload))),
            Ok(None) => None,
            Err(_) => Some((
                Err(PayloadError::Io(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    BODY_TIMEOUT,
                ))),
                None,
            )),
        }
    });
    Payload::Stream {
        payload: Box::pin(stream),
    }
}
