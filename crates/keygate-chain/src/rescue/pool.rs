//! The node's pending pool, as far as a treasury's transactions go: which transactions from the
//! treasury wait to be mined, with their nonces and fees.
//!
//! Nodes differ in what they answer (all over plain HTTP, polled):
//! - `eth_getTransactionCount(address, "pending")` against `"latest"`: every node; a pending
//!   count above the mined one says the pool holds the address's transactions. It is asked
//!   first, so a quiet treasury costs two calls per poll.
//! - `txpool_contentFrom(address)`: go-ethereum (the `txpool` namespace,
//!   <https://geth.ethereum.org/docs/rpc/ns-txpool>) and clients that copy it; anvil answers
//!   "Method not found".
//! - `txpool_content`: go-ethereum, Besu has its own (`txpool_besuTransactions`), anvil has it
//!   (checked against anvil 1.7.1); every sender's transactions, so it is only asked when
//!   `txpool_contentFrom` is missing.
//! - `eth_getBlockByNumber("pending", true)`: the node's next block as it would build it (only
//!   the transactions it would include); the last resort.
//!
//! Push is not used: `eth_subscribe("newPendingTransactions")` needs a WebSocket (anvil, geth,
//! Besu have it over WS, <https://besu.hyperledger.org/stable/public-networks/concepts/transactions/pool>),
//! and gives hashes that must be fetched one by one anyway; keygate's JSON-RPC client is HTTP.
//! A hosted endpoint's pool is the provider's: what was sent privately (to a builder, through
//! "MEV protection") is in no public pool and shows only once mined
//! (<https://docs.chainstack.com/reference/ethereum-native-subscribe-newpendingtransactions>).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU8, Ordering};

use alloy::primitives::{Address, B256, U64, U256};
use serde::Deserialize;
use serde_json::json;

use super::ladder::Fees;
use crate::rpc::{Rpc, RpcError};

/// A transaction from the treasury in the node's pool.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PoolTx {
    pub hash: B256,
    pub from: Address,
    pub nonce: U64,
    #[serde(default)]
    pub to: Option<Address>,
    pub value: U256,
    #[serde(default)]
    pub max_fee_per_gas: Option<U256>,
    #[serde(default)]
    pub max_priority_fee_per_gas: Option<U256>,
    #[serde(default)]
    pub gas_price: Option<U256>,
}

impl PoolTx {
    /// Its fees as a replacement must outbid them (a legacy transaction's gas price is both).
    pub fn fees(&self) -> Fees {
        let wei = |v: Option<U256>| v.and_then(|v| u128::try_from(v).ok());
        let price = wei(self.gas_price);
        let max_fee = wei(self.max_fee_per_gas).or(price).unwrap_or(0);
        Fees {
            max_fee,
            tip: wei(self.max_priority_fee_per_gas)
                .or(price)
                .unwrap_or(max_fee),
        }
    }
}

/// Which pool call the node answers: 0 not known yet, 1 `txpool_contentFrom`, 2
/// `txpool_content`, 3 the pending block.
#[derive(Debug, Default)]
pub struct Pool {
    method: AtomicU8,
}

/// The answer to `txpool_contentFrom(address)`: nonce (as text) to transaction, per section.
#[derive(Debug, Default, Deserialize)]
pub struct Sections {
    #[serde(default)]
    pending: BTreeMap<String, PoolTx>,
    #[serde(default)]
    queued: BTreeMap<String, PoolTx>,
}

/// The answer to `txpool_content`: sender to nonce to transaction, per section.
#[derive(Debug, Default, Deserialize)]
pub struct AllSections {
    #[serde(default)]
    pending: BTreeMap<Address, BTreeMap<String, PoolTx>>,
    #[serde(default)]
    queued: BTreeMap<Address, BTreeMap<String, PoolTx>>,
}

/// The answer to `eth_getBlockByNumber("pending", true)`, as far as its transactions go.
#[derive(Debug, Deserialize)]
pub struct PendingBlock {
    transactions: Vec<PoolTx>,
}

impl Sections {
    /// The transactions from `from` in this answer, lowest nonce first.
    pub fn sent_by(self, from: &Address) -> Vec<PoolTx> {
        mine(
            self.pending.into_values().chain(self.queued.into_values()),
            from,
        )
    }
}

impl AllSections {
    /// The transactions from `from` in this answer, lowest nonce first.
    pub fn sent_by(mut self, from: &Address) -> Vec<PoolTx> {
        let mut out: Vec<PoolTx> = vec![];
        for section in [&mut self.pending, &mut self.queued] {
            if let Some(txs) = section.remove(from) {
                out.extend(txs.into_values());
            }
        }
        mine(out, from)
    }
}

impl PendingBlock {
    /// The transactions from `from` in this block, lowest nonce first.
    pub fn sent_by(self, from: &Address) -> Vec<PoolTx> {
        mine(self.transactions, from)
    }
}

/// Those of `txs` sent by `from` (a node's answer may name others under its address), lowest
/// nonce first.
fn mine(txs: impl IntoIterator<Item = PoolTx>, from: &Address) -> Vec<PoolTx> {
    let mut txs: Vec<PoolTx> = txs.into_iter().filter(|t| t.from == *from).collect();
    txs.sort_by_key(|t| t.nonce);
    txs
}

/// Whether the node says it has no such method.
fn missing(e: &RpcError) -> bool {
    matches!(e, RpcError::Node { code: -32601, .. })
        || e.node_message().is_some_and(|m| {
            m.contains("not found") || m.contains("not supported") || m.contains("does not exist")
        })
}

impl Pool {
    /// Whether the pool may hold transactions from `from` (its pending count is above its
    /// mined one), and the mined count.
    pub async fn busy(&self, rpc: &Rpc, from: &Address) -> Result<(bool, u64), RpcError> {
        let latest = rpc.nonce(from, "latest").await?;
        let pending = rpc.nonce(from, "pending").await?;
        Ok((pending > latest, latest))
    }

    /// The transactions from `from` in the pool, lowest nonce first (several at one nonce, as a
    /// pool may hold, each).
    pub async fn from(&self, rpc: &Rpc, from: &Address) -> Result<Vec<PoolTx>, RpcError> {
        loop {
            let m = self.method.load(Ordering::Relaxed);
            let answer = match m {
                0 | 1 => rpc
                    .call::<Sections>("txpool_contentFrom", json!([from]))
                    .await
                    .map(|s| s.sent_by(from)),
                2 => rpc
                    .call::<AllSections>("txpool_content", json!([]))
                    .await
                    .map(|s| s.sent_by(from)),
                _ => rpc
                    .call::<Option<PendingBlock>>("eth_getBlockByNumber", json!(["pending", true]))
                    .await
                    .map(|b| b.map(|b| b.sent_by(from)).unwrap_or_default()),
            };
            match answer {
                Ok(txs) => {
                    if m == 0 {
                        self.method.store(1, Ordering::Relaxed);
                    }
                    return Ok(txs);
                }
                Err(e) if m < 3 && missing(&e) => {
                    self.method.store(m.max(1) + 1, Ordering::Relaxed);
                }
                Err(e) => return Err(e),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{Answer, fake_node};
    use serde_json::Value;
    use std::time::Duration;

    fn tx(from: &str, nonce: u64, tip: &str) -> Value {
        json!({"hash": format!("0x{:064x}", nonce + 1), "from": from, "nonce": format!("{nonce:#x}"),
               "to": null, "value": "0x1", "maxFeePerGas": "0x64", "maxPriorityFeePerGas": tip})
    }

    #[tokio::test]
    async fn a_node_without_txpool_content_from_is_read_through_txpool_content() {
        let me = "0x00000000000000000000000000000000000000aa";
        let other = "0x00000000000000000000000000000000000000bb";
        let (a, b) = (tx(me, 5, "0x2"), tx(other, 1, "0x3"));
        let url = fake_node(None, move |method, _| match method {
            "txpool_contentFrom" => Answer::Error(-32601, "Method not found".into()),
            "txpool_content" => Answer::Result(json!({
                "pending": {me: {"5": a.clone()}, other: {"1": b.clone()}}, "queued": {}
            })),
            _ => Answer::Result(Value::Null),
        })
        .await;
        let rpc = Rpc::new(&url, Duration::from_secs(5)).unwrap();
        let pool = Pool::default();
        let me: Address = me.parse().unwrap();
        for _ in 0..2 {
            let txs = pool.from(&rpc, &me).await.unwrap();
            assert_eq!(txs.len(), 1);
            assert_eq!(txs[0].nonce.to::<u64>(), 5);
            assert_eq!(
                txs[0].fees(),
                Fees {
                    max_fee: 100,
                    tip: 2
                }
            );
        }
        assert_eq!(pool.method.load(Ordering::Relaxed), 2);
    }

    #[tokio::test]
    async fn an_error_other_than_a_missing_method_is_an_error() {
        let url = fake_node(None, |_, _| Answer::Error(-32000, "rate limited".into())).await;
        let rpc = Rpc::new(&url, Duration::from_secs(5)).unwrap();
        assert!(Pool::default().from(&rpc, &Address::ZERO).await.is_err());
    }
}
