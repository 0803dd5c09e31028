//! Drop-in bots: unmodified client libraries (ccxt, python-binance, python-okx, installed from
//! PyPI by scripts/python-env) and hand-signed requests authenticate to `keygate serve` with a
//! native key as they would to the exchange, against the venue simulator. Every refusal comes
//! back in the venue's own error format and is checked never to reach the simulator.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use keygate_sim::{Sim, VenueKind};
use rust_decimal::Decimal;

use crate::gateway::{COLD, Serve, account, http, start_sim};
use crate::util::{Kg, assert_no_leak, canary, leak_forms, snapshot};

/// A withdrawal inside the limits, and one over the per-client cap (100,000 USD an hour).
const SMALL: &str = "100";
const BIG: &str = "150000";

/// A native key as `keygate token issue --native` printed it.
pub(crate) struct NativeKey {
    pub(crate) key: String,
    pub(crate) secret: String,
    pub(crate) passphrase: String,
}

pub(crate) struct Bots {
    pub(crate) kg: Kg,
    pub(crate) sim: Sim,
    pub(crate) sim_addr: SocketAddr,
    pub(crate) native: NativeKey,
    /// Every form of the venue credentials' secrets (what must never leak).
    pub(crate) venue_secrets: Vec<Vec<u8>>,
}

/// Reads `KEYGATE_API_KEY=…` lines.
fn parse_native(out: &str) -> NativeKey {
    let get = |name: &str| {
        out.lines()
            .find_map(|l| l.strip_prefix(&format!("{name}=")))
            .unwrap_or_else(|| panic!("no {name} in {out:?}"))
            .to_string()
    };
    NativeKey {
        key: get("KEYGATE_API_KEY"),
        secret: get("KEYGATE_API_SECRET"),
        passphrase: get("KEYGATE_API_PASSPHRASE"),
    }
}

/// A simulator with a Binance and an OKX account, a keygate with both as venues (public market
/// data open to unauthenticated requests, as ccxt sends it), a client `bot` that may read,
/// trade, cancel and withdraw to the cold wallet on both, and a native key for it.
pub(crate) fn setup() -> Bots {
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
            .replace("cooldown = \"24h\"", "cooldown = \"1s\"")
            // The detectors only alert here: these tests are about the limits' answer (a small
            // withdrawal then a big one to the same address would otherwise freeze the bot).
            .replace("response = \"hold\"", "response = \"alert\"")
            .replace("response = \"freeze-client\"", "response = \"alert\"");
        format!(
            "{cfg}\n[venues.binance-main]\nkind = \"binance\"\nbase_url = \"http://{sim_addr}\"\nreconcile_every = \"off\"\nanonymous_public = true\n\n[venues.okx-main]\nkind = \"okx\"\nbase_url = \"http://{sim_addr}\"\nreconcile_every = \"off\"\nanonymous_public = true\n"
        )
    });
    kg.withdraw_to_cold("bot-to-cold", "bot");
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
        "bot",
        &["binance-main", "okx-main"],
        &["read", "trade", "cancel", "withdraw"],
        &["BTC/USDT"],
    );
    kg.cold_wallet(COLD, &["binance-main", "okx-main"]);
    let native = parse_native(&kg.ok(
        &[
            "token",
            "issue",
            "bot",
            "--native",
            "--cidr",
            "127.0.0.1/32",
        ],
        None,
    ));
    let mut venue_secrets = vec![];
    for s in [&b_secret, &o_secret, &o_pass] {
        venue_secrets.extend(leak_forms(s));
    }
    Bots {
        kg,
        sim,
        sim_addr,
        native,
        venue_secrets,
    }
}

/// The virtual environment's Python: made by scripts/python-env (which scripts/test runs).
fn python() -> PathBuf {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let py = root.join("target/python-env/bin/python");
    assert!(
        py.exists(),
        "{} is missing: the bot tests drive ccxt, python-binance and python-okx from a virtual environment. Create it with scripts/python-env (scripts/test does), then run the tests again",
        py.display()
    );
    py
}

/// Runs tests/python/bots.py for one library; the credentials go in through the environment.
fn run_bot(lib: &str, venue: &str, serve: &Serve, key: &NativeKey) -> serde_json::Value {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let out = Command::new(python())
        .arg(root.join("tests/python/bots.py"))
        .arg(lib)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("KG_URL", format!("http://{}", serve.addr))
        .env("KG_VENUE", venue)
        .env("KG_API_KEY", &key.key)
        .env("KG_API_SECRET", &key.secret)
        .env("KG_API_PASSPHRASE", &key.passphrase)
        .env("KG_COLD", COLD)
        .env("KG_SMALL", SMALL)
        .env("KG_BIG", BIG)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{lib} failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let last = stdout.lines().last().unwrap_or_default();
    serde_json::from_str(last).unwrap_or_else(|e| panic!("{lib} printed no JSON ({e}): {stdout}"))
}

/// The value a step produced; fails with what the library raised otherwise.
fn ok<'a>(result: &'a serde_json::Value, step: &str) -> &'a serde_json::Value {
    let s = &result[step];
    assert!(
        s.get("ok").is_some(),
        "{} {step}: {}",
        result["library"],
        serde_json::to_string_pretty(s).unwrap()
    );
    &s["ok"]
}

#[test]
fn ccxt_python_binance_and_python_okx_work_through_keygate_unmodified() {
    let b = setup();
    let serve = Serve::start(&b.kg);
    let mut withdrawals = 0;
    let mut transcript = Vec::new();
    for (lib, venue) in [
        ("ccxt-binance", "binance-main"),
        ("python-binance", "binance-main"),
        ("ccxt-okx", "okx-main"),
        ("python-okx", "okx-main"),
    ] {
        let r = run_bot(lib, venue, &serve, &b.native);
        transcript.extend_from_slice(r.to_string().as_bytes());
        // Balance, an order placed and cancelled, a withdrawal inside the limits: all reached
        // the simulator, signed there with the venue's own key.
        let balance: Decimal = ok(&r, "balance").as_str().unwrap().parse().unwrap();
        assert!(balance > Decimal::ZERO, "{lib}: {r}");
        let order = ok(&r, "order").to_string();
        ok(&r, "cancel");
        ok(&r, "withdraw");
        withdrawals += 1;
        let ws = b.sim.withdrawals();
        assert_eq!(ws.len(), withdrawals, "{lib}: {ws:?}");
        assert_eq!(ws[withdrawals - 1].amount, Decimal::from(100));
        let orders = b.sim.orders();
        assert!(
            orders.iter().any(|o| order.contains(&o.id.to_string())),
            "{lib}: order {order} not among {orders:?}"
        );
        // Over the cap: the library reports the venue-style error, with keygate's reason and
        // decision id; nothing was forwarded.
        let big = &r["withdraw_big"];
        let text = big.to_string();
        assert!(text.contains("per-client-1h"), "{lib}: {text}");
        assert!(text.contains("keygate denied"), "{lib}: {text}");
        assert!(text.contains("(decision "), "{lib}: {text}");
        match lib {
            "python-okx" => assert_eq!(big["answer"]["code"], "50027", "{text}"),
            "python-binance" => {
                assert_eq!(big["error"], "BinanceAPIException", "{text}");
                assert!(text.contains("code=-4015"), "{text}");
            }
            _ => {
                let classes = big["classes"].as_array().unwrap();
                assert!(
                    classes.iter().any(|c| c == "ExchangeError"),
                    "{lib}: {text}"
                );
            }
        }
        assert_eq!(b.sim.withdrawals().len(), withdrawals);
    }
    assert!(
        b.sim
            .withdrawals()
            .iter()
            .all(|w| w.amount == Decimal::from(100))
    );
    // No venue secret, and not the bot's own, in anything keygate wrote or answered.
    let mut forms = b.venue_secrets.clone();
    forms.extend(leak_forms(&b.native.secret));
    forms.extend(leak_forms(&b.native.passphrase));
    assert_no_leak("serve's output", &serve.output(), &forms);
    assert_no_leak("the answers", &transcript, &forms);
    for (path, bytes) in snapshot(&b.kg.data) {
        assert_no_leak(&path.display().to_string(), &bytes, &forms);
    }
}

/// Hand-signed native requests, for the cases a library would never send.
pub(crate) mod sign {
    use super::NativeKey;

    pub(crate) fn now_ms() -> i64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64
    }

    /// `params` with `timestamp` and a Binance signature under `secret` appended.
    pub(crate) fn binance(params: &str, secret: &str, timestamp: i64) -> String {
        let payload = if params.is_empty() {
            format!("timestamp={timestamp}")
        } else {
            format!("{params}&timestamp={timestamp}")
        };
        let sig = keygate_venues::binance::signature(secret, &payload);
        format!("{payload}&signature={sig}")
    }

    /// OKX's four headers for one request.
    pub(crate) fn okx(
        key: &NativeKey,
        secret: &str,
        at_ms: i64,
        method: &str,
        path: &str,
        body: &str,
    ) -> Vec<(String, String)> {
        let ts = keygate_venues::okx::timestamp(at_ms);
        let sig = keygate_venues::okx::signature(secret, &ts, method, path, body);
        vec![
            ("OK-ACCESS-KEY".into(), key.key.clone()),
            ("OK-ACCESS-SIGN".into(), sig),
            ("OK-ACCESS-TIMESTAMP".into(), ts),
            ("OK-ACCESS-PASSPHRASE".into(), key.passphrase.clone()),
            ("Content-Type".into(), "application/json".into()),
        ]
    }
}

fn refs(h: &[(String, String)]) -> Vec<(&str, &str)> {
    h.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect()
}

#[test]
fn a_wrong_secret_a_stale_timestamp_or_a_changed_body_is_refused_in_the_venues_format() {
    let mut b = setup();
    let serve = Serve::start(&b.kg);
    let k = &b.native;
    let key_header = [("X-MBX-APIKEY", k.key.as_str())];
    let now = sign::now_ms();

    // Signed right: the account comes back from the simulator.
    let q = sign::binance("", &k.secret, now);
    let a = http(
        serve.addr,
        "GET",
        &format!("/venues/binance-main/api/v3/account?{q}"),
        &key_header,
        b"",
    );
    assert_eq!(a.status, 200, "{}", a.body);
    assert!(a.json()["balances"].is_array());

    let form = [
        ("X-MBX-APIKEY", k.key.as_str()),
        ("Content-Type", "application/x-www-form-urlencoded"),
    ];
    let order = "symbol=BTCUSDT&side=BUY&type=LIMIT&timeInForce=GTC&quantity=0.01&price=40000&newClientOrderId=n-1";
    let before = b.sim.requests();
    let cases: Vec<(String, u16, i64)> = vec![
        // Signed with another secret.
        (sign::binance(order, "not-the-secret", now), 400, -1022),
        // Too old for the default recvWindow (5 s), and from the future.
        (sign::binance(order, &k.secret, now - 10_000), 400, -1021),
        (sign::binance(order, &k.secret, now + 5_000), 400, -1021),
        // Changed after signing: ten times the quantity.
        (
            sign::binance(order, &k.secret, now).replace("quantity=0.01", "quantity=0.10"),
            400,
            -1022,
        ),
        // No signature at all.
        (format!("{order}&timestamp={now}"), 401, -2015),
    ];
    for (body, status, code) in cases {
        let a = http(
            serve.addr,
            "POST",
            "/venues/binance-main/api/v3/order",
            &form,
            body.as_bytes(),
        );
        assert_eq!(a.status, status, "{body}: {}", a.body);
        assert_eq!(a.json()["code"], code, "{}", a.body);
        assert!(a.json()["msg"].as_str().unwrap().starts_with("keygate "));
    }
    assert_eq!(
        b.sim.requests(),
        before,
        "a refused request reached the venue"
    );
    assert!(b.sim.orders().is_empty());

    // OKX: the same, plus the passphrase and demo trading.
    let body = r#"{"instId":"BTC-USDT","tdMode":"cash","side":"buy","ordType":"limit","sz":"0.01","px":"40000","clOrdId":"n1"}"#;
    let path = "/api/v5/trade/order";
    let url = format!("/venues/okx-main{path}");
    let good = sign::okx(k, &k.secret, now, "POST", path, body);
    let with = |h: &[(String, String)], name: &str, value: &str| {
        let mut h = h.to_vec();
        h.retain(|(n, _)| n != name);
        h.push((name.to_string(), value.to_string()));
        h
    };
    type Headers = Vec<(String, String)>;
    let okx_cases: Vec<(Headers, String, &str)> = vec![
        (
            sign::okx(k, "not-the-secret", now, "POST", path, body),
            body.to_string(),
            "50113",
        ),
        (
            sign::okx(k, &k.secret, now - 31_000, "POST", path, body),
            body.to_string(),
            "50102",
        ),
        (good.clone(), body.replace("0.01", "0.10"), "50113"),
        (
            with(&good, "OK-ACCESS-PASSPHRASE", "wrong"),
            body.to_string(),
            "50105",
        ),
        (
            with(&good, "x-simulated-trading", "1"),
            body.to_string(),
            "50101",
        ),
    ];
    let before = b.sim.requests();
    for (headers, body, code) in okx_cases {
        let a = http(serve.addr, "POST", &url, &refs(&headers), body.as_bytes());
        assert_eq!(a.status, 401, "{}", a.body);
        assert_eq!(a.json()["code"], code, "{}", a.body);
        assert_eq!(a.json()["data"], serde_json::json!([]));
    }
    assert_eq!(
        b.sim.requests(),
        before,
        "a refused request reached the venue"
    );
    // Signed right, it goes through.
    let a = http(serve.addr, "POST", &url, &refs(&good), body.as_bytes());
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.json()["code"], "0", "{}", a.body);

    // The bot's key is a token: revoked, it stops at once, in the venue's words.
    let key = k.key.clone();
    let secret = k.secret.clone();
    b.kg.ok(&["token", "revoke", &key], None);
    let q = sign::binance("", &secret, sign::now_ms());
    let a = http(
        serve.addr,
        "GET",
        &format!("/venues/binance-main/api/v3/account?{q}"),
        &[("X-MBX-APIKEY", key.as_str())],
        b"",
    );
    assert_eq!(a.status, 401, "{}", a.body);
    assert_eq!(a.json()["code"], -2015);
    assert!(a.body.contains("revoked"), "{}", a.body);
    let refused = b.kg.audit_tail_until("100", |t| {
        t.contains("bad_signature") && t.contains("stale") && t.contains("revoked")
    });
    assert!(refused.contains("bad_signature"), "{refused}");
    assert!(refused.contains("stale"), "{refused}");
    assert!(refused.contains("revoked"), "{refused}");
}

#[test]
fn a_signature_is_good_for_one_request_and_a_signed_endpoint_needs_one() {
    let b = setup();
    let serve = Serve::start(&b.kg);
    let k = &b.native;
    let key_header = [("X-MBX-APIKEY", k.key.as_str())];
    let now = sign::now_ms();
    let q = sign::binance("symbol=BTCUSDT", &k.secret, now);
    let first = http(
        serve.addr,
        "GET",
        &format!("/venues/binance-main/api/v3/openOrders?{q}"),
        &key_header,
        b"",
    );
    assert_eq!(first.status, 200, "{}", first.body);
    let before = b.sim.requests();
    // The same signed parameters again: as sent, with the hex in upper case, and turned into
    // a cancel of every open order (Binance's signature covers the parameters only).
    let upper = match q.rsplit_once("signature=") {
        Some((head, sig)) => format!("{head}signature={}", sig.to_uppercase()),
        None => panic!("no signature in {q}"),
    };
    for (method, query) in [
        ("GET", q.as_str()),
        ("GET", upper.as_str()),
        ("DELETE", q.as_str()),
    ] {
        let a = http(
            serve.addr,
            method,
            &format!("/venues/binance-main/api/v3/openOrders?{query}"),
            &key_header,
            b"",
        );
        assert_eq!(a.status, 400, "{method} {query}: {}", a.body);
        assert_eq!(a.json()["code"], -1021, "{}", a.body);
        assert!(a.body.contains("used before"), "{}", a.body);
    }
    // A signed endpoint with no credentials, or with the key but no signature.
    for headers in [&[][..], &key_header[..]] {
        let a = http(
            serve.addr,
            "GET",
            &format!("/venues/binance-main/api/v3/account?timestamp={now}"),
            headers,
            b"",
        );
        assert_eq!(a.status, 401, "{}", a.body);
    }
    assert_eq!(
        b.sim.requests(),
        before,
        "a refused request reached the venue"
    );
    // OKX: the same signed request twice.
    let path = "/api/v5/account/balance";
    let good = sign::okx(k, &k.secret, now, "GET", path, "");
    let url = format!("/venues/okx-main{path}");
    let a = http(serve.addr, "GET", &url, &refs(&good), b"");
    assert_eq!(a.status, 200, "{}", a.body);
    let a = http(serve.addr, "GET", &url, &refs(&good), b"");
    assert_eq!(a.status, 401, "{}", a.body);
    assert_eq!(a.json()["code"], "50102", "{}", a.body);
}

#[test]
fn requests_without_credentials_are_limited_per_address_and_refused_in_the_venues_format() {
    let b = setup();
    let cfg_path = b.kg.data.join("keygate.toml");
    let cfg = std::fs::read_to_string(&cfg_path).unwrap().replace(
        "anonymous_public = true\n",
        "anonymous_public = true\nanonymous_rate = 2\n",
    );
    std::fs::write(&cfg_path, cfg).unwrap();
    let serve = Serve::start(&b.kg);
    for (venue, path, code) in [
        (
            "binance-main",
            "/api/v3/exchangeInfo",
            serde_json::json!(-1003),
        ),
        (
            "okx-main",
            "/api/v5/public/instruments?instType=SPOT",
            serde_json::json!("50011"),
        ),
    ] {
        let url = format!("/venues/{venue}{path}");
        let before = b.sim.requests();
        // Within one second only two go through; the next is answered by keygate, not the venue.
        let mut sent = 0u64;
        let refused = loop {
            let a = http(serve.addr, "GET", &url, &[], b"");
            sent += 1;
            if a.status == 429 {
                break a;
            }
            assert_eq!(a.status, 200, "{}", a.body);
            assert!(sent < 50, "never limited");
        };
        assert_eq!(refused.json()["code"], code, "{}", refused.body);
        assert!(
            refused.body.contains("without credentials"),
            "{}",
            refused.body
        );
        assert_eq!(
            b.sim.requests() - before,
            sent - 1,
            "the refused request did not reach the venue"
        );
        // The next second, requests go through again.
        std::thread::sleep(std::time::Duration::from_millis(1100));
        let a = http(serve.addr, "GET", &url, &[], b"");
        assert_eq!(a.status, 200, "{}", a.body);
    }
}
