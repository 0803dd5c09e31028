//! The transfer API's answers before any node is asked (no EVM venue is configured here).

use axum::http::StatusCode;

use crate::setup::{call, env};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transfer_without_a_good_token_or_body_is_refused() {
    let e = env().await;
    let a = call(&e.app, "POST", "/v1/transfers", &[], "{}").await;
    assert_eq!(
        (a.status, a.error()),
        (StatusCode::UNAUTHORIZED, "unauthenticated")
    );
    let auth = format!("Bearer {}", e.token);
    let h = [("authorization", auth.as_str())];
    let a = call(&e.app, "POST", "/v1/transfers", &h, "not json").await;
    assert_eq!(
        (a.status, a.error()),
        (StatusCode::BAD_REQUEST, "bad_request")
    );
    let body = r#"{"venue":"binance","asset":"USDT","to":"0x00000000000000000000000000000000000000aa","amount":"1","client_ref":"has space"}"#;
    let a = call(&e.app, "POST", "/v1/transfers", &h, body).await;
    assert_eq!(
        (a.status, a.error()),
        (StatusCode::BAD_REQUEST, "bad_request")
    );
    assert!(a.json["reason"].as_str().unwrap().contains("client_ref"));
    let body = r#"{"venue":"binance","asset":"USDT","to":"0x00000000000000000000000000000000000000aa","amount":"1","client_ref":"c1"}"#;
    let a = call(&e.app, "POST", "/v1/transfers", &h, body).await;
    assert_eq!(
        (a.status, a.error()),
        (StatusCode::NOT_FOUND, "unknown_venue")
    );
    assert!(
        a.json["reason"]
            .as_str()
            .unwrap()
            .contains("not an EVM venue"),
        "{}",
        a.json
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transfer_that_is_not_there_is_not_found() {
    let e = env().await;
    let auth = format!("Bearer {}", e.token);
    let h = [("authorization", auth.as_str())];
    let a = call(&e.app, "GET", "/v1/transfers/abc", &h, "").await;
    assert_eq!(
        (a.status, a.error()),
        (StatusCode::BAD_REQUEST, "bad_request")
    );
    let a = call(&e.app, "GET", "/v1/transfers/42", &h, "").await;
    assert_eq!((a.status, a.error()), (StatusCode::NOT_FOUND, "not_found"));
    let a = call(
        &e.app,
        "GET",
        "/v1/transfers/42",
        &[("authorization", "Bearer nope")],
        "",
    )
    .await;
    assert_eq!(
        (a.status, a.error()),
        (StatusCode::UNAUTHORIZED, "malformed")
    );
}
