//! A batch's write transaction, whichever connection it runs on: sqlx's (PostgreSQL) or the
//! SQLite decider's own ([`super::lite`]). Each method is one step of a batch, with the same SQL
//! on both; the batch's logic in [`super`] does not know which it has.

use keygate_core::Millis;
use keygate_core::admit::{HoldRecord, RequestKey};
use sqlx::Row;
use std::collections::HashMap;

use super::lite;
use crate::StoreError;
use crate::audit::{self, Checkpoint, Head, NewEntry, Signer};

/// A hold to insert for a held decision.
pub(super) struct NewHoldRow<'a> {
    pub decision_id: i64,
    pub client: &'a str,
    pub venue: &'a str,
    pub digest: String,
    pub request_id: Option<&'a str>,
    pub expires_ms: Millis,
    pub request_text: Option<&'a str>,
}

pub(super) enum WriteTx<'c> {
    Sqlx(sqlx::Transaction<'static, sqlx::Any>),
    Lite(lite::Tx<'c>),
    /// No transaction: deciding the next batch while one commits ([`super::pipe`]). It reads
    /// request ids (those of the batch in flight first) and refuses every write.
    Dry(Dry<'c>),
}

/// Reads for a batch decided ahead of its transaction.
pub(super) struct Dry<'c> {
    reader: &'c std::sync::Mutex<rusqlite::Connection>,
    in_flight: &'c HashMap<RequestKey, i64>,
}

impl<'c> Dry<'c> {
    pub(super) fn new(
        reader: &'c std::sync::Mutex<rusqlite::Connection>,
        in_flight: &'c HashMap<RequestKey, i64>,
    ) -> Self {
        Self { reader, in_flight }
    }
}

/// What a dry transaction answers to a write or a read it cannot make.
fn needs_tx() -> StoreError {
    StoreError::Internal("this step needs the batch's write transaction".into())
}

impl WriteTx<'_> {
    /// Locks the audit head and reads the store's clock.
    pub(super) async fn lock_head_at(
        &mut self,
        store: &crate::Store,
    ) -> Result<(Head, Millis), StoreError> {
        match self {
            Self::Sqlx(tx) => audit::lock_head_at(tx, store).await,
            Self::Lite(tx) => tx.lock_head_at(store.clock().simulated_now()),
            Self::Dry(_) => Err(needs_tx()),
        }
    }

    /// Appends entries after `head` (locked in this transaction) and moves it; their ids.
    pub(super) async fn append(
        &mut self,
        head: &mut Head,
        entries: Vec<NewEntry>,
        store_now: Millis,
    ) -> Result<Vec<i64>, StoreError> {
        match self {
            Self::Sqlx(tx) => audit::append(tx, head, entries, store_now).await,
            Self::Lite(tx) => {
                let rows = audit::chain_rows(head, entries, store_now)?;
                tx.insert_audit(&rows, head)?;
                Ok(rows.iter().map(|r| r.seq).collect())
            }
            Self::Dry(_) => Err(needs_tx()),
        }
    }

    /// The audit entry that first used a request id, if any did.
    pub(super) async fn used_request_id(
        &mut self,
        k: &RequestKey,
    ) -> Result<Option<i64>, StoreError> {
        let tx = match self {
            Self::Lite(tx) => return tx.used_request_id(k),
            Self::Dry(d) => {
                if let Some(id) = d.in_flight.get(k) {
                    return Ok(Some(*id));
                }
                let c = d.reader.lock().map_err(|_| {
                    StoreError::Internal("the decider's reader was poisoned".into())
                })?;
                return lite::used_request_id_on(&c, k);
            }
            Self::Sqlx(tx) => tx,
        };
        let row = sqlx::query(
            "SELECT decision_id FROM request_ids WHERE client = $1 AND venue = $2 AND request_id = $3",
        )
        .bind(k.client.clone())
        .bind(k.venue.clone())
        .bind(k.request_id.clone())
        .fetch_optional(&mut **tx)
        .await?;
        Ok(match row {
            Some(r) => Some(r.try_get(0)?),
            None => None,
        })
    }

    pub(super) async fn insert_request_id(
        &mut self,
        k: &RequestKey,
        decision_id: i64,
        at: Millis,
    ) -> Result<(), StoreError> {
        let tx = match self {
            Self::Lite(tx) => return tx.insert_request_id(k, decision_id, at),
            Self::Dry(_) => return Err(needs_tx()),
            Self::Sqlx(tx) => tx,
        };
        sqlx::query(
            "INSERT INTO request_ids (client, venue, request_id, decision_id, at_ms) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(k.client.clone())
        .bind(k.venue.clone())
        .bind(k.request_id.clone())
        .bind(decision_id)
        .bind(at)
        .execute(&mut **tx)
        .await?;
        Ok(())
    }

    /// The hold `hid` with its number of approvals, if there is one.
    pub(super) async fn load_hold(&mut self, hid: i64) -> Result<Option<HoldRecord>, StoreError> {
        let tx = match self {
            Self::Lite(tx) => return tx.load_hold(hid),
            Self::Dry(_) => return Err(needs_tx()),
            Self::Sqlx(tx) => tx,
        };
        let row = sqlx::query(
            "SELECT client, venue, intent_digest, request_id, expires_ms, approved_ms, executed_by, (SELECT COUNT(*) FROM approvals WHERE subject = $2), request_text FROM holds WHERE decision_id = $1",
        )
        .bind(hid)
        .bind(format!("hold:{hid}"))
        .fetch_optional(&mut **tx)
        .await?;
        let Some(r) = row else {
            return Ok(None);
        };
        Ok(Some(HoldRecord {
            id: hid,
            client: r.try_get(0)?,
            venue: r.try_get(1)?,
            digest: r.try_get(2)?,
            request_text: r.try_get(8)?,
            request_id: r.try_get(3)?,
            expires_ms: r.try_get(4)?,
            approved_ms: r.try_get(5)?,
            executed_by: r.try_get(6)?,
            approvals: r.try_get(7)?,
        }))
    }

    pub(super) async fn insert_hold(&mut self, h: &NewHoldRow<'_>) -> Result<(), StoreError> {
        let tx = match self {
            Self::Lite(tx) => return tx.insert_hold(h),
            Self::Dry(_) => return Err(needs_tx()),
            Self::Sqlx(tx) => tx,
        };
        sqlx::query(
            "INSERT INTO holds (decision_id, client, venue, intent_digest, request_id, expires_ms, request_text) VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(h.decision_id)
        .bind(h.client.to_string())
        .bind(h.venue.to_string())
        .bind(h.digest.clone())
        .bind(h.request_id.map(str::to_string))
        .bind(h.expires_ms)
        .bind(h.request_text.map(str::to_string))
        .execute(&mut **tx)
        .await?;
        Ok(())
    }

    /// Marks hold `hid` carried out by decision `by`; how many rows that changed (0 if it had
    /// been carried out already).
    pub(super) async fn execute_hold(
        &mut self,
        hid: i64,
        by: i64,
        at: Millis,
    ) -> Result<u64, StoreError> {
        let tx = match self {
            Self::Lite(tx) => return tx.execute_hold(hid, by, at).map(|n| n as u64),
            Self::Dry(_) => return Err(needs_tx()),
            Self::Sqlx(tx) => tx,
        };
        let done = sqlx::query(
            "UPDATE holds SET executed_ms = $1, executed_by = $2 WHERE decision_id = $3 AND executed_by IS NULL",
        )
        .bind(at)
        .bind(by)
        .bind(hid)
        .execute(&mut **tx)
        .await?;
        Ok(done.rows_affected())
    }

    /// Sets a freeze in this transaction; its id.
    pub(super) async fn set_freeze(
        &mut self,
        scope: &keygate_core::freeze::Scope,
        reason: &str,
        actor: &str,
        at: Millis,
    ) -> Result<i64, StoreError> {
        match self {
            Self::Sqlx(tx) => crate::freeze::set_in(tx, scope, reason, actor, at).await,
            Self::Lite(tx) => tx.set_freeze(&scope.to_string(), reason, actor, at),
            Self::Dry(_) => Err(needs_tx()),
        }
    }

    /// Signs and stores a checkpoint of `head`.
    pub(super) async fn write_checkpoint(
        &mut self,
        head: &Head,
        signer: &dyn Signer,
    ) -> Result<Checkpoint, StoreError> {
        match self {
            Self::Sqlx(tx) => audit::write_checkpoint(tx, head, signer).await,
            Self::Lite(tx) => {
                let cp = audit::sign_checkpoint(head, signer);
                tx.insert_checkpoint(&cp)?;
                Ok(cp)
            }
            Self::Dry(_) => Err(needs_tx()),
        }
    }
}
