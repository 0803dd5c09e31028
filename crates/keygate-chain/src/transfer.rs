//! One transfer, end to end below the HTTP layer: check the request against the venue
//! ([`Transfers::plan`]: asset listed, amount exact in the token's decimals, node reachable,
//! chain id, gas and fees), then, once the decider has durably allowed it, sign and send it
//! ([`Transfers::execute`]: the row, and every signed transaction with its nonce, recorded
//! before anything is sent), and report its state ([`Transfers::status`]: pending, confirmed at
//! the venue's depth, or failed).
//!
//! The node is asked before the decision, so a node that is down costs no decision and no limit
//! debit: the request is refused as unavailable and nothing is signed. If the node refuses the
//! send outright, the transfer is `refused` and failed; if it gives no clear answer (timed out,
//! a proxy's error), the transfer is `unknown`, reported pending, and only the chain decides it:
//! confirmed when a transaction of it is mined, failed when its nonce was used by another
//! transaction at a confirmed block. Failed is final. Either way the debit stays: limits only
//! ever over-count.

use alloy::primitives::{Address, B256, U256};
use rust_decimal::Decimal;

use crate::amount::{AmountError, to_units};
use crate::nonce::{NonceManager, Resent, SendError, being_sent, resend};
use crate::persist::{NewTransfer, TransferRecord, TransferRecords, TransferState, TxRecord};
use crate::rpc::{ClientError, Receipt, Rpc, RpcError};
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

/// Why a transfer's state could not be read.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StatusError {
    #[error(transparent)]
    Node(#[from] RpcError),
    #[error("keygate could not read or write the transfer ({0})")]
    Store(String),
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
        /// Why it is not mined yet, when keygate knows something the client should.
        #[serde(skip_serializing_if = "Option::is_none")]
        note: Option<String>,
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
    pub fn new(venue: EvmVenue) -> Result<Self, ClientError> {
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

    /// Signs and sends an allowed transfer: records it (state `signing`), takes its nonce with
    /// each signed transaction before sending it, and marks it `sent`, `unknown` (no clear
    /// answer: it may be pending) or `refused` (nothing is pending).
    pub async fn execute(
        &self,
        store: &impl TransferRecords,
        key: &Key,
        decision_id: i64,
        client: &str,
        client_ref: &str,
        p: &Planned,
    ) -> Result<Signed, SendError> {
        let now = store.now_ms();
        store
            .begin_transfer(&NewTransfer {
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
            .send(
                &self.rpc,
                store,
                key,
                &p.plan,
                decision_id,
                self.venue.timeout,
            )
            .await;
        let done = match &sent {
            Ok(s) => {
                let hash = hash_text(&s.hash);
                store
                    .transfer_done(
                        decision_id,
                        TransferState::Sent,
                        Some((&hash, s.nonce)),
                        None,
                    )
                    .await
            }
            Err(e) => {
                let state = if e.maybe_out() {
                    TransferState::Unknown
                } else {
                    TransferState::Refused
                };
                store
                    .transfer_done(decision_id, state, e.maybe_pending(), Some(&e.to_string()))
                    .await
            }
        };
        if let Err(e) = done {
            tracing::error!(decision_id, error = %e, "a transfer's outcome could not be recorded");
        }
        sent
    }

    /// The state of a recorded transfer, read from the chain (so a reorg is reflected): mined
    /// when a receipt of any of its transactions exists; failed when nothing of it can be mined
    /// (each refused outright) or its nonce was used by another transaction at a confirmed
    /// block; pending otherwise, after sending its newest transaction again, byte for byte, if
    /// the node no longer has it.
    pub async fn status(
        &self,
        store: &impl TransferRecords,
        row: &TransferRecord,
        txs: &[TxRecord],
    ) -> Result<Status, StatusError> {
        let head = self.rpc.block_number().await?;
        let need = self.venue.confirmations.max(1);
        if let Some(mined) = self.mined(row, txs, head, need).await? {
            return Ok(mined);
        }
        let live: Vec<&TxRecord> = txs.iter().filter(|t| t.maybe_out()).collect();
        let Some(newest) = live.iter().max_by_key(|t| (t.at_ms, t.nonce)).copied() else {
            return nothing_live(store, row).await;
        };
        let highest = live.iter().map(|t| t.nonce).max().unwrap_or(newest.nonce);
        if let Some(failed) = self.nonce_used_elsewhere(row, highest, head, need).await? {
            return Ok(failed);
        }
        // Not while it is being sent (the request carrying it out, or another instance): a
        // node's refusal to that sender must not race a copy sent from here. (A copy sent
        // anyway is claimed first, so the two exclude each other.)
        let now = store.now_ms();
        let sending = row.signing && now.saturating_sub(row.at_ms) < SIGNING_GRACE_MS;
        let note = if sending || being_sent(newest, now, self.venue.timeout) {
            None
        } else {
            self.send_again(store, row, newest).await?
        };
        Ok(Status::Pending {
            tx_hash: Some(newest.tx_hash.clone()),
            block: None,
            confirmations: 0,
            note,
        })
    }

    /// The state of the first of the transfer's transactions that has a receipt (the one
    /// accepted last first: it is the likeliest to be mined), if any has.
    async fn mined(
        &self,
        row: &TransferRecord,
        txs: &[TxRecord],
        head: u64,
        need: u64,
    ) -> Result<Option<Status>, StatusError> {
        let mut order: Vec<&TxRecord> = txs.iter().collect();
        order.sort_by_key(|t| (row.tx_hash.as_ref() != Some(&t.tx_hash), !t.maybe_out()));
        for t in order {
            let Ok(hash) = t.tx_hash.parse::<B256>() else {
                continue;
            };
            if let Some(r) = self.rpc.receipt(&hash).await? {
                return Ok(Some(receipt_status(&t.tx_hash, &r, head, need)));
            }
        }
        Ok(None)
    }

    /// Failed, when the nonce `highest` (the highest of the transfer's live transactions) was
    /// used by another transaction at a confirmed block: none of its transactions can ever be
    /// mined.
    async fn nonce_used_elsewhere(
        &self,
        row: &TransferRecord,
        highest: u64,
        head: u64,
        need: u64,
    ) -> Result<Option<Status>, StatusError> {
        let confirmed_block = head.saturating_add(1).saturating_sub(need);
        let from: Address = row.from_address.parse().map_err(|_| {
            StatusError::Store(format!(
                "the transfer's from address {:?} is not an address",
                row.from_address
            ))
        })?;
        let used = self
            .rpc
            .nonce(&from, &format!("{confirmed_block:#x}"))
            .await?;
        Ok((used > highest).then(|| Status::Failed {
            tx_hash: None,
            reason: format!(
                "nonce {highest} was used by another transaction (at block {confirmed_block} or before, confirmed) and no transaction of this transfer was mined: nothing was paid; send a new transfer if it is still wanted"
            ),
        }))
    }

    /// Sends the transfer's newest transaction again if the node no longer has it; the note the
    /// status carries about it.
    async fn send_again(
        &self,
        store: &impl TransferRecords,
        row: &TransferRecord,
        newest: &TxRecord,
    ) -> Result<Option<String>, StatusError> {
        Ok(match resend(&self.rpc, store, newest).await {
            Ok(Resent::Known | Resent::Changed) => None,
            Ok(Resent::Sent) => {
                tracing::warn!(tx = %newest.tx_hash, decision_id = row.decision_id, "the node no longer had a transfer's transaction; sent the same bytes again");
                Some(
                    "the node had dropped the transaction; keygate sent the same transaction again"
                        .to_string(),
                )
            }
            Ok(Resent::Refused(e)) => {
                tracing::warn!(alarm = "chain.nonce_released", tx = %newest.tx_hash, decision_id = row.decision_id, error = %e, "the node refuses a dropped transaction of keygate's; its nonce is given back (only one transaction can be mined at it)");
                if let Err(e) = store
                    .release_nonce(&row.from_address, newest.nonce, row.decision_id)
                    .await
                {
                    tracing::error!(error = %e, "a nonce could not be given back; it stays held");
                }
                Some(format!(
                    "the node no longer has the transaction and refuses it again ({e}); it is failed once another transaction uses nonce {}, or confirmed if it is mined after all",
                    newest.nonce
                ))
            }
            Ok(Resent::Unknown(e)) => Some(format!(
                "the node no longer has the transaction and answered an error when it was sent again ({e}); it keeps its nonce"
            )),
            Err(e) if e.unreachable() => return Err(e.into()),
            Err(e) => Some(format!(
                "the node no longer has the transaction and gave no clear answer when it was sent again ({e})"
            )),
        })
    }
}

/// The state a receipt of transaction `tx_hash` gives, with the node's newest block `head` and
/// `need` confirmations for final: confirmed or (reverted) failed once deep enough, pending
/// before.
fn receipt_status(tx_hash: &str, r: &Receipt, head: u64, need: u64) -> Status {
    let block = r.block_number.to::<u64>();
    let confirmations = head.saturating_sub(block).saturating_add(1);
    let deep = confirmations >= need;
    if r.status.to::<u64>() != 1 {
        // Final only once deep enough: a reorg could still mine it elsewhere.
        return if deep {
            Status::Failed {
                tx_hash: Some(tx_hash.to_string()),
                reason: "the transaction was mined but reverted: nothing was paid (its gas was)"
                    .into(),
            }
        } else {
            Status::Pending {
                tx_hash: Some(tx_hash.to_string()),
                block: Some(block),
                confirmations,
                note: Some(format!("mined but reverted; final once {need} blocks deep")),
            }
        };
    }
    if deep {
        Status::Confirmed {
            tx_hash: tx_hash.to_string(),
            block,
            confirmations,
        }
    } else {
        Status::Pending {
            tx_hash: Some(tx_hash.to_string()),
            block: Some(block),
            confirmations,
            note: None,
        }
    }
}

/// The state of a transfer none of whose transactions can be mined. One still `signing` is
/// being sent now, unless keygate stopped before sending it: given up only if no send took a
/// nonce since this read (compare-and-set), so a late sender sends nothing.
async fn nothing_live(
    store: &impl TransferRecords,
    row: &TransferRecord,
) -> Result<Status, StatusError> {
    if !row.signing {
        return Ok(Status::Failed {
            tx_hash: None,
            reason: row
                .error
                .clone()
                .unwrap_or_else(|| "nothing was sent; nothing is pending".into()),
        });
    }
    let stale = store.now_ms().saturating_sub(row.at_ms) > SIGNING_GRACE_MS;
    let gave_up = stale
        && store
            .abandon_transfer(row.decision_id, row.attempts, ABANDONED)
            .await
            .map_err(|e| StatusError::Store(e.to_string()))?;
    Ok(if gave_up {
        Status::Failed {
            tx_hash: None,
            reason: ABANDONED.into(),
        }
    } else {
        Status::Pending {
            tx_hash: None,
            block: None,
            confirmations: 0,
            note: None,
        }
    })
}

/// How long a transfer may stay `signing` with nothing sent before a status read gives it up
/// (keygate stopped between the decision and the send).
const SIGNING_GRACE_MS: i64 = 5 * 60_000;

/// Why a transfer given up failed.
const ABANDONED: &str =
    "keygate stopped before the transaction was sent, and gave the transfer up: nothing is pending";
