//! The simulator's configuration: the accounts it knows, each with its venue,
//! credentials, starting balances and the key's restrictions.
//!
//! It is read from JSON (see the crate documentation for an example). Unknown
//! fields are refused everywhere, so a typo in a test's account file fails loudly
//! instead of silently falling back to a default. Balances are decimal strings,
//! never JSON numbers, so no amount ever passes through a float.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use rust_decimal::Decimal;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Which venue's API an account belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum VenueKind {
    /// Binance spot and SAPI (`/api/v3/...`, `/sapi/v1/...`).
    Binance,
    /// OKX v5 (`/api/v5/...`).
    Okx,
}

impl fmt::Display for VenueKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            VenueKind::Binance => "binance",
            VenueKind::Okx => "okx",
        })
    }
}

/// What the API key may do, as the venue reports it (Binance
/// `GET /sapi/v1/account/apiRestrictions`, OKX `GET /api/v5/account/config`).
///
/// The simulator enforces `enable_reading`, `enable_spot_and_margin_trading` and
/// `enable_withdrawals`; the other flags and the IP list are only reported.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Restrictions {
    pub ip_restrict: bool,
    pub enable_withdrawals: bool,
    pub enable_reading: bool,
    pub enable_spot_and_margin_trading: bool,
    pub enable_internal_transfer: bool,
    pub permits_universal_transfer: bool,
    pub enable_margin: bool,
    pub enable_futures: bool,
    pub ip: Vec<String>,
}

impl Default for Restrictions {
    /// Reading and spot trading on; everything else off; no IP list.
    fn default() -> Self {
        Restrictions {
            ip_restrict: false,
            enable_withdrawals: false,
            enable_reading: true,
            enable_spot_and_margin_trading: true,
            enable_internal_transfer: false,
            permits_universal_transfer: false,
            enable_margin: false,
            enable_futures: false,
            ip: Vec::new(),
        }
    }
}

/// One API key at one venue, with its secret and its account's balances.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Account {
    pub venue: VenueKind,
    pub api_key: String,
    pub secret: String,
    /// OKX only: the key's passphrase (required for OKX, refused for Binance).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub passphrase: Option<String>,
    /// Asset -> amount, amounts as decimal strings (`"1.5"`).
    #[serde(default, with = "decimal_map")]
    pub balances: BTreeMap<String, Decimal>,
    #[serde(default)]
    pub restrictions: Restrictions,
}

impl fmt::Debug for Account {
    /// Never prints the secret or the passphrase.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Account")
            .field("venue", &self.venue)
            .field("api_key", &self.api_key)
            .field("secret", &"<redacted>")
            .field(
                "passphrase",
                &self.passphrase.as_ref().map(|_| "<redacted>"),
            )
            .field("balances", &self.balances)
            .field("restrictions", &self.restrictions)
            .finish()
    }
}

/// Everything the simulator is started with.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SimConfig {
    pub accounts: Vec<Account>,
}

impl SimConfig {
    /// Parses a configuration from JSON text.
    pub fn from_json(text: &str) -> Result<SimConfig, serde_json::Error> {
        serde_json::from_str(text)
    }
}

/// Serde for `BTreeMap<String, Decimal>` whose values are decimal strings only
/// (a JSON number is refused, so no balance is ever read through an `f64`).
mod decimal_map {
    use super::*;

    pub fn serialize<S: Serializer>(
        map: &BTreeMap<String, Decimal>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        let strings: BTreeMap<&str, String> = map
            .iter()
            .map(|(asset, amount)| (asset.as_str(), amount.to_string()))
            .collect();
        strings.serialize(serializer)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<BTreeMap<String, Decimal>, D::Error> {
        let strings = BTreeMap::<String, String>::deserialize(deserializer)?;
        strings
            .into_iter()
            .map(|(asset, text)| match Decimal::from_str(&text) {
                Ok(amount) => Ok((asset, amount)),
                Err(_) => Err(serde::de::Error::custom(format!(
                    "balance of {asset:?} is not a decimal string: {text:?}"
                ))),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restrictions_default_to_read_and_trade_only() {
        let account: Account = serde_json::from_str(
            r#"{"venue":"binance","api_key":"k","secret":"s","balances":{"BTC":"1.5"}}"#,
        )
        .unwrap();
        assert!(account.restrictions.enable_reading);
        assert!(account.restrictions.enable_spot_and_margin_trading);
        assert!(!account.restrictions.enable_withdrawals);
        assert!(!account.restrictions.ip_restrict);
        assert!(account.restrictions.ip.is_empty());
        assert_eq!(account.balances["BTC"], Decimal::new(15, 1));

        // Setting one flag keeps the defaults of the others.
        let account: Account = serde_json::from_str(
            r#"{"venue":"okx","api_key":"k","secret":"s","passphrase":"p",
                "restrictions":{"enable_withdrawals":true,"ip":["10.0.0.1"]}}"#,
        )
        .unwrap();
        assert!(account.restrictions.enable_withdrawals);
        assert!(account.restrictions.enable_reading);
        assert_eq!(account.restrictions.ip, vec!["10.0.0.1".to_string()]);
    }

    #[test]
    fn unknown_fields_and_numeric_balances_are_refused() {
        assert!(SimConfig::from_json(r#"{"accounts":[],"extra":1}"#).is_err());
        assert!(
            SimConfig::from_json(
                r#"{"accounts":[{"venue":"binance","api_key":"k","secret":"s","secrte":"x"}]}"#
            )
            .is_err()
        );
        assert!(
            SimConfig::from_json(
                r#"{"accounts":[{"venue":"binance","api_key":"k","secret":"s","restrictions":{"withdraw":true}}]}"#
            )
            .is_err()
        );
        assert!(
            SimConfig::from_json(
                r#"{"accounts":[{"venue":"binance","api_key":"k","secret":"s","balances":{"BTC":1.5}}]}"#
            )
            .is_err()
        );
        assert!(
            SimConfig::from_json(r#"{"accounts":[{"venue":"kraken","api_key":"k","secret":"s"}]}"#)
                .is_err()
        );
    }

    #[test]
    fn balances_round_trip_as_strings() {
        let config = SimConfig::from_json(
            r#"{"accounts":[{"venue":"binance","api_key":"k","secret":"s","balances":{"USDT":"1000.10"}}]}"#,
        )
        .unwrap();
        let json = serde_json::to_value(&config).unwrap();
        assert_eq!(json["accounts"][0]["balances"]["USDT"], "1000.10");
        assert_eq!(json["accounts"][0]["venue"], "binance");
    }

    #[test]
    fn debug_hides_secrets() {
        let account: Account = serde_json::from_str(
            r#"{"venue":"okx","api_key":"key1","secret":"very-secret","passphrase":"pass-phrase"}"#,
        )
        .unwrap();
        let shown = format!("{account:?}");
        assert!(shown.contains("key1"));
        assert!(!shown.contains("very-secret"));
        assert!(!shown.contains("pass-phrase"));
    }
}
