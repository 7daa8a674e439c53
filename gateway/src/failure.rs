//! What stops a service for reasons that are not the caller's: something it depends on
//! could not answer now (the same request may succeed later: a 503 over HTTP), or a fault
//! of ours (a 500). Every service error carries one of these beside its own refusals.

use crate::store::{chain_unavailable, db_conflict, db_unavailable};

#[derive(Debug, thiserror::Error)]
pub enum Failure {
    /// The database (or another dependency) could not answer; retry later.
    #[error("service temporarily unavailable")]
    Unavailable(#[source] anyhow::Error),
    /// A fault in the gateway; the chain says where.
    #[error("internal error")]
    Internal(#[source] anyhow::Error),
}

impl Failure {
    /// A fault of ours, described.
    pub fn internal(what: impl std::fmt::Display) -> Self {
        Failure::Internal(anyhow::anyhow!("{what}"))
    }

    /// A database conflict (serialization failure, deadlock): the transaction may be run
    /// once more before answering "unavailable".
    pub fn is_db_conflict(&self) -> bool {
        match self {
            Failure::Unavailable(e) => e.chain().any(|c| {
                c.downcast_ref::<tokio_postgres::Error>()
                    .is_some_and(db_conflict)
            }),
            Failure::Internal(_) => false,
        }
    }
}

impl From<tokio_postgres::Error> for Failure {
    fn from(e: tokio_postgres::Error) -> Self {
        if db_unavailable(&e) {
            Failure::Unavailable(e.into())
        } else {
            Failure::Internal(e.into())
        }
    }
}

impl From<anyhow::Error> for Failure {
    fn from(e: anyhow::Error) -> Self {
        if chain_unavailable(&e) {
            Failure::Unavailable(e)
        } else {
            Failure::Internal(e)
        }
    }
}

impl From<deadpool_postgres::PoolError> for Failure {
    fn from(e: deadpool_postgres::PoolError) -> Self {
        Failure::Unavailable(e.into())
    }
}

impl From<serde_json::Error> for Failure {
    fn from(e: serde_json::Error) -> Self {
        Failure::Internal(e.into())
    }
}

/// `From` the database's, the pool's and anyhow's errors for a service error with a
/// `Failure(Failure)` variant, so that `?` works on them inside the service.
#[macro_export]
macro_rules! failure_from {
    ($t:ty) => {
        impl From<tokio_postgres::Error> for $t {
            fn from(e: tokio_postgres::Error) -> Self {
                Self::Failure(e.into())
            }
        }
        impl From<deadpool_postgres::PoolError> for $t {
            fn from(e: deadpool_postgres::PoolError) -> Self {
                Self::Failure(e.into())
            }
        }
        impl From<anyhow::Error> for $t {
            fn from(e: anyhow::Error) -> Self {
                Self::Failure(e.into())
            }
        }
        impl From<serde_json::Error> for $t {
            fn from(e: serde_json::Error) -> Self {
                Self::Failure(e.into())
            }
        }
    };
}
