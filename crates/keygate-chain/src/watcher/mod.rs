//! The outflow watcher: follows an EVM venue's blocks and judges every outflow from its
//! treasury addresses the moment its block appears (depth 0: freezing early is the safe side).
//!
//! Per block: each transaction from a treasury address that keygate did not sign (whatever its
//! value: the key is being used elsewhere), and the native value of those it did; code at a
//! treasury address (an EIP-7702 delegation); a treasury nonce that moved by other than its
//! transactions in the block (asset `nonce`: a 7702 authorization it signed, or a block the node
//! served incomplete); each non-zero `Transfer` log of a listed token with `from` = treasury;
//! each `Approval` log of a listed token with `owner` = treasury granting an allowance to a
//! spender that is not an active address-book entry of the venue for that token. Each becomes an
//! [`Outflow`] (id: the transaction hash, or the hash and the log's position among the
//! treasury's logs of that transaction, which a reorg does not change;
//! `nonce:<treasury>:<block hash>`) and goes through the store's reconciliation: matched to the
//! allowed transfer decision whose signed hash it carries, or recorded as `outflow.unapproved`
//! (critical) with the freeze of the containment scope, in one transaction. An outflow is judged
//! once, whichever block carries it.
//!
//! The node's answers are checked, not trusted: a block must come with its full transactions;
//! the treasury's logs are always asked for, and an empty answer where the block's `logsBloom`
//! allows logs stands only if the block's full logs make up the bloom; a block below the node's
//! newest that the node does not have is an error. Any of these fails the step: the block is
//! retried at the next poll and nothing is checkpointed past it, and a failed step leaves no
//! half-done state (the next one starts from the checkpoint again). A block whose logs stay
//! unverifiable past the stall threshold is an audited alarm with the containment freeze
//! (`chain.block_unverifiable`), and the watcher goes on past it.
//!
//! For an older block the node has no state for (pruned; anvil after a restart), the code and
//! nonce checks wait for the next block it has state for, the nonce comparison then covering
//! every block between; at the node's newest block, no state is an error. A span the comparison
//! cannot cover at all is an audited alarm (`chain.nonce_gap`).
//!
//! The blocks judged (number and hash) and each treasury's last known nonce are the checkpoint,
//! a `meta` row written after each block; of the blocks, the last `reorg_depth` densely, older
//! ones back to [`REORG_HISTORY`] blocks one in [`ANCHOR_EVERY`]. On a parent-hash mismatch the watcher walks back over them, asking the node
//! for its block at each height, to the highest one still on the chain, and re-judges the new
//! branch from there (outflows already judged are not judged again). A fork below everything it
//! kept is an audited critical alarm (`chain.reorg_beyond_history`) with the containment freeze.
//! After a restart it resumes from the checkpoint's last block + 1 (re-checking that block
//! first), so no block is skipped. Its first run starts at the node's newest block.
//!
//! A watcher that cannot follow the node retries every poll and catches up; its [`Health`]
//! (lag in blocks, time failing) is readable and exported as Prometheus gauges, and after
//! failing for longer than max([`STALL_AFTER`], 10 polls) it writes one audited critical alarm
//! (`chain.watcher_stalled`) and logs again at that interval until it recovers. A node whose
//! newest block stops moving (it stopped syncing, yet answers) is an audited alarm too
//! (`chain.head_stale`), after max([`STALE_HEAD_AFTER`], 50 polls).
//!
//! The work is split by job: `fetch` reads what a block's judgement needs from the node,
//! [`judge`] is the judgement itself (pure: a block and what was read of it in, outflows and
//! alarms out), `record` writes it, `reorg` keeps the judged blocks and walks back over a
//! fork, `checkpoint` stores them, and `health` follows how stepping goes. This module
//! holds the watcher and its polling step. It must not know how persistence is done: it writes
//! through [`crate::persist`].

mod checkpoint;
mod fetch;
mod health;
pub mod judge;
mod record;
mod reorg;

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use alloy::primitives::{Address, B256};
use keygate_core::freeze::Scope;
use keygate_core::outflow::Outflow;

use crate::EvmVenue;
use crate::persist::{PersistError, Reconciled, WatchStore};
use crate::rpc::{Block, ClientError, Rpc, RpcError};

pub use health::Health;
use judge::NonceBase;

/// What the watcher judged, as it happened (for tests and the benchmark).
#[derive(Debug, Clone)]
pub struct Event {
    pub block: u64,
    pub block_hash: B256,
    pub outflow: Outflow,
    pub result: Reconciled,
    /// When the judgement was committed.
    pub at: Instant,
}

/// Why a step failed (the watcher retries on its next poll).
#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    #[error(transparent)]
    Rpc(#[from] RpcError),
    #[error(transparent)]
    Store(#[from] PersistError),
    #[error("the stored checkpoint {key} is not readable: {detail}")]
    Checkpoint { key: String, detail: String },
    #[error("block {0} is the last block number there is; the watcher cannot go past it")]
    End(u64),
    #[error(
        "the node's block {0} names a parent other than the block the node has below it; retrying"
    )]
    Inconsistent(u64),
    #[error(
        "the node's logs of block {0} do not make up the block's logsBloom (a backend without the block yet?); retrying the block at the next poll"
    )]
    Incomplete(u64),
    #[error(
        "the node does not have block {0}, below the newest block it named (a backend behind the others?); retrying at the next poll"
    )]
    Missing(u64),
    #[error("the node's chain changed {0} times within one step; retrying at the next poll")]
    Unsettled(u32),
}

/// How far back (in blocks) a reorg is re-checked and re-judged; a fork below that (or below
/// the first block the watcher judged) is an audited critical alarm with the containment
/// freeze. At least `reorg_depth`.
pub const REORG_HISTORY: u64 = 4096;

/// Beyond the last `reorg_depth` blocks, one block in this many is kept (an anchor).
pub const ANCHOR_EVERY: u64 = 64;

/// A watcher failing for longer than this (or 10 polls, if longer) writes the stall alarm.
pub const STALL_AFTER: Duration = Duration::from_secs(30);

/// How long the node's newest block may stay the same before the watcher says so (an audited
/// alarm, `chain.head_stale`): a node that stopped syncing answers without error, and its
/// watcher would otherwise look healthy while the real chain moves on.
pub const STALE_HEAD_AFTER: Duration = Duration::from_secs(300);

/// Reorgs one step follows before it gives up until the next poll (a node flapping between
/// branches).
const MAX_REORGS_PER_STEP: u32 = 16;

/// The `meta` key of a venue's checkpoint.
pub fn checkpoint_key(venue: &str) -> String {
    format!("chain.{venue}.checkpoint")
}

/// One venue's watcher, writing through `P`.
pub struct Watcher<P> {
    venue: EvmVenue,
    rpc: Rpc,
    store: P,
    treasury: Vec<Address>,
    contain: Option<Scope>,
    events: Option<tokio::sync::mpsc::UnboundedSender<Event>>,
    /// Blocks judged (number, hash), ascending: the last `reorg_depth` densely, then older ones
    /// sparsely (see [`reorg::keep`]), back to [`REORG_HISTORY`] blocks.
    kept: VecDeque<(u64, B256)>,
    loaded: bool,
    /// Each treasury's nonce as far as it is known along the blocks judged (kept in the
    /// checkpoint), so the next block costs one `eth_getTransactionCount` per treasury.
    nonces: HashMap<Address, NonceBase>,
    health: Health,
    /// After how long failing the stall alarm is written (and how often it is logged again).
    stall_after: Duration,
    /// Since when every step has failed.
    failing_since: Option<Instant>,
    /// Whether this failure's stall alarm is in the audit log.
    stall_alarmed: bool,
    /// When the failure was last logged.
    last_logged: Option<Instant>,
    /// The first block this watcher ever judged and its parent (kept in the checkpoint): a fork
    /// right below it (the same parent) left nothing unjudged, so it is no alarm.
    first: Option<(u64, B256)>,
    /// The highest newest block the node ever named, and when it first named it.
    head_high: Option<(u64, Instant)>,
    /// After how long without a new newest block the stale-head alarm is written.
    stale_after: Duration,
    /// Whether this stale head's alarm is in the audit log.
    stale_alarmed: bool,
    /// A block whose logs could not be verified against its bloom, since when.
    unverified: Option<(u64, Instant)>,
    /// A block whose unverifiable logs were alarmed (with the containment freeze): its empty
    /// answer is then taken, so the blocks after it are judged.
    accept_unverified: Option<u64>,
}

impl<P: WatchStore> Watcher<P> {
    pub fn new(
        venue: EvmVenue,
        store: P,
        treasury: Vec<Address>,
        contain: Option<Scope>,
    ) -> Result<Self, ClientError> {
        let rpc = Rpc::new(&venue.rpc_url, venue.timeout)?;
        let venue_poll = venue.poll;
        Ok(Self {
            venue,
            rpc,
            store,
            treasury,
            contain,
            events: None,
            kept: VecDeque::new(),
            loaded: false,
            nonces: HashMap::new(),
            health: Health::default(),
            stall_after: STALL_AFTER.max(venue_poll.saturating_mul(10)),
            failing_since: None,
            stall_alarmed: false,
            last_logged: None,
            first: None,
            head_high: None,
            stale_after: STALE_HEAD_AFTER.max(venue_poll.saturating_mul(50)),
            stale_alarmed: false,
            unverified: None,
            accept_unverified: None,
        })
    }

    /// Writes the stall alarm after `after` of failing, instead of max(30 s, 10 polls).
    pub fn with_stall_alarm_after(mut self, after: Duration) -> Self {
        self.stall_after = after;
        self
    }

    /// Writes the stale-head alarm after `after` without a new newest block, instead of
    /// max([`STALE_HEAD_AFTER`], 50 polls).
    pub fn with_stale_head_after(mut self, after: Duration) -> Self {
        self.stale_after = after;
        self
    }

    /// The watcher's health figures, readable while it runs.
    pub fn health(&self) -> Health {
        self.health.clone()
    }

    /// Sends every judgement to `tx` as well.
    pub fn with_events(mut self, tx: tokio::sync::mpsc::UnboundedSender<Event>) -> Self {
        self.events = Some(tx);
        self
    }

    /// Follows the chain until the task is dropped: a [`Watcher::poll`] every `poll`.
    pub async fn run(mut self) {
        loop {
            let _ = self.poll().await;
            tokio::time::sleep(self.venue.poll).await;
        }
    }

    /// The last block judged, if any.
    pub fn last(&self) -> Option<(u64, B256)> {
        self.kept.back().copied()
    }

    /// Processes every block up to the node's newest; how many blocks it judged.
    pub async fn step(&mut self) -> Result<u64, WatchError> {
        self.load().await?;
        let head = self.rpc.latest().await?;
        let head_n = head.number.to::<u64>();
        if self.head_high.is_none_or(|(h, _)| head_n > h) {
            self.head_high = Some((head_n, Instant::now()));
            self.stale_alarmed = false;
        }
        self.lag(head_n);
        let mut next = match self.kept.back() {
            Some((n, h)) if *n == head_n && *h == head.hash => return Ok(0),
            // The newest block replaced ours at the same height, or we are ahead of a node that
            // lost blocks: re-check from our last block.
            Some((n, _)) if *n >= head_n => head_n,
            Some((n, _)) => n.checked_add(1).ok_or(WatchError::End(*n))?,
            None => head_n,
        };
        let mut done = 0;
        let mut reorgs = 0;
        while next <= head_n {
            // The node named block head_n its newest: one it does not have below that is a
            // backend behind the one that answered, an error (retried), not the end of the chain.
            let Some(block) = self.rpc.block(next).await? else {
                return Err(WatchError::Missing(next));
            };
            // A block at or below our last one: the chain there changed; drop what it replaces.
            while self.kept.back().is_some_and(|(n, _)| *n >= next) {
                self.kept.pop_back();
            }
            if let Some((n, h)) = self.kept.back().copied()
                && !(n.checked_add(1) == Some(next) && block.parent_hash == h)
            {
                // A reorg (our block n is no longer the parent), or a gap below this block (the
                // node fell behind our dense window): find where the node's chain and ours
                // agree, and re-judge from the block after.
                reorgs += 1;
                if reorgs > MAX_REORGS_PER_STEP {
                    return Err(WatchError::Unsettled(MAX_REORGS_PER_STEP));
                }
                let from = self.fork_point(head_n).await?;
                if from >= next {
                    // The node says block n is ours, yet block n+1 names another parent.
                    return Err(WatchError::Inconsistent(next));
                }
                tracing::warn!(venue = %self.venue.name, from, to = next - 1, "reorg: re-checking the blocks of the new branch");
                next = from;
                continue;
            }
            self.judge_block(&block, head_n).await?;
            if self.first.is_none() {
                self.first = Some((next, block.parent_hash));
            }
            self.kept.push_back((next, block.hash));
            reorg::keep(&mut self.kept, self.venue.reorg_depth, next);
            self.save().await?;
            self.lag(head_n);
            done += 1;
            next = next.checked_add(1).ok_or(WatchError::End(next))?;
        }
        Ok(done)
    }

    /// Judges every treasury outflow of one block: reads what the judgement needs, judges, and
    /// writes the judgement; `head_n` is the node's newest block (which the node must have
    /// state for: a check deferred for an older block is done there). Each treasury's nonce
    /// along the blocks is kept once the block's outflows are judged: a block retried after a
    /// failure is compared against the same base again.
    async fn judge_block(&mut self, block: &Block, head_n: u64) -> Result<(), WatchError> {
        let facts = self.fetch(block, head_n).await?;
        let judgement = judge::judge(&self.venue, &self.treasury, block, &facts);
        self.record(block, judgement).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{Answer, fake_node};
    use keygate_store::Store;
    use serde_json::{Value, json};
    use std::time::Duration;

    fn venue(url: &str) -> EvmVenue {
        EvmVenue {
            name: "eth".into(),
            rpc_url: url.into(),
            chain_id: 31337,
            credential: "eth".into(),
            confirmations: 2,
            poll: Duration::from_millis(20),
            reorg_depth: 4,
            tokens: Default::default(),
            timeout: Duration::from_secs(5),
        }
    }

    async fn store() -> (Store, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}/k.db", dir.path().display());
        let store = Store::open(&url, keygate_store::OpenMode::Create)
            .await
            .unwrap();
        store.migrate().await.unwrap();
        (store, dir)
    }

    fn hash(n: u64) -> String {
        format!("0x{n:064x}")
    }

    /// A node whose newest block is number `u64::MAX`, empty.
    fn at_the_end(method: &str, _: &Value) -> Answer {
        let top = u64::MAX;
        match method {
            "eth_getBlockByNumber" => Answer::Result(json!({
                "number": format!("{top:#x}"), "hash": hash(2), "parentHash": hash(1),
                "timestamp": "0x1", "logsBloom": format!("0x{}", "0".repeat(512)),
                "transactions": [],
            })),
            "eth_getCode" => Answer::Result(json!("0x")),
            "eth_getTransactionCount" => Answer::Result(json!("0x0")),
            "eth_getLogs" => Answer::Result(json!([])),
            _ => Answer::Result(Value::Null),
        }
    }

    #[tokio::test]
    async fn a_block_the_node_names_but_does_not_have_is_an_error_not_the_end() {
        // The newest block is 10, but block 10 itself is unknown to the backend asked.
        let url = fake_node(None, |method, params| match (method, &params[0]) {
            ("eth_getBlockByNumber", Value::String(tag)) if tag == "latest" => {
                Answer::Result(json!({"number": "0xa", "hash": hash(10), "parentHash": hash(9)}))
            }
            _ => Answer::Result(Value::Null),
        })
        .await;
        let (store, _dir) = store().await;
        let mut w = Watcher::new(venue(&url), store, vec![Address::ZERO], None).unwrap();
        let err = w.step().await.unwrap_err();
        assert!(matches!(err, WatchError::Missing(10)), "{err}");
        assert!(w.last().is_none());
    }

    #[tokio::test]
    async fn the_last_block_number_there_is_stops_with_an_error_not_a_wrap() {
        let url = fake_node(None, at_the_end).await;
        let (store, _dir) = store().await;
        let mut w = Watcher::new(venue(&url), store, vec![Address::ZERO], None).unwrap();
        let err = w.step().await.unwrap_err();
        assert!(err.to_string().contains("block number"), "{err}");
        // The block itself was judged and kept; nothing wrapped around to block 0.
        assert_eq!(w.last().map(|(n, _)| n), Some(u64::MAX));
    }
}
