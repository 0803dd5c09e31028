//! The judgement of one block, pure: from the block, what was read of it (which treasury
//! transactions keygate signed, each treasury's code and nonce, the treasury's logs, the
//! address book) and the treasury set, to the block's outflows, each treasury's nonce along
//! the blocks, and what the caller logs or alarms. See [`super`] for what counts as an outflow.
//!
//! It must not do IO: no node, no store, no clock, no log; everything it needs is passed in.

use std::collections::{HashMap, HashSet};

use alloy::primitives::{Address, B256, Bytes, U256, keccak256};
use alloy::sol_types::SolEvent;
use keygate_core::book::Destination;
use keygate_core::outflow::Outflow;
use rust_decimal::Decimal;

use crate::rpc::{Block, Log};
use crate::tx::Transfer;
use crate::{EvmVenue, address_text, hash_text};

/// A treasury's nonce along the blocks judged: the next block's parent must be `tip`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct NonceBase {
    /// The last block judged.
    pub tip: B256,
    /// The nonce at the last block whose state the node could give (None: none yet).
    pub count: Option<u64>,
    /// The treasury's transactions in the blocks judged since that block.
    pub sent: u64,
    /// The first of those blocks whose state the node could not give (the comparison waits
    /// for the next block it can give, and then covers them all).
    pub deferred_from: Option<u64>,
}

/// What the node said of one treasury at the block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TreasuryState {
    pub address: Address,
    /// Its code at the block; None when the node has no state for the block (it is looked at
    /// again at the next block).
    pub code: Option<Bytes>,
    /// Its nonce before the block, as far as known along the blocks judged.
    pub base: NonceBase,
    /// Its nonce at the block; None when the node has no state for the block.
    pub after: Option<u64>,
}

/// The active address-book entries of a venue, as (asset, address).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Book(Vec<(String, String)>);

impl Book {
    /// The entries of `destinations` that are of `venue` and active at `now`.
    pub fn active(destinations: Vec<Destination>, venue: &str, now: i64) -> Self {
        Book(
            destinations
                .into_iter()
                .filter(|d| d.venue == venue && d.status(now) == "active")
                .map(|d| (d.asset, d.address))
                .collect(),
        )
    }

    fn vouches_for(&self, symbol: &str, spender: &str) -> bool {
        self.0.iter().any(|(a, d)| a == symbol && d == spender)
    }
}

/// Everything read of one block for its judgement.
#[derive(Debug, Clone, Default)]
pub struct Facts {
    /// The treasury's transactions in the block that keygate signed.
    pub ours: HashSet<B256>,
    /// Those of them that are a rescue's sweep to the venue's rescue address (an address-book
    /// entry keygate itself sends to when the key is being used elsewhere): not outflows, nor
    /// their token `Transfer` logs.
    pub rescues: HashSet<B256>,
    /// One per treasury address.
    pub treasuries: Vec<TreasuryState>,
    /// The block's `Transfer` and `Approval` logs naming a treasury first, as the node gave them.
    pub logs: Vec<Log>,
    /// The venue's active address book (read only when [`needs_book`] says so).
    pub book: Book,
}

/// What the nonce comparison found for a treasury, to log or alarm.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NonceNote {
    /// Compared again over the blocks from `from` whose state the node did not give.
    Resumed { from: u64 },
    /// The nonce moved from `before` to `after`, which its `transactions` do not explain.
    Unexplained {
        before: u64,
        after: u64,
        transactions: u64,
    },
    /// No state for this block, for the first time since the last comparison: compared at the
    /// next block the node gives state for.
    Deferred,
    /// No nonce from before the block and none kept (since `since`): a span the comparison
    /// cannot cover, an audited alarm (`chain.nonce_gap`).
    Gap { since: Option<u64> },
}

/// One block's judgement.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Judgement {
    /// In the order they are reconciled: native transactions, code, nonces, logs.
    pub outflows: Vec<Outflow>,
    /// Each treasury's nonce after the block.
    pub nonces: Vec<(Address, NonceBase)>,
    pub notes: Vec<(Address, NonceNote)>,
    /// Logs naming the treasury from contracts that are not the venue's tokens: (contract,
    /// transaction), an alarm in the log only (anyone can emit one).
    pub unlisted: Vec<(Address, B256)>,
}

/// Judges one block: the outflows from `treasury` that `facts` show.
pub fn judge(venue: &EvmVenue, treasury: &[Address], block: &Block, facts: &Facts) -> Judgement {
    let at = millis(block);
    let mut j = Judgement::default();
    native(venue, treasury, block, facts, at, &mut j);
    for t in &facts.treasuries {
        if let Some(o) = code(venue, t, at) {
            j.outflows.push(o);
        }
    }
    for t in &facts.treasuries {
        nonce(venue, block, t, at, &mut j);
    }
    logs(venue, facts, at, &mut j);
    j
}

/// The block's time in milliseconds.
fn millis(block: &Block) -> i64 {
    i64::try_from(block.timestamp.to::<u64>())
        .unwrap_or(i64::MAX / 1000)
        .saturating_mul(1000)
}

/// Each transaction from a treasury address that keygate did not sign (whatever its value: the
/// key is being used elsewhere), and the native value of those it did.
fn native(
    venue: &EvmVenue,
    treasury: &[Address],
    block: &Block,
    facts: &Facts,
    at: i64,
    j: &mut Judgement,
) {
    for tx in &block.transactions {
        if !treasury.contains(&tx.from) || facts.rescues.contains(&tx.hash) {
            continue;
        }
        if facts.ours.contains(&tx.hash) && tx.value.is_zero() {
            continue;
        }
        let hash = hash_text(&tx.hash);
        j.outflows.push(Outflow {
            venue: venue.name.clone(),
            id: hash.clone(),
            asset: crate::NATIVE.into(),
            amount: amount(tx.value, crate::NATIVE_DECIMALS),
            destination: tx
                .to
                .as_ref()
                .map(address_text)
                .unwrap_or_else(|| "contract-creation".into()),
            at,
            reference: Some(hash),
        });
    }
}

/// Code at a treasury address. A treasury with code runs that code for anyone: an EIP-7702
/// delegation, signed by a leaked key and sent by someone else, lets value leave by internal
/// calls, with no transaction from the treasury and no log. keygate signs no delegation, so
/// code at a treasury address is an outflow keygate never approved (judged once per code).
fn code(venue: &EvmVenue, t: &TreasuryState, at: i64) -> Option<Outflow> {
    let code = t.code.as_ref().filter(|c| !c.is_empty())?;
    // A 7702 delegation designator is 0xef0100 followed by the delegate's address.
    let delegate = match code.get(..3) {
        Some([0xef, 0x01, 0x00]) if code.len() == 23 => {
            address_text(&Address::from_slice(&code[3..23]))
        }
        _ => "code".into(),
    };
    Some(Outflow {
        venue: venue.name.clone(),
        id: format!(
            "code:{}:{}",
            address_text(&t.address),
            hash_text(&keccak256(code))
        ),
        asset: "code".into(),
        amount: Decimal::ZERO,
        destination: delegate,
        at,
        reference: None,
    })
}

/// Each treasury's nonce moves by exactly its transactions in the block. Anything else moved it
/// (an EIP-7702 authorization the treasury signed, carried in someone else's transaction), or
/// the node left a transaction out of the block: keygate approved neither, so it is an outflow
/// (asset `nonce`, the unexplained count), judged once per treasury and block.
fn nonce(venue: &EvmVenue, block: &Block, t: &TreasuryState, at: i64, j: &mut Judgement) {
    let n = block.number.to::<u64>();
    let sent = block
        .transactions
        .iter()
        .filter(|tx| tx.from == t.address)
        .count() as u64;
    let base = t.base;
    let compared = |after| NonceBase {
        tip: block.hash,
        count: Some(after),
        sent: 0,
        deferred_from: None,
    };
    let next = match (base.count, t.after) {
        (Some(before), Some(after)) => {
            let explained = base.sent.saturating_add(sent);
            let unexplained = i128::from(after) - i128::from(before) - i128::from(explained);
            if let Some(from) = base.deferred_from {
                j.notes.push((t.address, NonceNote::Resumed { from }));
            }
            if unexplained != 0 {
                j.notes.push((
                    t.address,
                    NonceNote::Unexplained {
                        before,
                        after,
                        transactions: explained,
                    },
                ));
                j.outflows.push(Outflow {
                    venue: venue.name.clone(),
                    id: format!(
                        "nonce:{}:{}",
                        address_text(&t.address),
                        hash_text(&block.hash)
                    ),
                    asset: "nonce".into(),
                    amount: Decimal::from(unexplained),
                    destination: "unknown".into(),
                    at,
                    reference: None,
                });
            }
            compared(after)
        }
        (count, None) => {
            if base.deferred_from.is_none() {
                j.notes.push((t.address, NonceNote::Deferred));
            }
            NonceBase {
                tip: block.hash,
                count,
                sent: base.sent.saturating_add(sent),
                deferred_from: base.deferred_from.or(Some(n)),
            }
        }
        (None, Some(after)) => {
            // A span the comparison cannot cover: an authorization signed and undone inside it
            // would go unseen. Not a freeze (a pruned node after downtime says the same), but
            // an audited alarm, once per treasury and block.
            j.notes.push((
                t.address,
                NonceNote::Gap {
                    since: base.deferred_from,
                },
            ));
            compared(after)
        }
    };
    j.nonces.push((t.address, next));
}

/// The logs the judgement looks at: not removed, with `from`/`owner` and a counterparty, in
/// block order.
fn relevant(logs: &[Log]) -> Vec<&Log> {
    let mut logs: Vec<&Log> = logs
        .iter()
        .filter(|l| !l.removed && l.topics.len() >= 3)
        .collect();
    logs.sort_by_key(|l| l.log_index.to::<u64>());
    logs
}

/// A log's value: the data word, or for ERC-721 (the token id is the fourth topic) one token.
fn log_value(log: &Log) -> U256 {
    if log.data.len() == 32 {
        U256::from_be_slice(&log.data)
    } else if log.topics.len() == 4 {
        U256::from(1u8)
    } else {
        U256::ZERO
    }
}

/// Whether judging `logs` needs the venue's address book: a non-zero `Approval` of one of the
/// venue's tokens is among them.
pub fn needs_book(venue: &EvmVenue, logs: &[Log]) -> bool {
    relevant(logs).into_iter().any(|l| {
        l.topics[0] != Transfer::SIGNATURE_HASH
            && venue.symbol_of(&l.address).is_some()
            && !log_value(l).is_zero()
    })
}

/// Each non-zero `Transfer` log of a listed token with `from` = treasury, and each `Approval`
/// log of a listed token with `owner` = treasury granting an allowance to a spender that is not
/// an active address-book entry of the venue for that token. Ids: the transaction hash and the
/// log's position among the treasury's logs of that transaction, which a reorg does not change.
fn logs(venue: &EvmVenue, facts: &Facts, at: i64, j: &mut Judgement) {
    let book = &facts.book;
    let mut ordinal: HashMap<B256, u32> = HashMap::new();
    for log in relevant(&facts.logs) {
        if facts.rescues.contains(&log.transaction_hash) {
            continue;
        }
        let n = ordinal.entry(log.transaction_hash).or_default();
        let id = format!("{}:{}", hash_text(&log.transaction_hash), *n);
        *n += 1;
        // Any contract can emit a log naming the treasury, so only the listed tokens' logs can
        // freeze: an unlisted contract's is an alarm in the log, not a freeze anyone on chain
        // could set. (A transaction the treasury key sends is judged above whatever it calls.)
        let Some((symbol, decimals)) = venue.symbol_of(&log.address) else {
            j.unlisted.push((log.address, log.transaction_hash));
            continue;
        };
        let value = log_value(log);
        // A transfer of nothing moves nothing, and anyone may make one from any address
        // (`transferFrom(treasury, x, 0)` succeeds on common tokens): not an outflow. A revoked
        // allowance lets nobody move anything.
        if value.is_zero() {
            continue;
        }
        let counterparty = address_text(&Address::from_word(log.topics[2]));
        let asset = if log.topics[0] == Transfer::SIGNATURE_HASH {
            symbol.to_string()
        } else {
            // An allowance lets the spender move the treasury's tokens: unless the spender is
            // an active address-book entry of this venue for this very token, it is an
            // outflow. An entry for another asset or venue vouches for nothing here.
            if book.vouches_for(symbol, &counterparty) {
                continue;
            }
            format!("allowance:{symbol}")
        };
        j.outflows.push(Outflow {
            venue: venue.name.clone(),
            id,
            asset,
            amount: amount(value, decimals),
            destination: counterparty,
            at,
            reference: Some(hash_text(&log.transaction_hash)),
        });
    }
}

/// An on-chain amount as a decimal; beyond what a decimal holds (an unlimited allowance), the
/// largest decimal: it matches no decision, and the alarm stands.
fn amount(units: U256, decimals: u8) -> Decimal {
    crate::amount::from_units(units, decimals).unwrap_or(Decimal::MAX)
}

#[cfg(test)]
mod tests;
