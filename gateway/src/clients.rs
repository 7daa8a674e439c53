//! API clients (the portals) and their keys.

use anyhow::Context;
use deadpool_postgres::Pool;
use uuid::Uuid;

use crate::crypto::{hash_api_key, new_api_key};

/// A client as `client add` reports it: the key is shown this once.
#[derive(Debug, Clone)]
pub struct NewClient {
    pub id: Uuid,
    pub key: String,
    pub webhook_secret: String,
}

/// Creates a client named `name` (or reuses it) and gives it a new key, returned once.
pub async fn add(pool: &Pool, name: &str) -> anyhow::Result<NewClient> {
    let key = new_api_key()?;
    let id = add_key(pool, name, &key.key, &key.prefix).await?;
    Ok(NewClient {
        id,
        key: key.key,
        webhook_secret: webhook_secret(pool, id).await?,
    })
}

/// The client's Standard Webhooks secret (`whsec_…`).
pub async fn webhook_secret(pool: &Pool, id: Uuid) -> anyhow::Result<String> {
    let db = pool.get().await?;
    let row = db
        .query_one(
            "SELECT webhook_secret FROM api_clients WHERE id = $1",
            &[&id],
        )
        .await?;
    Ok(row.get(0))
}

/// Registers a chosen key (the demo's `GATEWAY_DEMO_API_KEY`) for client `name`.
pub async fn add_key(pool: &Pool, name: &str, key: &str, prefix: &str) -> anyhow::Result<Uuid> {
    let name = name.trim();
    anyhow::ensure!(
        !name.is_empty() && name.len() <= 100,
        "client name must be 1..=100 characters"
    );
    anyhow::ensure!(key.len() >= 20, "an API key must be at least 20 characters");
    let mut db = pool.get().await.context("connecting to the database")?;
    let tx = db.transaction().await?;
    let row = tx
        .query_one(
            "INSERT INTO api_clients (id, name) VALUES ($1, $2)
             ON CONFLICT (name) DO UPDATE SET name = EXCLUDED.name
             RETURNING id",
            &[&Uuid::now_v7(), &name],
        )
        .await?;
    let id: Uuid = row.get(0);
    let added = tx
        .execute(
            "INSERT INTO api_keys (key_hash, client_id, key_prefix) VALUES ($1, $2, $3)
             ON CONFLICT (key_hash) DO NOTHING",
            &[&hash_api_key(key), &id, &prefix],
        )
        .await?;
    if added == 1 {
        tx.execute(
            "INSERT INTO audit_events (client_id, event, detail)
             VALUES ($1, 'client.key_added', jsonb_build_object('name', $2::text, 'key_prefix', $3::text))",
            &[&id, &name, &prefix],
        )
        .await?;
    }
    tx.commit().await?;
    Ok(id)
}
