//! The sub-account endpoints over real connections: a master restricts a sub-account's key to
//! one address, after which the key is refused from any other; sweeps move balances once per
//! client id; weights, permissions and rate limits are enforced in each venue's error shape.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test crate: a failed unwrap is a failed test

use std::net::{IpAddr, SocketAddr};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{Hmac, KeyInit, Mac};
use keygate_sim::{Master, Restrictions, Sim, SimConfig, SubAccount};
use rust_decimal::Decimal;
use serde_json::{Value, json};
use sha2::Sha256;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket};

const KEYGATE: &str = "127.0.0.1";
const ELSEWHERE: &str = "127.0.0.2";

fn config() -> SimConfig {
    SimConfig::from_json(
        &json!({"accounts": [
            {"venue": "binance", "api_key": "bmaster", "secret": "bms",
             "restrictions": {"ip_restrict": true, "ip": [KEYGATE], "enable_internal_transfer": true}},
            {"venue": "binance", "api_key": "bsub", "secret": "bss",
             "balances": {"USDT": "1000", "BTC": "2"}},
            {"venue": "binance", "api_key": "bmaster2", "secret": "bms2",
             "restrictions": {"enable_spot_and_margin_trading": false}},
            {"venue": "okx", "api_key": "omaster", "secret": "oms", "passphrase": "omp",
             "restrictions": {"ip_restrict": true, "ip": [KEYGATE]}},
            {"venue": "okx", "api_key": "osub", "secret": "oss", "passphrase": "osp",
             "balances": {"USDT": "500"}}
        ]})
        .to_string(),
    )
    .unwrap()
}

fn masters() -> Vec<Master> {
    vec![
        Master {
            venue: keygate_sim::VenueKind::Binance,
            api_key: "bmaster".into(),
            sub_accounts: vec![SubAccount {
                name: "sub1@example.com".into(),
                api_key: "bsub".into(),
            }],
        },
        Master {
            venue: keygate_sim::VenueKind::Binance,
            api_key: "bmaster2".into(),
            sub_accounts: vec![],
        },
        Master {
            venue: keygate_sim::VenueKind::Okx,
            api_key: "omaster".into(),
            sub_accounts: vec![SubAccount {
                name: "osub1".into(),
                api_key: "osub".into(),
            }],
        },
    ]
}

async fn start() -> (Sim, SocketAddr) {
    let sim = Sim::new_with_masters(config(), masters()).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(keygate_sim::serve(listener, sim.clone()));
    (sim, addr)
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// One request from `from` (a loopback address), its status and JSON body.
async fn send(
    to: SocketAddr,
    from: &str,
    method: &str,
    target: &str,
    headers: &[(&str, String)],
    body: &str,
) -> (u16, Value) {
    let socket = TcpSocket::new_v4().unwrap();
    socket
        .bind(SocketAddr::new(from.parse::<IpAddr>().unwrap(), 0))
        .unwrap();
    let mut stream = socket.connect(to).await.unwrap();
    let mut head = format!(
        "{method} {target} HTTP/1.1\r\nHost: {to}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (n, v) in headers {
        head.push_str(&format!("{n}: {v}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(body.as_bytes()).await.unwrap();
    let mut raw = String::new();
    stream.read_to_string(&mut raw).await.unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    (status, serde_json::from_str(body).unwrap_or(Value::Null))
}

async fn binance(
    to: SocketAddr,
    from: &str,
    method: &str,
    path: &str,
    (key, secret): (&str, &str),
    params: &str,
) -> (u16, Value) {
    let joined = format!("{params}&timestamp={}", now_ms());
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(joined.as_bytes());
    let signed = format!(
        "{joined}&signature={}",
        hex::encode(mac.finalize().into_bytes())
    );
    let headers = [
        ("X-MBX-APIKEY", key.to_string()),
        (
            "Content-Type",
            "application/x-www-form-urlencoded".to_string(),
        ),
    ];
    if method == "GET" {
        send(to, from, method, &format!("{path}?{signed}"), &headers, "").await
    } else {
        send(to, from, method, path, &headers, &signed).await
    }
}

async fn okx(
    to: SocketAddr,
    from: &str,
    method: &str,
    path: &str,
    (key, secret, pass): (&str, &str, &str),
    body: &str,
) -> (u16, Value) {
    let ts = chrono::DateTime::from_timestamp_millis(now_ms())
        .unwrap()
        .format("%Y-%m-%dT%H:%M:%S%.3fZ")
        .to_string();
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("{ts}{method}{path}{body}").as_bytes());
    let headers = [
        ("OK-ACCESS-KEY", key.to_string()),
        ("OK-ACCESS-SIGN", BASE64.encode(mac.finalize().into_bytes())),
        ("OK-ACCESS-TIMESTAMP", ts),
        ("OK-ACCESS-PASSPHRASE", pass.to_string()),
        ("Content-Type", "application/json".to_string()),
    ];
    send(to, from, method, path, &headers, body).await
}

const BMASTER: (&str, &str) = ("bmaster", "bms");
const BSUB: (&str, &str) = ("bsub", "bss");
const OMASTER: (&str, &str, &str) = ("omaster", "oms", "omp");
const OSUB: (&str, &str, &str) = ("osub", "oss", "osp");

#[tokio::test]
async fn a_binance_key_restricted_by_its_master_is_refused_from_elsewhere() {
    let (sim, addr) = start().await;
    // The leaked key works from anywhere at first.
    let (s, _) = binance(addr, ELSEWHERE, "GET", "/api/v3/account", BSUB, "").await;
    assert_eq!(s, 200);
    // The master key itself is restricted to keygate's address.
    let (s, b) = binance(
        addr,
        ELSEWHERE,
        "GET",
        "/sapi/v4/sub-account/assets",
        BMASTER,
        "email=sub1%40example.com",
    )
    .await;
    assert_eq!((s, b["code"].as_i64()), (401, Some(-2015)));
    let (s, b) = binance(
        addr,
        KEYGATE,
        "POST",
        "/sapi/v2/sub-account/subAccountApi/ipRestriction",
        BMASTER,
        "email=sub1%40example.com&subAccountApiKey=bsub&status=2&ipAddress=127.0.0.1",
    )
    .await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["status"], "2");
    assert_eq!(b["ipList"], json!(["127.0.0.1"]));
    assert!(sim.key_restrictions("bsub").unwrap().ip_restrict);
    let (s, b) = binance(addr, ELSEWHERE, "GET", "/api/v3/account", BSUB, "").await;
    assert_eq!((s, b["code"].as_i64()), (401, Some(-2015)));
    let (s, _) = binance(addr, KEYGATE, "GET", "/api/v3/account", BSUB, "").await;
    assert_eq!(s, 200);
    // A master without "Enable Spot & Margin Trading" cannot restrict a key, nor a sub-account
    // key call master endpoints.
    let (s, b) = binance(
        addr,
        KEYGATE,
        "POST",
        "/sapi/v2/sub-account/subAccountApi/ipRestriction",
        ("bmaster2", "bms2"),
        "email=sub1%40example.com&subAccountApiKey=bsub&status=2&ipAddress=127.0.0.1",
    )
    .await;
    assert_eq!((s, b["code"].as_i64()), (401, Some(-2015)), "{b}");
    let (s, _) = binance(
        addr,
        KEYGATE,
        "GET",
        "/sapi/v4/sub-account/assets",
        BSUB,
        "email=sub1%40example.com",
    )
    .await;
    assert_eq!(s, 401);
}

#[tokio::test]
async fn binance_sweeps_move_once_per_client_id_and_show_in_the_history() {
    let (sim, addr) = start().await;
    let (s, b) = binance(
        addr,
        KEYGATE,
        "GET",
        "/sapi/v4/sub-account/assets",
        BMASTER,
        "email=sub1%40example.com",
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(b["balances"].as_array().unwrap().len(), 2);
    let sweep = "fromEmail=sub1%40example.com&fromAccountType=SPOT&toAccountType=SPOT&asset=USDT&amount=600&clientTranId=kgc1s2";
    let (s, b) = binance(
        addr,
        KEYGATE,
        "POST",
        "/sapi/v1/sub-account/universalTransfer",
        BMASTER,
        sweep,
    )
    .await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["clientTranId"], "kgc1s2");
    let (s, b) = binance(
        addr,
        KEYGATE,
        "POST",
        "/sapi/v1/sub-account/universalTransfer",
        BMASTER,
        sweep,
    )
    .await;
    assert_eq!(
        (s, b["code"].as_i64()),
        (400, Some(-1130)),
        "a repeated client id moves nothing"
    );
    assert_eq!(sim.balance("bsub", "USDT"), Some(Decimal::from(400)));
    assert_eq!(sim.balance("bmaster", "USDT"), Some(Decimal::from(600)));
    let too_much = "fromEmail=sub1%40example.com&fromAccountType=SPOT&toAccountType=SPOT&asset=USDT&amount=401&clientTranId=kgc1s3";
    let (s, b) = binance(
        addr,
        KEYGATE,
        "POST",
        "/sapi/v1/sub-account/universalTransfer",
        BMASTER,
        too_much,
    )
    .await;
    assert_eq!((s, b["code"].as_i64()), (400, Some(-2010)));
    let (s, b) = binance(
        addr,
        KEYGATE,
        "GET",
        "/sapi/v1/sub-account/universalTransfer",
        BMASTER,
        "fromEmail=sub1%40example.com&clientTranId=kgc1s2",
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(b["totalCount"], 1);
    assert_eq!(b["result"][0]["status"], "SUCCESS");
    let (_, b) = binance(
        addr,
        KEYGATE,
        "GET",
        "/sapi/v1/sub-account/universalTransfer",
        BMASTER,
        "clientTranId=kgc1s3",
    )
    .await;
    assert_eq!(b["totalCount"], 0);
    // A lost answer: the transfer is made, the caller sees a 500, the history shows it.
    sim.drop_answers("/sapi/v1/sub-account/universalTransfer", 1);
    let lost = "fromEmail=sub1%40example.com&fromAccountType=SPOT&toAccountType=SPOT&asset=BTC&amount=2&clientTranId=kgc1s4";
    let (s, _) = binance(
        addr,
        KEYGATE,
        "POST",
        "/sapi/v1/sub-account/universalTransfer",
        BMASTER,
        lost,
    )
    .await;
    assert_eq!(s, 500);
    assert_eq!(sim.balance("bmaster", "BTC"), Some(Decimal::from(2)));
    assert_eq!(sim.sub_transfers().len(), 2);
}

#[tokio::test]
async fn binance_uid_weight_is_limited_per_minute() {
    let (_, addr) = start().await;
    let restrict = "email=sub1%40example.com&subAccountApiKey=bsub&status=2&ipAddress=127.0.0.1";
    // 180,000 per minute at 3000 each: 60 pass, the 61st is over (unless the minute turns).
    let mut limited = None;
    for i in 0..61 {
        let (s, b) = binance(
            addr,
            KEYGATE,
            "POST",
            "/sapi/v2/sub-account/subAccountApi/ipRestriction",
            BMASTER,
            restrict,
        )
        .await;
        if s == 429 {
            assert_eq!(b["code"], -1003);
            limited = Some(i);
            break;
        }
        assert_eq!(s, 200);
    }
    let at = limited.expect("the 61st call in a minute is over the limit");
    assert!(at >= 1, "{at}");
}

#[tokio::test]
async fn okx_master_locks_stops_transfers_and_sweeps_a_sub_account() {
    let (sim, addr) = start().await;
    let (s, b) = okx(addr, ELSEWHERE, "GET", "/api/v5/account/balance", OSUB, "").await;
    assert_eq!(s, 200, "{b}");
    let lock = r#"{"subAcct":"osub1","apiKey":"osub","ip":"127.0.0.1"}"#;
    let (s, b) = okx(
        addr,
        KEYGATE,
        "POST",
        "/api/v5/users/subaccount/modify-apikey",
        OMASTER,
        lock,
    )
    .await;
    assert_eq!((s, b["code"].as_str()), (200, Some("0")), "{b}");
    assert_eq!(b["data"][0]["ip"], "127.0.0.1");
    let (s, b) = okx(addr, ELSEWHERE, "GET", "/api/v5/account/balance", OSUB, "").await;
    assert_eq!((s, b["code"].as_str()), (401, Some("50110")), "{b}");
    // Once a second: the next lock at once is over OKX's rate.
    let (s, b) = okx(
        addr,
        KEYGATE,
        "POST",
        "/api/v5/users/subaccount/modify-apikey",
        OMASTER,
        lock,
    )
    .await;
    assert_eq!((s, b["code"].as_str()), (429, Some("50011")));

    let stop = r#"{"subAcct":"osub1","canTransOut":false}"#;
    let (s, b) = okx(
        addr,
        KEYGATE,
        "POST",
        "/api/v5/users/subaccount/set-transfer-out",
        OMASTER,
        stop,
    )
    .await;
    assert_eq!(
        (s, b["data"][0]["canTransOut"].as_bool()),
        (200, Some(false)),
        "{b}"
    );
    assert!(!sim.can_transfer_out("omaster", "osub1"));

    let (_, b) = okx(
        addr,
        KEYGATE,
        "GET",
        "/api/v5/account/subaccount/balances?subAcct=osub1",
        OMASTER,
        "",
    )
    .await;
    assert_eq!(b["data"][0]["details"][0]["availBal"], "500");
    let sweep = r#"{"type":"2","subAcct":"osub1","ccy":"USDT","amt":"500","from":"18","to":"6","clientId":"kgc2s3"}"#;
    let (s, b) = okx(
        addr,
        KEYGATE,
        "POST",
        "/api/v5/asset/transfer",
        OMASTER,
        sweep,
    )
    .await;
    assert_eq!((s, b["code"].as_str()), (200, Some("0")), "{b}");
    assert_eq!(b["data"][0]["clientId"], "kgc2s3");
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let (_, b) = okx(
        addr,
        KEYGATE,
        "POST",
        "/api/v5/asset/transfer",
        OMASTER,
        sweep,
    )
    .await;
    assert_eq!(b["code"], "51000", "a repeated client id moves nothing");
    assert_eq!(sim.balance("omaster", "USDT"), Some(Decimal::from(500)));
    assert_eq!(sim.balance("osub", "USDT"), Some(Decimal::ZERO));
    let (_, b) = okx(
        addr,
        KEYGATE,
        "GET",
        "/api/v5/asset/transfer-state?clientId=kgc2s3&type=2",
        OMASTER,
        "",
    )
    .await;
    assert_eq!(b["data"][0]["state"], "success");
    let (_, b) = okx(
        addr,
        KEYGATE,
        "GET",
        "/api/v5/asset/transfer-state?clientId=nope&type=2",
        OMASTER,
        "",
    )
    .await;
    assert_eq!(b["data"], json!([]));

    let delete = r#"{"subAcct":"osub1","apiKey":"osub"}"#;
    let (s, b) = okx(
        addr,
        KEYGATE,
        "POST",
        "/api/v5/users/subaccount/delete-apikey",
        OMASTER,
        delete,
    )
    .await;
    assert_eq!(
        (s, b["data"][0]["subAcct"].as_str()),
        (200, Some("osub1")),
        "{b}"
    );
    let (s, b) = okx(addr, KEYGATE, "GET", "/api/v5/account/balance", OSUB, "").await;
    assert_eq!((s, b["code"].as_str()), (401, Some("50111")));
    assert_eq!(sim.key_restrictions("osub"), None);
}

#[tokio::test]
async fn okx_key_changes_need_an_ip_bound_trading_master_key() {
    let mut c = config();
    c.accounts[3].restrictions = Restrictions::default();
    let sim = Sim::new_with_masters(c, masters()).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(keygate_sim::serve(listener, sim));
    let lock = r#"{"subAcct":"osub1","apiKey":"osub","ip":"127.0.0.1"}"#;
    let (s, b) = okx(
        addr,
        KEYGATE,
        "POST",
        "/api/v5/users/subaccount/modify-apikey",
        OMASTER,
        lock,
    )
    .await;
    assert_eq!((s, b["code"].as_str()), (401, Some("50120")), "{b}");
    let (s, b) = okx(
        addr,
        KEYGATE,
        "POST",
        "/api/v5/users/subaccount/modify-apikey",
        OSUB,
        lock,
    )
    .await;
    assert_eq!(
        (s, b["code"].as_str()),
        (401, Some("50120")),
        "a sub-account key is no master: {b}"
    );
}

#[test]
fn masters_must_name_accounts_of_their_venue_once() {
    let mut m = masters();
    m[0].sub_accounts[0].api_key = "osub".into();
    assert!(Sim::new_with_masters(config(), m).is_err());
    let mut m = masters();
    m[1].sub_accounts.push(SubAccount {
        name: "x".into(),
        api_key: "bsub".into(),
    });
    assert!(Sim::new_with_masters(config(), m).is_err());
    let mut m = masters();
    m[0].api_key = "nobody".into();
    let e = Sim::new_with_masters(config(), m).unwrap_err().to_string();
    assert!(e.contains("nobody"), "{e}");
}
