//! EVM transfers as the store keeps them: the transfer keygate signed for an allowed decision,
//! every transaction signed for it (hash, nonce and bytes, written before it is sent, with what
//! the node answered), the nonces held per signing address (taken atomically with the first
//! signed transaction at them, unique per address across instances), and the lookups the
//! transfer API and the chain watcher need. The watcher's checkpoint is a `meta` row; its
//! judgements go through [`Store::reconcile_outflow`] like any outflow.

use sqlx::Row;

use crate::{Conflict, Store, StoreError};

/// One EVM transfer keygate signed (or tried to).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EvmTransferRow {
    pub decision_id: i64,
    pub venue: String,
    pub client: String,
    pub client_ref: String,
    pub asset: String,
    /// Decimal text in token units.
    pub amount: String,
    pub destination: String,
    pub from_address: String,
    pub tx_hash: Option<String>,
    pub nonce: Option<i64>,
    /// `signing` (being signed and sent), `sent` (a node accepted a transaction), `unknown`
    /// (the node did not answer the send: it may be out), `refused` (every transaction signed
    /// for it was refused outright: nothing can be mined), or `unsent` (written before nonces
    /// were held in the store; read as `unknown`).
    pub state: String,
    pub error: Option<String>,
    pub at_ms: i64,
    /// How many transactions took a nonce for it (see [`Store::evm_transfer_abandon`]).
    pub attempts: i64,
}

/// How a transfer's sending ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransferState {
    /// A node accepted a transaction.
    Sent,
    /// No clear answer: a transaction may be out.
    Unknown,
    /// Every transaction was refused outright: nothing can be mined.
    Refused,
}

impl TransferState {
    pub fn as_str(self) -> &'static str {
        match self {
            TransferState::Sent => "sent",
            TransferState::Unknown => "unknown",
            TransferState::Refused => "refused",
        }
    }
}

/// A transaction signed for a transfer, about to be sent.
#[derive(Debug, Clone)]
pub struct NewEvmTx<'a> {
    pub decision_id: i64,
    pub tx_hash: &'a str,
    /// The signed bytes, hex without 0x.
    pub raw: &'a str,
}

/// Deletes `decision_id`'s hold on nonce `nonce` of `from`; how many rows went (0 or 1).
async fn release_in(
    c: &mut sqlx::AnyConnection,
    from: &str,
    nonce: i64,
    decision_id: i64,
) -> Result<u64, StoreError> {
    let done = sqlx::query(
        "DELETE FROM evm_nonces WHERE from_address = $1 AND nonce = $2 AND decision_id = $3",
    )
    .bind(from.to_string())
    .bind(nonce)
    .bind(decision_id)
    .execute(c)
    .await?;
    Ok(done.rows_affected())
}

/// What taking a nonce gave.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Took {
    /// Taken, and the transaction recorded.
    Taken,
    /// Another transfer (or instance) holds the nonce.
    NonceHeld,
    /// Another recorded transaction has the very same bytes (signing is deterministic): sign
    /// something different.
    SameBytes,
    /// The transfer was given up (see [`Store::evm_transfer_abandon`]): send nothing.
    Abandoned,
}

/// A transfer about to be signed.
#[derive(Debug, Clone)]
pub struct NewEvmTransfer<'a> {
    pub decision_id: i64,
    pub venue: &'a str,
    pub client: &'a str,
    pub client_ref: &'a str,
    pub asset: &'a str,
    pub amount: &'a str,
    pub destination: &'a str,
    pub from_address: &'a str,
    pub at_ms: i64,
}

/// One transaction signed for a transfer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EvmTxRow {
    pub tx_hash: String,
    pub decision_id: i64,
    pub nonce: u64,
    /// The signed bytes, hex without 0x (None for rows from before they were kept).
    pub raw: Option<String>,
    /// `signed`, `accepted`, `refused` or `unknown`: see [`TxOutcome`].
    pub outcome: String,
    pub at_ms: i64,
    /// How many times it was claimed for sending it again.
    pub claims: i64,
}

/// What a node answered when a signed transaction was sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TxOutcome {
    /// Recorded, not yet answered (a crash here leaves it possibly out).
    Signed,
    /// In the node's pool (or already mined).
    Accepted,
    /// Refused outright: it is in no pool and can never be mined unless sent again.
    Refused,
    /// No clear answer: it may be out.
    Unknown,
}

impl TxOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            TxOutcome::Signed => "signed",
            TxOutcome::Accepted => "accepted",
            TxOutcome::Refused => "refused",
            TxOutcome::Unknown => "unknown",
        }
    }
}

impl EvmTxRow {
    /// Whether this transaction may be (or have been) in a node's pool, so may still be mined.
    pub fn maybe_out(&self) -> bool {
        self.outcome != TxOutcome::Refused.as_str()
    }
}

fn nonce_column(nonce: u64) -> Result<i64, StoreError> {
    i64::try_from(nonce).map_err(|_| {
        StoreError::Conflict(Conflict::Rule(format!(
            "nonce {nonce} is beyond what the store keeps"
        )))
    })
}

const TX_COLS: &str =
    "SELECT tx_hash, decision_id, nonce, raw, outcome, at_ms, claims FROM evm_tx_hashes";

fn row_to_tx(r: &sqlx::any::AnyRow) -> Result<EvmTxRow, StoreError> {
    let nonce: i64 = r.try_get(2)?;
    Ok(EvmTxRow {
        tx_hash: r.try_get(0)?,
        decision_id: r.try_get(1)?,
        nonce: u64::try_from(nonce).unwrap_or(0),
        raw: r.try_get(3)?,
        outcome: r.try_get(4)?,
        at_ms: r.try_get(5)?,
        claims: r.try_get(6)?,
    })
}

const COLS: &str = "SELECT decision_id, venue, client, client_ref, asset, amount, destination, from_address, tx_hash, nonce, state, error, at_ms, attempts FROM evm_transfers";

fn row_to_transfer(r: &sqlx::any::AnyRow) -> Result<EvmTransferRow, StoreError> {
    Ok(EvmTransferRow {
        decision_id: r.try_get(0)?,
        venue: r.try_get(1)?,
        client: r.try_get(2)?,
        client_ref: r.try_get(3)?,
        asset: r.try_get(4)?,
        amount: r.try_get(5)?,
        destination: r.try_get(6)?,
        from_address: r.try_get(7)?,
        tx_hash: r.try_get(8)?,
        nonce: r.try_get(9)?,
        state: r.try_get(10)?,
        error: r.try_get(11)?,
        at_ms: r.try_get(12)?,
        attempts: r.try_get(13)?,
    })
}

impl Store {
    /// Records a transfer about to be signed for an allowed decision (state `signing`).
    pub async fn evm_transfer_begin(&self, t: &NewEvmTransfer<'_>) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO evm_transfers (decision_id, venue, client, client_ref, asset, amount, destination, from_address, state, at_ms) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'signing', $9)",
        )
        .bind(t.decision_id)
        .bind(t.venue.to_string())
        .bind(t.client.to_string())
        .bind(t.client_ref.to_string())
        .bind(t.asset.to_string())
        .bind(t.amount.to_string())
        .bind(t.destination.to_string())
        .bind(t.from_address.to_string())
        .bind(t.at_ms)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// Takes `nonce` of `from` for `tx.decision_id` and records the transaction signed at it,
    /// in one transaction, before it is sent: the watcher then knows it whenever it appears on
    /// chain, and keygate can send the same bytes again. Nothing is written unless it is
    /// [`Took::Taken`].
    pub async fn evm_nonce_take(
        &self,
        from: &str,
        nonce: u64,
        tx: &NewEvmTx<'_>,
    ) -> Result<Took, StoreError> {
        let n = nonce_column(nonce)?;
        let mut t = self.begin_write().await?;
        // Stamped once the write lock is held: a take that waited for it is not taken for an
        // old one (healing skips transactions recorded moments ago: they are being sent).
        let at_ms = self.clock().now();
        // First, so a status read giving the transfer up and this take are serialised on its
        // row: whichever comes second sees the other.
        let live = sqlx::query(
            "UPDATE evm_transfers SET attempts = attempts + 1 WHERE decision_id = $1 AND state = 'signing'",
        )
        .bind(tx.decision_id)
        .execute(&mut *t)
        .await?;
        if live.rows_affected() != 1 {
            t.rollback().await?;
            return Ok(Took::Abandoned);
        }
        let took = sqlx::query(
            "INSERT INTO evm_nonces (from_address, nonce, decision_id, at_ms) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (from_address, nonce) DO NOTHING",
        )
        .bind(from.to_string())
        .bind(n)
        .bind(tx.decision_id)
        .bind(at_ms)
        .execute(&mut *t)
        .await?;
        if took.rows_affected() != 1 {
            t.rollback().await?;
            return Ok(Took::NonceHeld);
        }
        let recorded = sqlx::query(
            "INSERT INTO evm_tx_hashes (tx_hash, decision_id, nonce, at_ms, raw, outcome) VALUES ($1, $2, $3, $4, $5, 'signed') \
             ON CONFLICT (tx_hash) DO NOTHING",
        )
        .bind(tx.tx_hash.to_string())
        .bind(tx.decision_id)
        .bind(n)
        .bind(at_ms)
        .bind(tx.raw.to_string())
        .execute(&mut *t)
        .await?;
        if recorded.rows_affected() != 1 {
            t.rollback().await?;
            return Ok(Took::SameBytes);
        }
        t.commit().await?;
        Ok(Took::Taken)
    }

    /// Records that the node refused a transaction outright and gives its nonce back, in one
    /// transaction: a refused transaction is never sent again, and another may take the nonce.
    /// Only while it is still `signed` and nobody claimed it for sending it again (see
    /// [`Store::evm_tx_claim`]): if something sent it meanwhile, nothing changes and false is
    /// returned (it may be out after all).
    pub async fn evm_tx_refused(
        &self,
        from: &str,
        nonce: u64,
        decision_id: i64,
        tx_hash: &str,
    ) -> Result<bool, StoreError> {
        let mut t = self.begin_write().await?;
        let marked = sqlx::query(
            "UPDATE evm_tx_hashes SET outcome = 'refused' \
             WHERE tx_hash = $1 AND outcome = 'signed' AND decision_id = $2 AND nonce = $3 AND claims = 0",
        )
        .bind(tx_hash.to_string())
        .bind(decision_id)
        .bind(nonce_column(nonce)?)
        .execute(&mut *t)
        .await?;
        if marked.rows_affected() != 1 {
            t.rollback().await?;
            return Ok(false);
        }
        release_in(&mut t, from, nonce_column(nonce)?, decision_id).await?;
        t.commit().await?;
        Ok(true)
    }

    /// After a failed take: makes sure the transaction cannot be sent from the store. Writes it
    /// as `refused` whether or not the take's commit landed (an insert that waits for a
    /// commit in flight on the same hash), and gives back the nonce if the take held it. True:
    /// it is refused (nothing is pending); false: it was answered meanwhile (it may be out).
    pub async fn evm_tx_tombstone(
        &self,
        from: &str,
        nonce: u64,
        decision_id: i64,
        tx_hash: &str,
    ) -> Result<bool, StoreError> {
        let n = nonce_column(nonce)?;
        let mut t = self.begin_write().await?;
        let at_ms = self.clock().now();
        let marked = sqlx::query(
            "INSERT INTO evm_tx_hashes (tx_hash, decision_id, nonce, at_ms, raw, outcome) VALUES ($1, $2, $3, $4, NULL, 'refused') \
             ON CONFLICT (tx_hash) DO UPDATE SET outcome = 'refused' \
             WHERE evm_tx_hashes.outcome = 'signed' AND evm_tx_hashes.decision_id = $2 AND evm_tx_hashes.nonce = $3",
        )
        .bind(tx_hash.to_string())
        .bind(decision_id)
        .bind(n)
        .bind(at_ms)
        .execute(&mut *t)
        .await?;
        if marked.rows_affected() != 1 {
            t.rollback().await?;
            return Ok(false);
        }
        release_in(&mut t, from, n, decision_id).await?;
        t.commit().await?;
        Ok(true)
    }

    /// Claims a recorded transaction for sending it again: only if it is still as read (its
    /// outcome `seen_outcome`, claimed `seen_claims` times), so a sender recording a refusal
    /// and a copy sent from elsewhere exclude each other. True: claimed.
    pub async fn evm_tx_claim(
        &self,
        tx_hash: &str,
        seen_outcome: &str,
        seen_claims: i64,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE evm_tx_hashes SET claims = claims + 1 WHERE tx_hash = $1 AND outcome = $2 AND claims = $3 AND outcome <> 'refused'",
        )
        .bind(tx_hash.to_string())
        .bind(seen_outcome.to_string())
        .bind(seen_claims)
        .execute(self.pool())
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Gives up a transfer still `signing` whose `attempts` are still `seen`, recording `error`
    /// (state `refused`): true if it was given up. A sender that comes later takes no nonce.
    pub async fn evm_transfer_abandon(
        &self,
        decision_id: i64,
        seen: i64,
        error: &str,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE evm_transfers SET state = 'refused', error = $1 WHERE decision_id = $2 AND state = 'signing' AND attempts = $3",
        )
        .bind(error.to_string())
        .bind(decision_id)
        .bind(seen)
        .execute(self.pool())
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Records what the node answered to a signed transaction.
    pub async fn evm_tx_outcome(
        &self,
        tx_hash: &str,
        outcome: TxOutcome,
    ) -> Result<(), StoreError> {
        // A refusal stands: a refused transaction is never recorded as anything else.
        sqlx::query(
            "UPDATE evm_tx_hashes SET outcome = $1 WHERE tx_hash = $2 AND outcome <> 'refused'",
        )
        .bind(outcome.as_str().to_string())
        .bind(tx_hash.to_string())
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// Gives `nonce` of `from` back, if `decision_id` holds it: another transfer may take it.
    /// Only for a nonce none of whose transactions a node holds (each was refused, or the node
    /// refuses it again): whichever transaction is mined at it, only one can be.
    pub async fn evm_nonce_release(
        &self,
        from: &str,
        nonce: u64,
        decision_id: i64,
    ) -> Result<bool, StoreError> {
        let mut c = self.pool().acquire().await?;
        Ok(release_in(&mut c, from, nonce_column(nonce)?, decision_id).await? == 1)
    }

    /// The nonces of `from` held from `min` up, each with the newest transaction signed at it
    /// that may be out (or, when every one was refused, the newest refused one).
    pub async fn evm_held(&self, from: &str, min: u64) -> Result<Vec<EvmTxRow>, StoreError> {
        let rows = sqlx::query(
            "SELECT h.tx_hash, h.decision_id, h.nonce, h.raw, h.outcome, h.at_ms, h.claims \
             FROM evm_nonces n JOIN evm_tx_hashes h ON h.decision_id = n.decision_id AND h.nonce = n.nonce \
             WHERE n.from_address = $1 AND n.nonce >= $2 \
             ORDER BY n.nonce, CASE WHEN h.outcome = 'refused' THEN 1 ELSE 0 END, h.at_ms DESC, h.tx_hash",
        )
        .bind(from.to_string())
        .bind(nonce_column(min)?)
        .fetch_all(self.pool())
        .await?;
        let mut out: Vec<EvmTxRow> = vec![];
        for r in &rows {
            let t = row_to_tx(r)?;
            if out.last().is_some_and(|l| l.nonce == t.nonce) {
                continue;
            }
            out.push(t);
        }
        Ok(out)
    }

    /// Records how sending a transfer ended: its state, the transaction a node accepted (or
    /// that may be pending) with its nonce, and the error when it was not accepted.
    pub async fn evm_transfer_done(
        &self,
        decision_id: i64,
        state: TransferState,
        tx: Option<(&str, u64)>,
        error: Option<&str>,
    ) -> Result<(), StoreError> {
        let (hash, nonce) = match tx {
            Some((h, n)) => (Some(h.to_string()), Some(nonce_column(n)?)),
            None => (None, None),
        };
        sqlx::query(
            "UPDATE evm_transfers SET state = $1, tx_hash = COALESCE($2, tx_hash), nonce = COALESCE($3, nonce), error = $4 WHERE decision_id = $5",
        )
        .bind(state.as_str().to_string())
        .bind(hash)
        .bind(nonce)
        .bind(error.map(str::to_string))
        .bind(decision_id)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// The transfer signed for `decision_id`.
    pub async fn evm_transfer(
        &self,
        decision_id: i64,
    ) -> Result<Option<EvmTransferRow>, StoreError> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "{COLS} WHERE decision_id = $1"
        )))
        .bind(decision_id)
        .fetch_optional(self.pool())
        .await?;
        row.as_ref().map(row_to_transfer).transpose()
    }

    /// The decision a client's request id (a transfer's `client_ref`) was recorded with.
    pub async fn request_decision(
        &self,
        client: &str,
        venue: &str,
        request_id: &str,
    ) -> Result<Option<i64>, StoreError> {
        let row = sqlx::query(
            "SELECT decision_id FROM request_ids WHERE client = $1 AND venue = $2 AND request_id = $3",
        )
        .bind(client.to_string())
        .bind(venue.to_string())
        .bind(request_id.to_string())
        .fetch_optional(self.pool())
        .await?;
        Ok(match row {
            Some(r) => Some(r.try_get(0)?),
            None => None,
        })
    }

    /// The decision a transaction hash was signed for, if keygate signed it.
    pub async fn evm_tx_decision(&self, tx_hash: &str) -> Result<Option<i64>, StoreError> {
        let row = sqlx::query("SELECT decision_id FROM evm_tx_hashes WHERE tx_hash = $1")
            .bind(tx_hash.to_string())
            .fetch_optional(self.pool())
            .await?;
        Ok(match row {
            Some(r) => Some(r.try_get(0)?),
            None => None,
        })
    }

    /// Every transaction signed for `decision_id`, oldest first.
    pub async fn evm_txs(&self, decision_id: i64) -> Result<Vec<EvmTxRow>, StoreError> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "{TX_COLS} WHERE decision_id = $1 ORDER BY at_ms, tx_hash"
        )))
        .bind(decision_id)
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(row_to_tx).collect()
    }

    /// The client a token belongs to (for answers that need the caller's identity after the
    /// decider authenticated the token).
    pub async fn token_client(&self, token_id: &str) -> Result<Option<String>, StoreError> {
        let row = sqlx::query("SELECT client FROM tokens WHERE id = $1")
            .bind(token_id.to_string())
            .fetch_optional(self.pool())
            .await?;
        Ok(match row {
            Some(r) => Some(r.try_get(0)?),
            None => None,
        })
    }

    /// Whether an outflow with this id was judged already at `venue`.
    pub async fn outflow_known(&self, venue: &str, id: &str) -> Result<bool, StoreError> {
        let row = sqlx::query("SELECT 1 FROM venue_withdrawals WHERE venue = $1 AND venue_id = $2")
            .bind(venue.to_string())
            .bind(id.to_string())
            .fetch_optional(self.pool())
            .await?;
        Ok(row.is_some())
    }
}
