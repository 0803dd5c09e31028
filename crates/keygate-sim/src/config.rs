//! The simulator's configuration: the accounts it knows, each with its venue,
//! credentials, starting balances and the key's restrictions; and the markets it
//! lists, each an instrument of one venue with its order book.
//!
//! It is read from JSON (see the crate documentation for an example). Unknown
//! fields are refused everywhere, so a typo in a test's account file fails loudly
//! instead of silently falling back to a default. Balances, prices and quantities
//! are decimal strings, never JSON numbers, so no amount ever passes through a float.

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

/// One price level of a book: a price (quote units per base unit) and the base quantity
/// offered there. Written as the venues write depth, `["36900.5", "0.25"]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Level {
    pub price: Decimal,
    pub quantity: Decimal,
}

impl Level {
    pub fn new(price: Decimal, quantity: Decimal) -> Level {
        Level { price, quantity }
    }
}

impl Serialize for Level {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        (self.price.to_string(), self.quantity.to_string()).serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Level {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Level, D::Error> {
        let (price, quantity) = <(String, String)>::deserialize(deserializer)?;
        let parse = |what: &str, text: &str| {
            crate::parse_amount(text).ok_or_else(|| {
                serde::de::Error::custom(format!(
                    "a level's {what} is not a plain decimal string: {text:?}"
                ))
            })
        };
        Ok(Level {
            price: parse("price", &price)?,
            quantity: parse("quantity", &quantity)?,
        })
    }
}

/// One instrument the simulator lists at one venue, with its order book. Orders fill against
/// the book as configured: the levels are other traders' standing quotes, which fills take from
/// but never use up (each order meets the same book), so a replay of any length sees the same
/// market. What does not fill of a limit order rests, and never fills later.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Market {
    pub venue: VenueKind,
    /// `BTC`: upper-case letters and digits.
    pub base: String,
    pub quote: String,
    /// Best (highest) first; may be empty.
    #[serde(default)]
    pub bids: Vec<Level>,
    /// Best (lowest) first; may be empty.
    #[serde(default)]
    pub asks: Vec<Level>,
}

impl Market {
    /// The venue's symbol: `BTCUSDT` on Binance, `BTC-USDT` on OKX.
    pub fn symbol(&self) -> String {
        match self.venue {
            VenueKind::Binance => format!("{}{}", self.base, self.quote),
            VenueKind::Okx => format!("{}-{}", self.base, self.quote),
        }
    }

    /// A book around `mid`: `levels` levels a side, `step_bps` basis points apart (the best
    /// bid and ask `step_bps / 2` from the mid), `quantity` at each. Levels that would not be
    /// positive are left out.
    pub fn around(
        venue: VenueKind,
        base: &str,
        quote: &str,
        mid: Decimal,
        step_bps: u32,
        levels: usize,
        quantity: Decimal,
    ) -> Market {
        let bps = Decimal::new(i64::from(step_bps), 4);
        let offset = |i: usize| {
            let steps = Decimal::from(i as u64) + Decimal::new(5, 1);
            mid.checked_mul(bps.checked_mul(steps)?)
                .map(|d| d.round_dp(8))
        };
        let side = |sign: i8| -> Vec<Level> {
            (0..levels)
                .filter_map(|i| {
                    let off = offset(i)?;
                    let price = if sign < 0 {
                        mid.checked_sub(off)?
                    } else {
                        mid.checked_add(off)?
                    };
                    (price > Decimal::ZERO).then_some(Level::new(price, quantity))
                })
                .collect()
        };
        Market {
            venue,
            base: base.to_string(),
            quote: quote.to_string(),
            bids: side(-1),
            asks: side(1),
        }
    }
}

/// The markets a simulator lists when none are configured:
///
/// - Binance `BTCUSDT` and OKX `BTC-USDT`: bids from 36,900 down, asks from 40,100 up. Wide on
///   purpose: the orders keygate's tests and the gateway replay place (buys at 36,000-40,000,
///   sells at 37,000) rest, as they did before the simulator had books; an order that means to
///   fill crosses them.
/// - Binance `ETHUSDT` and OKX `ETH-USDT`: around 2,000.
/// - Binance `SHITUSDT`: an illiquid pair, thin around 0.001, with a seller's wall of
///   1,000,000 at 5 USDT: the 3Commas pattern (2022), where a thief's own asks far above the
///   market are what a stolen trade-only key buys from.
pub fn default_markets() -> Vec<Market> {
    let d = |s: &str| Decimal::from_str(s).unwrap_or_default();
    let levels = |pairs: &[(&str, &str)]| -> Vec<Level> {
        pairs.iter().map(|(p, q)| Level::new(d(p), d(q))).collect()
    };
    let btc = |venue| Market {
        venue,
        base: "BTC".into(),
        quote: "USDT".into(),
        bids: levels(&[
            ("36900", "0.5"),
            ("36800", "1"),
            ("36500", "2"),
            ("36000", "5"),
        ]),
        asks: levels(&[
            ("40100", "0.5"),
            ("40200", "1"),
            ("40500", "2"),
            ("41000", "5"),
        ]),
    };
    let eth = |venue| Market {
        venue,
        base: "ETH".into(),
        quote: "USDT".into(),
        bids: levels(&[("1999", "2"), ("1995", "5"), ("1990", "10")]),
        asks: levels(&[("2001", "2"), ("2005", "5"), ("2010", "10")]),
    };
    let shit = Market {
        venue: VenueKind::Binance,
        base: "SHIT".into(),
        quote: "USDT".into(),
        bids: levels(&[("0.0009", "20000"), ("0.0008", "50000")]),
        asks: levels(&[("0.0011", "20000"), ("0.0015", "50000"), ("5", "1000000")]),
    };
    vec![
        btc(VenueKind::Binance),
        eth(VenueKind::Binance),
        shit,
        btc(VenueKind::Okx),
        eth(VenueKind::Okx),
    ]
}

/// What the `keygate-sim` binary reads: the accounts, and the markets (the
/// [`default_markets`] when the file names none).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SimFile {
    pub accounts: Vec<Account>,
    #[serde(default = "default_markets")]
    pub markets: Vec<Market>,
}

impl SimFile {
    /// Parses a simulator file from JSON text.
    pub fn from_json(text: &str) -> Result<SimFile, serde_json::Error> {
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
    fn markets_read_as_string_pairs_and_default_when_absent() {
        let file = SimFile::from_json(r#"{"accounts":[]}"#).unwrap();
        assert_eq!(file.markets, default_markets());
        let symbols: Vec<String> = file.markets.iter().map(Market::symbol).collect();
        assert_eq!(
            symbols,
            ["BTCUSDT", "ETHUSDT", "SHITUSDT", "BTC-USDT", "ETH-USDT"]
        );
        let file = SimFile::from_json(
            r#"{"accounts":[],"markets":[{"venue":"okx","base":"SOL","quote":"USDT",
                "bids":[["100.5","2"]],"asks":[["101","3"],["102","4"]]}]}"#,
        )
        .unwrap();
        assert_eq!(file.markets.len(), 1);
        assert_eq!(file.markets[0].symbol(), "SOL-USDT");
        assert_eq!(
            file.markets[0].asks[1],
            Level::new(Decimal::from(102), Decimal::from(4))
        );
        let json = serde_json::to_value(&file.markets[0]).unwrap();
        assert_eq!(json["bids"][0], serde_json::json!(["100.5", "2"]));
        for bad in [
            r#"{"accounts":[],"markets":[{"venue":"okx","base":"A","quote":"B","bids":[[1,2]]}]}"#,
            r#"{"accounts":[],"markets":[{"venue":"okx","base":"A","quote":"B","bids":[["1e3","2"]]}]}"#,
            r#"{"accounts":[],"markets":[{"venue":"okx","base":"A","quote":"B","bids":[["1"]]}]}"#,
            r#"{"accounts":[],"markets":[{"venue":"okx","base":"A","quote":"B","book":[]}]}"#,
        ] {
            assert!(SimFile::from_json(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_book_around_a_mid() {
        let m = Market::around(
            VenueKind::Binance,
            "BTC",
            "USDT",
            Decimal::from(36_500),
            20,
            3,
            Decimal::ONE,
        );
        let prices = |l: &[Level]| {
            l.iter()
                .map(|l| l.price.normalize().to_string())
                .collect::<Vec<_>>()
        };
        // 20 bps of 36,500 is 73: the best bid and ask 36.5 from the mid, then 73 apart.
        assert_eq!(prices(&m.bids), ["36463.5", "36390.5", "36317.5"]);
        assert_eq!(prices(&m.asks), ["36536.5", "36609.5", "36682.5"]);
        // A step so wide the bids would go below zero leaves them out.
        let thin = Market::around(
            VenueKind::Okx,
            "X",
            "Y",
            Decimal::ONE,
            9_000,
            3,
            Decimal::ONE,
        );
        assert_eq!(thin.bids.len(), 1);
        assert_eq!(thin.asks.len(), 3);
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
