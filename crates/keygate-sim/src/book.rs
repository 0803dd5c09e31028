//! Matching an incoming order against a market's book: which levels it takes, at what prices,
//! how much. Pure: the book is read, never changed (the simulator's books are standing quotes;
//! see [`crate::Market`]). Every product and sum is checked, so no size or price a client sends
//! can overflow into a panic.

use rust_decimal::{Decimal, RoundingStrategy};

use crate::config::{Level, Market};
use crate::state::Side;

/// How an order is sized.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Size {
    /// A base quantity.
    Base(Decimal),
    /// A quote amount to spend (a buy) or to receive (a sell): Binance `quoteOrderQty`, OKX
    /// `tgtCcy=quote_ccy`.
    Quote(Decimal),
}

/// One level taken: the price and the base quantity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Take {
    pub price: Decimal,
    pub quantity: Decimal,
}

/// What an order took from the book.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Taken {
    pub fills: Vec<Take>,
    /// Base quantity filled.
    pub base: Decimal,
    /// Quote amount paid (a buy) or received (a sell).
    pub quote: Decimal,
    /// Whether the whole size was met (for a quote size: as nearly as whole base units of
    /// 10^-8 allow).
    pub complete: bool,
}

/// The precision of base quantities a quote size is turned into.
const BASE_DP: u32 = 8;

/// The side of `market` an order on `side` takes from, best first.
pub(crate) fn opposite(market: &Market, side: Side) -> &[Level] {
    match side {
        Side::Buy => &market.asks,
        Side::Sell => &market.bids,
    }
}

/// Whether a level's price is at `limit` or better for a taker on `side`.
fn acceptable(side: Side, price: Decimal, limit: Option<Decimal>) -> bool {
    match (side, limit) {
        (_, None) => true,
        (Side::Buy, Some(l)) => price <= l,
        (Side::Sell, Some(l)) => price >= l,
    }
}

/// Whether an order on `side` at `price` would take liquidity at once.
pub(crate) fn crosses(market: &Market, side: Side, price: Decimal) -> bool {
    opposite(market, side)
        .first()
        .is_some_and(|best| acceptable(side, best.price, Some(price)))
}

/// Walks the opposite side of `market`, best level first, at `limit` or better (`None`: any
/// price), until `size` is met or the acceptable levels run out. `None` if a product or sum
/// overflows.
pub(crate) fn take(
    market: &Market,
    side: Side,
    limit: Option<Decimal>,
    size: Size,
) -> Option<Taken> {
    let mut taken = Taken {
        fills: Vec::new(),
        base: Decimal::ZERO,
        quote: Decimal::ZERO,
        complete: false,
    };
    for level in opposite(market, side) {
        if !acceptable(side, level.price, limit) {
            break;
        }
        let wanted = match size {
            Size::Base(q) => q.checked_sub(taken.base)?,
            Size::Quote(amount) => amount
                .checked_sub(taken.quote)?
                .checked_div(level.price)?
                .round_dp_with_strategy(BASE_DP, RoundingStrategy::ToZero),
        };
        if wanted <= Decimal::ZERO {
            taken.complete = true;
            break;
        }
        let quantity = wanted.min(level.quantity);
        taken.base = taken.base.checked_add(quantity)?;
        taken.quote = taken
            .quote
            .checked_add(quantity.checked_mul(level.price)?)?;
        taken.fills.push(Take {
            price: level.price,
            quantity,
        });
        // The size is met at this level (for a quote size: what is left buys less than one
        // unit here, and the levels after are worse).
        if quantity == wanted {
            taken.complete = true;
            break;
        }
    }
    Some(taken)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::VenueKind;

    fn d(s: &str) -> Decimal {
        s.parse().unwrap()
    }

    fn book() -> Market {
        Market {
            venue: VenueKind::Binance,
            base: "BTC".into(),
            quote: "USDT".into(),
            bids: vec![Level::new(d("99"), d("1")), Level::new(d("98"), d("2"))],
            asks: vec![
                Level::new(d("101"), d("1")),
                Level::new(d("102"), d("2")),
                Level::new(d("110"), d("5")),
            ],
        }
    }

    #[test]
    fn a_limit_buy_takes_the_asks_up_to_its_price() {
        let t = take(&book(), Side::Buy, Some(d("102")), Size::Base(d("5"))).unwrap();
        assert_eq!(
            t.fills,
            [
                Take {
                    price: d("101"),
                    quantity: d("1")
                },
                Take {
                    price: d("102"),
                    quantity: d("2")
                },
            ]
        );
        assert_eq!((t.base, t.quote, t.complete), (d("3"), d("305"), false));
        // Below the best ask it takes nothing.
        let none = take(&book(), Side::Buy, Some(d("100")), Size::Base(d("1"))).unwrap();
        assert!(none.fills.is_empty() && !none.complete);
        assert!(!crosses(&book(), Side::Buy, d("100.99")));
        assert!(crosses(&book(), Side::Buy, d("101")));
    }

    #[test]
    fn a_market_order_walks_the_book() {
        let t = take(&book(), Side::Buy, None, Size::Base(d("4"))).unwrap();
        assert_eq!((t.base, t.quote, t.complete), (d("4"), d("415"), true));
        assert_eq!(t.fills.len(), 3);
        let sell = take(&book(), Side::Sell, None, Size::Base(d("2.5"))).unwrap();
        assert_eq!(
            (sell.base, sell.quote, sell.complete),
            (d("2.5"), d("246"), true)
        );
        // More than the book holds: what it holds.
        let all = take(&book(), Side::Sell, None, Size::Base(d("10"))).unwrap();
        assert_eq!((all.base, all.complete), (d("3"), false));
        // A limit sell takes the bids down to its price only.
        let limit = take(&book(), Side::Sell, Some(d("99")), Size::Base(d("3"))).unwrap();
        assert_eq!((limit.base, limit.quote), (d("1"), d("99")));
    }

    #[test]
    fn a_quote_size_buys_as_much_as_it_can() {
        let t = take(&book(), Side::Buy, None, Size::Quote(d("203"))).unwrap();
        // 101 for the first BTC, then 102 buys one more.
        assert_eq!((t.base, t.quote, t.complete), (d("2"), d("203"), true));
        let odd = take(&book(), Side::Buy, None, Size::Quote(d("100"))).unwrap();
        assert_eq!(odd.base, d("0.99009900"));
        assert!(odd.quote <= d("100") && odd.complete);
        let big = take(&book(), Side::Buy, None, Size::Quote(d("1000000"))).unwrap();
        assert_eq!((big.base, big.complete), (d("8"), false));
        let empty = Market {
            asks: vec![],
            ..book()
        };
        let nothing = take(&empty, Side::Buy, None, Size::Quote(d("5"))).unwrap();
        assert!(nothing.fills.is_empty() && !nothing.complete);
    }

    #[test]
    fn overflow_is_none_not_a_panic() {
        let huge = Market {
            asks: vec![Level::new(Decimal::MAX, Decimal::MAX)],
            ..book()
        };
        assert_eq!(take(&huge, Side::Buy, None, Size::Base(Decimal::MAX)), None);
    }
}
