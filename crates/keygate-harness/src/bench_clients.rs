//! `bench decide`, many clients: durable gateway decisions per second (token check, admission,
//! Cedar, limits, detectors, audit append, group commit) for a mix of reads, orders and
//! withdrawals spread over 1,000 clients, each with its own token, next to the same load from 5
//! clients in the same run. Per-client state (policy slices, limit windows, detector histories,
//! tokens) must not make the first slower than the second.

use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result};
use keygate_core::Action;
use keygate_core::auth::{ClientRecord, TokenKind, TokenRecord, new_token, parse_token};
use keygate_core::order::{Order, OrderKind, Reference, Side};
use keygate_core::policy::{Outcome, Policies, PolicySource};
use keygate_core::time::HOUR;
use keygate_core::{Engine, Intent};
use keygate_store::{Answer, Decider, DeciderOptions, GatewayRequest, OpenMode, Store};
use rust_decimal::Decimal;

const T0: i64 = 1_700_000_000_000;
const DEST: &str = "0x00000000000000000000000000000000000000aa";

/// Policies that judge every client alike (so the figure is about the number of clients, not
/// of policies).
const POLICIES: &str = r#"permit(principal, action in [Keygate::Action::"read", Keygate::Action::"cancel"], resource);
permit(principal, action == Keygate::Action::"trade", resource in Keygate::Venue::"binance")
  when { context.usd_value_cents < 100000000 };
permit(principal, action == Keygate::Action::"withdraw", resource)
  when { context has destination && context.destination.label == "cold" };
"#;

fn engine() -> Result<Engine> {
    let mut e = crate::bench::engine()?;
    e.policies = Policies::load(&[PolicySource {
        name: "clients.cedar".into(),
        text: POLICIES.into(),
    }])?;
    e.detectors = keygate_core::detect::DetectorConfig::default();
    e.validate()?;
    Ok(e)
}

fn client(k: usize) -> ClientRecord {
    ClientRecord {
        instruments: vec!["BTC/USDT".into()],
        name: format!("m{k}"),
        venues: vec!["binance".into()],
        actions: vec![Action::Read, Action::Trade, Action::Withdraw],
        tags: vec![],
        enabled: true,
    }
}

/// What the `i`th request of a submitter asks: 6 in 10 reads, 3 orders, 1 withdrawal.
fn intent(i: usize, at: i64) -> Intent {
    let base = Intent {
        order: None,
        client: String::new(),
        venue: "binance".into(),
        action: Action::Read,
        asset: None,
        amount: None,
        destination: None,
        route: Default::default(),
        source_ip: None,
        token_id: None,
    };
    match i % 10 {
        0..=5 => base,
        6..=8 => {
            let (qty, price) = (Decimal::new(1, 3), Decimal::from(40_000));
            Intent {
                action: Action::Trade,
                asset: Some("USDT".into()),
                amount: Some(qty * price),
                order: Some(Order {
                    symbol: "BTCUSDT".into(),
                    base: "BTC".into(),
                    quote: "USDT".into(),
                    side: if i.is_multiple_of(2) {
                        Side::Buy
                    } else {
                        Side::Sell
                    },
                    kind: OrderKind::Limit,
                    venue_type: "LIMIT".into(),
                    price: Some(price),
                    quantity: Some(qty),
                    quote_quantity: None,
                    reference: Some(Reference { price, at }),
                }),
                ..base
            }
        }
        _ => Intent {
            action: Action::Withdraw,
            asset: Some("USDT".into()),
            amount: Some(Decimal::from(100)),
            destination: Some(DEST.into()),
            ..base
        },
    }
}

/// A store with `n` clients, a bearer token each (returned, by client), and the destination.
async fn set_up(dir: &std::path::Path, n: usize) -> Result<(Store, Vec<String>)> {
    let url = format!("sqlite://{}", dir.join(format!("clients-{n}.db")).display());
    let store = Store::open(&url, OpenMode::Create).await?;
    let mut tokens = Vec::with_capacity(n);
    for k in 0..n {
        let c = client(k);
        store.add_client(&c, "bench", T0 - 72 * HOUR).await?;
        let mut secret = [7u8; 32];
        secret[..8].copy_from_slice(&(k as u64).to_le_bytes());
        let t = new_token((k as u64 + 1).to_be_bytes(), secret);
        store
            .insert_token(
                &TokenRecord {
                    id: t.id.clone(),
                    client: c.name.clone(),
                    kind: TokenKind::Bearer,
                    secret_hash: t.secret_hash,
                    venues: vec!["binance".into()],
                    actions: c.actions.clone(),
                    cidrs: vec!["127.0.0.0/8".parse()?],
                    issued_at: T0 - 72 * HOUR,
                    expires_at: T0 + 72 * HOUR,
                    revoked_at: None,
                },
                "bench",
            )
            .await?;
        tokens.push(t.text.to_string());
    }
    let d = store
        .add_destination(
            "binance",
            "USDT",
            DEST,
            "cold",
            HOUR,
            "alice",
            T0 - 72 * HOUR,
        )
        .await?;
    store
        .approve_destination(d.id, "bob", T0 - 72 * HOUR)
        .await?;
    Ok((store, tokens))
}

/// Answers by kind: allowed, held, denied, refused or rejected.
#[derive(Default)]
struct Tally([usize; 5], Option<String>);

impl Tally {
    fn add(&mut self, a: &Answer) {
        let i = match a {
            Answer::Decided(d) => match d.verdict.outcome {
                Outcome::Allow => 0,
                Outcome::Hold => {
                    if self.1.is_none() {
                        self.1 = d.verdict.reasons.first().cloned();
                    }
                    1
                }
                Outcome::Deny => 2,
            },
            Answer::Refused { .. } => 3,
            Answer::Rejected { .. } => 4,
        };
        self.0[i] += 1;
    }
}

/// Gateway decisions per second from `concurrency` submitters over `n` clients.
async fn run_one(
    dir: &std::path::Path,
    n: usize,
    total: usize,
    concurrency: usize,
) -> Result<(f64, Tally)> {
    let (store, tokens) = set_up(dir, n).await?;
    let tokens = Arc::new(tokens);
    let decider = Decider::start(
        store.clone(),
        Arc::new(engine()?),
        DeciderOptions::default(),
    );
    let request = |token: &str, i: usize, at: i64| -> Result<GatewayRequest> {
        let intent = intent(i, at);
        let (method, path) = match intent.action {
            Action::Read => ("GET", "/api/v3/account"),
            Action::Trade => ("POST", "/api/v3/order"),
            _ => ("POST", "/sapi/v1/capital/withdraw/apply"),
        };
        Ok(GatewayRequest {
            token: parse_token(token).map_err(|e| anyhow::anyhow!("{e}"))?,
            ip: std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST),
            venue: "binance".into(),
            method: method.into(),
            path: path.into(),
            request_text: Some(format!("{method} {path}\n")),
            intent: Ok(intent),
            request_id: None,
            hold: None,
            native_id: false,
        })
    };
    // Warm up: the first batch loads the state.
    let first = tokens.first().context("no clients")?;
    decider.gateway(request(first, 0, T0)?, T0).await?;
    let per_task = total.div_ceil(concurrency.max(1));
    let start = Instant::now();
    let mut tasks = Vec::with_capacity(concurrency);
    for t in 0..concurrency.max(1) {
        let (d, tokens) = (decider.clone(), tokens.clone());
        tasks.push(tokio::spawn(async move {
            let mut tally = Tally::default();
            for i in 0..per_task {
                // Clients in a scattered order (a multiplicative hash, uncorrelated with the
                // kind of request), so that consecutive requests rarely share one.
                let h = ((t as u64) << 32 | i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
                let k = (h >> 33) as usize % tokens.len();
                let at = T0 + 1 + i as i64;
                let a = d.gateway(request(&tokens[k], i + t, at)?, at).await?;
                tally.add(&a);
            }
            Ok::<Tally, anyhow::Error>(tally)
        }));
    }
    let mut tally = Tally::default();
    for task in tasks {
        let t = task.await??;
        for (a, b) in tally.0.iter_mut().zip(t.0) {
            *a += b;
        }
        if tally.1.is_none() {
            tally.1 = t.1;
        }
    }
    let rate = (per_task * concurrency.max(1)) as f64 / start.elapsed().as_secs_f64();
    store.close().await;
    Ok((rate, tally))
}

/// The table: 5 clients, then 1,000, the same mixed load.
pub(crate) async fn run(total: usize, concurrency: usize) -> Result<()> {
    let dir = tempfile::tempdir().context("cannot create a temporary directory")?;
    println!();
    println!(
        "many clients: durable gateway decisions (token, admission, Cedar, limits, detectors, audit, group commit), SQLite synchronous=FULL, {concurrency} submitters, 6 reads : 3 orders : 1 withdrawal"
    );
    println!(
        "{:<28} {:>12} {:>8} {:>8} {:>8} {:>8}",
        "", "per second", "allowed", "held", "denied", "refused"
    );
    let mut rates = vec![];
    for n in [5, 1_000] {
        let (rate, t) = run_one(dir.path(), n, total, concurrency).await?;
        anyhow::ensure!(
            t.0[0] > t.0.iter().sum::<usize>() / 2,
            "most of the many-clients requests should be allowed ({} of {})",
            t.0[0],
            t.0.iter().sum::<usize>()
        );
        println!(
            "{:<28} {:>12.0} {:>8} {:>8} {:>8} {:>8}",
            format!("{n} clients, a token each"),
            rate,
            t.0[0],
            t.0[1],
            t.0[2],
            t.0[3] + t.0[4]
        );
        if let Some(r) = &t.1 {
            println!("  a hold: {r}");
        }
        rates.push(rate);
    }
    if let [few, many] = rates[..] {
        println!("{:<28} {:>11.2}x", "ratio 1,000 / 5 clients", many / few);
    }
    Ok(())
}
