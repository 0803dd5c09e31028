//! A leaked sub-account key used straight at the venue (around keygate), on a simulated clock
//! shared by keygate's store and keygate-sim, so 40 minutes of attack run in a second or two:
//! the thief drains in 20 withdrawals (or 20 market orders) spread over 40 simulated minutes;
//! keygate polls the venue's histories every 30 simulated seconds and runs its containment
//! every 5, exactly as its background tasks would (`reconcile::pass`,
//! `reconcile_orders::pass`, `containment::pass`, driven in-process). The first action is
//! reconciled as unapproved, the venue frozen, the key locked to keygate's egress and the
//! sub-account swept: every later attempt fails at the venue, and the thief keeps the first
//! only. The same on Binance and on OKX.
//!
//! The simulator's clock is process-wide (`keygate_sim::use_clock`), hence a test binary of
//! its own; its tests take turns on the one clock.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test crate: a failed unwrap is a failed test

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use keygate_core::auth::ClientRecord;
use keygate_core::freeze::Scope;
use keygate_core::time::{DAY, MINUTE, SECOND};
use keygate_core::{Action, Engine, Millis};
use keygate_server::containment::{self, Containment, Policy, Setup};
use keygate_server::{Gateway, VenueSetup, reconcile, reconcile_orders, reconcile_transfers};
use keygate_sim::{Master, Sim, SimConfig, SubAccount, VenueKind as SimKind};
use keygate_store::{Backend, Clock, Decider, DeciderOptions, NewCredential, Store, testing};
use keygate_vault::{Binding, CredentialKind, CredentialSecret, MasterKey, SecretString};
use keygate_venues::containment::Lock;
use keygate_venues::{Adapter, AdapterOptions, VenueKind};
use rust_decimal::Decimal;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const MASTER: [u8; 32] = [7; 32];
/// How often keygate reads the venue's histories (`reconcile_every`), in simulated time.
const POLL: Millis = 30 * SECOND;
/// How often the containment runner works (`[containment]` pace), in simulated time.
const STEP: Millis = 5 * SECOND;
/// The attack: 20 actions, the first at the start, the last 40 minutes later.
const ATTEMPTS: i64 = 20;
const SPAN: Millis = 40 * MINUTE;

/// The one simulated clock of this process, and the lock that gives each test its turn.
fn clock() -> &'static (Clock, tokio::sync::Mutex<()>) {
    static CLOCK: OnceLock<(Clock, tokio::sync::Mutex<()>)> = OnceLock::new();
    CLOCK.get_or_init(|| {
        // A day ahead, after everything the setup records on the host's clock.
        let clock = Clock::simulated(keygate_server::now_ms() + DAY);
        let Clock::Simulated(shared) = &clock else {
            unreachable!("a simulated clock")
        };
        keygate_sim::use_clock(shared.clone()).unwrap();
        (clock, tokio::sync::Mutex::new(()))
    })
}

/// The venue under attack: Binance, or OKX.
#[derive(Clone, Copy)]
enum V {
    Binance,
    Okx,
}

impl V {
    fn name(self) -> &'static str {
        match self {
            V::Binance => "binance",
            V::Okx => "okx",
        }
    }
}

fn sim(v: V) -> Sim {
    let mut accounts = json!([
        {"venue": v.name(), "api_key": "master", "secret": "master-secret",
         "restrictions": {"ip_restrict": true, "ip": ["127.0.0.1"], "enable_internal_transfer": true,
                          "enable_spot_and_margin_trading": true}},
        {"venue": v.name(), "api_key": "leaked", "secret": "leaked-secret",
         "balances": {"USDT": "200000", "BTC": "2"},
         "restrictions": {"enable_withdrawals": true, "enable_spot_and_margin_trading": true}},
        // Another sub-account of the same master, where the thief moves funds to.
        {"venue": v.name(), "api_key": "other", "secret": "other-secret"},
    ]);
    if let V::Okx = v {
        accounts[0]["passphrase"] = json!("mp");
        accounts[1]["passphrase"] = json!("lp");
        accounts[2]["passphrase"] = json!("op");
    }
    let config = SimConfig::from_json(&json!({ "accounts": accounts }).to_string()).unwrap();
    let masters = vec![Master {
        venue: match v {
            V::Binance => SimKind::Binance,
            V::Okx => SimKind::Okx,
        },
        api_key: "master".into(),
        sub_accounts: vec![
            SubAccount {
                name: "trading1@example.com".into(),
                api_key: "leaked".into(),
            },
            SubAccount {
                name: "thief@example.com".into(),
                api_key: "other".into(),
            },
        ],
    }];
    Sim::new_with_masters(config, masters).unwrap()
}

async fn serve(sim: &Sim) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(keygate_sim::serve(listener, sim.clone()));
    addr
}

/// Seals a venue credential into the store.
async fn credential(store: &Store, v: V, id: &str, key: &str, secret: &str, pass: &str) {
    let master = MasterKey::from_bytes(MASTER);
    let (kind, parts) = match v {
        V::Binance => (CredentialKind::BinanceHmac, vec![key, secret]),
        V::Okx => (CredentialKind::OkxHmac, vec![key, secret, pass]),
    };
    let parts = parts
        .iter()
        .map(|p| SecretString::new((*p).into()))
        .collect();
    let secret = CredentialSecret::new(kind, parts).unwrap();
    let binding = Binding {
        id,
        venue: v.name(),
        kind: secret.kind().as_str(),
        version: 1,
    };
    let sealed = keygate_vault::seal(&master, &binding, &secret.encode()).unwrap();
    store
        .insert_credential(&NewCredential {
            id: id.into(),
            version: 1,
            venue: v.name().into(),
            kind: secret.kind().as_str().into(),
            fingerprint: secret.fingerprint(),
            key_id: sealed.key_id.as_str().into(),
            wrapped_key: sealed.wrapped_key,
            ciphertext: sealed.ciphertext,
            created_ms: keygate_server::now_ms(),
        })
        .await
        .unwrap();
}

/// A store on the simulated clock with the trading credential (the key that leaks), the
/// master's containment credential, and (`client`) a client that trades BTC/USDT on the venue.
/// With no client, the order history is read for the pairs of the assets the account holds.
async fn store(v: V, clock: &Clock, client: bool) -> (Store, Option<tempfile::TempDir>) {
    let (store, dir) = testing::fresh_store(Backend::Sqlite).await;
    let master = MasterKey::from_bytes(MASTER);
    store
        .set_meta(keygate_store::MASTER_KEY_ID, master.id().as_str())
        .await
        .unwrap();
    credential(&store, v, "cr_trading", "leaked", "leaked-secret", "lp").await;
    credential(&store, v, "cr_master", "master", "master-secret", "mp").await;
    if client {
        store
            .add_client(
                &ClientRecord {
                    name: "mm".into(),
                    venues: vec![v.name().into()],
                    actions: vec![Action::Trade],
                    tags: vec![],
                    enabled: true,
                    instruments: vec!["BTC/USDT".into()],
                },
                "alice",
                keygate_server::now_ms(),
            )
            .await
            .unwrap();
    }
    (store.with_clock(clock.clone()), dir)
}

fn policy() -> Policy {
    Policy {
        lock: Some(Lock::IpRestrict {
            addresses: vec!["127.0.0.1".into()],
        }),
        stop_transfers: true,
        sweep: true,
        sweep_rounds: 2,
        retry_min: Duration::from_millis(20),
        retry_max: Duration::from_millis(100),
        every: Duration::from_millis(STEP as u64),
        lease_ttl: Duration::from_secs(60),
        pinned: vec![
            ("USDT".into(), Decimal::ONE),
            ("BTC".into(), Decimal::from(60_000)),
        ],
    }
}

/// One keygate instance on `store`: the venue at `addr`, frozen whole on an unapproved
/// action (`[containment] unapproved_outflow = "venue"`), contained by the master key.
fn gateway(store: &Store, v: V, addr: SocketAddr) -> Gateway {
    let kind = match v {
        V::Binance => VenueKind::Binance,
        V::Okx => VenueKind::Okx,
    };
    let venue = VenueSetup {
        name: v.name().into(),
        adapter: Adapter::new(kind, AdapterOptions::default()),
        base_url: format!("http://{addr}"),
        credential: "cr_trading".into(),
        timeout: Duration::from_secs(5),
        reconcile_every: Some(Duration::from_millis(POLL as u64)),
        reconcile_lookback: Duration::from_secs(10 * 60),
        contain: Some(Scope::Venue(v.name().into())),
        anonymous_public: false,
        anonymous_rate: 1,
    };
    let engine = Arc::new(Engine {
        trading: Default::default(),
        policies: keygate_core::policy::Policies::load(&[]).unwrap(),
        limits: vec![],
        pinned: vec![],
        price_max_age: 60_000,
        max_clock_skew: 5_000,
        assets: vec![],
        venue_credentials: vec![],
        detectors: keygate_core::detect::DetectorConfig::off(),
    });
    let decider = Decider::start(store.clone(), engine, DeciderOptions::default());
    let setup = Setup {
        venue: v.name().into(),
        credential: "cr_master".into(),
        sub_account: "trading1@example.com".into(),
    };
    Gateway::new(
        decider,
        store.clone(),
        MasterKey::from_bytes(MASTER),
        vec![venue],
        Duration::from_secs(60),
    )
    .unwrap()
    .with_containment(Containment::new(policy(), vec![setup]))
}

/// The raw HTTP request of `path` with `params` (Binance: the query; OKX: the JSON body),
/// signed with the leaked key at `now`.
fn signed(v: V, addr: SocketAddr, path: &str, params: &str, now: Millis) -> String {
    match v {
        V::Binance => {
            let query = format!("{params}&timestamp={now}");
            let sig = keygate_venues::binance::signature("leaked-secret", &query);
            format!(
                "POST {path}?{query}&signature={sig} HTTP/1.1\r\nHost: {addr}\r\nX-MBX-APIKEY: leaked\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            )
        }
        V::Okx => {
            let ts = keygate_venues::okx::timestamp(now);
            let sig = keygate_venues::okx::signature("leaked-secret", &ts, "POST", path, params);
            format!(
                "POST {path} HTTP/1.1\r\nHost: {addr}\r\nOK-ACCESS-KEY: leaked\r\nOK-ACCESS-SIGN: {sig}\r\nOK-ACCESS-TIMESTAMP: {ts}\r\nOK-ACCESS-PASSPHRASE: lp\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{params}",
                params.len()
            )
        }
    }
}

/// Sends `path` signed with the leaked key at `now` from 127.0.0.2 (the thief's address, not
/// keygate's) straight to the venue: its HTTP status, and whether the venue did it (OKX
/// answers a refusal of its own with HTTP 200 and a non-zero `code`).
async fn thief_sends(
    v: V,
    addr: SocketAddr,
    (path, params): (&str, &str),
    now: Millis,
) -> (u16, bool) {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.2:0".parse().unwrap()).unwrap();
    let mut stream = socket.connect(addr).await.unwrap();
    stream
        .write_all(signed(v, addr, path, params, now).as_bytes())
        .await
        .unwrap();
    let mut raw = String::new();
    stream.read_to_string(&mut raw).await.unwrap();
    let status: u16 = raw.split(' ').nth(1).unwrap().parse().unwrap();
    let done = status == 200 && (matches!(v, V::Binance) || raw.contains(r#""code":"0""#));
    (status, done)
}

/// What the simulated attack came to.
struct Attack {
    /// (simulated time, HTTP status, done at the venue) of each attempt.
    attempts: Vec<(Millis, u16, bool)>,
    /// When keygate first judged an action unapproved, and when containment finished.
    caught_at: Option<Millis>,
    contained_at: Option<Millis>,
}

/// Runs the attack on the simulated clock: the thief's attempts at their times, keygate's
/// history polls every [`POLL`] and its containment runner every [`STEP`].
async fn attack(gw: &Gateway, v: V, clock: &Clock, addr: SocketAddr, what: (&str, &str)) -> Attack {
    let setup = gw.venues[v.name()].clone();
    let start = clock.now();
    let due: Vec<Millis> = (0..ATTEMPTS)
        .map(|i| start + i * SPAN / (ATTEMPTS - 1))
        .collect();
    let mut a = Attack {
        attempts: vec![],
        caught_at: None,
        contained_at: None,
    };
    let mut next_poll = start + POLL;
    let mut t = start;
    while t <= start + SPAN + MINUTE {
        clock.advance(t);
        while a.attempts.len() < due.len() && due[a.attempts.len()] <= t {
            let (status, done) = thief_sends(v, addr, what, t).await;
            a.attempts.push((t, status, done));
        }
        if t >= next_poll {
            next_poll += POLL;
            let w = reconcile::pass(gw, &setup).await.unwrap();
            let o = reconcile_orders::pass(gw, &setup).await.unwrap();
            let x = reconcile_transfers::pass(gw, &setup).await.unwrap();
            if a.caught_at.is_none()
                && !(w.unapproved.is_empty() && o.unapproved.is_empty() && x.is_empty())
            {
                a.caught_at = Some(t);
            }
        }
        containment::pass(gw).await.unwrap();
        if a.contained_at.is_none()
            && a.caught_at.is_some()
            && gw.store.containments(false).await.unwrap().is_empty()
        {
            a.contained_at = Some(t);
        }
        t += STEP;
    }
    a
}

/// The thief got its first attempt through and nothing after; keygate caught it at its first
/// poll, contained the venue before the second attempt, and the attempts span 40 minutes.
fn assert_first_only(a: &Attack) {
    let statuses: Vec<(u16, bool)> = a.attempts.iter().map(|(_, s, d)| (*s, *d)).collect();
    assert_eq!(statuses.len(), ATTEMPTS as usize);
    assert_eq!(statuses[0], (200, true), "{statuses:?}");
    assert!(
        statuses[1..].iter().all(|s| *s == (401, false)),
        "every later attempt is refused at the venue: {statuses:?}"
    );
    let (first, last) = (a.attempts[0].0, a.attempts[ATTEMPTS as usize - 1].0);
    assert!(last - first >= SPAN - STEP, "the attack spans 40 minutes");
    let caught = a.caught_at.expect("the first action is caught");
    assert!(caught - first <= POLL, "caught at the first poll after it");
    let contained = a.contained_at.expect("containment finished");
    assert!(
        contained < a.attempts[1].0,
        "contained before the second attempt"
    );
}

/// Everything left in the sub-account is now the master's.
fn assert_swept(sim: &Sim) {
    for asset in ["USDT", "BTC"] {
        assert_eq!(
            sim.balance("leaked", asset),
            Some(Decimal::ZERO),
            "{asset} left"
        );
    }
}

/// The thief's withdrawal of 10,000 USDT.
fn withdrawal(v: V) -> (&'static str, &'static str) {
    match v {
        V::Binance => (
            "/sapi/v1/capital/withdraw/apply",
            "coin=USDT&address=0xattacker&amount=10000",
        ),
        V::Okx => (
            "/api/v5/asset/withdrawal",
            r#"{"ccy":"USDT","amt":"10000","dest":"4","toAddr":"0xattacker","chain":"USDT-ERC20"}"#,
        ),
    }
}

/// The thief's market buy of 10,000 USDT of BTC, at the venue's asks.
fn market_buy(v: V) -> (&'static str, &'static str) {
    match v {
        V::Binance => (
            "/api/v3/order",
            "symbol=BTCUSDT&side=BUY&type=MARKET&quoteOrderQty=10000",
        ),
        V::Okx => (
            "/api/v5/trade/order",
            r#"{"instId":"BTC-USDT","tdMode":"cash","side":"buy","ordType":"market","sz":"10000","tgtCcy":"quote_ccy"}"#,
        ),
    }
}

async fn drain_by_withdrawals(v: V) {
    let (clock, turn) = clock();
    let _turn = turn.lock().await;
    let sim = sim(v);
    let addr = serve(&sim).await;
    let (store, _dir) = store(v, clock, false).await;
    let gw = gateway(&store, v, addr);

    let a = attack(&gw, v, clock, addr, withdrawal(v)).await;
    assert_first_only(&a);
    assert_eq!(sim.withdrawals().len(), 1, "one withdrawal left the venue");
    assert_swept(&sim);
    assert_eq!(sim.balance("master", "USDT"), Some(Decimal::from(190_000)));
    assert_eq!(sim.balance("master", "BTC"), Some(Decimal::from(2)));
    let freezes = store.freezes(false).await.unwrap();
    assert_eq!(freezes.len(), 1);
    assert_eq!(freezes[0].freeze.scope, Scope::Venue(v.name().into()));
}

async fn drain_by_orders(v: V) {
    let (clock, turn) = clock();
    let _turn = turn.lock().await;
    let sim = sim(v);
    let addr = serve(&sim).await;
    let (store, _dir) = store(v, clock, true).await;
    let gw = gateway(&store, v, addr);

    let a = attack(&gw, v, clock, addr, market_buy(v)).await;
    assert_first_only(&a);
    let orders: Vec<_> = sim
        .orders()
        .into_iter()
        .filter(|o| o.api_key == "leaked")
        .collect();
    assert_eq!(orders.len(), 1, "one order reached the book");
    assert!(sim.withdrawals().is_empty());
    assert_swept(&sim);
    // The master holds what the sub-account had, less what the one order spent, plus what it
    // bought.
    let master_usdt = sim.balance("master", "USDT").unwrap();
    let master_btc = sim.balance("master", "BTC").unwrap();
    assert!(
        master_usdt > Decimal::from(189_999) && master_usdt < Decimal::from(190_001),
        "{master_usdt}"
    );
    assert!(master_btc > Decimal::from(2), "{master_btc}");
    let freezes = store.freezes(false).await.unwrap();
    assert_eq!(freezes.len(), 1);
    assert!(
        freezes[0].freeze.reason.contains("an unapproved order"),
        "{}",
        freezes[0].freeze.reason
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drain_by_withdrawals_around_keygate_over_40_minutes_gets_the_first_only() {
    drain_by_withdrawals(V::Binance).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drain_by_orders_around_keygate_over_40_minutes_gets_the_first_only() {
    drain_by_orders(V::Binance).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drain_by_transfers_to_another_sub_account_around_keygate_gets_the_first_only() {
    let v = V::Binance;
    let (clock, turn) = clock();
    let _turn = turn.lock().await;
    let sim = sim(v);
    let addr = serve(&sim).await;
    let (store, _dir) = store(v, clock, false).await;
    let gw = gateway(&store, v, addr);

    let a = attack(
        &gw,
        v,
        clock,
        addr,
        (
            "/sapi/v1/sub-account/transfer/subToSub",
            "toEmail=thief@example.com&asset=USDT&amount=10000",
        ),
    )
    .await;
    assert_first_only(&a);
    assert_eq!(
        sim.sub_to_subs().len(),
        1,
        "one transfer to the other sub-account"
    );
    assert_eq!(sim.balance("other", "USDT"), Some(Decimal::from(10_000)));
    assert!(sim.withdrawals().is_empty());
    assert_swept(&sim);
    assert_eq!(sim.balance("master", "USDT"), Some(Decimal::from(190_000)));
    // Containment's own sweeps to the master are in the history too, and raise nothing.
    let freezes = store.freezes(false).await.unwrap();
    assert_eq!(freezes.len(), 1, "{freezes:?}");
    assert!(
        freezes[0]
            .freeze
            .reason
            .contains("sub-account:thief@example.com"),
        "{}",
        freezes[0].freeze.reason
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_okx_a_drain_by_withdrawals_around_keygate_gets_the_first_only() {
    drain_by_withdrawals(V::Okx).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_okx_a_drain_by_orders_around_keygate_gets_the_first_only() {
    drain_by_orders(V::Okx).await;
}
