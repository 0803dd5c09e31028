//! The scenarios keygate ships: the Kronos Research attack of 2023-11-18 after 14 days of
//! market-making traffic (scenarios/kronos-2023.jsonl is this generator's output, checked by a
//! test), and denser variants of the same traffic for the replay benchmark; and two trade-abuse
//! scenarios, the 3Commas API-key leak of 2022 and the Binance API-key incident of 2018
//! ([`threecommas`], [`binance2018`], with what they share in [`trading`]); and the Kronos theft
//! with the keys used around keygate, with opening balances and containment ([`around`]:
//! `kronos-2023-around`, `kronos-2023-wallet`). Deterministic: a
//! fixed-seed generator, no clock. docs/scenarios.md says where each number comes from.

mod around;
mod binance2018;
mod threecommas;
mod trading;

use std::io::Write;

use chrono::{DateTime, SecondsFormat, TimeZone, Utc};
use rust_decimal::Decimal;
use serde::Serialize;

pub use around::{Leak, write as kronos_around};
pub use binance2018::scenario as binance_2018;
pub use threecommas::scenario as threecommas_2022;

/// The Kronos config and policies, as committed under scenarios/ (`keygate-harness demo` writes them
/// out next to the scenario).
pub const KRONOS_CONFIG: &str = include_str!("../../../scenarios/kronos-2023.toml");
pub const KRONOS_POLICIES: &str = include_str!("../../../scenarios/kronos-2023.cedar");

/// Kronos' own Ethereum wallet, whitelisted on its exchange accounts (CertiK).
pub const KRONOS_WALLET: &str = "0x6F15ee9258ACDEbf356dB7aB607bB255a00C6fdF";
/// The attacker's address (CertiK).
pub const ATTACKER: &str = "0x2b0502FDab4e221dcD492c058255D2073d50A3ae";
const WOO_DEPOSIT: &str = "0x00000000000000000000000000000000000b5c01";
const BNB_DEPOSIT: &str = "0x00000000000000000000000000000000000b5c02";

const MINUTE: i64 = 60_000;
const HOUR: i64 = 60 * MINUTE;
const DAY: i64 = 24 * HOUR;

/// splitmix64: a small deterministic generator for plausible traffic (not for secrets).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A whole number in lo..=hi.
    fn range(&mut self, lo: i64, hi: i64) -> i64 {
        lo + (self.next() % ((hi - lo + 1) as u64)) as i64
    }
}

#[derive(Serialize)]
struct HeaderOut<'a> {
    scenario: &'a str,
    version: u32,
    start: String,
    prices: std::collections::BTreeMap<&'a str, &'a str>,
    notes: &'a str,
}

#[derive(Serialize)]
struct Line<'a> {
    t: String,
    kind: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    client: Option<&'a str>,
    venue: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    action: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    asset: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    amount: Option<String>,
    to: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    source_ip: Option<&'a str>,
    label: &'a str,
}

fn rfc3339(t: i64) -> String {
    DateTime::<Utc>::from_timestamp_millis(t)
        .map(|d| d.to_rfc3339_opts(SecondsFormat::Secs, true))
        .unwrap_or_default()
}

fn at(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> i64 {
    Utc.with_ymd_and_hms(y, mo, d, h, mi, 0)
        .single()
        .map(|d| d.timestamp_millis())
        .unwrap_or_default()
}

/// One request, before it is written.
struct Req {
    t: i64,
    client: &'static str,
    venue: &'static str,
    action: &'static str,
    asset: Option<&'static str>,
    amount: Option<Decimal>,
    to: Option<&'static str>,
    ip: &'static str,
    attack: bool,
}

impl Req {
    fn write(&self, out: &mut impl Write) -> std::io::Result<()> {
        let line = Line {
            t: rfc3339(self.t),
            kind: "request",
            client: Some(self.client),
            venue: self.venue,
            action: Some(self.action),
            asset: self.asset,
            amount: self.amount.map(|a| a.to_string()),
            to: self.to,
            source_ip: Some(self.ip),
            label: if self.attack { "attack" } else { "normal" },
        };
        serde_json::to_writer(&mut *out, &line)?;
        out.write_all(b"\n")
    }
}

/// A market-making bot on one exchange.
struct Bot {
    client: &'static str,
    venue: &'static str,
    ip: &'static str,
}

const BOTS: [Bot; 4] = [
    Bot {
        client: "mm-binance",
        venue: "binance-main",
        ip: "127.0.1.11",
    },
    Bot {
        client: "mm-okx",
        venue: "okx-main",
        ip: "127.0.1.12",
    },
    Bot {
        client: "mm-btse",
        venue: "btse-main",
        ip: "127.0.1.13",
    },
    Bot {
        client: "mm-deepcoin",
        venue: "deepcoin-main",
        ip: "127.0.1.14",
    },
];
const TREASURY: Bot = Bot {
    client: "treasury-bsc",
    venue: "bsc-hot",
    ip: "127.0.2.21",
};

/// How dense the baseline is.
pub struct Density {
    /// Milliseconds between a bot's balance reads.
    pub read_every: i64,
    /// The range of gaps between a bot's orders, milliseconds.
    pub order_gap: (i64, i64),
}

/// The Kronos scenario's own density: about 13,000 baseline events.
pub const KRONOS_DENSITY: Density = Density {
    read_every: 30 * MINUTE,
    order_gap: (4 * MINUTE, 16 * MINUTE),
};

/// The 14 days of normal traffic before `end`, in time order.
fn baseline(start: i64, end: i64, density: &Density, rng: &mut Rng) -> Vec<Req> {
    let mut out = vec![];
    let usdt = Some("USDT");
    let normal = |t, bot: &Bot, action, asset, amount, to| Req {
        t,
        client: bot.client,
        venue: bot.venue,
        action,
        asset,
        amount,
        to,
        ip: bot.ip,
        attack: false,
    };
    for (i, bot) in BOTS.iter().enumerate() {
        // Balance reads on a fixed beat, a little jitter each.
        let mut t = start + i as i64 * 7 * MINUTE;
        while t < end {
            out.push(normal(t, bot, "read", None, None, None));
            t += density.read_every + rng.range(0, density.read_every / 20);
        }
        // Orders: alternately a buy committing USDT and a sell of BTC; one in four is
        // cancelled a few seconds later.
        let mut t = start + rng.range(1, 300) * 1000;
        let mut buy = true;
        while t < end {
            if buy {
                let usd = Decimal::from(rng.range(5, 200) * 100);
                out.push(normal(t, bot, "trade", usdt, Some(usd), None));
            } else {
                let btc = Decimal::new(rng.range(10, 300), 3);
                out.push(normal(t, bot, "trade", Some("BTC"), Some(btc), None));
            }
            buy = !buy;
            if rng.range(0, 3) == 0 {
                let c = t + rng.range(1, 5) * 1000;
                if c < end {
                    out.push(normal(c, bot, "cancel", None, None, None));
                }
            }
            t += rng.range(density.order_gap.0, density.order_gap.1);
        }
        // Rebalancing: one to three withdrawals a day to the firm's own wallet, between 09:00
        // and 17:00 UTC, at least 70 minutes apart, $20,000-$50,000 each.
        let mut day = start - start.rem_euclid(DAY);
        while day < end {
            let n = rng.range(1, 3);
            let mut t = day + 9 * HOUR + rng.range(0, 90) * MINUTE;
            for _ in 0..n {
                if t > start && t < end && t < day + 17 * HOUR {
                    let usd = Decimal::from(rng.range(40, 100) * 500);
                    let to = Some(KRONOS_WALLET);
                    out.push(normal(t, bot, "withdraw", usdt, Some(usd), to));
                }
                t += 70 * MINUTE + rng.range(0, 120) * MINUTE;
            }
            day += DAY;
        }
    }
    // The BSC hot wallet: hourly reads, and a top-up of an exchange deposit address a day
    // (WOO, or BNB every third day), between 10:00 and 16:00 UTC.
    let mut t = start + 3 * MINUTE;
    while t < end {
        out.push(normal(t, &TREASURY, "read", None, None, None));
        t += HOUR;
    }
    let mut day = start - start.rem_euclid(DAY);
    let mut k = 0;
    while day < end {
        let t = day + 10 * HOUR + rng.range(0, 360) * MINUTE;
        if t > start && t < end {
            let (asset, amount, to) = if k % 3 == 2 {
                ("BNB", Decimal::from(rng.range(80, 200)), BNB_DEPOSIT)
            } else {
                ("WOO", Decimal::from(rng.range(80, 180) * 1000), WOO_DEPOSIT)
            };
            out.push(normal(
                t,
                &TREASURY,
                "transfer",
                Some(asset),
                Some(amount),
                Some(to),
            ));
        }
        k += 1;
        day += DAY;
    }
    out
}

/// The attack as the public record tells it (times UTC, 2023-11-18); sizes the record does not
/// give are chosen to add up to it (docs/scenarios.md).
fn attack() -> Vec<Req> {
    let t = |h, m| at(2023, 11, 18, h, m);
    let req = |t, bot: &Bot, action, asset, amount: Decimal, to| Req {
        t,
        client: bot.client,
        venue: bot.venue,
        action,
        asset: Some(asset),
        amount: Some(amount),
        to: Some(to),
        ip: bot.ip,
        attack: true,
    };
    let [binance, okx, btse, deepcoin] = &BOTS;
    let usdt = |n: i64| Decimal::from(n);
    let mut out = vec![
        // 16:47 the 72 USDT test to the firm's own wallet; ~17:02 2.4M USDT (CertiK).
        req(
            t(16, 47),
            binance,
            "withdraw",
            "USDT",
            usdt(72),
            KRONOS_WALLET,
        ),
        req(
            t(17, 2),
            binance,
            "withdraw",
            "USDT",
            usdt(2_400_000),
            KRONOS_WALLET,
        ),
    ];
    // The rest of Binance's 22,899,712 USDT (CertiK), in eight equal withdrawals every 20
    // minutes from 17:30 to 19:50 (the record gives the total and the three hours only).
    for k in 0..8 {
        out.push(req(
            t(17, 30) + k * 20 * MINUTE,
            binance,
            "withdraw",
            "USDT",
            usdt(2_562_455),
            KRONOS_WALLET,
        ));
    }
    // OKX and BTSE straight to the attacker, Deepcoin via the firm's wallet (rekt.news); their
    // sizes are not public: $900,000 together, so that the total matches the ~$26M lost.
    for (i, m) in [(0, 5), (1, 40), (2, 20)] {
        out.push(req(
            t(17 + i, m),
            okx,
            "withdraw",
            "USDT",
            usdt(150_000),
            ATTACKER,
        ));
    }
    for (h, m) in [(17, 12), (18, 0)] {
        out.push(req(
            t(h, m),
            btse,
            "withdraw",
            "USDT",
            usdt(100_000),
            ATTACKER,
        ));
    }
    for (h, m) in [(17, 20), (18, 25)] {
        out.push(req(
            t(h, m),
            deepcoin,
            "withdraw",
            "USDT",
            usdt(125_000),
            KRONOS_WALLET,
        ));
    }
    // On BSC (CertiK): ~$2M of WOO, ~$107k of WBNB, ~$82k of BNB.
    out.push(req(
        t(17, 15),
        &TREASURY,
        "transfer",
        "WOO",
        usdt(7_407_407),
        ATTACKER,
    ));
    out.push(req(
        t(17, 45),
        &TREASURY,
        "transfer",
        "WBNB",
        usdt(446),
        ATTACKER,
    ));
    out.push(req(
        t(18, 15),
        &TREASURY,
        "transfer",
        "BNB",
        usdt(341),
        ATTACKER,
    ));
    out
}

const KRONOS_NOTES: &str = "Kronos Research, 2023-11-18. Attack times, the 72 USDT test, the 2.4M USDT withdrawal, the 22,899,712 USDT Binance total, Kronos' wallet 0x6F15... and the attacker 0x2b05... from CertiK's 'Kronos Research Incident Analysis' (2023-11-20); OKX and BTSE straight to the attacker, Binance and Deepcoin via the firm's wallet from rekt.news 'Kronos - REKT'; BSC WOO ~$2M, WBNB ~$107k, BNB ~$82k from CertiK; ~$26M total from Kronos. Chosen (not public): the eight equal Binance withdrawals after the 2.4M one, $900,000 across OKX, BTSE and Deepcoin, and every baseline event (14 days of plausible market-making traffic). Prices are 2023-11-18 closes, rounded. The attacker sends from the bots' own hosts with their keygate tokens: the worst case for keygate.";

/// Writes a scenario: the header, then `baseline` up to the attack, then the attack.
fn write(out: &mut impl Write, name: &str, density: &Density, seed: u64) -> std::io::Result<u64> {
    let start = at(2023, 11, 4, 16, 47);
    let attack_start = at(2023, 11, 18, 16, 47);
    let header = HeaderOut {
        scenario: name,
        // Version 1: the Kronos scenario names no instruments or orders.
        version: 1,
        start: rfc3339(start),
        prices: [
            ("BNB", "240"),
            ("BTC", "36500"),
            ("USDT", "1"),
            ("WBNB", "240"),
            ("WOO", "0.27"),
        ]
        .into_iter()
        .collect(),
        notes: KRONOS_NOTES,
    };
    serde_json::to_writer(&mut *out, &header)?;
    out.write_all(b"\n")?;
    let mut rng = Rng(seed);
    let mut events = baseline(start, attack_start, density, &mut rng);
    events.extend(attack());
    // A stable sort: events at the same second keep the order they were made in.
    events.sort_by_key(|e| e.t);
    for e in &events {
        e.write(out)?;
    }
    Ok(events.len() as u64)
}

/// scenarios/kronos-2023.jsonl.
pub fn kronos(out: &mut impl Write) -> std::io::Result<u64> {
    write(out, "kronos-2023", &KRONOS_DENSITY, 2023)
}

/// The Kronos scenario with a baseline dense enough for about `events` events (for the
/// benchmark): the same bots and attack, orders and reads far more often.
pub fn dense(out: &mut impl Write, events: u64) -> std::io::Result<u64> {
    // Per bot and day there are reads (86400 s / read_every) and orders (86400 s / gap, plus
    // a cancel for one in four): with reads three gaps apart, 19/12 events per gap. Four bots,
    // 14 days.
    let per_bot_day = (events / 56).max(100) as i64;
    let gap_ms = (86_400_000 * 19 / (12 * per_bot_day)).max(2);
    let density = Density {
        read_every: gap_ms * 3,
        order_gap: (gap_ms / 2, gap_ms * 3 / 2),
    };
    write(out, "kronos-2023-dense", &density, 7)
}
