//! The [`Tally`]: what keygate did with each event, whichever way the events ran (in-process
//! or through the gateway), turned into the [`Report`]. Value moved out (withdrawals,
//! transfers, outflows) and trades are counted apart: a trade moves no funds out of the
//! account, but an abusive one (a buy from the attacker's own asks far above the market) moves
//! value to the attacker all the same, so attack trades have their own count and notional.

use std::collections::BTreeMap;

use rust_decimal::Decimal;
use serde::Serialize;

use super::format::{Header, Label, OutflowEvent, RequestEvent, known_notional};
use super::ledger::{Contained, Fate, How};
use super::{Effect, Judged, Observed};
use crate::decide::{Outcome, Stage};
use crate::freeze::Scope;
use crate::intent::Action;
use crate::order::Order;
use crate::price::{PriceTable, format_usd};
use crate::time::{Millis, format_millis};

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
    /// The notional of attack trades so far, and of those allowed (USD cents).
    pub trade_attempted_cents: i64,
    pub trade_allowed_cents: i64,
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
    /// Attack trade requests, and how many keygate allowed (held or denied ones are not).
    pub attack_trades: u64,
    pub attack_trades_allowed: u64,
    /// The USD notional of attack trades, and of those allowed: what an attacker trading from
    /// the account's own asks above the market (or into its bids below) could move.
    pub attack_trade_notional_usd: String,
    pub attack_trade_notional_allowed_usd: String,
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
    /// Version 3, with opening balances: per venue and in total, what the attack got, what the
    /// venue refused it, and what containment saved (absent otherwise, so an older scenario's
    /// report is as it was).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<ValueReport>,
}

/// Value at the followed venues (USD, decimal strings with two places).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ValueReport {
    pub venues: BTreeMap<String, VenueValue>,
    pub total: VenueValue,
    /// Attack outflows the venue refused (for lack of funds, or after containment): they
    /// moved nothing, and no watcher saw them.
    pub outflows_blocked: u64,
}

/// One venue's value (or the total of all): the attack's got, refused and contained.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct VenueValue {
    /// `sweep` or `rescue`, if the venue is contained (absent in the total).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub how: Option<How>,
    /// How long after the freeze containment takes effect: as stated in the header
    /// (in-process), or as measured at the simulator (gateway), in milliseconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latency_ms: Option<i64>,
    /// When containment took effect, if it did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub contained_at: Option<String>,
    pub opening_usd: String,
    /// What the attack got out: attack outflows, withdrawals and transfers the venue carried
    /// out.
    pub lost_usd: String,
    /// Saved by containment at an exchange: swept to the master account, the key locked.
    pub saved_usd: String,
    /// Rescued by containment on chain: moved to `rescue_to`.
    pub rescued_usd: String,
    /// Attack value the venue refused for lack of funds.
    pub blocked_for_funds_usd: String,
    /// Attack value the venue refused after containment (the key locked, the funds gone).
    pub blocked_by_containment_usd: String,
}

/// One followed venue's figures, in USD cents.
#[derive(Debug, Clone, Default)]
struct VenueCents {
    how: Option<How>,
    latency: Option<Millis>,
    contained_at: Option<Millis>,
    opening: i64,
    lost: i64,
    saved: i64,
    rescued: i64,
    blocked_funds: i64,
    blocked_contained: i64,
}

impl VenueCents {
    fn add(&mut self, o: &VenueCents) {
        let s = |a: &mut i64, b: i64| *a = a.saturating_add(b);
        s(&mut self.opening, o.opening);
        s(&mut self.lost, o.lost);
        s(&mut self.saved, o.saved);
        s(&mut self.rescued, o.rescued);
        s(&mut self.blocked_funds, o.blocked_funds);
        s(&mut self.blocked_contained, o.blocked_contained);
    }

    fn report(&self) -> VenueValue {
        VenueValue {
            how: self.how,
            latency_ms: self.latency,
            contained_at: self.contained_at.map(format_millis),
            opening_usd: format_usd(self.opening),
            lost_usd: format_usd(self.lost),
            saved_usd: format_usd(self.saved),
            rescued_usd: format_usd(self.rescued),
            blocked_for_funds_usd: format_usd(self.blocked_funds),
            blocked_by_containment_usd: format_usd(self.blocked_contained),
        }
    }
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
    trades: u64,
    trades_allowed: u64,
    trade_attempted: i64,
    trade_allowed: i64,
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
    /// Per followed venue (none: no balances in the header).
    venues: BTreeMap<String, VenueCents>,
    outflows_blocked: u64,
}

impl Tally {
    /// `pinned` are the prices the replay's engine pins (the config's, with the header's in
    /// place of the same asset's); values are counted at them.
    pub fn new(header: &Header, mode: &str, pinned: &[(String, Decimal)]) -> Self {
        let mut prices = PriceTable::new(Millis::MAX);
        for (a, p) in pinned.iter().map(|(a, p)| (a, p)).chain(&header.prices) {
            prices.pin(a, *p);
        }
        let venues = header
            .balances
            .iter()
            .map(|(v, held)| {
                let opening = held
                    .iter()
                    .map(|(a, m)| prices.usd_cents(a, *m, 0).unwrap_or(0))
                    .fold(0i64, i64::saturating_add);
                let how = header.containment.get(v).map(|c| c.how);
                let cents = VenueCents {
                    opening,
                    how,
                    latency: header.containment.get(v).map(|c| c.latency),
                    ..VenueCents::default()
                };
                (v.clone(), cents)
            })
            .collect();
        Self {
            venues,
            outflows_blocked: 0,
            scenario: header.scenario.clone(),
            mode: mode.to_string(),
            prices,
            events: 0,
            attack_events: 0,
            attack_start: None,
            attempted: 0,
            allowed: 0,
            outflow: 0,
            trades: 0,
            trades_allowed: 0,
            trade_attempted: 0,
            trade_allowed: 0,
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

    /// The USD notional of a trade, in cents (0 for other requests, and when the quote is not
    /// priced): an order's quote notional (a limit order's quantity × price, a market order's
    /// quote quantity, or its quantity at the reference price), a trade without an order by
    /// its asset and amount.
    pub fn trade_cents(&self, ev: &RequestEvent) -> i64 {
        if ev.action != Action::Trade {
            return 0;
        }
        match (&ev.order, &ev.asset, ev.amount) {
            (Some(o), ..) => quote_notional(o).map_or(0, |n| self.usd_cents(&o.quote, n)),
            (None, Some(a), Some(m)) => self.usd_cents(a, m),
            _ => 0,
        }
    }

    fn trade(&mut self, ev: &RequestEvent, outcome: Outcome) {
        let value = self.trade_cents(ev);
        self.trades += 1;
        self.trade_attempted = self.trade_attempted.saturating_add(value);
        if outcome == Outcome::Allow {
            self.trades_allowed += 1;
            self.trade_allowed = self.trade_allowed.saturating_add(value);
        }
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
            trade_attempted_cents: self.trade_attempted,
            trade_allowed_cents: self.trade_allowed,
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
        let got = seen.outcome == Outcome::Allow && seen.fate.got();
        if seen.outcome == Outcome::Allow {
            self.venue_spend(&ev.venue, value, ev.label, seen.fate);
        }
        if ev.label == Label::Attack {
            self.attempted = self.attempted.saturating_add(value);
            if got {
                self.allowed = self.allowed.saturating_add(value);
            }
            if ev.action == Action::Trade {
                let outcome = if got { seen.outcome } else { Outcome::Deny };
                self.trade(ev, outcome);
            }
            self.point(ev.t);
        }
    }

    /// A spend of `value` cents at a followed venue, as the venue took it.
    fn venue_spend(&mut self, venue: &str, value: i64, label: Label, fate: Fate) {
        let Some(v) = self.venues.get_mut(venue) else {
            return;
        };
        match (fate, label) {
            (Fate::Done | Fate::Unfollowed, Label::Attack) => v.lost = v.lost.saturating_add(value),
            (Fate::Done | Fate::Unfollowed, Label::Normal) => {}
            (Fate::NoFunds, Label::Attack) => {
                v.blocked_funds = v.blocked_funds.saturating_add(value)
            }
            (Fate::Contained(_), Label::Attack) => {
                v.blocked_contained = v.blocked_contained.saturating_add(value);
            }
            (Fate::NoFunds | Fate::Contained(_), Label::Normal) => {}
        }
    }

    /// The containment latency measured for `venue`, in place of the stated one.
    pub fn measured(&mut self, venue: &str, latency: Millis) {
        if let Some(v) = self.venues.get_mut(venue) {
            v.latency = Some(latency);
        }
    }

    /// Counts what took effect between events: a freeze reconciliation set, a containment.
    pub fn effect(&mut self, e: &Effect) {
        match e {
            Effect::Froze { at, scope } => self.froze(*at, scope, "reconciliation"),
            Effect::Contained(c) => self.contained(c),
        }
    }

    fn contained(&mut self, c: &Contained) {
        let value = c
            .moved
            .iter()
            .map(|(a, m)| self.usd_cents(a, *m))
            .fold(0i64, i64::saturating_add);
        let Some(v) = self.venues.get_mut(&c.venue) else {
            return;
        };
        v.contained_at = Some(c.at);
        match c.how {
            How::Sweep => v.saved = v.saved.saturating_add(value),
            How::Rescue => v.rescued = v.rescued.saturating_add(value),
        }
    }

    /// Counts an outflow event: whether it matched an allowed decision, the freeze it set, and
    /// whether the venue let it out (one refused moved nothing: it is counted as attempted and
    /// as blocked, never as got).
    pub fn outflow(&mut self, ev: &OutflowEvent, judged: &Judged) {
        self.start(ev.t, ev.label);
        let value = self.usd_cents(&ev.asset, ev.amount);
        self.venue_spend(&ev.venue, value, ev.label, judged.fate);
        if !judged.fate.got() {
            self.outflows_blocked += 1;
        } else if judged.matched {
            self.matched += 1;
        } else {
            self.unapproved += 1;
        }
        if let Some(scope) = &judged.froze {
            self.froze(ev.t, scope, "reconciliation");
        }
        if ev.label == Label::Attack {
            // What left, left whatever keygate does: counted as attempted and as got.
            self.attempted = self.attempted.saturating_add(value);
            if judged.fate.got() {
                self.allowed = self.allowed.saturating_add(value);
                self.outflow = self.outflow.saturating_add(value);
            }
            self.point(ev.t);
        }
    }

    fn value(&self) -> Option<ValueReport> {
        if self.venues.is_empty() {
            return None;
        }
        let mut total = VenueCents::default();
        for v in self.venues.values() {
            total.add(v);
        }
        Some(ValueReport {
            venues: self
                .venues
                .iter()
                .map(|(n, v)| (n.clone(), v.report()))
                .collect(),
            total: total.report(),
            outflows_blocked: self.outflows_blocked,
        })
    }

    pub fn report(self) -> Report {
        let value = self.value();
        let t = |f: &Option<First>| f.as_ref().map(|f| f.t.clone());
        Report {
            scenario: self.scenario,
            mode: self.mode,
            events: self.events,
            attack_attempted_usd: format_usd(self.attempted),
            attack_allowed_usd: format_usd(self.allowed),
            attack_outflow_usd: format_usd(self.outflow),
            attack_trades: self.trades,
            attack_trades_allowed: self.trades_allowed,
            attack_trade_notional_usd: format_usd(self.trade_attempted),
            attack_trade_notional_allowed_usd: format_usd(self.trade_allowed),
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
            value,
        }
    }
}

/// An order's notional in its quote asset: its own terms, or a market order sized in base at
/// its reference price (what it fills at if the book does not move).
fn quote_notional(o: &Order) -> Option<Decimal> {
    known_notional(o).or_else(|| o.quantity?.checked_mul(o.reference?.price))
}
