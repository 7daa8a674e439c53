//! The audit trail: every security event, written in the transaction of the action it
//! records, append-only (the database refuses updates and deletes), with masked numbers
//! and no secrets.

use crate::store::Cached;
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;
use uuid::Uuid;

use crate::crypto::ServerKeys;
use crate::domain::Msisdn;

/// One event to record.
pub struct Event<'a> {
    pub event: &'static str,
    pub client: Option<Uuid>,
    pub msisdn: Option<&'a Msisdn>,
    pub subject: Option<Uuid>,
    pub detail: Value,
}

pub async fn record(
    db: &impl deadpool_postgres::GenericClient,
    keys: &ServerKeys,
    e: Event<'_>,
) -> Result<(), tokio_postgres::Error> {
    db.execute_cached(
        "INSERT INTO audit_events (client_id, event, msisdn_masked, msisdn_key, subject_id, detail)
         VALUES ($1, $2, $3, $4, $5, $6)",
        &[
            &e.client,
            &e.event,
            &e.msisdn.map(Msisdn::masked),
            &e.msisdn.map(|m| keys.lookup_key(m.e164())),
            &e.subject,
            &e.detail,
        ],
    )
    .await?;
    Ok(())
}

/// One security event. / Một sự kiện an ninh.
#[derive(Debug, Serialize, utoipa::ToSchema, postgres_from_row::FromRow)]
pub struct AuditView {
    pub id: i64,
    pub at: DateTime<Utc>,
    pub event: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub msisdn_masked: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subject_id: Option<Uuid>,
    /// The event's particulars (never a code, a key or a full number).
    #[schema(value_type = Object)]
    pub detail: Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_id: Option<Uuid>,
}

/// Which events to read.
pub struct Filter<'a> {
    pub client: Option<Uuid>,
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    pub msisdn: Option<&'a Msisdn>,
    /// Only events after this id (paging).
    pub after_id: i64,
    pub limit: i64,
}

/// Events in a time range, optionally for one client and one number, in order.
pub async fn query(
    db: &impl deadpool_postgres::GenericClient,
    keys: &ServerKeys,
    f: Filter<'_>,
) -> Result<Vec<AuditView>, tokio_postgres::Error> {
    let Filter {
        client,
        from,
        to,
        msisdn,
        after_id,
        limit,
    } = f;
    let key = msisdn.map(|m| keys.lookup_key(m.e164()));
    let rows = db
        .query_cached(
            "SELECT id, at, event, msisdn_masked, subject_id, detail, client_id FROM audit_events
             WHERE at >= $1 AND at < $2
               AND ($3::uuid IS NULL OR client_id = $3)
               AND ($4::bytea IS NULL OR msisdn_key = $4)
               AND id > $6
             ORDER BY id LIMIT $5",
            &[&from, &to, &client, &key, &limit, &after_id],
        )
        .await?;
    rows.iter()
        .map(<AuditView as postgres_from_row::FromRow>::try_from_row)
        .collect()
}
