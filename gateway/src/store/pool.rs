//! The connection pool, and creating (or dropping) the database a URL names.

use std::str::FromStr;

use anyhow::Context;
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use tokio_postgres::NoTls;

/// How long a request waits for a pooled connection, a new connection or a recycle check
/// before it is answered 503.
const POOL_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

pub fn pool(url: &str, size: usize) -> anyhow::Result<Pool> {
    let mut pg_config = tokio_postgres::Config::from_str(url)
        .context("DATABASE_URL is not a valid PostgreSQL URL")?;
    // Statements are prepared once per connection (`Cached`), but planned for their
    // parameters on every run: a generic plan made while a table was small (a fresh
    // database) would otherwise be kept for the connection's life and scan the whole
    // table once it has grown. Options given in the URL come first and win.
    let options = pg_config.get_options().unwrap_or_default().to_owned();
    pg_config.options(format!("-c plan_cache_mode=force_custom_plan {options}").trim());
    // A database host that stops answering (no reset, no refusal) must give 503s within
    // seconds, not hang requests for the operating system's TCP timeouts: a bounded
    // connect, keepalives that notice a dead peer, and a bounded wait for a connection.
    // A URL's own connect_timeout wins.
    if pg_config.get_connect_timeout().is_none() {
        pg_config.connect_timeout(POOL_TIMEOUT);
    }
    pg_config
        .keepalives(true)
        .keepalives_idle(std::time::Duration::from_secs(10))
        .keepalives_interval(std::time::Duration::from_secs(2))
        .keepalives_retries(3);
    let manager = Manager::from_config(
        pg_config,
        NoTls,
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    Pool::builder(manager)
        .max_size(size)
        .runtime(deadpool_postgres::Runtime::Tokio1)
        .wait_timeout(Some(POOL_TIMEOUT))
        .create_timeout(Some(POOL_TIMEOUT))
        .recycle_timeout(Some(POOL_TIMEOUT))
        .build()
        .context("building the database pool")
}

/// Whether the database answers `SELECT 1` within `within`, a connection included.
pub async fn answers(pool: &Pool, within: std::time::Duration) -> bool {
    tokio::time::timeout(within, async {
        match pool.get().await {
            Ok(c) => c.query_one("SELECT 1", &[]).await.is_ok(),
            Err(_) => false,
        }
    })
    .await
    .unwrap_or(false)
}

/// Creates the database named in `url` if it does not exist, connecting to the
/// server's `postgres` database to do it.
pub async fn ensure_database(url: &str) -> anyhow::Result<()> {
    let config = tokio_postgres::Config::from_str(url).context("invalid database URL")?;
    let name = config
        .get_dbname()
        .context("the database URL names no database")?
        .to_owned();
    match config.connect(NoTls).await {
        Ok(_) => return Ok(()),
        Err(e) if e.code() == Some(&tokio_postgres::error::SqlState::INVALID_CATALOG_NAME) => {}
        Err(e) => {
            return Err(anyhow::Error::new(e).context(format!(
                "cannot connect to PostgreSQL at {}",
                describe(&config)
            )))
        }
    }
    let mut admin = config.clone();
    admin.dbname("postgres");
    let (client, connection) = admin
        .connect(NoTls)
        .await
        .with_context(|| format!("cannot connect to PostgreSQL at {}", describe(&config)))?;
    tokio::spawn(connection);
    let sql = format!("CREATE DATABASE {}", quote_ident(&name));
    match client.batch_execute(&sql).await {
        Ok(()) => {
            tracing::info!(database = %name, "created database");
            Ok(())
        }
        // Another instance created it at the same moment.
        Err(e) if e.code() == Some(&tokio_postgres::error::SqlState::DUPLICATE_DATABASE) => Ok(()),
        Err(e) => Err(anyhow::Error::new(e).context(format!("creating database {name}"))),
    }
}

/// Drops a database (tests and the demo's throwaway databases).
pub async fn drop_database(url: &str) -> anyhow::Result<()> {
    let config = tokio_postgres::Config::from_str(url)?;
    let name = config.get_dbname().context("no database name")?.to_owned();
    let mut admin = config.clone();
    admin.dbname("postgres");
    let (client, connection) = admin.connect(NoTls).await?;
    tokio::spawn(connection);
    client
        .batch_execute(&format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            quote_ident(&name)
        ))
        .await?;
    Ok(())
}

fn describe(config: &tokio_postgres::Config) -> String {
    let host = config
        .get_hosts()
        .first()
        .map(|h| match h {
            tokio_postgres::config::Host::Tcp(h) => h.clone(),
            #[cfg(unix)]
            tokio_postgres::config::Host::Unix(p) => p.display().to_string(),
        })
        .unwrap_or_else(|| "localhost".into());
    let port = config.get_ports().first().copied().unwrap_or(5432);
    format!("{host}:{port}")
}

pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}
