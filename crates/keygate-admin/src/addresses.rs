//! The address book of withdrawal and transfer destinations: add (usable after the cool-down
//! and another admin's approval), approve, remove, list. Every change is audited. An entry names
//! its route (network, or internal transfer by e-mail, phone, UID or account name) and any
//! memo/tag: it approves that destination only.

use keygate_config::StateHandle;
use keygate_config::engine::duration;
use keygate_core::Millis;
use keygate_core::book::Destination;
use keygate_core::route::{Route, Via};
use keygate_store::NewEntryRow;

use crate::checkpoint::checkpoint_if_due;
use crate::error::{Result, bail};

/// A destination to add, as an operator asked for it.
#[derive(Debug, Clone)]
pub struct NewDestination {
    pub address: String,
    pub venue: String,
    pub asset: String,
    pub label: String,
    /// Longer than address_book.cooldown, never shorter [default: that].
    pub cooldown: Option<String>,
    /// The network as the venue names it (Binance `network`, OKX `chain`); none: the venue's
    /// default network.
    pub network: Option<String>,
    /// On chain, or an internal transfer to an account named by e-mail, phone, UID or name.
    pub via: Via,
    /// A phone number's area code (with `via` phone).
    pub area_code: Option<String>,
    /// A memo or tag; the entry's address becomes `address:memo`, as venues route it.
    pub memo: Option<String>,
}

impl NewDestination {
    /// The entry's route, checked.
    pub fn route(&self) -> Result<Route> {
        let route = Route {
            via: self.via,
            network: self.network.clone(),
            area_code: self.area_code.clone(),
        };
        if let Err(e) = route.check() {
            bail!("{e} (see `keygate address add --help`)");
        }
        Ok(route)
    }
}

/// The cool-down an entry gets: address_book.cooldown, or a longer one asked for.
fn cooldown(h: &StateHandle, asked: Option<&str>) -> Result<Millis> {
    let floor = duration("address_book.cooldown", &h.config.address_book.cooldown)?;
    let cooldown = match asked {
        Some(c) => duration("--cooldown", c)?,
        None => floor,
    };
    if cooldown < floor {
        bail!(
            "--cooldown {} is shorter than address_book.cooldown ({}); it may only lengthen it",
            keygate_core::time::format_duration(cooldown),
            h.config.address_book.cooldown
        );
    }
    Ok(cooldown)
}

/// Checks the fields of a new entry; returns the address trimmed, with its memo if any.
fn checked(d: &NewDestination) -> Result<String> {
    for (what, v) in [("venue", &d.venue), ("asset", &d.asset)] {
        if !keygate_core::intent::valid_name(v) {
            bail!("{what} {v:?} is not a valid name");
        }
    }
    let address = d.address.trim();
    if address.is_empty()
        || address.len() > 128
        || address.chars().any(|c| c.is_whitespace() || c.is_control())
    {
        bail!(
            "address {:?} is not valid: 1-128 characters without spaces",
            d.address
        );
    }
    if d.label.trim().is_empty() || d.label.len() > 64 {
        bail!("--label must be 1-64 characters");
    }
    match d.memo.as_deref().map(str::trim) {
        None => Ok(address.to_string()),
        Some(_) if d.via.is_internal() => {
            bail!(
                "an internal transfer ({}) has no memo; remove --memo",
                d.via
            )
        }
        Some(_) if address.contains(':') => bail!(
            "address {address:?} already carries a tag after ':'; give the tag once, in the address or with --memo"
        ),
        Some(m)
            if m.is_empty()
                || m.len() > 64
                || !m
                    .bytes()
                    .all(|b| b.is_ascii_graphic() && b != b'/' && b != b'\\') =>
        {
            bail!("--memo {m:?} is not valid: 1-64 printable characters without spaces or slashes")
        }
        Some(m) => Ok(format!("{address}:{m}")),
    }
}

/// Adds a destination; it is usable after the cool-down and another admin's approval.
pub async fn add_destination(
    h: &StateHandle,
    actor: &str,
    d: &NewDestination,
    now: Millis,
) -> Result<Destination> {
    let address = checked(d)?;
    let route = d.route()?;
    let cooldown = cooldown(h, d.cooldown.as_deref())?;
    let new = NewEntryRow {
        venue: &d.venue,
        asset: &d.asset,
        address: &address,
        route: &route,
        label: d.label.trim(),
    };
    let added = h
        .store
        .add_routed_destination(&new, cooldown, actor, now)
        .await?;
    checkpoint_if_due(h).await;
    Ok(added)
}

/// Approves a destination someone else added.
pub async fn approve_destination(
    h: &StateHandle,
    actor: &str,
    id: i64,
    now: Millis,
) -> Result<Destination> {
    let d = h.store.approve_destination(id, actor, now).await?;
    checkpoint_if_due(h).await;
    Ok(d)
}

/// Removes a destination; returns the audit entry.
pub async fn remove_destination(h: &StateHandle, actor: &str, id: i64, now: Millis) -> Result<i64> {
    let seq = h.store.remove_destination(id, actor, now).await?;
    checkpoint_if_due(h).await;
    Ok(seq)
}

/// The address book.
pub async fn destinations(h: &StateHandle) -> Result<Vec<Destination>> {
    Ok(h.store.destinations().await?)
}
