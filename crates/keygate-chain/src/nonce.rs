//! Nonces per signing address, healed against the node instead of trusted from memory.
//!
//! Sends from one address are serialised (one async lock per address). The next nonce is the
//! node's pending nonce for the address, except when keygate's own last transaction is beyond
//! it and the node still knows that transaction (a node that lags in counting its pool). If the
//! node no longer knows it (dropped from the pool, node restarted), the node's pending nonce
//! wins and the gap is re-used. Nothing is persisted, so nothing can jam across restarts. A
//! "nonce too low" or "nonce too high" answer, or a replacement refused as underpriced, forgets
//! the local view and re-signs with a fresh nonce, a bounded number of times.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};

use alloy::primitives::{Address, B256};

use crate::rpc::{Rpc, RpcError};
use crate::tx::{Key, Plan, Signed, sign};

/// How many times one transfer is re-signed after a nonce answer.
pub const MAX_ATTEMPTS: usize = 4;

/// What keygate knows about one address.
#[derive(Debug, Default)]
pub struct Slot {
    /// The nonce after keygate's last accepted transaction.
    next: Option<u64>,
    /// keygate's last accepted transaction.
    last: Option<B256>,
}

impl Slot {
    /// The nonce to sign with now.
    pub async fn next(&mut self, rpc: &Rpc, address: &Address) -> Result<u64, RpcError> {
        let pending = rpc.nonce(address, "pending").await?;
        Ok(match (self.next, self.last) {
            (Some(local), Some(last)) if local > pending => {
                if rpc.transaction(&last).await?.is_some() {
                    local
                } else {
                    tracing::warn!(address = %address, local, node = pending, "the node no longer knows keygate's last transaction; re-using its nonce");
                    pending
                }
            }
            _ => pending,
        })
    }

    fn accepted(&mut self, nonce: u64, hash: B256) {
        self.next = Some(nonce.saturating_add(1));
        self.last = Some(hash);
    }

    fn forget(&mut self) {
        self.next = None;
        self.last = None;
    }
}

/// The nonce slots of every signing address.
#[derive(Debug, Default)]
pub struct NonceManager {
    slots: Mutex<HashMap<Address, Arc<tokio::sync::Mutex<Slot>>>>,
}

/// Why a transaction was not sent.
#[derive(Debug, Clone, thiserror::Error)]
pub enum SendError {
    #[error(transparent)]
    Rpc(#[from] RpcError),
    #[error("the transaction could not be recorded before sending ({0}); nothing was sent")]
    Record(String),
    #[error("the key cannot sign")]
    Key,
    #[error("the node refused the nonce {MAX_ATTEMPTS} times in a row; nothing is pending")]
    NonceChurn,
}

/// How a node's refusal is handled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The same transaction is already in the pool: it was sent.
    AlreadyKnown,
    /// The nonce is stale or ahead of the node: re-sign with a fresh one.
    Nonce,
    /// Anything else: give up.
    Other,
}

/// Classifies a node's error answer to `eth_sendRawTransaction` (geth, anvil, reth, erigon and
/// nethermind wordings).
pub fn classify(e: &RpcError) -> Refusal {
    let Some(m) = e.node_message() else {
        return Refusal::Other;
    };
    if m.contains("already known") || m.contains("already imported") {
        Refusal::AlreadyKnown
    } else if m.contains("nonce too low")
        || m.contains("nonce too high")
        || m.contains("invalid nonce")
        || m.contains("nonce is too")
        || m.contains("oldnonce")
        || m.contains("replacement transaction underpriced")
        || m.contains("already exists with the same nonce")
    {
        Refusal::Nonce
    } else {
        Refusal::Other
    }
}

impl NonceManager {
    /// The slot of `address`, locked: hold it from taking a nonce until the node accepted the
    /// transaction.
    pub async fn lock(&self, address: Address) -> tokio::sync::OwnedMutexGuard<Slot> {
        let slot = {
            let mut slots = match self.slots.lock() {
                Ok(s) => s,
                Err(p) => p.into_inner(),
            };
            slots.entry(address).or_default().clone()
        };
        slot.lock_owned().await
    }

    /// Signs and sends `plan` from `key`'s address. `record` is called with every signed
    /// transaction before it is sent (and must make it durable); a nonce refusal re-signs with
    /// a fresh nonce. The accepted transaction's hash and nonce.
    pub async fn send<F, Fut>(
        &self,
        rpc: &Rpc,
        key: &Key,
        plan: &Plan,
        mut record: F,
    ) -> Result<Signed, SendError>
    where
        F: FnMut(&Signed) -> Fut,
        Fut: Future<Output = Result<(), String>>,
    {
        let address = key.address();
        let mut slot = self.lock(address).await;
        for _ in 0..MAX_ATTEMPTS {
            let nonce = match slot.next(rpc, &address).await {
                Ok(n) => n,
                Err(e) => {
                    slot.forget();
                    return Err(e.into());
                }
            };
            let signed = sign(key, plan, nonce).map_err(|_| SendError::Key)?;
            record(&signed).await.map_err(SendError::Record)?;
            match rpc.send_raw(&signed.raw).await {
                Ok(_) => {
                    slot.accepted(nonce, signed.hash);
                    return Ok(signed);
                }
                Err(e) => match classify(&e) {
                    Refusal::AlreadyKnown => {
                        slot.accepted(nonce, signed.hash);
                        return Ok(signed);
                    }
                    Refusal::Nonce => {
                        tracing::warn!(address = %address, nonce, error = %e, "the node refused the nonce; re-reading it from the node");
                        slot.forget();
                    }
                    Refusal::Other => {
                        slot.forget();
                        return Err(e.into());
                    }
                },
            }
        }
        Err(SendError::NonceChurn)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(msg: &str) -> RpcError {
        RpcError::Node {
            method: "eth_sendRawTransaction",
            code: -32000,
            message: msg.into(),
        }
    }

    #[test]
    fn classifies_the_nodes_wordings() {
        assert_eq!(classify(&node("nonce too low")), Refusal::Nonce);
        assert_eq!(
            classify(&node("Nonce too high. Expected nonce to be 3 but got 9")),
            Refusal::Nonce
        );
        assert_eq!(
            classify(&node("replacement transaction underpriced")),
            Refusal::Nonce
        );
        assert_eq!(classify(&node("already known")), Refusal::AlreadyKnown);
        assert_eq!(
            classify(&node("insufficient funds for gas * price + value")),
            Refusal::Other
        );
        assert_eq!(
            classify(&RpcError::Unreachable {
                url: "x".into(),
                reason: "timed out"
            }),
            Refusal::Other
        );
    }
}
