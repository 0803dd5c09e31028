//! The scenario format's balances and containment (version 3): strict reading, the ledger (an
//! outflow beyond what is left fails, containment after its latency stops the rest), and the
//! report's value figures. Older versions read as before.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test crate: a failed unwrap is a failed test

use keygate_core::freeze::Scope;
use keygate_core::replay::{
    Contained, Effect, Event, Fate, How, Judged, Label, Ledger, OutflowEvent, Tally, parse,
    parse_event, parse_header,
};
use rust_decimal::Decimal;

fn d(s: &str) -> Decimal {
    s.parse().unwrap()
}

const V3: &str = r#"{"scenario":"t","version":3,"start":"2024-01-02T00:00:00Z","prices":{"USDT":"1","BTC":"40000"},"balances":{"bn":{"USDT":"1000","BTC":"1"},"hot":{"USDT":"500"},"plain":{"USDT":"10"}},"containment":{"bn":{"how":"sweep","detect":"1m","latency":"2s"},"hot":{"how":"rescue","detect":"3s","latency":"3s"}}}"#;

fn outflow(venue: &str, t: &str, amount: &str) -> OutflowEvent {
    let h = parse_header(V3).unwrap();
    let line = format!(
        r#"{{"t":"{t}","kind":"outflow","venue":"{venue}","asset":"USDT","amount":"{amount}","to":"0xabc","tx":"w{t}","label":"attack"}}"#
    );
    match parse_event(&h, &line, 2).unwrap() {
        Event::Outflow(o) => o,
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_version_3_header_declares_balances_and_containment() {
    let h = parse_header(V3).unwrap();
    assert_eq!(h.version, 3);
    assert_eq!(h.balances["bn"]["BTC"], d("1"));
    let c = h.containment["bn"];
    assert_eq!((c.how, c.detect, c.latency), (How::Sweep, 60_000, 2_000));
    assert_eq!(h.containment["hot"].how, How::Rescue);
    assert!(!h.containment.contains_key("plain"));
}

#[test]
fn older_headers_read_as_before_and_refuse_the_new_fields() {
    let v2 = r#"{"scenario":"t","version":2,"start":"2024-01-02T00:00:00Z","prices":{"USDT":"1"}}"#;
    let h = parse_header(v2).unwrap();
    assert!(h.balances.is_empty() && h.containment.is_empty());
    for v in ["1", "2"] {
        let e =
            parse_header(&V3.replace(r#""version":3"#, &format!(r#""version":{v}"#))).unwrap_err();
        assert!(e.message.contains("need a version-3 header"), "{e}");
    }
}

#[test]
fn bad_balances_and_containment_are_refused_with_what_to_write() {
    for (bad, expect) in [
        (
            V3.replace(r#""BTC":"1""#, r#""BTC":"-1""#),
            "balance of BTC on bn \"-1\" is negative",
        ),
        (
            V3.replace(r#""BTC":"1""#, r#""BTC":1"#),
            "not a scenario header",
        ),
        (
            V3.replace(r#""BTC":"1""#, r#""BTC":"lots""#),
            "is not a decimal number",
        ),
        (
            V3.replace(r#""how":"sweep""#, r#""how":"pray""#),
            "\"sweep\"",
        ),
        (
            V3.replace(r#""detect":"1m""#, r#""detect":"soon""#),
            "containment of bn: detect",
        ),
        (
            V3.replace(r#""latency":"2s""#, r#""latency":"0s""#),
            "longer than zero",
        ),
        (
            V3.replace(r#""hot":{"how""#, r#""cold":{"how""#),
            "containment of cold: declare its opening balances",
        ),
        (
            V3.replace(r#""latency":"2s""#, r#""latency":"2s","speed":"1""#),
            "unknown field",
        ),
        (
            V3.replace(r#""bn":{"USDT""#, r#""":{"USDT""#),
            "\"\" is not a venue name",
        ),
    ] {
        let e = parse_header(&bad).unwrap_err();
        assert_eq!(e.line, 1);
        assert!(e.message.contains(expect), "{expect}: {e}");
    }
}

#[test]
fn an_outflow_beyond_what_is_left_fails_and_containment_stops_the_rest() {
    let h = parse_header(V3).unwrap();
    let mut l = Ledger::new(&h);
    assert_eq!(l.spend("bn", "USDT", d("400")), Fate::Done);
    assert_eq!(l.held("bn", "USDT"), Some(d("600")));
    // More than is left: refused, and nothing moves.
    assert_eq!(l.spend("bn", "USDT", d("600.01")), Fate::NoFunds);
    assert_eq!(l.held("bn", "USDT"), Some(d("600")));
    // A venue the header does not follow lets everything through.
    assert_eq!(l.spend("elsewhere", "USDT", d("1e9")), Fate::Unfollowed);
    // A client's freeze plans nothing; a venue's does, its latency later.
    l.freeze_set(|_| None, &Scope::Client("bot".into()), 1_000);
    assert_eq!(l.contained_at("bn"), None);
    l.freeze_set(|_| None, &Scope::Venue("bn".into()), 1_000);
    assert_eq!(l.contained_at("bn"), Some(3_000));
    assert_eq!(l.contained_at("hot"), None, "another venue's freeze");
    // Before the latency has passed, the key still works.
    assert!(l.due(2_999).is_empty());
    assert_eq!(l.spend("bn", "USDT", d("100")), Fate::Done);
    let done = l.due(3_000);
    assert_eq!(
        done,
        vec![Contained {
            venue: "bn".into(),
            at: 3_000,
            how: How::Sweep,
            moved: vec![("BTC".into(), d("1")), ("USDT".into(), d("500"))],
        }]
    );
    assert_eq!(l.spend("bn", "USDT", d("1")), Fate::Contained(How::Sweep));
    assert!(l.due(10_000).is_empty(), "carried out once");
    // A later freeze of everything plans the rest, once.
    l.freeze_set(|_| None, &Scope::All, 5_000);
    assert_eq!(l.contained_at("bn"), Some(3_000));
    assert_eq!(l.contained_at("hot"), Some(8_000));
    assert_eq!(l.contained_at("plain"), None, "no containment declared");
}

#[test]
fn a_credential_freeze_contains_every_venue_signing_with_it() {
    let h = parse_header(V3).unwrap();
    let mut l = Ledger::new(&h);
    let cred = |v: &str| (v == "hot").then(|| "shared".to_string());
    l.freeze_set(cred, &Scope::Credential("shared".into()), 0);
    assert_eq!(l.contained_at("hot"), Some(3_000));
    assert_eq!(l.contained_at("bn"), None);
    // A venue with no credential of its own signs with one named as the venue.
    l.freeze_set(|_| None, &Scope::Credential("bn".into()), 0);
    assert_eq!(l.contained_at("bn"), Some(2_000));
}

#[test]
fn the_report_puts_value_saved_and_rescued_next_to_value_lost() {
    let h = parse_header(V3).unwrap();
    let mut tally = Tally::new(&h, "in-process", &[]);
    let got = |fate| Judged {
        matched: false,
        froze: None,
        fate,
    };
    tally.outflow(
        &outflow("bn", "2024-01-02T01:00:00Z", "300"),
        &got(Fate::Done),
    );
    tally.outflow(
        &outflow("bn", "2024-01-02T01:00:01Z", "5000"),
        &got(Fate::NoFunds),
    );
    tally.effect(&Effect::Froze {
        at: 1,
        scope: Scope::All,
    });
    tally.effect(&Effect::Contained(Contained {
        venue: "bn".into(),
        at: h.start,
        how: How::Sweep,
        moved: vec![("BTC".into(), d("1")), ("USDT".into(), d("700"))],
    }));
    tally.effect(&Effect::Contained(Contained {
        venue: "hot".into(),
        at: h.start,
        how: How::Rescue,
        moved: vec![("USDT".into(), d("500"))],
    }));
    tally.outflow(
        &outflow("bn", "2024-01-02T01:02:00Z", "700"),
        &got(Fate::Contained(How::Sweep)),
    );
    let r = tally.report();
    // Only what left counts as got; all of it as attempted.
    assert_eq!(r.attack_allowed_usd, "300.00");
    assert_eq!(r.attack_outflow_usd, "300.00");
    assert_eq!(r.attack_attempted_usd, "6000.00");
    assert_eq!((r.outflows_unapproved, r.freezes.len()), (1, 1));
    let v = r.value.unwrap();
    assert_eq!(v.outflows_blocked, 2);
    let bn = &v.venues["bn"];
    assert_eq!(bn.how, Some(How::Sweep));
    assert_eq!(bn.opening_usd, "41000.00");
    assert_eq!(bn.lost_usd, "300.00");
    assert_eq!(bn.saved_usd, "40700.00");
    assert_eq!(bn.blocked_for_funds_usd, "5000.00");
    assert_eq!(bn.blocked_by_containment_usd, "700.00");
    assert_eq!(v.venues["hot"].rescued_usd, "500.00");
    assert_eq!(v.venues["plain"].how, None);
    assert_eq!(v.total.opening_usd, "41510.00");
    assert_eq!(v.total.saved_usd, "40700.00");
    assert_eq!(v.total.rescued_usd, "500.00");
    assert_eq!(v.total.lost_usd, "300.00");
}

#[test]
fn an_older_scenarios_report_has_no_value_section() {
    let (h, events) = parse(
        "{\"scenario\":\"t\",\"version\":1,\"start\":\"2024-01-02T00:00:00Z\",\"prices\":{\"USDT\":\"1\"}}\n\
         {\"t\":\"2024-01-02T00:00:01Z\",\"kind\":\"outflow\",\"venue\":\"bn\",\"asset\":\"USDT\",\"amount\":\"5\",\"to\":\"0x1\",\"tx\":\"a\",\"label\":\"attack\"}\n",
    )
    .unwrap();
    let mut tally = Tally::new(&h, "in-process", &[]);
    let Event::Outflow(o) = &events[0] else {
        panic!()
    };
    assert_eq!(o.label, Label::Attack);
    tally.outflow(
        o,
        &Judged {
            matched: false,
            froze: Some(Scope::All),
            fate: Fate::Unfollowed,
        },
    );
    let r = tally.report();
    assert_eq!(r.attack_allowed_usd, "5.00");
    assert!(r.value.is_none());
    let json = serde_json::to_string(&r).unwrap();
    assert!(!json.contains("\"value\""), "{json}");
}

#[test]
fn a_trade_beyond_what_is_left_fails_and_one_within_it_fills_at_its_price() {
    let h = parse_header(
        r#"{"scenario":"t","version":3,"start":"2024-01-02T00:00:00Z","prices":{"USDT":"1","BTC":"40000"},"instruments":{"bn":{"BTCUSDT":{"base":"BTC","quote":"USDT","reference":"40000"}}},"balances":{"bn":{"USDT":"50000"}}}"#,
    )
    .unwrap();
    let mut l = Ledger::new(&h);
    let trade = |rest: &str| {
        let line = format!(
            r#"{{"t":"2024-01-02T00:00:01Z","kind":"request","client":"bot","venue":"bn","action":"trade","symbol":"BTCUSDT","source_ip":"127.0.0.1","label":"normal",{rest}}}"#
        );
        match parse_event(&h, &line, 2).unwrap() {
            Event::Request(r) => r,
            other => panic!("{other:?}"),
        }
    };
    // A limit buy of 40,000 USDT at 40,000: one BTC, paid in USDT.
    let buy = trade(r#""side":"buy","price":"40000","asset":"USDT","amount":"40000""#);
    assert_eq!(l.allowed(&buy), Fate::Done);
    assert_eq!(l.held("bn", "USDT"), Some(d("10000")));
    assert_eq!(l.held("bn", "BTC"), Some(d("1")));
    // The same again spends more than is left: refused, nothing moves.
    assert_eq!(l.allowed(&buy), Fate::NoFunds);
    assert_eq!(l.held("bn", "USDT"), Some(d("10000")));
    // A market sell of 2 BTC with 1 held: refused; of 0.5, filled at the reference.
    let sell = |q: &str| trade(&format!(r#""side":"sell","asset":"BTC","amount":"{q}""#));
    assert_eq!(l.allowed(&sell("2")), Fate::NoFunds);
    assert_eq!(l.allowed(&sell("0.5")), Fate::Done);
    assert_eq!(l.held("bn", "BTC"), Some(d("0.5")));
    assert_eq!(l.held("bn", "USDT"), Some(d("30000")));
}

/// An engine that decides nothing of these tests' (no policy, no detector): the runner's
/// reconciliation and containment are what is tested.
fn engine() -> keygate_core::Engine {
    use keygate_core::policy::{Policies, PolicySource};
    keygate_core::Engine {
        trading: Default::default(),
        policies: Policies::load(&[PolicySource {
            name: "none.cedar".into(),
            text: String::new(),
        }])
        .unwrap(),
        limits: vec![],
        pinned: vec![("USDT".into(), Decimal::ONE)],
        price_max_age: 60_000,
        max_clock_skew: 5_000,
        assets: vec![],
        venue_credentials: vec![],
        detectors: keygate_core::detect::DetectorConfig::off(),
    }
}

fn runner_state(e: &keygate_core::Engine, t: i64) -> keygate_core::State {
    keygate_core::State::new(
        e,
        keygate_core::decide::StateInputs {
            trades: vec![],
            trades_complete_since: None,
            clients_since: vec![],
            clients: vec![],
            destinations: vec![],
            prices: vec![],
            moves: vec![],
            clock: t,
            freezes: vec![],
            outflows: vec![],
        },
    )
    .unwrap()
}

#[test]
fn the_runner_freezes_when_reconciliation_sees_the_outflow_and_contains_its_latency_later() {
    use keygate_core::replay::{Contain, Runner};
    let h = parse_header(V3).unwrap();
    let e = engine();
    let mut r =
        Runner::new(&e, runner_state(&e, h.start), Contain::Venue).with_ledger(Ledger::new(&h));
    let first = outflow("bn", "2024-01-02T01:00:00Z", "100");
    let t0 = first.t;
    assert!(r.due(t0).is_empty());
    let j = r.outflow(&first);
    assert_eq!(
        (j.matched, j.froze.clone(), j.fate),
        (false, None, Fate::Done)
    );
    // Until reconciliation's minute has passed, nothing is frozen and the key still works.
    assert!(r.due(t0 + 59_999).is_empty());
    assert!(r.state().freezes().is_empty());
    let second = outflow("bn", "2024-01-02T01:00:30Z", "100");
    assert_eq!(r.outflow(&second).fate, Fate::Done);
    let froze = r.due(t0 + 60_000);
    assert_eq!(
        froze,
        vec![Effect::Froze {
            at: t0 + 60_000,
            scope: Scope::Venue("bn".into()),
        }]
    );
    assert_eq!(r.state().freezes().len(), 1, "one freeze for both outflows");
    // Containment takes effect its 2 s later: what is left is swept, and the rest refused.
    assert!(r.due(t0 + 61_999).is_empty());
    assert_eq!(r.ledger().contained_at("bn"), Some(t0 + 62_000));
    let contained = r.due(t0 + 62_000);
    let [Effect::Contained(c)] = contained.as_slice() else {
        panic!("{contained:?}")
    };
    assert_eq!(
        c.moved,
        vec![("BTC".into(), d("1")), ("USDT".into(), d("800"))]
    );
    let late = outflow("bn", "2024-01-02T01:01:03Z", "1");
    let j = r.outflow(&late);
    assert_eq!(j.fate, Fate::Contained(How::Sweep));
    assert!(!j.matched && j.froze.is_none());
    // The venue's freeze contains no other venue.
    assert_eq!(r.ledger().contained_at("hot"), None);
    // A venue with no containment is reconciled (and frozen) at once, as in versions 1 and 2.
    let plain = outflow("plain", "2024-01-02T01:02:00Z", "5");
    assert_eq!(r.outflow(&plain).froze, Some(Scope::Venue("plain".into())));
}
