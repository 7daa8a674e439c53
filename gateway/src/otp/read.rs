//! Reading a verification, with its latest SMS's delivery (read by `outbox::receipts`).

use uuid::Uuid;

use super::deps::Deps;
use super::error::OtpError;
use super::model::{view, OtpView, CHALLENGE_COLUMNS};
use crate::outbox::receipts::{delivery_of, LATEST_DELIVERY_COLUMNS, LATEST_DELIVERY_JOINS};
use crate::store::Cached;

/// The verification `id` of `client`.
pub async fn get(deps: &Deps, client: Uuid, id: Uuid) -> Result<OtpView, OtpError> {
    let db = deps.pool.get().await?;
    let row = db
        .query_opt_cached(
            &format!(
                "SELECT {CHALLENGE_COLUMNS}, {LATEST_DELIVERY_COLUMNS}
                 FROM otp_challenges c
                 {LATEST_DELIVERY_JOINS}
                 WHERE c.id = $1 AND c.client_id = $2"
            ),
            &[&id, &client],
        )
        .await?
        .ok_or(OtpError::NotFound)?;
    view(&row, delivery_of(&row))
}
