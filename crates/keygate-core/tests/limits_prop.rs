//! Property: for random interleavings of intents and times (times may even step back), the
//! value allowed in every rolling window never exceeds its cap, for every limit and bucket.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test crate: a failed unwrap is a failed test

use keygate_core::auth::ClientRecord;
use keygate_core::book::Destination;
use keygate_core::decide::StateInputs;
use keygate_core::limits::{LimitSpec, Move, Selector};
use keygate_core::policy::{Policies, PolicySource};
use keygate_core::time::{HOUR, MINUTE};
use keygate_core::{Action, Engine, Intent, Outcome, State, decide};
use std::cell::Cell;

use keygate_core::decide::Stage;
use proptest::prelude::*;
use proptest::test_runner::{TestCaseError, TestRunner};
use rust_decimal::Decimal;

const CLIENTS: [&str; 3] = ["a", "b", "c"];
const ASSETS: [&str; 2] = ["USDT", "ETH"];
const T0: i64 = 1_700_000_000_000;

fn limit(name: &str, client: Selector, asset: Selector, window: i64) -> LimitSpec {
    LimitSpec {
        name: name.into(),
        client,
        venue: Selector::All,
        asset,
        actions: vec![Action::Withdraw, Action::Transfer],
        window,
        max_usd_cents: None,
        max_amount: None,
        max_count: None,
    }
}

fn engine() -> Engine {
    let mut treasury = limit("treasury-1h", Selector::All, Selector::All, HOUR);
    treasury.max_usd_cents = Some(2_000_000);
    let mut per_client = limit("client-10m", Selector::Each, Selector::All, 10 * MINUTE);
    per_client.max_usd_cents = Some(700_000);
    let mut eth = limit(
        "eth-units-24h",
        Selector::All,
        Selector::Only("ETH".into()),
        24 * HOUR,
    );
    eth.max_amount = Some(Decimal::from(9));
    let mut count = limit(
        "b-count-1h",
        Selector::Only("b".into()),
        Selector::Each,
        HOUR,
    );
    count.max_count = Some(5);
    Engine {
        trading: Default::default(),
        policies: Policies::load(&[PolicySource {
            name: "all.cedar".into(),
            text: "permit(principal, action, resource);".into(),
        }])
        .unwrap(),
        limits: vec![treasury, per_client, eth, count],
        pinned: vec![
            ("USDT".into(), Decimal::ONE),
            ("ETH".into(), Decimal::from(2_000)),
        ],
        price_max_age: MINUTE,
        max_clock_skew: 5_000,
        assets: vec![],
        venue_credentials: vec![],
        detectors: keygate_core::detect::DetectorConfig::off(),
    }
}

fn state(e: &Engine) -> State {
    let clients = CLIENTS
        .iter()
        .map(|c| ClientRecord {
            instruments: vec![],
            name: c.to_string(),
            venues: vec!["v".into()],
            actions: Action::ALL.to_vec(),
            tags: vec![],
            enabled: true,
        })
        .collect();
    let destinations = ASSETS
        .iter()
        .enumerate()
        .map(|(i, a)| Destination {
            route: Default::default(),
            id: i as i64,
            venue: "v".into(),
            asset: a.to_string(),
            address: "dest".into(),
            label: "d".into(),
            added_at: 0,
            added_by: "t".into(),
            usable_from: 0,
            approved_at: Some(0),
            approved_by: Some("t".into()),
        })
        .collect();
    State::new(
        e,
        StateInputs {
            trades: vec![],
            trades_complete_since: None,
            clients_since: vec![],
            clients,
            destinations,
            prices: vec![],
            moves: vec![],
            clock: T0,
            freezes: vec![],
            outflows: vec![],
        },
    )
    .unwrap()
}

/// The largest total of any window of `window` ms over `moves` that a filter selects, checked at
/// every move's time (a window's total can only peak at a move).
fn max_window<F: Fn(&Move) -> bool>(
    moves: &[Move],
    window: i64,
    f: F,
    value: impl Fn(&Move) -> Decimal,
) -> Decimal {
    let mut best = Decimal::ZERO;
    for end in moves.iter().map(|m| m.at) {
        let total: Decimal = moves
            .iter()
            .filter(|m| m.at > end - window && m.at <= end && f(m))
            .map(&value)
            .sum();
        best = best.max(total);
    }
    best
}

/// One random run: returns how many intents the limits denied.
fn run(steps: Vec<(usize, usize, i64, i64, bool)>) -> Result<usize, TestCaseError> {
    let e = engine();
    let mut s = state(&e);
    let mut now = T0;
    let mut latest = T0;
    let mut allowed: Vec<Move> = vec![];
    let mut bitten = 0;
    for (c, a, amount, dt, transfer) in steps {
        // A step back goes at most 4s behind the latest time so far (several in a row must not
        // add up past the 5s clock skew).
        now = (now + dt).max(latest - 4_000);
        latest = latest.max(now);
        let intent = Intent {
            route: Default::default(),
            order: None,
            client: CLIENTS[c].into(),
            venue: "v".into(),
            action: if transfer {
                Action::Transfer
            } else {
                Action::Withdraw
            },
            asset: Some(ASSETS[a].into()),
            // ETH amounts in thousandths, USDT in whole units.
            amount: Some(if a == 1 {
                Decimal::new(amount, 3)
            } else {
                Decimal::from(amount)
            }),
            destination: Some("dest".into()),
            source_ip: None,
            token_id: None,
        };
        let v = decide(&e, &s, &intent, now);
        // Steps back stay within the clock skew, so every deny here is the limits' doing.
        prop_assert!(v.stage != Stage::Clock, "{v:?}");
        match v.outcome {
            Outcome::Allow => allowed.push(v.debit.clone().unwrap()),
            _ => {
                prop_assert_eq!(v.stage, Stage::Limit);
                bitten += 1;
            }
        }
        s.record(&v);
    }
    let usd = |m: &Move| Decimal::from(m.usd_cents);
    prop_assert!(max_window(&allowed, HOUR, |_| true, usd) <= Decimal::from(2_000_000));
    for c in CLIENTS {
        prop_assert!(
            max_window(&allowed, 10 * MINUTE, |m| m.client == c, usd) <= Decimal::from(700_000)
        );
    }
    prop_assert!(
        max_window(&allowed, 24 * HOUR, |m| m.asset == "ETH", |m| m.amount) <= Decimal::from(9)
    );
    for a in ASSETS {
        prop_assert!(
            max_window(
                &allowed,
                HOUR,
                |m| m.client == "b" && m.asset == a,
                |_| Decimal::ONE
            ) <= Decimal::from(5)
        );
    }
    Ok(bitten)
}

#[test]
fn allowed_value_never_exceeds_a_cap() {
    let mut runner = TestRunner::new(ProptestConfig::with_cases(200));
    let bitten = Cell::new(0usize);
    let steps = prop::collection::vec(
        (
            0usize..3,
            0usize..2,
            1i64..4000,
            -4_000i64..20 * MINUTE,
            any::<bool>(),
        ),
        1..120,
    );
    runner
        .run(&steps, |steps| {
            bitten.set(bitten.get() + run(steps)?);
            Ok(())
        })
        .unwrap();
    // The traffic is heavy enough that the limits had to refuse, or the test proves nothing.
    assert!(
        bitten.get() > 100,
        "the limits denied only {} intents",
        bitten.get()
    );
}
