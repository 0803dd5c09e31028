//! The simulator's shared state: accounts and their balances, the orders and
//! withdrawals made through it, and the request counter.
//!
//! `Sim` is a cheap handle (an `Arc`) onto one mutex-guarded `State`. The lock is
//! never held across an `.await`, and a poisoned lock is recovered rather than
//! turned into a panic (the state is only ever changed by complete assignments).

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::config::{Account, Restrictions, SimConfig, VenueKind};

/// Why a configuration was refused by [`Sim::new`].
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SimError {
    #[error("account #{index}: api_key is empty")]
    EmptyApiKey { index: usize },
    #[error("account {api_key:?}: secret is empty")]
    EmptySecret { api_key: String },
    #[error("api_key {api_key:?} is configured more than once")]
    DuplicateApiKey { api_key: String },
    #[error("OKX account {api_key:?} has no passphrase")]
    MissingPassphrase { api_key: String },
    #[error("Binance account {api_key:?} has a passphrase; Binance keys have none")]
    UnexpectedPassphrase { api_key: String },
    #[error("account {api_key:?}: balance of {asset:?} is negative")]
    NegativeBalance { api_key: String, asset: String },
}

/// Buy or sell.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Side {
    Buy,
    Sell,
}

/// The order types the simulator accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OrderType {
    /// Rests on the (imaginary) book as `New` until cancelled.
    Limit,
    /// Recorded as `Filled` at once.
    Market,
}

/// Where an order stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OrderStatus {
    /// Open (Binance `NEW`, OKX `live`).
    New,
    Filled,
    Canceled,
}

/// An order as the simulator recorded it.
///
/// Orders never move balances: a limit order only rests, a market order is marked
/// filled without a price (the simulator has no market data).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Order {
    pub venue: VenueKind,
    pub api_key: String,
    pub id: u64,
    /// Binance `clientOrderId` (generated when not sent) or OKX `clOrdId`
    /// (empty when not sent).
    pub client_order_id: String,
    /// Binance `symbol` (`BTCUSDT`) or OKX `instId` (`BTC-USDT`).
    pub symbol: String,
    pub side: Side,
    #[serde(rename = "type")]
    pub order_type: OrderType,
    /// Base quantity; zero for a Binance market order sent with `quoteOrderQty` only.
    #[serde(with = "rust_decimal::serde::str")]
    pub quantity: Decimal,
    /// Binance `quoteOrderQty`, when the order was sized in the quote asset.
    #[serde(default, with = "rust_decimal::serde::str_option")]
    pub quote_quantity: Option<Decimal>,
    /// Limit price; `None` for market orders.
    #[serde(default, with = "rust_decimal::serde::str_option")]
    pub price: Option<Decimal>,
    /// Binance `timeInForce` (`GTC`, `IOC`, `FOK`), when sent.
    #[serde(default)]
    pub time_in_force: Option<String>,
    /// OKX `tdMode` (`cash`, ...).
    #[serde(default)]
    pub td_mode: Option<String>,
    pub status: OrderStatus,
    /// When the order was placed, ms since the Unix epoch.
    pub time_ms: i64,
    /// When the order last changed, ms since the Unix epoch.
    pub update_time_ms: i64,
}

/// A withdrawal as the simulator recorded it (always immediately "completed").
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Withdrawal {
    pub venue: VenueKind,
    pub api_key: String,
    /// Binance `id` (32 hex digits) or OKX `wdId` (digits).
    pub id: String,
    /// Binance `coin` or OKX `ccy`.
    pub coin: String,
    /// Binance `network` or OKX `chain`, when sent.
    #[serde(default)]
    pub network: Option<String>,
    /// Binance `address` or OKX `toAddr`.
    pub address: String,
    #[serde(with = "rust_decimal::serde::str")]
    pub amount: Decimal,
    /// Binance `withdrawOrderId` or OKX `clientId`, when sent.
    #[serde(default)]
    pub client_id: Option<String>,
    /// When the withdrawal was applied for, ms since the Unix epoch.
    pub time_ms: i64,
}

/// One account as shown by [`Sim::snapshot`]: no secret, no passphrase.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountView {
    pub venue: VenueKind,
    pub api_key: String,
    #[serde(default)]
    pub balances: BTreeMap<String, String>,
}

/// Everything a test can inspect, also served as JSON at `GET /_sim/state`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SimSnapshot {
    /// Requests counted so far (see [`Sim::requests`]).
    pub requests: u64,
    pub accounts: Vec<AccountView>,
    /// In the order they were placed.
    pub orders: Vec<Order>,
    /// In the order they were applied for.
    pub withdrawals: Vec<Withdrawal>,
}

/// The credentials and permissions of one key, copied out of the state so that
/// signature checks run without holding the lock.
#[derive(Clone)]
pub(crate) struct Credentials {
    pub secret: String,
    pub passphrase: Option<String>,
    pub restrictions: Restrictions,
    /// Position of the account in the configuration (stable, used for ids).
    pub index: usize,
}

/// A handle on one simulator. Cloning it is cheap and every clone sees the same
/// state.
#[derive(Clone)]
pub struct Sim {
    inner: Arc<Inner>,
}

struct Inner {
    requests: AtomicU64,
    started_ms: i64,
    state: Mutex<State>,
}

pub(crate) struct State {
    accounts: Vec<Account>,
    by_key: HashMap<String, usize>,
    orders: Vec<Order>,
    withdrawals: Vec<Withdrawal>,
    next_order_id: u64,
    /// The client order ids of open orders, so placing an order costs the same however many
    /// orders came before it.
    open_ids: std::collections::HashSet<(VenueKind, String, String)>,
    next_withdrawal: u64,
}

impl fmt::Debug for Sim {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sim")
            .field("requests", &self.requests())
            .finish_non_exhaustive()
    }
}

impl Sim {
    /// Builds a simulator from its configuration.
    ///
    /// Refuses an empty key or secret, an API key used twice (across venues too),
    /// an OKX account without a passphrase, a Binance account with one, and a
    /// negative balance.
    pub fn new(config: SimConfig) -> Result<Sim, SimError> {
        let mut by_key = HashMap::new();
        for (index, account) in config.accounts.iter().enumerate() {
            if account.api_key.is_empty() {
                return Err(SimError::EmptyApiKey { index });
            }
            let api_key = account.api_key.clone();
            if account.secret.is_empty() {
                return Err(SimError::EmptySecret { api_key });
            }
            match (account.venue, &account.passphrase) {
                (VenueKind::Okx, None) => return Err(SimError::MissingPassphrase { api_key }),
                (VenueKind::Binance, Some(_)) => {
                    return Err(SimError::UnexpectedPassphrase { api_key });
                }
                _ => {}
            }
            if let Some((asset, _)) = account.balances.iter().find(|(_, a)| a.is_sign_negative()) {
                return Err(SimError::NegativeBalance {
                    api_key,
                    asset: asset.clone(),
                });
            }
            if by_key.insert(api_key.clone(), index).is_some() {
                return Err(SimError::DuplicateApiKey { api_key });
            }
        }
        Ok(Sim {
            inner: Arc::new(Inner {
                requests: AtomicU64::new(0),
                started_ms: crate::now_ms(),
                state: Mutex::new(State {
                    accounts: config.accounts,
                    by_key,
                    orders: Vec::new(),
                    withdrawals: Vec::new(),
                    next_order_id: 1,
                    open_ids: std::collections::HashSet::new(),
                    next_withdrawal: 1,
                }),
            }),
        })
    }

    /// How many HTTP requests reached the simulator, rejected ones and unknown
    /// paths included. `GET /_sim/state` itself is not counted, so a benchmark
    /// that reads the count over HTTP does not disturb it.
    pub fn requests(&self) -> u64 {
        self.inner.requests.load(Ordering::Relaxed)
    }

    /// All withdrawals, oldest first.
    pub fn withdrawals(&self) -> Vec<Withdrawal> {
        self.lock().withdrawals.clone()
    }

    /// All orders, oldest first, with their current status.
    pub fn orders(&self) -> Vec<Order> {
        self.lock().orders.clone()
    }

    /// The balance of `asset` in the account of `api_key`: `None` for an unknown
    /// key, zero for an asset the account never held.
    pub fn balance(&self, api_key: &str, asset: &str) -> Option<Decimal> {
        let state = self.lock();
        let index = *state.by_key.get(api_key)?;
        Some(
            state.accounts[index]
                .balances
                .get(asset)
                .copied()
                .unwrap_or(Decimal::ZERO),
        )
    }

    /// Everything at once, as served by `GET /_sim/state`.
    pub fn snapshot(&self) -> SimSnapshot {
        let state = self.lock();
        SimSnapshot {
            requests: self.requests(),
            accounts: state
                .accounts
                .iter()
                .map(|a| AccountView {
                    venue: a.venue,
                    api_key: a.api_key.clone(),
                    balances: a
                        .balances
                        .iter()
                        .map(|(asset, amount)| (asset.clone(), amount.to_string()))
                        .collect(),
                })
                .collect(),
            orders: state.orders.clone(),
            withdrawals: state.withdrawals.clone(),
        }
    }

    pub(crate) fn count_request(&self) {
        self.inner.requests.fetch_add(1, Ordering::Relaxed);
    }

    /// When this simulator was built, ms since the Unix epoch (reported as the
    /// keys' creation time).
    pub(crate) fn started_ms(&self) -> i64 {
        self.inner.started_ms
    }

    /// The credentials of `api_key`, if it is a key of `venue`.
    pub(crate) fn credentials(&self, venue: VenueKind, api_key: &str) -> Option<Credentials> {
        let state = self.lock();
        let index = *state.by_key.get(api_key)?;
        let account = &state.accounts[index];
        (account.venue == venue).then(|| Credentials {
            secret: account.secret.clone(),
            passphrase: account.passphrase.clone(),
            restrictions: account.restrictions.clone(),
            index,
        })
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        self.inner
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// What a new order needs; the state assigns the id, status and times.
pub(crate) struct NewOrder {
    pub venue: VenueKind,
    pub api_key: String,
    /// `None`: generate one (Binance); OKX passes `Some("")` for "not sent".
    pub client_order_id: Option<String>,
    pub symbol: String,
    pub side: Side,
    pub order_type: OrderType,
    pub quantity: Decimal,
    pub quote_quantity: Option<Decimal>,
    pub price: Option<Decimal>,
    pub time_in_force: Option<String>,
    pub td_mode: Option<String>,
}

/// How a cancel names its order.
pub(crate) enum OrderRef<'a> {
    Id(u64),
    ClientId(&'a str),
    /// Binance may send both; they must name the same order.
    Both(u64, &'a str),
}

/// A withdrawal that could not be made.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum WithdrawError {
    InsufficientBalance,
}

/// Placing an order failed because an open order of the account already has
/// that client order id.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct DuplicateClientOrderId;

impl State {
    pub fn balances(&self, api_key: &str) -> BTreeMap<String, Decimal> {
        self.by_key
            .get(api_key)
            .map(|&i| self.accounts[i].balances.clone())
            .unwrap_or_default()
    }

    pub fn place_order(
        &mut self,
        order: NewOrder,
        now_ms: i64,
    ) -> Result<Order, DuplicateClientOrderId> {
        let id = self.next_order_id;
        let client_order_id = match order.client_order_id {
            Some(given) => given,
            None => format!("sim{id:019}"),
        };
        let key = (order.venue, order.api_key.clone(), client_order_id.clone());
        if !client_order_id.is_empty() && self.open_ids.contains(&key) {
            return Err(DuplicateClientOrderId);
        }
        self.next_order_id += 1;
        let status = match order.order_type {
            OrderType::Limit => OrderStatus::New,
            OrderType::Market => OrderStatus::Filled,
        };
        let placed = Order {
            venue: order.venue,
            api_key: order.api_key,
            id,
            client_order_id,
            symbol: order.symbol,
            side: order.side,
            order_type: order.order_type,
            quantity: order.quantity,
            quote_quantity: order.quote_quantity,
            price: order.price,
            time_in_force: order.time_in_force,
            td_mode: order.td_mode,
            status,
            time_ms: now_ms,
            update_time_ms: now_ms,
        };
        if status == OrderStatus::New {
            self.open_ids.insert(key);
        }
        self.orders.push(placed.clone());
        Ok(placed)
    }

    /// Cancels an open order of `api_key` on `symbol`; `None` when there is no
    /// such open order (unknown, of another account or symbol, filled or already
    /// cancelled).
    pub fn cancel_order(
        &mut self,
        venue: VenueKind,
        api_key: &str,
        symbol: &str,
        by: OrderRef<'_>,
        now_ms: i64,
    ) -> Option<Order> {
        let order = self.orders.iter_mut().find(|o| {
            o.venue == venue
                && o.api_key == api_key
                && o.symbol == symbol
                && o.status == OrderStatus::New
                && match by {
                    OrderRef::Id(id) => o.id == id,
                    OrderRef::ClientId(client) => o.client_order_id == client,
                    OrderRef::Both(id, client) => o.id == id && o.client_order_id == client,
                }
        })?;
        order.status = OrderStatus::Canceled;
        order.update_time_ms = now_ms;
        let done = order.clone();
        self.open_ids.remove(&(
            done.venue,
            done.api_key.clone(),
            done.client_order_id.clone(),
        ));
        Some(done)
    }

    /// Open orders of `api_key`, oldest first.
    pub fn open_orders(&self, venue: VenueKind, api_key: &str) -> Vec<Order> {
        self.orders
            .iter()
            .filter(|o| o.venue == venue && o.api_key == api_key && o.status == OrderStatus::New)
            .cloned()
            .collect()
    }

    /// Withdrawals of `api_key`, oldest first.
    pub fn withdrawals_of(&self, venue: VenueKind, api_key: &str) -> Vec<Withdrawal> {
        self.withdrawals
            .iter()
            .filter(|w| w.venue == venue && w.api_key == api_key)
            .cloned()
            .collect()
    }

    /// Takes `amount` of `coin` out of the account and records the withdrawal.
    #[allow(clippy::too_many_arguments)]
    pub fn withdraw(
        &mut self,
        venue: VenueKind,
        api_key: &str,
        coin: &str,
        network: Option<String>,
        address: &str,
        amount: Decimal,
        client_id: Option<String>,
        now_ms: i64,
    ) -> Result<Withdrawal, WithdrawError> {
        let index = *self
            .by_key
            .get(api_key)
            .ok_or(WithdrawError::InsufficientBalance)?;
        let balances = &mut self.accounts[index].balances;
        let held = balances.get(coin).copied().unwrap_or(Decimal::ZERO);
        if amount > held {
            return Err(WithdrawError::InsufficientBalance);
        }
        balances.insert(coin.to_string(), held - amount);

        let n = self.next_withdrawal;
        self.next_withdrawal += 1;
        let id = match venue {
            // Binance ids look like 32 hex digits.
            VenueKind::Binance => {
                let digest = Sha256::digest(format!("keygate-sim withdrawal {n}").as_bytes());
                hex::encode(&digest[..16])
            }
            // OKX wdIds are decimal digits.
            VenueKind::Okx => (10_000_000 + n).to_string(),
        };
        let withdrawal = Withdrawal {
            venue,
            api_key: api_key.to_string(),
            id,
            coin: coin.to_string(),
            network,
            address: address.to_string(),
            amount,
            client_id,
            time_ms: now_ms,
        };
        self.withdrawals.push(withdrawal.clone());
        Ok(withdrawal)
    }
}

/// A made-up transaction hash for a withdrawal, stable for its id.
pub(crate) fn fake_tx_id(withdrawal_id: &str) -> String {
    let digest = Sha256::digest(format!("keygate-sim tx {withdrawal_id}").as_bytes());
    format!("0x{}", hex::encode(digest))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    fn dec(s: &str) -> Decimal {
        Decimal::from_str(s).unwrap()
    }

    fn config() -> SimConfig {
        SimConfig::from_json(
            r#"{"accounts":[
                {"venue":"binance","api_key":"b1","secret":"s","balances":{"BTC":"1"}},
                {"venue":"okx","api_key":"o1","secret":"s","passphrase":"p","balances":{"USDT":"100"}}
            ]}"#,
        )
        .unwrap()
    }

    #[test]
    fn new_refuses_bad_configurations() {
        let mut c = config();
        c.accounts[1].api_key = "b1".into();
        assert_eq!(
            Sim::new(c).unwrap_err(),
            SimError::DuplicateApiKey {
                api_key: "b1".into()
            }
        );

        let mut c = config();
        c.accounts[1].passphrase = None;
        assert_eq!(
            Sim::new(c).unwrap_err(),
            SimError::MissingPassphrase {
                api_key: "o1".into()
            }
        );

        let mut c = config();
        c.accounts[0].passphrase = Some("x".into());
        assert!(matches!(
            Sim::new(c).unwrap_err(),
            SimError::UnexpectedPassphrase { .. }
        ));

        let mut c = config();
        c.accounts[0].secret.clear();
        assert!(matches!(
            Sim::new(c).unwrap_err(),
            SimError::EmptySecret { .. }
        ));

        let mut c = config();
        c.accounts[0].api_key.clear();
        assert_eq!(Sim::new(c).unwrap_err(), SimError::EmptyApiKey { index: 0 });

        let mut c = config();
        c.accounts[0].balances.insert("ETH".into(), dec("-1"));
        assert!(matches!(
            Sim::new(c).unwrap_err(),
            SimError::NegativeBalance { .. }
        ));

        assert!(Sim::new(config()).is_ok());
    }

    #[test]
    fn credentials_are_per_venue() {
        let sim = Sim::new(config()).unwrap();
        assert!(sim.credentials(VenueKind::Binance, "b1").is_some());
        assert!(sim.credentials(VenueKind::Okx, "b1").is_none());
        assert!(sim.credentials(VenueKind::Okx, "o1").is_some());
        assert!(sim.credentials(VenueKind::Binance, "nope").is_none());
    }

    #[test]
    fn withdraw_moves_balance_and_refuses_overdraft() {
        let sim = Sim::new(config()).unwrap();
        let w = sim
            .lock()
            .withdraw(
                VenueKind::Binance,
                "b1",
                "BTC",
                None,
                "addr",
                dec("0.4"),
                None,
                5,
            )
            .unwrap();
        assert_eq!(w.id.len(), 32);
        assert_eq!(sim.balance("b1", "BTC"), Some(dec("0.6")));
        assert_eq!(
            sim.lock().withdraw(
                VenueKind::Binance,
                "b1",
                "BTC",
                None,
                "addr",
                dec("0.6000001"),
                None,
                6
            ),
            Err(WithdrawError::InsufficientBalance)
        );
        assert_eq!(
            sim.lock().withdraw(
                VenueKind::Binance,
                "b1",
                "ETH",
                None,
                "addr",
                dec("0.1"),
                None,
                6
            ),
            Err(WithdrawError::InsufficientBalance)
        );
        assert_eq!(sim.balance("b1", "BTC"), Some(dec("0.6")));
        assert_eq!(sim.balance("b1", "ETH"), Some(Decimal::ZERO));
        assert_eq!(sim.balance("nobody", "BTC"), None);
        assert_eq!(sim.withdrawals().len(), 1);
    }

    fn limit(client: Option<&str>) -> NewOrder {
        NewOrder {
            venue: VenueKind::Binance,
            api_key: "b1".into(),
            client_order_id: client.map(str::to_string),
            symbol: "BTCUSDT".into(),
            side: Side::Buy,
            order_type: OrderType::Limit,
            quantity: dec("1"),
            quote_quantity: None,
            price: Some(dec("100")),
            time_in_force: Some("GTC".into()),
            td_mode: None,
        }
    }

    #[test]
    fn client_order_ids_are_unique_among_open_orders_only() {
        let sim = Sim::new(config()).unwrap();
        let mut state = sim.lock();
        let first = state.place_order(limit(Some("c1")), 1).unwrap();
        assert_eq!(first.status, OrderStatus::New);
        assert_eq!(
            state.place_order(limit(Some("c1")), 2),
            Err(DuplicateClientOrderId)
        );
        let generated = state.place_order(limit(None), 3).unwrap();
        assert!(generated.client_order_id.starts_with("sim"));
        assert_ne!(generated.id, first.id);

        // Wrong symbol: not found.
        assert!(
            state
                .cancel_order(
                    VenueKind::Binance,
                    "b1",
                    "ETHUSDT",
                    OrderRef::Id(first.id),
                    4
                )
                .is_none()
        );
        // Id and client id naming different orders: not found.
        assert!(
            state
                .cancel_order(
                    VenueKind::Binance,
                    "b1",
                    "BTCUSDT",
                    OrderRef::Both(generated.id, "c1"),
                    4
                )
                .is_none()
        );
        let canceled = state
            .cancel_order(
                VenueKind::Binance,
                "b1",
                "BTCUSDT",
                OrderRef::ClientId("c1"),
                4,
            )
            .unwrap();
        assert_eq!(canceled.status, OrderStatus::Canceled);
        assert_eq!(canceled.update_time_ms, 4);
        // Cancelling twice fails; the id is free again.
        assert!(
            state
                .cancel_order(
                    VenueKind::Binance,
                    "b1",
                    "BTCUSDT",
                    OrderRef::Id(first.id),
                    5
                )
                .is_none()
        );
        assert!(state.place_order(limit(Some("c1")), 6).is_ok());
        assert_eq!(state.open_orders(VenueKind::Binance, "b1").len(), 2);
        assert!(state.open_orders(VenueKind::Okx, "b1").is_empty());
    }

    #[test]
    fn snapshot_shows_no_secrets() {
        let sim = Sim::new(config()).unwrap();
        let json = serde_json::to_string(&sim.snapshot()).unwrap();
        assert!(json.contains("\"b1\""));
        assert!(!json.contains("secret"));
        assert!(!json.contains("passphrase"));
        let back: SimSnapshot = serde_json::from_str(&json).unwrap();
        assert_eq!(back.accounts[1].balances["USDT"], "100");
    }
}
