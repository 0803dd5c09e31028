//! The Kronos theft with the leaked keys used around keygate (scenario version 3): the same
//! attack as scenarios/kronos-2023.jsonl, but made straight at the exchanges with the venue
//! keys (`kronos-2023-around`), or only on BSC with the hot wallet's key (`kronos-2023-wallet`),
//! with each venue's opening balances and keygate's containment of it. The day of bot traffic
//! before the attack is the Kronos generator's. docs/scenarios.md gives the sources and what is
//! chosen.

use std::io::Write;

use rust_decimal::Decimal;
use serde::Serialize;

use super::{
    ATTACKER, BOTS, DAY, KRONOS_DENSITY, KRONOS_WALLET, MINUTE, Rng, TREASURY, at, baseline,
    rfc3339,
};

/// Which keys leaked.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Leak {
    /// The four exchange accounts' keys, used straight at the venues, and the hot wallet's.
    Around,
    /// Only the BSC hot wallet's key, used on chain.
    Wallet,
}

#[derive(Serialize)]
struct Containment {
    how: &'static str,
    detect: &'static str,
    latency: &'static str,
}

#[derive(Serialize)]
struct HeaderOut<'a> {
    scenario: &'a str,
    version: u32,
    start: String,
    prices: std::collections::BTreeMap<&'a str, &'a str>,
    balances: std::collections::BTreeMap<&'a str, std::collections::BTreeMap<&'a str, &'a str>>,
    containment: std::collections::BTreeMap<&'a str, Containment>,
    notes: &'a str,
}

#[derive(Serialize)]
struct OutflowLine<'a> {
    t: String,
    kind: &'static str,
    venue: &'a str,
    asset: &'a str,
    amount: String,
    to: &'a str,
    tx: String,
    label: &'static str,
}

/// One outflow of the attack.
struct Out {
    t: i64,
    venue: &'static str,
    asset: &'static str,
    amount: Decimal,
    to: &'static str,
}

/// Each venue's opening balances (chosen: what the record says left, and some more).
const BALANCES: [(&str, &[(&str, &str)]); 5] = [
    ("binance-main", &[("USDT", "24000000"), ("BTC", "20")]),
    ("okx-main", &[("USDT", "600000"), ("BTC", "5")]),
    ("btse-main", &[("USDT", "300000"), ("BTC", "3")]),
    ("deepcoin-main", &[("USDT", "400000"), ("BTC", "3")]),
    (
        "bsc-hot",
        &[("WOO", "8000000"), ("WBNB", "500"), ("BNB", "400")],
    ),
];

/// How keygate contains each: at an exchange, reconciliation every minute and a containment
/// (lock, balance read, sweeps) within 5 s; on BSC, the watcher within a block (3 s) and the
/// rescue in the next.
fn containment(venue: &str) -> Containment {
    if venue == "bsc-hot" {
        Containment {
            how: "rescue",
            detect: "3s",
            latency: "3s",
        }
    } else {
        Containment {
            how: "sweep",
            detect: "1m",
            latency: "5s",
        }
    }
}

/// The attack as kronos-2023's (the record's times and sizes, and the same chosen ones), each
/// withdrawal an outflow made with the leaked key; the BSC WOO drain (~$2M, one figure in the
/// record) split into 20 transfers over 40 minutes (chosen).
fn attack(leak: Leak) -> Vec<Out> {
    let t = |h, m| at(2023, 11, 18, h, m);
    let usdt = |n: i64| Decimal::from(n);
    let mut out = vec![];
    if leak == Leak::Around {
        let [binance, okx, btse, deepcoin] = &BOTS;
        let w = |t, venue, amount, to| Out {
            t,
            venue,
            asset: "USDT",
            amount,
            to,
        };
        out.push(w(t(16, 47), binance.venue, usdt(72), KRONOS_WALLET));
        out.push(w(t(17, 2), binance.venue, usdt(2_400_000), KRONOS_WALLET));
        for k in 0..8 {
            let at = t(17, 30) + k * 20 * MINUTE;
            out.push(w(at, binance.venue, usdt(2_562_455), KRONOS_WALLET));
        }
        for (i, m) in [(0, 5), (1, 40), (2, 20)] {
            out.push(w(t(17 + i, m), okx.venue, usdt(150_000), ATTACKER));
        }
        for (h, m) in [(17, 12), (18, 0)] {
            out.push(w(t(h, m), btse.venue, usdt(100_000), ATTACKER));
        }
        for (h, m) in [(17, 20), (18, 25)] {
            out.push(w(t(h, m), deepcoin.venue, usdt(125_000), KRONOS_WALLET));
        }
    }
    let hot = |t, asset, amount| Out {
        t,
        venue: TREASURY.venue,
        asset,
        amount,
        to: ATTACKER,
    };
    // 7,407,407 WOO in 20 transfers two minutes apart: 19 of 370,370 and the rest.
    for k in 0..20 {
        let amount = if k < 19 {
            370_370
        } else {
            7_407_407 - 19 * 370_370
        };
        out.push(hot(t(17, 15) + k * 2 * MINUTE, "WOO", usdt(amount)));
    }
    out.push(hot(t(17, 45), "WBNB", usdt(446)));
    out.push(hot(t(18, 15), "BNB", usdt(341)));
    out.sort_by_key(|o| o.t);
    out
}

const AROUND_NOTES: &str = "Kronos Research, 2023-11-18, with the leaked keys used around keygate: every withdrawal of the attack (times and sizes as in kronos-2023: the 72 USDT test, the 2.4M, the 22,899,712 USDT Binance total, OKX and BTSE to the attacker, Deepcoin via the firm's wallet, from CertiK's 'Kronos Research Incident Analysis' and rekt.news 'Kronos - REKT') is made straight at the exchange with its venue key, and the BSC drain (~$2M WOO, ~$107k WBNB, ~$82k BNB, CertiK) on chain with the hot wallet's key. Chosen (not public): the opening balances, the WOO drain as 20 transfers over 40 minutes, the eight equal Binance withdrawals and the OKX/BTSE/Deepcoin sizes (as in kronos-2023), containment's stated latencies (reconciliation every minute and 5 s to lock and sweep at an exchange; a block each to see and to rescue on BSC), and the day of bot traffic before the attack.";

const WALLET_NOTES: &str = "Kronos Research, 2023-11-18, with only the BSC hot wallet's key leaked and used on chain: ~$2M of WOO, ~$107k of WBNB and ~$82k of BNB to the attacker 0x2b05... (CertiK, 'Kronos Research Incident Analysis'). Chosen (not public): the wallet's opening balances, the WOO drain as 20 transfers two minutes apart from 17:15 UTC, the rescue's stated latencies (the watcher sees a transaction within a block, 3 s, and the rescue is mined in the next), and the day of bot traffic before the attack.";

fn header(out: &mut impl Write, name: &str, leak: Leak, start: i64) -> std::io::Result<()> {
    let venues: Vec<_> = BALANCES
        .iter()
        .filter(|(v, _)| leak == Leak::Around || *v == "bsc-hot")
        .collect();
    let header = HeaderOut {
        scenario: name,
        version: 3,
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
        balances: venues
            .iter()
            .map(|(v, b)| (*v, b.iter().copied().collect()))
            .collect(),
        containment: venues.iter().map(|(v, _)| (*v, containment(v))).collect(),
        notes: match leak {
            Leak::Around => AROUND_NOTES,
            Leak::Wallet => WALLET_NOTES,
        },
    };
    serde_json::to_writer(&mut *out, &header)?;
    out.write_all(b"\n")
}

/// Writes the scenario: the header, the day of bot traffic before the attack, the attack's
/// outflows around keygate. Returns the number of events.
pub fn write(out: &mut impl Write, leak: Leak) -> std::io::Result<u64> {
    let attack_start = at(2023, 11, 18, 16, 47);
    let start = attack_start - DAY;
    let name = match leak {
        Leak::Around => "kronos-2023-around",
        Leak::Wallet => "kronos-2023-wallet",
    };
    header(out, name, leak, start)?;
    let mut rng = Rng(2023);
    let mut normal = baseline(start, attack_start, &KRONOS_DENSITY, &mut rng);
    // A stable sort: events at the same second keep the order they were made in.
    normal.sort_by_key(|e| e.t);
    let attack = attack(leak);
    let (mut i, mut j) = (0, 0);
    // Merged in time order; at the same second, bot traffic first.
    while i < normal.len() || j < attack.len() {
        let take_normal = match (normal.get(i), attack.get(j)) {
            (Some(n), Some(a)) => n.t <= a.t,
            (Some(_), None) => true,
            _ => false,
        };
        if take_normal {
            normal[i].write(out)?;
            i += 1;
            continue;
        }
        let a = &attack[j];
        j += 1;
        let line = OutflowLine {
            t: rfc3339(a.t),
            kind: "outflow",
            venue: a.venue,
            asset: a.asset,
            amount: a.amount.to_string(),
            to: a.to,
            tx: format!("leak{j}"),
            label: "attack",
        };
        serde_json::to_writer(&mut *out, &line)?;
        out.write_all(b"\n")?;
    }
    Ok((normal.len() + attack.len()) as u64)
}
