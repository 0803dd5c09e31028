//! Outflows: value that left a treasury, as a venue's withdrawal history (or a chain) shows it,
//! and the rule that matches one to the allowed decision behind it. An outflow that matches no
//! decision is the leaked-key-used-elsewhere case: an alarm, never a skip.

use rust_decimal::Decimal;
use serde::Serialize;

use crate::time::{MINUTE, Millis};

/// Value that left a treasury.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Outflow {
    pub venue: String,
    /// The venue's own id for it (a withdrawal id, a transaction hash).
    pub id: String,
    pub asset: String,
    pub amount: Decimal,
    /// Where it went, in the form intents use (`address` or `address:tag`).
    pub destination: String,
    /// When the venue says it happened.
    pub at: Millis,
    /// The client's id it was sent with, if the venue reports one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
}

/// The client id the gateway gives a withdrawal the bot sent without one.
pub fn gateway_reference(decision_id: i64) -> String {
    format!("kg{decision_id}")
}

/// How long before an outflow the decision that allowed it may be.
pub const MATCH_BEFORE: Millis = 10 * MINUTE;
/// How long after: the venue's clock may run behind keygate's.
pub const MATCH_AFTER: Millis = MINUTE;

/// An allowed decision that moved value out, as a candidate for an outflow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllowedOut {
    pub decision_id: i64,
    pub at: Millis,
    pub venue: String,
    pub asset: String,
    pub amount: Decimal,
    pub destination: Option<String>,
    /// The client id the withdrawal was sent with: the bot's, or the one keygate set.
    pub reference: Option<String>,
}

/// Whether `d` explains `o`: same venue, asset, amount, destination and client id, decided
/// within [`MATCH_BEFORE`] before to [`MATCH_AFTER`] after it. The client id keeps a leaked key
/// from hiding a withdrawal behind an allowed one of the same amount that never arrived.
pub fn explains(d: &AllowedOut, o: &Outflow) -> bool {
    d.reference == o.reference
        && d.venue == o.venue
        && d.asset == o.asset
        && d.amount == o.amount
        && d.destination.as_deref() == Some(o.destination.as_str())
        && d.at >= o.at.saturating_sub(MATCH_BEFORE)
        && d.at <= o.at.saturating_add(MATCH_AFTER)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_same_move_close_in_time_explains_an_outflow() {
        let o = Outflow {
            venue: "binance".into(),
            id: "w1".into(),
            asset: "USDT".into(),
            amount: Decimal::from(72),
            destination: "0xabc".into(),
            at: 100 * MINUTE,
            reference: Some("kg7".into()),
        };
        let d = AllowedOut {
            decision_id: 1,
            at: 99 * MINUTE,
            venue: "binance".into(),
            asset: "USDT".into(),
            amount: Decimal::new(720, 1),
            destination: Some("0xabc".into()),
            reference: Some("kg7".into()),
        };
        assert!(explains(&d, &o));
        let variants = [
            AllowedOut {
                venue: "okx".into(),
                ..d.clone()
            },
            AllowedOut {
                asset: "USDC".into(),
                ..d.clone()
            },
            AllowedOut {
                amount: Decimal::from(73),
                ..d.clone()
            },
            AllowedOut {
                destination: Some("0xdef".into()),
                ..d.clone()
            },
            AllowedOut {
                destination: None,
                ..d.clone()
            },
            AllowedOut {
                at: 89 * MINUTE,
                ..d.clone()
            },
            AllowedOut {
                at: 102 * MINUTE,
                ..d.clone()
            },
        ];
        for v in variants {
            assert!(!explains(&v, &o), "{v:?}");
        }
    }
}
