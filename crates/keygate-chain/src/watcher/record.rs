//! Writes one block's [`Judgement`]: logs what the nonce comparison found and the unlisted
//! contracts' logs, records the `chain.nonce_gap` alarms, reconciles each outflow not judged
//! before (matched to its decision, or unapproved with the containment freeze), sends the
//! events, and keeps each treasury's nonce along the blocks.
//!
//! It must not judge or read the node: the judgement is made by [`super::judge`].

use std::time::Instant;

use alloy::primitives::{Address, B256};

use crate::persist::{Alarm, Alarmed, Reconciled, WatchStore};
use crate::rpc::Block;
use crate::{address_text, hash_text};

use super::judge::{Judgement, NonceNote};
use super::{Event, WatchError, Watcher};

impl<P: WatchStore> Watcher<P> {
    /// Writes the judgement of `block`; its nonces are kept only once every outflow is judged.
    pub(super) async fn record(&mut self, block: &Block, j: Judgement) -> Result<(), WatchError> {
        for (t, note) in &j.notes {
            self.note(block, *t, note).await?;
        }
        for (contract, tx) in &j.unlisted {
            tracing::warn!(
                alarm = "chain.unlisted_log",
                venue = %self.venue.name,
                contract = %address_text(contract),
                tx = %hash_text(tx),
                "a contract not in the venue's tokens emitted a Transfer or Approval naming the treasury; not a freeze (anyone can emit one), check it"
            );
        }
        for o in j.outflows {
            if self.store.outflow_known(&o.venue, &o.id).await? {
                continue;
            }
            let result = self.store.reconcile(&o, self.contain.as_ref()).await?;
            let at = Instant::now();
            match &result {
                Reconciled::Unapproved {
                    audit_id,
                    freeze_id,
                } => {
                    tracing::error!(venue = %o.venue, tx = %o.id, asset = %o.asset, amount = %o.amount, destination = %o.destination, audit_id, freeze_id, "an outflow keygate never approved left the treasury; containment applied");
                }
                Reconciled::Matched { decision_id, .. } => {
                    tracing::info!(venue = %o.venue, tx = %o.id, decision_id, "outflow matched its decision");
                }
                Reconciled::Known => {}
            }
            self.event(block.number.to::<u64>(), block.hash, o, result, at);
        }
        self.nonces.extend(j.nonces);
        Ok(())
    }

    fn event(
        &self,
        block: u64,
        block_hash: B256,
        outflow: keygate_core::outflow::Outflow,
        result: Reconciled,
        at: Instant,
    ) {
        if let Some(tx) = &self.events {
            let _ = tx.send(Event {
                block,
                block_hash,
                outflow,
                result,
                at,
            });
        }
    }

    /// Logs what the nonce comparison of treasury `t` found; a gap is an audited alarm.
    async fn note(&self, block: &Block, t: Address, note: &NonceNote) -> Result<(), WatchError> {
        let n = block.number.to::<u64>();
        let venue = &self.venue.name;
        match note {
            NonceNote::Resumed { from } => {
                tracing::info!(venue = %venue, treasury = %address_text(&t), from, to = n, "the treasury's nonce is compared again, over the blocks whose state the node did not give");
            }
            NonceNote::Unexplained {
                before,
                after,
                transactions,
            } => {
                tracing::error!(venue = %venue, treasury = %address_text(&t), block = n, before, after, transactions, "the treasury's nonce moved by more (or less) than its transactions");
            }
            NonceNote::Deferred => {
                tracing::warn!(venue = %venue, treasury = %address_text(&t), block = n, "the node gives no state for this block (pruned, or a backend behind); the treasury's nonce is compared at the next block it gives, over all the blocks between");
            }
            NonceNote::Gap { since } => {
                let reason = format!(
                    "the node gives no nonce of treasury {} from before block {n} (pruned state, and none kept): the treasury's nonce is compared from here on; a delegation signed and revoked before it would not show: check the treasury's history on chain",
                    address_text(&t)
                );
                let Alarmed { audit_id, .. } = self
                    .store
                    .record_alarm(Alarm {
                        event: "chain.nonce_gap",
                        actor: &format!("watcher:{venue}"),
                        reason: &reason,
                        details: serde_json::json!({
                            "venue": venue, "treasury": address_text(&t), "block": n,
                            "block_hash": hash_text(&block.hash), "since": since,
                        }),
                        contain: None,
                    })
                    .await?;
                tracing::warn!(alarm = "chain.nonce_gap", venue = %venue, treasury = %address_text(&t), block = n, since = since, audit_id, "{reason}");
            }
        }
        Ok(())
    }
}
