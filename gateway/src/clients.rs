//! API clients (the portals) and their keys.

use anyhow::Context;
use deadpool_postgres::Pool;
use uuid::Uuid;

use std::collections::BTreeMap;

use carrier_adapters::template::{valid_brandname, Template};

use crate::crypto::{hash_api_key, new_api_key};
use crate::domain::{Channel, Locale, Purpose};

/// The API client a request was authenticated as, with its policy (read with the key on
/// every request, so that a change made on one instance or by the CLI holds at once).
#[derive(Debug, Clone)]
pub struct ApiClient {
    pub id: Uuid,
    pub name: String,
    /// Purposes the client may ask for; `None`: every purpose.
    pub allowed_purposes: Option<Vec<String>>,
    /// Brandname per carrier (`viettel` → `UBND-HN`).
    pub sender_ids: std::collections::BTreeMap<String, String>,
    /// The SMS templates registered with each carrier for the client's brandname.
    pub sms_templates: Templates,
    /// Override of `limits.client_daily_sms`.
    pub daily_sms_quota: Option<i64>,
    /// Overrides of `limits.client_requests_per_second` and `limits.client_burst`.
    pub requests_per_second: Option<u32>,
    pub request_burst: Option<u32>,
    /// The client's default channel workflow (`None`: SMS only).
    pub otp_channels: Option<Vec<Channel>>,
    /// Where its OTP events go (`otp.sent`, `otp.delivered`, …); none: no events.
    pub otp_callback_url: Option<String>,
}

impl ApiClient {
    /// Refuses a purpose the client was not given.
    pub fn allow_purpose(&self, purpose: &str) -> Result<(), PurposeNotAllowed> {
        match &self.allowed_purposes {
            Some(allowed) if !allowed.iter().any(|p| p == purpose) => Err(PurposeNotAllowed {
                purpose: purpose.to_owned(),
            }),
            _ => Ok(()),
        }
    }

    /// The brandname to send from on `carrier`'s network: the client's own, or the route's.
    pub fn sender_for<'a>(&'a self, carrier: &str, route_sender: &'a str) -> &'a str {
        self.sender_ids
            .get(carrier)
            .map(String::as_str)
            .unwrap_or(route_sender)
    }
}

/// Carrier → `purpose:locale` → the template registered with that carrier (checked
/// when it was set: see `template::Template::parse`).
pub type Templates = BTreeMap<String, BTreeMap<String, String>>;

/// The key of a template in a carrier's map.
pub fn template_key(purpose: Purpose, locale: Locale) -> String {
    format!("{}:{}", purpose.as_str(), locale.as_str())
}

impl ApiClient {
    /// The template registered with `carrier` for this purpose and language, if any.
    pub fn template_for(&self, carrier: &str, purpose: Purpose, locale: Locale) -> Option<&str> {
        self.sms_templates
            .get(carrier)?
            .get(&template_key(purpose, locale))
            .map(String::as_str)
    }

    /// Whether the client registered any template with `carrier`: from then on it
    /// sends there only what it registered.
    pub fn registered_with(&self, carrier: &str) -> bool {
        self.sms_templates
            .get(carrier)
            .is_some_and(|t| !t.is_empty())
    }
}

/// The client of an API key that is neither revoked nor of a disabled client.
pub const CLIENT_BY_KEY_SQL: &str =
    "SELECT c.id, c.name, c.allowed_purposes, c.sender_ids, c.sms_templates, c.daily_sms_quota,
            c.requests_per_second, c.request_burst, c.otp_channels, c.otp_callback_url
     FROM api_keys k JOIN api_clients c ON c.id = k.client_id
     WHERE k.key_hash = $1 AND (k.revoked_at IS NULL OR k.revoked_at > now())
       AND c.disabled_at IS NULL";

/// The client of an API key that is neither revoked nor of a disabled client, if any.
pub async fn by_key(
    db: &deadpool_postgres::Client,
    key: &str,
) -> Result<Option<ApiClient>, crate::failure::Failure> {
    // Every request: one plan per connection (planning it was 0.15 ms a time).
    let row = crate::store::query_opt_indexed(db, CLIENT_BY_KEY_SQL, &[&hash_api_key(key)]).await?;
    let Some(row) = row else {
        return Ok(None);
    };
    let policy = Policy::from_row(&row)?;
    Ok(Some(ApiClient {
        id: row.get("id"),
        name: row.get("name"),
        allowed_purposes: policy.allowed_purposes,
        sender_ids: policy.sender_ids,
        sms_templates: policy.sms_templates,
        daily_sms_quota: policy.daily_sms_quota,
        requests_per_second: policy.requests_per_second.map(|v| v as u32),
        request_burst: policy.request_burst.map(|v| v as u32),
        otp_channels: policy.otp_channels,
        otp_callback_url: policy.otp_callback_url,
    }))
}

/// The client asked for a purpose it was not given.
#[derive(Debug, Clone, thiserror::Error)]
#[error("this client may not ask for purpose {purpose:?}")]
pub struct PurposeNotAllowed {
    pub purpose: String,
}

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

/// A client as `client list` shows it.
#[derive(Debug, Clone, postgres_from_row::FromRow)]
pub struct ClientInfo {
    pub id: Uuid,
    pub name: String,
    pub disabled: bool,
    /// Prefixes of keys not revoked.
    pub active_keys: Vec<String>,
}

pub async fn list(pool: &Pool) -> anyhow::Result<Vec<ClientInfo>> {
    let db = pool.get().await?;
    let rows = db
        .query(
            "SELECT c.id, c.name, c.disabled_at IS NOT NULL AS disabled,
                    coalesce(array_agg(k.key_prefix ORDER BY k.created_at)
                        FILTER (WHERE k.key_prefix IS NOT NULL
                                AND (k.revoked_at IS NULL OR k.revoked_at > now())), '{}')
                        AS active_keys
             FROM api_clients c LEFT JOIN api_keys k ON k.client_id = c.id
             GROUP BY c.id ORDER BY c.name",
            &[],
        )
        .await?;
    Ok(rows
        .iter()
        .map(<ClientInfo as postgres_from_row::FromRow>::try_from_row)
        .collect::<Result<_, _>>()?)
}

/// Disables or enables a client; every instance sees it on the next request (keys are
/// looked up in Postgres on each request).
pub async fn set_disabled(pool: &Pool, name: &str, disabled: bool) -> anyhow::Result<()> {
    let mut db = pool.get().await?;
    let tx = db.transaction().await?;
    let row = tx
        .query_opt(
            "UPDATE api_clients SET disabled_at = CASE WHEN $2 THEN now() END
             WHERE name = $1 RETURNING id",
            &[&name, &disabled],
        )
        .await?
        .with_context(|| format!("no client named {name}"))?;
    let id: Uuid = row.get(0);
    tx.execute(
        "INSERT INTO audit_events (client_id, event) VALUES ($1, $2)",
        &[
            &id,
            &if disabled {
                "client.disabled"
            } else {
                "client.enabled"
            },
        ],
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

/// A new key for the client; its other keys are revoked after `grace` (several keys are
/// valid at once during a rotation).
pub async fn rotate_key(
    pool: &Pool,
    name: &str,
    grace: std::time::Duration,
) -> anyhow::Result<String> {
    let key = new_api_key()?;
    let mut db = pool.get().await?;
    let tx = db.transaction().await?;
    let id: Uuid = tx
        .query_opt("SELECT id FROM api_clients WHERE name = $1", &[&name])
        .await?
        .with_context(|| format!("no client named {name}"))?
        .get(0);
    tx.execute(
        "UPDATE api_keys SET revoked_at = now() + make_interval(secs => $2::float8)
         WHERE client_id = $1 AND (revoked_at IS NULL OR revoked_at > now() + make_interval(secs => $2::float8))",
        &[&id, &grace.as_secs_f64()],
    )
    .await?;
    tx.execute(
        "INSERT INTO api_keys (key_hash, client_id, key_prefix) VALUES ($1, $2, $3)",
        &[&key.hash, &id, &key.prefix],
    )
    .await?;
    tx.execute(
        "INSERT INTO audit_events (client_id, event, detail)
         VALUES ($1, 'client.key_rotated', jsonb_build_object('key_prefix', $2::text, 'grace_seconds', $3::float8))",
        &[&id, &key.prefix, &grace.as_secs_f64()],
    )
    .await?;
    tx.commit().await?;
    Ok(key.key)
}

/// What `client set` changes; `None` leaves a setting as it is.
#[derive(Debug, Clone, Default)]
pub struct PolicyChange {
    /// `Some(None)`: every purpose.
    pub purposes: Option<Option<Vec<String>>>,
    /// Carrier → brandname; an empty brandname removes the carrier's own sender.
    pub senders: Vec<(String, String)>,
    /// (carrier, purpose, locale, template); an empty template removes it.
    pub templates: Vec<(String, String, String, String)>,
    /// `Some(None)`: back to the configured default.
    pub daily_sms_quota: Option<Option<i64>>,
    pub requests_per_second: Option<Option<u32>>,
    pub request_burst: Option<Option<u32>>,
    /// `Some(None)`: back to SMS only.
    pub otp_channels: Option<Option<Vec<String>>>,
    /// `Some(None)`: no OTP events.
    pub otp_callback_url: Option<Option<String>>,
}

/// A client's policy as stored.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Policy {
    pub allowed_purposes: Option<Vec<String>>,
    pub sender_ids: std::collections::BTreeMap<String, String>,
    /// Shown once there is one.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub sms_templates: Templates,
    pub daily_sms_quota: Option<i64>,
    pub requests_per_second: Option<i32>,
    pub request_burst: Option<i32>,
    /// The default channel workflow; none: SMS only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub otp_channels: Option<Vec<Channel>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub otp_callback_url: Option<String>,
}

/// Purposes a client can be given: the OTP purposes (the signature purposes are among
/// them).
fn known_purpose(p: &str) -> bool {
    crate::domain::Purpose::ALL.iter().any(|k| k.as_str() == p)
}

/// Applies `change` to client `name` in one transaction and audits it; returns the
/// policy now in force. Every instance applies it from the client's next request.
pub async fn set_policy(pool: &Pool, name: &str, change: &PolicyChange) -> anyhow::Result<Policy> {
    if let Some(Some(purposes)) = &change.purposes {
        anyhow::ensure!(!purposes.is_empty(), "give at least one purpose, or `all`");
        for p in purposes {
            anyhow::ensure!(
                known_purpose(p),
                "unknown purpose {p:?}; known: {}",
                crate::domain::Purpose::ALL.map(|k| k.as_str()).join(", ")
            );
        }
    }
    for (carrier, sender) in &change.senders {
        let parsed: crate::domain::Carrier = carrier.parse().map_err(|e| anyhow::anyhow!("{e}"))?;
        anyhow::ensure!(
            parsed.as_str() == carrier,
            "write the carrier as {:?}",
            parsed.as_str()
        );
        anyhow::ensure!(
            sender.is_empty() || valid_brandname(sender),
            "sender {sender:?} must be 1..=11 letters, digits, space or .-_&, or up to 15 digits"
        );
    }
    // Each template checked, and kept as read: composed (NFC), as the SMSC sees the text.
    let mut templates = Vec::with_capacity(change.templates.len());
    for (carrier, purpose, locale, template) in &change.templates {
        let parsed: crate::domain::Carrier = carrier.parse().map_err(|e| anyhow::anyhow!("{e}"))?;
        anyhow::ensure!(
            parsed.as_str() == carrier,
            "write the carrier as {:?}",
            parsed.as_str()
        );
        anyhow::ensure!(
            Purpose::ALL.iter().any(|p| p.as_str() == purpose),
            "unknown purpose {purpose:?}; known: {}",
            Purpose::ALL.map(|k| k.as_str()).join(", ")
        );
        locale
            .parse::<Locale>()
            .map_err(|e| anyhow::anyhow!("{e}; known: vi, en"))?;
        let template = if template.is_empty() {
            String::new()
        } else {
            Template::parse(template)
                .map_err(|e| anyhow::anyhow!("template {carrier}:{purpose}:{locale}: {e}"))?
                .source()
                .to_owned()
        };
        templates.push((carrier, purpose, locale, template));
    }
    if let Some(Some(quota)) = change.daily_sms_quota {
        anyhow::ensure!(quota >= 0, "the daily SMS quota cannot be negative");
    }
    for (what, v) in [
        ("requests per second", change.requests_per_second.flatten()),
        ("burst", change.request_burst.flatten()),
    ] {
        if let Some(v) = v {
            anyhow::ensure!(
                (1..=i32::MAX as u32).contains(&v),
                "{what} must be 1..={}",
                i32::MAX
            );
        }
    }
    let channels = match &change.otp_channels {
        Some(Some(names)) => Some(Some(
            Channel::parse_workflow(names)
                .map_err(|e| anyhow::anyhow!("channels: {e}"))?
                .iter()
                .map(|c| c.as_str().to_owned())
                .collect::<Vec<_>>(),
        )),
        Some(None) => Some(None),
        None => None,
    };
    if let Some(Some(url)) = &change.otp_callback_url {
        check_callback_url(url)?;
    }
    let mut db = pool.get().await?;
    let tx = db.transaction().await?;
    let id: Uuid = tx
        .query_opt(
            "SELECT id FROM api_clients WHERE name = $1 FOR UPDATE",
            &[&name],
        )
        .await?
        .with_context(|| format!("no client named {name}"))?
        .get(0);
    if let Some(purposes) = &change.purposes {
        tx.execute(
            "UPDATE api_clients SET allowed_purposes = $2 WHERE id = $1",
            &[&id, purposes],
        )
        .await?;
    }
    for (carrier, sender) in &change.senders {
        if sender.is_empty() {
            tx.execute(
                "UPDATE api_clients SET sender_ids = sender_ids - $2 WHERE id = $1",
                &[&id, carrier],
            )
            .await?;
        } else {
            tx.execute(
                "UPDATE api_clients SET sender_ids = sender_ids || jsonb_build_object($2::text, $3::text)
                 WHERE id = $1",
                &[&id, carrier, sender],
            )
            .await?;
        }
    }
    if !templates.is_empty() {
        let stored: serde_json::Value = tx
            .query_one(
                "SELECT sms_templates FROM api_clients WHERE id = $1",
                &[&id],
            )
            .await?
            .get(0);
        let mut stored_templates: Templates =
            serde_json::from_value(stored).context("stored sms_templates unreadable")?;
        for (carrier, purpose, locale, template) in &templates {
            let key = format!("{purpose}:{locale}");
            if template.is_empty() {
                if let Some(of_carrier) = stored_templates.get_mut(carrier.as_str()) {
                    of_carrier.remove(&key);
                    if of_carrier.is_empty() {
                        stored_templates.remove(carrier.as_str());
                    }
                }
            } else {
                stored_templates
                    .entry(carrier.to_string())
                    .or_default()
                    .insert(key, template.clone());
            }
        }
        tx.execute(
            "UPDATE api_clients SET sms_templates = $2 WHERE id = $1",
            &[&id, &serde_json::to_value(&stored_templates)?],
        )
        .await?;
    }
    if let Some(quota) = change.daily_sms_quota {
        tx.execute(
            "UPDATE api_clients SET daily_sms_quota = $2 WHERE id = $1",
            &[&id, &quota],
        )
        .await?;
    }
    if let Some(rps) = change.requests_per_second {
        tx.execute(
            "UPDATE api_clients SET requests_per_second = $2 WHERE id = $1",
            &[&id, &rps.map(|v| v as i32)],
        )
        .await?;
    }
    if let Some(burst) = change.request_burst {
        tx.execute(
            "UPDATE api_clients SET request_burst = $2 WHERE id = $1",
            &[&id, &burst.map(|v| v as i32)],
        )
        .await?;
    }
    if let Some(channels) = &channels {
        tx.execute(
            "UPDATE api_clients SET otp_channels = $2 WHERE id = $1",
            &[&id, channels],
        )
        .await?;
    }
    if let Some(url) = &change.otp_callback_url {
        tx.execute(
            "UPDATE api_clients SET otp_callback_url = $2 WHERE id = $1",
            &[&id, url],
        )
        .await?;
    }
    let policy = policy_in(&tx, id).await?;
    tx.execute(
        "INSERT INTO audit_events (client_id, event, detail) VALUES ($1, 'client.policy_changed', $2)",
        &[&id, &serde_json::to_value(&policy)?],
    )
    .await?;
    tx.commit().await?;
    Ok(policy)
}

/// Client `name`'s policy.
pub async fn policy(pool: &Pool, name: &str) -> anyhow::Result<Policy> {
    let db = pool.get().await?;
    let id: Uuid = db
        .query_opt("SELECT id FROM api_clients WHERE name = $1", &[&name])
        .await?
        .with_context(|| format!("no client named {name}"))?
        .get(0);
    policy_in(&db, id).await
}

async fn policy_in(db: &impl deadpool_postgres::GenericClient, id: Uuid) -> anyhow::Result<Policy> {
    let row = db
        .query_one(
            "SELECT allowed_purposes, sender_ids, sms_templates, daily_sms_quota,
                    requests_per_second, request_burst, otp_channels, otp_callback_url
             FROM api_clients WHERE id = $1",
            &[&id],
        )
        .await?;
    Policy::from_row(&row)
}

impl Policy {
    /// From a row holding the `api_clients` policy columns by name (the key lookup on
    /// every request reads them too).
    pub fn from_row(row: &tokio_postgres::Row) -> anyhow::Result<Policy> {
        Ok(Policy {
            allowed_purposes: row.try_get("allowed_purposes")?,
            sender_ids: serde_json::from_value(row.try_get("sender_ids")?)
                .context("stored sender_ids unreadable")?,
            sms_templates: serde_json::from_value(row.try_get("sms_templates")?)
                .context("stored sms_templates unreadable")?,
            daily_sms_quota: row.try_get("daily_sms_quota")?,
            requests_per_second: row.try_get("requests_per_second")?,
            request_burst: row.try_get("request_burst")?,
            otp_channels: row
                .try_get::<_, Option<Vec<String>>>("otp_channels")?
                .map(|names| Channel::parse_workflow(&names))
                .transpose()
                .map_err(|e| anyhow::anyhow!("stored otp_channels unreadable: {e}"))?,
            otp_callback_url: row.try_get("otp_callback_url")?,
        })
    }
}

/// An http(s) URL of at most 2048 characters, where a client's events can be sent.
pub fn check_callback_url(url: &str) -> anyhow::Result<()> {
    let parsed = reqwest::Url::parse(url).map_err(|e| anyhow::anyhow!("callback URL: {e}"))?;
    anyhow::ensure!(
        matches!(parsed.scheme(), "http" | "https") && url.len() <= 2048,
        "a callback URL must be http(s) and at most 2048 characters"
    );
    Ok(())
}
