//! The REST API.

pub mod admin;
pub mod audit;
pub mod auth;
pub mod body;
pub mod carriers;
pub mod deadline;
pub mod error;
pub mod health;
pub mod metrics;
pub mod openapi;
pub mod otp;
pub mod query;
pub mod requests;
pub mod schemas;
pub mod signatures;
pub mod state;
pub mod status;
pub mod usage;

use actix_web::{web, HttpResponse};

use error::ApiError;
pub use query::query_config;
pub use state::AppState;

pub fn routes(cfg: &mut web::ServiceConfig) {
    openapi::routes(cfg);
    cfg.service(resource("/health", "GET").route(web::get().to(health::health)))
        .service(resource("/healthz", "GET").route(web::get().to(health::healthz)))
        .service(resource("/readyz", "GET").route(web::get().to(health::readyz)))
        .service(resource("/status", "GET").route(web::get().to(status::status)))
        .service(resource("/metrics", "GET").route(web::get().to(metrics::metrics)))
        .service(resource("/v1/health/carriers", "GET").route(web::get().to(metrics::carriers)))
        .service(resource("/v1/otp", "POST").route(web::post().to(otp::create)))
        .service(resource("/v1/otp/{id}", "GET").route(web::get().to(otp::get)))
        .service(resource("/v1/otp/{id}/cancel", "POST").route(web::post().to(otp::cancel)))
        .service(resource("/v1/otp/{id}/resend", "POST").route(web::post().to(otp::resend)))
        .service(resource("/v1/otp/{id}/check", "POST").route(web::post().to(otp::check)))
        .service(resource("/v1/signatures", "POST").route(web::post().to(signatures::create)))
        .service(resource("/v1/signatures/{id}", "GET").route(web::get().to(signatures::get)))
        .service(
            resource("/v1/signatures/{id}/cancel", "POST")
                .route(web::post().to(signatures::cancel)),
        )
        .service(
            resource(
                "/v1/admin/clients/{client_id}/accounts/{account_ref}/unlock",
                "POST",
            )
            .route(web::post().to(admin::unlock)),
        )
        .service(resource("/v1/usage", "GET").route(web::get().to(usage::get)))
        .service(resource("/v1/audit", "GET").route(web::get().to(audit::list)))
        .service(
            resource("/v1/subscriber-checks", "POST")
                .route(web::post().to(signatures::subscriber_check)),
        )
        .service(
            resource("/carriers/zalo/events", "POST").route(web::post().to(carriers::zalo_event)),
        )
        .service(
            resource("/carriers/{carrier}/mss", "POST")
                .route(web::post().to(carriers::notification)),
        );
}

/// A resource that answers any method but `allow` with 405 and an `Allow` header.
fn resource(path: &str, allow: &'static str) -> actix_web::Resource {
    web::resource(path).default_service(web::to(move || async move {
        Err::<HttpResponse, _>(ApiError::MethodNotAllowed { allow })
    }))
}

pub async fn not_found() -> Result<HttpResponse, ApiError> {
    Err(ApiError::NotFound)
}
