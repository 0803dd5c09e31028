//! One transfer, end to end below the HTTP layer: check the request against the venue
//! ([`Transfers::plan`]: asset listed, amount exact in the token's decimals, node reachable,
//! chain id, gas and fees), then, once the decider has durably allowed it, sign and send it
//! ([`Transfers::execute`]: the row and every signed hash recorded before anything is sent),
//! and report its state ([`Transfers::status`]: pending, confirmed at the venue's depth, or
//! failed).
//!
//! The node is asked before the decision, so a node that is down costs no decision and no limit
//! debit: the request is refused as unavailable and nothing is signed. If the node fails between
//! the decision and the send (a window of milliseconds), the transfer is recorded `unsent` and
//! its debit stays: limits only ever over-count.

use alloy::primitives::{Address, B256, U256};
use keygate_store::{EvmTransferRow, NewEvmTransfer, Store};
use rust_decimal::Decimal;

use crate::amount::{AmountError, to_units};
use crate::nonce::{NonceManager, SendError};
use crate::rpc::{Rpc, RpcError};
use crate::tx::{Key, Plan, PrepareError, Signed, prepare};
use crate::{EvmVenue, address_text, hash_text};

/// Why a transfer was refused before any decision.
#[derive(Debug, Clone, thiserror::Error)]
pub enum PlanError {
    #[error("asset {asset:?} is not known on venue {venue}; its assets are {known}")]
    UnknownAsset {
        asset: String,
        venue: String,
        known: String,
    },
    #[error(transparent)]
    Amount(#[from] AmountError),
    /// The node cannot be reached: nothing was decided or signed.
    #[error("{0}; nothing was decided or signed, retry when the node is back")]
    NodeDown(RpcError),
    /// The node says the transfer would fail (for instance beyond the balance).
    #[error("the node refuses the transfer: {0}")]
    Refused(RpcError),
    #[error(transparent)]
    WrongChain(PrepareError),
}

/// A transfer, checked and priced.
#[derive(Debug, Clone)]
pub struct Planned {
    pub asset: String,
    pub amount: Decimal,
    pub to: Address,
    pub plan: Plan,
}

/// A transfer's state on chain.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "status", rename_all = "lowercase")]
pub enum Status {
    Pending {
        tx_hash: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        block: Option<u64>,
        confirmations: u64,
    },
    Confirmed {
        tx_hash: String,
        block: u64,
        confirmations: u64,
    },
    Failed {
        #[serde(skip_serializing_if = "Option::is_none")]
        tx_hash: Option<String>,
        reason: String,
    },
}

/// The transfers of one EVM venue.
#[derive(Debug)]
pub struct Transfers {
    pub venue: EvmVenue,
    pub rpc: Rpc,
    pub nonces: NonceManager,
}

impl Transfers {
    pub fn new(venue: EvmVenue) -> Result<Self, String> {
        let rpc = Rpc::new(&venue.rpc_url, venue.timeout)?;
        Ok(Self {
            venue,
            rpc,
            nonces: NonceManager::default(),
        })
    }

    /// Checks a transfer of `amount` `asset` from `from` to `to`, and prices it with the node.
    pub async fn plan(
        &self,
        from: Address,
        asset: &str,
        to: Address,
        amount: Decimal,
    ) -> Result<Planned, PlanError> {
        let Some((token, decimals)) = self.venue.asset(asset) else {
            let mut known = vec![crate::NATIVE.to_string()];
            known.extend(self.venue.tokens.keys().cloned());
            return Err(PlanError::UnknownAsset {
                asset: asset.into(),
                venue: self.venue.name.clone(),
                known: known.join(", "),
            });
        };
        let units: U256 = to_units(amount, decimals)?;
        let plan = prepare(&self.rpc, self.venue.chain_id, from, token, to, units)
            .await
            .map_err(|e| match e {
                PrepareError::Rpc(e) if e.unreachable() => PlanError::NodeDown(e),
                PrepareError::Rpc(e) => PlanError::Refused(e),
                e @ PrepareError::WrongChain { .. } => PlanError::WrongChain(e),
            })?;
        Ok(Planned {
            asset: asset.into(),
            amount,
            to,
            plan,
        })
    }

    /// Signs and sends an allowed transfer: records it (state `signing`), records each signed
    /// hash before sending it, and marks it `sent` or `unsent`.
    pub async fn execute(
        &self,
        store: &Store,
        key: &Key,
        decision_id: i64,
        client: &str,
        client_ref: &str,
        p: &Planned,
    ) -> Result<Signed, SendError> {
        let now = store.clock().now();
        store
            .evm_transfer_begin(&NewEvmTransfer {
                decision_id,
                venue: &self.venue.name,
                client,
                client_ref,
                asset: &p.asset,
                amount: &p.amount.normalize().to_string(),
                destination: &address_text(&p.to),
                from_address: &address_text(&key.address()),
                at_ms: now,
            })
            .await
            .map_err(|e| SendError::Record(e.to_string()))?;
        let sent = self
            .nonces
            .send(&self.rpc, key, &p.plan, |s| {
                let hash = hash_text(&s.hash);
                let nonce = s.nonce;
                async move {
                    store
                        .evm_tx_signed(decision_id, &hash, nonce, store.clock().now())
                        .await
                        .map_err(|e| e.to_string())
                }
            })
            .await;
        let done = match &sent {
            Ok(s) => {
                store
                    .evm_transfer_done(decision_id, Ok((&hash_text(&s.hash), s.nonce)))
                    .await
            }
            Err(e) => {
                store
                    .evm_transfer_done(decision_id, Err(&e.to_string()))
                    .await
            }
        };
        if let Err(e) = done {
            tracing::error!(decision_id, error = %e, "a transfer's outcome could not be recorded");
        }
        sent
    }

    /// The state of a recorded transfer, read from the node (so a reorg is reflected).
    pub async fn status(
        &self,
        row: &EvmTransferRow,
        hashes: &[String],
    ) -> Result<Status, RpcError> {
        if row.state == "unsent" {
            return Ok(Status::Failed {
                tx_hash: None,
                reason: row
                    .error
                    .clone()
                    .unwrap_or_else(|| "the transaction was not sent".into()),
            });
        }
        let head = self.rpc.block_number().await?;
        let need = self.venue.confirmations.max(1);
        let mut known = None;
        // The hash sent last first: it is the one the node accepted.
        let mut order: Vec<&String> = vec![];
        if let Some(h) = &row.tx_hash {
            order.push(h);
        }
        order.extend(hashes.iter().filter(|h| Some(*h) != row.tx_hash.as_ref()));
        for h in order {
            let Ok(hash) = h.parse::<B256>() else {
                continue;
            };
            if let Some(r) = self.rpc.receipt(&hash).await? {
                let block = r.block_number.to::<u64>();
                let confirmations = head.saturating_sub(block).saturating_add(1);
                if r.status.to::<u64>() != 1 {
                    return Ok(Status::Failed {
                        tx_hash: Some(h.clone()),
                        reason: "the transaction was mined but reverted".into(),
                    });
                }
                return Ok(if confirmations >= need {
                    Status::Confirmed {
                        tx_hash: h.clone(),
                        block,
                        confirmations,
                    }
                } else {
                    Status::Pending {
                        tx_hash: Some(h.clone()),
                        block: Some(block),
                        confirmations,
                    }
                });
            }
            if known.is_none() && self.rpc.transaction(&hash).await?.is_some() {
                known = Some(h.clone());
            }
        }
        if row.state == "signing" || known.is_some() {
            return Ok(Status::Pending {
                tx_hash: known.or_else(|| row.tx_hash.clone()),
                block: None,
                confirmations: 0,
            });
        }
        Ok(Status::Failed {
            tx_hash: row.tx_hash.clone(),
            reason: "the node no longer knows the transaction (dropped, or its nonce was used by another transaction); it was not re-sent: send a new transfer if it is still wanted".into(),
        })
    }
}
