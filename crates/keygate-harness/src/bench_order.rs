//! `bench decide`, orders: an order intent decided with every trade detector on, over a client
//! trade history of a given size, next to bare Cedar answering the same request on the same
//! policies and entities, interleaved in one run.

use std::time::{Duration, Instant};

use anyhow::Result;
use cedar_policy::Authorizer;
use keygate_core::decide::{StateInputs, decide_watched};
use keygate_core::order::{Order, OrderKind, Reference, Side};
use keygate_core::policy::{PolicyContext, Subject};
use keygate_core::{Action, Engine, Intent, Outcome, State};
use rust_decimal::Decimal;

use crate::bench::{clients, engine, micros, percentile};

const T0: i64 = 1_700_000_000_000;

/// A BTC/USDT limit buy of `qty` at `price`, against a 40,000 market read at `at`.
fn order(client: usize, qty: &str, price: i64, at: i64) -> Result<Intent> {
    let qty: Decimal = qty.parse()?;
    let price = Decimal::from(price);
    Ok(Intent {
        route: Default::default(),
        client: format!("c{client}"),
        venue: "binance".into(),
        action: Action::Trade,
        asset: Some("USDT".into()),
        amount: Some(qty * price),
        destination: None,
        source_ip: Some(std::net::IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 5))),
        token_id: None,
        order: Some(Order {
            symbol: "BTCUSDT".into(),
            base: "BTC".into(),
            quote: "USDT".into(),
            side: if client.is_multiple_of(2) {
                Side::Buy
            } else {
                Side::Sell
            },
            kind: OrderKind::Limit,
            venue_type: "LIMIT".into(),
            price: Some(price),
            quantity: Some(qty),
            quote_quantity: None,
            reference: Some(Reference {
                price: Decimal::from(40_000),
                at,
            }),
        }),
    })
}

/// The engine with every detector on, and a state whose clients have `history` allowed trades
/// (a few seconds apart, so no detector fires on the probe).
fn set_up(history: usize) -> Result<(Engine, State)> {
    let mut e = engine()?;
    e.detectors = keygate_core::detect::DetectorConfig::default();
    let mut state = State::new(
        &e,
        StateInputs {
            trades: vec![],
            trades_complete_since: Some(T0 - 30 * 86_400_000),
            clients_since: vec![],
            clients: clients(),
            destinations: vec![],
            prices: vec![],
            moves: vec![],
            clock: T0,
            freezes: vec![],
            outflows: vec![],
        },
    )?;
    let n_clients = clients().len();
    for i in 0..history {
        let at = T0 + i as i64 * 20_000;
        let w = decide_watched(
            &e,
            &state,
            &order(i % n_clients, "0.01", 40_000, at)?,
            at,
            &Default::default(),
        );
        state.apply(&e, &w);
    }
    Ok((e, state))
}

/// The bare Cedar request for the probe order, checked to be allowed.
fn cedar_request(
    e: &Engine,
    state: &State,
    authorizer: &Authorizer,
) -> Result<cedar_policy::Request> {
    let ctx = PolicyContext {
        amount_micros: 400_000_000,
        usd_value_cents: 40_000,
        notional_usd_cents: 40_000,
        asset: "USDT".into(),
        hour_utc: 12,
        source_ip: Some(std::net::IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 5))),
        instrument: "BTC/USDT".into(),
        symbol: "BTCUSDT".into(),
        base: "BTC".into(),
        quote: "USDT".into(),
        side: "buy".into(),
        order_type: "limit".into(),
        price_micros: 40_000_000_000,
        quantity_micros: 10_000,
        reference_price_micros: 40_000_000_000,
        ..Default::default()
    };
    let subject = Subject {
        client: "c0",
        venue: "binance",
        action: Action::Trade,
        asset: Some("USDT"),
    };
    let request = e
        .policies
        .request(&subject, &ctx)
        .map_err(anyhow::Error::msg)?;
    anyhow::ensure!(
        authorizer
            .is_authorized(&request, e.policies.whole(), state.entities())
            .decision()
            == cedar_policy::Decision::Allow,
        "bare Cedar does not allow the benchmark order"
    );
    Ok(request)
}

/// Samples both, interleaved, and prints p50 and p99 with their ratio.
pub fn run(authorizer: &Authorizer, history: usize, n: usize) -> Result<()> {
    let (e, state) = set_up(history)?;
    let request = cedar_request(&e, &state, authorizer)?;
    let now = T0 + history as i64 * 20_000;
    let probe = order(0, "0.01", 40_000, now)?;
    let first = decide_watched(&e, &state, &probe, now, &Default::default());
    anyhow::ensure!(
        first.verdict.outcome == Outcome::Allow && first.signals.is_empty(),
        "the benchmark order is not a plain allow: {:?} {:?}",
        first.verdict.reasons,
        first.signals
    );
    let mut cedar: Vec<Duration> = Vec::with_capacity(n);
    let mut watched: Vec<Duration> = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        let r = authorizer.is_authorized(&request, e.policies.whole(), state.entities());
        cedar.push(t.elapsed());
        std::hint::black_box(r);
        state.forget_verdicts();
        let t = Instant::now();
        let w = decide_watched(&e, &state, &probe, now, &Default::default());
        watched.push(t.elapsed());
        std::hint::black_box(w);
    }
    cedar.sort();
    watched.sort();
    let (c50, c99, w50, w99) = (
        percentile(&cedar, 0.5),
        percentile(&cedar, 0.99),
        percentile(&watched, 0.5),
        percentile(&watched, 0.99),
    );
    println!(
        "{:<44} {:>12} {:>12}",
        format!("order, bare Cedar ({history} trades)"),
        micros(c50),
        micros(c99)
    );
    println!(
        "{:<44} {:>12} {:>12}",
        "order, decide with every trade detector",
        micros(w50),
        micros(w99)
    );
    println!(
        "{:<44} {:>11.2}x {:>11.2}x",
        "ratio order decide / bare Cedar",
        w50.as_secs_f64() / c50.as_secs_f64(),
        w99.as_secs_f64() / c99.as_secs_f64()
    );
    println!();
    Ok(())
}
