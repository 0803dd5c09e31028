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
    // The first attack order is refused at once.
    assert_eq!(r["first_deny_t"], "2022-10-18T12:00:11Z");
    assert_eq!(r["first_deny"]["attack_events"], 1);
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
}
