//! Replay: scenarios of requests and outflows (JSON Lines, docs/scenarios.md), run through the
//! same [`decide_watched`] and [`State::apply`] as the server's decider on a simulated clock, and
//! the [`Tally`] that turns what keygate answered into a report. Pure: the caller reads the file
//! and gives each line; time comes from the events.
//!
//! A scenario's first line is its header; each further line is one event, in time order.
//! [`Runner`] decides request events and judges outflow events (matched to an allowed decision,
//! or an unapproved outflow that sets the configured freeze); the gateway replay in keygate-harness
//! sends the same events over HTTP and feeds the same [`Tally`].
//!
//! With a version-3 header the runner also follows each venue's balances and keygate's
//! containment of it ([`Ledger`]): an unapproved outflow freezes once reconciliation has seen
//! it (the venue's stated `detect` later), and the containment the freeze starts takes effect
//! its stated `latency` after that; [`Runner::due`] carries out what is due before each event.

mod format;
mod ledger;
mod tally;

pub use format::*;
pub use ledger::*;
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
    /// What the venue did with it, if keygate allowed it ([`Fate::Unfollowed`] otherwise).
    pub fate: Fate,
}

/// How an outflow event was judged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Judged {
    /// Matched to a withdrawal keygate allowed.
    pub matched: bool,
    /// The freeze it set at once (none when reconciliation sees it later: [`Runner::due`]).
    pub froze: Option<Scope>,
    /// Whether the venue let it out: one it refused moved nothing, and no watcher sees it.
    pub fate: Fate,
}

/// Something that took effect between events: a freeze set by reconciliation (`detect` after
/// the outflow it saw), or a containment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    Froze {
        at: crate::time::Millis,
        scope: Scope,
    },
    Contained(Contained),
}

/// Runs events through the decision code in-process, on the events' clock.
pub struct Runner<'e> {
    engine: &'e Engine,
    state: State,
    /// Allowed outflows not yet matched to an outflow event.
    allowed: Vec<AllowedOut>,
    next_id: i64,
    contain: Contain,
    ledger: Ledger,
    /// Freezes reconciliation will set: (when, scope, reason).
    pending: Vec<(crate::time::Millis, Scope, String)>,
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
            ledger: Ledger::default(),
            pending: vec![],
        }
    }

    /// Follows the header's balances and containment (version 3).
    pub fn with_ledger(mut self, ledger: Ledger) -> Self {
        self.ledger = ledger;
        self
    }

    pub fn ledger(&self) -> &Ledger {
        &self.ledger
    }

    /// Sets the freezes reconciliation has set by `t` and carries out the containments due by
    /// then, in time order. Call it before each event, with the event's time.
    pub fn due(&mut self, t: crate::time::Millis) -> Vec<Effect> {
        let mut effects = vec![];
        self.pending.sort_by_key(|(at, ..)| *at);
        while self.pending.first().is_some_and(|(at, ..)| *at <= t) {
            let (at, scope, reason) = self.pending.remove(0);
            if self.freeze_covered(&scope) {
                continue;
            }
            self.set_freeze(scope.clone(), reason, "reconcile".into(), at);
            effects.push(Effect::Froze { at, scope });
        }
        effects.extend(self.ledger.due(t).into_iter().map(Effect::Contained));
        effects
    }

    fn freeze_covered(&self, scope: &Scope) -> bool {
        self.state
            .freezes()
            .iter()
            .any(|f| f.scope == *scope || f.scope == Scope::All)
    }

    fn set_freeze(
        &mut self,
        scope: Scope,
        reason: String,
        set_by: String,
        at: crate::time::Millis,
    ) {
        let id = self.id();
        let engine = self.engine;
        self.ledger
            .freeze_set(|v| engine.credential_of(v).map(str::to_string), &scope, at);
        self.state.add_freeze(Freeze {
            id,
            scope,
            reason,
            set_by,
            set_at: at,
        });
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
            self.set_freeze(c.scope.clone(), c.reason, c.actor.clone(), w.verdict.at);
            (c.scope, c.actor)
        });
        let fate = if w.verdict.outcome == Outcome::Allow {
            self.ledger.allowed(ev)
        } else {
            Fate::Unfollowed
        };
        Observed {
            outcome: w.verdict.outcome,
            stage: w.verdict.stage,
            froze,
            detectors: w.signals.iter().map(|s| s.detector.to_string()).collect(),
            fate,
        }
    }

    /// Judges an outflow as reconciliation does: matched once to an allowed withdrawal that
    /// explains it, or unapproved, which sets the containment freeze: at once, or when
    /// reconciliation sees it (the venue's `detect` later, set by [`Runner::due`]). An outflow
    /// the venue refuses (for lack of funds, or after containment) moves nothing and is not
    /// judged.
    pub fn outflow(&mut self, ev: &OutflowEvent) -> Judged {
        let fate = self.ledger.spend(&ev.venue, &ev.asset, ev.amount);
        if !fate.got() {
            self.state.advance(ev.t);
            return Judged {
                matched: false,
                froze: None,
                fate,
            };
        }
        let o = ev.outflow();
        self.allowed
            .retain(|d| d.at >= o.at.saturating_sub(crate::outflow::MATCH_BEFORE));
        if let Some(i) = self.allowed.iter().position(|d| explains(d, &o)) {
            self.allowed.remove(i);
            return Judged {
                matched: true,
                froze: None,
                fate,
            };
        }
        let reason = format!(
            "an outflow keygate never allowed: {} {} to {} ({})",
            ev.amount, ev.asset, ev.to, ev.tx
        );
        let scope = self
            .contain
            .scope(self.engine, &ev.venue)
            .filter(|s| !self.freeze_covered(s));
        let detect = self.ledger.detect(&ev.venue);
        let froze = match scope {
            Some(s) if detect > 0 => {
                if !self.pending.iter().any(|(_, p, _)| *p == s) {
                    self.pending.push((ev.t.saturating_add(detect), s, reason));
                }
                None
            }
            Some(s) => {
                self.set_freeze(s.clone(), reason, "reconcile".into(), ev.t);
                Some(s)
            }
            None => None,
        };
        self.state.advance(ev.t);
        Judged {
            matched: false,
            froze,
            fate,
        }
    }

    pub fn state(&self) -> &State {
        &self.state
    }
}
