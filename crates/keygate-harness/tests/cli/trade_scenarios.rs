//! The trade-abuse scenarios (scenarios/3commas-2022 and binance-2018): the committed files are
//! the generator's output, and their replays stop the attack trades (at most 2% allowed) with no
//! normal event denied, held or frozen, deterministically.

use std::path::{Path, PathBuf};

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

/// Replays a committed scenario in-process twice: the same report both times. Returns it.
fn replay(kg: &mut Kg, name: &str) -> (String, serde_json::Value) {
    let dir = kg.tmp.path().to_path_buf();
    let (a, b) = (dir.join("a.json"), dir.join("b.json"));
    let path = scenario(name);
    let s = path.to_str().unwrap();
    let out = kg.ok(&["replay", s, "--report", a.to_str().unwrap()], None);
    kg.ok(&["replay", s, "--report", b.to_str().unwrap()], None);
    assert_eq!(std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap());
    let r = serde_json::from_slice(&std::fs::read(&a).unwrap()).unwrap();
    (out, r)
}

/// The must-show: attack trades allowed at most 2% of attack trades, and no false positive.
fn assert_stopped_without_false_positives(r: &serde_json::Value) {
    let trades = r["attack_trades"].as_u64().unwrap();
    let allowed = r["attack_trades_allowed"].as_u64().unwrap();
    assert!(
        allowed * 50 <= trades,
        "{allowed} of {trades} attack trades allowed"
    );
    assert_eq!(r["normal_denied"], 0, "{r}");
    assert_eq!(r["normal_held"], 0, "{r}");
    assert_eq!(r["normal_frozen"], 0, "{r}");
    // Trades move nothing out of the account: the value figures stay at zero.
    assert_eq!(r["attack_attempted_usd"], "0.00");
    assert_eq!(r["attack_allowed_usd"], "0.00");
}

#[test]
fn the_committed_trade_scenarios_are_the_generators_output() {
    for name in ["3commas-2022", "binance-2018"] {
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
fn the_3commas_replay_stops_the_dmg_buys_without_false_positives() {
    let mut kg = Kg::new();
    let (out, r) = replay(&mut kg, "3commas-2022");
    assert_eq!(r["scenario"], "3commas-2022");
    assert!(
        out.contains("attack trades                 0 of 5400 allowed (0.00%)"),
        "{out}"
    );
    assert_stopped_without_false_positives(&r);
    // 5,000 buys of $320 and 400 of $5,018: the record's $1.6M and 104 BTC.
    assert_eq!(r["attack_trades"], 5_400);
    assert_eq!(cents(&r["attack_trade_notional_usd"]), 360_720_000);
    assert_eq!(cents(&r["attack_trade_notional_allowed_usd"]), 0);
    assert!(r["normal"]["events"].as_u64().unwrap() > 10_000);
    // The first attack order is refused at once, and its client frozen by off_market (a buy
    // at 3-10 times the market); the other desk's first DMG buy freezes it too.
    assert_eq!(r["first_deny_t"], "2022-10-18T12:00:11Z");
    assert_eq!(r["first_deny"]["attack_events"], 1);
    assert_eq!(r["first_freeze_t"], "2022-10-18T12:00:11Z");
    let freezes: Vec<(&str, &str)> = r["freezes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| (f["scope"].as_str().unwrap(), f["by"].as_str().unwrap()))
        .collect();
    assert_eq!(
        freezes,
        [
            ("client:mm-ftx-b", "detector:off_market"),
            ("client:mm-ftx-a", "detector:off_market"),
        ]
    );
    assert_eq!(r["attack"]["frozen"], 5_400);
    // Every limit buy is off the market; the 40 market buys name no price.
    assert_eq!(r["detector_hits"]["off_market"]["attack"], 5_360);
    assert_eq!(r["detector_hits"]["off_market"]["normal"], 0);
    // new_instrument only alerts: the bots' first orders in each instrument.
    assert_eq!(r["detector_hits"]["new_instrument"]["normal"], 9);
}

#[test]
fn the_binance_2018_replay_stops_the_via_pump_without_false_positives() {
    let mut kg = Kg::new();
    let (_, r) = replay(&mut kg, "binance-2018");
    assert_eq!(r["scenario"], "binance-2018");
    assert_stopped_without_false_positives(&r);
    // Eleven market sells of the holding accounts' coins, 90 market buys of VIA/BTC with the
    // proceeds, and 30 by the market maker that quotes VIA/BTC.
    assert_eq!(r["attack_trades"], 131);
    assert_eq!(r["attack_trades_allowed"], 0);
    let notional = cents(&r["attack_trade_notional_usd"]);
    assert!((200_000_000..210_000_000).contains(&notional), "{notional}");
    assert!(r["normal"]["events"].as_u64().unwrap() > 13_000);
    assert_eq!(r["first_deny_t"], "2018-03-07T14:58:00Z");
    // The holding accounts' large orders wake them: dormant_wake (a hold; the policies deny
    // them first). No normal event is taken for one.
    assert!(
        r["detector_hits"]["dormant_wake"]["attack"]
            .as_u64()
            .unwrap()
            >= 11,
        "{r}"
    );
    assert_eq!(r["detector_hits"]["dormant_wake"]["normal"], 0);
    for d in ["trade_size_jump", "trade_velocity", "off_market"] {
        assert!(
            r["detector_hits"][d]["normal"].as_u64().unwrap_or(0) == 0,
            "{d}: {r}"
        );
    }
}

/// A committed scenario with only the events `keep` keeps, written beside its config and
/// policies (the policies without the rule `drop_rule`, if one is named) in `dir`.
fn variant(
    dir: &Path,
    name: &str,
    drop_rule: Option<&str>,
    keep: impl Fn(usize, &serde_json::Value) -> bool,
) -> PathBuf {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scenarios");
    std::fs::copy(
        repo.join(format!("{name}.toml")),
        dir.join(format!("{name}.toml")),
    )
    .unwrap();
    let policies = std::fs::read_to_string(repo.join(format!("{name}.cedar"))).unwrap();
    let policies: Vec<&str> = policies
        .split("\n\n")
        .filter(|p| drop_rule.is_none_or(|r| !p.contains(&format!("@id(\"{r}\")"))))
        .collect();
    assert_eq!(
        policies.len() + usize::from(drop_rule.is_some()),
        std::fs::read_to_string(repo.join(format!("{name}.cedar")))
            .unwrap()
            .split("\n\n")
            .count(),
        "the rule to drop is in the policies"
    );
    std::fs::write(dir.join(format!("{name}.cedar")), policies.join("\n\n")).unwrap();
    let text = std::fs::read_to_string(scenario(name)).unwrap();
    let mut lines = text.lines();
    let mut out = vec![lines.next().unwrap().to_string()];
    for (i, l) in lines.enumerate() {
        if keep(i, &serde_json::from_str(l).unwrap()) {
            out.push(l.to_string());
        }
    }
    let path = dir.join(format!("{name}.jsonl"));
    std::fs::write(&path, out.join("\n") + "\n").unwrap();
    path
}

#[test]
fn without_the_market_order_rule_the_detectors_alone_hold_the_via_buys() {
    // The fund's rule that market orders are small hedges refuses every market buy of VIA;
    // without it, the trade detectors still keep the attack to 2%: trade_velocity holds the
    // burst of market buys, dormant_wake the holding accounts' sales.
    let mut kg = Kg::new();
    let dir = kg.tmp.path().to_path_buf();
    let path = variant(
        &dir,
        "binance-2018",
        Some("market-orders-are-small-hedges"),
        |_, _| true,
    );
    let report = dir.join("r.json");
    kg.ok(
        &[
            "replay",
            path.to_str().unwrap(),
            "--report",
            report.to_str().unwrap(),
        ],
        None,
    );
    let r: serde_json::Value = serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
    assert_stopped_without_false_positives(&r);
    assert!(r["attack_trades_allowed"].as_u64().unwrap() > 0, "{r}");
    assert!(r["attack"]["held"].as_u64().unwrap() >= 20, "{r}");
    assert!(
        r["detector_hits"]["trade_velocity"]["attack"]
            .as_u64()
            .unwrap()
            >= 20,
        "{r}"
    );
    assert_eq!(r["detector_hits"]["trade_velocity"]["normal"], 0);
}

/// Which events of a scenario a part keeps: by position and content.
type Keep = dyn Fn(usize, &serde_json::Value) -> bool;

#[test]
fn the_trade_scenarios_through_the_gateway_report_what_in_process_reports() {
    // Parts of each scenario, so the test stays short: the gateway sends every order as the
    // venue's order request to the simulator, whose books are the header's instruments.
    let parts: [(&str, Box<Keep>); 2] = [
        (
            "3commas-2022",
            Box::new(|i, e| {
                let attack = e["label"] == "attack";
                (!attack && i % 20 == 0) || (attack && (e["client"] == "mm-ftx-b" || i % 50 == 0))
            }),
        ),
        (
            "binance-2018",
            Box::new(|i, e| {
                let holder = e["client"].as_str().unwrap().starts_with("hold-");
                holder || e["label"] == "attack" || i % 20 == 0
            }),
        ),
    ];
    for (name, keep) in parts {
        let mut kg = Kg::new();
        let dir = kg.tmp.path().to_path_buf();
        let path = variant(&dir, name, None, keep);
        let mut reports = vec![];
        for gateway in [false, true] {
            let out = dir.join(format!("{gateway}.json"));
            let mut args = vec![
                "replay",
                path.to_str().unwrap(),
                "--report",
                out.to_str().unwrap(),
            ];
            if gateway {
                args.push("--through-gateway");
            }
            kg.ok(&args, None);
            let mut r: serde_json::Value =
                serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
            r["mode"] = serde_json::Value::Null;
            reports.push(r);
        }
        assert_eq!(
            reports[0], reports[1],
            "{name}: in-process and gateway disagree"
        );
        let r = &reports[0];
        assert!(r["attack_trades"].as_u64().unwrap() > 100, "{name}: {r}");
        assert_stopped_without_false_positives(r);
        assert!(r["normal"]["events"].as_u64().unwrap() > 500, "{name}: {r}");
    }
}
