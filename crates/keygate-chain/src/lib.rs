//! keygate on EVM chains. [`amount`] turns decimal token amounts into integer units exactly;
//! [`rpc`] is a small JSON-RPC client (reqwest; errors that name the node's answer, never a
//! secret); [`tx`] builds EIP-1559 transfers (native and ERC-20) and signs them with alloy's
//! local signer from a vault key; [`nonce`] hands out nonces per signing address and heals
//! against the node; [`watcher`] follows the chain's blocks and judges every outflow from the
//! treasury addresses through the store's reconciliation (an unmatched one freezes); [`rescue`]
//! sweeps a treasury whose key is used elsewhere to its rescue address, replacing the thief's
//! pending transactions.
//!
//! Persistence is reached through the traits of [`persist`], which this crate owns; [`adapter`]
//! implements them for keygate's store and is the only module here that names `keygate_store`.

pub mod adapter;
pub mod amount;
pub mod nonce;
pub mod persist;
pub mod rescue;
pub mod rpc;
pub mod transfer;
pub mod tx;
pub mod watcher;

use std::collections::BTreeMap;
use std::time::Duration;

pub use alloy::primitives::{Address, B256, Bytes, U64, U256};

/// An ERC-20 token a venue knows by symbol.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Token {
    pub contract: Address,
    pub decimals: u8,
}

/// The native asset's symbol.
pub const NATIVE: &str = "ETH";
/// The native asset's decimals.
pub const NATIVE_DECIMALS: u8 = 18;

/// One EVM venue: a chain reached over JSON-RPC, the treasury address keygate signs for, and
/// the tokens it knows.
#[derive(Debug, Clone)]
pub struct EvmVenue {
    pub name: String,
    pub rpc_url: String,
    pub chain_id: u64,
    /// The vault credential (an `evm-key`) keygate signs with.
    pub credential: String,
    /// Blocks after which a transfer counts as confirmed (reorg-safe bookkeeping).
    pub confirmations: u64,
    /// How often the watcher asks for the newest block.
    pub poll: Duration,
    /// How many recent blocks the watcher keeps densely to detect and re-check a reorg (older
    /// ones are kept sparsely: see [`watcher::REORG_HISTORY`]).
    pub reorg_depth: u64,
    /// Symbol -> token.
    pub tokens: BTreeMap<String, Token>,
    /// How long one JSON-RPC call may take.
    pub timeout: Duration,
}

impl EvmVenue {
    /// The decimals and contract (None for the native asset) of `asset`, if the venue knows it.
    pub fn asset(&self, asset: &str) -> Option<(Option<Address>, u8)> {
        if asset == NATIVE {
            return Some((None, NATIVE_DECIMALS));
        }
        self.tokens
            .get(asset)
            .map(|t| (Some(t.contract), t.decimals))
    }

    /// The token symbol of a contract, if listed.
    pub fn symbol_of(&self, contract: &Address) -> Option<(&str, u8)> {
        self.tokens
            .iter()
            .find(|(_, t)| &t.contract == contract)
            .map(|(s, t)| (s.as_str(), t.decimals))
    }
}

/// An address as intents and the address book write it: `0x` and 40 lower-case hex digits.
pub fn address_text(a: &Address) -> String {
    format!("{a:#x}")
}

/// A hash as the store keeps it: `0x` and 64 lower-case hex digits.
pub fn hash_text(h: &B256) -> String {
    format!("{h:#x}")
}

/// Parses an address written as `0x` and 40 hex digits (any case).
pub fn parse_address(s: &str) -> Option<Address> {
    let t = s.trim();
    let hex_part = t.strip_prefix("0x").or_else(|| t.strip_prefix("0X"))?;
    if hex_part.len() != 40 || !hex_part.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    t.parse().ok()
}

#[cfg(feature = "testing")]
pub mod race;
#[cfg(feature = "testing")]
pub mod testing;
