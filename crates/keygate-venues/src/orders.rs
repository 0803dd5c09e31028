//! The venue's order history, for reconciliation: the signed request for one page, the page
//! after it, and the strict parse of an answer into [`VenueOrder`]s. Also the client id keygate
//! stamps on the orders it forwards ([`Adapter::tag`]), so that the history tells its orders
//! from those placed with the key around it.
//!
//! - Binance `GET /api/v3/allOrders` (weight 20; `symbol` is mandatory; `startTime`, `orderId`
//!   (orders >= it), `limit` up to 1000; ascending; `startTime`..`endTime` at most 24 h):
//!   <https://developers.binance.com/docs/binance-spot-api-docs/rest-api/account-endpoints#all-orders-user_data>.
//!   A symbol is needed, so the symbols come from the caller: the clients' instruments and the
//!   pairs of what the account holds ([`Adapter::held_assets`], from `GET /api/v3/account` with
//!   `omitZeroBalances=true`, weight 20:
//!   <https://developers.binance.com/docs/binance-spot-api-docs/rest-api/account-endpoints#account-information-user_data>).
//!   An unlisted symbol is answered `-1121 Invalid symbol`.
//! - OKX `GET /api/v5/trade/orders-history` (the last 7 days, every instrument of `instType`
//!   `SPOT`; `begin` in ms; `after` = an `ordId`, for older rows; `limit` up to 100; newest
//!   first; 40 requests per 2 s per user id):
//!   <https://www.okx.com/docs-v5/en/#order-book-trading-trade-get-order-history-last-7-days>.
//!
//! The client id rules: Binance `newClientOrderId` matches `^[\.A-Z\:/a-z0-9_-]{1,36}$`
//! (<https://developers.binance.com/docs/binance-spot-api-docs/rest-api/trading-endpoints#new-order-trade>);
//! OKX `clOrdId` is 1-32 case-sensitive letters and digits
//! (<https://www.okx.com/docs-v5/en/#order-book-trading-trade-post-place-order>). keygate's
//! `kg<decision id>` fits both.

use keygate_core::Action;
use keygate_core::order::Side;
use keygate_core::venue_order::VenueOrder;
use rust_decimal::Decimal;
use serde_json::Value;

use crate::{Adapter, Classified, Forward, Keys, Outgoing, Params, VenueKind, binance, okx};

/// The most orders one Binance `allOrders` read returns.
pub const BINANCE_PAGE: usize = 1000;
/// The most orders one OKX `orders-history` read returns.
pub const OKX_PAGE: usize = 100;

/// Where an order-history read continues.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OrderPage {
    /// Binance: orders from this order id on.
    FromId(u64),
    /// OKX: orders older than this `ordId`.
    After(String),
}

impl Adapter {
    /// Makes a withdrawal or an order carry `reference` (keygate's `kg<decision id>`) as its
    /// client id when the bot gave none: Binance `withdrawOrderId` / `newClientOrderId`, OKX
    /// `clientId` / `clOrdId`. A bot's own id is kept (it cancels and queries by it), and the
    /// decision records it; reconciliation matches the venue's history against either.
    pub fn tag(&self, c: &mut Classified, reference: &str) {
        if c.request_id.is_some() {
            return;
        }
        let name = match (c.action, &c.forward) {
            (Action::Withdraw, Forward::Form(_)) => "withdrawOrderId",
            (Action::Withdraw, Forward::Json { .. }) => "clientId",
            (Action::Trade, Forward::Form(_)) if c.endpoint == "order.new" => "newClientOrderId",
            (Action::Trade, Forward::Json { .. }) if c.endpoint == "order.new" => "clOrdId",
            _ => return,
        };
        match &mut c.forward {
            Forward::Form(p) => {
                if p.push(name.into(), reference.into(), "").is_err() {
                    return;
                }
            }
            Forward::Json { body: Some(b), .. } => {
                b.insert(name.into(), Value::String(reference.into()));
            }
            Forward::Json { body: None, .. } => return,
        }
        c.request_id = Some(reference.to_string());
    }

    /// The signed request for one page of orders placed since `since_ms`: on Binance those of
    /// `symbol` (which it needs), on OKX every spot instrument's (`symbol` is not used).
    pub fn order_history(
        &self,
        symbol: &str,
        since_ms: i64,
        page: Option<&OrderPage>,
        keys: &Keys<'_>,
        now_ms: i64,
    ) -> Outgoing {
        let c = match self.kind {
            VenueKind::Binance => binance_orders_request(symbol, since_ms, page),
            VenueKind::Okx => okx_orders_request(since_ms, page),
        };
        self.sign(&c, keys, now_ms)
    }

    /// The page after one that returned `rows`, if the history may hold more since `since_ms`.
    pub fn next_order_page(&self, since_ms: i64, rows: &[VenueOrder]) -> Option<OrderPage> {
        match self.kind {
            VenueKind::Binance => {
                let last = rows.iter().filter_map(|r| r.id.parse::<u64>().ok()).max()?;
                (rows.len() >= BINANCE_PAGE).then(|| OrderPage::FromId(last.saturating_add(1)))
            }
            VenueKind::Okx => {
                let oldest = rows.iter().min_by_key(|r| r.at)?;
                (rows.len() >= OKX_PAGE && oldest.at >= since_ms)
                    .then(|| OrderPage::After(oldest.id.clone()))
            }
        }
    }

    /// Parses an order-history answer into the orders of `venue`.
    pub fn parse_order_history(&self, venue: &str, body: &[u8]) -> Result<Vec<VenueOrder>, String> {
        match self.kind {
            VenueKind::Binance => parse_binance_orders(venue, body),
            VenueKind::Okx => parse_okx_orders(venue, body),
        }
    }

    /// Whether an answer says the symbol is not listed (Binance `-1121`): no orders there.
    pub fn is_unknown_symbol(&self, body: &[u8]) -> bool {
        self.kind == VenueKind::Binance
            && serde_json::from_slice::<Value>(body)
                .ok()
                .and_then(|v| v.get("code").and_then(Value::as_i64))
                == Some(-1121)
    }

    /// Binance: the signed account read whose answer [`Adapter::held_assets`] reads.
    pub fn account_request(&self, keys: &Keys<'_>, now_ms: i64) -> Outgoing {
        let mut p = Params::new();
        let _ = p.push("omitZeroBalances".into(), "true".into(), "");
        self.sign(
            &binance::internal("account", "/api/v3/account", p),
            keys,
            now_ms,
        )
    }

    /// The assets a Binance account answer shows a balance of (free or locked), upper case.
    pub fn held_assets(&self, body: &[u8]) -> Result<Vec<String>, String> {
        #[derive(serde::Deserialize)]
        struct Balance {
            asset: String,
            #[serde(with = "rust_decimal::serde::str")]
            free: Decimal,
            #[serde(with = "rust_decimal::serde::str")]
            locked: Decimal,
        }
        #[derive(serde::Deserialize)]
        struct Account {
            balances: Vec<Balance>,
        }
        let a: Account = serde_json::from_slice(body)
            .map_err(|e| format!("the account is not the object Binance documents: {e}"))?;
        let mut held: Vec<String> = a
            .balances
            .into_iter()
            .filter(|b| b.free > Decimal::ZERO || b.locked > Decimal::ZERO)
            .map(|b| crate::asset("asset", &b.asset).map_err(|e| e.to_string()))
            .collect::<Result<_, _>>()?;
        held.sort();
        held.dedup();
        Ok(held)
    }
}

fn binance_orders_request(symbol: &str, since_ms: i64, page: Option<&OrderPage>) -> Classified {
    let mut p = Params::new();
    let _ = p.push("symbol".into(), symbol.into(), "");
    match page {
        Some(OrderPage::FromId(id)) => {
            let _ = p.push("orderId".into(), id.to_string(), "");
        }
        _ => {
            let _ = p.push("startTime".into(), since_ms.max(0).to_string(), "");
        }
    }
    let _ = p.push("limit".into(), BINANCE_PAGE.to_string(), "");
    binance::internal("orders.all", "/api/v3/allOrders", p)
}

fn okx_orders_request(since_ms: i64, page: Option<&OrderPage>) -> Classified {
    let mut c = okx::internal("orders.history", "/api/v5/trade/orders-history");
    let mut q = Params::new();
    let _ = q.push("instType".into(), "SPOT".into(), "");
    let _ = q.push("begin".into(), since_ms.max(0).to_string(), "");
    if let Some(OrderPage::After(id)) = page {
        let _ = q.push("after".into(), id.clone(), "");
    }
    let _ = q.push("limit".into(), OKX_PAGE.to_string(), "");
    c.forward = Forward::Json {
        query: q,
        body: None,
    };
    c
}

fn side(text: &str) -> Result<Side, String> {
    match text {
        "BUY" | "buy" => Ok(Side::Buy),
        "SELL" | "sell" => Ok(Side::Sell),
        other => Err(format!(
            "an order's side {:?} is neither buy nor sell",
            other.chars().take(20).collect::<String>()
        )),
    }
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct BinanceOrder {
    symbol: String,
    order_id: u64,
    client_order_id: String,
    side: String,
    status: String,
    #[serde(with = "rust_decimal::serde::str")]
    cummulative_quote_qty: Decimal,
    time: i64,
}

fn parse_binance_orders(venue: &str, body: &[u8]) -> Result<Vec<VenueOrder>, String> {
    let rows: Vec<BinanceOrder> = serde_json::from_slice(body)
        .map_err(|e| format!("the order history is not the list Binance documents: {e}"))?;
    rows.into_iter()
        .map(|r| {
            Ok(VenueOrder {
                venue: venue.to_string(),
                id: r.order_id.to_string(),
                client_id: Some(r.client_order_id).filter(|s| !s.is_empty()),
                symbol: r.symbol,
                side: side(&r.side)?,
                status: r.status,
                // Binance documents a negative value as "not available at this time".
                filled_quote: r.cummulative_quote_qty.max(Decimal::ZERO),
                at: r.time,
            })
        })
        .collect()
}

fn text<'v>(row: &'v Value, name: &str) -> Result<&'v str, String> {
    row.get(name)
        .and_then(Value::as_str)
        .ok_or_else(|| format!("an order has no {name}"))
}

/// An OKX size or price field, where "" means nothing yet (an order without fills has no
/// `avgPx`); a negative one is an error (a filled quote is never negative).
fn decimal_or_zero(row: &Value, name: &str) -> Result<Decimal, String> {
    let d: Decimal = match text(row, name)? {
        "" => return Ok(Decimal::ZERO),
        t => t
            .parse()
            .map_err(|_| format!("an order's {name} is not a decimal"))?,
    };
    if d < Decimal::ZERO {
        return Err(format!("an order's {name} is {d}, a negative amount"));
    }
    Ok(d)
}

fn parse_okx_orders(venue: &str, body: &[u8]) -> Result<Vec<VenueOrder>, String> {
    okx::data(body)?
        .iter()
        .map(|row| {
            let filled = decimal_or_zero(row, "accFillSz")?;
            let avg = decimal_or_zero(row, "avgPx")?;
            let at: i64 = text(row, "cTime")?
                .parse()
                .map_err(|_| "an order's cTime is not milliseconds".to_string())?;
            Ok(VenueOrder {
                venue: venue.to_string(),
                id: text(row, "ordId")?.to_string(),
                client_id: Some(text(row, "clOrdId")?.to_string()).filter(|s| !s.is_empty()),
                symbol: text(row, "instId")?.to_string(),
                side: side(text(row, "side")?)?,
                status: text(row, "state")?.to_string(),
                filled_quote: filled
                    .checked_mul(avg)
                    .ok_or("an order's accFillSz × avgPx is too large")?,
                at,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{AdapterOptions, Request};

    const KEYS: Keys<'static> = Keys {
        api_key: "k",
        secret: "s",
        passphrase: Some("p"),
    };

    fn adapter(kind: VenueKind) -> Adapter {
        Adapter::new(kind, AdapterOptions::default())
    }

    #[test]
    fn keygate_stamps_new_orders_without_a_client_id_and_keeps_a_bots_own() {
        for (kind, path, body, name) in [
            (
                VenueKind::Binance,
                "/api/v3/order",
                "symbol=BTCUSDT&side=BUY&type=LIMIT&timeInForce=GTC&quantity=1&price=100",
                "newClientOrderId",
            ),
            (
                VenueKind::Okx,
                "/api/v5/trade/order",
                r#"{"instId":"BTC-USDT","tdMode":"cash","side":"buy","ordType":"limit","sz":"1","px":"100"}"#,
                "clOrdId",
            ),
        ] {
            let a = adapter(kind);
            let classify = |body: &str| {
                a.classify(&Request {
                    method: "POST",
                    path,
                    query: "",
                    body: body.as_bytes(),
                })
                .unwrap()
            };
            let mut c = classify(body);
            a.tag(&mut c, "kg42");
            assert_eq!(c.request_id.as_deref(), Some("kg42"));
            let sent = String::from_utf8(a.sign(&c, &KEYS, 0).body).unwrap();
            assert!(sent.contains(name) && sent.contains("kg42"), "{sent}");

            let own = match kind {
                VenueKind::Binance => format!("{body}&newClientOrderId=bot7"),
                VenueKind::Okx => body.replace(r#""px":"100""#, r#""px":"100","clOrdId":"bot7""#),
            };
            let mut c = classify(&own);
            a.tag(&mut c, "kg43");
            assert_eq!(c.request_id.as_deref(), Some("bot7"));
            let sent = String::from_utf8(a.sign(&c, &KEYS, 0).body).unwrap();
            assert!(!sent.contains("kg43"), "{sent}");
        }
    }

    #[test]
    fn reads_and_cancels_are_not_stamped() {
        let a = adapter(VenueKind::Binance);
        let mut c = a
            .classify(&Request {
                method: "DELETE",
                path: "/api/v3/order",
                query: "symbol=BTCUSDT&orderId=1",
                body: b"",
            })
            .unwrap();
        a.tag(&mut c, "kg1");
        assert_eq!(c.request_id, None);
    }

    #[test]
    fn binance_reads_a_symbol_from_a_time_then_by_order_id() {
        let a = adapter(VenueKind::Binance);
        let first = a.order_history("SHITUSDT", 5, None, &KEYS, 9);
        assert!(
            first
                .path_and_query
                .starts_with("/api/v3/allOrders?symbol=SHITUSDT&startTime=5&limit=1000&"),
            "{}",
            first.path_and_query
        );
        let body = |n: u64| {
            let rows: Vec<Value> = (1..=n)
                .map(|i| {
                    serde_json::json!({"symbol": "SHITUSDT", "orderId": i, "clientOrderId": format!("c{i}"),
                        "side": "BUY", "status": "FILLED", "cummulativeQuoteQty": "10.5", "time": 100 + i as i64,
                        "price": "1", "origQty": "1"})
                })
                .collect();
            serde_json::to_vec(&rows).unwrap()
        };
        let rows = a.parse_order_history("b", &body(1000)).unwrap();
        assert_eq!(rows[0].client_id.as_deref(), Some("c1"));
        assert_eq!(rows[0].filled_quote, Decimal::new(105, 1));
        let next = a.next_order_page(5, &rows);
        assert_eq!(next, Some(OrderPage::FromId(1001)));
        let second = a.order_history("SHITUSDT", 5, next.as_ref(), &KEYS, 9);
        assert!(
            second
                .path_and_query
                .contains("symbol=SHITUSDT&orderId=1001&limit=1000"),
            "{}",
            second.path_and_query
        );
        let short = a.parse_order_history("b", &body(3)).unwrap();
        assert_eq!(a.next_order_page(5, &short), None);
    }

    #[test]
    fn okx_reads_every_spot_order_newest_first_by_order_id() {
        let a = adapter(VenueKind::Okx);
        let first = a.order_history("", 5, None, &KEYS, 9);
        assert_eq!(
            first.path_and_query,
            "/api/v5/trade/orders-history?instType=SPOT&begin=5&limit=100"
        );
        let rows: Vec<Value> = (0..100)
            .map(|i| {
                serde_json::json!({"instId": "SHIT-USDT", "ordId": format!("{}", 900 - i), "clOrdId": "",
                    "side": "buy", "state": "filled", "accFillSz": "2", "avgPx": "3.5",
                    "cTime": format!("{}", 1000 - i)})
            })
            .collect();
        let body = serde_json::json!({"code": "0", "msg": "", "data": rows}).to_string();
        let parsed = a.parse_order_history("o", body.as_bytes()).unwrap();
        assert_eq!(parsed[0].client_id, None);
        assert_eq!(parsed[0].filled_quote, Decimal::from(7));
        let next = a.next_order_page(5, &parsed);
        assert_eq!(next, Some(OrderPage::After("801".into())));
        let second = a.order_history("", 5, next.as_ref(), &KEYS, 9);
        assert!(
            second
                .path_and_query
                .ends_with("begin=5&after=801&limit=100"),
            "{}",
            second.path_and_query
        );
        // The page reaches back past the window's start: no need to read further.
        assert_eq!(a.next_order_page(950, &parsed), None);
    }

    #[test]
    fn malformed_histories_are_errors_never_panics() {
        let b = adapter(VenueKind::Binance);
        let o = adapter(VenueKind::Okx);
        for bad in [
            &b"not json"[..],
            br#"{"code":-1121,"msg":"Invalid symbol."}"#,
            br#"[{"symbol":"X","orderId":1,"clientOrderId":"a","side":"HOLD","status":"NEW","cummulativeQuoteQty":"0","time":1}]"#,
            br#"[{"symbol":"X","orderId":-1,"clientOrderId":"a","side":"BUY","status":"NEW","cummulativeQuoteQty":"0","time":1}]"#,
            br#"[{"symbol":"X","orderId":1,"clientOrderId":"a","side":"BUY","status":"NEW","cummulativeQuoteQty":1.5,"time":1}]"#,
        ] {
            assert!(b.parse_order_history("b", bad).is_err(), "{bad:?}");
        }
        for bad in [
            &br#"{"code":"50011","msg":"Rate limit reached","data":[]}"#[..],
            br#"{"code":"0","data":[{"instId":"X","ordId":"1","clOrdId":"","side":"buy","state":"filled","accFillSz":"x","avgPx":"","cTime":"1"}]}"#,
            br#"{"code":"0","data":[{"instId":"X","ordId":"1","side":"buy","state":"filled","accFillSz":"1","avgPx":"","cTime":"1"}]}"#,
            // A negative fill (against the fuzz target venue_histories' invariant; its seed
            // okx-orders-negative-fill).
            br#"{"code":"0","data":[{"instId":"X","ordId":"1","clOrdId":"","side":"buy","state":"filled","accFillSz":"-2","avgPx":"3","cTime":"1"}]}"#,
        ] {
            assert!(o.parse_order_history("o", bad).is_err(), "{bad:?}");
        }
        assert!(b.is_unknown_symbol(br#"{"code":-1121,"msg":"Invalid symbol."}"#));
        assert!(!b.is_unknown_symbol(br#"{"code":-1022,"msg":"Signature"}"#));
    }

    #[test]
    fn held_assets_are_those_with_a_balance() {
        let a = adapter(VenueKind::Binance);
        let body = br#"{"balances":[{"asset":"USDT","free":"0.00000000","locked":"0.00000000"},
            {"asset":"SHIT","free":"5.0","locked":"0"},{"asset":"btc","free":"0","locked":"1"}]}"#;
        assert_eq!(a.held_assets(body).unwrap(), vec!["BTC", "SHIT"]);
        assert!(
            a.held_assets(br#"{"balances":[{"asset":"../x","free":"1","locked":"0"}]}"#)
                .is_err()
        );
        let out = a.account_request(&KEYS, 9);
        assert!(
            out.path_and_query
                .starts_with("/api/v3/account?omitZeroBalances=true&")
        );
    }
}
