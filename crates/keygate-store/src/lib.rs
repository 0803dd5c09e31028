//! keygate-store: persistence behind one interface, two backends.
//!
//! SQLite (`sqlite://PATH`, WAL, the embedded default that needs no set-up) for one machine;
//! PostgreSQL (`postgres://…`) for several instances sharing state. Both run the same SQL text
//! through sqlx's `Any` driver, with versioned migrations per backend under `migrations/`.
//!
//! The store knows rows, transactions and migrations. It does not know cryptography: the vault
//! seals secrets, the store keeps the sealed bytes.

pub mod alarm;
pub mod audit;
pub mod chain;
pub mod containment;
mod credentials;
pub mod decider;
mod engine;
mod error;
pub mod freeze;
mod lease;
pub mod reconcile;
pub mod rescue;
mod signatures;
#[cfg(feature = "testing")]
pub mod testing;
pub mod venue_orders;

use std::str::FromStr;
use std::sync::Once;
use std::time::Duration;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::migrate::Migrator;
use sqlx::{AnyPool, ConnectOptions, Executor, Row};

pub use chain::{
    EvmTransferRow, EvmTxRow, NewEvmTransfer, NewEvmTx, Took, TransferState, TxOutcome,
};
pub use credentials::{CredentialRow, CredentialStatus, CredentialSummary, NewCredential};
pub use decider::{Answer, Decider, DeciderOptions, Decision, GatewayRequest};
pub use engine::{NativeKeyRow, NewEntryRow, PriceRow, TokenSummary};
pub(crate) use error::is_unique_violation;
pub use error::{Conflict, StoreError};
pub use rescue::{NewRescueTx, RescueRow, RescueTxRow};

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
    clock: Clock,
    /// The SQLite file, for the decider's own connection (None on PostgreSQL).
    sqlite_file: Option<String>,
}

/// The SQLite file a store is in, if it is on SQLite.
pub(crate) fn sqlite_path_of(store: &Store) -> Option<String> {
    store.sqlite_file.clone()
}

/// The clock every write is dated by. In production it is the store's own (the database
/// server's, read in the write's transaction), the one clock all instances share; outside a
/// transaction, [`Clock::now`] reads this host's clock. A replay (`keygate-harness replay --through-gateway`,
/// `keygate-harness demo`) runs the very same code on a simulated clock that its driver moves forward;
/// no command-line flag or config field can select it.
#[derive(Clone, Debug, Default)]
pub enum Clock {
    #[default]
    Store,
    Simulated(std::sync::Arc<std::sync::atomic::AtomicI64>),
}

impl Clock {
    /// A simulated clock reading `start`.
    pub fn simulated(start: keygate_core::Millis) -> Self {
        Clock::Simulated(std::sync::Arc::new(std::sync::atomic::AtomicI64::new(
            start,
        )))
    }

    /// Moves a simulated clock forward to `t` (never back); the store's clock is not moved.
    pub fn advance(&self, t: keygate_core::Millis) {
        if let Clock::Simulated(c) = self {
            c.fetch_max(t, std::sync::atomic::Ordering::SeqCst);
        }
    }

    /// The simulated time, if the clock is simulated.
    pub fn simulated_now(&self) -> Option<keygate_core::Millis> {
        match self {
            Clock::Store => None,
            Clock::Simulated(c) => Some(c.load(std::sync::atomic::Ordering::SeqCst)),
        }
    }

    /// Now, outside a transaction: the simulated time, or this host's clock.
    pub fn now(&self) -> keygate_core::Millis {
        self.simulated_now().unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
                .unwrap_or(0)
        })
    }
}

/// The metadata key under which the store records the id of the master key its credentials are
/// sealed under. Every write of a sealed row checks it in the same transaction.
pub const MASTER_KEY_ID: &str = "master_key_id";

/// What replaces a password in a shown URL.
const REDACTED: &str = "REDACTED";

fn is_password_param(k: &str) -> bool {
    k.eq_ignore_ascii_case("password")
}

/// A URL with its password (in the user info or a `password=` parameter) replaced, for
/// messages and logs. A URL that does not parse is not shown at all if it might hold one.
pub fn redact_url(raw: &str) -> String {
    let Ok(mut u) = url::Url::parse(raw) else {
        return if raw.contains('@') || raw.to_ascii_lowercase().contains("password") {
            "<store url, not shown: it does not parse and may hold a password>".to_string()
        } else {
            raw.to_string()
        };
    };
    if !has_password(raw) {
        return raw.to_string();
    }
    if u.password().is_some() {
        let _ = u.set_password(Some(REDACTED));
    }
    let pairs: Vec<(String, String)> = u
        .query_pairs()
        .map(|(k, v)| {
            let v = if is_password_param(&k) {
                REDACTED.to_string()
            } else {
                v.into_owned()
            };
            (k.into_owned(), v)
        })
        .collect();
    if !pairs.is_empty() {
        u.query_pairs_mut().clear().extend_pairs(pairs);
    }
    u.to_string()
}

/// Whether a store URL carries a password, in the user info or as a `password=` parameter.
pub fn has_password(raw: &str) -> bool {
    match url::Url::parse(raw) {
        Ok(u) => u.password().is_some() || u.query_pairs().any(|(k, _)| is_password_param(&k)),
        Err(_) => raw.contains('@') || raw.to_ascii_lowercase().contains("password"),
    }
}

/// The file a `sqlite:PATH` or `sqlite://PATH` URL names, if it is one.
pub fn sqlite_path(url: &str) -> Option<&str> {
    url.strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
        .filter(|p| !p.is_empty())
}

/// Fail closed on a PostgreSQL server reached over the network without TLS: sqlx's default
/// (`prefer`) silently falls back to plaintext. Loopback and Unix sockets need no TLS.
fn check_postgres_tls(raw: &str) -> Result<(), StoreError> {
    let u = url::Url::parse(raw).map_err(|e| {
        StoreError::Config(format!("store url {} is not valid: {e}", redact_url(raw)))
    })?;
    let param = |name: &str| {
        u.query_pairs()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.into_owned())
    };
    let socket = param("host").is_some_and(|h| h.starts_with('/'));
    let local = match u.host() {
        None => true,
        // For postgres:// (not a "special" scheme) the url crate leaves IPs as opaque names.
        Some(url::Host::Domain(d)) => {
            d.eq_ignore_ascii_case("localhost")
                || d.trim_start_matches('[')
                    .trim_end_matches(']')
                    .parse::<std::net::IpAddr>()
                    .is_ok_and(|ip| ip.is_loopback())
        }
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
    };
    if socket || local {
        return Ok(());
    }
    match param("sslmode").or_else(|| param("ssl-mode")).as_deref() {
        Some("require" | "verify-ca" | "verify-full") => Ok(()),
        other => Err(StoreError::Config(format!(
            "PostgreSQL at {} would be reached without verified TLS (sslmode {}); add \
             ?sslmode=verify-full (and sslrootcert=PATH for a private CA), or sslmode=require to \
             encrypt without checking the server's certificate",
            u.host_str().unwrap_or("?"),
            other.unwrap_or("not set, which means 'prefer'")
        ))),
    }
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
        let raw_url = url.to_string();
        let shown = redact_url(url);
        let url = match backend {
            Backend::Sqlite => sqlite_url(url, mode)?,
            Backend::Postgres => {
                check_postgres_tls(url)?;
                url.to_string()
            }
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
            // A connection whose transaction failed to end is never reused: after a failed
            // COMMIT (a full disk, say) SQLite has already rolled back, sqlx's ROLLBACK then
            // fails and sqlx keeps counting the transaction as open, so every later BEGIN on
            // that connection would fail ("non-zero transaction depth") until a restart. A
            // connection still counted in a transaction may only have its rollback queued: the
            // ping waits for it, then it is asked again (sqlx pings every released connection
            // right after this anyway, so the common case costs no extra round trip).
            .after_release(|conn, _| {
                Box::pin(async move {
                    if !sqlx::Connection::is_in_transaction(&*conn) {
                        return Ok(true);
                    }
                    sqlx::Connection::ping(&mut *conn).await?;
                    Ok(!sqlx::Connection::is_in_transaction(&*conn))
                })
            })
            .connect_with(options)
            .await
            .map_err(|e| StoreError::connect(&shown, backend, e))?;
        let sqlite_file = match backend {
            Backend::Sqlite => sqlite_path(&raw_url).map(str::to_string),
            Backend::Postgres => None,
        };
        Ok(Self {
            pool,
            backend,
            clock: Clock::Store,
            sqlite_file,
        })
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// This handle on a simulated clock (for replays only; see [`Clock`]).
    pub fn with_clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    pub fn clock(&self) -> &Clock {
        &self.clock
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

    /// Begins a transaction that will write. On SQLite it takes the write lock at once
    /// (`BEGIN IMMEDIATE`), so concurrent writers wait for each other (up to the busy timeout)
    /// instead of failing when a read would have to be upgraded.
    pub async fn begin_write(&self) -> Result<sqlx::Transaction<'static, sqlx::Any>, StoreError> {
        Ok(match self.backend {
            Backend::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await?,
            Backend::Postgres => self.pool.begin().await?,
        })
    }

    /// Whether the store takes writes: a write of a metadata row in a transaction that is
    /// rolled back. SQLite opens a file it may not write (a file system remounted read-only,
    /// a restore with the wrong mode) read-only without a word, and every decision would then
    /// fail; `serve` checks this first and refuses to start instead.
    pub async fn check_writable(&self) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        let wrote = sqlx::query(
            "INSERT INTO meta (key, value) VALUES ('write_check', '1') \
             ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        )
        .execute(&mut *tx)
        .await;
        if let Err(e) = wrote {
            return Err(StoreError::Config(format!(
                "the store does not take writes ({e}), so keygate could record no decision: make the database file, its directory and its -wal and -shm files writable (or the file system read-write again), then start again"
            )));
        }
        tx.rollback().await?;
        Ok(())
    }

    /// Closes every connection (checkpointing SQLite's WAL).
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// Turns `sqlite://PATH` into the URL sqlx wants, with the open mode set.
fn sqlite_url(url: &str, mode: OpenMode) -> Result<String, StoreError> {
    let rest = sqlite_path(url).unwrap_or("");
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
    fn redacts_passwords_in_every_form() {
        for (raw, secret) in [
            ("postgres://kg:s3cret@db:5432/kg", "s3cret"),
            ("postgres://kg:p@ss@db/kg", "p@ss"),
            ("postgres://kg:p%40ss@db/kg", "p%40ss"),
            (
                "postgres://kg@db/kg?password=s3cret&sslmode=require",
                "s3cret",
            ),
            ("postgres://kg@db/kg?PASSWORD=s3cret", "s3cret"),
            ("postgres://kg:a@db/kg?password=b", "kg:a@"),
            ("postgres://kg:s3cret@[::1/kg", "s3cret"),
        ] {
            let shown = redact_url(raw);
            assert!(!shown.contains(secret), "{raw} -> {shown}");
            assert!(has_password(raw), "{raw}");
        }
        assert!(redact_url("postgres://kg:p@ss@db/kg").contains("@db/kg"));
        assert!(
            redact_url("postgres://kg@db/kg?password=x&sslmode=require")
                .contains("sslmode=require")
        );
        for clean in [
            "postgres://kg@db/kg",
            "sqlite:///tmp/x.db",
            "sqlite://rel.db",
        ] {
            assert_eq!(redact_url(clean), clean);
            assert!(!has_password(clean), "{clean}");
        }
    }

    #[test]
    fn remote_postgres_needs_tls() {
        for ok in [
            "postgres://kg@127.0.0.1:5432/kg",
            "postgres://kg@localhost/kg",
            "postgres://kg@[::1]/kg",
            "postgres://kg@db.internal/kg?sslmode=verify-full",
            "postgres://kg@db.internal/kg?sslmode=require",
            "postgres://kg@x/kg?host=/var/run/postgresql",
        ] {
            check_postgres_tls(ok).unwrap();
        }
        for bad in [
            "postgres://kg@db.internal/kg",
            "postgres://kg@10.0.0.5/kg?sslmode=prefer",
            "postgres://kg:pw@db.internal/kg?sslmode=disable",
        ] {
            let e = check_postgres_tls(bad).unwrap_err().to_string();
            assert!(
                e.contains("sslmode=verify-full") && !e.contains("pw@"),
                "{e}"
            );
        }
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
        assert_eq!(sqlite_path("sqlite:rel.db"), Some("rel.db"));
        assert_eq!(sqlite_path("sqlite://rel.db"), Some("rel.db"));
        assert_eq!(sqlite_path("postgres://h/db"), None);
    }
}
