//! Reading a verification, with its latest SMS's delivery (the receipts of every part).

use uuid::Uuid;

use super::deps::Deps;
use super::error::OtpError;
use super::model::{view, DeliveryView, OtpView, CHALLENGE_COLUMNS};
use crate::db::Cached;

/// The verification `id` of `client`.
pub async fn get(deps: &Deps, client: Uuid, id: Uuid) -> Result<OtpView, OtpError> {
    let db = deps.pool.get().await?;
    let row = db
        .query_opt_cached(
            &format!(
                "SELECT {CHALLENGE_COLUMNS},
                    o.status AS o_status, o.route AS o_route, o.smsc_message_id, o.submitted_at,
                    o.last_error, r.parts, r.delivered, r.bad_state, r.bad_error, r.last_at AS r_at
                 FROM otp_challenges c
                 LEFT JOIN LATERAL (
                    SELECT * FROM sms_outbox WHERE challenge_id = c.id ORDER BY id DESC LIMIT 1
                 ) o ON true
                 LEFT JOIN LATERAL (
                    -- Every part's latest receipt: delivered when all parts are; the
                    -- first bad final state otherwise.
                    SELECT count(*)::int AS parts,
                        count(*) FILTER (WHERE pr.state = 'delivered')::int AS delivered,
                        (array_agg(pr.state ORDER BY pr.received_at)
                            FILTER (WHERE pr.state IS NOT NULL AND pr.state <> 'delivered'))[1] AS bad_state,
                        (array_agg(pr.error_code ORDER BY pr.received_at)
                            FILTER (WHERE pr.state IS NOT NULL AND pr.state <> 'delivered'))[1] AS bad_error,
                        max(pr.received_at) AS last_at
                    FROM sms_parts p
                    LEFT JOIN LATERAL (
                        SELECT * FROM delivery_receipts d
                        WHERE d.route = o.route
                          AND d.message_id IN (p.message_key, p.message_key_dec, p.message_key_hex)
                        ORDER BY d.received_at DESC LIMIT 1
                    ) pr ON true
                    WHERE p.outbox_id = o.id
                 ) r ON true
                 WHERE c.id = $1 AND c.client_id = $2"
            ),
            &[&id, &client],
        )
        .await?
        .ok_or(OtpError::NotFound)?;
    let delivery = row
        .get::<_, Option<String>>("o_status")
        .map(|outbox_status| {
            let parts: i32 = row.get::<_, Option<i32>>("parts").unwrap_or(0);
            let delivered: i32 = row.get::<_, Option<i32>>("delivered").unwrap_or(0);
            let bad: Option<String> = row.get("bad_state");
            let status = match (&bad, parts > 0 && delivered == parts) {
                (Some(state), _) => state.clone(),
                (None, true) => "delivered".to_owned(),
                (None, false) => outbox_status,
            };
            DeliveryView {
                status,
                route: row.get("o_route"),
                message_id: row.get("smsc_message_id"),
                parts: parts.max(1),
                submitted_at: row.get("submitted_at"),
                receipt_at: row.get("r_at"),
                error: row
                    .get::<_, Option<String>>("bad_error")
                    .filter(|e| !e.trim_start_matches('0').is_empty())
                    .or(row.get("last_error")),
            }
        });
    view(&row, delivery)
}
