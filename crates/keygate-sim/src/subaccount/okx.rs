//! OKX's master-account endpoints for sub-accounts, after OKX's docs (pages in
//! docs/containment.md), each with its documented rate limit:
//!
//! - `POST /api/v5/users/subaccount/modify-apikey` (1/s): `subAcct`, `apiKey`, `ip` ("" unbinds);
//! - `POST /api/v5/users/subaccount/delete-apikey` (1/s): `subAcct`, `apiKey`;
//! - `POST /api/v5/users/subaccount/set-transfer-out` (1/s): `subAcct` (up to 20, comma
//!   separated), `canTransOut` (a boolean, default true);
//! - `GET /api/v5/asset/subaccount/balances`, `GET /api/v5/account/subaccount/balances`
//!   (6 per 2 s): `subAcct`. The simulator keeps a key's balances in its trading account
//!   (as `GET /api/v5/account/balance` shows them), so the funding account is always empty;
//! - `POST /api/v5/asset/transfer` (2/s per currency): `type` 2 only (sub-account to master by
//!   the master's key), `subAcct`, `ccy`, `amt`, `from` 18 or 6, `to` 6, `clientId`;
//! - `GET /api/v5/asset/transfer-state` (10/s): `clientId` or `transId`.
//!
//! Every one needs the Trade permission; modify-apikey and delete-apikey also a master key
//! linked to IP addresses. The docs name no error for these two conditions or for a repeated
//! `clientId`; the simulator answers 50120 (no permission) and 51000 (parameter error).

use axum::http::StatusCode;
use rust_decimal::Decimal;
use serde_json::{Map, Value, json};

use super::{NewTransfer, TransferError};
use crate::config::VenueKind;
use crate::state::{Credentials, Sim, State};
use crate::{now_ms, parse_amount, plain};

/// An OKX error: status, code, message.
pub(crate) type Fail = (StatusCode, &'static str, String);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OkxSub {
    ModifyApiKey,
    DeleteApiKey,
    SetTransferOut,
    FundingBalances,
    TradingBalances,
    Transfer,
    TransferState,
}

impl OkxSub {
    pub(crate) fn route(method: &str, path: &str) -> Option<OkxSub> {
        Some(match (method, path) {
            ("POST", "/api/v5/users/subaccount/modify-apikey") => Self::ModifyApiKey,
            ("POST", "/api/v5/users/subaccount/delete-apikey") => Self::DeleteApiKey,
            ("POST", "/api/v5/users/subaccount/set-transfer-out") => Self::SetTransferOut,
            ("GET", "/api/v5/asset/subaccount/balances") => Self::FundingBalances,
            ("GET", "/api/v5/account/subaccount/balances") => Self::TradingBalances,
            ("POST", "/api/v5/asset/transfer") => Self::Transfer,
            ("GET", "/api/v5/asset/transfer-state") => Self::TransferState,
            _ => return None,
        })
    }

    fn path(self) -> &'static str {
        match self {
            Self::ModifyApiKey => "/api/v5/users/subaccount/modify-apikey",
            Self::DeleteApiKey => "/api/v5/users/subaccount/delete-apikey",
            Self::SetTransferOut => "/api/v5/users/subaccount/set-transfer-out",
            Self::FundingBalances => "/api/v5/asset/subaccount/balances",
            Self::TradingBalances => "/api/v5/account/subaccount/balances",
            Self::Transfer => "/api/v5/asset/transfer",
            Self::TransferState => "/api/v5/asset/transfer-state",
        }
    }

    /// (requests, per ms) as OKX documents.
    fn rate(self) -> (usize, i64) {
        match self {
            Self::ModifyApiKey | Self::DeleteApiKey | Self::SetTransferOut => (1, 1000),
            Self::FundingBalances | Self::TradingBalances => (6, 2000),
            Self::Transfer => (2, 1000),
            Self::TransferState => (10, 1000),
        }
    }

    fn needs_trade(self) -> bool {
        !matches!(
            self,
            Self::FundingBalances | Self::TradingBalances | Self::TransferState
        )
    }
}

fn param_error(name: &str) -> Fail {
    (
        StatusCode::BAD_REQUEST,
        "51000",
        format!("Parameter {name} error"),
    )
}

fn no_permission(why: &str) -> Fail {
    (
        StatusCode::UNAUTHORIZED,
        "50120",
        format!("API key doesn't have permission: {why}"),
    )
}

fn ok(data: Vec<Value>) -> Value {
    json!({"code": "0", "msg": "", "data": data})
}

/// A string parameter: missing, null and "" are "not sent"; another JSON type is an error.
fn get<'p>(params: &'p Map<String, Value>, name: &str) -> Result<Option<&'p str>, Fail> {
    match params.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.is_empty() => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(param_error(name)),
    }
}

fn required<'p>(params: &'p Map<String, Value>, name: &str) -> Result<&'p str, Fail> {
    get(params, name)?.ok_or_else(|| param_error(name))
}

/// Serves one authenticated call of a sub-account endpoint.
pub(crate) fn handle(
    sim: &Sim,
    endpoint: OkxSub,
    api_key: &str,
    credentials: &Credentials,
    params: &Map<String, Value>,
) -> Result<Value, Fail> {
    let now = now_ms();
    let mut state = sim.lock();
    state.subs.count_call(endpoint.path());
    if state.subs.master(VenueKind::Okx, api_key).is_none() {
        return Err(no_permission("only a master account's key may call this"));
    }
    let r = &credentials.restrictions;
    if endpoint.needs_trade() && !r.enable_spot_and_margin_trading {
        return Err(no_permission("it needs the Trade permission"));
    }
    let key_change = matches!(endpoint, OkxSub::ModifyApiKey | OkxSub::DeleteApiKey);
    if key_change && r.ip.is_empty() {
        return Err(no_permission(
            "the master account's API key must be linked to IP addresses",
        ));
    }
    let (requests, per_ms) = endpoint.rate();
    let per_currency = match endpoint {
        OkxSub::Transfer => get(params, "ccy")?.unwrap_or(""),
        _ => "",
    };
    let limited = format!("{api_key} {per_currency}");
    if !state
        .subs
        .take_rate(&limited, endpoint.path(), requests, per_ms, now)
    {
        return Err((
            StatusCode::TOO_MANY_REQUESTS,
            "50011",
            "Too Many Requests".into(),
        ));
    }
    let value = match endpoint {
        OkxSub::ModifyApiKey => modify(&mut state, api_key, params, now),
        OkxSub::DeleteApiKey => delete(&mut state, api_key, params),
        OkxSub::SetTransferOut => set_transfer_out(&mut state, api_key, params),
        OkxSub::FundingBalances => funding(&state, api_key, params),
        OkxSub::TradingBalances => trading(&state, api_key, params),
        OkxSub::Transfer => transfer(&mut state, api_key, params, now),
        OkxSub::TransferState => transfer_state(&state, api_key, params),
    }?;
    if state.subs.dropping(endpoint.path()) {
        return Err((
            StatusCode::INTERNAL_SERVER_ERROR,
            "50001",
            "Service temporarily unavailable. Please try again later.".into(),
        ));
    }
    Ok(value)
}

/// The name and key of the sub-account `subAcct` of this master.
fn sub_of(
    state: &State,
    master: &str,
    params: &Map<String, Value>,
) -> Result<(String, String), Fail> {
    let name = required(params, "subAcct")?;
    let key = state
        .subs
        .sub_key(VenueKind::Okx, master, name)
        .ok_or_else(|| param_error("subAcct"))?;
    Ok((name.to_string(), key))
}

/// `subAcct` and `apiKey`, which must be that sub-account's key.
fn sub_and_key(
    state: &State,
    master: &str,
    params: &Map<String, Value>,
) -> Result<(String, String), Fail> {
    let (name, key) = sub_of(state, master, params)?;
    if required(params, "apiKey")? != key {
        return Err(param_error("apiKey"));
    }
    Ok((name, key))
}

fn modify(
    state: &mut State,
    master: &str,
    params: &Map<String, Value>,
    now: i64,
) -> Result<Value, Fail> {
    let (name, key) = sub_and_key(state, master, params)?;
    let ip = match params.get("ip") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => return Err(param_error("ip")),
    };
    let list: Vec<String> = match &ip {
        Some(s) if !s.is_empty() => s.split(',').map(|a| a.trim().to_string()).collect(),
        _ => vec![],
    };
    if list.len() > 20 || list.iter().any(|a| a.parse::<std::net::IpAddr>().is_err()) {
        return Err(param_error("ip"));
    }
    let account = state
        .account_mut(&key)
        .ok_or_else(|| param_error("apiKey"))?;
    if ip.is_some() {
        // "The IP will be reset if this is passed through"; "" links no address.
        account.restrictions.ip_restrict = !list.is_empty();
        account.restrictions.ip = list;
    }
    let r = &account.restrictions;
    let mut perm = vec!["read_only"];
    if r.enable_spot_and_margin_trading {
        perm.push("trade");
    }
    Ok(ok(vec![json!({
        "subAcct": name, "label": "", "apiKey": key, "perm": perm.join(","),
        "ip": r.ip.join(","), "ts": now.to_string(),
    })]))
}

fn delete(state: &mut State, master: &str, params: &Map<String, Value>) -> Result<Value, Fail> {
    let (name, key) = sub_and_key(state, master, params)?;
    state.forget_key(&key);
    Ok(ok(vec![json!({"subAcct": name})]))
}

fn set_transfer_out(
    state: &mut State,
    master: &str,
    params: &Map<String, Value>,
) -> Result<Value, Fail> {
    let names = required(params, "subAcct")?;
    let can = match params.get("canTransOut") {
        None | Some(Value::Null) => true,
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err(param_error("canTransOut")),
    };
    let names: Vec<&str> = names.split(',').collect();
    if names.len() > 20 {
        return Err(param_error("subAcct"));
    }
    let mut out = vec![];
    for n in names {
        if state.subs.sub_key(VenueKind::Okx, master, n).is_none() {
            return Err(param_error("subAcct"));
        }
        state.subs.set_trans_out(master, n, can);
        out.push(json!({"subAcct": n, "canTransOut": can}));
    }
    Ok(ok(out))
}

fn funding(state: &State, master: &str, params: &Map<String, Value>) -> Result<Value, Fail> {
    sub_of(state, master, params)?;
    Ok(ok(vec![]))
}

fn trading(state: &State, master: &str, params: &Map<String, Value>) -> Result<Value, Fail> {
    let (_, key) = sub_of(state, master, params)?;
    let details: Vec<Value> = state
        .balances(&key)
        .into_iter()
        .map(|(ccy, bal)| {
            json!({"ccy": ccy, "availBal": plain(bal), "cashBal": plain(bal),
                   "eq": plain(bal), "frozenBal": "0"})
        })
        .collect();
    Ok(ok(vec![json!({"totalEq": "", "details": details})]))
}

fn transfer(
    state: &mut State,
    master: &str,
    params: &Map<String, Value>,
    now: i64,
) -> Result<Value, Fail> {
    if required(params, "type")? != "2" {
        return Err(param_error("type"));
    }
    let (name, key) = sub_of(state, master, params)?;
    let ccy = required(params, "ccy")?;
    let amount = parse_amount(required(params, "amt")?)
        .filter(|a| *a > Decimal::ZERO)
        .ok_or_else(|| param_error("amt"))?;
    let from = required(params, "from")?;
    if !matches!(from, "6" | "18") {
        return Err(param_error("from"));
    }
    if required(params, "to")? != "6" {
        return Err(param_error("to"));
    }
    let client_id = get(params, "clientId")?;
    if client_id.is_some_and(|c| c.len() > 32 || !c.bytes().all(|b| b.is_ascii_alphanumeric())) {
        return Err(param_error("clientId"));
    }
    if from == "6" {
        // The funding account is empty in the simulator.
        return Err((StatusCode::OK, "58350", "Insufficient balance".into()));
    }
    let done = super::transfer(
        state,
        NewTransfer {
            venue: VenueKind::Okx,
            master_key: master,
            sub_account: &name,
            sub_key: &key,
            asset: ccy,
            amount,
            from,
            client_id,
        },
        now,
    )
    .map_err(|e| match e {
        TransferError::Duplicate => param_error("clientId"),
        TransferError::Insufficient => (StatusCode::OK, "58350", "Insufficient balance".into()),
        TransferError::Unknown => param_error("subAcct"),
    })?;
    Ok(ok(vec![json!({
        "transId": done.id.to_string(), "ccy": done.asset, "clientId": done.client_id.unwrap_or_default(),
        "from": done.from, "amt": plain(done.amount), "to": "6",
    })]))
}

fn transfer_state(state: &State, master: &str, params: &Map<String, Value>) -> Result<Value, Fail> {
    let client = get(params, "clientId")?;
    let trans = get(params, "transId")?;
    if client.is_none() && trans.is_none() {
        return Err(param_error("transId"));
    }
    let found = state
        .subs
        .transfers_of(master)
        .find(|t| match (trans, client) {
            (Some(id), _) => id == t.id.to_string(),
            (None, Some(c)) => Some(c) == t.client_id.as_deref(),
            (None, None) => false,
        });
    Ok(ok(found
        .map(|t| {
            json!({"amt": plain(t.amount), "ccy": t.asset, "clientId": t.client_id.clone().unwrap_or_default(),
                   "from": t.from, "instId": "", "state": "success", "subAcct": t.sub_account,
                   "to": "6", "toInstId": "", "transId": t.id.to_string(), "type": "2"})
        })
        .into_iter()
        .collect()))
}
