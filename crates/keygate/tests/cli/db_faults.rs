//! Database faults mid-load (issue 21, item 3), on PostgreSQL: the database made unreachable
//! (every connection of keygate's cut, new ones refused, as a stopped server looks from
//! keygate's side) and made slow (the audit head locked by another session). While keygate
//! cannot commit it forwards nothing and answers with an error, never an allow; when the
//! database is back it recovers by itself, without a restart; and afterwards every request the
//! venue received has a durable allow in the audit log, which verifies.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use sqlx::{Connection, Executor, PgConnection};

use crate::drills::{Drill, check, drill, load, try_http};
use crate::gateway::{COLD, Serve};

const WITHDRAW: &str = "/venues/binance-main/sapi/v1/capital/withdraw/apply";

/// What the venue has received so far: orders and withdrawals.
fn at_venue(d: &Drill) -> (usize, usize) {
    (d.sim.orders().len(), d.sim.withdrawals().len())
}

fn order(d: &Drill, addr: std::net::SocketAddr, id: &str) -> Option<u16> {
    let target = format!(
        "/venues/binance-main/api/v3/order?symbol=BTCUSDT&side=BUY&type=LIMIT&timeInForce=GTC&quantity=0.01&price=40000&newClientOrderId={id}"
    );
    try_http(addr, "POST", &target, &d.trader, "")
}

fn withdraw(d: &Drill, addr: std::net::SocketAddr, id: &str) -> Option<u16> {
    let body = format!("coin=USDT&network=ETH&address={COLD}&amount=10&withdrawOrderId={id}");
    try_http(addr, "POST", WITHDRAW, &d.treasurer, &body)
}

/// Sends orders until one is allowed (the database is back), at most `within`.
fn recovers(d: &Drill, addr: std::net::SocketAddr, tag: &str, within: Duration) -> Duration {
    let start = Instant::now();
    let mut n = 0;
    loop {
        n += 1;
        if order(d, addr, &format!("drill-{tag}{n}")) == Some(200) {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < within,
            "keygate did not recover by itself within {within:?} after the database came back ({tag})"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

async fn admin() -> PgConnection {
    let url = std::env::var("KEYGATE_TEST_POSTGRES_URL").expect(
        "KEYGATE_TEST_POSTGRES_URL: run the tests with scripts/test (it starts PostgreSQL)",
    );
    PgConnection::connect(&url).await.unwrap()
}

/// Cuts every connection to `db` and refuses new ones (`on = false`), or lets them in again.
async fn reachable(db: &str, on: bool) {
    let mut c = admin().await;
    c.execute(sqlx::AssertSqlSafe(format!(
        "ALTER DATABASE {db} ALLOW_CONNECTIONS {on}"
    )))
    .await
    .unwrap();
    if !on {
        c.execute(sqlx::AssertSqlSafe(format!(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{db}' AND pid <> pg_backend_pid()"
        )))
        .await
        .unwrap();
    }
}

#[test]
fn postgres_unreachable_or_slow_mid_load_forwards_nothing_and_recovers_without_restart() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let url = rt.block_on(keygate_store::testing::fresh_postgres_url());
    let db = url.rsplit('/').next().unwrap().to_string();
    let mut d = drill(Some(&url));
    let serve = Serve::start(&d.kg);
    let addr = serve.addr;

    // Load, then the database goes away under it.
    let next_id = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let threads = load(addr, &d, &next_id, &stop);
    std::thread::sleep(Duration::from_millis(500));
    rt.block_on(reachable(&db, false));
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        t.join().unwrap();
    }
    // Requests in flight when the cut came may have committed first; from here nothing can.
    let before = at_venue(&d);
    let mut answers = Vec::new();
    for n in 0..10 {
        answers.push(order(&d, addr, &format!("drill-down-o{n}")));
        answers.push(withdraw(&d, addr, &format!("drill-down-w{n}")));
    }
    assert_eq!(
        at_venue(&d),
        before,
        "keygate forwarded while its database was unreachable"
    );
    assert!(
        answers.iter().all(|a| a == &Some(503)),
        "while the database is unreachable every decided request is a 503: {answers:?}"
    );

    rt.block_on(reachable(&db, true));
    let took = recovers(&d, addr, "back-o", Duration::from_secs(30));
    eprintln!("database faults: recovered {took:?} after the database came back");

    // Slow: another session holds the audit head; nothing commits, so nothing is forwarded.
    let mut locker = rt.block_on(async {
        let mut c = PgConnection::connect(&url).await.unwrap();
        c.execute("BEGIN").await.unwrap();
        c.execute("LOCK TABLE audit_head IN ACCESS EXCLUSIVE MODE")
            .await
            .unwrap();
        c
    });
    let before = at_venue(&d);
    let waiting: Vec<_> = (0..4)
        .map(|n| {
            let (trader, treasurer) = (d.trader.clone(), d.treasurer.clone());
            std::thread::spawn(move || {
                if n % 2 == 0 {
                    let target = format!(
                        "/venues/binance-main/api/v3/order?symbol=BTCUSDT&side=BUY&type=LIMIT&timeInForce=GTC&quantity=0.01&price=40000&newClientOrderId=drill-slow-o{n}"
                    );
                    try_http(addr, "POST", &target, &trader, "")
                } else {
                    let body = format!(
                        "coin=USDT&network=ETH&address={COLD}&amount=10&withdrawOrderId=drill-slow-w{n}"
                    );
                    try_http(addr, "POST", WITHDRAW, &treasurer, &body)
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        at_venue(&d),
        before,
        "keygate forwarded while its audit head was locked"
    );
    rt.block_on(async {
        locker.execute("ROLLBACK").await.unwrap();
        locker.close().await.unwrap();
    });
    let slow: Vec<_> = waiting.into_iter().map(|t| t.join().unwrap()).collect();
    eprintln!("database faults: answers to requests sent while the head was locked: {slow:?}");
    assert!(
        slow.iter().all(|a| matches!(a, Some(200) | Some(503))),
        "a request that waited on the lock is allowed once the lock goes, or refused with 503: {slow:?}"
    );
    recovers(&d, addr, "unlocked-o", Duration::from_secs(30));

    drop(serve);
    check(&mut d, 0, None);
}
