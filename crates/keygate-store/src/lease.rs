//! Leases: a named task (such as alert delivery) that only one instance must run is held by
//! one owner until the store's clock passes its expiry. Knows nothing of what the task does.

use keygate_core::Millis;
use sqlx::Row;

use crate::audit::lock_head_at;
use crate::{Store, StoreError};

impl Store {
    /// Takes or renews the lease `name` for `owner` until the store's clock plus `ttl`: true if
    /// `owner` holds it now. Serialised with every writer by the audit-head lock, so two
    /// instances never both hold it (for tasks, such as alert delivery, that one instance only
    /// must run).
    pub async fn lease(&self, name: &str, owner: &str, ttl: Millis) -> Result<bool, StoreError> {
        let mut tx = self.begin_write().await?;
        let (_, now) = lock_head_at(&mut tx, self).await?;
        let key = format!("lease.{name}");
        let current: Option<String> = sqlx::query("SELECT value FROM meta WHERE key = $1")
            .bind(key.clone())
            .fetch_optional(&mut *tx)
            .await?
            .map(|r| r.try_get(0))
            .transpose()?;
        let free = match current.as_deref().and_then(|v| v.split_once(' ')) {
            None => true,
            Some((holder, until)) => {
                holder == owner || until.parse::<Millis>().map_or(true, |u| u < now)
            }
        };
        if !free {
            tx.rollback().await?;
            return Ok(false);
        }
        sqlx::query(
            "INSERT INTO meta (key, value) VALUES ($1, $2) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        )
        .bind(key)
        .bind(format!("{owner} {}", now.saturating_add(ttl)))
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(true)
    }
}
