//! Native-key signatures already accepted: a signed request is good for one use, on every
//! instance sharing this store and across restarts, while the venue's time window could still
//! accept it. Knows digests and expiry times only; what a digest is a digest of is the
//! gateway's business (keygate-server `native.rs`).

use keygate_core::Millis;

use crate::{Store, StoreError};

impl Store {
    /// Records the first use of the signed request whose digest is `digest` (hex), remembered
    /// until `until`: true if this is its first use, false if it was recorded before and is
    /// still remembered at `now`. One statement (insert if absent, or if the row has expired),
    /// so of any number of concurrent calls with one digest, on any number of instances,
    /// exactly one gets true.
    pub async fn first_signature_use(
        &self,
        digest: &str,
        now: Millis,
        until: Millis,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "INSERT INTO native_signatures (digest, until_ms) VALUES ($1, $2) \
             ON CONFLICT (digest) DO UPDATE SET until_ms = excluded.until_ms \
             WHERE native_signatures.until_ms <= $3",
        )
        .bind(digest.to_string())
        .bind(until)
        .bind(now)
        .execute(self.pool())
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Forgets the signatures whose time is over at `now`; returns how many.
    pub async fn prune_signatures(&self, now: Millis) -> Result<u64, StoreError> {
        let done = sqlx::query("DELETE FROM native_signatures WHERE until_ms <= $1")
            .bind(now)
            .execute(self.pool())
            .await?;
        Ok(done.rows_affected())
    }

    /// How many signatures are remembered (for tests and metrics).
    pub async fn remembered_signatures(&self) -> Result<i64, StoreError> {
        use sqlx::Row;
        let row = sqlx::query("SELECT COUNT(*) FROM native_signatures")
            .fetch_one(self.pool())
            .await?;
        Ok(row.try_get(0)?)
    }
}
