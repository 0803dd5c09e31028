//! Every request an adapter classifies as a trade carries its order, and its asset and amount
//! follow the convention of trade intents: the asset is the order's quote asset, the amount its
//! quote notional when the request alone says it (a limit order's quantity × price, a market
//! order's quote quantity), `None` for a market order sized in the base asset. Checked over an
//! enumeration of order requests (every type keygate knows, with sizes and prices present,
//! absent and invalid), and over fuzzed requests to every order-like endpoint.

use keygate_core::Action;
use keygate_core::order::OrderKind;
use keygate_venues::{Adapter, AdapterOptions, Classified, Request, VenueKind};
use proptest::prelude::*;
use rust_decimal::Decimal;

fn adapter(kind: VenueKind) -> Adapter {
    Adapter::new(kind, AdapterOptions::default())
}

/// The invariant: a trade has an order whose shape its kind allows and whose value is the
/// classification's amount; anything else has none.
fn check(kind: VenueKind, c: &Classified) -> Result<(), String> {
    let Some(o) = &c.order else {
        return if c.action == Action::Trade {
            Err(format!("a trade without an order: {c:?}"))
        } else {
            Ok(())
        };
    };
    if c.action != Action::Trade {
        return Err(format!("an order on a {:?}: {c:?}", c.action));
    }
    if c.asset.as_deref() != Some(o.quote.as_str()) {
        return Err(format!("asset {:?} is not the quote {}", c.asset, o.quote));
    }
    let symbol = match kind {
        VenueKind::Binance => format!("{}{}", o.base, o.quote),
        VenueKind::Okx => format!("{}-{}", o.base, o.quote),
    };
    if o.symbol != symbol || o.base.is_empty() || o.reference.is_some() {
        return Err(format!("instrument {o:?}"));
    }
    let expected = match (o.kind, o.price, o.quantity, o.quote_quantity) {
        (OrderKind::Limit, Some(p), Some(q), None) => Some(q * p),
        (OrderKind::Market, None, Some(_), None) => None,
        (OrderKind::Market, None, None, Some(qq)) => Some(qq),
        _ => return Err(format!("an order of an impossible shape: {o:?}")),
    };
    if c.amount != expected {
        return Err(format!("amount {:?}, expected {expected:?}", c.amount));
    }
    // The decider can always value it once it has a reference price.
    o.notional(Decimal::from(40_000), 50)
        .map_err(|e| format!("{o:?} cannot be valued: {e}"))?;
    Ok(())
}

fn opt<'a>(values: &'a [&'a str]) -> impl Iterator<Item = Option<&'a str>> + 'a {
    std::iter::once(None).chain(values.iter().copied().map(Some))
}

#[test]
fn every_binance_order_classified_carries_its_order() {
    let a = adapter(VenueKind::Binance);
    let types = [
        "LIMIT",
        "LIMIT_MAKER",
        "STOP_LOSS_LIMIT",
        "TAKE_PROFIT_LIMIT",
        "MARKET",
        "STOP_LOSS",
        "TAKE_PROFIT",
        "market",
        "OCO",
    ];
    let mut trades_by_type = std::collections::BTreeMap::<&str, usize>::new();
    let mut n = 0;
    for symbol in ["BTCUSDT", "ETHBTC", "BTCXYZ"] {
        for side in ["BUY", "SELL", "buy"] {
            for ty in types {
                for qty in opt(&["0.5", "0", "-1"]) {
                    for price in opt(&["40000", "0"]) {
                        for quote_qty in opt(&["100"]) {
                            for trigger in opt(&["stopPrice=39000", "trailingDelta=100"]) {
                                let mut q = format!("symbol={symbol}&side={side}&type={ty}");
                                let mut body = String::new();
                                for (name, v) in [
                                    ("quantity", qty),
                                    ("price", price),
                                    ("quoteOrderQty", quote_qty),
                                ] {
                                    if let Some(v) = v {
                                        // Half in the query, half in the form body.
                                        let to = if n % 2 == 0 { &mut q } else { &mut body };
                                        if !to.is_empty() {
                                            to.push('&');
                                        }
                                        to.push_str(&format!("{name}={v}"));
                                    }
                                }
                                if let Some(t) = trigger {
                                    q.push_str(&format!("&{t}"));
                                }
                                n += 1;
                                let req = Request {
                                    method: "POST",
                                    path: "/api/v3/order",
                                    query: &q,
                                    body: body.as_bytes(),
                                };
                                if let Ok(c) = a.classify(&req) {
                                    check(VenueKind::Binance, &c)
                                        .unwrap_or_else(|e| panic!("{q} {body}: {e}"));
                                    assert_eq!(c.action, Action::Trade);
                                    *trades_by_type.entry(ty).or_default() += 1;
                                }
                            }
                        }
                    }
                }
            }
        }
    }
    assert_eq!(n, 3 * 3 * 9 * 4 * 3 * 2 * 3);
    // Every type keygate knows was classified, with both sides and both symbols; none other.
    assert_eq!(
        trades_by_type.keys().copied().collect::<Vec<_>>(),
        {
            let mut known = types[..7].to_vec();
            known.sort();
            known
        },
        "{trades_by_type:?}"
    );
    assert!(
        trades_by_type.values().all(|&count| count >= 4),
        "{trades_by_type:?}"
    );
}

#[test]
fn every_okx_order_classified_carries_its_order() {
    let a = adapter(VenueKind::Okx);
    let types = [
        "market",
        "limit",
        "post_only",
        "fok",
        "ioc",
        "optimal_limit_ioc",
        "mmp",
        "LIMIT",
    ];
    let mut trades_by_type = std::collections::BTreeMap::<&str, usize>::new();
    let mut n = 0;
    for inst in ["BTC-USDT", "ETH-BTC", "BTC-USDT-SWAP"] {
        for side in ["buy", "sell", "BUY"] {
            for ty in types {
                for td_mode in ["cash", "cross"] {
                    for sz in opt(&["2", "0"]) {
                        for px in opt(&["3", "0"]) {
                            for tgt in opt(&["base_ccy", "quote_ccy", "usd"]) {
                                let mut body = serde_json::json!({
                                    "instId": inst, "tdMode": td_mode, "side": side, "ordType": ty,
                                });
                                for (name, v) in [("sz", sz), ("px", px), ("tgtCcy", tgt)] {
                                    if let Some(v) = v {
                                        body[name] = serde_json::json!(v);
                                    }
                                }
                                let text = body.to_string();
                                n += 1;
                                let req = Request {
                                    method: "POST",
                                    path: "/api/v5/trade/order",
                                    query: "",
                                    body: text.as_bytes(),
                                };
                                if let Ok(c) = a.classify(&req) {
                                    check(VenueKind::Okx, &c)
                                        .unwrap_or_else(|e| panic!("{text}: {e}"));
                                    assert_eq!(c.action, Action::Trade);
                                    *trades_by_type.entry(ty).or_default() += 1;
                                }
                            }
                        }
                    }
                }
            }
        }
    }
    assert_eq!(n, 3 * 3 * 8 * 2 * 3 * 3 * 4);
    assert_eq!(
        trades_by_type.keys().copied().collect::<Vec<_>>(),
        vec!["fok", "ioc", "limit", "market", "post_only"],
        "{trades_by_type:?}"
    );
    assert!(
        trades_by_type.values().all(|&count| count >= 4),
        "{trades_by_type:?}"
    );
}

/// Parameter names an order request might carry, known and not.
const BINANCE_NAMES: &[&str] = &[
    "symbol",
    "side",
    "type",
    "timeInForce",
    "quantity",
    "quoteOrderQty",
    "price",
    "stopPrice",
    "trailingDelta",
    "icebergQty",
    "newClientOrderId",
    "pegPriceType",
    "Quantity",
];
const OKX_NAMES: &[&str] = &[
    "instId",
    "tdMode",
    "side",
    "ordType",
    "sz",
    "px",
    "tgtCcy",
    "clOrdId",
    "reduceOnly",
    "ccy",
    "banAmend",
    "tradeQuoteCcy",
];
const VALUES: &[&str] = &[
    "BTCUSDT",
    "ETHBTC",
    "BTC-USDT",
    "BUY",
    "SELL",
    "buy",
    "sell",
    "LIMIT",
    "MARKET",
    "STOP_LOSS",
    "LIMIT_MAKER",
    "market",
    "limit",
    "ioc",
    "cash",
    "quote_ccy",
    "base_ccy",
    "GTC",
    "1",
    "0.5",
    "40000",
    "0",
    "-1",
    "1e3",
    "",
    "x",
];
const PATHS: &[(&str, &str)] = &[
    ("POST", "/api/v3/order"),
    ("POST", "/api/v3/order/test"),
    ("POST", "/api/v3/orderList/oco"),
    ("POST", "/api/v3/sor/order"),
    ("DELETE", "/api/v3/order"),
    ("GET", "/api/v3/order"),
    ("POST", "/api/v5/trade/order"),
    ("POST", "/api/v5/trade/batch-orders"),
    ("POST", "/api/v5/trade/amend-order"),
    ("POST", "/api/v5/trade/cancel-order"),
];

fn pairs(
    names: &'static [&'static str],
) -> impl Strategy<Value = Vec<(&'static str, &'static str)>> {
    proptest::collection::vec(
        (
            proptest::sample::select(names),
            proptest::sample::select(VALUES),
        ),
        0..9,
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn fuzzed_binance_requests_keep_the_invariant(
        path in proptest::sample::select(PATHS),
        query in pairs(BINANCE_NAMES),
        body in pairs(BINANCE_NAMES),
    ) {
        let enc = |p: &[(&str, &str)]| {
            p.iter().map(|(n, v)| format!("{n}={v}")).collect::<Vec<_>>().join("&")
        };
        let (q, b) = (enc(&query), enc(&body));
        let req = Request { method: path.0, path: path.1, query: &q, body: b.as_bytes() };
        if let Ok(c) = adapter(VenueKind::Binance).classify(&req) {
            prop_assert!(check(VenueKind::Binance, &c).is_ok(), "{q} {b}: {:?}", check(VenueKind::Binance, &c));
            prop_assert_eq!(c.action == Action::Trade, path == ("POST", "/api/v3/order"));
        }
    }

    #[test]
    fn fuzzed_okx_requests_keep_the_invariant(
        path in proptest::sample::select(PATHS),
        fields in pairs(OKX_NAMES),
    ) {
        let body = serde_json::Value::Object(
            fields.iter().map(|(n, v)| (n.to_string(), serde_json::json!(v))).collect(),
        )
        .to_string();
        let req = Request { method: path.0, path: path.1, query: "", body: body.as_bytes() };
        if let Ok(c) = adapter(VenueKind::Okx).classify(&req) {
            prop_assert!(check(VenueKind::Okx, &c).is_ok(), "{body}: {:?}", check(VenueKind::Okx, &c));
            prop_assert_eq!(c.action == Action::Trade, path == ("POST", "/api/v5/trade/order"));
        }
    }
}
