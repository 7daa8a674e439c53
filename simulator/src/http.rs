//! The simulator's HTTP API: virtual handsets and health.

use std::sync::Arc;

use actix_web::dev::Server;
use actix_web::http::StatusCode;
use actix_web::{web, App, HttpResponse, HttpServer};
use carrier_adapters::Msisdn;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::handset::Handsets;
use crate::mssp::Mssp;
use crate::registry::{owner_match, OwnerMatch, Registry, SubscriberRecord};
use crate::smsc::Smsc;

#[derive(Clone)]
pub struct State {
    pub handsets: Arc<Handsets>,
    pub smscs: Vec<Arc<Smsc>>,
    pub registry: Arc<Registry>,
    pub mssps: Vec<Arc<Mssp>>,
    pub zns: Arc<crate::zns::Zns>,
}

impl State {
    fn mssp(&self, carrier: &str) -> Option<&Arc<Mssp>> {
        self.mssps
            .iter()
            .find(|m| m.config.carrier.as_str() == carrier)
    }
}

fn unknown_carrier(carrier: &str) -> HttpResponse {
    problem(
        StatusCode::NOT_FOUND,
        "unknown-carrier",
        "Unknown carrier",
        format!("no simulated MSSP for {carrier:?} (viettel, vinaphone, mobifone)"),
    )
}

async fn mssp_soap(
    req: actix_web::HttpRequest,
    state: web::Data<State>,
    path: web::Path<String>,
    body: web::Bytes,
) -> HttpResponse {
    let Some(mssp) = state.mssp(&path) else {
        return unknown_carrier(&path);
    };
    let reply = mssp.handle_soap(&body, content_type(&req)).await;
    HttpResponse::build(StatusCode::from_u16(reply.http_status).unwrap_or(StatusCode::OK))
        .content_type(reply.content_type)
        .body(reply.body)
}

fn content_type(req: &actix_web::HttpRequest) -> &str {
    req.headers()
        .get("Content-Type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

fn basic_auth_ok(req: &actix_web::HttpRequest, user: &str, password: &str) -> bool {
    use base64::Engine;
    req.headers()
        .get("Authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
        .and_then(|b| {
            base64::engine::general_purpose::STANDARD
                .decode(b.trim())
                .ok()
        })
        .and_then(|raw| String::from_utf8(raw).ok())
        .is_some_and(|pair| pair == format!("{user}:{password}"))
}

fn bearer_ok(req: &actix_web::HttpRequest, key: &str) -> bool {
    req.headers()
        .get("Authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .is_some_and(|k| k.trim() == key)
}

fn unauthorized() -> HttpResponse {
    problem(
        StatusCode::UNAUTHORIZED,
        "unauthorized",
        "Unauthorized",
        "missing or wrong credentials".into(),
    )
}

/// The SIM certificate of a number (the PKCS#1 dialect's separate certificate fetch).
async fn mssp_certificate(
    req: actix_web::HttpRequest,
    state: web::Data<State>,
    path: web::Path<(String, String)>,
) -> HttpResponse {
    let (carrier, raw) = path.into_inner();
    let Some(mssp) = state.mssp(&carrier) else {
        return unknown_carrier(&carrier);
    };
    if !basic_auth_ok(&req, &mssp.config.ap_id, &mssp.config.ap_pwd) {
        return unauthorized();
    }
    let msisdn = match parse_msisdn(&raw) {
        Ok(m) => m,
        Err(resp) => return *resp,
    };
    match mssp.credential(&msisdn).await {
        Ok(Some(c)) => HttpResponse::Ok()
            .content_type("application/x-pem-file")
            .body(c.certificate_pem()),
        Ok(None) => problem(
            StatusCode::NOT_FOUND,
            "no-certificate",
            "No certificate",
            "this SIM has no certificate".into(),
        ),
        Err(e) => problem(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "Internal error",
            e.to_string(),
        ),
    }
}

/// `GET /ca/{carrier}.pem` and `GET /ca/{carrier}.crl`.
async fn ca_file(state: web::Data<State>, path: web::Path<String>) -> HttpResponse {
    let file = path.into_inner();
    let (carrier, ext) = file.rsplit_once('.').unwrap_or((&file, ""));
    let Some(mssp) = state.mssp(carrier) else {
        return unknown_carrier(carrier);
    };
    match ext {
        "pem" => HttpResponse::Ok()
            .content_type("application/x-pem-file")
            .body(mssp.ca.certificate_pem()),
        "crl" if !mssp.ca.crl_published() => problem(
            StatusCode::SERVICE_UNAVAILABLE,
            "crl-down",
            "CRL unavailable",
            "the crl fault switch is on".into(),
        ),
        "crl" => match mssp.ca.crl_der() {
            Ok(der) => HttpResponse::Ok()
                .content_type("application/pkix-crl")
                .body(der),
            Err(e) => problem(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "Internal error",
                e.to_string(),
            ),
        },
        _ => problem(
            StatusCode::NOT_FOUND,
            "not-found",
            "Not found",
            "use /ca/{carrier}.pem or /ca/{carrier}.crl".into(),
        ),
    }
}

fn ocsp_reply(ca: &crate::pki::SimCa, request: &[u8]) -> HttpResponse {
    match ca.ocsp_response(request) {
        Some(der) => HttpResponse::Ok()
            .content_type("application/ocsp-response")
            .body(der),
        None => problem(
            StatusCode::SERVICE_UNAVAILABLE,
            "ocsp-down",
            "OCSP responder unavailable",
            "the ocsp fault switch is down".into(),
        ),
    }
}

/// `POST /ca/{carrier}/ocsp` (RFC 6960 Appendix A: the DER request as the body).
async fn ocsp_post(
    req: actix_web::HttpRequest,
    state: web::Data<State>,
    path: web::Path<String>,
    body: web::Bytes,
) -> HttpResponse {
    let Some(mssp) = state.mssp(&path) else {
        return unknown_carrier(&path);
    };
    if !content_type(&req).starts_with("application/ocsp-request") {
        return problem(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported-media-type",
            "Unsupported media type",
            "send the request as application/ocsp-request".into(),
        );
    }
    ocsp_reply(&mssp.ca, &body)
}

/// `GET /ca/{carrier}/ocsp/{base64 of the DER request}` (RFC 6960 Appendix A).
async fn ocsp_get(state: web::Data<State>, path: web::Path<(String, String)>) -> HttpResponse {
    use base64::Engine;
    let (carrier, encoded) = path.into_inner();
    let Some(mssp) = state.mssp(&carrier) else {
        return unknown_carrier(&carrier);
    };
    // The path is URL-decoded by the router; base64 may still carry '+', '/' and '='.
    let Ok(der) = base64::engine::general_purpose::STANDARD.decode(encoded.trim()) else {
        return HttpResponse::Ok()
            .content_type("application/ocsp-response")
            .body(
                der::Encode::to_der(&x509_ocsp::OcspResponse::malformed_request())
                    .unwrap_or_default(),
            );
    };
    ocsp_reply(&mssp.ca, &der)
}

async fn get_ca_faults(state: web::Data<State>, path: web::Path<String>) -> HttpResponse {
    match state.mssp(&path) {
        Some(mssp) => HttpResponse::Ok().json(mssp.ca.faults()),
        None => unknown_carrier(&path),
    }
}

/// `PUT /ca/{carrier}/faults` `{"ocsp": "down", "crl": "normal", "ocsp_next_update": "10s"}`.
async fn put_ca_faults(
    state: web::Data<State>,
    path: web::Path<String>,
    body: web::Bytes,
) -> HttpResponse {
    let Some(mssp) = state.mssp(&path) else {
        return unknown_carrier(&path);
    };
    match serde_json::from_slice::<crate::pki::CaFaults>(&body) {
        Ok(faults) => {
            tracing::info!(ca = %mssp.ca.name, ?faults, "CA fault switches set");
            mssp.ca.set_faults(faults);
            HttpResponse::Ok().json(mssp.ca.faults())
        }
        Err(e) => problem(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid-faults",
            "Invalid fault switches",
            e.to_string(),
        ),
    }
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct OwnerCheck {
    msisdn: String,
    /// `cccd`, `cmnd`, `passport` or `mst`; inferred from the number when left out.
    #[serde(default)]
    id_type: Option<carrier_adapters::identity::IdKind>,
    id_number: String,
    full_name: Option<String>,
    date_of_birth: Option<String>,
}

async fn owner_check(
    req: actix_web::HttpRequest,
    state: web::Data<State>,
    path: web::Path<String>,
    body: web::Bytes,
) -> HttpResponse {
    let Some(mssp) = state.mssp(&path) else {
        return unknown_carrier(&path);
    };
    if !bearer_ok(&req, &mssp.config.owner_check_key) {
        return unauthorized();
    }
    let check: OwnerCheck = match serde_json::from_slice(&body) {
        Ok(c) => c,
        Err(e) => {
            return problem(
                StatusCode::BAD_REQUEST,
                "malformed-json",
                "Malformed JSON body",
                e.to_string(),
            )
        }
    };
    let msisdn = match parse_msisdn(&check.msisdn) {
        Ok(m) => m,
        Err(resp) => return *resp,
    };
    let Some(id_type) = check
        .id_type
        .or_else(|| carrier_adapters::identity::IdKind::infer(&check.id_number))
    else {
        return problem(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid-id-number",
            "Invalid identity number",
            "not a CCCD, CMND, passport or MST number".into(),
        );
    };
    let result = match state.registry.get(&msisdn) {
        Some((record, carrier)) if carrier == mssp.config.carrier => owner_match(
            &record,
            id_type,
            &check.id_number,
            check.full_name.as_deref(),
            check.date_of_birth.as_deref(),
        ),
        _ => OwnerMatch::UnknownSubscriber,
    };
    HttpResponse::Ok().json(json!({ "match": result }))
}

async fn get_subscriber(state: web::Data<State>, path: web::Path<String>) -> HttpResponse {
    let msisdn = match parse_msisdn(&path) {
        Ok(m) => m,
        Err(resp) => return *resp,
    };
    match state.registry.get(&msisdn) {
        Some((record, carrier)) => {
            let mut body = serde_json::to_value(record).unwrap_or_default();
            body["msisdn"] = json!(msisdn.e164());
            body["carrier"] = json!(carrier);
            HttpResponse::Ok().json(body)
        }
        None => problem(
            StatusCode::NOT_FOUND,
            "unknown-subscriber",
            "Unknown subscriber",
            "no subscriber with this number".into(),
        ),
    }
}

async fn put_subscriber(
    state: web::Data<State>,
    path: web::Path<String>,
    body: web::Bytes,
) -> HttpResponse {
    let msisdn = match parse_msisdn(&path) {
        Ok(m) => m,
        Err(resp) => return *resp,
    };
    let record: SubscriberRecord = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            return problem(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid-subscriber",
                "Invalid subscriber",
                e.to_string(),
            )
        }
    };
    if record.pin.len() < 4
        || record.pin.len() > 8
        || !record.pin.bytes().all(|b| b.is_ascii_digit())
    {
        return problem(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid-subscriber",
            "Invalid subscriber",
            "pin must be 4 to 8 digits".into(),
        );
    }
    let record = match record.normalised() {
        Ok(r) => r,
        Err(e) => {
            return problem(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid-subscriber",
                "Invalid subscriber",
                e.to_string(),
            )
        }
    };
    // A new identity gets a new certificate; the CA revokes the one naming the old.
    if let Some(superseded) = state.registry.put(msisdn.clone(), record) {
        for mssp in state
            .mssps
            .iter()
            .filter(|m| m.ca.issued(&superseded.cert_der))
        {
            if let Err(e) = mssp.ca.revoke(&superseded.cert_der) {
                tracing::warn!(error = %e, "could not revoke the superseded certificate");
            }
        }
    }
    // A revocation takes effect at the CA now, not at the next signature.
    let network = state.registry.network_of(&msisdn);
    if let Some(mssp) = state.mssps.iter().find(|m| m.config.carrier == network) {
        if let Err(e) = mssp.sync_certificate(&msisdn) {
            tracing::warn!(error = %e, "could not revoke the SIM certificate");
        }
    }
    get_subscriber(state, web::Path::from(msisdn.e164().to_owned())).await
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Port {
    carrier: carrier_adapters::Carrier,
}

/// `PUT /ported/{msisdn}` `{"carrier"}`: the number now belongs to that network.
async fn put_ported(
    state: web::Data<State>,
    path: web::Path<String>,
    body: web::Bytes,
) -> HttpResponse {
    let msisdn = match parse_msisdn(&path) {
        Ok(m) => m,
        Err(resp) => return *resp,
    };
    match serde_json::from_slice::<Port>(&body) {
        Ok(p) => {
            state.registry.port(&msisdn, Some(p.carrier));
            get_ported(state, web::Path::from(msisdn.e164().to_owned())).await
        }
        Err(e) => problem(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid-port",
            "Invalid porting",
            e.to_string(),
        ),
    }
}

async fn delete_ported(state: web::Data<State>, path: web::Path<String>) -> HttpResponse {
    let msisdn = match parse_msisdn(&path) {
        Ok(m) => m,
        Err(resp) => return *resp,
    };
    state.registry.port(&msisdn, None);
    get_ported(state, web::Path::from(msisdn.e164().to_owned())).await
}

async fn get_ported(state: web::Data<State>, path: web::Path<String>) -> HttpResponse {
    let msisdn = match parse_msisdn(&path) {
        Ok(m) => m,
        Err(resp) => return *resp,
    };
    HttpResponse::Ok().json(json!({
        "msisdn": msisdn.e164(),
        "prefix_carrier": msisdn.carrier(),
        "carrier": state.registry.network_of(&msisdn),
    }))
}

/// The SMSC named `name`, or the 404 answer.
fn smsc_named<'a>(state: &'a State, name: &str) -> Result<&'a Arc<Smsc>, Box<HttpResponse>> {
    state
        .smscs
        .iter()
        .find(|s| s.name() == name)
        .ok_or_else(|| {
            Box::new(problem(
                StatusCode::NOT_FOUND,
                "unknown-smsc",
                "Unknown SMSC",
                format!("no SMSC named {name:?}"),
            ))
        })
}

async fn get_faults(state: web::Data<State>, path: web::Path<String>) -> HttpResponse {
    match smsc_named(&state, &path) {
        Ok(smsc) => HttpResponse::Ok().json(smsc.faults()),
        Err(resp) => *resp,
    }
}

async fn put_faults(
    state: web::Data<State>,
    path: web::Path<String>,
    body: web::Bytes,
) -> HttpResponse {
    let smsc = match smsc_named(&state, &path) {
        Ok(smsc) => smsc,
        Err(resp) => return *resp,
    };
    match serde_json::from_slice::<crate::smsc::SmscFaults>(&body) {
        Ok(f) if (0.0..=1.0).contains(&f.lose_receipts) => {
            smsc.set_faults(f);
            HttpResponse::Ok().json(smsc.faults())
        }
        Ok(_) => problem(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid-faults",
            "Invalid faults",
            "lose_receipts must be 0..=1".into(),
        ),
        Err(e) => problem(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid-faults",
            "Invalid faults",
            e.to_string(),
        ),
    }
}

async fn get_brandnames(state: web::Data<State>, path: web::Path<String>) -> HttpResponse {
    match smsc_named(&state, &path) {
        Ok(smsc) => HttpResponse::Ok().json(smsc.brandnames()),
        Err(resp) => *resp,
    }
}

/// `PUT /smsc/{name}/brandnames` `{"enforce": true, "brandnames": {"UBND-HN": ["Ma OTP {code}"]}}`:
/// what the carrier has registered; `{}` clears it (and enforces nothing).
async fn put_brandnames(
    state: web::Data<State>,
    path: web::Path<String>,
    body: web::Bytes,
) -> HttpResponse {
    let smsc = match smsc_named(&state, &path) {
        Ok(smsc) => smsc,
        Err(resp) => return *resp,
    };
    let invalid = |detail: String| {
        problem(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid-brandnames",
            "Invalid brandnames",
            detail,
        )
    };
    match serde_json::from_slice::<crate::smsc::Brandnames>(&body) {
        Ok(b) => match smsc.set_brandnames(b) {
            Ok(()) => {
                tracing::info!(smsc = %smsc.name(), "brandname registry set");
                HttpResponse::Ok().json(smsc.brandnames())
            }
            Err(e) => invalid(e),
        },
        Err(e) => invalid(e.to_string()),
    }
}

/// The web handset: a person picks a number and sees its SMS arrive, answers SIM
/// signature prompts on a PIN pad, and changes the subscriber's behaviour and the SMSCs'
/// faults. Plain HTML and a little JavaScript over this API.
async fn handset_page() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .insert_header(("Cache-Control", "no-cache"))
        .body(include_str!("web/handset.html"))
}

async fn prompts(state: web::Data<State>, path: web::Path<String>) -> HttpResponse {
    let msisdn = match parse_msisdn(&path) {
        Ok(m) => m,
        Err(resp) => return *resp,
    };
    let all: Vec<_> = state
        .mssps
        .iter()
        .flat_map(|m| m.prompts(&msisdn))
        .collect();
    HttpResponse::Ok().json(all)
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Confirm {
    pin: String,
}

async fn answer_prompt(
    state: web::Data<State>,
    path: web::Path<(String, String, String)>,
    body: web::Bytes,
) -> HttpResponse {
    let (raw, id, action) = path.into_inner();
    let msisdn = match parse_msisdn(&raw) {
        Ok(m) => m,
        Err(resp) => return *resp,
    };
    let Some(mssp) = state.mssps.iter().find(|m| m.owns_prompt(&msisdn, &id)) else {
        return problem(
            StatusCode::NOT_FOUND,
            "unknown-prompt",
            "Unknown prompt",
            "no such prompt on this handset".into(),
        );
    };
    let answer = match action.as_str() {
        "confirm" => {
            let confirm: Confirm = match serde_json::from_slice(&body) {
                Ok(c) => c,
                Err(e) => {
                    return problem(
                        StatusCode::BAD_REQUEST,
                        "malformed-json",
                        "Malformed JSON body",
                        e.to_string(),
                    )
                }
            };
            mssp.answer(&id, Some(&confirm.pin)).await
        }
        "cancel" => mssp.answer(&id, None).await,
        _ => return not_found().await,
    };
    HttpResponse::Ok().json(answer)
}

pub(crate) fn problem(status: StatusCode, kind: &str, title: &str, detail: String) -> HttpResponse {
    HttpResponse::build(status)
        .content_type("application/problem+json")
        .json(json!({
            "type": format!("/problems/{kind}"),
            "title": title,
            "status": status.as_u16(),
            "detail": detail,
        }))
}

pub(crate) fn parse_msisdn(raw: &str) -> Result<Msisdn, Box<HttpResponse>> {
    Msisdn::parse(raw).map_err(|e| {
        Box::new(problem(
            StatusCode::BAD_REQUEST,
            "invalid-msisdn",
            "Invalid phone number",
            e.to_string(),
        ))
    })
}

async fn handset_messages(state: web::Data<State>, path: web::Path<String>) -> HttpResponse {
    match parse_msisdn(&path) {
        Ok(msisdn) => HttpResponse::Ok().json(state.handsets.messages(msisdn.e164())),
        Err(resp) => *resp,
    }
}

async fn clear_handset(state: web::Data<State>, path: web::Path<String>) -> HttpResponse {
    match parse_msisdn(&path) {
        Ok(msisdn) => {
            let removed = state.handsets.clear(msisdn.e164());
            HttpResponse::Ok().json(json!({ "removed": removed }))
        }
        Err(resp) => *resp,
    }
}

async fn health(state: web::Data<State>) -> HttpResponse {
    let smscs: Vec<_> = state.smscs.iter().map(|s| s.status()).collect();
    HttpResponse::Ok().json(json!({ "status": "ok", "smsc": smscs }))
}

async fn not_found() -> HttpResponse {
    problem(
        StatusCode::NOT_FOUND,
        "not-found",
        "Not found",
        "no such resource on the carrier simulator".into(),
    )
}

/// Serves the API on `listener` until `shutdown`.
pub fn serve(
    listener: std::net::TcpListener,
    state: State,
    shutdown: CancellationToken,
) -> std::io::Result<tokio::task::JoinHandle<()>> {
    let zns = web::Data::new(state.zns.clone());
    let data = web::Data::new(state);
    let server: Server = HttpServer::new(move || {
        App::new()
            .app_data(data.clone())
            .app_data(zns.clone())
            .configure(crate::zns_http::routes)
            .app_data(web::PayloadConfig::new(crate::mssp::MAX_SOAP_BYTES))
            .route("/", web::get().to(handset_page))
            .route("/health", web::get().to(health))
            .route(
                "/handsets/{msisdn}/messages",
                web::get().to(handset_messages),
            )
            .route(
                "/handsets/{msisdn}/messages",
                web::delete().to(clear_handset),
            )
            .route("/handsets/{msisdn}/prompts", web::get().to(prompts))
            .route(
                "/handsets/{msisdn}/prompts/{id}/{action}",
                web::post().to(answer_prompt),
            )
            .route("/subscribers/{msisdn}", web::get().to(get_subscriber))
            .route("/subscribers/{msisdn}", web::put().to(put_subscriber))
            .route("/mssp/{carrier}", web::post().to(mssp_soap))
            .route(
                "/mssp/{carrier}/certificates/{msisdn}",
                web::get().to(mssp_certificate),
            )
            .route("/ca/{file}", web::get().to(ca_file))
            .route("/ca/{carrier}/ocsp", web::post().to(ocsp_post))
            .route("/ca/{carrier}/ocsp/{request:.*}", web::get().to(ocsp_get))
            .route("/ca/{carrier}/faults", web::get().to(get_ca_faults))
            .route("/ca/{carrier}/faults", web::put().to(put_ca_faults))
            .route("/ported/{msisdn}", web::get().to(get_ported))
            .route("/ported/{msisdn}", web::put().to(put_ported))
            .route("/ported/{msisdn}", web::delete().to(delete_ported))
            .route("/smsc/{name}/faults", web::get().to(get_faults))
            .route("/smsc/{name}/faults", web::put().to(put_faults))
            .route("/smsc/{name}/brandnames", web::get().to(get_brandnames))
            .route("/smsc/{name}/brandnames", web::put().to(put_brandnames))
            .route(
                "/carriers/{carrier}/owner-check",
                web::post().to(owner_check),
            )
            .default_service(web::to(not_found))
    })
    .workers(1)
    .disable_signals()
    .shutdown_timeout(1)
    .listen(listener)?
    .run();
    let handle = server.handle();
    let task = tokio::spawn(async move {
        let stopper = tokio::spawn(async move {
            shutdown.cancelled().await;
            handle.stop(true).await;
        });
        let _ = server.await;
        stopper.abort();
    });
    Ok(task)
}
