//! Anomaly detectors over trades: the value a leaked trade-only key moves.
//!
//! A key that may only trade still empties an account: the thief buys an illiquid coin from
//! their own asks far above the market (the 3Commas API-key leak, 2022), or wakes a key that
//! has not traded for weeks and trades large (the Binance API-key incident, March 2018). Each
//! detector here compares one order with the client's own allowed trades of the last `window`
//! ([`TradeHistory`], rebuilt from the audit log like the outflows' history) and may raise a
//! [`Signal`], which the decider treats exactly as an outflow detector's. Pure: time is an
//! argument.
//!
//! - `new_instrument`: the first trade of this instrument on this venue in the window.
//! - `trade_size_jump`: notional far above the client's own median (median and MAD).
//! - `trade_velocity`: count or notional in a short spell far above the client's busiest
//!   earlier spell of that length.
//! - `off_market`: a limit buy priced far above the reference price, or a sell far below it.
//! - `dormant_wake`: a large order from a client keygate has watched for a whole window without
//!   a trade.
//!
//! The history is incremental, so that a check costs about the same with 20 trades in the
//! window as with 20,000: each client keeps its instruments (with the last time each was
//! traded), its notionals as a two-halves multiset (the median in O(1)), running totals of
//! notional (any spell's sum in O(log n)), and the busiest spells so far as monotonic queues.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;

use rust_decimal::Decimal;

use super::agg::{Halves, Peaks, median_of};
use super::{Response, Rule, Signal, usd};
use crate::order::Side;
use crate::time::{DAY, MINUTE, Millis, format_duration, format_millis};

/// The trade detectors' settings. See docs/detection.md#trade-detectors.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TradeDetectorConfig {
    /// How far back a client's trade history goes (14 days).
    pub window: Millis,
    /// Fewer trades in the window than this (20), and there is no baseline to compare with:
    /// no `trade_size_jump`, and `trade_velocity` by notional needs this many before the spell.
    pub min_samples: usize,
    /// The first trade of an instrument on a venue in the window: score 20, `alert`.
    pub new_instrument: Rule,
    /// Score 50, `hold`.
    pub trade_size_jump: Rule,
    /// A notional is a jump when it is more than `size_factor` (10) times the client's median
    /// and more than the median plus `size_mads` (10) median absolute deviations.
    pub size_factor: Decimal,
    pub size_mads: Decimal,
    /// Score 40, `hold`.
    pub trade_velocity: Rule,
    /// The spell (10 minutes).
    pub velocity_window: Millis,
    /// A burst is more than `velocity_factor` (3) times the count (or notional) of the client's
    /// busiest earlier spell, and at least `velocity_min_count` (30) trades.
    pub velocity_factor: i64,
    pub velocity_min_count: usize,
    /// An order priced more than `off_market_bps` (500) from the reference against the client:
    /// score 90, `deny`.
    pub off_market: Rule,
    pub off_market_bps: i64,
    /// At `off_market_far_bps` (2,000) or more the signal asks for `off_market_far_response`
    /// (`freeze-client`) instead, when that is stronger than the rule's response.
    pub off_market_far_bps: i64,
    pub off_market_far_response: Response,
    /// A client keygate has watched for at least `window` with no trade in it, placing an
    /// order of at least `dormant_min_usd_cents` (USD 10,000): score 60, `hold`.
    pub dormant_wake: Rule,
    pub dormant_min_usd_cents: i64,
}

impl TradeDetectorConfig {
    /// Whether any trade detector runs (if none does, no trade is examined or remembered).
    pub fn any_enabled(&self) -> bool {
        self.rules().iter().any(|r| r.enabled)
    }

    fn rules(&self) -> [&Rule; 5] {
        [
            &self.new_instrument,
            &self.trade_size_jump,
            &self.trade_velocity,
            &self.off_market,
            &self.dormant_wake,
        ]
    }

    /// Every trade detector off.
    pub fn off() -> Self {
        let mut c = Self::default();
        for r in [
            &mut c.new_instrument,
            &mut c.trade_size_jump,
            &mut c.trade_velocity,
            &mut c.off_market,
            &mut c.dormant_wake,
        ] {
            r.enabled = false;
        }
        c
    }
}

impl Default for TradeDetectorConfig {
    fn default() -> Self {
        let rule = |score, response| Rule {
            enabled: true,
            score,
            response,
        };
        Self {
            window: 14 * DAY,
            min_samples: 20,
            new_instrument: rule(20, Response::Alert),
            trade_size_jump: rule(50, Response::Hold),
            size_factor: Decimal::from(10),
            size_mads: Decimal::from(10),
            trade_velocity: rule(40, Response::Hold),
            velocity_window: 10 * MINUTE,
            velocity_factor: 3,
            velocity_min_count: 30,
            off_market: rule(90, Response::Deny),
            off_market_bps: 500,
            off_market_far_bps: 2_000,
            off_market_far_response: Response::FreezeClient,
            dormant_wake: rule(60, Response::Hold),
            dormant_min_usd_cents: 1_000_000,
        }
    }
}

/// A trade, as detectors see it (the one being decided) and remember it (once allowed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TradeDone {
    pub at: Millis,
    pub client: String,
    pub venue: String,
    /// `BASE/QUOTE` ([`crate::order::Order::instrument`]).
    pub instrument: String,
    pub side: Side,
    /// The order's notional in USD cents.
    pub usd_cents: i64,
    /// How far its limit price is from the reference against the client
    /// ([`crate::order::Order::deviation_bps`]): positive is worse than the market, negative a
    /// resting order better than it, 0 a market order.
    pub deviation_bps: i64,
}

/// The clients' recent allowed trades, with running aggregates per client.
///
/// Record trades in time order as they are allowed (a late one, from another instance, is
/// placed where it belongs and the client's aggregates rebuilt: the result does not depend on
/// the order of recording). Pass the same config to every `record`.
///
/// Whether a client without trades is dormant or merely new to keygate depends on how long
/// keygate has watched it: [`TradeHistory::complete_since`] says from when the history holds
/// every allowed trade (the audit log's first entry), [`TradeHistory::watch`] from when a
/// client exists (its creation). Neither known (an empty history): no client is dormant.
#[derive(Debug, Clone, Default)]
pub struct TradeHistory {
    by_client: HashMap<String, ClientTrades>,
    complete_since: Option<Millis>,
}

impl TradeHistory {
    /// The history holds every allowed trade from `since` on (the time of the audit log's first
    /// entry: keygate was not deciding before).
    pub fn complete_since(&mut self, since: Millis) {
        self.complete_since = Some(since);
    }

    /// `client` exists since `since` (its creation): before that it could not trade.
    pub fn watch(&mut self, client: &str, since: Millis) {
        self.by_client
            .entry(client.to_string())
            .or_default()
            .watched_since = Some(since);
    }

    /// Remembers an allowed trade, forgetting what fell out of `cfg.window`.
    pub fn record(&mut self, t: TradeDone, cfg: &TradeDetectorConfig) {
        let spell = cfg.velocity_window.max(1);
        if let Some(c) = self.by_client.get_mut(&t.client) {
            c.add(&t, cfg.window, spell);
        } else {
            let mut c = ClientTrades::default();
            c.add(&t, cfg.window, spell);
            self.by_client.insert(t.client, c);
        }
    }

    /// How many trades of `client` the history holds.
    pub fn len_of(&self, client: &str) -> usize {
        self.by_client.get(client).map_or(0, |c| c.kept.len())
    }

    /// From when keygate has seen every allowed trade of this client, if it knows.
    fn watched_from(&self, c: Option<&ClientTrades>) -> Option<Millis> {
        match (self.complete_since, c.and_then(|c| c.watched_since)) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        }
    }
}

/// One remembered trade.
#[derive(Debug, Clone)]
struct Kept {
    at: Millis,
    venue: Arc<str>,
    instrument: Arc<str>,
    usd_cents: i64,
    /// The client's running total of notional before this trade.
    total_before: i128,
    /// The spell of `velocity_window` ending at this trade (this one included).
    spell_count: usize,
    spell_cents: i128,
}

/// How often an instrument was traded in the history, and when last.
#[derive(Debug, Clone, Copy)]
struct Seen {
    count: usize,
    last: Millis,
}

/// One client's trades and their aggregates.
#[derive(Debug, Clone, Default)]
struct ClientTrades {
    watched_since: Option<Millis>,
    kept: VecDeque<Kept>,
    /// How many of `kept`, from the front, are in the peaks: their spell ended before the
    /// latest trade's spell began.
    closed: usize,
    peak_count: Peaks<usize>,
    peak_cents: Peaks<i128>,
    /// venue → instrument → seen.
    markets: HashMap<Arc<str>, HashMap<Arc<str>, Seen>>,
    sizes: Halves,
    total: i128,
}

impl ClientTrades {
    /// Remembers a trade: appended when it is no older than the latest, else placed where it
    /// belongs (unless the window has already passed it).
    fn add(&mut self, t: &TradeDone, window: Millis, spell: Millis) {
        match self.kept.back().map(|k| k.at) {
            Some(latest) if t.at < latest => {
                if t.at >= latest.saturating_sub(window) {
                    self.rebuild_with(t, window, spell);
                }
            }
            _ => self.push(&t.venue, &t.instrument, t.at, t.usd_cents, window, spell),
        }
    }

    /// Appends a trade no older than the latest one.
    fn push(
        &mut self,
        venue: &str,
        instrument: &str,
        at: Millis,
        usd_cents: i64,
        window: Millis,
        spell: Millis,
    ) {
        let usd_cents = usd_cents.max(0);
        self.expire(at.saturating_sub(window));
        let spell_from = at.saturating_sub(spell);
        self.close(spell_from);
        let from = self.kept.partition_point(|k| k.at <= spell_from);
        let spell_count = self.kept.len() - from + 1;
        let spell_cents = self.sum(from, self.kept.len()) + i128::from(usd_cents);
        let (venue, instrument) = self.intern(venue, instrument, at);
        self.sizes.insert(usd_cents);
        self.kept.push_back(Kept {
            at,
            venue,
            instrument,
            usd_cents,
            total_before: self.total,
            spell_count,
            spell_cents,
        });
        self.total += i128::from(usd_cents);
    }

    /// Places a late trade where it belongs and rebuilds the aggregates from scratch.
    fn rebuild_with(&mut self, t: &TradeDone, window: Millis, spell: Millis) {
        let mut all: Vec<(Millis, Arc<str>, Arc<str>, i64)> = self
            .kept
            .drain(..)
            .map(|k| (k.at, k.venue, k.instrument, k.usd_cents))
            .collect();
        all.push((
            t.at,
            Arc::from(t.venue.as_str()),
            Arc::from(t.instrument.as_str()),
            t.usd_cents,
        ));
        // Stable: trades at the same time keep the order they were recorded in.
        all.sort_by_key(|k| k.0);
        let mut fresh = ClientTrades {
            watched_since: self.watched_since,
            ..ClientTrades::default()
        };
        for (at, venue, instrument, usd_cents) in all {
            fresh.push(&venue, &instrument, at, usd_cents, window, spell);
        }
        *self = fresh;
    }

    fn intern(&mut self, venue: &str, instrument: &str, at: Millis) -> (Arc<str>, Arc<str>) {
        let v: Arc<str> = match self.markets.get_key_value(venue) {
            Some((k, _)) => k.clone(),
            None => Arc::from(venue),
        };
        let inner = self.markets.entry(v.clone()).or_default();
        let i: Arc<str> = match inner.get_key_value(instrument) {
            Some((k, _)) => k.clone(),
            None => Arc::from(instrument),
        };
        let seen = inner
            .entry(i.clone())
            .or_insert(Seen { count: 0, last: at });
        seen.count += 1;
        seen.last = seen.last.max(at);
        (v, i)
    }

    /// Forgets the trades before `horizon`.
    fn expire(&mut self, horizon: Millis) {
        while self.kept.front().is_some_and(|k| k.at < horizon) {
            let Some(k) = self.kept.pop_front() else {
                break;
            };
            self.sizes.remove(k.usd_cents);
            if let Some(inner) = self.markets.get_mut(&k.venue) {
                if let Some(s) = inner.get_mut(&k.instrument) {
                    s.count = s.count.saturating_sub(1);
                    if s.count == 0 {
                        inner.remove(&k.instrument);
                    }
                }
                if inner.is_empty() {
                    self.markets.remove(&k.venue);
                }
            }
            self.closed = self.closed.saturating_sub(1);
        }
        self.peak_count.expire(horizon);
        self.peak_cents.expire(horizon);
    }

    /// Moves the trades at or before `upto` into the peaks.
    fn close(&mut self, upto: Millis) {
        while let Some(k) = self.kept.get(self.closed)
            && k.at <= upto
        {
            self.peak_count.push(k.at, k.spell_count);
            self.peak_cents.push(k.at, k.spell_cents);
            self.closed += 1;
        }
    }

    /// The notional of `kept[from..to]`.
    fn sum(&self, from: usize, to: usize) -> i128 {
        let before = |i: usize| self.kept.get(i).map_or(self.total, |k| k.total_before);
        before(to) - before(from)
    }

    /// How many trades are older than `horizon` (held until the next record forgets them).
    fn stale(&self, horizon: Millis) -> usize {
        self.kept.partition_point(|k| k.at < horizon)
    }

    /// The median notional of the trades from `kept[stale..]`.
    fn median_live(&self, stale: usize) -> Option<i64> {
        let live = self.kept.len().saturating_sub(stale);
        if live == 0 {
            return None;
        }
        if stale == 0 {
            return self.sizes.median();
        }
        if live <= stale {
            return Some(median_of(
                self.kept.range(stale..).map(|k| k.usd_cents).collect(),
            ));
        }
        let mut removed: BTreeMap<i64, usize> = BTreeMap::new();
        for k in self.kept.range(..stale) {
            *removed.entry(k.usd_cents).or_default() += 1;
        }
        let hi = self.sizes.nth_without(live / 2, &removed)?;
        if live % 2 == 1 {
            return Some(hi);
        }
        let lo = self.sizes.nth_without(live / 2 - 1, &removed)?;
        Some((lo / 2).saturating_add(hi / 2))
    }

    /// The median absolute deviation from `m` of the trades from `kept[stale..]` (O(n): asked
    /// only of a notional already far above the median).
    fn mad_live(&self, stale: usize, m: i64) -> i64 {
        median_of(
            self.kept
                .range(stale..)
                .map(|k| k.usd_cents.saturating_sub(m).saturating_abs())
                .collect(),
        )
    }

    /// The spell ending `now`, and the busiest spell that lies wholly within the window and
    /// ended before it began (wholly within: so that it is made of trades the history holds,
    /// whatever the order they were recorded in).
    fn spells(&self, now: Millis, spell: Millis, horizon: Millis) -> Spells {
        let recent_from = now.saturating_sub(spell);
        let end = self.kept.partition_point(|k| k.at <= now);
        let from = self.kept.partition_point(|k| k.at <= recent_from);
        let stale = self.stale(horizon);
        let first_end = horizon.saturating_add(spell);
        let mut busiest_count = self.peak_count.max_since(first_end).unwrap_or(0);
        let mut busiest_cents = self.peak_cents.max_since(first_end).unwrap_or(0);
        // Trades whose spell has ended since the latest record: not in the peaks yet.
        for k in self
            .kept
            .range(self.closed.max(stale)..)
            .take_while(|k| k.at <= recent_from)
            .filter(|k| k.at >= first_end)
        {
            busiest_count = busiest_count.max(k.spell_count);
            busiest_cents = busiest_cents.max(k.spell_cents);
        }
        Spells {
            recent_count: end.saturating_sub(from),
            recent_cents: self.sum(from.min(end), end),
            earlier: from.saturating_sub(stale),
            busiest_count,
            busiest_cents,
        }
    }
}

/// What `trade_velocity` compares.
struct Spells {
    recent_count: usize,
    recent_cents: i128,
    /// Trades in the window before the recent spell.
    earlier: usize,
    busiest_count: usize,
    busiest_cents: i128,
}

/// What the trade detectors say of one order about to be decided. A trade dated before the
/// client's latest remembered one is examined as of that latest (the decider's clock never goes
/// back).
pub fn examine_trade(cfg: &TradeDetectorConfig, h: &TradeHistory, t: &TradeDone) -> Vec<Signal> {
    let mut out = vec![];
    if !cfg.any_enabled() {
        return out;
    }
    let c = h.by_client.get(&t.client);
    let now = c
        .and_then(|c| c.kept.back())
        .map_or(t.at, |k| k.at.max(t.at));
    let horizon = now.saturating_sub(cfg.window);
    let stale = c.map_or(0, |c| c.stale(horizon));
    let mut raise = |rule: &Rule, detector: &'static str, find: &dyn Fn() -> Option<Finding>| {
        if !rule.enabled {
            return;
        }
        if let Some(f) = find() {
            out.push(Signal {
                detector: Cow::Borrowed(detector),
                score: rule.score,
                response: f.response.unwrap_or(rule.response),
                reason: f.reason,
            });
        }
    };
    raise(&cfg.new_instrument, "new_instrument", &|| {
        new_instrument(cfg, c, t, horizon).map(Finding::from)
    });
    raise(&cfg.trade_size_jump, "trade_size_jump", &|| {
        size_jump(cfg, c?, stale, t).map(Finding::from)
    });
    raise(&cfg.trade_velocity, "trade_velocity", &|| {
        velocity(cfg, h, c, now, t).map(Finding::from)
    });
    raise(&cfg.off_market, "off_market", &|| off_market(cfg, t));
    raise(&cfg.dormant_wake, "dormant_wake", &|| {
        dormant_wake(cfg, h, c, now, t).map(Finding::from)
    });
    out
}

/// A detector's finding: its reason, and a response other than the rule's, if it asks one.
struct Finding {
    reason: String,
    response: Option<Response>,
}

impl From<String> for Finding {
    fn from(reason: String) -> Self {
        Self {
            reason,
            response: None,
        }
    }
}

/// The first trade of this instrument on this venue within the window.
fn new_instrument(
    cfg: &TradeDetectorConfig,
    c: Option<&ClientTrades>,
    t: &TradeDone,
    horizon: Millis,
) -> Option<String> {
    let seen = c
        .and_then(|c| c.markets.get(t.venue.as_str()))
        .and_then(|m| m.get(t.instrument.as_str()))
        .is_some_and(|s| s.last >= horizon);
    (!seen).then(|| {
        format!(
            "first trade of {} on {} in {} (new instrument)",
            t.instrument,
            t.venue,
            format_duration(cfg.window)
        )
    })
}

/// A notional far above the client's usual one: above `size_factor` times the median and above
/// the median plus `size_mads` median absolute deviations, with at least `min_samples` trades.
fn size_jump(
    cfg: &TradeDetectorConfig,
    c: &ClientTrades,
    stale: usize,
    t: &TradeDone,
) -> Option<String> {
    let live = c.kept.len().saturating_sub(stale);
    if live < cfg.min_samples.max(1) {
        return None;
    }
    let m = c.median_live(stale)?;
    let v = Decimal::from(t.usd_cents);
    // Saturating: a huge factor from the config means "never", not a panic.
    let times = Decimal::from(m)
        .checked_mul(cfg.size_factor)
        .unwrap_or(Decimal::MAX);
    if v <= times {
        return None;
    }
    let mad = c.mad_live(stale, m);
    let spread = Decimal::from(mad)
        .checked_mul(cfg.size_mads)
        .and_then(|x| x.checked_add(Decimal::from(m)))
        .unwrap_or(Decimal::MAX);
    (v > spread).then(|| {
        format!(
            "USD {} is far above this client's usual trade (median USD {} over {live} trades)",
            usd(t.usd_cents),
            usd(m),
        )
    })
}

/// The spell of `velocity_window` ending now against the client's busiest earlier one. By count
/// it needs `velocity_min_count` trades and a baseline: `min_samples` trades before the spell,
/// or keygate having watched the client for a whole window (so that "no earlier busy spell" is
/// known, not just unseen because keygate has just started). By notional it needs
/// `min_samples` trades before the spell.
fn velocity(
    cfg: &TradeDetectorConfig,
    h: &TradeHistory,
    c: Option<&ClientTrades>,
    now: Millis,
    t: &TradeDone,
) -> Option<String> {
    let spell = cfg.velocity_window.max(1);
    let horizon = now.saturating_sub(cfg.window);
    let s = c.map_or(
        Spells {
            recent_count: 0,
            recent_cents: 0,
            earlier: 0,
            busiest_count: 0,
            busiest_cents: 0,
        },
        |c| c.spells(now, spell, horizon),
    );
    let count = s.recent_count + 1;
    let value = s.recent_cents + i128::from(t.usd_cents.max(0));
    let factor = i128::from(cfg.velocity_factor.max(1));
    let baseline = s.earlier >= cfg.min_samples.max(1);
    let watched = h
        .watched_from(c)
        .is_some_and(|since| now.saturating_sub(since) >= cfg.window);
    let as_count = |n: usize| i128::try_from(n).unwrap_or(i128::MAX);
    let burst_count = (baseline || watched)
        && count >= cfg.velocity_min_count
        && as_count(count) > factor.saturating_mul(as_count(s.busiest_count.max(1)));
    let burst_value =
        baseline && count >= 2 && value > factor.saturating_mul(s.busiest_cents.max(1));
    (burst_count || burst_value).then(|| {
        format!(
            "{count} trades worth USD {} in {} (this client's busiest such spell: {} worth USD {})",
            usd(clamp_cents(value)),
            format_duration(spell),
            s.busiest_count,
            usd(clamp_cents(s.busiest_cents))
        )
    })
}

fn clamp_cents(v: i128) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// A limit price more than `off_market_bps` from the reference, against the client: a buy
/// above the market, a sell below it. A price at or inside the spread, a resting order better
/// than the market (negative deviation) and a market order (0) never are.
fn off_market(cfg: &TradeDetectorConfig, t: &TradeDone) -> Option<Finding> {
    if t.deviation_bps <= cfg.off_market_bps.max(0) {
        return None;
    }
    let far = t.deviation_bps >= cfg.off_market_far_bps;
    let way = match t.side {
        Side::Buy => "above",
        Side::Sell => "below",
    };
    Some(Finding {
        reason: format!(
            "a {} of {} priced {} bps {way} the reference price, more than the {} bps an order may be off the market{}",
            t.side,
            t.instrument,
            t.deviation_bps,
            cfg.off_market_bps,
            if far { " (far off the market)" } else { "" }
        ),
        response: far.then_some(cfg.off_market_far_response.max(cfg.off_market.response)),
    })
}

/// An order of at least `dormant_min_usd_cents` from a client with no trade in the window,
/// once keygate has watched it for a whole window: before that, "no trade" may only mean that
/// keygate has just started, or that the client is new.
fn dormant_wake(
    cfg: &TradeDetectorConfig,
    h: &TradeHistory,
    c: Option<&ClientTrades>,
    now: Millis,
    t: &TradeDone,
) -> Option<String> {
    if t.usd_cents < cfg.dormant_min_usd_cents {
        return None;
    }
    let since = h.watched_from(c)?;
    let horizon = now.saturating_sub(cfg.window);
    if now.saturating_sub(since) < cfg.window
        || c.and_then(|c| c.kept.back())
            .is_some_and(|k| k.at >= horizon)
    {
        return None;
    }
    Some(format!(
        "USD {} from a client with no trade in {} (watched since {}; dormant, waking large)",
        usd(t.usd_cents),
        format_duration(cfg.window),
        format_millis(since)
    ))
}

#[cfg(test)]
mod tests;
