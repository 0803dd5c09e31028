//! The Kronos theft with the keys used around keygate (scenarios/kronos-2023-around and
//! kronos-2023-wallet, version 3): the committed files are the generator's output, and on each
//! venue the attacker gets no more than the first outflow plus what leaves before containment
//! takes effect (reconciliation's `detect` and containment's latency after it: stated in the
//! header in-process, measured at the simulator through the gateway); the rest is swept, or
//! rescued on chain.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use keygate_core::price::PriceTable;
use keygate_core::replay::{Event, Header, Label, parse};

use crate::util::Kg;

fn scenario(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("../../scenarios/{name}.jsonl"))
}

/// USD as the report writes it ("123.45"), in cents.
fn cents(v: &serde_json::Value) -> i64 {
    let s = v.as_str().expect("USD amounts are decimal strings");
    let (whole, frac) = s.split_once('.').unwrap();
    whole.parse::<i64>().unwrap() * 100 + frac.parse::<i64>().unwrap()
}

/// Per venue: the attack's outflows, (time, USD cents), in order, from the scenario itself.
fn attack_outflows(header: &Header, events: &[Event]) -> BTreeMap<String, Vec<(i64, i64)>> {
    let mut prices = PriceTable::new(i64::MAX);
    for (a, p) in &header.prices {
        prices.pin(a, *p);
    }
    let mut out: BTreeMap<String, Vec<(i64, i64)>> = BTreeMap::new();
    for e in events {
        if let Event::Outflow(o) = e
            && o.label == Label::Attack
        {
            let usd = prices.usd_cents(&o.asset, o.amount, 0).unwrap();
            out.entry(o.venue.clone()).or_default().push((o.t, usd));
        }
    }
    out
}

/// The bound of the must-show, per venue: the first outflow, plus every later one before the
/// containment takes effect (`detect` + `latency` after the first, the latency as the report
/// gives it: stated, or measured). Returns the first outflow's value and the bound.
fn bound(header: &Header, outflows: &[(i64, i64)], venue: &str, latency_ms: i64) -> (i64, i64) {
    let plan = header.containment[venue];
    let (t0, first) = outflows[0];
    let effective = t0 + plan.detect + latency_ms;
    let before: i64 = outflows[1..]
        .iter()
        .filter(|(t, _)| *t < effective)
        .map(|(_, v)| v)
        .sum();
    (first, first + before)
}

/// Replays a committed scenario (in-process, or through the gateway) and checks every venue
/// against the bound; returns the report.
fn check(name: &str, gateway: bool) -> serde_json::Value {
    let mut kg = Kg::new();
    let path = scenario(name);
    let text = std::fs::read_to_string(&path).unwrap();
    let (header, events) = parse(&text).unwrap();
    let report = kg.tmp.path().join("r.json");
    let mut args = vec![
        "replay",
        path.to_str().unwrap(),
        "--report",
        report.to_str().unwrap(),
    ];
    if gateway {
        args.push("--through-gateway");
    }
    let out = kg.ok(&args, None);
    assert!(out.contains("value at the venues (USD)"), "{out}");
    let r: serde_json::Value = serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
    assert_eq!(r["normal_denied"], 0, "{r}");
    assert_eq!(r["normal_frozen"], 0, "{r}");
    let venues = &r["value"]["venues"];
    let outflows = attack_outflows(&header, &events);
    let mut lost_total = 0;
    for (venue, outs) in &outflows {
        let v = &venues[venue];
        let stated = header.containment[venue].latency;
        let latency = v["latency_ms"].as_i64().unwrap();
        if gateway && v["how"] == "sweep" {
            // Measured at the simulator: real round trips, far below the stated 5 s.
            assert!(latency > 0 && latency < stated, "{venue}: {latency} ms");
        } else {
            assert_eq!(latency, stated, "{venue}");
        }
        let (first, limit) = bound(&header, outs, venue, latency);
        let lost = cents(&v["lost_usd"]);
        assert!(
            lost <= limit,
            "{venue}: lost {lost} cents, more than the first outflow and what left before containment ({limit})"
        );
        assert!(
            lost >= first,
            "{venue}: the first outflow left: {lost} < {first}"
        );
        let attempted: i64 = outs.iter().map(|(_, v)| v).sum();
        let refused = cents(&v["blocked_by_containment_usd"]);
        assert_eq!(
            lost + refused + cents(&v["blocked_for_funds_usd"]),
            attempted,
            "{venue}: every attack outflow is got or refused"
        );
        assert!(refused > 0, "{venue}: containment refused the rest");
        assert!(v["contained_at"].is_string(), "{venue}: {v}");
        lost_total += lost;
    }
    assert_eq!(cents(&r["value"]["total"]["lost_usd"]), lost_total);
    assert_eq!(cents(&r["attack_allowed_usd"]), lost_total);
    r
}

#[test]
fn the_committed_around_scenarios_are_the_generators_output() {
    for name in ["kronos-2023-around", "kronos-2023-wallet"] {
        let mut kg = Kg::new();
        let out = kg.ok(&["scenario", name], None);
        let committed = std::fs::read_to_string(scenario(name)).unwrap();
        assert!(
            out == committed,
            "scenarios/{name}.jsonl differs from `keygate-harness scenario {name}`; regenerate it with `cargo run -p keygate-harness -- scenario {name} > scenarios/{name}.jsonl`"
        );
    }
}

#[test]
fn keys_used_around_keygate_lose_only_what_leaves_before_containment() {
    let r = check("kronos-2023-around", false);
    let v = &r["value"]["venues"];
    // Each venue loses its first outflow only: the test, OKX's, BTSE's and Deepcoin's first
    // withdrawal, and one of the 20 WOO transfers.
    assert_eq!(v["binance-main"]["lost_usd"], "72.00");
    assert_eq!(v["okx-main"]["lost_usd"], "150000.00");
    assert_eq!(v["btse-main"]["lost_usd"], "100000.00");
    assert_eq!(v["deepcoin-main"]["lost_usd"], "125000.00");
    assert_eq!(v["bsc-hot"]["lost_usd"], "99999.90");
    // What is left is swept to the masters (and rescued on BSC): the opening less what was
    // lost and what the bots' own day moved.
    assert_eq!(v["binance-main"]["how"], "sweep");
    assert!(cents(&v["binance-main"]["saved_usd"]) > 2_400_000_000);
    assert!(cents(&r["value"]["total"]["saved_usd"]) > 2_500_000_000);
    assert_eq!(v["bsc-hot"]["rescued_usd"], "2236580.10");
    // The Kronos record's ~$26M attempted, less than 2% of it got.
    let attempted = cents(&r["attack_attempted_usd"]);
    assert!(attempted > 2_500_000_000);
    assert!(cents(&r["attack_allowed_usd"]) * 50 < attempted);
}

#[test]
fn a_hot_wallet_key_used_on_chain_is_rescued_after_one_transfer() {
    let r = check("kronos-2023-wallet", false);
    let hot = &r["value"]["venues"]["bsc-hot"];
    assert_eq!(hot["how"], "rescue");
    // 370,370 WOO at $0.27 left before the rescue, mined a block after the watcher saw it;
    // the rest of the wallet went to rescue_to and the 19 later WOO, the WBNB and the BNB
    // transfers failed for lack of funds.
    assert_eq!(hot["lost_usd"], "99999.90");
    assert_eq!(hot["rescued_usd"], "2236580.10");
    assert_eq!(hot["saved_usd"], "0.00");
    assert_eq!(hot["contained_at"], "2023-11-18T17:15:06Z");
    assert_eq!(r["value"]["outflows_blocked"], 21);
}

#[test]
fn through_the_gateway_containment_takes_the_measured_round_trips() {
    let r = check("kronos-2023-around", true);
    assert_eq!(r["mode"], "gateway");
    let v = &r["value"]["venues"];
    assert_eq!(v["binance-main"]["lost_usd"], "72.00");
    assert_eq!(v["bsc-hot"]["rescued_usd"], "2236580.10");
}

#[test]
fn a_containment_that_does_not_fit_the_venue_is_refused_and_nothing_is_written() {
    let mut kg = Kg::new();
    let dir = kg.tmp.path().to_path_buf();
    let text = std::fs::read_to_string(scenario("kronos-2023-wallet")).unwrap();
    let config = scenario("kronos-2023-wallet").with_extension("toml");
    let cedar = scenario("kronos-2023").with_extension("cedar");
    std::fs::copy(&config, dir.join("w.toml")).unwrap();
    std::fs::copy(&cedar, dir.join("kronos-2023.cedar")).unwrap();
    let report = dir.join("r.json");
    for (from, to, expect) in [
        (
            r#""how":"rescue""#,
            r#""how":"sweep""#,
            "bsc-hot is not an exchange venue of the config",
        ),
        (
            r#""balances":{"bsc-hot""#,
            r#""balances":{"bsc hot":{},"bsc-hot""#,
            "\"bsc hot\" is not a venue name",
        ),
        (
            r#""balances":{"bsc-hot""#,
            r#""balances":{"empty":{},"bsc-hot""#,
            "",
        ),
        (
            r#""version":3"#,
            r#""version":2"#,
            "need a version-3 header",
        ),
        (
            r#""detect":"3s""#,
            r#""detect":"3""#,
            "containment of bsc-hot: detect",
        ),
    ] {
        assert!(text.contains(from), "{from}");
        let bad = dir.join("w.jsonl");
        std::fs::write(&bad, text.replacen(from, to, 1)).unwrap();
        let args = [
            "replay",
            bad.to_str().unwrap(),
            "--report",
            report.to_str().unwrap(),
        ];
        if expect.is_empty() {
            // A followed venue with nothing in it is fine: it only has nothing to lose.
            kg.ok(&args, None);
            std::fs::remove_file(&report).unwrap();
            continue;
        }
        let err = kg.fails(&args, None);
        assert!(err.contains(expect), "{expect}: {err}");
        assert!(!err.contains("panicked"), "{err}");
        assert!(!report.exists(), "{expect}: a report was written");
    }
}
