//! One client's outflows with running aggregates, so that the outflow detectors' check costs
//! about the same with 20 outflows in the window as with 20,000 (a few hash lookups and binary
//! searches instead of a pass over the window).
//!
//! The outflows themselves are kept exactly as before (in the order recorded, forgotten once
//! out of the window of the latest record), and beside them, while they are in time order:
//! running totals of value (any span's sum in O(1)), the values as a two-halves multiset (the
//! median in O(1)), each destination and each UTC hour with the last time it was used, and the
//! outflows grouped into `velocity_window` buckets with the busiest closed ones as monotonic
//! queues. A check the aggregates cannot answer exactly (a late record out of time order, a
//! request dated before the latest record, another velocity window than the aggregates were
//! built for, a negative value or time) is answered by the plain pass over the window, so the
//! result is always the plain pass's.

use std::collections::{BTreeMap, HashMap, VecDeque};

use rust_decimal::Decimal;

use super::agg::{Halves, Peaks, median_of};
use super::{DetectorConfig, Outgoing, Rule, Signal, reason};
use crate::time::{Millis, hour_utc};

/// One client's outflows and, while they are in time order, their aggregates.
#[derive(Debug, Clone, Default)]
pub(super) struct ClientFlows {
    pub(super) kept: VecDeque<Outgoing>,
    /// Adjacent pairs of `kept` out of time order (a late record); 0 when it is sorted.
    inversions: usize,
    /// `None` while `kept` is out of time order.
    agg: Option<Agg>,
}

impl ClientFlows {
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.kept.len()
    }

    /// Remembers an outflow, forgetting what fell out of `window` before it (as before: from
    /// the front, in the order recorded).
    pub(super) fn record(&mut self, o: Outgoing, window: Millis, spell: Millis) {
        let horizon = o.at.saturating_sub(window);
        while self.kept.front().is_some_and(|f| f.at < horizon) {
            let Some(gone) = self.kept.pop_front() else {
                break;
            };
            if self.kept.front().is_some_and(|f| gone.at > f.at) {
                self.inversions = self.inversions.saturating_sub(1);
            }
            if let Some(a) = &mut self.agg {
                a.pop(&gone);
            }
        }
        if let Some(a) = &mut self.agg {
            a.expire();
        }
        if self.kept.back().is_some_and(|b| b.at > o.at) {
            self.inversions += 1;
            self.agg = None;
        } else if let Some(a) = &mut self.agg
            && a.spell == spell
        {
            a.push(&o);
        } else {
            self.agg = None;
        }
        self.kept.push_back(o);
        if self.inversions == 0 && self.agg.is_none() {
            let mut a = Agg::new(spell);
            for k in &self.kept {
                a.push(k);
            }
            self.agg = Some(a);
        }
    }

    /// The aggregates, if they answer a check of `o` with this config exactly.
    fn fast(&self, cfg: &DetectorConfig, o: &Outgoing) -> Option<&Agg> {
        let a = self.agg.as_ref()?;
        let usable = a.spell == cfg.velocity_window.max(1)
            && a.negatives == 0
            && o.usd_cents >= 0
            && self.kept.front().is_none_or(|f| f.at >= 0)
            && self.kept.back().is_none_or(|b| b.at <= o.at);
        usable.then_some(a)
    }

    /// What the detectors say of `o`, from the aggregates; `None` if they cannot say exactly
    /// (then the caller takes the plain pass).
    pub(super) fn examine(&self, cfg: &DetectorConfig, o: &Outgoing) -> Option<Vec<Signal>> {
        let a = self.fast(cfg, o)?;
        let v = View::new(self, a, o.at.saturating_sub(cfg.window));
        let mut out = vec![];
        let mut raise = |rule: &Rule, detector: &'static str, find: &dyn Fn() -> Option<String>| {
            if rule.enabled
                && let Some(r) = find()
            {
                out.push(Signal {
                    detector: std::borrow::Cow::Borrowed(detector),
                    score: rule.score,
                    response: rule.response,
                    reason: r,
                });
            }
        };
        raise(&cfg.new_destination, "new_destination", &|| {
            (!v.seen_destination(o)).then(|| reason::new_destination(cfg, o))
        });
        if v.live() >= cfg.min_samples {
            raise(&cfg.size_jump, "size_jump", &|| v.size_jump(cfg, o));
            raise(&cfg.off_hours, "off_hours", &|| {
                (!v.near_hour(o.at)).then(|| reason::off_hours(o, v.live()))
            });
        }
        raise(&cfg.velocity, "velocity", &|| v.velocity(cfg, o));
        raise(&cfg.test_then_drain, "test_then_drain", &|| {
            v.test_then_drain(cfg, o)
        });
        Some(out)
    }
}

/// When something was last seen, and how many of the kept outflows it was seen in.
#[derive(Debug, Clone, Copy, Default)]
struct Seen {
    count: usize,
    last: Millis,
}

/// The outflows of one `velocity_window` bucket (`at / velocity_window`).
#[derive(Debug, Clone, Copy)]
struct Bucket {
    key: i64,
    count: usize,
    cents: i128,
}

/// Aggregates over a time-ordered `kept`, element for element.
#[derive(Debug, Clone)]
struct Agg {
    /// The velocity window the buckets are cut by.
    spell: Millis,
    /// The running total of value before each kept outflow, and after the last.
    totals: VecDeque<i128>,
    total: i128,
    negatives: usize,
    sizes: Halves,
    /// destination → venue → seen.
    dests: HashMap<String, HashMap<String, Seen>>,
    hours: [Seen; 24],
    buckets: VecDeque<Bucket>,
    /// How many of `buckets`, from the front, are in the peaks: no later outflow can join them.
    closed: usize,
    peak_count: Peaks<usize>,
    peak_cents: Peaks<i128>,
}

impl Agg {
    fn new(spell: Millis) -> Self {
        Self {
            spell,
            totals: VecDeque::new(),
            total: 0,
            negatives: 0,
            sizes: Halves::default(),
            dests: HashMap::new(),
            hours: [Seen::default(); 24],
            buckets: VecDeque::new(),
            closed: 0,
            peak_count: Peaks::default(),
            peak_cents: Peaks::default(),
        }
    }

    /// Adds an outflow no older than the latest.
    fn push(&mut self, o: &Outgoing) {
        self.totals.push_back(self.total);
        self.total += i128::from(o.usd_cents);
        self.negatives += usize::from(o.usd_cents < 0);
        self.sizes.insert(o.usd_cents);
        let seen = match self.dests.get_mut(o.destination.as_str()) {
            Some(by_venue) => by_venue,
            None => self.dests.entry(o.destination.clone()).or_default(),
        };
        let seen = match seen.get_mut(o.venue.as_str()) {
            Some(s) => s,
            None => seen.entry(o.venue.clone()).or_default(),
        };
        seen.count += 1;
        seen.last = o.at;
        let h = &mut self.hours[hour_slot(o.at)];
        h.count += 1;
        h.last = o.at;
        let key = o.at / self.spell;
        match self.buckets.back_mut() {
            Some(b) if b.key == key => {
                b.count += 1;
                b.cents += i128::from(o.usd_cents);
            }
            _ => self.buckets.push_back(Bucket {
                key,
                count: 1,
                cents: i128::from(o.usd_cents),
            }),
        }
        // A bucket before the one `spell` before this outflow is complete: every later outflow
        // falls at or after this one.
        let complete_below = o.at.saturating_sub(self.spell) / self.spell;
        while let Some(b) = self.buckets.get(self.closed)
            && b.key < complete_below
        {
            self.peak_count.push(b.key, b.count);
            self.peak_cents.push(b.key, b.cents);
            self.closed += 1;
        }
    }

    /// Takes out the oldest outflow.
    fn pop(&mut self, o: &Outgoing) {
        self.totals.pop_front();
        self.negatives = self.negatives.saturating_sub(usize::from(o.usd_cents < 0));
        self.sizes.remove(o.usd_cents);
        if let Some(by_venue) = self.dests.get_mut(o.destination.as_str()) {
            if let Some(s) = by_venue.get_mut(o.venue.as_str()) {
                s.count = s.count.saturating_sub(1);
                if s.count == 0 {
                    by_venue.remove(o.venue.as_str());
                }
            }
            if by_venue.is_empty() {
                self.dests.remove(o.destination.as_str());
            }
        }
        let h = &mut self.hours[hour_slot(o.at)];
        h.count = h.count.saturating_sub(1);
        if let Some(b) = self.buckets.front_mut() {
            b.count = b.count.saturating_sub(1);
            b.cents -= i128::from(o.usd_cents);
            if b.count == 0 {
                self.buckets.pop_front();
                self.closed = self.closed.saturating_sub(1);
            }
        }
    }

    /// Forgets the peaks of buckets before the oldest kept one.
    fn expire(&mut self) {
        let from = self.buckets.front().map_or(i64::MAX, |b| b.key);
        self.peak_count.expire(from);
        self.peak_cents.expire(from);
    }
}

fn hour_slot(at: Millis) -> usize {
    usize::try_from(hour_utc(at)).unwrap_or(0) % 24
}

/// The aggregates seen from one check: the outflows from `stale` on are in the window.
struct View<'a> {
    kept: &'a VecDeque<Outgoing>,
    agg: &'a Agg,
    horizon: Millis,
    stale: usize,
}

impl<'a> View<'a> {
    fn new(c: &'a ClientFlows, agg: &'a Agg, horizon: Millis) -> Self {
        let stale = c.kept.partition_point(|k| k.at < horizon);
        Self {
            kept: &c.kept,
            agg,
            horizon,
            stale,
        }
    }

    /// How many outflows are in the window.
    fn live(&self) -> usize {
        self.kept.len() - self.stale
    }

    /// The value of `kept[from..to]`.
    fn sum(&self, from: usize, to: usize) -> i128 {
        let before = |i: usize| self.agg.totals.get(i).copied().unwrap_or(self.agg.total);
        before(to) - before(from)
    }

    fn seen_destination(&self, o: &Outgoing) -> bool {
        self.agg
            .dests
            .get(o.destination.as_str())
            .and_then(|m| m.get(o.venue.as_str()))
            .is_some_and(|s| s.count > 0 && s.last >= self.horizon)
    }

    /// Whether the client moved value in the window within two hours of `at`'s UTC hour.
    fn near_hour(&self, at: Millis) -> bool {
        let hour = hour_utc(at);
        (0..24i64).zip(self.agg.hours.iter()).any(|(h, s)| {
            let near = (h - hour).rem_euclid(24) <= 2 || (hour - h).rem_euclid(24) <= 2;
            near && s.count > 0 && s.last >= self.horizon
        })
    }

    /// The median value in the window (0 with none, as the plain pass takes it).
    fn median(&self) -> i64 {
        let live = self.live();
        if live == 0 {
            return 0;
        }
        if self.stale == 0 {
            return self.agg.sizes.median().unwrap_or(0);
        }
        if live <= self.stale {
            return median_of(self.kept.range(self.stale..).map(|k| k.usd_cents).collect());
        }
        let mut removed: BTreeMap<i64, usize> = BTreeMap::new();
        for k in self.kept.range(..self.stale) {
            *removed.entry(k.usd_cents).or_default() += 1;
        }
        let rank = |r: usize| self.agg.sizes.nth_without(r, &removed).unwrap_or(0);
        let hi = rank(live / 2);
        if live % 2 == 1 {
            return hi;
        }
        (rank(live / 2 - 1) / 2).saturating_add(hi / 2)
    }

    /// As the plain `size_jump`; the median absolute deviation (a pass over the window) only
    /// for a value already far above the median.
    fn size_jump(&self, cfg: &DetectorConfig, o: &Outgoing) -> Option<String> {
        let m = self.median();
        let v = Decimal::from(o.usd_cents);
        let times = Decimal::from(m)
            .checked_mul(cfg.size_factor)
            .unwrap_or(Decimal::MAX);
        if v <= times {
            return None;
        }
        let mad = median_of(
            self.kept
                .range(self.stale..)
                .map(|k| k.usd_cents.saturating_sub(m).saturating_abs())
                .collect(),
        );
        let spread = Decimal::from(mad)
            .checked_mul(cfg.size_mads)
            .and_then(|x| x.checked_add(Decimal::from(m)))
            .unwrap_or(Decimal::MAX);
        (v > spread).then(|| reason::size_jump(o, m, self.live()))
    }

    /// As the plain `velocity`: the spell ending at `o` against the busiest bucket before it.
    fn velocity(&self, cfg: &DetectorConfig, o: &Outgoing) -> Option<String> {
        let vw = self.agg.spell;
        let recent_from = o.at.saturating_sub(vw);
        let from = self
            .kept
            .partition_point(|k| k.at <= recent_from)
            .max(self.stale);
        let count = self.kept.len() - from + 1;
        let value = clamp(self.sum(from, self.kept.len()) + i128::from(o.usd_cents));
        let (busiest_count, busiest_cents) = self.busiest(from);
        let busiest_value = clamp(busiest_cents);
        let baseline = self.live() >= cfg.min_samples;
        let factor = cfg.velocity_factor.max(1);
        let burst_count = count >= cfg.velocity_min_count
            && count as i64 > factor.saturating_mul(busiest_count.max(1) as i64);
        let burst_value =
            baseline && count >= 2 && value > factor.saturating_mul(busiest_value.max(1));
        (burst_count || burst_value)
            .then(|| reason::velocity(vw, count, value, busiest_count, busiest_value))
    }

    /// The busiest bucket (by count, and by value) of `kept[stale..earlier]`.
    fn busiest(&self, earlier: usize) -> (usize, i128) {
        if earlier <= self.stale {
            return (0, 0);
        }
        let vw = self.agg.spell;
        let mut best = (0usize, 0i128);
        let consider = |best: &mut (usize, i128), from: usize, to: usize| {
            if to > from {
                best.0 = best.0.max(to - from);
                best.1 = best.1.max(self.sum(from, to));
            }
        };
        // The oldest bucket in the window may have lost outflows to the window's edge.
        let low = self.kept[self.stale].at / vw;
        let low_end = self.kept.partition_point(|k| k.at / vw <= low).min(earlier);
        consider(&mut best, self.stale, low_end);
        // Closed buckets after it are whole, and wholly before the recent spell.
        if let Some(n) = self.agg.peak_count.max_since(low.saturating_add(1)) {
            best.0 = best.0.max(n);
        }
        if let Some(c) = self.agg.peak_cents.max_since(low.saturating_add(1)) {
            best.1 = best.1.max(c);
        }
        // The open ones (at most the last two or three) may reach into the recent spell.
        for b in self.agg.buckets.range(self.agg.closed..) {
            if b.key <= low {
                continue;
            }
            let start = self.kept.partition_point(|k| k.at / vw < b.key);
            if start >= earlier {
                break;
            }
            consider(&mut best, start, (start + b.count).min(earlier));
        }
        best
    }

    /// As the plain `test_then_drain`: the latest small outflow to the same address within
    /// `drain_within` (a pass over those minutes only, and only for a large outflow).
    fn test_then_drain(&self, cfg: &DetectorConfig, o: &Outgoing) -> Option<String> {
        if o.usd_cents < cfg.drain_min_usd_cents {
            return None;
        }
        let since = o.at.saturating_sub(cfg.drain_within);
        let test = self
            .kept
            .range(self.stale..)
            .rev()
            .take_while(|p| p.at >= since)
            .find(|p| {
                p.destination == o.destination
                    && p.usd_cents <= cfg.test_max_usd_cents
                    && o.usd_cents >= p.usd_cents.max(1).saturating_mul(cfg.drain_ratio)
            })?;
        Some(reason::test_then_drain(o, test))
    }
}

fn clamp(v: i128) -> i64 {
    i64::try_from(v).unwrap_or(if v < 0 { i64::MIN } else { i64::MAX })
}

#[cfg(test)]
mod tests {
    use super::super::{DetectorConfig, History, Outgoing, examine, examine_plain};
    use crate::time::{DAY, HOUR, MINUTE, Millis};
    use proptest::prelude::*;

    const T0: Millis = 1_700_000_000_000 - 1_700_000_000_000 % DAY;
    const DESTS: [&str; 3] = ["0xc01d", "0xbeef", "0xnew"];

    /// A short window and spell, with low thresholds, so that random outflows overlap, expire,
    /// burst, jump and drain.
    fn small_cfg() -> DetectorConfig {
        DetectorConfig {
            window: 3 * HOUR,
            velocity_window: 10 * MINUTE,
            min_samples: 3,
            velocity_min_count: 3,
            drain_within: 30 * MINUTE,
            test_max_usd_cents: 500,
            drain_ratio: 10,
            drain_min_usd_cents: 2_000,
            ..DetectorConfig::default()
        }
    }

    fn out(at: Millis, client: &str, venue: &str, dest: &str, usd_cents: i64) -> Outgoing {
        Outgoing {
            at,
            client: client.into(),
            venue: venue.into(),
            asset: "USDT".into(),
            destination: dest.into(),
            usd_cents,
        }
    }

    /// (minutes after the previous one, or before it when `late`; client; venue; destination;
    /// value).
    type Step = (i64, bool, usize, usize, usize, i64);

    fn steps(max: usize) -> impl Strategy<Value = Vec<Step>> {
        prop::collection::vec(
            (
                0i64..40,
                prop::bool::weighted(0.05),
                0usize..2,
                0usize..2,
                0usize..3,
                prop_oneof![0i64..600, 0i64..100_000],
            ),
            0..max,
        )
    }

    fn outflow(at: Millis, s: &Step) -> Outgoing {
        let (_, _, client, venue, dest, usd) = *s;
        out(
            at,
            ["a", "b"][client],
            ["binance", "okx"][venue],
            DESTS[dest],
            usd,
        )
    }

    proptest! {
        /// Over random histories (mostly in time order, some records late), the aggregates say
        /// exactly what the plain pass over the window says, reasons included.
        #[test]
        fn incremental_matches_a_plain_recomputation(
            history in steps(200),
            probes in prop::collection::vec((0i64..300, 0usize..2, 0usize..2, 0usize..3, 0i64..200_000), 1..8),
        ) {
            let cfg = small_cfg();
            let mut h = History::for_config(&cfg);
            let mut at = T0;
            let mut fast = 0usize;
            let mut checked = 0usize;
            for (i, s) in history.iter().enumerate() {
                let when = if s.1 { at.saturating_sub(s.0 * MINUTE) } else { at + s.0 * MINUTE };
                at = at.max(when);
                h.record(outflow(when, s), cfg.window);
                if i % 7 != 0 {
                    continue;
                }
                for (ahead, client, venue, dest, usd) in &probes {
                    let o = outflow(at + ahead * MINUTE - 60 * MINUTE, &(0, false, *client, *venue, *dest, *usd));
                    let got = examine(&cfg, &h, &o);
                    prop_assert_eq!(&got, &examine_plain(&cfg, &h, &o), "at {} probing {:?}", i, o);
                    // Dated at or after every record, in a history without late records: the
                    // aggregates answer, not the fallback.
                    if *ahead >= 60 && h.by_client.contains_key(o.client.as_str()) {
                        checked += 1;
                        if h.by_client[o.client.as_str()].examine(&cfg, &o).is_some() {
                            fast += 1;
                        }
                    }
                }
            }
            if history.iter().all(|s| !s.1) {
                prop_assert_eq!(fast, checked);
            }
        }

        /// The default config, a long history and probes after it.
        #[test]
        fn incremental_matches_plain_with_the_defaults(
            history in steps(300),
            probe in (0i64..600, 0usize..2, 0usize..3, 0i64..5_000_000),
        ) {
            let cfg = DetectorConfig::default();
            let mut h = History::for_config(&cfg);
            let mut at = T0;
            for s in &history {
                at += s.0 * 97 * MINUTE;
                h.record(outflow(at, &(0, false, 0, s.3, s.4, s.5 * 100)), cfg.window);
            }
            let (ahead, venue, dest, usd) = probe;
            let o = outflow(at + ahead * MINUTE, &(0, false, 0, venue, dest, usd));
            prop_assert_eq!(examine(&cfg, &h, &o), examine_plain(&cfg, &h, &o));
        }
    }

    #[test]
    fn a_late_record_falls_back_and_the_aggregates_return_once_it_is_forgotten() {
        let cfg = small_cfg();
        let mut h = History::for_config(&cfg);
        h.record(
            out(T0 + 10 * MINUTE, "a", "binance", DESTS[0], 100),
            cfg.window,
        );
        h.record(out(T0, "a", "binance", DESTS[0], 100), cfg.window);
        let probe = out(T0 + 20 * MINUTE, "a", "binance", DESTS[0], 100);
        assert!(h.by_client["a"].examine(&cfg, &probe).is_none());
        // Past the window of both: they are forgotten, and the aggregates are rebuilt.
        h.record(
            out(T0 + 4 * HOUR, "a", "binance", DESTS[0], 100),
            cfg.window,
        );
        let probe = out(T0 + 4 * HOUR + MINUTE, "a", "binance", DESTS[1], 100);
        let fast = h.by_client["a"].examine(&cfg, &probe);
        assert_eq!(fast, Some(examine_plain(&cfg, &h, &probe)));
        assert_eq!(
            fast.unwrap()
                .iter()
                .map(|s| s.detector.as_ref())
                .collect::<Vec<_>>(),
            vec!["new_destination"]
        );
    }
}
