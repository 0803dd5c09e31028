//! Native-key replays: a signed request is accepted once, whichever instance on the store gets
//! it, before or after a restart, however many copies arrive at once.

use hmac::{KeyInit, Mac};
use keygate_core::Action;
use keygate_core::auth::{TokenKind, TokenRecord, new_token};
use keygate_core::time::{HOUR, MINUTE};
use keygate_store::NativeKeyRow;
use keygate_vault::SecretString;

use crate::setup::{Env, call, env};

const SECRET: &str = "native-secret";

/// Issues a native key to client `mm` on `env`'s store; returns its id.
async fn native_key(env: &Env) -> String {
    let t = new_token([5; 8], [1; 32]);
    let now = keygate_server::now_ms();
    let record = TokenRecord {
        id: t.id.clone(),
        client: "mm".into(),
        kind: TokenKind::Native,
        secret_hash: t.secret_hash,
        venues: vec!["binance".into()],
        actions: Action::ALL.to_vec(),
        cidrs: vec!["127.0.0.0/8".parse().unwrap()],
        issued_at: now - MINUTE,
        expires_at: now + HOUR,
        revoked_at: None,
    };
    let sealed = keygate_vault::native_key::seal_native_key(
        &env.master(),
        &t.id,
        "mm",
        SecretString::new(SECRET.into()),
        SecretString::new("passphrase".into()),
    )
    .unwrap();
    let row = NativeKeyRow {
        token_id: t.id.clone(),
        client: "mm".into(),
        key_id: sealed.key_id.as_str().into(),
        wrapped_key: sealed.wrapped_key,
        ciphertext: sealed.ciphertext,
    };
    env.store
        .insert_native_key(&record, &row, "alice")
        .await
        .unwrap();
    t.id
}

/// A Binance-signed query ("SIGNED endpoint security": hex HMAC-SHA256 of the query).
fn signed(params: &str) -> String {
    let q = format!("{params}&timestamp={}", keygate_server::now_ms());
    let mut m = hmac::Hmac::<sha2::Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
    m.update(q.as_bytes());
    format!("{q}&signature={}", hex::encode(m.finalize().into_bytes()))
}

async fn open_orders(app: &axum::Router, key: &str, query: &str) -> crate::setup::Answer {
    call(
        app,
        "GET",
        &format!("/venues/binance/api/v3/openOrders?{query}"),
        &[("X-MBX-APIKEY", key)],
        "",
    )
    .await
}

fn is_replay_refusal(a: &crate::setup::Answer) -> bool {
    a.status == 400
        && a.json["code"] == -1021
        && a.json["msg"]
            .as_str()
            .is_some_and(|m| m.contains("used before"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signed_request_replayed_to_another_instance_or_after_a_restart_is_refused() {
    let env = env().await;
    let key = native_key(&env).await;
    let q = signed("symbol=BTCUSDT");
    let first = open_orders(&env.app, &key, &q).await;
    assert_eq!(first.status, 200, "{:?}", first.json);
    // The same captured request, to a second instance on the same store.
    let second = env.another_instance();
    let again = open_orders(&second, &key, &q).await;
    assert!(
        is_replay_refusal(&again),
        "{:?} {:?}",
        again.status,
        again.json
    );
    // And to an instance started after the first one is gone (a restart).
    drop(second);
    let restarted = env.another_instance();
    let again = open_orders(&restarted, &key, &q).await;
    assert!(
        is_replay_refusal(&again),
        "{:?} {:?}",
        again.status,
        again.json
    );
    // A request signed anew goes through on any instance.
    let fresh = open_orders(&restarted, &key, &signed("symbol=BTCUSDT&limit=1")).await;
    assert_eq!(fresh.status, 200, "{:?}", fresh.json);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simultaneous_copies_of_one_signed_request_let_exactly_one_through() {
    let env = env().await;
    let key = native_key(&env).await;
    let q = signed("symbol=BTCUSDT");
    let apps = [
        env.app.clone(),
        env.another_instance(),
        env.another_instance(),
    ];
    let mut tasks = Vec::new();
    for i in 0..24 {
        let (app, key, q) = (apps[i % apps.len()].clone(), key.clone(), q.clone());
        tasks.push(tokio::spawn(
            async move { open_orders(&app, &key, &q).await },
        ));
    }
    let (mut through, mut refused) = (0, 0);
    for t in tasks {
        let a = t.await.unwrap();
        if a.status == 200 {
            through += 1;
        } else {
            assert!(is_replay_refusal(&a), "{:?} {:?}", a.status, a.json);
            refused += 1;
        }
    }
    assert_eq!((through, refused), (1, 23));
}
