//! Drives the simulator over real HTTP on 127.0.0.1 with a small raw HTTP/1.1
//! client, so the query string and body arrive exactly as written here. The
//! signing below is written again from the venues' docs, independently of the
//! simulator's own verification code.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test crate: a failed unwrap is a failed test

use std::net::SocketAddr;
use std::str::FromStr;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{Hmac, KeyInit, Mac};
use keygate_sim::{OrderStatus, Sim, SimConfig, SimSnapshot, VenueKind};
use rust_decimal::Decimal;
use serde_json::{Value, json};
use sha2::Sha256;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const BN_KEY: &str = "bn-key";
const BN_SECRET: &str = "bn-secret-0123456789";
const BN_READONLY_KEY: &str = "bn-readonly";
const BN_READONLY_SECRET: &str = "bn-readonly-secret";
const OKX_KEY: &str = "okx-key";
const OKX_SECRET: &str = "okx-secret-ABCDEF";
const OKX_PASS: &str = "okx-pass";
const OKX_READONLY_KEY: &str = "okx-readonly";
const OKX_READONLY_SECRET: &str = "okx-readonly-secret";
const OKX_READONLY_PASS: &str = "okx-readonly-pass";

fn config() -> SimConfig {
    SimConfig::from_json(
        &json!({"accounts": [
            {"venue": "binance", "api_key": BN_KEY, "secret": BN_SECRET,
             "balances": {"BTC": "1", "USDT": "1000.5"},
             "restrictions": {"enable_withdrawals": true, "ip_restrict": true, "ip": ["127.0.0.1"]}},
            {"venue": "binance", "api_key": BN_READONLY_KEY, "secret": BN_READONLY_SECRET,
             "balances": {"BTC": "3"},
             "restrictions": {"enable_spot_and_margin_trading": false}},
            {"venue": "okx", "api_key": OKX_KEY, "secret": OKX_SECRET, "passphrase": OKX_PASS,
             "balances": {"BTC": "2", "USDT": "500"},
             "restrictions": {"enable_withdrawals": true, "ip": ["127.0.0.1", "::1"]}},
            {"venue": "okx", "api_key": OKX_READONLY_KEY, "secret": OKX_READONLY_SECRET,
             "passphrase": OKX_READONLY_PASS, "balances": {"USDT": "50"},
             "restrictions": {"enable_spot_and_margin_trading": false}}
        ]})
        .to_string(),
    )
    .unwrap()
}

async fn start() -> (Sim, SocketAddr) {
    let sim = Sim::new(config()).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(keygate_sim::serve(listener, sim.clone()));
    (sim, addr)
}

fn dec(text: &str) -> Decimal {
    Decimal::from_str(text).unwrap()
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// A reply: status code and JSON body.
#[derive(Debug)]
struct Reply {
    status: u16,
    body: Value,
}

/// One HTTP/1.1 request on a fresh connection, written byte for byte.
async fn send(
    addr: SocketAddr,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Reply {
    let mut head = format!(
        "{method} {target} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    send_raw(addr, head.as_bytes(), body).await
}

async fn send_raw(addr: SocketAddr, head: &[u8], body: &[u8]) -> Reply {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(head).await.unwrap();
    stream.write_all(body).await.unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await.unwrap();
    let text = String::from_utf8(raw).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    assert!(
        !head
            .to_ascii_lowercase()
            .contains("transfer-encoding: chunked"),
        "{head}"
    );
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    let body = serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body:?}"));
    Reply { status, body }
}

// ---- Binance signing, from the docs: hex HMAC-SHA256(secret, query + body) ----

fn binance_sign(secret: &str, total_params: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(total_params.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

/// `params&timestamp=NOW&signature=SIG`, for a query string or a body alone.
fn binance_signed(secret: &str, params: &str) -> String {
    let joined = if params.is_empty() {
        format!("timestamp={}", now_ms())
    } else {
        format!("{params}&timestamp={}", now_ms())
    };
    let signature = binance_sign(secret, &joined);
    format!("{joined}&signature={signature}")
}

/// A signed Binance call with every parameter in the query string.
async fn binance_query(
    addr: SocketAddr,
    method: &str,
    path: &str,
    key: &str,
    secret: &str,
    params: &str,
) -> Reply {
    let query = binance_signed(secret, params);
    send(
        addr,
        method,
        &format!("{path}?{query}"),
        &[("X-MBX-APIKEY", key)],
        b"",
    )
    .await
}

/// A signed Binance call with every parameter in a form body.
async fn binance_body(
    addr: SocketAddr,
    method: &str,
    path: &str,
    key: &str,
    secret: &str,
    params: &str,
) -> Reply {
    let body = binance_signed(secret, params);
    send(
        addr,
        method,
        path,
        &[
            ("X-MBX-APIKEY", key),
            ("Content-Type", "application/x-www-form-urlencoded"),
        ],
        body.as_bytes(),
    )
    .await
}

fn assert_binance_error(reply: &Reply, status: u16, code: i64) {
    assert_eq!(reply.status, status, "{reply:?}");
    assert_eq!(reply.body["code"], code, "{reply:?}");
    assert!(reply.body["msg"].as_str().is_some_and(|m| !m.is_empty()));
}

// ---- OKX signing, from the docs: base64 HMAC-SHA256(secret, ts + METHOD + path + body) ----

fn okx_timestamp(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap()
        .format("%Y-%m-%dT%H:%M:%S%.3fZ")
        .to_string()
}

fn okx_sign(secret: &str, timestamp: &str, method: &str, request_path: &str, body: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("{timestamp}{method}{request_path}{body}").as_bytes());
    BASE64.encode(mac.finalize().into_bytes())
}

/// Everything about one OKX request that a test may want to get wrong.
struct OkxCall<'a> {
    method: &'a str,
    request_path: &'a str,
    body: &'a str,
    key: &'a str,
    secret: &'a str,
    passphrase: &'a str,
    timestamp: String,
}

impl<'a> OkxCall<'a> {
    fn new(method: &'a str, request_path: &'a str, body: &'a str) -> OkxCall<'a> {
        OkxCall {
            method,
            request_path,
            body,
            key: OKX_KEY,
            secret: OKX_SECRET,
            passphrase: OKX_PASS,
            timestamp: okx_timestamp(now_ms()),
        }
    }

    fn sign(&self) -> String {
        okx_sign(
            self.secret,
            &self.timestamp,
            self.method,
            self.request_path,
            self.body,
        )
    }

    async fn send_with(&self, sign: &str, body: &str, addr: SocketAddr) -> Reply {
        send(
            addr,
            self.method,
            self.request_path,
            &[
                ("OK-ACCESS-KEY", self.key),
                ("OK-ACCESS-SIGN", sign),
                ("OK-ACCESS-TIMESTAMP", &self.timestamp),
                ("OK-ACCESS-PASSPHRASE", self.passphrase),
                ("Content-Type", "application/json"),
            ],
            body.as_bytes(),
        )
        .await
    }

    async fn send(&self, addr: SocketAddr) -> Reply {
        self.send_with(&self.sign(), self.body, addr).await
    }
}

async fn okx_get(addr: SocketAddr, request_path: &str) -> Reply {
    OkxCall::new("GET", request_path, "").send(addr).await
}

async fn okx_post(addr: SocketAddr, path: &str, body: &Value) -> Reply {
    OkxCall::new("POST", path, &body.to_string())
        .send(addr)
        .await
}

fn assert_okx_ok(reply: &Reply) {
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(reply.body["code"], "0", "{reply:?}");
}

fn assert_okx_error(reply: &Reply, status: u16, code: &str) {
    assert_eq!(reply.status, status, "{reply:?}");
    assert_eq!(reply.body["code"], code, "{reply:?}");
    assert_eq!(reply.body["data"], json!([]), "{reply:?}");
}

// ---------------------------------- Binance ----------------------------------

#[tokio::test]
async fn binance_public_endpoints() {
    let (_sim, addr) = start().await;
    let before = now_ms();
    let reply = send(addr, "GET", "/api/v3/time", &[], b"").await;
    assert_eq!(reply.status, 200);
    let server = reply.body["serverTime"].as_i64().unwrap();
    assert!((before - 1000..=now_ms() + 1000).contains(&server));
    let reply = send(addr, "GET", "/api/v3/ping", &[], b"").await;
    assert_eq!((reply.status, reply.body), (200, json!({})));
}

#[tokio::test]
async fn binance_good_signature_is_accepted() {
    let (_sim, addr) = start().await;
    let reply = binance_query(addr, "GET", "/api/v3/account", BN_KEY, BN_SECRET, "").await;
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(reply.body["canWithdraw"], true);
    assert_eq!(reply.body["accountType"], "SPOT");
    assert_eq!(
        reply.body["balances"],
        json!([
            {"asset": "BTC", "free": "1.00000000", "locked": "0.00000000"},
            {"asset": "USDT", "free": "1000.50000000", "locked": "0.00000000"}
        ])
    );
    // omitZeroBalances (which keygate sends) hides assets at zero.
    let reply = binance_body(
        addr,
        "POST",
        "/sapi/v1/capital/withdraw/apply",
        BN_KEY,
        BN_SECRET,
        "coin=BTC&address=bc1qsim&amount=1",
    )
    .await;
    assert_eq!(reply.status, 200, "{reply:?}");
    let reply = binance_query(
        addr,
        "GET",
        "/api/v3/account",
        BN_KEY,
        BN_SECRET,
        "omitZeroBalances=true",
    )
    .await;
    assert_eq!(reply.body["balances"][0]["asset"], "USDT");
    assert_eq!(reply.body["balances"].as_array().unwrap().len(), 1);
    // With recvWindow, and with an upper-case signature (HMAC hex is not case
    // sensitive per the docs).
    let joined = format!("recvWindow=5000&timestamp={}", now_ms());
    let sig = binance_sign(BN_SECRET, &joined).to_uppercase();
    let reply = send(
        addr,
        "GET",
        &format!("/api/v3/account?{joined}&signature={sig}"),
        &[("X-MBX-APIKEY", BN_KEY)],
        b"",
    )
    .await;
    assert_eq!(reply.status, 200, "{reply:?}");
}

#[tokio::test]
async fn binance_wrong_secret_is_rejected() {
    let (sim, addr) = start().await;
    let reply = binance_query(
        addr,
        "GET",
        "/api/v3/account",
        BN_KEY,
        BN_READONLY_SECRET,
        "",
    )
    .await;
    assert_binance_error(&reply, 400, -1022);
    assert_eq!(
        reply.body["msg"],
        "Signature for this request is not valid."
    );
    let reply = binance_body(
        addr,
        "POST",
        "/sapi/v1/capital/withdraw/apply",
        BN_KEY,
        "not-the-secret",
        "coin=BTC&address=bc1qsim&amount=0.5",
    )
    .await;
    assert_binance_error(&reply, 400, -1022);
    assert_eq!(sim.balance(BN_KEY, "BTC"), Some(dec("1")));
    assert!(sim.withdrawals().is_empty());
}

#[tokio::test]
async fn binance_missing_unknown_and_wrong_venue_keys() {
    let (_sim, addr) = start().await;
    let query = binance_signed(BN_SECRET, "");
    let target = format!("/api/v3/account?{query}");
    let reply = send(addr, "GET", &target, &[], b"").await;
    assert_binance_error(&reply, 401, -2014);
    let reply = send(addr, "GET", &target, &[("X-MBX-APIKEY", "who")], b"").await;
    assert_binance_error(&reply, 401, -2015);
    let reply = send(addr, "GET", &target, &[("X-MBX-APIKEY", OKX_KEY)], b"").await;
    assert_binance_error(&reply, 401, -2015);
    // No signature, no timestamp.
    let reply = send(
        addr,
        "GET",
        &format!("/api/v3/account?timestamp={}", now_ms()),
        &[("X-MBX-APIKEY", BN_KEY)],
        b"",
    )
    .await;
    assert_binance_error(&reply, 400, -1102);
    assert_eq!(
        reply.body["msg"],
        "Mandatory parameter 'signature' was not sent, was empty/null, or malformed."
    );
    let sig = binance_sign(BN_SECRET, "recvWindow=5000");
    let reply = send(
        addr,
        "GET",
        &format!("/api/v3/account?recvWindow=5000&signature={sig}"),
        &[("X-MBX-APIKEY", BN_KEY)],
        b"",
    )
    .await;
    assert_binance_error(&reply, 400, -1102);
    assert!(reply.body["msg"].as_str().unwrap().contains("'timestamp'"));
}

#[tokio::test]
async fn binance_stale_and_future_timestamps_are_rejected() {
    let (_sim, addr) = start().await;
    let call = |params: String| {
        let sig = binance_sign(BN_SECRET, &params);
        async move {
            send(
                addr,
                "GET",
                &format!("/api/v3/account?{params}&signature={sig}"),
                &[("X-MBX-APIKEY", BN_KEY)],
                b"",
            )
            .await
        }
    };
    let stale = call(format!("timestamp={}", now_ms() - 6_000)).await;
    assert_binance_error(&stale, 400, -1021);
    assert_eq!(
        stale.body["msg"],
        "Timestamp for this request is outside of the recvWindow."
    );
    let future = call(format!("timestamp={}", now_ms() + 5_000)).await;
    assert_binance_error(&future, 400, -1021);
    // A wider window admits the older request.
    let widened = call(format!("recvWindow=10000&timestamp={}", now_ms() - 6_000)).await;
    assert_eq!(widened.status, 200, "{widened:?}");
    let too_wide = call(format!("recvWindow=60001&timestamp={}", now_ms())).await;
    assert_binance_error(&too_wide, 400, -1131);
}

#[tokio::test]
async fn binance_body_altered_after_signing_is_rejected() {
    let (sim, addr) = start().await;
    let body = binance_signed(
        BN_SECRET,
        "symbol=BTCUSDT&side=BUY&type=LIMIT&timeInForce=GTC&quantity=0.01&price=30000",
    );
    let altered = body.replace("quantity=0.01", "quantity=10");
    assert_ne!(body, altered);
    let reply = send(
        addr,
        "POST",
        "/api/v3/order",
        &[("X-MBX-APIKEY", BN_KEY)],
        altered.as_bytes(),
    )
    .await;
    assert_binance_error(&reply, 400, -1022);
    // A parameter added to the query after signing the body is also refused.
    let reply = send(
        addr,
        "POST",
        "/api/v3/order?newClientOrderId=sneaky",
        &[("X-MBX-APIKEY", BN_KEY)],
        body.as_bytes(),
    )
    .await;
    assert_binance_error(&reply, 400, -1022);
    assert!(sim.orders().is_empty());
    // The unaltered body goes through.
    let reply = send(
        addr,
        "POST",
        "/api/v3/order",
        &[("X-MBX-APIKEY", BN_KEY)],
        body.as_bytes(),
    )
    .await;
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(sim.orders().len(), 1);
}

#[tokio::test]
async fn binance_mixed_query_and_body_concatenate_without_ampersand() {
    let (sim, addr) = start().await;
    let query = "symbol=BTCUSDT&side=SELL&type=LIMIT&timeInForce=GTC";
    let body_params = format!("quantity=0.5&price=45000&timestamp={}", now_ms());
    let send_mixed = |signature: String| {
        let body = format!("{body_params}&signature={signature}");
        async move {
            send(
                addr,
                "POST",
                &format!("/api/v3/order?{query}"),
                &[("X-MBX-APIKEY", BN_KEY)],
                body.as_bytes(),
            )
            .await
        }
    };
    // The common mistake: joining query and body with '&'.
    let wrong = send_mixed(binance_sign(BN_SECRET, &format!("{query}&{body_params}"))).await;
    assert_binance_error(&wrong, 400, -1022);
    let right = send_mixed(binance_sign(BN_SECRET, &format!("{query}{body_params}"))).await;
    assert_eq!(right.status, 200, "{right:?}");
    assert_eq!(right.body["symbol"], "BTCUSDT");
    assert_eq!(right.body["side"], "SELL");
    assert_eq!(right.body["origQty"], "0.50000000");
    assert_eq!(right.body["price"], "45000.00000000");
    let orders = sim.orders();
    assert_eq!(orders.len(), 1);
    assert_eq!(orders[0].quantity, dec("0.5"));
}

#[tokio::test]
async fn binance_order_place_list_cancel() {
    let (sim, addr) = start().await;
    // 0.02 BTC at 25,000.1 rests below the book's asks, locking 500.002 of the 1,000.5 USDT.
    let order = "symbol=BTCUSDT&side=BUY&type=LIMIT&timeInForce=GTC&quantity=0.02&price=25000.1&newClientOrderId=bot-1";
    let placed = binance_body(addr, "POST", "/api/v3/order", BN_KEY, BN_SECRET, order).await;
    assert_eq!(placed.status, 200, "{placed:?}");
    assert_eq!(placed.body["status"], "NEW");
    assert_eq!(placed.body["clientOrderId"], "bot-1");
    assert_eq!(placed.body["orderListId"], -1);
    assert_eq!(placed.body["executedQty"], "0.00000000");
    assert_eq!(placed.body["fills"], json!([]));
    let order_id = placed.body["orderId"].as_u64().unwrap();
    assert_eq!(sim.locked(BN_KEY, "USDT"), Some(dec("500.002")));
    assert_eq!(sim.balance(BN_KEY, "USDT"), Some(dec("1000.5")));

    let duplicate = binance_body(addr, "POST", "/api/v3/order", BN_KEY, BN_SECRET, order).await;
    assert_binance_error(&duplicate, 400, -2010);
    assert_eq!(duplicate.body["msg"], "Duplicate order sent.");

    let market = binance_body(
        addr,
        "POST",
        "/api/v3/order",
        BN_KEY,
        BN_SECRET,
        "symbol=BTCUSDT&side=SELL&type=MARKET&quantity=0.1",
    )
    .await;
    assert_eq!(market.status, 200, "{market:?}");
    assert_eq!(market.body["status"], "FILLED");
    assert_eq!(market.body["executedQty"], "0.10000000");
    // Sold at the best bid of the default book.
    assert_eq!(market.body["cummulativeQuoteQty"], "3690.00000000");
    assert_eq!(market.body["fills"][0]["price"], "36900.00000000");
    assert_eq!(market.body["fills"][0]["commissionAsset"], "USDT");
    assert!(
        market.body["clientOrderId"]
            .as_str()
            .is_some_and(|c| !c.is_empty())
    );

    let bad = binance_body(
        addr,
        "POST",
        "/api/v3/order",
        BN_KEY,
        BN_SECRET,
        "symbol=BTCUSDT&side=BUY&type=LIMIT&timeInForce=GTC&quantity=1",
    )
    .await;
    assert_binance_error(&bad, 400, -1102);
    assert!(bad.body["msg"].as_str().unwrap().contains("'price'"));

    let open = binance_query(
        addr,
        "GET",
        "/api/v3/openOrders",
        BN_KEY,
        BN_SECRET,
        "symbol=BTCUSDT",
    )
    .await;
    assert_eq!(open.status, 200, "{open:?}");
    let open = open.body.as_array().unwrap().clone();
    assert_eq!(open.len(), 1);
    assert_eq!(open[0]["orderId"], order_id);
    assert_eq!(open[0]["price"], "25000.10000000");

    let canceled = binance_query(
        addr,
        "DELETE",
        "/api/v3/order",
        BN_KEY,
        BN_SECRET,
        "symbol=BTCUSDT&origClientOrderId=bot-1",
    )
    .await;
    assert_eq!(canceled.status, 200, "{canceled:?}");
    assert_eq!(canceled.body["status"], "CANCELED");
    assert_eq!(canceled.body["orderId"], order_id);
    assert_eq!(canceled.body["origClientOrderId"], "bot-1");

    let again = binance_query(
        addr,
        "DELETE",
        "/api/v3/order",
        BN_KEY,
        BN_SECRET,
        &format!("symbol=BTCUSDT&orderId={order_id}"),
    )
    .await;
    assert_binance_error(&again, 400, -2011);
    assert_eq!(again.body["msg"], "Unknown order sent.");

    let open = binance_query(addr, "GET", "/api/v3/openOrders", BN_KEY, BN_SECRET, "").await;
    assert_eq!(open.body, json!([]));

    let orders = sim.orders();
    assert_eq!(orders.len(), 2);
    assert_eq!(orders[0].status, OrderStatus::Canceled);
    assert_eq!(orders[1].status, OrderStatus::Filled);
    assert!(orders.iter().all(|o| o.venue == VenueKind::Binance));
    // The market sell moved both balances; the cancel unlocked the limit buy's USDT.
    assert_eq!(sim.balance(BN_KEY, "BTC"), Some(dec("0.9")));
    assert_eq!(sim.balance(BN_KEY, "USDT"), Some(dec("4690.5")));
    assert_eq!(sim.locked(BN_KEY, "USDT"), Some(Decimal::ZERO));

    // A key without trading permission cannot place orders.
    let refused = binance_body(
        addr,
        "POST",
        "/api/v3/order",
        BN_READONLY_KEY,
        BN_READONLY_SECRET,
        "symbol=BTCUSDT&side=SELL&type=MARKET&quantity=0.1",
    )
    .await;
    assert_binance_error(&refused, 401, -2015);
    assert_eq!(sim.orders().len(), 2);
}

#[tokio::test]
async fn binance_withdrawal_lowers_balance_and_appears_in_history() {
    let (sim, addr) = start().await;
    let before = now_ms();
    let reply = binance_body(
        addr,
        "POST",
        "/sapi/v1/capital/withdraw/apply",
        BN_KEY,
        BN_SECRET,
        "coin=BTC&network=BTC&address=bc1qsimaddress&amount=0.25&withdrawOrderId=wd-1",
    )
    .await;
    assert_eq!(reply.status, 200, "{reply:?}");
    let id = reply.body["id"].as_str().unwrap().to_string();
    assert_eq!(sim.balance(BN_KEY, "BTC"), Some(dec("0.75")));

    let account = binance_query(addr, "GET", "/api/v3/account", BN_KEY, BN_SECRET, "").await;
    assert_eq!(account.body["balances"][0]["free"], "0.75000000");

    // More than is left: refused, nothing moves.
    let reply = binance_body(
        addr,
        "POST",
        "/sapi/v1/capital/withdraw/apply",
        BN_KEY,
        BN_SECRET,
        "coin=BTC&address=bc1qsimaddress&amount=0.75000001",
    )
    .await;
    assert_binance_error(&reply, 400, -2010);
    assert_eq!(
        reply.body["msg"],
        "Account has insufficient balance for requested action."
    );
    assert_eq!(sim.balance(BN_KEY, "BTC"), Some(dec("0.75")));

    // A second, smaller one; history is newest first.
    let second = binance_body(
        addr,
        "POST",
        "/sapi/v1/capital/withdraw/apply",
        BN_KEY,
        BN_SECRET,
        "coin=USDT&address=TSimAddress&amount=0.5",
    )
    .await;
    assert_eq!(second.status, 200, "{second:?}");
    assert_eq!(sim.balance(BN_KEY, "USDT"), Some(dec("1000")));

    let history = binance_query(
        addr,
        "GET",
        "/sapi/v1/capital/withdraw/history",
        BN_KEY,
        BN_SECRET,
        "",
    )
    .await;
    assert_eq!(history.status, 200, "{history:?}");
    let items = history.body.as_array().unwrap();
    assert_eq!(items.len(), 2);
    assert_eq!(items[0]["coin"], "USDT");
    assert!(items[0].get("withdrawOrderId").is_none());
    let first = &items[1];
    assert_eq!(first["id"], id.as_str());
    assert_eq!(first["amount"], "0.25000000");
    assert_eq!(first["coin"], "BTC");
    assert_eq!(first["network"], "BTC");
    assert_eq!(first["address"], "bc1qsimaddress");
    assert_eq!(first["status"], 6);
    assert_eq!(first["withdrawOrderId"], "wd-1");
    let apply_time = first["applyTime"].as_str().unwrap();
    assert_eq!(
        apply_time.len(),
        "2024-01-01 00:00:00".len(),
        "{apply_time}"
    );

    let by_client = binance_query(
        addr,
        "GET",
        "/sapi/v1/capital/withdraw/history",
        BN_KEY,
        BN_SECRET,
        "withdrawOrderId=wd-1",
    )
    .await;
    assert_eq!(by_client.body.as_array().unwrap().len(), 1);
    let none = binance_query(
        addr,
        "GET",
        "/sapi/v1/capital/withdraw/history",
        BN_KEY,
        BN_SECRET,
        &format!("coin=BTC&startTime={}", now_ms() + 60_000),
    )
    .await;
    assert_eq!(none.body, json!([]));

    let recorded = sim.withdrawals();
    assert_eq!(recorded.len(), 2);
    assert_eq!(recorded[0].id, id);
    assert_eq!(recorded[0].amount, dec("0.25"));
    assert_eq!(recorded[0].client_id.as_deref(), Some("wd-1"));
    assert!(recorded[0].time_ms >= before);
}

#[tokio::test]
async fn binance_withdrawals_need_the_permission() {
    let (sim, addr) = start().await;
    let reply = binance_body(
        addr,
        "POST",
        "/sapi/v1/capital/withdraw/apply",
        BN_READONLY_KEY,
        BN_READONLY_SECRET,
        "coin=BTC&address=bc1qsim&amount=1",
    )
    .await;
    assert_binance_error(&reply, 401, -2015);
    assert_eq!(sim.balance(BN_READONLY_KEY, "BTC"), Some(dec("3")));
    assert!(sim.withdrawals().is_empty());

    let restrictions = binance_query(
        addr,
        "GET",
        "/sapi/v1/account/apiRestrictions",
        BN_READONLY_KEY,
        BN_READONLY_SECRET,
        "",
    )
    .await;
    assert_eq!(restrictions.status, 200, "{restrictions:?}");
    assert_eq!(restrictions.body["enableWithdrawals"], false);
    assert_eq!(restrictions.body["enableSpotAndMarginTrading"], false);
    assert_eq!(restrictions.body["enableReading"], true);
    assert_eq!(restrictions.body["ipRestrict"], false);

    let restrictions = binance_query(
        addr,
        "GET",
        "/sapi/v1/account/apiRestrictions",
        BN_KEY,
        BN_SECRET,
        "",
    )
    .await;
    assert_eq!(restrictions.body["enableWithdrawals"], true);
    assert_eq!(restrictions.body["ipRestrict"], true);
    assert_eq!(restrictions.body["enableFixApiTrade"], false);
    assert!(restrictions.body["createTime"].as_i64().unwrap() > 0);
}

// ------------------------------------ OKX ------------------------------------

#[tokio::test]
async fn okx_public_time() {
    let (_sim, addr) = start().await;
    let reply = send(addr, "GET", "/api/v5/public/time", &[], b"").await;
    assert_okx_ok(&reply);
    let ts: i64 = reply.body["data"][0]["ts"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((ts - now_ms()).abs() < 5_000);
}

#[tokio::test]
async fn okx_good_signature_is_accepted() {
    let (_sim, addr) = start().await;
    let reply = okx_get(addr, "/api/v5/account/balance?ccy=BTC").await;
    assert_okx_ok(&reply);
    let details = reply.body["data"][0]["details"].as_array().unwrap();
    assert_eq!(details.len(), 1);
    assert_eq!(details[0]["ccy"], "BTC");
    assert_eq!(details[0]["availBal"], "2");
    assert_eq!(details[0]["frozenBal"], "0");
    assert_eq!(reply.body["data"][0]["totalEq"], "500");

    let all = okx_get(addr, "/api/v5/account/balance").await;
    assert_okx_ok(&all);
    assert_eq!(all.body["data"][0]["details"].as_array().unwrap().len(), 2);

    let config = okx_get(addr, "/api/v5/account/config").await;
    assert_okx_ok(&config);
    assert_eq!(config.body["data"][0]["perm"], "read_only,trade,withdraw");
    assert_eq!(config.body["data"][0]["ip"], "127.0.0.1,::1");
    assert_eq!(config.body["data"][0]["label"], "sim");
}

#[tokio::test]
async fn okx_wrong_secret_passphrase_and_key_are_rejected() {
    let (_sim, addr) = start().await;
    let path = "/api/v5/account/balance";
    let mut call = OkxCall::new("GET", path, "");
    call.secret = "not-the-secret";
    let reply = call.send(addr).await;
    assert_okx_error(&reply, 401, "50113");

    let mut call = OkxCall::new("GET", path, "");
    call.passphrase = "wrong";
    assert_okx_error(&call.send(addr).await, 401, "50105");

    let mut call = OkxCall::new("GET", path, "");
    call.key = "who";
    assert_okx_error(&call.send(addr).await, 401, "50111");

    let mut call = OkxCall::new("GET", path, "");
    call.key = BN_KEY;
    call.secret = BN_SECRET;
    assert_okx_error(&call.send(addr).await, 401, "50111");

    // Signing the path without its query string.
    let call = OkxCall::new("GET", "/api/v5/account/balance?ccy=BTC", "");
    let sign = okx_sign(OKX_SECRET, &call.timestamp, "GET", path, "");
    assert_okx_error(&call.send_with(&sign, "", addr).await, 401, "50113");

    // Lower-case method in the signed text.
    let sign = okx_sign(OKX_SECRET, &call.timestamp, "get", call.request_path, "");
    assert_okx_error(&call.send_with(&sign, "", addr).await, 401, "50113");

    // No headers at all.
    let reply = send(addr, "GET", path, &[], b"").await;
    assert_okx_error(&reply, 401, "50111");
}

#[tokio::test]
async fn okx_stale_or_malformed_timestamp_is_rejected() {
    let (_sim, addr) = start().await;
    let path = "/api/v5/account/balance";
    let mut call = OkxCall::new("GET", path, "");
    call.timestamp = okx_timestamp(now_ms() - 31_000);
    let reply = call.send(addr).await;
    assert_okx_error(&reply, 401, "50102");
    assert_eq!(reply.body["msg"], "Timestamp request expired");

    call.timestamp = okx_timestamp(now_ms() + 31_000);
    assert_okx_error(&call.send(addr).await, 401, "50102");

    // Correctly signed, but not the documented shape (no milliseconds).
    call.timestamp = chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string();
    assert_okx_error(&call.send(addr).await, 401, "50102");

    // Seconds since the epoch (the WebSocket login format) is not accepted here.
    call.timestamp = (now_ms() / 1000).to_string();
    assert_okx_error(&call.send(addr).await, 401, "50102");

    call.timestamp = okx_timestamp(now_ms() - 20_000);
    assert_okx_ok(&call.send(addr).await);
}

#[tokio::test]
async fn okx_body_altered_after_signing_is_rejected() {
    let (sim, addr) = start().await;
    let body = json!({"instId": "BTC-USDT", "tdMode": "cash", "side": "buy",
                      "ordType": "limit", "sz": "0.01", "px": "30000"})
    .to_string();
    let call = OkxCall::new("POST", "/api/v5/trade/order", &body);
    let sign = call.sign();
    let altered = body.replace("0.01", "10");
    assert_ne!(altered, body);
    let reply = call.send_with(&sign, &altered, addr).await;
    assert_okx_error(&reply, 401, "50113");
    // Re-serialised with different spacing: the bytes differ, so does the sign.
    let spaced = body.replace(',', ", ");
    let reply = call.send_with(&sign, &spaced, addr).await;
    assert_okx_error(&reply, 401, "50113");
    assert!(sim.orders().is_empty());
    let reply = call.send_with(&sign, &body, addr).await;
    assert_okx_ok(&reply);
    assert_eq!(sim.orders().len(), 1);
}

#[tokio::test]
async fn okx_order_place_list_cancel() {
    let (sim, addr) = start().await;
    let order = json!({"instId": "BTC-USDT", "tdMode": "cash", "side": "buy",
                       "ordType": "limit", "sz": "0.01", "px": "30000.5", "clOrdId": "bot1"});
    let placed = okx_post(addr, "/api/v5/trade/order", &order).await;
    assert_okx_ok(&placed);
    let data = &placed.body["data"][0];
    assert_eq!(data["clOrdId"], "bot1");
    assert_eq!(data["sCode"], "0");
    assert_eq!(data["sMsg"], "Order placed");
    let ord_id = data["ordId"].as_str().unwrap().to_string();

    let duplicate = okx_post(addr, "/api/v5/trade/order", &order).await;
    assert_okx_error(&duplicate, 200, "51016");

    let missing = okx_post(
        addr,
        "/api/v5/trade/order",
        &json!({"instId": "BTC-USDT", "tdMode": "cash", "side": "buy", "ordType": "limit", "sz": "1"}),
    )
    .await;
    assert_okx_error(&missing, 400, "51000");
    assert_eq!(missing.body["msg"], "Parameter px error");

    let numeric = okx_post(
        addr,
        "/api/v5/trade/order",
        &json!({"instId": "BTC-USDT", "tdMode": "cash", "side": "buy", "ordType": "market", "sz": 1}),
    )
    .await;
    assert_okx_error(&numeric, 400, "51000");

    let market = okx_post(
        addr,
        "/api/v5/trade/order",
        &json!({"instId": "BTC-USDT", "tdMode": "cash", "side": "sell", "ordType": "market", "sz": "0.3"}),
    )
    .await;
    assert_okx_ok(&market);
    assert_eq!(market.body["data"][0]["clOrdId"], "");
    // 0.3 BTC sold at the best bid, 36,900.
    assert_eq!(sim.balance(OKX_KEY, "BTC"), Some(dec("1.7")));
    assert_eq!(sim.balance(OKX_KEY, "USDT"), Some(dec("11570")));

    let pending = okx_get(addr, "/api/v5/trade/orders-pending?instId=BTC-USDT").await;
    assert_okx_ok(&pending);
    let open = pending.body["data"].as_array().unwrap();
    assert_eq!(open.len(), 1);
    assert_eq!(open[0]["ordId"], ord_id.as_str());
    assert_eq!(open[0]["state"], "live");
    assert_eq!(open[0]["px"], "30000.5");
    assert_eq!(open[0]["sz"], "0.01");

    let canceled = okx_post(
        addr,
        "/api/v5/trade/cancel-order",
        &json!({"instId": "BTC-USDT", "clOrdId": "bot1"}),
    )
    .await;
    assert_okx_ok(&canceled);
    assert_eq!(canceled.body["data"][0]["ordId"], ord_id.as_str());
    assert_eq!(canceled.body["data"][0]["sCode"], "0");

    let again = okx_post(
        addr,
        "/api/v5/trade/cancel-order",
        &json!({"instId": "BTC-USDT", "ordId": ord_id}),
    )
    .await;
    assert_okx_error(&again, 200, "51400");

    let pending = okx_get(addr, "/api/v5/trade/orders-pending").await;
    assert_eq!(pending.body["data"], json!([]));

    let orders = sim.orders();
    assert_eq!(orders.len(), 2);
    assert_eq!(orders[0].status, OrderStatus::Canceled);
    assert_eq!(orders[0].symbol, "BTC-USDT");
    assert_eq!(orders[0].price, Some(dec("30000.5")));
    assert_eq!(orders[1].status, OrderStatus::Filled);
    assert!(orders.iter().all(|o| o.venue == VenueKind::Okx));

    // A key without trading permission.
    let mut call = OkxCall::new(
        "POST",
        "/api/v5/trade/order",
        r#"{"instId":"BTC-USDT","tdMode":"cash","side":"buy","ordType":"market","sz":"1"}"#,
    );
    call.key = OKX_READONLY_KEY;
    call.secret = OKX_READONLY_SECRET;
    call.passphrase = OKX_READONLY_PASS;
    assert_okx_error(&call.send(addr).await, 401, "50120");
    assert_eq!(sim.orders().len(), 2);
}

#[tokio::test]
async fn okx_withdrawal_lowers_balance_and_appears_in_history() {
    let (sim, addr) = start().await;
    let reply = okx_post(
        addr,
        "/api/v5/asset/withdrawal",
        &json!({"ccy": "USDT", "amt": "100.5", "dest": "4", "toAddr": "TSimAddress",
                "chain": "USDT-TRC20", "clientId": "wd1"}),
    )
    .await;
    assert_okx_ok(&reply);
    let data = &reply.body["data"][0];
    assert_eq!(data["amt"], "100.5");
    assert_eq!(data["ccy"], "USDT");
    assert_eq!(data["chain"], "USDT-TRC20");
    assert_eq!(data["clientId"], "wd1");
    let wd_id = data["wdId"].as_str().unwrap().to_string();
    assert_eq!(sim.balance(OKX_KEY, "USDT"), Some(dec("399.5")));

    let short = okx_post(
        addr,
        "/api/v5/asset/withdrawal",
        &json!({"ccy": "USDT", "amt": "399.6", "dest": "4", "toAddr": "TSimAddress", "chain": "USDT-TRC20"}),
    )
    .await;
    assert_okx_error(&short, 200, "58350");
    assert_eq!(sim.balance(OKX_KEY, "USDT"), Some(dec("399.5")));

    let history = okx_get(addr, "/api/v5/asset/withdrawal-history?ccy=USDT").await;
    assert_okx_ok(&history);
    let items = history.body["data"].as_array().unwrap();
    assert_eq!(items.len(), 1);
    assert_eq!(items[0]["wdId"], wd_id.as_str());
    assert_eq!(items[0]["amt"], "100.5");
    assert_eq!(items[0]["toAddr"], "TSimAddress");
    assert_eq!(items[0]["state"], "2");
    assert_eq!(items[0]["clientId"], "wd1");
    assert_eq!(items[0]["feeCcy"], "USDT");
    assert!(items[0]["addrEx"].is_null());

    let by_id = okx_get(
        addr,
        &format!("/api/v5/asset/withdrawal-history?wdId={wd_id}"),
    )
    .await;
    assert_eq!(by_id.body["data"].as_array().unwrap().len(), 1);
    let other = okx_get(addr, "/api/v5/asset/withdrawal-history?ccy=BTC").await;
    assert_eq!(other.body["data"], json!([]));

    let balance = okx_get(addr, "/api/v5/account/balance?ccy=USDT").await;
    assert_eq!(balance.body["data"][0]["details"][0]["availBal"], "399.5");

    let recorded = sim.withdrawals();
    assert_eq!(recorded.len(), 1);
    assert_eq!(recorded[0].venue, VenueKind::Okx);
    assert_eq!(recorded[0].network.as_deref(), Some("USDT-TRC20"));

    // Without the withdrawal permission.
    let mut call = OkxCall::new(
        "POST",
        "/api/v5/asset/withdrawal",
        r#"{"ccy":"USDT","amt":"1","dest":"4","toAddr":"TSimAddress","chain":"USDT-TRC20"}"#,
    );
    call.key = OKX_READONLY_KEY;
    call.secret = OKX_READONLY_SECRET;
    call.passphrase = OKX_READONLY_PASS;
    assert_okx_error(&call.send(addr).await, 401, "50120");
    assert_eq!(sim.balance(OKX_READONLY_KEY, "USDT"), Some(dec("50")));
}

// ----------------------------------- Both ------------------------------------

#[tokio::test]
async fn unknown_paths_are_404_in_the_venues_shape_and_everything_is_counted() {
    let (sim, addr) = start().await;
    assert_eq!(sim.requests(), 0);
    let reply = send(addr, "GET", "/nowhere", &[], b"").await;
    assert_eq!(reply.status, 404);
    assert_eq!(reply.body, json!({"code": -1, "msg": "unknown path"}));
    let reply = send(addr, "GET", "/api/v3/nowhere", &[], b"").await;
    assert_binance_error(&reply, 404, -1);
    let reply = send(addr, "POST", "/api/v3/time", &[], b"").await;
    assert_binance_error(&reply, 404, -1);
    let reply = send(addr, "GET", "/api/v5/nowhere", &[], b"").await;
    assert_eq!(reply.status, 404);
    assert_eq!(
        reply.body,
        json!({"code": "404", "msg": "unknown path", "data": []})
    );
    // A rejected request counts too.
    let reply = send(addr, "GET", "/api/v3/account", &[], b"").await;
    assert_binance_error(&reply, 401, -2014);
    assert_eq!(sim.requests(), 5);

    let state = send(addr, "GET", "/_sim/state", &[], b"").await;
    assert_eq!(state.status, 200);
    let snapshot: SimSnapshot = serde_json::from_value(state.body.clone()).unwrap();
    assert_eq!(snapshot.requests, 5);
    assert_eq!(snapshot.accounts.len(), 4);
    assert_eq!(snapshot.accounts[0].balances["BTC"], "1");
    let text = state.body.to_string();
    assert!(!text.contains(BN_SECRET) && !text.contains(OKX_PASS));
    // Reading the state is not counted.
    assert_eq!(sim.requests(), 5);
}

#[tokio::test]
async fn state_endpoint_shows_orders_and_withdrawals() {
    let (sim, addr) = start().await;
    let reply = binance_body(
        addr,
        "POST",
        "/sapi/v1/capital/withdraw/apply",
        BN_KEY,
        BN_SECRET,
        "coin=BTC&address=bc1qsim&amount=0.1",
    )
    .await;
    assert_eq!(reply.status, 200, "{reply:?}");
    let placed = okx_post(
        addr,
        "/api/v5/trade/order",
        &json!({"instId": "BTC-USDT", "tdMode": "cash", "side": "buy", "ordType": "limit",
                "sz": "1", "px": "2"}),
    )
    .await;
    assert_okx_ok(&placed);
    let state = send(addr, "GET", "/_sim/state", &[], b"").await;
    let snapshot: SimSnapshot = serde_json::from_value(state.body).unwrap();
    assert_eq!(snapshot, sim.snapshot());
    assert_eq!(snapshot.requests, 2);
    assert_eq!(snapshot.withdrawals.len(), 1);
    assert_eq!(snapshot.withdrawals[0].amount, dec("0.1"));
    assert_eq!(snapshot.orders.len(), 1);
    assert_eq!(snapshot.orders[0].venue, VenueKind::Okx);
    assert_eq!(snapshot.accounts[0].balances["BTC"], "0.9");
}

#[tokio::test]
async fn oversized_bodies_are_refused_in_the_venues_shape() {
    let (sim, addr) = start().await;
    let too_big = keygate_sim::MAX_BODY_BYTES + 1;
    // Declare the length but send nothing: the simulator must refuse without
    // reading, so the connection closes cleanly.
    let head = format!(
        "POST /api/v3/order HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nX-MBX-APIKEY: {BN_KEY}\r\nContent-Length: {too_big}\r\n\r\n"
    );
    let reply = send_raw(addr, head.as_bytes(), b"").await;
    assert_eq!(reply.status, 413, "{reply:?}");
    assert_eq!(reply.body["code"], -1);
    assert!(reply.body["msg"].as_str().unwrap().contains("65536"));

    let head = format!(
        "POST /api/v5/trade/order HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {too_big}\r\n\r\n"
    );
    let reply = send_raw(addr, head.as_bytes(), b"").await;
    assert_eq!(reply.status, 413, "{reply:?}");
    assert_eq!(reply.body["code"], "413");
    assert_eq!(sim.requests(), 2);
    assert!(sim.orders().is_empty());
}

// ---- Markets: books, fills, balances and the public book tickers ----

#[tokio::test]
async fn binance_book_ticker_and_exchange_info_answer_from_the_books() {
    let (_sim, addr) = start().await;
    let one = send(
        addr,
        "GET",
        "/api/v3/ticker/bookTicker?symbol=BTCUSDT",
        &[],
        b"",
    )
    .await;
    assert_eq!(one.status, 200, "{one:?}");
    assert_eq!(
        one.body,
        json!({"symbol": "BTCUSDT", "bidPrice": "36900.00000000", "bidQty": "0.50000000",
               "askPrice": "40100.00000000", "askQty": "0.50000000"})
    );
    let all = send(addr, "GET", "/api/v3/ticker/bookTicker", &[], b"").await;
    let symbols: Vec<&str> = all
        .body
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["symbol"].as_str().unwrap())
        .collect();
    assert_eq!(symbols, ["BTCUSDT", "ETHUSDT", "SHITUSDT"]);
    let unknown = send(
        addr,
        "GET",
        "/api/v3/ticker/bookTicker?symbol=BTC-USDT",
        &[],
        b"",
    )
    .await;
    assert_binance_error(&unknown, 400, -1121);
    let info = send(addr, "GET", "/api/v3/exchangeInfo", &[], b"").await;
    let listed: Vec<(&str, &str)> = info.body["symbols"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["symbol"].as_str().unwrap(),
                s["baseAsset"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        listed,
        [("BTCUSDT", "BTC"), ("ETHUSDT", "ETH"), ("SHITUSDT", "SHIT")]
    );
}

#[tokio::test]
async fn okx_ticker_and_instruments_answer_from_the_books() {
    let (_sim, addr) = start().await;
    let t = send(
        addr,
        "GET",
        "/api/v5/market/ticker?instId=ETH-USDT",
        &[],
        b"",
    )
    .await;
    assert_okx_ok(&t);
    let row = &t.body["data"][0];
    assert_eq!(
        (
            &row["instId"],
            &row["bidPx"],
            &row["bidSz"],
            &row["askPx"],
            &row["askSz"]
        ),
        (
            &json!("ETH-USDT"),
            &json!("1999"),
            &json!("2"),
            &json!("2001"),
            &json!("2")
        )
    );
    assert_eq!(row["last"], "2000");
    // Binance's symbol is no OKX instrument; OKX answers that with HTTP 200.
    let unknown = send(
        addr,
        "GET",
        "/api/v5/market/ticker?instId=SHIT-USDT",
        &[],
        b"",
    )
    .await;
    assert_okx_error(&unknown, 200, "51001");
    let missing = send(addr, "GET", "/api/v5/market/ticker", &[], b"").await;
    assert_okx_error(&missing, 400, "51000");
    let inst = send(
        addr,
        "GET",
        "/api/v5/public/instruments?instType=SPOT",
        &[],
        b"",
    )
    .await;
    let ids: Vec<&str> = inst.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["instId"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["BTC-USDT", "ETH-USDT"]);
}

#[tokio::test]
async fn binance_a_crossing_limit_buy_fills_at_the_book_and_rests_the_rest() {
    let (sim, addr) = start().await;
    // SHITUSDT asks: 20,000 at 0.0011, 50,000 at 0.0015, 1,000,000 at 5.
    let placed = binance_body(
        addr,
        "POST",
        "/api/v3/order",
        BN_KEY,
        BN_SECRET,
        "symbol=SHITUSDT&side=BUY&type=LIMIT&timeInForce=GTC&quantity=30000&price=0.0012",
    )
    .await;
    assert_eq!(placed.status, 200, "{placed:?}");
    assert_eq!(placed.body["status"], "PARTIALLY_FILLED");
    assert_eq!(placed.body["executedQty"], "20000.00000000");
    assert_eq!(placed.body["cummulativeQuoteQty"], "22.00000000");
    assert_eq!(
        placed.body["fills"],
        json!([{"price": "0.00110000", "qty": "20000.00000000", "commission": "0.00000000",
                "commissionAsset": "SHIT", "tradeId": placed.body["fills"][0]["tradeId"]}])
    );
    // 22 USDT paid, 12 locked for the 10,000 resting at 0.0012.
    assert_eq!(sim.balance(BN_KEY, "SHIT"), Some(dec("20000")));
    assert_eq!(sim.free(BN_KEY, "USDT"), Some(dec("966.5")));
    assert_eq!(sim.locked(BN_KEY, "USDT"), Some(dec("12")));
    let account = binance_query(addr, "GET", "/api/v3/account", BN_KEY, BN_SECRET, "").await;
    let usdt = account.body["balances"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["asset"] == "USDT")
        .unwrap()
        .clone();
    assert_eq!(
        usdt,
        json!({"asset": "USDT", "free": "966.50000000", "locked": "12.00000000"})
    );
    let open = binance_query(
        addr,
        "GET",
        "/api/v3/openOrders",
        BN_KEY,
        BN_SECRET,
        "symbol=SHITUSDT",
    )
    .await;
    assert_eq!(open.body[0]["status"], "PARTIALLY_FILLED");
    assert_eq!(open.body[0]["executedQty"], "20000.00000000");

    // The 3Commas request: a million at 5 USDT, from the thief's own asks. The account cannot
    // pay it: refused, and nothing moves.
    let attack = binance_body(
        addr,
        "POST",
        "/api/v3/order",
        BN_KEY,
        BN_SECRET,
        "symbol=SHITUSDT&side=BUY&type=LIMIT&timeInForce=GTC&quantity=1000000&price=5",
    )
    .await;
    assert_binance_error(&attack, 400, -2010);
    assert_eq!(
        attack.body["msg"],
        "Account has insufficient balance for requested action."
    );
    assert_eq!(sim.free(BN_KEY, "USDT"), Some(dec("966.5")));
    assert_eq!(sim.orders().len(), 1);

    // An unlisted symbol is Binance's -1121; LIMIT_MAKER that would take is refused.
    let unlisted = binance_body(
        addr,
        "POST",
        "/api/v3/order",
        BN_KEY,
        BN_SECRET,
        "symbol=ETHBTC&side=BUY&type=LIMIT&timeInForce=GTC&quantity=1&price=0.05",
    )
    .await;
    assert_binance_error(&unlisted, 400, -1121);
    let maker = binance_body(
        addr,
        "POST",
        "/api/v3/order",
        BN_KEY,
        BN_SECRET,
        "symbol=SHITUSDT&side=SELL&type=LIMIT_MAKER&quantity=100&price=0.0009",
    )
    .await;
    assert_binance_error(&maker, 400, -2010);
    assert_eq!(maker.body["msg"], "Order would immediately match and take.");
    // A market buy sized in USDT walks the asks.
    let quote = binance_body(
        addr,
        "POST",
        "/api/v3/order",
        BN_KEY,
        BN_SECRET,
        "symbol=SHITUSDT&side=BUY&type=MARKET&quoteOrderQty=50&newOrderRespType=RESULT",
    )
    .await;
    assert_eq!(quote.status, 200, "{quote:?}");
    assert_eq!(quote.body["status"], "FILLED");
    // 22 buys the 20,000 at 0.0011, the other 28 buy 18,666.66666666 at 0.0015.
    assert_eq!(quote.body["executedQty"], "38666.66666666");
    assert!(quote.body.get("fills").is_none());
    assert_eq!(sim.balance(BN_KEY, "SHIT"), Some(dec("58666.66666666")));
}

#[tokio::test]
async fn okx_orders_fill_at_the_book_and_refuse_what_the_balance_cannot_cover() {
    let (sim, addr) = start().await;
    // A market buy's sz is in USDT by default: 100 USDT of ETH at the best ask, 2,001.
    let placed = okx_post(
        addr,
        "/api/v5/trade/order",
        &json!({"instId": "ETH-USDT", "tdMode": "cash", "side": "buy", "ordType": "market", "sz": "100", "clOrdId": "m1"}),
    )
    .await;
    assert_okx_ok(&placed);
    let eth = sim.balance(OKX_KEY, "ETH").unwrap();
    assert_eq!(eth, dec("0.04997501"));
    let spent = dec("500") - sim.balance(OKX_KEY, "USDT").unwrap();
    assert_eq!(spent, eth * dec("2001"));
    assert!(spent <= dec("100"));

    // A limit sell crossing the bids fills down to its price; the rest rests, locking BTC.
    let sell = okx_post(
        addr,
        "/api/v5/trade/order",
        &json!({"instId": "BTC-USDT", "tdMode": "cash", "side": "sell", "ordType": "limit", "sz": "2", "px": "36800", "clOrdId": "s1"}),
    )
    .await;
    assert_okx_ok(&sell);
    // 0.5 at 36,900 and 1 at 36,800 fill; 0.5 rests at 36,800.
    assert_eq!(sim.free(OKX_KEY, "BTC"), Some(Decimal::ZERO));
    assert_eq!(sim.locked(OKX_KEY, "BTC"), Some(dec("0.5")));
    let pending = okx_get(addr, "/api/v5/trade/orders-pending?instId=BTC-USDT").await;
    let row = &pending.body["data"][0];
    assert_eq!(
        (&row["state"], &row["accFillSz"], &row["sz"]),
        (&json!("partially_filled"), &json!("1.5"), &json!("2"))
    );
    assert_eq!(row["avgPx"], "36833.33333333");

    // More than the free BTC: refused in OKX's shape, nothing moves.
    let before = sim.snapshot();
    let refused = okx_post(
        addr,
        "/api/v5/trade/order",
        &json!({"instId": "BTC-USDT", "tdMode": "cash", "side": "sell", "ordType": "market", "sz": "0.1"}),
    )
    .await;
    assert_eq!(refused.status, 200);
    assert_eq!(refused.body["code"], "1");
    assert_eq!(refused.body["data"][0]["sCode"], "51008");
    let after = sim.snapshot();
    assert_eq!(
        (after.accounts, after.orders),
        (before.accounts, before.orders)
    );

    // Cancelling the rest gives the 0.5 BTC back.
    let canceled = okx_post(
        addr,
        "/api/v5/trade/cancel-order",
        &json!({"instId": "BTC-USDT", "clOrdId": "s1"}),
    )
    .await;
    assert_okx_ok(&canceled);
    assert_eq!(sim.free(OKX_KEY, "BTC"), Some(dec("0.5")));
    assert_eq!(sim.locked(OKX_KEY, "BTC"), Some(Decimal::ZERO));
    // An FOK the book cannot fill whole fills nothing.
    let fok = okx_post(
        addr,
        "/api/v5/trade/order",
        &json!({"instId": "ETH-USDT", "tdMode": "cash", "side": "buy", "ordType": "fok", "sz": "3", "px": "2001"}),
    )
    .await;
    assert_okx_ok(&fok);
    let orders = sim.orders();
    let last = orders.last().unwrap();
    assert_eq!(
        (last.status, last.executed_quantity),
        (OrderStatus::Expired, Decimal::ZERO)
    );
}
