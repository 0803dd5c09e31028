//! OKX v5 REST: classification and signing.
//!
//! Signing follows OKX's "REST Authentication": `OK-ACCESS-SIGN` is the base64 HMAC-SHA256,
//! under the API secret, of `timestamp + METHOD + requestPath + body`, where the timestamp is
//! the ISO 8601 UTC time with milliseconds sent in `OK-ACCESS-TIMESTAMP`, requestPath includes
//! the query string, and body is the JSON body ("" for GET). The key and passphrase go in
//! `OK-ACCESS-KEY` and `OK-ACCESS-PASSPHRASE`.

use base64::Engine as _;
use keygate_core::Action;
use keygate_core::order::{Order, OrderKind, Side};
use keygate_core::outflow::Outflow;
use keygate_core::route::{Route, Via};
use rust_decimal::Decimal;
use serde_json::{Map, Value};

use crate::params::Params;
use crate::{
    AdapterOptions, Classified, ClassifyError, Finding, Forward, Keys, Outgoing, Request, address,
    asset, hmac_sha256, network, positive, request_id, trade_amount,
};

/// Signed GET endpoints that only read.
const READS: &[(&str, &str)] = &[
    ("/api/v5/account/balance", "balance"),
    ("/api/v5/account/config", "account.config"),
    ("/api/v5/account/positions", "positions"),
    ("/api/v5/trade/order", "order.query"),
    ("/api/v5/trade/orders-pending", "orders.open"),
    ("/api/v5/trade/orders-history", "orders.history"),
    ("/api/v5/trade/fills", "fills"),
    ("/api/v5/asset/balances", "funding.balance"),
    ("/api/v5/asset/currencies", "currencies"),
    ("/api/v5/asset/withdrawal-history", "withdraw.history"),
    ("/api/v5/asset/deposit-history", "deposit.history"),
];

/// Public GET endpoints: forwarded unsigned.
const PUBLIC: &[(&str, &str)] = &[
    ("/api/v5/public/time", "time"),
    ("/api/v5/public/instruments", "instruments"),
    ("/api/v5/market/ticker", "ticker"),
    ("/api/v5/market/tickers", "tickers"),
    ("/api/v5/market/books", "books"),
];

pub(crate) fn classify(
    opts: &AdapterOptions,
    req: &Request<'_>,
) -> Result<Classified, ClassifyError> {
    let query = Params::parse(req.query, "query string")?;
    let base = |endpoint, action, signed, query, body| Classified {
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
        forward: Forward::Json { query, body },
    };
    match req.method {
        "GET" => {
            if !req.body.is_empty() {
                return Err(ClassifyError::Malformed {
                    what: "request",
                    detail: "a GET carries no body".into(),
                });
            }
            if let Some((_, name)) = READS.iter().find(|(p, _)| *p == req.path) {
                return Ok(base(name, Action::Read, true, query, None));
            }
            if let Some((_, name)) = PUBLIC.iter().find(|(p, _)| *p == req.path) {
                return Ok(base(name, Action::Read, false, query, None));
            }
            if opts.extra_read_paths.iter().any(|p| p == req.path) {
                return Ok(base("extra_read", Action::Read, true, query, None));
            }
        }
        "POST" => {
            let known = matches!(
                req.path,
                "/api/v5/trade/order" | "/api/v5/trade/cancel-order" | "/api/v5/asset/withdrawal"
            );
            if known {
                if !query.is_empty() {
                    return Err(ClassifyError::Malformed {
                        what: "request",
                        detail:
                            "an OKX POST carries its parameters in the JSON body, not the query"
                                .into(),
                    });
                }
                let mut body = json_object(req.body)?;
                // OKX reads an empty string or null as a field not sent; client libraries send
                // many so (python-okx sends every field of the endpoint). They are dropped, so
                // nothing reaches the venue that keygate did not weigh.
                body.retain(|_, v| !(v.is_null() || v.as_str() == Some("")));
                return match req.path {
                    "/api/v5/trade/order" => {
                        only(&body, ORDER_FIELDS, "POST /api/v5/trade/order")?;
                        let order = new_order(&body)?;
                        let amount = trade_amount(&order)?;
                        let rid = opt(&body, "clOrdId")?
                            .map(|v| request_id("clOrdId", v))
                            .transpose()?;
                        let mut c = base("order.new", Action::Trade, true, query, Some(body));
                        c.asset = Some(order.quote.clone());
                        c.amount = amount;
                        c.order = Some(order);
                        c.request_id = rid;
                        Ok(c)
                    }
                    "/api/v5/trade/cancel-order" => {
                        const EP: &str = "POST /api/v5/trade/cancel-order";
                        only(&body, CANCEL_FIELDS, EP)?;
                        need(&body, "instId", EP)?;
                        if opt(&body, "ordId")?.is_none() && opt(&body, "clOrdId")?.is_none() {
                            return Err(ClassifyError::Missing {
                                name: "ordId",
                                endpoint: "POST /api/v5/trade/cancel-order (or clOrdId)",
                            });
                        }
                        Ok(base(
                            "order.cancel",
                            Action::Cancel,
                            true,
                            query,
                            Some(body),
                        ))
                    }
                    _ => {
                        let w = withdrawal(&body)?;
                        let mut c = base("withdraw", Action::Withdraw, true, query, Some(body));
                        (c.asset, c.amount) = (Some(w.asset), Some(w.amount));
                        (c.destination, c.route) = (Some(w.to), w.route);
                        c.request_id = w.request_id;
                        Ok(c)
                    }
                };
            }
        }
        _ => {}
    }
    Err(ClassifyError::UnknownEndpoint {
        venue: "okx",
        method: req.method.to_string(),
        path: req.path.to_string(),
    })
}

/// The fields keygate forwards on each value-moving endpoint; anything else is refused.
const ORDER_FIELDS: &[&str] = &[
    "instId",
    "tdMode",
    "ccy",
    "clOrdId",
    "tag",
    "side",
    "posSide",
    "ordType",
    "sz",
    "px",
    "reduceOnly",
    "tgtCcy",
    "banAmend",
    "stpMode",
];
const CANCEL_FIELDS: &[&str] = &["instId", "ordId", "clOrdId"];
const WITHDRAW_FIELDS: &[&str] = &[
    "ccy",
    "amt",
    "fee",
    "dest",
    "toAddr",
    "toAddrType",
    "chain",
    "areaCode",
    "rcvrInfo",
    "clientId",
];
/// Spot order types that name a price (`px`); `market` takes the book. From the `ordType` of
/// OKX's Place order: <https://www.okx.com/docs-v5/en/#order-book-trading-trade-post-place-order>
/// (`optimal_limit_ioc` is "applicable only to Expiry Futures and Perpetual Futures", `mmp`,
/// `mmp_and_post_only` and `op_fok` only to options, `elp` is OKX's liquidity programme: none is
/// a spot order keygate classifies).
const PRICED_TYPES: &[&str] = &["limit", "post_only", "fok", "ioc"];

fn only(
    body: &Map<String, Value>,
    allowed: &[&str],
    endpoint: &'static str,
) -> Result<(), ClassifyError> {
    match body.keys().find(|k| !allowed.contains(&k.as_str())) {
        None => Ok(()),
        Some(k) => Err(ClassifyError::Invalid {
            name: "field",
            value: k.chars().take(40).collect(),
            why: format!(
                "it is not a field keygate knows for {endpoint} (it knows {}); it is refused so that nothing reaches the venue that was not decided",
                allowed.join(", ")
            ),
        }),
    }
}

fn json_object(body: &[u8]) -> Result<Map<String, Value>, ClassifyError> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(ClassifyError::Malformed {
            what: "JSON body",
            detail: "it must be one JSON object (batch endpoints are not supported)".into(),
        }),
        Err(e) => Err(ClassifyError::Malformed {
            what: "JSON body",
            detail: e.to_string(),
        }),
    }
}

/// A string field; OKX sends every value as a string, and so must the bot.
/// What a withdrawal request says: asset, amount, destination and its route, client id.
struct Withdrawal {
    asset: String,
    amount: Decimal,
    to: String,
    route: Route,
    request_id: Option<String>,
}

/// `POST /api/v5/asset/withdrawal`, from OKX's Withdrawal:
/// <https://www.okx.com/docs-v5/en/#funding-account-rest-api-withdrawal>. `dest` 4 is an
/// on-chain withdrawal to `toAddr` ("some crypto currency addresses are formatted as
/// 'address:tag'") on `chain` (optional: "if the parameter is not filled in, the default will
/// be the main chain"; "apply to on-chain withdrawal"). `dest` 3 is an internal transfer to the
/// OKX account `toAddr` names: a UID when `toAddrType` is 2 ("only applicable for dest=3"), else
/// an e-mail address, a phone number (with `areaCode`: "if toAddr is a phone number, this
/// parameter is required. Apply to internal transfer") or a sub-account's login name.
fn withdrawal(body: &Map<String, Value>) -> Result<Withdrawal, ClassifyError> {
    const EP: &str = "POST /api/v5/asset/withdrawal";
    only(body, WITHDRAW_FIELDS, EP)?;
    let asset = asset("ccy", need(body, "ccy", EP)?)?;
    let amount = positive("amt", need(body, "amt", EP)?)?;
    let dest = need(body, "dest", EP)?;
    let to = address("toAddr", need(body, "toAddr", EP)?)?;
    let route = match dest {
        "4" => on_chain(body)?,
        "3" => internal_transfer(body, &to)?,
        _ => return Err(invalid("dest", dest, "3 (internal) or 4 (on-chain)")),
    };
    let request_id = opt(body, "clientId")?
        .map(|v| request_id("clientId", v))
        .transpose()?;
    Ok(Withdrawal {
        asset,
        amount,
        to,
        route,
        request_id,
    })
}

/// The route of an on-chain withdrawal (`dest` 4): its chain, if named.
fn on_chain(body: &Map<String, Value>) -> Result<Route, ClassifyError> {
    if let Some(t) = opt(body, "toAddrType")?.filter(|t| *t != "1") {
        return Err(invalid(
            "toAddrType",
            t,
            "an on-chain withdrawal (dest 4) goes to a wallet address (toAddrType 1); a UID (2) is for internal transfers (dest 3)",
        ));
    }
    if let Some(a) = opt(body, "areaCode")? {
        return Err(invalid(
            "areaCode",
            a,
            "an area code goes with a phone number, in an internal transfer (dest 3); remove it",
        ));
    }
    let chain = opt(body, "chain")?
        .map(|c| network("chain", c))
        .transpose()?;
    Ok(Route::chain(chain.as_deref()))
}

/// The route of an internal transfer (`dest` 3): which kind of account `to` names.
fn internal_transfer(body: &Map<String, Value>, to: &str) -> Result<Route, ClassifyError> {
    if let Some(c) = opt(body, "chain")? {
        return Err(invalid(
            "chain",
            c,
            "an internal transfer (dest 3) has no chain; the chain applies to on-chain withdrawals (dest 4)",
        ));
    }
    let area = opt(body, "areaCode")?;
    let digits = !to.is_empty() && to.bytes().all(|b| b.is_ascii_digit());
    let via = match (opt(body, "toAddrType")?, area) {
        (Some("2"), None) if digits => Via::Uid,
        (Some("2"), _) => {
            return Err(invalid(
                "toAddr",
                to,
                "with toAddrType 2, toAddr is an OKX UID: digits only, without areaCode",
            ));
        }
        (Some(t), _) if t != "1" => {
            return Err(invalid(
                "toAddrType",
                t,
                "1 (address, e-mail, phone or login name) or 2 (UID)",
            ));
        }
        (_, Some(_)) if digits => Via::Phone,
        (_, Some(a)) => {
            return Err(invalid(
                "areaCode",
                a,
                "an area code goes with a phone number (digits only in toAddr); remove it for an e-mail address or login name",
            ));
        }
        (_, None) if to.contains('@') => Via::Email,
        (_, None) if digits => {
            return Err(ClassifyError::Missing {
                name: "areaCode",
                endpoint: "POST /api/v5/asset/withdrawal to a phone number (for a UID, send toAddrType 2)",
            });
        }
        (_, None) => Via::Account,
    };
    let route = Route {
        via,
        network: None,
        area_code: area.map(str::to_string),
    };
    route
        .check()
        .map_err(|e| invalid("areaCode", area.unwrap_or_default(), &e.to_string()))?;
    Ok(route)
}

fn opt<'m>(
    body: &'m Map<String, Value>,
    name: &'static str,
) -> Result<Option<&'m str>, ClassifyError> {
    match body.get(name) {
        None => Ok(None),
        Some(Value::String(s)) if s.is_empty() => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(other) => Err(ClassifyError::Invalid {
            name,
            value: other.to_string().chars().take(40).collect(),
            why: "OKX takes every parameter as a JSON string".into(),
        }),
    }
}

fn need<'m>(
    body: &'m Map<String, Value>,
    name: &'static str,
    endpoint: &'static str,
) -> Result<&'m str, ClassifyError> {
    opt(body, name)?.ok_or(ClassifyError::Missing { name, endpoint })
}

fn invalid(name: &'static str, value: &str, why: &str) -> ClassifyError {
    ClassifyError::Invalid {
        name,
        value: value.chars().take(40).collect(),
        why: why.to_string(),
    }
}

/// The order a `POST /api/v5/trade/order` places. Spot only: `instId` is `BASE-QUOTE` and
/// `tdMode` is `cash`. A priced type takes `px` and a `sz` in the base asset; `market` takes no
/// `px`, and its `sz` is in the unit `tgtCcy` names ("Only applicable to SPOT Market Orders.
/// Default is quote_ccy for buy, base_ccy for sell").
fn new_order(body: &Map<String, Value>) -> Result<Order, ClassifyError> {
    const EP: &str = "POST /api/v5/trade/order";
    let inst = need(body, "instId", EP)?;
    let parts: Vec<&str> = inst.split('-').collect();
    let [b, q] = parts.as_slice() else {
        return Err(invalid(
            "instId",
            inst,
            "keygate classifies spot orders only (BASE-QUOTE, such as BTC-USDT)",
        ));
    };
    let (base, quote) = (asset("instId", b)?, asset("instId", q)?);
    let side = match need(body, "side", EP)? {
        "buy" => Side::Buy,
        "sell" => Side::Sell,
        other => return Err(invalid("side", other, "buy or sell")),
    };
    let ord_type = need(body, "ordType", EP)?;
    let td_mode = need(body, "tdMode", EP)?;
    if td_mode != "cash" {
        return Err(invalid(
            "tdMode",
            td_mode,
            "keygate classifies spot orders only (tdMode cash); margin borrows",
        ));
    }
    let sz = positive("sz", need(body, "sz", EP)?)?;
    let (kind, price, quantity, quote_quantity) = if ord_type == "market" {
        let (qty, quote_qty) = market_size(body, side, sz)?;
        (OrderKind::Market, None, qty, quote_qty)
    } else if PRICED_TYPES.contains(&ord_type) {
        let px = priced_terms(body)?;
        (OrderKind::Limit, Some(px), Some(sz), None)
    } else {
        let why = if ord_type == "optimal_limit_ioc" {
            "optimal_limit_ioc is for futures and swaps only; keygate classifies spot orders (send market or ioc)".to_string()
        } else {
            format!(
                "the spot order types keygate knows are market, {}",
                PRICED_TYPES.join(", ")
            )
        };
        return Err(invalid("ordType", ord_type, &why));
    };
    Ok(Order {
        symbol: format!("{base}-{quote}"),
        base,
        quote,
        side,
        kind,
        venue_type: ord_type.to_string(),
        price,
        quantity,
        quote_quantity,
        reference: None,
    })
}

/// A spot market order's size: `sz` in the quote asset (`tgtCcy` `quote_ccy`, a buy's default)
/// or in the base asset (`base_ccy`, a sell's default). It takes no `px`.
fn market_size(
    body: &Map<String, Value>,
    side: Side,
    sz: Decimal,
) -> Result<(Option<Decimal>, Option<Decimal>), ClassifyError> {
    if body.contains_key("px") {
        return Err(invalid("px", "market", "a market order takes no px"));
    }
    let in_quote = match opt(body, "tgtCcy")? {
        Some("quote_ccy") => true,
        Some("base_ccy") => false,
        Some(other) => return Err(invalid("tgtCcy", other, "base_ccy or quote_ccy")),
        None => side == Side::Buy,
    };
    Ok(if in_quote {
        (None, Some(sz))
    } else {
        (Some(sz), None)
    })
}

/// A priced order's `px`. Its `sz` is in the base asset; ccxt says so with `tgtCcy` `base_ccy`,
/// which is harmless. `quote_ccy` would make the venue read `sz` differently: refused.
fn priced_terms(body: &Map<String, Value>) -> Result<Decimal, ClassifyError> {
    if let Some(t) = opt(body, "tgtCcy")?
        && t != "base_ccy"
    {
        return Err(invalid(
            "tgtCcy",
            t,
            "only a market order takes tgtCcy quote_ccy; a priced order's sz is in the base asset (base_ccy)",
        ));
    }
    positive("px", need(body, "px", "POST /api/v5/trade/order")?)
}

/// OKX's timestamp format: `2020-12-08T09:08:57.715Z`.
pub fn timestamp(now_ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(now_ms)
        .unwrap_or_default()
        .format("%Y-%m-%dT%H:%M:%S%.3fZ")
        .to_string()
}

/// The base64 signature of one request: OKX's HMAC scheme.
pub fn signature(
    secret: &str,
    timestamp: &str,
    method: &str,
    request_path: &str,
    body: &str,
) -> String {
    let mut pre =
        String::with_capacity(timestamp.len() + method.len() + request_path.len() + body.len());
    pre.push_str(timestamp);
    pre.push_str(method);
    pre.push_str(request_path);
    pre.push_str(body);
    base64::engine::general_purpose::STANDARD.encode(hmac_sha256(secret, pre.as_bytes()))
}

/// A JSON body as keygate sends it: compact, its fields in the order the bot sent them (the
/// workspace's serde_json keeps insertion order).
pub(crate) fn json_body(body: &Map<String, Value>) -> String {
    serde_json::to_string(body).unwrap_or_default()
}

pub(crate) fn sign(c: &Classified, keys: &Keys<'_>, now_ms: i64) -> Outgoing {
    let (query, body) = match &c.forward {
        Forward::Json { query, body } => (query.encode(), body.as_ref()),
        Forward::Form(p) => (p.encode(), None),
    };
    let path_and_query = if query.is_empty() {
        c.path.clone()
    } else {
        format!("{}?{query}", c.path)
    };
    let body = body.map(json_body).unwrap_or_default();
    let mut headers = vec![];
    if !body.is_empty() {
        headers.push(("Content-Type", "application/json".to_string()));
    }
    if c.signed {
        let ts = timestamp(now_ms);
        let sig = signature(keys.secret, &ts, &c.method, &path_and_query, &body);
        headers.push(("OK-ACCESS-KEY", keys.api_key.to_string()));
        headers.push(("OK-ACCESS-SIGN", sig));
        headers.push(("OK-ACCESS-TIMESTAMP", ts));
        headers.push((
            "OK-ACCESS-PASSPHRASE",
            keys.passphrase.unwrap_or_default().to_string(),
        ));
    }
    Outgoing {
        method: c.method.clone(),
        path_and_query,
        headers,
        body: body.into_bytes(),
    }
}

pub(crate) fn internal(endpoint: &'static str, path: &str) -> Classified {
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
        forward: Forward::Json {
            query: Params::new(),
            body: None,
        },
    }
}

/// The most withdrawals one history read returns.
pub(crate) const HISTORY_PAGE: usize = 100;

/// The latest withdrawals, or those before `before_ms` (OKX's `after` cursor is exclusive).
pub(crate) fn history_request(before_ms: Option<i64>) -> Classified {
    let mut c = internal("withdraw.history", "/api/v5/asset/withdrawal-history");
    let mut q = Params::new();
    if let Some(t) = before_ms {
        let _ = q.push("after".into(), t.to_string(), "");
    }
    let _ = q.push("limit".into(), HISTORY_PAGE.to_string(), "");
    c.forward = Forward::Json {
        query: q,
        body: None,
    };
    c
}

pub(crate) fn restrictions_request() -> Classified {
    internal("account.config", "/api/v5/account/config")
}

/// The `data` array of an OKX answer whose `code` is "0".
pub(crate) fn data(body: &[u8]) -> Result<Vec<Value>, String> {
    let v: Value =
        serde_json::from_slice(body).map_err(|e| format!("the answer is not JSON: {e}"))?;
    match v.get("code").and_then(Value::as_str) {
        Some("0") => {}
        Some(code) => {
            let msg = v.get("msg").and_then(Value::as_str).unwrap_or("");
            return Err(format!("OKX answered code {code}: {msg}"));
        }
        None => return Err("the answer has no code; is this OKX's v5 API?".into()),
    }
    match v.get("data") {
        Some(Value::Array(a)) => Ok(a.clone()),
        _ => Err("the answer has no data list".into()),
    }
}

fn field<'v>(row: &'v Value, name: &str) -> Result<&'v str, String> {
    row.get(name)
        .and_then(Value::as_str)
        .ok_or_else(|| format!("a withdrawal has no {name}"))
}

pub(crate) fn parse_history(venue: &str, body: &[u8]) -> Result<Vec<Outflow>, String> {
    data(body)?
        .iter()
        .map(|row| {
            let amount: Decimal = field(row, "amt")?
                .parse()
                .map_err(|_| "a withdrawal's amt is not a decimal".to_string())?;
            if amount <= Decimal::ZERO {
                return Err(format!(
                    "a withdrawal's amt is {amount}, not a positive amount"
                ));
            }
            let time_ms: i64 = field(row, "ts")?
                .parse()
                .map_err(|_| "a withdrawal's ts is not milliseconds".to_string())?;
            Ok(Outflow {
                venue: venue.to_string(),
                id: field(row, "wdId")?.to_string(),
                asset: field(row, "ccy")?.to_ascii_uppercase(),
                amount,
                destination: keygate_core::intent::normalize_address(field(row, "toAddr")?),
                at: time_ms,
                reference: row
                    .get("clientId")
                    .and_then(Value::as_str)
                    .filter(|s| !s.is_empty())
                    .map(str::to_string),
            })
        })
        .collect()
}

pub(crate) fn parse_restrictions(body: &[u8]) -> Result<Vec<Finding>, String> {
    let rows = data(body)?;
    let Some(row) = rows.first() else {
        return Err("the account config is empty".into());
    };
    let perm = row.get("perm").and_then(Value::as_str).unwrap_or("");
    let ip = row.get("ip").and_then(Value::as_str).unwrap_or("");
    let withdraw = perm.split(',').any(|p| p.trim() == "withdraw");
    let mut out = vec![];
    if withdraw && ip.trim().is_empty() {
        out.push(Finding {
            unsafe_: true,
            text: "the key may withdraw and is bound to no IP address: anyone holding it can withdraw from anywhere. Bind it to keygate's egress IPs".into(),
        });
    } else if withdraw {
        out.push(Finding {
            unsafe_: false,
            text: format!("the key may withdraw, from {ip} only"),
        });
    } else {
        out.push(Finding {
            unsafe_: false,
            text: "the key may not withdraw".into(),
        });
    }
    if ip.trim().is_empty() {
        out.push(Finding {
            unsafe_: true,
            text: "the key is bound to no IP address; bind it to keygate's egress IPs".into(),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Adapter, VenueKind};

    /// The example secret key, timestamp and pre-hash strings of OKX's "REST Authentication"
    /// section. OKX prints no resulting signature, so the expected values were computed once
    /// with Python's standard library (hmac, hashlib, base64) from those documented inputs.
    const DOC_SECRET: &str = "22582BD0CFF14C41EDBF1AB98506286D";
    const DOC_TS: &str = "2020-12-08T09:08:57.715Z";

    fn adapter() -> Adapter {
        Adapter::new(VenueKind::Okx, AdapterOptions::default())
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
        assert_eq!(timestamp(1607418537715), DOC_TS);
        assert_eq!(
            signature(
                DOC_SECRET,
                DOC_TS,
                "GET",
                "/api/v5/account/balance?ccy=BTC",
                ""
            ),
            "HiZhvSfMtWJA3uUIVXV3a/bSXNPCWvYFXoGCVS8V4zY="
        );
        assert_eq!(
            signature(
                DOC_SECRET,
                DOC_TS,
                "POST",
                "/api/v5/account/set-leverage",
                r#"{"instId":"BTC-USDT","lever":"5","mgnMode":"isolated"}"#
            ),
            "eCnnCgWLjlQ9XnpUkrcny3qNq3WW/81KNrDr/XR6Xv8="
        );
        // Through classify and sign, the documented GET gives the same request path and sign.
        let a = adapter();
        let c = a
            .classify(&req("GET", "/api/v5/account/balance", "ccy=BTC", ""))
            .unwrap();
        let keys = Keys {
            api_key: "key",
            secret: DOC_SECRET,
            passphrase: Some("pass"),
        };
        let out = a.sign(&c, &keys, 1607418537715);
        assert_eq!(out.path_and_query, "/api/v5/account/balance?ccy=BTC");
        for (h, v) in [
            ("OK-ACCESS-KEY", "key"),
            (
                "OK-ACCESS-SIGN",
                "HiZhvSfMtWJA3uUIVXV3a/bSXNPCWvYFXoGCVS8V4zY=",
            ),
            ("OK-ACCESS-TIMESTAMP", DOC_TS),
            ("OK-ACCESS-PASSPHRASE", "pass"),
        ] {
            assert!(out.headers.contains(&(h, v.to_string())), "{h}");
        }
    }

    #[test]
    fn orders_are_valued_in_the_quote_asset() {
        let a = adapter();
        let value = |b: &str| {
            let c = a
                .classify(&req("POST", "/api/v5/trade/order", "", b))
                .unwrap();
            (c.asset.unwrap(), c.amount.map(|d| d.to_string()))
        };
        let some = |s: &str| Some(s.to_string());
        assert_eq!(
            value(
                r#"{"instId":"BTC-USDT","tdMode":"cash","side":"buy","ordType":"limit","sz":"0.5","px":"40000"}"#
            ),
            ("USDT".into(), some("20000.0"))
        );
        // A market buy's sz is in the quote asset by default, a market sell's in the base.
        assert_eq!(
            value(
                r#"{"instId":"BTC-USDT","tdMode":"cash","side":"buy","ordType":"market","sz":"100"}"#
            ),
            ("USDT".into(), some("100"))
        );
        assert_eq!(
            value(
                r#"{"instId":"BTC-USDT","tdMode":"cash","side":"sell","ordType":"market","sz":"2"}"#
            ),
            ("USDT".into(), None)
        );
        assert_eq!(
            value(
                r#"{"instId":"BTC-USDT","tdMode":"cash","side":"sell","ordType":"market","sz":"2","tgtCcy":"quote_ccy"}"#
            ),
            ("USDT".into(), some("2"))
        );
        assert_eq!(
            value(
                r#"{"instId":"BTC-USDT","tdMode":"cash","side":"buy","ordType":"market","sz":"2","tgtCcy":"base_ccy"}"#
            ),
            ("USDT".into(), None)
        );
        assert_eq!(
            value(
                r#"{"instId":"ETH-BTC","tdMode":"cash","side":"sell","ordType":"post_only","sz":"100","px":"0.0001"}"#
            ),
            ("BTC".into(), some("0.0100"))
        );
        for t in ["fok", "ioc"] {
            let body = format!(
                r#"{{"instId":"BTC-USDT","tdMode":"cash","side":"buy","ordType":"{t}","sz":"2","px":"3"}}"#
            );
            assert_eq!(value(&body), ("USDT".into(), some("6")));
        }
        for bad in [
            r#"{"instId":"BTC-USDT-SWAP","tdMode":"cross","side":"buy","ordType":"limit","sz":"1","px":"1"}"#,
            r#"{"instId":"BTC-USDT","tdMode":"cross","side":"buy","ordType":"limit","sz":"1","px":"1"}"#,
            r#"{"instId":"BTC-USDT","tdMode":"cash","side":"buy","ordType":"optimal_limit_ioc","sz":"1"}"#,
            r#"{"instId":"BTC-USDT","tdMode":"cash","side":"buy","ordType":"elp","sz":"1","px":"1"}"#,
            r#"{"instId":"BTC-USDT","tdMode":"cash","side":"buy","ordType":"market","sz":"1","px":"0.01"}"#,
            r#"{"instId":"BTC-USDT","tdMode":"cash","side":"buy","ordType":"market","sz":"1","tgtCcy":"usd"}"#,
            r#"{"instId":"BTC-USDT","tdMode":"cash","side":"buy","ordType":"limit","sz":"1","px":"1","attachAlgoOrds":[]}"#,
            r#"{"instId":"BTC-USDT","tdMode":"cash","side":"buy","ordType":"limit","sz":1,"px":"1"}"#,
            r#"{"instId":"BTC-USDT","tdMode":"cash","side":"buy","ordType":"limit","sz":"1"}"#,
            // The quote currency an order trades in is its instId's, nothing else.
            r#"{"instId":"BTC-USD","tdMode":"cash","side":"buy","ordType":"limit","sz":"1","px":"1","tradeQuoteCcy":"USDT"}"#,
            r#"{"instId":"BTC-USDT","tdMode":"cash","side":"buy","ordType":"limit","sz":"1","px":"1","pxAmendType":"1"}"#,
            r#"[{"instId":"BTC-USDT"}]"#,
            "not json",
        ] {
            assert!(
                a.classify(&req("POST", "/api/v5/trade/order", "", bad))
                    .is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn orders_carry_instrument_side_type_price_and_size() {
        let a = adapter();
        let order = |b: &str| {
            a.classify(&req("POST", "/api/v5/trade/order", "", b))
                .unwrap()
                .order
                .unwrap()
        };
        let o = order(
            r#"{"instId":"eth-usdt","tdMode":"cash","side":"sell","ordType":"limit","sz":"3","px":"2000.5","clOrdId":"x1"}"#,
        );
        assert_eq!(
            (o.symbol.as_str(), o.base.as_str(), o.quote.as_str()),
            ("ETH-USDT", "ETH", "USDT")
        );
        assert_eq!(
            (o.side, o.kind, o.venue_type.as_str()),
            (Side::Sell, OrderKind::Limit, "limit")
        );
        assert_eq!(o.price, Some(Decimal::new(20005, 1)));
        assert_eq!(
            (o.quantity, o.quote_quantity),
            (Some(Decimal::from(3)), None)
        );
        assert_eq!(o.reference, None);
        let m = order(
            r#"{"instId":"BTC-USDT","tdMode":"cash","side":"buy","ordType":"market","sz":"150"}"#,
        );
        assert_eq!(
            (m.kind, m.price, m.quantity),
            (OrderKind::Market, None, None)
        );
        assert_eq!(m.quote_quantity, Some(Decimal::from(150)));
        let s = order(
            r#"{"instId":"BTC-USDT","tdMode":"cash","side":"sell","ordType":"market","sz":"0.2"}"#,
        );
        assert_eq!(
            (s.quantity, s.quote_quantity),
            (Some(Decimal::new(2, 1)), None)
        );
        let cancel = a
            .classify(&req(
                "POST",
                "/api/v5/trade/cancel-order",
                "",
                r#"{"instId":"BTC-USDT","ordId":"1"}"#,
            ))
            .unwrap();
        assert_eq!(cancel.order, None);
    }

    #[test]
    fn order_endpoints_keygate_does_not_cover_are_unknown() {
        let order = r#"{"instId":"BTC-USDT","tdMode":"cash","side":"buy","ordType":"limit","sz":"1","px":"1"}"#;
        for path in [
            "/api/v5/trade/batch-orders",
            "/api/v5/trade/amend-order",
            "/api/v5/trade/amend-batch-orders",
            "/api/v5/trade/cancel-batch-orders",
            "/api/v5/trade/close-position",
            "/api/v5/trade/order-algo",
            "/api/v5/trade/amend-algos",
            "/api/v5/trade/order-precheck",
            "/api/v5/tradingBot/grid/order-algo",
            "/api/v5/sprd/order",
            "/api/v5/trade/order/",
        ] {
            assert!(
                matches!(
                    adapter().classify(&req("POST", path, "", order)),
                    Err(ClassifyError::UnknownEndpoint { .. })
                ),
                "{path}"
            );
        }
    }

    #[test]
    fn a_withdrawal_is_on_chain_on_its_chain_or_internal_to_one_kind_of_account() {
        use keygate_core::route::{Route, Via};
        let w = |body: &str| adapter().classify(&req("POST", "/api/v5/asset/withdrawal", "", body));
        let route = |body: &str| w(body).map(|c| c.route);
        assert_eq!(
            route(r#"{"ccy":"USDT","amt":"1","dest":"4","toAddr":"0xab","chain":"USDT-TRC20"}"#),
            Ok(Route::chain(Some("USDT-TRC20")))
        );
        assert_eq!(
            route(r#"{"ccy":"USDT","amt":"1","dest":"4","toAddr":"0xab"}"#),
            Ok(Route::default())
        );
        let tagged =
            w(r#"{"ccy":"XRP","amt":"1","dest":"4","toAddr":"rAddr:42","chain":"XRP-Ripple"}"#)
                .unwrap();
        assert_eq!(tagged.destination.as_deref(), Some("rAddr:42"));
        let internal = |via, area: Option<&str>| Route {
            via,
            network: None,
            area_code: area.map(str::to_string),
        };
        for (body, want) in [
            (
                r#"{"ccy":"USDT","amt":"1","dest":"3","toAddr":"a@example.com"}"#,
                internal(Via::Email, None),
            ),
            (
                r#"{"ccy":"USDT","amt":"1","dest":"3","toAddr":"13800000000","areaCode":"86"}"#,
                internal(Via::Phone, Some("86")),
            ),
            (
                r#"{"ccy":"USDT","amt":"1","dest":"3","toAddr":"46137452","toAddrType":"2"}"#,
                internal(Via::Uid, None),
            ),
            (
                r#"{"ccy":"USDT","amt":"1","dest":"3","toAddr":"desk-7"}"#,
                internal(Via::Account, None),
            ),
        ] {
            assert_eq!(route(body), Ok(want), "{body}");
        }
        for (body, name) in [
            // A chain on an internal transfer, an area code or UID on an on-chain one.
            (
                r#"{"ccy":"USDT","amt":"1","dest":"3","toAddr":"a@example.com","chain":"USDT-ERC20"}"#,
                "chain",
            ),
            (
                r#"{"ccy":"USDT","amt":"1","dest":"4","toAddr":"0xab","areaCode":"86"}"#,
                "areaCode",
            ),
            (
                r#"{"ccy":"USDT","amt":"1","dest":"4","toAddr":"46137452","toAddrType":"2"}"#,
                "toAddrType",
            ),
            // A phone number without its area code, an area code without a phone number.
            (
                r#"{"ccy":"USDT","amt":"1","dest":"3","toAddr":"13800000000"}"#,
                "areaCode",
            ),
            (
                r#"{"ccy":"USDT","amt":"1","dest":"3","toAddr":"a@example.com","areaCode":"86"}"#,
                "areaCode",
            ),
            (
                r#"{"ccy":"USDT","amt":"1","dest":"3","toAddr":"13800000000","areaCode":"+86"}"#,
                "areaCode",
            ),
            (
                r#"{"ccy":"USDT","amt":"1","dest":"3","toAddr":"a@example.com","toAddrType":"2"}"#,
                "toAddr",
            ),
            (
                r#"{"ccy":"USDT","amt":"1","dest":"3","toAddr":"x","toAddrType":"9"}"#,
                "toAddrType",
            ),
        ] {
            match w(body) {
                Err(
                    ClassifyError::Invalid { name: n, .. } | ClassifyError::Missing { name: n, .. },
                ) => {
                    assert_eq!(n, name, "{body}")
                }
                other => panic!("{body}: {other:?}"),
            }
        }
    }

    #[test]
    fn withdrawals_and_the_forwarded_body() {
        let a = adapter();
        let c = a
            .classify(&req(
                "POST",
                "/api/v5/asset/withdrawal",
                "",
                r#"{"ccy":"USDT","amt":"72","dest":"4","toAddr":"0xAbC0000000000000000000000000000000000001","chain":"USDT-ERC20","clientId":"w1"}"#,
            ))
            .unwrap();
        assert_eq!(c.action, Action::Withdraw);
        assert_eq!(c.amount, Some(Decimal::from(72)));
        assert_eq!(c.request_id.as_deref(), Some("w1"));
        let keys = Keys {
            api_key: "k",
            secret: "s",
            passphrase: Some("p"),
        };
        let out = a.sign(&c, &keys, 0);
        let body = String::from_utf8(out.body.clone()).unwrap();
        let sig = out
            .headers
            .iter()
            .find(|(h, _)| *h == "OK-ACCESS-SIGN")
            .unwrap();
        assert_eq!(
            sig.1,
            signature(
                "s",
                &timestamp(0),
                "POST",
                "/api/v5/asset/withdrawal",
                &body
            )
        );
        // A duplicate key would let keygate and the venue read different values: the body
        // forwarded is the one classified, with each key once.
        let dup = a
            .classify(&req(
                "POST",
                "/api/v5/asset/withdrawal",
                "",
                r#"{"ccy":"USDT","amt":"1","amt":"1000000","dest":"4","toAddr":"x"}"#,
            ))
            .unwrap();
        let out = a.sign(&dup, &keys, 0);
        let body = String::from_utf8(out.body).unwrap();
        assert_eq!(body.matches("amt").count(), 1);
        assert!(body.contains(&format!("\"amt\":\"{}\"", dup.amount.unwrap())));
    }

    #[test]
    fn client_libraries_empty_fields_are_dropped_and_their_priced_orders_read() {
        let a = adapter();
        // python-okx sends every field of the endpoint, empty or null when unused.
        let c = a
            .classify(&req(
                "POST",
                "/api/v5/trade/order",
                "",
                r#"{"instId": "BTC-USDT", "tdMode": "cash", "side": "buy", "ordType": "limit", "sz": "0.01", "ccy": "", "clOrdId": "", "tag": "", "posSide": "", "px": "40000", "reduceOnly": "", "tgtCcy": "", "stpMode": "", "pxUsd": "", "pxVol": "", "banAmend": "", "attachAlgoOrds": null}"#,
            ))
            .unwrap();
        assert_eq!(c.amount, Some(Decimal::from(400)));
        let Forward::Json { body: Some(b), .. } = &c.forward else {
            panic!("{c:?}")
        };
        assert_eq!(b.len(), 6, "{b:?}");
        // A field keygate does not know is still refused when it is not empty.
        assert!(
            a.classify(&req(
                "POST",
                "/api/v5/trade/order",
                "",
                r#"{"instId":"BTC-USDT","tdMode":"cash","side":"buy","ordType":"limit","sz":"1","px":"1","attachAlgoOrds":[{"tpTriggerPx":"1"}]}"#,
            ))
            .is_err()
        );
        // ccxt names the unit of a priced order's size: base_ccy is what it is; quote_ccy is
        // refused (the venue would read sz in the quote asset).
        let ccxt = r#"{"instId":"BTC-USDT","tdMode":"cash","side":"buy","ordType":"limit","sz":"0.01","px":"40000","tgtCcy":"base_ccy"}"#;
        assert!(
            a.classify(&req("POST", "/api/v5/trade/order", "", ccxt))
                .is_ok()
        );
        let quote = ccxt.replace("base_ccy", "quote_ccy");
        assert!(
            a.classify(&req("POST", "/api/v5/trade/order", "", &quote))
                .is_err()
        );
    }

    #[test]
    fn history_and_config_parse() {
        let h = br#"{"code":"0","msg":"","data":[{"ccy":"USDT","chain":"USDT-ERC20","amt":"72","ts":"1700326020000",
            "toAddr":"0xAbC0000000000000000000000000000000000001","txId":"","wdId":"123","state":"2","clientId":""}]}"#;
        let rows = adapter().parse_withdrawal_history("v", h).unwrap();
        assert_eq!(rows[0].id, "123");
        assert_eq!(rows[0].reference, None);
        // A zero (or negative) amount is no withdrawal (found by the fuzz target venue_answers).
        for amt in ["00", "-1"] {
            let bad =
                String::from_utf8_lossy(h).replace(r#""amt":"72""#, &format!(r#""amt":"{amt}""#));
            let e = adapter()
                .parse_withdrawal_history("v", bad.as_bytes())
                .unwrap_err();
            assert!(e.to_string().contains("not a positive amount"), "{e}");
        }
        assert!(
            adapter()
                .parse_withdrawal_history(
                    "v",
                    br#"{"code":"50113","msg":"Invalid Sign","data":[]}"#
                )
                .is_err()
        );
        let cfg = br#"{"code":"0","msg":"","data":[{"perm":"read_only,trade,withdraw","ip":""}]}"#;
        assert!(
            adapter()
                .parse_restrictions(cfg)
                .unwrap()
                .iter()
                .any(|f| f.unsafe_)
        );
        let cfg = br#"{"code":"0","msg":"","data":[{"perm":"read_only,trade","ip":"10.0.0.1"}]}"#;
        assert!(
            adapter()
                .parse_restrictions(cfg)
                .unwrap()
                .iter()
                .all(|f| !f.unsafe_)
        );
    }

    proptest::proptest! {
        #[test]
        fn classify_never_panics(m in "GET|POST", q in "\\PC{0,40}", b in "\\PC{0,80}") {
            let _ = adapter().classify(&req(&m, "/api/v5/trade/order", &q, &b));
            let _ = adapter().classify(&req(&m, "/api/v5/asset/withdrawal", &q, &b));
        }
    }
}
