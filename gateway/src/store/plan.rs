//! Plan settings for statements whose best plan does not depend on the data: made once
//! per connection and kept, instead of once per run as the pool's default has it.

use std::sync::LazyLock;

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
