//! scenarios/3commas-2022.jsonl: the API keys leaked from the 3Commas trading-bot service used,
//! in October 2022, to buy DMG on FTX from the thieves' own asks far above the market, after 14
//! days of a market-making firm's ordinary traffic on FTX and Binance. docs/scenarios.md says
//! which numbers are the public record's and which are chosen.

use std::io::Write;

use rust_decimal::Decimal;

use super::trading::{Bot, Inst, Req, Scenario, Style, in_quote, market_maker, write};
use super::{HOUR, MINUTE, Rng, at};

const FTX: &str = "ftx-main";
const BINANCE: &str = "binance-main";

/// The firm's majors desk on FTX, its small-caps desk on FTX (which quotes DMG), and its Binance
/// bot; all three driven by a strategy service that holds their keygate tokens.
const FTX_A: Bot = Bot {
    client: "mm-ftx-a",
    venue: FTX,
    ip: "127.0.3.11",
};
const FTX_B: Bot = Bot {
    client: "mm-ftx-b",
    venue: FTX,
    ip: "127.0.3.12",
};
const BINANCE_BOT: Bot = Bot {
    client: "mm-binance",
    venue: BINANCE,
    ip: "127.0.3.13",
};

/// USD per unit, 2022-10-18, rounded; DMG at about $0.02 (CoinGecko, via Blockworks).
fn prices() -> Vec<(&'static str, Decimal)> {
    let d = |s: &str| s.parse().unwrap_or_default();
    vec![
        ("BNB", d("275")),
        ("BTC", d("19300")),
        ("DMG", d("0.02")),
        ("ETH", d("1310")),
        ("FTT", d("24.5")),
        ("SOL", d("30")),
        ("USD", d("1")),
        ("USDT", d("1")),
    ]
}

fn inst(
    venue: &'static str,
    symbol: &'static str,
    base: &'static str,
    quote: &'static str,
    mid: &str,
    price_dp: u32,
) -> Inst {
    Inst {
        venue,
        symbol,
        base,
        quote,
        mid: mid.parse().unwrap_or_default(),
        price_dp,
        quote_dp: 2,
        series: vec![],
    }
}

/// Every instrument of the scenario (FTX's in OKX's shape, `BASE-QUOTE`: docs/scenarios.md).
fn instruments() -> Vec<Inst> {
    vec![
        inst(FTX, "BTC-USD", "BTC", "USD", "19300", 1),
        inst(FTX, "ETH-USD", "ETH", "USD", "1310", 2),
        inst(FTX, "SOL-USD", "SOL", "USD", "30", 3),
        inst(FTX, "FTT-USD", "FTT", "USD", "24.5", 3),
        inst(FTX, "DMG-USD", "DMG", "USD", "0.02", 6),
        inst(BINANCE, "BTCUSDT", "BTC", "USDT", "19300", 1),
        inst(BINANCE, "ETHUSDT", "ETH", "USDT", "1310", 2),
        inst(BINANCE, "BNBUSDT", "BNB", "USDT", "275", 2),
    ]
}

fn find<'a>(all: &'a [Inst], venue: &str, symbol: &str) -> Vec<&'a Inst> {
    all.iter()
        .filter(|i| i.venue == venue && i.symbol == symbol)
        .collect()
}

/// 14 days of the three bots' ordinary traffic, up to `end`.
fn baseline(all: &[Inst], start: i64, end: i64, rng: &mut Rng) -> Vec<Req> {
    let prices = prices();
    let pick = |venue: &str, symbols: &[&str]| -> Vec<&Inst> {
        symbols.iter().flat_map(|s| find(all, venue, s)).collect()
    };
    let majors = Style {
        order_gap: (3 * MINUTE, 12 * MINUTE),
        usd: (500, 20_000),
        read_every: 30 * MINUTE,
        hedge_one_in: 25,
    };
    let small_caps = Style {
        order_gap: (6 * MINUTE, 20 * MINUTE),
        usd: (100, 2_000),
        read_every: 60 * MINUTE,
        hedge_one_in: 0,
    };
    let mut out = market_maker(
        &FTX_A,
        &pick(FTX, &["BTC-USD", "ETH-USD", "SOL-USD", "FTT-USD"]),
        &prices,
        (start, end),
        &majors,
        rng,
    );
    out.extend(market_maker(
        &FTX_B,
        &pick(FTX, &["FTT-USD", "DMG-USD"]),
        &prices,
        (start, end),
        &small_caps,
        rng,
    ));
    out.extend(market_maker(
        &BINANCE_BOT,
        &pick(BINANCE, &["BTCUSDT", "ETHUSDT", "BNBUSDT"]),
        &prices,
        (start, end),
        &majors,
        rng,
    ));
    out
}

/// `n` buys of DMG-USD by `bot`, evenly from `from` to `to`, each `usd` dollars at `lo`-`hi`
/// times the market (none: market orders).
struct Buys<'a> {
    bot: &'a Bot,
    n: i64,
    from: i64,
    to: i64,
    usd: Decimal,
    times: Option<(i64, i64)>,
}

fn dmg_buys(dmg: &Inst, b: &Buys<'_>, rng: &mut Rng) -> Vec<Req> {
    let prices = prices();
    let step = (b.to - b.from) / b.n.max(1);
    (0..b.n)
        .map(|k| {
            let t = b.from + k * step + rng.range(0, step / 2);
            let price = b.times.map(|(lo, hi)| {
                // lo..=hi times the mid, in tenths.
                dmg.mid * Decimal::new(rng.range(lo * 10, hi * 10), 1)
            });
            let amount = in_quote(&prices, dmg, b.usd);
            Req::trade(t, b.bot, dmg, "buy", price, ("USD", amount)).attack()
        })
        .collect()
}

/// The attack, as the public record tells it (docs/scenarios.md): the small-caps desk's key buys
/// about 104 BTC worth of DMG from 2022-10-18 12:00, and again on the 21st, the majors desk's
/// key buys DMG more than 5,000 times on the 19th, about $1.6M.
fn attack(all: &[Inst], rng: &mut Rng) -> Vec<Req> {
    let Some(dmg) = find(all, FTX, "DMG-USD").into_iter().next() else {
        return vec![];
    };
    let t = |d, h| at(2022, 10, d, h, 0);
    // 104 BTC at $19,300 is $2,007,200: 400 buys of $5,018, the last 40 at the market.
    let b_usd = Decimal::from(5_018);
    let mut out = dmg_buys(
        dmg,
        &Buys {
            bot: &FTX_B,
            n: 260,
            from: t(18, 12),
            to: t(19, 0),
            usd: b_usd,
            times: Some((3, 10)),
        },
        rng,
    );
    out.extend(dmg_buys(
        dmg,
        &Buys {
            bot: &FTX_B,
            n: 100,
            from: t(21, 8),
            to: t(21, 12),
            usd: b_usd,
            times: Some((3, 10)),
        },
        rng,
    ));
    out.extend(dmg_buys(
        dmg,
        &Buys {
            bot: &FTX_B,
            n: 40,
            from: t(21, 12),
            to: t(21, 13),
            usd: b_usd,
            times: None,
        },
        rng,
    ));
    // 5,000 buys of $320 on the 19th: $1,600,000.
    out.extend(dmg_buys(
        dmg,
        &Buys {
            bot: &FTX_A,
            n: 5_000,
            from: t(19, 0),
            to: t(19, 0) + 24 * HOUR,
            usd: Decimal::from(320),
            times: Some((5, 15)),
        },
        rng,
    ));
    out
}

const NOTES: &str = "The 3Commas API-key leak, 2022. On FTX, leaked trading keys bought DMG (DeFi Money Market's governance token, about $0.02) from the thieves' own asks far above the market: one account traded DMG more than 5,000 times on 2022-10-19 and lost about $1.6M (Wu Blockchain, via Blockworks and Decrypt); another lost about 104 BTC, with DMG traded on its account on October 18, 19 and 21 (a victim's thread, via CryptoCoinStart and Blockworks); FTX paid about $6M to three victims; 3Commas confirmed the leak in December (about 100,000 keys; Binance, KuCoin, OKX and Coinbase accounts hit too). Chosen (not public): the firm (two FTX desks and a Binance bot, one strategy service holding their keygate tokens), every baseline event (14 days), the split of each account's loss into orders (5,000 buys of $320 at 5-15x the market; 400 buys of $5,018, the last 40 at the market, at 3-10x), their times within each day. Prices are 2022-10-18, rounded. FTX is played by an OKX-shaped venue (symbols BASE-QUOTE). The attacker sends from the bots' own hosts with their keygate tokens: the worst case for keygate.";

/// scenarios/3commas-2022.jsonl.
pub fn scenario(out: &mut impl Write) -> std::io::Result<u64> {
    let start = at(2022, 10, 4, 12, 0);
    let attack_start = at(2022, 10, 18, 12, 0);
    let all = instruments();
    let mut rng = Rng(2022);
    let mut events = baseline(&all, start, attack_start, &mut rng);
    events.extend(attack(&all, &mut rng));
    write(
        out,
        Scenario {
            name: "3commas-2022",
            start,
            prices: &prices(),
            instruments: &all,
            notes: NOTES,
            events,
        },
    )
}
