//! The store's error type: every message says what failed and what to do, and never carries a
//! database password.

use crate::Backend;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("store configuration: {0}")]
    Config(String),

    // The cause is in the message, not a `source`, so a printed error chain says it once.
    #[error("cannot connect to the {backend:?} store at {url}: {error}. {hint}")]
    Connect {
        url: String,
        backend: Backend,
        hint: &'static str,
        error: sqlx::Error,
    },

    #[error("applying store migrations failed: {0}; is this database used by a newer keygate?")]
    Migrate(sqlx::migrate::MigrateError),

    /// The database could not be reached, or the connection was lost: nothing is known to be
    /// wrong with what it holds.
    #[error(
        "the store cannot be reached ({0}); check that the database is running and reachable from this host, then retry (nothing was changed)"
    )]
    Unavailable(sqlx::Error),

    #[error("store query failed: {0}")]
    Query(sqlx::Error),

    /// A statement on the SQLite decider's own connection failed.
    #[error("store query failed: {0}")]
    Sqlite(rusqlite::Error),

    #[error("conflict: {0}")]
    Conflict(Conflict),

    #[error("not found: {0}")]
    NotFound(String),

    #[error("the store holds something keygate cannot read: {0}")]
    Corrupt(String),

    /// keygate broke one of its own invariants (a bug, not the data): nothing was changed.
    #[error(
        "keygate hit an internal error ({0}); nothing was changed. Please report it with keygate's log"
    )]
    Internal(String),

    #[error("the decision writer has stopped; restart keygate (the store is unchanged)")]
    WriterGone,

    /// A decision batch failed as a whole; every caller in it gets this (treat it as a deny).
    #[error("the decision could not be recorded ({cause}); nothing was allowed. {}", if *.unavailable {
        "Check that the store's database is running and reachable, then retry"
    } else {
        "Retry; if it keeps failing, keygate's log says why"
    })]
    NotRecorded {
        cause: String,
        /// The store could not be reached (rather than refusing the batch).
        unavailable: bool,
    },
}

/// Why a change was refused by what the store already holds. Each message says what to do.
#[derive(Debug, thiserror::Error)]
pub enum Conflict {
    /// Something with the same name or id is already there.
    #[error("{0}")]
    Exists(String),
    /// The store changed while the operation ran (another admin or instance): run it again.
    #[error("{0}")]
    Changed(String),
    /// It was done already: there is nothing left to do.
    #[error("{0}")]
    AlreadyDone(String),
    /// An approval that cannot count: a key that is not an approver, a bad signature, an expiry.
    #[error("{0}")]
    Approval(String),
    /// The request breaks one of the store's rules (a version, a range, who may approve).
    #[error("{0}")]
    Rule(String),
}

impl From<sqlx::Error> for StoreError {
    /// A lost or unreachable database is [`StoreError::Unavailable`]; anything else a query
    /// error.
    fn from(e: sqlx::Error) -> Self {
        match e {
            sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::WorkerCrashed => Self::Unavailable(e),
            e => Self::Query(e),
        }
    }
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        Self::Sqlite(e)
    }
}

impl StoreError {
    /// Whether the store could not be reached (retrying later may succeed).
    pub fn is_unavailable(&self) -> bool {
        matches!(
            self,
            Self::Unavailable(_)
                | Self::NotRecorded {
                    unavailable: true,
                    ..
                }
        )
    }

    pub(crate) fn connect(url: &str, backend: Backend, source: sqlx::Error) -> Self {
        let hint = match backend {
            Backend::Sqlite => "Check that the file exists and that keygate may read and write it.",
            Backend::Postgres => {
                "Check that PostgreSQL is running, that the host, port, user and database in store.url are right, and that the password is set."
            }
        };
        Self::Connect {
            url: url.to_string(),
            backend,
            hint,
            error: source,
        }
    }
}

/// Whether a database error is a unique-constraint violation (two writers raced for one key).
pub(crate) fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if d.is_unique_violation())
}
