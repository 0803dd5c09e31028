//! `decide`: (engine, state, intent, now) -> verdict with reasons. Pure and synchronous; the
//! store wraps it in one durable decide-and-record transaction, and the replay engine calls it
//! with a simulated clock.
//!
//! The checks run in a fixed order and the first that refuses decides: the intent is well formed;
//! the client exists, is enabled and may use this venue and action; the asset has a fresh price;
//! a destination is usable in the address book; every limit has room; and the client's slice of
//! the Cedar policies allows (or holds). Anything unexpected is a deny that says why.
//!
//! Time only moves forward: a decision is dated `max(now, the previous decision's time)`, so a
//! limit window can never be reopened by a clock that steps back.

use std::collections::HashMap;

use rust_decimal::Decimal;
use rust_decimal::prelude::ToPrimitive;
use serde::Serialize;

use crate::auth::ClientRecord;
use crate::book::{AddressBook, Destination};
use crate::freeze::Freeze;
use crate::intent::{Action, Intent};
pub use crate::limits::LimitCheck;
use crate::limits::{LimitSpec, LimitState, Move, MoveRef, Selector};
pub use crate::policy::Outcome;
use crate::policy::{DestinationRef, Policies, PolicyContext, Subject, World};
use crate::price::PriceTable;
use crate::time::{HOUR, MINUTE, Millis, hour_utc};

/// A value-moving intent that was allowed and is now counted by the limits.
pub type Debit = Move;

/// What the engine is configured with: it changes only when the config is reloaded.
#[derive(Debug)]
pub struct Engine {
    pub policies: Policies,
    pub limits: Vec<LimitSpec>,
    /// Prices pinned in the config.
    pub pinned: Vec<(String, Decimal)>,
    pub price_max_age: Millis,
    /// How far behind the latest recorded decision `now` may be. Beyond it keygate denies
    /// rather than date the decision forward: a clock that jumped ahead (on any instance or
    /// admin host) must not open the limit windows early.
    pub max_clock_skew: Millis,
    /// (venue, asset) pairs the config names, so policies can refer to them.
    pub assets: Vec<(String, String)>,
    /// (venue, credential id) for each venue keygate signs for, so a freeze of a credential
    /// stops every venue that uses it.
    pub venue_credentials: Vec<(String, String)>,
    /// The anomaly detectors' settings.
    pub detectors: crate::detect::DetectorConfig,
    /// How orders are valued.
    pub trading: crate::order::TradeSettings,
}

/// Why an engine or state could not be built.
impl Engine {
    /// The credential `venue` signs with, if the engine knows it.
    pub fn credential_of(&self, venue: &str) -> Option<&str> {
        self.venue_credentials
            .iter()
            .find(|(v, _)| v == venue)
            .map(|(_, c)| c.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EngineError {
    #[error("{0}")]
    Limit(String),
    #[error("cannot describe the clients, venues and destinations to the policies: {0}")]
    Entities(String),
}

impl Engine {
    pub fn validate(&self) -> Result<(), EngineError> {
        let mut names = std::collections::HashSet::new();
        for l in &self.limits {
            l.validate().map_err(EngineError::Limit)?;
            if !names.insert(&l.name) {
                return Err(EngineError::Limit(format!(
                    "limit {} is declared twice",
                    l.name
                )));
            }
        }
        Ok(())
    }
}

/// Which check decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    Clock,
    Freeze,
    Intent,
    Client,
    Price,
    AddressBook,
    Limit,
    Policy,
    /// A detector's signal held, denied or froze what would have been allowed.
    Detector,
}

/// The answer to one intent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Verdict {
    pub outcome: Outcome,
    /// The time the decision is dated (never before the previous decision).
    pub at: Millis,
    pub stage: Stage,
    pub reasons: Vec<String>,
    /// The policies that decided, if it got that far.
    pub policies: Vec<String>,
    /// Every limit that covers the intent, with its usage before it.
    pub limits: Vec<LimitCheck>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usd_value_cents: Option<i64>,
    /// What an allow counts against the limits.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub debit: Option<Debit>,
}

impl Verdict {
    fn deny(at: Millis, stage: Stage, reason: impl Into<String>) -> Self {
        Verdict {
            outcome: Outcome::Deny,
            at,
            stage,
            reasons: vec![reason.into()],
            policies: vec![],
            limits: vec![],
            usd_value_cents: None,
            debit: None,
        }
    }
}

/// Statistics windows every client gets, for the policy context: 10m, 1h and 24h of allowed
/// withdrawals and transfers.
fn stat_specs() -> Vec<LimitSpec> {
    [10 * MINUTE, HOUR, 24 * HOUR]
        .into_iter()
        .map(|window| LimitSpec {
            name: format!("client-stats-{window}"),
            client: Selector::Each,
            venue: Selector::All,
            asset: Selector::All,
            actions: vec![Action::Withdraw, Action::Transfer],
            window,
            max_usd_cents: None,
            max_amount: None,
            max_count: None,
        })
        .collect()
}

/// What changes between decisions: clients, destinations, observed prices, limit windows, the
/// clock. Built from the store; [`State::record`] applies an allowed decision.
pub struct State {
    freezes: Vec<Freeze>,
    history: crate::detect::History,
    trades: crate::detect::trade::TradeHistory,
    clients: HashMap<String, ClientRecord>,
    book: AddressBook,
    prices: PriceTable,
    limits: LimitState,
    entities: cedar_policy::Entities,
    /// Verdicts of the policies against `entities`, which never change for this state.
    memo: crate::policy::Memo,
    clock: Millis,
}

impl std::fmt::Debug for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("State")
            .field("clients", &self.clients.len())
            .field("clock", &self.clock)
            .finish_non_exhaustive()
    }
}

/// The inputs to build a [`State`].
pub struct StateInputs {
    pub clients: Vec<ClientRecord>,
    pub destinations: Vec<Destination>,
    /// Observed prices: (asset, USD per unit, observed at).
    pub prices: Vec<(String, Decimal, Millis)>,
    /// Allowed moves within the longest window, in time order.
    pub moves: Vec<Move>,
    /// The time of the latest decision.
    pub clock: Millis,
    /// Active freezes.
    pub freezes: Vec<Freeze>,
    /// Allowed outflows within the detectors' window, in time order.
    pub outflows: Vec<crate::detect::Outgoing>,
    /// Allowed trades within the trade detectors' window, in time order.
    pub trades: Vec<crate::detect::trade::TradeDone>,
    /// Since when the trade history holds every allowed trade (the audit log's first entry),
    /// if known; and since when each client exists. A client is dormant only if keygate has
    /// watched it for a whole window.
    pub trades_complete_since: Option<Millis>,
    pub clients_since: Vec<(String, Millis)>,
}

impl State {
    pub fn new(engine: &Engine, inputs: StateInputs) -> Result<Self, EngineError> {
        let mut prices = PriceTable::new(engine.price_max_age);
        for (asset, usd) in &engine.pinned {
            prices.pin(asset, *usd);
        }
        for (asset, usd, at) in &inputs.prices {
            prices.observe(asset, *usd, *at);
        }
        let mut limits = LimitState::with_stats(engine.limits.clone(), stat_specs());
        for m in &inputs.moves {
            limits.record(&m.as_ref());
        }
        // Every priced asset on every venue a client uses, so that policies see each asset as
        // an entity without building one per request.
        let mut assets: std::collections::BTreeSet<(&str, &str)> = engine
            .assets
            .iter()
            .map(|(v, a)| (v.as_str(), a.as_str()))
            .collect();
        for c in &inputs.clients {
            for v in &c.venues {
                for (a, _) in prices.iter() {
                    assets.insert((v.as_str(), a.as_str()));
                }
            }
        }
        let assets: Vec<(&str, &str)> = assets.into_iter().collect();
        let dests: Vec<&Destination> = inputs.destinations.iter().collect();
        let entities = engine
            .policies
            .entities(&World {
                clients: &inputs.clients,
                assets: &assets,
                destinations: &dests,
            })
            .map_err(EngineError::Entities)?;
        let mut history = crate::detect::History::for_config(&engine.detectors);
        for o in inputs.outflows {
            history.record(o, engine.detectors.window);
        }
        let mut trades = crate::detect::trade::TradeHistory::default();
        if let Some(since) = inputs.trades_complete_since {
            trades.complete_since(since);
        }
        for (client, since) in &inputs.clients_since {
            trades.watch(client, *since);
        }
        for t in inputs.trades {
            trades.record(t, &engine.detectors.trade);
        }
        Ok(Self {
            freezes: inputs.freezes,
            history,
            trades,
            clients: inputs
                .clients
                .into_iter()
                .map(|c| (c.name.clone(), c))
                .collect(),
            book: AddressBook::new(inputs.destinations),
            prices,
            limits,
            entities,
            memo: crate::policy::Memo::default(),
            clock: inputs.clock,
        })
    }

    /// Counts an allowed outflow in the detectors' history.
    pub fn record_outflow(&mut self, o: crate::detect::Outgoing, window: Millis) {
        self.history.record(o, window);
    }

    /// Counts an allowed trade in the trade detectors' history.
    pub fn record_trade(&mut self, engine: &Engine, t: crate::detect::trade::TradeDone) {
        self.trades.record(t, &engine.detectors.trade);
    }

    /// Adds a freeze set during a batch, so the rest of the batch sees it.
    pub fn add_freeze(&mut self, f: Freeze) {
        self.freezes.push(f);
    }

    /// Forgets the policies' remembered verdicts, so the next decisions ask Cedar again (for
    /// benchmarks; a verdict never depends on whether it was remembered).
    pub fn forget_verdicts(&self) {
        self.memo.clear();
    }

    /// The active freezes.
    pub fn freezes(&self) -> &[Freeze] {
        &self.freezes
    }

    /// A client as the state knows it.
    pub fn client(&self, name: &str) -> Option<&ClientRecord> {
        self.clients.get(name)
    }

    /// The time of the latest decision.
    pub fn clock(&self) -> Millis {
        self.clock
    }

    /// The entities the policies see.
    pub fn entities(&self) -> &cedar_policy::Entities {
        &self.entities
    }

    pub fn prices(&self) -> &PriceTable {
        &self.prices
    }

    pub fn limits(&self) -> &LimitState {
        &self.limits
    }

    /// Applies a decision: an allow's debit is counted, and the clock moves to its time.
    pub fn record(&mut self, verdict: &Verdict) {
        if let Some(d) = &verdict.debit {
            self.limits.record(&d.as_ref());
        }
        self.clock = self.clock.max(verdict.at);
    }

    /// Applies a watched decision: the verdict as [`State::record`] does, and an allowed
    /// outflow in the detectors' history. The freeze it asks for is set by the caller (the
    /// store makes it durable first) with [`State::add_freeze`].
    pub fn apply(&mut self, engine: &Engine, w: &Watched) {
        self.record(&w.verdict);
        if w.verdict.outcome != Outcome::Allow {
            return;
        }
        if let Some(o) = &w.outgoing {
            self.record_outflow(o.clone(), engine.detectors.window);
        }
        if let Some(t) = &w.trade {
            self.record_trade(engine, t.clone());
        }
    }

    /// Counts a move recorded elsewhere (by another instance) in the limits.
    pub fn record_move(&mut self, m: &Move) {
        self.limits.record(&m.as_ref());
        self.clock = self.clock.max(m.at);
    }

    /// Moves the clock forward without a decision (an admin action dated later, say).
    pub fn advance(&mut self, to: Millis) {
        self.clock = self.clock.max(to);
    }
}

/// Millionths of a unit, rounded up, saturating.
fn micros(amount: Decimal) -> i64 {
    amount
        .checked_mul(Decimal::from(1_000_000))
        .map(|d| d.ceil().to_i64().unwrap_or(i64::MAX))
        .unwrap_or(i64::MAX)
}

/// Decides one intent. Pure: the same engine, state, intent and time always give the same verdict.
/// `signals`, `anomaly_score` and `approvals` feed the policy context (detectors and approvals
/// fill them; a plain request passes none).
pub fn decide(engine: &Engine, state: &State, intent: &Intent, now: Millis) -> Verdict {
    decide_with(engine, state, intent, now, &Extra::default())
}

/// Inputs to the policy context that come from outside the intent.
#[derive(Debug, Clone, Default)]
pub struct Extra {
    pub signals: Vec<String>,
    pub anomaly_score: i64,
    pub approvals: i64,
    /// A quorum approved exactly this intent (a held one, sent again): a detector's hold is
    /// satisfied. Policies see the count in `approvals`.
    pub approved: bool,
    /// A clock every instance shares (the store's). A `now` further ahead of it than
    /// `max_clock_skew` is refused: a host whose clock ran ahead would otherwise see every
    /// window as already expired.
    pub reference_now: Option<Millis>,
}

pub fn decide_with(
    engine: &Engine,
    state: &State,
    intent: &Intent,
    now: Millis,
    extra: &Extra,
) -> Verdict {
    match checked(engine, state, intent, now, extra) {
        Ok(v) | Err(v) => v,
    }
}

/// [`decide_with`], each check a step; `Err` is the deny of the first check that refuses.
// The `Err` is the deny itself, the verdict returned: boxing it would allocate per deny.
#[allow(clippy::result_large_err)]
fn checked(
    engine: &Engine,
    state: &State,
    intent: &Intent,
    now: Millis,
    extra: &Extra,
) -> Result<Verdict, Verdict> {
    let at = check_clock(engine, state, now, extra)?;
    check_freezes(engine, state, intent, at)?;
    if let Err(e) = intent.validate() {
        return Err(Verdict::deny(
            at,
            Stage::Intent,
            format!("the request is not valid: {e}"),
        ));
    }
    check_client(state, intent, at)?;
    let asset = intent.asset.as_deref();
    let mut ctx = PolicyContext {
        hour_utc: hour_utc(at),
        // Cedar refuses IPv4-mapped IPv6 (::ffff:a.b.c.d); a dual-stack listener gives those.
        source_ip: intent.source_ip.map(|ip| ip.to_canonical()),
        asset: asset.unwrap_or_default().to_string(),
        signals: extra.signals.clone(),
        anomaly_score: extra.anomaly_score,
        approvals: extra.approvals,
        ..PolicyContext::default()
    };
    let amount = match &intent.order {
        Some(order) => {
            let notional = order_notional(engine, order, at, &mut ctx)?;
            if intent.amount.is_some_and(|a| a != notional) {
                return Err(Verdict::deny(
                    at,
                    Stage::Intent,
                    format!(
                        "the request is not valid: its amount {} is not its order's notional {notional} {}",
                        intent.amount.unwrap_or_default(),
                        order.quote
                    ),
                ));
            }
            Some(notional)
        }
        None => intent.amount,
    };
    let valued = match (asset, amount) {
        (Some(asset), Some(amount)) => Some(value(state, intent, asset, amount, at, &mut ctx)?),
        _ => None,
    };
    let subject = Subject {
        client: &intent.client,
        venue: &intent.venue,
        action: intent.action,
        asset,
    };
    let pv = engine
        .policies
        .evaluate_memo(&subject, &ctx, &state.entities, &state.memo);
    let Valued {
        usd_value_cents,
        limits,
        debit,
    } = valued.unwrap_or_default();
    Ok(Verdict {
        outcome: pv.outcome,
        at,
        stage: Stage::Policy,
        reasons: pv.reasons,
        policies: pv.policies,
        limits,
        usd_value_cents,
        debit: if pv.outcome == Outcome::Allow {
            debit
        } else {
            None
        },
    })
}

/// The time a decision is dated, unless this host's clock is too far behind the latest
/// decision or ahead of the store's.
// The `Err` is the deny itself, the verdict returned: boxing it would allocate per deny.
#[allow(clippy::result_large_err)]
fn check_clock(
    engine: &Engine,
    state: &State,
    now: Millis,
    extra: &Extra,
) -> Result<Millis, Verdict> {
    let at = now.max(state.clock);
    if state.clock - now > engine.max_clock_skew {
        return Err(Verdict::deny(
            at,
            Stage::Clock,
            format!(
                "this host's clock is {} behind the latest recorded decision; check the clocks (NTP) of every keygate instance and admin host",
                crate::time::format_duration(state.clock - now)
            ),
        ));
    }
    if let Some(reference) = extra.reference_now
        && now - reference > engine.max_clock_skew
    {
        return Err(Verdict::deny(
            state.clock,
            Stage::Clock,
            format!(
                "this host's clock is {} ahead of the store's; check the clocks (NTP) of every keygate instance",
                crate::time::format_duration(now - reference)
            ),
        ));
    }
    Ok(at)
}

/// Denies what an active freeze covers, naming every freeze that does.
// The `Err` is the deny itself, the verdict returned: boxing it would allocate per deny.
#[allow(clippy::result_large_err)]
fn check_freezes(
    engine: &Engine,
    state: &State,
    intent: &Intent,
    at: Millis,
) -> Result<(), Verdict> {
    let frozen: Vec<String> = state
        .freezes
        .iter()
        .filter(|f| f.covers(intent, |v| engine.credential_of(v)))
        .map(|f| {
            format!(
                "{} is frozen (freeze {}, set by {} at {}: {}); lifting it needs approvals: keygate approve freeze:{} --key FILE",
                f.scope,
                f.id,
                f.set_by,
                crate::time::format_millis(f.set_at),
                f.reason,
                f.id
            )
        })
        .collect();
    if frozen.is_empty() {
        return Ok(());
    }
    let mut v = Verdict::deny(at, Stage::Freeze, frozen.join("; "));
    v.reasons = frozen;
    Err(v)
}

/// Denies a client that is unknown, disabled, or may not use this venue and action.
// The `Err` is the deny itself, the verdict returned: boxing it would allocate per deny.
#[allow(clippy::result_large_err)]
fn check_client(state: &State, intent: &Intent, at: Millis) -> Result<(), Verdict> {
    let refuse = |reason: String| Err(Verdict::deny(at, Stage::Client, reason));
    match state.clients.get(&intent.client) {
        None => refuse(format!("client {} is not known", intent.client)),
        Some(c) if !c.enabled => refuse(format!("client {} is disabled", intent.client)),
        Some(c) if !c.may(&intent.venue, intent.action) => refuse(format!(
            "client {} may not {} on {}",
            intent.client, intent.action, intent.venue
        )),
        Some(c) => match &intent.order {
            Some(o) if !c.instruments.contains(&o.instrument()) => refuse(format!(
                "client {} may not trade {} ({} on {}): its scope names {}; add it with `keygate client add {} --instrument {}`",
                intent.client,
                o.instrument(),
                o.symbol,
                intent.venue,
                if c.instruments.is_empty() {
                    "no instruments".to_string()
                } else {
                    c.instruments.join(", ")
                },
                intent.client,
                o.instrument()
            )),
            _ => Ok(()),
        },
    }
}

/// Values an order in its quote asset at a fresh reference price, and fills the policy
/// context's order fields (all but the USD notional, which [`value`] fills). `Err` is the deny:
/// no fresh reference (a value check on a stale market is no check), or an order that cannot be
/// valued, or an amount the adapter stated that the order does not match.
// The `Err` is the deny itself, the verdict returned: boxing it would allocate per deny.
#[allow(clippy::result_large_err)]
fn order_notional(
    engine: &Engine,
    order: &crate::order::Order,
    at: Millis,
    ctx: &mut PolicyContext,
) -> Result<Decimal, Verdict> {
    let trading = &engine.trading;
    let reference = order
        .fresh_reference(at, trading.reference_max_age)
        .map_err(|e| Verdict::deny(at, Stage::Price, format!("cannot value the order: {e}")))?;
    let notional = order
        .notional(reference, trading.slippage_bps)
        .map_err(|e| Verdict::deny(at, Stage::Intent, format!("cannot value the order: {e}")))?;
    ctx.instrument = order.instrument();
    ctx.symbol = order.symbol.clone();
    ctx.base = order.base.clone();
    ctx.quote = order.quote.clone();
    ctx.side = order.side.as_str().to_string();
    ctx.order_type = order.kind.as_str().to_string();
    ctx.price_micros = order.price.map(micros).unwrap_or(0);
    ctx.quantity_micros = order.quantity.map(micros).unwrap_or(0);
    ctx.reference_price_micros = micros(reference);
    ctx.price_deviation_bps = order.deviation_bps(reference);
    Ok(notional)
}

/// What valuing an intent found: its USD value, the limits covering it, and its debit.
#[derive(Default)]
struct Valued {
    usd_value_cents: Option<i64>,
    limits: Vec<LimitCheck>,
    debit: Option<Debit>,
}

/// Values an intent that moves an amount: prices it, checks its destination in the address
/// book (for an outflow), fills the policy context's value, destination and statistics, and
/// checks every limit. `Err` is the deny of the step that refused.
// The `Err` is the deny itself, the verdict returned: boxing it would allocate per deny.
#[allow(clippy::result_large_err)]
fn value(
    state: &State,
    intent: &Intent,
    asset: &str,
    amount: Decimal,
    at: Millis,
    ctx: &mut PolicyContext,
) -> Result<Valued, Verdict> {
    let usd = state
        .prices
        .usd_cents(asset, amount, at)
        .map_err(|e| Verdict::deny(at, Stage::Price, format!("cannot value the request: {e}")))?;
    let usd_value_cents = Some(usd);
    ctx.amount_micros = micros(amount);
    ctx.usd_value_cents = usd;
    if intent.order.is_some() {
        ctx.notional_usd_cents = usd;
    }
    if intent.action.moves_funds_out() {
        let to = intent.destination.as_deref().unwrap_or_default();
        let d = state
            .book
            .usable(&intent.venue, asset, to, &intent.route, at)
            .map_err(|e| Verdict::deny(at, Stage::AddressBook, e.to_string()))?;
        ctx.destination = Some(DestinationRef {
            address: d.address.clone(),
            label: d.label.clone(),
            age_hours: (at - d.added_at).max(0) / HOUR,
        });
    }
    let m = MoveRef {
        at,
        client: &intent.client,
        venue: &intent.venue,
        asset,
        action: intent.action,
        amount,
        usd_cents: usd,
    };
    client_stats(state, &m, ctx);
    let limits = state.limits.check(&m);
    let broken: Vec<String> = limits
        .iter()
        .filter(|c| c.exceeded.is_some())
        .map(LimitCheck::describe)
        .collect();
    if !broken.is_empty() {
        return Err(Verdict {
            outcome: Outcome::Deny,
            at,
            stage: Stage::Limit,
            reasons: broken,
            policies: vec![],
            limits,
            usd_value_cents,
            debit: None,
        });
    }
    Ok(Valued {
        usd_value_cents,
        limits,
        debit: Some(Move {
            at,
            client: intent.client.clone(),
            venue: intent.venue.clone(),
            asset: asset.to_string(),
            action: intent.action,
            amount,
            usd_cents: usd,
        }),
    })
}

/// The client's withdrawals and transfers over 10m, 1h and 24h, whatever this intent's
/// action is, into the policy context.
fn client_stats(state: &State, m: &MoveRef<'_>, ctx: &mut PolicyContext) {
    let saturate = |v: i128| i64::try_from(v).unwrap_or(i64::MAX);
    let as_outflow = MoveRef {
        action: Action::Withdraw,
        ..*m
    };
    ctx.client_usd_cents_10m = saturate(state.limits.stat(0, &as_outflow).usd_cents);
    let hour = state.limits.stat(1, &as_outflow);
    ctx.client_usd_cents_1h = saturate(hour.usd_cents);
    ctx.client_count_1h = i64::try_from(hour.count).unwrap_or(i64::MAX);
    ctx.client_usd_cents_24h = saturate(state.limits.stat(2, &as_outflow).usd_cents);
}

/// A decision with the detectors' view of it.
#[derive(Debug, Clone)]
pub struct Watched {
    pub verdict: Verdict,
    pub signals: Vec<crate::detect::Signal>,
    /// The freeze the strongest signal asks for, if any.
    pub freeze: Option<crate::freeze::Scope>,
    /// The outflow, for the detectors' history once it is allowed.
    pub outgoing: Option<crate::detect::Outgoing>,
    /// The trade, for the trade detectors' history once it is allowed.
    pub trade: Option<crate::detect::trade::TradeDone>,
}

/// The freeze a watched decision sets, as it is recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Containment {
    pub scope: crate::freeze::Scope,
    /// The freezing signals' reasons.
    pub reason: String,
    /// `detector:NAME[+NAME…]`.
    pub actor: String,
}

impl Watched {
    /// The freeze this decision sets, if any: its scope, and the detectors that asked for it.
    pub fn containment(&self) -> Option<Containment> {
        let scope = self.freeze.clone()?;
        let freezing: Vec<&crate::detect::Signal> = self
            .signals
            .iter()
            .filter(|s| s.response >= crate::detect::Response::FreezeClient)
            .collect();
        let by: Vec<&str> = freezing.iter().map(|s| s.detector.as_ref()).collect();
        let reason: Vec<&str> = freezing.iter().map(|s| s.reason.as_str()).collect();
        Some(Containment {
            scope,
            reason: reason.join("; "),
            actor: format!("detector:{}", by.join("+")),
        })
    }
}

/// Decides an intent with the anomaly detectors watching: their signals go to the policies
/// (`context.signals`, `context.anomaly_score`), and the strongest signal's response is applied
/// to the verdict (a hold or a deny of what would have been allowed; a freeze is asked for even
/// when the verdict was a deny already: theft-like traffic is contained whatever else stopped it).
pub fn decide_watched(
    engine: &Engine,
    state: &State,
    intent: &Intent,
    now: Millis,
    extra: &Extra,
) -> Watched {
    use crate::detect::{Outgoing, Response, examine};
    let at = now.max(state.clock);
    let mut outgoing = None;
    let mut signals = vec![];
    if intent.action.moves_funds_out()
        && engine.detectors.any_enabled()
        && let (Some(asset), Some(amount), Some(dest)) =
            (&intent.asset, intent.amount, &intent.destination)
        && let Ok(usd_cents) = state.prices.usd_cents(asset, amount, at)
    {
        let o = Outgoing {
            at,
            client: intent.client.clone(),
            venue: intent.venue.clone(),
            asset: asset.clone(),
            destination: crate::intent::normalize_address(dest),
            usd_cents,
        };
        signals = examine(&engine.detectors, &state.history, &o);
        outgoing = Some(o);
    }
    let trade = watched_trade(engine, state, intent, at);
    if let Some(t) = &trade {
        signals = crate::detect::trade::examine_trade(&engine.detectors.trade, &state.trades, t);
    }
    let mut extra = extra.clone();
    for s in &signals {
        extra.signals.push(s.detector.to_string());
        extra.anomaly_score = extra.anomaly_score.saturating_add(s.score);
    }
    let mut verdict = decide_with(engine, state, intent, now, &extra);
    let total: i64 = signals.iter().map(|s| s.score).sum();
    let by_score = if signals.is_empty() {
        None
    } else {
        engine.detectors.score_response(total)
    };
    let strongest = signals.iter().map(|s| s.response).chain(by_score).max();
    let mut acting: Vec<String> = signals
        .iter()
        .filter(|s| s.response > Response::Alert || by_score.is_some())
        .map(|s| format!("detector {}: {}", s.detector, s.reason))
        .collect();
    if let Some(r) = by_score {
        acting.push(format!(
            "the detectors' total score {total} asks for {}",
            r.as_str()
        ));
    }
    match strongest {
        Some(Response::Hold) if verdict.outcome == Outcome::Allow && !extra.approved => {
            verdict.outcome = Outcome::Hold;
            verdict.stage = Stage::Detector;
            verdict.debit = None;
            verdict.reasons = acting;
        }
        Some(r) if r >= Response::Deny && verdict.outcome != Outcome::Deny => {
            verdict.outcome = Outcome::Deny;
            verdict.stage = Stage::Detector;
            verdict.debit = None;
            verdict.reasons = acting;
        }
        Some(r) if r >= Response::Deny => verdict.reasons.extend(acting),
        _ => {}
    }
    let freeze = match strongest {
        Some(Response::FreezeClient) => Some(crate::freeze::Scope::Client(intent.client.clone())),
        Some(Response::FreezeCredential) => Some(match engine.credential_of(&intent.venue) {
            Some(c) => crate::freeze::Scope::Credential(c.to_string()),
            None => crate::freeze::Scope::Venue(intent.venue.clone()),
        }),
        Some(Response::FreezeVenue) => Some(crate::freeze::Scope::Venue(intent.venue.clone())),
        Some(Response::FreezeAll) => Some(crate::freeze::Scope::All),
        _ => None,
    };
    // A request already stopped by a freeze sets no new one, nor does one whose scope an
    // active freeze already covers: a thief retrying a drain must not pile up freezes.
    let freeze = freeze.filter(|scope| {
        verdict.stage != Stage::Freeze
            && !state
                .freezes
                .iter()
                .any(|f| f.scope == *scope || f.scope == crate::freeze::Scope::All)
    });
    Watched {
        verdict,
        signals,
        freeze,
        outgoing,
        trade,
    }
}

/// The trade a trade intent is, as the trade detectors see it, if any runs and the order can be
/// valued (one that cannot is denied by [`decide`] anyway).
fn watched_trade(
    engine: &Engine,
    state: &State,
    intent: &Intent,
    at: Millis,
) -> Option<crate::detect::trade::TradeDone> {
    if intent.action != Action::Trade || !engine.detectors.any_trade_enabled() {
        return None;
    }
    let order = intent.order.as_ref()?;
    let reference = order
        .fresh_reference(at, engine.trading.reference_max_age)
        .ok()?;
    let notional = order
        .notional(reference, engine.trading.slippage_bps)
        .ok()?;
    let usd_cents = state.prices.usd_cents(&order.quote, notional, at).ok()?;
    trade_done(intent, usd_cents, at)
}

/// A trade intent valued at `usd_cents`, as the trade detectors remember it (also rebuilt from
/// an allowed decision's audit entry: its intent and its USD value).
pub fn trade_done(
    intent: &Intent,
    usd_cents: i64,
    at: Millis,
) -> Option<crate::detect::trade::TradeDone> {
    let order = intent.order.as_ref()?;
    Some(crate::detect::trade::TradeDone {
        at,
        client: intent.client.clone(),
        venue: intent.venue.clone(),
        instrument: order.instrument(),
        side: order.side,
        usd_cents,
        deviation_bps: order.reference.map_or(0, |r| order.deviation_bps(r.price)),
    })
}
