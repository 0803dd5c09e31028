//! The histories the reconcilers read besides withdrawals (issue 18): order histories (Binance
//! `allOrders`, OKX `orders-history`), the Binance account read that names the symbols to ask
//! for (`held_assets`, `is_unknown_symbol`), and the Binance sub-account transfer history
//! (`subUserHistory`). Byte 0 picks the venue (bit 0) and the parser; byte 1 is ignored (the
//! status byte of the other answer targets: the reconcilers parse a 2xx body only); the rest is
//! the body. What a parser accepts keeps its promises: a transfer out is a positive amount to a
//! named sub-account, an order's filled quote is not negative, held assets are sorted, distinct,
//! upper-case symbols, and the next page computed from the rows is one that moves on.
#![no_main]

use keygate_venues::VenueKind;
use keygate_venues::orders::OrderPage;
use rust_decimal::Decimal;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Some(keygate_fuzz::Answer {
        kind,
        adapter: a,
        pick,
        status: _,
        body,
    }) = keygate_fuzz::answer(data, &[200])
    else {
        return;
    };
    match (pick >> 1) % 4 {
        0 => orders(&a, kind, body),
        1 => {
            if let Ok(assets) = a.held_assets(body) {
                assert!(assets.windows(2).all(|w| w[0] < w[1]), "{assets:?}");
                for s in &assets {
                    assert!(
                        !s.is_empty()
                            && s.bytes()
                                .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit()),
                        "held asset {s:?}"
                    );
                }
            }
        }
        2 => {
            let unknown = a.is_unknown_symbol(body);
            assert!(!unknown || kind == VenueKind::Binance);
        }
        _ => {
            if let Ok(rows) = a.parse_sub_transfers("v", body) {
                for r in &rows {
                    assert!(r.amount > Decimal::ZERO, "{r:?}");
                    assert!(r.id.starts_with("subtransfer:"), "{r:?}");
                    assert!(r.destination.starts_with("sub-account:"), "{r:?}");
                }
                let last = rows.iter().map(|r| r.at).max();
                if let Some(next) = a.next_sub_transfer_since(rows.len(), last) {
                    assert_eq!(Some(next), last);
                }
            }
        }
    }
});

/// An order history: each order's filled quote is not negative, and the next page (if any)
/// starts past what was read (Binance: after the highest order id; OKX: before an order read).
fn orders(a: &keygate_venues::Adapter, kind: VenueKind, body: &[u8]) {
    let Ok(rows) = a.parse_order_history("v", body) else {
        return;
    };
    for r in &rows {
        assert!(r.filled_quote >= Decimal::ZERO, "{r:?}");
    }
    match a.next_order_page(keygate_fuzz::NOW - 86_400_000, &rows) {
        Some(OrderPage::FromId(id)) => {
            assert_eq!(kind, VenueKind::Binance);
            // (Saturated at u64::MAX, the last order is read again: ids are unique, so the
            // page after it is short and the read stops.)
            let read = |r: &keygate_core::venue_order::VenueOrder| r.id.parse::<u64>().ok();
            assert!(
                rows.iter()
                    .all(|r| read(r).is_some_and(|n| n < id || n == u64::MAX))
            );
        }
        Some(OrderPage::After(id)) => {
            assert_eq!(kind, VenueKind::Okx);
            assert!(rows.iter().any(|r| r.id == id));
        }
        None => {}
    }
}
