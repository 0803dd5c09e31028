//! The scenario format (docs/scenarios.md): the header, request and outflow events, read one
//! line at a time, each error naming its line. Version 2 adds instruments to the header and
//! orders (`symbol`, `side`, `price`) to trade requests; version 3 adds each venue's opening
//! `balances` and the `containment` that takes a venue's key and funds out of an attacker's
//! reach, with its stated latency ([`super::ledger`]). An older file reads as it always did,
//! and an older header with a newer field is refused, naming the version that takes it.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::str::FromStr;

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::intent::{Action, Intent, normalize_address};
use crate::order::{Order, OrderKind, Reference, Side};
use crate::outflow::Outflow;
use crate::time::{Millis, format_millis, parse_duration};

use super::ledger::{How, VenueContainment};

/// The scenario format's newest version, which this code writes and reads.
pub const VERSION: u32 = 3;
/// The versions this code reads: 1 (no instruments or orders), 2 (no balances) and 3.
pub const VERSIONS: [u32; 3] = [1, 2, 3];
/// The decimal places a limit order's quantity (its quote amount over its price) is rounded
/// down to.
pub const QUANTITY_DP: u32 = 8;

/// Why a scenario line cannot be read. Each names the line (1-based).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("scenario line {line}: {message}")]
pub struct ScenarioError {
    pub line: usize,
    pub message: String,
}

pub(crate) fn err(line: usize, message: impl Into<String>) -> ScenarioError {
    ScenarioError {
        line,
        message: message.into(),
    }
}

/// An instrument a venue lists, as the header declares it: its assets and the market's price
/// (quote units per base unit) over the scenario.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Instrument {
    pub base: String,
    pub quote: String,
    /// The reference price from the start.
    pub reference: Decimal,
    /// Later reference prices, each from its time on, in time order.
    pub series: Vec<(Millis, Decimal)>,
}

impl Instrument {
    /// The reference price at `t`: the last of the series at or before `t`, else the first.
    pub fn reference_at(&self, t: Millis) -> Decimal {
        let i = self.series.partition_point(|(at, _)| *at <= t);
        i.checked_sub(1)
            .and_then(|i| self.series.get(i))
            .map_or(self.reference, |(_, p)| *p)
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
    /// Per venue, the instruments its trade requests name, by the venue's own symbol.
    pub instruments: BTreeMap<String, BTreeMap<String, Instrument>>,
    /// Version 3: per venue, what it holds when the scenario starts (asset → amount). A venue
    /// named here has its balances followed: what would spend more than is left fails.
    pub balances: BTreeMap<String, BTreeMap<String, Decimal>>,
    /// Version 3: per venue (each one of `balances`), how keygate contains it and how long that
    /// takes.
    pub containment: BTreeMap<String, VenueContainment>,
    pub notes: String,
}

impl Header {
    /// The instrument `symbol` on `venue`, if the header declares it.
    pub fn instrument(&self, venue: &str, symbol: &str) -> Option<&Instrument> {
        self.instruments.get(venue)?.get(symbol)
    }
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
    /// As written: for an order, its quote asset (or the base, for a market order sized in it).
    pub asset: Option<String>,
    pub amount: Option<Decimal>,
    pub to: Option<String>,
    pub source_ip: IpAddr,
    pub label: Label,
    /// A trade's order (version 2, with `symbol`), its reference price the header's at `t`.
    pub order: Option<Order>,
}

impl RequestEvent {
    /// The intent the request carries, as the gateway would classify it. An order's intent
    /// names the quote asset and, when it is known without a reference price, the quote
    /// notional (a limit order's quantity × price, a market order's quote quantity); a market
    /// order sized in base has none, and the decider values it at the reference price.
    pub fn intent(&self) -> Intent {
        let (asset, amount) = match &self.order {
            Some(o) => (Some(o.quote.clone()), known_notional(o)),
            None => (self.asset.clone(), self.amount),
        };
        Intent {
            route: Default::default(),
            order: self.order.clone(),
            client: self.client.clone(),
            venue: self.venue.clone(),
            action: self.action,
            asset,
            amount,
            destination: self.to.clone(),
            source_ip: Some(self.source_ip),
            token_id: None,
        }
    }
}

/// An order's quote notional when its own terms give it: quantity × limit price, or a market
/// order's quote quantity. `None` for a market order sized in base (or one that overflows).
pub fn known_notional(o: &Order) -> Option<Decimal> {
    match (o.kind, o.price, o.quantity, o.quote_quantity) {
        (OrderKind::Limit, Some(p), Some(q), _) => q.checked_mul(p),
        (OrderKind::Market, None, None, Some(qq)) => Some(qq),
        _ => None,
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

// A request with its order is the large variant, by design: events are read and run one at a
// time, and boxing the order would allocate for every trade.
#[allow(clippy::large_enum_variant)]
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

fn positive(line: usize, field: &str, text: &str) -> Result<Decimal, ScenarioError> {
    let d = decimal(line, field, text)?;
    if d.is_zero() {
        return Err(err(line, format!("{field} is zero")));
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
    instruments: Option<BTreeMap<String, BTreeMap<String, InstrumentLine>>>,
    #[serde(default)]
    balances: Option<BTreeMap<String, BTreeMap<String, String>>>,
    #[serde(default)]
    containment: Option<BTreeMap<String, ContainmentLine>>,
    #[serde(default)]
    notes: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ContainmentLine {
    how: String,
    detect: String,
    latency: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct InstrumentLine {
    base: String,
    quote: String,
    reference: String,
    #[serde(default)]
    series: Vec<SeriesLine>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SeriesLine {
    t: String,
    reference: String,
}

/// Reads the header (the first line).
pub fn parse_header(text: &str) -> Result<Header, ScenarioError> {
    let h: HeaderLine = serde_json::from_str(text).map_err(|e| {
        err(
            1,
            format!(
                "not a scenario header ({{\"scenario\": NAME, \"version\": 3, \"start\": TIME, \"prices\": {{ASSET: \"USD\"}}, \"instruments\": {{VENUE: {{SYMBOL: {{\"base\": …, \"quote\": …, \"reference\": PRICE}}}}}}, \"balances\": {{VENUE: {{ASSET: \"AMOUNT\"}}}}, \"containment\": {{VENUE: {{\"how\": \"sweep\" or \"rescue\", \"detect\": DURATION, \"latency\": DURATION}}}}}}, prices and amounts as decimal strings): {e}"
            ),
        )
    })?;
    if !VERSIONS.contains(&h.version) {
        return Err(err(
            1,
            format!(
                "version {} is not one this keygate reads (it reads versions 1 to {VERSION})",
                h.version
            ),
        ));
    }
    let mut prices = BTreeMap::new();
    for (asset, text) in h.prices {
        prices.insert(
            asset.clone(),
            positive(1, &format!("price of {asset}"), &text)?,
        );
    }
    let start = time(1, "start", &h.start)?;
    let instruments = match h.instruments {
        Some(_) if h.version < 2 => {
            return Err(err(
                1,
                "instruments need a version-2 header (\"version\": 2)",
            ));
        }
        Some(venues) => instruments(venues, start)?,
        None => BTreeMap::new(),
    };
    if h.version < 3 && (h.balances.is_some() || h.containment.is_some()) {
        return Err(err(
            1,
            "balances and containment need a version-3 header (\"version\": 3)",
        ));
    }
    let balances = balances(h.balances.unwrap_or_default())?;
    let containment = containment(h.containment.unwrap_or_default(), &balances)?;
    Ok(Header {
        start,
        scenario: h.scenario,
        version: h.version,
        prices,
        instruments,
        balances,
        containment,
        notes: h.notes,
    })
}

/// Each venue's opening balances: amounts of zero or more, as decimal strings.
fn balances(
    venues: BTreeMap<String, BTreeMap<String, String>>,
) -> Result<BTreeMap<String, BTreeMap<String, Decimal>>, ScenarioError> {
    venues
        .into_iter()
        .map(|(venue, assets)| {
            if !crate::intent::valid_name(&venue) {
                return Err(err(
                    1,
                    format!(
                        "balances: {venue:?} is not a venue name (1-64 letters, digits, . _ - :)"
                    ),
                ));
            }
            let assets = assets
                .into_iter()
                .map(|(asset, text)| {
                    if asset.is_empty() {
                        return Err(err(
                            1,
                            format!("balances of {venue}: an asset's name is empty"),
                        ));
                    }
                    let what = format!("balance of {asset} on {venue}");
                    Ok((asset, decimal(1, &what, &text)?))
                })
                .collect::<Result<_, ScenarioError>>()?;
            Ok((venue, assets))
        })
        .collect()
}

/// Each contained venue's containment, for a venue whose balances the header declares.
fn containment(
    venues: BTreeMap<String, ContainmentLine>,
    balances: &BTreeMap<String, BTreeMap<String, Decimal>>,
) -> Result<BTreeMap<String, VenueContainment>, ScenarioError> {
    venues
        .into_iter()
        .map(|(venue, c)| {
            if !balances.contains_key(&venue) {
                return Err(err(
                    1,
                    format!(
                        "containment of {venue}: declare its opening balances in \"balances\" (containment moves them)"
                    ),
                ));
            }
            let how = How::from_str(&c.how)
                .map_err(|m| err(1, format!("containment of {venue}: {m}")))?;
            let d = |field: &str, text: &str| {
                parse_duration(text)
                    .map_err(|m| err(1, format!("containment of {venue}: {field}: {m}")))
            };
            let plan = VenueContainment {
                how,
                detect: d("detect", &c.detect)?,
                latency: d("latency", &c.latency)?,
            };
            Ok((venue, plan))
        })
        .collect()
}

fn instruments(
    venues: BTreeMap<String, BTreeMap<String, InstrumentLine>>,
    start: Millis,
) -> Result<BTreeMap<String, BTreeMap<String, Instrument>>, ScenarioError> {
    venues
        .into_iter()
        .map(|(venue, symbols)| {
            let symbols = symbols
                .into_iter()
                .map(|(symbol, i)| {
                    let what = format!("instrument {symbol} on {venue}");
                    Ok((symbol, instrument(&what, i, start)?))
                })
                .collect::<Result<_, ScenarioError>>()?;
            Ok((venue, symbols))
        })
        .collect()
}

fn instrument(what: &str, i: InstrumentLine, start: Millis) -> Result<Instrument, ScenarioError> {
    if i.base.is_empty() || i.quote.is_empty() || i.base == i.quote {
        return Err(err(
            1,
            format!("{what}: base and quote are two different assets"),
        ));
    }
    let reference = positive(1, &format!("{what}: reference"), &i.reference)?;
    let mut series = Vec::with_capacity(i.series.len());
    let mut last = start;
    for s in i.series {
        let t = time(1, &format!("{what}: series t"), &s.t)?;
        if t < last {
            return Err(err(
                1,
                format!(
                    "{what}: the series point at {} comes before the one above it or the start ({}): keep it in time order",
                    format_millis(t),
                    format_millis(last)
                ),
            ));
        }
        last = t;
        series.push((
            t,
            positive(1, &format!("{what}: series reference"), &s.reference)?,
        ));
    }
    Ok(Instrument {
        base: i.base,
        quote: i.quote,
        reference,
        series,
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
    #[serde(default)]
    symbol: Option<String>,
    #[serde(default, borrow)]
    side: Option<&'a str>,
    #[serde(default, borrow)]
    price: Option<&'a str>,
    label: Label,
}

impl EventLine<'_> {
    fn has_order_fields(&self) -> bool {
        self.symbol.is_some() || self.side.is_some() || self.price.is_some()
    }
}

/// Reads one event line (`line` is its 1-based number, for errors) of a scenario with this
/// header (its version, and the instruments its orders name).
pub fn parse_event(header: &Header, text: &str, line: usize) -> Result<Event, ScenarioError> {
    let e: EventLine = serde_json::from_str(text).map_err(|e| err(line, e.to_string()))?;
    let t = time(line, "t", e.t)?;
    let amount = e.amount.map(|a| decimal(line, "amount", a)).transpose()?;
    match e.kind {
        "request" => request(header, e, t, amount, line).map(Event::Request),
        "outflow" => outflow(e, t, amount, line).map(Event::Outflow),
        other => Err(err(
            line,
            format!("kind {other:?} is not one of request, outflow"),
        )),
    }
}

fn request(
    header: &Header,
    e: EventLine<'_>,
    t: Millis,
    amount: Option<Decimal>,
    line: usize,
) -> Result<RequestEvent, ScenarioError> {
    let client = e
        .client
        .clone()
        .ok_or_else(|| err(line, "a request names its client"))?;
    let action = e
        .action
        .ok_or_else(|| err(line, "a request names its action"))?;
    let action = Action::from_str(action).map_err(|m| err(line, m))?;
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
    let order = match (action, e.has_order_fields()) {
        (Action::Trade, true) => Some(order(header, &e, t, amount, line)?),
        (_, true) => {
            return Err(err(
                line,
                format!("a {action} has no order (symbol, side, price belong to trades)"),
            ));
        }
        (_, false) => None,
    };
    Ok(RequestEvent {
        t,
        client,
        venue: e.venue,
        action,
        asset: e.asset,
        amount,
        to: e.to,
        source_ip,
        label: e.label,
        order,
    })
}

/// A trade's order, from its symbol, side and price (absent: a market order) and its asset
/// and amount: a limit order's amount is its quote notional (quantity = amount / price, rounded
/// down to [`QUANTITY_DP`] places); a market order's is its quote quantity when the asset is
/// the quote, its quantity when the asset is the base.
fn order(
    header: &Header,
    e: &EventLine<'_>,
    t: Millis,
    amount: Option<Decimal>,
    line: usize,
) -> Result<Order, ScenarioError> {
    if header.version < 2 {
        return Err(err(
            line,
            "orders (symbol, side, price) need a version-2 header (\"version\": 2)",
        ));
    }
    let (Some(symbol), Some(side)) = (&e.symbol, e.side) else {
        return Err(err(
            line,
            "an order names its symbol and its side (\"buy\" or \"sell\"); price is its limit price, absent for a market order",
        ));
    };
    let side = match side {
        "buy" => Side::Buy,
        "sell" => Side::Sell,
        other => {
            return Err(err(
                line,
                format!("side {other:?} is not \"buy\" or \"sell\""),
            ));
        }
    };
    let Some(instrument) = header.instrument(&e.venue, symbol) else {
        return Err(err(
            line,
            format!(
                "symbol {symbol} on {} is not in the header's instruments; declare it there with its base, quote and reference price",
                e.venue
            ),
        ));
    };
    let price = e.price.map(|p| positive(line, "price", p)).transpose()?;
    let (asset, amount) = match (&e.asset, amount) {
        (Some(a), Some(m)) => (a.as_str(), m),
        _ => return Err(err(line, "a trade names its asset and amount")),
    };
    let (quantity, quote_quantity) = sizes(instrument, price, asset, amount)
        .map_err(|m| err(line, format!("{symbol} on {}: {m}", e.venue)))?;
    let kind = if price.is_some() {
        OrderKind::Limit
    } else {
        OrderKind::Market
    };
    Ok(Order {
        symbol: symbol.clone(),
        base: instrument.base.clone(),
        quote: instrument.quote.clone(),
        side,
        kind,
        venue_type: kind.as_str().to_uppercase(),
        price,
        quantity,
        quote_quantity,
        reference: Some(Reference {
            price: instrument.reference_at(t),
            at: t,
        }),
    })
}

/// (quantity, quote quantity) of an order of `amount` of `asset` at `price` (none: market).
fn sizes(
    i: &Instrument,
    price: Option<Decimal>,
    asset: &str,
    amount: Decimal,
) -> Result<(Option<Decimal>, Option<Decimal>), String> {
    match price {
        Some(p) if asset == i.quote => {
            let q = amount
                .checked_div(p)
                .map(|q| {
                    q.round_dp_with_strategy(QUANTITY_DP, rust_decimal::RoundingStrategy::ToZero)
                })
                .filter(|q| !q.is_zero())
                .ok_or_else(|| {
                    format!(
                        "{amount} {asset} at {p} buys or sells no {} at {QUANTITY_DP} decimal places",
                        i.base
                    )
                })?;
            Ok((Some(q), None))
        }
        Some(_) => Err(format!(
            "a limit order's asset is the quote, {} (its amount is the quote notional), not {asset}",
            i.quote
        )),
        None if asset == i.quote => Ok((None, Some(amount))),
        None if asset == i.base => Ok((Some(amount), None)),
        None => Err(format!(
            "a market order's asset is the quote, {} (its amount the quote quantity), or the base, {} (its quantity), not {asset}",
            i.quote, i.base
        )),
    }
}

fn outflow(
    e: EventLine<'_>,
    t: Millis,
    amount: Option<Decimal>,
    line: usize,
) -> Result<OutflowEvent, ScenarioError> {
    if e.client.is_some() || e.action.is_some() || e.source_ip.is_some() {
        return Err(err(
            line,
            "an outflow has no client, action or source_ip: it did not pass through keygate",
        ));
    }
    if e.has_order_fields() {
        return Err(err(
            line,
            "an outflow has no order (symbol, side, price belong to trades)",
        ));
    }
    let missing = |f: &str| err(line, format!("an outflow names its {f}"));
    if amount.is_some_and(|a| a.is_zero()) {
        return Err(err(line, "an outflow of zero moves nothing"));
    }
    Ok(OutflowEvent {
        t,
        venue: e.venue,
        asset: e.asset.ok_or_else(|| missing("asset"))?,
        amount: amount.ok_or_else(|| missing("amount"))?,
        to: e.to.ok_or_else(|| missing("destination (\"to\")"))?,
        tx: e
            .tx
            .ok_or_else(|| missing("transaction or withdrawal id (\"tx\")"))?,
        label: e.label,
    })
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
        let e = parse_event(&header, l, i + 1)?;
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
