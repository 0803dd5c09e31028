//! Binance-style spot (`/api/v3/...`) and SAPI (`/sapi/v1/...`) endpoints, with
//! SIGNED-endpoint authentication written from Binance's "Request Security" /
//! "SIGNED Endpoint security" documentation:
//!
//! - the API key comes in the `X-MBX-APIKEY` header;
//! - `signature` = hex HMAC-SHA256(secret, totalParams), where totalParams is the
//!   query string exactly as sent, directly followed by the body exactly as sent,
//!   without the `signature` parameter (the last parameter of the query, or of the
//!   body). Binance's docs, "SIGNED Endpoint Examples for POST /api/v3/order",
//!   Example 3 (mixed query string and request body; seen in the
//!   binance/binance-spot-api-docs repository, rest-api.md): query
//!   `symbol=LTCBTC&side=BUY&type=LIMIT&timeInForce=GTC`, body
//!   `quantity=1&price=0.1&recvWindow=5000&timestamp=1499827319559`, signed text
//!   `...timeInForce=GTCquantity=1...` -- "There is no & between "GTC" and
//!   "quantity=1"" -- giving
//!   `0fd168b8ddb4876a0358a8d14d0c9f3da0e9b20c5d52b2a00fcf7d1c602f9a77`. The unit
//!   tests check both that example and the all-in-one Example 1;
//! - the signature is hex and, per the docs, not case sensitive;
//! - `timestamp` (ms) and optional `recvWindow` (default 5000, at most 60000):
//!   accepted iff `timestamp < serverTime + 1000 && serverTime - timestamp <=
//!   recvWindow`.
//!
//! Parameters are read from the query and the body together; a parameter sent in
//! both is taken from the query, as the docs say. The signature is checked
//! before the timestamp, so a stale but correctly signed request gets -1021 and a
//! badly signed one gets -1022 whatever its timestamp.
//!
//! Why one file of ~900 lines (plus tests): one file per venue, with every endpoint the simulator
//! answers for Binance as a short handler, so it can be read against Binance's docs in one place.

use std::collections::HashMap;

use axum::Json;
use axum::extract::Request;
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::{TimeZone, Utc};
use hmac::{Hmac, KeyInit, Mac};
use rust_decimal::Decimal;
use serde_json::{Value, json};
use sha2::Sha256;

use crate::config::VenueKind;
use crate::state::{
    Credentials, Order, OrderStatus, OrderType, Side, Sim, WithdrawError, fake_tx_id,
};
use crate::trading::{Execution, NewOrder, OrderRef, PlaceError};
use crate::{now_ms, parse_amount, read_body};

type HmacSha256 = Hmac<Sha256>;

/// The header that carries the API key.
const API_KEY_HEADER: &str = "X-MBX-APIKEY";
/// `recvWindow` when none is sent.
const DEFAULT_RECV_WINDOW_MS: i64 = 5_000;
/// The largest `recvWindow` Binance accepts.
const MAX_RECV_WINDOW_MS: i64 = 60_000;

/// A Binance error: an HTTP status and the JSON body `{"code": .., "msg": ..}`.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct ApiError {
    status: StatusCode,
    code: i64,
    msg: String,
}

impl ApiError {
    fn new(status: StatusCode, code: i64, msg: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            msg: msg.into(),
        }
    }

    fn bad_request(code: i64, msg: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, code, msg)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (
            self.status,
            Json(json!({"code": self.code, "msg": self.msg})),
        )
            .into_response()
    }
}

fn key_format_invalid() -> ApiError {
    ApiError::new(StatusCode::UNAUTHORIZED, -2014, "API-key format invalid.")
}

fn invalid_key() -> ApiError {
    ApiError::new(
        StatusCode::UNAUTHORIZED,
        -2015,
        "Invalid API-key, IP, or permissions for action.",
    )
}

fn bad_signature() -> ApiError {
    ApiError::bad_request(-1022, "Signature for this request is not valid.")
}

fn outside_recv_window() -> ApiError {
    ApiError::bad_request(
        -1021,
        "Timestamp for this request is outside of the recvWindow.",
    )
}

fn mandatory(name: &str) -> ApiError {
    ApiError::bad_request(
        -1102,
        format!("Mandatory parameter '{name}' was not sent, was empty/null, or malformed."),
    )
}

fn not_required(name: &str) -> ApiError {
    ApiError::bad_request(-1106, format!("Parameter '{name}' sent when not required."))
}

fn illegal_characters(name: &str, legal: &str) -> ApiError {
    ApiError::bad_request(
        -1100,
        format!("Illegal characters found in parameter '{name}'; legal range is '{legal}'."),
    )
}

fn insufficient_balance() -> ApiError {
    ApiError::bad_request(
        -2010,
        "Account has insufficient balance for requested action.",
    )
}

/// 404 for a path the simulator does not serve (Binance shape).
pub(crate) fn unknown_path() -> Response {
    (
        StatusCode::NOT_FOUND,
        Json(json!({"code": -1, "msg": "unknown path"})),
    )
        .into_response()
}

/// The endpoints served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Endpoint {
    Ping,
    Time,
    ExchangeInfo,
    BookTicker,
    Coins,
    Account,
    NewOrder,
    CancelOrder,
    OpenOrders,
    AllOrders,
    Withdraw,
    WithdrawHistory,
    ApiRestrictions,
    /// A master account's sub-account endpoint (`crate::subaccount::binance`).
    Sub(crate::subaccount::binance::BinanceSub),
    /// A sub-account key's own sub-account endpoint (`crate::subaccount::binance_sub_key`).
    SubKey(crate::subaccount::binance_sub_key::BinanceSubKey),
}

/// What a key must be allowed to do to call an endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Permission {
    Read,
    Trade,
    Withdraw,
}

impl Endpoint {
    fn route(method: &Method, path: &str) -> Option<Endpoint> {
        if let Some(sub) = crate::subaccount::binance::BinanceSub::route(method.as_str(), path) {
            return Some(Endpoint::Sub(sub));
        }
        if let Some(sub) =
            crate::subaccount::binance_sub_key::BinanceSubKey::route(method.as_str(), path)
        {
            return Some(Endpoint::SubKey(sub));
        }
        Some(match (method.as_str(), path) {
            ("GET", "/api/v3/ping") => Endpoint::Ping,
            ("GET", "/api/v3/time") => Endpoint::Time,
            ("GET", "/api/v3/exchangeInfo") => Endpoint::ExchangeInfo,
            ("GET", "/api/v3/ticker/bookTicker") => Endpoint::BookTicker,
            ("GET", "/sapi/v1/capital/config/getall") => Endpoint::Coins,
            ("GET", "/api/v3/account") => Endpoint::Account,
            ("POST", "/api/v3/order") => Endpoint::NewOrder,
            ("DELETE", "/api/v3/order") => Endpoint::CancelOrder,
            ("GET", "/api/v3/openOrders") => Endpoint::OpenOrders,
            ("GET", "/api/v3/allOrders") => Endpoint::AllOrders,
            ("POST", "/sapi/v1/capital/withdraw/apply") => Endpoint::Withdraw,
            ("GET", "/sapi/v1/capital/withdraw/history") => Endpoint::WithdrawHistory,
            ("GET", "/sapi/v1/account/apiRestrictions") => Endpoint::ApiRestrictions,
            _ => return None,
        })
    }

    fn permission(self) -> Option<Permission> {
        match self {
            Endpoint::Ping | Endpoint::Time | Endpoint::ExchangeInfo | Endpoint::BookTicker => None,
            Endpoint::Coins
            | Endpoint::Account
            | Endpoint::OpenOrders
            | Endpoint::AllOrders
            | Endpoint::WithdrawHistory
            | Endpoint::ApiRestrictions
            | Endpoint::Sub(_)
            | Endpoint::SubKey(_) => Some(Permission::Read),
            Endpoint::NewOrder | Endpoint::CancelOrder => Some(Permission::Trade),
            Endpoint::Withdraw => Some(Permission::Withdraw),
        }
    }
}

/// Serves one request under `/api/v3/` or `/sapi/v1/`.
pub(crate) async fn handle(sim: &Sim, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let Some(endpoint) = Endpoint::route(&parts.method, parts.uri.path()) else {
        return unknown_path();
    };
    match endpoint {
        Endpoint::Ping => return Json(json!({})).into_response(),
        Endpoint::Time => return Json(json!({"serverTime": now_ms()})).into_response(),
        Endpoint::ExchangeInfo => return Json(exchange_info(sim)).into_response(),
        Endpoint::BookTicker => {
            return match book_ticker(sim, parts.uri.query().unwrap_or("")) {
                Ok(value) => Json(value).into_response(),
                Err(e) => e.into_response(),
            };
        }
        _ => {}
    }
    let body = match read_body(&parts.headers, body).await {
        Ok(body) => body,
        Err(e) => return ApiError::new(e.status(), -1, e.message()).into_response(),
    };
    let query = parts.uri.query().unwrap_or("");
    match signed(sim, endpoint, &parts.headers, query, &body) {
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

fn signed(
    sim: &Sim,
    endpoint: Endpoint,
    headers: &HeaderMap,
    query: &str,
    body: &[u8],
) -> Result<Value, ApiError> {
    let caller = authenticate(sim, headers, query, body, now_ms())?;
    let r = &caller.credentials.restrictions;
    let allowed = match endpoint.permission() {
        None => true,
        Some(Permission::Read) => r.enable_reading,
        Some(Permission::Trade) => r.enable_spot_and_margin_trading,
        Some(Permission::Withdraw) => r.enable_withdrawals,
    };
    if !allowed {
        return Err(invalid_key());
    }
    match endpoint {
        Endpoint::Ping | Endpoint::Time | Endpoint::ExchangeInfo | Endpoint::BookTicker => {
            Ok(json!({}))
        }
        Endpoint::Coins => Ok(coins(sim, &caller)),
        Endpoint::Account => Ok(account(sim, &caller)),
        Endpoint::NewOrder => new_order(sim, &caller),
        Endpoint::CancelOrder => cancel_order(sim, &caller),
        Endpoint::OpenOrders => Ok(open_orders(sim, &caller)),
        Endpoint::AllOrders => all_orders(sim, &caller),
        Endpoint::Withdraw => withdraw(sim, &caller),
        Endpoint::WithdrawHistory => withdraw_history(sim, &caller),
        Endpoint::ApiRestrictions => Ok(api_restrictions(sim, &caller)),
        Endpoint::Sub(sub) => crate::subaccount::binance::handle(
            sim,
            sub,
            &caller.api_key,
            &caller.credentials,
            &caller.params.values,
        )
        .map_err(|(status, code, msg)| ApiError::new(status, code, msg)),
        Endpoint::SubKey(sub) => crate::subaccount::binance_sub_key::handle(
            sim,
            sub,
            &caller.api_key,
            &caller.credentials,
            &caller.params.values,
        )
        .map_err(|(status, code, msg)| ApiError::new(status, code, msg)),
    }
}

/// Checks the key, the signature and then the timestamp.
fn authenticate(
    sim: &Sim,
    headers: &HeaderMap,
    query: &str,
    body: &[u8],
    server_ms: i64,
) -> Result<Caller, ApiError> {
    let api_key = headers
        .get(API_KEY_HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|k| !k.is_empty())
        .ok_or_else(key_format_invalid)?;
    let credentials = sim
        .credentials(VenueKind::Binance, api_key)
        .ok_or_else(invalid_key)?;
    let params = Params::parse(query, body)?;
    if params.get("signature").is_none() {
        return Err(mandatory("signature"));
    }
    // A signature that is not the last parameter of the query or of the body
    // cannot be cut out of totalParams, so the request cannot verify.
    let (total_params, signature) = total_params(query, body).ok_or_else(bad_signature)?;
    if !signature_matches(&credentials.secret, &total_params, signature) {
        return Err(bad_signature());
    }
    check_timestamp(&params, server_ms)?;
    Ok(Caller {
        api_key: api_key.to_string(),
        credentials,
        params,
    })
}

/// Splits a request into totalParams (the query string directly followed by the
/// body, both as sent, without the trailing `signature=...` parameter) and the
/// signature. The signature must be the last parameter of the query, or else of
/// the body; `None` when it is neither.
fn total_params<'a>(query: &'a str, body: &'a [u8]) -> Option<(Vec<u8>, &'a str)> {
    fn split_last(text: &[u8]) -> Option<(&[u8], &[u8])> {
        let (head, last) = match text.iter().rposition(|&b| b == b'&') {
            Some(i) => (&text[..i], &text[i + 1..]),
            None => (&text[..0], text),
        };
        last.strip_prefix(b"signature=")
            .map(|signature| (head, signature))
    }
    let (query_part, body_part, signature) =
        if let Some((head, signature)) = split_last(query.as_bytes()) {
            (head, body, signature)
        } else {
            let (head, signature) = split_last(body)?;
            (query.as_bytes(), head, signature)
        };
    let signature = std::str::from_utf8(signature).ok()?;
    let mut message = Vec::with_capacity(query_part.len() + body_part.len());
    message.extend_from_slice(query_part);
    message.extend_from_slice(body_part);
    Some((message, signature))
}

/// Whether `signature_hex` (either case) is HMAC-SHA256(secret, message),
/// compared in constant time.
fn signature_matches(secret: &str, message: &[u8], signature_hex: &str) -> bool {
    let Ok(tag) = hex::decode(signature_hex) else {
        return false;
    };
    let Ok(mut mac) = HmacSha256::new_from_slice(secret.as_bytes()) else {
        return false;
    };
    mac.update(message);
    mac.verify_slice(&tag).is_ok()
}

/// Binance's timing rule (see the module documentation).
fn check_timestamp(params: &Params, server_ms: i64) -> Result<(), ApiError> {
    let timestamp = params
        .get("timestamp")
        .and_then(parse_millis)
        .ok_or_else(|| mandatory("timestamp"))?;
    let recv_window = match params.get("recvWindow") {
        None => Decimal::from(DEFAULT_RECV_WINDOW_MS),
        Some(text) => parse_amount(text).ok_or_else(|| mandatory("recvWindow"))?,
    };
    if recv_window > Decimal::from(MAX_RECV_WINDOW_MS) {
        return Err(ApiError::bad_request(
            -1131,
            "recvWindow must be less than 60000",
        ));
    }
    if within_recv_window(timestamp, server_ms, recv_window) {
        Ok(())
    } else {
        Err(outside_recv_window())
    }
}

fn within_recv_window(timestamp: i64, server_ms: i64, recv_window: Decimal) -> bool {
    timestamp < server_ms.saturating_add(1000)
        && Decimal::from(server_ms.saturating_sub(timestamp)) <= recv_window
}

/// A millisecond count: 1 to 19 digits, nothing else.
fn parse_millis(text: &str) -> Option<i64> {
    if text.is_empty() || text.len() > 19 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

/// The request's parameters, decoded, from the query and the body together.
struct Params {
    values: HashMap<String, String>,
}

impl Params {
    fn parse(query: &str, body: &[u8]) -> Result<Params, ApiError> {
        fn collect(text: &[u8]) -> Result<HashMap<String, String>, ApiError> {
            let mut values = HashMap::new();
            for (name, value) in form_urlencoded::parse(text) {
                if values
                    .insert(name.into_owned(), value.into_owned())
                    .is_some()
                {
                    return Err(ApiError::bad_request(
                        -1101,
                        "Duplicate values for a parameter detected.",
                    ));
                }
            }
            Ok(values)
        }
        let mut values = collect(body)?;
        // A parameter sent in both places is taken from the query.
        values.extend(collect(query.as_bytes())?);
        Ok(Params { values })
    }

    /// A parameter's value; an empty value counts as not sent.
    fn get(&self, name: &str) -> Option<&str> {
        self.values
            .get(name)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }

    fn required(&self, name: &str) -> Result<&str, ApiError> {
        self.get(name).ok_or_else(|| mandatory(name))
    }

    /// An optional amount; malformed is an error.
    fn amount(&self, name: &str) -> Result<Option<Decimal>, ApiError> {
        self.get(name)
            .map(|text| parse_amount(text).ok_or_else(|| mandatory(name)))
            .transpose()
    }

    /// An optional whole number (ids, times, limits); malformed is an error.
    fn number(&self, name: &str) -> Result<Option<i64>, ApiError> {
        self.get(name)
            .map(|text| parse_millis(text).ok_or_else(|| mandatory(name)))
            .transpose()
    }
}

/// Amounts as Binance prints them: eight decimals.
fn fixed8(amount: Decimal) -> String {
    format!("{:.8}", amount.round_dp(8))
}

fn side_name(side: Side) -> &'static str {
    match side {
        Side::Buy => "BUY",
        Side::Sell => "SELL",
    }
}

fn type_name(order: &Order) -> &str {
    if !order.venue_type.is_empty() {
        return &order.venue_type;
    }
    match order.order_type {
        OrderType::Limit => "LIMIT",
        OrderType::Market => "MARKET",
    }
}

fn status_name(status: OrderStatus) -> &'static str {
    match status {
        OrderStatus::New => "NEW",
        OrderStatus::PartiallyFilled => "PARTIALLY_FILLED",
        OrderStatus::Filled => "FILLED",
        OrderStatus::Canceled => "CANCELED",
        OrderStatus::Expired => "EXPIRED",
    }
}

/// The fields every order response shares (Binance's "RESULT" response).
fn order_fields(order: &Order) -> serde_json::Map<String, Value> {
    let value = json!({
        "symbol": order.symbol,
        "orderId": order.id,
        "orderListId": -1,
        "clientOrderId": order.client_order_id,
        "price": fixed8(order.price.unwrap_or(Decimal::ZERO)),
        "origQty": fixed8(order.quantity),
        "executedQty": fixed8(order.executed_quantity),
        "origQuoteOrderQty": fixed8(order.quote_quantity.unwrap_or(Decimal::ZERO)),
        "cummulativeQuoteQty": fixed8(order.executed_quote),
        "status": status_name(order.status),
        "timeInForce": order.time_in_force.as_deref().unwrap_or("GTC"),
        "type": type_name(order),
        "side": side_name(order.side),
        "workingTime": order.time_ms,
        "selfTradePreventionMode": "NONE",
    });
    match value {
        Value::Object(map) => map,
        _ => serde_json::Map::new(),
    }
}

fn account(sim: &Sim, caller: &Caller) -> Value {
    let omit_zero = caller.params.get("omitZeroBalances") == Some("true");
    let balances: Vec<Value> = sim
        .lock()
        .holdings(&caller.api_key)
        .into_iter()
        .filter(|(_, (free, locked))| !(omit_zero && free.is_zero() && locked.is_zero()))
        .map(|(asset, (free, locked))| {
            json!({"asset": asset, "free": fixed8(free), "locked": fixed8(locked)})
        })
        .collect();
    let r = &caller.credentials.restrictions;
    json!({
        "makerCommission": 10,
        "takerCommission": 10,
        "buyerCommission": 0,
        "sellerCommission": 0,
        "canTrade": r.enable_spot_and_margin_trading,
        "canWithdraw": r.enable_withdrawals,
        "canDeposit": true,
        "brokered": false,
        "requireSelfTradePrevention": false,
        "preventSor": false,
        "updateTime": now_ms(),
        "accountType": "SPOT",
        "balances": balances,
        "permissions": ["SPOT"],
        "uid": uid(caller),
    })
}

/// `GET /api/v3/exchangeInfo`: the simulator's Binance markets, in Binance's shape (filters
/// included, so client libraries can round amounts; the simulator enforces none of them).
fn exchange_info(sim: &Sim) -> Value {
    let symbols: Vec<Value> = sim
        .markets()
        .iter()
        .filter(|m| m.venue == VenueKind::Binance)
        .map(|m| {
            let (base, quote) = (&m.base, &m.quote);
            json!({
                "symbol": m.symbol(),
                "status": "TRADING",
                "baseAsset": base,
                "baseAssetPrecision": 8,
                "quoteAsset": quote,
                "quotePrecision": 8,
                "quoteAssetPrecision": 8,
                "baseCommissionPrecision": 8,
                "quoteCommissionPrecision": 8,
                "orderTypes": ["LIMIT", "LIMIT_MAKER", "MARKET", "STOP_LOSS_LIMIT", "TAKE_PROFIT_LIMIT"],
                "icebergAllowed": true,
                "ocoAllowed": true,
                "quoteOrderQtyMarketAllowed": true,
                "allowTrailingStop": true,
                "cancelReplaceAllowed": true,
                "isSpotTradingAllowed": true,
                "isMarginTradingAllowed": false,
                "filters": [
                    {"filterType": "PRICE_FILTER", "minPrice": "0.00000001", "maxPrice": "1000000.00000000", "tickSize": "0.00000001"},
                    {"filterType": "LOT_SIZE", "minQty": "0.00001000", "maxQty": "9000.00000000", "stepSize": "0.00001000"},
                    {"filterType": "NOTIONAL", "minNotional": "5.00000000", "applyMinToMarket": true, "maxNotional": "9000000.00000000", "applyMaxToMarket": false, "avgPriceMins": 5},
                ],
                "permissions": [],
                "permissionSets": [["SPOT"]],
                "defaultSelfTradePreventionMode": "EXPIRE_MAKER",
                "allowedSelfTradePreventionModes": ["EXPIRE_TAKER", "EXPIRE_MAKER", "EXPIRE_BOTH"],
            })
        })
        .collect();
    json!({
        "timezone": "UTC",
        "serverTime": now_ms(),
        "rateLimits": [],
        "exchangeFilters": [],
        "symbols": symbols,
    })
}

/// `GET /sapi/v1/capital/config/getall`: every asset the account holds, with one network
/// (ETH) it can be withdrawn on.
fn coins(sim: &Sim, caller: &Caller) -> Value {
    let rows: Vec<Value> = sim
        .lock()
        .holdings(&caller.api_key)
        .into_iter()
        .map(|(asset, (free, locked))| {
            json!({
                "coin": asset,
                "name": asset,
                "depositAllEnable": true,
                "withdrawAllEnable": true,
                "free": fixed8(free),
                "locked": fixed8(locked),
                "freeze": "0",
                "withdrawing": "0",
                "ipoing": "0",
                "ipoable": "0",
                "storage": "0",
                "isLegalMoney": false,
                "trading": true,
                "networkList": [{
                    "network": "ETH",
                    "coin": asset,
                    "name": "Ethereum (ERC20)",
                    "isDefault": true,
                    "depositEnable": true,
                    "withdrawEnable": true,
                    "withdrawFee": "0",
                    "withdrawMin": "0.00000001",
                    "withdrawMax": "100000000",
                    "withdrawIntegerMultiple": "0.00000001",
                    "minConfirm": 12,
                    "unLockConfirm": 64,
                    "sameAddress": false,
                    "busy": false,
                    "addressRegex": "^(0x)[0-9A-Fa-f]{40}$",
                    "memoRegex": "",
                }],
            })
        })
        .collect();
    Value::Array(rows)
}

/// A stable made-up user id for the account.
fn uid(caller: &Caller) -> u64 {
    10_000_000 + caller.credentials.index as u64
}

/// `^[A-Z0-9-_.]{1,20}$`
fn valid_symbol(symbol: &str) -> bool {
    (1..=20).contains(&symbol.len())
        && symbol
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b"-_.".contains(&b))
}

/// `^[a-zA-Z0-9-_]{1,36}$`
fn valid_client_order_id(id: &str) -> bool {
    (1..=36).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

fn symbol_param(params: &Params) -> Result<String, ApiError> {
    let symbol = params.required("symbol")?;
    if !valid_symbol(symbol) {
        return Err(illegal_characters("symbol", "^[A-Z0-9-_.]{1,20}$"));
    }
    Ok(symbol.to_string())
}

fn client_order_id_param(params: &Params, name: &str) -> Result<Option<String>, ApiError> {
    match params.get(name) {
        None => Ok(None),
        Some(id) if valid_client_order_id(id) => Ok(Some(id.to_string())),
        Some(_) => Err(illegal_characters(name, "^[a-zA-Z0-9-_]{1,36}$")),
    }
}

fn positive(amount: Decimal, what: &str) -> Result<Decimal, ApiError> {
    if amount > Decimal::ZERO {
        Ok(amount)
    } else {
        Err(ApiError::bad_request(-1013, format!("Invalid {what}.")))
    }
}

/// The order types the simulator fills (a subset of Binance's: the triggered types are not
/// served).
fn order_type(name: &str) -> Result<OrderType, ApiError> {
    match name {
        "LIMIT" | "LIMIT_MAKER" => Ok(OrderType::Limit),
        "MARKET" => Ok(OrderType::Market),
        _ => Err(ApiError::bad_request(-1116, "Invalid orderType.")),
    }
}

/// A limit order's size, price and execution. `LIMIT` needs `timeInForce` (`GTC` rests, `IOC`
/// and `FOK` do not); `LIMIT_MAKER` takes none and is refused if it would take.
fn limit_terms(
    p: &Params,
    name: &str,
) -> Result<(Decimal, Decimal, Execution, Option<String>), ApiError> {
    if p.get("quoteOrderQty").is_some() {
        return Err(not_required("quoteOrderQty"));
    }
    let quantity = positive(
        p.amount("quantity")?.ok_or_else(|| mandatory("quantity"))?,
        "quantity",
    )?;
    let price = positive(
        p.amount("price")?.ok_or_else(|| mandatory("price"))?,
        "price",
    )?;
    if name == "LIMIT_MAKER" {
        if p.get("timeInForce").is_some() {
            return Err(not_required("timeInForce"));
        }
        return Ok((quantity, price, Execution::MakerOnly, None));
    }
    let tif = p
        .get("timeInForce")
        .ok_or_else(|| mandatory("timeInForce"))?;
    let execution = match tif {
        "GTC" => Execution::Rest,
        "IOC" => Execution::ImmediateOrCancel,
        "FOK" => Execution::FillOrKill,
        _ => return Err(ApiError::bad_request(-1115, "Invalid timeInForce.")),
    };
    Ok((quantity, price, execution, Some(tif.to_string())))
}

/// A market order's size: exactly one of `quantity` and `quoteOrderQty`.
fn market_terms(p: &Params) -> Result<(Decimal, Option<Decimal>), ApiError> {
    if p.get("price").is_some() {
        return Err(not_required("price"));
    }
    if p.get("timeInForce").is_some() {
        return Err(not_required("timeInForce"));
    }
    match (p.amount("quantity")?, p.amount("quoteOrderQty")?) {
        (Some(q), None) => Ok((positive(q, "quantity")?, None)),
        (None, Some(q)) => Ok((Decimal::ZERO, Some(positive(q, "quantity")?))),
        (Some(_), Some(_)) => Err(not_required("quoteOrderQty")),
        (None, None) => Err(ApiError::bad_request(
            -1102,
            "Param 'quantity' or 'quoteOrderQty' must be sent, but both were empty/null!",
        )),
    }
}

fn place_error(e: PlaceError) -> ApiError {
    match e {
        PlaceError::DuplicateClientOrderId => ApiError::bad_request(-2010, "Duplicate order sent."),
        PlaceError::UnknownSymbol => ApiError::bad_request(-1121, "Invalid symbol."),
        PlaceError::InsufficientBalance { .. } => insufficient_balance(),
        PlaceError::WouldTake => {
            ApiError::bad_request(-2010, "Order would immediately match and take.")
        }
        PlaceError::TooLarge => ApiError::bad_request(-1013, "Invalid quantity."),
    }
}

/// `POST /api/v3/order`: fills at the symbol's book at once; answers in the
/// `newOrderRespType` asked (`ACK`, `RESULT`, `FULL`; `MARKET` and `LIMIT` default to `FULL`,
/// others to `ACK`, as the docs say).
fn new_order(sim: &Sim, caller: &Caller) -> Result<Value, ApiError> {
    let p = &caller.params;
    let symbol = symbol_param(p)?;
    let side = match p.required("side")? {
        "BUY" => Side::Buy,
        "SELL" => Side::Sell,
        _ => return Err(ApiError::bad_request(-1117, "Invalid side.")),
    };
    let name = p.required("type")?.to_string();
    let order_type = order_type(&name)?;
    let (quantity, quote_quantity, price, execution, time_in_force) = match order_type {
        OrderType::Limit => {
            let (q, px, execution, tif) = limit_terms(p, &name)?;
            (q, None, Some(px), execution, tif)
        }
        OrderType::Market => {
            let (q, qq) = market_terms(p)?;
            (q, qq, None, Execution::ImmediateOrCancel, None)
        }
    };
    let response = match p.get("newOrderRespType") {
        None if name == "LIMIT" || name == "MARKET" => "FULL",
        None => "ACK",
        Some(r @ ("ACK" | "RESULT" | "FULL")) => r,
        Some(_) => {
            return Err(ApiError::bad_request(
                -1100,
                "Illegal characters found in parameter 'newOrderRespType'; legal range is 'ACK, RESULT, FULL'.",
            ));
        }
    };
    let client_order_id = client_order_id_param(p, "newClientOrderId")?;
    let order = NewOrder {
        venue: VenueKind::Binance,
        api_key: caller.api_key.clone(),
        client_order_id,
        symbol,
        side,
        order_type,
        venue_type: name,
        execution,
        quantity,
        quote_quantity,
        price,
        time_in_force,
        td_mode: None,
    };
    let placed = sim
        .lock()
        .place_order(order, now_ms())
        .map_err(place_error)?;
    Ok(order_response(&placed, response, sim))
}

/// The answer to a new order, in the response type asked.
fn order_response(placed: &Order, response: &str, sim: &Sim) -> Value {
    if response == "ACK" {
        return json!({
            "symbol": placed.symbol,
            "orderId": placed.id,
            "orderListId": -1,
            "clientOrderId": placed.client_order_id,
            "transactTime": placed.time_ms,
        });
    }
    let mut fields = order_fields(placed);
    fields.insert("transactTime".into(), json!(placed.time_ms));
    if response == "FULL" {
        // No fees in the simulator: commission 0, in the asset received.
        let received = {
            let state = sim.lock();
            state
                .market(VenueKind::Binance, &placed.symbol)
                .map(|m| match placed.side {
                    Side::Buy => m.base.clone(),
                    Side::Sell => m.quote.clone(),
                })
                .unwrap_or_default()
        };
        let fills: Vec<Value> = placed
            .fills
            .iter()
            .map(|f| {
                json!({
                    "price": fixed8(f.price),
                    "qty": fixed8(f.quantity),
                    "commission": fixed8(Decimal::ZERO),
                    "commissionAsset": received,
                    "tradeId": f.trade_id,
                })
            })
            .collect();
        fields.insert("fills".into(), Value::Array(fills));
    }
    Value::Object(fields)
}

/// `GET /api/v3/ticker/bookTicker`: the best bid and ask of one symbol (`symbol=`), or of every
/// symbol as an array; an empty side shows zeros. An unlisted symbol is -1121.
fn book_ticker(sim: &Sim, query: &str) -> Result<Value, ApiError> {
    let mut symbol = None;
    for (name, value) in form_urlencoded::parse(query.as_bytes()) {
        match name.as_ref() {
            "symbol" if symbol.is_none() => symbol = Some(value.into_owned()),
            "symbol" => {
                return Err(ApiError::bad_request(
                    -1101,
                    "Duplicate values for a parameter detected.",
                ));
            }
            "symbols" | "symbolStatus" => return Err(not_required(&name)),
            _ => {}
        }
    }
    let row = |m: &crate::Market| {
        let zero = crate::Level::new(Decimal::ZERO, Decimal::ZERO);
        let bid = m.bids.first().copied().unwrap_or(zero);
        let ask = m.asks.first().copied().unwrap_or(zero);
        json!({
            "symbol": m.symbol(),
            "bidPrice": fixed8(bid.price),
            "bidQty": fixed8(bid.quantity),
            "askPrice": fixed8(ask.price),
            "askQty": fixed8(ask.quantity),
        })
    };
    let state = sim.lock();
    match symbol {
        Some(s) => state
            .market(VenueKind::Binance, &s)
            .map(row)
            .ok_or_else(|| ApiError::bad_request(-1121, "Invalid symbol.")),
        None => Ok(Value::Array(
            state
                .markets
                .iter()
                .filter(|m| m.venue == VenueKind::Binance)
                .map(row)
                .collect(),
        )),
    }
}

fn cancel_order(sim: &Sim, caller: &Caller) -> Result<Value, ApiError> {
    let p = &caller.params;
    let symbol = symbol_param(p)?;
    let order_id = p.number("orderId")?;
    let client_id = p.get("origClientOrderId");
    let by = match (order_id, client_id) {
        (Some(id), None) => OrderRef::Id(id as u64),
        (None, Some(client)) => OrderRef::ClientId(client),
        (Some(id), Some(client)) => OrderRef::Both(id as u64, client),
        (None, None) => {
            return Err(ApiError::bad_request(
                -1102,
                "Param 'origClientOrderId' or 'orderId' must be sent, but both were empty/null!",
            ));
        }
    };
    let cancel_id = client_order_id_param(p, "newClientOrderId")?;
    let now = now_ms();
    let canceled = sim
        .lock()
        .cancel_order(VenueKind::Binance, &caller.api_key, &symbol, by, now)
        .ok_or_else(|| ApiError::bad_request(-2011, "Unknown order sent."))?;
    let mut fields = order_fields(&canceled);
    fields.insert("origClientOrderId".into(), json!(canceled.client_order_id));
    fields.insert(
        "clientOrderId".into(),
        json!(cancel_id.unwrap_or_else(|| format!("cancel{:019}", canceled.id))),
    );
    fields.insert("transactTime".into(), json!(now));
    Ok(Value::Object(fields))
}

fn open_orders(sim: &Sim, caller: &Caller) -> Value {
    let symbol = caller.params.get("symbol");
    let orders: Vec<Value> = sim
        .lock()
        .open_orders(VenueKind::Binance, &caller.api_key)
        .iter()
        .filter(|o| symbol.is_none_or(|s| o.symbol == s))
        .map(|o| {
            let mut fields = order_fields(o);
            fields.insert("stopPrice".into(), json!(fixed8(Decimal::ZERO)));
            fields.insert("icebergQty".into(), json!(fixed8(Decimal::ZERO)));
            fields.insert("time".into(), json!(o.time_ms));
            fields.insert("updateTime".into(), json!(o.update_time_ms));
            fields.insert("isWorking".into(), json!(true));
            Value::Object(fields)
        })
        .collect();
    Value::Array(orders)
}

/// `GET /api/v3/allOrders` (weight 20): a symbol's orders, every state, ascending by id; from
/// `orderId` on, or placed in `startTime`..`endTime` (at most 24 h apart), at most `limit`
/// (default 500, at most 1000). An unlisted symbol is -1121.
fn all_orders(sim: &Sim, caller: &Caller) -> Result<Value, ApiError> {
    let p = &caller.params;
    let symbol = p.required("symbol")?;
    let from_id = p.number("orderId")?;
    let start = p.number("startTime")?;
    let end = p.number("endTime")?;
    if let (Some(s), Some(e)) = (start, end)
        && e.saturating_sub(s) > 24 * 60 * 60 * 1000
    {
        return Err(ApiError::bad_request(
            -1127,
            "More than 24 hours between startTime and endTime.",
        ));
    }
    let limit = p.number("limit")?.unwrap_or(500).clamp(1, 1000);
    let state = sim.lock();
    if state.market(VenueKind::Binance, symbol).is_none() {
        return Err(ApiError::bad_request(-1121, "Invalid symbol."));
    }
    let mut orders: Vec<Order> = state
        .orders_of(VenueKind::Binance, &caller.api_key)
        .into_iter()
        .filter(|o| o.symbol == symbol)
        .filter(|o| from_id.is_none_or(|id| i64::try_from(o.id).is_ok_and(|oid| oid >= id)))
        .filter(|o| start.is_none_or(|s| o.time_ms >= s))
        .filter(|o| end.is_none_or(|e| o.time_ms <= e))
        .collect();
    orders.sort_by_key(|o| o.id);
    let rows = orders
        .iter()
        .take(usize::try_from(limit).unwrap_or(1000))
        .map(|o| {
            let mut fields = order_fields(o);
            fields.insert("time".into(), json!(o.time_ms));
            fields.insert("updateTime".into(), json!(o.update_time_ms));
            fields.insert("isWorking".into(), json!(o.status.is_open()));
            Value::Object(fields)
        })
        .collect();
    Ok(Value::Array(rows))
}

fn withdraw(sim: &Sim, caller: &Caller) -> Result<Value, ApiError> {
    let p = &caller.params;
    let coin = p.required("coin")?.to_string();
    let address = p.required("address")?.to_string();
    let amount = p.amount("amount")?.ok_or_else(|| mandatory("amount"))?;
    if amount <= Decimal::ZERO {
        return Err(mandatory("amount"));
    }
    let network = p.get("network").map(str::to_string);
    let client_id = p.get("withdrawOrderId").map(str::to_string);
    let withdrawal = sim
        .lock()
        .withdraw(
            VenueKind::Binance,
            &caller.api_key,
            &coin,
            network,
            &address,
            amount,
            client_id,
            now_ms(),
        )
        .map_err(|e| match e {
            WithdrawError::InsufficientBalance => insufficient_balance(),
        })?;
    Ok(json!({"id": withdrawal.id}))
}

/// `YYYY-MM-DD HH:MM:SS` in UTC, as Binance prints withdrawal times.
fn utc_text(ms: i64) -> String {
    match Utc.timestamp_millis_opt(ms).single() {
        Some(t) => t.format("%Y-%m-%d %H:%M:%S").to_string(),
        None => String::new(),
    }
}

fn withdraw_history(sim: &Sim, caller: &Caller) -> Result<Value, ApiError> {
    let p = &caller.params;
    let coin = p.get("coin");
    let client_id = p.get("withdrawOrderId");
    let status = p.number("status")?;
    let start = p.number("startTime")?;
    let end = p.number("endTime")?;
    let offset = p.number("offset")?.unwrap_or(0);
    let limit = p.number("limit")?.unwrap_or(1000).clamp(1, 1000);
    let withdrawals = sim
        .lock()
        .withdrawals_of(VenueKind::Binance, &caller.api_key);
    let items: Vec<Value> = withdrawals
        .iter()
        .rev()
        // Every simulated withdrawal is completed at once: status 6.
        .filter(|_| status.is_none_or(|s| s == 6))
        .filter(|w| coin.is_none_or(|c| w.coin == c))
        .filter(|w| client_id.is_none_or(|c| w.client_id.as_deref() == Some(c)))
        .filter(|w| start.is_none_or(|s| w.time_ms >= s))
        .filter(|w| end.is_none_or(|e| w.time_ms <= e))
        .skip(usize::try_from(offset).unwrap_or(usize::MAX))
        .take(usize::try_from(limit).unwrap_or(1000))
        .map(|w| {
            let mut item = json!({
                "id": w.id,
                "amount": fixed8(w.amount),
                "transactionFee": "0",
                "coin": w.coin,
                "status": 6,
                "address": w.address,
                "txId": fake_tx_id(&w.id),
                "applyTime": utc_text(w.time_ms),
                "network": w.network.clone().unwrap_or_else(|| w.coin.clone()),
                "transferType": 0,
                "info": "",
                "confirmNo": 1,
                "walletType": 0,
                "txKey": "",
                "completeTime": utc_text(w.time_ms),
            });
            if let (Some(client), Value::Object(map)) = (&w.client_id, &mut item) {
                map.insert("withdrawOrderId".into(), json!(client));
            }
            item
        })
        .collect();
    Ok(Value::Array(items))
}

fn api_restrictions(sim: &Sim, caller: &Caller) -> Value {
    let r = &caller.credentials.restrictions;
    let created = sim.started_ms();
    let mut value = json!({
        "ipRestrict": r.ip_restrict,
        "createTime": created,
        "enableInternalTransfer": r.enable_internal_transfer,
        "enableFutures": r.enable_futures,
        "enablePortfolioMarginTrading": false,
        "enableVanillaOptions": false,
        "permitsUniversalTransfer": r.permits_universal_transfer,
        "enableReading": r.enable_reading,
        "enableSpotAndMarginTrading": r.enable_spot_and_margin_trading,
        "enableWithdrawals": r.enable_withdrawals,
        "enableMargin": r.enable_margin,
        "enableFixApiTrade": false,
        "enableFixReadOnly": false,
    });
    // Binance reports when the trading permission of a key without an IP
    // restriction lapses; the simulator says 90 days after it started.
    if r.enable_spot_and_margin_trading
        && let Value::Object(map) = &mut value
    {
        map.insert(
            "tradingAuthorityExpirationTime".into(),
            json!(created + 90 * 24 * 3_600_000),
        );
    }
    value
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::SimConfig;

    const DOC_SECRET: &str = "NhqPtmdSJYdKjVHjA7PZj4Mge3R5YNiP1e3UZjInClVN65XAbvqqM6A7H5fATj0j";
    const DOC_PARAMS: &str = "symbol=LTCBTC&side=BUY&type=LIMIT&timeInForce=GTC&quantity=1&price=0.1&recvWindow=5000&timestamp=1499827319559";
    const DOC_SIGNATURE: &str = "c8db56825ae71d6d79447849e617115f4a920fa2acdcab2b053c4b2838bd6b71";
    const DOC_MIXED_SIGNATURE: &str =
        "0fd168b8ddb4876a0358a8d14d0c9f3da0e9b20c5d52b2a00fcf7d1c602f9a77";

    #[test]
    fn docs_example_1_and_2_all_params_in_one_place() {
        // As a request body.
        let body = format!("{DOC_PARAMS}&signature={DOC_SIGNATURE}");
        let (message, signature) = total_params("", body.as_bytes()).unwrap();
        assert_eq!(message, DOC_PARAMS.as_bytes());
        assert_eq!(signature, DOC_SIGNATURE);
        assert!(signature_matches(DOC_SECRET, &message, signature));

        // As a query string.
        let (message, signature) = total_params(&body, b"").unwrap();
        assert_eq!(message, DOC_PARAMS.as_bytes());
        assert!(signature_matches(DOC_SECRET, &message, signature));

        // Not case sensitive, per the docs.
        assert!(signature_matches(
            DOC_SECRET,
            DOC_PARAMS.as_bytes(),
            &DOC_SIGNATURE.to_uppercase()
        ));
        // Any other secret, text or signature fails.
        assert!(!signature_matches(
            "x",
            DOC_PARAMS.as_bytes(),
            DOC_SIGNATURE
        ));
        assert!(!signature_matches(
            DOC_SECRET,
            b"symbol=LTCBTC&side=SELL",
            DOC_SIGNATURE
        ));
        assert!(!signature_matches(
            DOC_SECRET,
            DOC_PARAMS.as_bytes(),
            &DOC_SIGNATURE[..62]
        ));
        assert!(!signature_matches(DOC_SECRET, DOC_PARAMS.as_bytes(), "zz"));
    }

    #[test]
    fn docs_example_3_mixed_query_and_body_has_no_ampersand_between() {
        let query = "symbol=LTCBTC&side=BUY&type=LIMIT&timeInForce=GTC";
        let body = format!(
            "quantity=1&price=0.1&recvWindow=5000&timestamp=1499827319559&signature={DOC_MIXED_SIGNATURE}"
        );
        let (message, signature) = total_params(query, body.as_bytes()).unwrap();
        assert_eq!(
            message,
            b"symbol=LTCBTC&side=BUY&type=LIMIT&timeInForce=GTCquantity=1&price=0.1&recvWindow=5000&timestamp=1499827319559"
        );
        assert!(signature_matches(DOC_SECRET, &message, signature));
        // The all-in-one signature does not verify the mixed request.
        assert!(!signature_matches(DOC_SECRET, &message, DOC_SIGNATURE));
    }

    #[test]
    fn signature_must_be_last_of_query_or_body() {
        assert_eq!(total_params("a=1&signature=ab&b=2", b""), None);
        assert_eq!(total_params("a=1", b"b=2"), None);
        // Signature last in the query while the body has more parameters.
        let (message, signature) = total_params("a=1&signature=ab", b"b=2").unwrap();
        assert_eq!(message, b"a=1b=2");
        assert_eq!(signature, "ab");
        // Signature alone in the query.
        let (message, _) = total_params("signature=ab", b"b=2").unwrap();
        assert_eq!(message, b"b=2");
        // A parameter that only ends in "signature" is not the signature.
        assert_eq!(total_params("xsignature=ab", b""), None);
    }

    #[test]
    fn timing_rule_matches_the_docs() {
        let window = Decimal::from(5000);
        let server = 1_000_000;
        assert!(within_recv_window(server, server, window));
        assert!(within_recv_window(server - 5000, server, window));
        assert!(!within_recv_window(server - 5001, server, window));
        assert!(within_recv_window(server + 999, server, window));
        assert!(!within_recv_window(server + 1000, server, window));
        assert!(within_recv_window(
            server - 60_000,
            server,
            Decimal::from(60_000)
        ));
        assert!(within_recv_window(
            server - 5001,
            server,
            Decimal::new(50015, 1)
        ));
    }

    fn params(query: &str) -> Params {
        Params::parse(query, b"").unwrap()
    }

    #[test]
    fn check_timestamp_errors() {
        let now = 1_700_000_000_000;
        assert_eq!(
            check_timestamp(&params("timestamp=1700000000000"), now),
            Ok(())
        );
        assert_eq!(
            check_timestamp(&params("timestamp=1699999990000"), now),
            Err(outside_recv_window())
        );
        assert_eq!(
            check_timestamp(&params("timestamp=1699999990000&recvWindow=10000"), now),
            Ok(())
        );
        assert_eq!(
            check_timestamp(&params("timestamp=1700000000000&recvWindow=60001"), now)
                .unwrap_err()
                .code,
            -1131
        );
        for bad in [
            "",
            "timestamp=",
            "timestamp=-5",
            "timestamp=1.5",
            "timestamp=abc",
        ] {
            assert_eq!(
                check_timestamp(&params(bad), now).unwrap_err().code,
                -1102,
                "{bad}"
            );
        }
        assert_eq!(
            check_timestamp(&params("timestamp=1700000000000&recvWindow=x"), now)
                .unwrap_err()
                .code,
            -1102
        );
    }

    #[test]
    fn params_merge_query_over_body_and_refuse_duplicates() {
        let p = Params::parse("a=query&c=%2B1", b"a=body&b=two+words").unwrap();
        assert_eq!(p.get("a"), Some("query"));
        assert_eq!(p.get("b"), Some("two words"));
        assert_eq!(p.get("c"), Some("+1"));
        assert_eq!(p.get("d"), None);
        assert_eq!(Params::parse("a=1&a=2", b"").err().unwrap().code, -1101);
        assert_eq!(Params::parse("", b"a=1&a=2").err().unwrap().code, -1101);
        assert_eq!(params("a=").get("a"), None);
    }

    #[test]
    fn amounts_print_with_eight_decimals() {
        assert_eq!(fixed8(Decimal::ONE), "1.00000000");
        assert_eq!(fixed8(Decimal::new(123456789012, 11)), "1.23456789");
        assert_eq!(fixed8(Decimal::ZERO), "0.00000000");
    }

    #[test]
    fn authenticate_checks_key_then_signature_then_time() {
        let sim = Sim::new(
            SimConfig::from_json(&format!(
                r#"{{"accounts":[
                    {{"venue":"binance","api_key":"doc-key","secret":"{DOC_SECRET}"}},
                    {{"venue":"okx","api_key":"okx-key","secret":"s","passphrase":"p"}}
                ]}}"#
            ))
            .unwrap(),
        )
        .unwrap();
        let headers = |key: &str| {
            let mut h = HeaderMap::new();
            h.insert(API_KEY_HEADER, key.parse().unwrap());
            h
        };
        let body = format!("{DOC_PARAMS}&signature={DOC_SIGNATURE}");
        let at_doc_time = 1_499_827_319_559;

        let caller =
            authenticate(&sim, &headers("doc-key"), "", body.as_bytes(), at_doc_time).unwrap();
        assert_eq!(caller.params.get("symbol"), Some("LTCBTC"));

        let err = |r: Result<Caller, ApiError>| r.err().unwrap().code;
        assert_eq!(
            err(authenticate(
                &sim,
                &HeaderMap::new(),
                "",
                body.as_bytes(),
                at_doc_time
            )),
            -2014
        );
        assert_eq!(
            err(authenticate(
                &sim,
                &headers("other"),
                "",
                body.as_bytes(),
                at_doc_time
            )),
            -2015
        );
        assert_eq!(
            err(authenticate(
                &sim,
                &headers("okx-key"),
                "",
                body.as_bytes(),
                at_doc_time
            )),
            -2015
        );
        // Stale: an hour later.
        assert_eq!(
            err(authenticate(
                &sim,
                &headers("doc-key"),
                "",
                body.as_bytes(),
                at_doc_time + 3_600_000
            )),
            -1021
        );
        // Altered after signing: bad signature, even when also stale.
        let altered = body.replace("quantity=1", "quantity=2");
        assert_eq!(
            err(authenticate(
                &sim,
                &headers("doc-key"),
                "",
                altered.as_bytes(),
                at_doc_time + 3_600_000
            )),
            -1022
        );
        // No signature at all.
        assert_eq!(
            err(authenticate(
                &sim,
                &headers("doc-key"),
                "",
                DOC_PARAMS.as_bytes(),
                at_doc_time
            )),
            -1102
        );
    }
}
