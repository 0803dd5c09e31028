//! How a withdrawal reaches its recipient, beyond the address: on chain (on which network) or
//! as an internal transfer to another account of the venue (named by e-mail, phone number with
//! its area code, UID or account name). A tag or memo stays part of the address, as
//! `address:tag` (the form OKX's `toAddr` takes; keygate writes Binance's `addressTag` so).
//!
//! Two destinations with the same address and different routes are different destinations: an
//! address-book entry approves only its own route ([`crate::book::AddressBook::usable`]).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// How the venue delivers the funds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Via {
    /// An on-chain withdrawal to a blockchain address.
    #[default]
    Chain,
    /// An internal transfer to the venue account with this e-mail address.
    Email,
    /// An internal transfer to the venue account with this phone number (and area code).
    Phone,
    /// An internal transfer to the venue account with this user id.
    Uid,
    /// An internal transfer to the venue account with this login name (a sub-account).
    Account,
}

impl Via {
    pub const ALL: [Via; 5] = [Via::Chain, Via::Email, Via::Phone, Via::Uid, Via::Account];

    pub fn as_str(self) -> &'static str {
        match self {
            Via::Chain => "chain",
            Via::Email => "email",
            Via::Phone => "phone",
            Via::Uid => "uid",
            Via::Account => "account",
        }
    }

    /// Whether the funds stay inside the venue (an internal transfer).
    pub fn is_internal(self) -> bool {
        self != Via::Chain
    }

    fn is_chain(&self) -> bool {
        *self == Via::Chain
    }
}

impl fmt::Display for Via {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Via {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Via::ALL
            .into_iter()
            .find(|v| v.as_str() == s)
            .ok_or_else(|| {
                format!("unknown destination type {s:?}; the types are chain, email, phone, uid and account")
            })
    }
}

/// The route of a destination. The default, on chain on the venue's default network, is what
/// a withdrawal that names no network or destination type gets.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Route {
    #[serde(default, skip_serializing_if = "Via::is_chain")]
    pub via: Via,
    /// The network as the venue names it (Binance `network` "ETH", OKX `chain` "USDT-ERC20");
    /// `None`: the venue's default network for the asset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<String>,
    /// A phone number's area code ("86"), for [`Via::Phone`] only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub area_code: Option<String>,
}

/// Why a route is not well formed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RouteError {
    #[error(
        "network {0:?} is not a valid network name (1-64 letters, digits, spaces and - _ . ( ))"
    )]
    BadNetwork(String),
    #[error(
        "an internal transfer ({0}) has no network; send the network only with an on-chain withdrawal"
    )]
    NetworkOnInternal(Via),
    #[error("a transfer to a phone number needs its area code")]
    MissingAreaCode,
    #[error("an area code goes only with a phone number; remove it")]
    UnexpectedAreaCode,
    #[error("area code {0:?} is not valid: 1-4 digits, such as 86")]
    BadAreaCode(String),
}

impl Route {
    /// On chain, on `network` (`None`: the venue's default).
    pub fn chain(network: Option<&str>) -> Self {
        Route {
            via: Via::Chain,
            network: network.map(str::to_string),
            area_code: None,
        }
    }

    /// The default route: on chain, the venue's default network.
    pub fn is_plain(&self) -> bool {
        *self == Route::default()
    }

    /// Checks that the route's parts fit together and are well formed.
    pub fn check(&self) -> Result<(), RouteError> {
        if let Some(n) = &self.network {
            if self.via.is_internal() {
                return Err(RouteError::NetworkOnInternal(self.via));
            }
            if !valid_network(n) {
                return Err(RouteError::BadNetwork(n.chars().take(64).collect()));
            }
        }
        match (&self.area_code, self.via) {
            (None, Via::Phone) => Err(RouteError::MissingAreaCode),
            (Some(_), v) if v != Via::Phone => Err(RouteError::UnexpectedAreaCode),
            (Some(a), _) if !valid_area_code(a) => {
                Err(RouteError::BadAreaCode(a.chars().take(8).collect()))
            }
            _ => Ok(()),
        }
    }

    /// The `keygate address add` options that name this route ("" for the default).
    pub fn flags(&self) -> String {
        let mut out = String::new();
        if self.via.is_internal() {
            out.push_str(&format!(" --via {}", self.via));
        }
        if let Some(n) = &self.network {
            out.push_str(&format!(" --network {n:?}"));
        }
        if let Some(a) = &self.area_code {
            out.push_str(&format!(" --area-code {a}"));
        }
        out
    }
}

impl fmt::Display for Route {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.via, &self.network, &self.area_code) {
            (Via::Chain, None, _) => f.write_str("on chain, on the venue's default network"),
            (Via::Chain, Some(n), _) => write!(f, "on chain, on network {n}"),
            (Via::Phone, _, Some(a)) => write!(f, "internal, to a phone number (area code {a})"),
            (v, _, _) => write!(f, "internal, to an account named by {}", v.as_str()),
        }
    }
}

/// A network name as venues write them: "ETH", "BSC", "USDT-ERC20", "USDT-Arbitrum One".
pub fn valid_network(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.trim() == s
        && s.bytes().all(|b| {
            b.is_ascii_alphanumeric() || matches!(b, b' ' | b'-' | b'_' | b'.' | b'(' | b')')
        })
}

/// A phone area code: 1-4 digits, without `+`.
pub fn valid_area_code(s: &str) -> bool {
    (1..=4).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_parts_of_a_route_must_fit_together() {
        assert_eq!(Route::default().check(), Ok(()));
        assert!(Route::default().is_plain());
        assert_eq!(Route::chain(Some("USDT-Arbitrum One")).check(), Ok(()));
        assert!(!Route::chain(Some("ETH")).is_plain());
        assert!(matches!(
            Route::chain(Some("ETH/BSC")).check(),
            Err(RouteError::BadNetwork(_))
        ));
        assert!(matches!(
            Route::chain(Some(" ETH")).check(),
            Err(RouteError::BadNetwork(_))
        ));
        let mut r = Route {
            via: Via::Email,
            network: Some("ETH".into()),
            area_code: None,
        };
        assert_eq!(r.check(), Err(RouteError::NetworkOnInternal(Via::Email)));
        r.network = None;
        assert_eq!(r.check(), Ok(()));
        r.area_code = Some("86".into());
        assert_eq!(r.check(), Err(RouteError::UnexpectedAreaCode));
        r.via = Via::Phone;
        assert_eq!(r.check(), Ok(()));
        r.area_code = None;
        assert_eq!(r.check(), Err(RouteError::MissingAreaCode));
        r.area_code = Some("+86".into());
        assert!(matches!(r.check(), Err(RouteError::BadAreaCode(_))));
    }

    #[test]
    fn the_default_route_is_not_written_and_others_are() {
        assert_eq!(serde_json::to_string(&Route::default()).unwrap(), "{}");
        let r = Route {
            via: Via::Phone,
            network: None,
            area_code: Some("86".into()),
        };
        let text = serde_json::to_string(&r).unwrap();
        assert_eq!(text, r#"{"via":"phone","area_code":"86"}"#);
        assert_eq!(serde_json::from_str::<Route>(&text).unwrap(), r);
        assert!(serde_json::from_str::<Route>(r#"{"via":"pigeon"}"#).is_err());
        assert_eq!(r.flags(), " --via phone --area-code 86");
        assert_eq!(
            Route::chain(Some("ETH")).to_string(),
            "on chain, on network ETH"
        );
        assert_eq!("uid".parse::<Via>(), Ok(Via::Uid));
        assert!("x".parse::<Via>().is_err());
    }
}
