//! Every answer of the venue route, in keygate's JSON or the venue's own format.

use axum::http::StatusCode;

use crate::setup::{call, env, env_with};

const ACCOUNT: &str = "/venues/binance/api/v3/account";

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_allowed_request_is_signed_and_forwarded_with_its_decision() {
    let e = env().await;
    let auth = bearer(&e.token);
    let a = call(&e.app, "GET", ACCOUNT, &[("authorization", &auth)], "").await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.json);
    assert!(a.json["balances"].is_array(), "{}", a.json);
    let id = a.decision().expect("a decision header");
    // A read is answered before its entry commits: the entry follows.
    let mut entry = None;
    for _ in 0..100 {
        entry = e.store.audit_entry(id).await.unwrap();
        if entry.is_some() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(entry.expect("the decision's entry").kind, "decision");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_malformed_and_unknown_tokens_are_refused() {
    let e = env_with(false).await;
    let a = call(&e.app, "GET", ACCOUNT, &[], "").await;
    assert_eq!(
        (a.status, a.error()),
        (StatusCode::UNAUTHORIZED, "unauthenticated")
    );
    assert!(a.json["decision_id"].is_null());
    let a = call(
        &e.app,
        "GET",
        ACCOUNT,
        &[("authorization", "Bearer nope")],
        "",
    )
    .await;
    assert_eq!(
        (a.status, a.error()),
        (StatusCode::UNAUTHORIZED, "malformed")
    );
    let other = format!("Bearer kgt_{}_{}", "a".repeat(16), "b".repeat(64));
    let a = call(&e.app, "GET", ACCOUNT, &[("authorization", &other)], "").await;
    assert_eq!((a.status, a.error()), (StatusCode::UNAUTHORIZED, "unknown"));
    // The decider recorded the refusal.
    assert_eq!(a.json["decision_id"].as_i64(), a.decision());
    assert!(a.decision().is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn too_many_refused_tokens_from_an_address_are_refused_unrecorded() {
    let e = env_with(false).await;
    for _ in 0..keygate_server::MAX_AUTH_FAILURES_PER_MINUTE {
        let a = call(
            &e.app,
            "GET",
            ACCOUNT,
            &[("authorization", "Bearer nope")],
            "",
        )
        .await;
        assert_eq!(a.error(), "malformed");
    }
    let auth = bearer(&e.token);
    let a = call(&e.app, "GET", ACCOUNT, &[("authorization", &auth)], "").await;
    assert_eq!(
        (a.status, a.error()),
        (StatusCode::TOO_MANY_REQUESTS, "too_many_failures")
    );
    assert!(
        a.json["reason"].as_str().unwrap().contains("127.0.0.1"),
        "{}",
        a.json
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_venues_endpoints_and_routes_are_refused() {
    let e = env().await;
    let auth = bearer(&e.token);
    let h = [("authorization", auth.as_str())];
    let a = call(&e.app, "GET", "/venues/kraken/api/v3/account", &h, "").await;
    assert_eq!(
        (a.status, a.error()),
        (StatusCode::NOT_FOUND, "unknown_venue")
    );
    assert!(
        a.json["reason"].as_str().unwrap().contains("binance"),
        "{}",
        a.json
    );
    let a = call(&e.app, "GET", "/venues/binance/api/v3/nothing", &h, "").await;
    assert_eq!(
        (a.status, a.error()),
        (StatusCode::FORBIDDEN, "unknown_endpoint")
    );
    assert!(
        a.decision().is_some(),
        "an unclassified request is recorded"
    );
    let a = call(&e.app, "GET", "/elsewhere", &h, "").await;
    assert_eq!((a.status, a.error()), (StatusCode::NOT_FOUND, "not_found"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_headers_and_large_bodies_are_bad_requests() {
    let e = env().await;
    let auth = bearer(&e.token);
    let a = call(
        &e.app,
        "GET",
        ACCOUNT,
        &[
            ("authorization", &auth),
            ("x-keygate-request-id", "has space"),
        ],
        "",
    )
    .await;
    assert_eq!(
        (a.status, a.error()),
        (StatusCode::BAD_REQUEST, "bad_request")
    );
    let a = call(
        &e.app,
        "GET",
        ACCOUNT,
        &[("authorization", &auth), ("x-keygate-hold", "soon")],
        "",
    )
    .await;
    assert_eq!(
        (a.status, a.error()),
        (StatusCode::BAD_REQUEST, "bad_request")
    );
    let big = vec![b'a'; keygate_server::MAX_BODY + 1];
    let a = call(
        &e.app,
        "POST",
        "/venues/binance/api/v3/order",
        &[("authorization", &auth)],
        big,
    )
    .await;
    assert_eq!(
        (a.status, a.error()),
        (StatusCode::PAYLOAD_TOO_LARGE, "body_too_large")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_withdrawal_over_the_limit_is_denied() {
    let e = env().await;
    let auth = bearer(&e.token);
    let uri = "/venues/binance/sapi/v1/capital/withdraw/apply?coin=USDT&network=ETH&address=0x00000000000000000000000000000000000000aa&amount=500";
    let a = call(&e.app, "POST", uri, &[("authorization", &auth)], "").await;
    assert_eq!(
        (a.status, a.error()),
        (StatusCode::FORBIDDEN, "denied"),
        "{}",
        a.json
    );
    assert_eq!(a.json["decision_id"].as_i64(), a.decision());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_used_request_id_is_replayed() {
    let e = env().await;
    let auth = bearer(&e.token);
    let h = [
        ("authorization", auth.as_str()),
        ("x-keygate-request-id", "r1"),
    ];
    let a = call(&e.app, "GET", ACCOUNT, &h, "").await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.json);
    let a = call(&e.app, "GET", ACCOUNT, &h, "").await;
    assert_eq!(
        (a.status, a.error()),
        (StatusCode::CONFLICT, "replayed"),
        "{}",
        a.json
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hold_that_does_not_exist_is_invalid() {
    let e = env().await;
    let auth = bearer(&e.token);
    let h = [("authorization", auth.as_str()), ("x-keygate-hold", "999")];
    let a = call(&e.app, "GET", ACCOUNT, &h, "").await;
    assert_eq!(
        (a.status, a.error()),
        (StatusCode::CONFLICT, "hold_invalid"),
        "{}",
        a.json
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn native_refusals_are_answered_in_the_venues_format() {
    let e = env_with(false).await;
    // Not a native key's id.
    let a = call(&e.app, "GET", ACCOUNT, &[("x-mbx-apikey", "KEY")], "").await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);
    assert_eq!(a.json["code"], -2014, "{}", a.json);
    assert!(
        a.json["msg"]
            .as_str()
            .unwrap()
            .starts_with("keygate malformed: ")
    );
    // A native key's id, unsigned, on a signed endpoint.
    let a = call(
        &e.app,
        "GET",
        ACCOUNT,
        &[("x-mbx-apikey", "0123456789abcdef")],
        "",
    )
    .await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);
    assert_eq!(a.json["code"], -2015, "{}", a.json);
    assert!(
        a.json["msg"]
            .as_str()
            .unwrap()
            .starts_with("keygate unsigned: ")
    );
    // Signed, by a key keygate does not have: the decider refuses it as unknown.
    let uri = format!(
        "{ACCOUNT}?timestamp={}&signature=00",
        keygate_server::now_ms()
    );
    let a = call(
        &e.app,
        "GET",
        &uri,
        &[("x-mbx-apikey", "0123456789abcdef")],
        "",
    )
    .await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED, "{}", a.json);
    assert_eq!(a.json["code"], -2015, "{}", a.json);
    assert!(
        a.json["msg"]
            .as_str()
            .unwrap()
            .starts_with("keygate unknown: "),
        "{}",
        a.json
    );
    assert!(a.decision().is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn public_market_data_goes_unsigned_within_its_rate() {
    let e = env().await;
    let a = call(&e.app, "GET", "/venues/binance/api/v3/time", &[], "").await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.json);
    assert!(a.decision().is_none());
    let _ = call(&e.app, "GET", "/venues/binance/api/v3/time", &[], "").await;
    let a = call(&e.app, "GET", "/venues/binance/api/v3/time", &[], "").await;
    assert_eq!(a.status, StatusCode::TOO_MANY_REQUESTS, "{}", a.json);
    assert_eq!(a.json["code"], -1003, "{}", a.json);
    // Without credentials, a signed endpoint is refused in the venue's words.
    let a = call(&e.app, "GET", ACCOUNT, &[], "").await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED, "{}", a.json);
    assert_eq!(a.json["code"], -2014, "{}", a.json);
}
