//! Reading a verification, with its latest SMS's delivery (read by `outbox::receipts`).

use uuid::Uuid;

use super::deps::Deps;
use super::error::OtpError;
use super::model::{view, OtpView};
use crate::outbox::receipts::{delivery_of, LATEST_DELIVERY_JOINS};
use crate::store::tables::otp_challenges::{Challenge, CHALLENGE};
use crate::store::tables::sms_outbox::{LatestDelivery, LATEST_DELIVERY};
use crate::store::tables::FromRow;
use crate::store::Cached;

/// The verification `id` of `client`.
pub async fn get(deps: &Deps, client: Uuid, id: Uuid) -> Result<OtpView, OtpError> {
    let db = deps.pool.get().await?;
    let row = db
        .query_opt_cached(
            &format!(
                "SELECT {CHALLENGE}, {LATEST_DELIVERY}
                 FROM otp_challenges c
                 {LATEST_DELIVERY_JOINS}
                 WHERE c.id = $1 AND c.client_id = $2"
            ),
            &[&id, &client],
        )
        .await?
        .ok_or(OtpError::NotFound)?;
    let delivery = delivery_of(LatestDelivery::try_from_row(&row)?);
    view(Challenge::try_from_row(&row)?, delivery)
}
