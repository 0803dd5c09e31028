//! Sub-accounts under a master account, and the master-account endpoints that contain a
//! sub-account's leaked key: IP restriction or deletion of its key, a transfer-out switch, its
//! balances, and transfers of them to the master, idempotent by client transfer id.
//!
//! A master and its sub-accounts are accounts of the configuration (each one key with its own
//! balances), tied together by [`Master`] with [`Sim::new_with_masters`]; a sub-account's
//! balances are those of its key's account. The endpoints check the master key's permissions as
//! the venues document them (Binance: "Enable Spot & Margin Trading" to restrict a key,
//! "internal transfer" to transfer; OKX: Trade for all, and an IP-bound master key to modify or
//! delete a sub-account key), count Binance's UID request weight per minute (180,000) and OKX's
//! per-endpoint rates, and answer in each venue's error shape.
//!
//! IP restrictions are enforced for every request of the simulator ([`ip_refusal`]): a key with
//! `ip_restrict` set is refused from any address not in its list (Binance -2015, OKX 50110), by
//! the connection's real peer address. A request without one (an in-process router) is refused
//! for such a key.
//!
//! For tests: [`Sim::drop_answers`] makes the next calls of an endpoint take effect and then
//! answer HTTP 500, as a lost answer would look; [`Sim::sub_calls`] counts the calls.

pub(crate) mod binance;
pub mod binance_sub_key;
pub(crate) mod okx;

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;

use axum::Json;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::config::{Restrictions, SimConfig, VenueKind};
use crate::state::{Sim, SimError, State};

/// A master account and the sub-accounts it manages.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Master {
    pub venue: VenueKind,
    /// The master account's key, an account of the configuration (its balances are the
    /// master's).
    pub api_key: String,
    pub sub_accounts: Vec<SubAccount>,
}

/// A sub-account: its name at the venue and its key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubAccount {
    /// Binance: the sub-account's email; OKX: its name (`subAcct`).
    pub name: String,
    /// The sub-account's key, an account of the configuration (its balances are the
    /// sub-account's).
    pub api_key: String,
}

/// A transfer from a sub-account to its master, as the simulator recorded it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubTransfer {
    pub venue: VenueKind,
    pub master_key: String,
    pub sub_account: String,
    pub asset: String,
    #[serde(with = "rust_decimal::serde::str")]
    pub amount: Decimal,
    /// OKX: the account it left (`6` funding, `18` trading); Binance: `SPOT`.
    pub from: String,
    /// The client transfer id, when one was sent.
    pub client_id: Option<String>,
    /// The venue's transfer id (Binance `tranId`, OKX `transId`).
    pub id: u64,
    pub time_ms: i64,
}

/// The sub-account part of the simulator's state.
#[derive(Debug, Default)]
pub(crate) struct Subs {
    masters: Vec<Master>,
    transfers: Vec<SubTransfer>,
    /// (master key, client id) -> index in `transfers`.
    by_client: HashMap<(String, String), usize>,
    /// (master key, sub-account) -> whether it may transfer out (OKX; true unless set).
    can_trans_out: HashMap<(String, String), bool>,
    next_transfer: u64,
    /// Binance: (master key, minute) -> UID weight used.
    uid_weight: HashMap<(String, i64), u32>,
    /// OKX: (key, endpoint) -> times of the calls in the current window.
    calls_at: HashMap<(String, &'static str), Vec<i64>>,
    /// Calls per endpoint path (every authenticated call that reached a handler).
    calls: BTreeMap<String, u64>,
    /// Endpoint path -> how many of its next calls take effect and then answer HTTP 500.
    drop: HashMap<String, u32>,
    /// Binance transfers between sub-accounts, made with a sub-account's own key.
    sub_to_sub: Vec<binance_sub_key::SubToSub>,
}

/// Binance's per-minute UID weight limit for `/sapi` endpoints.
pub(crate) const UID_WEIGHT_PER_MINUTE: u32 = 180_000;

impl Subs {
    pub(crate) fn master(&self, venue: VenueKind, api_key: &str) -> Option<&Master> {
        self.masters
            .iter()
            .find(|m| m.venue == venue && m.api_key == api_key)
    }

    /// The key of sub-account `name` of the master `master_key`.
    pub(crate) fn sub_key(&self, venue: VenueKind, master_key: &str, name: &str) -> Option<String> {
        self.master(venue, master_key)?
            .sub_accounts
            .iter()
            .find(|s| s.name == name)
            .map(|s| s.api_key.clone())
    }

    /// The master key and the name of the sub-account whose key is `api_key`.
    pub(crate) fn sub_named(&self, venue: VenueKind, api_key: &str) -> Option<(String, String)> {
        self.masters
            .iter()
            .filter(|m| m.venue == venue)
            .find_map(|m| {
                let s = m.sub_accounts.iter().find(|s| s.api_key == api_key)?;
                Some((m.api_key.clone(), s.name.clone()))
            })
    }

    /// Records a transfer between two sub-accounts; returns its id.
    pub(crate) fn record_sub_to_sub(&mut self, mut t: binance_sub_key::SubToSub) -> u64 {
        self.next_transfer += 1;
        t.id = self.next_transfer;
        self.sub_to_sub.push(t);
        self.next_transfer
    }

    pub(crate) fn sub_to_subs_of(
        &self,
        master_key: &str,
    ) -> impl Iterator<Item = &binance_sub_key::SubToSub> {
        self.sub_to_sub
            .iter()
            .filter(move |t| t.master_key == master_key)
    }

    /// Counts `weight` against the master's minute; false (and nothing counted) if it would go
    /// over Binance's limit.
    pub(crate) fn take_uid_weight(&mut self, master_key: &str, weight: u32, now_ms: i64) -> bool {
        let minute = now_ms.div_euclid(60_000);
        self.uid_weight.retain(|(_, m), _| *m >= minute);
        let used = self
            .uid_weight
            .entry((master_key.to_string(), minute))
            .or_insert(0);
        if used.saturating_add(weight) > UID_WEIGHT_PER_MINUTE {
            return false;
        }
        *used += weight;
        true
    }

    /// Counts a call of an OKX endpoint that allows `requests` per `per_ms`; false (not counted)
    /// if it is over.
    pub(crate) fn take_rate(
        &mut self,
        api_key: &str,
        endpoint: &'static str,
        requests: usize,
        per_ms: i64,
        now_ms: i64,
    ) -> bool {
        let times = self
            .calls_at
            .entry((api_key.to_string(), endpoint))
            .or_default();
        times.retain(|t| now_ms - *t < per_ms);
        if times.len() >= requests {
            return false;
        }
        times.push(now_ms);
        true
    }

    pub(crate) fn count_call(&mut self, path: &str) {
        *self.calls.entry(path.to_string()).or_insert(0) += 1;
    }

    /// Whether this call's answer is to be dropped (it still takes effect).
    pub(crate) fn dropping(&mut self, path: &str) -> bool {
        match self.drop.get_mut(path) {
            Some(n) if *n > 0 => {
                *n -= 1;
                true
            }
            _ => false,
        }
    }

    pub(crate) fn transfer_by_client(
        &self,
        master_key: &str,
        client_id: &str,
    ) -> Option<&SubTransfer> {
        self.by_client
            .get(&(master_key.to_string(), client_id.to_string()))
            .and_then(|&i| self.transfers.get(i))
    }

    pub(crate) fn transfers_of(&self, master_key: &str) -> impl Iterator<Item = &SubTransfer> {
        self.transfers
            .iter()
            .filter(move |t| t.master_key == master_key)
    }

    pub(crate) fn can_trans_out(&self, master_key: &str, sub: &str) -> bool {
        self.can_trans_out
            .get(&(master_key.to_string(), sub.to_string()))
            .copied()
            .unwrap_or(true)
    }

    pub(crate) fn set_trans_out(&mut self, master_key: &str, sub: &str, can: bool) {
        self.can_trans_out
            .insert((master_key.to_string(), sub.to_string()), can);
    }
}

/// Why a transfer was not made.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum TransferError {
    Duplicate,
    Insufficient,
    Unknown,
}

/// What a transfer moves.
pub(crate) struct NewTransfer<'a> {
    pub venue: VenueKind,
    pub master_key: &'a str,
    pub sub_account: &'a str,
    pub sub_key: &'a str,
    pub asset: &'a str,
    pub amount: Decimal,
    pub from: &'a str,
    pub client_id: Option<&'a str>,
}

/// Moves `t.amount` of `t.asset` from the sub-account's key to the master's, once per client
/// id, and records it.
pub(crate) fn transfer(
    state: &mut State,
    t: NewTransfer<'_>,
    now_ms: i64,
) -> Result<SubTransfer, TransferError> {
    if let Some(c) = t.client_id
        && state.subs.transfer_by_client(t.master_key, c).is_some()
    {
        return Err(TransferError::Duplicate);
    }
    let held = state
        .account_mut(t.sub_key)
        .ok_or(TransferError::Unknown)?
        .balances
        .get(t.asset)
        .copied()
        .unwrap_or(Decimal::ZERO);
    if t.amount > held {
        return Err(TransferError::Insufficient);
    }
    state
        .account_mut(t.master_key)
        .ok_or(TransferError::Unknown)?;
    if let Some(sub) = state.account_mut(t.sub_key) {
        sub.balances.insert(t.asset.to_string(), held - t.amount);
    }
    if let Some(master) = state.account_mut(t.master_key) {
        let had = master
            .balances
            .get(t.asset)
            .copied()
            .unwrap_or(Decimal::ZERO);
        master.balances.insert(t.asset.to_string(), had + t.amount);
    }
    let subs = &mut state.subs;
    subs.next_transfer += 1;
    let done = SubTransfer {
        venue: t.venue,
        master_key: t.master_key.to_string(),
        sub_account: t.sub_account.to_string(),
        asset: t.asset.to_string(),
        amount: t.amount,
        from: t.from.to_string(),
        client_id: t.client_id.map(str::to_string),
        id: 90_000_000 + subs.next_transfer,
        time_ms: now_ms,
    };
    if let Some(c) = t.client_id {
        subs.by_client.insert(
            (t.master_key.to_string(), c.to_string()),
            subs.transfers.len(),
        );
    }
    subs.transfers.push(done.clone());
    Ok(done)
}

/// Checks masters against the accounts: each key an account of the master's venue, no key a
/// master and a sub-account or two sub-accounts, sub-account names unique per master.
fn check_masters(config: &SimConfig, masters: &[Master]) -> Result<(), SimError> {
    let bad = |why: String| Err(SimError::SubAccount(why));
    let venue_of = |key: &str| {
        config
            .accounts
            .iter()
            .find(|a| a.api_key == key)
            .map(|a| a.venue)
    };
    let mut seen = std::collections::HashSet::new();
    for m in masters {
        if venue_of(&m.api_key) != Some(m.venue) {
            return bad(format!(
                "master key {:?} is not a {} account of the configuration",
                m.api_key, m.venue
            ));
        }
        if !seen.insert(m.api_key.clone()) {
            return bad(format!("key {:?} is used twice", m.api_key));
        }
        let mut names = std::collections::HashSet::new();
        for s in &m.sub_accounts {
            if s.name.is_empty() || !names.insert(s.name.clone()) {
                return bad(format!(
                    "master {:?}: sub-account name {:?} is empty or given twice",
                    m.api_key, s.name
                ));
            }
            if venue_of(&s.api_key) != Some(m.venue) {
                return bad(format!(
                    "sub-account {:?}: key {:?} is not a {} account of the configuration",
                    s.name, s.api_key, m.venue
                ));
            }
            if !seen.insert(s.api_key.clone()) {
                return bad(format!("key {:?} is used twice", s.api_key));
            }
        }
    }
    Ok(())
}

impl Sim {
    /// A simulator whose accounts include masters with sub-accounts.
    pub fn new_with_masters(config: SimConfig, masters: Vec<Master>) -> Result<Sim, SimError> {
        check_masters(&config, &masters)?;
        let sim = Sim::new(config)?;
        sim.lock().subs.masters = masters;
        Ok(sim)
    }

    /// Transfers from sub-accounts to their masters, oldest first.
    pub fn sub_transfers(&self) -> Vec<SubTransfer> {
        self.lock().subs.transfers.clone()
    }

    /// Binance transfers between sub-accounts (made with a sub-account's key), oldest first.
    pub fn sub_to_subs(&self) -> Vec<binance_sub_key::SubToSub> {
        self.lock().subs.sub_to_sub.clone()
    }

    /// How many authenticated calls reached the sub-account endpoint at `path`.
    pub fn sub_calls(&self, path: &str) -> u64 {
        self.lock().subs.calls.get(path).copied().unwrap_or(0)
    }

    /// Makes the next `n` calls of the sub-account endpoint at `path` take effect and then
    /// answer HTTP 500, as an answer lost on the way would look to the caller.
    pub fn drop_answers(&self, path: &str, n: u32) {
        self.lock().subs.drop.insert(path.to_string(), n);
    }

    /// A key's current restrictions (`None` for an unknown or deleted key).
    pub fn key_restrictions(&self, api_key: &str) -> Option<Restrictions> {
        let mut state = self.lock();
        state.account_mut(api_key).map(|a| a.restrictions.clone())
    }

    /// Whether an OKX sub-account may transfer out (its `canTransOut`).
    pub fn can_transfer_out(&self, master_key: &str, sub_account: &str) -> bool {
        self.lock().subs.can_trans_out(master_key, sub_account)
    }
}

/// The answer for a request whose key is restricted to addresses `peer` is not among, in the
/// venue's error shape; `None` when the request may go on (unknown keys are left to the venue's
/// own checks).
pub(crate) fn ip_refusal(
    sim: &Sim,
    path: &str,
    headers: &HeaderMap,
    peer: Option<IpAddr>,
) -> Option<Response> {
    let okx = path.starts_with("/api/v5/");
    let (venue, header) = if okx {
        (VenueKind::Okx, "OK-ACCESS-KEY")
    } else {
        (VenueKind::Binance, "X-MBX-APIKEY")
    };
    let key = headers.get(header)?.to_str().ok()?;
    let creds = sim.credentials(venue, key)?;
    let r = &creds.restrictions;
    if !r.ip_restrict {
        return None;
    }
    let allowed = peer.is_some_and(|ip| {
        r.ip.iter()
            .any(|a| a.parse::<IpAddr>().is_ok_and(|x| x == ip))
    });
    if allowed {
        return None;
    }
    let shown = peer
        .map(|p| p.to_string())
        .unwrap_or_else(|| "unknown".into());
    Some(if okx {
        (
            StatusCode::UNAUTHORIZED,
            Json(json!({"code": "50110",
                "msg": format!("Your IP {shown} is not included in your API key's IP whitelist."),
                "data": []})),
        )
            .into_response()
    } else {
        (
            StatusCode::UNAUTHORIZED,
            Json(json!({"code": -2015, "msg": "Invalid API-key, IP, or permissions for action."})),
        )
            .into_response()
    })
}
