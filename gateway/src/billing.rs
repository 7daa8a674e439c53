//! Billing in exact decimals: effective-dated prices per carrier and item (NUMERIC in
//! Postgres, rust_decimal here), one usage row per billable event priced when it happens,
//! and totals computed by Postgres's exact SUM.

use crate::store::Cached;
use anyhow::Context;
use chrono::{DateTime, Utc};
use deadpool_postgres::Pool;
use rust_decimal::Decimal;
use serde::Serialize;
use uuid::Uuid;

use crate::config::PriceEntry;

/// Loads the configured prices (idempotent: an entry is its carrier, item and date).
pub async fn load_prices(pool: &Pool, prices: &[PriceEntry]) -> anyhow::Result<()> {
    if prices.is_empty() {
        return Ok(());
    }
    let mut db = pool.get().await.context("connecting to the database")?;
    let tx = db.transaction().await?;
    for p in prices {
        tx.execute_cached(
            "INSERT INTO prices (carrier, item, effective_from, price_vnd) VALUES ($1, $2, $3, $4)
             ON CONFLICT (carrier, item, effective_from) DO UPDATE SET price_vnd = EXCLUDED.price_vnd",
            &[&p.carrier, &p.item, &p.effective_from, &p.price_vnd],
        )
        .await?;
    }
    tx.commit().await?;
    Ok(())
}

/// The price in force now for a carrier's item: its own, else the `*` one, else 0.
const PRICE_NOW: &str = "coalesce(
    (SELECT price_vnd FROM prices WHERE item = u.item AND carrier = u.carrier
        AND effective_from <= now() ORDER BY effective_from DESC LIMIT 1),
    (SELECT price_vnd FROM prices WHERE item = u.item AND carrier = '*'
        AND effective_from <= now() ORDER BY effective_from DESC LIMIT 1),
    0)";

/// Records billable events (one statement for all of them).
pub async fn record(
    db: &impl deadpool_postgres::GenericClient,
    events: &[(Uuid, &str, &str, i32, Option<Uuid>)],
) -> Result<(), tokio_postgres::Error> {
    if events.is_empty() {
        return Ok(());
    }
    let clients: Vec<Uuid> = events.iter().map(|e| e.0).collect();
    let carriers: Vec<&str> = events.iter().map(|e| e.1).collect();
    let items: Vec<&str> = events.iter().map(|e| e.2).collect();
    let quantities: Vec<i32> = events.iter().map(|e| e.3).collect();
    let subjects: Vec<Option<Uuid>> = events.iter().map(|e| e.4).collect();
    db.execute_cached(
        &format!(
            "INSERT INTO usage_events (client_id, carrier, item, quantity, unit_price, amount, subject_id)
             SELECT u.client_id, u.carrier, u.item, u.quantity, p.price, p.price * u.quantity, u.subject_id
             FROM unnest($1::uuid[], $2::text[], $3::text[], $4::int[], $5::uuid[])
                AS u(client_id, carrier, item, quantity, subject_id)
             CROSS JOIN LATERAL (SELECT {PRICE_NOW} AS price) p"
        ),
        &[&clients, &carriers, &items, &quantities, &subjects],
    )
    .await?;
    Ok(())
}

#[derive(Debug, Serialize, utoipa::ToSchema, postgres_from_row::FromRow)]
pub struct UsageRow {
    /// The day (UTC, `YYYY-MM-DD`) or the carrier, by `group_by`.
    pub key: String,
    pub item: String,
    pub events: i64,
    pub quantity: i64,
    /// Exact, as a decimal string.
    #[serde(with = "rust_decimal::serde::str")]
    #[schema(value_type = String, example = "1250.0000")]
    pub amount_vnd: Decimal,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupBy {
    Day,
    Carrier,
}

/// Usage of a client (or all) in a period, grouped, with the exact total.
pub async fn usage(
    db: &impl deadpool_postgres::GenericClient,
    client: Option<Uuid>,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    group_by: GroupBy,
) -> Result<(Vec<UsageRow>, Decimal), tokio_postgres::Error> {
    let key = match group_by {
        GroupBy::Day => "to_char(at AT TIME ZONE 'UTC', 'YYYY-MM-DD')",
        GroupBy::Carrier => "carrier",
    };
    let rows = db
        .query_cached(
            &format!(
                "SELECT {key} AS key, item, count(*)::bigint AS events,
                        coalesce(sum(quantity), 0)::bigint AS quantity,
                        coalesce(sum(amount), 0)::numeric AS amount_vnd
                 FROM usage_events
                 WHERE at >= $1 AND at < $2 AND ($3::uuid IS NULL OR client_id = $3)
                 GROUP BY 1, 2 ORDER BY 1, 2"
            ),
            &[&from, &to, &client],
        )
        .await?;
    let total: Decimal = db
        .query_one_cached(
            "SELECT coalesce(sum(amount), 0)::numeric FROM usage_events
             WHERE at >= $1 AND at < $2 AND ($3::uuid IS NULL OR client_id = $3)",
            &[&from, &to, &client],
        )
        .await?
        .get(0);
    Ok((
        rows.iter()
            .map(<UsageRow as postgres_from_row::FromRow>::try_from_row)
            .collect::<Result<_, _>>()?,
        total,
    ))
}
