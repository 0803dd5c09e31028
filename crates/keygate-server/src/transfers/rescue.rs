//! Rescue on chain, wired: for each EVM venue with a `rescue_to`, one
//! [`keygate_chain::rescue::Rescuer`] on the treasury, fed by the venue's watcher (each
//! unapproved outflow: a transfer, an approval, code or a nonce moved by something keygate did
//! not sign) and by the freezes that cover the venue (`containment::plan::covers`), and driving
//! the open rescue under the store's lease `rescue.VENUE` (one instance at a time; the store
//! keeps one open rescue per venue, so every instance may start one).
//!
//! `rescue_to` must be an address-book entry of the venue: a venue whose `rescue_to` is not one
//! does not start (`keygate serve` refuses with what to do); while the entry is in its cool-down
//! or unapproved, the rescuer waits (and says so), and `keygate doctor` reports it.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use keygate_chain::rescue::{RescueSetup, Rescuer, Trigger};
use keygate_chain::watcher::Event;
use keygate_core::book::Destination;
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender, unbounded_channel};

use super::ChainSetup;
use crate::Gateway;

/// How long an instance holds a venue's rescue without renewing it.
const LEASE_TTL: Duration = Duration::from_secs(10);

/// Where a venue's `rescue_to` stands in the address book at `now`: `Ok` when it is an active
/// entry of the venue; otherwise what to do, as text.
pub fn rescue_to_status(
    book: &[Destination],
    venue: &str,
    setup: &RescueSetup,
    now: i64,
) -> Result<(), String> {
    let to = keygate_chain::address_text(&setup.to);
    let entries: Vec<&Destination> = book
        .iter()
        .filter(|d| d.venue == venue && d.address == to)
        .collect();
    if entries.iter().any(|d| d.status(now) == "active") {
        return Ok(());
    }
    Err(match entries.first() {
        None => format!(
            "[venues.{venue}] rescue_to {to} is not in the address book: add it (keygate address add --venue {venue} --asset ETH --address {to}) and have it approved; until then there is no rescue at {venue}"
        ),
        Some(d) => format!(
            "[venues.{venue}] rescue_to {to} is in the address book but {} (its cool-down or approval): there is no rescue at {venue} until it is active",
            d.status(now)
        ),
    })
}

/// Whether this instance holds `venue`'s rescue lease and its `rescue_to` is active now.
async fn may_rescue(gw: &Gateway, venue: &str, setup: &RescueSetup, owner: &str) -> bool {
    let ttl = i64::try_from(LEASE_TTL.as_millis()).unwrap_or(i64::MAX);
    match gw.store.lease(&format!("rescue.{venue}"), owner, ttl).await {
        Ok(true) => {}
        Ok(false) => return false,
        Err(e) => {
            tracing::error!(venue, error = %e, "the rescue lease could not be read");
            return false;
        }
    }
    let now = gw.store.clock().now();
    match gw.store.destinations().await {
        Ok(book) => match rescue_to_status(&book, venue, setup, now) {
            Ok(()) => true,
            Err(e) => {
                tracing::warn!(venue, "{e}");
                false
            }
        },
        Err(e) => {
            tracing::error!(venue, error = %e, "the address book could not be read");
            false
        }
    }
}

/// Sends a trigger for each watcher judgement that is an unapproved outflow.
fn forward(mut events: UnboundedReceiver<Event>, triggers: UnboundedSender<Trigger>) {
    tokio::spawn(async move {
        while let Some(e) = events.recv().await {
            if let Some(t) = Trigger::of(&e)
                && triggers.send(t).is_err()
            {
                return;
            }
        }
    });
}

/// Sends a trigger for each freeze that covers the venue (once per freeze in this process).
fn freezes(
    gw: Arc<Gateway>,
    setup: Arc<ChainSetup>,
    every: Duration,
    triggers: UnboundedSender<Trigger>,
) {
    tokio::spawn(async move {
        let mut seen = HashSet::new();
        let venue = &setup.transfers.venue;
        loop {
            match gw.store.freezes(false).await {
                Ok(rows) => {
                    for f in rows.into_iter().map(|r| r.freeze) {
                        if crate::containment::plan::covers(&f, &venue.name, &venue.credential)
                            && seen.insert(f.id)
                            && triggers.send(Trigger::Freeze(f.id)).is_err()
                        {
                            return;
                        }
                    }
                }
                Err(e) => {
                    tracing::error!(venue = %venue.name, error = %e, "freezes could not be read for the rescue")
                }
            }
            tokio::time::sleep(every).await;
        }
    });
}

/// Starts the rescue of one venue; the watcher's events go to `events`' sender (returned).
pub async fn spawn(
    gw: Arc<Gateway>,
    setup: Arc<ChainSetup>,
    rescue: &RescueSetup,
) -> Result<(tokio::task::JoinHandle<()>, UnboundedSender<Event>), String> {
    let venue = setup.transfers.venue.clone();
    let book = gw.store.destinations().await.map_err(|e| e.to_string())?;
    let now = gw.store.clock().now();
    if let Err(e) = rescue_to_status(&book, &venue.name, rescue, now) {
        if !book
            .iter()
            .any(|d| d.venue == venue.name && d.address == keygate_chain::address_text(&rescue.to))
        {
            return Err(e);
        }
        tracing::warn!(venue = %venue.name, "{e}");
    }
    let key = super::key(&gw, &setup).await?;
    let rescuer = Rescuer::new(
        venue.clone(),
        gw.store.clone(),
        key,
        rescue,
        setup.contain.clone(),
    )
    .map_err(|e| e.to_string())?;
    let (events_tx, events) = unbounded_channel();
    let (triggers_tx, triggers) = unbounded_channel();
    forward(events, triggers_tx.clone());
    freezes(
        gw.clone(),
        setup.clone(),
        venue.poll.max(Duration::from_millis(100)),
        triggers_tx,
    );
    let mut id = [0u8; 8];
    let _ = getrandom::fill(&mut id);
    let owner = format!("rescue-{}", hex::encode(id));
    let rescue = rescue.clone();
    let name = venue.name.clone();
    tracing::info!(venue = %name, to = %keygate_chain::address_text(&rescue.to), "rescue armed: the treasury is swept to rescue_to if its key is used outside keygate");
    let task = tokio::spawn(rescuer.run(triggers, venue.poll, move || {
        let (gw, rescue, owner, name) = (gw.clone(), rescue.clone(), owner.clone(), name.clone());
        async move { may_rescue(&gw, &name, &rescue, &owner).await }
    }));
    Ok((task, events_tx))
}

#[cfg(test)]
mod tests {
    use super::*;

    const TO: &str = "0x00000000000000000000000000000000000000cc";

    fn entry(venue: &str, approved: bool, usable_from: i64) -> Destination {
        Destination {
            id: 1,
            venue: venue.into(),
            asset: "ETH".into(),
            address: TO.into(),
            route: Default::default(),
            label: "rescue".into(),
            added_at: 0,
            added_by: "alice".into(),
            usable_from,
            approved_at: approved.then_some(1),
            approved_by: approved.then(|| "bob".to_string()),
        }
    }

    fn setup() -> RescueSetup {
        RescueSetup {
            to: TO.parse().unwrap_or_default(),
            endpoints: vec![],
        }
    }

    #[test]
    fn rescue_to_must_be_an_active_entry_of_the_venue_itself() {
        let s = setup();
        let missing = rescue_to_status(&[], "eth", &s, 10).unwrap_err();
        assert!(
            missing.contains("keygate address add --venue eth --asset ETH --address 0x00000000000000000000000000000000000000cc"),
            "{missing}"
        );
        // The same address approved for another venue does not count.
        let other = rescue_to_status(&[entry("base", true, 0)], "eth", &s, 10).unwrap_err();
        assert!(other.contains("is not in the address book"), "{other}");
        let waiting = rescue_to_status(&[entry("eth", false, 0)], "eth", &s, 10).unwrap_err();
        assert!(waiting.contains("awaiting-approval"), "{waiting}");
        let cooling = rescue_to_status(&[entry("eth", true, 20)], "eth", &s, 10).unwrap_err();
        assert!(cooling.contains("cooling-down"), "{cooling}");
        assert_eq!(
            rescue_to_status(&[entry("eth", true, 20)], "eth", &s, 20),
            Ok(())
        );
        // One active entry among others is enough.
        assert_eq!(
            rescue_to_status(
                &[entry("eth", false, 0), entry("eth", true, 0)],
                "eth",
                &s,
                10
            ),
            Ok(())
        );
    }
}
