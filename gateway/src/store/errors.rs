//! What a database error means to a caller: the database cannot answer now (a 503 or a
//! retry), or a race lost that may simply be run again.

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
