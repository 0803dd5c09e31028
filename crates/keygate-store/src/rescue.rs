//! Rescues of EVM treasuries, in the store: one open rescue per venue, and every transaction
//! signed for it (a nonce and a rung of its fee ladder, with its bytes), each written before it
//! is sent and updated with what became of it, every change in one transaction with its audit
//! entry (kind `rescue`). Knows nothing of chains: amounts and fees are decimal text, the bytes
//! hex, as keygate-chain gives them.
//!
//! The rules the store keeps, whoever calls: a venue has at most one open rescue (starting one
//! while one is open gives the open one); a rung is signed once (a second instance signing the
//! same nonce and rung is refused); nothing is added to a rescue that is done.

use std::borrow::Cow;

use keygate_core::Millis;
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::audit::{AuditEntry, NewEntry, RescueEvent, append, lock_head_at};
use crate::{Store, StoreError};

/// A transaction of a rescue, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RescueTxRow {
    pub rescue_id: i64,
    pub nonce: i64,
    pub rung: i64,
    pub asset: String,
    /// Integer units, decimal text.
    pub units: String,
    pub gas: i64,
    /// Wei, decimal text.
    pub max_fee: String,
    pub tip: String,
    pub tx_hash: String,
    /// Hex without 0x.
    pub raw: String,
    pub block: i64,
    /// signed, sent, unknown, refused, mined, replaced or lost.
    pub state: String,
    pub at_ms: Millis,
}

/// A rescue with its transactions (by nonce, then rung).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RescueRow {
    pub id: i64,
    pub venue: String,
    pub from_address: String,
    pub rescue_to: String,
    pub reason: String,
    pub started_ms: Millis,
    pub done_ms: Option<Millis>,
    pub outcome: Option<String>,
    pub txs: Vec<RescueTxRow>,
}

/// A transaction of a rescue about to be sent.
#[derive(Debug, Clone)]
pub struct NewRescueTx<'a> {
    pub nonce: i64,
    pub rung: i64,
    pub asset: &'a str,
    pub units: &'a str,
    pub gas: i64,
    pub max_fee: &'a str,
    pub tip: &'a str,
    pub tx_hash: &'a str,
    pub raw: &'a str,
    pub block: i64,
}

const RESCUE_COLS: &str = "SELECT id, venue, from_address, rescue_to, reason, started_ms, done_ms, outcome FROM evm_rescues";
const TX_COLS: &str = "SELECT rescue_id, nonce, rung, asset, units, gas, max_fee, tip, tx_hash, raw, block, state, at_ms FROM evm_rescue_txs";

fn tx_of(r: &AnyRow) -> Result<RescueTxRow, StoreError> {
    Ok(RescueTxRow {
        rescue_id: r.try_get(0)?,
        nonce: r.try_get(1)?,
        rung: r.try_get(2)?,
        asset: r.try_get(3)?,
        units: r.try_get(4)?,
        gas: r.try_get(5)?,
        max_fee: r.try_get(6)?,
        tip: r.try_get(7)?,
        tx_hash: r.try_get(8)?,
        raw: r.try_get(9)?,
        block: r.try_get(10)?,
        state: r.try_get(11)?,
        at_ms: r.try_get(12)?,
    })
}

type Tx = sqlx::Transaction<'static, sqlx::Any>;

async fn venue_of(tx: &mut Tx, rescue_id: i64) -> Result<(String, bool), StoreError> {
    let row = sqlx::query("SELECT venue, done_ms FROM evm_rescues WHERE id = $1")
        .bind(rescue_id)
        .fetch_optional(&mut **tx)
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("there is no rescue {rescue_id}")))?;
    let done: Option<i64> = row.try_get(1)?;
    Ok((row.try_get(0)?, done.is_some()))
}

/// Appends `entry` and commits.
async fn write(
    mut tx: Tx,
    head: &mut crate::audit::Head,
    actor: &str,
    now: Millis,
    entry: AuditEntry<'_>,
) -> Result<(), StoreError> {
    append(
        &mut tx,
        head,
        vec![NewEntry::new(actor.to_string(), now, &entry, None)],
        now,
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

impl Store {
    /// Starts a rescue of `venue`'s treasury `from` to `to`, with its audit entry; if the venue
    /// has an open rescue, that one's id instead (and false: nothing was started).
    pub async fn rescue_start(
        &self,
        venue: &str,
        from: &str,
        to: &str,
        reason: &str,
        actor: &str,
    ) -> Result<(i64, bool), StoreError> {
        let mut tx = self.begin_write().await?;
        let (mut head, now) = lock_head_at(&mut tx, self).await?;
        let open: Option<i64> =
            sqlx::query("SELECT id FROM evm_rescues WHERE venue = $1 AND done_ms IS NULL")
                .bind(venue.to_string())
                .fetch_optional(&mut *tx)
                .await?
                .map(|r| r.try_get(0))
                .transpose()?;
        if let Some(id) = open {
            tx.rollback().await?;
            return Ok((id, false));
        }
        let id: i64 = sqlx::query(
            "INSERT INTO evm_rescues (venue, from_address, rescue_to, reason, started_ms) \
             VALUES ($1, $2, $3, $4, $5) RETURNING id",
        )
        .bind(venue.to_string())
        .bind(from.to_string())
        .bind(to.to_string())
        .bind(reason.to_string())
        .bind(now)
        .fetch_one(&mut *tx)
        .await?
        .try_get(0)?;
        let entry = AuditEntry::Rescue(RescueEvent::Started {
            rescue_id: id,
            venue: Cow::Borrowed(venue),
            from: Cow::Borrowed(from),
            to: Cow::Borrowed(to),
            reason: Cow::Borrowed(reason),
        });
        write(tx, &mut head, actor, now, entry).await?;
        Ok((id, true))
    }

    /// The venue's open rescue, with its transactions.
    pub async fn rescue_open(&self, venue: &str) -> Result<Option<RescueRow>, StoreError> {
        Ok(self.rescues(Some(venue), false).await?.into_iter().next())
    }

    /// Rescues, newest first, with their transactions; only open ones unless `all`; of one
    /// venue if given.
    pub async fn rescues(
        &self,
        venue: Option<&str>,
        all: bool,
    ) -> Result<Vec<RescueRow>, StoreError> {
        let filter = match (venue.is_some(), all) {
            (true, true) => " WHERE venue = $1",
            (true, false) => " WHERE venue = $1 AND done_ms IS NULL",
            (false, true) => "",
            (false, false) => " WHERE done_ms IS NULL",
        };
        let q = format!("{RESCUE_COLS}{filter} ORDER BY id DESC");
        let mut query = sqlx::query(sqlx::AssertSqlSafe(q));
        if let Some(v) = venue {
            query = query.bind(v.to_string());
        }
        let rows = query.fetch_all(self.pool()).await?;
        let mut out = Vec::with_capacity(rows.len());
        for r in rows {
            let id: i64 = r.try_get(0)?;
            let txs = sqlx::query(sqlx::AssertSqlSafe(format!(
                "{TX_COLS} WHERE rescue_id = $1 ORDER BY nonce, rung"
            )))
            .bind(id)
            .fetch_all(self.pool())
            .await?
            .iter()
            .map(tx_of)
            .collect::<Result<_, _>>()?;
            out.push(RescueRow {
                id,
                venue: r.try_get(1)?,
                from_address: r.try_get(2)?,
                rescue_to: r.try_get(3)?,
                reason: r.try_get(4)?,
                started_ms: r.try_get(5)?,
                done_ms: r.try_get(6)?,
                outcome: r.try_get(7)?,
                txs,
            });
        }
        Ok(out)
    }

    /// Records a transaction of rescue `rescue_id` (state `signed`) before it is sent, with its
    /// audit entry. False (nothing written) if that nonce and rung are recorded already or the
    /// rescue is done.
    pub async fn rescue_signed(
        &self,
        rescue_id: i64,
        t: &NewRescueTx<'_>,
        actor: &str,
    ) -> Result<bool, StoreError> {
        let mut tx = self.begin_write().await?;
        let (mut head, now) = lock_head_at(&mut tx, self).await?;
        let (venue, done) = venue_of(&mut tx, rescue_id).await?;
        let taken = sqlx::query(
            "SELECT 1 FROM evm_rescue_txs WHERE (rescue_id = $1 AND nonce = $2 AND rung = $3) OR tx_hash = $4",
        )
        .bind(rescue_id)
        .bind(t.nonce)
        .bind(t.rung)
        .bind(t.tx_hash.to_string())
        .fetch_optional(&mut *tx)
        .await?
        .is_some();
        if done || taken {
            tx.rollback().await?;
            return Ok(false);
        }
        sqlx::query(
            "INSERT INTO evm_rescue_txs (rescue_id, nonce, rung, asset, units, gas, max_fee, tip, tx_hash, raw, block, state, at_ms) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, 'signed', $12)",
        )
        .bind(rescue_id)
        .bind(t.nonce)
        .bind(t.rung)
        .bind(t.asset.to_string())
        .bind(t.units.to_string())
        .bind(t.gas)
        .bind(t.max_fee.to_string())
        .bind(t.tip.to_string())
        .bind(t.tx_hash.to_string())
        .bind(t.raw.to_string())
        .bind(t.block)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        let entry = AuditEntry::Rescue(RescueEvent::Signed {
            rescue_id,
            venue: Cow::Owned(venue),
            nonce: t.nonce,
            rung: t.rung,
            asset: Cow::Borrowed(t.asset),
            units: Cow::Borrowed(t.units),
            max_fee: Cow::Borrowed(t.max_fee),
            tip: Cow::Borrowed(t.tip),
            tx_hash: Cow::Borrowed(t.tx_hash),
        });
        write(tx, &mut head, actor, now, entry).await?;
        Ok(true)
    }

    /// Records what became of a rescue transaction (`sent`, `unknown`, `refused`, `mined`,
    /// `replaced`, `lost`), with its audit entry; nothing is written when it is in that state
    /// already, or is `mined`, `replaced` or `lost` (final).
    pub async fn rescue_tx_state(
        &self,
        tx_hash: &str,
        state: &str,
        detail: &str,
        actor: &str,
    ) -> Result<bool, StoreError> {
        let mut tx = self.begin_write().await?;
        let (mut head, now) = lock_head_at(&mut tx, self).await?;
        let row = sqlx::query("SELECT rescue_id FROM evm_rescue_txs WHERE tx_hash = $1")
            .bind(tx_hash.to_string())
            .fetch_optional(&mut *tx)
            .await?;
        let Some(row) = row else {
            tx.rollback().await?;
            return Err(StoreError::NotFound(format!(
                "there is no rescue transaction {tx_hash}"
            )));
        };
        let rescue_id: i64 = row.try_get(0)?;
        let changed = sqlx::query(
            "UPDATE evm_rescue_txs SET state = $2 WHERE tx_hash = $1 AND state <> $2 \
             AND state NOT IN ('mined', 'replaced', 'lost')",
        )
        .bind(tx_hash.to_string())
        .bind(state.to_string())
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if changed == 0 {
            tx.rollback().await?;
            return Ok(false);
        }
        let (venue, _) = venue_of(&mut tx, rescue_id).await?;
        let entry = AuditEntry::Rescue(RescueEvent::Tx {
            rescue_id,
            venue: Cow::Owned(venue),
            tx_hash: Cow::Borrowed(tx_hash),
            state: Cow::Borrowed(state),
            detail: Cow::Borrowed(detail),
        });
        write(tx, &mut head, actor, now, entry).await?;
        Ok(true)
    }

    /// Closes rescue `rescue_id` with `outcome`, with its audit entry; false if it was closed.
    pub async fn rescue_done(
        &self,
        rescue_id: i64,
        outcome: &str,
        actor: &str,
    ) -> Result<bool, StoreError> {
        let mut tx = self.begin_write().await?;
        let (mut head, now) = lock_head_at(&mut tx, self).await?;
        let changed = sqlx::query(
            "UPDATE evm_rescues SET done_ms = $2, outcome = $3 WHERE id = $1 AND done_ms IS NULL",
        )
        .bind(rescue_id)
        .bind(now)
        .bind(outcome.to_string())
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if changed == 0 {
            tx.rollback().await?;
            return Ok(false);
        }
        let (venue, _) = venue_of(&mut tx, rescue_id).await?;
        let entry = AuditEntry::Rescue(RescueEvent::Done {
            rescue_id,
            venue: Cow::Owned(venue),
            outcome: Cow::Borrowed(outcome),
        });
        write(tx, &mut head, actor, now, entry).await?;
        Ok(true)
    }

    /// Whether keygate signed the transaction with this hash for a rescue.
    pub async fn rescue_tx_known(&self, tx_hash: &str) -> Result<bool, StoreError> {
        Ok(
            sqlx::query("SELECT 1 FROM evm_rescue_txs WHERE tx_hash = $1")
                .bind(tx_hash.to_string())
                .fetch_optional(self.pool())
                .await?
                .is_some(),
        )
    }
}
