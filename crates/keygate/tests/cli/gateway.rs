//! The gateway end to end: `keygate serve` as a process, the venue simulator in this process,
//! and bots speaking raw HTTP. Every refusal is checked to have reached the simulator never.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use keygate_sim::{Account, Restrictions, Sim, SimConfig, VenueKind};
use rust_decimal::Decimal;

use crate::util::{Kg, assert_no_leak, canary};

/// The simulator, serving on a loopback port from a thread of its own.
pub(crate) fn start_sim(accounts: Vec<Account>) -> (Sim, SocketAddr) {
    let sim = Sim::new(SimConfig { accounts }).unwrap();
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

pub(crate) fn account(
    venue: VenueKind,
    key: &str,
    secret: &str,
    passphrase: Option<&str>,
) -> Account {
    Account {
        venue,
        api_key: key.into(),
        secret: secret.into(),
        passphrase: passphrase.map(str::to_string),
        balances: [
            ("USDT".to_string(), Decimal::from(10_000_000)),
            ("BTC".to_string(), Decimal::from(100)),
        ]
        .into_iter()
        .collect(),
        restrictions: Restrictions {
            enable_withdrawals: true,
            ..Restrictions::default()
        },
    }
}

/// `keygate serve` as a child process; killed on drop. Its output is kept for leak scans.
pub(crate) struct Serve {
    child: Child,
    pub(crate) addr: SocketAddr,
    output: Arc<Mutex<Vec<u8>>>,
}

impl Serve {
    pub(crate) fn start(kg: &Kg) -> Self {
        Self::start_with(kg, &[])
    }

    pub(crate) fn start_with(kg: &Kg, env: &[(&str, &str)]) -> Self {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_keygate"));
        for (k, _) in std::env::vars() {
            if k.starts_with("KEYGATE_") {
                cmd.env_remove(k);
            }
        }
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd
            .arg("--data-dir")
            .arg(&kg.data)
            .args(["--log-format", "json", "serve", "--listen", "127.0.0.1:0"])
            .env("KEYGATE_LOG", "debug")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let output = Arc::new(Mutex::new(Vec::new()));
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut first = String::new();
        stdout.read_line(&mut first).unwrap();
        output.lock().unwrap().extend_from_slice(first.as_bytes());
        let mut stderr = child.stderr.take().unwrap();
        let o = output.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = stderr.read(&mut buf) {
                if n == 0 {
                    break;
                }
                o.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        });
        let line = first.trim();
        let addr = line
            .strip_prefix("keygate serving on http://")
            .or_else(|| line.strip_prefix("keygate serving on https://"))
            .unwrap_or_else(|| {
                let _ = child.kill();
                let mut err = String::new();
                let _ = child.stderr.take().map(|mut e| e.read_to_string(&mut err));
                panic!("serve did not start: {first:?}");
            })
            .parse()
            .unwrap();
        Self {
            child,
            addr,
            output,
        }
    }

    /// SIGKILL, as a crash or `kill -9` would: nothing runs on the way out.
    pub(crate) fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub(crate) fn output(&self) -> Vec<u8> {
        self.output.lock().unwrap().clone()
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub(crate) struct Answer {
    pub(crate) status: u16,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: String,
}

impl Answer {
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    pub(crate) fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
}

/// One HTTP/1.1 request over a fresh connection.
pub(crate) fn http(
    addr: SocketAddr,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Answer {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut req = format!(
        "{method} {target} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (n, v) in headers {
        req.push_str(&format!("{n}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).unwrap();
    // A refused oversize body may close the connection before all of it is written.
    let _ = s.write_all(body);
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    let text = String::from_utf8_lossy(&raw).to_string();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no HTTP answer: {text:?}"));
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_string(), v.trim().to_string()))
        .collect();
    Answer {
        status,
        headers,
        body: body.to_string(),
    }
}

struct Setup {
    kg: Kg,
    sim: Sim,
    sim_addr: SocketAddr,
    trader: String,
    treasurer: String,
    secrets: Vec<Vec<u8>>,
}

pub(crate) const COLD: &str = "0x00000000000000000000000000000000c01d0001";

fn setup(reconcile: &str) -> Setup {
    let b_secret = canary("BSECRET");
    let o_secret = canary("OSECRET");
    let o_pass = canary("OPASS");
    let (sim, sim_addr) = start_sim(vec![
        account(VenueKind::Binance, "bkey", &b_secret, None),
        account(VenueKind::Okx, "okey", &o_secret, Some(&o_pass)),
    ]);
    let mut kg = Kg::new();
    kg.env("KEYGATE_ACTOR", "alice");
    kg.ok(&["init"], None);
    kg.edit_config(|cfg| {
        let cfg = cfg
            .replace("cooldown = \"24h\"", "cooldown = \"1s\"");
        format!(
            "{cfg}\n[venues.binance-main]\nkind = \"binance\"\nbase_url = \"http://{sim_addr}\"\nreconcile_every = \"{reconcile}\"\n\n[venues.okx-main]\nkind = \"okx\"\nbase_url = \"http://{sim_addr}/\"\nreconcile_every = \"off\"\n"
        )
    });
    kg.withdraw_to_cold("treasury-to-cold", "treasurer");
    kg.credential(
        "binance-main",
        "binance-main",
        "binance-hmac",
        &format!("bkey\n{b_secret}\n"),
    );
    kg.credential(
        "okx-main",
        "okx-main",
        "okx-hmac",
        &format!("okey\n{o_secret}\n{o_pass}\n"),
    );
    kg.client(
        "trader",
        &["binance-main", "okx-main"],
        &["read", "trade", "cancel"],
        &["BTC/USDT"],
    );
    kg.client("treasurer", &["binance-main"], &["read", "withdraw"], &[]);
    kg.cold_wallet_on(COLD, &[("binance-main", Some("ETH"))]);
    let trader = kg
        .ok(&["token", "issue", "trader"], None)
        .trim()
        .to_string();
    let treasurer = kg
        .ok(&["token", "issue", "treasurer"], None)
        .trim()
        .to_string();
    Setup {
        kg,
        sim,
        sim_addr,
        trader,
        treasurer,
        secrets: vec![
            b_secret.into_bytes(),
            o_secret.into_bytes(),
            o_pass.into_bytes(),
        ],
    }
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

#[test]
fn a_bot_trades_and_withdraws_only_within_scope_policy_and_limits() {
    let s = setup("off");
    let serve = Serve::start(&s.kg);
    let trader = bearer(&s.trader);
    let treasurer = bearer(&s.treasurer);
    let order = "/venues/binance-main/api/v3/order?symbol=BTCUSDT&side=BUY&type=LIMIT&timeInForce=GTC&quantity=0.01&price=40000&newClientOrderId=o-1";

    // A trade-scoped token places an order: the simulator has it, the answer is the venue's.
    let a = http(
        serve.addr,
        "POST",
        order,
        &[("Authorization", &trader)],
        b"",
    );
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.json()["clientOrderId"], "o-1");
    assert!(
        a.header("x-keygate-decision")
            .is_some_and(|d| d.parse::<i64>().is_ok())
    );
    assert_eq!(s.sim.orders().len(), 1);

    // Its withdrawal is out of its scope: refused, never forwarded.
    let before = s.sim.requests();
    let w = "coin=USDT&network=ETH&address=0x00000000000000000000000000000000c01d0001&amount=100";
    let a = http(
        serve.addr,
        "POST",
        "/venues/binance-main/sapi/v1/capital/withdraw/apply",
        &[
            ("Authorization", &trader),
            ("Content-Type", "application/x-www-form-urlencoded"),
        ],
        w.as_bytes(),
    );
    assert_eq!(a.status, 403, "{}", a.body);
    assert_eq!(a.json()["error"], "out_of_scope");
    assert!(a.json()["decision_id"].is_i64());
    assert_eq!(s.sim.requests(), before);

    // The treasurer's withdrawal inside the limits, to the approved cold wallet, goes through.
    let a = http(
        serve.addr,
        "POST",
        "/venues/binance-main/sapi/v1/capital/withdraw/apply",
        &[
            ("Authorization", &treasurer),
            ("Content-Type", "application/x-www-form-urlencoded"),
        ],
        w.as_bytes(),
    );
    assert_eq!(a.status, 200, "{}", a.body);
    let ws = s.sim.withdrawals();
    assert_eq!(ws.len(), 1);
    assert_eq!(ws[0].amount, Decimal::from(100));
    assert_eq!(ws[0].address.to_ascii_lowercase(), COLD);
    assert_eq!(
        s.sim.balance("bkey", "USDT"),
        Some(Decimal::from(10_000_000 - 100))
    );

    let before = s.sim.requests();
    // The cold wallet's entry is for ETH: the same address on BSC, or on the coin's default
    // network (no network named), is another destination, refused by the address book.
    for other in [
        "coin=USDT&network=BSC&address=0x00000000000000000000000000000000c01d0001&amount=10",
        "coin=USDT&address=0x00000000000000000000000000000000c01d0001&amount=10",
    ] {
        let a = http(
            serve.addr,
            "POST",
            "/venues/binance-main/sapi/v1/capital/withdraw/apply",
            &[
                ("Authorization", &treasurer),
                ("Content-Type", "application/x-www-form-urlencoded"),
            ],
            other.as_bytes(),
        );
        assert_eq!(a.status, 403, "{other}: {}", a.body);
        let reason = a.json()["reason"].as_str().unwrap_or_default().to_string();
        assert!(reason.contains("does not approve another"), "{reason}");
        assert!(reason.contains("on network ETH"), "{reason}");
    }
    assert_eq!(s.sim.requests(), before);
    assert_eq!(s.sim.withdrawals().len(), 1);

    // Over the per-client cap (100,000 USD an hour): denied by the limit, never forwarded.
    let before = s.sim.requests();
    let big =
        "coin=USDT&network=ETH&address=0x00000000000000000000000000000000c01d0001&amount=150000";
    let a = http(
        serve.addr,
        "POST",
        "/venues/binance-main/sapi/v1/capital/withdraw/apply",
        &[
            ("Authorization", &treasurer),
            ("Content-Type", "application/x-www-form-urlencoded"),
        ],
        big.as_bytes(),
    );
    assert_eq!(a.status, 403, "{}", a.body);
    assert_eq!(a.json()["error"], "denied");
    assert!(
        a.json()["reason"]
            .as_str()
            .unwrap()
            .contains("per-client-1h"),
        "{}",
        a.body
    );
    // To an address not in the book: denied too.
    let stranger =
        "coin=USDT&network=ETH&address=0x000000000000000000000000000000000bad0002&amount=10";
    let a = http(
        serve.addr,
        "POST",
        "/venues/binance-main/sapi/v1/capital/withdraw/apply",
        &[
            ("Authorization", &treasurer),
            ("Content-Type", "application/x-www-form-urlencoded"),
        ],
        stranger.as_bytes(),
    );
    assert_eq!(a.status, 403, "{}", a.body);
    assert_eq!(s.sim.requests(), before);
    assert_eq!(s.sim.withdrawals().len(), 1);
    assert_eq!(s.sim.requests(), before);
    assert_eq!(s.sim.withdrawals().len(), 1);

    // OKX: a balance read and an order, signed the OKX way.
    let a = http(
        serve.addr,
        "GET",
        "/venues/okx-main/api/v5/account/balance?ccy=USDT",
        &[("Authorization", &trader)],
        b"",
    );
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.json()["code"], "0");
    let body = br#"{"instId":"BTC-USDT","tdMode":"cash","side":"buy","ordType":"limit","sz":"0.01","px":"40000","clOrdId":"k1"}"#;
    let a = http(
        serve.addr,
        "POST",
        "/venues/okx-main/api/v5/trade/order",
        &[
            ("Authorization", &trader),
            ("Content-Type", "application/json"),
        ],
        body,
    );
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.json()["data"][0]["sCode"], "0");
    assert_eq!(s.sim.orders().len(), 2);

    // Every decision is in the audit log, which verifies.
    let mut kg = s.kg;
    let verify = kg.ok(&["audit", "verify"], None);
    assert!(verify.contains("ok"), "{verify}");
    let tail = kg.ok(&["audit", "tail", "-n", "50", "--json"], None);
    assert!(
        tail.contains("\"path\":\"/sapi/v1/capital/withdraw/apply\""),
        "{tail}"
    );
    // No venue secret reached the server's output or the audit log.
    assert_no_leak("serve's output", &serve.output(), &s.secrets);
    assert_no_leak("the audit log", tail.as_bytes(), &s.secrets);
}

#[test]
fn bad_requests_get_clear_errors_and_nothing_is_forwarded() {
    let s = setup("off");
    let serve = Serve::start(&s.kg);
    let trader = bearer(&s.trader);
    let before = s.sim.requests();
    let order = |id: &str| {
        format!(
            "/venues/binance-main/api/v3/order?symbol=BTCUSDT&side=BUY&type=LIMIT&timeInForce=GTC&quantity=0.01&price=40000&newClientOrderId={id}"
        )
    };

    let cases: Vec<(&str, Answer, u16, &str)> = vec![
        (
            "a body over 64 KiB",
            http(
                serve.addr,
                "POST",
                "/venues/binance-main/api/v3/order",
                &[("Authorization", &trader)],
                &vec![b'a'; 70 * 1024],
            ),
            413,
            "body_too_large",
        ),
        (
            "a malformed query",
            http(
                serve.addr,
                "GET",
                "/venues/binance-main/api/v3/account?omitZeroBalances=%zz",
                &[("Authorization", &trader)],
                b"",
            ),
            400,
            "bad_request",
        ),
        (
            "a duplicated parameter",
            http(
                serve.addr,
                "POST",
                "/venues/binance-main/api/v3/order?symbol=BTCUSDT&side=BUY&type=LIMIT&quantity=0.01&quantity=900&price=40000",
                &[("Authorization", &trader)],
                b"",
            ),
            400,
            "bad_request",
        ),
        (
            "an unknown path",
            http(
                serve.addr,
                "POST",
                "/venues/binance-main/sapi/v1/asset/transfer?type=MAIN_UMFUTURE&asset=USDT&amount=5",
                &[("Authorization", &trader)],
                b"",
            ),
            403,
            "unknown_endpoint",
        ),
        (
            "an unknown venue",
            http(
                serve.addr,
                "GET",
                "/venues/kraken/0/private/Balance",
                &[("Authorization", &trader)],
                b"",
            ),
            404,
            "unknown_venue",
        ),
        (
            "no token",
            http(
                serve.addr,
                "GET",
                "/venues/binance-main/api/v3/account",
                &[],
                b"",
            ),
            401,
            "unauthenticated",
        ),
        (
            "a malformed token",
            http(
                serve.addr,
                "GET",
                "/venues/binance-main/api/v3/account",
                &[("Authorization", "Bearer kgt_nothex")],
                b"",
            ),
            401,
            "malformed",
        ),
        (
            "a forged token",
            http(
                serve.addr,
                "GET",
                "/venues/binance-main/api/v3/account",
                &[(
                    "Authorization",
                    &bearer(&format!("{}{}", &s.trader[..21], "0".repeat(64))),
                )],
                b"",
            ),
            401,
            "bad_secret",
        ),
        (
            "an unknown token",
            http(
                serve.addr,
                "GET",
                "/venues/binance-main/api/v3/account",
                &[(
                    "Authorization",
                    &bearer(&format!("kgt_{}_{}", "1".repeat(16), "0".repeat(64))),
                )],
                b"",
            ),
            401,
            "unknown",
        ),
        (
            "a route outside the gateway",
            http(
                serve.addr,
                "GET",
                "/api/v3/account",
                &[("Authorization", &trader)],
                b"",
            ),
            404,
            "not_found",
        ),
    ];
    for (what, a, status, error) in &cases {
        assert_eq!(a.status, *status, "{what}: {}", a.body);
        assert_eq!(a.json()["error"], *error, "{what}: {}", a.body);
        assert!(
            !a.json()["reason"].as_str().unwrap_or_default().is_empty(),
            "{what}"
        );
    }
    assert_eq!(
        s.sim.requests(),
        before,
        "a refused request reached the venue"
    );

    // A replayed client order id: the first is forwarded, the second refused.
    let a = http(
        serve.addr,
        "POST",
        &order("dup-1"),
        &[("Authorization", &trader)],
        b"",
    );
    assert_eq!(a.status, 200, "{}", a.body);
    let after_first = s.sim.requests();
    let a = http(
        serve.addr,
        "POST",
        &order("dup-1"),
        &[("Authorization", &trader)],
        b"",
    );
    assert_eq!(a.status, 409, "{}", a.body);
    assert_eq!(a.json()["error"], "replayed");
    assert!(a.json()["reason"].as_str().unwrap().contains("dup-1"));
    assert_eq!(s.sim.requests(), after_first);
    // A denied request leaves its id unused: the bot may send it again.
    let treasurer = bearer(&s.treasurer);
    let withdraw = |to: &str| {
        http(
            serve.addr,
            "POST",
            "/venues/binance-main/sapi/v1/capital/withdraw/apply",
            &[
                ("Authorization", &treasurer),
                ("Content-Type", "application/x-www-form-urlencoded"),
            ],
            format!("coin=USDT&network=ETH&address={to}&amount=10&withdrawOrderId=w-9").as_bytes(),
        )
    };
    let a = withdraw("0x000000000000000000000000000000000bad0002");
    assert_eq!(a.status, 403, "{}", a.body);
    let a = withdraw(COLD);
    assert_eq!(a.status, 200, "{}", a.body);
    let a = withdraw(COLD);
    assert_eq!(a.status, 409, "{}", a.body);
    // The same id through the generic header, on a read.
    let a = http(
        serve.addr,
        "GET",
        "/venues/binance-main/api/v3/account",
        &[("Authorization", &trader), ("x-keygate-request-id", "r-1")],
        b"",
    );
    assert_eq!(a.status, 200, "{}", a.body);
    let a = http(
        serve.addr,
        "GET",
        "/venues/binance-main/api/v3/account",
        &[("Authorization", &trader), ("x-keygate-request-id", "r-1")],
        b"",
    );
    assert_eq!(a.status, 409, "{}", a.body);

    // A revoked token is refused by the very next request.
    let mut kg = s.kg;
    let id = &s.trader[4..20];
    kg.ok(&["token", "revoke", id], None);
    let a = http(
        serve.addr,
        "GET",
        "/venues/binance-main/api/v3/account",
        &[("Authorization", &trader)],
        b"",
    );
    assert_eq!(a.status, 401, "{}", a.body);
    assert_eq!(a.json()["error"], "revoked");

    let metrics = http(serve.addr, "GET", "/metrics", &[], b"");
    assert_eq!(metrics.status, 200);
    assert!(
        metrics.body.contains("keygate_gateway_requests_total"),
        "{}",
        metrics.body
    );
    kg.ok(&["audit", "verify"], None);
}

/// A Binance withdrawal made directly at the simulator with the leaked key.
fn leaked_binance_withdrawal(s: &Setup, to: &str, amount: &str) {
    let secret = String::from_utf8(s.secrets[0].clone()).unwrap();
    let now = keygate_server::now_ms();
    let payload = format!(
        "coin=USDT&network=ETH&address={to}&amount={amount}&recvWindow=5000&timestamp={now}"
    );
    let sig = keygate_venues::binance::signature(&secret, &payload);
    let a = http(
        s.sim_addr,
        "POST",
        "/sapi/v1/capital/withdraw/apply",
        &[
            ("X-MBX-APIKEY", "bkey"),
            ("Content-Type", "application/x-www-form-urlencoded"),
        ],
        format!("{payload}&signature={sig}").as_bytes(),
    );
    assert_eq!(a.status, 200, "{}", a.body);
}

/// Polls the audit log until `want` reconciliation entries are there (or 30 s pass).
fn wait_for_outflows(kg: &mut Kg, want: usize) -> (usize, usize) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let tail = kg.ok(&["audit", "tail", "-n", "500", "--json"], None);
        let m = tail.matches("outflow.matched").count();
        let u = tail.matches("outflow.unapproved").count();
        if m + u >= want || Instant::now() > deadline {
            return (m, u);
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn reconciliation_flags_a_withdrawal_made_around_keygate() {
    let s = setup("1s");
    let serve = Serve::start(&s.kg);
    let treasurer = bearer(&s.treasurer);
    let w = format!("coin=USDT&network=ETH&address={COLD}&amount=72");
    let a = http(
        serve.addr,
        "POST",
        "/venues/binance-main/sapi/v1/capital/withdraw/apply",
        &[
            ("Authorization", &treasurer),
            ("Content-Type", "application/x-www-form-urlencoded"),
            // keygate's own request id (not a venue parameter): the withdrawal still carries
            // keygate's client id to the venue, and is matched by it.
            ("x-keygate-request-id", "hdr-1"),
        ],
        w.as_bytes(),
    );
    assert_eq!(a.status, 200, "{}", a.body);
    // The leaked key used directly at the venue, around keygate: to the thief, and, as in
    // Kronos, to the firm's own whitelisted wallet with the very amount keygate allowed. The
    // client id keygate set on its own withdrawal tells the two apart.
    leaked_binance_withdrawal(&s, "0xa77ac6e700000000000000000000000000000bad", "2400000");
    leaked_binance_withdrawal(&s, COLD, "72");
    assert!(
        s.sim
            .withdrawals()
            .iter()
            .any(|w| w.client_id.as_deref().is_some_and(|c| c.starts_with("kg"))),
        "keygate tags its own withdrawals with a client id"
    );

    let mut kg = s.kg;
    assert_eq!(
        wait_for_outflows(&mut kg, 3),
        (1, 2),
        "keygate's withdrawal must match and the other two be flagged"
    );
    let out = String::from_utf8_lossy(&serve.output()).to_string();
    assert!(
        out.contains("outflow.unapproved") && out.contains("critical"),
        "{out}"
    );
    // Containment: everything is frozen from the next decision on.
    assert!(kg.ok(&["freeze", "list"], None).contains("all"));
    let a = http(
        serve.addr,
        "GET",
        "/venues/binance-main/api/v3/account",
        &[("Authorization", &treasurer)],
        b"",
    );
    assert_eq!(a.status, 403, "{}", a.body);
    assert_eq!(a.json()["error"], "frozen");
    assert!(
        a.json()["reason"]
            .as_str()
            .unwrap()
            .contains("unapproved outflow")
    );
    // Later passes judge nothing twice.
    std::thread::sleep(Duration::from_millis(2500));
    let tail = kg.ok(&["audit", "tail", "-n", "100", "--json"], None);
    assert_eq!(tail.matches("outflow.unapproved").count(), 2);
    assert_eq!(tail.matches("outflow.matched").count(), 1);
    kg.ok(&["audit", "verify"], None);
}

#[test]
fn reconciliation_reads_every_page_of_a_long_history() {
    let s = setup("off");
    // 150 withdrawals at OKX made around keygate: more than one page (OKX returns 100).
    let secret = String::from_utf8(s.secrets[1].clone()).unwrap();
    let pass = String::from_utf8(s.secrets[2].clone()).unwrap();
    for i in 0..150 {
        let ts = keygate_venues::okx::timestamp(keygate_server::now_ms());
        let body = format!(
            r#"{{"ccy":"USDT","amt":"{}","dest":"4","toAddr":"0xa77ac6e700000000000000000000000000000bad","chain":"USDT-ERC20"}}"#,
            i + 1
        );
        let sig =
            keygate_venues::okx::signature(&secret, &ts, "POST", "/api/v5/asset/withdrawal", &body);
        let a = http(
            s.sim_addr,
            "POST",
            "/api/v5/asset/withdrawal",
            &[
                ("OK-ACCESS-KEY", "okey"),
                ("OK-ACCESS-SIGN", &sig),
                ("OK-ACCESS-TIMESTAMP", &ts),
                ("OK-ACCESS-PASSPHRASE", &pass),
                ("Content-Type", "application/json"),
            ],
            body.as_bytes(),
        );
        assert_eq!(a.status, 200, "{}", a.body);
    }
    let cfg_path = s.kg.data.join("keygate.toml");
    let cfg = std::fs::read_to_string(&cfg_path).unwrap();
    let okx = cfg.rfind("reconcile_every = \"off\"").unwrap();
    let cfg = format!(
        "{}reconcile_every = \"1s\"{}",
        &cfg[..okx],
        &cfg[okx + "reconcile_every = \"off\"".len()..]
    );
    std::fs::write(&cfg_path, cfg).unwrap();
    let _serve = Serve::start(&s.kg);
    let mut kg = s.kg;
    assert_eq!(
        wait_for_outflows(&mut kg, 150),
        (0, 150),
        "every withdrawal of the long history is judged"
    );
}

#[test]
fn doctor_reports_a_key_that_can_withdraw_from_anywhere() {
    let s = setup("off");
    let mut kg = s.kg;
    let out = kg.run(&["doctor"], None);
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(!out.status.success(), "{stdout}");
    assert!(stdout.contains("venue binance-main"), "{stdout}");
    assert!(
        stdout.contains(
            "UNSAFE  withdrawals are enabled and the key is not restricted to IP addresses"
        ),
        "{stdout}"
    );
    assert!(
        stdout.contains("venue okx-main")
            && stdout.contains("UNSAFE  the key may withdraw and is bound to no IP"),
        "{stdout}"
    );
    assert_no_leak("doctor's output", &kg.transcript, &s.secrets);
}

#[test]
fn a_flood_of_bad_tokens_is_cut_off_before_it_fills_the_audit_log() {
    let s = setup("off");
    let serve = Serve::start(&s.kg);
    let forged = bearer(&format!("{}{}", &s.trader[..21], "0".repeat(64)));
    for i in 0..keygate_server::MAX_AUTH_FAILURES_PER_MINUTE {
        let a = http(
            serve.addr,
            "GET",
            "/venues/binance-main/api/v3/account",
            &[("Authorization", &forged)],
            b"",
        );
        assert_eq!(a.status, 401, "request {i}: {}", a.body);
    }
    // From here on the address is cut off for the minute, even with a good token.
    for token in [&forged, &bearer(&s.trader)] {
        let a = http(
            serve.addr,
            "GET",
            "/venues/binance-main/api/v3/account",
            &[("Authorization", token)],
            b"",
        );
        assert_eq!(a.status, 429, "{}", a.body);
        assert_eq!(a.json()["error"], "too_many_failures");
    }
    let mut kg = s.kg;
    let tail = kg.audit_tail_until("200", |t| {
        t.matches("token.refused").count() >= keygate_server::MAX_AUTH_FAILURES_PER_MINUTE as usize
    });
    assert_eq!(
        tail.matches("token.refused").count(),
        keygate_server::MAX_AUTH_FAILURES_PER_MINUTE as usize
    );
}

#[test]
fn tls_serves_https_and_a_silent_client_blocks_no_one() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio_rustls::rustls;

    let s = setup("off");
    let key = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    std::fs::write(s.kg.data.join("tls.crt"), key.cert.pem()).unwrap();
    let key_path = s.kg.data.join("tls.key");
    std::fs::write(&key_path, key.signing_key.serialize_pem()).unwrap();
    let cfg_path = s.kg.data.join("keygate.toml");
    let cfg = std::fs::read_to_string(&cfg_path).unwrap().replace(
        "credential_ttl = \"30s\"",
        "credential_ttl = \"30s\"\ntls_cert = \"tls.crt\"\ntls_key = \"tls.key\"",
    );
    std::fs::write(&cfg_path, cfg).unwrap();
    // A private key others may read is refused, with the fix in the message.
    let mut kg2 = Kg::new();
    kg2.data = s.kg.data.clone();
    let out = kg2.run(&["serve", "--listen", "127.0.0.1:0"], None);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("tls.key"),
        "{out:?}"
    );
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&key_path, std::fs::Permissions::from_mode(0o600)).unwrap();
    let serve = Serve::start(&s.kg);
    assert!(String::from_utf8_lossy(&serve.output()).contains("https://"));

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        // A client that connects and says nothing.
        let _silent = tokio::net::TcpStream::connect(serve.addr).await.unwrap();
        let mut roots = rustls::RootCertStore::empty();
        roots.add(key.cert.der().clone()).unwrap();
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
        let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
        let started = Instant::now();
        let tcp = tokio::net::TcpStream::connect(serve.addr).await.unwrap();
        let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
        let mut tls = connector.connect(name, tcp).await.unwrap();
        let req = format!(
            "GET /venues/binance-main/api/v3/account HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {}\r\nConnection: close\r\n\r\n",
            s.trader
        );
        tls.write_all(req.as_bytes()).await.unwrap();
        let mut answer = Vec::new();
        let _ = tls.read_to_end(&mut answer).await;
        let answer = String::from_utf8_lossy(&answer);
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        assert!(answer.contains("\"balances\""), "{answer}");
        // Well inside the 5 s a silent client is given: it held no one up.
        assert!(started.elapsed() < Duration::from_secs(3), "{:?}", started.elapsed());
    });
    // Plain HTTP on the TLS port gets no HTTP answer.
    let mut plain = TcpStream::connect(serve.addr).unwrap();
    plain
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    plain
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut buf = Vec::new();
    let _ = plain.read_to_end(&mut buf);
    assert!(!String::from_utf8_lossy(&buf).contains("200 OK"));
}

#[test]
fn a_freeze_stops_a_bot_at_once_survives_a_restart_and_only_a_quorum_lifts_it() {
    let mut s = setup("off");
    let keys = approver_keys(&mut s.kg, 3, 2);
    let serve = Serve::start(&s.kg);
    let trader = bearer(&s.trader);
    let read = |addr| {
        http(
            addr,
            "GET",
            "/venues/binance-main/api/v3/account",
            &[("Authorization", &trader)],
            b"",
        )
    };
    assert_eq!(read(serve.addr).status, 200);
    let out = s.kg.ok(
        &[
            "freeze",
            "client:trader",
            "--reason",
            "test-then-drain seen",
        ],
        None,
    );
    assert!(out.contains("approve freeze:1"), "{out}");
    let before = s.sim.requests();
    let a = read(serve.addr);
    assert_eq!(a.status, 403, "{}", a.body);
    assert_eq!(a.json()["error"], "frozen");
    assert!(
        a.json()["reason"]
            .as_str()
            .unwrap()
            .contains("test-then-drain seen")
    );
    assert_eq!(s.sim.requests(), before);
    // It survives a restart.
    drop(serve);
    let serve = Serve::start(&s.kg);
    assert_eq!(read(serve.addr).status, 403);
    assert!(s.kg.ok(&["freeze", "list"], None).contains("client:trader"));

    let approve = |kg: &mut Kg, key: &std::path::Path| {
        kg.run(
            &["approve", "freeze:1", "--key", key.to_str().unwrap()],
            None,
        )
    };
    // A key the config does not list is refused.
    let out = approve(&mut s.kg, &keys[2]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not listed in approvals.approvers"));
    // One approver, twice: one of two, and still frozen.
    for _ in 0..2 {
        let out = approve(&mut s.kg, &keys[0]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(String::from_utf8_lossy(&out.stdout).contains("counted: 1 of 2"));
    }
    assert_eq!(read(serve.addr).status, 403);
    // An approval that would outlive approvals.max_validity is refused.
    let out = s.kg.run(
        &[
            "approve",
            "freeze:1",
            "--key",
            keys[1].to_str().unwrap(),
            "--ttl",
            "2h",
        ],
        None,
    );
    assert!(!out.status.success());
    // The second approver lifts it; the bot works again on its next request.
    let out = approve(&mut s.kg, &keys[1]);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("lifted"),
        "{out:?}"
    );
    assert_eq!(read(serve.addr).status, 200);
    assert!(
        s.kg.ok(&["freeze", "list"], None)
            .contains("nothing is frozen")
    );
    s.kg.ok(&["audit", "verify"], None);
}

#[test]
fn test_then_drain_through_the_gateway_freezes_the_client_and_never_reaches_the_venue() {
    let s = setup("off");
    let serve = Serve::start(&s.kg);
    let treasurer = bearer(&s.treasurer);
    let withdraw = |amount: &str| {
        http(
            serve.addr,
            "POST",
            "/venues/binance-main/sapi/v1/capital/withdraw/apply",
            &[
                ("Authorization", &treasurer),
                ("Content-Type", "application/x-www-form-urlencoded"),
            ],
            format!("coin=USDT&network=ETH&address={COLD}&amount={amount}").as_bytes(),
        )
    };
    // The Kronos pattern, inside every limit (100,000 USD an hour): a 72 USDT test to the
    // firm's own approved wallet, then 90,000 to the same wallet.
    let a = withdraw("72");
    assert_eq!(a.status, 200, "{}", a.body);
    let before = s.sim.requests();
    let a = withdraw("90000");
    assert_eq!(a.status, 403, "{}", a.body);
    assert_eq!(a.json()["error"], "denied");
    let reason = a.json()["reason"].as_str().unwrap().to_string();
    assert!(reason.contains("test_then_drain"), "{reason}");
    assert_eq!(
        s.sim.requests(),
        before,
        "the drain never reached the venue"
    );
    assert_eq!(s.sim.withdrawals().len(), 1);
    // The client is frozen: even a read is refused now; the trader is not affected.
    let a = http(
        serve.addr,
        "GET",
        "/venues/binance-main/api/v3/account",
        &[("Authorization", &treasurer)],
        b"",
    );
    assert_eq!(a.json()["error"], "frozen", "{}", a.body);
    let a = http(
        serve.addr,
        "GET",
        "/venues/binance-main/api/v3/account",
        &[("Authorization", &bearer(&s.trader))],
        b"",
    );
    assert_eq!(a.status, 200, "{}", a.body);
    // The thief retrying the drain piles up no further freezes (nor alerts).
    for _ in 0..3 {
        assert_eq!(withdraw("90000").json()["error"], "frozen");
    }
    let mut kg = s.kg;
    let list = kg.ok(&["freeze", "list"], None);
    assert!(
        list.contains("client:treasurer") && list.contains("detector:test_then_drain"),
        "{list}"
    );
    assert_eq!(list.matches("freeze:").count(), 1, "{list}");
    kg.ok(&["audit", "verify"], None);
}

#[test]
fn a_webhook_that_was_down_gets_every_alert_once_signed_when_it_comes_back() {
    use axum::body::Bytes;
    use axum::http::HeaderMap;

    let s = setup("off");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let secret = canary("HOOK");
    let cfg_path = s.kg.data.join("keygate.toml");
    let cfg = std::fs::read_to_string(&cfg_path).unwrap();
    std::fs::write(
        &cfg_path,
        format!("{cfg}\n[[alerts.webhooks]]\nname = \"siem\"\nurl = \"http://127.0.0.1:{port}/hook\"\nsecret_env = \"E2E_HOOK_SECRET\"\nmax_backoff = \"1s\"\n"),
    )
    .unwrap();
    let serve = Serve::start_with(&s.kg, &[("E2E_HOOK_SECRET", &secret)]);
    std::thread::sleep(Duration::from_millis(500));
    // Three alerts while the receiver is down: two freezes and a detector signal.
    let mut kg = s.kg;
    kg.ok(&["freeze", "venue:okx-main", "--reason", "first"], None);
    let a = http(
        serve.addr,
        "POST",
        "/venues/binance-main/sapi/v1/capital/withdraw/apply",
        &[
            ("Authorization", &bearer(&s.treasurer)),
            ("Content-Type", "application/x-www-form-urlencoded"),
        ],
        format!("coin=USDT&network=ETH&address={COLD}&amount=72").as_bytes(),
    );
    assert_eq!(a.status, 200, "{}", a.body);
    kg.ok(&["freeze", "client:ghost", "--reason", "third"], None);
    std::thread::sleep(Duration::from_secs(2));

    // The receiver comes up on the port the sink was given.
    let got: Arc<Mutex<Vec<(HeaderMap, Bytes)>>> = Arc::default();
    let g = got.clone();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let app = axum::Router::new().route(
                "/hook",
                axum::routing::post(move |h: HeaderMap, b: Bytes| {
                    let g = g.clone();
                    async move {
                        g.lock().unwrap().push((h, b));
                        "ok"
                    }
                }),
            );
            let l = tokio::net::TcpListener::bind(("127.0.0.1", port))
                .await
                .unwrap();
            axum::serve(l, app).await.unwrap();
        });
    });
    let deadline = Instant::now() + Duration::from_secs(20);
    while got.lock().unwrap().len() < 3 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(1500));
    let got = got.lock().unwrap().clone();
    assert_eq!(got.len(), 3, "every alert, once each");
    let mut ids = vec![];
    let mut kinds = vec![];
    for (h, body) in &got {
        let ts = h["x-keygate-timestamp"].to_str().unwrap();
        let sig = h["x-keygate-signature"].to_str().unwrap();
        assert_eq!(
            sig,
            keygate_server::alerts::signature(&secret, ts, body),
            "signed over timestamp and body"
        );
        let v: serde_json::Value = serde_json::from_slice(body).unwrap();
        ids.push(v["id"].as_i64().unwrap());
        kinds.push(v["kind"].as_str().unwrap().to_string());
        assert_no_leak("an alert", body, &s.secrets);
        assert!(!String::from_utf8_lossy(body).contains(&secret));
    }
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "in order: {ids:?}");
    assert_eq!(kinds, vec!["freeze", "detector", "freeze"]);
    let v: serde_json::Value = serde_json::from_slice(&got[1].1).unwrap();
    assert!(
        v["summary"].as_str().unwrap().contains("first outflow"),
        "{v}"
    );
    assert_eq!(v["decision_id"], v["id"]);
    let out = String::from_utf8_lossy(&serve.output()).to_string();
    assert!(
        out.contains("could not be delivered"),
        "the failures were logged"
    );
}

#[test]
fn a_held_withdrawal_goes_through_once_after_a_quorum_and_an_expired_hold_is_a_deny() {
    let mut s = setup("off");
    let keys = approver_keys(&mut s.kg, 2, 2);
    edit_config(&s.kg, |c| {
        c.replace("hold_ttl = \"1h\"", "hold_ttl = \"3s\"")
    });
    std::fs::write(
        s.kg.data.join("policies/hold.cedar"),
        r#"@id("big-withdrawals-need-two")
@hold
forbid (principal, action == Keygate::Action::"withdraw", resource)
when { context.usd_value_cents > 5000000 } unless { context.approvals >= 2 };
"#,
    )
    .unwrap();
    let serve = Serve::start(&s.kg);
    let treasurer = bearer(&s.treasurer);
    let withdraw = |amount: &str, id: &str, hold: Option<&str>| {
        let mut headers = vec![
            ("Authorization", treasurer.as_str()),
            ("Content-Type", "application/x-www-form-urlencoded"),
        ];
        if let Some(h) = hold {
            headers.push(("x-keygate-hold", h));
        }
        http(
            serve.addr,
            "POST",
            "/venues/binance-main/sapi/v1/capital/withdraw/apply",
            &headers,
            format!("coin=USDT&network=ETH&address={COLD}&amount={amount}&withdrawOrderId={id}")
                .as_bytes(),
        )
    };
    let approve = |kg: &mut Kg, subject: &str, key: &std::path::Path| {
        kg.run(&["approve", subject, "--key", key.to_str().unwrap()], None)
    };
    // A hold nobody approves in time is a deny.
    let a = withdraw("55000", "big-2", None);
    assert_eq!(a.status, 202, "{}", a.body);
    let h2 = a.json()["approval_id"].as_i64().unwrap().to_string();
    std::thread::sleep(Duration::from_millis(3300));
    let out = approve(&mut s.kg, &format!("hold:{h2}"), &keys[0]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("expired"),
        "{out:?}"
    );
    let a = withdraw("55000", "big-2", Some(&h2));
    assert_eq!(
        (a.status, a.json()["error"].as_str()),
        (403, Some("hold_expired")),
        "{}",
        a.body
    );

    // Held, then approved by two, then carried out once.
    let before = s.sim.withdrawals().len();
    let a = withdraw("60000", "big-1", None);
    assert_eq!(a.status, 202, "{}", a.body);
    assert!(
        a.json()["next"]
            .as_str()
            .unwrap()
            .contains("x-keygate-hold")
    );
    let h1 = a.json()["approval_id"].as_i64().unwrap().to_string();
    let listed = s.kg.ok(&["holds"], None);
    assert!(
        listed.contains(&format!("hold:{h1}"))
            && listed.contains("waiting")
            && listed.contains("60000"),
        "{listed}"
    );
    assert!(
        !listed.contains(&format!("hold:{h2}")),
        "an expired hold is not waiting: {listed}"
    );
    // Beneath it, the exact request the hold binds, every parameter.
    let held_request = format!(
        "    POST /sapi/v1/capital/withdraw/apply\n    coin=USDT&network=ETH&address={COLD}&amount=60000&withdrawOrderId=big-1"
    );
    assert!(listed.contains(&held_request), "{listed}");
    let a = withdraw("60000", "big-1", Some(&h1));
    assert_eq!(
        (a.status, a.json()["error"].as_str()),
        (409, Some("hold_pending")),
        "{}",
        a.body
    );
    // Another request cannot ride on the hold. The approver is shown the request in full.
    let first = approve(&mut s.kg, &format!("hold:{h1}"), &keys[0]);
    assert!(first.status.success(), "{first:?}");
    let shown = String::from_utf8_lossy(&first.stdout);
    assert!(
        shown.contains("the request keygate will forward") && shown.contains(&held_request),
        "{shown}"
    );
    assert!(
        approve(&mut s.kg, &format!("hold:{h1}"), &keys[1])
            .status
            .success()
    );
    let a = withdraw("60001", "big-1", Some(&h1));
    assert_eq!(
        (a.status, a.json()["error"].as_str()),
        (409, Some("hold_invalid")),
        "{}",
        a.body
    );
    // The same intent on another network is another request.
    let headers = [
        ("Authorization", treasurer.as_str()),
        ("Content-Type", "application/x-www-form-urlencoded"),
        ("x-keygate-hold", h1.as_str()),
    ];
    let a = http(
        serve.addr,
        "POST",
        "/venues/binance-main/sapi/v1/capital/withdraw/apply",
        &headers,
        format!("coin=USDT&network=BSC&address={COLD}&amount=60000&withdrawOrderId=big-1")
            .as_bytes(),
    );
    assert_eq!(
        (a.status, a.json()["error"].as_str()),
        (409, Some("hold_invalid")),
        "{}",
        a.body
    );
    assert_eq!(
        s.sim.withdrawals().len(),
        before,
        "nothing was forwarded before the quorum"
    );
    // Ten copies at once (a bot retrying on a timeout): exactly one is carried out.
    let statuses: Vec<u16> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..10)
            .map(|_| scope.spawn(|| withdraw("60000", "big-1", Some(&h1)).status))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        1,
        "{statuses:?}"
    );
    assert!(
        statuses.iter().all(|s| *s == 200 || *s == 409),
        "{statuses:?}"
    );
    assert_eq!(s.sim.withdrawals().len(), before + 1);
    let a = withdraw("60000", "big-1", Some(&h1));
    assert_eq!(
        (a.status, a.json()["error"].as_str()),
        (409, Some("hold_invalid")),
        "{}",
        a.body
    );
    assert_eq!(s.sim.withdrawals().len(), before + 1, "a hold is used once");
    s.kg.ok(&["audit", "verify"], None);
}

#[test]
fn an_address_book_entry_can_be_approved_by_a_quorum_of_signatures() {
    let mut s = setup("off");
    let keys = approver_keys(&mut s.kg, 2, 2);
    s.kg.ok(
        &[
            "address",
            "add",
            "0x00000000000000000000000000000000c01d0002",
            "--venue",
            "binance-main",
            "--asset",
            "USDT",
            "--label",
            "cold 2",
        ],
        None,
    );
    let approve = |kg: &mut Kg, key: &std::path::Path| {
        kg.ok(
            &["approve", "address:2", "--key", key.to_str().unwrap()],
            None,
        )
    };
    assert!(approve(&mut s.kg, &keys[0]).contains("1 of 2"));
    let approved =
        |l: &str| l.contains("c01d0002") && (l.contains("cooling-down") || l.contains("active"));
    assert!(!s.kg.ok(&["address", "list"], None).lines().any(approved));
    assert!(approve(&mut s.kg, &keys[1]).contains("address-book entry 2 approved"));
    let list = s.kg.ok(&["address", "list"], None);
    assert!(list.lines().any(approved), "{list}");
    // Approved is approved: a further approval is refused.
    let out = s.kg.run(
        &["approve", "address:2", "--key", keys[0].to_str().unwrap()],
        None,
    );
    assert!(!out.status.success());
    s.kg.ok(&["audit", "verify"], None);
}

#[test]
fn two_instances_deliver_each_alert_once_between_them_and_take_over_from_each_other() {
    let s = setup("off");
    let (hook, got) = webhook();
    let cfg_path = s.kg.data.join("keygate.toml");
    let cfg = std::fs::read_to_string(&cfg_path).unwrap();
    std::fs::write(
        &cfg_path,
        format!("{cfg}\n[[alerts.webhooks]]\nname = \"siem\"\nurl = \"http://{hook}/hook\"\nsecret_env = \"E2E_HOOK_SECRET\"\nmax_backoff = \"1s\"\n"),
    )
    .unwrap();
    let secret = canary("HOOK");
    let a = Serve::start_with(&s.kg, &[("E2E_HOOK_SECRET", &secret)]);
    let b = Serve::start_with(&s.kg, &[("E2E_HOOK_SECRET", &secret)]);
    std::thread::sleep(Duration::from_millis(800));
    let mut kg = s.kg;
    let wait_for = |n: usize, secs: u64| {
        let deadline = Instant::now() + Duration::from_secs(secs);
        while got.lock().unwrap().len() < n && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    for i in 0..2 {
        kg.ok(
            &["freeze", &format!("client:ghost{i}"), "--reason", "r"],
            None,
        );
    }
    wait_for(2, 15);
    // One instance stops; the other carries on (after the lease runs out, if it was not the
    // one delivering).
    drop(a);
    for i in 2..4 {
        kg.ok(
            &["freeze", &format!("client:ghost{i}"), "--reason", "r"],
            None,
        );
    }
    wait_for(4, 30);
    std::thread::sleep(Duration::from_millis(1500));
    let ids: Vec<i64> = got.lock().unwrap().iter().map(|(id, _)| *id).collect();
    let mut sorted = ids.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted.len(), 4, "every alert delivered: {ids:?}");
    // Once each between the two instances, except that the stopped one may have been killed
    // between a 2xx answer and writing its cursor: then that one alert (of the two before the
    // stop) is delivered again by the other, at least once being the guarantee.
    let before_stop = &sorted[..2];
    let again: Vec<i64> = sorted
        .iter()
        .copied()
        .filter(|id| ids.iter().filter(|x| *x == id).count() > 1)
        .collect();
    assert!(
        again.len() <= 1 && again.iter().all(|id| before_stop.contains(id)),
        "only an alert in flight when an instance was killed may come twice: {ids:?}"
    );
    assert!(ids.windows(2).all(|w| w[0] <= w[1]), "in order: {ids:?}");
    drop(b);
}

/// The alerts a webhook was sent: id and kind, in order of arrival.
pub(crate) type Received = Arc<Mutex<Vec<(i64, String)>>>;

/// A webhook on loopback that records the id and kind of every alert it is sent.
pub(crate) fn webhook() -> (SocketAddr, Received) {
    use axum::body::Bytes;
    let got: Received = Arc::default();
    let g = got.clone();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let app = axum::Router::new().route(
                "/hook",
                axum::routing::post(move |b: Bytes| {
                    let g = g.clone();
                    async move {
                        let v: serde_json::Value = serde_json::from_slice(&b).unwrap();
                        let kind = v["kind"].as_str().unwrap_or_default().to_string();
                        g.lock().unwrap().push((v["id"].as_i64().unwrap(), kind));
                        "ok"
                    }
                }),
            );
            let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            tx.send(l.local_addr().unwrap()).unwrap();
            axum::serve(l, app).await.unwrap();
        });
    });
    (rx.recv().unwrap(), got)
}

/// Rewrites the test's config file through `f`.
pub(crate) fn edit_config(kg: &Kg, f: impl FnOnce(String) -> String) {
    let path = kg.data.join("keygate.toml");
    let cfg = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, f(cfg)).unwrap();
}

/// Makes `n` approver keys with `keygate approver keygen` and lists the first `listed` of them
/// in `[approvals]`; returns the key files.
pub(crate) fn approver_keys(kg: &mut Kg, n: usize, listed: usize) -> Vec<std::path::PathBuf> {
    let mut paths = vec![];
    let mut publics = vec![];
    for i in 0..n {
        let path = kg.tmp.path().join(format!("approver{i}.key"));
        let out = kg.ok(
            &["approver", "keygen", "--out", path.to_str().unwrap()],
            None,
        );
        let public = out
            .lines()
            .last()
            .unwrap()
            .trim()
            .trim_matches('"')
            .to_string();
        assert_eq!(public.len(), 64, "{out}");
        paths.push(path);
        publics.push(format!("\"{public}\""));
    }
    let list = publics[..listed].join(", ");
    edit_config(kg, |c| {
        c.replace("approvers = []", &format!("approvers = [{list}]"))
    });
    paths
}

/// Issue 17's attack with a trade-only token: a buy of 1,000,000 SHIT at 5 USDT, a coin the
/// venue's book quotes near 0.001. `keygate init`'s defaults refuse it whether or not the
/// client's scope names the instrument; a normal BTC/USDT order from the same token goes through.
#[test]
fn init_defaults_refuse_a_buy_into_an_illiquid_book_far_above_the_market() {
    let s = setup("off");
    let mut kg = s.kg;
    let serve = Serve::start(&kg);
    let trader = bearer(&s.trader);
    let order = |q: &str| {
        http(
            serve.addr,
            "POST",
            &format!("/venues/binance-main/api/v3/order?{q}"),
            &[("Authorization", &trader)],
            b"",
        )
    };
    let btc = order("symbol=BTCUSDT&side=BUY&type=LIMIT&timeInForce=GTC&quantity=0.01&price=38000");
    assert_eq!(btc.status, 200, "{}", btc.body);
    assert_eq!(s.sim.orders().len(), 1);
    let shit = "symbol=SHITUSDT&side=BUY&type=LIMIT&timeInForce=GTC&quantity=1000000&price=5";
    // Not in the client's scope.
    let a = order(shit);
    assert_eq!(a.status, 403, "{}", a.body);
    assert!(a.body.contains("may not trade SHIT/USDT"), "{}", a.body);
    // In its scope: still refused (over 5% from the market, over the trade limit), never sent.
    kg.ok(
        &[
            "client",
            "instruments",
            "trader",
            "--instrument",
            "BTC/USDT",
            "--instrument",
            "SHIT/USDT",
        ],
        None,
    );
    let a = order(shit);
    assert_eq!(a.status, 403, "{}", a.body);
    assert_eq!(
        s.sim.orders().len(),
        1,
        "the refused order reached the venue"
    );
    let audit = kg.audit_tail_until("50", |t| t.contains("off_market"));
    assert!(audit.contains("off_market"), "{audit}");
}
