//! `keygate-harness replay`, `demo` and `scenario` (moved from crates/keygate/tests/cli/replay.rs): the committed Kronos scenario is the generator's
//! output, its replay is deterministic and stops the attack with no false positive, and bad
//! scenarios are refused with the line that is wrong.

use std::path::{Path, PathBuf};

use crate::util::Kg;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn kronos() -> PathBuf {
    repo().join("scenarios/kronos-2023.jsonl")
}

fn report(path: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

/// USD as the report writes it ("123.45"), in cents.
fn cents(v: &serde_json::Value) -> i64 {
    let s = v.as_str().expect("USD amounts are decimal strings");
    let (whole, frac) = s.split_once('.').unwrap();
    whole.parse::<i64>().unwrap() * 100 + frac.parse::<i64>().unwrap()
}

#[test]
fn the_committed_kronos_scenario_is_the_generators_output() {
    let mut kg = Kg::new();
    let out = kg.ok(&["scenario", "kronos-2023"], None);
    let committed = std::fs::read_to_string(kronos()).unwrap();
    assert!(
        out == committed,
        "scenarios/kronos-2023.jsonl differs from `keygate scenario kronos-2023`; regenerate it with `cargo run -p keygate-harness -- scenario kronos-2023 > scenarios/kronos-2023.jsonl`"
    );
}

#[test]
fn kronos_replay_stops_the_attack_without_false_positives_and_is_deterministic() {
    let mut kg = Kg::new();
    let dir = kg.tmp.path().to_path_buf();
    let (a, b, chart) = (dir.join("a.json"), dir.join("b.json"), dir.join("c.svg"));
    let scenario = kronos();
    let s = scenario.to_str().unwrap();
    let out = kg.ok(
        &[
            "replay",
            s,
            "--report",
            a.to_str().unwrap(),
            "--chart",
            chart.to_str().unwrap(),
        ],
        None,
    );
    assert!(
        out.contains("attack value allowed          USD 72.00"),
        "{out}"
    );
    kg.ok(&["replay", s, "--report", b.to_str().unwrap()], None);
    assert_eq!(std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap());

    let r = report(&a);
    assert_eq!(r["scenario"], "kronos-2023");
    assert_eq!(r["mode"], "in-process");
    assert!(r["events"].as_u64().unwrap() > 13_000);
    // Attempted: the record's ~$26M; allowed: the 72 USDT test and nothing else.
    let attempted = cents(&r["attack_attempted_usd"]);
    assert!(
        (2_590_000_000..2_610_000_000).contains(&attempted),
        "{attempted}"
    );
    assert_eq!(cents(&r["attack_allowed_usd"]), 7_200);
    assert!(cents(&r["attack_allowed_usd"]) <= 10_000_000);
    assert_eq!(r["normal_denied"], 0);
    assert_eq!(r["normal_held"], 0);
    assert_eq!(r["normal_frozen"], 0);
    // The 2.4M withdrawal 15 minutes after the test is the first deny, and freezes the bot.
    assert_eq!(r["first_deny_t"], "2023-11-18T17:02:00Z");
    assert_eq!(r["first_freeze_t"], "2023-11-18T17:02:00Z");
    assert_eq!(r["first_hold_t"], serde_json::Value::Null);
    assert_eq!(r["freezes"][0]["scope"], "client:mm-binance");
    assert_eq!(r["freezes"][0]["by"], "detector:test_then_drain");
    assert!(
        r["detector_hits"]["test_then_drain"]["attack"]
            .as_u64()
            .unwrap()
            >= 1
    );
    assert_eq!(r["detector_hits"]["test_then_drain"]["normal"], 0);
    assert_eq!(r["detector_hits"]["size_jump"]["normal"], 0);
    let svg = std::fs::read_to_string(&chart).unwrap();
    assert!(svg.starts_with("<svg") && svg.contains("freeze client:mm-binance"));
}

const CONFIG: &str = r#"
[policy]
files = ["p.cedar"]
[prices]
max_age = "15m"
[address_book]
cooldown = "1h"
[[limits]]
name = "per-client-1h"
client = "*"
window = "1h"
max_usd = "100000"
[detectors]
window = "14d"
[containment]
unapproved_outflow = "all"
[venues.binance-main]
kind = "binance"
base_url = "http://127.0.0.1:9"
[[scenario.clients]]
name = "bot"
venues = ["binance-main"]
actions = ["read", "trade", "withdraw"]
cidrs = ["127.0.0.1/32"]
[[scenario.destinations]]
venue = "binance-main"
asset = "USDT"
address = "0x00000000000000000000000000000000000000aa"
label = "cold"
added = "2024-01-01T00:00:00Z"
"#;

const POLICY: &str = r#"permit (principal, action, resource);"#;

const HEADER: &str = r#"{"scenario":"t","version":1,"start":"2024-01-02T00:00:00Z","prices":{"USDT":"1","BTC":"40000.5"}}"#;

fn line(t: &str, rest: &str) -> String {
    format!(r#"{{"t":"2024-01-02T{t}Z",{rest}}}"#)
}

fn withdraw(t: &str, amount: &str, label: &str) -> String {
    line(
        t,
        &format!(
            r#""kind":"request","client":"bot","venue":"binance-main","action":"withdraw","asset":"USDT","amount":"{amount}","to":"0x00000000000000000000000000000000000000aa","source_ip":"127.0.0.1","label":"{label}""#
        ),
    )
}

fn outflow(t: &str, amount: &str, tx: &str, label: &str) -> String {
    line(
        t,
        &format!(
            r#""kind":"outflow","venue":"binance-main","asset":"USDT","amount":"{amount}","to":"0x00000000000000000000000000000000000000aa","tx":"{tx}","label":"{label}""#
        ),
    )
}

fn setup(kg: &Kg, lines: &[String]) -> (PathBuf, PathBuf) {
    setup_with(kg, CONFIG, lines)
}

fn setup_with(kg: &Kg, config: &str, lines: &[String]) -> (PathBuf, PathBuf) {
    let dir = kg.tmp.path();
    std::fs::write(dir.join("t.toml"), config).unwrap();
    std::fs::write(dir.join("p.cedar"), POLICY).unwrap();
    let scenario = dir.join("t.jsonl");
    std::fs::write(&scenario, format!("{HEADER}\n{}\n", lines.join("\n"))).unwrap();
    (scenario, dir.join("r.json"))
}

#[test]
fn an_outflow_around_keygate_freezes_everything_in_process_and_through_the_gateway() {
    for (containment, credential, scope) in [
        ("all", "", "all"),
        (
            "credential",
            "credential = \"binance-key\"\n",
            "credential:binance-key",
        ),
    ] {
        let config = CONFIG
            .replace(
                "unapproved_outflow = \"all\"",
                &format!("unapproved_outflow = \"{containment}\""),
            )
            .replace(
                "kind = \"binance\"\n",
                &format!("kind = \"binance\"\n{credential}"),
            );
        outflow_around_keygate(&config, scope);
    }
}

fn outflow_around_keygate(config: &str, scope: &str) {
    let lines = [
        withdraw("10:00:00", "500", "normal"),
        // The leaked key withdraws the same amount to the same address, straight at the
        // venue: reconciliation must not take it for the allowed one.
        outflow("10:02:00", "500", "leak1", "attack"),
        withdraw("10:03:00", "400", "normal"),
    ];
    let mut reports = vec![];
    for gateway in [false, true] {
        let mut kg = Kg::new();
        let (scenario, out) = setup_with(&kg, config, &lines);
        let mut args = vec![
            "replay",
            scenario.to_str().unwrap(),
            "--report",
            out.to_str().unwrap(),
        ];
        if gateway {
            args.push("--through-gateway");
            // This host's settings never reach the replay's own data directory or config.
            kg.env("KEYGATE_STORE_URL", "postgres://nobody@127.0.0.1:1/prod");
            kg.env("KEYGATE_CONTAINMENT_UNAPPROVED_OUTFLOW", "none");
        }
        kg.ok(&args, None);
        let r = report(&out);
        assert_eq!(r["outflows_unapproved"], 1, "gateway {gateway}: {r}");
        assert_eq!(r["outflows_matched"], 0);
        assert_eq!(r["attack_outflow_usd"], "500.00");
        assert_eq!(r["attack_allowed_usd"], "500.00");
        assert_eq!(r["freezes"][0]["scope"], scope, "gateway {gateway}");
        assert_eq!(r["freezes"][0]["by"], "reconciliation");
        // The next normal withdrawal is refused by the freeze: counted against keygate.
        assert_eq!(r["normal_frozen"], 1);
        assert_eq!(r["normal_denied"], 1);
        assert_eq!(r["normal"]["allowed"], 1);
        assert_eq!(r["first_freeze_t"], "2024-01-02T10:02:00Z");
        let mut r = r;
        r["mode"] = serde_json::Value::Null;
        reports.push(r);
    }
    assert_eq!(reports[0], reports[1], "in-process and gateway disagree");
}

#[test]
fn demo_replays_kronos_through_the_gateway_as_in_process_and_its_audit_verifies() {
    let mut kg = Kg::new();
    let dir = kg.tmp.path().join("demo");
    let out = kg.ok(&["demo", "--out", dir.to_str().unwrap()], None);
    assert!(
        out.contains("the attacker would have got USD 72.00"),
        "{out}"
    );
    assert!(out.contains("false positives: 0"), "{out}");
    let gateway = report(&dir.join("report.json"));
    assert_eq!(gateway["mode"], "gateway");
    assert!(cents(&gateway["attack_allowed_usd"]) <= 10_000_000);
    let svg = std::fs::read_to_string(dir.join("chart.svg")).unwrap();
    assert!(svg.starts_with("<svg"));
    // The same outcome, event for event, as the in-process replay of the committed files.
    let local = kg.tmp.path().join("local.json");
    kg.ok(
        &[
            "replay",
            kronos().to_str().unwrap(),
            "--report",
            local.to_str().unwrap(),
        ],
        None,
    );
    let mut local = report(&local);
    local["mode"] = "gateway".into();
    assert_eq!(gateway, local);
    // Every decision the gateway made is in a verifying audit log.
    kg.data = dir.join("data");
    kg.exe = crate::util::keygate();
    let verified = kg.ok(&["audit", "verify"], None);
    assert!(
        verified.contains("verified") || verified.contains("ok"),
        "{verified}"
    );
}

#[test]
fn a_bad_scenario_is_refused_with_its_line_and_nothing_is_written() {
    let cases: &[(&str, Vec<String>, &str)] = &[
        (
            "a JSON number amount",
            vec![withdraw("10:00:00", "500", "normal").replace(r#""500""#, "500")],
            "line 2",
        ),
        (
            "events out of order",
            vec![
                withdraw("10:00:00", "5", "normal"),
                withdraw("09:00:00", "5", "normal"),
            ],
            "time order",
        ),
        (
            "an unknown kind",
            vec![line("10:00:00", r#""kind":"teleport","venue":"v","label":"normal""#)],
            "not one of request, outflow",
        ),
        (
            "an unknown label",
            vec![withdraw("10:00:00", "5", "evil")],
            "line 2",
        ),
        (
            "a withdrawal without a destination",
            vec![withdraw("10:00:00", "5", "normal").replace(
                r#""to":"0x00000000000000000000000000000000000000aa","#,
                "",
            )],
            "names where it goes",
        ),
        (
            "a client the config does not declare",
            vec![withdraw("10:00:00", "5", "normal").replace(r#""client":"bot""#, r#""client":"ghost""#)],
            "client ghost is not declared",
        ),
        (
            "a read with an amount",
            vec![line(
                "10:00:00",
                r#""kind":"request","client":"bot","venue":"binance-main","action":"read","asset":"USDT","amount":"5","source_ip":"127.0.0.1","label":"normal""#,
            )],
            "has no asset or amount",
        ),
        (
            "a trade with a destination",
            vec![line(
                "10:00:00",
                r#""kind":"request","client":"bot","venue":"binance-main","action":"trade","asset":"USDT","amount":"5","to":"0xaa","source_ip":"127.0.0.1","label":"normal""#,
            )],
            "has no destination",
        ),
        (
            "a withdrawal of zero",
            vec![withdraw("10:00:00", "0", "normal")],
            "of zero",
        ),
        (
            "a request without a source address",
            vec![withdraw("10:00:00", "5", "normal").replace(r#""source_ip":"127.0.0.1","#, "")],
            "source_ip",
        ),
        (
            "a request from outside its token's networks",
            vec![withdraw("10:00:00", "5", "normal").replace("127.0.0.1", "127.0.0.2")],
            "outside the networks",
        ),
        (
            "an action outside the client's scope",
            vec![withdraw("10:00:00", "5", "normal")
                .replace(r#""action":"withdraw""#, r#""action":"transfer""#)],
            "may not transfer",
        ),
        (
            "a bad time",
            vec![r#"{"t":"yesterday","kind":"request","client":"bot","venue":"v","action":"read","label":"normal"}"#.to_string()],
            "RFC 3339",
        ),
    ];
    for (what, lines, expect) in cases {
        let mut kg = Kg::new();
        let (scenario, out) = setup(&kg, lines);
        let err = kg.fails(
            &[
                "replay",
                scenario.to_str().unwrap(),
                "--report",
                out.to_str().unwrap(),
            ],
            None,
        );
        assert!(err.contains(expect), "{what}: {err}");
        assert!(!err.contains("panicked"), "{what}: {err}");
        assert!(!out.exists(), "{what}: a report was written");
    }
    // A header of another version.
    let mut kg = Kg::new();
    let (scenario, _) = setup(&kg, &[]);
    std::fs::write(
        &scenario,
        HEADER.replace(r#""version":1"#, r#""version":4"#),
    )
    .unwrap();
    let err = kg.fails(&["replay", scenario.to_str().unwrap()], None);
    assert!(err.contains("version 4"), "{err}");
    // A price as a JSON number may have passed through a float: refused.
    std::fs::write(&scenario, HEADER.replace(r#""USDT":"1""#, r#""USDT":1"#)).unwrap();
    let err = kg.fails(&["replay", scenario.to_str().unwrap()], None);
    assert!(err.contains("decimal strings"), "{err}");
    // A report that cannot be written is found before the replay runs.
    let (scenario, _) = setup(&kg, &[withdraw("10:00:00", "5", "normal")]);
    let err = kg.fails(
        &[
            "replay",
            scenario.to_str().unwrap(),
            "--report",
            "/nonexistent-dir/r.json",
        ],
        None,
    );
    assert!(err.contains("does not exist"), "{err}");
}
