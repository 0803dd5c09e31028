//! Binance's sub-account endpoints called with a sub-account's own key, after Binance's docs
//! (pages in docs/containment.md):
//!
//! - `POST /sapi/v1/sub-account/transfer/subToSub` (IP weight 1): `toEmail` (a sub-account of
//!   the same master), `asset`, `amount`; the key needs "Enable Spot & Margin Trading";
//!   answers `{"txnId": "…"}`;
//! - `GET /sapi/v1/sub-account/transfer/subUserHistory` (IP weight 1): `type` (1 in, 2 out;
//!   out when absent), `asset`, `startTime`, `endTime`, `limit` (500 by default); the
//!   sub-account's transfers with other sub-accounts and with its master (the master's sweeps
//!   among them), oldest first.

use std::collections::HashMap;

use rust_decimal::Decimal;
use serde_json::{Value, json};

use super::binance::{Fail, get, invalid, no_permission, required};
use crate::config::VenueKind;
use crate::state::{Credentials, Sim};
use crate::{now_ms, parse_amount};

/// The endpoints served to a sub-account's own key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BinanceSubKey {
    SubToSub,
    History,
}

impl BinanceSubKey {
    pub(crate) fn route(method: &str, path: &str) -> Option<BinanceSubKey> {
        Some(match (method, path) {
            ("POST", "/sapi/v1/sub-account/transfer/subToSub") => Self::SubToSub,
            ("GET", "/sapi/v1/sub-account/transfer/subUserHistory") => Self::History,
            _ => return None,
        })
    }
}

/// A transfer between two sub-accounts of one master.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubToSub {
    pub id: u64,
    pub master_key: String,
    pub from: String,
    pub to: String,
    pub asset: String,
    pub amount: Decimal,
    pub time_ms: i64,
}

/// Serves one authenticated call with a sub-account's key.
pub(crate) fn handle(
    sim: &Sim,
    endpoint: BinanceSubKey,
    api_key: &str,
    credentials: &Credentials,
    params: &HashMap<String, String>,
) -> Result<Value, Fail> {
    let mut state = sim.lock();
    let (master, email) = state
        .subs
        .sub_named(VenueKind::Binance, api_key)
        .ok_or_else(no_permission)?;
    match endpoint {
        BinanceSubKey::SubToSub if !credentials.restrictions.enable_spot_and_margin_trading => {
            Err(no_permission())
        }
        BinanceSubKey::SubToSub => {
            let to = required(params, "toEmail")?.to_string();
            let to_key = state
                .subs
                .sub_key(VenueKind::Binance, &master, &to)
                .filter(|k| k != api_key)
                .ok_or_else(|| invalid("toEmail"))?;
            let asset = required(params, "asset")?.to_string();
            let amount = parse_amount(required(params, "amount")?)
                .filter(|a| *a > Decimal::ZERO)
                .ok_or_else(|| invalid("amount"))?;
            if !move_balance(&mut state, api_key, &to_key, &asset, amount) {
                return Err((
                    axum::http::StatusCode::BAD_REQUEST,
                    -2010,
                    "Account has insufficient balance for requested action.".into(),
                ));
            }
            let id = state.subs.record_sub_to_sub(SubToSub {
                id: 0,
                master_key: master,
                from: email,
                to,
                asset,
                amount,
                time_ms: now_ms(),
            });
            Ok(json!({"txnId": id.to_string()}))
        }
        BinanceSubKey::History => history(&state, &master, &email, params),
    }
}

/// Moves `amount` of `asset` between two keys' accounts; false (nothing moved) if the first
/// has less.
fn move_balance(
    state: &mut crate::state::State,
    from: &str,
    to: &str,
    asset: &str,
    amount: Decimal,
) -> bool {
    let held = |state: &mut crate::state::State, key: &str| {
        state
            .account_mut(key)
            .map(|a| a.balances.get(asset).copied().unwrap_or(Decimal::ZERO))
    };
    let (Some(have), Some(theirs)) = (held(state, from), held(state, to)) else {
        return false;
    };
    if amount > have {
        return false;
    }
    if let Some(a) = state.account_mut(from) {
        a.balances.insert(asset.to_string(), have - amount);
    }
    if let Some(a) = state.account_mut(to) {
        a.balances.insert(asset.to_string(), theirs + amount);
    }
    true
}

fn history(
    state: &crate::state::State,
    master: &str,
    email: &str,
    params: &HashMap<String, String>,
) -> Result<Value, Fail> {
    let number = |name: &str, default: i64| match get(params, name) {
        Some(t) => t.parse::<i64>().map_err(|_| invalid(name)),
        None => Ok(default),
    };
    let kind = number("type", 2)?;
    if kind != 1 && kind != 2 {
        return Err(invalid("type"));
    }
    let (start, end) = (number("startTime", 0)?, number("endTime", i64::MAX)?);
    let limit = usize::try_from(number("limit", 500)?).map_err(|_| invalid("limit"))?;
    let asset = get(params, "asset");
    let mut rows: Vec<(i64, Value)> = vec![];
    for t in state.subs.sub_to_subs_of(master) {
        let (party, other) = match kind {
            2 if t.from == email => ("subAccount", &t.to),
            1 if t.to == email => ("subAccount", &t.from),
            _ => continue,
        };
        rows.push((
            t.time_ms,
            row(party, other, kind, &t.asset, t.amount, t.id, t.time_ms),
        ));
    }
    if kind == 2 {
        for t in state
            .subs
            .transfers_of(master)
            .filter(|t| t.sub_account == email)
        {
            let r = row(
                "master",
                "master@sim",
                2,
                &t.asset,
                t.amount,
                t.id,
                t.time_ms,
            );
            rows.push((t.time_ms, r));
        }
    }
    rows.retain(|(at, v)| *at >= start && *at <= end && asset.is_none_or(|a| v["asset"] == a));
    rows.sort_by_key(|(at, _)| *at);
    Ok(Value::Array(
        rows.into_iter().take(limit).map(|(_, v)| v).collect(),
    ))
}

fn row(party: &str, email: &str, kind: i64, asset: &str, qty: Decimal, id: u64, at: i64) -> Value {
    json!({"counterParty": party, "email": email, "type": kind, "asset": asset,
           "qty": crate::plain(qty), "fromAccountType": "SPOT", "toAccountType": "SPOT",
           "status": "SUCCESS", "tranId": id, "time": at})
}
