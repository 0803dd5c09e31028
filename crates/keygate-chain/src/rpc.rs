//! A small Ethereum JSON-RPC client over HTTP: the calls keygate makes, typed with alloy's
//! primitives. Its errors say whether the node could not be reached (the caller refuses and
//! retries later), answered with an error (its code and message, such as "nonce too low"), or
//! answered something keygate does not take: an answer longer than [`MAX_ANSWER_BYTES`] (read
//! in chunks and refused past the cap), or one missing a field, such as a block without its
//! full transaction list.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use alloy::primitives::{Address, B256, Bloom, Bytes, U64, U256};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

/// The largest answer keygate reads from a node (32 MiB), [`Rpc::with_max_answer`] to change it:
/// a node that answers more is refused, not buffered without end.
pub const MAX_ANSWER_BYTES: usize = 32 << 20;

/// What went wrong with a call.
#[derive(Debug, Clone, thiserror::Error)]
pub enum RpcError {
    #[error("the node at {url} cannot be reached ({reason})")]
    Unreachable { url: String, reason: &'static str },
    #[error("the node answered {method} with error {code}: {message}")]
    Node {
        method: &'static str,
        code: i64,
        message: String,
    },
    #[error("the node's answer to {method} is not what keygate expects: {detail}")]
    Bad {
        method: &'static str,
        detail: String,
    },
}

impl RpcError {
    /// Whether the node could not be reached (or did not answer in time).
    pub fn unreachable(&self) -> bool {
        matches!(self, RpcError::Unreachable { .. })
    }

    /// Whether the call certainly never reached the node (no connection could be made), so a
    /// transaction it carried was not sent.
    pub fn not_delivered(&self) -> bool {
        matches!(self, RpcError::Unreachable { reason, .. } if *reason == NO_CONNECTION)
    }

    /// The node's message, lower-cased, when it answered with an error.
    pub fn node_message(&self) -> Option<String> {
        match self {
            RpcError::Node { message, .. } => Some(message.to_ascii_lowercase()),
            _ => None,
        }
    }
}

/// A node's answer to `method` (HTTP `status`, body `bytes`): its result as a `T`, or the error
/// it carries, or why it is not a JSON-RPC answer keygate takes. Pure: the fuzz target
/// `rpc_answers` calls it with arbitrary bytes.
pub fn parse_answer<T: DeserializeOwned>(
    method: &'static str,
    status: impl std::fmt::Display,
    bytes: &[u8],
) -> Result<T, RpcError> {
    // Parsed straight into the envelope: the result stays raw text until it is parsed
    // into its type, never a tree of values many times the answer's size.
    #[derive(Deserialize)]
    struct Envelope<'a> {
        #[serde(borrow, default)]
        result: Option<&'a serde_json::value::RawValue>,
        #[serde(default)]
        error: Option<NodeError>,
    }
    #[derive(Deserialize)]
    struct NodeError {
        #[serde(default)]
        code: Option<i64>,
        #[serde(default)]
        message: Option<String>,
    }
    let v: Envelope = serde_json::from_slice(bytes).map_err(|_| RpcError::Bad {
        method,
        detail: format!("HTTP {status}, not a JSON-RPC answer"),
    })?;
    if let Some(err) = v.error {
        return Err(RpcError::Node {
            method,
            code: err.code.unwrap_or(0),
            message: err
                .message
                .as_deref()
                .unwrap_or("(no message)")
                .chars()
                .take(300)
                .collect(),
        });
    }
    let raw = v.result.map_or("null", |r| r.get());
    serde_json::from_str(raw).map_err(|e| RpcError::Bad {
        method,
        detail: e.to_string(),
    })
}

/// Why a JSON-RPC client could not be built (no node was asked).
#[derive(Debug, thiserror::Error)]
#[error("cannot build the JSON-RPC client: {0}")]
pub struct ClientError(#[source] reqwest::Error);

/// Why a call failed when no connection to the node could be made.
const NO_CONNECTION: &str = "connection refused or failed";

/// A JSON-RPC endpoint.
#[derive(Debug, Clone)]
pub struct Rpc {
    http: reqwest::Client,
    url: String,
    /// The URL as errors show it: scheme, host and port only (a provider key in the path or
    /// query stays out of logs).
    shown: String,
    ids: std::sync::Arc<AtomicU64>,
    max_answer: usize,
}

/// A block with its transactions. The list is required, and must hold full transactions: a
/// block without it (or with hashes only) is refused, never taken for an empty block.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Block {
    pub number: U64,
    pub hash: B256,
    pub parent_hash: B256,
    pub timestamp: U64,
    /// The bloom filter of every log in the block: what the logs keygate is given must fit.
    pub logs_bloom: Bloom,
    pub transactions: Vec<BlockTx>,
}

/// A block without its transactions (hashes only, which are ignored).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Header {
    pub number: U64,
    pub hash: B256,
    pub parent_hash: B256,
}

/// A transaction as a block lists it.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BlockTx {
    pub hash: B256,
    pub from: Address,
    #[serde(default)]
    pub to: Option<Address>,
    pub value: U256,
    pub nonce: U64,
}

/// A log entry.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Log {
    pub address: Address,
    pub topics: Vec<B256>,
    pub data: Bytes,
    pub transaction_hash: B256,
    pub log_index: U64,
    #[serde(default)]
    pub removed: bool,
}

/// A transaction receipt.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Receipt {
    pub transaction_hash: B256,
    pub block_number: U64,
    pub block_hash: B256,
    pub status: U64,
}

/// A pending or mined transaction, as `eth_getTransactionByHash` returns it.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TxInfo {
    pub hash: B256,
    #[serde(default)]
    pub block_number: Option<U64>,
}

/// What keygate reads of `eth_feeHistory(1, "latest", [])`: the base fees, the last of which is
/// the next block's.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FeeHistory {
    pub base_fee_per_gas: Vec<U256>,
}

impl FeeHistory {
    /// The next block's base fee in wei (0 when the node gives none, or one beyond u128).
    pub fn next_base_fee(&self) -> u128 {
        self.base_fee_per_gas
            .last()
            .and_then(|b| u128::try_from(*b).ok())
            .unwrap_or(0)
    }
}

fn shown_url(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(u) => match (u.host_str(), u.port()) {
            (Some(h), Some(p)) => format!("{}://{h}:{p}", u.scheme()),
            (Some(h), None) => format!("{}://{h}", u.scheme()),
            _ => "the configured node".into(),
        },
        Err(_) => "the configured node".into(),
    }
}

fn quantity(n: u64) -> String {
    format!("{n:#x}")
}

impl Rpc {
    /// A client for `url`, each call limited to `timeout`.
    pub fn new(url: &str, timeout: Duration) -> Result<Self, ClientError> {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(5)))
            .tcp_nodelay(true)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(ClientError)?;
        Ok(Self {
            http,
            url: url.to_string(),
            shown: shown_url(url),
            ids: std::sync::Arc::new(AtomicU64::new(1)),
            max_answer: MAX_ANSWER_BYTES,
        })
    }

    /// The same client, refusing answers longer than `bytes`.
    pub fn with_max_answer(mut self, bytes: usize) -> Self {
        self.max_answer = bytes;
        self
    }

    /// The endpoint as errors show it.
    pub fn shown(&self) -> &str {
        &self.shown
    }

    /// One call.
    pub async fn call<T: DeserializeOwned>(
        &self,
        method: &'static str,
        params: Value,
    ) -> Result<T, RpcError> {
        let id = self.ids.fetch_add(1, Ordering::Relaxed);
        let body = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
        let unreachable = |e: reqwest::Error| RpcError::Unreachable {
            url: self.shown.clone(),
            reason: if e.is_timeout() {
                "timed out"
            } else if e.is_connect() {
                NO_CONNECTION
            } else {
                "request failed"
            },
        };
        let mut resp = self
            .http
            .post(&self.url)
            .json(&body)
            .send()
            .await
            .map_err(unreachable)?;
        let status = resp.status();
        let too_big = || RpcError::Bad {
            method,
            detail: format!(
                "the answer is longer than {} bytes, the most keygate reads",
                self.max_answer
            ),
        };
        if resp
            .content_length()
            .is_some_and(|n| n > self.max_answer as u64)
        {
            return Err(too_big());
        }
        // Read in chunks, so an answer without a length (or with a false one) is refused as
        // soon as it passes the cap, before it is all in memory.
        let mut bytes = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(unreachable)? {
            if bytes.len().saturating_add(chunk.len()) > self.max_answer {
                return Err(too_big());
            }
            bytes.extend_from_slice(&chunk);
        }
        parse_answer(method, status, &bytes)
    }

    pub async fn chain_id(&self) -> Result<u64, RpcError> {
        Ok(self.call::<U64>("eth_chainId", json!([])).await?.to())
    }

    pub async fn block_number(&self) -> Result<u64, RpcError> {
        Ok(self.call::<U64>("eth_blockNumber", json!([])).await?.to())
    }

    /// The newest block's number, hash and parent.
    pub async fn latest(&self) -> Result<Header, RpcError> {
        self.call::<Option<Header>>("eth_getBlockByNumber", json!(["latest", false]))
            .await?
            .ok_or(RpcError::Bad {
                method: "eth_getBlockByNumber",
                detail: "no latest block".into(),
            })
    }

    /// Block `n`'s number, hash and parent, if the node has it.
    pub async fn header(&self, n: u64) -> Result<Option<Header>, RpcError> {
        self.call("eth_getBlockByNumber", json!([quantity(n), false]))
            .await
    }

    /// Block `n` with its transactions, if the node has it.
    pub async fn block(&self, n: u64) -> Result<Option<Block>, RpcError> {
        self.call("eth_getBlockByNumber", json!([quantity(n), true]))
            .await
    }

    /// Logs of one block (by hash, so a reorg cannot mix two blocks' logs) whose first topic is
    /// one of `topic0` and whose second is one of `topic1`.
    pub async fn logs(
        &self,
        block: &B256,
        topic0: &[B256],
        topic1: &[B256],
    ) -> Result<Vec<Log>, RpcError> {
        self.call(
            "eth_getLogs",
            json!([{"blockHash": block, "topics": [topic0, topic1]}]),
        )
        .await
    }

    /// Every log of one block (to check an answer against the block's bloom).
    pub async fn block_logs(&self, block: &B256) -> Result<Vec<Log>, RpcError> {
        self.call("eth_getLogs", json!([{"blockHash": block}]))
            .await
    }

    /// The nonce `tag` ("latest" or "pending") of `address`.
    pub async fn nonce(&self, address: &Address, tag: &str) -> Result<u64, RpcError> {
        Ok(self
            .call::<U64>("eth_getTransactionCount", json!([address, tag]))
            .await?
            .to())
    }

    /// The nonce of `address` as of the block with hash `block` (EIP-1898: a reorg cannot make
    /// it another block's).
    pub async fn nonce_at(&self, address: &Address, block: &B256) -> Result<u64, RpcError> {
        Ok(self
            .call::<U64>(
                "eth_getTransactionCount",
                json!([address, {"blockHash": block}]),
            )
            .await?
            .to())
    }

    /// The code at `address` as of the block with hash `block` (EIP-1898; empty for an account
    /// without code).
    pub async fn code_at(&self, address: &Address, block: &B256) -> Result<Bytes, RpcError> {
        self.call("eth_getCode", json!([address, {"blockHash": block}]))
            .await
    }

    pub async fn balance(&self, address: &Address) -> Result<U256, RpcError> {
        self.call("eth_getBalance", json!([address, "latest"]))
            .await
    }

    /// What a read-only call returns at the newest block.
    pub async fn view(&self, to: &Address, input: &Bytes) -> Result<Bytes, RpcError> {
        self.call("eth_call", json!([{"to": to, "input": input}, "latest"]))
            .await
    }

    /// The gas a call would use.
    pub async fn estimate_gas(
        &self,
        from: &Address,
        to: &Address,
        value: U256,
        input: &Bytes,
    ) -> Result<u64, RpcError> {
        Ok(self
            .call::<U64>(
                "eth_estimateGas",
                json!([{"from": from, "to": to, "value": value, "input": input}]),
            )
            .await?
            .to())
    }

    /// (base fee of the next block, suggested priority fee), in wei.
    pub async fn fees(&self) -> Result<(u128, u128), RpcError> {
        let base = self
            .call::<FeeHistory>("eth_feeHistory", json!([quantity(1), "latest", []]))
            .await?
            .next_base_fee();
        let tip = self
            .call::<U256>("eth_maxPriorityFeePerGas", json!([]))
            .await
            .ok()
            .and_then(|t| u128::try_from(t).ok())
            .unwrap_or(1_000_000_000);
        Ok((base, tip))
    }

    /// Sends a signed transaction; the node's hash for it.
    pub async fn send_raw(&self, raw: &[u8]) -> Result<B256, RpcError> {
        self.call(
            "eth_sendRawTransaction",
            json!([format!("0x{}", hex::encode(raw))]),
        )
        .await
    }

    pub async fn receipt(&self, hash: &B256) -> Result<Option<Receipt>, RpcError> {
        self.call("eth_getTransactionReceipt", json!([hash])).await
    }

    pub async fn transaction(&self, hash: &B256) -> Result<Option<TxInfo>, RpcError> {
        self.call("eth_getTransactionByHash", json!([hash])).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{Answer, fake_node};

    #[test]
    fn an_answer_is_its_result_the_nodes_error_or_refused() {
        let ok: U64 =
            parse_answer("m", 200, br#"{"jsonrpc":"2.0","id":1,"result":"0x10"}"#).unwrap();
        assert_eq!(ok.to::<u64>(), 16);
        let e = parse_answer::<U64>(
            "m",
            200,
            br#"{"jsonrpc":"2.0","id":1,"error":{"code":-32000,"message":"nonce too low"}}"#,
        )
        .unwrap_err();
        assert_eq!(e.node_message().as_deref(), Some("nonce too low"));
        for bad in [
            &b"<html>"[..],
            br#"{"result":"not hex"}"#,
            br#"{"result":null}"#,
        ] {
            assert!(
                matches!(
                    parse_answer::<U64>("m", 502, bad),
                    Err(RpcError::Bad { .. })
                ),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
        // A missing result is null: an optional answer is absent, not an error.
        assert!(
            parse_answer::<Option<Header>>("m", 200, b"{}")
                .unwrap()
                .is_none()
        );
    }

    /// A JSON-RPC answer of `len` bytes or more, valid JSON, as raw HTTP (with or without a
    /// content-length: without, it ends when the connection closes).
    fn big_answer(len: usize, with_length: bool) -> Vec<u8> {
        let body = format!(
            r#"{{"jsonrpc":"2.0","id":1,"result":"0x{}"}}"#,
            "a".repeat(len)
        );
        let head = if with_length {
            format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
                body.len()
            )
        } else {
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nconnection: close\r\n\r\n".into()
        };
        [head.into_bytes(), body.into_bytes()].concat()
    }

    #[tokio::test]
    async fn an_answer_beyond_the_size_cap_is_refused() {
        for with_length in [true, false] {
            let raw = big_answer(MAX_ANSWER_BYTES + 1, with_length);
            let url = fake_node(None, move |_, _| Answer::Raw(raw.clone())).await;
            let rpc = Rpc::new(&url, Duration::from_secs(20)).unwrap();
            let err = rpc
                .call::<Value>("eth_chainId", json!([]))
                .await
                .unwrap_err();
            assert!(
                matches!(&err, RpcError::Bad { detail, .. } if detail.contains("bytes")),
                "content-length {with_length}: {err}"
            );
        }
        // Under a smaller cap, a small answer still passes and a bigger one does not.
        let raw = big_answer(100, false);
        let url = fake_node(None, move |_, _| Answer::Raw(raw.clone())).await;
        let rpc = Rpc::new(&url, Duration::from_secs(5)).unwrap();
        assert!(rpc.call::<Value>("eth_chainId", json!([])).await.is_ok());
        let small = rpc.clone().with_max_answer(64);
        assert!(matches!(
            small.call::<Value>("eth_chainId", json!([])).await,
            Err(RpcError::Bad { .. })
        ));
    }

    #[tokio::test]
    async fn a_block_without_its_transactions_is_refused() {
        let url = fake_node(None, |_, params| {
            Answer::Result(json!({
                "number": params[0], "hash": format!("0x{:064x}", 7), "parentHash": format!("0x{:064x}", 6),
                "timestamp": "0x1", "logsBloom": format!("0x{}", "0".repeat(512)),
            }))
        })
        .await;
        let rpc = Rpc::new(&url, Duration::from_secs(5)).unwrap();
        let err = rpc.block(5).await.unwrap_err();
        assert!(
            matches!(&err, RpcError::Bad { detail, .. } if detail.contains("transactions")),
            "{err}"
        );
    }
}
