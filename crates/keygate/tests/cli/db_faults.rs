//! Database faults mid-load (issue 21, item 3), on PostgreSQL: the database made unreachable
//! (every connection of keygate's cut, new ones refused, as a stopped server looks from
//! keygate's side) and made slow (the audit head locked by another session). While keygate
//! cannot commit it forwards nothing and answers with an error, never an allow; when the
//! database is back it recovers by itself, without a restart; and afterwards every request the
//! venue received has a durable allow in the audit log, which verifies. A server of the test's
//! own is also really stopped and started, and made to time statements out.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use sqlx::{Connection, Executor, PgConnection};

use crate::drills::{Drill, check, drill, load, try_http, try_http_within};
use crate::gateway::{COLD, Serve};

const WITHDRAW: &str = "/venues/binance-main/sapi/v1/capital/withdraw/apply";

/// What the venue has received so far: orders and withdrawals.
fn at_venue(d: &Drill) -> (usize, usize) {
    (d.sim.orders().len(), d.sim.withdrawals().len())
}

const ORDER: &str = "/venues/binance-main/api/v3/order?symbol=BTCUSDT&side=BUY&type=LIMIT&timeInForce=GTC&quantity=0.01&price=40000";

fn withdrawal(id: &str) -> String {
    format!("coin=USDT&network=ETH&address={COLD}&amount=10&withdrawOrderId={id}")
}

fn order(d: &Drill, addr: std::net::SocketAddr, id: &str) -> Option<u16> {
    let target = format!("{ORDER}&newClientOrderId={id}");
    try_http(addr, "POST", &target, &d.trader, "")
}

fn withdraw(d: &Drill, addr: std::net::SocketAddr, id: &str) -> Option<u16> {
    try_http(addr, "POST", WITHDRAW, &d.treasurer, &withdrawal(id))
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

/// Sends, on a thread of its own, an order (`n` even) or a withdrawal (`n` odd) with a request
/// id made of `tag` and `n`; its answer and how long it took.
fn spawn_send(
    d: &Drill,
    addr: std::net::SocketAddr,
    tag: &str,
    n: usize,
    wait: Duration,
) -> std::thread::JoinHandle<(Option<u16>, Duration)> {
    let (trader, treasurer, tag) = (d.trader.clone(), d.treasurer.clone(), tag.to_string());
    std::thread::spawn(move || {
        let start = Instant::now();
        let a = if n.is_multiple_of(2) {
            let target = format!("{ORDER}&newClientOrderId=drill-{tag}-o{n}");
            try_http_within(addr, "POST", &target, &trader, "", wait)
        } else {
            let body = withdrawal(&format!("drill-{tag}-w{n}"));
            try_http_within(addr, "POST", WITHDRAW, &treasurer, &body, wait)
        };
        (a, start.elapsed())
    })
}

/// While the database cannot commit: 10 orders and 10 withdrawals, sent at once, are each a
/// 503 (within 30 s), and the venue receives none of them. Returns the slowest answer's time.
fn refused_while_down(d: &Drill, addr: std::net::SocketAddr, tag: &str, why: &str) -> Duration {
    let before = at_venue(d);
    let sent: Vec<_> = (0..20)
        .map(|n| spawn_send(d, addr, tag, n, Duration::from_secs(30)))
        .collect();
    let answers: Vec<_> = sent.into_iter().map(|t| t.join().unwrap()).collect();
    assert_eq!(at_venue(d), before, "keygate forwarded while {why}");
    assert!(
        answers.iter().all(|(a, _)| a == &Some(503)),
        "while {why} every decided request is a 503: {answers:?}"
    );
    answers.iter().map(|(_, t)| *t).max().unwrap_or_default()
}

/// Load from four bots for half a second, then `fault`, then the load stops.
fn under_load(d: &Drill, addr: std::net::SocketAddr, fault: impl FnOnce()) {
    let next_id = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let threads = load(addr, d, &next_id, &stop);
    std::thread::sleep(Duration::from_millis(500));
    fault();
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        t.join().unwrap();
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
    under_load(&d, addr, || rt.block_on(reachable(&db, false)));
    // Requests in flight when the cut came may have committed first; from here nothing can.
    let slowest = refused_while_down(&d, addr, "down", "its database was unreachable");
    eprintln!("database faults: unreachable: 20 x 503 within {slowest:?}, 0 forwarded");

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
        .map(|n| spawn_send(&d, addr, "slow", n, Duration::from_secs(10)))
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
    let slow: Vec<_> = waiting.into_iter().map(|t| t.join().unwrap().0).collect();
    eprintln!("database faults: answers to requests sent while the head was locked: {slow:?}");
    assert!(
        slow.iter().all(|a| matches!(a, Some(200) | Some(503))),
        "a request that waited on the lock is allowed once the lock goes, or refused with 503: {slow:?}"
    );
    recovers(&d, addr, "unlocked-o", Duration::from_secs(30));

    drop(serve);
    check(&mut d, 0, None);
}

/// A PostgreSQL server of the test's own (the suite's is shared, so it cannot be stopped), on a
/// loopback port, from the binaries `scripts/with-postgres` puts on PATH; stopped and deleted
/// on drop.
struct OwnPostgres {
    dir: tempfile::TempDir,
    port: u16,
}

impl OwnPostgres {
    fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let root = is_root();
        if root {
            let ok = std::process::Command::new("chown")
                .args(["-R", "postgres:"])
                .arg(dir.path())
                .status()
                .unwrap()
                .success();
            assert!(
                ok,
                "chown to the postgres user (PostgreSQL refuses to run as root)"
            );
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let pg = Self { dir, port };
        let data = pg.data();
        pg.pg(&[
            "initdb",
            "-D",
            &data,
            "-U",
            "keygate",
            "-A",
            "trust",
            "--no-sync",
        ]);
        pg.ctl("start");
        pg
    }

    fn data(&self) -> String {
        self.dir.path().join("data").display().to_string()
    }

    fn url(&self) -> String {
        format!("postgres://keygate@127.0.0.1:{}/postgres", self.port)
    }

    /// Runs a PostgreSQL program (as the postgres user when the test runs as root).
    fn pg(&self, args: &[&str]) {
        let mut cmd = if is_root() {
            let mut c = std::process::Command::new("runuser");
            c.args(["-u", "postgres", "--"]);
            c
        } else {
            std::process::Command::new(args[0])
        };
        let args = if is_root() { args } else { &args[1..] };
        let out = cmd.args(args).output().unwrap_or_else(|e| {
            panic!("{}: {e}; run the tests with scripts/test, which installs PostgreSQL and puts its programs on PATH", args[0])
        });
        assert!(
            out.status.success(),
            "{args:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// `pg_ctl start` (waiting until it accepts connections) or `pg_ctl stop` (fast: every
    /// session ended, as a server shut down for maintenance).
    fn ctl(&self, what: &str) {
        let data = self.data();
        let log = self.dir.path().join("server.log").display().to_string();
        let opts = format!(
            "-c listen_addresses=127.0.0.1 -p {} -k {} -c fsync=off",
            self.port,
            self.dir.path().display()
        );
        match what {
            "start" => self.pg(&[
                "pg_ctl", "-D", &data, "-l", &log, "-w", "-t", "60", "-o", &opts, "start",
            ]),
            _ => self.pg(&["pg_ctl", "-D", &data, "-m", "fast", "-w", "stop"]),
        }
    }
}

impl Drop for OwnPostgres {
    fn drop(&mut self) {
        let data = self.data();
        let _ = std::process::Command::new("runuser")
            .args([
                "-u",
                "postgres",
                "--",
                "pg_ctl",
                "-D",
                &data,
                "-m",
                "immediate",
                "stop",
            ])
            .output();
        let _ = std::process::Command::new("pg_ctl")
            .args(["-D", &data, "-m", "immediate", "stop"])
            .output();
    }
}

fn is_root() -> bool {
    std::process::Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.starts_with(b"0"))
}

#[test]
fn postgres_stopped_restarted_or_timing_out_mid_load_forwards_nothing_and_recovers_without_restart()
{
    let pg = OwnPostgres::start();
    let url = pg.url();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mut d = drill(Some(&url));
    let serve = Serve::start(&d.kg);
    let addr = serve.addr;

    // The server itself is shut down under load, then started again.
    under_load(&d, addr, || pg.ctl("stop"));
    let slowest = refused_while_down(&d, addr, "stopped", "its database server was stopped");
    // The first batch waits the pool's acquire timeout (10 s); once the decider knows the
    // database is unreachable, it waits no more than half a second.
    let again = refused_while_down(&d, addr, "still-stopped", "its database server was stopped");
    assert!(
        again < Duration::from_secs(3),
        "while the database stays down keygate refuses at once, not after the pool's whole timeout: {again:?}"
    );
    eprintln!(
        "database faults: server stopped: 20 x 503 within {slowest:?}, then 20 more within {again:?}, 0 forwarded"
    );
    pg.ctl("start");
    let took = recovers(&d, addr, "restarted-o", Duration::from_secs(60));
    eprintln!(
        "database faults: PostgreSQL started again: recovered {took:?} after it accepted connections"
    );

    // A statement timeout: the audit head locked by another session, and every new session of
    // keygate's role limited to 300 ms a statement; keygate's sessions cut so its pool takes
    // the setting. Each decision's statement times out: refused, nothing forwarded.
    let mut locker = rt.block_on(async {
        let mut c = PgConnection::connect(&url).await.unwrap();
        c.execute("ALTER ROLE keygate SET statement_timeout = '300ms'")
            .await
            .unwrap();
        c.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()")
            .await
            .unwrap();
        c.execute("SET statement_timeout = 0").await.unwrap();
        c.execute("BEGIN").await.unwrap();
        c.execute("LOCK TABLE audit_head IN ACCESS EXCLUSIVE MODE")
            .await
            .unwrap();
        c
    });
    let slowest = refused_while_down(&d, addr, "timeout", "its statements timed out");
    rt.block_on(async {
        locker.execute("ROLLBACK").await.unwrap();
        locker
            .execute("ALTER ROLE keygate RESET statement_timeout")
            .await
            .unwrap();
        locker.close().await.unwrap();
    });
    let took = recovers(&d, addr, "untimed-o", Duration::from_secs(30));
    eprintln!(
        "database faults: statement timeout: 20 x 503 within {slowest:?}, 0 forwarded; recovered {took:?} after the lock went"
    );

    drop(serve);
    check(&mut d, 0, None);
}

/// A small tmpfs of its own, for a SQLite file whose disk can really fill up; unmounted on
/// drop.
struct Tmpfs(tempfile::TempDir);

impl Tmpfs {
    fn mount(size: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let out = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .output()
            .expect("mount(8) is missing: install util-linux");
        assert!(
            out.status.success(),
            "this test fills a disk of its own, a tmpfs, and cannot mount one ({}): run the tests as root with CAP_SYS_ADMIN, as scripts/test does in CI",
            String::from_utf8_lossy(&out.stderr).trim()
        );
        Self(dir)
    }

    fn path(&self) -> &std::path::Path {
        self.0.path()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(self.0.path())
            .status();
    }
}

/// Writes `path` until the disk under it is full; returns how much went in.
fn fill(path: &std::path::Path) -> u64 {
    use std::io::Write;
    let mut f = std::fs::File::create(path).unwrap();
    let chunk = vec![0u8; 16 * 1024];
    let mut n = 0u64;
    while f.write_all(&chunk).is_ok() {
        n += chunk.len() as u64;
    }
    let _ = f.sync_all();
    n
}

#[test]
fn sqlite_on_a_full_disk_forwards_nothing_and_recovers_when_space_is_back() {
    let disk = Tmpfs::mount("16m");
    let url = format!("sqlite://{}", disk.path().join("keygate.db").display());
    let mut d = drill(Some(&url));
    let serve = Serve::start(&d.kg);
    let addr = serve.addr;
    assert_eq!(order(&d, addr, "drill-before"), Some(200));

    // The disk fills up under keygate: its writes start failing.
    let filler = disk.path().join("filler");
    let filled = fill(&filler);
    let mut answers = Vec::new();
    let mut n = 0;
    let until = Instant::now() + Duration::from_secs(60);
    // Until a refusal for lack of space (the WAL may first absorb some commits in space it
    // already had, which are as durable as any), then 20 more.
    while answers.iter().filter(|a| **a == Some(503)).count() < 20 {
        assert!(
            Instant::now() < until,
            "keygate never refused on a full disk: {answers:?}"
        );
        n += 1;
        let a = if n % 2 == 0 {
            order(&d, addr, &format!("drill-full-o{n}"))
        } else {
            withdraw(&d, addr, &format!("drill-full-w{n}"))
        };
        answers.push(a);
    }
    let allowed = answers.iter().filter(|a| **a == Some(200)).count();
    assert!(
        answers.iter().all(|a| matches!(a, Some(200) | Some(503))),
        "on a full disk a decided request is allowed (it committed) or a 503: {answers:?}"
    );
    let (orders, withdrawals) = at_venue(&d);
    assert_eq!(
        orders + withdrawals,
        allowed + 1,
        "the venue got a request keygate did not answer with an allow: {answers:?}"
    );
    let first_refusal = answers.iter().position(|a| *a == Some(503)).unwrap_or(0);
    assert!(
        answers[first_refusal..]
            .iter()
            .filter(|a| **a == Some(200))
            .count()
            <= 1,
        "once the disk is full keygate stays refusing: {answers:?}"
    );

    // Space comes back; keygate recovers by itself.
    std::fs::remove_file(&filler).unwrap();
    let took = recovers(&d, addr, "space-o", Duration::from_secs(30));
    eprintln!(
        "database faults: SQLite on a full disk ({} MiB filler): {} requests allowed from space the WAL had, then {} refused with 503, nothing forwarded; recovered {took:?} after space came back",
        filled / (1024 * 1024),
        allowed,
        answers.len() - allowed
    );
    drop(serve);
    check(&mut d, 0, None);
}

/// Remounts `disk` read-only (`ro = true`) or read-write.
fn read_only(disk: &Tmpfs, ro: bool) {
    let mode = if ro { "remount,ro" } else { "remount,rw" };
    let out = std::process::Command::new("mount")
        .args(["-o", mode])
        .arg(disk.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "mount -o {mode}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A SQLite file on a file system that went read-only while keygate was down (a kernel's
/// remount after disk errors, a restore with the wrong mode). Linux refuses to make a file
/// system read-only under a process that holds a file open for writing, so this is met at
/// start. SQLite would open the file read-only without a word (and every decision fail); serve
/// refuses to start, with an error saying what to make writable, and changes nothing; a
/// read-only command (audit verify) still works; once the file is writable again serve
/// starts, and nothing was lost.
#[test]
fn sqlite_on_a_read_only_file_system_refuses_to_serve_and_loses_nothing() {
    let disk = Tmpfs::mount("16m");
    let url = format!("sqlite://{}", disk.path().join("keygate.db").display());
    let mut d = drill(Some(&url));
    let serve = Serve::start(&d.kg);
    for n in 0..5 {
        assert_eq!(order(&d, serve.addr, &format!("drill-rw-o{n}")), Some(200));
    }
    drop(serve);
    let before = at_venue(&d);

    read_only(&disk, true);
    let out = d.kg.run(&["serve", "--listen", "127.0.0.1:0"], None);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "serve started on a read-only store");
    assert!(
        err.contains("the store does not take writes") && err.contains("writable"),
        "{err}"
    );
    assert_eq!(at_venue(&d), before);
    d.kg.ok(&["audit", "verify"], None);

    read_only(&disk, false);
    let serve = Serve::start(&d.kg);
    assert_eq!(order(&d, serve.addr, "drill-rw-again"), Some(200));
    drop(serve);
    check(&mut d, 0, None);
}
