//! Orders: what a trade intent buys or sells, at what price, against which market.
//!
//! A trade moves value as surely as a withdrawal: a leaked trade-only key empties an account by
//! buying an illiquid coin from the thief's own asks far above the market (3Commas, 2022), or by
//! selling at a price far below it. So an order intent carries its instrument, side, type,
//! limit price and quantity ([`Order`]), and the reference price of its instrument read from the
//! venue's public book ([`Reference`]). [`Order::notional`] values it in the quote asset;
//! [`Order::deviation_bps`] says how far its price is from the market, against the client.
//! Pure: time is an argument.

use std::fmt;

use rust_decimal::Decimal;
use rust_decimal::prelude::ToPrimitive;
use serde::{Deserialize, Serialize};

use crate::time::{Millis, format_duration};

/// Buy or sell the base asset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Side {
    Buy,
    Sell,
}

impl Side {
    pub fn as_str(self) -> &'static str {
        match self {
            Side::Buy => "buy",
            Side::Sell => "sell",
        }
    }
}

impl fmt::Display for Side {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Whether the order names its price (limit, and the venue's variants of it) or takes the book
/// (market).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OrderKind {
    Limit,
    Market,
}

impl OrderKind {
    pub fn as_str(self) -> &'static str {
        match self {
            OrderKind::Limit => "limit",
            OrderKind::Market => "market",
        }
    }
}

/// The market price of an instrument, in quote units per base unit, as keygate read it from the
/// venue's public book (the mid of the best bid and ask) at a time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reference {
    #[serde(with = "rust_decimal::serde::str")]
    pub price: Decimal,
    /// When keygate read it (Unix milliseconds).
    pub at: Millis,
}

/// One order, as the venue adapter read it from the request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Order {
    /// The venue's own symbol (`BTCUSDT` on Binance, `BTC-USDT` on OKX).
    pub symbol: String,
    pub base: String,
    pub quote: String,
    pub side: Side,
    pub kind: OrderKind,
    /// The venue's own order type (`LIMIT_MAKER`, `post_only`, …), for the audit and policies.
    pub venue_type: String,
    /// The limit price in quote units per base unit; `None` for a market order.
    #[serde(
        default,
        with = "rust_decimal::serde::str_option",
        skip_serializing_if = "Option::is_none"
    )]
    pub price: Option<Decimal>,
    /// The quantity in base units; `None` for a market order sized in the quote asset.
    #[serde(
        default,
        with = "rust_decimal::serde::str_option",
        skip_serializing_if = "Option::is_none"
    )]
    pub quantity: Option<Decimal>,
    /// A market order's size in quote units (Binance `quoteOrderQty`, OKX `tgtCcy=quote_ccy`).
    #[serde(
        default,
        with = "rust_decimal::serde::str_option",
        skip_serializing_if = "Option::is_none"
    )]
    pub quote_quantity: Option<Decimal>,
    /// The instrument's market price when the request came in, if keygate has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference: Option<Reference>,
}

/// Why an order cannot be valued. Each message says what to do.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OrderError {
    #[error(
        "no reference price for {instrument}: keygate has not read the venue's book for it; list the instrument in a client's scope so keygate polls it, and check the venue is reachable"
    )]
    NoReference { instrument: String },
    #[error(
        "the reference price of {instrument} is {} old, over the maximum age of {}; keygate cannot read the venue's book (check the venue is reachable)",
        format_duration(*age),
        format_duration(*max_age)
    )]
    StaleReference {
        instrument: String,
        age: Millis,
        max_age: Millis,
    },
    #[error("the reference price of {instrument} is not positive")]
    BadReference { instrument: String },
    #[error(
        "the order names {what}; a limit order needs a quantity and a price, a market order a quantity or a quote quantity"
    )]
    Shape { what: &'static str },
    #[error("the order's notional overflows")]
    Overflow,
}

/// How keygate values orders: set in `[trading]` of the config.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TradeSettings {
    /// The most a market order sized in base may fill above the reference, in basis points: it
    /// is valued at reference × (1 + slippage).
    pub slippage_bps: i64,
    /// A reference price older than this values nothing: the order is denied.
    pub reference_max_age: Millis,
}

impl Default for TradeSettings {
    fn default() -> Self {
        Self {
            slippage_bps: 100,
            reference_max_age: 30 * crate::time::SECOND,
        }
    }
}

/// Basis points in one.
const BPS: i64 = 10_000;

impl Order {
    /// The instrument, venue-independent: `BASE/QUOTE`.
    pub fn instrument(&self) -> String {
        format!("{}/{}", self.base, self.quote)
    }

    /// The reference price, if it is fresh at `now` (read at most `max_age` ago).
    pub fn fresh_reference(&self, now: Millis, max_age: Millis) -> Result<Decimal, OrderError> {
        let Some(r) = self.reference else {
            return Err(OrderError::NoReference {
                instrument: self.instrument(),
            });
        };
        let age = now.saturating_sub(r.at);
        if age > max_age {
            return Err(OrderError::StaleReference {
                instrument: self.instrument(),
                age,
                max_age,
            });
        }
        if r.price <= Decimal::ZERO {
            return Err(OrderError::BadReference {
                instrument: self.instrument(),
            });
        }
        Ok(r.price)
    }

    /// What the order is worth in quote units:
    /// - a limit order: quantity × limit price;
    /// - a market order sized in quote: that quote quantity;
    /// - a market order sized in base: quantity × reference × (1 + `slippage_bps` / 10,000),
    ///   the most it can fill at if the book moves no further than the slippage bound.
    pub fn notional(&self, reference: Decimal, slippage_bps: i64) -> Result<Decimal, OrderError> {
        let mul = |a: Decimal, b: Decimal| a.checked_mul(b).ok_or(OrderError::Overflow);
        match (self.kind, self.price, self.quantity, self.quote_quantity) {
            (OrderKind::Limit, Some(p), Some(q), None) => mul(q, p),
            (OrderKind::Market, None, None, Some(qq)) => Ok(qq),
            (OrderKind::Market, None, Some(q), None) => {
                let bound = Decimal::ONE + Decimal::new(slippage_bps.max(0), 4);
                mul(mul(q, reference)?, bound)
            }
            (OrderKind::Limit, ..) => Err(OrderError::Shape {
                what: "no quantity or no price",
            }),
            (OrderKind::Market, Some(_), ..) => Err(OrderError::Shape {
                what: "a price for a market order",
            }),
            (OrderKind::Market, ..) => Err(OrderError::Shape {
                what: "both or neither of a quantity and a quote quantity",
            }),
        }
    }

    /// How far the limit price is from the reference against the client, in basis points: a buy
    /// above the market or a sell below it is positive, a price better than the market (a resting
    /// order) negative. A market order takes the book: 0. Saturates at ±10^9.
    pub fn deviation_bps(&self, reference: Decimal) -> i64 {
        let Some(price) = self.price else {
            return 0;
        };
        if reference <= Decimal::ZERO {
            return 0;
        }
        let diff = match self.side {
            Side::Buy => price - reference,
            Side::Sell => reference - price,
        };
        let bps = diff
            .checked_mul(Decimal::from(BPS))
            .and_then(|d| d.checked_div(reference))
            .unwrap_or(Decimal::MAX);
        bps.round()
            .to_i64()
            .unwrap_or(i64::MAX)
            .clamp(-1_000_000_000, 1_000_000_000)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> Decimal {
        s.parse().unwrap()
    }

    fn order(side: Side, kind: OrderKind, price: Option<&str>, qty: Option<&str>) -> Order {
        Order {
            symbol: "BTCUSDT".into(),
            base: "BTC".into(),
            quote: "USDT".into(),
            side,
            kind,
            venue_type: kind.as_str().to_uppercase(),
            price: price.map(d),
            quantity: qty.map(d),
            quote_quantity: None,
            reference: Some(Reference {
                price: d("40000"),
                at: 1_000,
            }),
        }
    }

    #[test]
    fn limit_orders_are_worth_quantity_times_price() {
        let o = order(Side::Buy, OrderKind::Limit, Some("41000"), Some("0.5"));
        assert_eq!(o.notional(d("40000"), 50).unwrap(), d("20500"));
        assert_eq!(o.instrument(), "BTC/USDT");
    }

    #[test]
    fn market_orders_are_worth_the_reference_with_slippage() {
        let o = order(Side::Buy, OrderKind::Market, None, Some("2"));
        assert_eq!(o.notional(d("40000"), 50).unwrap(), d("80400"));
        let mut q = order(Side::Sell, OrderKind::Market, None, None);
        q.quote_quantity = Some(d("1234.5"));
        assert_eq!(q.notional(d("40000"), 50).unwrap(), d("1234.5"));
        let bad = order(Side::Buy, OrderKind::Market, Some("1"), Some("2"));
        assert!(bad.notional(d("40000"), 50).is_err());
        let none = order(Side::Buy, OrderKind::Limit, None, Some("2"));
        assert!(none.notional(d("40000"), 50).is_err());
    }

    #[test]
    fn deviation_is_against_the_client() {
        let buy_high = order(Side::Buy, OrderKind::Limit, Some("44000"), Some("1"));
        assert_eq!(buy_high.deviation_bps(d("40000")), 1_000);
        let buy_low = order(Side::Buy, OrderKind::Limit, Some("39000"), Some("1"));
        assert_eq!(buy_low.deviation_bps(d("40000")), -250);
        let sell_low = order(Side::Sell, OrderKind::Limit, Some("20000"), Some("1"));
        assert_eq!(sell_low.deviation_bps(d("40000")), 5_000);
        let market = order(Side::Buy, OrderKind::Market, None, Some("1"));
        assert_eq!(market.deviation_bps(d("40000")), 0);
        let absurd = order(
            Side::Buy,
            OrderKind::Limit,
            Some("100000000000000000000"),
            Some("1"),
        );
        assert_eq!(absurd.deviation_bps(d("0.00000001")), 1_000_000_000);
    }

    #[test]
    fn references_go_stale() {
        let o = order(Side::Buy, OrderKind::Limit, Some("1"), Some("1"));
        assert_eq!(o.fresh_reference(31_000, 30_000).unwrap(), d("40000"));
        assert!(matches!(
            o.fresh_reference(31_001, 30_000),
            Err(OrderError::StaleReference { .. })
        ));
        let mut none = o.clone();
        none.reference = None;
        assert!(matches!(
            none.fresh_reference(0, 30_000),
            Err(OrderError::NoReference { .. })
        ));
    }
}
