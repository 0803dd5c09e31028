//! The address book: the destinations funds may go to, per venue and asset. A new entry is
//! usable only once its cool-down has passed *and* an admin has approved it. Being listed is
//! necessary, not sufficient: policies and detectors still judge every withdrawal (an allowlist
//! alone did not stop the Kronos thief, who withdrew to the firm's own whitelisted wallet).
//!
//! An entry is a destination with its route (`crate::route`): the same address on another
//! network, or as an internal transfer instead of on chain, is another destination, and an
//! entry approves only its own.

use std::collections::HashMap;

use serde::Serialize;

use crate::intent::normalize_address;
use crate::route::Route;
use crate::time::{Millis, format_duration};

/// One address-book entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Destination {
    pub id: i64,
    pub venue: String,
    pub asset: String,
    /// Normalised with [`normalize_address`].
    pub address: String,
    /// The network and destination type the entry approves (the default: on chain, the
    /// venue's default network).
    #[serde(skip_serializing_if = "Route::is_plain")]
    pub route: Route,
    pub label: String,
    pub added_at: Millis,
    pub added_by: String,
    /// When the cool-down ends.
    pub usable_from: Millis,
    pub approved_at: Option<Millis>,
    pub approved_by: Option<String>,
}

impl Destination {
    /// The entry's state at `now`, as a word for listings.
    pub fn status(&self, now: Millis) -> &'static str {
        match (self.approved_at.is_some(), now >= self.usable_from) {
            (true, true) => "active",
            (true, false) => "cooling-down",
            (false, _) => "awaiting-approval",
        }
    }
}

/// Why a destination may not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BookError {
    #[error(
        "destination {address} is not in the address book for {asset} on {venue}; add it with `keygate address add`"
    )]
    NotListed {
        venue: String,
        asset: String,
        address: String,
    },
    #[error("{0}")]
    OtherRoute(Box<OtherRoute>),
    #[error("destination {address} ({label}) is in its cool-down for another {}", format_duration(*remaining))]
    CoolingDown {
        address: String,
        label: String,
        remaining: Millis,
    },
    #[error(
        "destination {address} ({label}) awaits an admin's approval: `keygate address approve {id}`"
    )]
    AwaitingApproval {
        id: i64,
        address: String,
        label: String,
    },
}

/// A destination listed, but for other routes than the request's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "destination {address} is in the address book for {asset} on {venue} {listed}, but the request sends it {asked}: an entry for one network or destination type does not approve another. Name the entry's route in the request, or add this one with `keygate address add {address} --venue {venue} --asset {asset}{flags}`"
)]
pub struct OtherRoute {
    pub venue: String,
    pub asset: String,
    pub address: String,
    /// The routes listed for the address, described.
    pub listed: String,
    pub asked: Route,
    /// The `keygate address add` options for the route asked.
    pub flags: String,
}

/// Every entry, keyed by normalised address (then matched on venue and asset).
#[derive(Debug, Clone, Default)]
pub struct AddressBook {
    entries: HashMap<String, Vec<Destination>>,
}

impl AddressBook {
    pub fn new(entries: impl IntoIterator<Item = Destination>) -> Self {
        let mut map: HashMap<String, Vec<Destination>> = HashMap::new();
        for d in entries {
            map.entry(d.address.clone()).or_default().push(d);
        }
        Self { entries: map }
    }

    pub fn iter(&self) -> impl Iterator<Item = &Destination> {
        self.entries.values().flatten()
    }

    /// The entry for a destination sent by `route`, if it is usable at `now`.
    pub fn usable(
        &self,
        venue: &str,
        asset: &str,
        address: &str,
        route: &Route,
        now: Millis,
    ) -> Result<&Destination, BookError> {
        let address = normalize_address(address);
        let same: Vec<&Destination> = self
            .entries
            .get(&address)
            .map(|ds| {
                ds.iter()
                    .filter(|d| d.venue == venue && d.asset == asset)
                    .collect()
            })
            .unwrap_or_default();
        let Some(d) = same.iter().copied().find(|d| d.route == *route) else {
            if same.is_empty() {
                return Err(BookError::NotListed {
                    venue: venue.to_string(),
                    asset: asset.to_string(),
                    address,
                });
            }
            let listed: Vec<String> = same.iter().map(|d| d.route.to_string()).collect();
            return Err(BookError::OtherRoute(Box::new(OtherRoute {
                venue: venue.to_string(),
                asset: asset.to_string(),
                address,
                listed: listed.join("; "),
                asked: route.clone(),
                flags: route.flags(),
            })));
        };
        if d.approved_at.is_none() {
            return Err(BookError::AwaitingApproval {
                id: d.id,
                address: d.address.clone(),
                label: d.label.clone(),
            });
        }
        if now < d.usable_from {
            return Err(BookError::CoolingDown {
                address: d.address.clone(),
                label: d.label.clone(),
                remaining: d.usable_from - now,
            });
        }
        Ok(d)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::HOUR;

    #[test]
    fn entries_need_approval_and_cool_down() {
        let plain = Route::default();
        let mut d = Destination {
            id: 1,
            venue: "binance".into(),
            asset: "USDT".into(),
            address: normalize_address("0xAA00000000000000000000000000000000000001"),
            route: Route::default(),
            label: "cold wallet".into(),
            added_at: 0,
            added_by: "admin".into(),
            usable_from: 24 * HOUR,
            approved_at: None,
            approved_by: None,
        };
        let book = AddressBook::new([d.clone()]);
        let addr = "0xaa00000000000000000000000000000000000001";
        assert!(matches!(
            book.usable("binance", "USDT", addr, &plain, 25 * HOUR),
            Err(BookError::AwaitingApproval { .. })
        ));
        d.approved_at = Some(HOUR);
        let book = AddressBook::new([d.clone()]);
        assert!(matches!(
            book.usable("binance", "USDT", addr, &plain, HOUR),
            Err(BookError::CoolingDown { .. })
        ));
        assert_eq!(
            book.usable(
                "binance",
                "USDT",
                &addr.to_uppercase().replace("0X", "0x"),
                &plain,
                24 * HOUR
            )
            .unwrap()
            .id,
            1
        );
        assert!(matches!(
            book.usable("binance", "USDC", addr, &plain, 24 * HOUR),
            Err(BookError::NotListed { .. })
        ));
        assert!(matches!(
            book.usable("okx", "USDT", addr, &plain, 24 * HOUR),
            Err(BookError::NotListed { .. })
        ));
        assert_eq!(d.status(0), "cooling-down");
    }

    fn entry(id: i64, address: &str, route: Route) -> Destination {
        Destination {
            id,
            venue: "okx".into(),
            asset: "USDT".into(),
            address: normalize_address(address),
            route,
            label: format!("entry {id}"),
            added_at: 0,
            added_by: "alice".into(),
            usable_from: 0,
            approved_at: Some(0),
            approved_by: Some("bob".into()),
        }
    }

    #[test]
    fn an_entry_approves_only_its_own_network_and_destination_type() {
        use crate::route::Via;
        let erc20 = Route::chain(Some("USDT-ERC20"));
        let email = Route {
            via: Via::Email,
            network: None,
            area_code: None,
        };
        let book = AddressBook::new([
            entry(
                1,
                "0xAA00000000000000000000000000000000000001",
                erc20.clone(),
            ),
            entry(2, "alice@example.com", email.clone()),
            entry(3, "rTagged:42", Route::default()),
        ]);
        let a = "0xaa00000000000000000000000000000000000001";
        assert_eq!(book.usable("okx", "USDT", a, &erc20, 1).unwrap().id, 1);
        // Another network, or the venue's default, is another destination.
        for other in [Route::chain(Some("USDT-TRC20")), Route::default()] {
            let e = book.usable("okx", "USDT", a, &other, 1).unwrap_err();
            assert!(matches!(e, BookError::OtherRoute(_)), "{e}");
            let text = e.to_string();
            assert!(text.contains("on network USDT-ERC20"), "{text}");
            assert!(text.contains("does not approve another"), "{text}");
        }
        assert!(
            book.usable("okx", "USDT", a, &Route::chain(Some("USDT-TRC20")), 1)
                .unwrap_err()
                .to_string()
                .contains("--network \"USDT-TRC20\"")
        );
        // An internal transfer is judged as one: an e-mail entry approves it, not an on-chain
        // withdrawal to the same text, and an on-chain entry approves no internal transfer.
        assert_eq!(
            book.usable("okx", "USDT", "alice@example.com", &email, 1)
                .unwrap()
                .id,
            2
        );
        assert!(matches!(
            book.usable("okx", "USDT", "alice@example.com", &Route::default(), 1),
            Err(BookError::OtherRoute(_))
        ));
        let uid = Route {
            via: Via::Uid,
            network: None,
            area_code: None,
        };
        assert!(matches!(
            book.usable("okx", "USDT", a, &uid, 1),
            Err(BookError::OtherRoute(_))
        ));
        // A memo is part of the address: another tag is another destination.
        assert_eq!(
            book.usable("okx", "USDT", "rTagged:42", &Route::default(), 1)
                .unwrap()
                .id,
            3
        );
        assert!(matches!(
            book.usable("okx", "USDT", "rTagged:43", &Route::default(), 1),
            Err(BookError::NotListed { .. })
        ));
    }
}
