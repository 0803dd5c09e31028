//! The persistence traits of [`crate::persist`] for keygate's store: each method is the
//! `keygate_store::Store` method of the same job, and the conversions between the store's rows
//! and the chain's types. This is the only module of keygate-chain that names `keygate_store`
//! (outside tests); the wiring crates pass a `Store`, which these impls make a persistence.
//!
//! It must not decide anything: no rule of the watcher, the nonces or the transfers is here.

use keygate_core::book::Destination;
use keygate_core::freeze::Scope;
use keygate_core::outflow::Outflow;
use keygate_store::{EvmTransferRow, EvmTxRow, Store};

use crate::persist::{
    Alarm, Alarmed, Alarms, Checkpoints, Clock, NewTransfer, NewTx, NonceHolds, Outflows,
    PersistError, Persisted, Reconciled, RescueRecord, RescueTx, RescueTxState, Rescues, Took,
    TransferRecord, TransferRecords, TransferState, TxOutcome, TxRecord,
};

fn err(e: keygate_store::StoreError) -> PersistError {
    PersistError::new(e)
}

impl Clock for Store {
    fn now_ms(&self) -> i64 {
        self.clock().now()
    }
}

impl Checkpoints for Store {
    async fn checkpoint(&self, key: &str) -> Persisted<Option<String>> {
        self.get_meta(key).await.map_err(err)
    }

    async fn set_checkpoint(&self, key: &str, text: &str) -> Persisted<()> {
        self.set_meta(key, text).await.map_err(err)
    }
}

impl Outflows for Store {
    async fn signed_by_keygate(&self, tx_hash: &str) -> Persisted<bool> {
        Ok(self.evm_tx_decision(tx_hash).await.map_err(err)?.is_some())
    }

    async fn rescue_tx(&self, tx_hash: &str) -> Persisted<bool> {
        self.rescue_tx_known(tx_hash).await.map_err(err)
    }

    async fn outflow_known(&self, venue: &str, id: &str) -> Persisted<bool> {
        Store::outflow_known(self, venue, id).await.map_err(err)
    }

    async fn destinations(&self) -> Persisted<Vec<Destination>> {
        Store::destinations(self).await.map_err(err)
    }

    async fn reconcile(&self, outflow: &Outflow, contain: Option<&Scope>) -> Persisted<Reconciled> {
        use keygate_store::reconcile::Reconciled as R;
        Ok(
            match self
                .reconcile_outflow(outflow, contain)
                .await
                .map_err(err)?
            {
                R::Known => Reconciled::Known,
                R::Matched {
                    decision_id,
                    audit_id,
                } => Reconciled::Matched {
                    decision_id,
                    audit_id,
                },
                R::Unapproved {
                    audit_id,
                    freeze_id,
                } => Reconciled::Unapproved {
                    audit_id,
                    freeze_id,
                },
            },
        )
    }
}

impl Alarms for Store {
    async fn record_alarm(&self, a: Alarm<'_>) -> Persisted<Alarmed> {
        let (audit_id, freeze_id) =
            Store::record_alarm(self, a.event, a.actor, a.reason, a.details, a.contain)
                .await
                .map_err(err)?;
        Ok(Alarmed {
            audit_id,
            freeze_id,
        })
    }
}

fn store_outcome(o: TxOutcome) -> keygate_store::TxOutcome {
    match o {
        TxOutcome::Signed => keygate_store::TxOutcome::Signed,
        TxOutcome::Accepted => keygate_store::TxOutcome::Accepted,
        TxOutcome::Refused => keygate_store::TxOutcome::Refused,
        TxOutcome::Unknown => keygate_store::TxOutcome::Unknown,
    }
}

/// The outcome the store wrote as text; any other text reads as `unknown` (it may be out).
fn outcome_of(text: &str) -> TxOutcome {
    [TxOutcome::Signed, TxOutcome::Accepted, TxOutcome::Refused]
        .into_iter()
        .find(|o| store_outcome(*o).as_str() == text)
        .unwrap_or(TxOutcome::Unknown)
}

impl From<&EvmTxRow> for TxRecord {
    fn from(r: &EvmTxRow) -> Self {
        TxRecord {
            tx_hash: r.tx_hash.clone(),
            decision_id: r.decision_id,
            nonce: r.nonce,
            raw: r.raw.clone(),
            outcome: outcome_of(&r.outcome),
            at_ms: r.at_ms,
            claims: r.claims,
        }
    }
}

/// The chain's view of a transfer's transactions as the store lists them.
pub fn tx_records(rows: &[EvmTxRow]) -> Vec<TxRecord> {
    rows.iter().map(TxRecord::from).collect()
}

impl From<&EvmTransferRow> for TransferRecord {
    fn from(r: &EvmTransferRow) -> Self {
        TransferRecord {
            decision_id: r.decision_id,
            from_address: r.from_address.clone(),
            tx_hash: r.tx_hash.clone(),
            signing: r.state == "signing",
            error: r.error.clone(),
            at_ms: r.at_ms,
            attempts: r.attempts,
        }
    }
}

impl NonceHolds for Store {
    async fn held(&self, from: &str, min: u64) -> Persisted<Vec<TxRecord>> {
        Ok(tx_records(&self.evm_held(from, min).await.map_err(err)?))
    }

    async fn take_nonce(&self, from: &str, nonce: u64, tx: &NewTx<'_>) -> Persisted<Took> {
        let new = keygate_store::NewEvmTx {
            decision_id: tx.decision_id,
            tx_hash: tx.tx_hash,
            raw: tx.raw,
        };
        Ok(
            match self.evm_nonce_take(from, nonce, &new).await.map_err(err)? {
                keygate_store::Took::Taken => Took::Taken,
                keygate_store::Took::NonceHeld => Took::NonceHeld,
                keygate_store::Took::SameBytes => Took::SameBytes,
                keygate_store::Took::Abandoned => Took::Abandoned,
            },
        )
    }

    async fn tx_refused(
        &self,
        from: &str,
        nonce: u64,
        decision_id: i64,
        tx_hash: &str,
    ) -> Persisted<bool> {
        self.evm_tx_refused(from, nonce, decision_id, tx_hash)
            .await
            .map_err(err)
    }

    async fn tx_tombstone(
        &self,
        from: &str,
        nonce: u64,
        decision_id: i64,
        tx_hash: &str,
    ) -> Persisted<bool> {
        self.evm_tx_tombstone(from, nonce, decision_id, tx_hash)
            .await
            .map_err(err)
    }

    async fn tx_claim(
        &self,
        tx_hash: &str,
        seen_outcome: TxOutcome,
        seen_claims: i64,
    ) -> Persisted<bool> {
        self.evm_tx_claim(tx_hash, store_outcome(seen_outcome).as_str(), seen_claims)
            .await
            .map_err(err)
    }

    async fn tx_outcome(&self, tx_hash: &str, outcome: TxOutcome) -> Persisted<()> {
        self.evm_tx_outcome(tx_hash, store_outcome(outcome))
            .await
            .map_err(err)
    }

    async fn release_nonce(&self, from: &str, nonce: u64, decision_id: i64) -> Persisted<bool> {
        self.evm_nonce_release(from, nonce, decision_id)
            .await
            .map_err(err)
    }
}

impl TransferRecords for Store {
    async fn begin_transfer(&self, t: &NewTransfer<'_>) -> Persisted<()> {
        self.evm_transfer_begin(&keygate_store::NewEvmTransfer {
            decision_id: t.decision_id,
            venue: t.venue,
            client: t.client,
            client_ref: t.client_ref,
            asset: t.asset,
            amount: t.amount,
            destination: t.destination,
            from_address: t.from_address,
            at_ms: t.at_ms,
        })
        .await
        .map_err(err)
    }

    async fn transfer_done(
        &self,
        decision_id: i64,
        state: TransferState,
        tx: Option<(&str, u64)>,
        error: Option<&str>,
    ) -> Persisted<()> {
        let state = match state {
            TransferState::Sent => keygate_store::TransferState::Sent,
            TransferState::Unknown => keygate_store::TransferState::Unknown,
            TransferState::Refused => keygate_store::TransferState::Refused,
        };
        self.evm_transfer_done(decision_id, state, tx, error)
            .await
            .map_err(err)
    }

    async fn abandon_transfer(&self, decision_id: i64, seen: i64, error: &str) -> Persisted<bool> {
        self.evm_transfer_abandon(decision_id, seen, error)
            .await
            .map_err(err)
    }
}

/// A stored rescue transaction as the chain reads it; a row whose numbers do not read is
/// corrupt (an error, never a guess).
fn rescue_tx_of(r: &keygate_store::RescueTxRow) -> Persisted<RescueTx> {
    let corrupt = |what: &str| {
        PersistError::new(keygate_store::StoreError::Corrupt(format!(
            "rescue {} transaction {}: {what}",
            r.rescue_id, r.tx_hash
        )))
    };
    Ok(RescueTx {
        nonce: u64::try_from(r.nonce).map_err(|_| corrupt("nonce"))?,
        rung: u32::try_from(r.rung).map_err(|_| corrupt("rung"))?,
        asset: r.asset.clone(),
        units: r.units.clone(),
        gas: u64::try_from(r.gas).map_err(|_| corrupt("gas"))?,
        max_fee: r.max_fee.parse().map_err(|_| corrupt("max fee"))?,
        tip: r.tip.parse().map_err(|_| corrupt("tip"))?,
        tx_hash: r.tx_hash.clone(),
        raw: r.raw.clone(),
        block: u64::try_from(r.block).map_err(|_| corrupt("block"))?,
        state: RescueTxState::parse(&r.state),
    })
}

fn to_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

impl Rescues for Store {
    async fn rescue_start(
        &self,
        venue: &str,
        from: &str,
        to: &str,
        reason: &str,
        actor: &str,
    ) -> Persisted<(i64, bool)> {
        Store::rescue_start(self, venue, from, to, reason, actor)
            .await
            .map_err(err)
    }

    async fn rescue_open(&self, venue: &str) -> Persisted<Option<RescueRecord>> {
        let Some(r) = Store::rescue_open(self, venue).await.map_err(err)? else {
            return Ok(None);
        };
        Ok(Some(RescueRecord {
            id: r.id,
            txs: r.txs.iter().map(rescue_tx_of).collect::<Result<_, _>>()?,
            venue: r.venue,
            from_address: r.from_address,
            rescue_to: r.rescue_to,
            reason: r.reason,
        }))
    }

    async fn rescue_signed(&self, rescue_id: i64, t: &RescueTx, actor: &str) -> Persisted<bool> {
        let (max_fee, tip) = (t.max_fee.to_string(), t.tip.to_string());
        Store::rescue_signed(
            self,
            rescue_id,
            &keygate_store::NewRescueTx {
                nonce: to_i64(t.nonce),
                rung: i64::from(t.rung),
                asset: &t.asset,
                units: &t.units,
                gas: to_i64(t.gas),
                max_fee: &max_fee,
                tip: &tip,
                tx_hash: &t.tx_hash,
                raw: &t.raw,
                block: to_i64(t.block),
            },
            actor,
        )
        .await
        .map_err(err)
    }

    async fn rescue_tx_state(
        &self,
        tx_hash: &str,
        state: RescueTxState,
        detail: &str,
        actor: &str,
    ) -> Persisted<bool> {
        Store::rescue_tx_state(self, tx_hash, state.as_str(), detail, actor)
            .await
            .map_err(err)
    }

    async fn rescue_done(&self, rescue_id: i64, outcome: &str, actor: &str) -> Persisted<bool> {
        Store::rescue_done(self, rescue_id, outcome, actor)
            .await
            .map_err(err)
    }

    async fn usd_prices(&self) -> Persisted<Vec<(String, rust_decimal::Decimal)>> {
        Ok(self
            .prices()
            .await
            .map_err(err)?
            .into_iter()
            .map(|p| (p.asset, p.usd))
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_outcome_the_store_writes_reads_back_as_itself() {
        for o in [
            TxOutcome::Signed,
            TxOutcome::Accepted,
            TxOutcome::Refused,
            TxOutcome::Unknown,
        ] {
            assert_eq!(outcome_of(store_outcome(o).as_str()), o);
        }
        assert_eq!(outcome_of("unsent"), TxOutcome::Unknown);
    }
}
