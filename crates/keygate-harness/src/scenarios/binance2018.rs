//! scenarios/binance-2018.jsonl: the Binance API-key incident of 2018-03-07. Trading keys made on
//! phished accounts weeks before and left unused were all used within two minutes (14:58-14:59
//! UTC): the accounts' coins sold at the market and the bitcoin spent on market buys of VIA/BTC,
//! which the thieves sold into from their own accounts. Here a fund on Binance: two market
//! makers, and six holding accounts that rebalance rarely and had not traded for three weeks,
//! after 30 days of ordinary traffic. docs/scenarios.md says which numbers are the record's.

use std::io::Write;

use rust_decimal::{Decimal, RoundingStrategy};

use super::trading::{Bot, Inst, Req, Scenario, Style, in_quote, market_maker, rebalancer, write};
use super::{MINUTE, Rng, at};

const VENUE: &str = "binance-main";
const SECOND: i64 = 1_000;

const MM: Bot = Bot {
    client: "mm-binance",
    venue: VENUE,
    ip: "127.0.4.11",
};
const ALTS: Bot = Bot {
    client: "mm-alts",
    venue: VENUE,
    ip: "127.0.4.12",
};

/// The holding accounts, each with what it holds (base asset, quantity), traded against BTC.
const HOLDERS: [(Bot, &[(&str, i64)]); 6] = [
    (
        holder("hold-1", "127.0.4.21"),
        &[("ETH", 120), ("LTC", 300)],
    ),
    (holder("hold-2", "127.0.4.22"), &[("ETH", 60), ("NEO", 900)]),
    (
        holder("hold-3", "127.0.4.23"),
        &[("BNB", 9_000), ("LTC", 150)],
    ),
    (holder("hold-4", "127.0.4.24"), &[("ETH", 250)]),
    (
        holder("hold-5", "127.0.4.25"),
        &[("NEO", 400), ("BNB", 5_000)],
    ),
    (holder("hold-6", "127.0.4.26"), &[("LTC", 500), ("ETH", 40)]),
];

const fn holder(client: &'static str, ip: &'static str) -> Bot {
    Bot {
        client,
        venue: VENUE,
        ip,
    }
}

/// USD per unit, 2018-03-07 before the attack, rounded.
fn prices() -> Vec<(&'static str, Decimal)> {
    let d = |s: &str| s.parse().unwrap_or_default();
    vec![
        ("BNB", d("10.5")),
        ("BTC", d("10500")),
        ("ETH", d("850")),
        ("LTC", d("205")),
        ("NEO", d("110")),
        ("USDT", d("1")),
        ("VIA", d("2.6")),
    ]
}

fn inst(symbol: &'static str, base: &'static str, quote: &'static str, mid: &str) -> Inst {
    let (price_dp, quote_dp) = if quote == "BTC" { (8, 6) } else { (2, 2) };
    Inst {
        venue: VENUE,
        symbol,
        base,
        quote,
        mid: mid.parse().unwrap_or_default(),
        price_dp,
        quote_dp,
        series: vec![],
    }
}

/// The instruments; VIA/BTC's mid rises about 1,100% in the attack's two minutes (CryptoGlobe).
fn instruments() -> Vec<Inst> {
    let mut via = inst("VIABTC", "VIA", "BTC", "0.00025");
    let t = |h, m, s: i64| at(2018, 3, 7, h, m) + s * SECOND;
    let d = |s: &str| s.parse().unwrap_or_default();
    via.series = vec![
        (t(14, 58, 20), d("0.0006")),
        (t(14, 58, 40), d("0.0012")),
        (t(14, 59, 0), d("0.0019")),
        (t(14, 59, 20), d("0.0025")),
        (t(14, 59, 40), d("0.003")),
    ];
    vec![
        inst("BTCUSDT", "BTC", "USDT", "10500"),
        inst("ETHUSDT", "ETH", "USDT", "850"),
        inst("ETHBTC", "ETH", "BTC", "0.081"),
        inst("LTCBTC", "LTC", "BTC", "0.0195"),
        inst("BNBBTC", "BNB", "BTC", "0.001"),
        inst("NEOBTC", "NEO", "BTC", "0.0105"),
        via,
    ]
}

fn pick<'a>(all: &'a [Inst], symbols: &[&str]) -> Vec<&'a Inst> {
    all.iter().filter(|i| symbols.contains(&i.symbol)).collect()
}

/// The instrument trading `base` against BTC.
fn against_btc<'a>(all: &'a [Inst], base: &str) -> Option<&'a Inst> {
    all.iter().find(|i| i.base == base && i.quote == "BTC")
}

/// 30 days of ordinary traffic up to `end`: the two market makers throughout; the holding
/// accounts rebalance in their first ten days, then only read their balances.
fn baseline(all: &[Inst], start: i64, end: i64, rng: &mut Rng) -> Vec<Req> {
    let prices = prices();
    let majors = Style {
        order_gap: (4 * MINUTE, 14 * MINUTE),
        usd: (500, 20_000),
        read_every: 30 * MINUTE,
        hedge_one_in: 25,
    };
    let alts = Style {
        order_gap: (6 * MINUTE, 18 * MINUTE),
        usd: (200, 3_000),
        read_every: 60 * MINUTE,
        hedge_one_in: 20,
    };
    let window = (start, end);
    let mut out = market_maker(
        &MM,
        &pick(all, &["BTCUSDT", "ETHUSDT", "ETHBTC"]),
        &prices,
        window,
        &majors,
        rng,
    );
    out.extend(market_maker(
        &ALTS,
        &pick(all, &["LTCBTC", "BNBBTC", "NEOBTC", "VIABTC"]),
        &prices,
        window,
        &alts,
        rng,
    ));
    for (bot, holds) in &HOLDERS {
        let insts: Vec<&Inst> = holds
            .iter()
            .filter_map(|(base, _)| against_btc(all, base))
            .collect();
        out.extend(rebalancer(bot, &insts, &prices, window, 10, rng));
    }
    out
}

/// The two minutes (Binance's account of it): every holding account's coins sold at the market,
/// its bitcoin spent on market buys of VIA/BTC, 15 of them; the market maker that quotes VIA/BTC
/// buys it at the market 30 times.
fn attack(all: &[Inst], rng: &mut Rng) -> Vec<Req> {
    let t0 = at(2018, 3, 7, 14, 58);
    let Some(via) = against_btc(all, "VIA") else {
        return vec![];
    };
    let mut out = vec![];
    for (k, (bot, holds)) in HOLDERS.iter().enumerate() {
        let mut btc = Decimal::ZERO;
        for (j, (base, qty)) in holds.iter().enumerate() {
            let Some(i) = against_btc(all, base) else {
                continue;
            };
            let qty = Decimal::from(*qty);
            btc += qty * i.mid;
            let t = t0 + (k as i64 * 2 + j as i64) * SECOND;
            out.push(Req::trade(t, bot, i, "sell", None, (i.base, qty)).attack());
        }
        let each = (btc / Decimal::from(15)).round_dp_with_strategy(4, RoundingStrategy::ToZero);
        for n in 0..15 {
            let t = t0 + 20 * SECOND + n * 6 * SECOND + rng.range(0, 5) * SECOND;
            out.push(Req::trade(t, bot, via, "buy", None, ("BTC", each)).attack());
        }
    }
    let prices = prices();
    for n in 0..30 {
        let usd = Decimal::from(rng.range(40, 120) * 100);
        let t = t0 + 5 * SECOND + n * 3 * SECOND + rng.range(0, 2) * SECOND;
        let amount = in_quote(&prices, via, usd);
        out.push(Req::trade(t, &ALTS, via, "buy", None, ("BTC", amount)).attack());
    }
    out
}

const NOTES: &str = "The Binance API-key incident, 2018-03-07. Phishers collected Binance logins from early January (most around February 22, on a look-alike unicode domain), made a trading API key on each account and left it unused; on March 7, 14:58-14:59 UTC, they used the keys to place a large number of market buys on VIA/BTC while 31 accounts of theirs sold VIA at the top; withdrawals from those accounts were attempted at once and failed, Binance's risk system having halted withdrawals (Binance, 'Summary of the Phishing and Attempted Stealing Incident on Binance'); victims' altcoins were first sold at the market for BTC (news.bitcoin.com); VIA rose about 1,100% in about a minute (CryptoGlobe). Chosen (not public): the fund (two market makers and six holding accounts, a keygate token each, phished from the hosts that use them), the holdings (about $0.9M), every baseline event (30 days; the holding accounts' last trades three weeks before), the number and size of the attack's orders and VIA/BTC's path within the two minutes. Prices are 2018-03-07 before the attack, rounded. The attacker sends from the accounts' own hosts with their keygate tokens: the worst case for keygate.";

/// scenarios/binance-2018.jsonl.
pub fn scenario(out: &mut impl Write) -> std::io::Result<u64> {
    let start = at(2018, 2, 5, 0, 0);
    let attack_start = at(2018, 3, 7, 14, 58);
    let all = instruments();
    let mut rng = Rng(2018);
    let mut events = baseline(&all, start, attack_start, &mut rng);
    events.extend(attack(&all, &mut rng));
    write(
        out,
        Scenario {
            name: "binance-2018",
            start,
            prices: &prices(),
            instruments: &all,
            notes: NOTES,
            events,
        },
    )
}
