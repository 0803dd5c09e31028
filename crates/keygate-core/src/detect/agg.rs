//! Running aggregates the detectors share: a median in O(1) over a sliding multiset, and the
//! running maxima of a time series over every suffix. They let a detector's check cost about
//! the same with 20 events in its window as with 20,000.

use std::collections::{BTreeMap, VecDeque};

use crate::time::Millis;

/// The running maxima of a time series over every suffix: a monotonic queue (each value kept
/// only while no later value is at least as large), so the largest value since any time is the
/// first kept at or after it.
#[derive(Debug, Clone, Default)]
pub(super) struct Peaks<T> {
    q: VecDeque<(Millis, T)>,
}

impl<T: Ord + Copy> Peaks<T> {
    pub(super) fn push(&mut self, at: Millis, v: T) {
        while self.q.back().is_some_and(|b| b.1 <= v) {
            self.q.pop_back();
        }
        self.q.push_back((at, v));
    }

    pub(super) fn expire(&mut self, horizon: Millis) {
        while self.q.front().is_some_and(|f| f.0 < horizon) {
            self.q.pop_front();
        }
    }

    /// Forgets the values pushed at or after `at`, so that they can be pushed again (changed, or
    /// larger): the values kept before `at` are those pushing every value from the start would
    /// keep, when no value before `at` changed and none after it became smaller.
    pub(super) fn truncate_from(&mut self, at: Millis) {
        while self.q.back().is_some_and(|b| b.0 >= at) {
            self.q.pop_back();
        }
    }

    #[cfg(test)]
    /// How many values are kept.
    pub(super) fn len(&self) -> usize {
        self.q.len()
    }

    pub(super) fn max_since(&self, horizon: Millis) -> Option<T> {
        let i = self.q.partition_point(|p| p.0 < horizon);
        self.q.get(i).map(|p| p.1)
    }
}

/// A multiset of integers.
#[derive(Debug, Clone, Default)]
pub(super) struct Bag {
    pub(super) map: BTreeMap<i64, usize>,
    pub(super) len: usize,
}

impl Bag {
    pub(super) fn insert(&mut self, v: i64) {
        *self.map.entry(v).or_default() += 1;
        self.len += 1;
    }

    pub(super) fn remove(&mut self, v: i64) -> bool {
        let Some(n) = self.map.get_mut(&v) else {
            return false;
        };
        *n = n.saturating_sub(1);
        if *n == 0 {
            self.map.remove(&v);
        }
        self.len = self.len.saturating_sub(1);
        true
    }

    pub(super) fn count(&self, v: i64) -> usize {
        self.map.get(&v).copied().unwrap_or(0)
    }

    pub(super) fn max(&self) -> Option<i64> {
        self.map.last_key_value().map(|(k, _)| *k)
    }

    pub(super) fn min(&self) -> Option<i64> {
        self.map.first_key_value().map(|(k, _)| *k)
    }
}

/// A multiset split at its median: every value of `low` is at most every value of `high`, and
/// `low` holds half the values, or one more. Insert and remove are O(log n), the median O(1).
#[derive(Debug, Clone, Default)]
pub(super) struct Halves {
    pub(super) low: Bag,
    pub(super) high: Bag,
}

impl Halves {
    pub(super) fn insert(&mut self, v: i64) {
        if self.low.max().is_none_or(|m| v <= m) {
            self.low.insert(v);
        } else {
            self.high.insert(v);
        }
        self.rebalance();
    }

    pub(super) fn remove(&mut self, v: i64) {
        if self.low.max().is_some_and(|m| v <= m) {
            self.low.remove(v);
        } else {
            self.high.remove(v);
        }
        self.rebalance();
    }

    pub(super) fn rebalance(&mut self) {
        while self.low.len > self.high.len + 1
            && let Some(m) = self.low.max()
        {
            self.low.remove(m);
            self.high.insert(m);
        }
        while self.high.len > self.low.len
            && let Some(m) = self.high.min()
        {
            self.high.remove(m);
            self.low.insert(m);
        }
    }

    /// The median, as [`super::median`] takes it of the sorted values.
    pub(super) fn median(&self) -> Option<i64> {
        let lo = self.low.max()?;
        if self.low.len > self.high.len {
            return Some(lo);
        }
        let hi = self.high.min()?;
        Some((lo / 2).saturating_add(hi / 2))
    }

    /// The value at `rank` (from 0, ascending) once the values of `removed` (all in the set)
    /// are taken out: O(k log n) for k removed values near the median.
    pub(super) fn nth_without(&self, rank: usize, removed: &BTreeMap<i64, usize>) -> Option<i64> {
        let boundary = self.low.max()?;
        // How many removed copies of `v` come out of `low` (a value equal to the boundary may be
        // in both halves; whichever copy goes, the rest is the same multiset).
        let from_low = |v: i64, r: usize| match v.cmp(&boundary) {
            std::cmp::Ordering::Less => r,
            std::cmp::Ordering::Equal => r.min(self.low.count(v)),
            std::cmp::Ordering::Greater => 0,
        };
        let removed_low: usize = removed.iter().map(|(v, r)| from_low(*v, *r)).sum();
        let live_low = self.low.len.saturating_sub(removed_low);
        let gone = |v: &i64| removed.get(v).copied().unwrap_or(0);
        if rank < live_low {
            let mut skip = live_low - 1 - rank;
            for (v, n) in self.low.map.iter().rev() {
                let n = n.saturating_sub(from_low(*v, gone(v)));
                if skip < n {
                    return Some(*v);
                }
                skip -= n;
            }
            return None;
        }
        let mut skip = rank - live_low;
        for (v, n) in &self.high.map {
            let r = gone(v);
            let n = n.saturating_sub(r - from_low(*v, r));
            if skip < n {
                return Some(*v);
            }
            skip -= n;
        }
        None
    }
}

/// The median of some values, as [`super::median`] takes it, in O(n).
pub(super) fn median_of(mut v: Vec<i64>) -> i64 {
    let n = v.len();
    if n == 0 {
        return 0;
    }
    let (left, hi, _) = v.select_nth_unstable(n / 2);
    let hi = *hi;
    if n % 2 == 1 {
        return hi;
    }
    let lo = left.iter().copied().max().unwrap_or(hi);
    (lo / 2).saturating_add(hi / 2)
}
