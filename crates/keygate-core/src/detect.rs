//! Anomaly detectors over the stream of value leaving the treasury (withdrawals and transfers).
//!
//! Each detector compares one request with the client's own recent history (the allowed
//! outflows of the baseline window, rebuilt from the audit log after a restart) and may raise a
//! [`Signal`] with a score, a reason and an action. The decider feeds the signals to policies
//! (`context.signals`, `context.anomaly_score`) and applies the strongest action: an alert, a
//! hold for approval, a deny, or a freeze. Pure: time is an argument.
//!
//! - `new_destination`: the first outflow to an address in the window (even one in the book).
//! - `size_jump`: value far above the client's own median (median and MAD over the window).
//! - `velocity`: count or value in a short window far above the client's busiest such window.
//! - `test_then_drain`: a tiny outflow followed within minutes by a large one to the same
//!   destination (Kronos, WazirX, Orbit, Bybit).
//! - `off_hours`: more than two hours away from every UTC hour in which the client has moved
//!   value.
//!
//! Trades have their own detectors, over the clients' allowed trades: [`trade`].

mod agg;
mod flows;
pub mod trade;

use std::collections::HashMap;

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::time::{DAY, MINUTE, Millis, hour_utc};

/// What a signal asks for, weakest first: the strongest of a request's signals is applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Response {
    /// Recorded and reported; the decision stands.
    Alert,
    /// An allow becomes a hold, which needs approvals.
    Hold,
    Deny,
    /// Deny, and freeze the client (then the credential, the venue, everything).
    FreezeClient,
    FreezeCredential,
    FreezeVenue,
    FreezeAll,
}

impl Response {
    pub fn as_str(self) -> &'static str {
        match self {
            Response::Alert => "alert",
            Response::Hold => "hold",
            Response::Deny => "deny",
            Response::FreezeClient => "freeze-client",
            Response::FreezeCredential => "freeze-credential",
            Response::FreezeVenue => "freeze-venue",
            Response::FreezeAll => "freeze-all",
        }
    }
}

/// One detector's finding about one request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Signal {
    /// The detector's name (borrowed when a detector raises it, owned when read back).
    pub detector: std::borrow::Cow<'static, str>,
    pub score: i64,
    pub response: Response,
    pub reason: String,
}

/// One detector's settings: whether it runs, its score, and what it asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub enabled: bool,
    pub score: i64,
    pub response: Response,
}

/// Every detector's settings. See docs/detection.md.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DetectorConfig {
    /// How far back a client's history goes.
    pub window: Millis,
    pub new_destination: Rule,
    pub size_jump: Rule,
    /// A request is a size jump when it is more than `size_factor` times the client's median
    /// and more than the median plus `size_mads` median absolute deviations.
    pub size_factor: Decimal,
    pub size_mads: Decimal,
    /// Fewer outflows in the window than this, and there is no baseline to compare with.
    pub min_samples: usize,
    pub velocity: Rule,
    pub velocity_window: Millis,
    /// A burst is more than `velocity_factor` times the count (or value) of the client's busiest
    /// `velocity_window` in its history, and at least `velocity_min_count` outflows.
    pub velocity_factor: i64,
    pub velocity_min_count: usize,
    pub test_then_drain: Rule,
    pub drain_within: Millis,
    /// A test is at most this much; a drain at least `drain_ratio` times the test and at least
    /// `drain_min_usd_cents`.
    pub test_max_usd_cents: i64,
    pub drain_ratio: i64,
    pub drain_min_usd_cents: i64,
    pub off_hours: Rule,
    /// Responses to a request's total score: (at least this score, response). The strongest
    /// that applies joins the signals' own.
    pub score_responses: Vec<(i64, Response)>,
    /// The trade detectors' settings.
    pub trade: trade::TradeDetectorConfig,
}

impl DetectorConfig {
    /// Whether any trade detector runs (if none does, no trade is examined or remembered).
    pub fn any_trade_enabled(&self) -> bool {
        self.trade.any_enabled()
    }

    /// Whether any outflow detector runs (if none does, no outflow is examined or remembered).
    pub fn any_enabled(&self) -> bool {
        [
            &self.new_destination,
            &self.size_jump,
            &self.velocity,
            &self.test_then_drain,
            &self.off_hours,
        ]
        .iter()
        .any(|r| r.enabled)
    }

    /// The response the total `score` of a request's signals asks for, if any.
    pub fn score_response(&self, score: i64) -> Option<Response> {
        self.score_responses
            .iter()
            .filter(|(at, _)| score >= *at)
            .map(|(_, r)| *r)
            .max()
    }
}

impl Default for DetectorConfig {
    fn default() -> Self {
        let rule = |score, response| Rule {
            enabled: true,
            score,
            response,
        };
        Self {
            window: 14 * DAY,
            new_destination: rule(20, Response::Alert),
            size_jump: rule(50, Response::Hold),
            size_factor: Decimal::from(10),
            size_mads: Decimal::from(10),
            min_samples: 5,
            velocity: rule(40, Response::Hold),
            velocity_window: 10 * MINUTE,
            velocity_factor: 3,
            velocity_min_count: 4,
            test_then_drain: rule(90, Response::FreezeClient),
            drain_within: 60 * MINUTE,
            test_max_usd_cents: 50_000,
            drain_ratio: 100,
            drain_min_usd_cents: 1_000_000,
            off_hours: rule(20, Response::Alert),
            score_responses: vec![],
            trade: trade::TradeDetectorConfig::default(),
        }
    }
}

impl DetectorConfig {
    /// Every detector off (for tests of other parts, and for engines that want none).
    pub fn off() -> Self {
        let mut c = Self::default();
        for r in [
            &mut c.new_destination,
            &mut c.size_jump,
            &mut c.velocity,
            &mut c.test_then_drain,
            &mut c.off_hours,
        ] {
            r.enabled = false;
        }
        c.trade = trade::TradeDetectorConfig::off();
        c
    }
}

/// An allowed outflow, as detectors remember it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outgoing {
    pub at: Millis,
    pub client: String,
    pub venue: String,
    pub asset: String,
    pub destination: String,
    pub usd_cents: i64,
}

/// The clients' recent outflows, with running aggregates per client (see [`flows`]): a check
/// costs a few lookups whatever the number of outflows in the window.
#[derive(Debug, Clone)]
pub struct History {
    by_client: HashMap<String, flows::ClientFlows>,
    /// The velocity window the aggregates are built for (a check with another one takes the
    /// plain pass).
    spell: Millis,
}

impl Default for History {
    fn default() -> Self {
        Self::for_config(&DetectorConfig::default())
    }
}

impl History {
    /// An empty history whose aggregates fit `cfg` (its velocity window).
    pub fn for_config(cfg: &DetectorConfig) -> Self {
        Self {
            by_client: HashMap::new(),
            spell: cfg.velocity_window.max(1),
        }
    }

    /// Remembers an allowed outflow (in time order), forgetting what fell out of `window`.
    pub fn record(&mut self, o: Outgoing, window: Millis) {
        let spell = self.spell;
        match self.by_client.get_mut(o.client.as_str()) {
            Some(c) => c.record(o, window, spell),
            None => {
                let mut c = flows::ClientFlows::default();
                let client = o.client.clone();
                c.record(o, window, spell);
                self.by_client.insert(client, c);
            }
        }
    }

    fn of(&self, client: &str, now: Millis, window: Millis) -> impl Iterator<Item = &Outgoing> {
        let horizon = now.saturating_sub(window);
        self.by_client
            .get(client)
            .into_iter()
            .flat_map(|c| c.kept.iter())
            .filter(move |o| o.at >= horizon && o.at <= now)
    }
}

fn median(sorted: &[i64]) -> i64 {
    match sorted.len() {
        0 => 0,
        n if n % 2 == 1 => sorted[n / 2],
        n => (sorted[n / 2 - 1] / 2).saturating_add(sorted[n / 2] / 2),
    }
}

fn usd(cents: i64) -> String {
    crate::price::format_usd(cents)
}

/// What the detectors say of one outflow about to be decided: `usd_cents` is its value.
pub fn examine(cfg: &DetectorConfig, h: &History, o: &Outgoing) -> Vec<Signal> {
    let Some(c) = h.by_client.get(o.client.as_str()) else {
        return examine_plain(cfg, h, o);
    };
    c.examine(cfg, o)
        .unwrap_or_else(|| examine_plain(cfg, h, o))
}

/// The same, by a pass over the client's outflows in the window (the aggregates' reference,
/// and the answer when they cannot give it exactly).
fn examine_plain(cfg: &DetectorConfig, h: &History, o: &Outgoing) -> Vec<Signal> {
    let past: Vec<&Outgoing> = h.of(&o.client, o.at, cfg.window).collect();
    let mut out = vec![];
    let mut raise = |rule: &Rule, detector: &'static str, reason: Option<String>| {
        if let Some(reason) = reason
            && rule.enabled
        {
            out.push(Signal {
                detector: std::borrow::Cow::Borrowed(detector),
                score: rule.score,
                response: rule.response,
                reason,
            });
        }
    };
    raise(
        &cfg.new_destination,
        "new_destination",
        new_destination(cfg, &past, o),
    );
    if past.len() >= cfg.min_samples {
        raise(&cfg.size_jump, "size_jump", size_jump(cfg, &past, o));
        raise(&cfg.off_hours, "off_hours", off_hours(&past, o));
    }
    raise(&cfg.velocity, "velocity", velocity(cfg, &past, o));
    raise(
        &cfg.test_then_drain,
        "test_then_drain",
        test_then_drain(cfg, &past, o),
    );
    out
}

/// The first outflow to this destination on this venue within the window.
fn new_destination(cfg: &DetectorConfig, past: &[&Outgoing], o: &Outgoing) -> Option<String> {
    if past
        .iter()
        .any(|p| p.destination == o.destination && p.venue == o.venue)
    {
        return None;
    }
    Some(reason::new_destination(cfg, o))
}

/// A value far above the client's usual one: above `size_factor` times the median and above
/// the median plus `size_mads` median absolute deviations.
fn size_jump(cfg: &DetectorConfig, past: &[&Outgoing], o: &Outgoing) -> Option<String> {
    let mut values: Vec<i64> = past.iter().map(|p| p.usd_cents).collect();
    values.sort_unstable();
    let m = median(&values);
    let mut devs: Vec<i64> = values.iter().map(|v| (v - m).abs()).collect();
    devs.sort_unstable();
    let mad = median(&devs);
    let v = Decimal::from(o.usd_cents);
    // Saturating: a huge factor from the config means "never", not a panic.
    let times = Decimal::from(m)
        .checked_mul(cfg.size_factor)
        .unwrap_or(Decimal::MAX);
    let spread = Decimal::from(mad)
        .checked_mul(cfg.size_mads)
        .and_then(|x| x.checked_add(Decimal::from(m)))
        .unwrap_or(Decimal::MAX);
    (v > times && v > spread).then(|| reason::size_jump(o, m, past.len()))
}

/// An hour of the day the client has not moved value in (within two hours of one it has
/// counts as usual).
fn off_hours(past: &[&Outgoing], o: &Outgoing) -> Option<String> {
    let hour = hour_utc(o.at);
    let near = |h: i64| (h - hour).rem_euclid(24) <= 2 || (hour - h).rem_euclid(24) <= 2;
    if past.iter().any(|p| near(hour_utc(p.at))) {
        return None;
    }
    Some(reason::off_hours(o, past.len()))
}

/// Velocity: this short window against the busiest such window of the client's history
/// (before it), so ordinary busy spells are the baseline, not the idle average.
fn velocity(cfg: &DetectorConfig, past: &[&Outgoing], o: &Outgoing) -> Option<String> {
    let vw = cfg.velocity_window.max(1);
    let recent_from = o.at.saturating_sub(vw);
    let recent: Vec<&&Outgoing> = past.iter().filter(|p| p.at > recent_from).collect();
    let count = recent.len() + 1;
    let value = recent
        .iter()
        .fold(o.usd_cents, |acc, p| acc.saturating_add(p.usd_cents));
    let mut buckets: HashMap<i64, (usize, i64)> = HashMap::new();
    for p in past.iter().filter(|p| p.at <= recent_from) {
        let b = buckets.entry(p.at / vw).or_default();
        b.0 += 1;
        b.1 = b.1.saturating_add(p.usd_cents);
    }
    let busiest_count = buckets.values().map(|b| b.0).max().unwrap_or(0);
    let busiest_value = buckets.values().map(|b| b.1).max().unwrap_or(0);
    let baseline = past.len() >= cfg.min_samples;
    let factor = cfg.velocity_factor.max(1);
    let burst_count = count >= cfg.velocity_min_count
        && count as i64 > factor.saturating_mul(busiest_count.max(1) as i64);
    let burst_value = baseline && count >= 2 && value > factor.saturating_mul(busiest_value.max(1));
    (burst_count || burst_value)
        .then(|| reason::velocity(vw, count, value, busiest_count, busiest_value))
}

/// A large outflow soon after a small test to the same address.
fn test_then_drain(cfg: &DetectorConfig, past: &[&Outgoing], o: &Outgoing) -> Option<String> {
    if o.usd_cents < cfg.drain_min_usd_cents {
        return None;
    }
    let test = past.iter().rev().find(|p| {
        p.destination == o.destination
            && p.at >= o.at.saturating_sub(cfg.drain_within)
            && p.usd_cents <= cfg.test_max_usd_cents
            && o.usd_cents >= p.usd_cents.max(1).saturating_mul(cfg.drain_ratio)
    })?;
    Some(reason::test_then_drain(o, test))
}

/// The outflow detectors' reasons, shared by the plain pass and the aggregates.
mod reason {
    use super::{DetectorConfig, Outgoing, usd};
    use crate::time::{Millis, format_duration, hour_utc};

    pub(super) fn new_destination(cfg: &DetectorConfig, o: &Outgoing) -> String {
        format!(
            "first outflow to {} on {} in {} (new destination)",
            o.destination,
            o.venue,
            format_duration(cfg.window)
        )
    }

    pub(super) fn size_jump(o: &Outgoing, median: i64, n: usize) -> String {
        format!(
            "USD {} is far above this client's usual outflow (median USD {} over {n} outflows)",
            usd(o.usd_cents),
            usd(median),
        )
    }

    pub(super) fn off_hours(o: &Outgoing, n: usize) -> String {
        let hour = hour_utc(o.at);
        format!(
            "{hour:02}:00 UTC is outside the hours this client has moved value in ({n} outflows)"
        )
    }

    pub(super) fn velocity(
        vw: Millis,
        count: usize,
        value: i64,
        busiest_count: usize,
        busiest_value: i64,
    ) -> String {
        format!(
            "{count} outflows worth USD {} in {} (this client's busiest such spell: {} worth USD {})",
            usd(value),
            format_duration(vw),
            busiest_count,
            usd(busiest_value)
        )
    }

    pub(super) fn test_then_drain(o: &Outgoing, test: &Outgoing) -> String {
        format!(
            "USD {} to {} {} after a test of USD {} to the same address (test, then drain)",
            usd(o.usd_cents),
            o.destination,
            format_duration(o.at - test.at),
            usd(test.usd_cents)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::HOUR;

    const T0: Millis = 1_700_000_000_000 - 1_700_000_000_000 % DAY;
    const COLD: &str = "0xc01d";

    fn out(at: Millis, dest: &str, usd_cents: i64) -> Outgoing {
        Outgoing {
            at,
            client: "mm".into(),
            venue: "binance".into(),
            asset: "USDT".into(),
            destination: dest.into(),
            usd_cents,
        }
    }

    /// Fourteen days of a market maker rebalancing to its cold wallet: one to three withdrawals
    /// a day of USD 20,000 to 60,000, between 08:00 and 18:00 UTC.
    fn normal_history() -> History {
        let cfg = DetectorConfig::default();
        let mut h = History::default();
        for day in 0..14 {
            for k in 0..(1 + day % 3) {
                let at = T0 + day * DAY + (8 + 4 * k) * HOUR + 17 * MINUTE;
                h.record(
                    out(at, COLD, 2_000_000 + (day * 37 + k * 11) % 40 * 100_000),
                    cfg.window,
                );
            }
        }
        h
    }

    fn names(s: &[Signal]) -> Vec<&str> {
        s.iter().map(|s| s.detector.as_ref()).collect()
    }

    #[test]
    fn normal_traffic_raises_nothing() {
        let cfg = DetectorConfig::default();
        let h = normal_history();
        let now = T0 + 14 * DAY + 10 * HOUR;
        for usd in [2_000_000, 3_500_000, 6_000_000] {
            assert!(examine(&cfg, &h, &out(now, COLD, usd)).is_empty(), "{usd}");
        }
        // Two ordinary rebalances five minutes apart are not a burst.
        let mut h2 = h.clone();
        h2.record(out(now, COLD, 2_500_000), cfg.window);
        assert!(examine(&cfg, &h2, &out(now + 5 * MINUTE, COLD, 3_000_000)).is_empty());
    }

    #[test]
    fn kronos_test_then_drain_to_the_whitelisted_wallet() {
        let cfg = DetectorConfig::default();
        let mut h = normal_history();
        // 16:47 UTC: 72 USDT to the firm's own, whitelisted, long-used wallet. Nothing unusual.
        let test = out(T0 + 14 * DAY + 16 * HOUR + 47 * MINUTE, COLD, 7_200);
        assert!(examine(&cfg, &h, &test).is_empty());
        h.record(test.clone(), cfg.window);
        // 15 minutes later: 2.4M to the same wallet.
        let drain = out(test.at + 15 * MINUTE, COLD, 240_000_000);
        let s = examine(&cfg, &h, &drain);
        assert!(names(&s).contains(&"test_then_drain"), "{s:?}");
        assert!(names(&s).contains(&"size_jump"), "{s:?}");
        let strongest = s.iter().map(|s| s.response).max().unwrap();
        assert_eq!(strongest, Response::FreezeClient);
    }

    #[test]
    fn each_detector_catches_its_pattern() {
        let cfg = DetectorConfig::default();
        let h = normal_history();
        let now = T0 + 14 * DAY + 10 * HOUR;
        assert_eq!(
            names(&examine(&cfg, &h, &out(now, "0xnew", 3_000_000))),
            vec!["new_destination"]
        );
        assert_eq!(
            names(&examine(&cfg, &h, &out(now, COLD, 90_000_000))),
            vec!["size_jump"]
        );
        assert_eq!(
            names(&examine(
                &cfg,
                &h,
                &out(T0 + 14 * DAY + 3 * HOUR, COLD, 3_000_000)
            )),
            vec!["off_hours"]
        );
        let mut burst = h.clone();
        for i in 0..3 {
            burst.record(out(now + i * MINUTE, COLD, 3_000_000), cfg.window);
        }
        assert_eq!(
            names(&examine(
                &cfg,
                &burst,
                &out(now + 4 * MINUTE, COLD, 3_000_000)
            )),
            vec!["velocity"]
        );
    }

    #[test]
    fn no_baseline_no_baseline_signals_and_disabled_rules_stay_quiet() {
        let mut cfg = DetectorConfig::default();
        let h = History::default();
        let s = examine(&cfg, &h, &out(T0, COLD, 1_000_000_000));
        assert_eq!(names(&s), vec!["new_destination"]);
        cfg.new_destination.enabled = false;
        assert!(examine(&cfg, &h, &out(T0, COLD, 1_000_000_000)).is_empty());
    }

    #[test]
    fn a_total_score_can_ask_for_more_than_each_signal() {
        let cfg = DetectorConfig {
            score_responses: vec![(40, Response::Hold), (100, Response::FreezeAll)],
            ..DetectorConfig::default()
        };
        assert_eq!(cfg.score_response(39), None);
        assert_eq!(cfg.score_response(40), Some(Response::Hold));
        assert_eq!(cfg.score_response(150), Some(Response::FreezeAll));
    }

    #[test]
    fn history_forgets_what_leaves_the_window() {
        let cfg = DetectorConfig::default();
        let mut h = History::default();
        h.record(out(T0, COLD, 100), cfg.window);
        h.record(out(T0 + 15 * DAY, COLD, 100), cfg.window);
        assert_eq!(h.by_client["mm"].len(), 1);
    }
}
