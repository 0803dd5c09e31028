//! Reference prices: the market price of each instrument keygate's clients trade, read from the
//! venue's public book ticker (the mid of the best bid and ask), so an order far from the market
//! is visible as such to the decider and the policies.
//!
//! A reading is cached per (venue, symbol). The gateway attaches the cached reading to each
//! order's intent; a reading older than `fresh_for` is read again first, on the request's path
//! (one public request), and `serve` keeps the instruments its clients name fresh in the
//! background ([`spawn`]). When the book cannot be read the order carries the old reading or
//! none, and the decider denies it as stale: an unknown market values nothing.
//!
//! Must not know: how a venue's ticker is shaped (keygate-venues' `reference` module), or how
//! the decider judges a reference's age.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use keygate_core::Millis;
use keygate_core::order::Reference;
use keygate_venues::reference::{parse_reference, reference_path, venue_symbol};

use crate::{Gateway, VenueSetup};

/// The cached readings, by venue and venue symbol.
#[derive(Debug)]
pub struct References {
    readings: RwLock<HashMap<(String, String), Reference>>,
    /// A reading younger than this is used as it is.
    fresh_for: Millis,
}

impl Default for References {
    fn default() -> Self {
        Self::new(Duration::from_secs(5))
    }
}

/// Why a book could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ReferenceFailure {
    #[error("cannot read {venue}'s book for {symbol}: {detail}")]
    Unreachable {
        venue: String,
        symbol: String,
        detail: String,
    },
    #[error("{venue}'s book for {symbol} is not usable: {detail}")]
    Unusable {
        venue: String,
        symbol: String,
        detail: String,
    },
}

impl References {
    /// Readings younger than `fresh_for` are used without reading the book again.
    pub fn new(fresh_for: Duration) -> Self {
        Self {
            readings: RwLock::new(HashMap::new()),
            fresh_for: Millis::try_from(fresh_for.as_millis()).unwrap_or(Millis::MAX),
        }
    }

    /// The latest reading of `symbol` on `venue`, if any.
    pub fn get(&self, venue: &str, symbol: &str) -> Option<Reference> {
        let map = self.readings.read().ok()?;
        map.get(&(venue.to_string(), symbol.to_string())).copied()
    }

    /// Keeps a reading, unless a later one is already kept (two readers may race).
    pub fn put(&self, venue: &str, symbol: &str, r: Reference) {
        let Ok(mut map) = self.readings.write() else {
            return;
        };
        let slot = map
            .entry((venue.to_string(), symbol.to_string()))
            .or_insert(r);
        if slot.at < r.at {
            *slot = r;
        }
    }

    /// A reading of `symbol` on `venue` no older than `fresh_for` at `now`: the cached one, or
    /// a new one read from the book. `None` when there is none and the book cannot be read (the
    /// failure is logged); a stale cached reading is returned as it is, for the decider to
    /// refuse with its age.
    pub async fn current(
        &self,
        gw: &Gateway,
        setup: &VenueSetup,
        symbol: &str,
        now: Millis,
    ) -> Option<Reference> {
        let cached = self.get(&setup.name, symbol);
        if cached.is_some_and(|r| now.saturating_sub(r.at) < self.fresh_for) {
            return cached;
        }
        match read(gw, setup, symbol, now).await {
            Ok(r) => {
                self.put(&setup.name, symbol, r);
                Some(r)
            }
            Err(e) => {
                metrics::counter!("keygate_reference_errors_total", "venue" => setup.name.clone())
                    .increment(1);
                tracing::warn!(venue = %setup.name, symbol, error = %e, "no fresh reference price; orders for this instrument are denied until the book can be read");
                cached
            }
        }
    }
}

/// Reads one instrument's book from its venue's public ticker.
async fn read(
    gw: &Gateway,
    setup: &VenueSetup,
    symbol: &str,
    now: Millis,
) -> Result<Reference, ReferenceFailure> {
    let kind = setup.adapter.kind;
    let url = format!("{}{}", setup.base_url, reference_path(kind, symbol));
    let unreachable = |detail: String| ReferenceFailure::Unreachable {
        venue: setup.name.clone(),
        symbol: symbol.to_string(),
        detail,
    };
    let answer = gw
        .http
        .get(&url)
        .timeout(setup.timeout)
        .send()
        .await
        .map_err(|e| unreachable(e.without_url().to_string()))?;
    let status = answer.status();
    let body = answer
        .bytes()
        .await
        .map_err(|e| unreachable(e.without_url().to_string()))?;
    if !status.is_success() {
        return Err(unreachable(format!("the venue answered {status}")));
    }
    let price = parse_reference(kind, symbol, &body).map_err(|e| ReferenceFailure::Unusable {
        venue: setup.name.clone(),
        symbol: symbol.to_string(),
        detail: e.to_string(),
    })?;
    Ok(Reference { price, at: now })
}

/// The (base, quote) instruments that clients allowed on `venue` may trade.
pub(crate) fn traded_instruments(
    clients: &[keygate_core::auth::ClientRecord],
    setup: &VenueSetup,
) -> Vec<(String, String)> {
    let mut pairs: Vec<(String, String)> = clients
        .iter()
        .filter(|c| c.enabled && c.venues.iter().any(|v| v == &setup.name))
        .flat_map(|c| c.instruments.iter())
        .filter_map(|i| i.split_once('/'))
        .map(|(base, quote)| (base.to_string(), quote.to_string()))
        .collect();
    pairs.sort();
    pairs.dedup();
    pairs
}

/// The venue symbols of the instruments that clients allowed on `venue` may trade.
fn traded_symbols(clients: &[keygate_core::auth::ClientRecord], setup: &VenueSetup) -> Vec<String> {
    let mut symbols: Vec<String> = traded_instruments(clients, setup)
        .iter()
        .map(|(base, quote)| venue_symbol(setup.adapter.kind, base, quote))
        .collect();
    symbols.sort();
    symbols.dedup();
    symbols
}

/// Reads, every `every`, the book of each instrument a client may trade on each venue, so
/// orders find a fresh reference without waiting for one. A failed reading is logged (and
/// counted in `keygate_reference_errors_total`); the orders it would have valued are denied.
pub fn spawn(gw: Arc<Gateway>, every: Duration) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every.max(Duration::from_millis(100)));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let clients = match gw.store.clients().await {
                Ok(c) => c,
                Err(e) => {
                    tracing::error!(error = %e, "cannot read the clients' instruments; reference prices are not refreshed");
                    continue;
                }
            };
            for setup in gw.venues.values() {
                for symbol in traded_symbols(&clients, setup) {
                    let now = gw.store.clock().now();
                    if let Err(e) = read(&gw, setup, &symbol, now)
                        .await
                        .map(|r| gw.references.put(&setup.name, &symbol, r))
                    {
                        metrics::counter!("keygate_reference_errors_total", "venue" => setup.name.clone())
                            .increment(1);
                        tracing::warn!(venue = %setup.name, symbol, error = %e, "cannot refresh a reference price");
                    }
                }
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(price: i64, at: Millis) -> Reference {
        Reference {
            price: price.into(),
            at,
        }
    }

    #[test]
    fn a_later_reading_wins() {
        let refs = References::default();
        refs.put("b", "BTCUSDT", r(2, 20));
        refs.put("b", "BTCUSDT", r(1, 10));
        assert_eq!(refs.get("b", "BTCUSDT"), Some(r(2, 20)));
        refs.put("b", "BTCUSDT", r(3, 30));
        assert_eq!(refs.get("b", "BTCUSDT"), Some(r(3, 30)));
        assert_eq!(refs.get("b", "ETHUSDT"), None);
        assert_eq!(refs.get("o", "BTCUSDT"), None);
    }
}
