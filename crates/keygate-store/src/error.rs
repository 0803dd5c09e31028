//! The store's error type: every message says what failed and what to do, and never carries a
//! database password.

use crate::Backend;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("store configuration: {0}")]
    Config(String),

    #[error("cannot connect to the {backend:?} store at {url}: {source}. {hint}")]
    Connect {
        url: String,
        backend: Backend,
        hint: &'static str,
        source: sqlx::Error,
    },

    #[error("applying store migrations failed: {0}; is this database used by a newer keygate?")]
    Migrate(sqlx::migrate::MigrateError),

    #[error("store query failed: {0}")]
    Query(#[from] sqlx::Error),

    #[error("conflict: {0}")]
    Conflict(String),

    #[error("not found: {0}")]
    NotFound(String),

    #[error("the store holds something keygate cannot read: {0}")]
    Corrupt(String),

    #[error("the decision writer has stopped; restart keygate (the store is unchanged)")]
    WriterGone,
}

impl StoreError {
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
            source,
        }
    }
}

/// Whether a database error is a unique-constraint violation (two writers raced for one key).
pub(crate) fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if d.is_unique_violation())
}
