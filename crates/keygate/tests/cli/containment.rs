//! Containment at the venue through the real binary: `keygate doctor` reports a containment key
//! that can withdraw or trade from anywhere; `keygate serve`, killed with SIGKILL between the
//! lock and the sweep, finishes the sweep on its next start without locking again, and
//! `keygate containment status` says what was done; `keygate serve` sees an order placed with
//! its key straight at the venue in the order history, freezes and contains the venue, and the
//! venue refuses the thief's next order.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use keygate_sim::{Master, Restrictions, Sim, SimConfig, SubAccount, VenueKind};
use rust_decimal::Decimal;

use crate::gateway::{Serve, account};
use crate::util::{Kg, assert_no_leak, canary};

const ASSETS: &str = "/sapi/v4/sub-account/assets";
const IP_RESTRICT: &str = "/sapi/v2/sub-account/subAccountApi/ipRestriction";

/// The simulator with a master account (`master`, restricted as `master`) over the sub-account
/// of keygate's key `bkey`, serving from a thread of its own.
pub(crate) fn start(master: Restrictions, secrets: (&str, &str)) -> (Sim, SocketAddr) {
    start_with(master, secrets, false)
}

/// [`start`], with `bkey` allowed to trade when `trades`.
fn start_with(master: Restrictions, secrets: (&str, &str), trades: bool) -> (Sim, SocketAddr) {
    let mut m = account(VenueKind::Binance, "master", secrets.1, None);
    m.balances.clear();
    m.restrictions = master;
    let mut sub = account(VenueKind::Binance, "bkey", secrets.0, None);
    sub.restrictions.enable_spot_and_margin_trading = trades;
    let masters = vec![Master {
        venue: VenueKind::Binance,
        api_key: "master".into(),
        sub_accounts: vec![SubAccount {
            name: "trading1@example.com".into(),
            api_key: "bkey".into(),
        }],
    }];
    let sim = Sim::new_with_masters(
        SimConfig {
            accounts: vec![m, sub],
        },
        masters,
    )
    .unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let s = sim.clone();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            tx.send(l.local_addr().unwrap()).unwrap();
            keygate_sim::serve(l, s).await.unwrap();
        });
    });
    (sim, rx.recv().unwrap())
}

pub(crate) fn safe_master() -> Restrictions {
    Restrictions {
        ip_restrict: true,
        ip: vec!["127.0.0.1".into()],
        enable_internal_transfer: true,
        ..Restrictions::default()
    }
}

/// A data directory with venue binance-main (keygate's key `bkey`) and its containment
/// credential (the master's key).
fn data_dir(sim: SocketAddr, secrets: (&str, &str)) -> Kg {
    let mut kg = Kg::new();
    kg.env("KEYGATE_ACTOR", "alice");
    kg.ok(&["init"], None);
    let path = kg.data.join("keygate.toml");
    let cfg = std::fs::read_to_string(&path).unwrap().replace(
        "unapproved_outflow = \"all\"\n",
        "unapproved_outflow = \"all\"\negress_ip = [\"127.0.0.1\"]\nevery = \"100ms\"\nlease_ttl = \"1s\"\nretry_min = \"100ms\"\nretry_max = \"200ms\"\n",
    );
    let cfg = format!(
        "{cfg}\n[venues.binance-main]\nkind = \"binance\"\nbase_url = \"http://{sim}\"\nreconcile_every = \"off\"\ncontainment_credential = \"binance-master\"\nsub_account = \"trading1@example.com\"\n"
    );
    std::fs::write(&path, cfg).unwrap();
    for (id, key, secret) in [
        ("binance-main", "bkey", secrets.0),
        ("binance-master", "master", secrets.1),
    ] {
        kg.credential(
            id,
            "binance-main",
            "binance-hmac",
            &format!("{key}\n{secret}\n"),
        );
    }
    kg
}

fn wait_for(what: &str, done: impl Fn() -> bool) {
    let until = Instant::now() + Duration::from_secs(30);
    while !done() {
        assert!(Instant::now() < until, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn doctor_reports_a_containment_key_that_can_withdraw_or_trade_from_anywhere() {
    let secrets = (canary("BSUB"), canary("BMASTER"));
    let secrets = (secrets.0.as_str(), secrets.1.as_str());
    let bad = Restrictions {
        enable_withdrawals: true,
        ..Restrictions::default()
    };
    let (_sim, addr) = start(bad, secrets);
    let mut kg = data_dir(addr, secrets);
    let out = kg.run(&["doctor"], None);
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(!out.status.success(), "{stdout}");
    assert!(
        stdout.contains("containment at binance-main (credential binance-master"),
        "{stdout}"
    );
    assert!(
        stdout.contains("UNSAFE  the containment key can withdraw"),
        "{stdout}"
    );
    assert!(
        stdout.contains("UNSAFE  the containment key can trade (Binance requires it to restrict a sub-account key) from anywhere"),
        "{stdout}"
    );
    assert!(
        stdout.contains("UNSAFE  the containment key lacks internal transfer"),
        "{stdout}"
    );
    assert_no_leak(
        "doctor's output",
        &kg.transcript,
        &[secrets.0.as_bytes().to_vec(), secrets.1.as_bytes().to_vec()],
    );

    // A containment key as the docs ask: trading only because Binance needs it, from
    // keygate's address only, and internal transfer. Nothing unsafe about it.
    let (_sim, addr) = start(safe_master(), secrets);
    let mut kg = data_dir(addr, secrets);
    let stdout = String::from_utf8_lossy(&kg.run(&["doctor"], None).stdout).to_string();
    let containment = stdout.split("containment at").nth(1).unwrap_or_default();
    assert!(!containment.contains("UNSAFE"), "{stdout}");
    assert!(
        containment.contains("ok      the containment key can trade: Binance requires it"),
        "{stdout}"
    );
}

#[test]
fn a_kill_between_the_lock_and_the_sweep_is_finished_by_the_next_start_without_locking_again() {
    let secrets = (canary("BSUB"), canary("BMASTER"));
    let secrets = (secrets.0.as_str(), secrets.1.as_str());
    let (sim, addr) = start(safe_master(), secrets);
    let mut kg = data_dir(addr, secrets);
    // The balance read fails for now: containment locks the key and cannot sweep yet.
    sim.drop_answers(ASSETS, 1_000_000);
    let serve = Serve::start(&kg);
    kg.ok(
        &["freeze", "venue:binance-main", "--reason", "key leak"],
        None,
    );
    wait_for("the lock", || {
        sim.key_restrictions("bkey").is_some_and(|r| r.ip_restrict)
    });
    wait_for("a failed balance read", || sim.sub_calls(ASSETS) >= 1);
    drop(serve); // SIGKILL
    let status = kg.ok(&["containment", "status"], None);
    assert!(status.contains("PENDING"), "{status}");
    assert!(
        status.contains("done     lock-key: restrict to 127.0.0.1"),
        "{status}"
    );
    assert_eq!(
        sim.balance("bkey", "BTC"),
        Some(Decimal::from(100)),
        "not swept"
    );

    sim.drop_answers(ASSETS, 0);
    let _serve = Serve::start(&kg);
    wait_for("the sweep", || {
        sim.balance("bkey", "USDT") == Some(Decimal::ZERO)
            && sim.balance("bkey", "BTC") == Some(Decimal::ZERO)
    });
    assert_eq!(
        sim.sub_calls(IP_RESTRICT),
        1,
        "the confirmed lock is not sent again"
    );
    assert_eq!(
        sim.balance("master", "USDT"),
        Some(Decimal::from(10_000_000))
    );
    let until = Instant::now() + Duration::from_secs(30);
    let status = loop {
        let status = kg.ok(&["containment", "status", "--all"], None);
        if status.contains(": done ") || Instant::now() > until {
            break status;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(status.contains(": done "), "{status}");
    assert!(
        status.contains("done     sweep 10000000 USDT (spot)"),
        "{status}"
    );
    assert!(status.contains("done     sweep 100 BTC (spot)"), "{status}");
    assert_no_leak(
        "containment status",
        status.as_bytes(),
        &[secrets.0.as_bytes().to_vec(), secrets.1.as_bytes().to_vec()],
    );
}

/// A market buy of 1,000 USDT of BTC signed with keygate's key `bkey` and sent from 127.0.0.2
/// straight to the venue (around keygate): its HTTP status.
fn order_around_keygate(addr: SocketAddr, secret: &str) -> u16 {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis();
        let query =
            format!("symbol=BTCUSDT&side=BUY&type=MARKET&quoteOrderQty=1000&timestamp={now}");
        let sig = keygate_venues::binance::signature(secret, &query);
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind("127.0.0.2:0".parse().unwrap()).unwrap();
        let mut stream = socket.connect(addr).await.unwrap();
        let req = format!(
            "POST /api/v3/order?{query}&signature={sig} HTTP/1.1\r\nHost: {addr}\r\nX-MBX-APIKEY: bkey\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        );
        stream.write_all(req.as_bytes()).await.unwrap();
        let mut raw = String::new();
        stream.read_to_string(&mut raw).await.unwrap();
        raw.split(' ').nth(1).unwrap().parse().unwrap()
    })
}

#[test]
fn an_order_placed_around_keygate_is_seen_in_the_order_history_and_the_venue_contained() {
    let secrets = (canary("BSUB"), canary("BMASTER"));
    let secrets = (secrets.0.as_str(), secrets.1.as_str());
    let (sim, addr) = start_with(safe_master(), secrets, true);
    let mut kg = data_dir(addr, secrets);
    let path = kg.data.join("keygate.toml");
    let cfg = std::fs::read_to_string(&path)
        .unwrap()
        .replace("reconcile_every = \"off\"", "reconcile_every = \"200ms\"");
    std::fs::write(&path, cfg).unwrap();
    // A client trades BTC/USDT there: the order history of BTCUSDT is read.
    kg.client("bot", &["binance-main"], &["trade"], &["BTC/USDT"]);
    let serve = Serve::start(&kg);
    assert_eq!(
        order_around_keygate(addr, secrets.0),
        200,
        "the first order"
    );
    wait_for("the lock and the sweep", || {
        sim.key_restrictions("bkey").is_some_and(|r| r.ip_restrict)
            && sim.balance("bkey", "USDT") == Some(Decimal::ZERO)
            && sim.balance("bkey", "BTC") == Some(Decimal::ZERO)
    });
    assert_eq!(
        order_around_keygate(addr, secrets.0),
        401,
        "the next order is refused at the venue"
    );
    let placed: Vec<_> = sim
        .orders()
        .into_iter()
        .filter(|o| o.api_key == "bkey")
        .collect();
    assert_eq!(placed.len(), 1);
    let tail = kg.ok(&["audit", "tail", "-n", "100", "--json"], None);
    assert!(tail.contains("\"order.unapproved\""), "{tail}");
    assert!(
        tail.contains(&format!("\"id\":\"{}\"", placed[0].id)),
        "{tail}"
    );
    let freezes = kg.ok(&["freeze", "list"], None);
    assert!(freezes.contains("an unapproved order"), "{freezes}");
    drop(serve);
    kg.ok(&["audit", "verify"], None);
}
