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
//! The history is bounded for any trade rate: a client keeps no trades, only aggregates whose
//! size depends on the window and the spread of its sizes, not on how often it trades: when
//! each instrument was last traded and the latest trade (exact), its notionals as a log-spaced
//! histogram per epoch of `window / 64` ([`sizes`]), and counts and sums per slot of
//! `velocity_window / 20` ([`slots`]). A check costs about the same with 20 trades in the window
//! as with 20 million. The approximations only make a detector more suspicious than the exact
//! counts (the median and MAD never above the exact ones, the size-jump threshold at most
//! `(1 + 3 x mads / factor) / 128` below; the recent spell never shorter, the busiest spell
//! never larger), except that a trade counts in the median until its whole epoch has left the
//! window. docs/detection.md#trade-detectors has the bounds and the memory per client.

use std::borrow::Cow;
use std::collections::HashMap;

use rust_decimal::Decimal;

use super::{Response, Rule, Signal, usd};
use crate::order::Side;
use crate::time::{DAY, MINUTE, Millis, format_duration, format_millis};
use slots::Spells;

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
/// placed where it belongs: the aggregates do not depend on the order of recording). Pass the
/// same config to every `record` (a client's slot and epoch lengths are set by its first).
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
        if let Some(c) = self.by_client.get_mut(&t.client) {
            c.add(&t, cfg);
        } else {
            let mut c = ClientTrades::default();
            c.add(&t, cfg);
            self.by_client.insert(t.client, c);
        }
    }

    /// How many trades of `client` the histogram holds (the window's, and up to an epoch's
    /// before it).
    pub fn len_of(&self, client: &str) -> u64 {
        self.by_client.get(client).map_or(0, |c| c.sizes.held())
    }

    /// From when keygate has seen every allowed trade of this client, if it knows.
    fn watched_from(&self, c: Option<&ClientTrades>) -> Option<Millis> {
        match (self.complete_since, c.and_then(|c| c.watched_since)) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        }
    }
}

/// One client's trades, as bounded aggregates (the trades themselves are not kept): the
/// latest trade's time, when each instrument was last traded, the notionals as a histogram
/// ([`sizes::Sizes`]) and the counts and sums per time slot ([`slots::Slots`]).
#[derive(Debug, Clone, Default)]
struct ClientTrades {
    watched_since: Option<Millis>,
    latest: Option<Millis>,
    /// venue → instrument → when last traded.
    markets: HashMap<String, HashMap<String, Millis>>,
    sizes: sizes::Sizes,
    slots: slots::Slots,
}

impl ClientTrades {
    /// Counts a trade (in any order), unless the window has already passed it. What each
    /// aggregate keeps depends only on which trades were recorded, not on their order: a late
    /// trade is counted when its slot or epoch is still held, as it would have been in time.
    fn add(&mut self, t: &TradeDone, cfg: &TradeDetectorConfig) {
        if self.latest.is_none() {
            // The first trade sets the slot and epoch lengths (a client [`TradeHistory::watch`]
            // made has none yet).
            self.sizes = sizes::Sizes::new(cfg.window);
            self.slots = slots::Slots::new(cfg.velocity_window);
        }
        let window = cfg.window;
        let latest = self.latest.map_or(t.at, |l| l.max(t.at));
        let horizon = latest.saturating_sub(window);
        self.latest = Some(latest);
        let usd_cents = t.usd_cents.max(0);
        if self.sizes.covers(t.at, horizon) {
            self.sizes.add(t.at, usd_cents);
        }
        if self.slots.covers(t.at, horizon) {
            self.slots.add(t.at, usd_cents);
        }
        if t.at >= horizon {
            let last = self
                .markets
                .entry(t.venue.clone())
                .or_default()
                .entry(t.instrument.clone())
                .or_insert(t.at);
            *last = (*last).max(t.at);
        }
        self.expire(horizon);
    }

    /// Forgets what lies wholly before `horizon`.
    fn expire(&mut self, horizon: Millis) {
        let held = self.sizes.held();
        self.sizes.expire(horizon);
        self.slots.expire(horizon);
        // Instruments last traded before the horizon are never "seen" again; they go when an
        // epoch does, so that this pass runs about `EPOCHS` times a window, not every trade.
        if self.sizes.held() != held {
            for inner in self.markets.values_mut() {
                inner.retain(|_, last| *last >= horizon);
            }
            self.markets.retain(|_, inner| !inner.is_empty());
        }
    }

    #[cfg(test)]
    /// How many trades are in the window at `horizon` (and up to one epoch before it).
    fn live_len(&self, horizon: Millis) -> u64 {
        self.sizes.live(horizon).1
    }

    #[cfg(test)]
    /// The median and MAD lower bound of the trades in the window at `horizon`.
    fn spread_live(&self, horizon: Millis) -> Option<sizes::Spread> {
        let (bins, len) = self.sizes.live(horizon);
        sizes::spread(&bins, len)
    }

    fn spells(&self, now: Millis, horizon: Millis) -> Spells {
        self.slots.spells(now, horizon)
    }
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
    let now = c.and_then(|c| c.latest).map_or(t.at, |l| l.max(t.at));
    let horizon = now.saturating_sub(cfg.window);
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
        size_jump(cfg, c?, horizon, t).map(Finding::from)
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
        .is_some_and(|last| *last >= horizon);
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
    horizon: Millis,
    t: &TradeDone,
) -> Option<String> {
    let (bins, live) = c.sizes.live(horizon);
    if live < u64::try_from(cfg.min_samples.max(1)).unwrap_or(u64::MAX) {
        return None;
    }
    let m = sizes::median(&bins, live)?;
    let v = Decimal::from(t.usd_cents);
    // Saturating: a huge factor from the config means "never", not a panic.
    let times = Decimal::from(m)
        .checked_mul(cfg.size_factor)
        .unwrap_or(Decimal::MAX);
    if v <= times {
        return None;
    }
    let mad = sizes::spread(&bins, live)?.mad;
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
    let s = c.map_or(Spells::default(), |c| c.spells(now, horizon));
    let count = s.recent_count.saturating_add(1);
    let value = s
        .recent_cents
        .saturating_add(i128::from(t.usd_cents.max(0)));
    let factor = i128::from(cfg.velocity_factor.max(1));
    let at_least = |n: usize| u64::try_from(n).unwrap_or(u64::MAX);
    let baseline = s.earlier >= at_least(cfg.min_samples.max(1));
    let watched = h
        .watched_from(c)
        .is_some_and(|since| now.saturating_sub(since) >= cfg.window);
    let burst_count = (baseline || watched)
        && count >= at_least(cfg.velocity_min_count)
        && i128::from(count) > factor.saturating_mul(i128::from(s.busiest_count.max(1)));
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
        || c.and_then(|c| c.latest).is_some_and(|l| l >= horizon)
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

mod sizes;
mod slots;
#[cfg(test)]
mod tests;
