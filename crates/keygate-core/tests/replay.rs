//! The scenario format's orders (version 2): instruments in the header, `symbol`, `side` and
//! `price` on trade requests, the intent they carry, and the report's trade tally. Version-1
//! files read as before.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test crate: a failed unwrap is a failed test

use keygate_core::decide::{Outcome, Stage};
use keygate_core::order::{OrderKind, Side};
use keygate_core::replay::{
    Event, Header, Observed, RequestEvent, Tally, parse, parse_event, parse_header,
};
use rust_decimal::Decimal;

fn d(s: &str) -> Decimal {
    s.parse().unwrap()
}

const V2: &str = r#"{"scenario":"t","version":2,"start":"2022-10-18T00:00:00Z","prices":{"USD":"1","USDT":"1","BTC":"20000"},"instruments":{"ftx-main":{"DMG-USD":{"base":"DMG","quote":"USD","reference":"0.02","series":[{"t":"2022-10-19T00:00:00Z","reference":"0.025"}]},"BTC-USD":{"base":"BTC","quote":"USD","reference":"19200"}}}}"#;

fn header() -> Header {
    parse_header(V2).unwrap()
}

fn trade(t: &str, rest: &str) -> String {
    format!(
        r#"{{"t":"{t}","kind":"request","client":"bot","venue":"ftx-main","action":"trade","source_ip":"127.0.0.1","label":"attack",{rest}}}"#
    )
}

fn request(h: &Header, line: &str) -> RequestEvent {
    match parse_event(h, line, 2).unwrap() {
        Event::Request(r) => r,
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_limit_order_is_sized_from_its_quote_notional_and_carries_the_reference_at_its_time() {
    let h = header();
    let r = request(
        &h,
        &trade(
            "2022-10-19T12:00:00Z",
            r#""symbol":"DMG-USD","side":"buy","price":"0.3","asset":"USD","amount":"1000""#,
        ),
    );
    let o = r.order.clone().unwrap();
    assert_eq!((o.base.as_str(), o.quote.as_str()), ("DMG", "USD"));
    assert_eq!((o.side, o.kind), (Side::Buy, OrderKind::Limit));
    assert_eq!(
        o.quantity,
        Some(d("3333.33333333")),
        "rounded down to 8 places"
    );
    assert_eq!(o.price, Some(d("0.3")));
    // The series moved the market to 0.025 at midnight; the reference is read at the event.
    let reference = o.reference.unwrap();
    assert_eq!(reference.price, d("0.025"));
    assert_eq!(reference.at, r.t);
    let intent = r.intent();
    assert_eq!(intent.asset.as_deref(), Some("USD"));
    assert_eq!(intent.amount, Some(d("999.999999999")), "quantity × price");
    assert_eq!(intent.order, Some(o));
    // Before the series' first point, the instrument's own reference.
    let early = request(
        &h,
        &trade(
            "2022-10-18T08:00:00Z",
            r#""symbol":"DMG-USD","side":"sell","price":"0.019","asset":"USD","amount":"19""#,
        ),
    );
    assert_eq!(early.order.unwrap().reference.unwrap().price, d("0.02"));
}

#[test]
fn market_orders_are_sized_in_the_asset_they_name() {
    let h = header();
    let quote = request(
        &h,
        &trade(
            "2022-10-18T01:00:00Z",
            r#""symbol":"BTC-USD","side":"buy","asset":"USD","amount":"5000""#,
        ),
    );
    let o = quote.order.clone().unwrap();
    assert_eq!(o.kind, OrderKind::Market);
    assert_eq!((o.quantity, o.quote_quantity), (None, Some(d("5000"))));
    assert_eq!(quote.intent().amount, Some(d("5000")));
    let base = request(
        &h,
        &trade(
            "2022-10-18T01:00:00Z",
            r#""symbol":"BTC-USD","side":"sell","asset":"BTC","amount":"0.5""#,
        ),
    );
    let o = base.order.clone().unwrap();
    assert_eq!((o.quantity, o.quote_quantity), (Some(d("0.5")), None));
    // Valued by the decider at the reference price: the intent names the quote, no amount.
    let intent = base.intent();
    assert_eq!(intent.asset.as_deref(), Some("USD"));
    assert_eq!(intent.amount, None);
}

#[test]
fn version_1_files_read_as_before() {
    let v1 = r#"{"scenario":"k","version":1,"start":"2023-11-04T16:47:00Z","prices":{"USDT":"1","BTC":"36500"}}"#;
    let text = format!(
        "{v1}\n{}\n",
        r#"{"t":"2023-11-04T16:47:27Z","kind":"request","client":"mm","venue":"btse-main","action":"trade","asset":"USDT","amount":"4100","to":null,"source_ip":"127.0.1.13","label":"normal"}"#
    );
    let (h, events) = parse(&text).unwrap();
    assert_eq!(h.version, 1);
    assert!(h.instruments.is_empty());
    let Event::Request(r) = &events[0] else {
        panic!("{events:?}")
    };
    assert_eq!(r.order, None);
    let intent = r.intent();
    assert_eq!(
        (intent.asset.as_deref(), intent.amount, intent.order),
        (Some("USDT"), Some(d("4100")), None)
    );
    // A version-1 file cannot name orders or instruments: it says which version does.
    let with_symbol = text.replace(
        r#""asset":"USDT""#,
        r#""symbol":"BTCUSDT","side":"buy","asset":"USDT""#,
    );
    let e = parse(&with_symbol).unwrap_err();
    assert_eq!(e.line, 2);
    assert!(e.message.contains("version-2 header"), "{e}");
    let e = parse_header(&format!("{},\"instruments\":{{}}}}", &v1[..v1.len() - 1])).unwrap_err();
    assert!(e.message.contains("version-2 header"), "{e}");
}

#[test]
fn bad_orders_and_instruments_are_refused_with_their_line() {
    let h = header();
    let cases = [
        (
            r#""symbol":"SHIT-USD","side":"buy","price":"1","asset":"USD","amount":"5""#,
            "not in the header's instruments",
        ),
        (
            r#""symbol":"DMG-USD","price":"1","asset":"USD","amount":"5""#,
            "names its symbol and its side",
        ),
        (
            r#""side":"buy","asset":"USD","amount":"5""#,
            "names its symbol and its side",
        ),
        (
            r#""symbol":"DMG-USD","side":"long","asset":"USD","amount":"5""#,
            "is not \"buy\" or \"sell\"",
        ),
        (
            r#""symbol":"DMG-USD","side":"buy","price":"0","asset":"USD","amount":"5""#,
            "price is zero",
        ),
        (
            r#""symbol":"DMG-USD","side":"buy","price":"-1","asset":"USD","amount":"5""#,
            "negative",
        ),
        (
            r#""symbol":"DMG-USD","side":"buy","price":1,"asset":"USD","amount":"5""#,
            "invalid type",
        ),
        (
            r#""symbol":"DMG-USD","side":"buy","price":"0.02","asset":"DMG","amount":"5""#,
            "a limit order's asset is the quote",
        ),
        (
            r#""symbol":"DMG-USD","side":"buy","asset":"BTC","amount":"5""#,
            "a market order's asset is the quote",
        ),
        (
            r#""symbol":"BTC-USD","side":"buy","price":"20000","asset":"USD","amount":"0.00000001""#,
            "at 8 decimal places",
        ),
        (
            r#""symbol":"DMG-USD","side":"buy","asset":"USD","amount":"5","leverage":"10""#,
            "unknown field",
        ),
    ];
    for (rest, expect) in cases {
        let e = parse_event(&h, &trade("2022-10-18T01:00:00Z", rest), 7).unwrap_err();
        assert_eq!(e.line, 7, "{rest}");
        assert!(e.message.contains(expect), "{rest}: {e}");
    }
    // Orders belong to trades.
    let read = r#"{"t":"2022-10-18T01:00:00Z","kind":"request","client":"bot","venue":"ftx-main","action":"read","symbol":"DMG-USD","source_ip":"127.0.0.1","label":"normal"}"#;
    assert!(
        parse_event(&h, read, 3)
            .unwrap_err()
            .message
            .contains("belong to trades")
    );
    let outflow = r#"{"t":"2022-10-18T01:00:00Z","kind":"outflow","venue":"ftx-main","asset":"USD","amount":"5","to":"x","tx":"1","side":"buy","label":"attack"}"#;
    assert!(
        parse_event(&h, outflow, 3)
            .unwrap_err()
            .message
            .contains("belong to trades")
    );
    // Instruments: two assets, a positive reference, a series in time order after the start.
    for (bad, expect) in [
        (
            V2.replace(r#""base":"DMG""#, r#""base":"USD""#),
            "two different assets",
        ),
        (
            V2.replace(r#""reference":"19200""#, r#""reference":"0""#),
            "reference is zero",
        ),
        (
            V2.replace("2022-10-19T00:00:00Z", "2022-10-17T00:00:00Z"),
            "time order",
        ),
        (
            V2.replace(r#""reference":"0.025""#, r#""reference":0.025"#),
            "decimal strings",
        ),
        (
            V2.replace(
                r#""quote":"USD","reference":"19200""#,
                r#""quote":"USD","reference":"19200","tick":"1""#,
            ),
            "unknown field",
        ),
    ] {
        let e = parse_header(&bad).unwrap_err();
        assert_eq!(e.line, 1);
        assert!(e.message.contains(expect), "{expect}: {e}");
    }
    assert!(
        parse_header(&V2.replace(r#""version":2"#, r#""version":4"#))
            .unwrap_err()
            .message
            .contains("version 4")
    );
}

fn seen(outcome: Outcome) -> Observed {
    Observed {
        outcome,
        stage: Stage::Policy,
        froze: None,
        detectors: vec![],
        fate: keygate_core::replay::Fate::Unfollowed,
    }
}

#[test]
fn the_report_counts_attack_trades_and_their_notional() {
    let h = header();
    let mut tally = Tally::new(&h, "in-process", &[]);
    let buy = |amount: &str| {
        request(
            &h,
            &trade(
                "2022-10-19T12:00:00Z",
                &format!(
                    r#""symbol":"DMG-USD","side":"buy","price":"0.5","asset":"USD","amount":"{amount}""#
                ),
            ),
        )
    };
    tally.request(&buy("1000"), &seen(Outcome::Deny));
    tally.request(&buy("250.5"), &seen(Outcome::Allow));
    tally.request(&buy("700"), &seen(Outcome::Hold));
    // A market sell of 0.1 BTC, valued at the reference (19,200 USD).
    let sell = request(
        &h,
        &trade(
            "2022-10-19T12:00:01Z",
            r#""symbol":"BTC-USD","side":"sell","asset":"BTC","amount":"0.1""#,
        ),
    );
    assert_eq!(tally.trade_cents(&sell), 192_000);
    tally.request(&sell, &seen(Outcome::Allow));
    // Normal trades are not attack trades.
    let mut normal = buy("99");
    normal.label = keygate_core::replay::Label::Normal;
    tally.request(&normal, &seen(Outcome::Allow));
    let r = tally.report();
    assert_eq!((r.attack_trades, r.attack_trades_allowed), (4, 2));
    assert_eq!(r.attack_trade_notional_usd, "3870.50");
    assert_eq!(r.attack_trade_notional_allowed_usd, "2170.50");
    // Trades move no funds out: the value figures are unchanged.
    assert_eq!(r.attack_attempted_usd, "0.00");
    assert_eq!(r.attack_allowed_usd, "0.00");
    assert_eq!(r.attack.events, 4);
    let last = r.timeline.last().unwrap();
    assert_eq!(
        (last.trade_attempted_cents, last.trade_allowed_cents),
        (387_050, 217_050)
    );
}
