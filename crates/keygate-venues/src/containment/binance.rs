//! Binance's master-account containment endpoints (docs/containment.md has each page):
//!
//! - `POST /sapi/v2/sub-account/subAccountApi/ipRestriction` (UID weight 3000): `email`,
//!   `subAccountApiKey`, `status` = 2 (trusted IPs only), `ipAddress`;
//!   <https://developers.binance.com/docs/sub_account/api-management/Add-IP-Restriction-for-Sub-Account-API-key>
//! - `GET /sapi/v4/sub-account/assets` (UID 60): `email`;
//!   <https://developers.binance.com/docs/sub_account/asset-management/Query-Sub-account-Assets-V4>
//! - `POST /sapi/v1/sub-account/universalTransfer` (IP 1, UID 360): `fromEmail`, no `toEmail`
//!   (to the master), `fromAccountType`/`toAccountType` SPOT, `asset`, `amount`, `clientTranId`;
//!   <https://developers.binance.com/docs/sub_account/asset-management/Universal-Transfer>
//! - `GET /sapi/v1/sub-account/universalTransfer` (IP 1): `fromEmail`, `clientTranId`,
//!   `startTime`;
//!   <https://developers.binance.com/docs/sub_account/asset-management/Query-Universal-Transfer-History>
//! - `GET /sapi/v1/account/apiRestrictions` (doctor);
//!   <https://developers.binance.me/docs/wallet/account/api-key-permission>
//!
//! Errors are `{"code": <negative>, "msg": …}`: -1003 is a rate limit, the rest refusals.

use keygate_core::Action;
use rust_decimal::Decimal;
use serde_json::Value;

use super::{
    ContainError, Cost, Holding, Lock, Needs, Outcome, Request, Target, by_status, excerpt,
};
use crate::params::Params;
use crate::{Adapter, Classified, Finding, Forward, Keys};

/// The longest a universal-transfer history query may span (the docs: under 7 days).
const HISTORY_SPAN_MS: i64 = 7 * 24 * 60 * 60 * 1000 - 60_000;

fn signed(
    a: &Adapter,
    endpoint: &'static str,
    method: &str,
    path: &str,
    pairs: &[(&str, String)],
    keys: &Keys<'_>,
    now_ms: i64,
) -> crate::Outgoing {
    let mut p = Params::new();
    for (n, v) in pairs {
        let _ = p.push((*n).to_string(), v.clone(), "");
    }
    let c = Classified {
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
        forward: Forward::Form(p),
    };
    crate::binance::sign(&c, keys, now_ms, a.options.recv_window_ms)
}

pub(super) fn lock_key(
    a: &Adapter,
    t: &Target<'_>,
    lock: &Lock,
    keys: &Keys<'_>,
    now_ms: i64,
) -> Result<Request, ContainError> {
    let Lock::IpRestrict { addresses } = lock else {
        return Err(ContainError::Unsupported {
            venue: "binance",
            what: "endpoint that deletes a sub-account's API key",
            fix: "only Binance Link brokers have one; set [containment] lock_key = \"ip-restrict\"",
        });
    };
    let out = signed(
        a,
        "sub.ip_restrict",
        "POST",
        "/sapi/v2/sub-account/subAccountApi/ipRestriction",
        &[
            ("email", t.sub_account.to_string()),
            ("subAccountApiKey", t.api_key.to_string()),
            ("status", "2".to_string()),
            ("ipAddress", addresses.join(",")),
        ],
        keys,
        now_ms,
    );
    Ok(Request {
        endpoint: "sub.ip_restrict",
        out,
        cost: Cost::Weight { uid: 3000, ip: 0 },
    })
}

/// A Binance error answer as an outcome: -1003 (too much weight) is a limit, anything else a
/// refusal; a body that is not Binance's error shape is unknown.
fn error_outcome(status: u16, body: &[u8]) -> Outcome {
    if let Some(o) = by_status(status, body) {
        return o;
    }
    let v: Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(_) => {
            return Outcome::Unknown {
                reason: format!(
                    "HTTP {status} without Binance's error body: {}",
                    excerpt(body)
                ),
            };
        }
    };
    let code = v.get("code").and_then(Value::as_i64);
    let msg = v.get("msg").and_then(Value::as_str).unwrap_or("");
    match code {
        Some(-1003) => Outcome::Limited {
            retry_after_ms: None,
            reason: format!("-1003 {msg}"),
        },
        Some(-2015) => Outcome::Refused {
            reason: format!(
                "-2015 {msg}: the containment key is not allowed this (check its permissions and IP restriction with `keygate doctor`)"
            ),
        },
        Some(c) => Outcome::Refused {
            reason: format!("{c} {msg}"),
        },
        None => Outcome::Unknown {
            reason: format!(
                "HTTP {status} without Binance's error body: {}",
                excerpt(body)
            ),
        },
    }
}

fn json(body: &[u8]) -> Result<Value, Outcome> {
    serde_json::from_slice(body).map_err(|_| Outcome::Unknown {
        reason: format!("the answer is not JSON: {}", excerpt(body)),
    })
}

pub(super) fn parse_lock(t: &Target<'_>, lock: &Lock, status: u16, body: &[u8]) -> Outcome {
    if !(200..300).contains(&status) {
        return error_outcome(status, body);
    }
    let Lock::IpRestrict { addresses } = lock else {
        return Outcome::Refused {
            reason: "Binance cannot delete a sub-account key".into(),
        };
    };
    let v = match json(body) {
        Ok(v) => v,
        Err(o) => return o,
    };
    let restricted = v.get("status").and_then(Value::as_str) == Some("2");
    let listed: Vec<&str> = v
        .get("ipList")
        .and_then(Value::as_array)
        .map(|l| l.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let key_matches = v
        .get("apiKey")
        .and_then(Value::as_str)
        .is_none_or(|k| k == t.api_key);
    if restricted && key_matches && addresses.iter().all(|a| listed.contains(&a.as_str())) {
        Outcome::Confirmed { venue_ref: None }
    } else {
        Outcome::Unknown {
            reason: format!(
                "the answer does not show the key restricted to {} (status {:?}, listed {}; the answer itself is not recorded: it names the key)",
                addresses.join(","),
                v.get("status").and_then(Value::as_str),
                listed.join(",")
            ),
        }
    }
}

pub(super) fn balances(a: &Adapter, t: &Target<'_>, keys: &Keys<'_>, now_ms: i64) -> Request {
    Request {
        endpoint: "sub.assets",
        out: signed(
            a,
            "sub.assets",
            "GET",
            "/sapi/v4/sub-account/assets",
            &[("email", t.sub_account.to_string())],
            keys,
            now_ms,
        ),
        cost: Cost::Weight { uid: 60, ip: 0 },
    }
}

/// A decimal string field, or an error naming it.
fn decimal(row: &Value, name: &str) -> Result<Decimal, String> {
    let text = row
        .get(name)
        .and_then(Value::as_str)
        .ok_or_else(|| format!("a balance has no {name} string"))?;
    super::plain_decimal(text)
        .ok_or_else(|| format!("a balance's {name} {text:?} is not a decimal"))
}

pub(super) fn parse_balances(body: &[u8]) -> Result<Vec<Holding>, String> {
    let v: Value = serde_json::from_slice(body)
        .map_err(|_| format!("the sub-account assets are not JSON: {}", excerpt(body)))?;
    let rows = v
        .get("balances")
        .and_then(Value::as_array)
        .ok_or("the answer has no balances list; is this Binance's sub-account assets?")?;
    let mut out = vec![];
    for row in rows {
        let asset = row
            .get("asset")
            .and_then(Value::as_str)
            .ok_or("a balance has no asset")?;
        let asset = crate::asset("asset", asset).map_err(|e| e.to_string())?;
        let free = decimal(row, "free")?;
        if free > Decimal::ZERO {
            out.push(Holding {
                asset,
                amount: free,
                wallet: super::Wallet::Spot,
            });
        }
    }
    Ok(out)
}

pub(super) fn sweep(
    a: &Adapter,
    t: &Target<'_>,
    h: &Holding,
    client_id: &str,
    keys: &Keys<'_>,
    now_ms: i64,
) -> Result<Request, ContainError> {
    if h.wallet != super::Wallet::Spot {
        return Err(ContainError::Invalid {
            what: "wallet",
            value: h.wallet.as_str().into(),
            why: "keygate sweeps a Binance sub-account's spot account",
        });
    }
    let out = signed(
        a,
        "sub.transfer",
        "POST",
        "/sapi/v1/sub-account/universalTransfer",
        &[
            ("fromEmail", t.sub_account.to_string()),
            ("fromAccountType", "SPOT".to_string()),
            ("toAccountType", "SPOT".to_string()),
            ("asset", h.asset.clone()),
            ("amount", h.amount.normalize().to_string()),
            ("clientTranId", client_id.to_string()),
        ],
        keys,
        now_ms,
    );
    Ok(Request {
        endpoint: "sub.transfer",
        out,
        cost: Cost::Weight { uid: 360, ip: 1 },
    })
}

/// The venue's transfer id, a number in Binance's answers (a string accepted too).
fn tran_id(v: &Value) -> Option<String> {
    match v.get("tranId")? {
        Value::Number(n) => Some(n.to_string()),
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        _ => None,
    }
}

pub(super) fn parse_sweep(client_id: &str, status: u16, body: &[u8]) -> Outcome {
    if !(200..300).contains(&status) {
        return error_outcome(status, body);
    }
    let v = match json(body) {
        Ok(v) => v,
        Err(o) => return o,
    };
    let echoed = v.get("clientTranId").and_then(Value::as_str);
    match (tran_id(&v), echoed) {
        (Some(id), Some(c)) if c == client_id => Outcome::Confirmed {
            venue_ref: Some(id),
        },
        _ => Outcome::Unknown {
            reason: format!(
                "the answer does not show transfer {client_id} made: {}",
                excerpt(body)
            ),
        },
    }
}

pub(super) fn sweep_state(
    a: &Adapter,
    t: &Target<'_>,
    client_id: &str,
    since_ms: i64,
    keys: &Keys<'_>,
    now_ms: i64,
) -> Request {
    let start = since_ms
        .saturating_sub(60_000)
        .max(now_ms.saturating_sub(HISTORY_SPAN_MS))
        .max(0);
    Request {
        endpoint: "sub.transfer_history",
        out: signed(
            a,
            "sub.transfer_history",
            "GET",
            "/sapi/v1/sub-account/universalTransfer",
            &[
                ("fromEmail", t.sub_account.to_string()),
                ("clientTranId", client_id.to_string()),
                ("startTime", start.to_string()),
            ],
            keys,
            now_ms,
        ),
        cost: Cost::Weight { uid: 0, ip: 1 },
    }
}

pub(super) fn parse_sweep_state(client_id: &str, status: u16, body: &[u8]) -> Outcome {
    if !(200..300).contains(&status) {
        return error_outcome(status, body);
    }
    let v = match json(body) {
        Ok(v) => v,
        Err(o) => return o,
    };
    let Some(rows) = v.get("result").and_then(Value::as_array) else {
        // Binance leaves `result` out when nothing matched; anything else is not its shape.
        return if v.get("totalCount").and_then(Value::as_i64) == Some(0) {
            absent(client_id)
        } else {
            Outcome::Unknown {
                reason: format!("the transfer history has no result list: {}", excerpt(body)),
            }
        };
    };
    let Some(row) = rows
        .iter()
        .find(|r| r.get("clientTranId").and_then(Value::as_str) == Some(client_id))
    else {
        return absent(client_id);
    };
    match row.get("status").and_then(Value::as_str) {
        Some("SUCCESS") => Outcome::Confirmed {
            venue_ref: tran_id(row),
        },
        Some("PROCESS") | Some("PROCESSING") | Some("PENDING") => Outcome::Pending {
            venue_ref: tran_id(row),
        },
        Some("FAILURE") | Some("FAILED") => Outcome::Refused {
            reason: format!("transfer {client_id} failed at the venue"),
        },
        other => Outcome::Unknown {
            reason: format!("transfer {client_id} has status {other:?}"),
        },
    }
}

fn absent(client_id: &str) -> Outcome {
    Outcome::Absent {
        reason: format!("the venue has no transfer {client_id}: nothing moved"),
    }
}

pub(super) fn parse_permissions(needs: &Needs, body: &[u8]) -> Result<Vec<Finding>, String> {
    let v: Value = serde_json::from_slice(body)
        .map_err(|_| "the key restrictions are not JSON".to_string())?;
    let flag = |name: &str| v.get(name).and_then(Value::as_bool);
    let ip_restrict = flag("ipRestrict")
        .ok_or("the answer has no ipRestrict field; is this Binance's apiRestrictions?")?;
    let mut out = vec![];
    let mut note = |unsafe_: bool, text: String| out.push(Finding { unsafe_, text });
    if flag("enableWithdrawals").unwrap_or(true) {
        note(
            true,
            "the containment key can withdraw: a containment key must never; disable withdrawals on it".into(),
        );
    }
    if !ip_restrict {
        note(
            true,
            "the containment key is not restricted to IP addresses; restrict it to keygate's egress addresses".into(),
        );
    }
    let trading = flag("enableSpotAndMarginTrading").unwrap_or(true);
    match (trading, needs.lock) {
        (true, true) if ip_restrict => note(
            false,
            "the containment key can trade: Binance requires it to restrict a sub-account key; it is limited to its IP addresses".into(),
        ),
        (true, true) => note(
            true,
            "the containment key can trade (Binance requires it to restrict a sub-account key) from anywhere: restrict it to keygate's egress addresses".into(),
        ),
        (true, false) => note(
            true,
            "the containment key can trade, and containment does not need it (lock_key is off): disable spot and margin trading on it".into(),
        ),
        (false, true) => note(
            true,
            "the containment key cannot trade: Binance refuses to restrict a sub-account key without \"Enable Spot & Margin Trading\", so the lock would fail when it is needed".into(),
        ),
        (false, false) => note(false, "the containment key cannot trade".into()),
    }
    let internal = flag("enableInternalTransfer").unwrap_or(false);
    if needs.sweep && !internal {
        note(
            true,
            "the containment key lacks internal transfer (enableInternalTransfer), which the sweep to the master account needs".into(),
        );
    } else if internal {
        note(
            false,
            "the containment key can transfer between the master and its sub-accounts".into(),
        );
    }
    for (field, what) in [
        ("permitsUniversalTransfer", "universal transfers"),
        ("enableMargin", "margin"),
        ("enableFutures", "futures"),
        ("enableVanillaOptions", "options"),
        ("enablePortfolioMarginTrading", "portfolio margin"),
    ] {
        if flag(field) == Some(true) {
            note(
                true,
                format!(
                    "the containment key has {what} ({field}) enabled, which containment does not need; disable it"
                ),
            );
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::super::tests::{keys, target};
    use super::super::{Holding, Lock, Needs, Outcome, Wallet};
    use crate::{Adapter, AdapterOptions, VenueKind};
    use rust_decimal::Decimal;

    fn adapter() -> Adapter {
        Adapter::new(VenueKind::Binance, AdapterOptions::default())
    }

    fn lock() -> Lock {
        Lock::IpRestrict {
            addresses: vec!["69.210.67.14".into(), "8.34.21.10".into()],
        }
    }

    fn body(out: &crate::Outgoing) -> String {
        String::from_utf8(out.body.clone()).unwrap()
    }

    #[test]
    fn the_lock_is_signed_with_the_documented_parameters() {
        let r = adapter()
            .lock_key(&target(), &lock(), &keys(), 1_700_000_000_000)
            .unwrap();
        assert_eq!(r.out.method, "POST");
        assert_eq!(
            r.out.path_and_query,
            "/sapi/v2/sub-account/subAccountApi/ipRestriction"
        );
        let b = body(&r.out);
        assert!(
            b.starts_with("email=sub1%40example.com&subAccountApiKey=subKey123&status=2&ipAddress=69.210.67.14%2C8.34.21.10&recvWindow=5000&timestamp=1700000000000&signature="),
            "{b}"
        );
        // Signed as every Binance request: HMAC of everything before the signature.
        let (payload, sig) = b.rsplit_once("&signature=").unwrap();
        assert_eq!(sig, crate::binance::signature("master-secret", payload));
        assert!(
            r.out
                .headers
                .contains(&("X-MBX-APIKEY", "master-key".to_string()))
        );
        assert_eq!(r.cost, super::Cost::Weight { uid: 3000, ip: 0 });
    }

    #[test]
    fn lock_answers_are_read_strictly() {
        let a = adapter();
        // The docs' response example.
        let doc = br#"{"status":"2","ipList":["69.210.67.14","8.34.21.10"],"updateTime":1636371437000,"apiKey":"subKey123"}"#;
        assert_eq!(
            a.parse_lock(&target(), &lock(), 200, doc),
            Outcome::Confirmed { venue_ref: None }
        );
        // Unrestricted, a missing address, or another key: not confirmed.
        for b in [
            &br#"{"status":"1","ipList":["69.210.67.14","8.34.21.10"],"apiKey":"subKey123"}"#[..],
            br#"{"status":"2","ipList":["69.210.67.14"],"apiKey":"subKey123"}"#,
            br#"{"status":"2","ipList":["69.210.67.14","8.34.21.10"],"apiKey":"other"}"#,
            b"<html>",
        ] {
            assert!(matches!(
                a.parse_lock(&target(), &lock(), 200, b),
                Outcome::Unknown { .. }
            ));
        }
        let refused = br#"{"code":-2015,"msg":"Invalid API-key, IP, or permissions for action."}"#;
        assert!(matches!(
            a.parse_lock(&target(), &lock(), 401, refused),
            Outcome::Refused { reason } if reason.contains("keygate doctor")
        ));
        let limited = br#"{"code":-1003,"msg":"Too much request weight used"}"#;
        assert!(matches!(
            a.parse_lock(&target(), &lock(), 429, limited),
            Outcome::Limited { .. }
        ));
        assert!(matches!(
            a.parse_lock(&target(), &lock(), 400, limited),
            Outcome::Limited { .. }
        ));
        assert!(matches!(
            a.parse_lock(&target(), &lock(), 502, b""),
            Outcome::Unknown { .. }
        ));
    }

    #[test]
    fn balances_read_the_free_amounts_of_the_docs_example() {
        let a = adapter();
        let reads = a.balance_reads(&target(), &keys(), 5).unwrap();
        assert_eq!(reads.len(), 1);
        assert!(
            reads[0].1.out.path_and_query.starts_with(
                "/sapi/v4/sub-account/assets?email=sub1%40example.com&recvWindow=5000&timestamp=5&signature="
            ),
            "{}",
            reads[0].1.out.path_and_query
        );
        let doc = br#"{"balances":[{"freeze":"0","withdrawing":"0","asset":"ADA","free":"10000","locked":"0"},
            {"freeze":"0","withdrawing":"0","asset":"BNB","free":"0","locked":"3"},
            {"freeze":"0","withdrawing":"0","asset":"BTC","free":"11467.6399","locked":"0"}]}"#;
        let h = a.parse_balances(Wallet::Spot, 200, doc).unwrap();
        assert_eq!(
            h,
            vec![
                Holding {
                    asset: "ADA".into(),
                    amount: Decimal::from(10000),
                    wallet: Wallet::Spot
                },
                Holding {
                    asset: "BTC".into(),
                    amount: "11467.6399".parse().unwrap(),
                    wallet: Wallet::Spot
                },
            ]
        );
        assert!(
            a.parse_balances(
                Wallet::Spot,
                200,
                br#"{"balances":[{"asset":"BTC","free":1}]}"#
            )
            .is_err()
        );
        assert!(
            a.parse_balances(Wallet::Spot, 200, br#"{"assets":[]}"#)
                .is_err()
        );
        assert!(
            a.parse_balances(
                Wallet::Spot,
                200,
                br#"{"balances":[{"asset":"BTC","free":"-1"}]}"#
            )
            .is_err()
        );
        assert!(
            a.parse_balances(Wallet::Funding, 200, br#"{"balances":[]}"#)
                .is_err()
        );
        assert!(
            a.parse_balances(Wallet::Spot, 401, br#"{"code":-2015}"#)
                .is_err()
        );
    }

    #[test]
    fn the_sweep_goes_to_the_master_with_the_client_id_and_is_confirmed_by_it() {
        let a = adapter();
        let h = Holding {
            asset: "USDT".into(),
            amount: "150.500".parse().unwrap(),
            wallet: Wallet::Spot,
        };
        let r = a.sweep(&target(), &h, "kgc7s2", &keys(), 9).unwrap();
        let b = body(&r.out);
        assert!(
            b.starts_with("fromEmail=sub1%40example.com&fromAccountType=SPOT&toAccountType=SPOT&asset=USDT&amount=150.5&clientTranId=kgc7s2&recvWindow=5000&timestamp=9&signature="),
            "{b}"
        );
        assert!(!b.contains("toEmail"), "to the master account: no toEmail");
        assert_eq!(r.cost, super::Cost::Weight { uid: 360, ip: 1 });
        let doc = br#"{"tranId":11945860693,"clientTranId":"kgc7s2"}"#;
        assert_eq!(
            a.parse_sweep("kgc7s2", 200, doc),
            Outcome::Confirmed {
                venue_ref: Some("11945860693".into())
            }
        );
        assert!(matches!(
            a.parse_sweep("kgc7s3", 200, doc),
            Outcome::Unknown { .. }
        ));
        assert!(matches!(
            a.parse_sweep("kgc7s2", 200, br#"{"clientTranId":"kgc7s2"}"#),
            Outcome::Unknown { .. }
        ));
        let poor =
            br#"{"code":-2010,"msg":"Account has insufficient balance for requested action."}"#;
        assert!(matches!(
            a.parse_sweep("kgc7s2", 400, poor),
            Outcome::Refused { .. }
        ));
        let funding = Holding {
            wallet: Wallet::Funding,
            ..h
        };
        assert!(a.sweep(&target(), &funding, "kgc7s2", &keys(), 9).is_err());
    }

    #[test]
    fn the_transfer_history_says_whether_a_sweep_happened() {
        let a = adapter();
        let r = a
            .sweep_state(
                &target(),
                "test",
                1_640_317_374_000,
                &keys(),
                1_640_317_400_000,
            )
            .unwrap();
        assert!(
            r.out.path_and_query.starts_with(
                "/sapi/v1/sub-account/universalTransfer?fromEmail=sub1%40example.com&clientTranId=test&startTime=1640317314000&"
            ),
            "{}",
            r.out.path_and_query
        );
        // The docs' response example.
        let doc = br#"{"result":[{"tranId":92275823339,"fromEmail":"abctest@gmail.com","toEmail":"deftest@gmail.com",
            "asset":"BNB","amount":"0.01","createTimeStamp":1640317374000,"fromAccountType":"USDT_FUTURE",
            "toAccountType":"SPOT","status":"SUCCESS","clientTranId":"test"}],"totalCount":1}"#;
        assert_eq!(
            a.parse_sweep_state("test", 200, doc),
            Outcome::Confirmed {
                venue_ref: Some("92275823339".into())
            }
        );
        assert!(matches!(
            a.parse_sweep_state("other", 200, doc),
            Outcome::Absent { .. }
        ));
        assert!(matches!(
            a.parse_sweep_state("test", 200, br#"{"totalCount":0}"#),
            Outcome::Absent { .. }
        ));
        assert!(matches!(
            a.parse_sweep_state("test", 200, br#"{"rows":[]}"#),
            Outcome::Unknown { .. }
        ));
        // The query period is capped at the docs' 7 days.
        let r = a
            .sweep_state(&target(), "t", 0, &keys(), 10 * super::HISTORY_SPAN_MS)
            .unwrap();
        assert!(
            r.out
                .path_and_query
                .contains(&format!("startTime={}", 9 * super::HISTORY_SPAN_MS))
        );
    }

    #[test]
    fn doctor_reports_a_containment_key_that_can_withdraw_or_trade_from_anywhere() {
        let a = adapter();
        let needs = Needs {
            lock: true,
            stop_transfers: false,
            sweep: true,
        };
        let unsafe_texts = |b: &[u8]| -> Vec<String> {
            a.parse_containment_permissions(&needs, b)
                .unwrap()
                .into_iter()
                .filter(|f| f.unsafe_)
                .map(|f| f.text)
                .collect()
        };
        let good = br#"{"ipRestrict":true,"enableWithdrawals":false,"enableSpotAndMarginTrading":true,
            "enableInternalTransfer":true,"permitsUniversalTransfer":false,"enableMargin":false,"enableFutures":false}"#;
        assert!(unsafe_texts(good).is_empty(), "{:?}", unsafe_texts(good));
        let withdraws = br#"{"ipRestrict":true,"enableWithdrawals":true,"enableSpotAndMarginTrading":true,"enableInternalTransfer":true}"#;
        assert!(
            unsafe_texts(withdraws)
                .iter()
                .any(|t| t.contains("withdraw"))
        );
        let anywhere = br#"{"ipRestrict":false,"enableWithdrawals":false,"enableSpotAndMarginTrading":true,"enableInternalTransfer":true}"#;
        assert!(
            unsafe_texts(anywhere)
                .iter()
                .any(|t| t.contains("can trade"))
        );
        let no_transfer = br#"{"ipRestrict":true,"enableWithdrawals":false,"enableSpotAndMarginTrading":true,"enableInternalTransfer":false}"#;
        assert!(
            unsafe_texts(no_transfer)
                .iter()
                .any(|t| t.contains("internal transfer"))
        );
        let off = Needs {
            lock: false,
            stop_transfers: false,
            sweep: false,
        };
        let f = a.parse_containment_permissions(&off, good).unwrap();
        assert!(
            f.iter()
                .any(|f| f.unsafe_ && f.text.contains("does not need it"))
        );
        assert!(a.parse_containment_permissions(&needs, b"{}").is_err());
    }
}
