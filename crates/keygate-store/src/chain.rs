//! EVM transfers as the store keeps them: the transfer keygate signed for an allowed decision,
//! every transaction hash signed for it (written before the transaction is sent), and the
//! lookups the transfer API and the chain watcher need. The watcher's checkpoint is a `meta`
//! row; its judgements go through [`Store::reconcile_outflow`] like any outflow.

use sqlx::Row;

use crate::{Store, StoreError};

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
    /// `signing`, `sent` or `unsent`.
    pub state: String,
    pub error: Option<String>,
    pub at_ms: i64,
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

const COLS: &str = "SELECT decision_id, venue, client, client_ref, asset, amount, destination, from_address, tx_hash, nonce, state, error, at_ms FROM evm_transfers";

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

    /// Records a transaction hash signed for `decision_id`, before it is sent: the watcher
    /// then knows it whenever it appears on chain.
    pub async fn evm_tx_signed(
        &self,
        decision_id: i64,
        tx_hash: &str,
        nonce: u64,
        at_ms: i64,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO evm_tx_hashes (tx_hash, decision_id, nonce, at_ms) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (tx_hash) DO NOTHING",
        )
        .bind(tx_hash.to_string())
        .bind(decision_id)
        .bind(i64::try_from(nonce).unwrap_or(i64::MAX))
        .bind(at_ms)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// Marks a transfer as sent with `tx_hash`, or as unsent with `error`.
    pub async fn evm_transfer_done(
        &self,
        decision_id: i64,
        sent: Result<(&str, u64), &str>,
    ) -> Result<(), StoreError> {
        let q = match sent {
            Ok((hash, nonce)) => sqlx::query(
                "UPDATE evm_transfers SET state = 'sent', tx_hash = $1, nonce = $2, error = NULL WHERE decision_id = $3",
            )
            .bind(hash.to_string())
            .bind(i64::try_from(nonce).unwrap_or(i64::MAX))
            .bind(decision_id),
            Err(error) => sqlx::query(
                "UPDATE evm_transfers SET state = 'unsent', error = $1 WHERE decision_id = $2",
            )
            .bind(error.to_string())
            .bind(decision_id),
        };
        q.execute(self.pool()).await?;
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

    /// Every hash signed for `decision_id`, oldest first.
    pub async fn evm_tx_hashes(&self, decision_id: i64) -> Result<Vec<String>, StoreError> {
        let rows = sqlx::query(
            "SELECT tx_hash FROM evm_tx_hashes WHERE decision_id = $1 ORDER BY at_ms, tx_hash",
        )
        .bind(decision_id)
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|r| r.try_get::<String, _>(0).map_err(StoreError::from))
            .collect()
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
