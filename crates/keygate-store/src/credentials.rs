//! The credential table: one row per credential version, sealed bytes only.
//!
//! A credential has exactly one active version; rotating adds version n+1 and disables n in one
//! transaction; rekeying replaces every wrapped data key in one transaction.

use sqlx::Row;
use sqlx::any::AnyRow;

use crate::{Conflict, MASTER_KEY_ID, Store, StoreError, is_unique_violation};

/// Whether a credential version may be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CredentialStatus {
    Active,
    Disabled,
}

impl CredentialStatus {
    fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Disabled => "disabled",
        }
    }

    fn parse(s: &str) -> Result<Self, StoreError> {
        match s {
            "active" => Ok(Self::Active),
            "disabled" => Ok(Self::Disabled),
            other => Err(StoreError::Conflict(Conflict::Rule(format!(
                "credential row has unknown status {other:?}"
            )))),
        }
    }
}

/// A credential version to insert. `wrapped_key` and `ciphertext` come sealed from the vault.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewCredential {
    pub id: String,
    pub version: u32,
    pub venue: String,
    pub kind: String,
    pub fingerprint: String,
    pub key_id: String,
    pub wrapped_key: Vec<u8>,
    pub ciphertext: Vec<u8>,
    pub created_ms: i64,
}

/// One stored credential version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CredentialRow {
    pub id: String,
    pub version: u32,
    pub venue: String,
    pub kind: String,
    pub status: CredentialStatus,
    pub fingerprint: String,
    pub key_id: String,
    pub wrapped_key: Vec<u8>,
    pub ciphertext: Vec<u8>,
    pub created_ms: i64,
}

/// Metadata of a credential for listings: its active version, no sealed bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CredentialSummary {
    pub id: String,
    pub venue: String,
    pub kind: String,
    /// The active version.
    pub version: u32,
    /// When version 1 was added.
    pub created_ms: i64,
    /// When the active version replaced the one before it; `None` if never rotated.
    pub rotated_ms: Option<i64>,
    pub fingerprint: String,
}

/// `SELECT <every row column> FROM credentials <tail>`, as a static string.
macro_rules! select_rows {
    ($tail:literal) => {
        concat!(
            "SELECT id, version, venue, kind, status, fingerprint, key_id, wrapped_key, ciphertext, created_ms FROM credentials ",
            $tail
        )
    };
}

fn version_of(v: i64) -> Result<u32, StoreError> {
    u32::try_from(v).map_err(|_| {
        StoreError::Conflict(Conflict::Rule(format!(
            "credential version {v} is out of range"
        )))
    })
}

fn row_to_credential(r: &AnyRow) -> Result<CredentialRow, StoreError> {
    Ok(CredentialRow {
        id: r.try_get("id")?,
        version: version_of(r.try_get("version")?)?,
        venue: r.try_get("venue")?,
        kind: r.try_get("kind")?,
        status: CredentialStatus::parse(&r.try_get::<String, _>("status")?)?,
        fingerprint: r.try_get("fingerprint")?,
        key_id: r.try_get("key_id")?,
        wrapped_key: r.try_get("wrapped_key")?,
        ciphertext: r.try_get("ciphertext")?,
        created_ms: r.try_get("created_ms")?,
    })
}

/// Inside a write transaction: confirms the store's master key id is still `key_id`, and locks
/// the meta row (PostgreSQL row lock; SQLite's write lock) so that a concurrent rekey waits for
/// this transaction or makes it fail. A row sealed under a key the store has moved away from
/// would be unreadable once the old key file is replaced.
pub(crate) async fn lock_master_key_id(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    key_id: &str,
) -> Result<(), StoreError> {
    let done = sqlx::query("UPDATE meta SET value = value WHERE key = $1 AND value = $2")
        .bind(MASTER_KEY_ID)
        .bind(key_id)
        .execute(&mut **tx)
        .await?;
    if done.rows_affected() != 1 {
        return Err(StoreError::Conflict(Conflict::Changed(format!(
            "the store's master key is no longer {key_id} (a rekey ran meanwhile); nothing was changed, run the command again"
        ))));
    }
    Ok(())
}

/// Maps a unique-constraint violation to `Conflict` with `what`.
fn conflict_on_unique(e: sqlx::Error, what: impl FnOnce() -> String) -> StoreError {
    if is_unique_violation(&e) {
        StoreError::Conflict(Conflict::Exists(what()))
    } else {
        StoreError::from(e)
    }
}

async fn insert_version<'e, E>(exec: E, c: &NewCredential) -> Result<(), StoreError>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    sqlx::query(
        "INSERT INTO credentials (id, version, venue, kind, status, fingerprint, key_id, wrapped_key, ciphertext, created_ms) \
         VALUES ($1, $2, $3, $4, 'active', $5, $6, $7, $8, $9)",
    )
    .bind(&c.id)
    .bind(i64::from(c.version))
    .bind(&c.venue)
    .bind(&c.kind)
    .bind(&c.fingerprint)
    .bind(&c.key_id)
    .bind(&c.wrapped_key)
    .bind(&c.ciphertext)
    .bind(c.created_ms)
    .execute(exec)
    .await
    .map_err(|e| {
        conflict_on_unique(e, || {
            format!(
                "credential {} version {} was written by someone else meanwhile",
                c.id, c.version
            )
        })
    })?;
    Ok(())
}

impl Store {
    /// Adds a new credential (version 1). Fails with `Conflict` if the id is taken or if the
    /// store's master key id is not `c.key_id`.
    pub async fn insert_credential(&self, c: &NewCredential) -> Result<(), StoreError> {
        if c.version != 1 {
            return Err(StoreError::Conflict(Conflict::Rule(format!(
                "a new credential starts at version 1, not {}",
                c.version
            ))));
        }
        let mut tx = self.begin_write().await?;
        lock_master_key_id(&mut tx, &c.key_id).await?;
        let taken = sqlx::query("SELECT 1 FROM credentials WHERE id = $1")
            .bind(&c.id)
            .fetch_optional(&mut *tx)
            .await?;
        if taken.is_some() {
            return Err(StoreError::Conflict(Conflict::Exists(format!(
                "credential {} already exists",
                c.id
            ))));
        }
        insert_version(&mut *tx, c).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Adds version `c.version` and disables version `c.version - 1`, in one transaction. Fails
    /// with `Conflict` if `c.version - 1` is not the active version any more (another rotation
    /// won) or the store's master key id is not `c.key_id`, and changes nothing.
    pub async fn rotate_credential(&self, c: &NewCredential) -> Result<(), StoreError> {
        let prev = c
            .version
            .checked_sub(1)
            .filter(|v| *v >= 1)
            .ok_or_else(|| {
                StoreError::Conflict(Conflict::Rule(format!(
                    "cannot rotate to version {}",
                    c.version
                )))
            })?;
        let mut tx = self.begin_write().await?;
        lock_master_key_id(&mut tx, &c.key_id).await?;
        let done = sqlx::query(
            "UPDATE credentials SET status = 'disabled' \
             WHERE id = $1 AND version = $2 AND venue = $3 AND kind = $4 AND status = 'active'",
        )
        .bind(&c.id)
        .bind(i64::from(prev))
        .bind(&c.venue)
        .bind(&c.kind)
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() != 1 {
            return Err(StoreError::Conflict(Conflict::Changed(format!(
                "credential {} version {prev} is not the active version of that venue and kind any more; list the credentials and try again",
                c.id
            ))));
        }
        insert_version(&mut *tx, c).await?;
        tx.commit().await?;
        Ok(())
    }

    /// The active version of a credential.
    pub async fn active_credential(&self, id: &str) -> Result<Option<CredentialRow>, StoreError> {
        let row = sqlx::query(select_rows!("WHERE id = $1 AND status = $2"))
            .bind(id)
            .bind(CredentialStatus::Active.as_str())
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(row_to_credential).transpose()
    }

    /// Every version of a credential, oldest first.
    pub async fn credential_versions(&self, id: &str) -> Result<Vec<CredentialRow>, StoreError> {
        let rows = sqlx::query(select_rows!("WHERE id = $1 ORDER BY version"))
            .bind(id)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(row_to_credential).collect()
    }

    /// Every stored row of every credential.
    pub async fn all_credential_rows(&self) -> Result<Vec<CredentialRow>, StoreError> {
        let rows = sqlx::query(select_rows!("ORDER BY id, version"))
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(row_to_credential).collect()
    }

    /// Metadata of every credential, by id.
    pub async fn list_credentials(&self) -> Result<Vec<CredentialSummary>, StoreError> {
        let rows = sqlx::query(
            "SELECT a.id, a.venue, a.kind, a.version, a.fingerprint, a.created_ms AS active_ms, \
                    (SELECT MIN(f.created_ms) FROM credentials f WHERE f.id = a.id) AS first_ms \
             FROM credentials a WHERE a.status = 'active' ORDER BY a.id",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                let version = version_of(r.try_get("version")?)?;
                let active_ms: i64 = r.try_get("active_ms")?;
                Ok(CredentialSummary {
                    id: r.try_get("id")?,
                    venue: r.try_get("venue")?,
                    kind: r.try_get("kind")?,
                    version,
                    created_ms: r.try_get("first_ms")?,
                    rotated_ms: (version > 1).then_some(active_ms),
                    fingerprint: r.try_get("fingerprint")?,
                })
            })
            .collect()
    }

    /// Deletes every version of a credential; returns how many rows went.
    pub async fn remove_credential(&self, id: &str) -> Result<u64, StoreError> {
        let done = sqlx::query("DELETE FROM credentials WHERE id = $1")
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected())
    }

    /// Replaces the wrapped data key of every credential row and native key, and the store's
    /// master key id, in one transaction. `rewrapped` (credential id, version, wrapped key) and
    /// `native` (token id, wrapped key) must hold exactly the rows that are stored under
    /// `old_key_id`; if any row is missing, was added meanwhile, or the store's key id is not
    /// `old_key_id`, nothing changes.
    pub async fn rekey(
        &self,
        old_key_id: &str,
        new_key_id: &str,
        rewrapped: &[(String, u32, Vec<u8>)],
        native: &[(String, Vec<u8>)],
    ) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        let done = sqlx::query("UPDATE meta SET value = $1 WHERE key = $2 AND value = $3")
            .bind(new_key_id)
            .bind(MASTER_KEY_ID)
            .bind(old_key_id)
            .execute(&mut *tx)
            .await?;
        if done.rows_affected() != 1 {
            return Err(StoreError::Conflict(Conflict::Changed(
                "the store's master key changed while rekeying; nothing was changed".into(),
            )));
        }
        for (id, version, wrapped) in rewrapped {
            let done = sqlx::query(
                "UPDATE credentials SET wrapped_key = $1, key_id = $2 \
                 WHERE id = $3 AND version = $4 AND key_id = $5",
            )
            .bind(wrapped)
            .bind(new_key_id)
            .bind(id)
            .bind(i64::from(*version))
            .bind(old_key_id)
            .execute(&mut *tx)
            .await?;
            if done.rows_affected() != 1 {
                return Err(StoreError::Conflict(Conflict::Changed(format!(
                    "credential {id} version {version} changed while rekeying; nothing was changed, run rekey again"
                ))));
            }
        }
        for (token_id, wrapped) in native {
            let done = sqlx::query(
                "UPDATE native_keys SET wrapped_key = $1, key_id = $2 WHERE token_id = $3 AND key_id = $4",
            )
            .bind(wrapped)
            .bind(new_key_id)
            .bind(token_id)
            .bind(old_key_id)
            .execute(&mut *tx)
            .await?;
            if done.rows_affected() != 1 {
                return Err(StoreError::Conflict(Conflict::Changed(format!(
                    "native key {token_id} changed while rekeying; nothing was changed, run rekey again"
                ))));
            }
        }
        let left: i64 = sqlx::query(
            "SELECT (SELECT COUNT(*) FROM credentials WHERE key_id <> $1) + (SELECT COUNT(*) FROM native_keys WHERE key_id <> $1)",
        )
        .bind(new_key_id)
        .fetch_one(&mut *tx)
        .await?
        .try_get(0)?;
        if left != 0 {
            return Err(StoreError::Conflict(Conflict::Changed(format!(
                "{left} credential or native key rows were added or are sealed under another key; nothing was changed, run rekey again"
            ))));
        }
        tx.commit().await?;
        Ok(())
    }
}
