//! The engine's commands end to end: clients and tokens (each refusal distinct and audited),
//! the address book, prices, policy validate/test, the dry-run decide, and audit verify naming a
//! tampered entry.

use crate::util::{Kg, find, snapshot};

fn setup() -> Kg {
    let mut kg = Kg::new();
    kg.env("KEYGATE_ACTOR", "alice");
    kg.ok(&["init"], None);
    kg.client("mm-bot", &["binance"], &["read", "withdraw"], &[]);
    kg
}

fn audit_json(kg: &mut Kg) -> Vec<serde_json::Value> {
    kg.ok(&["audit", "tail", "-n", "100", "--json"], None)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn check(kg: &mut Kg, token: &str, ip: &str, venue: &str, action: &str) -> Result<String, String> {
    let out = kg.run(
        &[
            "token", "check", "--ip", ip, "--venue", venue, "--action", action,
        ],
        Some(token),
    );
    if out.status.success() {
        Ok(String::from_utf8(out.stdout).unwrap())
    } else {
        Err(String::from_utf8(out.stderr).unwrap())
    }
}

#[test]
fn every_token_refusal_is_distinct_and_audited() {
    let mut kg = setup();
    let token = kg.ok(
        &[
            "token",
            "issue",
            "mm-bot",
            "--cidr",
            "10.0.0.5/32",
            "--ttl",
            "1h",
        ],
        None,
    );
    let token = token.trim().to_string();
    assert!(token.starts_with("kgt_"), "{token}");
    let id = &token[4..20];
    assert!(check(&mut kg, &token, "10.0.0.5", "binance", "read").is_ok());

    let mut seen = vec![];
    let mut refuse =
        |kg: &mut Kg, token: &str, ip: &str, venue: &str, action: &str, needle: &str| {
            let e = check(kg, token, ip, venue, action).unwrap_err();
            assert!(e.contains(needle), "expected {needle:?} in {e}");
            assert!(!seen.contains(&e), "two refusals share one message: {e}");
            seen.push(e);
        };
    refuse(
        &mut kg,
        &token,
        "10.0.0.6",
        "binance",
        "read",
        "may not be used from 10.0.0.6",
    );
    refuse(
        &mut kg,
        &token,
        "10.0.0.5",
        "okx",
        "read",
        "may not read on okx",
    );
    refuse(
        &mut kg,
        "kgt_not-a-token",
        "10.0.0.5",
        "binance",
        "read",
        "malformed",
    );
    let forged = format!(
        "{}{}",
        &token[..token.len() - 2],
        if token.ends_with("00") { "11" } else { "00" }
    );
    refuse(
        &mut kg,
        &forged,
        "10.0.0.5",
        "binance",
        "read",
        "secret does not match",
    );
    refuse(
        &mut kg,
        &token.replace(id, "0123456789abcdef"),
        "10.0.0.5",
        "binance",
        "read",
        "is not known",
    );

    // A narrower token cannot widen its client's scope, and cannot outlive the maximum.
    let e = kg.fails(&["token", "issue", "mm-bot", "--action", "trade"], None);
    assert!(e.contains("only narrow"), "{e}");
    let e = kg.fails(&["token", "issue", "mm-bot", "--ttl", "30d"], None);
    assert!(e.contains("max_ttl"), "{e}");

    let short = kg.ok(
        &[
            "token",
            "issue",
            "mm-bot",
            "--cidr",
            "10.0.0.5/32",
            "--ttl",
            "1s",
        ],
        None,
    );
    std::thread::sleep(std::time::Duration::from_millis(1_100));
    refuse(
        &mut kg,
        short.trim(),
        "10.0.0.5",
        "binance",
        "read",
        "has expired",
    );

    kg.ok(&["token", "revoke", id], None);
    refuse(
        &mut kg,
        &token,
        "10.0.0.5",
        "binance",
        "read",
        "was revoked",
    );

    let other = kg.ok(&["token", "issue", "mm-bot", "--cidr", "10.0.0.5/32"], None);
    kg.ok(&["client", "disable", "mm-bot"], None);
    refuse(
        &mut kg,
        other.trim(),
        "10.0.0.5",
        "binance",
        "read",
        "is disabled",
    );

    let codes: Vec<String> = audit_json(&mut kg)
        .iter()
        .filter(|e| e["kind"] == "auth")
        .map(|e| e["data"]["error"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        codes,
        [
            "wrong_address",
            "out_of_scope",
            "malformed",
            "bad_secret",
            "unknown",
            "expired",
            "revoked",
            "client_disabled"
        ]
    );
    // Token secrets are nowhere in the data directory.
    let secret = token.as_bytes()[21..].to_vec();
    for (path, bytes) in snapshot(&kg.data) {
        assert!(
            !find(&bytes, &secret),
            "the token secret is in {}",
            path.display()
        );
    }
    kg.ok(&["audit", "verify"], None);
}

#[test]
fn address_book_prices_and_dry_run_decide() {
    let mut kg = setup();
    let config = std::fs::read_to_string(kg.data.join("keygate.toml")).unwrap();
    assert!(config.contains("cooldown = \"24h\""));
    std::fs::write(
        kg.data.join("keygate.toml"),
        config.replace("cooldown = \"24h\"", "cooldown = \"1s\""),
    )
    .unwrap();
    kg.ok(
        &[
            "address",
            "add",
            "0x00000000000000000000000000000000000000AA",
            "--venue",
            "binance",
            "--asset",
            "USDT",
            "--label",
            "cold",
            "--cooldown",
            "1s",
        ],
        None,
    );
    let e = kg.fails(&["address", "approve", "1"], None);
    assert!(e.contains("another admin"), "{e}");
    // The configured cool-down is a floor.
    let e = kg.fails(
        &[
            "address",
            "add",
            "0x00000000000000000000000000000000000000BB",
            "--venue",
            "binance",
            "--asset",
            "USDT",
            "--label",
            "x",
            "--cooldown",
            "500ms",
        ],
        None,
    );
    assert!(e.contains("only lengthen"), "{e}");
    std::fs::write(
        kg.data.join("policies/withdraw.cedar"),
        "@id(\"cold\") permit(principal == Keygate::Client::\"mm-bot\", action == Keygate::Action::\"withdraw\", resource)\n\
         when { context has destination && context.destination.label == \"cold\" };",
    )
    .unwrap();
    kg.ok(&["policy", "validate"], None);
    let intent = kg.tmp.path().join("intent.json");
    std::fs::write(
        &intent,
        r#"{"client":"mm-bot","venue":"binance","action":"withdraw","asset":"USDT","amount":"72","destination":"0x00000000000000000000000000000000000000aa"}"#,
    )
    .unwrap();
    let decide = |kg: &mut Kg| -> serde_json::Value {
        serde_json::from_str(&kg.ok(&["decide", intent.to_str().unwrap()], None)).unwrap()
    };
    let v = decide(&mut kg);
    assert_eq!(v["outcome"], "deny");
    assert!(
        v["reasons"][0].as_str().unwrap().contains("approval"),
        "{v}"
    );
    kg.env("KEYGATE_ACTOR", "bob");
    kg.ok(&["address", "approve", "1"], None);
    std::thread::sleep(std::time::Duration::from_millis(1_100));
    let before = kg.ok(&["audit", "tail", "-n", "1", "--json"], None);
    let v = decide(&mut kg);
    assert_eq!(v["outcome"], "allow", "{v}");
    assert_eq!(v["policies"][0], "cold");
    assert_eq!(v["usd_value_cents"], 7200);
    // A dry run records nothing.
    assert_eq!(kg.ok(&["audit", "tail", "-n", "1", "--json"], None), before);
    // An asset with no price is refused; a stale one too.
    std::fs::write(
        &intent,
        std::fs::read_to_string(&intent)
            .unwrap()
            .replace("USDT", "BTC"),
    )
    .unwrap();
    let v = decide(&mut kg);
    assert!(
        v["reasons"][0]
            .as_str()
            .unwrap()
            .contains("no price for BTC"),
        "{v}"
    );
    kg.ok(&["price", "set", "BTC", "43000.50"], None);
    let list = kg.ok(&["price", "list"], None);
    assert!(list.contains("BTC") && list.contains("fresh"), "{list}");
    let v: serde_json::Value = serde_json::from_str(&kg.ok(
        &[
            "decide",
            intent.to_str().unwrap(),
            "--at",
            "2099-01-01T00:00:00Z",
        ],
        None,
    ))
    .unwrap();
    assert!(v["reasons"][0].as_str().unwrap().contains("old"), "{v}");
    for bad in [
        ["price", "set", "BTC", "0"],
        ["price", "set", "BTC", "abc"],
        ["price", "set", "USDT", "2"],
    ] {
        kg.fails(&bad, None);
    }
}

#[test]
fn policy_validate_and_test_dry_run_cases() {
    let mut kg = setup();
    let dir = kg.tmp.path().to_path_buf();
    let policies = dir.join("p.cedar");
    std::fs::write(
        &policies,
        r#"@id("withdraw-small") permit(principal, action == Keygate::Action::"withdraw", resource) when { context.usd_value_cents <= 1000000 };
@id("big") @hold forbid(principal, action == Keygate::Action::"withdraw", resource) when { context.usd_value_cents > 500000 } unless { context.approvals >= 2 };
@id("bots-only-by-day") forbid(principal, action, resource) when { principal.tags.contains("night-off") && context.hour_utc < 6 };
"#,
    )
    .unwrap();
    let cases = dir.join("cases.jsonl");
    std::fs::write(
        &cases,
        r#"{"name":"small","client":"a","venue":"binance","action":"withdraw","asset":"USDT","context":{"usd_value_cents":100},"expect":"allow"}
{"name":"held","client":"a","venue":"binance","action":"withdraw","asset":"USDT","context":{"usd_value_cents":600000},"expect":"hold"}
{"name":"approved","client":"a","venue":"binance","action":"withdraw","asset":"USDT","context":{"usd_value_cents":600000,"approvals":2},"expect":"allow"}
{"name":"night","client":"a","tags":["night-off"],"venue":"binance","action":"withdraw","asset":"USDT","context":{"usd_value_cents":1,"hour_utc":3},"expect":"deny"}
{"name":"trade","client":"a","venue":"binance","action":"trade","asset":"USDT","expect":"deny"}
"#,
    )
    .unwrap();
    let p = policies.to_str().unwrap();
    let out = kg.ok(&["policy", "test", p, cases.to_str().unwrap()], None);
    assert_eq!(out.matches("PASS").count(), 5, "{out}");
    assert!(out.contains("big"), "the deciding policy is named: {out}");
    assert!(out.contains("default deny"), "{out}");
    std::fs::write(&cases, r#"{"client":"a","venue":"binance","action":"withdraw","asset":"USDT","context":{"usd_value_cents":100},"expect":"deny"}"#).unwrap();
    let e = kg.fails(&["policy", "test", p, cases.to_str().unwrap()], None);
    assert!(e.contains("1 case(s) did not"), "{e}");
    std::fs::write(&cases, "{\"client\":").unwrap();
    let e = kg.fails(&["policy", "test", p, cases.to_str().unwrap()], None);
    assert!(e.contains("line 1"), "{e}");
    kg.ok(&["policy", "validate", p], None);
    std::fs::write(
        &policies,
        "permit(principal, action, resource) when { context.usd > 1 };",
    )
    .unwrap();
    let e = kg.fails(&["policy", "validate", p], None);
    assert!(e.contains("usd"), "{e}");
    // An invalid configured policy is refused by the configured validate too.
    std::fs::copy(&policies, kg.data.join("policies/bad.cedar")).unwrap();
    kg.fails(&["policy", "validate"], None);
}

#[test]
fn audit_verify_names_the_edited_entry() {
    let mut kg = setup();
    for ip in ["10.0.0.1", "10.0.0.2", "10.0.0.3"] {
        check(&mut kg, "garbage", ip, "binance", "read").unwrap_err();
    }
    kg.ok(&["audit", "verify"], None);
    let url = kg.db_url();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let s = keygate_store::Store::connect(&url, keygate_store::OpenMode::Existing)
            .await
            .unwrap();
        sqlx::query(
            "UPDATE audit_log SET entry = REPLACE(entry, '10.0.0.2', '10.0.0.9') WHERE seq = 3",
        )
        .execute(s.pool())
        .await
        .unwrap();
        s.close().await;
    });
    let e = kg.fails(&["audit", "verify"], None);
    assert!(e.contains("entry 3") && e.contains("edited"), "{e}");
    let show = kg.ok(&["audit", "show", "2"], None);
    assert!(
        show.contains("10.0.0.1") && show.contains("\"hash\""),
        "{show}"
    );
}
