//! A client's trades counted in fixed time slots, for `trade_velocity`: how many trades and how
//! much notional in the spell ending now, in the window before it, and in the busiest earlier
//! spell. Memory is one entry per slot that saw a trade (at most `window / grain + 2`), and as
//! many busiest-spell candidates at most, however many trades each slot holds; the trades
//! themselves are not kept.
//!
//! The approximation (docs/detection.md#trade-detectors) only ever makes the detector more
//! suspicious than the exact count over trades. A slot is `grain = velocity_window / 20` (30 s
//! by default). The spell ending now is counted over the whole slots that touch it, so it holds
//! every trade of the exact spell and up to one slot more. A busiest earlier spell is a run of
//! `velocity_window / grain` whole slots ending at a slot that saw a trade, lying within an
//! exact spell that ends at that trade, wholly in the window and before the recent spell: so it
//! counts at most what the exact busiest spell counts, and a burst split across two slots may
//! be seen up to one slot smaller. The trades before the spell (the baseline) are counted over
//! the slots that touch the window before it: at least the exact count.

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
    spell: Millis,
    grain: Millis,
    /// Slots in a busiest-spell candidate: `spell / grain`, so that they span at most `spell`.
    per_spell: i64,
    slots: VecDeque<Slot>,
    count: u64,
    cents: i128,
    /// The latest trade counted.
    latest: Option<Millis>,
    /// How many of `slots`, from the front, are in the peaks: they end before the spell
    /// ending at the latest trade begins, so no trade at or after the latest reaches them.
    closed: usize,
    /// The spells ending at closed slots, keyed by their last slot.
    peak_count: Peaks<u64>,
    peak_cents: Peaks<i128>,
}

impl Slots {
    pub(super) fn new(spell: Millis) -> Self {
        let spell = spell.max(1);
        let grain = (spell / SPELL_SLOTS).max(1);
        Self {
            spell,
            grain,
            per_spell: (spell / grain).max(1),
            ..Self::default()
        }
    }

    fn grain(&self) -> Millis {
        self.grain.max(1)
    }

    /// The slot of a time.
    pub(super) fn slot_of(&self, at: Millis) -> i64 {
        at.div_euclid(self.grain())
    }

    /// The slot holding the first millisecond of the spell `(now - spell, now]`.
    fn recent_from(&self, now: Millis) -> i64 {
        self.slot_of(now.saturating_sub(self.spell).saturating_add(1))
    }

    /// The first slot that may end a busiest spell: it starts at or after `horizon + spell`, so
    /// that the exact spell ending at any of its trades lies wholly in the window.
    fn first_end(&self, horizon: Millis) -> i64 {
        let a = horizon.saturating_add(self.spell);
        let q = a.div_euclid(self.grain());
        if a.rem_euclid(self.grain()) == 0 {
            q
        } else {
            q.saturating_add(1)
        }
    }

    /// Whether a trade at `at` still counts when the window starts at `horizon`: its slot is
    /// still held (the slot holding the horizon stays).
    pub(super) fn covers(&self, at: Millis, horizon: Millis) -> bool {
        self.slot_of(at) >= self.slot_of(horizon)
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

    #[cfg(test)]
    /// The slot length.
    pub(super) fn grain_len(&self) -> Millis {
        self.grain()
    }

    /// Counts a trade. A trade in a slot before the latest one is placed where it belongs.
    pub(super) fn add(&mut self, at: Millis, cents: i64) {
        let s = self.slot_of(at);
        let cents = i128::from(cents.max(0));
        self.latest = Some(self.latest.map_or(at, |l| l.max(at)));
        match self.slots.back().map(|b| b.index) {
            Some(last) if s < last => return self.insert_late(s, cents),
            Some(last) if s == last => {}
            _ => self.slots.push_back(Slot {
                index: s,
                count_before: self.count,
                cents_before: self.cents,
            }),
        }
        self.count = self.count.saturating_add(1);
        self.cents = self.cents.saturating_add(cents);
        self.close();
    }

    /// A trade in an earlier slot: every later slot's totals move, and the peaks from that slot
    /// on are pushed again.
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
            x.count_before = x.count_before.saturating_add(1);
            x.cents_before = x.cents_before.saturating_add(cents);
        }
        self.count = self.count.saturating_add(1);
        self.cents = self.cents.saturating_add(cents);
        // The spells holding slot `s` end at `s` or later and only grow; those ending before
        // are unchanged: the closed spells from `s` on are pushed again (as many as the slots
        // the trade is late by), the peaks before them stay as they are.
        if i < self.closed {
            self.peak_count.truncate_from(s);
            self.peak_cents.truncate_from(s);
            self.closed = i;
        }
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
        (c1.saturating_sub(c0), v1.saturating_sub(v0))
    }

    /// The spell of `per_spell` slots ending at slot `end` (that slot included).
    fn spell_ending(&self, end: i64) -> (u64, i128) {
        self.sum(
            end.saturating_sub(self.per_spell - 1),
            end.saturating_add(1),
        )
    }

    /// Moves into the peaks the slots that end before the spell ending at the latest trade.
    fn close(&mut self) {
        let Some(latest) = self.latest else {
            return;
        };
        let before = self.recent_from(latest);
        while let Some(x) = self.slots.get(self.closed).copied()
            && x.index < before
        {
            let (count, cents) = self.spell_ending(x.index);
            self.peak_count.push(x.index, count);
            self.peak_cents.push(x.index, cents);
            self.closed += 1;
        }
    }

    /// Forgets the slots wholly before `horizon`, and the spells that cannot be busiest any
    /// more.
    pub(super) fn expire(&mut self, horizon: Millis) {
        let h = self.slot_of(horizon);
        while self.slots.front().is_some_and(|x| x.index < h) {
            self.slots.pop_front();
            self.closed = self.closed.saturating_sub(1);
        }
        let first_end = self.first_end(horizon);
        self.peak_count.expire(first_end);
        self.peak_cents.expire(first_end);
    }

    /// The spell ending at `now` (no earlier than the latest trade), the trades of the window
    /// before it, and the busiest spell that lies wholly within the window and ended before the
    /// recent one began.
    pub(super) fn spells(&self, now: Millis, horizon: Millis) -> Spells {
        let now = self.latest.map_or(now, |l| l.max(now));
        let recent_from = self.recent_from(now);
        let (recent_count, recent_cents) =
            self.sum(recent_from, self.slot_of(now).saturating_add(1));
        let earlier_to = self
            .slot_of(now.saturating_sub(self.spell))
            .saturating_add(1);
        let (earlier, _) = self.sum(self.slot_of(horizon), earlier_to);
        let first_end = self.first_end(horizon);
        let mut busiest_count = self.peak_count.max_since(first_end).unwrap_or(0);
        let mut busiest_cents = self.peak_cents.max_since(first_end).unwrap_or(0);
        // Slots that have ended before the recent spell since the latest trade: not in the
        // peaks yet.
        for x in self
            .slots
            .range(self.closed.min(self.slots.len())..)
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
