//! The address book: the destinations funds may go to, per venue and asset. A new entry is
//! usable only once its cool-down has passed *and* an admin has approved it. Being listed is
//! necessary, not sufficient: policies and detectors still judge every withdrawal (an allowlist
//! alone did not stop the Kronos thief, who withdrew to the firm's own whitelisted wallet).

use std::collections::HashMap;

use serde::Serialize;

use crate::intent::normalize_address;
use crate::time::{Millis, format_duration};

/// One address-book entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Destination {
    pub id: i64,
    pub venue: String,
    pub asset: String,
    /// Normalised with [`normalize_address`].
    pub address: String,
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

    /// The entry for a destination, if it is usable at `now`.
    pub fn usable(
        &self,
        venue: &str,
        asset: &str,
        address: &str,
        now: Millis,
    ) -> Result<&Destination, BookError> {
        let address = normalize_address(address);
        let found = self
            .entries
            .get(&address)
            .and_then(|ds| ds.iter().find(|d| d.venue == venue && d.asset == asset));
        let Some(d) = found else {
            return Err(BookError::NotListed {
                venue: venue.to_string(),
                asset: asset.to_string(),
                address,
            });
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
        let mut d = Destination {
            id: 1,
            venue: "binance".into(),
            asset: "USDT".into(),
            address: normalize_address("0xAA00000000000000000000000000000000000001"),
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
            book.usable("binance", "USDT", addr, 25 * HOUR),
            Err(BookError::AwaitingApproval { .. })
        ));
        d.approved_at = Some(HOUR);
        let book = AddressBook::new([d.clone()]);
        assert!(matches!(
            book.usable("binance", "USDT", addr, HOUR),
            Err(BookError::CoolingDown { .. })
        ));
        assert_eq!(
            book.usable(
                "binance",
                "USDT",
                &addr.to_uppercase().replace("0X", "0x"),
                24 * HOUR
            )
            .unwrap()
            .id,
            1
        );
        assert!(matches!(
            book.usable("binance", "USDC", addr, 24 * HOUR),
            Err(BookError::NotListed { .. })
        ));
        assert!(matches!(
            book.usable("okx", "USDT", addr, 24 * HOUR),
            Err(BookError::NotListed { .. })
        ));
        assert_eq!(d.status(0), "cooling-down");
    }
}
