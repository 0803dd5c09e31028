//! Binance's master-account endpoints for sub-accounts, after Binance's docs (pages in
//! docs/containment.md):
//!
//! - `POST /sapi/v2/sub-account/subAccountApi/ipRestriction` (UID weight 3000): `email`,
//!   `subAccountApiKey`, `status` (1 unrestricted, 2 trusted IPs only), `ipAddress`; the
//!   calling key needs "Enable Spot & Margin Trading";
//! - `GET /sapi/v4/sub-account/assets` (UID 60): `email`;
//! - `POST /sapi/v1/sub-account/universalTransfer` (UID 360): `fromEmail` (a sub-account; no
//!   `toEmail`: to the master), `fromAccountType`/`toAccountType` SPOT, `asset`, `amount`,
//!   `clientTranId` (must be unique); the calling key needs "internal transfer";
//! - `GET /sapi/v1/sub-account/universalTransfer`: `fromEmail`, `clientTranId`, `startTime`.
//!
//! The documentation names no error for a repeated `clientTranId`; the simulator answers -1130
//! (invalid parameter) and moves nothing.

use std::collections::HashMap;

use axum::http::StatusCode;
use rust_decimal::Decimal;
use serde_json::{Value, json};

use super::{NewTransfer, TransferError};
use crate::config::VenueKind;
use crate::state::{Credentials, Sim};
use crate::{now_ms, parse_amount};

/// A Binance error: status, code, message.
pub(crate) type Fail = (StatusCode, i64, String);

/// The sub-account endpoints served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BinanceSub {
    IpRestriction,
    Assets,
    Transfer,
    TransferHistory,
}

impl BinanceSub {
    pub(crate) fn route(method: &str, path: &str) -> Option<BinanceSub> {
        Some(match (method, path) {
            ("POST", "/sapi/v2/sub-account/subAccountApi/ipRestriction") => Self::IpRestriction,
            ("GET", "/sapi/v4/sub-account/assets") => Self::Assets,
            ("POST", "/sapi/v1/sub-account/universalTransfer") => Self::Transfer,
            ("GET", "/sapi/v1/sub-account/universalTransfer") => Self::TransferHistory,
            _ => return None,
        })
    }

    fn path(self) -> &'static str {
        match self {
            Self::IpRestriction => "/sapi/v2/sub-account/subAccountApi/ipRestriction",
            Self::Assets => "/sapi/v4/sub-account/assets",
            Self::Transfer | Self::TransferHistory => "/sapi/v1/sub-account/universalTransfer",
        }
    }

    /// The UID weight Binance documents for it.
    fn uid_weight(self) -> u32 {
        match self {
            Self::IpRestriction => 3000,
            Self::Assets => 60,
            Self::Transfer => 360,
            Self::TransferHistory => 0,
        }
    }
}

fn fail(status: StatusCode, code: i64, msg: impl Into<String>) -> Fail {
    (status, code, msg.into())
}

pub(crate) fn no_permission() -> Fail {
    fail(
        StatusCode::UNAUTHORIZED,
        -2015,
        "Invalid API-key, IP, or permissions for action.",
    )
}

fn mandatory(name: &str) -> Fail {
    fail(
        StatusCode::BAD_REQUEST,
        -1102,
        format!("Mandatory parameter '{name}' was not sent, was empty/null, or malformed."),
    )
}

pub(crate) fn invalid(name: &str) -> Fail {
    fail(
        StatusCode::BAD_REQUEST,
        -1130,
        format!("Data sent for parameter '{name}' is not valid."),
    )
}

pub(crate) fn get<'p>(params: &'p HashMap<String, String>, name: &str) -> Option<&'p str> {
    params
        .get(name)
        .map(String::as_str)
        .filter(|v| !v.is_empty())
}

pub(crate) fn required<'p>(
    params: &'p HashMap<String, String>,
    name: &str,
) -> Result<&'p str, Fail> {
    get(params, name).ok_or_else(|| mandatory(name))
}

/// Serves one authenticated call of a sub-account endpoint.
pub(crate) fn handle(
    sim: &Sim,
    endpoint: BinanceSub,
    api_key: &str,
    credentials: &Credentials,
    params: &HashMap<String, String>,
) -> Result<Value, Fail> {
    let now = now_ms();
    let mut state = sim.lock();
    state.subs.count_call(endpoint.path());
    if state.subs.master(VenueKind::Binance, api_key).is_none() {
        return Err(no_permission());
    }
    if !state
        .subs
        .take_uid_weight(api_key, endpoint.uid_weight(), now)
    {
        return Err(fail(
            StatusCode::TOO_MANY_REQUESTS,
            -1003,
            format!(
                "Too much request weight used; current limit is {} request weight per 1 MINUTE.",
                super::UID_WEIGHT_PER_MINUTE
            ),
        ));
    }
    let r = &credentials.restrictions;
    let value = match endpoint {
        BinanceSub::IpRestriction if !r.enable_spot_and_margin_trading => Err(no_permission()),
        BinanceSub::IpRestriction => ip_restriction(&mut state, api_key, params, now),
        BinanceSub::Assets => assets(&mut state, api_key, params),
        BinanceSub::Transfer if !r.enable_internal_transfer => Err(no_permission()),
        BinanceSub::Transfer => transfer(&mut state, api_key, params, now),
        BinanceSub::TransferHistory => history(&state, api_key, params),
    }?;
    if state.subs.dropping(endpoint.path()) {
        return Err(fail(
            StatusCode::INTERNAL_SERVER_ERROR,
            -1000,
            "An unknown error occurred while processing the request.",
        ));
    }
    Ok(value)
}

/// The key of the sub-account named by `email` of this master.
fn sub_of(
    state: &crate::state::State,
    master: &str,
    params: &HashMap<String, String>,
    name: &str,
) -> Result<(String, String), Fail> {
    let email = required(params, name)?;
    let key = state
        .subs
        .sub_key(VenueKind::Binance, master, email)
        .ok_or_else(|| invalid(name))?;
    Ok((email.to_string(), key))
}

fn ip_restriction(
    state: &mut crate::state::State,
    master: &str,
    params: &HashMap<String, String>,
    now: i64,
) -> Result<Value, Fail> {
    let (_, key) = sub_of(state, master, params, "email")?;
    if required(params, "subAccountApiKey")? != key {
        return Err(invalid("subAccountApiKey"));
    }
    let restrict = match required(params, "status")? {
        "1" => false,
        "2" => true,
        _ => return Err(invalid("status")),
    };
    let ips: Vec<String> = match get(params, "ipAddress") {
        Some(list) => list.split(',').map(|s| s.trim().to_string()).collect(),
        None => vec![],
    };
    if ips.iter().any(|ip| ip.parse::<std::net::IpAddr>().is_err()) {
        return Err(invalid("ipAddress"));
    }
    let account = state.account_mut(&key).ok_or_else(no_permission)?;
    account.restrictions.ip_restrict = restrict;
    if !ips.is_empty() {
        account.restrictions.ip = ips;
    }
    let listed = if restrict {
        account.restrictions.ip.clone()
    } else {
        vec![]
    };
    Ok(json!({
        "status": if restrict { "2" } else { "1" },
        "ipList": listed,
        "updateTime": now,
        "apiKey": key,
    }))
}

fn assets(
    state: &mut crate::state::State,
    master: &str,
    params: &HashMap<String, String>,
) -> Result<Value, Fail> {
    let (_, key) = sub_of(state, master, params, "email")?;
    let balances: Vec<Value> = state
        .balances(&key)
        .into_iter()
        .map(|(asset, free)| {
            json!({"asset": asset, "free": crate::plain(free), "locked": "0",
                   "freeze": "0", "withdrawing": "0"})
        })
        .collect();
    Ok(json!({ "balances": balances }))
}

fn transfer(
    state: &mut crate::state::State,
    master: &str,
    params: &HashMap<String, String>,
    now: i64,
) -> Result<Value, Fail> {
    if get(params, "toEmail").is_some() {
        return Err(invalid("toEmail"));
    }
    let (email, key) = sub_of(state, master, params, "fromEmail")?;
    for name in ["fromAccountType", "toAccountType"] {
        if required(params, name)? != "SPOT" {
            return Err(invalid(name));
        }
    }
    let asset = required(params, "asset")?;
    let amount = parse_amount(required(params, "amount")?)
        .filter(|a| *a > Decimal::ZERO)
        .ok_or_else(|| invalid("amount"))?;
    let client_id = get(params, "clientTranId");
    let done = super::transfer(
        state,
        NewTransfer {
            venue: VenueKind::Binance,
            master_key: master,
            sub_account: &email,
            sub_key: &key,
            asset,
            amount,
            from: "SPOT",
            client_id,
        },
        now,
    )
    .map_err(|e| match e {
        TransferError::Duplicate => invalid("clientTranId"),
        TransferError::Insufficient => fail(
            StatusCode::BAD_REQUEST,
            -2010,
            "Account has insufficient balance for requested action.",
        ),
        TransferError::Unknown => no_permission(),
    })?;
    Ok(json!({"tranId": done.id, "clientTranId": done.client_id.unwrap_or_default()}))
}

fn history(
    state: &crate::state::State,
    master: &str,
    params: &HashMap<String, String>,
) -> Result<Value, Fail> {
    let from = get(params, "fromEmail");
    let client = get(params, "clientTranId");
    let start = match get(params, "startTime") {
        Some(t) => t.parse::<i64>().map_err(|_| invalid("startTime"))?,
        None => 0,
    };
    let rows: Vec<Value> = state
        .subs
        .transfers_of(master)
        .filter(|t| from.is_none_or(|f| f == t.sub_account))
        .filter(|t| client.is_none_or(|c| Some(c) == t.client_id.as_deref()))
        .filter(|t| t.time_ms >= start)
        .map(|t| {
            json!({"tranId": t.id, "fromEmail": t.sub_account, "toEmail": "master@sim",
                   "asset": t.asset, "amount": crate::plain(t.amount), "createTimeStamp": t.time_ms,
                   "fromAccountType": "SPOT", "toAccountType": "SPOT", "status": "SUCCESS",
                   "clientTranId": t.client_id.clone().unwrap_or_default()})
        })
        .collect();
    Ok(json!({"totalCount": rows.len(), "result": rows}))
}
