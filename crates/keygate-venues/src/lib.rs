//! Exchange adapters: what a venue request would do, and how to sign it.
//!
//! An [`Adapter`] turns the request a bot sends (the exchange's own REST path and parameters,
//! without key or signature) into a [`Classified`] request: the intent's action, asset, amount
//! and destination, plus the exact parameters keygate will forward. Anything an adapter does not
//! know is an error, and the gateway denies it. [`Adapter::sign`] then signs the classified
//! request with the venue credential per the venue's documented scheme. Both are pure: the time
//! is an argument, and nothing here does IO. [`Classified::canonical`] is the request as keygate
//! would send it before signing: the text a hold is bound to and approvers are shown.
//!
//! Written from the exchanges' public API documentation:
//! - Binance: <https://developers.binance.com/docs/binance-spot-api-docs/rest-api/request-security>
//! - OKX: <https://www.okx.com/docs-v5/en/#overview-rest-authentication>

use std::str::FromStr;

use keygate_core::Action;
use keygate_core::order::{Order, OrderKind};
use keygate_core::outflow::Outflow;
use keygate_core::route::Route;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

pub mod binance;
mod canonical;
pub mod containment;
pub mod native;
pub mod okx;
pub mod orders;
pub mod params;
pub mod reference;
pub mod sub_transfers;

pub use params::Params;

/// The REST dialects keygate speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum VenueKind {
    Binance,
    Okx,
}

impl VenueKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Binance => "binance",
            Self::Okx => "okx",
        }
    }

    /// The credential kind (in keygate-vault's words) a venue of this kind signs with.
    pub fn credential_kind(self) -> &'static str {
        match self {
            Self::Binance => "binance-hmac",
            Self::Okx => "okx-hmac",
        }
    }
}

impl FromStr for VenueKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "binance" => Ok(Self::Binance),
            "okx" => Ok(Self::Okx),
            _ => Err(format!(
                "unknown venue kind {s:?}; the kinds are binance and okx"
            )),
        }
    }
}

/// A request as the bot sent it, below `/venues/{venue}`.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    /// Upper-case HTTP method.
    pub method: &'a str,
    /// The venue's REST path, such as `/api/v3/order`.
    pub path: &'a str,
    /// The raw query string, without `?` (empty if none).
    pub query: &'a str,
    pub body: &'a [u8],
}

/// Why a request cannot be classified. Each message says what to change.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClassifyError {
    #[error(
        "{method} {path} is not an endpoint keygate knows for {venue} venues; it is denied. An operator can allow more read-only GET paths with extra_read_paths in the venue's config"
    )]
    UnknownEndpoint {
        venue: &'static str,
        method: String,
        path: String,
    },
    #[error("the {what} is malformed: {detail}")]
    Malformed { what: &'static str, detail: String },
    #[error("parameter {name} is missing; {endpoint} needs it")]
    Missing {
        name: &'static str,
        endpoint: &'static str,
    },
    #[error("parameter {name} = {value:?} is not valid: {why}")]
    Invalid {
        name: &'static str,
        value: String,
        why: String,
    },
}

/// What keygate forwards for a classified request: the parsed parameters, re-encoded on the way
/// out, so the venue reads exactly what was decided.
#[derive(Debug, Clone, PartialEq)]
pub enum Forward {
    /// Binance: every parameter, from the query and the form body together.
    Form(Params),
    /// OKX: query parameters and, for POST, a JSON object body.
    Json {
        query: Params,
        body: Option<serde_json::Map<String, serde_json::Value>>,
    },
}

/// A request an adapter understood.
#[derive(Debug, Clone, PartialEq)]
pub struct Classified {
    /// A short stable name of the endpoint (`order.new`, `withdraw`), for logs and metrics.
    pub endpoint: &'static str,
    pub method: String,
    pub path: String,
    pub action: Action,
    /// For a trade, the quote asset of its instrument; for a withdrawal, the asset withdrawn.
    pub asset: Option<String>,
    /// For a trade, its notional in the quote asset when the request alone says it (a limit
    /// order's quantity × price, a market order's quote quantity), `None` for a market order
    /// sized in the base asset (the decider values it at the reference price); for a
    /// withdrawal, the amount withdrawn.
    pub amount: Option<Decimal>,
    pub destination: Option<String>,
    /// A withdrawal's route: on chain (on the network the request names) or internal, and to
    /// what kind of account. The default for everything else.
    pub route: Route,
    /// A trade's order, as the request states it: every classification whose action is
    /// [`Action::Trade`] carries one. Its reference price is `None`: the gateway attaches it.
    pub order: Option<Order>,
    /// The client's own id for the request (an order's or a withdrawal's client id), which
    /// must never repeat.
    pub request_id: Option<String>,
    /// Whether the venue wants the request signed (public market data is not).
    pub signed: bool,
    pub forward: Forward,
}

/// The parts of a venue credential that signing needs. Borrowed from the vault's zeroizing
/// types; never stored here.
#[derive(Clone, Copy)]
pub struct Keys<'a> {
    pub api_key: &'a str,
    pub secret: &'a str,
    pub passphrase: Option<&'a str>,
}

impl std::fmt::Debug for Keys<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Keys { [redacted] }")
    }
}

/// A signed request, ready to send to the venue's base URL.
#[derive(Clone, PartialEq, Eq)]
pub struct Outgoing {
    pub method: String,
    /// Path and query, to append to the venue's base URL.
    pub path_and_query: String,
    pub headers: Vec<(&'static str, String)>,
    pub body: Vec<u8>,
}

impl std::fmt::Debug for Outgoing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Headers carry the API key and signature: not for logs.
        f.debug_struct("Outgoing")
            .field("method", &self.method)
            .field("path", &self.path_and_query.split('?').next())
            .finish_non_exhaustive()
    }
}

/// Where a withdrawal-history read continues.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HistoryPage {
    /// Binance: rows to skip.
    Offset(usize),
    /// OKX: rows before this time.
    Before(i64),
}

/// One thing `keygate doctor` found about a venue key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    pub unsafe_: bool,
    pub text: String,
}

/// Options an operator sets per venue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdapterOptions {
    /// Binance: the quote assets that split a symbol (`BTCUSDT` = BTC / USDT), longest first.
    pub quote_assets: Vec<String>,
    /// GET paths the operator allows as reads, beyond those the adapter knows.
    pub extra_read_paths: Vec<String>,
    /// Binance: the `recvWindow` keygate signs with, in milliseconds.
    pub recv_window_ms: u64,
}

impl Default for AdapterOptions {
    fn default() -> Self {
        Self {
            quote_assets: binance::DEFAULT_QUOTES
                .iter()
                .map(|s| s.to_string())
                .collect(),
            extra_read_paths: vec![],
            recv_window_ms: 5000,
        }
    }
}

/// A venue adapter: a kind and its options.
#[derive(Debug, Clone)]
pub struct Adapter {
    pub kind: VenueKind,
    pub options: AdapterOptions,
}

impl Adapter {
    pub fn new(kind: VenueKind, mut options: AdapterOptions) -> Self {
        // Longest first, so BTCFDUSD splits as BTC / FDUSD, not BTCFD / USD.
        options
            .quote_assets
            .sort_by(|a, b| b.len().cmp(&a.len()).then(a.cmp(b)));
        Self { kind, options }
    }

    /// Classifies a bot's request. An error means keygate must deny it.
    pub fn classify(&self, req: &Request<'_>) -> Result<Classified, ClassifyError> {
        match self.kind {
            VenueKind::Binance => binance::classify(&self.options, req),
            VenueKind::Okx => okx::classify(&self.options, req),
        }
    }

    /// Signs a classified request with the venue credential at `now_ms`.
    pub fn sign(&self, c: &Classified, keys: &Keys<'_>, now_ms: i64) -> Outgoing {
        match self.kind {
            VenueKind::Binance => binance::sign(c, keys, now_ms, self.options.recv_window_ms),
            VenueKind::Okx => okx::sign(c, keys, now_ms),
        }
    }

    /// The signed request for one page of withdrawals since `since_ms` (`page` None for the
    /// first).
    pub fn withdrawal_history(
        &self,
        since_ms: i64,
        page: Option<&HistoryPage>,
        keys: &Keys<'_>,
        now_ms: i64,
    ) -> Outgoing {
        let c = match (self.kind, page) {
            (VenueKind::Binance, Some(HistoryPage::Offset(o))) => {
                binance::history_request(since_ms, *o)
            }
            (VenueKind::Binance, _) => binance::history_request(since_ms, 0),
            (VenueKind::Okx, Some(HistoryPage::Before(t))) => okx::history_request(Some(*t)),
            (VenueKind::Okx, _) => okx::history_request(None),
        };
        self.sign(&c, keys, now_ms)
    }

    /// The page after one that returned `rows`, if the history may hold more since `since_ms`.
    pub fn next_history_page(
        &self,
        since_ms: i64,
        page: Option<&HistoryPage>,
        rows: &[Outflow],
    ) -> Option<HistoryPage> {
        match self.kind {
            VenueKind::Binance => {
                let offset = match page {
                    Some(HistoryPage::Offset(o)) => *o,
                    _ => 0,
                };
                (rows.len() >= binance::HISTORY_PAGE)
                    .then(|| HistoryPage::Offset(offset + rows.len()))
            }
            VenueKind::Okx => {
                let oldest = rows.iter().map(|r| r.at).min()?;
                // One past the oldest, so rows sharing its millisecond are read again (they
                // are judged once: reconciliation knows them).
                (rows.len() >= okx::HISTORY_PAGE && oldest >= since_ms)
                    .then(|| HistoryPage::Before(oldest.saturating_add(1)))
            }
        }
    }

    /// Parses a withdrawal-history answer into the outflows of `venue`.
    pub fn parse_withdrawal_history(
        &self,
        venue: &str,
        body: &[u8],
    ) -> Result<Vec<Outflow>, String> {
        match self.kind {
            VenueKind::Binance => binance::parse_history(venue, body),
            VenueKind::Okx => okx::parse_history(venue, body),
        }
    }

    /// The signed request that reads the key's own restrictions.
    pub fn restrictions(&self, keys: &Keys<'_>, now_ms: i64) -> Outgoing {
        let c = match self.kind {
            VenueKind::Binance => binance::restrictions_request(),
            VenueKind::Okx => okx::restrictions_request(),
        };
        self.sign(&c, keys, now_ms)
    }

    /// What is unsafe about a key, from the answer to [`Adapter::restrictions`].
    pub fn parse_restrictions(&self, body: &[u8]) -> Result<Vec<Finding>, String> {
        match self.kind {
            VenueKind::Binance => binance::parse_restrictions(body),
            VenueKind::Okx => okx::parse_restrictions(body),
        }
    }
}

/// What a trade intent's amount is, in the order's quote asset: a limit order's quantity × price,
/// a market order's quote quantity; `None` for a market order sized in the base asset, whose
/// notional needs the reference price.
pub(crate) fn trade_amount(order: &Order) -> Result<Option<Decimal>, ClassifyError> {
    match (
        order.kind,
        order.price,
        order.quantity,
        order.quote_quantity,
    ) {
        (OrderKind::Limit, Some(price), Some(qty), _) => qty
            .checked_mul(price)
            .map(Some)
            .ok_or_else(|| ClassifyError::Invalid {
                name: "quantity",
                value: qty.to_string(),
                why: "quantity × price is too large".into(),
            }),
        (OrderKind::Market, _, _, Some(quote_qty)) => Ok(Some(quote_qty)),
        _ => Ok(None),
    }
}

/// A positive decimal parameter.
pub(crate) fn positive(name: &'static str, value: &str) -> Result<Decimal, ClassifyError> {
    let invalid = |why: &str| ClassifyError::Invalid {
        name,
        value: value.chars().take(40).collect(),
        why: why.to_string(),
    };
    // Plain decimal notation only: no sign, exponent or spaces.
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        return Err(invalid("write a positive decimal number such as 0.5"));
    }
    let d = Decimal::from_str(value).map_err(|_| invalid("not a decimal number"))?;
    if d <= Decimal::ZERO {
        return Err(invalid("it must be more than zero"));
    }
    Ok(d)
}

/// An asset symbol as intents carry it.
pub(crate) fn asset(name: &'static str, value: &str) -> Result<String, ClassifyError> {
    if !value.is_empty() && value.len() <= 20 && value.bytes().all(|b| b.is_ascii_alphanumeric()) {
        Ok(value.to_ascii_uppercase())
    } else {
        Err(ClassifyError::Invalid {
            name,
            value: value.chars().take(40).collect(),
            why: "an asset is 1-20 letters and digits".into(),
        })
    }
}

/// A destination address (with an optional tag or memo, as `address:tag`).
pub(crate) fn address(name: &'static str, value: &str) -> Result<String, ClassifyError> {
    let ok = !value.is_empty()
        && value.len() <= 200
        && value
            .chars()
            .all(|c| c.is_ascii_graphic() && c != '/' && c != '\\');
    if ok {
        Ok(keygate_core::intent::normalize_address(value))
    } else {
        Err(ClassifyError::Invalid {
            name,
            value: value.chars().take(40).collect(),
            why: "an address is 1-200 printable ASCII characters without spaces or slashes".into(),
        })
    }
}

/// A network or chain name as the venue writes it ("ETH", "USDT-ERC20").
pub(crate) fn network(name: &'static str, value: &str) -> Result<String, ClassifyError> {
    if keygate_core::route::valid_network(value) {
        Ok(value.to_string())
    } else {
        Err(ClassifyError::Invalid {
            name,
            value: value.chars().take(40).collect(),
            why:
                "a network is 1-64 letters, digits, spaces and - _ . ( ), such as ETH or USDT-ERC20"
                    .into(),
        })
    }
}

/// A client-chosen request id: printable ASCII, at most 64 characters.
pub(crate) fn request_id(name: &'static str, value: &str) -> Result<String, ClassifyError> {
    if !value.is_empty() && value.len() <= 64 && value.bytes().all(|b| b.is_ascii_graphic()) {
        Ok(value.to_string())
    } else {
        Err(ClassifyError::Invalid {
            name,
            value: value.chars().take(40).collect(),
            why: "a client id is 1-64 printable ASCII characters".into(),
        })
    }
}

pub(crate) fn hmac_sha256(secret: &str, message: &[u8]) -> [u8; 32] {
    use hmac::{KeyInit, Mac};
    // HMAC takes keys of any length; new_from_slice cannot fail for it.
    let mut mac = match hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()) {
        Ok(m) => m,
        Err(_) => unreachable!("HMAC accepts keys of any length"),
    };
    mac.update(message);
    mac.finalize().into_bytes().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outflow(at: i64) -> Outflow {
        Outflow {
            venue: "v".into(),
            id: at.to_string(),
            asset: "USDT".into(),
            amount: Decimal::ONE,
            destination: "x".into(),
            at,
            reference: None,
        }
    }

    #[test]
    fn history_pages_until_a_short_one_or_the_window_start() {
        let b = Adapter::new(VenueKind::Binance, AdapterOptions::default());
        let full: Vec<Outflow> = (0..1000).map(outflow).collect();
        assert_eq!(
            b.next_history_page(0, None, &full),
            Some(HistoryPage::Offset(1000))
        );
        assert_eq!(
            b.next_history_page(0, Some(&HistoryPage::Offset(1000)), &full),
            Some(HistoryPage::Offset(2000))
        );
        assert_eq!(b.next_history_page(0, None, &full[..999]), None);
        let out = b.withdrawal_history(
            5,
            Some(&HistoryPage::Offset(2000)),
            &Keys {
                api_key: "k",
                secret: "s",
                passphrase: None,
            },
            9,
        );
        assert!(
            out.path_and_query
                .contains("startTime=5&offset=2000&limit=1000"),
            "{out:?} {}",
            out.path_and_query
        );

        let o = Adapter::new(VenueKind::Okx, AdapterOptions::default());
        let full: Vec<Outflow> = (500..600).map(outflow).collect();
        assert_eq!(
            o.next_history_page(0, None, &full),
            Some(HistoryPage::Before(501))
        );
        // The page reaches back past the window's start: no need to read further.
        assert_eq!(o.next_history_page(550, None, &full), None);
        assert_eq!(o.next_history_page(0, None, &full[..99]), None);
        let out = o.withdrawal_history(
            0,
            Some(&HistoryPage::Before(501)),
            &Keys {
                api_key: "k",
                secret: "s",
                passphrase: Some("p"),
            },
            9,
        );
        assert!(
            out.path_and_query.ends_with("?after=501&limit=100"),
            "{}",
            out.path_and_query
        );
    }

    #[test]
    fn keygate_tags_only_withdrawals_without_a_client_id() {
        for kind in [VenueKind::Binance, VenueKind::Okx] {
            let a = Adapter::new(kind, AdapterOptions::default());
            let (path, body) = match kind {
                VenueKind::Binance => (
                    "/sapi/v1/capital/withdraw/apply",
                    "coin=USDT&address=0x1&amount=5".to_string(),
                ),
                VenueKind::Okx => (
                    "/api/v5/asset/withdrawal",
                    r#"{"ccy":"USDT","amt":"5","dest":"4","toAddr":"0x1"}"#.to_string(),
                ),
            };
            let mut c = a
                .classify(&Request {
                    method: "POST",
                    path,
                    query: "",
                    body: body.as_bytes(),
                })
                .unwrap();
            a.tag(&mut c, "kg42");
            assert_eq!(c.request_id.as_deref(), Some("kg42"));
            let out = a.sign(
                &c,
                &Keys {
                    api_key: "k",
                    secret: "s",
                    passphrase: Some("p"),
                },
                0,
            );
            let sent = String::from_utf8(out.body).unwrap();
            assert!(sent.contains("kg42"), "{sent}");
            // A bot's own id stays.
            a.tag(&mut c, "kg43");
            assert_eq!(c.request_id.as_deref(), Some("kg42"));
        }
    }
}
