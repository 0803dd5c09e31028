//! The address book of withdrawal and transfer destinations: add (usable after the cool-down
//! and another admin's approval), approve, remove, list. Every change is audited.

use keygate_config::StateHandle;
use keygate_config::engine::duration;
use keygate_core::Millis;
use keygate_core::book::Destination;

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

/// Checks the fields of a new entry; returns the address trimmed.
fn checked(d: &NewDestination) -> Result<&str> {
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
    Ok(address)
}

/// Adds a destination; it is usable after the cool-down and another admin's approval.
pub async fn add_destination(
    h: &StateHandle,
    actor: &str,
    d: &NewDestination,
    now: Millis,
) -> Result<Destination> {
    let address = checked(d)?;
    let cooldown = cooldown(h, d.cooldown.as_deref())?;
    let added = h
        .store
        .add_destination(
            &d.venue,
            &d.asset,
            address,
            d.label.trim(),
            cooldown,
            actor,
            now,
        )
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
