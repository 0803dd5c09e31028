//! OKX's master-account containment endpoints (docs/containment.md has each page):
//!
//! - `POST /api/v5/users/subaccount/modify-apikey` (1/s): `subAcct`, `apiKey`, `ip`;
//!   <https://www.okx.com/docs-v5/en/#sub-account-rest-api-reset-the-api-key-of-a-sub-account>
//! - `POST /api/v5/users/subaccount/delete-apikey` (1/s): `subAcct`, `apiKey`;
//!   <https://www.okx.com/docs-v5/en/#sub-account-rest-api-delete-the-api-key-of-sub-accounts>
//! - `POST /api/v5/users/subaccount/set-transfer-out` (1/s): `subAcct`, `canTransOut`;
//!   <https://www.okx.com/docs-v5/en/#sub-account-rest-api-set-permission-of-transfer-out>
//! - `GET /api/v5/asset/subaccount/balances` and `GET /api/v5/account/subaccount/balances`
//!   (6 per 2 s each): `subAcct`;
//!   <https://www.okx.com/docs-v5/en/#sub-account-rest-api-get-sub-account-funding-balance>,
//!   <https://www.okx.com/docs-v5/en/#sub-account-rest-api-get-sub-account-trading-balance>
//! - `POST /api/v5/asset/transfer` (2/s per currency): `type` 2, `subAcct`, `ccy`, `amt`,
//!   `from`, `to` 6, `clientId`; accepted is not final, so it is read back with
//! - `GET /api/v5/asset/transfer-state` (10/s): `clientId`, `type` 2;
//!   <https://www.okx.com/docs-v5/en/#funding-account-rest-api-funds-transfer>,
//!   <https://www.okx.com/docs-v5/en/#funding-account-rest-api-get-funds-transfer-state>
//! - `GET /api/v5/account/config` (doctor): `perm`, `ip`.
//!
//! Answers are `{"code": "0", "data": [...]}`; another code is an error: 50011 and 50061 are
//! rate limits, 50001, 50004 and 50013 say the system could not tell (the request may or may
//! not have been carried out), anything else is a refusal.

use keygate_core::Action;
use rust_decimal::Decimal;
use serde_json::{Map, Value};

use super::{
    ContainError, Cost, Holding, Lock, Needs, Outcome, Request, Target, Wallet, by_status, excerpt,
};
use crate::params::Params;
use crate::{Classified, Finding, Forward, Keys};

fn classified(endpoint: &'static str, method: &str, path: &str, forward: Forward) -> Classified {
    Classified {
        route: Default::default(),
        endpoint,
        method: method.into(),
        path: path.into(),
        action: Action::Read,
        asset: None,
        amount: None,
        destination: None,
        request_id: None,
        order: None,
        signed: true,
        forward,
    }
}

fn post(
    endpoint: &'static str,
    path: &str,
    body: Map<String, Value>,
    keys: &Keys<'_>,
    now_ms: i64,
) -> crate::Outgoing {
    let c = classified(
        endpoint,
        "POST",
        path,
        Forward::Json {
            query: Params::new(),
            body: Some(body),
        },
    );
    crate::okx::sign(&c, keys, now_ms)
}

fn get(
    endpoint: &'static str,
    path: &str,
    pairs: &[(&str, &str)],
    keys: &Keys<'_>,
    now_ms: i64,
) -> crate::Outgoing {
    let mut q = Params::new();
    for (n, v) in pairs {
        let _ = q.push((*n).to_string(), (*v).to_string(), "");
    }
    let c = classified(
        endpoint,
        "GET",
        path,
        Forward::Json {
            query: q,
            body: None,
        },
    );
    crate::okx::sign(&c, keys, now_ms)
}

fn text(s: &str) -> Value {
    Value::String(s.to_string())
}

fn once_a_second(endpoint: &'static str) -> Cost {
    Cost::Rate {
        endpoint,
        requests: 1,
        per_ms: 1000,
    }
}

pub(super) fn lock_key(
    t: &Target<'_>,
    lock: &Lock,
    keys: &Keys<'_>,
    now_ms: i64,
) -> Result<Request, ContainError> {
    let mut body = Map::new();
    body.insert("subAcct".into(), text(t.sub_account));
    body.insert("apiKey".into(), text(t.api_key));
    let (endpoint, path) = match lock {
        Lock::IpRestrict { addresses } => {
            // Never "": an empty ip unbinds every address at OKX.
            body.insert("ip".into(), text(&addresses.join(",")));
            (
                "sub.modify_apikey",
                "/api/v5/users/subaccount/modify-apikey",
            )
        }
        Lock::Delete => (
            "sub.delete_apikey",
            "/api/v5/users/subaccount/delete-apikey",
        ),
    };
    Ok(Request {
        endpoint,
        out: post(endpoint, path, body, keys, now_ms),
        cost: once_a_second(endpoint),
    })
}

/// The `data` rows of an answer whose code is "0", or the outcome its error means.
fn rows(status: u16, body: &[u8]) -> Result<Vec<Value>, Outcome> {
    if let Some(o) = by_status(status, body) {
        return Err(o);
    }
    let v: Value = serde_json::from_slice(body).map_err(|_| Outcome::Unknown {
        reason: format!("HTTP {status}, not JSON: {}", excerpt(body)),
    })?;
    let Some(code) = v.get("code").and_then(Value::as_str) else {
        return Err(Outcome::Unknown {
            reason: format!(
                "the answer has no code; is this OKX's v5 API? {}",
                excerpt(body)
            ),
        });
    };
    let msg = v.get("msg").and_then(Value::as_str).unwrap_or("");
    match code {
        "0" if (200..300).contains(&status) => v
            .get("data")
            .and_then(Value::as_array)
            .cloned()
            .ok_or_else(|| Outcome::Unknown {
                reason: "the answer has no data list".into(),
            }),
        "50011" | "50061" => Err(Outcome::Limited {
            retry_after_ms: None,
            reason: format!("{code} {msg}"),
        }),
        "0" | "50001" | "50004" | "50013" => Err(Outcome::Unknown {
            reason: format!("HTTP {status}, code {code} {msg}"),
        }),
        "50110" | "50120" => Err(Outcome::Refused {
            reason: format!(
                "{code} {msg}: the containment key is not allowed this (check it with `keygate doctor`)"
            ),
        }),
        _ => Err(Outcome::Refused {
            reason: format!("{code} {msg}"),
        }),
    }
}

fn field<'v>(row: &'v Value, name: &str) -> Option<&'v str> {
    row.get(name).and_then(Value::as_str)
}

pub(super) fn parse_lock(t: &Target<'_>, lock: &Lock, status: u16, body: &[u8]) -> Outcome {
    let data = match rows(status, body) {
        Ok(d) => d,
        Err(o) => return o,
    };
    let row = data.first();
    let done = match lock {
        Lock::IpRestrict { addresses } => row.is_some_and(|r| {
            let bound: Vec<&str> = field(r, "ip")
                .unwrap_or("")
                .split(',')
                .map(str::trim)
                .collect();
            field(r, "apiKey") == Some(t.api_key)
                && addresses.iter().all(|a| bound.contains(&a.as_str()))
        }),
        Lock::Delete => row.is_some_and(|r| field(r, "subAcct") == Some(t.sub_account)),
    };
    if done {
        Outcome::Confirmed { venue_ref: None }
    } else {
        Outcome::Unknown {
            reason: format!(
                "the answer does not show the key locked (bound to {:?}; the answer itself is not recorded: it names the key)",
                row.and_then(|r| field(r, "ip"))
            ),
        }
    }
}

pub(super) fn stop_transfers(
    t: &Target<'_>,
    keys: &Keys<'_>,
    now_ms: i64,
) -> Result<Request, ContainError> {
    if t.sub_account.contains(',') {
        return Err(ContainError::Invalid {
            what: "sub_account",
            value: t.sub_account.chars().take(40).collect(),
            why: "one sub-account per venue: OKX reads a comma as a list",
        });
    }
    let mut body = Map::new();
    body.insert("subAcct".into(), text(t.sub_account));
    body.insert("canTransOut".into(), Value::Bool(false));
    let endpoint = "sub.set_transfer_out";
    Ok(Request {
        endpoint,
        out: post(
            endpoint,
            "/api/v5/users/subaccount/set-transfer-out",
            body,
            keys,
            now_ms,
        ),
        cost: once_a_second(endpoint),
    })
}

pub(super) fn parse_stop_transfers(t: &Target<'_>, status: u16, body: &[u8]) -> Outcome {
    let data = match rows(status, body) {
        Ok(d) => d,
        Err(o) => return o,
    };
    let stopped = data.iter().any(|r| {
        field(r, "subAcct") == Some(t.sub_account)
            && matches!(r.get("canTransOut"), Some(Value::Bool(false)))
    });
    if stopped {
        Outcome::Confirmed { venue_ref: None }
    } else {
        Outcome::Unknown {
            reason: format!(
                "the answer does not show transfers out stopped: {}",
                excerpt(body)
            ),
        }
    }
}

fn balance_read(
    endpoint: &'static str,
    path: &str,
    t: &Target<'_>,
    keys: &Keys<'_>,
    now_ms: i64,
) -> Request {
    Request {
        endpoint,
        out: get(endpoint, path, &[("subAcct", t.sub_account)], keys, now_ms),
        cost: Cost::Rate {
            endpoint,
            requests: 6,
            per_ms: 2000,
        },
    }
}

pub(super) fn funding_balances(t: &Target<'_>, keys: &Keys<'_>, now_ms: i64) -> Request {
    balance_read(
        "sub.funding_balances",
        "/api/v5/asset/subaccount/balances",
        t,
        keys,
        now_ms,
    )
}

pub(super) fn trading_balances(t: &Target<'_>, keys: &Keys<'_>, now_ms: i64) -> Request {
    balance_read(
        "sub.trading_balances",
        "/api/v5/account/subaccount/balances",
        t,
        keys,
        now_ms,
    )
}

fn data_or_error(body: &[u8]) -> Result<Vec<Value>, String> {
    rows(200, body).map_err(|o| match o {
        Outcome::Refused { reason } | Outcome::Unknown { reason } | Outcome::Absent { reason } => {
            reason
        }
        Outcome::Limited { reason, .. } => format!("rate limited: {reason}"),
        other => format!("{other:?}"),
    })
}

/// A currency's available balance: a decimal string, "" (OKX's "not applicable") as zero.
fn available(row: &Value, wallet: Wallet) -> Result<Option<Holding>, String> {
    let ccy = field(row, "ccy").ok_or("a balance has no ccy")?;
    let asset = crate::asset("ccy", ccy).map_err(|e| e.to_string())?;
    let text = field(row, "availBal").ok_or("a balance has no availBal string")?;
    if text.is_empty() {
        return Ok(None);
    }
    let amount = super::plain_decimal(text)
        .ok_or_else(|| format!("availBal {text:?} of {asset} is not a decimal"))?;
    Ok((amount > Decimal::ZERO).then_some(Holding {
        asset,
        amount,
        wallet,
    }))
}

pub(super) fn parse_funding_balances(body: &[u8]) -> Result<Vec<Holding>, String> {
    let mut out = vec![];
    for row in data_or_error(body)? {
        out.extend(available(&row, Wallet::Funding)?);
    }
    Ok(out)
}

pub(super) fn parse_trading_balances(body: &[u8]) -> Result<Vec<Holding>, String> {
    let mut out = vec![];
    for account in data_or_error(body)? {
        let details = account
            .get("details")
            .and_then(Value::as_array)
            .ok_or("the trading balance has no details list")?;
        for row in details {
            out.extend(available(row, Wallet::Trading)?);
        }
    }
    Ok(out)
}

pub(super) fn sweep(
    t: &Target<'_>,
    h: &Holding,
    client_id: &str,
    keys: &Keys<'_>,
    now_ms: i64,
) -> Result<Request, ContainError> {
    let from = match h.wallet {
        Wallet::Funding => "6",
        Wallet::Trading => "18",
        Wallet::Spot => {
            return Err(ContainError::Invalid {
                what: "wallet",
                value: "spot".into(),
                why: "an OKX sub-account's wallets are funding and trading",
            });
        }
    };
    let mut body = Map::new();
    body.insert("type".into(), text("2"));
    body.insert("subAcct".into(), text(t.sub_account));
    body.insert("ccy".into(), text(&h.asset));
    body.insert("amt".into(), text(&h.amount.normalize().to_string()));
    body.insert("from".into(), text(from));
    body.insert("to".into(), text("6"));
    body.insert("clientId".into(), text(client_id));
    let endpoint = "sub.transfer";
    Ok(Request {
        endpoint,
        out: post(endpoint, "/api/v5/asset/transfer", body, keys, now_ms),
        cost: Cost::Rate {
            endpoint,
            requests: 2,
            per_ms: 1000,
        },
    })
}

pub(super) fn parse_sweep(client_id: &str, status: u16, body: &[u8]) -> Outcome {
    let data = match rows(status, body) {
        Ok(d) => d,
        Err(o) => return o,
    };
    match data.first() {
        // OKX: "the success or failure of the request does not necessarily reflect the actual
        // transfer result": accepted is pending until its state says success.
        Some(r) if field(r, "clientId") == Some(client_id) => Outcome::Pending {
            venue_ref: field(r, "transId")
                .filter(|s| !s.is_empty())
                .map(str::to_string),
        },
        _ => Outcome::Unknown {
            reason: format!(
                "the answer does not show transfer {client_id} accepted: {}",
                excerpt(body)
            ),
        },
    }
}

pub(super) fn sweep_state(client_id: &str, keys: &Keys<'_>, now_ms: i64) -> Request {
    let endpoint = "sub.transfer_state";
    Request {
        endpoint,
        out: get(
            endpoint,
            "/api/v5/asset/transfer-state",
            &[("clientId", client_id), ("type", "2")],
            keys,
            now_ms,
        ),
        cost: Cost::Rate {
            endpoint,
            requests: 10,
            per_ms: 1000,
        },
    }
}

pub(super) fn parse_sweep_state(client_id: &str, status: u16, body: &[u8]) -> Outcome {
    let data = match rows(status, body) {
        Ok(d) => d,
        Err(o) => return o,
    };
    let Some(row) = data
        .iter()
        .find(|r| field(r, "clientId") == Some(client_id))
    else {
        return Outcome::Absent {
            reason: format!("the venue has no transfer {client_id}: nothing moved"),
        };
    };
    let venue_ref = field(row, "transId")
        .filter(|s| !s.is_empty())
        .map(str::to_string);
    match field(row, "state") {
        Some("success") => Outcome::Confirmed { venue_ref },
        Some("pending") => Outcome::Pending { venue_ref },
        Some("failed") => Outcome::Refused {
            reason: format!("transfer {client_id} failed at the venue"),
        },
        other => Outcome::Unknown {
            reason: format!("transfer {client_id} has state {other:?}"),
        },
    }
}

pub(super) fn parse_permissions(needs: &Needs, body: &[u8]) -> Result<Vec<Finding>, String> {
    let data = data_or_error(body)?;
    let row = data.first().ok_or("the account config is empty")?;
    let perm = field(row, "perm").ok_or("the account config has no perm")?;
    let ip = field(row, "ip").unwrap_or("").trim();
    let has = |p: &str| perm.split(',').any(|x| x.trim() == p);
    let mut out = vec![];
    let mut note = |unsafe_: bool, text: String| out.push(Finding { unsafe_, text });
    if has("withdraw") {
        note(
            true,
            "the containment key can withdraw: a containment key must never; remove the withdraw permission".into(),
        );
    }
    if ip.is_empty() {
        note(
            true,
            "the containment key is bound to no IP address: OKX refuses modify-apikey and delete-apikey from a master key without one, and anyone holding it could use it from anywhere; bind it to keygate's egress addresses".into(),
        );
    }
    let needed = needs.lock || needs.stop_transfers || needs.sweep;
    match (has("trade"), needed) {
        (true, true) if !ip.is_empty() => note(
            false,
            format!("the containment key can trade: OKX requires it for every containment endpoint; it is bound to {ip}"),
        ),
        (true, true) => note(
            true,
            "the containment key can trade (OKX requires it for containment) from any address: bind it to keygate's egress addresses".into(),
        ),
        (true, false) => note(
            true,
            "the containment key can trade, and containment does nothing with it ([containment] turns every action off): make it read-only".into(),
        ),
        (false, true) => note(
            true,
            "the containment key cannot trade: every OKX containment endpoint needs the Trade permission, so containment would fail when it is needed".into(),
        ),
        (false, false) => note(false, "the containment key cannot trade".into()),
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::super::tests::{keys, target};
    use super::super::{Holding, Lock, Needs, Outcome, Wallet};
    use crate::{Adapter, AdapterOptions, VenueKind};
    use serde_json::{Value, json};

    fn adapter() -> Adapter {
        Adapter::new(VenueKind::Okx, AdapterOptions::default())
    }

    fn lock() -> Lock {
        Lock::IpRestrict {
            addresses: vec!["203.0.113.7".into()],
        }
    }

    fn sent(out: &crate::Outgoing) -> Value {
        serde_json::from_slice(&out.body).unwrap()
    }

    fn signed_as_okx_documents(out: &crate::Outgoing) {
        let h = |n: &str| {
            out.headers
                .iter()
                .find(|(k, _)| *k == n)
                .map(|(_, v)| v.clone())
                .unwrap()
        };
        let body = String::from_utf8(out.body.clone()).unwrap();
        let expect = crate::okx::signature(
            "master-secret",
            &h("OK-ACCESS-TIMESTAMP"),
            &out.method,
            &out.path_and_query,
            &body,
        );
        assert_eq!(h("OK-ACCESS-SIGN"), expect);
        assert_eq!(h("OK-ACCESS-KEY"), "master-key");
        assert_eq!(h("OK-ACCESS-PASSPHRASE"), "master-pass");
    }

    #[test]
    fn the_lock_binds_the_key_to_the_egress_or_deletes_it() {
        let a = adapter();
        let r = a.lock_key(&target(), &lock(), &keys(), 0).unwrap();
        assert_eq!(
            r.out.path_and_query,
            "/api/v5/users/subaccount/modify-apikey"
        );
        assert_eq!(
            sent(&r.out),
            json!({"subAcct": "sub1@example.com", "apiKey": "subKey123", "ip": "203.0.113.7"})
        );
        signed_as_okx_documents(&r.out);
        let d = a.lock_key(&target(), &Lock::Delete, &keys(), 0).unwrap();
        assert_eq!(
            d.out.path_and_query,
            "/api/v5/users/subaccount/delete-apikey"
        );
        assert_eq!(
            sent(&d.out),
            json!({"subAcct": "sub1@example.com", "apiKey": "subKey123"})
        );
        let doc = br#"{"code":"0","msg":"","data":[{"subAcct":"sub1@example.com","label":"v5","apiKey":"subKey123","perm":"read_only,trade","ip":"203.0.113.7,1.1.1.1","ts":"1597026383085"}]}"#;
        assert_eq!(
            a.parse_lock(&target(), &lock(), 200, doc),
            Outcome::Confirmed { venue_ref: None }
        );
        let unbound = br#"{"code":"0","msg":"","data":[{"subAcct":"sub1@example.com","apiKey":"subKey123","ip":""}]}"#;
        assert!(matches!(
            a.parse_lock(&target(), &lock(), 200, unbound),
            Outcome::Unknown { .. }
        ));
        let deleted = br#"{"code":"0","msg":"","data":[{"subAcct":"sub1@example.com"}]}"#;
        assert_eq!(
            a.parse_lock(&target(), &Lock::Delete, 200, deleted),
            Outcome::Confirmed { venue_ref: None }
        );
        let ip = br#"{"code":"50110","msg":"Your IP 1.2.3.4 is not included in your API key's IP whitelist.","data":[]}"#;
        assert!(
            matches!(a.parse_lock(&target(), &lock(), 401, ip), Outcome::Refused { reason } if reason.contains("doctor"))
        );
        let busy = br#"{"code":"50011","msg":"Too Many Requests","data":[]}"#;
        assert!(matches!(
            a.parse_lock(&target(), &lock(), 429, busy),
            Outcome::Limited { .. }
        ));
        let timeout = br#"{"code":"50004","msg":"Endpoint request timeout","data":[]}"#;
        assert!(matches!(
            a.parse_lock(&target(), &lock(), 200, timeout),
            Outcome::Unknown { .. }
        ));
    }

    #[test]
    fn transfers_out_are_stopped_with_a_json_boolean() {
        let a = adapter();
        let r = a.stop_transfers(&target(), &keys(), 0).unwrap();
        assert_eq!(
            r.out.path_and_query,
            "/api/v5/users/subaccount/set-transfer-out"
        );
        assert_eq!(
            sent(&r.out),
            json!({"subAcct": "sub1@example.com", "canTransOut": false})
        );
        let doc =
            br#"{"code":"0","msg":"","data":[{"subAcct":"sub1@example.com","canTransOut":false}]}"#;
        assert_eq!(
            a.parse_stop_transfers(&target(), 200, doc),
            Outcome::Confirmed { venue_ref: None }
        );
        let still =
            br#"{"code":"0","msg":"","data":[{"subAcct":"sub1@example.com","canTransOut":true}]}"#;
        assert!(matches!(
            a.parse_stop_transfers(&target(), 200, still),
            Outcome::Unknown { .. }
        ));
        let as_text = br#"{"code":"0","msg":"","data":[{"subAcct":"sub1@example.com","canTransOut":"false"}]}"#;
        assert!(matches!(
            a.parse_stop_transfers(&target(), 200, as_text),
            Outcome::Unknown { .. }
        ));
        let list = crate::containment::Target {
            sub_account: "a,b",
            api_key: "k",
        };
        assert!(a.stop_transfers(&list, &keys(), 0).is_err());
    }

    #[test]
    fn both_wallets_are_read_and_only_available_amounts_count() {
        let a = adapter();
        let reads = a.balance_reads(&target(), &keys(), 0).unwrap();
        let paths: Vec<_> = reads
            .iter()
            .map(|(w, r)| (*w, r.out.path_and_query.clone()))
            .collect();
        assert_eq!(
            paths,
            vec![
                (
                    Wallet::Funding,
                    "/api/v5/asset/subaccount/balances?subAcct=sub1%40example.com".to_string()
                ),
                (
                    Wallet::Trading,
                    "/api/v5/account/subaccount/balances?subAcct=sub1%40example.com".to_string()
                ),
            ]
        );
        let funding = br#"{"code":"0","msg":"","data":[{"availBal":"37.11827078","bal":"37.11827078","ccy":"ETH","frozenBal":"0"},
            {"availBal":"0","bal":"1","ccy":"BTC","frozenBal":"1"}]}"#;
        assert_eq!(
            a.parse_balances(Wallet::Funding, 200, funding).unwrap(),
            vec![Holding {
                asset: "ETH".into(),
                amount: "37.11827078".parse().unwrap(),
                wallet: Wallet::Funding
            }]
        );
        let trading = br#"{"code":"0","msg":"","data":[{"totalEq":"100","details":[{"ccy":"USDT","availBal":"99.5","eqUsd":"99.5"},{"ccy":"OKB","availBal":""}]}]}"#;
        assert_eq!(
            a.parse_balances(Wallet::Trading, 200, trading).unwrap(),
            vec![Holding {
                asset: "USDT".into(),
                amount: "99.5".parse().unwrap(),
                wallet: Wallet::Trading
            }]
        );
        assert!(
            a.parse_balances(
                Wallet::Trading,
                200,
                br#"{"code":"0","data":[{"totalEq":"1"}]}"#
            )
            .is_err()
        );
        assert!(
            a.parse_balances(
                Wallet::Funding,
                200,
                br#"{"code":"0","data":[{"ccy":"ETH","availBal":"1e3"}]}"#
            )
            .is_err()
        );
        assert!(
            a.parse_balances(
                Wallet::Funding,
                200,
                br#"{"code":"50120","msg":"no","data":[]}"#
            )
            .is_err()
        );
    }

    #[test]
    fn a_sweep_is_pending_until_its_state_says_success() {
        let a = adapter();
        let h = Holding {
            asset: "USDT".into(),
            amount: "1.50".parse().unwrap(),
            wallet: Wallet::Trading,
        };
        let r = a.sweep(&target(), &h, "kgc3s1", &keys(), 0).unwrap();
        assert_eq!(r.out.path_and_query, "/api/v5/asset/transfer");
        assert_eq!(
            sent(&r.out),
            json!({"type": "2", "subAcct": "sub1@example.com", "ccy": "USDT", "amt": "1.5",
                   "from": "18", "to": "6", "clientId": "kgc3s1"})
        );
        signed_as_okx_documents(&r.out);
        let doc = br#"{"code":"0","msg":"","data":[{"transId":"754147","ccy":"USDT","clientId":"kgc3s1","from":"18","amt":"1.5","to":"6"}]}"#;
        assert_eq!(
            a.parse_sweep("kgc3s1", 200, doc),
            Outcome::Pending {
                venue_ref: Some("754147".into())
            }
        );
        assert!(matches!(
            a.parse_sweep("kgc3s2", 200, doc),
            Outcome::Unknown { .. }
        ));
        let s = a.sweep_state(&target(), "kgc3s1", 0, &keys(), 0).unwrap();
        assert_eq!(
            s.out.path_and_query,
            "/api/v5/asset/transfer-state?clientId=kgc3s1&type=2"
        );
        let state = |st: &str| {
            format!(
                r#"{{"code":"0","msg":"","data":[{{"amt":"1.5","ccy":"USDT","clientId":"kgc3s1","from":"18","state":"{st}","subAcct":"sub1@example.com","to":"6","transId":"754147","type":"2"}}]}}"#
            )
        };
        assert_eq!(
            a.parse_sweep_state("kgc3s1", 200, state("success").as_bytes()),
            Outcome::Confirmed {
                venue_ref: Some("754147".into())
            }
        );
        assert_eq!(
            a.parse_sweep_state("kgc3s1", 200, state("pending").as_bytes()),
            Outcome::Pending {
                venue_ref: Some("754147".into())
            }
        );
        assert!(matches!(
            a.parse_sweep_state("kgc3s1", 200, state("failed").as_bytes()),
            Outcome::Refused { .. }
        ));
        assert!(matches!(
            a.parse_sweep_state("kgc3s1", 200, br#"{"code":"0","msg":"","data":[]}"#),
            Outcome::Absent { .. }
        ));
        assert!(matches!(
            a.parse_sweep_state("kgc3s1", 200, state("odd").as_bytes()),
            Outcome::Unknown { .. }
        ));
        let spot = Holding {
            wallet: Wallet::Spot,
            ..h
        };
        assert!(a.sweep(&target(), &spot, "kgc3s1", &keys(), 0).is_err());
    }

    #[test]
    fn doctor_reports_withdraw_and_unbound_trade_as_unsafe() {
        let a = adapter();
        let needs = Needs {
            lock: true,
            stop_transfers: true,
            sweep: true,
        };
        let unsafe_of = |b: &[u8]| {
            a.parse_containment_permissions(&needs, b)
                .unwrap()
                .iter()
                .filter(|f| f.unsafe_)
                .count()
        };
        assert_eq!(
            unsafe_of(
                br#"{"code":"0","msg":"","data":[{"perm":"read_only,trade","ip":"203.0.113.7"}]}"#
            ),
            0
        );
        assert!(unsafe_of(br#"{"code":"0","msg":"","data":[{"perm":"read_only,withdraw,trade","ip":"203.0.113.7"}]}"#) >= 1);
        assert_eq!(
            unsafe_of(br#"{"code":"0","msg":"","data":[{"perm":"read_only,trade","ip":""}]}"#),
            2
        );
        assert!(
            unsafe_of(br#"{"code":"0","msg":"","data":[{"perm":"read_only","ip":"203.0.113.7"}]}"#)
                >= 1
        );
        assert!(
            a.parse_containment_permissions(&needs, br#"{"code":"0","data":[]}"#)
                .is_err()
        );
    }
}
