//! Venue answers, per venue: withdrawal histories, key restrictions, book tickers (reference
//! prices), and the containment answers (balances, sweeps, sweep states). Byte 0 picks the
//! venue and the parser, byte 1 the HTTP status class; the rest is the body.
#![no_main]

use keygate_venues::containment::Wallet;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Some(keygate_fuzz::Answer {
        kind,
        adapter: a,
        pick,
        status,
        body,
    }) = keygate_fuzz::answer(data, &[200, 400, 429, 500])
    else {
        return;
    };
    match (pick >> 1) % 7 {
        0 => {
            if let Ok(rows) = a.parse_withdrawal_history("v", body) {
                for r in rows {
                    assert!(r.amount > rust_decimal::Decimal::ZERO, "{r:?}");
                }
            }
        }
        1 => {
            let _ = a.parse_restrictions(body);
        }
        2 => {
            if let Ok(mid) = keygate_venues::reference::parse_reference(kind, "BTCUSDT", body) {
                assert!(
                    mid > rust_decimal::Decimal::ZERO,
                    "a reference price of {mid}"
                );
            }
        }
        3 => {
            let _ = a.parse_balances(Wallet::Funding, status, body);
        }
        4 => {
            let _ = a.parse_balances(Wallet::Trading, status, body);
        }
        5 => {
            let _ = a.parse_sweep("kg1x2", status, body);
        }
        _ => {
            let _ = a.parse_sweep_state("kg1x2", status, body);
        }
    }
});
