//! Reference prices: the market price of an instrument, read from the venue's public book
//! ticker, against which keygate values market orders and measures how far a limit price is
//! from the market.
//!
//! Pure, like the rest of this crate: [`reference_path`] says what to request (a public,
//! unsigned GET), and [`parse_reference`] reads the answer into the mid of the best bid and the
//! best ask. The caller does the IO and keeps the time it read the price at. An answer that does
//! not give a sound two-sided book for the instrument asked (empty, zero, crossed, another
//! symbol, an OKX error code, not the documented JSON) is a [`ReferenceError`], never a price.
//!
//! Written from the venues' documentation:
//! - Binance, Symbol order book ticker (`GET /api/v3/ticker/bookTicker`):
//!   <https://developers.binance.com/docs/binance-spot-api-docs/rest-api/market-data-endpoints#symbol-order-book-ticker>
//! - OKX, Get ticker (`GET /api/v5/market/ticker`), whose "best ask price may be lower than the
//!   best bid price during the pre-open period":
//!   <https://www.okx.com/docs-v5/en/#order-book-trading-market-data-get-ticker>

use std::str::FromStr;

use rust_decimal::Decimal;
use serde_json::Value;

use crate::VenueKind;

/// Why an answer gives no reference price. Each message says what to check.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReferenceError {
    #[error(
        "the {venue} book ticker of {symbol} is not the JSON the venue documents: {detail}; check the venue's base_url points at the venue"
    )]
    Malformed {
        venue: &'static str,
        symbol: String,
        detail: String,
    },
    #[error(
        "{venue} refused the book ticker of {symbol}: code {code}: {msg}; check the instrument is listed there"
    )]
    Venue {
        venue: &'static str,
        symbol: String,
        code: String,
        msg: String,
    },
    #[error(
        "the {venue} book ticker asked for {asked} answered for {got}; keygate takes no price for the wrong instrument"
    )]
    WrongSymbol {
        venue: &'static str,
        asked: String,
        got: String,
    },
    #[error(
        "the {venue} book of {symbol} has no {side} (empty or zero): no market price; the instrument may be halted or illiquid"
    )]
    EmptyBook {
        venue: &'static str,
        symbol: String,
        side: &'static str,
    },
    #[error(
        "the {venue} book of {symbol} is crossed or locked (best bid {bid} >= best ask {ask}): no market price; it may be in a pre-open auction"
    )]
    Crossed {
        venue: &'static str,
        symbol: String,
        bid: Decimal,
        ask: Decimal,
    },
}

/// The venue's own symbol of an instrument: `BTCUSDT` on Binance, `BTC-USDT` on OKX
/// (upper-cased).
pub fn venue_symbol(kind: VenueKind, base: &str, quote: &str) -> String {
    let (base, quote) = (base.to_ascii_uppercase(), quote.to_ascii_uppercase());
    match kind {
        VenueKind::Binance => format!("{base}{quote}"),
        VenueKind::Okx => format!("{base}-{quote}"),
    }
}

/// The path and query of the public book ticker of `symbol`, to append to the venue's base URL
/// and send as an unsigned GET.
pub fn reference_path(kind: VenueKind, symbol: &str) -> String {
    let encoded: String = form_urlencoded::byte_serialize(symbol.as_bytes()).collect();
    match kind {
        VenueKind::Binance => format!("/api/v3/ticker/bookTicker?symbol={encoded}"),
        VenueKind::Okx => format!("/api/v5/market/ticker?instId={encoded}"),
    }
}

/// The reference price of `symbol` from the answer to [`reference_path`]: the mid of the best bid
/// and the best ask, in quote units per base unit.
pub fn parse_reference(
    kind: VenueKind,
    symbol: &str,
    body: &[u8],
) -> Result<Decimal, ReferenceError> {
    let venue = kind.as_str();
    let malformed = |detail: String| ReferenceError::Malformed {
        venue,
        symbol: symbol.to_string(),
        detail,
    };
    let v: Value =
        serde_json::from_slice(body).map_err(|e| malformed(format!("not JSON ({e})")))?;
    let quote = match kind {
        VenueKind::Binance => binance_quote(symbol, &v)?,
        VenueKind::Okx => okx_quote(symbol, &v)?,
    };
    if quote.symbol != symbol {
        return Err(ReferenceError::WrongSymbol {
            venue,
            asked: symbol.to_string(),
            got: quote.symbol.chars().take(40).collect(),
        });
    }
    let bid = price(kind, symbol, "bid", quote.bid)?;
    let ask = price(kind, symbol, "ask", quote.ask)?;
    if bid >= ask {
        return Err(ReferenceError::Crossed {
            venue,
            symbol: symbol.to_string(),
            bid,
            ask,
        });
    }
    // Both are below Decimal::MAX, so their half-sum does not overflow.
    Ok(bid / Decimal::TWO + ask / Decimal::TWO)
}

/// The top of a book as the venue wrote it.
struct Top<'v> {
    symbol: &'v str,
    bid: &'v str,
    ask: &'v str,
}

fn text<'v>(
    venue: &'static str,
    symbol: &str,
    row: &'v Value,
    name: &str,
) -> Result<&'v str, ReferenceError> {
    row.get(name)
        .and_then(Value::as_str)
        .ok_or_else(|| ReferenceError::Malformed {
            venue,
            symbol: symbol.to_string(),
            detail: format!("it has no {name} string"),
        })
}

/// `{"symbol":"LTCBTC","bidPrice":"4.00000000","bidQty":"431.00000000","askPrice":"4.00000200",
/// "askQty":"9.00000000"}`, or Binance's error `{"code":-1121,"msg":"Invalid symbol."}`.
fn binance_quote<'v>(symbol: &str, v: &'v Value) -> Result<Top<'v>, ReferenceError> {
    const VENUE: &str = "binance";
    if let (Some(code), None) = (v.get("code"), v.get("symbol")) {
        return Err(ReferenceError::Venue {
            venue: VENUE,
            symbol: symbol.to_string(),
            code: code.to_string().chars().take(20).collect(),
            msg: v
                .get("msg")
                .and_then(Value::as_str)
                .unwrap_or("")
                .chars()
                .take(200)
                .collect(),
        });
    }
    if !v.is_object() {
        return Err(ReferenceError::Malformed {
            venue: VENUE,
            symbol: symbol.to_string(),
            detail: "it is not one object (ask for one symbol)".into(),
        });
    }
    Ok(Top {
        symbol: text(VENUE, symbol, v, "symbol")?,
        bid: text(VENUE, symbol, v, "bidPrice")?,
        ask: text(VENUE, symbol, v, "askPrice")?,
    })
}

/// `{"code":"0","msg":"","data":[{"instId":"BTC-USDT","askPx":"…","bidPx":"…",…}]}`; a `code`
/// other than "0" is the venue's refusal.
fn okx_quote<'v>(symbol: &str, v: &'v Value) -> Result<Top<'v>, ReferenceError> {
    const VENUE: &str = "okx";
    let malformed = |detail: &str| ReferenceError::Malformed {
        venue: VENUE,
        symbol: symbol.to_string(),
        detail: detail.to_string(),
    };
    match v.get("code").and_then(Value::as_str) {
        Some("0") => {}
        Some(code) => {
            return Err(ReferenceError::Venue {
                venue: VENUE,
                symbol: symbol.to_string(),
                code: code.chars().take(20).collect(),
                msg: v
                    .get("msg")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .chars()
                    .take(200)
                    .collect(),
            });
        }
        None => return Err(malformed("it has no code string")),
    }
    let rows = v
        .get("data")
        .and_then(Value::as_array)
        .ok_or_else(|| malformed("it has no data list"))?;
    let [row] = rows.as_slice() else {
        return Err(malformed(&format!(
            "its data list has {} rows, not one",
            rows.len()
        )));
    };
    Ok(Top {
        symbol: text(VENUE, symbol, row, "instId")?,
        bid: text(VENUE, symbol, row, "bidPx")?,
        ask: text(VENUE, symbol, row, "askPx")?,
    })
}

/// A best price: a plain positive decimal. Empty or zero is an empty side of the book (OKX
/// writes "" there, Binance zeros).
fn price(
    kind: VenueKind,
    symbol: &str,
    side: &'static str,
    text: &str,
) -> Result<Decimal, ReferenceError> {
    let plain = !text.is_empty()
        && text.len() <= 40
        && text.bytes().all(|b| b.is_ascii_digit() || b == b'.');
    let parsed = plain.then(|| Decimal::from_str(text).ok()).flatten();
    match parsed {
        Some(p) if p > Decimal::ZERO => Ok(p),
        Some(_) => Err(ReferenceError::EmptyBook {
            venue: kind.as_str(),
            symbol: symbol.to_string(),
            side,
        }),
        None if text.is_empty() => Err(ReferenceError::EmptyBook {
            venue: kind.as_str(),
            symbol: symbol.to_string(),
            side,
        }),
        None => Err(ReferenceError::Malformed {
            venue: kind.as_str(),
            symbol: symbol.to_string(),
            detail: format!(
                "its best {side} {:?} is not a decimal",
                text.chars().take(40).collect::<String>()
            ),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> Decimal {
        s.parse().unwrap()
    }

    #[test]
    fn symbols_and_paths() {
        assert_eq!(venue_symbol(VenueKind::Binance, "btc", "USDT"), "BTCUSDT");
        assert_eq!(venue_symbol(VenueKind::Okx, "BTC", "usdt"), "BTC-USDT");
        assert_eq!(
            reference_path(VenueKind::Binance, "BTCUSDT"),
            "/api/v3/ticker/bookTicker?symbol=BTCUSDT"
        );
        assert_eq!(
            reference_path(VenueKind::Okx, "BTC-USDT"),
            "/api/v5/market/ticker?instId=BTC-USDT"
        );
        // Nothing in a symbol can add a parameter.
        assert_eq!(
            reference_path(VenueKind::Binance, "X&symbols=Y"),
            "/api/v3/ticker/bookTicker?symbol=X%26symbols%3DY"
        );
    }

    /// The response example of Binance's Symbol order book ticker.
    const BINANCE_DOC: &[u8] = br#"{"symbol":"LTCBTC","bidPrice":"4.00000000","bidQty":"431.00000000","askPrice":"4.00000200","askQty":"9.00000000"}"#;

    /// The response example of OKX's Get ticker, for a spot instrument.
    const OKX_DOC: &[u8] = br#"{"code":"0","msg":"","data":[{"instType":"SPOT","instId":"BTC-USDT","last":"9999.99","lastSz":"0.1","askPx":"9999.99","askSz":"11","bidPx":"8888.88","bidSz":"5","open24h":"9000","high24h":"10000","low24h":"8888.88","volCcy24h":"2222","vol24h":"2222","sodUtc0":"2222","sodUtc8":"2222","ts":"1597026383085"}]}"#;

    #[test]
    fn the_documented_answers_give_the_mid() {
        assert_eq!(
            parse_reference(VenueKind::Binance, "LTCBTC", BINANCE_DOC).unwrap(),
            d("4.00000100")
        );
        assert_eq!(
            parse_reference(VenueKind::Okx, "BTC-USDT", OKX_DOC).unwrap(),
            d("9444.435")
        );
    }

    #[test]
    fn unsound_books_give_no_price() {
        let b = |bid: &str, ask: &str| {
            format!(
                r#"{{"symbol":"BTCUSDT","bidPrice":"{bid}","bidQty":"1","askPrice":"{ask}","askQty":"1"}}"#
            )
        };
        let run = |body: String| parse_reference(VenueKind::Binance, "BTCUSDT", body.as_bytes());
        assert!(matches!(
            run(b("0.00000000", "40000.00")),
            Err(ReferenceError::EmptyBook { side: "bid", .. })
        ));
        assert!(matches!(
            run(b("40000", "0")),
            Err(ReferenceError::EmptyBook { side: "ask", .. })
        ));
        assert!(matches!(
            run(b("40001", "40000")),
            Err(ReferenceError::Crossed { .. })
        ));
        assert!(matches!(
            run(b("40000", "40000")),
            Err(ReferenceError::Crossed { .. })
        ));
        for bad in ["-1", "1e3", " 1", "abc", "1.2.3"] {
            assert!(
                matches!(run(b(bad, "40000")), Err(ReferenceError::Malformed { .. })),
                "{bad}"
            );
        }
        assert!(matches!(
            parse_reference(VenueKind::Binance, "ETHUSDT", BINANCE_DOC),
            Err(ReferenceError::WrongSymbol { .. })
        ));
        let err = parse_reference(
            VenueKind::Binance,
            "SHITUSDT",
            br#"{"code":-1121,"msg":"Invalid symbol."}"#,
        )
        .unwrap_err();
        assert!(matches!(err, ReferenceError::Venue { ref code, .. } if code == "-1121"));
        assert!(err.to_string().contains("Invalid symbol."), "{err}");
        assert!(matches!(
            parse_reference(VenueKind::Binance, "BTCUSDT", b"[]"),
            Err(ReferenceError::Malformed { .. })
        ));
        assert!(matches!(
            parse_reference(VenueKind::Binance, "BTCUSDT", b"<html>"),
            Err(ReferenceError::Malformed { .. })
        ));
    }

    #[test]
    fn okx_errors_empty_sides_and_shapes() {
        let run = |body: &str| parse_reference(VenueKind::Okx, "BTC-USDT", body.as_bytes());
        let err =
            run(r#"{"code":"51001","msg":"Instrument ID does not exist","data":[]}"#).unwrap_err();
        assert!(matches!(err, ReferenceError::Venue { ref code, .. } if code == "51001"));
        let row = |bid: &str, ask: &str| {
            format!(
                r#"{{"code":"0","msg":"","data":[{{"instId":"BTC-USDT","bidPx":"{bid}","askPx":"{ask}"}}]}}"#
            )
        };
        assert!(matches!(
            run(&row("", "40000")),
            Err(ReferenceError::EmptyBook { side: "bid", .. })
        ));
        // The pre-open period the docs mention: the ask below the bid.
        assert!(matches!(
            run(&row("40010", "40000")),
            Err(ReferenceError::Crossed { .. })
        ));
        assert_eq!(run(&row("39990", "40010")).unwrap(), d("40000"));
        assert!(matches!(
            run(r#"{"code":"0","msg":"","data":[]}"#),
            Err(ReferenceError::Malformed { .. })
        ));
        assert!(matches!(
            run(&row("1", "2").replace("}]", "},{}]")),
            Err(ReferenceError::Malformed { .. })
        ));
        assert!(matches!(
            run(r#"{"code":0,"data":[]}"#),
            Err(ReferenceError::Malformed { .. })
        ));
        assert!(matches!(
            parse_reference(VenueKind::Okx, "ETH-USDT", OKX_DOC),
            Err(ReferenceError::WrongSymbol { .. })
        ));
        // Binance's answer is not OKX's.
        assert!(run(std::str::from_utf8(BINANCE_DOC).unwrap()).is_err());
    }

    #[test]
    fn huge_prices_do_not_overflow() {
        let max = Decimal::MAX.to_string();
        let body = format!(
            r#"{{"symbol":"X","bidPrice":"{}","askPrice":"{max}"}}"#,
            Decimal::MAX - Decimal::ONE
        );
        let mid = parse_reference(VenueKind::Binance, "X", body.as_bytes()).unwrap();
        assert!(mid > Decimal::ZERO);
    }

    proptest::proptest! {
        #[test]
        fn parsing_never_panics(body in proptest::collection::vec(proptest::num::u8::ANY, 0..300)) {
            for kind in [VenueKind::Binance, VenueKind::Okx] {
                let _ = parse_reference(kind, "BTCUSDT", &body);
            }
        }

        #[test]
        fn a_price_is_always_inside_the_book(
            bid in "[0-9]{1,12}(\\.[0-9]{1,8})?",
            ask in "[0-9]{1,12}(\\.[0-9]{1,8})?",
        ) {
            let body = format!(
                r#"{{"code":"0","msg":"","data":[{{"instId":"BTC-USDT","bidPx":"{bid}","askPx":"{ask}"}}]}}"#
            );
            if let Ok(mid) = parse_reference(VenueKind::Okx, "BTC-USDT", body.as_bytes()) {
                let (b, a): (Decimal, Decimal) = (bid.parse().unwrap(), ask.parse().unwrap());
                proptest::prop_assert!(b > Decimal::ZERO && b < a);
                proptest::prop_assert!(b <= mid && mid <= a);
            }
        }
    }
}
