//! keygate-store: persistence behind one interface, two backends.
//!
//! SQLite (`sqlite://PATH`, WAL, the embedded default that needs no set-up) for one machine;
//! PostgreSQL (`postgres://…`) for several instances sharing state. Both run the same SQL text
//! through sqlx's `Any` driver, with versioned migrations per backend under `migrations/`.
//!
//! The store knows rows, transactions and migrations. It does not know cryptography: the vault
//! seals secrets, the store keeps the sealed bytes.

mod credentials;
mod error;
#[cfg(feature = "testing")]
pub mod testing;

use std::str::FromStr;
use std::sync::Once;
use std::time::Duration;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::migrate::Migrator;
use sqlx::{AnyPool, ConnectOptions, Executor, Row};

pub use credentials::{CredentialRow, CredentialStatus, CredentialSummary, NewCredential};
pub use error::StoreError;

static SQLITE_MIGRATIONS: Migrator = sqlx::migrate!("migrations/sqlite");
static POSTGRES_MIGRATIONS: Migrator = sqlx::migrate!("migrations/postgres");

/// Which database a store runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    /// The backend a `store.url` names, or an error that says which schemes are known.
    pub fn of_url(url: &str) -> Result<Self, StoreError> {
        if url.starts_with("sqlite:") {
            Ok(Self::Sqlite)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Ok(Self::Postgres)
        } else {
            Err(StoreError::Config(format!(
                "store url {} has an unknown scheme; use sqlite://PATH or postgres://USER@HOST/DB",
                redact_url(url)
            )))
        }
    }
}

/// How to open a store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenMode {
    /// Create the SQLite file if it does not exist (for `keygate init`).
    Create,
    /// The database must exist already.
    Existing,
}

/// A connection pool to the store, SQLite or PostgreSQL.
#[derive(Clone, Debug)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
}

/// A URL with its password, if any, replaced by `***`, for messages and logs.
pub fn redact_url(url: &str) -> String {
    // scheme://user:password@host/...
    if let Some((scheme, rest)) = url.split_once("://")
        && let Some((userinfo, host)) = rest.split_once('@')
        && let Some((user, _password)) = userinfo.split_once(':')
    {
        return format!("{scheme}://{user}:***@{host}");
    }
    url.to_string()
}

static DRIVERS: Once = Once::new();

impl Store {
    /// Connects to `url` and brings the schema up to date.
    pub async fn open(url: &str, mode: OpenMode) -> Result<Self, StoreError> {
        let store = Self::connect(url, mode).await?;
        store.migrate().await?;
        Ok(store)
    }

    /// Connects without migrating.
    pub async fn connect(url: &str, mode: OpenMode) -> Result<Self, StoreError> {
        DRIVERS.call_once(sqlx::any::install_default_drivers);
        let backend = Backend::of_url(url)?;
        let shown = redact_url(url);
        let url = match backend {
            Backend::Sqlite => sqlite_url(url, mode)?,
            Backend::Postgres => url.to_string(),
        };
        let options = AnyConnectOptions::from_str(&url)
            .map_err(|e| StoreError::Config(format!("store url {shown} is not valid: {e}")))?
            .disable_statement_logging();
        let max = match backend {
            Backend::Sqlite => 4,
            Backend::Postgres => 8,
        };
        let pool = AnyPoolOptions::new()
            .max_connections(max)
            .acquire_timeout(Duration::from_secs(10))
            .after_connect(move |conn, _| {
                Box::pin(async move {
                    if backend == Backend::Sqlite {
                        // Overwrite deleted content (removed credentials' ciphertexts) and make
                        // every commit durable before it returns.
                        conn.execute("PRAGMA secure_delete = ON; PRAGMA synchronous = FULL; PRAGMA busy_timeout = 10000;")
                            .await?;
                    }
                    Ok(())
                })
            })
            .connect_with(options)
            .await
            .map_err(|e| StoreError::connect(&shown, backend, e))?;
        Ok(Self { pool, backend })
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The underlying pool, for crates that add their own tables.
    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// Applies every migration not yet applied; for SQLite, switches the file to WAL.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        let migrator = match self.backend {
            Backend::Sqlite => {
                let mode: String = sqlx::query("PRAGMA journal_mode = WAL")
                    .fetch_one(&self.pool)
                    .await?
                    .try_get(0)?;
                if !mode.eq_ignore_ascii_case("wal") {
                    return Err(StoreError::Config(format!(
                        "SQLite refused WAL mode (it reports {mode:?}); is the database on a network file system?"
                    )));
                }
                &SQLITE_MIGRATIONS
            }
            Backend::Postgres => &POSTGRES_MIGRATIONS,
        };
        migrator.run(&self.pool).await.map_err(StoreError::Migrate)
    }

    /// The SQLite journal mode (for checks and tests); `None` on PostgreSQL.
    pub async fn sqlite_journal_mode(&self) -> Result<Option<String>, StoreError> {
        if self.backend != Backend::Sqlite {
            return Ok(None);
        }
        let mode: String = sqlx::query("PRAGMA journal_mode")
            .fetch_one(&self.pool)
            .await?
            .try_get(0)?;
        Ok(Some(mode))
    }

    /// The versions of the applied migrations, in order.
    pub async fn applied_migrations(&self) -> Result<Vec<i64>, StoreError> {
        let rows = sqlx::query("SELECT version FROM _sqlx_migrations ORDER BY version")
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| r.try_get::<i64, _>(0).map_err(StoreError::from))
            .collect()
    }

    /// A value from the instance's metadata table.
    pub async fn get_meta(&self, key: &str) -> Result<Option<String>, StoreError> {
        let row = sqlx::query("SELECT value FROM meta WHERE key = $1")
            .bind(key)
            .fetch_optional(&self.pool)
            .await?;
        Ok(match row {
            Some(r) => Some(r.try_get(0)?),
            None => None,
        })
    }

    /// Sets a metadata value, replacing any previous one.
    pub async fn set_meta(&self, key: &str, value: &str) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO meta (key, value) VALUES ($1, $2) \
             ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        )
        .bind(key)
        .bind(value)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Sets a metadata value only if it is absent; returns the value now stored.
    pub async fn init_meta(&self, key: &str, value: &str) -> Result<String, StoreError> {
        sqlx::query("INSERT INTO meta (key, value) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING")
            .bind(key)
            .bind(value)
            .execute(&self.pool)
            .await?;
        self.get_meta(key)
            .await?
            .ok_or_else(|| StoreError::Config(format!("meta key {key} vanished after insert")))
    }

    /// Closes every connection (checkpointing SQLite's WAL).
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// Turns `sqlite://PATH` into the URL sqlx wants, with the open mode set.
fn sqlite_url(url: &str, mode: OpenMode) -> Result<String, StoreError> {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
        .unwrap_or(url);
    if rest.contains('?') {
        return Err(StoreError::Config(format!(
            "store url {url} has query parameters; keygate sets SQLite's options itself, give only sqlite://PATH"
        )));
    }
    if rest.is_empty() || rest == ":memory:" {
        return Err(StoreError::Config(
            "store url must name a SQLite file (sqlite://PATH); an in-memory database would lose every decision".into(),
        ));
    }
    if mode == OpenMode::Existing && !std::path::Path::new(rest).exists() {
        return Err(StoreError::Config(format!(
            "SQLite database {rest} does not exist; run `keygate init` to create a data directory, or fix store.url"
        )));
    }
    let m = match mode {
        OpenMode::Create => "rwc",
        OpenMode::Existing => "rw",
    };
    Ok(format!("sqlite://{rest}?mode={m}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_passwords() {
        assert_eq!(
            redact_url("postgres://kg:s3cret@db:5432/kg"),
            "postgres://kg:***@db:5432/kg"
        );
        assert_eq!(redact_url("postgres://kg@db/kg"), "postgres://kg@db/kg");
        assert_eq!(redact_url("sqlite:///tmp/x.db"), "sqlite:///tmp/x.db");
    }

    #[test]
    fn url_schemes() {
        assert_eq!(Backend::of_url("sqlite://a.db").unwrap(), Backend::Sqlite);
        assert_eq!(
            Backend::of_url("postgresql://h/db").unwrap(),
            Backend::Postgres
        );
        let e = Backend::of_url("mysql://u:pw@h/db")
            .unwrap_err()
            .to_string();
        assert!(e.contains("sqlite://") && !e.contains("pw"), "{e}");
        assert!(sqlite_url("sqlite://", OpenMode::Create).is_err());
        assert!(sqlite_url("sqlite://:memory:", OpenMode::Create).is_err());
        assert!(sqlite_url("sqlite://a.db?mode=ro", OpenMode::Create).is_err());
        assert_eq!(
            sqlite_url("sqlite:///x/a.db", OpenMode::Create).unwrap(),
            "sqlite:///x/a.db?mode=rwc"
        );
    }
}
