//! The schema: `migrations/V{n}__{name}.sql`, embedded in the binary and applied by
//! refinery, each in its own transaction, under an advisory lock so that instances
//! starting together do not race (refinery takes none).
//!
//! Databases made before refinery kept their history in `schema_migrations` (one row per
//! applied file, named `0001_otp`); the first run under refinery copies that history
//! into `refinery_schema_history` before it looks for pending migrations, so that an
//! upgraded database applies only what it lacks. The old table is left as it was.

use anyhow::Context;
use deadpool_postgres::Pool;

mod embedded {
    refinery::embed_migrations!("../migrations");
}

/// Arbitrary constant: the advisory lock that serialises migrations across instances.
const MIGRATION_LOCK: i64 = 0x6f74_7067_7731;

/// refinery's history table (its default name).
const HISTORY: &str = "refinery_schema_history";

/// The embedded migrations, in order.
pub fn all() -> Vec<refinery::Migration> {
    let mut migrations = embedded::migrations::runner().get_migrations().clone();
    migrations.sort();
    migrations
}

/// Applies pending migrations; returns how many it applied.
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
    adopt_old_history(client).await?;
    let pg: &mut tokio_postgres::Client = client.as_mut();
    let report = embedded::migrations::runner()
        .set_abort_divergent(true)
        .set_abort_missing(true)
        .run_async(pg)
        .await
        .context("applying migrations")?;
    for m in report.applied_migrations() {
        tracing::info!(migration = %m, "applied");
    }
    Ok(report.applied_migrations().len())
}

/// Copies the history of the hand-written runner that came before refinery
/// (`schema_migrations`, names such as `0001_otp`) into refinery's table, once: only
/// while refinery's table does not exist yet. A name there that no embedded migration
/// has stops the start: the database is newer than this binary, or not ours.
async fn adopt_old_history(client: &mut deadpool_postgres::Object) -> anyhow::Result<()> {
    let tx = client.transaction().await?;
    let tables: Vec<String> = tx
        .query(
            "SELECT c.relname::text FROM pg_class c
               WHERE c.relnamespace = current_schema()::regnamespace
                 AND c.relkind = 'r' AND c.relname IN ('schema_migrations', $1)",
            &[&HISTORY],
        )
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    if !tables.iter().any(|t| t == "schema_migrations") || tables.iter().any(|t| t == HISTORY) {
        return Ok(());
    }
    let old: Vec<String> = tx
        .query("SELECT name FROM schema_migrations ORDER BY name", &[])
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    let migrations = all();
    // refinery's own layout of its table, and its text forms of the time and checksum.
    tx.batch_execute(&format!(
        "CREATE TABLE {HISTORY} (
             version INT4 PRIMARY KEY,
             name VARCHAR(255),
             applied_on VARCHAR(255),
             checksum VARCHAR(255))"
    ))
    .await?;
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    for name in &old {
        let m = migrations
            .iter()
            .find(|m| old_name(m) == *name)
            .with_context(|| {
                format!(
                    "the database has migration {name} applied, which this binary does not \
                     have: it was migrated by a newer gateway"
                )
            })?;
        tx.execute(
            &format!(
                "INSERT INTO {HISTORY} (version, name, applied_on, checksum) VALUES ($1, $2, $3, $4)"
            ),
            &[
                &m.version(),
                &m.name(),
                &now,
                &m.checksum().to_string(),
            ],
        )
        .await?;
    }
    tx.commit().await?;
    tracing::info!(
        migrations = old.len(),
        "history of the earlier migration runner adopted"
    );
    Ok(())
}

/// The name the earlier runner gave a migration: its file name without `.sql`, as
/// `0001_otp`.
fn old_name(m: &refinery::Migration) -> String {
    format!("{:04}_{}", m.version(), m.name())
}

#[cfg(test)]
mod tests {
    /// Every file in migrations/ is embedded, in order, with nothing else and no gap.
    #[test]
    fn every_migration_file_is_embedded_in_order() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../migrations");
        let mut files: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".sql"))
            .collect();
        files.sort();
        let embedded: Vec<String> = super::all()
            .iter()
            .map(|m| format!("V{:04}__{}.sql", m.version(), m.name()))
            .collect();
        assert_eq!(embedded, files);
        let versions: Vec<u32> = super::all().iter().map(|m| m.version() as u32).collect();
        assert_eq!(versions, (1..=versions.len() as u32).collect::<Vec<_>>());
    }
}
