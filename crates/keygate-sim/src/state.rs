//! The simulator's shared state: accounts and their balances (free, and locked in
//! open orders), the markets and their books, the orders and withdrawals made
//! through it, and the request counter. Placing and cancelling orders is in
//! `trading.rs`.
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

use crate::config::{Account, Market, Restrictions, SimConfig, VenueKind, default_markets};

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
    #[error("market {market}: {why}")]
    BadMarket { market: String, why: String },
    #[error("market {market} is configured more than once")]
    DuplicateMarket { market: String },
    #[error("sub-accounts: {0}")]
    SubAccount(String),
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
    /// Fills against the book up to its price; what is left rests (or expires, for an
    /// immediate-or-cancel or fill-or-kill order) until cancelled.
    Limit,
    /// Walks the book; what the book cannot fill expires.
    Market,
}

/// Where an order stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OrderStatus {
    /// Open, nothing filled (Binance `NEW`, OKX `live`).
    New,
    /// Open, part filled (Binance `PARTIALLY_FILLED`, OKX `partially_filled`).
    PartiallyFilled,
    Filled,
    Canceled,
    /// Closed by its own rules with part or nothing filled: a market order the book could not
    /// fill, an IOC's remainder, a FOK the book could not fill whole (Binance `EXPIRED`; OKX
    /// says `canceled`).
    Expired,
}

impl OrderStatus {
    /// Whether the order is still open (rests on the book).
    pub fn is_open(self) -> bool {
        matches!(self, OrderStatus::New | OrderStatus::PartiallyFilled)
    }
}

/// One fill of an order: a trade against one level of the book.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fill {
    pub trade_id: u64,
    #[serde(with = "rust_decimal::serde::str")]
    pub price: Decimal,
    /// Base quantity.
    #[serde(with = "rust_decimal::serde::str")]
    pub quantity: Decimal,
}

/// An order as the simulator recorded it, with what it filled. Fills move the account's
/// balances at once; what rests of a limit order is locked (a buy's `remaining × price` of the
/// quote asset, a sell's remaining base) until it is cancelled.
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
    /// The type as the venue names it (`LIMIT`, `LIMIT_MAKER`, `MARKET`; `limit`, `ioc`,
    /// `fok`, `market`).
    #[serde(default)]
    pub venue_type: String,
    /// Base quantity; zero for a market order sized in the quote asset.
    #[serde(with = "rust_decimal::serde::str")]
    pub quantity: Decimal,
    /// Binance `quoteOrderQty`, or an OKX market order's `sz` with `tgtCcy` `quote_ccy`, when
    /// the order was sized in the quote asset.
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
    /// Base quantity filled.
    #[serde(default, with = "rust_decimal::serde::str")]
    pub executed_quantity: Decimal,
    /// Quote amount the fills paid (a buy) or received (a sell).
    #[serde(default, with = "rust_decimal::serde::str")]
    pub executed_quote: Decimal,
    /// The fills, in the order they happened (best price first).
    #[serde(default)]
    pub fills: Vec<Fill>,
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
    /// What the account holds of each asset, free and locked in open orders together.
    #[serde(default)]
    pub balances: BTreeMap<String, String>,
    /// The part of `balances` locked in open orders.
    #[serde(default)]
    pub locked: BTreeMap<String, String>,
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
    /// Each account's balances in its `balances` are what is free; `locked` (by the same
    /// index) holds what its open orders lock.
    pub(crate) accounts: Vec<Account>,
    pub(crate) locked: Vec<BTreeMap<String, Decimal>>,
    pub(crate) by_key: HashMap<String, usize>,
    pub(crate) markets: Vec<Market>,
    /// (venue, symbol) -> index in `markets`.
    pub(crate) market_index: HashMap<(VenueKind, String), usize>,
    /// The price of each market's last fill.
    pub(crate) last_price: HashMap<(VenueKind, String), Decimal>,
    pub(crate) orders: Vec<Order>,
    withdrawals: Vec<Withdrawal>,
    pub(crate) next_order_id: u64,
    pub(crate) next_trade_id: u64,
    /// The client order ids of open orders, so placing an order costs the same however many
    /// orders came before it.
    pub(crate) open_ids: std::collections::HashSet<(VenueKind, String, String)>,
    next_withdrawal: u64,
    /// Masters, their sub-accounts and transfers (`crate::subaccount`).
    pub(crate) subs: crate::subaccount::Subs,
}

impl fmt::Debug for Sim {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sim")
            .field("requests", &self.requests())
            .finish_non_exhaustive()
    }
}

impl Sim {
    /// Builds a simulator from its configuration, listing the [`default_markets`].
    ///
    /// Refuses an empty key or secret, an API key used twice (across venues too),
    /// an OKX account without a passphrase, a Binance account with one, and a
    /// negative balance.
    pub fn new(config: SimConfig) -> Result<Sim, SimError> {
        Sim::with_markets(config, default_markets())
    }

    /// Builds a simulator listing `markets`. Refuses what [`Sim::new`] refuses, and a market
    /// listed twice, a base or quote that is not 1-20 upper-case letters and digits, a price or
    /// quantity that is not positive, bids not strictly descending or asks not strictly
    /// ascending, and a crossed book (best bid at or above best ask).
    pub fn with_markets(config: SimConfig, markets: Vec<Market>) -> Result<Sim, SimError> {
        let market_index = index_markets(&markets)?;
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
                    locked: vec![BTreeMap::new(); config.accounts.len()],
                    accounts: config.accounts,
                    by_key,
                    markets,
                    market_index,
                    last_price: HashMap::new(),
                    orders: Vec::new(),
                    withdrawals: Vec::new(),
                    next_order_id: 1,
                    next_trade_id: 1,
                    open_ids: std::collections::HashSet::new(),
                    next_withdrawal: 1,
                    subs: Default::default(),
                }),
            }),
        })
    }

    /// How many HTTP requests reached the simulator, rejected ones and unknown
    /// paths included. `GET /_sim/state` itself is not counted, so a benchmark
    /// that reads the count over HTTP does not disturb it, nor are the book
    /// tickers (keygate reads them for reference prices on its own schedule).
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

    /// What the account of `api_key` holds of `asset`, free and locked in open orders
    /// together: `None` for an unknown key, zero for an asset the account never held.
    pub fn balance(&self, api_key: &str, asset: &str) -> Option<Decimal> {
        let state = self.lock();
        let index = *state.by_key.get(api_key)?;
        let free = state.free_of(index, asset);
        let locked = state.locked_of(index, asset);
        Some(free.checked_add(locked).unwrap_or(Decimal::MAX))
    }

    /// The part of [`Sim::balance`] that is free to trade or withdraw.
    pub fn free(&self, api_key: &str, asset: &str) -> Option<Decimal> {
        let state = self.lock();
        let index = *state.by_key.get(api_key)?;
        Some(state.free_of(index, asset))
    }

    /// The part of [`Sim::balance`] locked in open orders.
    pub fn locked(&self, api_key: &str, asset: &str) -> Option<Decimal> {
        let state = self.lock();
        let index = *state.by_key.get(api_key)?;
        Some(state.locked_of(index, asset))
    }

    /// The markets listed, in the order configured.
    pub fn markets(&self) -> Vec<Market> {
        self.lock().markets.clone()
    }

    /// Everything at once, as served by `GET /_sim/state`.
    pub fn snapshot(&self) -> SimSnapshot {
        let state = self.lock();
        SimSnapshot {
            requests: self.requests(),
            accounts: state
                .accounts
                .iter()
                .enumerate()
                .map(|(i, a)| AccountView {
                    venue: a.venue,
                    api_key: a.api_key.clone(),
                    balances: state
                        .totals(i)
                        .into_iter()
                        .map(|(asset, amount)| (asset, amount.to_string()))
                        .collect(),
                    locked: state.locked[i]
                        .iter()
                        .filter(|(_, amount)| !amount.is_zero())
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

/// A withdrawal that could not be made.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum WithdrawError {
    InsufficientBalance,
}

impl State {
    /// The account of `api_key`, to change (sub-account endpoints).
    pub(crate) fn account_mut(&mut self, api_key: &str) -> Option<&mut Account> {
        let index = *self.by_key.get(api_key)?;
        self.accounts.get_mut(index)
    }

    /// Makes `api_key` unknown from now on (a deleted key); its account stays.
    pub(crate) fn forget_key(&mut self, api_key: &str) -> bool {
        self.by_key.remove(api_key).is_some()
    }

    pub fn balances(&self, api_key: &str) -> BTreeMap<String, Decimal> {
        self.by_key
            .get(api_key)
            .map(|&i| self.accounts[i].balances.clone())
            .unwrap_or_default()
    }

    /// Every asset `api_key` holds or has held, with what is free and what open orders lock.
    pub fn holdings(&self, api_key: &str) -> BTreeMap<String, (Decimal, Decimal)> {
        let Some(&i) = self.by_key.get(api_key) else {
            return BTreeMap::new();
        };
        let mut out: BTreeMap<String, (Decimal, Decimal)> = self.accounts[i]
            .balances
            .iter()
            .map(|(asset, free)| (asset.clone(), (*free, Decimal::ZERO)))
            .collect();
        for (asset, locked) in &self.locked[i] {
            out.entry(asset.clone())
                .or_insert((Decimal::ZERO, Decimal::ZERO))
                .1 = *locked;
        }
        out
    }

    pub(crate) fn free_of(&self, index: usize, asset: &str) -> Decimal {
        self.accounts[index]
            .balances
            .get(asset)
            .copied()
            .unwrap_or(Decimal::ZERO)
    }

    pub(crate) fn locked_of(&self, index: usize, asset: &str) -> Decimal {
        self.locked[index]
            .get(asset)
            .copied()
            .unwrap_or(Decimal::ZERO)
    }

    /// Free and locked together, by asset.
    fn totals(&self, index: usize) -> BTreeMap<String, Decimal> {
        let mut out = self.accounts[index].balances.clone();
        for (asset, amount) in &self.locked[index] {
            let entry = out.entry(asset.clone()).or_insert(Decimal::ZERO);
            *entry = entry.checked_add(*amount).unwrap_or(Decimal::MAX);
        }
        out
    }

    /// The market `symbol` of `venue`, if listed.
    pub fn market(&self, venue: VenueKind, symbol: &str) -> Option<&Market> {
        self.market_index
            .get(&(venue, symbol.to_string()))
            .map(|&i| &self.markets[i])
    }

    /// The price of the last fill in a market, if any.
    pub fn last_price(&self, venue: VenueKind, symbol: &str) -> Option<Decimal> {
        self.last_price.get(&(venue, symbol.to_string())).copied()
    }

    /// Open orders of `api_key`, oldest first.
    pub fn open_orders(&self, venue: VenueKind, api_key: &str) -> Vec<Order> {
        self.orders
            .iter()
            .filter(|o| o.venue == venue && o.api_key == api_key && o.status.is_open())
            .cloned()
            .collect()
    }

    /// Every order of `api_key` (open, filled, cancelled), oldest first: the order history.
    pub fn orders_of(&self, venue: VenueKind, api_key: &str) -> Vec<Order> {
        self.orders
            .iter()
            .filter(|o| o.venue == venue && o.api_key == api_key)
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

/// Checks each market and indexes them by (venue, symbol).
fn index_markets(markets: &[Market]) -> Result<HashMap<(VenueKind, String), usize>, SimError> {
    let mut index = HashMap::new();
    for (i, m) in markets.iter().enumerate() {
        let name = format!("{} {}", m.venue, m.symbol());
        check_market(m).map_err(|why| SimError::BadMarket {
            market: name.clone(),
            why,
        })?;
        if index.insert((m.venue, m.symbol()), i).is_some() {
            return Err(SimError::DuplicateMarket { market: name });
        }
    }
    Ok(index)
}

/// What is wrong with a market, if anything.
fn check_market(m: &Market) -> Result<(), String> {
    let asset_ok = |a: &str| {
        (1..=20).contains(&a.len())
            && a.bytes()
                .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
    };
    if !asset_ok(&m.base) || !asset_ok(&m.quote) {
        return Err("base and quote are 1-20 upper-case letters and digits".into());
    }
    let levels = m.bids.iter().chain(&m.asks);
    if levels
        .clone()
        .any(|l| l.price <= Decimal::ZERO || l.quantity <= Decimal::ZERO)
    {
        return Err("every level's price and quantity must be more than zero".into());
    }
    if m.bids.windows(2).any(|w| w[0].price <= w[1].price) {
        return Err("bids must be best (highest) first, each price below the one before".into());
    }
    if m.asks.windows(2).any(|w| w[0].price >= w[1].price) {
        return Err("asks must be best (lowest) first, each price above the one before".into());
    }
    if let (Some(bid), Some(ask)) = (m.bids.first(), m.asks.first())
        && bid.price >= ask.price
    {
        return Err(format!(
            "the book is crossed: best bid {} is not below best ask {}",
            bid.price, ask.price
        ));
    }
    Ok(())
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
    fn markets_are_checked() {
        use crate::config::{Level, Market};
        let market = || Market {
            venue: VenueKind::Binance,
            base: "BTC".into(),
            quote: "USDT".into(),
            bids: vec![
                Level::new(dec("99"), dec("1")),
                Level::new(dec("98"), dec("1")),
            ],
            asks: vec![Level::new(dec("101"), dec("1"))],
        };
        assert!(Sim::with_markets(config(), vec![market()]).is_ok());
        // An empty side is an illiquid market, not an error.
        let mut m = market();
        m.asks.clear();
        assert!(Sim::with_markets(config(), vec![m]).is_ok());
        let bad = |m: Market| match Sim::with_markets(config(), vec![m]) {
            Err(SimError::BadMarket { why, .. }) => why,
            other => panic!("{other:?}"),
        };
        let mut m = market();
        m.bids.reverse();
        assert!(bad(m).contains("bids"));
        let mut m = market();
        m.asks.push(Level::new(dec("100"), dec("1")));
        assert!(bad(m).contains("asks"));
        let mut m = market();
        m.asks[0].price = dec("99");
        assert!(bad(m).contains("crossed"));
        let mut m = market();
        m.bids[1].quantity = Decimal::ZERO;
        assert!(bad(m).contains("more than zero"));
        let mut m = market();
        m.base = "btc".into();
        assert!(bad(m).contains("upper-case"));
        assert!(matches!(
            Sim::with_markets(config(), vec![market(), market()]),
            Err(SimError::DuplicateMarket { .. })
        ));
        // The same instrument at the other venue is another market.
        let mut okx = market();
        okx.venue = VenueKind::Okx;
        let sim = Sim::with_markets(config(), vec![market(), okx]).unwrap();
        assert_eq!(sim.markets().len(), 2);
        assert_eq!(
            sim.lock().market(VenueKind::Okx, "BTC-USDT").unwrap().base,
            "BTC"
        );
        assert!(sim.lock().market(VenueKind::Okx, "BTCUSDT").is_none());
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
