//! What the trade scenarios share: instruments with their market price, requests that carry an
//! order (scenario format version 2), a market maker's ordinary day (balance reads, resting
//! limit orders near the mid, some cancelled, a few small market hedges), and the writer of the
//! header and the events. Deterministic: the callers' fixed-seed [`Rng`].

use std::collections::BTreeMap;
use std::io::Write;

use rust_decimal::{Decimal, RoundingStrategy};
use serde::Serialize;

use super::{HOUR, MINUTE, Rng, rfc3339};

/// An instrument a venue lists, at the scenario's market price.
#[derive(Clone)]
pub struct Inst {
    pub venue: &'static str,
    pub symbol: &'static str,
    pub base: &'static str,
    pub quote: &'static str,
    /// The market price (the mid), in quote units per base unit.
    pub mid: Decimal,
    /// Decimal places of its prices, and of its quote amounts.
    pub price_dp: u32,
    pub quote_dp: u32,
    /// Later mids, each from its time on (the header's reference series).
    pub series: Vec<(i64, Decimal)>,
}

/// A client's bot: where its token is used from.
pub struct Bot {
    pub client: &'static str,
    pub venue: &'static str,
    pub ip: &'static str,
}

/// An order a request carries: buy or sell, at a limit price or at the market.
#[derive(Clone)]
pub struct OrderTerms {
    pub symbol: &'static str,
    pub side: &'static str,
    pub price: Option<Decimal>,
}

/// One request, before it is written.
pub struct Req {
    pub t: i64,
    pub client: &'static str,
    pub venue: &'static str,
    pub action: &'static str,
    pub asset: Option<&'static str>,
    pub amount: Option<Decimal>,
    pub ip: &'static str,
    pub attack: bool,
    pub order: Option<OrderTerms>,
}

impl Req {
    pub fn new(t: i64, bot: &Bot, action: &'static str, attack: bool) -> Self {
        Req {
            t,
            client: bot.client,
            venue: bot.venue,
            action,
            asset: None,
            amount: None,
            ip: bot.ip,
            attack,
            order: None,
        }
    }

    /// A normal trade of `amount` of `asset` (an order's quote, or for a market order its
    /// base), at `price` (none: at the market).
    pub fn trade(
        t: i64,
        bot: &Bot,
        inst: &Inst,
        side: &'static str,
        price: Option<Decimal>,
        (asset, amount): (&'static str, Decimal),
    ) -> Self {
        Req {
            asset: Some(asset),
            amount: Some(amount),
            order: Some(OrderTerms {
                symbol: inst.symbol,
                side,
                price,
            }),
            ..Req::new(t, bot, "trade", false)
        }
    }

    /// The same request, labelled attack.
    pub fn attack(self) -> Self {
        Req {
            attack: true,
            ..self
        }
    }
}

#[derive(Serialize)]
struct Line<'a> {
    t: String,
    kind: &'a str,
    client: &'a str,
    venue: &'a str,
    action: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    symbol: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    side: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    price: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    asset: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    amount: Option<String>,
    source_ip: &'a str,
    label: &'a str,
}

#[derive(Serialize)]
struct InstOut {
    base: &'static str,
    quote: &'static str,
    reference: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    series: Vec<PointOut>,
}

#[derive(Serialize)]
struct PointOut {
    t: String,
    reference: String,
}

#[derive(Serialize)]
struct HeaderOut<'a> {
    scenario: &'a str,
    version: u32,
    start: String,
    prices: BTreeMap<&'a str, String>,
    instruments: BTreeMap<&'a str, BTreeMap<&'a str, InstOut>>,
    notes: &'a str,
}

/// What a scenario writes: its header's fields and its events.
pub struct Scenario<'a> {
    pub name: &'a str,
    pub start: i64,
    /// USD per unit of each asset.
    pub prices: &'a [(&'a str, Decimal)],
    pub instruments: &'a [Inst],
    pub notes: &'a str,
    pub events: Vec<Req>,
}

/// Writes the header, then the events in time order (a stable sort: events at the same time
/// keep the order they were made in). Returns how many events.
pub fn write(out: &mut impl Write, mut s: Scenario<'_>) -> std::io::Result<u64> {
    let mut instruments: BTreeMap<&str, BTreeMap<&str, InstOut>> = BTreeMap::new();
    for i in s.instruments {
        let series = i
            .series
            .iter()
            .map(|(t, p)| PointOut {
                t: rfc3339(*t),
                reference: p.normalize().to_string(),
            })
            .collect();
        instruments.entry(i.venue).or_default().insert(
            i.symbol,
            InstOut {
                base: i.base,
                quote: i.quote,
                reference: i.mid.normalize().to_string(),
                series,
            },
        );
    }
    let header = HeaderOut {
        scenario: s.name,
        // Version 2: instruments and orders, no balances (a later version reads it as written).
        version: 2,
        start: rfc3339(s.start),
        prices: s
            .prices
            .iter()
            .map(|(a, p)| (*a, p.normalize().to_string()))
            .collect(),
        instruments,
        notes: s.notes,
    };
    serde_json::to_writer(&mut *out, &header)?;
    out.write_all(b"\n")?;
    s.events.sort_by_key(|e| e.t);
    for e in &s.events {
        let line = Line {
            t: rfc3339(e.t),
            kind: "request",
            client: e.client,
            venue: e.venue,
            action: e.action,
            symbol: e.order.as_ref().map(|o| o.symbol),
            side: e.order.as_ref().map(|o| o.side),
            price: e
                .order
                .as_ref()
                .and_then(|o| o.price)
                .map(|p| p.normalize().to_string()),
            asset: e.asset,
            amount: e.amount.map(|a| a.normalize().to_string()),
            source_ip: e.ip,
            label: if e.attack { "attack" } else { "normal" },
        };
        serde_json::to_writer(&mut *out, &line)?;
        out.write_all(b"\n")?;
    }
    Ok(s.events.len() as u64)
}

/// USD per unit of `asset` in a price list.
pub fn usd(prices: &[(&str, Decimal)], asset: &str) -> Decimal {
    prices
        .iter()
        .find(|(a, _)| *a == asset)
        .map_or(Decimal::ONE, |(_, p)| *p)
}

/// `usd` dollars in `inst`'s quote asset, rounded to its quote decimals.
pub fn in_quote(prices: &[(&str, Decimal)], inst: &Inst, usd_amount: Decimal) -> Decimal {
    (usd_amount / usd(prices, inst.quote))
        .round_dp_with_strategy(inst.quote_dp, RoundingStrategy::MidpointAwayFromZero)
}

/// `mid` moved by `bps` basis points (negative: down), rounded to the instrument's tick.
pub fn off_mid(inst: &Inst, mid: Decimal, bps: i64) -> Decimal {
    (mid * (Decimal::ONE + Decimal::new(bps, 4)))
        .round_dp_with_strategy(inst.price_dp, RoundingStrategy::MidpointAwayFromZero)
}

/// How a market maker trades.
pub struct Style {
    /// The range of gaps between its orders, milliseconds.
    pub order_gap: (i64, i64),
    /// The range of an order's notional, whole USD.
    pub usd: (i64, i64),
    /// Milliseconds between its balance reads.
    pub read_every: i64,
    /// One order in this many is a small market hedge (sized in the quote, $200-$1,500).
    pub hedge_one_in: i64,
}

/// A market maker's ordinary traffic on `insts` from `start` to `end`: a balance read on a
/// beat; orders on a random instrument, alternately a buy and a sell, resting 2-30 basis points
/// inside the mid (a buy below, a sell above), one in four cancelled a few seconds later; now and
/// then a small market hedge.
pub fn market_maker(
    bot: &Bot,
    insts: &[&Inst],
    prices: &[(&str, Decimal)],
    (start, end): (i64, i64),
    style: &Style,
    rng: &mut Rng,
) -> Vec<Req> {
    let mut out = vec![];
    let mut t = start + rng.range(0, style.read_every / 2);
    while t < end {
        out.push(Req::new(t, bot, "read", false));
        t += style.read_every + rng.range(0, style.read_every / 20);
    }
    let mut t = start + rng.range(1, 300) * 1000;
    let mut buy = true;
    while t < end {
        let inst = insts[rng.range(0, insts.len() as i64 - 1) as usize];
        let side = if buy { "buy" } else { "sell" };
        if style.hedge_one_in > 0 && rng.range(1, style.hedge_one_in) == 1 {
            let usd_amount = Decimal::from(rng.range(2, 15) * 100);
            let amount = in_quote(prices, inst, usd_amount);
            out.push(Req::trade(t, bot, inst, side, None, (inst.quote, amount)));
        } else {
            let inside = rng.range(2, 30);
            let bps = if buy { -inside } else { inside };
            let price = off_mid(inst, inst.mid, bps);
            let usd_amount = Decimal::from(rng.range(style.usd.0, style.usd.1));
            let amount = in_quote(prices, inst, usd_amount);
            out.push(Req::trade(
                t,
                bot,
                inst,
                side,
                Some(price),
                (inst.quote, amount),
            ));
            if rng.range(0, 3) == 0 {
                let c = t + rng.range(1, 5) * 1000;
                if c < end {
                    out.push(Req::new(c, bot, "cancel", false));
                }
            }
        }
        buy = !buy;
        t += rng.range(style.order_gap.0, style.order_gap.1);
    }
    out
}

/// A holding account's rebalancing on `days` days from `start`: one or two limit orders a day
/// between 10:00 and 16:00 UTC, resting inside the mid; a balance read every day at 08:00.
pub fn rebalancer(
    bot: &Bot,
    insts: &[&Inst],
    prices: &[(&str, Decimal)],
    (start, end): (i64, i64),
    trade_days: i64,
    rng: &mut Rng,
) -> Vec<Req> {
    let day0 = start - start.rem_euclid(24 * HOUR);
    let mut out = vec![];
    let mut day = day0;
    while day < end {
        let read = day + 8 * HOUR + rng.range(0, 30) * MINUTE;
        if read > start && read < end {
            out.push(Req::new(read, bot, "read", false));
        }
        if day < day0 + trade_days * 24 * HOUR {
            for _ in 0..rng.range(1, 2) {
                let t = day + 10 * HOUR + rng.range(0, 360) * MINUTE;
                let inst = insts[rng.range(0, insts.len() as i64 - 1) as usize];
                let buy = rng.range(0, 1) == 0;
                let (side, bps) = if buy { ("buy", -10) } else { ("sell", 10) };
                let amount = in_quote(prices, inst, Decimal::from(rng.range(20, 80) * 100));
                if t > start && t < end {
                    out.push(Req::trade(
                        t,
                        bot,
                        inst,
                        side,
                        Some(off_mid(inst, inst.mid, bps)),
                        (inst.quote, amount),
                    ));
                }
            }
        }
        day += 24 * HOUR;
    }
    out
}
