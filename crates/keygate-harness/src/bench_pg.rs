//! The PostgreSQL side of `bench decide`: throw-away databases on a server the user names, and
//! what that server does about durability (a figure with `fsync = off` is not a durable one, so
//! the bench prints the settings beside it).

use anyhow::{Context, Result};
use sqlx::AnyPool;
use sqlx::Row;
use sqlx::any::AnyPoolOptions;

/// A server the bench may create databases on.
pub struct Server {
    admin: AnyPool,
    base: String,
    tag: String,
    created: std::sync::Mutex<Vec<String>>,
    /// The server's `fsync` and `synchronous_commit`, as printed beside the figures.
    pub durability: String,
}

impl Server {
    /// Connects to `admin_url` (a database such as `postgres`, as a role that may create
    /// databases) and reads its durability settings.
    pub async fn connect(admin_url: &str) -> Result<Self> {
        sqlx::any::install_default_drivers();
        let admin = AnyPoolOptions::new()
            .max_connections(1)
            .connect(admin_url)
            .await
            .with_context(|| {
                "cannot connect to the PostgreSQL named by --postgres (give a URL such as \
                 postgres://USER@127.0.0.1:PORT/postgres, as a role that may create databases)"
                    .to_string()
            })?;
        let setting = |name: &'static str| {
            let admin = admin.clone();
            async move {
                let row = sqlx::query(sqlx::AssertSqlSafe(format!("SHOW {name}")))
                    .fetch_one(&admin)
                    .await
                    .with_context(|| format!("cannot read the server's {name}"))?;
                row.try_get::<String, _>(0)
                    .with_context(|| format!("the server's {name} is not text"))
            }
        };
        let durability = format!(
            "fsync={}, synchronous_commit={}",
            setting("fsync").await?,
            setting("synchronous_commit").await?
        );
        let base = admin_url
            .rsplit_once('/')
            .map_or(admin_url, |(b, _)| b)
            .to_string();
        let mut tag = [0u8; 4];
        getrandom::fill(&mut tag).context("no random source for the databases' names")?;
        Ok(Self {
            admin,
            base,
            tag: hex::encode(tag),
            created: std::sync::Mutex::new(Vec::new()),
            durability,
        })
    }

    /// Creates an empty database for one run and returns its URL.
    pub async fn create(&self, run: &str) -> Result<String> {
        let name = format!("kg_bench_{}_{run}", self.tag);
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&self.admin)
            .await
            .with_context(|| format!("cannot create the bench's database {name}"))?;
        if let Ok(mut c) = self.created.lock() {
            c.push(name.clone());
        }
        Ok(format!("{}/{name}", self.base))
    }

    /// Drops every database this bench created.
    pub async fn drop_all(&self) -> Result<()> {
        let names = self.created.lock().map(|c| c.clone()).unwrap_or_default();
        for name in names {
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
            )))
            .execute(&self.admin)
            .await
            .with_context(|| format!("cannot drop the bench's database {name}"))?;
        }
        Ok(())
    }
}
