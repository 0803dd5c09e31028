//! Test helpers shared by the crates' test suites: a fresh, empty PostgreSQL database per test.
//!
//! The PostgreSQL server comes from `scripts/test`, which starts one on a loopback port and sets
//! `KEYGATE_TEST_POSTGRES_URL`. Without it these helpers fail with a message saying so: the
//! PostgreSQL half of the suite never skips itself.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test support (feature `testing`, never in a release build): a failure is a failed test"
)]

use sqlx::Executor;
use sqlx::any::AnyPoolOptions;

/// The environment variable naming the test server's admin URL.
pub const POSTGRES_URL_VAR: &str = "KEYGATE_TEST_POSTGRES_URL";

/// Creates a new empty database on the test server and returns its URL.
pub async fn fresh_postgres_url() -> String {
    let admin = std::env::var(POSTGRES_URL_VAR).unwrap_or_else(|_| {
        panic!(
            "{POSTGRES_URL_VAR} is not set. The PostgreSQL tests need a server: run `scripts/test`, \
             which installs and starts one on loopback, or set {POSTGRES_URL_VAR}=postgres://USER@127.0.0.1:PORT/postgres"
        )
    });
    sqlx::any::install_default_drivers();
    let mut suffix = [0u8; 6];
    getrandom::fill(&mut suffix).expect("random source");
    let name = format!("kg_test_{}", hex::encode(suffix));
    let pool = AnyPoolOptions::new()
        .max_connections(1)
        .connect(&admin)
        .await
        .unwrap_or_else(|e| panic!("cannot connect to the test PostgreSQL at {admin}: {e}"));
    pool.execute(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .await
        .unwrap_or_else(|e| panic!("cannot create test database {name}: {e}"));
    pool.close().await;
    let base = admin
        .rsplit_once('/')
        .map(|(b, _)| b.to_string())
        .unwrap_or(admin.clone());
    format!("{base}/{name}")
}

/// The URL of a fresh, migrated store of the given backend, plus the temp dir that holds a
/// SQLite file (keep it alive as long as the store is used).
pub async fn fresh_store_url(backend: crate::Backend) -> (String, Option<tempfile::TempDir>) {
    match backend {
        crate::Backend::Sqlite => {
            let dir = tempfile::tempdir().expect("temp dir");
            let url = format!("sqlite://{}", dir.path().join("kg.db").display());
            let store = crate::Store::open(&url, crate::OpenMode::Create)
                .await
                .unwrap_or_else(|e| panic!("cannot create SQLite store: {e}"));
            store.close().await;
            (url, Some(dir))
        }
        crate::Backend::Postgres => {
            let url = fresh_postgres_url().await;
            let store = crate::Store::open(&url, crate::OpenMode::Existing)
                .await
                .unwrap_or_else(|e| panic!("cannot open PostgreSQL store: {e}"));
            store.close().await;
            (url, None)
        }
    }
}

/// A fresh, migrated store of the given backend, plus the temp dir that holds a SQLite file.
pub async fn fresh_store(backend: crate::Backend) -> (crate::Store, Option<tempfile::TempDir>) {
    let (url, dir) = fresh_store_url(backend).await;
    (open(&url).await, dir)
}

/// Opens another handle on an existing store, as a second instance (or a restart) would.
pub async fn open(url: &str) -> crate::Store {
    crate::Store::open(url, crate::OpenMode::Existing)
        .await
        .unwrap_or_else(|e| panic!("cannot open the store: {e}"))
}

/// Generates `sqlite::NAME` and `postgres::NAME` tests from one `async fn NAME(Backend)` in the
/// calling module, so every store test runs on both backends.
#[macro_export]
macro_rules! both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() { super::$name($crate::Backend::Sqlite).await })*
        }
        mod postgres {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() { super::$name($crate::Backend::Postgres).await })*
        }
    };
}
