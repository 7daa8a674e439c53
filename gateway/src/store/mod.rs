//! PostgreSQL: the pool ([`pool`]), the schema and its migrations ([`migrations`]),
//! the plan settings of hot statements ([`plan`]), the statement cache ([`cached`]) and
//! what a database error means to a caller ([`errors`]), and the tables' rows as structs
//! ([`tables`]).

pub mod cached;
pub mod errors;
pub mod migrations;
pub mod plan;
pub mod pool;
pub mod tables;

pub use cached::Cached;
pub use errors::{chain_unavailable, db_conflict, db_unavailable};
pub use migrations::migrate;
pub use plan::{query_opt_indexed, INDEXED_PLAN_ONCE, PLAN_ONCE};
pub use pool::{answers, drop_database, ensure_database, pool, quote_ident};
