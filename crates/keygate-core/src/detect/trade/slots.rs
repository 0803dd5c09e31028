//! A client's trades counted in fixed time slots, for `trade_velocity`: how many trades and how
//! much notional in the spell ending now, in the window before it, and in the busiest earlier
//! spell. Memory is one entry per slot that saw a trade (at most `window / grain + 2`), however
//! many trades each slot holds; the trades themselves are not kept.
//!
//! The approximation (docs/detection.md#trade-detectors): a slot is `velocity_window / 20`
//! (30 s by default) and a spell is a run of whole slots (20), so a spell's edges fall on slot
//! boundaries: the spell ending now starts at the boundary up to one slot after `now - spell`,
//! and a slot stays in the window while any part of it is (up to one slot late).

use std::collections::VecDeque;

use super::super::agg::Peaks;
use crate::time::Millis;

/// How many slots make a spell (when the spell is at least that many milliseconds).
pub(super) const SPELL_SLOTS: i64 = 20;

/// One slot that saw trades: its index (time / grain) and the client's running totals before it.
#[derive(Debug, Clone, Copy)]
struct Slot {
    index: i64,
    count_before: u64,
    cents_before: i128,
}

/// What `trade_velocity` compares.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct Spells {
    pub(super) recent_count: u64,
    pub(super) recent_cents: i128,
    /// Trades in the window before the recent spell.
    pub(super) earlier: u64,
    pub(super) busiest_count: u64,
    pub(super) busiest_cents: i128,
}

/// The slots of one client, with running totals and the busiest spells so far.
#[derive(Debug, Clone, Default)]
pub(super) struct Slots {
    grain: Millis,
    /// Slots per spell.
    per_spell: i64,
    slots: VecDeque<Slot>,
    count: u64,
    cents: i128,
    /// How many of `slots`, from the front, are in the peaks: their spell ended before the
    /// latest slot's spell began.
    closed: usize,
    /// The spells ending at closed slots, keyed by their first slot.
    peak_count: Peaks<u64>,
    peak_cents: Peaks<i128>,
}

impl Slots {
    pub(super) fn new(spell: Millis) -> Self {
        let spell = spell.max(1);
        let grain = (spell / SPELL_SLOTS).max(1);
        Self {
            grain,
            per_spell: (spell / grain).max(1),
            ..Self::default()
        }
    }

    /// The slot of a time.
    pub(super) fn slot_of(&self, at: Millis) -> i64 {
        at.div_euclid(self.grain.max(1))
    }

    #[cfg(test)]
    /// How many slots are held (the memory bound's unit).
    pub(super) fn len(&self) -> usize {
        self.slots.len()
    }

    #[cfg(test)]
    /// How many busiest-spell candidates are held.
    pub(super) fn peaks_len(&self) -> usize {
        self.peak_count.len() + self.peak_cents.len()
    }

    /// Counts a trade. A trade in a slot before the latest one is placed where it belongs.
    pub(super) fn add(&mut self, at: Millis, cents: i64) {
        let s = self.slot_of(at);
        let cents = i128::from(cents.max(0));
        match self.slots.back().map(|b| b.index) {
            Some(last) if s < last => return self.insert_late(s, cents),
            Some(last) if s == last => {}
            _ => self.slots.push_back(Slot {
                index: s,
                count_before: self.count,
                cents_before: self.cents,
            }),
        }
        self.count += 1;
        self.cents += cents;
        self.close();
    }

    /// A trade in an earlier slot: every later slot's totals move, and the peaks are rebuilt.
    fn insert_late(&mut self, s: i64, cents: i128) {
        let i = self.slots.partition_point(|x| x.index < s);
        if self.slots.get(i).is_none_or(|x| x.index != s) {
            let (count_before, cents_before) = self.before_slot(i);
            self.slots.insert(
                i,
                Slot {
                    index: s,
                    count_before,
                    cents_before,
                },
            );
        }
        for x in self.slots.range_mut(i + 1..) {
            x.count_before += 1;
            x.cents_before += cents;
        }
        self.count += 1;
        self.cents += cents;
        self.peak_count = Peaks::default();
        self.peak_cents = Peaks::default();
        self.closed = 0;
        self.close();
    }

    /// The totals before `slots[i]` (the running totals if there is none).
    fn before_slot(&self, i: usize) -> (u64, i128) {
        self.slots.get(i).map_or((self.count, self.cents), |x| {
            (x.count_before, x.cents_before)
        })
    }

    /// The totals of the slots from index `from` (inclusive) to `to` (exclusive).
    fn sum(&self, from: i64, to: i64) -> (u64, i128) {
        if to <= from {
            return (0, 0);
        }
        let at = |s: i64| self.before_slot(self.slots.partition_point(|x| x.index < s));
        let ((c0, v0), (c1, v1)) = (at(from), at(to));
        (c1.saturating_sub(c0), v1 - v0)
    }

    /// The spell ending at slot `end` (that slot included).
    fn spell_ending(&self, end: i64) -> (u64, i128) {
        self.sum(
            end.saturating_sub(self.per_spell - 1),
            end.saturating_add(1),
        )
    }

    /// Moves into the peaks the slots whose spell ended before the latest slot's spell began.
    fn close(&mut self) {
        let Some(last) = self.slots.back().map(|b| b.index) else {
            return;
        };
        let upto = last.saturating_sub(self.per_spell);
        while let Some(x) = self.slots.get(self.closed).copied()
            && x.index <= upto
        {
            let (count, cents) = self.spell_ending(x.index);
            let first = x.index.saturating_sub(self.per_spell - 1);
            self.peak_count.push(first, count);
            self.peak_cents.push(first, cents);
            self.closed += 1;
        }
    }

    /// Forgets the slots wholly before `horizon`.
    pub(super) fn expire(&mut self, horizon: Millis) {
        let h = self.slot_of(horizon);
        while self.slots.front().is_some_and(|x| x.index < h) {
            self.slots.pop_front();
            self.closed = self.closed.saturating_sub(1);
        }
        self.peak_count.expire(h);
        self.peak_cents.expire(h);
    }

    /// The spell ending at `now`, the trades of the window before it, and the busiest spell
    /// that lies wholly within the window and ended before the recent one began.
    pub(super) fn spells(&self, now: Millis, horizon: Millis) -> Spells {
        let (s, h) = (self.slot_of(now), self.slot_of(horizon));
        let recent_from = s.saturating_sub(self.per_spell - 1);
        let (recent_count, recent_cents) = self.sum(recent_from, s.saturating_add(1));
        let (earlier, _) = self.sum(h, recent_from);
        let first_end = h.saturating_add(self.per_spell - 1);
        let mut busiest_count = self.peak_count.max_since(h).unwrap_or(0);
        let mut busiest_cents = self.peak_cents.max_since(h).unwrap_or(0);
        // Slots whose spell has ended since the latest trade: not in the peaks yet.
        for x in self
            .slots
            .range(self.closed..)
            .take_while(|x| x.index < recent_from)
            .filter(|x| x.index >= first_end)
        {
            let (count, cents) = self.spell_ending(x.index);
            busiest_count = busiest_count.max(count);
            busiest_cents = busiest_cents.max(cents);
        }
        Spells {
            recent_count,
            recent_cents,
            earlier,
            busiest_count,
            busiest_cents,
        }
    }
}
