//! The trade detectors against the traffic they must catch (3Commas-like off-market buys, a
//! Binance-2018-like dormant key waking, bursts) and the market making they must leave alone;
//! the bounded aggregates against a from-scratch computation of what they approximate, and
//! against the exact values (never less suspicious, within the documented bounds); their size
//! against the count of trades.

use std::collections::BTreeMap;

use super::*;
use crate::detect::agg::Halves;
use crate::order::{Order, OrderKind, Reference};
use crate::time::{HOUR, SECOND};

const T0: Millis = 1_700_000_000_000 - 1_700_000_000_000 % DAY;
const PAIRS: [&str; 3] = ["BTC/USDT", "ETH/USDT", "SOL/USDT"];

fn trade(client: &str, at: Millis, instrument: &str, usd_cents: i64, dev: i64) -> TradeDone {
    TradeDone {
        at,
        client: client.into(),
        venue: "binance".into(),
        instrument: instrument.into(),
        side: Side::Buy,
        usd_cents,
        deviation_bps: dev,
    }
}

/// A small deterministic generator, so the "normal" traffic is varied but reproducible.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, n: u64) -> i64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        ((self.0 >> 33) % n) as i64
    }
}

/// One day of a market maker's orders on day `day`: every 3 minutes a limit order of USD
/// 2,000-8,000 priced 30 bps inside to 5 bps through the mid (at or inside the spread), rotating
/// through three instruments, every 40th of them 3-5 times as large; and at 00:00 UTC the new
/// day's re-quote burst, 40 orders in 2 minutes.
fn mm_day(day: i64, rng: &mut Lcg) -> Vec<TradeDone> {
    let start = T0 + day * DAY;
    let mut out = vec![];
    for i in 0..40 {
        let usd = 200_000 + rng.next(600_000);
        out.push(trade(
            "mm",
            start + i * 3_000,
            PAIRS[i as usize % 3],
            usd,
            -rng.next(30),
        ));
    }
    for i in 0..480 {
        let mut usd = 200_000 + rng.next(600_000);
        if i % 40 == 39 {
            usd *= 3 + rng.next(3);
        }
        let dev = rng.next(36) - 30;
        out.push(trade(
            "mm",
            start + i * 3 * MINUTE + 7_000,
            PAIRS[i as usize % 3],
            usd,
            dev,
        ));
    }
    out.sort_by_key(|t| t.at);
    out
}

/// Fourteen days of that market maker, recorded; keygate has watched it from the start.
fn mm_history(cfg: &TradeDetectorConfig) -> (TradeHistory, Lcg) {
    let mut rng = Lcg(7);
    let mut h = TradeHistory::default();
    h.complete_since(T0);
    for day in 0..14 {
        for t in mm_day(day, &mut rng) {
            h.record(t, cfg);
        }
    }
    (h, rng)
}

fn names(s: &[Signal]) -> Vec<&str> {
    s.iter().map(|s| s.detector.as_ref()).collect()
}

fn strongest(s: &[Signal]) -> Option<Response> {
    s.iter().map(|s| s.response).max()
}

#[test]
fn a_market_makers_next_day_raises_nothing() {
    let cfg = TradeDetectorConfig::default();
    let (mut h, mut rng) = mm_history(&cfg);
    // Day 14, its 00:00 burst included: each order examined, then recorded as allowed.
    let day = mm_day(14, &mut rng);
    assert_eq!(day.len(), 520);
    for t in day {
        let s = examine_trade(&cfg, &h, &t);
        assert!(s.is_empty(), "{t:?}: {s:?}");
        h.record(t, &cfg);
    }
    // An occasional larger order, within the size factor, and one at the ask of a pair with a
    // 3% spread (150 bps above the mid): nothing either.
    let later = T0 + 15 * DAY + 10 * HOUR;
    assert!(examine_trade(&cfg, &h, &trade("mm", later, "ETH/USDT", 3_500_000, 0)).is_empty());
    assert!(examine_trade(&cfg, &h, &trade("mm", later, "SOL/USDT", 500_000, 150)).is_empty());
}

/// The 3Commas pattern: a leaked key buys an illiquid coin from the thief's own asks, far above
/// the market. Priced with the real order type, as the decider will.
#[test]
fn three_commas_buys_far_above_the_market_are_refused_by_the_defaults() {
    let cfg = crate::detect::DetectorConfig::default().trade;
    let (h, _) = mm_history(&cfg);
    let order = Order {
        symbol: "SHITUSDT".into(),
        base: "SHIT".into(),
        quote: "USDT".into(),
        side: Side::Buy,
        kind: OrderKind::Limit,
        venue_type: "LIMIT".into(),
        price: Some(Decimal::from(5)),
        quantity: Some(Decimal::from(1_000_000)),
        quote_quantity: None,
        reference: Some(Reference {
            price: Decimal::new(5, 2),
            at: T0 + 14 * DAY,
        }),
    };
    let dev = order.deviation_bps(Decimal::new(5, 2));
    assert_eq!(dev, 990_000);
    let t = trade(
        "mm",
        T0 + 14 * DAY + 10 * HOUR,
        &order.instrument(),
        500_000_000,
        dev,
    );
    let s = examine_trade(&cfg, &h, &t);
    assert_eq!(
        names(&s),
        vec!["new_instrument", "trade_size_jump", "off_market"]
    );
    assert_eq!(strongest(&s), Some(Response::FreezeClient));
    // Closer to the market, but still 10% above it, and on a pair the client trades: denied.
    let near = trade("mm", t.at, "SOL/USDT", 500_000, 1_000);
    let s = examine_trade(&cfg, &h, &near);
    assert_eq!(names(&s), vec!["off_market"]);
    assert_eq!(strongest(&s), Some(Response::Deny));
    assert!(s[0].reason.contains("1000 bps above"), "{}", s[0].reason);
    // A sell dumped 6% below the market: denied too.
    let mut dump = trade("mm", t.at, "BTC/USDT", 500_000, 600);
    dump.side = Side::Sell;
    let s = examine_trade(&cfg, &h, &dump);
    assert_eq!(names(&s), vec!["off_market"]);
    assert!(s[0].reason.contains("600 bps below"), "{}", s[0].reason);
}

#[test]
fn off_market_leaves_the_spread_and_resting_orders_alone() {
    let cfg = TradeDetectorConfig::default();
    let h = TradeHistory::default();
    let at = T0;
    for dev in [0, 3, 150, 500, -500, -9_000, -1_000_000_000] {
        let s = examine_trade(&cfg, &h, &trade("mm", at, "BTC/USDT", 500_000, dev));
        assert!(!names(&s).contains(&"off_market"), "{dev}: {s:?}");
    }
    let s = examine_trade(&cfg, &h, &trade("mm", at, "BTC/USDT", 500_000, 501));
    assert_eq!(strongest(&s), Some(Response::Deny));
    let s = examine_trade(&cfg, &h, &trade("mm", at, "BTC/USDT", 500_000, 2_000));
    assert_eq!(strongest(&s), Some(Response::FreezeClient));
    // The far tier never weakens the rule's own response.
    let mut strict = cfg.clone();
    strict.off_market.response = Response::FreezeAll;
    let s = examine_trade(&strict, &h, &trade("mm", at, "BTC/USDT", 500_000, 5_000));
    assert_eq!(strongest(&s), Some(Response::FreezeAll));
}

/// The Binance 2018 pattern: a key that has not traded for weeks wakes and trades large.
#[test]
fn a_dormant_key_waking_large_is_held() {
    let cfg = TradeDetectorConfig::default();
    let mut h = TradeHistory::default();
    h.complete_since(T0);
    for day in 0..3 {
        h.record(
            trade("quiet", T0 + day * DAY + 9 * HOUR, "BTC/USDT", 150_000, 0),
            &cfg,
        );
    }
    let wake = T0 + 25 * DAY + 3 * HOUR;
    let big = trade("quiet", wake, "VIA/BTC", 100_000_000, 0);
    let s = examine_trade(&cfg, &h, &big);
    assert_eq!(names(&s), vec!["new_instrument", "dormant_wake"]);
    assert_eq!(strongest(&s), Some(Response::Hold));
    // On an instrument it used to trade, too; a small order is not "large".
    let s = examine_trade(&cfg, &h, &trade("quiet", wake, "BTC/USDT", 1_000_000, 0));
    assert_eq!(names(&s), vec!["new_instrument", "dormant_wake"]);
    let s = examine_trade(&cfg, &h, &trade("quiet", wake, "BTC/USDT", 999_999, 0));
    assert_eq!(names(&s), vec!["new_instrument"]);
    // A trade inside the window: not dormant.
    h.record(trade("quiet", wake - 2 * DAY, "BTC/USDT", 150_000, 0), &cfg);
    assert!(!names(&examine_trade(&cfg, &h, &big)).contains(&"dormant_wake"));
}

#[test]
fn no_trades_because_keygate_just_started_or_the_client_is_new_is_not_dormant() {
    let cfg = TradeDetectorConfig::default();
    let now = T0 + 30 * DAY;
    let big = trade("bot", now, "BTC/USDT", 100_000_000, 0);
    // Nothing known about when the history starts.
    let h = TradeHistory::default();
    assert_eq!(
        names(&examine_trade(&cfg, &h, &big)),
        vec!["new_instrument"]
    );
    // keygate has decided for three days only.
    let mut h = TradeHistory::default();
    h.complete_since(now - 3 * DAY);
    assert_eq!(
        names(&examine_trade(&cfg, &h, &big)),
        vec!["new_instrument"]
    );
    // keygate has decided for a month, but the client was created two days ago.
    let mut h = TradeHistory::default();
    h.complete_since(T0);
    h.watch("bot", now - 2 * DAY);
    assert_eq!(
        names(&examine_trade(&cfg, &h, &big)),
        vec!["new_instrument"]
    );
    // Created sixteen days ago and silent since: dormant.
    h.watch("bot", now - 16 * DAY);
    assert_eq!(
        names(&examine_trade(&cfg, &h, &big)),
        vec!["new_instrument", "dormant_wake"]
    );
}

#[test]
fn a_burst_far_above_the_busiest_spell_is_caught_by_count() {
    let cfg = TradeDetectorConfig::default();
    let (mut h, _) = mm_history(&cfg);
    let start = T0 + 14 * DAY + 14 * HOUR;
    let busiest = h.by_client["mm"]
        .spells(start, start - cfg.window)
        .busiest_count;
    // The daily burst and the stream around it.
    assert!((40..50).contains(&busiest), "{busiest}");
    let mut first = None;
    for i in 0..200 {
        let t = trade("mm", start + i * 1_000, PAIRS[i as usize % 3], 100_000, 0);
        let s = examine_trade(&cfg, &h, &t);
        let spell = h.by_client["mm"].spells(t.at, t.at - cfg.window);
        let over = spell.recent_count + 1 > 3 * spell.busiest_count;
        // It fires exactly when the spell, this order included, is more than three times the
        // busiest earlier one.
        assert_eq!(!s.is_empty(), over, "{i}: {s:?}");
        if over && first.is_none() {
            assert_eq!(names(&s), vec!["trade_velocity"]);
            assert_eq!(strongest(&s), Some(Response::Hold));
            first = Some(i);
        }
        h.record(t, &cfg);
    }
    let first = first.unwrap();
    assert!(
        (3 * busiest as i64 - 10..=3 * busiest as i64).contains(&first),
        "{first}"
    );
}

#[test]
fn a_burst_of_value_is_caught_below_the_minimum_count() {
    let cfg = TradeDetectorConfig::default();
    let (mut h, _) = mm_history(&cfg);
    let start = T0 + 14 * DAY + 14 * HOUR;
    let c = &h.by_client["mm"];
    let busiest = c.spells(start, start - cfg.window).busiest_cents;
    let recent = c.spells(start, start - cfg.window).recent_cents;
    let median = c.spread_live(start - cfg.window).unwrap().median;
    let size = 8 * median;
    // n orders of eight times the median at once: n - 1 keep the spell within three times the
    // busiest, the n-th takes it over.
    let n = ((3 * busiest - recent) / i128::from(size) + 1) as usize;
    assert!(n < cfg.velocity_min_count, "{n}");
    for i in 0..n - 1 {
        let t = trade("mm", start, "BTC/USDT", size, 0);
        assert!(examine_trade(&cfg, &h, &t).is_empty(), "{i}");
        h.record(t, &cfg);
    }
    let last = trade("mm", start, "BTC/USDT", size, 0);
    assert_eq!(
        names(&examine_trade(&cfg, &h, &last)),
        vec!["trade_velocity"]
    );
}

#[test]
fn a_burst_right_after_install_is_not_a_burst_until_keygate_has_watched_a_window() {
    let cfg = TradeDetectorConfig::default();
    let start = T0 + 30 * DAY;
    let burst = |h: &mut TradeHistory| {
        let mut raised = vec![];
        for i in 0..100 {
            let t = trade("mm", start + i * 2_000, "BTC/USDT", 500_000, 0);
            raised.extend(
                examine_trade(&cfg, h, &t)
                    .into_iter()
                    .map(|s| s.detector.into_owned()),
            );
            h.record(t, &cfg);
        }
        raised
    };
    let mut fresh = TradeHistory::default();
    fresh.complete_since(start - HOUR);
    assert_eq!(burst(&mut fresh), vec!["new_instrument".to_string()]);
    let mut watched = TradeHistory::default();
    watched.complete_since(start - 15 * DAY);
    let raised = burst(&mut watched);
    assert!(raised.contains(&"trade_velocity".to_string()), "{raised:?}");
}

#[test]
fn new_instruments_and_size_jumps_stand_alone() {
    let cfg = TradeDetectorConfig::default();
    let (h, _) = mm_history(&cfg);
    let now = T0 + 14 * DAY + 10 * HOUR;
    let s = examine_trade(&cfg, &h, &trade("mm", now, "AVAX/USDT", 500_000, 0));
    assert_eq!(names(&s), vec!["new_instrument"]);
    assert_eq!(strongest(&s), Some(Response::Alert));
    let mut okx = trade("mm", now, "BTC/USDT", 500_000, 0);
    okx.venue = "okx".into();
    assert_eq!(
        names(&examine_trade(&cfg, &h, &okx)),
        vec!["new_instrument"]
    );
    let s = examine_trade(&cfg, &h, &trade("mm", now, "BTC/USDT", 50_000_000, 0));
    assert_eq!(names(&s), vec!["trade_size_jump"]);
    let live = h.by_client["mm"].live_len(now - cfg.window);
    assert!(live > 7_000, "{live}");
    assert!(
        s[0].reason.contains(&format!("over {live} trades")),
        "{}",
        s[0].reason
    );
    // Nine times the median is within the factor.
    let m = h.by_client["mm"]
        .spread_live(now - cfg.window)
        .unwrap()
        .median;
    assert!(examine_trade(&cfg, &h, &trade("mm", now, "BTC/USDT", 9 * m, 0)).is_empty());
    // Fifteen days on, every instrument has left the window.
    let late = trade("mm", T0 + 29 * DAY, "BTC/USDT", 500_000, 0);
    let s = examine_trade(&cfg, &h, &late);
    assert_eq!(names(&s), vec!["new_instrument"]);
}

#[test]
fn disabled_detectors_stay_quiet_and_any_enabled_is_about_outflows() {
    let (h, _) = mm_history(&TradeDetectorConfig::default());
    let t = trade("mm", T0 + 14 * DAY, "SHIT/USDT", 500_000_000, 990_000);
    assert!(examine_trade(&TradeDetectorConfig::off(), &h, &t).is_empty());
    let mut cfg = TradeDetectorConfig::default();
    cfg.off_market.enabled = false;
    assert_eq!(
        names(&examine_trade(&cfg, &h, &t)),
        vec!["new_instrument", "trade_size_jump", "trade_velocity"]
    );
    cfg.trade_velocity.enabled = false;
    assert_eq!(
        names(&examine_trade(&cfg, &h, &t)),
        vec!["new_instrument", "trade_size_jump"]
    );
    let off = crate::detect::DetectorConfig::off();
    assert!(!off.any_enabled() && !off.any_trade_enabled());
    let mut trades_only = off.clone();
    trades_only.trade = TradeDetectorConfig::default();
    assert!(!trades_only.any_enabled() && trades_only.any_trade_enabled());
    assert!(crate::detect::DetectorConfig::default().any_trade_enabled());
}

/// What is forgotten goes by epoch of `window / 64` (the histogram) and slot of
/// `velocity_window / 20` (the spells): a trade older than the window still counts while its
/// epoch is held, in time or late alike.
#[test]
fn the_history_forgets_what_leaves_the_window_and_places_late_trades() {
    let cfg = TradeDetectorConfig::default();
    let epoch = cfg.window / sizes::EPOCHS;
    let mut h = TradeHistory::default();
    h.record(trade("mm", T0, "BTC/USDT", 100, 0), &cfg);
    h.record(trade("mm", T0 + 15 * DAY, "BTC/USDT", 100, 0), &cfg);
    assert_eq!(h.len_of("mm"), 1);
    // Late by more than the window and its oldest epoch: nothing to remember.
    h.record(trade("mm", T0 + DAY - epoch - 1, "BTC/USDT", 100, 0), &cfg);
    assert_eq!(h.len_of("mm"), 1);
    // Late, within the window: placed in time order.
    h.record(trade("mm", T0 + 14 * DAY, "ETH/USDT", 300, 0), &cfg);
    assert_eq!(h.len_of("mm"), 2);
    let c = &h.by_client["mm"];
    assert_eq!(c.latest, Some(T0 + 15 * DAY));
    assert_eq!(c.markets["binance"]["ETH/USDT"], T0 + 14 * DAY);
    assert_eq!(c.spread_live(T0 + DAY).map(|s| s.median), Some(200));
    assert_eq!(h.len_of("other"), 0);
}

#[test]
fn the_median_skips_trades_the_window_and_their_epoch_have_passed() {
    let cfg = TradeDetectorConfig::default();
    let epoch = cfg.window / sizes::EPOCHS;
    let mut h = TradeHistory::default();
    for (i, usd) in [900, 100, 200, 300, 400].into_iter().enumerate() {
        h.record(trade("mm", T0 + i as i64 * DAY, "BTC/USDT", usd, 0), &cfg);
    }
    let c = &h.by_client["mm"];
    let at = |horizon| c.spread_live(horizon).unwrap();
    assert_eq!(at(T0).median, 300);
    // At T0 + 14d + 1ms the first (900) is out of the window, but its epoch is not: it counts
    // until the whole epoch has left (the documented approximation).
    assert_eq!(c.live_len(T0 + 1), 5);
    assert_eq!(at(T0 + 1).median, 300);
    let gone = T0 + epoch;
    assert_eq!(c.live_len(gone), 4);
    assert_eq!(
        at(gone),
        sizes::Spread {
            median: 250,
            mad: 100
        }
    );
}

/// What one client's aggregates hold: slots, busiest-spell candidates, histogram entries,
/// instruments.
fn held(h: &TradeHistory, client: &str) -> (usize, usize, usize, usize) {
    let c = &h.by_client[client];
    (
        c.slots.len(),
        c.slots.peaks_len(),
        c.sizes.entries(),
        c.markets.values().map(HashMap::len).sum(),
    )
}

/// Fifteen days of one client at a steady rate, its sizes cycling through 100 values of USD 20
/// to USD 20,000.
fn steady(cfg: &TradeDetectorConfig, every: Millis) -> TradeHistory {
    let mut h = TradeHistory::default();
    h.complete_since(T0);
    // As the decider does: every client watched before its trades are recorded.
    h.watch("bot", T0 - DAY);
    let (mut at, mut i) = (T0, 0i64);
    while at < T0 + 15 * DAY {
        let usd_cents = 2_000 * (1 + (i * 37) % 100) * (1 + (i * 13) % 10);
        h.record(trade("bot", at, PAIRS[(i % 3) as usize], usd_cents, 0), cfg);
        at += every;
        i += 1;
    }
    h
}

/// The soak's leak: the history grew by every trade. Now ten times the trades make the same
/// aggregates, and their size is bounded by the window and the spread of the sizes.
#[test]
fn memory_depends_on_the_window_and_the_sizes_not_on_the_count_of_trades() {
    let cfg = TradeDetectorConfig::default();
    let slow = steady(&cfg, 20 * SECOND);
    let fast = steady(&cfg, 2 * SECOND);
    // Fourteen days and up to an epoch: 60,480 to 61,425 trades, and ten times as many.
    let (n_slow, n_fast) = (slow.len_of("bot"), fast.len_of("bot"));
    assert!((60_480..=61_425).contains(&n_slow), "{n_slow}");
    assert!((604_800..=614_250).contains(&n_fast), "{n_fast}");
    let (a, b) = (held(&slow, "bot"), held(&fast, "bot"));
    // The same slots, histogram entries and instruments (the busiest-spell candidates depend
    // on the values, not on their count).
    assert_eq!((a.0, a.2, a.3), (b.0, b.2, b.3), "slow {a:?}, fast {b:?}");
    let (slots, _, entries, markets) = b;
    let peaks = a.1.max(b.1);
    // One slot per 30 s of the window (and the one holding the horizon).
    let grain = cfg.velocity_window / slots::SPELL_SLOTS;
    assert!(slots as i64 <= cfg.window / grain + 2, "{slots}");
    assert!(peaks as i64 <= 2 * (cfg.window / grain + 2), "{peaks}");
    // At most every bin of the sizes per epoch held, and once more for the whole window.
    let mut bins: Vec<i64> = (0..1_000)
        .map(|i| sizes::bin_of(2_000 * (1 + (i * 37) % 100) * (1 + (i * 13) % 10)))
        .collect();
    bins.sort_unstable();
    bins.dedup();
    let bound = (sizes::EPOCHS as usize + 2) * bins.len();
    assert!(entries <= bound, "{entries} > {bound}");
    assert!(entries < n_slow as usize / 4, "{entries}");
    assert_eq!(markets, 3);
}

/// The decider watches every client before recording its trades: the slot and epoch lengths
/// are still the config's (the first trade sets them), not those of an empty default.
#[test]
fn a_watched_client_keeps_the_configured_slots_and_epochs() {
    let cfg = TradeDetectorConfig::default();
    let (plain, _) = mm_history(&cfg);
    let mut rng = Lcg(7);
    let mut watched = TradeHistory::default();
    watched.complete_since(T0);
    watched.watch("mm", T0 - DAY);
    for t in (0..14).flat_map(|d| mm_day(d, &mut rng)) {
        watched.record(t, &cfg);
    }
    assert_eq!(held(&plain, "mm"), held(&watched, "mm"));
    let c = &watched.by_client["mm"];
    assert_eq!(
        c.slots.grain_len(),
        cfg.velocity_window / slots::SPELL_SLOTS
    );
    let now = T0 + 14 * DAY;
    let p = &plain.by_client["mm"];
    assert_eq!(
        c.spells(now, now - cfg.window),
        p.spells(now, now - cfg.window)
    );
}

/// A Kronos-style size test on a tight book (factor 1): the exact median and MAD say jump, so
/// must the histogram's (its MAD is a lower bound: a bin's width is never read as spread).
#[test]
fn a_size_jump_is_never_found_later_than_with_exact_sizes() {
    let cfg = TradeDetectorConfig {
        size_factor: Decimal::ONE,
        ..TradeDetectorConfig::default()
    };
    let mut h = TradeHistory::default();
    for i in 0..20 {
        let usd = [1_031, 1_031, 1_032, 1_032][i % 4];
        h.record(trade("t", T0 + i as i64 * MINUTE, "BTC/USDT", usd, 0), &cfg);
    }
    // Exact: median 1,031, MAD 0, so 1,032 is more than both thresholds.
    let probe = trade("t", T0 + HOUR, "BTC/USDT", 1_032, 0);
    assert!(names(&examine_trade(&cfg, &h, &probe)).contains(&"trade_size_jump"));
    let s = h.by_client["t"].spread_live(T0).unwrap();
    assert_eq!(
        s,
        sizes::Spread {
            median: 1_028,
            mad: 0
        }
    );
}

fn exact_spread(v: &mut [i64]) -> (i64, i64) {
    v.sort_unstable();
    let m = crate::detect::median(v);
    let mut d: Vec<i64> = v.iter().map(|x| (x - m).abs()).collect();
    d.sort_unstable();
    (m, crate::detect::median(&d))
}

/// Random-ish sizes (log-uniform from 1 cent to about USD 10 billion, and tight clusters): the
/// histogram's median and MAD are never above the exact ones, the median at most 1/128 (and a
/// cent) below, and the size-jump threshold `max(factor x median, median + mads x MAD)` at most
/// `(1 + 3 x mads / factor) / 128` below the exact one.
#[test]
fn median_and_mad_are_never_above_the_exact_ones_and_within_the_bound() {
    let mut rng = Lcg(11);
    let mut worst = [0i128; 3];
    for case in 0..3_000 {
        let n = 1 + rng.next(150) as usize;
        let center = 1 + rng.next(1 << 40);
        let mut v: Vec<i64> = (0..n)
            .map(|_| match case % 3 {
                0 => (1 + rng.next(1 << 20)) << rng.next(20),
                1 => center + rng.next((1 + center / 50) as u64),
                _ => center + rng.next((1 + center / 2) as u64) * (rng.next(2) * 2 - 1) / 2,
            })
            .collect();
        let mut bins = BTreeMap::new();
        for x in &v {
            *bins.entry(sizes::bin_of(*x)).or_insert(0u64) += 1;
        }
        let s = sizes::spread(&bins, n as u64).unwrap();
        let (m, mad) = exact_spread(&mut v);
        assert!(s.median <= m && s.mad <= mad, "{case}: {s:?} vs {m} {mad}");
        assert!(
            128 * (m - s.median) <= m + 128,
            "{case}: {} vs {m}",
            s.median
        );
        for (i, (factor, mads)) in [(10i128, 10i128), (3, 5), (1, 10)].into_iter().enumerate() {
            let thr = |m: i64, mad: i64| {
                (factor * i128::from(m)).max(i128::from(m) + mads * i128::from(mad))
            };
            let (approx, exact) = (thr(s.median, s.mad), thr(m, mad));
            assert!(approx <= exact, "{case}: {approx} > {exact}");
            // 128 f (exact - approx) <= (f + 3 mads) exact, and a few cents of rounding.
            let slack = 128 * factor * 2 * (mads + 1);
            assert!(
                128 * factor * (exact - approx) <= (factor + 3 * mads) * exact + slack,
                "{case}: {approx} vs {exact} ({factor}, {mads})"
            );
            if exact > 100_000 {
                // In parts per million.
                worst[i] = worst[i].max((exact - approx) * 1_000_000 / exact);
            }
        }
    }
    // The bound is not loose by orders of magnitude: some case comes near the median's 1/128.
    assert!(worst[0] > 5_000, "{worst:?}");
}

/// A burst whose first trades fall early in a slot: the exact spell holds them all, and so does
/// the slotted one (the slots touching the spell count, not only the whole slots in it).
#[test]
fn a_burst_starting_inside_a_slot_is_counted_whole() {
    let cfg = TradeDetectorConfig::default();
    let grain = cfg.velocity_window / slots::SPELL_SLOTS;
    let mut h = TradeHistory::default();
    h.complete_since(T0);
    let start = T0 + 20 * DAY + grain - 1_000;
    h.record(trade("bot", start - DAY, "BTC/USDT", 10_000, 0), &cfg);
    for i in 0..29 {
        let t = trade("bot", start + i, "BTC/USDT", 10_000, 0);
        assert!(examine_trade(&cfg, &h, &t).is_empty(), "{i}");
        h.record(t, &cfg);
    }
    // The 30th, one millisecond before the spell since the first is over.
    let last = trade(
        "bot",
        start + cfg.velocity_window - 1,
        "BTC/USDT",
        10_000,
        0,
    );
    let s = examine_trade(&cfg, &h, &last);
    assert_eq!(names(&s), vec!["trade_velocity"]);
    assert!(s[0].reason.starts_with("30 trades"), "{}", s[0].reason);
    // A slot later the first 29 have left the spell.
    let later = TradeDone {
        at: last.at + grain,
        ..last
    };
    assert!(examine_trade(&cfg, &h, &later).is_empty());
}

/// Another instance's trades come late: some within the recent spell, some into spells already
/// closed; one is older than the window. The detectors say the same as with every trade in time.
#[test]
fn late_and_expired_trades_change_nothing_the_order_of_recording_could() {
    let cfg = TradeDetectorConfig::default();
    let (in_time, _) = mm_history(&cfg);
    let mut rng = Lcg(7);
    let mut late = TradeHistory::default();
    late.complete_since(T0);
    // (when it is recorded, the trade)
    let mut queue: Vec<(Millis, TradeDone)> = vec![];
    let mut delayed = 0;
    for (i, t) in (0..14).flat_map(|d| mm_day(d, &mut rng)).enumerate() {
        // Every 7th an hour late (the spells holding it are closed), every 5th two minutes.
        let delay = match (i % 7, i % 5) {
            (0, _) => HOUR,
            (_, 0) => 2 * MINUTE,
            _ => 0,
        };
        delayed += usize::from(delay > 0);
        queue.push((t.at + delay, t.clone()));
        queue.sort_by_key(|(due, _)| std::cmp::Reverse(*due));
        while queue.last().is_some_and(|(due, _)| *due <= t.at) {
            let (_, due) = queue.pop().unwrap();
            late.record(due, &cfg);
        }
    }
    for (_, t) in queue.into_iter().rev() {
        late.record(t, &cfg);
    }
    assert!(delayed > 2_000, "{delayed}");
    assert_eq!(late.len_of("mm"), in_time.len_of("mm"));
    // Older than the window and its epoch: not counted.
    late.record(trade("mm", T0 - DAY, "AVAX/USDT", 900_000_000, 0), &cfg);
    assert_eq!(late.len_of("mm"), in_time.len_of("mm"));
    let (a, b) = (&in_time.by_client["mm"], &late.by_client["mm"]);
    for at in [T0 + 14 * DAY, T0 + 14 * DAY + 7 * MINUTE, T0 + 20 * DAY] {
        let horizon = at - cfg.window;
        assert_eq!(a.spells(at, horizon), b.spells(at, horizon), "{at}");
        assert_eq!(a.spread_live(horizon), b.spread_live(horizon), "{at}");
    }
    let now = T0 + 14 * DAY + 10 * HOUR;
    for probe in [
        trade("mm", now, "AVAX/USDT", 500_000, 0),
        trade("mm", now, "BTC/USDT", 50_000_000, 0),
        trade("mm", now, "SOL/USDT", 500_000, 1_000),
        trade("mm", T0 + 29 * DAY, "BTC/USDT", 100_000_000, 0),
    ] {
        assert_eq!(
            examine_trade(&cfg, &in_time, &probe),
            examine_trade(&cfg, &late, &probe)
        );
    }
}

mod props {
    use super::*;
    use proptest::prelude::*;

    /// A short window and spell, so that random trades overlap, expire and burst.
    fn small_cfg() -> TradeDetectorConfig {
        TradeDetectorConfig {
            window: 2 * HOUR,
            velocity_window: 10 * MINUTE,
            min_samples: 3,
            velocity_min_count: 3,
            dormant_min_usd_cents: 1_000,
            ..TradeDetectorConfig::default()
        }
    }

    fn trades(max: usize) -> impl Strategy<Value = Vec<TradeDone>> {
        prop::collection::vec(
            (
                0i64..3 * 3_600,
                0usize..2,
                0usize..3,
                0i64..5_000,
                -100i64..3_000,
            ),
            0..max,
        )
        .prop_map(|v| {
            v.into_iter()
                .map(|(second, client, pair, usd, dev)| TradeDone {
                    at: T0 + second * SECOND,
                    client: ["a", "b"][client].into(),
                    venue: "binance".into(),
                    instrument: PAIRS[pair].into(),
                    side: Side::Buy,
                    usd_cents: usd,
                    deviation_bps: dev,
                })
                .collect()
        })
    }

    fn sorted(mut v: Vec<TradeDone>) -> Vec<TradeDone> {
        v.sort_by_key(|t| t.at);
        v
    }

    fn median_brute(mut v: Vec<i64>) -> Option<i64> {
        v.sort_unstable();
        (!v.is_empty()).then(|| crate::detect::median(&v))
    }

    /// The histogram against the binned trades of the held epochs, and against the exact
    /// median and MAD of the same trades.
    fn check_sizes(
        c: &ClientTrades,
        v: &[TradeDone],
        cfg: &TradeDetectorConfig,
        latest: Millis,
        horizon: Millis,
    ) -> Result<(), TestCaseError> {
        let epoch = |at: Millis| at.div_euclid(cfg.window / sizes::EPOCHS);
        let held = v
            .iter()
            .filter(|t| epoch(t.at) >= epoch(latest - cfg.window));
        prop_assert_eq!(c.sizes.held(), held.count() as u64);
        let live: Vec<i64> = v
            .iter()
            .filter(|t| epoch(t.at) >= epoch(horizon))
            .map(|t| t.usd_cents)
            .collect();
        let spread = c.spread_live(horizon);
        let Some(exact_m) = median_brute(live.clone()) else {
            prop_assert_eq!(spread, None);
            return Ok(());
        };
        let Some(spread) = spread else {
            return Err(TestCaseError::fail("no spread for live trades"));
        };
        let bins: Vec<i64> = live.iter().map(|x| sizes::bin_of(*x)).collect();
        let lo = median_brute(bins.clone()).unwrap();
        let hi = median_brute(bins.iter().map(|b| sizes::bin_top(*b)).collect()).unwrap();
        let least = bins
            .iter()
            .map(|b| (b - hi).max(lo - sizes::bin_top(*b)).max(0))
            .collect();
        prop_assert_eq!(
            spread,
            sizes::Spread {
                median: lo,
                mad: median_brute(least).unwrap()
            }
        );
        let exact_mad = median_brute(live.iter().map(|x| (x - exact_m).abs()).collect()).unwrap();
        prop_assert!(spread.median <= exact_m && spread.mad <= exact_mad);
        Ok(())
    }

    /// The slots against the documented spells computed over the trades, and against the exact
    /// spells of `velocity_window`.
    fn check_spells(
        c: &ClientTrades,
        v: &[TradeDone],
        cfg: &TradeDetectorConfig,
        now: Millis,
        horizon: Millis,
    ) -> Result<(), TestCaseError> {
        let spell = cfg.velocity_window;
        let g = c.slots.grain_len();
        let per = spell / g;
        let slot = |at: Millis| at.div_euclid(g);
        let total = |ts: &mut dyn Iterator<Item = &TradeDone>| {
            ts.fold((0u64, 0i128), |(n, v), t| {
                (n + 1, v + i128::from(t.usd_cents))
            })
        };
        let in_slots = |from: i64, to: i64| {
            total(&mut v.iter().filter(move |t| (from..=to).contains(&slot(t.at))))
        };
        let in_time = |from: Millis, to: Millis| {
            total(&mut v.iter().filter(move |t| t.at >= from && t.at <= to))
        };
        let s = c.spells(now, horizon);
        let recent_from = slot(now - spell + 1);
        let recent = in_slots(recent_from, slot(now));
        prop_assert_eq!((s.recent_count, s.recent_cents), recent);
        prop_assert_eq!(s.earlier, in_slots(slot(horizon), slot(now - spell)).0);
        let first_end = (horizon + spell + g - 1).div_euclid(g);
        let ends = v
            .iter()
            .map(|t| slot(t.at))
            .filter(|x| *x >= first_end && *x < recent_from);
        let spells: Vec<(u64, i128)> = ends.map(|x| in_slots(x - per + 1, x)).collect();
        prop_assert_eq!(
            s.busiest_count,
            spells.iter().map(|x| x.0).max().unwrap_or(0)
        );
        prop_assert_eq!(
            s.busiest_cents,
            spells.iter().map(|x| x.1).max().unwrap_or(0)
        );
        // Never less suspicious than the exact spells.
        let exact_recent = in_time(now - spell + 1, now);
        prop_assert!(s.recent_count >= exact_recent.0 && s.recent_cents >= exact_recent.1);
        prop_assert!(s.earlier >= in_time(horizon, now - spell).0);
        let exact: Vec<(u64, i128)> = v
            .iter()
            .filter(|t| t.at >= horizon + spell && t.at <= now - spell)
            .map(|t| in_time(t.at - spell + 1, t.at))
            .collect();
        prop_assert!(s.busiest_count <= exact.iter().map(|x| x.0).max().unwrap_or(0));
        prop_assert!(s.busiest_cents <= exact.iter().map(|x| x.1).max().unwrap_or(0));
        Ok(())
    }

    proptest! {
        #[test]
        fn examine_never_panics(
            raw in prop::collection::vec(
                (any::<i64>(), any::<i64>(), any::<i64>(), 0usize..3), 0..40),
            window in 1i64..=i64::MAX,
            spell in 1i64..=i64::MAX,
            factor in any::<i64>(),
            min in 0usize..5,
            bps in any::<i64>(),
            far in any::<i64>(),
            since in any::<i64>(),
        ) {
            let cfg = TradeDetectorConfig {
                window,
                velocity_window: spell,
                velocity_factor: factor,
                velocity_min_count: min,
                min_samples: min,
                off_market_bps: bps,
                off_market_far_bps: far,
                size_factor: Decimal::MAX,
                ..TradeDetectorConfig::default()
            };
            let mut h = TradeHistory::default();
            h.complete_since(since);
            for (at, usd, dev, pair) in raw {
                let t = trade("x", at, PAIRS[pair], usd, dev);
                let _ = examine_trade(&cfg, &h, &t);
                let _ = examine_trade(&TradeDetectorConfig::default(), &h, &t);
                h.record(t, &cfg);
            }
        }

        /// Whatever order trades are recorded in (another instance's may come late), the
        /// detectors say the same of the next one.
        #[test]
        fn recording_order_does_not_matter(
            (v, shuffled) in trades(60).prop_flat_map(|v| (Just(v.clone()), Just(v).prop_shuffle())),
            probes in trades(6),
        ) {
            let cfg = small_cfg();
            let mut a = TradeHistory::default();
            let mut b = TradeHistory::default();
            a.complete_since(T0);
            b.complete_since(T0);
            for t in sorted(v) {
                a.record(t, &cfg);
            }
            for t in shuffled {
                b.record(t, &cfg);
            }
            for client in ["a", "b"] {
                prop_assert_eq!(a.len_of(client), b.len_of(client));
            }
            for p in probes {
                prop_assert_eq!(examine_trade(&cfg, &a, &p), examine_trade(&cfg, &b, &p));
            }
        }

        /// The bounded aggregates equal a computation from scratch of what they approximate
        /// (docs/detection.md#trade-detectors), at any time after the latest trade, and are
        /// never less suspicious than the exact values: the recent spell and the baseline at
        /// least the exact ones, the busiest spell, the median and the MAD at most.
        #[test]
        fn aggregates_match_a_computation_from_scratch(
            v in trades(80),
            later in prop_oneof![0i64..1_200, 0i64..4 * 3_600],
        ) {
            let cfg = small_cfg();
            let mut h = TradeHistory::default();
            let v: Vec<TradeDone> = sorted(v).into_iter().filter(|t| t.client == "a").collect();
            for t in &v {
                h.record(t.clone(), &cfg);
            }
            let Some(latest) = v.last().map(|t| t.at) else {
                return Ok(());
            };
            let now = latest + later * SECOND;
            let horizon = now - cfg.window;
            let c = &h.by_client["a"];
            check_sizes(c, &v, &cfg, latest, horizon)?;
            check_spells(c, &v, &cfg, now, horizon)?;
            for pair in PAIRS {
                let seen = v.iter().any(|t| t.at >= horizon && t.instrument == pair);
                let p = trade("a", now, pair, 1, 0);
                prop_assert_eq!(new_instrument(&cfg, Some(c), &p, horizon).is_none(), seen);
            }
        }

        #[test]
        fn halves_give_the_median_and_ranks_without_removed_values(
            values in prop::collection::vec(-50i64..50, 1..60),
            remove in prop::collection::vec(any::<prop::sample::Index>(), 0..20),
        ) {
            let mut halves = Halves::default();
            for v in &values {
                halves.insert(*v);
            }
            prop_assert_eq!(halves.median(), median_brute(values.clone()));
            // Remove a few (with repeats collapsed), then rank what is left.
            let mut idx: Vec<usize> = remove.iter().map(|i| i.index(values.len())).collect();
            idx.sort_unstable();
            idx.dedup();
            let mut removed: BTreeMap<i64, usize> = BTreeMap::new();
            for i in &idx {
                *removed.entry(values[*i]).or_default() += 1;
            }
            let mut left: Vec<i64> = values
                .iter()
                .enumerate()
                .filter(|(i, _)| idx.binary_search(i).is_err())
                .map(|(_, v)| *v)
                .collect();
            left.sort_unstable();
            for (rank, v) in left.iter().enumerate() {
                prop_assert_eq!(halves.nth_without(rank, &removed), Some(*v));
            }
            prop_assert_eq!(halves.nth_without(left.len(), &removed), None);
            // And removing them for real leaves the same median.
            for i in &idx {
                halves.remove(values[*i]);
            }
            prop_assert_eq!(halves.median(), median_brute(left));
        }
    }
}
