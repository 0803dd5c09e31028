//! Intents: what a request would do, normalised across venues.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::route::{Route, RouteError};

/// What a client asks a venue to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// Balances, orders, history: moves nothing.
    Read,
    /// Place an order: its amount is the order's notional.
    Trade,
    /// Cancel an order.
    Cancel,
    /// Withdraw from an exchange account to an address.
    Withdraw,
    /// Send funds from a wallet (an EVM transfer).
    Transfer,
}

impl Action {
    pub const ALL: [Action; 5] = [
        Action::Read,
        Action::Trade,
        Action::Cancel,
        Action::Withdraw,
        Action::Transfer,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Action::Read => "read",
            Action::Trade => "trade",
            Action::Cancel => "cancel",
            Action::Withdraw => "withdraw",
            Action::Transfer => "transfer",
        }
    }

    /// Whether the action sends funds out of the treasury (and so needs a destination).
    pub fn moves_funds_out(self) -> bool {
        matches!(self, Action::Withdraw | Action::Transfer)
    }

    /// Whether the action carries an asset and an amount that must be valued.
    pub fn carries_value(self) -> bool {
        matches!(self, Action::Trade | Action::Withdraw | Action::Transfer)
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Action {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Action::ALL
            .into_iter()
            .find(|a| a.as_str() == s)
            .ok_or_else(|| {
                format!("unknown action {s:?}; the actions are read, trade, cancel, withdraw and transfer")
            })
    }
}

/// One request, normalised: who asks which venue to do what, with how much of which asset, to
/// where. Amounts are decimals in the asset's own units, never floats.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Intent {
    pub client: String,
    pub venue: String,
    pub action: Action,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub asset: Option<String>,
    /// A decimal string ("72.5"): a JSON number is refused, since it may have passed through
    /// a float on its way.
    #[serde(
        default,
        with = "rust_decimal::serde::str_option",
        skip_serializing_if = "Option::is_none"
    )]
    pub amount: Option<Decimal>,
    /// The destination address of a withdrawal or transfer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub destination: Option<String>,
    /// How a withdrawal reaches its destination: on chain (on which network) or as an internal
    /// transfer. Not written when it is the default (on chain, the venue's default network), so
    /// intents recorded before routes existed read and hash as they did.
    #[serde(default, skip_serializing_if = "Route::is_plain")]
    pub route: Route,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_ip: Option<IpAddr>,
    /// The token the request came with (its public id, never the secret).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_id: Option<String>,
    /// A trade's order: instrument, side, type, price, quantity and the market's reference
    /// price. Every order endpoint keygate knows fills it; a trade without one (a version-1
    /// replay file, a hand-written `keygate decide` intent) is valued by its asset and amount.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order: Option<crate::order::Order>,
}

/// Why an intent is not well formed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IntentError {
    #[error("a {action} needs an asset")]
    MissingAsset { action: Action },
    #[error("a {action} needs an amount")]
    MissingAmount { action: Action },
    #[error("the amount {amount} is not positive")]
    NotPositive { amount: Decimal },
    #[error("the amount {amount} is too large (the most keygate accepts is 10^18 units)")]
    TooLarge { amount: Decimal },
    #[error("a {action} needs a destination address")]
    MissingDestination { action: Action },
    #[error("a {action} carries no {what}; remove it")]
    Unexpected { action: Action, what: &'static str },
    #[error("the order is not valid: {why}")]
    BadOrder { why: String },
    #[error("{what} {value:?} is not a valid name (1-64 characters: letters, digits, . _ - :)")]
    BadName { what: &'static str, value: String },
    #[error("the destination's route is not valid: {0}")]
    BadRoute(#[from] RouteError),
}

/// The largest amount an intent may carry: far beyond any real transfer, and small enough that
/// sums over windows can never overflow a decimal.
pub const MAX_AMOUNT: i64 = 1_000_000_000_000_000_000;

/// Whether `s` is an acceptable name for a client, venue or asset. No `/`: policies see assets
/// and destinations as `venue/asset[/address]`, which must not be ambiguous.
pub fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b':'))
}

impl Intent {
    /// Checks that the intent carries exactly what its action needs.
    pub fn validate(&self) -> Result<(), IntentError> {
        for (what, value) in [("client", &self.client), ("venue", &self.venue)] {
            if !valid_name(value) {
                return Err(IntentError::BadName {
                    what,
                    value: value.clone(),
                });
            }
        }
        if let Some(asset) = &self.asset
            && !valid_name(asset)
        {
            return Err(IntentError::BadName {
                what: "asset",
                value: asset.clone(),
            });
        }
        let action = self.action;
        if let Some(order) = &self.order {
            self.validate_order(order)?;
        }
        if action.carries_value() {
            if self.asset.is_none() {
                return Err(IntentError::MissingAsset { action });
            }
            // An order sized in its base asset at the market has no quote amount until the
            // decider values it at the reference price.
            let amount = match (self.amount, &self.order) {
                (Some(a), _) => a,
                (None, Some(_)) => return self.check_destination(),
                (None, None) => return Err(IntentError::MissingAmount { action }),
            };
            check_amount(amount)?;
        } else if self.amount.is_some() {
            return Err(IntentError::Unexpected {
                action,
                what: "amount",
            });
        }
        self.check_destination()
    }

    fn check_destination(&self) -> Result<(), IntentError> {
        let action = self.action;
        if action.moves_funds_out() {
            if self
                .destination
                .as_deref()
                .is_none_or(|d| d.trim().is_empty())
            {
                return Err(IntentError::MissingDestination { action });
            }
            self.route.check()?;
        } else if self.destination.is_some() {
            return Err(IntentError::Unexpected {
                action,
                what: "destination",
            });
        } else if !self.route.is_plain() {
            return Err(IntentError::Unexpected {
                action,
                what: "route",
            });
        }
        Ok(())
    }
}

impl Intent {
    /// An order belongs to a trade, in the quote asset, with positive sizes and price.
    fn validate_order(&self, o: &crate::order::Order) -> Result<(), IntentError> {
        let bad = |why: String| Err(IntentError::BadOrder { why });
        if self.action != Action::Trade {
            return Err(IntentError::Unexpected {
                action: self.action,
                what: "order",
            });
        }
        for (what, value) in [
            ("base", &o.base),
            ("quote", &o.quote),
            ("symbol", &o.symbol),
        ] {
            if !valid_name(value) {
                return Err(IntentError::BadName {
                    what,
                    value: value.clone(),
                });
            }
        }
        if self.asset.as_deref() != Some(o.quote.as_str()) {
            return bad(format!(
                "an order's asset is its quote asset {}, not {}",
                o.quote,
                self.asset.as_deref().unwrap_or("none")
            ));
        }
        for (what, v) in [
            ("price", o.price),
            ("quantity", o.quantity),
            ("quote quantity", o.quote_quantity),
        ] {
            if let Some(v) = v {
                if v <= Decimal::ZERO {
                    return bad(format!("the {what} {v} is not positive"));
                }
                if v > Decimal::from(MAX_AMOUNT) {
                    return bad(format!("the {what} {v} is too large"));
                }
            }
        }
        Ok(())
    }
}

fn check_amount(amount: Decimal) -> Result<(), IntentError> {
    if amount <= Decimal::ZERO {
        return Err(IntentError::NotPositive { amount });
    }
    if amount > Decimal::from(MAX_AMOUNT) {
        return Err(IntentError::TooLarge { amount });
    }
    Ok(())
}

/// The canonical form of an address for comparison: EVM hex addresses are case-insensitive
/// (EIP-55 checksums only change case), everything else is compared exactly.
pub fn normalize_address(address: &str) -> String {
    let a = address.trim();
    let is_evm = a.len() == 42
        && (a.starts_with("0x") || a.starts_with("0X"))
        && a[2..].bytes().all(|b| b.is_ascii_hexdigit());
    if is_evm {
        a.to_ascii_lowercase()
    } else {
        a.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn withdraw() -> Intent {
        Intent {
            order: None,
            client: "mm-bot".into(),
            venue: "binance".into(),
            action: Action::Withdraw,
            asset: Some("USDT".into()),
            amount: Some(Decimal::new(72, 0)),
            destination: Some("0xAbC0000000000000000000000000000000000001".into()),
            route: Route::default(),
            source_ip: None,
            token_id: None,
        }
    }

    #[test]
    fn validates_what_each_action_needs() {
        assert_eq!(withdraw().validate(), Ok(()));
        let mut i = withdraw();
        i.destination = None;
        assert!(matches!(
            i.validate(),
            Err(IntentError::MissingDestination { .. })
        ));
        let mut i = withdraw();
        i.amount = Some(Decimal::ZERO);
        assert!(matches!(i.validate(), Err(IntentError::NotPositive { .. })));
        let mut i = withdraw();
        i.action = Action::Read;
        assert!(matches!(i.validate(), Err(IntentError::Unexpected { .. })));
        let mut i = withdraw();
        i.route = Route::chain(Some("ETH"));
        assert_eq!(i.validate(), Ok(()));
        i.route.area_code = Some("86".into());
        assert!(matches!(i.validate(), Err(IntentError::BadRoute(_))));
        let mut i = withdraw();
        i.action = Action::Trade;
        i.destination = None;
        i.route = Route::chain(Some("ETH"));
        assert!(matches!(
            i.validate(),
            Err(IntentError::Unexpected { what: "route", .. })
        ));
        let mut i = withdraw();
        i.client = "bad name".into();
        assert!(matches!(i.validate(), Err(IntentError::BadName { .. })));
    }

    #[test]
    fn evm_addresses_compare_without_case() {
        assert_eq!(
            normalize_address("0xAbC0000000000000000000000000000000000001"),
            "0xabc0000000000000000000000000000000000001"
        );
        assert_eq!(normalize_address("TXyzAbc"), "TXyzAbc");
    }

    #[test]
    fn parses_json_with_decimal_strings() {
        let i: Intent = serde_json::from_str(
            r#"{"client":"a","venue":"b","action":"withdraw","asset":"USDT","amount":"72.5","destination":"x"}"#,
        )
        .unwrap();
        assert_eq!(i.amount, Some(Decimal::new(725, 1)));
        assert!(
            serde_json::from_str::<Intent>(r#"{"client":"a","venue":"b","action":"steal"}"#)
                .is_err()
        );
    }
}
