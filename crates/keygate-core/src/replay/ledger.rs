//! Balances and containment in a replay (scenario version 3): what each venue holds, what an
//! outflow or trade does to it, and when keygate's containment takes the venue's key and funds
//! out of an attacker's reach.
//!
//! A venue whose opening balances the header declares is *followed*: an outflow, a withdrawal
//! or a transfer of more than is left fails at the venue (for lack of funds), and so does a
//! trade that would spend more than is left. A venue the header does not name is not followed
//! (everything goes through, as in versions 1 and 2).
//!
//! Containment is planned when a freeze covering a contained venue is set (an unapproved
//! outflow's, once keygate's reconciliation has seen it, or a detector's or an operator's) and
//! takes effect its stated `latency` later: at an exchange venue the leaked key is locked and
//! the balances swept to the master account, on an EVM venue the balances are rescued to
//! `rescue_to`. From then on every outflow of the venue fails. Pure: time is the events'.

use std::collections::{BTreeMap, BTreeSet};
use std::str::FromStr;

use rust_decimal::Decimal;
use serde::Serialize;

use super::format::{Header, RequestEvent, known_notional};
#[cfg(doc)]
use crate::decide::Engine;
use crate::freeze::Scope;
use crate::intent::Action;
use crate::order::Side;
use crate::time::Millis;

/// How a venue is contained.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum How {
    /// An exchange venue: the sub-account key locked, its balances swept to the master.
    Sweep,
    /// An EVM venue: the wallet's balances rescued to `rescue_to`.
    Rescue,
}

impl How {
    pub fn as_str(self) -> &'static str {
        match self {
            How::Sweep => "sweep",
            How::Rescue => "rescue",
        }
    }
}

impl FromStr for How {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "sweep" => Ok(How::Sweep),
            "rescue" => Ok(How::Rescue),
            other => Err(format!(
                "how {other:?} is not \"sweep\" (an exchange venue: lock the key, sweep to the master) or \"rescue\" (an EVM venue: move the funds to rescue_to)"
            )),
        }
    }
}

/// A venue's containment as the header states it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VenueContainment {
    pub how: How,
    /// How long after an outflow keygate's reconciliation (the watcher's poll, on chain) sees
    /// it: the venue's reconcile interval, the worst case.
    pub detect: Millis,
    /// How long after the freeze the containment takes effect (the venue's round trips for the
    /// lock and the sweeps; on chain, the block that carries the rescue).
    pub latency: Millis,
}

/// What became of a spend at a venue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fate {
    /// It went through (the venue is followed, and had enough).
    Done,
    /// It went through: the venue's balances are not followed.
    Unfollowed,
    /// The venue refused it: less is left than it spends.
    NoFunds,
    /// The venue refused it: containment locked the key and moved the funds (`How`).
    Contained(How),
}

impl Fate {
    /// Whether value left the venue.
    pub fn got(self) -> bool {
        matches!(self, Fate::Done | Fate::Unfollowed)
    }
}

/// A containment that took effect: the venue, when, how, and what it moved out of reach.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Contained {
    pub venue: String,
    pub at: Millis,
    pub how: How,
    pub moved: Vec<(String, Decimal)>,
}

#[derive(Debug, Clone)]
struct Book {
    held: BTreeMap<String, Decimal>,
    contained: Option<How>,
}

/// Every followed venue's balances, and the containments planned or done.
#[derive(Debug, Clone, Default)]
pub struct Ledger {
    books: BTreeMap<String, Book>,
    plans: BTreeMap<String, VenueContainment>,
    /// Containments planned: when each takes effect.
    planned: BTreeMap<String, Millis>,
    done: BTreeSet<String>,
}

impl Ledger {
    /// The header's opening balances and containment plans (none: nothing is followed).
    pub fn new(header: &Header) -> Self {
        Self {
            books: header
                .balances
                .iter()
                .map(|(v, held)| {
                    let book = Book {
                        held: held.clone(),
                        contained: None,
                    };
                    (v.clone(), book)
                })
                .collect(),
            plans: header.containment.clone(),
            planned: BTreeMap::new(),
            done: BTreeSet::new(),
        }
    }

    /// Whether the venue's balances are followed.
    pub fn follows(&self, venue: &str) -> bool {
        self.books.contains_key(venue)
    }

    /// The venue's containment plan, if it has one.
    pub fn plan(&self, venue: &str) -> Option<&VenueContainment> {
        self.plans.get(venue)
    }

    /// Puts a measured latency in place of the stated one (the gateway replay measures the
    /// simulator's round trips for the containment requests).
    pub fn set_latency(&mut self, venue: &str, latency: Millis) {
        if let Some(p) = self.plans.get_mut(venue) {
            p.latency = latency;
        }
    }

    /// How long after an outflow on `venue` reconciliation sees it (0 with no plan: at once,
    /// as in versions 1 and 2).
    pub fn detect(&self, venue: &str) -> Millis {
        self.plans.get(venue).map_or(0, |p| p.detect)
    }

    /// What the venue holds of `asset` now (`None`: not followed).
    pub fn held(&self, venue: &str, asset: &str) -> Option<Decimal> {
        let b = self.books.get(venue)?;
        Some(b.held.get(asset).copied().unwrap_or_default())
    }

    /// A freeze of `scope` set at `at`: plans the containment of every contained venue it
    /// covers (a client's freeze covers none: it says nothing of the venue's key), each to
    /// take effect its latency later. A venue already planned or contained is left as it is.
    /// `credential_of` names the credential a venue signs with ([`Engine::credential_of`]).
    pub fn freeze_set(
        &mut self,
        credential_of: impl Fn(&str) -> Option<String>,
        scope: &Scope,
        at: Millis,
    ) {
        for (venue, plan) in &self.plans {
            if covers(&credential_of, scope, venue) && !self.planned.contains_key(venue) {
                self.planned
                    .insert(venue.clone(), at.saturating_add(plan.latency));
            }
        }
    }

    /// The contained venues a freeze of `scope` would plan a containment for now (covered,
    /// and not planned yet).
    pub fn to_plan(
        &self,
        credential_of: impl Fn(&str) -> Option<String>,
        scope: &Scope,
    ) -> Vec<(String, VenueContainment)> {
        self.plans
            .iter()
            .filter(|(v, _)| covers(&credential_of, scope, v) && !self.planned.contains_key(*v))
            .map(|(v, p)| (v.clone(), *p))
            .collect()
    }

    /// What the venue holds now, each asset with more than zero.
    pub fn holdings(&self, venue: &str) -> Vec<(String, Decimal)> {
        self.books.get(venue).map_or_else(Vec::new, |b| {
            b.held
                .iter()
                .filter(|(_, m)| !m.is_zero())
                .map(|(a, m)| (a.clone(), *m))
                .collect()
        })
    }

    /// When the venue's containment takes (or took) effect, if one is planned.
    pub fn contained_at(&self, venue: &str) -> Option<Millis> {
        self.planned.get(venue).copied()
    }

    /// Carries out every planned containment due at or before `t`, in time order: each moves
    /// the venue's whole balances out of reach.
    pub fn due(&mut self, t: Millis) -> Vec<Contained> {
        let mut due: Vec<(Millis, String)> = self
            .planned
            .iter()
            .filter(|(v, at)| **at <= t && !self.done.contains(*v))
            .map(|(v, at)| (*at, v.clone()))
            .collect();
        due.sort();
        due.into_iter()
            .filter_map(|(at, venue)| self.contain(&venue, at))
            .collect()
    }

    fn contain(&mut self, venue: &str, at: Millis) -> Option<Contained> {
        let how = self.plans.get(venue)?.how;
        let book = self.books.get_mut(venue)?;
        self.done.insert(venue.to_string());
        book.contained = Some(how);
        let moved = std::mem::take(&mut book.held)
            .into_iter()
            .filter(|(_, m)| !m.is_zero())
            .collect();
        Some(Contained {
            venue: venue.to_string(),
            at,
            how,
            moved,
        })
    }

    /// Spends `amount` of `asset` at `venue` (an outflow, an allowed withdrawal or transfer),
    /// if the venue lets it.
    pub fn spend(&mut self, venue: &str, asset: &str, amount: Decimal) -> Fate {
        let Some(book) = self.books.get_mut(venue) else {
            return Fate::Unfollowed;
        };
        if let Some(how) = book.contained {
            return Fate::Contained(how);
        }
        let left = book.held.get(asset).copied().unwrap_or_default();
        if amount > left {
            return Fate::NoFunds;
        }
        book.held.insert(asset.to_string(), left - amount);
        Fate::Done
    }

    /// A request keygate allowed, at its venue: a withdrawal or transfer spends its amount; a
    /// trade spends what it pays (a buy its quote notional, a sell its base quantity) and, when
    /// its order's terms price it, receives the other side at that price. A trade without an
    /// order is only checked against what is left. Reads and cancels move nothing.
    pub fn allowed(&mut self, ev: &RequestEvent) -> Fate {
        match ev.action {
            Action::Withdraw | Action::Transfer => match (&ev.asset, ev.amount) {
                (Some(a), Some(m)) => self.spend(&ev.venue, a, m),
                _ => Fate::Unfollowed,
            },
            Action::Trade => self.trade(ev),
            Action::Read | Action::Cancel => Fate::Unfollowed,
        }
    }

    fn trade(&mut self, ev: &RequestEvent) -> Fate {
        let Some(book) = self.books.get(&ev.venue) else {
            return Fate::Unfollowed;
        };
        if let Some(how) = book.contained {
            return Fate::Contained(how);
        }
        let Some((pay, paid, get, got)) = legs(ev) else {
            return Fate::Unfollowed;
        };
        let left = self.held(&ev.venue, &pay).unwrap_or_default();
        if paid > left {
            return Fate::NoFunds;
        }
        // A trade without an order (no price to fill at) is only checked.
        if let (Some(b), Some((asset, amount))) = (self.books.get_mut(&ev.venue), get.zip(got)) {
            b.held.insert(pay, left - paid);
            let had = b.held.get(&asset).copied().unwrap_or_default();
            b.held.insert(asset, had.saturating_add(amount));
        }
        Fate::Done
    }
}

/// Whether a freeze of `scope` covers `venue`'s key: `all`, the venue, or the credential it
/// signs with (a venue with none signs with one named as itself); a client's freeze does not.
fn covers(credential_of: &impl Fn(&str) -> Option<String>, scope: &Scope, venue: &str) -> bool {
    match scope {
        Scope::All => true,
        Scope::Client(_) => false,
        Scope::Venue(v) => v == venue,
        Scope::Credential(c) => credential_of(venue).as_deref().unwrap_or(venue) == c.as_str(),
    }
}

/// A trade's legs: (asset paid, amount paid, asset received, amount received). An order pays
/// its quote notional (a buy) or its base quantity (a sell) and receives the other side at its
/// limit price or, for a market order, its reference; a trade without an order pays its asset
/// and amount, receiving nothing the replay can price.
type Legs = (String, Decimal, Option<String>, Option<Decimal>);

fn legs(ev: &RequestEvent) -> Option<Legs> {
    let Some(o) = &ev.order else {
        return Some((ev.asset.clone()?, ev.amount?, None, None));
    };
    let price = o.price.or(o.reference.map(|r| r.price))?;
    let base = o
        .quantity
        .or_else(|| o.quote_quantity?.checked_div(price))?;
    let quote = known_notional(o).or_else(|| base.checked_mul(price))?;
    Some(match o.side {
        Side::Buy => (o.quote.clone(), quote, Some(o.base.clone()), Some(base)),
        Side::Sell => (o.base.clone(), base, Some(o.quote.clone()), Some(quote)),
    })
}
