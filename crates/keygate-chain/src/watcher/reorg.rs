//! Reorg handling: which judged blocks are kept ([`keep`]: a dense window and sparse anchors),
//! and, on a parent-hash mismatch, the walk back over them to where the node's chain and ours
//! agree ([`Watcher::fork_point`]); a fork below everything kept is an audited critical alarm.
//!
//! It must not judge blocks: the new branch is judged again by the caller.

use std::collections::VecDeque;

use alloy::primitives::B256;

use crate::hash_text;
use crate::persist::{Alarm, Alarmed, WatchStore};

use super::{ANCHOR_EVERY, REORG_HISTORY, WatchError, Watcher};

impl<P: WatchStore> Watcher<P> {
    /// Walks back over the kept blocks, asking the node for its block at each height, until one
    /// is still on the node's chain; drops those that are not. The first block to re-judge: the
    /// one after the agreeing block. When none agrees, the fork is below everything the watcher
    /// kept (deeper than [`REORG_HISTORY`], or below its first block): blocks of the new branch
    /// under it can never be judged, so that is an audited critical alarm with the containment
    /// freeze, and the new branch is judged from the oldest height kept.
    pub(super) async fn fork_point(&mut self, head_n: u64) -> Result<u64, WatchError> {
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
                let Alarmed {
                    audit_id,
                    freeze_id,
                } = self
                    .store
                    .record_alarm(Alarm {
                        event: "chain.reorg_beyond_history",
                        actor: &format!("watcher:{}", self.venue.name),
                        reason: &reason,
                        details: serde_json::json!({
                            "venue": self.venue.name, "oldest_kept": n, "oldest_kept_hash": hash_text(&h),
                            "node_hash": hash_text(&theirs.hash), "head": head_n,
                        }),
                        contain: self.contain.as_ref(),
                    })
                    .await?;
                tracing::error!(alarm = "chain.reorg_beyond_history", severity = "critical", venue = %self.venue.name, block = n, audit_id, freeze_id, "{reason}");
            }
            self.kept.pop_back();
            oldest = Some(n);
        }
        // Nothing was kept to compare with (cannot happen when called with a kept block).
        Ok(oldest.unwrap_or(head_n))
    }
}

/// Keeps of `kept` (ascending), after block `top` was judged: the last `reorg_depth` blocks (at
/// least one: the next block's parent is checked against it); older ones within
/// [`REORG_HISTORY`] blocks of `top` only at every [`ANCHOR_EVERY`]th height, and the oldest one
/// kept. A reorg deeper than the dense window is walked back over these anchors, and re-judged
/// from the highest anchor still on the chain.
pub(super) fn keep(kept: &mut VecDeque<(u64, B256)>, reorg_depth: u64, top: u64) {
    let dense = usize::try_from(reorg_depth.max(1)).unwrap_or(usize::MAX);
    let history = REORG_HISTORY.max(reorg_depth);
    let sparse = kept.len().saturating_sub(dense);
    let mut i = 0;
    kept.retain(|(n, _)| {
        let keep =
            i >= sparse || (top.saturating_sub(*n) <= history && (i == 0 || n % ANCHOR_EVERY == 0));
        i += 1;
        keep
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_kept_blocks_are_the_dense_window_and_sparse_anchors_within_the_history() {
        // reorg_depth 4; the watcher's first block is 1000.
        let mut kept = VecDeque::new();
        let top = 1000 + REORG_HISTORY + 500;
        for n in 1000..=top {
            kept.push_back((n, B256::with_last_byte(1)));
            keep(&mut kept, 4, n);
        }
        let kept: Vec<u64> = kept.iter().map(|(n, _)| *n).collect();
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
        let mut kept = VecDeque::new();
        for n in 1000..1100 {
            kept.push_back((n, B256::with_last_byte(1)));
            keep(&mut kept, 4, n);
        }
        let kept: Vec<u64> = kept.iter().map(|(n, _)| *n).collect();
        assert_eq!(kept, vec![1000, 1024, 1088, 1096, 1097, 1098, 1099]);
    }
}
