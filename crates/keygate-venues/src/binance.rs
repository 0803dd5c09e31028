//! Binance spot REST: classification and HMAC-SHA256 signing.
//!
//! Signing follows Binance's "SIGNED Endpoint security": the payload is the percent-encoded
//! parameter string (query and body concatenated), `recvWindow` and `timestamp` included; the
//! signature is the lower-case hex HMAC-SHA256 of it under the API secret, sent as the last
//! parameter `signature`, with the API key in the `X-MBX-APIKEY` header. keygate sends GET and
//! DELETE parameters in the query and POST parameters in a form body.

use keygate_core::Action;
use keygate_core::order::{Order, OrderKind, Side};
use keygate_core::outflow::Outflow;
use keygate_core::route::Route;
use rust_decimal::Decimal;

use crate::params::Params;
use crate::{
    AdapterOptions, Classified, ClassifyError, Finding, Forward, Keys, Outgoing, Request, address,
    asset, hmac_sha256, network, positive, request_id, trade_amount,
};

/// Quote assets that split a symbol when the config names none.
pub const DEFAULT_QUOTES: &[&str] = &[
    "USDT", "USDC", "FDUSD", "TUSD", "BUSD", "DAI", "BTC", "ETH", "BNB", "EUR", "TRY", "BRL", "JPY",
];

/// Parameters keygate sets itself when it signs; a bot's own values are dropped.
pub(crate) const SIGNING_PARAMS: [&str; 3] = ["signature", "timestamp", "recvWindow"];

/// Whether keygate sends a request's parameters in a form body (POST and PUT) rather than the
/// query string.
pub(crate) fn form_in_body(method: &str) -> bool {
    method == "POST" || method == "PUT"
}

/// Signed GET endpoints that only read.
const READS: &[(&str, &str)] = &[
    ("/api/v3/account", "account"),
    ("/api/v3/openOrders", "orders.open"),
    ("/api/v3/allOrders", "orders.all"),
    ("/api/v3/order", "order.query"),
    ("/api/v3/myTrades", "trades"),
    ("/sapi/v1/capital/withdraw/history", "withdraw.history"),
    ("/sapi/v1/capital/deposit/hisrec", "deposit.history"),
    ("/sapi/v1/capital/config/getall", "coins"),
    ("/sapi/v1/account/apiRestrictions", "key.restrictions"),
];

/// Public market-data GET endpoints: forwarded unsigned.
const PUBLIC: &[(&str, &str)] = &[
    ("/api/v3/ping", "ping"),
    ("/api/v3/time", "time"),
    ("/api/v3/exchangeInfo", "exchange_info"),
    ("/api/v3/ticker/price", "ticker"),
    ("/api/v3/ticker/bookTicker", "book_ticker"),
    ("/api/v3/depth", "depth"),
];

pub(crate) fn classify(
    opts: &AdapterOptions,
    req: &Request<'_>,
) -> Result<Classified, ClassifyError> {
    let mut params = Params::parse(req.query, "query string")?;
    if !req.body.is_empty() {
        let body = std::str::from_utf8(req.body).map_err(|_| ClassifyError::Malformed {
            what: "form body",
            detail: "not UTF-8".into(),
        })?;
        params.extend(Params::parse(body, "form body")?, "request")?;
    }
    for p in SIGNING_PARAMS {
        params.remove(p);
    }
    let base = |endpoint, action, signed, params| Classified {
        route: Default::default(),
        endpoint,
        method: req.method.to_string(),
        path: req.path.to_string(),
        action,
        asset: None,
        amount: None,
        destination: None,
        order: None,
        request_id: None,
        signed,
        forward: Forward::Form(params),
    };
    match (req.method, req.path) {
        ("GET", path) => {
            if let Some((_, name)) = READS.iter().find(|(p, _)| *p == path) {
                return Ok(base(name, Action::Read, true, params));
            }
            if let Some((_, name)) = PUBLIC.iter().find(|(p, _)| *p == path) {
                return Ok(base(name, Action::Read, false, params));
            }
            if opts.extra_read_paths.iter().any(|p| p == path) {
                return Ok(base("extra_read", Action::Read, true, params));
            }
        }
        ("POST", "/api/v3/order") => {
            let order = new_order(opts, &params)?;
            let amount = trade_amount(&order)?;
            let rid = params
                .get("newClientOrderId")
                .map(|v| request_id("newClientOrderId", v))
                .transpose()?;
            let mut c = base("order.new", Action::Trade, true, params);
            c.asset = Some(order.quote.clone());
            c.amount = amount;
            c.order = Some(order);
            c.request_id = rid;
            return Ok(c);
        }
        ("DELETE", "/api/v3/order") => {
            only(&params, CANCEL_PARAMS, "DELETE /api/v3/order")?;
            need(&params, "symbol", "DELETE /api/v3/order")?;
            if params.get("orderId").is_none() && params.get("origClientOrderId").is_none() {
                return Err(ClassifyError::Missing {
                    name: "orderId",
                    endpoint: "DELETE /api/v3/order (or origClientOrderId)",
                });
            }
            return Ok(base("order.cancel", Action::Cancel, true, params));
        }
        ("DELETE", "/api/v3/openOrders") => {
            only(&params, &["symbol"], "DELETE /api/v3/openOrders")?;
            need(&params, "symbol", "DELETE /api/v3/openOrders")?;
            return Ok(base("orders.cancel_all", Action::Cancel, true, params));
        }
        ("POST", "/sapi/v1/capital/withdraw/apply") => {
            let w = withdrawal(&params)?;
            let mut c = base("withdraw", Action::Withdraw, true, params);
            (c.asset, c.amount, c.destination) = (Some(w.asset), Some(w.amount), Some(w.to));
            c.route = w.route;
            c.request_id = w.request_id;
            return Ok(c);
        }
        _ => {}
    }
    Err(ClassifyError::UnknownEndpoint {
        venue: "binance",
        method: req.method.to_string(),
        path: req.path.to_string(),
    })
}

/// What a withdrawal request says: asset, amount, destination and its route, client id.
struct Withdrawal {
    asset: String,
    amount: Decimal,
    to: String,
    route: Route,
    request_id: Option<String>,
}

/// `POST /sapi/v1/capital/withdraw/apply`, from Binance's Withdraw (USER_DATA):
/// <https://developers.binance.com/docs/wallet/capital/withdraw>. `network` is optional ("if
/// network not send, return with default network of the coin"): without it the route is the
/// venue's default network, which only an address-book entry without a network approves.
/// `addressTag` ("secondary address identifier for coins like XRP, XMR") becomes part of the
/// destination as `address:tag`. `walletType` names the wallet the funds leave (0 spot,
/// 1 funding), not where they go. Binance has no destination-type parameter: a withdrawal to
/// another Binance user's address is settled internally by Binance itself, to that same address.
fn withdrawal(params: &Params) -> Result<Withdrawal, ClassifyError> {
    const EP: &str = "POST /sapi/v1/capital/withdraw/apply";
    only(params, WITHDRAW_PARAMS, EP)?;
    let asset = asset("coin", need(params, "coin", EP)?)?;
    let amount = positive("amount", need(params, "amount", EP)?)?;
    let raw = need(params, "address", EP)?;
    if raw.contains(':') {
        return Err(ClassifyError::Invalid {
            name: "address",
            value: raw.chars().take(40).collect(),
            why: "an address has no ':'; send a tag or memo as addressTag".into(),
        });
    }
    let mut to = address("address", raw)?;
    if let Some(tag) = params.get("addressTag").filter(|t| !t.is_empty()) {
        to = format!("{to}:{}", address("addressTag", tag)?);
    }
    let network = params
        .get("network")
        .filter(|n| !n.is_empty())
        .map(|n| network("network", n))
        .transpose()?;
    if let Some(w) = params.get("walletType")
        && w != "0"
        && w != "1"
    {
        return Err(ClassifyError::Invalid {
            name: "walletType",
            value: w.chars().take(40).collect(),
            why: "0 (spot wallet) or 1 (funding wallet)".into(),
        });
    }
    let request_id = params
        .get("withdrawOrderId")
        .map(|v| request_id("withdrawOrderId", v))
        .transpose()?;
    Ok(Withdrawal {
        asset,
        amount,
        to,
        route: Route::chain(network.as_deref()),
        request_id,
    })
}

fn need<'p>(
    params: &'p Params,
    name: &'static str,
    endpoint: &'static str,
) -> Result<&'p str, ClassifyError> {
    params
        .get(name)
        .filter(|v| !v.is_empty())
        .ok_or(ClassifyError::Missing { name, endpoint })
}

/// Splits `BTCUSDT` into (BTC, USDT) by the configured quote assets.
fn split_symbol(opts: &AdapterOptions, symbol: &str) -> Result<(String, String), ClassifyError> {
    let sym = asset("symbol", symbol)?;
    for q in &opts.quote_assets {
        if let Some(base) = sym.strip_suffix(q.as_str())
            && !base.is_empty()
        {
            return Ok((base.to_string(), q.clone()));
        }
    }
    Err(ClassifyError::Invalid {
        name: "symbol",
        value: symbol.chars().take(40).collect(),
        why: format!(
            "it ends in none of the quote assets keygate knows ({}); add its quote asset to quote_assets in the venue's config",
            opts.quote_assets.join(", ")
        ),
    })
}

/// One order type of `POST /api/v3/order`, from the "additional mandatory parameters based on
/// order type" table of Binance's New order (TRADE):
/// <https://developers.binance.com/docs/binance-spot-api-docs/rest-api/trading-endpoints#new-order-trade>
struct OrderType {
    name: &'static str,
    /// `Limit`: `quantity` and `price`. `Market`: `quantity` (or, for `MARKET` only,
    /// `quoteOrderQty`) and no `price`; `STOP_LOSS` and `TAKE_PROFIT` "execute a MARKET order"
    /// when triggered.
    kind: OrderKind,
    /// Needs `stopPrice` or `trailingDelta`.
    triggered: bool,
    /// Takes `quoteOrderQty` instead of `quantity` (only `MARKET`).
    quote_sized: bool,
}

const ORDER_TYPES: &[OrderType] = &[
    OrderType {
        name: "LIMIT",
        kind: OrderKind::Limit,
        triggered: false,
        quote_sized: false,
    },
    OrderType {
        name: "LIMIT_MAKER",
        kind: OrderKind::Limit,
        triggered: false,
        quote_sized: false,
    },
    OrderType {
        name: "STOP_LOSS_LIMIT",
        kind: OrderKind::Limit,
        triggered: true,
        quote_sized: false,
    },
    OrderType {
        name: "TAKE_PROFIT_LIMIT",
        kind: OrderKind::Limit,
        triggered: true,
        quote_sized: false,
    },
    OrderType {
        name: "MARKET",
        kind: OrderKind::Market,
        triggered: false,
        quote_sized: true,
    },
    OrderType {
        name: "STOP_LOSS",
        kind: OrderKind::Market,
        triggered: true,
        quote_sized: false,
    },
    OrderType {
        name: "TAKE_PROFIT",
        kind: OrderKind::Market,
        triggered: true,
        quote_sized: false,
    },
];

/// The parameters keygate forwards on each value-moving endpoint; anything else is refused, so
/// that nothing reaches the venue that was not part of the decision.
const ORDER_PARAMS: &[&str] = &[
    "symbol",
    "side",
    "type",
    "timeInForce",
    "quantity",
    "quoteOrderQty",
    "price",
    "newClientOrderId",
    "strategyId",
    "strategyType",
    "stopPrice",
    "trailingDelta",
    "icebergQty",
    "newOrderRespType",
    "selfTradePreventionMode",
];
const CANCEL_PARAMS: &[&str] = &[
    "symbol",
    "orderId",
    "origClientOrderId",
    "newClientOrderId",
    "cancelRestrictions",
];
const WITHDRAW_PARAMS: &[&str] = &[
    "coin",
    "withdrawOrderId",
    "network",
    "address",
    "addressTag",
    "amount",
    "transactionFeeFlag",
    "name",
    "walletType",
];

fn only(params: &Params, allowed: &[&str], endpoint: &'static str) -> Result<(), ClassifyError> {
    match params.iter().find(|(n, _)| !allowed.contains(n)) {
        None => Ok(()),
        Some((n, _)) => Err(ClassifyError::Invalid {
            name: "parameter",
            value: n.chars().take(40).collect(),
            why: format!(
                "it is not a parameter keygate knows for {endpoint} (it knows {}); it is refused so that nothing reaches the venue that was not decided",
                allowed.join(", ")
            ),
        }),
    }
}

fn invalid(name: &'static str, value: &str, why: &str) -> ClassifyError {
    ClassifyError::Invalid {
        name,
        value: value.chars().take(40).collect(),
        why: why.to_string(),
    }
}

/// The order a `POST /api/v3/order` places: instrument (the symbol split by the configured quote
/// assets), side, type, and the price and size its type takes. A parameter its type does not
/// take, and that would let the venue read a different size or price than keygate
/// (`quoteOrderQty` on anything but `MARKET`, `price` on a market order), is refused.
fn new_order(opts: &AdapterOptions, params: &Params) -> Result<Order, ClassifyError> {
    const EP: &str = "POST /api/v3/order";
    only(params, ORDER_PARAMS, EP)?;
    let (base, quote) = split_symbol(opts, need(params, "symbol", EP)?)?;
    let side = match need(params, "side", EP)? {
        "BUY" => Side::Buy,
        "SELL" => Side::Sell,
        other => return Err(invalid("side", other, "BUY or SELL")),
    };
    let name = need(params, "type", EP)?;
    let Some(ty) = ORDER_TYPES.iter().find(|t| t.name == name) else {
        let names: Vec<&str> = ORDER_TYPES.iter().map(|t| t.name).collect();
        return Err(invalid(
            "type",
            name,
            &format!("the order types keygate knows are {}", names.join(", ")),
        ));
    };
    if ty.triggered && params.get("stopPrice").is_none() && params.get("trailingDelta").is_none() {
        return Err(ClassifyError::Missing {
            name: "stopPrice",
            endpoint: "POST /api/v3/order of a STOP_LOSS or TAKE_PROFIT type (or trailingDelta)",
        });
    }
    let (price, quantity, quote_quantity) = match ty.kind {
        OrderKind::Limit => {
            if params.get("quoteOrderQty").is_some() {
                return Err(invalid(
                    "quoteOrderQty",
                    name,
                    "only a MARKET order takes quoteOrderQty",
                ));
            }
            let qty = positive("quantity", need(params, "quantity", EP)?)?;
            let price = positive("price", need(params, "price", EP)?)?;
            (Some(price), Some(qty), None)
        }
        OrderKind::Market => {
            let (qty, quote_qty) = market_size(params, ty)?;
            (None, qty, quote_qty)
        }
    };
    Ok(Order {
        symbol: format!("{base}{quote}"),
        base,
        quote,
        side,
        kind: ty.kind,
        venue_type: ty.name.to_string(),
        price,
        quantity,
        quote_quantity,
        reference: None,
    })
}

/// A market order's size: exactly one of `quantity` (base) and `quoteOrderQty` (quote, `MARKET`
/// only), and no `price`.
fn market_size(
    params: &Params,
    ty: &OrderType,
) -> Result<(Option<Decimal>, Option<Decimal>), ClassifyError> {
    if params.get("price").is_some() {
        return Err(invalid("price", ty.name, "a market order takes no price"));
    }
    match (params.get("quantity"), params.get("quoteOrderQty")) {
        (Some(q), None) => Ok((Some(positive("quantity", q)?), None)),
        (None, Some(q)) if ty.quote_sized => Ok((None, Some(positive("quoteOrderQty", q)?))),
        (None, Some(_)) => Err(invalid(
            "quoteOrderQty",
            ty.name,
            "only a MARKET order takes quoteOrderQty; send quantity",
        )),
        (Some(_), Some(_)) | (None, None) if ty.quote_sized => Err(invalid(
            "quantity",
            ty.name,
            "a MARKET order takes exactly one of quantity and quoteOrderQty",
        )),
        (Some(_), Some(_)) => Err(invalid(
            "quoteOrderQty",
            ty.name,
            "only a MARKET order takes quoteOrderQty; send quantity alone",
        )),
        (None, None) => Err(ClassifyError::Missing {
            name: "quantity",
            endpoint: "POST /api/v3/order",
        }),
    }
}

/// The hex signature of a payload: Binance's HMAC scheme.
pub fn signature(secret: &str, payload: &str) -> String {
    hex::encode(hmac_sha256(secret, payload.as_bytes()))
}

pub(crate) fn sign(c: &Classified, keys: &Keys<'_>, now_ms: i64, recv_window_ms: u64) -> Outgoing {
    let mut params = match &c.forward {
        Forward::Form(p) => p.clone(),
        Forward::Json { query, .. } => query.clone(),
    };
    let mut headers = vec![];
    let mut payload;
    if c.signed {
        for p in SIGNING_PARAMS {
            params.remove(p);
        }
        let _ = params.push("recvWindow".into(), recv_window_ms.to_string(), "");
        let _ = params.push("timestamp".into(), now_ms.to_string(), "");
        payload = params.encode();
        let sig = signature(keys.secret, &payload);
        payload.push_str("&signature=");
        payload.push_str(&sig);
        headers.push(("X-MBX-APIKEY", keys.api_key.to_string()));
    } else {
        payload = params.encode();
    }
    if form_in_body(&c.method) {
        headers.push(("Content-Type", "application/x-www-form-urlencoded".into()));
        Outgoing {
            method: c.method.clone(),
            path_and_query: c.path.clone(),
            headers,
            body: payload.into_bytes(),
        }
    } else {
        let path_and_query = if payload.is_empty() {
            c.path.clone()
        } else {
            format!("{}?{payload}", c.path)
        };
        Outgoing {
            method: c.method.clone(),
            path_and_query,
            headers,
            body: vec![],
        }
    }
}

pub(crate) fn internal(endpoint: &'static str, path: &str, params: Params) -> Classified {
    Classified {
        route: Default::default(),
        endpoint,
        method: "GET".into(),
        path: path.into(),
        action: Action::Read,
        asset: None,
        amount: None,
        destination: None,
        order: None,
        request_id: None,
        signed: true,
        forward: Forward::Form(params),
    }
}

/// The most withdrawals one history read returns.
pub(crate) const HISTORY_PAGE: usize = 1000;

/// Withdrawals applied since `since_ms`, `offset` rows in (newest first).
pub(crate) fn history_request(since_ms: i64, offset: usize) -> Classified {
    let mut p = Params::new();
    let _ = p.push("startTime".into(), since_ms.max(0).to_string(), "");
    let _ = p.push("offset".into(), offset.to_string(), "");
    let _ = p.push("limit".into(), HISTORY_PAGE.to_string(), "");
    internal("withdraw.history", "/sapi/v1/capital/withdraw/history", p)
}

pub(crate) fn restrictions_request() -> Classified {
    internal(
        "key.restrictions",
        "/sapi/v1/account/apiRestrictions",
        Params::new(),
    )
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct HistoryRow {
    id: String,
    #[serde(with = "rust_decimal::serde::str")]
    amount: Decimal,
    coin: String,
    address: String,
    #[serde(default)]
    address_tag: Option<String>,
    apply_time: String,
    #[serde(default)]
    withdraw_order_id: Option<String>,
}

pub(crate) fn parse_history(venue: &str, body: &[u8]) -> Result<Vec<Outflow>, String> {
    let rows: Vec<HistoryRow> = serde_json::from_slice(body)
        .map_err(|e| format!("the withdrawal history is not the list Binance documents: {e}"))?;
    rows.into_iter()
        .map(|r| {
            let t = chrono::NaiveDateTime::parse_from_str(&r.apply_time, "%Y-%m-%d %H:%M:%S")
                .map_err(|_| format!("applyTime {:?} is not YYYY-MM-DD HH:MM:SS", r.apply_time))?;
            if r.amount <= Decimal::ZERO {
                return Err(format!(
                    "withdrawal {:?} has amount {}, not a positive amount",
                    r.id, r.amount
                ));
            }
            let mut address = keygate_core::intent::normalize_address(&r.address);
            if let Some(tag) = r.address_tag.filter(|t| !t.is_empty()) {
                address = format!("{address}:{tag}");
            }
            Ok(Outflow {
                venue: venue.to_string(),
                id: r.id,
                asset: r.coin.to_ascii_uppercase(),
                amount: r.amount,
                destination: address,
                at: t.and_utc().timestamp_millis(),
                reference: r.withdraw_order_id.filter(|s| !s.is_empty()),
            })
        })
        .collect()
}

pub(crate) fn parse_restrictions(body: &[u8]) -> Result<Vec<Finding>, String> {
    let v: serde_json::Value = serde_json::from_slice(body)
        .map_err(|e| format!("the key restrictions are not JSON: {e}"))?;
    let flag = |name: &str| v.get(name).and_then(serde_json::Value::as_bool);
    let Some(ip_restrict) = flag("ipRestrict") else {
        return Err(
            "the answer has no ipRestrict field; is this Binance's apiRestrictions?".into(),
        );
    };
    let mut out = vec![];
    let mut note = |unsafe_: bool, text: String| out.push(Finding { unsafe_, text });
    let withdrawals = flag("enableWithdrawals").unwrap_or(true);
    if withdrawals && !ip_restrict {
        note(
            true,
            "withdrawals are enabled and the key is not restricted to IP addresses: anyone holding it can withdraw from anywhere. Restrict it to keygate's egress IPs".into(),
        );
    } else if withdrawals {
        note(
            false,
            "withdrawals are enabled, from restricted IPs only".into(),
        );
    } else {
        note(false, "withdrawals are disabled for this key".into());
    }
    if !ip_restrict {
        note(
            true,
            "the key is not restricted to IP addresses; restrict it to keygate's egress IPs".into(),
        );
    }
    for (field, what) in [
        (
            "enableInternalTransfer",
            "internal transfers between accounts",
        ),
        ("permitsUniversalTransfer", "universal transfers"),
        ("enableMargin", "margin"),
        ("enableFutures", "futures"),
        ("enableVanillaOptions", "options"),
        ("enablePortfolioMarginTrading", "portfolio margin"),
    ] {
        if flag(field) == Some(true) {
            note(
                true,
                format!(
                    "{what} ({field}) is enabled: funds can move by a path keygate does not classify; disable it unless keygate's bots need it"
                ),
            );
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Adapter, VenueKind};

    /// The example key pair printed in Binance's "SIGNED Endpoint Examples for POST
    /// /api/v3/order" (request-security docs).
    const DOC_SECRET: &str = "NhqPtmdSJYdKjVHjA7PZj4Mge3R5YNiP1e3UZjInClVN65XAbvqqM6A7H5fATj0j";
    const DOC_KEY: &str = "vmPUZE6mv9SD5VNHk4HlWFsOr6aKE2zvsw0MuIgwCIPy6utIco14y7Ju91duEh8A";

    fn adapter() -> Adapter {
        Adapter::new(VenueKind::Binance, AdapterOptions::default())
    }

    fn req<'a>(method: &'a str, path: &'a str, query: &'a str, body: &'a str) -> Request<'a> {
        Request {
            method,
            path,
            query,
            body: body.as_bytes(),
        }
    }

    #[test]
    fn documented_examples_byte_for_byte() {
        // Both HMAC examples of the docs: ASCII only, and a symbol of full-width digits.
        assert_eq!(
            signature(
                DOC_SECRET,
                "symbol=LTCBTC&side=BUY&type=LIMIT&timeInForce=GTC&quantity=1&price=0.1&recvWindow=5000&timestamp=1499827319559"
            ),
            "c8db56825ae71d6d79447849e617115f4a920fa2acdcab2b053c4b2838bd6b71"
        );
        let keys = Keys {
            api_key: DOC_KEY,
            secret: DOC_SECRET,
            passphrase: None,
        };
        // The second example through `sign`: keygate sends a POST's parameters in the body,
        // which Binance signs the same way as the query the docs use.
        let mut p = Params::new();
        for (n, v) in [
            ("symbol", "１２３４５６"),
            ("side", "BUY"),
            ("type", "LIMIT"),
            ("timeInForce", "GTC"),
            ("quantity", "1"),
            ("price", "0.1"),
        ] {
            p.push(n.into(), v.into(), "").unwrap();
        }
        let c = Classified {
            route: Default::default(),
            endpoint: "order.new",
            method: "POST".into(),
            path: "/api/v3/order".into(),
            action: Action::Trade,
            asset: None,
            amount: None,
            destination: None,
            order: None,
            request_id: None,
            signed: true,
            forward: Forward::Form(p),
        };
        let out = sign(&c, &keys, 1499827319559, 5000);
        assert_eq!(
            String::from_utf8(out.body).unwrap(),
            "symbol=%EF%BC%91%EF%BC%92%EF%BC%93%EF%BC%94%EF%BC%95%EF%BC%96&side=BUY&type=LIMIT&timeInForce=GTC&quantity=1&price=0.1&recvWindow=5000&timestamp=1499827319559&signature=e1353ec6b14d888f1164ae9af8228a3dbd508bc82eb867db8ab6046442f33ef3"
        );
        assert!(out.headers.contains(&("X-MBX-APIKEY", DOC_KEY.to_string())));
    }

    #[test]
    fn the_ascii_example_through_classify_and_sign() {
        let c = adapter()
            .classify(&req(
                "POST",
                "/api/v3/order",
                "symbol=LTCBTC&side=BUY&type=LIMIT&timeInForce=GTC",
                // A bot's stale timestamp and signature are dropped and set afresh.
                "quantity=1&price=0.1&timestamp=1&signature=00",
            ))
            .unwrap();
        assert_eq!(c.action, Action::Trade);
        assert_eq!(c.asset.as_deref(), Some("BTC"));
        assert_eq!(c.amount, Some(Decimal::new(1, 1)));
        let keys = Keys {
            api_key: DOC_KEY,
            secret: DOC_SECRET,
            passphrase: None,
        };
        let out = sign(&c, &keys, 1499827319559, 5000);
        assert_eq!(out.path_and_query, "/api/v3/order");
        assert_eq!(
            String::from_utf8(out.body).unwrap(),
            "symbol=LTCBTC&side=BUY&type=LIMIT&timeInForce=GTC&quantity=1&price=0.1&recvWindow=5000&timestamp=1499827319559&signature=c8db56825ae71d6d79447849e617115f4a920fa2acdcab2b053c4b2838bd6b71"
        );
    }

    #[test]
    fn orders_are_valued_in_the_quote_asset() {
        let a = adapter();
        let value = |q: &str| {
            let c = a.classify(&req("POST", "/api/v3/order", q, "")).unwrap();
            (c.asset.unwrap(), c.amount.map(|d| d.to_string()))
        };
        let some = |s: &str| Some(s.to_string());
        assert_eq!(
            value("symbol=BTCUSDT&side=BUY&type=LIMIT&quantity=0.5&price=40000"),
            ("USDT".into(), some("20000.0"))
        );
        assert_eq!(
            value("symbol=BTCUSDT&side=BUY&type=MARKET&quoteOrderQty=100"),
            ("USDT".into(), some("100"))
        );
        assert_eq!(
            value("symbol=BTCUSDT&side=SELL&type=MARKET&quoteOrderQty=100"),
            ("USDT".into(), some("100"))
        );
        // A market order sized in the base asset has no notional without the market's price.
        assert_eq!(
            value("symbol=ETHBTC&side=SELL&type=MARKET&quantity=3"),
            ("BTC".into(), None)
        );
        assert_eq!(
            value("symbol=BTCUSDT&side=SELL&type=STOP_LOSS&quantity=3&stopPrice=30000"),
            ("USDT".into(), None)
        );
        // A sell at a price is worth quantity × price too; how far that price is from the
        // market is for the decider, which has the reference price.
        assert_eq!(
            value("symbol=BTCUSDT&side=SELL&type=LIMIT&quantity=100&price=0.0001"),
            ("USDT".into(), some("0.0100"))
        );
        assert_eq!(
            value(
                "symbol=BTCUSDT&side=SELL&type=TAKE_PROFIT_LIMIT&quantity=2&price=50000&stopPrice=49000&timeInForce=GTC"
            ),
            ("USDT".into(), some("100000"))
        );
        // FDUSD is longer than USD-anything else: BTCFDUSD is BTC / FDUSD.
        assert_eq!(
            value("symbol=BTCFDUSD&side=BUY&type=LIMIT_MAKER&quantity=1&price=2"),
            ("FDUSD".into(), some("2"))
        );
        for bad in [
            "symbol=BTCUSDT&side=BUY&type=LIMIT&quantity=-1&price=1",
            "symbol=BTCUSDT&side=BUY&type=LIMIT&quantity=1e3&price=1",
            "symbol=BTCUSDT&side=HOLD&type=LIMIT&quantity=1&price=1",
            "symbol=BTCXYZ&side=BUY&type=LIMIT&quantity=1&price=1",
            "symbol=BTCUSDT&side=BUY&type=LIMIT",
            "symbol=BTCUSDT&side=BUY&type=LIMIT&quantity=1&quantity=2",
            // Parameters that would let the venue read a different value than keygate.
            "symbol=BTCUSDT&side=BUY&type=LIMIT&quantity=1000&price=40000&quoteOrderQty=1",
            "symbol=BTCUSDT&side=BUY&type=MARKET&quantity=100&price=0.00000001",
            "symbol=BTCUSDT&side=BUY&type=MARKET&quantity=1&quoteOrderQty=1",
            "symbol=BTCUSDT&side=BUY&type=market&quantity=1",
            "symbol=BTCUSDT&side=BUY&type=LIMIT&Quantity=1000&quantity=1&price=1",
            // Only MARKET takes quoteOrderQty; the triggered types need their trigger.
            "symbol=BTCUSDT&side=BUY&type=STOP_LOSS&quoteOrderQty=100&stopPrice=1",
            "symbol=BTCUSDT&side=BUY&type=STOP_LOSS&quantity=1",
            "symbol=BTCUSDT&side=BUY&type=STOP_LOSS_LIMIT&quantity=1&price=1",
            // A pegged order's price is the venue's choice: not a parameter keygate knows.
            "symbol=BTCUSDT&side=BUY&type=LIMIT&quantity=1&pegPriceType=PRIMARY_PEG",
            "symbol=BTCUSDT&side=BUY&type=LIMIT&quantity=99999999999999999999&price=99999999999999999999",
        ] {
            assert!(
                a.classify(&req("POST", "/api/v3/order", bad, "")).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn orders_carry_instrument_side_type_price_and_size() {
        let c = adapter()
            .classify(&req(
                "POST",
                "/api/v3/order",
                "symbol=SHITUSDT&side=BUY&type=LIMIT&timeInForce=GTC",
                "quantity=1000000&price=5",
            ))
            .unwrap();
        assert_eq!(c.asset.as_deref(), Some("USDT"));
        assert_eq!(c.amount, Some(Decimal::from(5_000_000)));
        let o = c.order.unwrap();
        assert_eq!(
            (o.symbol.as_str(), o.base.as_str(), o.quote.as_str()),
            ("SHITUSDT", "SHIT", "USDT")
        );
        assert_eq!((o.side, o.kind), (Side::Buy, OrderKind::Limit));
        assert_eq!(o.venue_type, "LIMIT");
        assert_eq!(o.price, Some(Decimal::from(5)));
        assert_eq!(o.quantity, Some(Decimal::from(1_000_000)));
        assert_eq!(o.quote_quantity, None);
        assert_eq!(o.reference, None);
        assert_eq!(o.instrument(), "SHIT/USDT");

        let m = adapter()
            .classify(&req(
                "POST",
                "/api/v3/order",
                "symbol=ethbtc&side=SELL&type=MARKET&quoteOrderQty=0.25",
                "",
            ))
            .unwrap()
            .order
            .unwrap();
        assert_eq!((m.symbol.as_str(), m.side), ("ETHBTC", Side::Sell));
        assert_eq!(
            (m.kind, m.venue_type.as_str()),
            (OrderKind::Market, "MARKET")
        );
        assert_eq!((m.price, m.quantity), (None, None));
        assert_eq!(m.quote_quantity, Some(Decimal::new(25, 2)));
        // Reads, cancels and withdrawals carry no order.
        for (method, path, q) in [
            ("GET", "/api/v3/account", ""),
            ("DELETE", "/api/v3/order", "symbol=BTCUSDT&orderId=1"),
            (
                "POST",
                "/sapi/v1/capital/withdraw/apply",
                "coin=USDT&address=x&amount=1",
            ),
        ] {
            assert_eq!(
                adapter().classify(&req(method, path, q, "")).unwrap().order,
                None
            );
        }
    }

    #[test]
    fn order_endpoints_keygate_does_not_cover_are_unknown() {
        let order = "symbol=BTCUSDT&side=BUY&type=LIMIT&timeInForce=GTC&quantity=1&price=1";
        for (m, p) in [
            ("POST", "/api/v3/order/test"),
            ("POST", "/api/v3/order/oco"),
            ("POST", "/api/v3/orderList/oco"),
            ("POST", "/api/v3/orderList/oto"),
            ("POST", "/api/v3/orderList/otoco"),
            ("POST", "/api/v3/orderList/opo"),
            ("POST", "/api/v3/orderList/opoco"),
            ("POST", "/api/v3/sor/order"),
            ("POST", "/api/v3/sor/order/test"),
            ("POST", "/api/v3/order/cancelReplace"),
            ("PUT", "/api/v3/order/amend/keepPriority"),
            ("POST", "/sapi/v1/margin/order"),
            ("POST", "/sapi/v1/margin/order/oco"),
            ("POST", "/fapi/v1/order"),
            ("POST", "/dapi/v1/order"),
            ("POST", "/eapi/v1/order"),
            ("POST", "/api/v3/order/"),
            ("POST", "/API/V3/ORDER"),
        ] {
            assert!(
                matches!(
                    adapter().classify(&req(m, p, order, "")),
                    Err(ClassifyError::UnknownEndpoint { .. })
                ),
                "{m} {p}"
            );
        }
    }

    #[test]
    fn withdrawals_carry_asset_amount_destination_and_client_id() {
        let c = adapter()
            .classify(&req(
                "POST",
                "/sapi/v1/capital/withdraw/apply",
                "",
                "coin=usdt&network=ETH&address=0xAbC0000000000000000000000000000000000001&amount=72&withdrawOrderId=w-1",
            ))
            .unwrap();
        assert_eq!(c.action, Action::Withdraw);
        assert_eq!(c.asset.as_deref(), Some("USDT"));
        assert_eq!(c.amount, Some(Decimal::from(72)));
        assert_eq!(
            c.destination.as_deref(),
            Some("0xabc0000000000000000000000000000000000001")
        );
        assert_eq!(c.request_id.as_deref(), Some("w-1"));
        let tagged = adapter()
            .classify(&req(
                "POST",
                "/sapi/v1/capital/withdraw/apply",
                "coin=XRP&address=rAddr&addressTag=123&amount=5",
                "",
            ))
            .unwrap();
        assert_eq!(tagged.destination.as_deref(), Some("rAddr:123"));
        assert!(matches!(
            adapter().classify(&req(
                "POST",
                "/sapi/v1/capital/withdraw/apply",
                "coin=USDT&amount=5",
                ""
            )),
            Err(ClassifyError::Missing {
                name: "address",
                ..
            })
        ));
    }

    #[test]
    fn a_withdrawal_names_its_network_and_source_wallet_is_checked() {
        use keygate_core::route::Route;
        let w =
            |q: &str| adapter().classify(&req("POST", "/sapi/v1/capital/withdraw/apply", q, ""));
        let eth = w("coin=USDT&network=ETH&address=0xab&amount=5").unwrap();
        assert_eq!(eth.route, Route::chain(Some("ETH")));
        // No network: the coin's default network, a route of its own.
        let default = w("coin=USDT&address=0xab&amount=5").unwrap();
        assert_eq!(default.route, Route::default());
        let tagged = w("coin=XRP&network=XRP&address=rAddr&addressTag=7&amount=5").unwrap();
        assert_eq!(
            (tagged.destination.as_deref(), &tagged.route),
            (Some("rAddr:7"), &Route::chain(Some("XRP")))
        );
        for (q, name) in [
            (
                "coin=USDT&network=ETH%2FBSC&address=0xab&amount=5",
                "network",
            ),
            ("coin=USDT&address=0xab&amount=5&walletType=2", "walletType"),
        ] {
            match w(q) {
                Err(ClassifyError::Invalid { name: n, .. }) => assert_eq!(n, name, "{q}"),
                other => panic!("{q}: {other:?}"),
            }
        }
        assert!(w("coin=USDT&address=0xab&amount=5&walletType=1").is_ok());
    }

    #[test]
    fn unknown_endpoints_and_methods_are_refused() {
        let a = adapter();
        for (m, p) in [
            ("POST", "/sapi/v1/asset/transfer"),
            ("GET", "/api/v3/order/../account"),
            ("PUT", "/api/v3/order"),
            ("POST", "/api/v3/account"),
        ] {
            assert!(
                matches!(
                    a.classify(&req(m, p, "", "")),
                    Err(ClassifyError::UnknownEndpoint { .. })
                ),
                "{m} {p}"
            );
        }
        let mut opts = AdapterOptions::default();
        opts.extra_read_paths.push("/sapi/v1/margin/account".into());
        let extra = Adapter::new(VenueKind::Binance, opts);
        assert_eq!(
            extra
                .classify(&req("GET", "/sapi/v1/margin/account", "", ""))
                .unwrap()
                .action,
            Action::Read
        );
        assert!(
            extra
                .classify(&req("POST", "/sapi/v1/margin/account", "", ""))
                .is_err()
        );
    }

    #[test]
    fn reads_sign_in_the_query_and_public_ones_not_at_all() {
        let a = adapter();
        let keys = Keys {
            api_key: "k",
            secret: "s",
            passphrase: None,
        };
        let c = a
            .classify(&req("GET", "/api/v3/account", "omitZeroBalances=true", ""))
            .unwrap();
        let out = a.sign(&c, &keys, 1000);
        let expected_payload = "omitZeroBalances=true&recvWindow=5000&timestamp=1000";
        assert_eq!(
            out.path_and_query,
            format!(
                "/api/v3/account?{expected_payload}&signature={}",
                signature("s", expected_payload)
            )
        );
        assert!(out.body.is_empty());
        let t = a.classify(&req("GET", "/api/v3/time", "", "")).unwrap();
        let out = a.sign(&t, &keys, 1000);
        assert_eq!(out.path_and_query, "/api/v3/time");
        assert!(out.headers.is_empty());
    }

    #[test]
    fn history_and_restrictions_parse() {
        let h = br#"[{"id":"b6ae22b3","amount":"72","transactionFee":"1","coin":"USDT","status":6,
            "address":"0xAbC0000000000000000000000000000000000001","txId":"0x1","applyTime":"2023-11-18 16:47:00",
            "network":"ETH","withdrawOrderId":"kg-1"}]"#;
        let rows = adapter().parse_withdrawal_history("v", h).unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].at, 1700326020000);
        assert_eq!(
            rows[0].destination,
            "0xabc0000000000000000000000000000000000001"
        );
        assert_eq!(rows[0].reference.as_deref(), Some("kg-1"));
        assert!(adapter().parse_withdrawal_history("v", b"{}").is_err());
        for amount in ["0", "-72"] {
            let bad = String::from_utf8_lossy(h)
                .replace(r#""amount":"72""#, &format!(r#""amount":"{amount}""#));
            let e = adapter()
                .parse_withdrawal_history("v", bad.as_bytes())
                .unwrap_err();
            assert!(e.to_string().contains("not a positive amount"), "{e}");
        }

        let unsafe_key = br#"{"ipRestrict":false,"enableWithdrawals":true,"enableReading":true,"enableInternalTransfer":true}"#;
        let f = adapter().parse_restrictions(unsafe_key).unwrap();
        assert!(
            f.iter()
                .any(|f| f.unsafe_ && f.text.contains("withdrawals are enabled"))
        );
        assert!(
            f.iter()
                .any(|f| f.unsafe_ && f.text.contains("enableInternalTransfer"))
        );
        let safe_key = br#"{"ipRestrict":true,"enableWithdrawals":false,"enableReading":true}"#;
        assert!(
            adapter()
                .parse_restrictions(safe_key)
                .unwrap()
                .iter()
                .all(|f| !f.unsafe_)
        );
    }

    proptest::proptest! {
        #[test]
        fn classify_never_panics(m in "GET|POST|DELETE", q in "\\PC{0,80}", b in "\\PC{0,80}") {
            let _ = adapter().classify(&req(&m, "/api/v3/order", &q, &b));
            let _ = adapter().classify(&req(&m, "/sapi/v1/capital/withdraw/apply", &q, &b));
        }
    }
}
