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
//! `nonce:<treasury>:<block hash>`) and goes through `Store::reconcile_outflow`: matched to the
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

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use alloy::primitives::{Address, B256, Bloom, BloomInput, U256};
use alloy::sol_types::SolEvent;
use keygate_core::freeze::Scope;
use keygate_core::outflow::Outflow;
use keygate_store::Store;
use keygate_store::reconcile::Reconciled;
use rust_decimal::Decimal;

use crate::rpc::{Block, Log, Rpc, RpcError};
use crate::tx::{Approval, Transfer};
use crate::{EvmVenue, address_text, hash_text};

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
    Store(#[from] keygate_store::StoreError),
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

/// One venue's watcher.
pub struct Watcher {
    venue: EvmVenue,
    rpc: Rpc,
    store: Store,
    treasury: Vec<Address>,
    contain: Option<Scope>,
    events: Option<tokio::sync::mpsc::UnboundedSender<Event>>,
    /// Blocks judged (number, hash), ascending: the last `reorg_depth` densely, then older ones
    /// sparsely (see [`Watcher::trim`]), back to [`REORG_HISTORY`] blocks.
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

/// A treasury's nonce along the blocks judged: the next block's parent must be `tip`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct NonceBase {
    /// The last block judged.
    tip: B256,
    /// The nonce at the last block whose state the node could give (None: none yet).
    count: Option<u64>,
    /// The treasury's transactions in the blocks judged since that block.
    sent: u64,
    /// The first of those blocks whose state the node could not give (the comparison waits
    /// for the next block it can give, and then covers them all).
    deferred_from: Option<u64>,
}

/// The checkpoint as stored: the kept blocks, and the nonces (absent in checkpoints written
/// before the nonce comparison).
#[derive(serde::Serialize, serde::Deserialize)]
#[serde(untagged)]
enum Stored {
    Blocks(Vec<(u64, String)>),
    Full {
        blocks: Vec<(u64, String)>,
        nonces: Vec<(Address, NonceBase)>,
        #[serde(default)]
        first: Option<(u64, B256)>,
    },
}

/// How a watcher is doing, shared with whoever reads it (tests; the same figures go to the
/// Prometheus recorder, if one is installed: `keygate_chain_watcher_lag_blocks`,
/// `keygate_chain_watcher_failing_seconds`, `keygate_chain_watcher_stalled`, labelled by venue,
/// and the counter `keygate_chain_watcher_errors_total`).
#[derive(Debug, Clone, Default)]
pub struct Health(Arc<HealthState>);

#[derive(Debug, Default)]
struct HealthState {
    lag: AtomicU64,
    failing_ms: AtomicU64,
    stalled: AtomicBool,
}

impl Health {
    /// Blocks between the node's newest (as last seen) and the last block judged.
    pub fn lag_blocks(&self) -> u64 {
        self.0.lag.load(Ordering::Relaxed)
    }

    /// How long every step has been failing (zero when the last one succeeded).
    pub fn failing_for(&self) -> Duration {
        Duration::from_millis(self.0.failing_ms.load(Ordering::Relaxed))
    }

    /// Whether the watcher has been failing for longer than its stall threshold.
    pub fn stalled(&self) -> bool {
        self.0.stalled.load(Ordering::Relaxed)
    }
}

impl Watcher {
    pub fn new(
        venue: EvmVenue,
        store: Store,
        treasury: Vec<Address>,
        contain: Option<Scope>,
    ) -> Result<Self, String> {
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

    /// One [`Watcher::step`], and what its outcome says about the watcher's health. A failing
    /// watcher retries every poll and catches up when it can (a gap is never skipped); while it
    /// fails, the figures show it at once, and once it has failed for longer than the stall
    /// threshold it writes one audited critical alarm (`chain.watcher_stalled`) and logs again
    /// at every threshold's worth of failing; it logs its recovery.
    pub async fn poll(&mut self) -> Result<u64, WatchError> {
        let result = self.step().await;
        let venue = self.venue.name.clone();
        let now = Instant::now();
        if result.is_err() {
            // What the failed step changed in memory (blocks dropped for a reorg, nonces) is
            // read again from the checkpoint: a step never starts from a half-done one.
            self.loaded = false;
            self.kept.clear();
            self.nonces.clear();
            if let Err(e) = self.load().await {
                tracing::error!(venue = %self.venue.name, error = %e, "the chain watcher's checkpoint cannot be read again; it is read at the next poll");
            }
        }
        self.unverifiable(&result, now).await;
        self.stale_head(now).await;
        // Caught up with the highest newest block the node ever named: a backend behind the
        // others answering "nothing new" is not a recovery.
        let caught_up = match (self.last(), self.head_high) {
            (Some((n, _)), Some((h, _))) => n >= h,
            _ => true,
        };
        match &result {
            Ok(_) if !caught_up => {}
            Ok(_) => {
                if let Some(since) = self.failing_since.take() {
                    tracing::info!(venue = %venue, failed_for_ms = since.elapsed().as_millis() as u64, stall_alarm = self.stall_alarmed, "the chain watcher is following the node again; the blocks it could not judge meanwhile are judged");
                }
                self.stall_alarmed = false;
                self.last_logged = None;
            }
            Err(e) => {
                metrics::counter!("keygate_chain_watcher_errors_total", "venue" => venue.clone())
                    .increment(1);
                let since = *self.failing_since.get_or_insert(now);
                let failing = now.duration_since(since);
                let due = self
                    .last_logged
                    .is_none_or(|t| now.duration_since(t) >= self.stall_after);
                if self.last_logged.is_none() {
                    tracing::error!(venue = %venue, error = %e, "the chain watcher cannot follow the node; retrying every poll, and catching up when it can");
                    self.last_logged = Some(now);
                } else if failing >= self.stall_after && !self.stall_alarmed && due {
                    // Tried again (at the same interval) until the store takes it.
                    self.stall_alarm(failing, e).await;
                } else if due {
                    tracing::error!(venue = %venue, error = %e, failing_for_ms = failing.as_millis() as u64, lag_blocks = self.health.lag_blocks(), "the chain watcher still cannot follow the node; outflows at this venue are not being judged");
                    self.last_logged = Some(now);
                }
            }
        }
        let failing = self
            .failing_since
            .map(|t| now.duration_since(t))
            .unwrap_or_default();
        let stalled = failing >= self.stall_after && self.failing_since.is_some();
        let h = &self.health.0;
        h.failing_ms.store(
            u64::try_from(failing.as_millis()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
        h.stalled.store(stalled, Ordering::Relaxed);
        metrics::gauge!("keygate_chain_watcher_failing_seconds", "venue" => venue.clone())
            .set(failing.as_secs_f64());
        metrics::gauge!("keygate_chain_watcher_stalled", "venue" => venue).set(if stalled {
            1.0
        } else {
            0.0
        });
        result
    }

    /// Follows a block whose logs cannot be verified: after the stall threshold, an audited
    /// critical alarm (`chain.block_unverifiable`) with the containment freeze, once per block;
    /// once written, the block's empty answer is taken so the watcher goes on (frozen).
    async fn unverifiable(&mut self, result: &Result<u64, WatchError>, now: Instant) {
        let Err(WatchError::Incomplete(n)) = result else {
            if result.is_ok() {
                self.unverified = None;
            }
            return;
        };
        let n = *n;
        let since = match self.unverified {
            Some((m, t)) if m == n => t,
            _ => {
                self.unverified = Some((n, now));
                now
            }
        };
        if now.duration_since(since) < self.stall_after || self.accept_unverified == Some(n) {
            return;
        }
        let reason = format!(
            "the logs of block {n} at {} cannot be verified against its bloom (the node leaves some out, or there are too many to read) for {} s: a treasury token outflow in it may be unseen",
            self.venue.name,
            now.duration_since(since).as_secs()
        );
        match self
            .store
            .record_alarm(
                "chain.block_unverifiable",
                &format!("watcher:{}", self.venue.name),
                &reason,
                serde_json::json!({"venue": self.venue.name, "block": n}),
                self.contain.as_ref(),
            )
            .await
        {
            Ok((audit_id, freeze_id)) => {
                tracing::error!(alarm = "chain.block_unverifiable", severity = "critical", venue = %self.venue.name, block = n, audit_id, freeze_id, "{reason}; containment applied, and the watcher goes on past it");
                self.accept_unverified = Some(n);
            }
            Err(e) => {
                tracing::error!(alarm = "chain.block_unverifiable", severity = "critical", venue = %self.venue.name, block = n, store_error = %e, "{reason}; and the alarm could not be written (tried again)");
            }
        }
    }

    /// Follows the node's newest block: the time since it last rose is exported
    /// (`keygate_chain_watcher_head_age_seconds`), and beyond the stale-head threshold it is one
    /// audited critical alarm (`chain.head_stale`) until it rises again.
    async fn stale_head(&mut self, now: Instant) {
        let Some((head, since)) = self.head_high else {
            return;
        };
        let age = now.duration_since(since);
        metrics::gauge!("keygate_chain_watcher_head_age_seconds", "venue" => self.venue.name.clone())
            .set(age.as_secs_f64());
        if age < self.stale_after || self.stale_alarmed {
            return;
        }
        let reason = format!(
            "the node of {} has named block {head} its newest for {} s: it may have stopped syncing, and outflows on the real chain are not being judged; check the node",
            self.venue.name,
            age.as_secs()
        );
        match self
            .store
            .record_alarm(
                "chain.head_stale",
                &format!("watcher:{}", self.venue.name),
                &reason,
                serde_json::json!({"venue": self.venue.name, "head": head, "for_ms": u64::try_from(age.as_millis()).unwrap_or(u64::MAX)}),
                None,
            )
            .await
        {
            Ok((audit_id, _)) => {
                self.stale_alarmed = true;
                tracing::error!(alarm = "chain.head_stale", severity = "critical", venue = %self.venue.name, head, audit_id, "{reason}");
            }
            Err(e) => {
                tracing::error!(alarm = "chain.head_stale", severity = "critical", venue = %self.venue.name, head, store_error = %e, "{reason}; and the alarm could not be written (tried again)");
            }
        }
    }

    /// Writes the stall alarm (once per failure; tried again at the next poll if the store
    /// cannot take it) and logs it.
    async fn stall_alarm(&mut self, failing: Duration, error: &WatchError) {
        let venue = self.venue.name.clone();
        let last = self.last();
        let reason = format!(
            "the chain watcher of {venue} has failed for {} s ({error}); outflows at this venue are not being judged until it recovers: check the node",
            failing.as_secs()
        );
        let details = serde_json::json!({
            "venue": venue, "failing_for_ms": u64::try_from(failing.as_millis()).unwrap_or(u64::MAX),
            "last_block": last.map(|(n, _)| n), "last_hash": last.map(|(_, h)| hash_text(&h)),
            "lag_blocks": self.health.lag_blocks(), "error": error.to_string(),
        });
        self.last_logged = Some(Instant::now());
        match self
            .store
            .record_alarm(
                "chain.watcher_stalled",
                &format!("watcher:{venue}"),
                &reason,
                details,
                None,
            )
            .await
        {
            Ok((audit_id, _)) => {
                self.stall_alarmed = true;
                tracing::error!(alarm = "chain.watcher_stalled", severity = "critical", venue = %venue, audit_id, "{reason}");
            }
            Err(se) => {
                tracing::error!(alarm = "chain.watcher_stalled", severity = "critical", venue = %venue, store_error = %se, "{reason}; and the alarm could not be written to the audit log");
            }
        }
    }

    /// Records the lag: blocks from the last one judged to the node's newest, `head`.
    fn lag(&self, head: u64) {
        let lag = self
            .last()
            .map(|(n, _)| head.saturating_sub(n))
            .unwrap_or(0);
        self.health.0.lag.store(lag, Ordering::Relaxed);
        metrics::gauge!("keygate_chain_watcher_lag_blocks", "venue" => self.venue.name.clone())
            .set(lag as f64);
    }

    async fn load(&mut self) -> Result<(), WatchError> {
        if self.loaded {
            return Ok(());
        }
        let key = checkpoint_key(&self.venue.name);
        if let Some(text) = self.store.get_meta(&key).await? {
            let stored: Stored =
                serde_json::from_str(&text).map_err(|e| WatchError::Checkpoint {
                    key: key.clone(),
                    detail: e.to_string(),
                })?;
            let list = match stored {
                Stored::Blocks(list) => list,
                Stored::Full {
                    blocks,
                    nonces,
                    first,
                } => {
                    self.nonces = nonces.into_iter().collect();
                    self.first = first;
                    blocks
                }
            };
            for (n, h) in list {
                let h: B256 = h.parse().map_err(|_| WatchError::Checkpoint {
                    key: key.clone(),
                    detail: format!("block {n}'s hash is not a hash"),
                })?;
                if self.kept.back().is_some_and(|(m, _)| *m >= n) {
                    return Err(WatchError::Checkpoint {
                        key,
                        detail: format!("block {n} is not above the block before it"),
                    });
                }
                self.kept.push_back((n, h));
            }
        }
        self.loaded = true;
        Ok(())
    }

    async fn save(&self) -> Result<(), WatchError> {
        let stored = Stored::Full {
            blocks: self.kept.iter().map(|(n, h)| (*n, hash_text(h))).collect(),
            nonces: self.nonces.iter().map(|(a, b)| (*a, *b)).collect(),
            first: self.first,
        };
        let text = serde_json::to_string(&stored).map_err(|e| WatchError::Checkpoint {
            key: checkpoint_key(&self.venue.name),
            detail: e.to_string(),
        })?;
        self.store
            .set_meta(&checkpoint_key(&self.venue.name), &text)
            .await?;
        Ok(())
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
            self.judge(&block, head_n).await?;
            if self.first.is_none() {
                self.first = Some((next, block.parent_hash));
            }
            self.kept.push_back((next, block.hash));
            self.trim(next);
            self.save().await?;
            self.lag(head_n);
            done += 1;
            next = next.checked_add(1).ok_or(WatchError::End(next))?;
        }
        Ok(done)
    }

    /// Walks back over the kept blocks, asking the node for its block at each height, until one
    /// is still on the node's chain; drops those that are not. The first block to re-judge: the
    /// one after the agreeing block. When none agrees, the fork is below everything the watcher
    /// kept (deeper than [`REORG_HISTORY`], or below its first block): blocks of the new branch
    /// under it can never be judged, so that is an audited critical alarm with the containment
    /// freeze, and the new branch is judged from the oldest height kept.
    async fn fork_point(&mut self, head_n: u64) -> Result<u64, WatchError> {
        let mut oldest = None;
        while let Some((n, h)) = self.kept.back().copied() {
            let theirs = self.rpc.header(n).await?.ok_or(WatchError::Missing(n))?;
            if theirs.hash == h {
                return n.checked_add(1).ok_or(WatchError::End(n));
            }
            // The first block ever judged replaced by one with the same parent: nothing below
            // it changed, so nothing is left unjudged.
            let right_below_first = self.first == Some((n, theirs.parent_hash));
            if self.kept.len() == 1 && !right_below_first {
                // Raised before the last one is dropped: if the alarm cannot be written, the
                // next poll finds the same disagreement and tries again.
                let reason = format!(
                    "the chain of {} changed below block {n} ({}), the oldest block the watcher kept; blocks of the new branch below it were never judged: check the treasury's history on chain",
                    self.venue.name,
                    hash_text(&h)
                );
                let (audit_id, freeze_id) = self
                    .store
                    .record_alarm(
                        "chain.reorg_beyond_history",
                        &format!("watcher:{}", self.venue.name),
                        &reason,
                        serde_json::json!({
                            "venue": self.venue.name, "oldest_kept": n, "oldest_kept_hash": hash_text(&h),
                            "node_hash": hash_text(&theirs.hash), "head": head_n,
                        }),
                        self.contain.as_ref(),
                    )
                    .await?;
                tracing::error!(alarm = "chain.reorg_beyond_history", severity = "critical", venue = %self.venue.name, block = n, audit_id, freeze_id, "{reason}");
            }
            self.kept.pop_back();
            oldest = Some(n);
        }
        // Nothing was kept to compare with (cannot happen when called with a kept block).
        Ok(oldest.unwrap_or(head_n))
    }

    /// Keeps, after block `top` was judged: the last `reorg_depth` blocks (at least one: the
    /// next block's parent is checked against it); older ones within [`REORG_HISTORY`] blocks of
    /// `top` only at every [`ANCHOR_EVERY`]th height, and the oldest one kept. A reorg deeper
    /// than the dense window is walked back over these anchors, and re-judged from the highest
    /// anchor still on the chain.
    fn trim(&mut self, top: u64) {
        let dense = usize::try_from(self.venue.reorg_depth.max(1)).unwrap_or(usize::MAX);
        let history = REORG_HISTORY.max(self.venue.reorg_depth);
        let sparse = self.kept.len().saturating_sub(dense);
        let mut i = 0;
        self.kept.retain(|(n, _)| {
            let keep = i >= sparse
                || (top.saturating_sub(*n) <= history && (i == 0 || n % ANCHOR_EVERY == 0));
            i += 1;
            keep
        });
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

    /// Judges every treasury outflow of one block.
    /// Judges every treasury outflow of one block; `head_n` is the node's newest block (which
    /// the node must have state for: a check deferred for an older block is done there).
    async fn judge(&mut self, block: &Block, head_n: u64) -> Result<(), WatchError> {
        let at = i64::try_from(block.timestamp.to::<u64>())
            .unwrap_or(i64::MAX / 1000)
            .saturating_mul(1000);
        let mut outflows = vec![];
        for tx in &block.transactions {
            if !self.treasury.contains(&tx.from) {
                continue;
            }
            let hash = hash_text(&tx.hash);
            let ours = self.store.evm_tx_decision(&hash).await?.is_some();
            if ours && tx.value.is_zero() {
                continue;
            }
            outflows.push(Outflow {
                venue: self.venue.name.clone(),
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
        // A treasury with code runs that code for anyone: an EIP-7702 delegation, signed by a
        // leaked key and sent by someone else, lets value leave by internal calls, with no
        // transaction from the treasury and no log. keygate signs no delegation, so code at a
        // treasury address is an outflow keygate never approved (judged once per code).
        // A node without state for this block (pruned, after keygate was down a while) answers
        // with an error: the code is looked at again at the next block it has state for, and
        // the nonce comparison below covers the blocks between (an authorization moves the
        // nonce even if the delegation is gone again). Not at the newest block: there, no state
        // fails the step, so no check is put off for good.
        for t in &self.treasury {
            let code = match self.rpc.code_at(t, &block.hash).await {
                Ok(code) => code,
                Err(e) if block.number.to::<u64>() < head_n && no_state(&e) => {
                    tracing::debug!(venue = %self.venue.name, block = block.number.to::<u64>(), error = %e, "no state for this block: the treasury's code is looked at in the next block");
                    continue;
                }
                Err(e) => return Err(e.into()),
            };
            if code.is_empty() {
                continue;
            }
            // A 7702 delegation designator is 0xef0100 followed by the delegate's address.
            let delegate = match code.get(..3) {
                Some([0xef, 0x01, 0x00]) if code.len() == 23 => {
                    address_text(&Address::from_slice(&code[3..23]))
                }
                _ => "code".into(),
            };
            outflows.push(Outflow {
                venue: self.venue.name.clone(),
                id: format!(
                    "code:{}:{}",
                    address_text(t),
                    hash_text(&alloy::primitives::keccak256(&code))
                ),
                asset: "code".into(),
                amount: Decimal::ZERO,
                destination: delegate,
                at,
                reference: None,
            });
        }
        // Each treasury's nonce moves by exactly its transactions in the block. Anything else
        // moved it (an EIP-7702 authorization the treasury signed, carried in someone else's
        // transaction), or the node left a transaction out of the block: keygate approved
        // neither, so it is an outflow (asset `nonce`, the unexplained count), judged once per
        // treasury and block.
        // Kept once the block's outflows are judged: a block retried after a failure is
        // compared against the same base again.
        let mut bases = vec![];
        for t in self.treasury.clone() {
            let n = block.number.to::<u64>();
            let sent = block.transactions.iter().filter(|tx| tx.from == t).count() as u64;
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
            let next = match (base.count, after) {
                (Some(before), Some(after)) => {
                    let explained = base.sent.saturating_add(sent);
                    let unexplained =
                        i128::from(after) - i128::from(before) - i128::from(explained);
                    if let Some(from) = base.deferred_from {
                        tracing::info!(venue = %self.venue.name, treasury = %address_text(&t), from, to = n, "the treasury's nonce is compared again, over the blocks whose state the node did not give");
                    }
                    if unexplained != 0 {
                        tracing::error!(venue = %self.venue.name, treasury = %address_text(&t), block = n, before, after, transactions = explained, "the treasury's nonce moved by more (or less) than its transactions");
                        outflows.push(Outflow {
                            venue: self.venue.name.clone(),
                            id: format!("nonce:{}:{}", address_text(&t), hash_text(&block.hash)),
                            asset: "nonce".into(),
                            amount: Decimal::from(unexplained),
                            destination: "unknown".into(),
                            at,
                            reference: None,
                        });
                    }
                    NonceBase {
                        tip: block.hash,
                        count: Some(after),
                        sent: 0,
                        deferred_from: None,
                    }
                }
                (count, None) => {
                    if base.deferred_from.is_none() {
                        tracing::warn!(venue = %self.venue.name, treasury = %address_text(&t), block = n, "the node gives no state for this block (pruned, or a backend behind); the treasury's nonce is compared at the next block it gives, over all the blocks between");
                    }
                    NonceBase {
                        tip: block.hash,
                        count,
                        sent: base.sent.saturating_add(sent),
                        deferred_from: base.deferred_from.or(Some(n)),
                    }
                }
                (None, Some(after)) => {
                    // A span the comparison cannot cover: an authorization signed and undone
                    // inside it would go unseen. Not a freeze (a pruned node after downtime
                    // says the same), but an audited alarm, once per treasury and block.
                    let reason = format!(
                        "the node gives no nonce of treasury {} from before block {n} (pruned state, and none kept): the treasury's nonce is compared from here on; a delegation signed and revoked before it would not show: check the treasury's history on chain",
                        address_text(&t)
                    );
                    let (audit_id, _) = self
                        .store
                        .record_alarm(
                            "chain.nonce_gap",
                            &format!("watcher:{}", self.venue.name),
                            &reason,
                            serde_json::json!({
                                "venue": self.venue.name, "treasury": address_text(&t), "block": n,
                                "block_hash": hash_text(&block.hash), "since": base.deferred_from,
                            }),
                            None,
                        )
                        .await?;
                    tracing::warn!(alarm = "chain.nonce_gap", venue = %self.venue.name, treasury = %address_text(&t), block = n, since = base.deferred_from, audit_id, "{reason}");
                    NonceBase {
                        tip: block.hash,
                        count: Some(after),
                        sent: 0,
                        deferred_from: None,
                    }
                }
            };
            bases.push((t, next));
        }
        let mut logs: Vec<Log> = self
            .treasury_logs(block)
            .await?
            .into_iter()
            .filter(|l| !l.removed && l.topics.len() >= 3)
            .collect();
        logs.sort_by_key(|l| l.log_index.to::<u64>());
        let mut ordinal: HashMap<B256, u32> = HashMap::new();
        let mut book: Option<Vec<(String, String)>> = None;
        for log in logs {
            let n = ordinal.entry(log.transaction_hash).or_default();
            let id = format!("{}:{}", hash_text(&log.transaction_hash), *n);
            *n += 1;
            // Any contract can emit a log naming the treasury, so only the listed tokens' logs
            // can freeze: an unlisted contract's is an alarm in the log, not a freeze anyone on
            // chain could set. (A transaction the treasury key sends is judged above whatever
            // it calls.)
            let Some((symbol, decimals)) = self
                .venue
                .symbol_of(&log.address)
                .map(|(s, d)| (s.to_string(), d))
            else {
                tracing::warn!(
                    alarm = "chain.unlisted_log",
                    venue = %self.venue.name,
                    contract = %address_text(&log.address),
                    tx = %hash_text(&log.transaction_hash),
                    "a contract not in the venue's tokens emitted a Transfer or Approval naming the treasury; not a freeze (anyone can emit one), check it"
                );
                continue;
            };
            let value = if log.data.len() == 32 {
                U256::from_be_slice(&log.data)
            } else if log.topics.len() == 4 {
                // ERC-721: the token id is the fourth topic; one token left.
                U256::from(1u8)
            } else {
                U256::ZERO
            };
            let counterparty = address_text(&Address::from_word(log.topics[2]));
            let hash = hash_text(&log.transaction_hash);
            if log.topics[0] == Transfer::SIGNATURE_HASH {
                // A transfer of nothing moves nothing, and anyone may make one from any address
                // (`transferFrom(treasury, x, 0)` succeeds on common tokens): not an outflow.
                if value.is_zero() {
                    continue;
                }
                outflows.push(Outflow {
                    venue: self.venue.name.clone(),
                    id,
                    asset: symbol,
                    amount: amount(value, decimals),
                    destination: counterparty,
                    at,
                    reference: Some(hash),
                });
            } else {
                // An allowance lets the spender move the treasury's tokens: unless the spender
                // is an active address-book entry of this venue for this very token (or the
                // allowance is revoked), it is an outflow. An entry for another asset or venue
                // vouches for nothing here.
                if value.is_zero() {
                    continue;
                }
                if book.is_none() {
                    let now = self.store.clock().now();
                    book = Some(
                        self.store
                            .destinations()
                            .await?
                            .into_iter()
                            .filter(|d| d.venue == self.venue.name && d.status(now) == "active")
                            .map(|d| (d.asset, d.address))
                            .collect(),
                    );
                }
                if book
                    .as_ref()
                    .is_some_and(|b| b.iter().any(|(a, d)| *a == symbol && *d == counterparty))
                {
                    continue;
                }
                outflows.push(Outflow {
                    venue: self.venue.name.clone(),
                    id,
                    asset: format!("allowance:{symbol}"),
                    amount: amount(value, decimals),
                    destination: counterparty,
                    at,
                    reference: Some(hash),
                });
            }
        }
        for o in outflows {
            if self.store.outflow_known(&o.venue, &o.id).await? {
                continue;
            }
            let result = self
                .store
                .reconcile_outflow(&o, self.contain.as_ref())
                .await?;
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
            if let Some(tx) = &self.events {
                let _ = tx.send(Event {
                    block: block.number.to::<u64>(),
                    block_hash: block.hash,
                    outflow: o,
                    result,
                    at,
                });
            }
        }
        self.nonces.extend(bases);
        Ok(())
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

/// An on-chain amount as a decimal; beyond what a decimal holds (an unlimited allowance), the
/// largest decimal: it matches no decision, and the alarm stands.
fn amount(units: U256, decimals: u8) -> Decimal {
    crate::amount::from_units(units, decimals).unwrap_or(Decimal::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{Answer, fake_node};
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
    async fn the_kept_blocks_are_the_dense_window_and_sparse_anchors_within_the_history() {
        let (db, _dir) = store().await;
        // reorg_depth 4; the watcher's first block is 1000.
        let mut w = Watcher::new(venue("http://127.0.0.1:9"), db, vec![], None).unwrap();
        let top = 1000 + REORG_HISTORY + 500;
        for n in 1000..=top {
            w.kept.push_back((n, B256::with_last_byte(1)));
            w.trim(n);
        }
        let kept: Vec<u64> = w.kept.iter().map(|(n, _)| *n).collect();
        assert_eq!(kept[kept.len() - 4..], [top - 3, top - 2, top - 1, top]);
        let sparse = &kept[..kept.len() - 4];
        assert!(
            sparse
                .iter()
                .all(|n| n % ANCHOR_EVERY == 0 && top - n <= REORG_HISTORY),
            "{sparse:?}"
        );
        // One in 64, back to the history's end (the first block, now beyond it, is gone).
        assert_eq!(sparse.len() as u64, REORG_HISTORY / ANCHOR_EVERY);
        assert!(!kept.contains(&1000));
        // Before the history is full, the first block is kept as the deepest anchor.
        let (db, _dir2) = store().await;
        let mut w = Watcher::new(venue("http://127.0.0.1:9"), db, vec![], None).unwrap();
        for n in 1000..1100 {
            w.kept.push_back((n, B256::with_last_byte(1)));
            w.trim(n);
        }
        let kept: Vec<u64> = w.kept.iter().map(|(n, _)| *n).collect();
        assert_eq!(kept, vec![1000, 1024, 1088, 1096, 1097, 1098, 1099]);
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
