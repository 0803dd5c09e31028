//! Replay: scenarios of requests and outflows (JSON Lines, docs/scenarios.md), run through the
//! same [`decide_watched`] and [`State::apply`] as the server's decider on a simulated clock, and
//! the [`Tally`] that turns what keygate answered into a report. Pure: the caller reads the file
//! and gives each line; time comes from the events.
//!
//! A scenario's first line is its header; each further line is one event, in time order.
//! [`Runner`] decides request events and judges outflow events (matched to an allowed decision,
//! or an unapproved outflow that sets the configured freeze); the gateway replay in keygate-harness
//! sends the same events over HTTP and feeds the same [`Tally`].

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::str::FromStr;

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::decide::{Engine, Extra, Outcome, Stage, State, decide_watched};
use crate::freeze::{Freeze, Scope};
use crate::intent::{Action, Intent, normalize_address};
use crate::outflow::{AllowedOut, Outflow, explains};
use crate::price::{PriceTable, format_usd};
use crate::time::{Millis, format_millis};

/// The scenario format's version this code reads.
pub const VERSION: u32 = 1;

/// Why a scenario line cannot be read. Each names the line (1-based).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("scenario line {line}: {message}")]
pub struct ScenarioError {
    pub line: usize,
    pub message: String,
}

fn err(line: usize, message: impl Into<String>) -> ScenarioError {
    ScenarioError {
        line,
        message: message.into(),
    }
}

/// The scenario's first line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub scenario: String,
    pub version: u32,
    pub start: Millis,
    /// USD per unit of each asset, for the whole scenario.
    pub prices: BTreeMap<String, Decimal>,
    pub notes: String,
}

/// Whether an event is ordinary traffic or part of the attack.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Label {
    Normal,
    Attack,
}

/// A request a client sends to keygate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestEvent {
    pub t: Millis,
    pub client: String,
    pub venue: String,
    pub action: Action,
    pub asset: Option<String>,
    pub amount: Option<Decimal>,
    pub to: Option<String>,
    pub source_ip: IpAddr,
    pub label: Label,
}

impl RequestEvent {
    /// The intent the request carries, as the gateway would classify it.
    pub fn intent(&self) -> Intent {
        Intent {
            order: None,
            client: self.client.clone(),
            venue: self.venue.clone(),
            action: self.action,
            asset: self.asset.clone(),
            amount: self.amount,
            destination: self.to.clone(),
            source_ip: Some(self.source_ip),
            token_id: None,
        }
    }
}

/// Value that left a venue without passing through keygate, as the watcher sees it: it is
/// matched as reconciliation matches (by the client id a withdrawal was sent with, among the
/// rest), so it never passes for one keygate allowed, even one of the same amount to the same
/// address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutflowEvent {
    pub t: Millis,
    pub venue: String,
    pub asset: String,
    pub amount: Decimal,
    pub to: String,
    pub tx: String,
    pub label: Label,
}

impl OutflowEvent {
    pub fn outflow(&self) -> Outflow {
        Outflow {
            venue: self.venue.clone(),
            id: self.tx.clone(),
            asset: self.asset.clone(),
            amount: self.amount,
            destination: normalize_address(&self.to),
            at: self.t,
            // The id the venue reports back, as it was sent with (never keygate's own).
            reference: Some(self.tx.clone()),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    Request(RequestEvent),
    Outflow(OutflowEvent),
}

impl Event {
    pub fn t(&self) -> Millis {
        match self {
            Event::Request(r) => r.t,
            Event::Outflow(o) => o.t,
        }
    }

    pub fn label(&self) -> Label {
        match self {
            Event::Request(r) => r.label,
            Event::Outflow(o) => o.label,
        }
    }
}

fn time(line: usize, field: &str, text: &str) -> Result<Millis, ScenarioError> {
    chrono::DateTime::parse_from_rfc3339(text)
        .map(|d| d.timestamp_millis())
        .map_err(|e| {
            err(
                line,
                format!("{field} {text:?} is not an RFC 3339 time like 2023-11-18T16:47:00Z: {e}"),
            )
        })
}

fn decimal(line: usize, field: &str, text: &str) -> Result<Decimal, ScenarioError> {
    let d = Decimal::from_str(text)
        .map_err(|_| err(line, format!("{field} {text:?} is not a decimal number")))?;
    if d.is_sign_negative() {
        return Err(err(line, format!("{field} {text:?} is negative")));
    }
    Ok(d)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct HeaderLine {
    scenario: String,
    version: u32,
    start: String,
    #[serde(default)]
    prices: BTreeMap<String, String>,
    #[serde(default)]
    notes: String,
}

/// Reads the header (the first line).
pub fn parse_header(text: &str) -> Result<Header, ScenarioError> {
    let h: HeaderLine = serde_json::from_str(text).map_err(|e| {
        err(
            1,
            format!(
                "not a scenario header ({{\"scenario\": NAME, \"version\": 1, \"start\": TIME, \"prices\": {{ASSET: \"USD\"}}}}, prices as decimal strings): {e}"
            ),
        )
    })?;
    if h.version != VERSION {
        return Err(err(
            1,
            format!(
                "version {} is not one this keygate reads (it reads version {VERSION})",
                h.version
            ),
        ));
    }
    let mut prices = BTreeMap::new();
    for (asset, text) in h.prices {
        let p = decimal(1, &format!("price of {asset}"), &text)?;
        if p.is_zero() {
            return Err(err(1, format!("price of {asset} is zero")));
        }
        prices.insert(asset, p);
    }
    Ok(Header {
        start: time(1, "start", &h.start)?,
        scenario: h.scenario,
        version: h.version,
        prices,
        notes: h.notes,
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EventLine<'a> {
    #[serde(borrow)]
    t: &'a str,
    #[serde(borrow)]
    kind: &'a str,
    #[serde(default)]
    client: Option<String>,
    venue: String,
    #[serde(default, borrow)]
    action: Option<&'a str>,
    #[serde(default)]
    asset: Option<String>,
    #[serde(default, borrow)]
    amount: Option<&'a str>,
    #[serde(default)]
    to: Option<String>,
    #[serde(default, borrow)]
    source_ip: Option<&'a str>,
    #[serde(default)]
    tx: Option<String>,
    label: Label,
}

/// Reads one event line (`line` is its 1-based number, for errors).
pub fn parse_event(text: &str, line: usize) -> Result<Event, ScenarioError> {
    let e: EventLine = serde_json::from_str(text).map_err(|e| err(line, e.to_string()))?;
    let t = time(line, "t", e.t)?;
    let amount = e.amount.map(|a| decimal(line, "amount", a)).transpose()?;
    match e.kind {
        "request" => {
            let client = e
                .client
                .ok_or_else(|| err(line, "a request names its client"))?;
            let action = e
                .action
                .ok_or_else(|| err(line, "a request names its action"))?;
            let action = Action::from_str(action).map_err(|m| err(line, m.to_string()))?;
            if e.tx.is_some() {
                return Err(err(line, "tx belongs to outflow events"));
            }
            let source_ip = e
                .source_ip
                .ok_or_else(|| err(line, "a request names where it comes from (source_ip)"))?;
            let source_ip: IpAddr = source_ip.parse().map_err(|_| {
                err(
                    line,
                    format!("source_ip {source_ip:?} is not an IP address"),
                )
            })?;
            if action.carries_value() {
                if e.asset.is_none() || amount.is_none() {
                    return Err(err(line, format!("a {action} names its asset and amount")));
                }
                if amount.is_some_and(|a| a.is_zero()) {
                    return Err(err(line, format!("a {action} of zero moves nothing")));
                }
            } else if e.asset.is_some() || amount.is_some() {
                return Err(err(line, format!("a {action} has no asset or amount")));
            }
            if action.moves_funds_out() && e.to.is_none() {
                return Err(err(
                    line,
                    format!("a {action} names where it goes (\"to\")"),
                ));
            }
            if !action.moves_funds_out() && e.to.is_some() {
                return Err(err(line, format!("a {action} has no destination (\"to\")")));
            }
            Ok(Event::Request(RequestEvent {
                t,
                client,
                venue: e.venue,
                action,
                asset: e.asset,
                amount,
                to: e.to,
                source_ip,
                label: e.label,
            }))
        }
        "outflow" => {
            if e.client.is_some() || e.action.is_some() || e.source_ip.is_some() {
                return Err(err(
                    line,
                    "an outflow has no client, action or source_ip: it did not pass through keygate",
                ));
            }
            let missing = |f: &str| err(line, format!("an outflow names its {f}"));
            if amount.is_some_and(|a| a.is_zero()) {
                return Err(err(line, "an outflow of zero moves nothing"));
            }
            Ok(Event::Outflow(OutflowEvent {
                t,
                venue: e.venue,
                asset: e.asset.ok_or_else(|| missing("asset"))?,
                amount: amount.ok_or_else(|| missing("amount"))?,
                to: e.to.ok_or_else(|| missing("destination (\"to\")"))?,
                tx: e
                    .tx
                    .ok_or_else(|| missing("transaction or withdrawal id (\"tx\")"))?,
                label: e.label,
            }))
        }
        other => Err(err(
            line,
            format!("kind {other:?} is not one of request, outflow"),
        )),
    }
}

/// Reads a whole scenario held in memory: the header and the events, which must be in time
/// order (a replay is deterministic only if the order is).
pub fn parse(text: &str) -> Result<(Header, Vec<Event>), ScenarioError> {
    let mut lines = text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty());
    let (_, first) = lines
        .next()
        .ok_or_else(|| err(1, "the scenario is empty; its first line is the header"))?;
    let header = parse_header(first)?;
    let mut events = vec![];
    let mut last = header.start;
    for (i, l) in lines {
        let e = parse_event(l, i + 1)?;
        last = in_order(i + 1, last, e.t())?;
        events.push(e);
    }
    Ok((header, events))
}

/// Checks that an event at `t` does not come before the previous one (or the start).
pub fn in_order(line: usize, last: Millis, t: Millis) -> Result<Millis, ScenarioError> {
    if t < last {
        return Err(err(
            line,
            format!(
                "the event at {} comes before the one above it ({}): events must be in time order, and none before the header's start",
                format_millis(t),
                format_millis(last)
            ),
        ));
    }
    Ok(t)
}

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

/// Counts of one kind of event.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    pub events: u64,
    pub allowed: u64,
    pub held: u64,
    pub denied: u64,
    /// Refused because a freeze covered them, or the event set a freeze.
    pub frozen: u64,
}

/// How a detector fired, per label.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Hits {
    pub normal: u64,
    pub attack: u64,
}

/// The first time something happened.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct First {
    /// When (the event's time).
    pub t: String,
    /// Its position in the scenario, counting events from 1.
    pub event: u64,
    /// How long after the first attack event (absent when before it, or with no attack).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub after_attack_start: Option<String>,
    /// Attack events up to and including it.
    pub attack_events: u64,
}

/// A point of the chart: cumulative attack value at an attack event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Point {
    pub t: Millis,
    pub attempted_cents: i64,
    pub allowed_cents: i64,
}

/// A freeze set during the replay.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FreezeSet {
    pub t: String,
    #[serde(skip)]
    pub at: Millis,
    pub event: u64,
    pub scope: String,
    pub by: String,
}

/// What a replay found. Serialized as the JSON report (docs/scenarios.md lists the fields);
/// USD amounts are decimal strings with two places, never floats.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Report {
    pub scenario: String,
    /// `in-process` or `gateway`.
    pub mode: String,
    pub events: u64,
    pub attack_attempted_usd: String,
    /// Attack value keygate allowed (withdrawals and transfers), plus attack outflows that left
    /// around keygate: what the attacker would have got.
    pub attack_allowed_usd: String,
    /// Of `attack_allowed_usd`, what left around keygate (outflow events), which keygate can
    /// only contain, never stop.
    pub attack_outflow_usd: String,
    pub normal_denied: u64,
    pub normal_held: u64,
    pub normal_frozen: u64,
    pub first_deny_t: Option<String>,
    pub first_hold_t: Option<String>,
    pub first_freeze_t: Option<String>,
    pub first_deny: Option<First>,
    pub first_hold: Option<First>,
    pub first_freeze: Option<First>,
    pub detector_hits: BTreeMap<String, Hits>,
    pub normal: Counts,
    pub attack: Counts,
    pub outflows_matched: u64,
    pub outflows_unapproved: u64,
    pub freezes: Vec<FreezeSet>,
    /// Cumulative attack value at each attack event, for the chart.
    pub timeline: Vec<Point>,
}

/// Builds a [`Report`] from what keygate did with each event, whichever way the events ran.
pub struct Tally {
    scenario: String,
    mode: String,
    prices: PriceTable,
    events: u64,
    attack_events: u64,
    attack_start: Option<Millis>,
    attempted: i64,
    allowed: i64,
    outflow: i64,
    normal: Counts,
    attack: Counts,
    first_deny: Option<First>,
    first_hold: Option<First>,
    first_freeze: Option<First>,
    hits: BTreeMap<String, Hits>,
    matched: u64,
    unapproved: u64,
    freezes: Vec<FreezeSet>,
    timeline: Vec<Point>,
}

impl Tally {
    /// `pinned` are the prices the replay's engine pins (the config's, with the header's in
    /// place of the same asset's); values are counted at them.
    pub fn new(header: &Header, mode: &str, pinned: &[(String, Decimal)]) -> Self {
        let mut prices = PriceTable::new(Millis::MAX);
        for (a, p) in pinned.iter().map(|(a, p)| (a, p)).chain(&header.prices) {
            prices.pin(a, *p);
        }
        Self {
            scenario: header.scenario.clone(),
            mode: mode.to_string(),
            prices,
            events: 0,
            attack_events: 0,
            attack_start: None,
            attempted: 0,
            allowed: 0,
            outflow: 0,
            normal: Counts::default(),
            attack: Counts::default(),
            first_deny: None,
            first_hold: None,
            first_freeze: None,
            hits: BTreeMap::new(),
            matched: 0,
            unapproved: 0,
            freezes: vec![],
            timeline: vec![],
        }
    }

    /// The USD value, in cents, of an amount of an asset at the replay's prices (0 when neither
    /// the scenario nor the config prices it: keygate denies such a request anyway, having no
    /// price to check its limits with).
    pub fn usd_cents(&self, asset: &str, amount: Decimal) -> i64 {
        self.prices.usd_cents(asset, amount, 0).unwrap_or(0)
    }

    fn start(&mut self, t: Millis, label: Label) {
        self.events += 1;
        if label == Label::Attack {
            self.attack_events += 1;
            self.attack_start.get_or_insert(t);
        }
    }

    fn first(&self, t: Millis) -> First {
        First {
            t: format_millis(t),
            event: self.events,
            after_attack_start: self
                .attack_start
                .map(|s| crate::time::format_duration(t - s)),
            attack_events: self.attack_events,
        }
    }

    fn froze(&mut self, t: Millis, scope: &Scope, by: &str) {
        if self.first_freeze.is_none() {
            self.first_freeze = Some(self.first(t));
        }
        self.freezes.push(FreezeSet {
            t: format_millis(t),
            at: t,
            event: self.events,
            scope: scope.to_string(),
            by: by.to_string(),
        });
    }

    fn point(&mut self, t: Millis) {
        self.timeline.push(Point {
            t,
            attempted_cents: self.attempted,
            allowed_cents: self.allowed,
        });
    }

    /// Counts a request event and what keygate did with it.
    pub fn request(&mut self, ev: &RequestEvent, seen: &Observed) {
        self.start(ev.t, ev.label);
        let value = match (&ev.asset, ev.amount) {
            (Some(a), Some(m)) if ev.action.moves_funds_out() => self.usd_cents(a, m),
            _ => 0,
        };
        let frozen = seen.stage == Stage::Freeze || seen.froze.is_some();
        let counts = match ev.label {
            Label::Normal => &mut self.normal,
            Label::Attack => &mut self.attack,
        };
        counts.events += 1;
        match seen.outcome {
            Outcome::Allow => counts.allowed += 1,
            Outcome::Hold => counts.held += 1,
            Outcome::Deny => counts.denied += 1,
        }
        if frozen {
            counts.frozen += 1;
        }
        for d in &seen.detectors {
            let h = self.hits.entry(d.clone()).or_default();
            match ev.label {
                Label::Normal => h.normal += 1,
                Label::Attack => h.attack += 1,
            }
        }
        if seen.outcome == Outcome::Deny && self.first_deny.is_none() {
            self.first_deny = Some(self.first(ev.t));
        }
        if seen.outcome == Outcome::Hold && self.first_hold.is_none() {
            self.first_hold = Some(self.first(ev.t));
        }
        if let Some((scope, by)) = &seen.froze {
            self.froze(ev.t, scope, by);
        }
        if ev.label == Label::Attack {
            self.attempted = self.attempted.saturating_add(value);
            if seen.outcome == Outcome::Allow {
                self.allowed = self.allowed.saturating_add(value);
            }
            self.point(ev.t);
        }
    }

    /// Counts an outflow event: whether it matched an allowed decision, and the freeze it set.
    pub fn outflow(&mut self, ev: &OutflowEvent, matched: bool, froze: Option<&Scope>) {
        self.start(ev.t, ev.label);
        if matched {
            self.matched += 1;
        } else {
            self.unapproved += 1;
        }
        if let Some(scope) = froze {
            self.froze(ev.t, scope, "reconciliation");
        }
        if ev.label == Label::Attack {
            // It left whatever keygate does: counted as attempted and as got.
            let value = self.usd_cents(&ev.asset, ev.amount);
            self.attempted = self.attempted.saturating_add(value);
            self.allowed = self.allowed.saturating_add(value);
            self.outflow = self.outflow.saturating_add(value);
            self.point(ev.t);
        }
    }

    pub fn report(self) -> Report {
        let t = |f: &Option<First>| f.as_ref().map(|f| f.t.clone());
        Report {
            scenario: self.scenario,
            mode: self.mode,
            events: self.events,
            attack_attempted_usd: format_usd(self.attempted),
            attack_allowed_usd: format_usd(self.allowed),
            attack_outflow_usd: format_usd(self.outflow),
            normal_denied: self.normal.denied,
            normal_held: self.normal.held,
            normal_frozen: self.normal.frozen,
            first_deny_t: t(&self.first_deny),
            first_hold_t: t(&self.first_hold),
            first_freeze_t: t(&self.first_freeze),
            first_deny: self.first_deny,
            first_hold: self.first_hold,
            first_freeze: self.first_freeze,
            detector_hits: self.hits,
            normal: self.normal,
            attack: self.attack,
            outflows_matched: self.matched,
            outflows_unapproved: self.unapproved,
            freezes: self.freezes,
            timeline: self.timeline,
        }
    }
}
