//! A hold is bound to the exact request keygate would forward: approvers approve a BTCUSDT buy
//! of 100,000 USDT, and the same client cannot carry the hold out with a SHITUSDT buy of the
//! same value (or any other request), only with the request that was held.

use axum::http::StatusCode;
use keygate_core::freeze::{ApprovalPolicy, approval_message};
use keygate_core::time::{HOUR, MINUTE};
use keygate_store::audit::Verifier;
use keygate_store::freeze::Approved;
use keygate_vault::ApproverKey;

use crate::setup::{Env, call, env_with_policies};

const ORDER: &str = "/venues/binance/api/v3/order";
/// A 105,000 USDT buy below the market: it rests on the book (the simulator fills what crosses).
const BTC_BUY: &str = "symbol=BTCUSDT&side=BUY&type=LIMIT&timeInForce=GTC&quantity=3&price=35000";
const SHIT_BUY: &str = "symbol=SHITUSDT&side=BUY&type=LIMIT&timeInForce=GTC&quantity=20000&price=5";
/// The held order as an immediate-or-cancel: the same symbol, side, price and size.
const BTC_IOC: &str = "symbol=BTCUSDT&side=BUY&type=LIMIT&timeInForce=IOC&quantity=3&price=35000";

/// Orders over $50,000 wait for two approvals.
const POLICIES: &str = r#"
permit(principal, action, resource);

@id("big-orders-need-two")
@hold
forbid (principal, action == Keygate::Action::"trade", resource)
when { context.usd_value_cents > 5000000 } unless { context.approvals >= 2 };
"#;

struct Ed25519;
impl Verifier for Ed25519 {
    fn verify(&self, key: &str, message: &[u8], signature: &str) -> Result<(), String> {
        keygate_vault::verify_signature(key, message, signature)
    }
}

/// Two approvers sign hold `id`, as `keygate approve hold:ID` does.
async fn approve(e: &Env, id: i64) {
    let keys = [
        ApproverKey::generate().unwrap(),
        ApproverKey::generate().unwrap(),
    ];
    let policy = ApprovalPolicy {
        approvers: keys.iter().map(ApproverKey::public_hex).collect(),
        quorum: 2,
        max_validity: HOUR,
    };
    let now = keygate_server::now_ms();
    let subject = format!("hold:{id}");
    let what = e.store.approval_subject(&subject, now).await.unwrap();
    let expires = now + 10 * MINUTE;
    let mut outcome = None;
    for k in &keys {
        let sig = k.sign_hex(&approval_message(&what, expires));
        let o = e
            .store
            .approve(
                &subject,
                &k.public_hex(),
                &sig,
                expires,
                &policy,
                &Ed25519,
                now,
            )
            .await
            .unwrap();
        outcome = Some(o);
    }
    assert!(
        matches!(outcome, Some(Approved::HoldApproved { decision_id, .. }) if decision_id == id),
        "the quorum approves the hold"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hold_cannot_be_carried_out_with_another_request() {
    let e = env_with_policies(POLICIES).await;
    let auth = format!("Bearer {}", e.token);
    let form = "application/x-www-form-urlencoded";
    let send = |body: &'static str, hold: Option<String>| {
        let (app, auth) = (e.app.clone(), auth.clone());
        async move {
            let mut h = vec![("authorization", auth.as_str()), ("content-type", form)];
            if let Some(id) = &hold {
                h.push(("x-keygate-hold", id.as_str()));
            }
            call(&app, "POST", ORDER, &h, body).await
        }
    };

    // Held: 100,000 USDT of BTC.
    let held = send(BTC_BUY, None).await;
    assert_eq!(held.status, StatusCode::ACCEPTED, "{}", held.json);
    assert_eq!(held.json["status"], "held");
    let id = held.json["approval_id"].as_i64().unwrap();
    // The hold keeps the request keygate would forward, in full and unsigned.
    let row = e.store.hold(id).await.unwrap().expect("the hold");
    assert_eq!(
        row.request_text.as_deref(),
        Some(format!("POST /api/v3/order\n{BTC_BUY}").as_str())
    );
    for secret in [
        crate::setup::SIM_KEY,
        crate::setup::SIM_SECRET,
        "signature",
        "timestamp",
    ] {
        assert!(
            !row.request_text.as_deref().unwrap().contains(secret),
            "{secret} in the held request"
        );
    }
    approve(&e, id).await;

    // The swap: SHITUSDT for the same 100,000 USDT, with the hold. Refused, nothing spent.
    let swap = send(SHIT_BUY, Some(id.to_string())).await;
    assert_eq!(
        (swap.status, swap.error()),
        (StatusCode::CONFLICT, "hold_invalid"),
        "{}",
        swap.json
    );
    assert!(
        swap.json["reason"]
            .as_str()
            .unwrap()
            .contains("another request"),
        "{}",
        swap.json
    );
    assert!(swap.decision().is_some(), "the refusal is recorded");
    // The same order with another parameter (time in force) is another request too.
    let ioc = send(BTC_IOC, Some(id.to_string())).await;
    assert_eq!(
        (ioc.status, ioc.error()),
        (StatusCode::CONFLICT, "hold_invalid"),
        "{}",
        ioc.json
    );
    assert_eq!(e.store.hold_executed_by(id).await.unwrap(), None);

    // The held request itself is carried out: forwarded, signed, to the venue.
    let done = send(BTC_BUY, Some(id.to_string())).await;
    assert_eq!(done.status, StatusCode::OK, "{}", done.json);
    assert_eq!(done.json["symbol"], "BTCUSDT", "{}", done.json);
    let decision = done.decision().expect("a decision header");
    assert_eq!(e.store.hold_executed_by(id).await.unwrap(), Some(decision));
    // Once.
    let again = send(BTC_BUY, Some(id.to_string())).await;
    assert_eq!(
        (again.status, again.error()),
        (StatusCode::CONFLICT, "hold_invalid"),
        "{}",
        again.json
    );

    // Only the held order reached the venue.
    let open = call(
        &e.app,
        "GET",
        "/venues/binance/api/v3/openOrders",
        &[("authorization", auth.as_str())],
        "",
    )
    .await;
    assert_eq!(open.status, StatusCode::OK, "{}", open.json);
    let symbols: Vec<&str> = open
        .json
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["symbol"].as_str().unwrap())
        .collect();
    assert_eq!(symbols, ["BTCUSDT"], "{}", open.json);
}
