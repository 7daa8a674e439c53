//! The simulated ZNS over HTTP, under `/zns`: Zalo's API paths (OAuth, send, status,
//! template info, quota) and the simulator's own switches (templates, which numbers
//! have Zalo, quota, faults, the callback URL), plus each phone's Zalo inbox.

use std::sync::Arc;

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;
use serde_json::json;

use crate::http::{parse_msisdn, problem};
use crate::zns::{SendRequest, Zns, ZnsFaults, ZnsTemplate};

fn access_token(req: &HttpRequest) -> Option<&str> {
    req.headers()
        .get("access_token")
        .and_then(|v| v.to_str().ok())
}

/// The `unavailable` fault: every Zalo API path answers 503.
fn down(zns: &Zns) -> Option<HttpResponse> {
    zns.unavailable().then(|| {
        HttpResponse::ServiceUnavailable()
            .content_type("text/plain")
            .body("ZNS is unavailable (simulator fault)")
    })
}

#[derive(Deserialize)]
struct RefreshForm {
    app_id: String,
    grant_type: String,
    refresh_token: String,
}

/// `POST /zns/oauth/v4/oa/access_token` (header `secret_key`; form `app_id`,
/// `grant_type=refresh_token`, `refresh_token`).
async fn oauth(
    zns: web::Data<Arc<Zns>>,
    req: HttpRequest,
    form: web::Form<RefreshForm>,
) -> HttpResponse {
    if let Some(resp) = down(&zns) {
        return resp;
    }
    if form.grant_type != "refresh_token" {
        return HttpResponse::Ok().json(json!({
            "error": crate::zns::code::REFRESH_TOKEN_INVALID,
            "error_name": "Invalid grant_type",
            "error_description": "grant_type must be refresh_token",
        }));
    }
    let secret = req
        .headers()
        .get("secret_key")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    HttpResponse::Ok().json(zns.refresh(secret, &form.app_id, &form.refresh_token))
}

/// `POST /zns/message/template` (header `access_token`).
async fn send(zns: web::Data<Arc<Zns>>, req: HttpRequest, body: web::Bytes) -> HttpResponse {
    if let Some(resp) = down(&zns) {
        return resp;
    }
    if let Some(delay) = zns.faults().response_delay {
        tokio::time::sleep(delay).await;
    }
    let answer = match serde_json::from_slice::<SendRequest>(&body) {
        Ok(send) => zns.get_ref().send(access_token(&req), send),
        Err(e) => {
            return HttpResponse::Ok().json(json!({
                "error": crate::zns::code::TEMPLATE_DATA_INVALID,
                "message": format!("Body is invalid: {e}"),
            }))
        }
    };
    HttpResponse::Ok().json(answer.to_json())
}

#[derive(Deserialize)]
struct StatusQuery {
    message_id: String,
    phone: String,
}

/// `GET /zns/message/status?message_id=…&phone=…`.
async fn status(
    zns: web::Data<Arc<Zns>>,
    req: HttpRequest,
    q: web::Query<StatusQuery>,
) -> HttpResponse {
    if let Some(resp) = down(&zns) {
        return resp;
    }
    HttpResponse::Ok().json(
        zns.status(access_token(&req), &q.message_id, &q.phone)
            .to_json(),
    )
}

#[derive(Deserialize)]
struct TemplateQuery {
    template_id: String,
}

/// `GET /zns/template/info?template_id=…`.
async fn template_info(
    zns: web::Data<Arc<Zns>>,
    req: HttpRequest,
    q: web::Query<TemplateQuery>,
) -> HttpResponse {
    if let Some(resp) = down(&zns) {
        return resp;
    }
    HttpResponse::Ok().json(
        zns.template_info(access_token(&req), &q.template_id)
            .to_json(),
    )
}

/// `GET /zns/message/quota`.
async fn quota(zns: web::Data<Arc<Zns>>, req: HttpRequest) -> HttpResponse {
    if let Some(resp) = down(&zns) {
        return resp;
    }
    HttpResponse::Ok().json(zns.quota_info(access_token(&req)).to_json())
}

// The simulator's own switches.

async fn list_templates(zns: web::Data<Arc<Zns>>) -> HttpResponse {
    HttpResponse::Ok().json(zns.templates())
}

/// `PUT /zns/templates/{id}` `{"text": "… <otp> …", "status": "ENABLE"}`: a template and
/// its approval.
async fn put_template(
    zns: web::Data<Arc<Zns>>,
    path: web::Path<String>,
    body: web::Bytes,
) -> HttpResponse {
    let mut value: serde_json::Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => {
            return problem(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid-template",
                "Invalid template",
                e.to_string(),
            )
        }
    };
    if let Some(obj) = value.as_object_mut() {
        obj.insert("id".into(), json!(path.as_str()));
    }
    match serde_json::from_value::<ZnsTemplate>(value) {
        Ok(t) if t.params().is_empty() => problem(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid-template",
            "Invalid template",
            "a ZNS template names at least one parameter, as <otp>".into(),
        ),
        Ok(t) => {
            zns.set_template(t.clone());
            HttpResponse::Ok().json(t)
        }
        Err(e) => problem(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid-template",
            "Invalid template",
            e.to_string(),
        ),
    }
}

fn e164(raw: &str) -> Result<String, Box<HttpResponse>> {
    parse_msisdn(raw).map(|m| m.e164().to_owned())
}

async fn get_user(zns: web::Data<Arc<Zns>>, path: web::Path<String>) -> HttpResponse {
    match e164(&path) {
        Ok(n) => HttpResponse::Ok().json(json!({ "msisdn": n, "zalo": zns.has_zalo(&n) })),
        Err(resp) => *resp,
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct User {
    zalo: bool,
}

/// `PUT /zns/users/{msisdn}` `{"zalo": false}`: the number has no Zalo account.
async fn put_user(
    zns: web::Data<Arc<Zns>>,
    path: web::Path<String>,
    body: web::Bytes,
) -> HttpResponse {
    let n = match e164(&path) {
        Ok(n) => n,
        Err(resp) => return *resp,
    };
    match serde_json::from_slice::<User>(&body) {
        Ok(u) => {
            zns.set_has_zalo(&n, u.zalo);
            HttpResponse::Ok().json(json!({ "msisdn": n, "zalo": u.zalo }))
        }
        Err(e) => problem(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid-user",
            "Invalid user",
            e.to_string(),
        ),
    }
}

async fn get_faults(zns: web::Data<Arc<Zns>>) -> HttpResponse {
    HttpResponse::Ok().json(zns.faults())
}

async fn put_faults(zns: web::Data<Arc<Zns>>, body: web::Bytes) -> HttpResponse {
    match serde_json::from_slice::<ZnsFaults>(&body) {
        Ok(f) => {
            zns.set_faults(f);
            HttpResponse::Ok().json(zns.faults())
        }
        Err(e) => problem(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid-faults",
            "Invalid faults",
            e.to_string(),
        ),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Webhook {
    url: Option<String>,
}

async fn get_webhook(zns: web::Data<Arc<Zns>>) -> HttpResponse {
    HttpResponse::Ok().json(json!({ "url": zns.webhook() }))
}

/// `PUT /zns/webhook` `{"url": "https://…"}` (`null`: none): where delivery events go.
async fn put_webhook(zns: web::Data<Arc<Zns>>, body: web::Bytes) -> HttpResponse {
    match serde_json::from_slice::<Webhook>(&body) {
        Ok(w)
            if w.url
                .as_deref()
                .is_some_and(|u| reqwest::Url::parse(u).is_err()) =>
        {
            problem(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid-webhook",
                "Invalid webhook",
                "url must be an absolute URL".into(),
            )
        }
        Ok(w) => {
            zns.set_webhook(w.url);
            HttpResponse::Ok().json(json!({ "url": zns.webhook() }))
        }
        Err(e) => problem(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid-webhook",
            "Invalid webhook",
            e.to_string(),
        ),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Quota {
    daily: u32,
}

/// `PUT /zns/quota` `{"daily": N}`: the day's quota, its count started over.
async fn put_quota(zns: web::Data<Arc<Zns>>, body: web::Bytes) -> HttpResponse {
    match serde_json::from_slice::<Quota>(&body) {
        Ok(q) => {
            zns.set_quota(q.daily);
            let (daily, remaining) = zns.quota();
            HttpResponse::Ok().json(json!({ "daily": daily, "remaining": remaining }))
        }
        Err(e) => problem(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid-quota",
            "Invalid quota",
            e.to_string(),
        ),
    }
}

/// `GET /handsets/{msisdn}/zalo`: what the phone's Zalo app received, oldest first.
async fn inbox(zns: web::Data<Arc<Zns>>, path: web::Path<String>) -> HttpResponse {
    match e164(&path) {
        Ok(n) => HttpResponse::Ok().json(zns.inbox(&n)),
        Err(resp) => *resp,
    }
}

/// Adds the routes to the simulator's app.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/zns/oauth/v4/oa/access_token", web::post().to(oauth))
        .route("/zns/message/template", web::post().to(send))
        .route("/zns/message/status", web::get().to(status))
        .route("/zns/message/quota", web::get().to(quota))
        .route("/zns/template/info", web::get().to(template_info))
        .route("/zns/templates", web::get().to(list_templates))
        .route("/zns/templates/{id}", web::put().to(put_template))
        .route("/zns/users/{msisdn}", web::get().to(get_user))
        .route("/zns/users/{msisdn}", web::put().to(put_user))
        .route("/zns/faults", web::get().to(get_faults))
        .route("/zns/faults", web::put().to(put_faults))
        .route("/zns/webhook", web::get().to(get_webhook))
        .route("/zns/webhook", web::put().to(put_webhook))
        .route("/zns/quota", web::put().to(put_quota))
        .route("/handsets/{msisdn}/zalo", web::get().to(inbox));
}
