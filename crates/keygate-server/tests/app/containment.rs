//! Containment at the venue, end to end against keygate-sim: a freeze covering a venue locks
//! the leaked sub-account key (which the venue then refuses from anywhere but keygate's egress)
//! and sweeps the sub-account to the master, largest USD value first; a restart between the
//! lock and the sweep finishes the sweep without repeating the lock; a sweep whose answer is
//! lost is read back by its client id and never moves twice; on OKX the transfer-out switch is
//! turned off too. The runner is driven in-process (`containment::pass`), the venue on loopback.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use keygate_core::Engine;
use keygate_core::freeze::Scope;
use keygate_server::containment::{self, Containment, Policy, Setup};
use keygate_server::{Gateway, VenueSetup};
use keygate_sim::{Master, Sim, SimConfig, SubAccount, VenueKind as SimKind};
use keygate_store::audit::{AuditEntry, ContainmentEvent};
use keygate_store::containment::StepState;
use keygate_store::{Backend, Decider, DeciderOptions, NewCredential, Store, testing};
use keygate_vault::{Binding, CredentialKind, CredentialSecret, MasterKey, SecretString};
use keygate_venues::containment::Lock;
use keygate_venues::{Adapter, AdapterOptions, VenueKind};
use rust_decimal::Decimal;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const MASTER: [u8; 32] = [7; 32];
const IP_RESTRICT: &str = "/sapi/v2/sub-account/subAccountApi/ipRestriction";
const TRANSFER: &str = "/sapi/v1/sub-account/universalTransfer";

fn sim(okx: bool, master_trades: bool) -> Sim {
    let (venue, kind) = if okx {
        ("okx", SimKind::Okx)
    } else {
        ("binance", SimKind::Binance)
    };
    let pass = |p: &str| {
        if okx {
            json!(p)
        } else {
            serde_json::Value::Null
        }
    };
    let mut accounts = vec![
        json!({"venue": venue, "api_key": "master", "secret": "master-secret", "passphrase": pass("mp"),
               "restrictions": {"ip_restrict": true, "ip": ["127.0.0.1"], "enable_internal_transfer": true,
                                "enable_spot_and_margin_trading": master_trades}}),
        json!({"venue": venue, "api_key": "leaked", "secret": "leaked-secret", "passphrase": pass("lp"),
               "balances": {"USDT": "200000", "BTC": "2"},
               "restrictions": {"enable_withdrawals": true}}),
    ];
    for a in &mut accounts {
        if let Some(m) = a.as_object_mut() {
            m.retain(|_, v| !v.is_null());
        }
    }
    let config = SimConfig::from_json(&json!({ "accounts": accounts }).to_string()).unwrap();
    let masters = vec![Master {
        venue: kind,
        api_key: "master".into(),
        sub_accounts: vec![SubAccount {
            name: "trading1@example.com".into(),
            api_key: "leaked".into(),
        }],
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
async fn credential(store: &Store, id: &str, okx: bool, key: &str, secret: &str, pass: &str) {
    let master = MasterKey::from_bytes(MASTER);
    let (kind, mut parts) = if okx {
        (CredentialKind::OkxHmac, vec![key, secret, pass])
    } else {
        (CredentialKind::BinanceHmac, vec![key, secret])
    };
    parts.truncate(if okx { 3 } else { 2 });
    let secret = CredentialSecret::new(
        kind,
        parts
            .iter()
            .map(|p| SecretString::new((*p).into()))
            .collect(),
    )
    .unwrap();
    let venue = if okx { "okx" } else { "binance" };
    let binding = Binding {
        id,
        venue,
        kind: secret.kind().as_str(),
        version: 1,
    };
    let sealed = keygate_vault::seal(&master, &binding, &secret.encode()).unwrap();
    store
        .insert_credential(&NewCredential {
            id: id.into(),
            version: 1,
            venue: venue.into(),
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
        every: Duration::from_millis(20),
        lease_ttl: Duration::from_millis(300),
        pinned: vec![
            ("USDT".into(), Decimal::ONE),
            ("BTC".into(), Decimal::from(60_000)),
        ],
    }
}

/// A fresh store with the venue's trading credential (the leaked sub-account key) and the
/// master's containment credential.
async fn store(okx: bool) -> (Store, Option<tempfile::TempDir>) {
    let (store, dir) = testing::fresh_store(Backend::Sqlite).await;
    let master = MasterKey::from_bytes(MASTER);
    // No store price: the sweep order comes from the pinned ones.
    store
        .set_meta(keygate_store::MASTER_KEY_ID, master.id().as_str())
        .await
        .unwrap();
    credential(&store, "cr_trading", okx, "leaked", "leaked-secret", "lp").await;
    credential(&store, "cr_master", okx, "master", "master-secret", "mp").await;
    (store, dir)
}

/// A gateway (one keygate instance) on `store` with containment of the venue at `addr`.
fn gateway(store: &Store, okx: bool, addr: SocketAddr) -> Gateway {
    let (name, kind) = if okx {
        ("okx", VenueKind::Okx)
    } else {
        ("binance", VenueKind::Binance)
    };
    let venue = VenueSetup {
        name: name.into(),
        adapter: Adapter::new(kind, AdapterOptions::default()),
        base_url: format!("http://{addr}"),
        credential: "cr_trading".into(),
        timeout: Duration::from_secs(5),
        reconcile_every: None,
        reconcile_lookback: Duration::from_secs(60),
        contain: None,
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
        venue: name.into(),
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

/// Runs passes until no containment is open (at most ~20 s).
async fn until_done(gw: &Gateway) {
    for _ in 0..1000 {
        containment::pass(gw).await.unwrap();
        if gw.store.containments(false).await.unwrap().is_empty() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let open = gw.store.containments(false).await.unwrap();
    panic!("containment did not finish: {open:#?}");
}

/// A signed Binance account read with the leaked key, from `from`: its HTTP status.
async fn leaked_key_reads_from(addr: SocketAddr, from: &str) -> u16 {
    leaked_key_sends(addr, from, "GET", "/api/v3/account", "").await
}

/// A request signed with the leaked key, sent from `from` straight to the venue (around
/// keygate): its HTTP status.
async fn leaked_key_sends(
    addr: SocketAddr,
    from: &str,
    method: &str,
    path: &str,
    params: &str,
) -> u16 {
    let sep = if params.is_empty() { "" } else { "&" };
    let query = format!("{params}{sep}timestamp={}", keygate_server::now_ms());
    let sig = keygate_venues::binance::signature("leaked-secret", &query);
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(format!("{from}:0").parse().unwrap()).unwrap();
    let mut stream = socket.connect(addr).await.unwrap();
    let req = format!(
        "{method} {path}?{query}&signature={sig} HTTP/1.1\r\nHost: {addr}\r\nX-MBX-APIKEY: leaked\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(req.as_bytes()).await.unwrap();
    let mut raw = String::new();
    stream.read_to_string(&mut raw).await.unwrap();
    raw.split(' ').nth(1).unwrap().parse().unwrap()
}

async fn freeze(store: &Store, scope: Scope) {
    store
        .freeze(
            &scope,
            "unapproved outflow (test)",
            "reconcile:test",
            keygate_server::now_ms(),
        )
        .await
        .unwrap();
}

#[tokio::test]
async fn a_freeze_locks_the_leaked_key_and_sweeps_the_sub_account_largest_first() {
    let sim = sim(false, true);
    let addr = serve(&sim).await;
    let (store, _dir) = store(false).await;
    let gw = gateway(&store, false, addr);
    // No freeze: nothing happens.
    assert_eq!(
        containment::pass(&gw).await.unwrap(),
        containment::Pass::default()
    );
    assert_eq!(leaked_key_reads_from(addr, "127.0.0.2").await, 200);

    freeze(&store, Scope::Venue("binance".into())).await;
    until_done(&gw).await;

    let r = sim.key_restrictions("leaked").unwrap();
    assert!(r.ip_restrict);
    assert_eq!(r.ip, vec!["127.0.0.1".to_string()]);
    assert_eq!(
        leaked_key_reads_from(addr, "127.0.0.2").await,
        401,
        "refused from elsewhere"
    );
    assert_eq!(
        leaked_key_reads_from(addr, "127.0.0.1").await,
        200,
        "keygate's egress still works"
    );
    // Swept to the master, largest USD value first: USDT ($200,000) before BTC ($120,000),
    // though the venue lists BTC first.
    let t = sim.sub_transfers();
    let moved: Vec<_> = t.iter().map(|t| (t.asset.as_str(), t.amount)).collect();
    assert_eq!(
        moved,
        vec![("USDT", Decimal::from(200_000)), ("BTC", Decimal::from(2))]
    );
    assert!(
        t.iter()
            .all(|t| t.client_id.as_deref().is_some_and(|c| c.starts_with("kgc")))
    );
    assert_eq!(sim.balance("leaked", "USDT"), Some(Decimal::ZERO));
    assert_eq!(sim.balance("master", "BTC"), Some(Decimal::from(2)));
    assert_eq!(sim.sub_calls(IP_RESTRICT), 1);

    let c = &store.containments(true).await.unwrap()[0];
    let steps: Vec<_> = c
        .steps
        .iter()
        .map(|s| (s.action.as_str(), s.state))
        .collect();
    assert_eq!(
        steps,
        vec![
            ("lock-key", StepState::Confirmed),
            ("sweep-round", StepState::Confirmed),
            ("sweep", StepState::Confirmed),
            ("sweep", StepState::Confirmed),
            ("sweep-round", StepState::Confirmed),
        ],
        "Binance has no transfer-out switch: no such step"
    );
    // Every step's outcome is in the audit log, and the containment's end.
    let log = store.audit_tail(50).await.unwrap();
    let confirmed = log
        .iter()
        .filter(|r| matches!(r.entry().unwrap(), AuditEntry::Containment(ContainmentEvent::Step(s)) if s.outcome == "confirmed"))
        .count();
    assert_eq!(confirmed, 5);
    assert!(log.iter().any(|r| matches!(
        r.entry().unwrap(),
        AuditEntry::Containment(ContainmentEvent::Done { .. })
    )));
    // A second freeze in the same frozen spell contains nothing again.
    freeze(&store, Scope::All).await;
    assert!(containment::pass(&gw).await.unwrap().started.is_empty());
    assert_eq!(sim.sub_calls(IP_RESTRICT), 1);
}

#[tokio::test]
async fn a_restart_between_the_lock_and_the_sweep_finishes_the_sweep_without_locking_again() {
    let sim = sim(false, true);
    let addr = serve(&sim).await;
    let (store, _dir) = store(false).await;
    freeze(&store, Scope::Credential("cr_trading".into())).await;
    {
        // The first instance locks the key, then stops (as if killed) before the sweep.
        let first = gateway(&store, false, addr);
        let p = containment::pass_limited(&first, 1).await.unwrap();
        assert_eq!((p.started.len(), p.attempts), (1, 1));
    }
    assert!(sim.key_restrictions("leaked").unwrap().ip_restrict);
    assert_eq!(
        sim.balance("leaked", "BTC"),
        Some(Decimal::from(2)),
        "not swept yet"
    );
    // The next start is another instance: it waits out the first one's lease, then goes on.
    let second = gateway(&store, false, addr);
    until_done(&second).await;
    assert_eq!(
        sim.sub_calls(IP_RESTRICT),
        1,
        "the confirmed lock is not sent again"
    );
    assert_eq!(sim.balance("leaked", "BTC"), Some(Decimal::ZERO));
    assert_eq!(sim.balance("master", "USDT"), Some(Decimal::from(200_000)));
    assert_eq!(sim.sub_transfers().len(), 2);
}

#[tokio::test]
async fn a_sweep_whose_answer_is_lost_is_read_back_and_never_moves_twice() {
    let sim = sim(false, true);
    let addr = serve(&sim).await;
    let (store, _dir) = store(false).await;
    let gw = gateway(&store, false, addr);
    // The first transfer happens at the venue, but keygate sees an HTTP 500.
    sim.drop_answers(TRANSFER, 1);
    freeze(&store, Scope::All).await;
    until_done(&gw).await;
    let t = sim.sub_transfers();
    assert_eq!(t.len(), 2, "{t:?}");
    assert_eq!(sim.balance("master", "BTC"), Some(Decimal::from(2)));
    let c = &store.containments(true).await.unwrap()[0];
    let first_sweep = c.steps.iter().find(|s| s.action == "sweep").unwrap();
    assert_eq!(first_sweep.state, StepState::Confirmed);
    assert_eq!(
        first_sweep.attempts, 1,
        "sent once; confirmed by reading it back"
    );
    assert_eq!(
        first_sweep.venue_ref.as_deref(),
        Some(t[0].id.to_string().as_str())
    );
}

#[tokio::test]
async fn a_refused_lock_is_tried_again_while_the_sweep_goes_on() {
    // A master key without "Enable Spot & Margin Trading": Binance refuses the restriction.
    let sim = sim(false, false);
    let addr = serve(&sim).await;
    let (store, _dir) = store(false).await;
    let gw = gateway(&store, false, addr);
    freeze(&store, Scope::Venue("binance".into())).await;
    for _ in 0..100 {
        containment::pass(&gw).await.unwrap();
        if sim.sub_transfers().len() == 2 && sim.sub_calls(IP_RESTRICT) >= 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        sim.sub_transfers().len(),
        2,
        "swept although the lock is refused"
    );
    assert!(sim.sub_calls(IP_RESTRICT) >= 3, "the lock is tried again");
    let c = &store.containments(false).await.unwrap()[0];
    assert_eq!(c.done_ms, None, "not done while the lock is not");
    let lock = &c.steps[0];
    assert_eq!(lock.state, StepState::Retry);
    assert!(
        lock.last_error.as_deref().unwrap().contains("-2015"),
        "{lock:?}"
    );
    assert!(!sim.key_restrictions("leaked").unwrap().ip_restrict);
}

#[tokio::test]
async fn okx_locks_the_key_sweeps_the_trading_account_and_stops_transfers_out() {
    let sim = sim(true, true);
    let addr = serve(&sim).await;
    let (store, _dir) = store(true).await;
    let gw = gateway(&store, true, addr);
    freeze(&store, Scope::Venue("okx".into())).await;
    until_done(&gw).await;
    let r = sim.key_restrictions("leaked").unwrap();
    assert!(r.ip_restrict && r.ip == vec!["127.0.0.1".to_string()]);
    assert!(!sim.can_transfer_out("master", "trading1@example.com"));
    assert_eq!(sim.balance("master", "BTC"), Some(Decimal::from(2)));
    assert_eq!(sim.balance("leaked", "USDT"), Some(Decimal::ZERO));
    let c = &store.containments(true).await.unwrap()[0];
    let steps: Vec<_> = c.steps.iter().map(|s| s.action.as_str()).collect();
    assert_eq!(
        steps,
        [
            "lock-key",
            "sweep-round",
            "stop-transfers",
            "sweep",
            "sweep",
            "sweep-round"
        ]
    );
    assert!(
        c.steps.iter().all(|s| s.state == StepState::Confirmed),
        "{c:#?}"
    );
    // OKX answers a transfer as accepted; keygate confirmed each by its state.
    let sweeps: Vec<_> = c.steps.iter().filter(|s| s.action == "sweep").collect();
    assert!(sweeps.iter().all(|s| s.attempts == 1), "{sweeps:?}");
}

#[tokio::test]
async fn a_drain_around_keygate_gets_the_first_withdrawal_only() {
    let sim = sim(false, true);
    let addr = serve(&sim).await;
    let (store, _dir) = store(false).await;
    let mut gw = gateway(&store, false, addr);
    // Reconciliation freezes the venue on an unapproved withdrawal.
    if let Some(v) = gw.venues.get_mut("binance") {
        v.contain = Some(Scope::Venue("binance".into()));
    }
    let setup = gw.venues["binance"].clone();
    let drain = "coin=USDT&address=0xattacker&amount=10000";
    let mut got = vec![];
    for i in 0..20 {
        // The thief, straight at the venue with the leaked key, from an address of its own.
        got.push(
            leaked_key_sends(
                addr,
                "127.0.0.2",
                "POST",
                "/sapi/v1/capital/withdraw/apply",
                drain,
            )
            .await,
        );
        if i == 0 {
            let p = keygate_server::reconcile::pass(&gw, &setup).await.unwrap();
            assert_eq!(p.unapproved.len(), 1, "the first withdrawal is caught");
            until_done(&gw).await;
        }
    }
    assert_eq!(got[0], 200, "{got:?}");
    assert!(
        got[1..].iter().all(|s| *s == 401),
        "every later one is refused: {got:?}"
    );
    assert_eq!(sim.withdrawals().len(), 1);
    assert_eq!(sim.balance("leaked", "USDT"), Some(Decimal::ZERO));
    assert_eq!(sim.balance("master", "USDT"), Some(Decimal::from(190_000)));
    assert_eq!(sim.balance("master", "BTC"), Some(Decimal::from(2)));
}
