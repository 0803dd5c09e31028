//! What judging one block needs, read from the node (and the address book from the store):
//! which treasury transactions keygate signed, each treasury's code and nonce, the treasury's
//! `Transfer`/`Approval` logs (checked against the block's bloom, never trusted empty), into
//! [`Facts`] for the pure [`super::judge`].
//!
//! It must not judge: it reads, and fails the step when the node's answers cannot be trusted.

use std::collections::HashSet;

use alloy::primitives::{Address, B256, Bloom, BloomInput, Bytes};
use alloy::sol_types::SolEvent;

use crate::hash_text;
use crate::persist::WatchStore;
use crate::rpc::{Block, Log, RpcError};
use crate::tx::{Approval, Transfer};

use super::judge::{Book, Facts, NonceBase, TreasuryState, needs_book};
use super::{WatchError, Watcher};

impl<P: WatchStore> Watcher<P> {
    /// Reads what judging `block` needs; `head_n` is the node's newest block (at which no state
    /// fails the step, so no check is put off for good).
    pub(super) async fn fetch(&self, block: &Block, head_n: u64) -> Result<Facts, WatchError> {
        let (ours, rescues) = self.ours(block).await?;
        let codes = self.codes(block, head_n).await?;
        let mut treasuries = Vec::with_capacity(self.treasury.len());
        for (address, code) in self.treasury.iter().copied().zip(codes) {
            let (base, after) = self.nonce_reading(address, block, head_n).await?;
            treasuries.push(TreasuryState {
                address,
                code,
                base,
                after,
            });
        }
        let logs = self.treasury_logs(block).await?;
        let book = if needs_book(&self.venue, &logs) {
            let now = self.store.now_ms();
            Book::active(self.store.destinations().await?, &self.venue.name, now)
        } else {
            Book::default()
        };
        Ok(Facts {
            ours,
            rescues,
            treasuries,
            logs,
            book,
        })
    }

    /// The treasury's transactions in `block` that keygate signed, and those of them that are
    /// a rescue's.
    async fn ours(&self, block: &Block) -> Result<(HashSet<B256>, HashSet<B256>), WatchError> {
        let mut ours = HashSet::new();
        let mut rescues = HashSet::new();
        for tx in &block.transactions {
            if !self.treasury.contains(&tx.from) {
                continue;
            }
            let hash = hash_text(&tx.hash);
            if self.store.rescue_tx(&hash).await? {
                ours.insert(tx.hash);
                rescues.insert(tx.hash);
            } else if self.store.signed_by_keygate(&hash).await? {
                ours.insert(tx.hash);
            }
        }
        Ok((ours, rescues))
    }

    /// Each treasury's code at `block`, in treasury order. A node without state for this block
    /// (pruned, after keygate was down a while) answers with an error: the code is looked at
    /// again at the next block it has state for (None), and the nonce comparison covers the
    /// blocks between (an authorization moves the nonce even if the delegation is gone again).
    /// Not at the newest block: there, no state fails the step.
    async fn codes(&self, block: &Block, head_n: u64) -> Result<Vec<Option<Bytes>>, WatchError> {
        let mut codes = Vec::with_capacity(self.treasury.len());
        for t in &self.treasury {
            codes.push(match self.rpc.code_at(t, &block.hash).await {
                Ok(code) => Some(code),
                Err(e) if block.number.to::<u64>() < head_n && no_state(&e) => {
                    tracing::debug!(venue = %self.venue.name, block = block.number.to::<u64>(), error = %e, "no state for this block: the treasury's code is looked at in the next block");
                    None
                }
                Err(e) => return Err(e.into()),
            });
        }
        Ok(codes)
    }

    /// Treasury `t`'s nonce before `block` (as kept along the blocks judged, or else its
    /// parent's) and at it (None when the node may lack its state and does).
    async fn nonce_reading(
        &self,
        t: Address,
        block: &Block,
        head_n: u64,
    ) -> Result<(NonceBase, Option<u64>), WatchError> {
        let n = block.number.to::<u64>();
        let base = match self.nonces.get(&t) {
            Some(b) if b.tip == block.parent_hash => *b,
            // Nothing known along this chain (first block, or after a reorg): the parent's.
            _ => NonceBase {
                tip: block.parent_hash,
                count: if n == 0 {
                    Some(0)
                } else {
                    self.count_at(&t, &block.parent_hash, true).await?
                },
                sent: 0,
                deferred_from: None,
            },
        };
        let after = self.count_at(&t, &block.hash, n < head_n).await?;
        Ok((base, after))
    }

    /// The nonce of `t` at block `hash`; when `may_lack` and the node answers with an error (it
    /// has no state for that block: pruned, or a backend behind), None. Otherwise, and when
    /// the node cannot be reached, an error.
    async fn count_at(
        &self,
        t: &Address,
        hash: &B256,
        may_lack: bool,
    ) -> Result<Option<u64>, WatchError> {
        match self.rpc.nonce_at(t, hash).await {
            Ok(c) => Ok(Some(c)),
            Err(e) if may_lack && no_state(&e) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// The block's `Transfer` and `Approval` logs with the treasury as first indexed argument
    /// (`from`, `owner`). The node is always asked; an empty answer is checked against the
    /// block's `logsBloom`. When the bloom rules such logs out, it stands. When it does not, the
    /// answer may come from a backend that does not have the block yet: it stands only if the
    /// block's full list of logs, asked for next, makes up exactly the block's bloom (the bloom
    /// also matches the treasury as a recipient, or by chance); otherwise the step fails and
    /// the block is tried again at the next poll, never checkpointed past. A block whose logs
    /// cannot be verified for longer than the stall threshold is an audited alarm with the
    /// containment freeze (see [`Watcher::poll`]); the empty answer is then taken.
    async fn treasury_logs(&self, block: &Block) -> Result<Vec<Log>, WatchError> {
        let signatures = [Transfer::SIGNATURE_HASH, Approval::SIGNATURE_HASH];
        let topics: Vec<B256> = self.treasury.iter().map(|a| a.into_word()).collect();
        let logs = self.rpc.logs(&block.hash, &signatures, &topics).await?;
        if !logs.is_empty() {
            return Ok(logs);
        }
        let bloom = &block.logs_bloom;
        let may_hold = |words: &[B256]| {
            words
                .iter()
                .any(|w| bloom.contains_input(BloomInput::Raw(w.as_slice())))
        };
        let n = block.number.to::<u64>();
        if !may_hold(&signatures) || !may_hold(&topics) || self.accept_unverified == Some(n) {
            return Ok(vec![]);
        }
        let all = match self.rpc.block_logs(&block.hash).await {
            Ok(all) => all,
            // Too many to read (a block stuffed with logs): as unverifiable as a bad bloom.
            Err(RpcError::Bad { .. }) => return Err(WatchError::Incomplete(n)),
            Err(e) => return Err(e.into()),
        };
        let mut theirs = Bloom::default();
        for l in &all {
            theirs.accrue_raw_log(l.address, &l.topics);
        }
        if theirs != *bloom {
            return Err(WatchError::Incomplete(n));
        }
        Ok(all
            .into_iter()
            .filter(|l| {
                l.topics.first().is_some_and(|t| signatures.contains(t))
                    && l.topics.get(1).is_some_and(|t| topics.contains(t))
            })
            .collect())
    }
}

/// Whether a node's error says it has no state for the block asked about (pruned, or not yet):
/// only then is a check put off to a later block. Any other error (a rate limit, a timeout
/// answered as an error) fails the step and is retried.
fn no_state(e: &RpcError) -> bool {
    let Some(m) = e.node_message() else {
        return false;
    };
    [
        "missing trie node",
        "header not found",
        "not found",
        "pruned",
        "not available",
        "unknown block",
        "out of range",
        "outofrange",
        "historical state",
        "no state",
    ]
    .iter()
    .any(|p| m.contains(p))
}
