//! Replay: scenarios of requests and outflows (JSON Lines, docs/scenarios.md), run through the
//! same [`decide_watched`] and [`State::apply`] as the server's decider on a simulated clock, and
//! the [`Tally`] that turns what keygate answered into a report. Pure: the caller reads the file
//! and gives each line; time comes from the events.
//!
//! A scenario's first line is its header; each further line is one event, in time order.
//! [`Runner`] decides request events and judges outflow events (matched to an allowed decision,
//! or an unapproved outflow that sets the configured freeze); the gateway replay in keygate-harness
//! sends the same events over HTTP and feeds the same [`Tally`].

mod format;
mod tally;

pub use format::*;
pub use tally::*;

use crate::decide::{Engine, Extra, Outcome, Stage, State, decide_watched};
use crate::freeze::{Freeze, Scope};
use crate::intent::normalize_address;
use crate::outflow::{AllowedOut, explains};

/// What keygate did with one request event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observed {
    pub outcome: Outcome,
    /// The check that decided (`Freeze` when a freeze refused it).
    pub stage: Stage,
    /// The scope of the freeze this request set, and who set it (`detector:NAME`).
    pub froze: Option<(Scope, String)>,
    /// The detectors that raised a signal.
    pub detectors: Vec<String>,
}

/// Runs events through the decision code in-process, on the events' clock.
pub struct Runner<'e> {
    engine: &'e Engine,
    state: State,
    /// Allowed outflows not yet matched to an outflow event.
    allowed: Vec<AllowedOut>,
    next_id: i64,
    contain: Contain,
}

/// What an unapproved outflow freezes (the config's `[containment] unapproved_outflow`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Contain {
    All,
    Venue,
    /// Every venue signing with the venue's credential.
    Credential,
    Nothing,
}

impl Contain {
    /// The scope an unapproved outflow on `venue` freezes.
    pub fn scope(self, engine: &Engine, venue: &str) -> Option<Scope> {
        self.scope_with(venue, engine.credential_of(venue).unwrap_or(venue))
    }

    /// The scope for `venue`, which signs with `credential`.
    pub fn scope_with(self, venue: &str, credential: &str) -> Option<Scope> {
        match self {
            Contain::All => Some(Scope::All),
            Contain::Venue => Some(Scope::Venue(venue.to_string())),
            Contain::Credential => Some(Scope::Credential(credential.to_string())),
            Contain::Nothing => None,
        }
    }
}

impl<'e> Runner<'e> {
    pub fn new(engine: &'e Engine, state: State, contain: Contain) -> Self {
        Self {
            engine,
            state,
            allowed: vec![],
            next_id: 1,
            contain,
        }
    }

    fn id(&mut self) -> i64 {
        let id = self.next_id;
        self.next_id += 1;
        id
    }

    /// Decides a request as the server's decider does: the detectors watch, the state applies
    /// the decision, and a freeze the detectors ask for is set at once.
    pub fn request(&mut self, ev: &RequestEvent) -> Observed {
        let intent = ev.intent();
        let w = decide_watched(self.engine, &self.state, &intent, ev.t, &Extra::default());
        self.state.apply(self.engine, &w);
        let id = self.id();
        // Decisions too old to explain any outflow still to come (events are in time order).
        if self.allowed.len() >= 4096 {
            let oldest = ev.t.saturating_sub(crate::outflow::MATCH_BEFORE);
            self.allowed.retain(|d| d.at >= oldest);
        }
        if w.verdict.outcome == Outcome::Allow
            && intent.action.moves_funds_out()
            && let (Some(asset), Some(amount)) = (&intent.asset, intent.amount)
        {
            self.allowed.push(AllowedOut {
                decision_id: id,
                at: w.verdict.at,
                venue: intent.venue.clone(),
                asset: asset.clone(),
                amount,
                destination: intent.destination.as_deref().map(normalize_address),
                // The client id the gateway gives a withdrawal it forwards.
                reference: Some(crate::outflow::gateway_reference(id)),
            });
        }
        let froze = w.containment().map(|c| {
            let id = self.id();
            self.state.add_freeze(Freeze {
                id,
                scope: c.scope.clone(),
                reason: c.reason,
                set_by: c.actor.clone(),
                set_at: w.verdict.at,
            });
            (c.scope, c.actor)
        });
        Observed {
            outcome: w.verdict.outcome,
            stage: w.verdict.stage,
            froze,
            detectors: w.signals.iter().map(|s| s.detector.to_string()).collect(),
        }
    }

    /// Judges an outflow as reconciliation does: matched once to an allowed withdrawal that
    /// explains it, or unapproved, which sets the containment freeze. Returns whether it was
    /// matched, and the freeze it set.
    pub fn outflow(&mut self, ev: &OutflowEvent) -> (bool, Option<Scope>) {
        let o = ev.outflow();
        self.allowed
            .retain(|d| d.at >= o.at.saturating_sub(crate::outflow::MATCH_BEFORE));
        if let Some(i) = self.allowed.iter().position(|d| explains(d, &o)) {
            self.allowed.remove(i);
            return (true, None);
        }
        let scope = self.contain.scope(self.engine, &ev.venue);
        let scope = scope.filter(|s| {
            !self
                .state
                .freezes()
                .iter()
                .any(|f| f.scope == *s || f.scope == Scope::All)
        });
        if let Some(s) = &scope {
            let id = self.id();
            self.state.add_freeze(Freeze {
                id,
                scope: s.clone(),
                reason: format!(
                    "an outflow keygate never allowed: {} {} to {} ({})",
                    ev.amount, ev.asset, ev.to, ev.tx
                ),
                set_by: "reconcile".into(),
                set_at: ev.t,
            });
        }
        self.state.advance(ev.t);
        (false, scope)
    }

    pub fn state(&self) -> &State {
        &self.state
    }
}
