//! A client's trade notionals as a bounded histogram, for `trade_size_jump`'s median and median
//! absolute deviation: log-spaced bins of integer cents, counted per epoch of the window so that
//! an epoch's trades leave together. Memory is one entry per (epoch, bin) that saw a trade, at
//! most `(EPOCHS + 2) x` the bins the client's sizes span (128 a doubling, 7,296 from 1 cent to
//! the largest i64), however many trades.
//!
//! The approximation (docs/detection.md#trade-detectors) only ever lowers `trade_size_jump`'s
//! threshold. A notional below USD 2.56 (256 cents) is its own bin; above, a notional is known
//! only to lie in its bin, `[lower edge, lower edge + width)`, the width being its top 8
//! significant bits' last unit (at most 1/128 of it). The median is taken of the lower edges (at
//! most 0.78% below the exact median, never above it), and the median absolute deviation of the
//! least deviation each bin allows from any median between that and the median of the upper
//! edges (never above the exact one). So the threshold `max(factor x median, median + mads x
//! MAD)` is never above the exact one, and at most `(1 + 3 x mads / factor) / 128` of it below
//! (3.1% with the defaults). An epoch is `window / 64` (5 h 15 min of the default 14 days) and
//! stays until all of it has left the window: the median and MAD are of the trades of the
//! window and up to one epoch before it.

use std::borrow::Cow;
use std::collections::{BTreeMap, VecDeque};

use crate::time::Millis;

/// How many epochs a window is cut into.
pub(super) const EPOCHS: i64 = 64;
/// Significant bits a notional keeps (exact below `1 << SIGNIFICANT`).
const SIGNIFICANT: u32 = 8;

/// The bin of a notional: its lower edge, in cents.
pub(super) fn bin_of(cents: i64) -> i64 {
    let v = cents.max(0);
    let bits = 64 - v.leading_zeros();
    if bits <= SIGNIFICANT {
        return v;
    }
    let shift = bits - SIGNIFICANT;
    (v >> shift) << shift
}

/// The largest notional in the bin whose lower edge is `lo`.
pub(super) fn bin_top(lo: i64) -> i64 {
    let v = lo.max(0);
    let bits = 64 - v.leading_zeros();
    if bits <= SIGNIFICANT {
        return v;
    }
    let shift = bits - SIGNIFICANT;
    v.saturating_add((1i64 << shift) - 1)
}

/// Bins and their counts.
type Bins = BTreeMap<i64, u64>;

#[derive(Debug, Clone)]
struct Epoch {
    index: i64,
    bins: Bins,
}

/// The histogram of one client's notionals in the window.
#[derive(Debug, Clone, Default)]
pub(super) struct Sizes {
    grain: Millis,
    epochs: VecDeque<Epoch>,
    total: Bins,
    len: u64,
}

impl Sizes {
    pub(super) fn new(window: Millis) -> Self {
        Self {
            grain: (window / EPOCHS).max(1),
            ..Self::default()
        }
    }

    fn epoch_of(&self, at: Millis) -> i64 {
        at.div_euclid(self.grain.max(1))
    }

    /// How many trades are held (some may be past the window until the next `expire`).
    pub(super) fn held(&self) -> u64 {
        self.len
    }

    #[cfg(test)]
    /// How many (epoch, bin) entries are held (the memory bound's unit).
    pub(super) fn entries(&self) -> usize {
        self.epochs.iter().map(|e| e.bins.len()).sum::<usize>() + self.total.len()
    }

    /// Whether a trade at `at` still counts when the window starts at `horizon`: its epoch is
    /// still held (the epoch holding the horizon stays).
    pub(super) fn covers(&self, at: Millis, horizon: Millis) -> bool {
        self.epoch_of(at) >= self.epoch_of(horizon)
    }

    /// Counts a notional traded at `at` (in any order).
    pub(super) fn add(&mut self, at: Millis, cents: i64) {
        let (e, b) = (self.epoch_of(at), bin_of(cents));
        let i = self.epochs.partition_point(|x| x.index < e);
        if self.epochs.get(i).is_none_or(|x| x.index != e) {
            self.epochs.insert(
                i,
                Epoch {
                    index: e,
                    bins: Bins::new(),
                },
            );
        }
        if let Some(x) = self.epochs.get_mut(i) {
            let n = x.bins.entry(b).or_default();
            *n = n.saturating_add(1);
        }
        let n = self.total.entry(b).or_default();
        *n = n.saturating_add(1);
        self.len = self.len.saturating_add(1);
    }

    /// Forgets the epochs wholly before `horizon`.
    pub(super) fn expire(&mut self, horizon: Millis) {
        let h = self.epoch_of(horizon);
        while self.epochs.front().is_some_and(|x| x.index < h) {
            let Some(gone) = self.epochs.pop_front() else {
                break;
            };
            self.len = self
                .len
                .saturating_sub(subtract(&mut self.total, &gone.bins));
        }
    }

    /// The bins of the trades still in the window at `horizon`, and how many trades they hold.
    pub(super) fn live(&self, horizon: Millis) -> (Cow<'_, Bins>, u64) {
        let h = self.epoch_of(horizon);
        let stale = self.epochs.partition_point(|x| x.index < h);
        if stale == 0 {
            return (Cow::Borrowed(&self.total), self.len);
        }
        let mut bins = self.total.clone();
        let mut len = self.len;
        for e in self.epochs.range(..stale) {
            len = len.saturating_sub(subtract(&mut bins, &e.bins));
        }
        (Cow::Owned(bins), len)
    }
}

/// Takes `gone` out of `from`; returns how many counts went.
fn subtract(from: &mut Bins, gone: &Bins) -> u64 {
    let mut n: u64 = 0;
    for (b, c) in gone {
        if let Some(have) = from.get_mut(b) {
            *have = have.saturating_sub(*c);
            if *have == 0 {
                from.remove(b);
            }
        }
        n = n.saturating_add(*c);
    }
    n
}

/// The value at `rank` (from 0) of a sorted run of (value, count).
fn nth(sorted: impl Iterator<Item = (i64, u64)>, rank: u64) -> Option<i64> {
    let mut seen = 0u64;
    for (v, c) in sorted {
        seen = seen.saturating_add(c);
        if rank < seen {
            return Some(v);
        }
    }
    None
}

/// The median of a sorted run of `len` (value, count), as [`crate::detect::median`] takes it.
fn median_sorted<I: Iterator<Item = (i64, u64)> + Clone>(sorted: I, len: u64) -> Option<i64> {
    if len == 0 {
        return None;
    }
    let hi = nth(sorted.clone(), len / 2)?;
    if len % 2 == 1 {
        return Some(hi);
    }
    let lo = nth(sorted, len / 2 - 1)?;
    Some((lo / 2).saturating_add(hi / 2))
}

/// The median and median absolute deviation a size jump is judged by, never above the exact
/// ones (see the module comment).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Spread {
    /// The median of the bins' lower edges.
    pub(super) median: i64,
    /// The median of the least deviation each bin allows from a median in
    /// `[median, median of the upper edges]`.
    pub(super) mad: i64,
}

/// The median of the binned notionals (their lower edges).
pub(super) fn median(bins: &Bins, len: u64) -> Option<i64> {
    median_sorted(bins.iter().map(|(v, c)| (*v, *c)), len)
}

/// The median of the binned notionals' upper edges (at least the exact median).
fn median_high(bins: &Bins, len: u64) -> Option<i64> {
    median_sorted(bins.iter().map(|(v, c)| (bin_top(*v), *c)), len)
}

/// The median and a lower bound of the median absolute deviation (O(bins): asked only of a
/// notional already far above the median).
pub(super) fn spread(bins: &Bins, len: u64) -> Option<Spread> {
    let lo = median(bins, len)?;
    let hi = median_high(bins, len)?.max(lo);
    let mut d: Vec<(i64, u64)> = bins
        .iter()
        .map(|(v, c)| {
            let least = v
                .saturating_sub(hi)
                .max(lo.saturating_sub(bin_top(*v)))
                .max(0);
            (least, *c)
        })
        .collect();
    d.sort_unstable();
    Some(Spread {
        median: lo,
        mad: median_sorted(d.into_iter(), len).unwrap_or(0),
    })
}
