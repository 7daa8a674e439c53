//! The Zalo OA app's client: sends ZNS messages and asks where they are, with an access
//! token refreshed as Zalo requires. A refresh token works once, so the one Zalo gave
//! last is kept in the database (sealed), and an instance refreshes only while holding
//! its row: two instances never spend the same refresh token, and a restart goes on
//! from the last one. A different refresh token in the configuration (an operator's new
//! one, after Zalo refused the stored one) takes over from it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use carrier_adapters::zns::{self, Accepted, Delivery, Refusal, SendRequest, Tokens};
use secrecy::ExposeSecret;

use crate::config::ZaloSettings;
use crate::crypto::ServerKeys;
use crate::failure::Failure;
use crate::store::Cached;

/// Why a ZNS call did not give an answer about the message.
#[derive(Debug, thiserror::Error)]
pub enum ZaloError {
    /// Zalo answered and refused.
    #[error(transparent)]
    Refused(Refusal),
    /// Zalo did not answer usably (network, timeout, HTTP error, not its JSON): may
    /// work later.
    #[error("ZNS did not answer: {0}")]
    Unavailable(String),
    /// Zalo refused the refresh token: nothing can be sent until an operator gives a
    /// new one (`[zalo].refresh_token`: a different one takes over from the stored one).
    #[error("Zalo refused the refresh token: {0}")]
    RefreshRefused(String),
    #[error(transparent)]
    Failure(#[from] Failure),
}
crate::failure_from!(ZaloError);

/// Refresh this long before Zalo says the token ends.
const EARLY: Duration = Duration::from_secs(60);
/// A token Zalo refuses is refreshed only if it is at least this old.
const REFRESH_AGAIN_AFTER: Duration = Duration::from_secs(5);

pub struct ZaloClient {
    settings: ZaloSettings,
    pool: deadpool_postgres::Pool,
    keys: Arc<ServerKeys>,
    http: reqwest::Client,
    /// The access token this instance last had, and until when to use it.
    cached: tokio::sync::Mutex<Option<(String, Instant)>>,
}

impl std::fmt::Debug for ZaloClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ZaloClient")
            .field("app_id", &self.settings.app_id)
            .finish()
    }
}

fn aad(app_id: &str, which: &str) -> String {
    format!("zalo_tokens:{app_id}:{which}")
}

impl ZaloClient {
    pub fn new(
        settings: ZaloSettings,
        pool: deadpool_postgres::Pool,
        keys: Arc<ServerKeys>,
    ) -> anyhow::Result<ZaloClient> {
        let http = reqwest::Client::builder()
            .timeout(settings.request_timeout)
            .build()?;
        Ok(ZaloClient {
            settings,
            pool,
            keys,
            http,
            cached: tokio::sync::Mutex::new(None),
        })
    }

    pub fn settings(&self) -> &ZaloSettings {
        &self.settings
    }

    /// Sends a template message.
    pub async fn send(&self, req: &SendRequest) -> Result<Accepted, ZaloError> {
        let url = format!("{}/message/template", self.settings.api_base);
        self.with_token(
            |token| self.http.post(&url).header("access_token", token).json(req),
            zns::parse_send,
        )
        .await
    }

    /// Where a sent message is.
    pub async fn status(&self, msg_id: &str, phone: &str) -> Result<Delivery, ZaloError> {
        let url = format!("{}/message/status", self.settings.api_base);
        let query = [("message_id", msg_id), ("phone", phone)];
        self.with_token(
            |token| {
                self.http
                    .get(&url)
                    .header("access_token", token)
                    .query(&query)
            },
            zns::parse_status,
        )
        .await
    }

    /// Makes a call with the access token and reads Zalo's answer; a token Zalo no
    /// longer takes is refreshed and the call made once more.
    async fn with_token<T>(
        &self,
        request: impl Fn(&str) -> reqwest::RequestBuilder,
        parse: impl Fn(&[u8]) -> Result<Result<T, Refusal>, zns::Unreadable>,
    ) -> Result<T, ZaloError> {
        let call = |token: String| {
            let req = request(&token);
            let parse = &parse;
            async move {
                let body = self.answer(req).await?;
                parse(&body).map_err(|e| ZaloError::Unavailable(e.to_string()))
            }
        };
        let token = self.access_token(None).await?;
        match call(token.clone()).await? {
            Err(Refusal::AccessToken { .. }) => {
                let token = self.access_token(Some(&token)).await?;
                call(token).await?.map_err(ZaloError::Refused)
            }
            other => other.map_err(ZaloError::Refused),
        }
    }

    /// The body of a 2xx answer.
    async fn answer(&self, req: reqwest::RequestBuilder) -> Result<Vec<u8>, ZaloError> {
        // Without the URL: a status query's holds the phone number.
        let resp = req
            .send()
            .await
            .map_err(|e| ZaloError::Unavailable(e.without_url().to_string()))?;
        let status = resp.status();
        if !status.is_success() {
            return Err(ZaloError::Unavailable(format!("HTTP {status}")));
        }
        resp.bytes()
            .await
            .map(|b| b.to_vec())
            .map_err(|e| ZaloError::Unavailable(e.without_url().to_string()))
    }

    /// A usable access token: this instance's, else the database's, else a new one.
    /// `stale` is one Zalo just refused: it is not given again.
    async fn access_token(&self, stale: Option<&str>) -> Result<String, ZaloError> {
        let mut cached = self.cached.lock().await;
        if let Some((token, until)) = cached.as_ref() {
            if Some(token.as_str()) != stale && *until > Instant::now() {
                return Ok(token.clone());
            }
        }
        let (token, until) = self.shared_token(stale).await?;
        *cached = Some((token.clone(), until));
        Ok(token)
    }

    /// Reads, or refreshes under the row's lock, the token every instance shares.
    async fn shared_token(&self, stale: Option<&str>) -> Result<(String, Instant), ZaloError> {
        let app_id = &self.settings.app_id;
        let mut db = self.pool.get().await?;
        let tx = db.transaction().await?;
        // The configured refresh token starts the chain the first time, and again once
        // when an operator configures a new one (Zalo refused the stored one, or it was
        // lost); an instance still configured with an older one does not bring it back.
        // Otherwise the stored one, which Zalo gave last, is used.
        let configured = self.settings.refresh_token.expose_secret();
        let seed_hash = crate::crypto::sha256(configured.as_bytes());
        let seed = self.keys.seal(configured, &aad(app_id, "refresh"))?;
        let taken_over = tx
            .execute_cached(
                "INSERT INTO zalo_tokens AS t (app_id, refresh_token_sealed, seed_hash)
                 VALUES ($1, $2, $3)
                 ON CONFLICT (app_id) DO UPDATE SET refresh_token_sealed = EXCLUDED.refresh_token_sealed,
                    seed_hash = EXCLUDED.seed_hash, retired_seeds = t.retired_seeds || t.seed_hash,
                    access_token_sealed = NULL, access_expires_at = NULL, refreshed_at = now()
                 WHERE t.seed_hash <> EXCLUDED.seed_hash
                   AND NOT (EXCLUDED.seed_hash = ANY (t.retired_seeds))",
                &[app_id, &seed, &seed_hash],
            )
            .await?;
        if taken_over == 1 {
            tracing::info!(app_id = %app_id, "Zalo refresh token from the configuration in use");
        }
        let row = tx
            .query_one_cached(
                "SELECT access_token_sealed, refresh_token_sealed,
                        extract(epoch FROM access_expires_at - now())::float8 AS left_s,
                        extract(epoch FROM now() - refreshed_at)::float8 AS age_s
                 FROM zalo_tokens WHERE app_id = $1 FOR UPDATE",
                &[app_id],
            )
            .await?;
        let access: Option<Vec<u8>> = row.get("access_token_sealed");
        let left: Option<f64> = row.get("left_s");
        if let (Some(sealed), Some(left)) = (access, left) {
            let token = self.keys.open(&sealed, &aad(app_id, "access"))?;
            let usable = Duration::from_secs_f64(left.max(0.0)).saturating_sub(EARLY);
            // Another instance may have refreshed while this one waited for the row.
            if Some(token.as_str()) != stale && !usable.is_zero() {
                tx.commit().await?;
                return Ok((token, Instant::now() + usable));
            }
            // Zalo refuses a token it gave moments ago (it revoked the app's tokens):
            // another refresh would only spend one more; Zalo's answer stands for now.
            let age: f64 = row.get("age_s");
            if Some(token.as_str()) == stale && age < REFRESH_AGAIN_AFTER.as_secs_f64() {
                tx.commit().await?;
                return Err(ZaloError::Refused(Refusal::AccessToken {
                    code: -124,
                    message: "Zalo refuses the access token it gave moments ago".into(),
                }));
            }
        }
        let refresh_sealed: Vec<u8> = row.get("refresh_token_sealed");
        let refresh = self.keys.open(&refresh_sealed, &aad(app_id, "refresh"))?;
        let tokens = self.refresh(&refresh).await?;
        let access_sealed = self
            .keys
            .seal(&tokens.access_token, &aad(app_id, "access"))?;
        let refresh_sealed = self
            .keys
            .seal(&tokens.refresh_token, &aad(app_id, "refresh"))?;
        tx.execute_cached(
            "UPDATE zalo_tokens SET access_token_sealed = $2, refresh_token_sealed = $3,
                access_expires_at = now() + make_interval(secs => $4::float8), refreshed_at = now()
             WHERE app_id = $1",
            &[
                app_id,
                &access_sealed,
                &refresh_sealed,
                &(tokens.expires_in_seconds as f64),
            ],
        )
        .await?;
        // If this commit is lost, the new refresh token is too, and Zalo has spent the
        // old one: an operator then gives a new one (the error says so).
        tx.commit().await?;
        tracing::info!(app_id = %app_id, expires_in_s = tokens.expires_in_seconds, "Zalo access token refreshed");
        let usable = Duration::from_secs(tokens.expires_in_seconds).saturating_sub(EARLY);
        Ok((tokens.access_token, Instant::now() + usable))
    }

    async fn refresh(&self, refresh_token: &str) -> Result<Tokens, ZaloError> {
        let url = format!("{}/v4/oa/access_token", self.settings.oauth_base);
        let body = self
            .answer(
                self.http
                    .post(&url)
                    .header("secret_key", self.settings.secret_key.expose_secret())
                    .form(&zns::refresh_form(&self.settings.app_id, refresh_token)),
            )
            .await?;
        zns::parse_refresh(&body).map_err(|e| match e {
            zns::RefreshError::Refused { .. } => ZaloError::RefreshRefused(e.to_string()),
            zns::RefreshError::Unreadable(u) => ZaloError::Unavailable(u.to_string()),
        })
    }
}
