//! `Authorization: Bearer <key>`: the key's SHA-256 is looked up on every request, so a
//! revoked key or disabled client is refused at once on every instance.

use actix_web::{dev::Payload, http::header, web, FromRequest, HttpRequest};
use futures::future::LocalBoxFuture;

use super::error::ApiError;
pub use crate::clients::ApiClient;
use crate::http::state::AppState;

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
            let client = crate::clients::by_key(&db, &key)
                .await?
                .ok_or(ApiError::Unauthorized)?;
            // This instance's share of the client's request rate.
            if let Err(wait) =
                state
                    .client_rate
                    .check(client.id, client.requests_per_second, client.request_burst)
            {
                return Err(ApiError::RateLimited {
                    retry_after: wait.as_secs().max(1),
                    detail: "too many requests from this client; slow down".into(),
                });
            }
            Ok(client)
        })
    }
}
