//! Prices and USD values. A price is either pinned in the config (never stale, for assets the
//! operator chooses to treat as fixed, such as a stablecoin) or observed at a time (set by
//! `keygate price set` or a feed) and stale after the configured maximum age.

use std::collections::HashMap;

use rust_decimal::Decimal;
use rust_decimal::prelude::ToPrimitive;

use crate::time::{Millis, format_duration};

/// One asset's price in USD per unit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Price {
    pub usd: Decimal,
    /// When it was observed; `None` for a price pinned in the config.
    pub as_of: Option<Millis>,
}

/// Why an asset cannot be valued.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PriceError {
    #[error(
        "no price for {asset}; set one with `keygate price set {asset} USD` or pin it in [prices.pinned]"
    )]
    Missing { asset: String },
    #[error("the price of {asset} is {} old, over the maximum age of {}; refresh it with `keygate price set`", format_duration(*age), format_duration(*max_age))]
    Stale {
        asset: String,
        age: Millis,
        max_age: Millis,
    },
    #[error("the price of {asset} is observed {} in the future; check the clocks", format_duration(*ahead))]
    Future { asset: String, ahead: Millis },
    #[error("the value of {amount} {asset} in USD overflows")]
    Overflow { asset: String, amount: Decimal },
}

/// The prices keygate values intents with.
#[derive(Debug, Clone, Default)]
pub struct PriceTable {
    prices: HashMap<String, Price>,
    max_age: Millis,
}

/// How far in the future an observed price may be dated (clock differences between hosts).
const FUTURE_TOLERANCE: Millis = 5_000;

impl PriceTable {
    pub fn new(max_age: Millis) -> Self {
        Self {
            prices: HashMap::new(),
            max_age,
        }
    }

    pub fn max_age(&self) -> Millis {
        self.max_age
    }

    /// Pins a price: it never goes stale. Pinned prices win over observed ones.
    pub fn pin(&mut self, asset: &str, usd: Decimal) {
        self.prices
            .insert(asset.to_string(), Price { usd, as_of: None });
    }

    /// Records an observed price, unless the asset is pinned.
    pub fn observe(&mut self, asset: &str, usd: Decimal, at: Millis) {
        match self.prices.get(asset) {
            Some(Price { as_of: None, .. }) => {}
            Some(Price { as_of: Some(t), .. }) if *t > at => {}
            _ => {
                self.prices.insert(
                    asset.to_string(),
                    Price {
                        usd,
                        as_of: Some(at),
                    },
                );
            }
        }
    }

    pub fn get(&self, asset: &str) -> Option<&Price> {
        self.prices.get(asset)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&String, &Price)> {
        self.prices.iter()
    }

    /// The USD price of one unit of `asset` at `now`, if known and fresh.
    pub fn fresh(&self, asset: &str, now: Millis) -> Result<Decimal, PriceError> {
        let p = self.prices.get(asset).ok_or_else(|| PriceError::Missing {
            asset: asset.to_string(),
        })?;
        if let Some(t) = p.as_of {
            let age = now - t;
            if age > self.max_age {
                return Err(PriceError::Stale {
                    asset: asset.to_string(),
                    age,
                    max_age: self.max_age,
                });
            }
            if age < -FUTURE_TOLERANCE {
                return Err(PriceError::Future {
                    asset: asset.to_string(),
                    ahead: -age,
                });
            }
        }
        Ok(p.usd)
    }

    /// The USD value of `amount` of `asset` at `now`, in cents, rounded up.
    pub fn usd_cents(&self, asset: &str, amount: Decimal, now: Millis) -> Result<i64, PriceError> {
        let usd = self.fresh(asset, now)?;
        usd_cents(amount, usd).ok_or_else(|| PriceError::Overflow {
            asset: asset.to_string(),
            amount,
        })
    }
}

/// `amount × usd_per_unit` in cents, rounded up (so a limit is never under-charged), or `None`
/// on overflow.
pub fn usd_cents(amount: Decimal, usd_per_unit: Decimal) -> Option<i64> {
    amount
        .checked_mul(usd_per_unit)?
        .checked_mul(Decimal::ONE_HUNDRED)?
        .ceil()
        .to_i64()
}

/// Parses a USD amount written as a decimal string (`"2500000"`, `"72.50"`) into cents.
/// More than two decimal places, negatives and overflow are refused.
pub fn parse_usd_cents(text: &str) -> Result<i64, String> {
    let d: Decimal = text.trim().parse().map_err(|_| {
        format!("{text:?} is not a USD amount; write a decimal such as \"2500000\" or \"72.50\"")
    })?;
    if d.is_sign_negative() {
        return Err(format!("USD amount {text:?} is negative"));
    }
    let cents = d
        .checked_mul(Decimal::ONE_HUNDRED)
        .ok_or_else(|| format!("USD amount {text:?} is too large"))?;
    if cents.fract() != Decimal::ZERO {
        return Err(format!(
            "USD amount {text:?} has more than two decimal places"
        ));
    }
    cents
        .to_i64()
        .ok_or_else(|| format!("USD amount {text:?} is too large"))
}

/// Writes cents as a USD amount (`250000000` -> `2500000.00`).
pub fn format_usd(cents: i64) -> String {
    let sign = if cents < 0 { "-" } else { "" };
    let c = cents.unsigned_abs();
    format!("{sign}{}.{:02}", c / 100, c % 100)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn huge_usd_amounts_are_refused_not_a_panic() {
        // 79228162514264337593543950335 is the largest Decimal: times 100 it overflows.
        assert!(parse_usd_cents("79228162514264337593543950335").is_err());
        assert!(parse_usd_cents("7922816251426433759354395033").is_err());
    }

    #[test]
    fn values_round_up_and_go_stale() {
        let mut t = PriceTable::new(60_000);
        t.pin("USDT", Decimal::ONE);
        t.observe("BTC", "43000.5".parse().unwrap(), 1_000);
        assert_eq!(t.usd_cents("USDT", "72".parse().unwrap(), 0), Ok(7200));
        assert_eq!(
            t.usd_cents("BTC", "0.00000001".parse().unwrap(), 1_000),
            Ok(1)
        );
        assert_eq!(
            t.usd_cents("BTC", "2".parse().unwrap(), 61_000),
            Ok(8_600_100)
        );
        assert!(matches!(
            t.usd_cents("BTC", Decimal::ONE, 61_001),
            Err(PriceError::Stale { .. })
        ));
        assert!(matches!(
            t.usd_cents("ETH", Decimal::ONE, 0),
            Err(PriceError::Missing { .. })
        ));
        assert!(matches!(
            t.usd_cents("BTC", Decimal::ONE, -10_000),
            Err(PriceError::Future { .. })
        ));
        // A pinned price is never replaced by an observation.
        t.observe("USDT", "0.5".parse().unwrap(), 2_000);
        assert_eq!(t.fresh("USDT", i64::MAX), Ok(Decimal::ONE));
        assert!(matches!(
            t.usd_cents("BTC", Decimal::MAX, 1_000),
            Err(PriceError::Overflow { .. })
        ));
    }

    #[test]
    fn parses_usd() {
        assert_eq!(parse_usd_cents("2500000"), Ok(250_000_000));
        assert_eq!(parse_usd_cents("72.5"), Ok(7250));
        for bad in ["-1", "1.001", "abc", "", "1e400"] {
            assert!(parse_usd_cents(bad).is_err(), "{bad}");
        }
        assert_eq!(format_usd(250_000_000), "2500000.00");
        assert_eq!(format_usd(5), "0.05");
    }
}
