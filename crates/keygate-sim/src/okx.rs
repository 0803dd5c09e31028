//! OKX v5-style endpoints (`/api/v5/...`), with REST authentication written from
//! OKX's "REST Authentication" documentation:
//!
//! - headers `OK-ACCESS-KEY`, `OK-ACCESS-SIGN`, `OK-ACCESS-TIMESTAMP`,
//!   `OK-ACCESS-PASSPHRASE`;
//! - sign = base64(HMAC-SHA256(secret, timestamp + METHOD + requestPath + body)),
//!   where timestamp is the `OK-ACCESS-TIMESTAMP` header as sent, requestPath is
//!   the path plus `?` and the query string as sent (`/api/v5/account/balance?ccy=BTC`)
//!   and body is the raw body ("" when there is none, as for GET);
//! - the timestamp is ISO 8601 UTC with milliseconds, `2020-12-08T09:08:57.715Z`,
//!   exactly that shape, and must be within 30 seconds of the server's clock.
//!
//! Checks run in this order: key, passphrase, sign, timestamp. POST parameters
//! are a JSON object whose values OKX documents as strings; a parameter the
//! simulator reads must be a JSON string (a number or boolean there is refused
//! with 51000), other members are ignored.
//!
//! Business errors (insufficient balance, unknown order, duplicate client order
//! id) come back with HTTP 200 and a non-"0" top-level `code`, and `data: []`.
//!
//! Why one file of ~790 lines plus ~170 of tests: one file per venue, with every endpoint the
//! simulator answers for OKX as a short handler, so it can be read against OKX's docs in one place.

use std::collections::BTreeSet;

use axum::Json;
use axum::extract::Request;
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use chrono::NaiveDateTime;
use hmac::{Hmac, KeyInit, Mac};
use rust_decimal::Decimal;
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use crate::config::VenueKind;
use crate::state::{
    Credentials, Order, OrderStatus, OrderType, Side, Sim, WithdrawError, fake_tx_id,
};
use crate::trading::{Execution, NewOrder, OrderRef, PlaceError};
use crate::{constant_time_eq, now_ms, parse_amount, plain, read_body};

type HmacSha256 = Hmac<Sha256>;

const KEY_HEADER: &str = "OK-ACCESS-KEY";
const SIGN_HEADER: &str = "OK-ACCESS-SIGN";
const TIMESTAMP_HEADER: &str = "OK-ACCESS-TIMESTAMP";
const PASSPHRASE_HEADER: &str = "OK-ACCESS-PASSPHRASE";
/// How far the request's timestamp may be from the server's clock.
const MAX_SKEW_MS: i64 = 30_000;

/// An OKX error: HTTP status and `{"code": "<digits>", "msg": .., "data": [..]}` (`data` is
/// empty but for a refused order, whose row carries its own `sCode`).
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct ApiError {
    status: StatusCode,
    code: &'static str,
    msg: String,
    data: Vec<Value>,
}

impl ApiError {
    fn new(status: StatusCode, code: &'static str, msg: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            msg: msg.into(),
            data: vec![],
        }
    }

    /// A failure with rows: HTTP 200.
    fn rows(code: &'static str, msg: &str, data: Vec<Value>) -> ApiError {
        ApiError {
            status: StatusCode::OK,
            code,
            msg: msg.to_string(),
            data,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (
            self.status,
            Json(json!({"code": self.code, "msg": self.msg, "data": self.data})),
        )
            .into_response()
    }
}

fn invalid_key() -> ApiError {
    ApiError::new(StatusCode::UNAUTHORIZED, "50111", "Invalid OK-ACCESS-KEY")
}

fn invalid_passphrase() -> ApiError {
    ApiError::new(
        StatusCode::UNAUTHORIZED,
        "50105",
        "Invalid OK-ACCESS-PASSPHRASE",
    )
}

fn invalid_sign() -> ApiError {
    ApiError::new(StatusCode::UNAUTHORIZED, "50113", "Invalid Sign")
}

fn timestamp_expired() -> ApiError {
    ApiError::new(
        StatusCode::UNAUTHORIZED,
        "50102",
        "Timestamp request expired",
    )
}

fn no_permission() -> ApiError {
    ApiError::new(
        StatusCode::UNAUTHORIZED,
        "50120",
        "API key doesn't have permission",
    )
}

fn param_error(name: &str) -> ApiError {
    ApiError::new(
        StatusCode::BAD_REQUEST,
        "51000",
        format!("Parameter {name} error"),
    )
}

/// A business failure: HTTP 200 with a non-zero code.
fn failed(code: &'static str, msg: &str) -> ApiError {
    ApiError::new(StatusCode::OK, code, msg)
}

/// 404 for a path under `/api/v5/` that the simulator does not serve.
fn unknown_path() -> Response {
    (
        StatusCode::NOT_FOUND,
        Json(json!({"code": "404", "msg": "unknown path", "data": []})),
    )
        .into_response()
}

/// A success: `{"code":"0","msg":"","data":[..]}`.
fn ok(data: Vec<Value>) -> Value {
    json!({"code": "0", "msg": "", "data": data})
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Endpoint {
    Time,
    Instruments,
    Ticker,
    Currencies,
    Balance,
    PlaceOrder,
    CancelOrder,
    OrdersPending,
    OrdersHistory,
    Withdrawal,
    WithdrawalHistory,
    Config,
    /// A master account's sub-account endpoint (`crate::subaccount::okx`).
    Sub(crate::subaccount::okx::OkxSub),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Permission {
    Read,
    Trade,
    Withdraw,
}

impl Endpoint {
    fn route(method: &Method, path: &str) -> Option<Endpoint> {
        if let Some(sub) = crate::subaccount::okx::OkxSub::route(method.as_str(), path) {
            return Some(Endpoint::Sub(sub));
        }
        Some(match (method.as_str(), path) {
            ("GET", "/api/v5/public/time") => Endpoint::Time,
            ("GET", "/api/v5/public/instruments") => Endpoint::Instruments,
            ("GET", "/api/v5/market/ticker") => Endpoint::Ticker,
            ("GET", "/api/v5/asset/currencies") => Endpoint::Currencies,
            ("GET", "/api/v5/account/balance") => Endpoint::Balance,
            ("POST", "/api/v5/trade/order") => Endpoint::PlaceOrder,
            ("POST", "/api/v5/trade/cancel-order") => Endpoint::CancelOrder,
            ("GET", "/api/v5/trade/orders-pending") => Endpoint::OrdersPending,
            ("GET", "/api/v5/trade/orders-history") => Endpoint::OrdersHistory,
            ("POST", "/api/v5/asset/withdrawal") => Endpoint::Withdrawal,
            ("GET", "/api/v5/asset/withdrawal-history") => Endpoint::WithdrawalHistory,
            ("GET", "/api/v5/account/config") => Endpoint::Config,
            _ => return None,
        })
    }

    fn permission(self) -> Option<Permission> {
        match self {
            Endpoint::Time | Endpoint::Instruments | Endpoint::Ticker => None,
            Endpoint::Currencies
            | Endpoint::Balance
            | Endpoint::OrdersPending
            | Endpoint::OrdersHistory
            | Endpoint::WithdrawalHistory
            | Endpoint::Config
            | Endpoint::Sub(_) => Some(Permission::Read),
            Endpoint::PlaceOrder | Endpoint::CancelOrder => Some(Permission::Trade),
            Endpoint::Withdrawal => Some(Permission::Withdraw),
        }
    }
}

/// Serves one request under `/api/v5/`.
pub(crate) async fn handle(sim: &Sim, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let Some(endpoint) = Endpoint::route(&parts.method, parts.uri.path()) else {
        return unknown_path();
    };
    if endpoint == Endpoint::Time {
        return Json(ok(vec![json!({"ts": now_ms().to_string()})])).into_response();
    }
    if endpoint == Endpoint::Instruments {
        return Json(instruments(sim, parts.uri.query().unwrap_or(""))).into_response();
    }
    if endpoint == Endpoint::Ticker {
        return match ticker(sim, parts.uri.query().unwrap_or("")) {
            Ok(value) => Json(value).into_response(),
            Err(e) => e.into_response(),
        };
    }
    let body = match read_body(&parts.headers, body).await {
        Ok(body) => body,
        Err(e) => {
            return ApiError::new(e.status(), "413", e.message()).into_response();
        }
    };
    let request_path = parts
        .uri
        .path_and_query()
        .map(|pq| pq.as_str())
        .unwrap_or_else(|| parts.uri.path());
    let result = private(
        sim,
        endpoint,
        &parts.method,
        request_path,
        parts.uri.query().unwrap_or(""),
        &parts.headers,
        &body,
    );
    match result {
        Ok(value) => Json(value).into_response(),
        Err(e) => e.into_response(),
    }
}

/// An authenticated caller and its parameters.
struct Caller {
    api_key: String,
    credentials: Credentials,
    params: Params,
}

fn private(
    sim: &Sim,
    endpoint: Endpoint,
    method: &Method,
    request_path: &str,
    query: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Value, ApiError> {
    let (api_key, credentials) = authenticate(sim, method, request_path, headers, body, now_ms())?;
    let r = &credentials.restrictions;
    let allowed = match endpoint.permission() {
        None => true,
        Some(Permission::Read) => r.enable_reading,
        Some(Permission::Trade) => r.enable_spot_and_margin_trading,
        Some(Permission::Withdraw) => r.enable_withdrawals,
    };
    if !allowed {
        return Err(no_permission());
    }
    let params = if *method == Method::GET {
        Params::from_query(query)?
    } else {
        Params::from_json(body)?
    };
    let caller = Caller {
        api_key,
        credentials,
        params,
    };
    match endpoint {
        Endpoint::Time => Ok(ok(vec![json!({"ts": now_ms().to_string()})])),
        Endpoint::Instruments => Ok(instruments(sim, query)),
        Endpoint::Ticker => ticker(sim, query),
        Endpoint::Currencies => Ok(currencies(sim, &caller)),
        Endpoint::Balance => balance(sim, &caller),
        Endpoint::PlaceOrder => place_order(sim, &caller),
        Endpoint::CancelOrder => cancel_order(sim, &caller),
        Endpoint::OrdersPending => orders_pending(sim, &caller),
        Endpoint::OrdersHistory => orders_history(sim, &caller),
        Endpoint::Withdrawal => withdrawal(sim, &caller),
        Endpoint::WithdrawalHistory => withdrawal_history(sim, &caller),
        Endpoint::Config => Ok(config(&caller)),
        Endpoint::Sub(sub) => crate::subaccount::okx::handle(
            sim,
            sub,
            &caller.api_key,
            &caller.credentials,
            &caller.params.values,
        )
        .map_err(|(status, code, msg)| ApiError::new(status, code, msg)),
    }
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty())
}

/// Checks key, passphrase, sign and timestamp, in that order.
fn authenticate(
    sim: &Sim,
    method: &Method,
    request_path: &str,
    headers: &HeaderMap,
    body: &[u8],
    server_ms: i64,
) -> Result<(String, Credentials), ApiError> {
    let api_key = header(headers, KEY_HEADER).ok_or_else(invalid_key)?;
    let credentials = sim
        .credentials(VenueKind::Okx, api_key)
        .ok_or_else(invalid_key)?;
    let passphrase = header(headers, PASSPHRASE_HEADER).ok_or_else(invalid_passphrase)?;
    let expected = credentials.passphrase.as_deref().unwrap_or_default();
    if expected.is_empty() || !constant_time_eq(passphrase.as_bytes(), expected.as_bytes()) {
        return Err(invalid_passphrase());
    }
    let timestamp = headers
        .get(TIMESTAMP_HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let sign = header(headers, SIGN_HEADER).ok_or_else(invalid_sign)?;
    if !sign_matches(
        &credentials.secret,
        timestamp,
        method.as_str(),
        request_path,
        body,
        sign,
    ) {
        return Err(invalid_sign());
    }
    let at = parse_timestamp(timestamp).ok_or_else(timestamp_expired)?;
    if (server_ms - at).abs() > MAX_SKEW_MS {
        return Err(timestamp_expired());
    }
    Ok((api_key.to_string(), credentials))
}

/// Whether `sign` is base64(HMAC-SHA256(secret, timestamp + method + path + body)),
/// compared in constant time.
fn sign_matches(
    secret: &str,
    timestamp: &str,
    method: &str,
    request_path: &str,
    body: &[u8],
    sign: &str,
) -> bool {
    let Ok(tag) = BASE64.decode(sign) else {
        return false;
    };
    let Ok(mut mac) = HmacSha256::new_from_slice(secret.as_bytes()) else {
        return false;
    };
    mac.update(timestamp.as_bytes());
    mac.update(method.as_bytes());
    mac.update(request_path.as_bytes());
    mac.update(body);
    mac.verify_slice(&tag).is_ok()
}

/// `YYYY-MM-DDTHH:MM:SS.mmmZ` -> ms since the Unix epoch; anything else -> `None`.
fn parse_timestamp(text: &str) -> Option<i64> {
    let b = text.as_bytes();
    if b.len() != 24 || b[23] != b'Z' || b[19] != b'.' || !b[20..23].iter().all(u8::is_ascii_digit)
    {
        return None;
    }
    // Byte 23 is ASCII, so 23 is a character boundary.
    let naive = NaiveDateTime::parse_from_str(&text[..23], "%Y-%m-%dT%H:%M:%S%.3f").ok()?;
    Some(naive.and_utc().timestamp_millis())
}

/// Request parameters: the query of a GET, the JSON object body of a POST.
struct Params {
    values: Map<String, Value>,
}

impl Params {
    fn from_query(query: &str) -> Result<Params, ApiError> {
        let mut values = Map::new();
        for (name, value) in form_urlencoded::parse(query.as_bytes()) {
            let name = name.into_owned();
            if values.contains_key(&name) {
                return Err(param_error(&name));
            }
            values.insert(name, Value::String(value.into_owned()));
        }
        Ok(Params { values })
    }

    fn from_json(body: &[u8]) -> Result<Params, ApiError> {
        if body.iter().all(u8::is_ascii_whitespace) {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "50000",
                "Body for POST request cannot be empty.",
            ));
        }
        match serde_json::from_slice::<Value>(body) {
            Ok(Value::Object(values)) => Ok(Params { values }),
            _ => Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "50002",
                "Json data format error",
            )),
        }
    }

    /// A string parameter; missing, null and "" are "not sent"; any other JSON
    /// type is an error.
    fn get(&self, name: &str) -> Result<Option<&str>, ApiError> {
        match self.values.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) if s.is_empty() => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(_) => Err(param_error(name)),
        }
    }

    fn required(&self, name: &str) -> Result<&str, ApiError> {
        self.get(name)?.ok_or_else(|| param_error(name))
    }

    /// A required amount greater than zero.
    fn positive_amount(&self, name: &str) -> Result<Decimal, ApiError> {
        parse_amount(self.required(name)?)
            .filter(|a| *a > Decimal::ZERO)
            .ok_or_else(|| param_error(name))
    }

    /// An optional client id: 1 to 32 ASCII letters and digits.
    fn client_id(&self, name: &str) -> Result<Option<&str>, ApiError> {
        match self.get(name)? {
            None => Ok(None),
            Some(id) if id.len() <= 32 && id.bytes().all(|b| b.is_ascii_alphanumeric()) => {
                Ok(Some(id))
            }
            Some(_) => Err(param_error(name)),
        }
    }
}

/// Assets counted at 1:1 in `totalEq` (the simulator has no prices).
const USD_ASSETS: [&str; 3] = ["USDT", "USDC", "USD"];

/// `GET /api/v5/public/instruments`: the simulator's OKX markets (`instType=SPOT`; any other
/// type lists nothing), in OKX's shape.
fn instruments(sim: &Sim, query: &str) -> Value {
    let spot = query
        .split('&')
        .any(|p| p == "instType=SPOT" || p.is_empty());
    let rows: Vec<Value> = if spot {
        sim.markets()
            .iter()
            .filter(|m| m.venue == VenueKind::Okx)
            .map(|m| {
                let (base, quote) = (&m.base, &m.quote);
                json!({
                    "instType": "SPOT", "instId": m.symbol(), "uly": "", "instFamily": "",
                    "baseCcy": base, "quoteCcy": quote, "settleCcy": "", "ctVal": "", "ctMult": "",
                    "ctValCcy": "", "optType": "", "stk": "", "listTime": "1606468572000", "expTime": "",
                    "lever": "", "tickSz": "0.00000001", "lotSz": "0.00000001", "minSz": "0.00001", "ctType": "",
                    "alias": "", "state": "live", "maxLmtSz": "9999999999", "maxMktSz": "1000000",
                    "maxTwapSz": "", "maxIcebergSz": "", "maxTriggerSz": "", "maxStopSz": "",
                })
            })
            .collect()
    } else {
        vec![]
    };
    ok(rows)
}

/// `GET /api/v5/market/ticker?instId=`: the best bid and ask of one instrument from its book
/// (an empty side is ""), in the shape of OKX's Get ticker. An unlisted instrument is 51001,
/// with HTTP 200 as OKX answers it.
fn ticker(sim: &Sim, query: &str) -> Result<Value, ApiError> {
    let params = Params::from_query(query)?;
    let inst_id = params.required("instId")?;
    let state = sim.lock();
    let Some(m) = state.market(VenueKind::Okx, inst_id) else {
        return Err(failed(
            "51001",
            "Instrument ID, Instrument ID code, or Spread ID doesn't exist.",
        ));
    };
    let side = |l: Option<&crate::Level>| match l {
        Some(l) => (plain(l.price), plain(l.quantity)),
        None => (String::new(), String::new()),
    };
    let (bid_px, bid_sz) = side(m.bids.first());
    let (ask_px, ask_sz) = side(m.asks.first());
    let mid = match (m.bids.first(), m.asks.first()) {
        (Some(b), Some(a)) => plain((b.price + a.price) / Decimal::TWO),
        _ => String::new(),
    };
    let last = state
        .last_price(VenueKind::Okx, inst_id)
        .map(plain)
        .unwrap_or(mid);
    Ok(ok(vec![json!({
        "instType": "SPOT", "instId": m.symbol(), "last": last, "lastSz": "0",
        "askPx": ask_px, "askSz": ask_sz, "bidPx": bid_px, "bidSz": bid_sz,
        "open24h": last, "high24h": last, "low24h": last, "volCcy24h": "0", "vol24h": "0",
        "sodUtc0": last, "sodUtc8": last, "ts": now_ms().to_string(),
    })]))
}

/// `GET /api/v5/asset/currencies`: each asset the account holds, on one chain.
fn currencies(sim: &Sim, caller: &Caller) -> Value {
    let rows: Vec<Value> = sim
        .lock()
        .balances(&caller.api_key)
        .into_keys()
        .map(|asset| {
            json!({
                "ccy": asset, "name": asset, "logoLink": "", "chain": format!("{asset}-ERC20"),
                "canDep": true, "canWd": true, "canInternal": true, "minDep": "0.00000001",
                "minWd": "0.00000001", "maxWd": "100000000", "wdTickSz": "8", "wdQuota": "100000000",
                "usedWdQuota": "0", "minFee": "0", "maxFee": "0", "mainNet": false, "needTag": false,
                "minDepArrivalConfirm": "12", "minWdUnlockConfirm": "64",
            })
        })
        .collect();
    ok(rows)
}

fn balance(sim: &Sim, caller: &Caller) -> Result<Value, ApiError> {
    let wanted: Option<BTreeSet<&str>> = caller
        .params
        .get("ccy")?
        .map(|list| list.split(',').collect());
    let holdings = sim.lock().holdings(&caller.api_key);
    let now = now_ms().to_string();
    let held = |free: Decimal, locked: Decimal| free.checked_add(locked).unwrap_or(Decimal::MAX);
    let total: Decimal = holdings
        .iter()
        .filter(|(asset, _)| USD_ASSETS.contains(&asset.as_str()))
        // Checked: a `Decimal` sum panics on overflow.
        .try_fold(Decimal::ZERO, |sum, (_, (free, locked))| {
            sum.checked_add(held(*free, *locked))
        })
        .unwrap_or(Decimal::MAX);
    let details: Vec<Value> = holdings
        .iter()
        .filter(|(asset, _)| wanted.as_ref().is_none_or(|w| w.contains(asset.as_str())))
        .map(|(asset, (free, locked))| {
            json!({
                "ccy": asset,
                "availBal": plain(*free),
                "cashBal": plain(held(*free, *locked)),
                "eq": plain(held(*free, *locked)),
                "frozenBal": plain(*locked),
                "ordFrozen": plain(*locked),
                "uTime": now,
            })
        })
        .collect();
    Ok(ok(vec![json!({
        "totalEq": plain(total),
        "uTime": now,
        "details": details,
    })]))
}

/// `BTC-USDT`: upper-case letters, digits and dashes, 1 to 32 of them.
fn valid_inst_id(inst_id: &str) -> bool {
    (1..=32).contains(&inst_id.len())
        && inst_id
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'-')
}

/// An order type the simulator fills, and how: `limit` rests, `ioc` and `fok` do not, a
/// `market` order walks the book.
fn ord_type(name: &str) -> Result<(OrderType, Execution), ApiError> {
    Ok(match name {
        "limit" => (OrderType::Limit, Execution::Rest),
        "ioc" => (OrderType::Limit, Execution::ImmediateOrCancel),
        "fok" => (OrderType::Limit, Execution::FillOrKill),
        "market" => (OrderType::Market, Execution::ImmediateOrCancel),
        _ => return Err(param_error("ordType")),
    })
}

/// A spot market order's `sz` is in the quote asset when `tgtCcy` is `quote_ccy`, the default
/// for a buy, and in the base asset when `base_ccy`, the default for a sell.
fn market_in_quote(p: &Params, side: Side) -> Result<bool, ApiError> {
    match p.get("tgtCcy")? {
        None => Ok(side == Side::Buy),
        Some("quote_ccy") => Ok(true),
        Some("base_ccy") => Ok(false),
        Some(_) => Err(param_error("tgtCcy")),
    }
}

/// A refused order, as OKX answers one: HTTP 200, code "1", the reason in the row's sCode.
fn order_failed(client_id: &str, s_code: &str, s_msg: &str) -> ApiError {
    ApiError::rows(
        "1",
        "All operations failed",
        vec![json!({
            "ordId": "", "clOrdId": client_id, "tag": "", "ts": now_ms().to_string(),
            "sCode": s_code, "sMsg": s_msg,
        })],
    )
}

fn place_order(sim: &Sim, caller: &Caller) -> Result<Value, ApiError> {
    let p = &caller.params;
    let inst_id = p.required("instId")?;
    if !valid_inst_id(inst_id) {
        return Err(param_error("instId"));
    }
    let td_mode = p.required("tdMode")?;
    if !["cash", "cross", "isolated", "spot_isolated"].contains(&td_mode) {
        return Err(param_error("tdMode"));
    }
    let side = match p.required("side")? {
        "buy" => Side::Buy,
        "sell" => Side::Sell,
        _ => return Err(param_error("side")),
    };
    let name = p.required("ordType")?.to_string();
    let (order_type, execution) = ord_type(&name)?;
    let size = p.positive_amount("sz")?;
    let (price, quantity, quote_quantity) = match order_type {
        OrderType::Limit => (Some(p.positive_amount("px")?), size, None),
        // OKX ignores px for market orders.
        OrderType::Market if market_in_quote(p, side)? => (None, Decimal::ZERO, Some(size)),
        OrderType::Market => (None, size, None),
    };
    let client_id = p.client_id("clOrdId")?.unwrap_or_default().to_string();
    let order = NewOrder {
        venue: VenueKind::Okx,
        api_key: caller.api_key.clone(),
        client_order_id: Some(client_id.clone()),
        symbol: inst_id.to_string(),
        side,
        order_type,
        venue_type: name,
        execution,
        quantity,
        quote_quantity,
        price,
        time_in_force: None,
        td_mode: Some(td_mode.to_string()),
    };
    let placed = sim
        .lock()
        .place_order(order, now_ms())
        .map_err(|e| match e {
            PlaceError::DuplicateClientOrderId => failed("51016", "Duplicated clOrdId"),
            PlaceError::UnknownSymbol => failed(
                "51001",
                "Instrument ID, Instrument ID code, or Spread ID doesn't exist.",
            ),
            PlaceError::InsufficientBalance { asset } => order_failed(
                &client_id,
                "51008",
                &format!("Order failed. Insufficient {asset} balance in account."),
            ),
            PlaceError::WouldTake | PlaceError::TooLarge => param_error("sz"),
        })?;
    Ok(ok(vec![json!({
        "ordId": placed.id.to_string(),
        "clOrdId": placed.client_order_id,
        "tag": "",
        "ts": placed.time_ms.to_string(),
        "sCode": "0",
        "sMsg": "Order placed",
    })]))
}

fn cancel_order(sim: &Sim, caller: &Caller) -> Result<Value, ApiError> {
    let p = &caller.params;
    let inst_id = p.required("instId")?;
    let order_id = p.get("ordId")?;
    let client_id = p.get("clOrdId")?;
    let not_found = || {
        failed(
            "51400",
            "Order cancellation failed as the order has been filled, canceled or does not exist",
        )
    };
    // "If both are passed, ordId will be used."
    let by = match (order_id, client_id) {
        (Some(id), _) => OrderRef::Id(id.parse::<u64>().map_err(|_| not_found())?),
        (None, Some(client)) => OrderRef::ClientId(client),
        (None, None) => return Err(param_error("ordId")),
    };
    let now = now_ms();
    let canceled = sim
        .lock()
        .cancel_order(VenueKind::Okx, &caller.api_key, inst_id, by, now)
        .ok_or_else(not_found)?;
    Ok(ok(vec![json!({
        "ordId": canceled.id.to_string(),
        "clOrdId": canceled.client_order_id,
        "ts": now.to_string(),
        "sCode": "0",
        "sMsg": "",
    })]))
}

fn order_json(order: &Order) -> Value {
    let avg = if order.executed_quantity.is_zero() {
        String::new()
    } else {
        order
            .executed_quote
            .checked_div(order.executed_quantity)
            .map(|p| plain(p.round_dp(8)))
            .unwrap_or_default()
    };
    let last = order.fills.last();
    json!({
        "instType": "SPOT",
        "instId": order.symbol,
        "ordId": order.id.to_string(),
        "clOrdId": order.client_order_id,
        "px": order.price.map(plain).unwrap_or_default(),
        "sz": plain(order.quote_quantity.unwrap_or(order.quantity)),
        "tgtCcy": match (order.order_type, order.quote_quantity) {
            (OrderType::Market, Some(_)) => "quote_ccy",
            (OrderType::Market, None) => "base_ccy",
            (OrderType::Limit, _) => "",
        },
        "side": match order.side { Side::Buy => "buy", Side::Sell => "sell" },
        "ordType": if order.venue_type.is_empty() {
            match order.order_type { OrderType::Limit => "limit", OrderType::Market => "market" }
        } else {
            order.venue_type.as_str()
        },
        "tdMode": order.td_mode.clone().unwrap_or_default(),
        "state": match order.status {
            OrderStatus::New => "live",
            OrderStatus::PartiallyFilled => "partially_filled",
            OrderStatus::Filled => "filled",
            OrderStatus::Canceled | OrderStatus::Expired => "canceled",
        },
        "accFillSz": plain(order.executed_quantity),
        "fillSz": last.map(|f| plain(f.quantity)).unwrap_or_else(|| "0".into()),
        "fillPx": last.map(|f| plain(f.price)).unwrap_or_default(),
        "tradeId": last.map(|f| f.trade_id.to_string()).unwrap_or_default(),
        "avgPx": avg,
        "fee": "0",
        "tag": "",
        "category": "normal",
        "cTime": order.time_ms.to_string(),
        "uTime": order.update_time_ms.to_string(),
    })
}

fn orders_pending(sim: &Sim, caller: &Caller) -> Result<Value, ApiError> {
    let p = &caller.params;
    let inst_type = p.get("instType")?;
    let inst_id = p.get("instId")?;
    let ord_type = p.get("ordType")?;
    let orders = sim.lock().open_orders(VenueKind::Okx, &caller.api_key);
    let data = orders
        .iter()
        .rev()
        .filter(|_| inst_type.is_none_or(|t| t == "SPOT"))
        .filter(|o| inst_id.is_none_or(|i| o.symbol == i))
        .filter(|o| ord_type.is_none_or(|t| o.venue_type == t))
        .map(order_json)
        .collect();
    Ok(ok(data))
}

/// `GET /api/v5/trade/orders-history`: every order of `instType` (only `SPOT` here), newest
/// first, older than the `after` ordId, placed at or after `begin` and at or before `end`, at
/// most `limit` (default and most 100). The simulator keeps every order, not only 7 days.
fn orders_history(sim: &Sim, caller: &Caller) -> Result<Value, ApiError> {
    let p = &caller.params;
    if p.required("instType")? != "SPOT" {
        return Ok(ok(vec![]));
    }
    let num = |name: &str| -> Result<Option<i64>, ApiError> {
        p.get(name)?
            .map(|t| t.parse::<i64>().map_err(|_| param_error(name)))
            .transpose()
    };
    let (after, begin, end) = (num("after")?, num("begin")?, num("end")?);
    let limit = num("limit")?.unwrap_or(100).clamp(1, 100);
    let inst_id = p.get("instId")?;
    let data = sim
        .lock()
        .orders_of(VenueKind::Okx, &caller.api_key)
        .iter()
        .rev()
        .filter(|o| inst_id.is_none_or(|i| o.symbol == i))
        .filter(|o| after.is_none_or(|a| i64::try_from(o.id).is_ok_and(|id| id < a)))
        .filter(|o| begin.is_none_or(|b| o.time_ms >= b))
        .filter(|o| end.is_none_or(|e| o.time_ms <= e))
        .take(usize::try_from(limit).unwrap_or(100))
        .map(order_json)
        .collect();
    Ok(ok(data))
}

fn withdrawal(sim: &Sim, caller: &Caller) -> Result<Value, ApiError> {
    let p = &caller.params;
    let ccy = p.required("ccy")?;
    let amount = p.positive_amount("amt")?;
    let dest = p.required("dest")?;
    if dest != "3" && dest != "4" {
        return Err(param_error("dest"));
    }
    let to_addr = p.required("toAddr")?;
    let chain = p.get("chain")?.map(str::to_string);
    let client_id = p.client_id("clientId")?.map(str::to_string);
    let made = sim
        .lock()
        .withdraw(
            VenueKind::Okx,
            &caller.api_key,
            ccy,
            chain,
            to_addr,
            amount,
            client_id,
            now_ms(),
        )
        .map_err(|e| match e {
            WithdrawError::InsufficientBalance => failed("58350", "Insufficient balance"),
        })?;
    Ok(ok(vec![json!({
        "amt": plain(made.amount),
        "wdId": made.id,
        "ccy": made.coin,
        "clientId": made.client_id.unwrap_or_default(),
        "chain": made.network.unwrap_or_default(),
    })]))
}

fn withdrawal_history(sim: &Sim, caller: &Caller) -> Result<Value, ApiError> {
    let p = &caller.params;
    let ccy = p.get("ccy")?;
    let wd_id = p.get("wdId")?;
    let client_id = p.get("clientId")?;
    let state = p.get("state")?;
    let millis = |name: &str| -> Result<Option<i64>, ApiError> {
        p.get(name)?
            .map(|t| t.parse::<i64>().map_err(|_| param_error(name)))
            .transpose()
    };
    // OKX: `after` returns records earlier than the ts, `before` newer ones.
    let after = millis("after")?;
    let before = millis("before")?;
    let limit = match p.get("limit")? {
        None => 100,
        Some(t) => t
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=100).contains(n))
            .ok_or_else(|| param_error("limit"))?,
    };
    let withdrawals = sim.lock().withdrawals_of(VenueKind::Okx, &caller.api_key);
    let data = withdrawals
        .iter()
        .rev()
        // Every simulated withdrawal succeeds at once: state 2.
        .filter(|_| state.is_none_or(|s| s == "2"))
        .filter(|w| ccy.is_none_or(|c| w.coin == c))
        .filter(|w| wd_id.is_none_or(|i| w.id == i))
        .filter(|w| client_id.is_none_or(|c| w.client_id.as_deref() == Some(c)))
        .filter(|w| after.is_none_or(|a| w.time_ms < a))
        .filter(|w| before.is_none_or(|b| w.time_ms > b))
        .take(limit)
        .map(|w| {
            json!({
                "ccy": w.coin,
                "chain": w.network.clone().unwrap_or_default(),
                "amt": plain(w.amount),
                "ts": w.time_ms.to_string(),
                "toAddr": w.address,
                "txId": fake_tx_id(&w.id),
                "wdId": w.id,
                "state": "2",
                "clientId": w.client_id.clone().unwrap_or_default(),
                "fee": "0",
                "feeCcy": w.coin,
                "areaCodeFrom": "",
                "from": "",
                "to": "",
                "tag": "",
                "pmtId": "",
                "memo": "",
                "addrEx": null,
                "nonTradableAsset": false,
            })
        })
        .collect();
    Ok(ok(data))
}

fn config(caller: &Caller) -> Value {
    let r = &caller.credentials.restrictions;
    let mut perm = Vec::new();
    if r.enable_reading {
        perm.push("read_only");
    }
    if r.enable_spot_and_margin_trading {
        perm.push("trade");
    }
    if r.enable_withdrawals {
        perm.push("withdraw");
    }
    // A stable made-up user id for the key.
    let digest = Sha256::digest(format!("keygate-sim uid {}", caller.api_key).as_bytes());
    let uid = u64::from_be_bytes([
        digest[0], digest[1], digest[2], digest[3], digest[4], digest[5], digest[6], digest[7],
    ]) % 1_000_000_000_000_000;
    ok(vec![json!({
        "uid": uid.to_string(),
        "mainUid": uid.to_string(),
        "acctLv": "1",
        "posMode": "net_mode",
        "autoLoan": false,
        "level": "Lv1",
        "levelTmp": "",
        "perm": perm.join(","),
        "ip": r.ip.join(","),
        "label": "sim",
        "roleType": "0",
        "kycLv": "1",
    })])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::SimConfig;

    #[test]
    fn timestamps_must_be_iso_utc_with_milliseconds() {
        assert_eq!(
            parse_timestamp("2020-12-08T09:08:57.715Z"),
            Some(1_607_418_537_715)
        );
        for bad in [
            "",
            "2020-12-08T09:08:57Z",
            "2020-12-08T09:08:57.71Z",
            "2020-12-08T09:08:57.7150Z",
            "2020-12-08T09:08:57.715+00:00",
            "2020-12-08 09:08:57.715Z",
            "2020-13-08T09:08:57.715Z",
            "2020-12-08T09:08:57.715z",
            "1607418537715",
            "2020-12-08T09:08:57.7é5Z",
            "é020-12-08T09:08:57.715Z",
        ] {
            assert_eq!(parse_timestamp(bad), None, "{bad:?}");
        }
    }

    /// The secret, timestamp and GET pre-hash of the docs' "REST Authentication"
    /// example (OKX prints no resulting sign), computed outside this code with
    /// `printf '%s' '2020-12-08T09:08:57.715ZGET/api/v5/account/balance?ccy=BTC' |
    ///  openssl dgst -sha256 -hmac 22582BD0CFF14C41EDBF1AB98506286D -binary | base64`.
    const KNOWN_SIGN: &str = "HiZhvSfMtWJA3uUIVXV3a/bSXNPCWvYFXoGCVS8V4zY=";

    #[test]
    fn sign_matches_an_independently_computed_value() {
        let secret = "22582BD0CFF14C41EDBF1AB98506286D";
        let ts = "2020-12-08T09:08:57.715Z";
        assert!(sign_matches(
            secret,
            ts,
            "GET",
            "/api/v5/account/balance?ccy=BTC",
            b"",
            KNOWN_SIGN
        ));
        // Without the query, with another method, another secret or a body: no.
        assert!(!sign_matches(
            secret,
            ts,
            "GET",
            "/api/v5/account/balance",
            b"",
            KNOWN_SIGN
        ));
        assert!(!sign_matches(
            secret,
            ts,
            "get",
            "/api/v5/account/balance?ccy=BTC",
            b"",
            KNOWN_SIGN
        ));
        assert!(!sign_matches(
            "other",
            ts,
            "GET",
            "/api/v5/account/balance?ccy=BTC",
            b"",
            KNOWN_SIGN
        ));
        assert!(!sign_matches(
            secret,
            ts,
            "GET",
            "/api/v5/account/balance?ccy=BTC",
            b"{}",
            KNOWN_SIGN
        ));
        assert!(!sign_matches(
            secret,
            ts,
            "GET",
            "/api/v5/account/balance?ccy=BTC",
            b"",
            "not base64!"
        ));
        // The docs' POST pre-hash example, also cross-checked with openssl.
        assert!(sign_matches(
            secret,
            ts,
            "POST",
            "/api/v5/account/set-leverage",
            br#"{"instId":"BTC-USDT","lever":"5","mgnMode":"isolated"}"#,
            "eCnnCgWLjlQ9XnpUkrcny3qNq3WW/81KNrDr/XR6Xv8="
        ));
    }

    #[test]
    fn json_params_must_be_strings() {
        let p =
            Params::from_json(br#"{"sz":"1.5","px":1.5,"reduceOnly":false,"clOrdId":""}"#).unwrap();
        assert_eq!(p.get("sz").unwrap(), Some("1.5"));
        assert_eq!(p.get("px").unwrap_err().code, "51000");
        assert_eq!(p.get("clOrdId").unwrap(), None);
        assert_eq!(p.get("absent").unwrap(), None);
        assert_eq!(p.positive_amount("sz").unwrap(), Decimal::new(15, 1));
        assert_eq!(
            p.required("absent").unwrap_err().msg,
            "Parameter absent error"
        );
        assert_eq!(Params::from_json(b"").err().unwrap().code, "50000");
        assert_eq!(Params::from_json(b"[1]").err().unwrap().code, "50002");
        assert_eq!(Params::from_json(b"{").err().unwrap().code, "50002");
        assert_eq!(Params::from_query("a=1&a=2").err().unwrap().code, "51000");
        let p = Params::from_json(br#"{"clientId":"abc-1","clOrdId":"abc1"}"#).unwrap();
        assert!(p.client_id("clientId").is_err());
        assert_eq!(p.client_id("clOrdId").unwrap(), Some("abc1"));
    }

    #[test]
    fn authenticate_checks_key_passphrase_sign_then_time() {
        let sim = Sim::new(
            SimConfig::from_json(
                r#"{"accounts":[
                    {"venue":"okx","api_key":"ok","secret":"22582BD0CFF14C41EDBF1AB98506286D","passphrase":"pw"},
                    {"venue":"binance","api_key":"bn","secret":"s"}
                ]}"#,
            )
            .unwrap(),
        )
        .unwrap();
        let headers = |key: &str, pass: &str, sign: &str| {
            let mut h = HeaderMap::new();
            h.insert(KEY_HEADER, key.parse().unwrap());
            h.insert(PASSPHRASE_HEADER, pass.parse().unwrap());
            h.insert(SIGN_HEADER, sign.parse().unwrap());
            h.insert(
                TIMESTAMP_HEADER,
                "2020-12-08T09:08:57.715Z".parse().unwrap(),
            );
            h
        };
        let path = "/api/v5/account/balance?ccy=BTC";
        let at = 1_607_418_537_715;
        let run = |h: HeaderMap, now: i64| {
            authenticate(&sim, &Method::GET, path, &h, b"", now).map(|(key, _)| key)
        };
        assert_eq!(run(headers("ok", "pw", KNOWN_SIGN), at).unwrap(), "ok");
        assert_eq!(
            run(headers("ok", "pw", KNOWN_SIGN), at + 30_000).unwrap(),
            "ok"
        );
        let code = |r: Result<String, ApiError>| r.unwrap_err().code;
        assert_eq!(
            code(run(headers("ok", "pw", KNOWN_SIGN), at + 30_001)),
            "50102"
        );
        assert_eq!(
            code(run(headers("ok", "pw", KNOWN_SIGN), at - 30_001)),
            "50102"
        );
        assert_eq!(code(run(headers("nope", "pw", KNOWN_SIGN), at)), "50111");
        assert_eq!(code(run(headers("bn", "pw", KNOWN_SIGN), at)), "50111");
        assert_eq!(code(run(headers("ok", "PW", KNOWN_SIGN), at)), "50105");
        assert_eq!(
            code(run(headers("ok", "pw", "AAAA"), at + 3_600_000)),
            "50113"
        );
        assert_eq!(code(run(HeaderMap::new(), at)), "50111");
    }
}
