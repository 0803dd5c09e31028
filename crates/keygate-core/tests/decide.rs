//! The decide function end to end: each check refuses what it should, policies hold and deny,
//! and a policy that fails to evaluate is a deny.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test crate: a failed unwrap is a failed test

use keygate_core::auth::ClientRecord;
use keygate_core::book::Destination;
use keygate_core::decide::{Stage, StateInputs};
use keygate_core::limits::{LimitSpec, Selector};
use keygate_core::policy::{Policies, PolicySource};
use keygate_core::time::{HOUR, MINUTE};
use keygate_core::{Action, Engine, Intent, Outcome, State, decide};
use rust_decimal::Decimal;

const DEST: &str = "0x00000000000000000000000000000000000000aa";
const T0: i64 = 1_700_000_000_000;

const POLICIES: &str = r#"
@id("trade-and-read")
permit(principal, action in [Keygate::Action::"read", Keygate::Action::"trade", Keygate::Action::"cancel"], resource);

@id("mm-withdraw")
@reason("the market maker rebalances to the cold wallet")
permit(principal == Keygate::Client::"mm", action == Keygate::Action::"withdraw", resource in Keygate::Venue::"binance")
when { context has destination && context.destination.label == "cold" };

@id("big-needs-approval")
@hold
@reason("withdrawals over $100,000 need approval")
forbid(principal, action == Keygate::Action::"withdraw", resource)
when { context.usd_value_cents > 10000000 }
unless { context.approvals >= 2 };

@id("no-btc-from-mm")
forbid(principal == Keygate::Client::"mm", action == Keygate::Action::"withdraw", resource)
when { resource.symbol == "BTC" };

@id("broken")
forbid(principal == Keygate::Client::"buggy", action, resource)
when { context.amount_micros * 9223372036854775807 > 0 };
"#;

fn engine(policies: &str) -> Engine {
    Engine {
        trading: Default::default(),
        policies: Policies::load(&[PolicySource {
            name: "test.cedar".into(),
            text: policies.into(),
        }])
        .unwrap(),
        limits: vec![LimitSpec {
            name: "mm-1h".into(),
            client: Selector::Only("mm".into()),
            venue: Selector::All,
            asset: Selector::All,
            actions: vec![Action::Withdraw, Action::Transfer],
            window: HOUR,
            max_usd_cents: Some(50_000_000),
            max_amount: None,
            max_count: None,
        }],
        pinned: vec![("USDT".into(), Decimal::ONE)],
        price_max_age: 5 * MINUTE,
        max_clock_skew: 5_000,
        assets: vec![("binance".into(), "USDT".into())],
        venue_credentials: vec![],
        detectors: keygate_core::detect::DetectorConfig::off(),
    }
}

fn client(name: &str) -> ClientRecord {
    ClientRecord {
        instruments: vec![],
        name: name.into(),
        venues: vec!["binance".into()],
        actions: Action::ALL.to_vec(),
        tags: vec![],
        enabled: true,
    }
}

fn dest(asset: &str, approved: bool) -> Destination {
    Destination {
        route: Default::default(),
        id: 1,
        venue: "binance".into(),
        asset: asset.into(),
        address: DEST.into(),
        label: "cold".into(),
        added_at: T0 - 48 * HOUR,
        added_by: "admin".into(),
        usable_from: T0 - 24 * HOUR,
        approved_at: approved.then_some(T0 - 30 * HOUR),
        approved_by: approved.then(|| "admin".into()),
    }
}

fn state(e: &Engine) -> State {
    State::new(
        e,
        StateInputs {
            trades: vec![],
            trades_complete_since: None,
            clients_since: vec![],
            clients: vec![client("mm"), client("buggy"), client("plain"), {
                let mut c = client("off");
                c.enabled = false;
                c
            }],
            destinations: vec![dest("USDT", true), dest("BTC", true)],
            prices: vec![("BTC".into(), Decimal::from(40_000), T0)],
            moves: vec![],
            clock: T0,
            freezes: vec![],
            outflows: vec![],
        },
    )
    .unwrap()
}

fn withdraw(client: &str, asset: &str, amount: i64) -> Intent {
    Intent {
        route: Default::default(),
        order: None,
        client: client.into(),
        venue: "binance".into(),
        action: Action::Withdraw,
        asset: Some(asset.into()),
        amount: Some(Decimal::from(amount)),
        destination: Some(DEST.to_uppercase().replace("0X", "0x")),
        source_ip: Some("10.0.0.5".parse().unwrap()),
        token_id: None,
    }
}

#[test]
fn allows_within_policy_and_limits_and_debits() {
    let e = engine(POLICIES);
    let mut s = state(&e);
    let v = decide(&e, &s, &withdraw("mm", "USDT", 72), T0);
    assert_eq!(v.outcome, Outcome::Allow, "{v:?}");
    assert_eq!(v.policies, vec!["mm-withdraw"]);
    assert_eq!(v.usd_value_cents, Some(7200));
    assert_eq!(v.debit.as_ref().unwrap().usd_cents, 7200);
    s.record(&v);
    let v2 = decide(&e, &s, &withdraw("mm", "USDT", 72), T0 + 1);
    assert_eq!(v2.limits[0].used_usd_cents, 7200);
}

#[test]
fn big_withdrawals_are_held_not_denied() {
    let e = engine(POLICIES);
    let s = state(&e);
    let v = decide(&e, &s, &withdraw("mm", "USDT", 200_000), T0);
    assert_eq!(v.outcome, Outcome::Hold, "{v:?}");
    assert_eq!(v.policies, vec!["big-needs-approval"]);
    assert!(v.reasons[0].contains("need approval"));
    assert!(v.debit.is_none());
}

#[test]
fn forbid_wins_and_default_denies() {
    let e = engine(POLICIES);
    let s = state(&e);
    let v = decide(&e, &s, &withdraw("mm", "BTC", 1), T0);
    assert_eq!(
        (v.outcome, v.stage),
        (Outcome::Deny, Stage::Policy),
        "{v:?}"
    );
    assert_eq!(v.policies, vec!["no-btc-from-mm"]);
    // "plain" has no withdraw permit and no policy of its own: default deny, naming nothing.
    let v = decide(&e, &s, &withdraw("plain", "USDT", 1), T0);
    assert_eq!(
        (v.outcome, v.stage),
        (Outcome::Deny, Stage::Policy),
        "{v:?}"
    );
    assert!(v.policies.is_empty(), "{v:?}");
    assert!(v.reasons[0].contains("default deny"), "{v:?}");
}

#[test]
fn a_policy_that_errors_is_a_deny() {
    let e = engine(POLICIES);
    let s = state(&e);
    let mut i = withdraw("buggy", "USDT", 1);
    i.action = Action::Trade;
    i.destination = None;
    let v = decide(&e, &s, &i, T0);
    assert_eq!(v.outcome, Outcome::Deny, "{v:?}");
    assert!(v.reasons[0].contains("failed to evaluate"), "{v:?}");
    assert_eq!(v.policies, vec!["broken"]);
}

#[test]
fn each_check_refuses_with_its_reason() {
    let e = engine(POLICIES);
    let s = state(&e);
    let stage = |i: &Intent, now| {
        let v = decide(&e, &s, i, now);
        assert_eq!(v.outcome, Outcome::Deny, "{v:?}");
        (v.stage, v.reasons.join("; "))
    };
    let mut bad = withdraw("mm", "USDT", 1);
    bad.destination = None;
    assert_eq!(stage(&bad, T0).0, Stage::Intent);
    assert_eq!(stage(&withdraw("nobody", "USDT", 1), T0).0, Stage::Client);
    assert!(
        stage(&withdraw("off", "USDT", 1), T0)
            .1
            .contains("disabled")
    );
    let mut okx = withdraw("mm", "USDT", 1);
    okx.venue = "okx".into();
    assert_eq!(stage(&okx, T0).0, Stage::Client);
    let (st, why) = stage(&withdraw("mm", "BTC", 1), T0 + 6 * MINUTE);
    assert_eq!(st, Stage::Price);
    assert!(why.contains("old"), "{why}");
    assert_eq!(stage(&withdraw("mm", "ETH", 1), T0).0, Stage::Price);
    let mut elsewhere = withdraw("mm", "USDT", 1);
    elsewhere.destination = Some("0x00000000000000000000000000000000000000bb".into());
    assert_eq!(stage(&elsewhere, T0).0, Stage::AddressBook);
    let (st, why) = stage(&withdraw("mm", "USDT", 500_001), T0);
    assert_eq!(st, Stage::Limit);
    assert!(
        why.contains("mm-1h") && why.contains("500001.00 asked"),
        "{why}"
    );
    let mut huge = withdraw("mm", "USDT", 1);
    huge.amount = Some(Decimal::from(i64::MAX));
    assert_eq!(stage(&huge, T0).0, Stage::Intent);
}

#[test]
fn unapproved_destinations_are_refused() {
    let e = engine(POLICIES);
    let s = State::new(
        &e,
        StateInputs {
            trades: vec![],
            trades_complete_since: None,
            clients_since: vec![],
            clients: vec![client("mm")],
            destinations: vec![dest("USDT", false)],
            prices: vec![],
            moves: vec![],
            clock: T0,
            freezes: vec![],
            outflows: vec![],
        },
    )
    .unwrap();
    let v = decide(&e, &s, &withdraw("mm", "USDT", 1), T0);
    assert_eq!(v.stage, Stage::AddressBook);
    assert!(v.reasons[0].contains("approve"), "{v:?}");
}

#[test]
fn a_destination_is_approved_only_on_its_own_network_and_type() {
    use keygate_core::route::{Route, Via};
    let e = engine(POLICIES);
    let on = |network: &str, id: i64| {
        let mut d = dest("USDT", true);
        d.id = id;
        d.route = Route::chain(Some(network));
        d
    };
    // Two entries for one address (ETH and BSC): the policies still see one destination.
    let s = State::new(
        &e,
        StateInputs {
            trades: vec![],
            trades_complete_since: None,
            clients_since: vec![],
            clients: vec![client("mm")],
            destinations: vec![on("ETH", 1), on("BSC", 2)],
            prices: vec![],
            moves: vec![],
            clock: T0,
            freezes: vec![],
            outflows: vec![],
        },
    )
    .unwrap();
    let mut w = withdraw("mm", "USDT", 72);
    for network in ["ETH", "BSC"] {
        w.route = Route::chain(Some(network));
        let v = decide(&e, &s, &w, T0);
        assert_eq!(v.outcome, Outcome::Allow, "{network}: {v:?}");
    }
    // Another network, the venue's default, or an internal transfer: refused by the book.
    for route in [
        Route::chain(Some("TRX")),
        Route::default(),
        Route {
            via: Via::Uid,
            network: None,
            area_code: None,
        },
    ] {
        w.route = route.clone();
        let v = decide(&e, &s, &w, T0);
        assert_eq!(v.outcome, Outcome::Deny, "{route:?}: {v:?}");
        assert_eq!(v.stage, Stage::AddressBook, "{route:?}");
        assert!(v.reasons[0].contains("does not approve another"), "{v:?}");
    }
}

#[test]
fn time_never_goes_backwards() {
    let e = engine(POLICIES);
    let mut s = state(&e);
    let v = decide(&e, &s, &withdraw("mm", "USDT", 1), T0 + HOUR);
    s.record(&v);
    // A little behind (another host's clock): dated at the latest decision, never before it.
    let v = decide(&e, &s, &withdraw("mm", "USDT", 1), T0 + HOUR - 2_000);
    assert_eq!((v.outcome, v.at), (Outcome::Allow, T0 + HOUR));
    // Far behind: denied, so a clock that jumped ahead cannot reopen a window early.
    let earlier = decide(&e, &s, &withdraw("mm", "USDT", 1), T0);
    assert_eq!(earlier.at, T0 + HOUR);
    assert_eq!(
        (earlier.outcome, earlier.stage),
        (Outcome::Deny, Stage::Clock)
    );
    assert!(earlier.reasons[0].contains("NTP"), "{earlier:?}");
}

#[test]
fn invalid_policies_are_refused_with_the_reason() {
    let load = |text: &str| {
        Policies::load(&[PolicySource {
            name: "p.cedar".into(),
            text: text.into(),
        }])
        .map(|_| ())
        .unwrap_err()
        .to_string()
    };
    assert!(
        load("permit(principal, action, resource) when { context.nope > 1 };").contains("nope")
    );
    assert!(load("permit(principal action resource);").contains("p.cedar"));
    assert!(
        load("@id(\"a\") permit(principal, action, resource);\n@id(\"a\") forbid(principal, action, resource);")
            .contains("twice")
    );
}

#[test]
fn clients_are_judged_by_their_own_slice() {
    let e = engine(POLICIES);
    assert_eq!(e.policies.len(), 5);
    assert_eq!(e.policies.slice_len("mm"), 4);
    assert_eq!(e.policies.slice_len("buggy"), 3);
    assert_eq!(e.policies.slice_len("someone-else"), 2);
}

#[test]
fn an_escaped_attribute_name_still_gets_its_context_field() {
    // The context is built only from the fields a client's policies mention; a name written
    // with an escape must still count as mentioned, or this forbid would never fire.
    let e = engine(
        r#"permit(principal, action, resource);
forbid(principal, action, resource) when { context has "source\u{5f}ip" && context["source\u{5f}ip"].isInRange(ip("10.0.0.0/8")) };"#,
    );
    let s = state(&e);
    let v = decide(&e, &s, &withdraw("mm", "USDT", 1), T0);
    assert_eq!(v.outcome, Outcome::Deny, "{v:?}");
}

#[test]
fn a_hold_with_nothing_permitting_is_a_plain_default_deny() {
    let e = engine(
        r#"@id("h") @hold forbid(principal, action == Keygate::Action::"withdraw", resource) when { context.usd_value_cents > 0 };"#,
    );
    let s = state(&e);
    let v = decide(&e, &s, &withdraw("mm", "USDT", 1), T0);
    assert_eq!(v.outcome, Outcome::Deny);
    assert!(v.reasons[0].contains("default deny"), "{v:?}");
}

#[test]
fn a_clock_ahead_of_the_store_is_refused_and_mapped_addresses_work() {
    let e = engine(POLICIES);
    let s = state(&e);
    let extra = |reference| keygate_core::decide::Extra {
        reference_now: Some(reference),
        ..Default::default()
    };
    let mut i = withdraw("mm", "USDT", 1);
    // Within the skew: fine. An hour ahead of the store's clock: refused, nothing debited.
    let v = keygate_core::decide::decide_with(&e, &s, &i, T0 + 2_000, &extra(T0));
    assert_eq!(v.outcome, Outcome::Allow, "{v:?}");
    let v = keygate_core::decide::decide_with(&e, &s, &i, T0 + HOUR, &extra(T0));
    assert_eq!((v.outcome, v.stage), (Outcome::Deny, Stage::Clock), "{v:?}");
    assert!(v.reasons[0].contains("ahead of the store"), "{v:?}");
    assert!(v.debit.is_none());
    // An IPv4-mapped IPv6 source (a dual-stack listener) reaches an ip policy as IPv4.
    let e = engine(
        r#"permit(principal, action, resource) when { context has source_ip && context.source_ip.isInRange(ip("10.0.0.0/8")) };"#,
    );
    let s = state(&e);
    i.source_ip = Some("::ffff:10.0.0.5".parse().unwrap());
    assert_eq!(decide(&e, &s, &i, T0).outcome, Outcome::Allow);
}

#[test]
fn a_freeze_stops_everything_in_its_scope_and_nothing_else() {
    use keygate_core::freeze::Freeze;
    let mut e = engine(POLICIES);
    e.venue_credentials = vec![("binance".into(), "k1".into())];
    let state = |scopes: &[&str]| {
        State::new(
            &e,
            StateInputs {
                trades: vec![],
                trades_complete_since: None,
                clients_since: vec![],
                clients: vec![client("mm"), client("other")],
                destinations: vec![dest("USDT", true)],
                prices: vec![],
                moves: vec![],
                clock: T0,
                outflows: vec![],
                freezes: scopes
                    .iter()
                    .enumerate()
                    .map(|(i, s)| Freeze {
                        id: i as i64 + 1,
                        scope: s.parse().unwrap(),
                        reason: "test-then-drain".into(),
                        set_by: "detector".into(),
                        set_at: T0 - 1000,
                    })
                    .collect(),
            },
        )
        .unwrap()
    };
    let w = withdraw("mm", "USDT", 1);
    let unfrozen = decide(&e, &state(&[]), &w, T0);
    assert_eq!(unfrozen.outcome, Outcome::Allow, "{unfrozen:?}");
    for scope in ["all", "client:mm", "venue:binance", "credential:k1"] {
        let v = decide(&e, &state(&[scope]), &w, T0);
        assert_eq!(
            (v.outcome, v.stage),
            (Outcome::Deny, Stage::Freeze),
            "{scope}"
        );
        assert!(v.reasons[0].contains("keygate approve freeze:1"), "{v:?}");
    }
    for scope in ["client:other", "venue:okx", "credential:k2"] {
        assert_eq!(
            decide(&e, &state(&[scope]), &w, T0).outcome,
            Outcome::Allow,
            "{scope}"
        );
    }
}

/// Policies that read every kind of context field, so the memo's key must carry each.
const CONTEXT_POLICIES: &str = r#"
@id("reads") permit(principal, action in [Keygate::Action::"read", Keygate::Action::"cancel"], resource)
when { context.hour_utc >= 6 };
@id("trades") permit(principal, action == Keygate::Action::"trade", resource)
when { context.usd_value_cents <= 500000 && context.asset == "USDT" };
@id("outflows") permit(principal, action == Keygate::Action::"withdraw", resource)
when { context has destination && context.destination.label == "cold" && context.amount_micros < 3000000000 };
@id("hosts") forbid(principal, action, resource)
unless { context has source_ip && context.source_ip.isInRange(ip("10.0.0.0/8")) };
@id("busy") @hold forbid(principal, action == Keygate::Action::"withdraw", resource)
when { context.client_usd_cents_1h > 100 || context.signals.contains("size_jump") || context.anomaly_score > 10 }
unless { context.approvals >= 2 };
"#;

#[test]
fn remembered_policy_verdicts_are_the_ones_cedar_gives() {
    use keygate_core::decide::{Extra, decide_with};
    let e = engine(CONTEXT_POLICIES);
    // A state that remembers verdicts across all the calls below, and, for each call, a fresh
    // one that cannot have remembered anything.
    let mut warm = state(&e);
    let mut recorded: Vec<keygate_core::Verdict> = vec![];
    let mut n = 0;
    for round in 0..2 {
        for hour in [3, 9] {
            for ip in ["10.0.0.5", "192.168.1.1"] {
                for (action, asset, amount) in [
                    (Action::Read, None, None),
                    (Action::Trade, Some("USDT"), Some(100)),
                    (Action::Trade, Some("USDT"), Some(9_000)),
                    (Action::Trade, Some("BTC"), Some(1)),
                    (Action::Withdraw, Some("USDT"), Some(1)),
                    (Action::Withdraw, Some("USDT"), Some(2_000)),
                    (Action::Withdraw, Some("USDT"), Some(4_000)),
                    (Action::Withdraw, Some("BTC"), Some(1)),
                ] {
                    for (signals, score, approvals) in [
                        (vec![], 0, 0),
                        (vec!["size_jump".to_string()], 0, 0),
                        (vec![], 20, 2),
                    ] {
                        let intent = Intent {
                            action,
                            asset: asset.map(Into::into),
                            amount: amount.map(Decimal::from),
                            destination: (action == Action::Withdraw).then(|| DEST.into()),
                            source_ip: Some(ip.parse().unwrap()),
                            ..withdraw("plain", "USDT", 1)
                        };
                        let extra = Extra {
                            signals: signals.clone(),
                            anomaly_score: score,
                            approvals,
                            ..Extra::default()
                        };
                        let now = T0 + hour * HOUR + round * 24 * HOUR;
                        let mut fresh = state(&e);
                        for v in &recorded {
                            fresh.record(v);
                        }
                        let want = decide_with(&e, &fresh, &intent, now, &extra);
                        let got = decide_with(&e, &warm, &intent, now, &extra);
                        assert_eq!(got, want, "{intent:?} at {hour}h with {extra:?}");
                        // Allowed withdrawals move client_usd_cents_1h (in both states).
                        warm.record(&got);
                        recorded.push(got);
                        n += 1;
                    }
                }
            }
        }
    }
    assert_eq!(n, 192);
    // Another load of other policies never gets the first load's answers.
    let strict = engine(r#"@id("none") forbid(principal, action, resource);"#);
    let read = Intent {
        action: Action::Read,
        asset: None,
        amount: None,
        destination: None,
        ..withdraw("plain", "USDT", 1)
    };
    let before = decide(&e, &warm, &read, T0 + 60 * 24 * HOUR);
    assert_eq!(before.outcome, Outcome::Allow);
    let after = decide(&strict, &warm, &read, T0 + 60 * 24 * HOUR);
    assert_eq!(after.outcome, Outcome::Deny);
}
