//! PostgreSQL: the pool, creating the database when missing, and migrations.

use std::str::FromStr;
use std::sync::LazyLock;

use anyhow::Context;
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use tokio_postgres::NoTls;

/// Migrations in order, embedded from `migrations/` so the binary carries its schema.
const MIGRATIONS: &[(&str, &str)] = &[
    ("0001_otp", include_str!("../../migrations/0001_otp.sql")),
    (
        "0002_signatures",
        include_str!("../../migrations/0002_signatures.sql"),
    ),
    (
        "0003_receipt_forms",
        include_str!("../../migrations/0003_receipt_forms.sql"),
    ),
    (
        "0004_ported_numbers",
        include_str!("../../migrations/0004_ported_numbers.sql"),
    ),
    (
        "0005_sms_parts",
        include_str!("../../migrations/0005_sms_parts.sql"),
    ),
    (
        "0006_send_limits",
        include_str!("../../migrations/0006_send_limits.sql"),
    ),
    (
        "0007_audit",
        include_str!("../../migrations/0007_audit.sql"),
    ),
    (
        "0008_client_quota",
        include_str!("../../migrations/0008_client_quota.sql"),
    ),
    (
        "0009_account_lockout",
        include_str!("../../migrations/0009_account_lockout.sql"),
    ),
    (
        "0010_billing",
        include_str!("../../migrations/0010_billing.sql"),
    ),
    (
        "0011_client_ip",
        include_str!("../../migrations/0011_client_ip.sql"),
    ),
    (
        "0012_client_policy",
        include_str!("../../migrations/0012_client_policy.sql"),
    ),
    (
        "0013_guard_stats",
        include_str!("../../migrations/0013_guard_stats.sql"),
    ),
    (
        "0014_outbox_request_id",
        include_str!("../../migrations/0014_outbox_request_id.sql"),
    ),
    (
        "0015_hot_path_indexes",
        include_str!("../../migrations/0015_hot_path_indexes.sql"),
    ),
    (
        "0016_status_reads",
        include_str!("../../migrations/0016_status_reads.sql"),
    ),
    (
        "0017_outbox_unsent",
        include_str!("../../migrations/0017_outbox_unsent.sql"),
    ),
    (
        "0018_mssp_ids_per_live_request",
        include_str!("../../migrations/0018_mssp_ids_per_live_request.sql"),
    ),
    (
        "0019_outbox_client_ip",
        include_str!("../../migrations/0019_outbox_client_ip.sql"),
    ),
];

/// Arbitrary constant: the advisory lock that serialises migrations across instances.
const MIGRATION_LOCK: i64 = 0x6f74_7067_7731;

/// Sent in a transaction before statements whose best plan does not depend on the data:
/// inserts from arrays, and the outbox claim's walk of its index. Their plan is made
/// once per connection and kept (PostgreSQL's generic plan) instead of once per run, as
/// the pool's default has it. Planning was about two thirds of the database's time per
/// OTP at low rates (pg_stat_statements, BENCHMARKS.md); a statement that reads a table
/// by a condition whose best plan changes as the table grows must not follow this.
pub const PLAN_ONCE: &str = "SET LOCAL plan_cache_mode = force_generic_plan";

/// Sent first in a transaction whose every statement finds its rows through an index by
/// keys it is given (arrays of keys joined to a primary key, ranges of an index): one plan
/// per connection, as `PLAN_ONCE`, made with only index paths allowed. A plan made while
/// a table was small could otherwise scan or hash it whole and be kept after it grew; with
/// these settings the plan is the index walk at any size. `tests/api/plans.rs` checks
/// each such statement's plan on an empty and on a large, analysed database.
pub static INDEXED_PLAN_ONCE: LazyLock<String> =
    LazyLock::new(|| indexed_settings(|name, value| format!("SET LOCAL {name} = {value}")));

/// The settings of `INDEXED_PLAN_ONCE`, one list for its three forms.
const INDEXED_SETTINGS: [(&str, &str); 5] = [
    ("plan_cache_mode", "force_generic_plan"),
    ("enable_seqscan", "off"),
    ("enable_bitmapscan", "off"),
    ("enable_hashjoin", "off"),
    ("enable_mergejoin", "off"),
];

fn indexed_settings(statement: impl Fn(&str, &str) -> String) -> String {
    INDEXED_SETTINGS
        .iter()
        .map(|(name, value)| statement(name, value))
        .collect::<Vec<_>>()
        .join("; ")
}

static INDEXED_SESSION: LazyLock<String> =
    LazyLock::new(|| indexed_settings(|name, value| format!("SET {name} = {value}")));
static INDEXED_RESET: LazyLock<String> =
    LazyLock::new(|| indexed_settings(|name, _| format!("RESET {name}")));

/// `INDEXED_PLAN_ONCE` for one statement outside a transaction (the API-key lookup): the
/// settings, the statement and their reset go out in one flight, in that order. The
/// statement is prepared before, so that its execution cannot overtake the settings.
pub async fn query_opt_indexed(
    client: &deadpool_postgres::Client,
    sql: &str,
    params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
) -> Result<Option<tokio_postgres::Row>, tokio_postgres::Error> {
    let statement = client.prepare_cached(sql).await?;
    let (_, row, _) = tokio::try_join!(
        client.batch_execute(&INDEXED_SESSION),
        client.query_opt(&statement, params),
        client.batch_execute(&INDEXED_RESET),
    )?;
    Ok(row)
}

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

/// Applies pending migrations, each in its own transaction, under an advisory lock so
/// that instances starting together do not race.
pub async fn migrate(pool: &Pool) -> anyhow::Result<usize> {
    let mut client = pool.get().await.context("connecting to the database")?;
    client
        .execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK])
        .await?;
    let result = apply(&mut client).await;
    client
        .execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK])
        .await?;
    result
}

async fn apply(client: &mut deadpool_postgres::Object) -> anyhow::Result<usize> {
    client
        .batch_execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations (
                name text PRIMARY KEY,
                applied_at timestamptz NOT NULL DEFAULT now()
            )",
        )
        .await?;
    let mut applied = 0;
    for (name, sql) in MIGRATIONS {
        let done = client
            .query_opt("SELECT 1 FROM schema_migrations WHERE name = $1", &[name])
            .await?
            .is_some();
        if done {
            continue;
        }
        let tx = client.transaction().await?;
        tx.batch_execute(sql)
            .await
            .with_context(|| format!("migration {name} failed"))?;
        tx.execute("INSERT INTO schema_migrations (name) VALUES ($1)", &[name])
            .await?;
        tx.commit().await?;
        tracing::info!(migration = name, "applied");
        applied += 1;
    }
    Ok(applied)
}

/// Queries through the connection's statement cache: each distinct SQL text is parsed
/// and planned once per connection, not on every call, and costs one round trip instead
/// of two. Use it for SQL whose text is fixed (or one of a few variants).
pub trait Cached {
    fn query_cached<'a>(
        &'a self,
        sql: &'a str,
        params: &'a [&'a (dyn tokio_postgres::types::ToSql + Sync)],
    ) -> impl std::future::Future<Output = Result<Vec<tokio_postgres::Row>, tokio_postgres::Error>>
           + Send
           + 'a;

    fn query_one_cached<'a>(
        &'a self,
        sql: &'a str,
        params: &'a [&'a (dyn tokio_postgres::types::ToSql + Sync)],
    ) -> impl std::future::Future<Output = Result<tokio_postgres::Row, tokio_postgres::Error>> + Send + 'a;

    fn query_opt_cached<'a>(
        &'a self,
        sql: &'a str,
        params: &'a [&'a (dyn tokio_postgres::types::ToSql + Sync)],
    ) -> impl std::future::Future<Output = Result<Option<tokio_postgres::Row>, tokio_postgres::Error>>
           + Send
           + 'a;

    fn execute_cached<'a>(
        &'a self,
        sql: &'a str,
        params: &'a [&'a (dyn tokio_postgres::types::ToSql + Sync)],
    ) -> impl std::future::Future<Output = Result<u64, tokio_postgres::Error>> + Send + 'a;
}

#[allow(clippy::manual_async_fn)] // `async fn` would not promise `Send`
impl<C: deadpool_postgres::GenericClient + Sync> Cached for C {
    fn query_cached<'a>(
        &'a self,
        sql: &'a str,
        params: &'a [&'a (dyn tokio_postgres::types::ToSql + Sync)],
    ) -> impl std::future::Future<Output = Result<Vec<tokio_postgres::Row>, tokio_postgres::Error>>
           + Send
           + 'a {
        async move {
            let statement = self.prepare_cached(sql).await?;
            self.query(&statement, params).await
        }
    }

    fn query_one_cached<'a>(
        &'a self,
        sql: &'a str,
        params: &'a [&'a (dyn tokio_postgres::types::ToSql + Sync)],
    ) -> impl std::future::Future<Output = Result<tokio_postgres::Row, tokio_postgres::Error>> + Send + 'a
    {
        async move {
            let statement = self.prepare_cached(sql).await?;
            self.query_one(&statement, params).await
        }
    }

    fn query_opt_cached<'a>(
        &'a self,
        sql: &'a str,
        params: &'a [&'a (dyn tokio_postgres::types::ToSql + Sync)],
    ) -> impl std::future::Future<Output = Result<Option<tokio_postgres::Row>, tokio_postgres::Error>>
           + Send
           + 'a {
        async move {
            let statement = self.prepare_cached(sql).await?;
            self.query_opt(&statement, params).await
        }
    }

    fn execute_cached<'a>(
        &'a self,
        sql: &'a str,
        params: &'a [&'a (dyn tokio_postgres::types::ToSql + Sync)],
    ) -> impl std::future::Future<Output = Result<u64, tokio_postgres::Error>> + Send + 'a {
        async move {
            let statement = self.prepare_cached(sql).await?;
            self.execute(&statement, params).await
        }
    }
}

/// Whether a database error means "the database cannot answer right now" rather than a
/// bug: the connection is gone (closed, reset, terminated by an administrator or a
/// restart), the server cannot take connections or is read-only (a standby after a
/// failover), or the transaction lost a serialization or deadlock race and may simply be
/// run again.
pub fn db_unavailable(e: &tokio_postgres::Error) -> bool {
    if e.is_closed() {
        return true;
    }
    if let Some(code) = e.code() {
        let code = code.code();
        return code.starts_with("08") // connection exception
            || code.starts_with("53") // insufficient resources (too many connections, …)
            || matches!(
                code,
                "57P01" // admin_shutdown (pg_terminate_backend, smart/fast shutdown)
                    | "57P02" // crash_shutdown
                    | "57P03" // cannot_connect_now (starting up, shutting down)
                    | "57P05" // idle_session_timeout
                    | "57014" // query_canceled (statement_timeout)
                    | "40001" // serialization_failure
                    | "40P01" // deadlock_detected
                    | "25006" // read_only_sql_transaction (a standby)
                    | "55P03" // lock_not_available (lock_timeout)
            );
    }
    // No SQLSTATE: the socket failed under the query.
    std::error::Error::source(e).is_some_and(|s| s.is::<std::io::Error>())
}

/// Whether running the same transaction again may succeed at once: it lost a
/// serialization or deadlock race.
pub fn db_conflict(e: &tokio_postgres::Error) -> bool {
    e.code()
        .is_some_and(|c| matches!(c.code(), "40001" | "40P01"))
}

/// [`db_unavailable`] anywhere in an error's chain, or a pool that could not give a
/// connection: the database could not answer; the same work may succeed later.
pub fn chain_unavailable(e: &anyhow::Error) -> bool {
    e.chain().any(|cause| {
        cause
            .downcast_ref::<tokio_postgres::Error>()
            .is_some_and(db_unavailable)
            || cause.is::<deadpool_postgres::PoolError>()
    })
}

#[cfg(test)]
mod tests {
    /// Every file in migrations/ is embedded, in order, and nothing else.
    #[test]
    fn every_migration_file_is_embedded() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../migrations");
        let mut files: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".sql"))
            .map(|n| n.trim_end_matches(".sql").to_owned())
            .collect();
        files.sort();
        let embedded: Vec<String> = super::MIGRATIONS
            .iter()
            .map(|(n, _)| n.to_string())
            .collect();
        assert_eq!(embedded, files);
    }
}
