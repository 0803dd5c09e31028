//! Orders as a venue's order history shows them, and the rule that matches one to the allowed
//! trade decision keygate forwarded it for. An order that matches no decision was placed with
//! the venue key around keygate: an unapproved action, raised like an unapproved outflow.

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::order::Side;
use crate::outflow::{MATCH_AFTER, MATCH_BEFORE};
use crate::time::Millis;

/// One order in a venue's order history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VenueOrder {
    pub venue: String,
    /// The venue's own order id.
    pub id: String,
    /// The client id the order was placed with (Binance `clientOrderId`, OKX `clOrdId`);
    /// `None` when the venue reports none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// The venue's symbol (`BTCUSDT`, `BTC-USDT`).
    pub symbol: String,
    pub side: Side,
    /// The venue's state of the order (`FILLED`, `canceled`, ...), as it says it.
    pub status: String,
    /// The quote amount its fills paid (a buy) or received (a sell) so far.
    #[serde(with = "rust_decimal::serde::str")]
    pub filled_quote: Decimal,
    /// When the venue says it was placed.
    pub at: Millis,
}

/// An allowed trade decision, as a candidate for an order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllowedOrder {
    pub decision_id: i64,
    pub at: Millis,
    pub venue: String,
    /// The client id keygate forwarded the order with: the bot's, or `kg<decision id>`.
    pub client_id: String,
    pub symbol: String,
    pub side: Side,
}

/// Whether `d` explains `o`: the same venue, client id, symbol and side, decided within
/// [`MATCH_BEFORE`] before to [`MATCH_AFTER`] after it. A client id alone is not enough: a
/// leaked key can place an order under an id it has seen keygate use.
pub fn explains(d: &AllowedOrder, o: &VenueOrder) -> bool {
    o.client_id.as_deref() == Some(d.client_id.as_str())
        && d.venue == o.venue
        && d.symbol == o.symbol
        && d.side == o.side
        && d.at >= o.at.saturating_sub(MATCH_BEFORE)
        && d.at <= o.at.saturating_add(MATCH_AFTER)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::MINUTE;

    #[test]
    fn only_the_same_order_close_in_time_explains_it() {
        let o = VenueOrder {
            venue: "binance".into(),
            id: "9".into(),
            client_id: Some("kg7".into()),
            symbol: "BTCUSDT".into(),
            side: Side::Buy,
            status: "FILLED".into(),
            filled_quote: Decimal::from(100),
            at: 100 * MINUTE,
        };
        let d = AllowedOrder {
            decision_id: 7,
            at: 100 * MINUTE - 5,
            venue: "binance".into(),
            client_id: "kg7".into(),
            symbol: "BTCUSDT".into(),
            side: Side::Buy,
        };
        assert!(explains(&d, &o));
        let no = |f: &dyn Fn(&mut AllowedOrder)| {
            let mut d = d.clone();
            f(&mut d);
            !explains(&d, &o)
        };
        assert!(no(&|d| d.client_id = "kg8".into()));
        assert!(no(&|d| d.venue = "okx".into()));
        assert!(no(&|d| d.symbol = "SHITUSDT".into()));
        assert!(no(&|d| d.side = Side::Sell));
        assert!(no(&|d| d.at = 89 * MINUTE));
        assert!(no(&|d| d.at = 102 * MINUTE));
        // An order the venue reports without a client id is explained by nothing.
        let mut bare = o.clone();
        bare.client_id = None;
        assert!(!explains(&d, &bare));
    }
}
