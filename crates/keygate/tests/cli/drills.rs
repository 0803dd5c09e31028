//! kill -9 drills (issue 21, item 2): `keygate serve` killed with SIGKILL at random moments
//! while bots send orders and withdrawals at it from several threads, 20 times per backend
//! (SQLite, and PostgreSQL from scripts/test). After every restart:
//! - every withdrawal and every order the venue simulator received has a durable allow in the
//!   audit log (found by the request id the bot gave it);
//! - the allowed withdrawals never add up to more than the per-client cap, in the audit log or
//!   at the venue;
//! - the audit log verifies;
//! - a freeze set before the kill is still in force (a frozen client's read is refused).

use std::collections::HashSet;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use keygate_sim::{Sim, VenueKind};
use rust_decimal::Decimal;

use crate::gateway::{COLD, Serve, account, start_sim};
use crate::util::{Kg, canary};

const KILLS: usize = 20;
/// The per-client cap the drill's withdrawals press against, in USD.
pub(crate) const CAP_USD: i64 = 20_000;
const WITHDRAW: &str = "/venues/binance-main/sapi/v1/capital/withdraw/apply";

pub(crate) struct Drill {
    pub(crate) kg: Kg,
    pub(crate) sim: Sim,
    pub(crate) sim_addr: SocketAddr,
    pub(crate) trader: String,
    pub(crate) treasurer: String,
    pub(crate) idle: String,
    /// The sub-account key's secret (for requests made around keygate).
    pub(crate) secret: String,
}

/// A data directory (on `store_url`, or SQLite) with a trader, a treasurer capped at
/// [`CAP_USD`] an hour, and an idle client; the detectors answer with alerts only, so the cap
/// is what stops the treasurer.
pub(crate) fn drill(store_url: Option<&str>) -> Drill {
    let secret = canary("DRILLSECRET");
    let (sim, sim_addr) = start_sim(vec![account(VenueKind::Binance, "bkey", &secret, None)]);
    drill_at(
        store_url,
        sim,
        sim_addr,
        &secret,
        "reconcile_every = \"off\"\n",
    )
}

/// [`drill`] against a simulator already serving at `sim_addr` whose key `bkey` has `secret`;
/// `venue_extra` is added to the venue's table (its `reconcile_every`, and more).
pub(crate) fn drill_at(
    store_url: Option<&str>,
    sim: Sim,
    sim_addr: SocketAddr,
    secret: &str,
    venue_extra: &str,
) -> Drill {
    let secret = secret.to_string();
    let mut kg = Kg::new();
    kg.env("KEYGATE_ACTOR", "alice");
    match store_url {
        Some(url) => kg.ok(&["init", "--store-url", url], None),
        None => kg.ok(&["init"], None),
    };
    kg.edit_config(|cfg| {
        let cfg = cfg
            .replace("cooldown = \"24h\"", "cooldown = \"1s\"")
            .replace("response = \"hold\"", "response = \"alert\"")
            .replace("\"freeze-client\"", "\"alert\"")
            .replace(
                "max_usd = \"100000\"\nmax_count = 20",
                &format!("max_usd = \"{CAP_USD}\"\nmax_count = 100000"),
            );
        assert!(cfg.contains(&format!("max_usd = \"{CAP_USD}\"")));
        format!(
            "{cfg}\n[venues.binance-main]\nkind = \"binance\"\nbase_url = \"http://{sim_addr}\"\n{venue_extra}"
        )
    });
    kg.withdraw_to_cold("treasury-to-cold", "treasurer");
    kg.credential(
        "binance-main",
        "binance-main",
        "binance-hmac",
        &format!("bkey\n{secret}\n"),
    );
    kg.client(
        "trader",
        &["binance-main"],
        &["read", "trade"],
        &["BTC/USDT"],
    );
    kg.client("treasurer", &["binance-main"], &["read", "withdraw"], &[]);
    kg.client("idle", &["binance-main"], &["read"], &[]);
    kg.cold_wallet_on(COLD, &[("binance-main", Some("ETH"))]);
    let mut token = |c: &str| kg.ok(&["token", "issue", c], None).trim().to_string();
    let (trader, treasurer, idle) = (token("trader"), token("treasurer"), token("idle"));
    Drill {
        kg,
        sim,
        sim_addr,
        trader,
        treasurer,
        idle,
        secret,
    }
}

/// One request over a fresh connection; `None` when keygate is not there or died mid-way.
pub(crate) fn try_http(
    addr: SocketAddr,
    method: &str,
    target: &str,
    token: &str,
    body: &str,
) -> Option<u16> {
    try_http_within(addr, method, target, token, body, Duration::from_secs(10))
}

/// [`try_http`], waiting up to `wait` for the answer.
pub(crate) fn try_http_within(
    addr: SocketAddr,
    method: &str,
    target: &str,
    token: &str,
    body: &str,
    wait: Duration,
) -> Option<u16> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_millis(500)).ok()?;
    s.set_read_timeout(Some(wait)).ok()?;
    let req = format!(
        "{method} {target} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nAuthorization: Bearer {token}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).ok()?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).ok()?;
    let text = String::from_utf8_lossy(&raw);
    text.split_whitespace().nth(1)?.parse().ok()
}

/// A small deterministic generator (xorshift), so a failing drill can be told apart by seed.
struct Rng(u64);
impl Rng {
    fn next(&mut self, below: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % below
    }
}

/// Bots sending orders and withdrawals with fresh request ids until `stop`.
pub(crate) fn load(
    addr: SocketAddr,
    d: &Drill,
    next_id: &Arc<AtomicU64>,
    stop: &Arc<AtomicBool>,
) -> Vec<std::thread::JoinHandle<()>> {
    let mut threads = Vec::new();
    for bot in 0..4u64 {
        let token = if bot % 2 == 0 {
            d.trader.clone()
        } else {
            d.treasurer.clone()
        };
        let (next_id, stop) = (next_id.clone(), stop.clone());
        threads.push(std::thread::spawn(move || {
            let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ (bot + 1));
            while !stop.load(Ordering::Relaxed) {
                let n = next_id.fetch_add(1, Ordering::Relaxed);
                if bot % 2 == 0 {
                    let target = format!(
                        "/venues/binance-main/api/v3/order?symbol=BTCUSDT&side=BUY&type=LIMIT&timeInForce=GTC&quantity=0.01&price=40000&newClientOrderId=drill-o{n}"
                    );
                    let _ = try_http(addr, "POST", &target, &token, "");
                } else {
                    let amount = 200 + rng.next(700);
                    let body = format!(
                        "coin=USDT&network=ETH&address={COLD}&amount={amount}&withdrawOrderId=drill-w{n}"
                    );
                    let _ = try_http(addr, "POST", WITHDRAW, &token, &body);
                }
            }
        }));
    }
    threads
}

/// The audit log's allowed decisions: the request ids they carry and the USD they debited
/// from withdrawals.
fn allowed(kg: &mut Kg) -> (HashSet<String>, Decimal) {
    let tail = kg.ok(&["audit", "tail", "-n", "1000000", "--json"], None);
    let mut ids = HashSet::new();
    let mut withdrawn = Decimal::ZERO;
    for line in tail.lines() {
        let text = line;
        if !text.contains("\"allow\"") {
            continue;
        }
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        for word in text.split('"') {
            if word.starts_with("drill-") {
                ids.insert(word.to_string());
            }
        }
        if text.contains("\"drill-w") {
            let amount = find_amount(&v).unwrap_or_else(|| panic!("no amount in {line}"));
            withdrawn += amount;
        }
    }
    (ids, withdrawn)
}

/// The intent's amount of an audit entry (USDT, so USD one for one in the drill's prices).
fn find_amount(v: &serde_json::Value) -> Option<Decimal> {
    match v {
        serde_json::Value::Object(m) => {
            if let (Some(a), Some(_)) = (m.get("amount"), m.get("client")) {
                return a.as_str().and_then(|s| s.parse().ok());
            }
            m.values().find_map(find_amount)
        }
        serde_json::Value::Array(a) => a.iter().find_map(find_amount),
        _ => None,
    }
}

/// What must hold after every restart.
pub(crate) fn check(d: &mut Drill, round: usize, frozen_since: Option<usize>) {
    d.kg.ok(&["audit", "verify"], None);
    let (ids, withdrawn) = allowed(&mut d.kg);
    let cap = Decimal::from(CAP_USD);
    assert!(
        withdrawn <= cap,
        "round {round}: the audit log allows {withdrawn} USD against a cap of {cap}"
    );
    let mut at_venue = Decimal::ZERO;
    for w in d.sim.withdrawals() {
        let id = w.client_id.clone().unwrap_or_default();
        assert!(
            ids.contains(&id),
            "round {round}: the venue has withdrawal {id:?} with no allow in the audit log"
        );
        at_venue += w.amount;
    }
    assert!(
        at_venue <= cap,
        "round {round}: {at_venue} USD left the venue against a cap of {cap}"
    );
    for o in d.sim.orders() {
        assert!(
            ids.contains(&o.client_order_id),
            "round {round}: the venue has order {:?} with no allow in the audit log",
            o.client_order_id
        );
    }
    if let Some(since) = frozen_since {
        let list = d.kg.ok(&["freeze", "list"], None);
        assert!(
            list.contains("client:idle"),
            "round {round}: the freeze set in round {since} is gone: {list}"
        );
    }
}

fn run(store_url: Option<&str>) {
    let mut d = drill(store_url);
    let next_id = Arc::new(AtomicU64::new(0));
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    let mut frozen_since = None;
    for round in 0..KILLS {
        let mut serve = Serve::start(&d.kg);
        if let Some(since) = frozen_since {
            let read = try_http(
                serve.addr,
                "GET",
                "/venues/binance-main/api/v3/account",
                &d.idle,
                "",
            );
            assert_eq!(
                read,
                Some(403),
                "round {round}: the idle client frozen in round {since} was not refused"
            );
        }
        let stop = Arc::new(AtomicBool::new(false));
        let threads = load(serve.addr, &d, &next_id, &stop);
        std::thread::sleep(Duration::from_millis(150 + rng.next(600)));
        if round == KILLS / 4 {
            d.kg.ok(&["freeze", "client:idle", "--reason", "drill"], None);
            frozen_since = Some(round);
        }
        serve.kill9();
        stop.store(true, Ordering::Relaxed);
        for t in threads {
            t.join().unwrap();
        }
        check(&mut d, round, frozen_since);
    }
    let (ids, withdrawn) = allowed(&mut d.kg);
    assert!(
        !d.sim.orders().is_empty() && !d.sim.withdrawals().is_empty(),
        "the drill forwarded nothing: it tested nothing"
    );
    assert!(
        withdrawn > Decimal::from(CAP_USD - 1_000),
        "the withdrawals never reached the cap ({withdrawn} USD of {CAP_USD}): the boundary was not pressed"
    );
    eprintln!(
        "kill -9 drill: {KILLS} kills, {} allowed requests, {} orders and {} withdrawals at the venue, {withdrawn} USD of {CAP_USD} withdrawn",
        ids.len(),
        d.sim.orders().len(),
        d.sim.withdrawals().len()
    );
}

#[test]
fn kill9_under_load_on_sqlite_loses_nothing_and_overspends_nothing() {
    run(None);
}

#[test]
fn kill9_under_load_on_postgres_loses_nothing_and_overspends_nothing() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let url = rt.block_on(keygate_store::testing::fresh_postgres_url());
    run(Some(&url));
}
