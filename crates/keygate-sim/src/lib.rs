//! keygate-sim: a Binance- and OKX-style venue simulator for keygate's tests,
//! benchmarks and demo. It is never a real venue and holds no real money.
//!
//! Both APIs are served on one port at their real paths: Binance at
//! `/api/v3/...` and `/sapi/v1/...`, OKX at `/api/v5/...`. Every private request
//! is authenticated the way the venue documents it, by code written here from the
//! exchanges' documentation and sharing nothing with keygate's own signing, so a
//! signing bug in keygate shows up as a rejection.
//!
//! `GET /_sim/state` returns a [`SimSnapshot`] as JSON, for tests and benchmarks
//! that run the simulator in another process.
//!
//! An account file (a [`SimFile`]: the `accounts` of [`SimConfig`], and optionally the
//! [`Market`]s; without them, [`default_markets`]):
//!
//! ```json
//! {"accounts": [
//!   {"venue": "binance", "api_key": "bkey", "secret": "bsecret",
//!    "balances": {"BTC": "1.5", "USDT": "10000"},
//!    "restrictions": {"enable_withdrawals": true}},
//!   {"venue": "okx", "api_key": "okey", "secret": "osecret", "passphrase": "opass",
//!    "balances": {"USDT": "500"}}
//! ],
//!  "markets": [
//!   {"venue": "binance", "base": "BTC", "quote": "USDT",
//!    "bids": [["36490", "0.5"], ["36480", "2"]], "asks": [["36510", "0.5"], ["36520", "2"]]}
//! ]}
//! ```
//!
//! Each market has its own book. An order fills against it at once: a limit order takes the
//! opposite levels up to its price and what is left rests (or expires: IOC, FOK), a market
//! order walks the book; the fills move the account's base and quote balances, a resting
//! order locks what it would pay, and an order the free balance cannot cover is refused with
//! the venue's error. The public book tickers (Binance `GET /api/v3/ticker/bookTicker`, OKX
//! `GET /api/v5/market/ticker`) answer from the books.
//!
//! What it does not model: the book moving (fills take from the levels but never use them up,
//! and resting orders never fill later or show in the book), fees, the triggered order types,
//! exchange filters, and rate limits outside the sub-account endpoints.
//!
//! Masters and their sub-accounts ([`Sim::new_with_masters`]) have the master-account
//! endpoints that contain a sub-account: its key's IP restriction or deletion, a transfer-out
//! switch, its balances, transfers to the master (module `subaccount`). A key's IP restriction
//! is enforced against the connection's peer address (as [`serve`] keeps it).

mod binance;
mod book;
mod config;
mod okx;
mod state;
mod subaccount;
mod trading;

use std::future::poll_fn;
use std::pin::Pin;

use axum::Router;
use axum::body::{Body, HttpBody};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use rust_decimal::Decimal;

pub use config::{
    Account, Level, Market, Restrictions, SimConfig, SimFile, VenueKind, default_markets,
};
pub use state::{
    AccountView, Fill, Order, OrderStatus, OrderType, Side, Sim, SimError, SimSnapshot, Withdrawal,
};
pub use subaccount::binance_sub_key::SubToSub;
pub use subaccount::{Master, SubAccount, SubTransfer};

/// The largest request body the simulator reads.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// The simulator as an axum router (no listener attached).
pub fn app(sim: Sim) -> Router {
    Router::new().fallback(dispatch).with_state(sim)
}

/// Serves the simulator on `listener` until the process ends or serving fails.
/// Each connection's peer address is kept, so IP-restricted keys are checked against it.
pub async fn serve(listener: tokio::net::TcpListener, sim: Sim) -> std::io::Result<()> {
    axum::serve(
        listener,
        app(sim).into_make_service_with_connect_info::<std::net::SocketAddr>(),
    )
    .await
}

/// The one handler: routes by path prefix to a venue, which routes by method and
/// path itself, so that unknown paths get the venue's own error shape.
async fn dispatch(State(sim): State<Sim>, request: Request) -> Response {
    let path = request.uri().path();
    if path == "/_sim/state" && request.method() == Method::GET {
        return (StatusCode::OK, axum::Json(sim.snapshot())).into_response();
    }
    // keygate reads the book tickers on its own, in the background (reference prices): they
    // are not what a test of forwarding counts.
    if !matches!(path, "/api/v3/ticker/bookTicker" | "/api/v5/market/ticker") {
        sim.count_request();
    }
    let peer = request
        .extensions()
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|c| c.0.ip());
    if let Some(refused) = subaccount::ip_refusal(&sim, path, request.headers(), peer) {
        return refused;
    }
    if path.starts_with("/api/v5/") {
        okx::handle(&sim, request).await
    } else if ["/api/v3/", "/sapi/v1/", "/sapi/v2/", "/sapi/v4/"]
        .iter()
        .any(|p| path.starts_with(p))
    {
        binance::handle(&sim, request).await
    } else {
        binance::unknown_path()
    }
}

static CLOCK: std::sync::OnceLock<std::sync::Arc<std::sync::atomic::AtomicI64>> =
    std::sync::OnceLock::new();

/// Makes every simulator in this process read `clock` instead of the system clock (for a
/// replay that runs on a simulated clock; set once, before the first request).
pub fn use_clock(clock: std::sync::Arc<std::sync::atomic::AtomicI64>) -> Result<(), String> {
    CLOCK
        .set(clock)
        .map_err(|_| "the simulator's clock was set already".to_string())
}

/// Now, in ms since the Unix epoch (or the clock given to [`use_clock`]).
pub(crate) fn now_ms() -> i64 {
    match CLOCK.get() {
        Some(c) => c.load(std::sync::atomic::Ordering::SeqCst),
        None => chrono::Utc::now().timestamp_millis(),
    }
}

/// Why a body could not be read.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum BodyError {
    TooLarge,
    Unreadable,
}

impl BodyError {
    pub(crate) fn status(&self) -> StatusCode {
        match self {
            BodyError::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            BodyError::Unreadable => StatusCode::BAD_REQUEST,
        }
    }

    pub(crate) fn message(&self) -> String {
        match self {
            BodyError::TooLarge => {
                format!(
                    "Request body is larger than the simulator's limit of {MAX_BODY_BYTES} bytes."
                )
            }
            BodyError::Unreadable => "Request body could not be read.".to_string(),
        }
    }
}

/// Reads the whole body, refusing more than [`MAX_BODY_BYTES`] (by the declared
/// length up front, and by counting as it arrives).
pub(crate) async fn read_body(headers: &HeaderMap, mut body: Body) -> Result<Vec<u8>, BodyError> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_BODY_BYTES as u64) {
        return Err(BodyError::TooLarge);
    }
    let mut bytes = Vec::new();
    while let Some(frame) = poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await {
        let frame = frame.map_err(|_| BodyError::Unreadable)?;
        if let Ok(data) = frame.into_data() {
            if bytes.len() + data.len() > MAX_BODY_BYTES {
                return Err(BodyError::TooLarge);
            }
            bytes.extend_from_slice(&data);
        }
    }
    Ok(bytes)
}

/// Parses an amount the way the venues write them: digits, optionally a point
/// and more digits (`"1"`, `"0.25"`). No sign, exponent, underscore or blank.
pub(crate) fn parse_amount(text: &str) -> Option<Decimal> {
    let (whole, fraction) = match text.split_once('.') {
        Some((w, f)) => (w, Some(f)),
        None => (text, None),
    };
    let digits = |s: &str| !s.is_empty() && s.len() <= 40 && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(whole) || fraction.is_some_and(|f| !digits(f)) {
        return None;
    }
    text.parse::<Decimal>().ok()
}

/// A decimal as the venues print it: no trailing zeros, no exponent.
pub(crate) fn plain(amount: Decimal) -> String {
    amount.normalize().to_string()
}

/// Byte-wise equality whose time does not depend on where the inputs differ.
pub(crate) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_are_parsed_strictly() {
        assert_eq!(parse_amount("1"), Some(Decimal::ONE));
        assert_eq!(parse_amount("0.25"), Some(Decimal::new(25, 2)));
        assert_eq!(parse_amount("007.50"), Some(Decimal::new(75, 1)));
        for bad in [
            "", ".5", "5.", "-1", "+1", "1e3", "1_000", " 1", "1 ", "1.2.3", "0x10", "NaN",
        ] {
            assert_eq!(parse_amount(bad), None, "{bad:?}");
        }
        // More digits than a Decimal can hold is refused, not wrapped.
        assert_eq!(parse_amount(&"9".repeat(41)), None);
    }

    #[test]
    fn plain_drops_trailing_zeros() {
        assert_eq!(plain(Decimal::new(7500, 4)), "0.75");
        assert_eq!(plain(Decimal::new(100, 0)), "100");
        assert_eq!(plain(Decimal::ZERO), "0");
    }

    #[test]
    fn constant_time_eq_compares() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
    }

    #[tokio::test]
    async fn body_limit_is_enforced_with_and_without_a_declared_length() {
        let small = vec![b'a'; MAX_BODY_BYTES];
        assert_eq!(
            read_body(&HeaderMap::new(), Body::from(small.clone()))
                .await
                .unwrap(),
            small
        );
        let big = vec![b'a'; MAX_BODY_BYTES + 1];
        assert_eq!(
            read_body(&HeaderMap::new(), Body::from(big)).await,
            Err(BodyError::TooLarge)
        );
        let mut headers = HeaderMap::new();
        headers.insert(header::CONTENT_LENGTH, "1000000".parse().unwrap());
        assert_eq!(
            read_body(&headers, Body::from("x")).await,
            Err(BodyError::TooLarge)
        );
    }
}
