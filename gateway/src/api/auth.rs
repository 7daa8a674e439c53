//! `Authorization: Bearer <key>`: the key's SHA-256 is looked up on every request, so a
//! revoked key or disabled client is refused at once on every instance.

use actix_web::{dev::Payload, http::header, web, FromRequest, HttpRequest};
use futures::future::LocalBoxFuture;
use uuid::Uuid;

use super::error::ApiError;
use crate::crypto::hash_api_key;
use crate::startup::AppState;

/// The API client a request was authenticated as.
#[derive(Debug, Clone, Copy)]
pub struct ApiClient {
    pub id: Uuid,
}

/// The client's name (for per-client settings).
pub async fn client_name(state: &AppState, id: Uuid) -> Result<String, ApiError> {
    let db = state.pool.get().await?;
    Ok(db
        .query_one("SELECT name FROM api_clients WHERE id = $1", &[&id])
        .await?
        .get(0))
}

impl FromRequest for ApiClient {
    type Error = ApiError;
    type Future = LocalBoxFuture<'static, Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let key = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                let (scheme, rest) = v.trim().split_once(' ')?;
                scheme
                    .eq_ignore_ascii_case("bearer")
                    .then(|| rest.trim().to_owned())
            })
            .filter(|k| !k.is_empty() && k.len() <= 200);
        let state = req.app_data::<web::Data<AppState>>().cloned();
        Box::pin(async move {
            let key = key.ok_or(ApiError::Unauthorized)?;
            let state = state.ok_or_else(|| ApiError::Internal(anyhow::anyhow!("no app state")))?;
            let db = state.pool.get().await?;
            let row = db
                .query_opt(
                    "SELECT k.client_id FROM api_keys k JOIN api_clients c ON c.id = k.client_id
                     WHERE k.key_hash = $1 AND (k.revoked_at IS NULL OR k.revoked_at > now())
                       AND c.disabled_at IS NULL",
                    &[&hash_api_key(&key)],
                )
                .await?;
            let client = row
                .map(|r| ApiClient { id: r.get(0) })
                .ok_or(ApiError::Unauthorized)?;
            // This instance's share of the client's request rate.
            if let Err(not_until) = state.client_rate.check_key(&client.id) {
                use governor::clock::Clock;
                let wait = not_until.wait_time_from(governor::clock::DefaultClock::default().now());
                return Err(ApiError::RateLimited {
                    retry_after: wait.as_secs().max(1),
                    detail: "too many requests from this client; slow down".into(),
                });
            }
            Ok(client)
        })
    }
}
