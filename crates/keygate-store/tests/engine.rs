//! The engine's store: durable decide-and-record, limits under concurrency and restarts, admin
//! changes seen by every instance, and the audit chain's verification. Every test runs on SQLite
//! and on PostgreSQL.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test crate: a failed unwrap is a failed test

use std::sync::Arc;

use keygate_core::auth::ClientRecord;
use keygate_core::limits::{LimitSpec, Selector};
use keygate_core::policy::{Policies, PolicySource};
use keygate_core::time::{HOUR, MINUTE};
use keygate_core::{Action, Engine, Intent, Outcome};
use keygate_store::audit::{CheckpointPolicy, Signer, Verifier};
use keygate_store::{Backend, Decider, DeciderOptions, Store, testing};
use rust_decimal::Decimal;
use sha2::{Digest, Sha256};

const T0: i64 = 1_700_000_000_000;
const DEST: &str = "0x00000000000000000000000000000000000000aa";
const CAP_CENTS: i64 = 5_000_000; // $50,000

keygate_store::both_backends!(
    allows_are_durable_and_limits_survive_a_restart,
    two_instances_racing_at_a_cap_never_exceed_it,
    admin_changes_reach_every_instance_on_the_next_decision,
    tokens_are_stored_as_hashes_and_revocable,
    address_book_needs_another_admin_and_a_cool_down,
    address_book_entries_keep_their_routes,
    edited_deleted_or_reordered_entries_are_named,
    signed_checkpoints_catch_a_rewritten_chain,
    clocks_ahead_of_the_store_cannot_reopen_windows,
    gateway_requests_are_authenticated_and_request_ids_never_repeat,
    a_freeze_holds_across_instances_and_restarts_until_a_quorum_lifts_it,
    detectors_remember_across_a_restart_and_freeze_in_the_decision,
    held_decisions_are_listed_with_their_approvals,
    a_hold_binds_its_request_and_only_that_request_carries_it_out,
);

fn engine() -> Arc<Engine> {
    Arc::new(Engine {
        trading: Default::default(),
        policies: Policies::load(&[PolicySource {
            name: "p.cedar".into(),
            text: "permit(principal, action, resource);".into(),
        }])
        .unwrap(),
        limits: vec![LimitSpec {
            name: "treasury-1h".into(),
            client: Selector::All,
            venue: Selector::All,
            asset: Selector::All,
            actions: vec![Action::Withdraw, Action::Transfer],
            window: HOUR,
            max_usd_cents: Some(CAP_CENTS),
            max_amount: None,
            max_count: None,
        }],
        pinned: vec![("USDT".into(), Decimal::ONE)],
        price_max_age: 5 * MINUTE,
        max_clock_skew: 5_000,
        assets: vec![],
        venue_credentials: vec![],
        detectors: keygate_core::detect::DetectorConfig::off(),
    })
}

async fn setup(s: &Store) {
    s.add_client(
        &ClientRecord {
            instruments: vec![],
            name: "mm".into(),
            venues: vec!["binance".into()],
            actions: Action::ALL.to_vec(),
            tags: vec![],
            enabled: true,
        },
        "alice",
        T0 - 2 * 24 * HOUR,
    )
    .await
    .unwrap();
    let d = s
        .add_destination(
            "binance",
            "USDT",
            DEST,
            "cold",
            24 * HOUR,
            "alice",
            T0 - 2 * 24 * HOUR,
        )
        .await
        .unwrap();
    s.approve_destination(d.id, "bob", T0 - 2 * 24 * HOUR + 1)
        .await
        .unwrap();
}

fn withdraw(amount: i64) -> Intent {
    Intent {
        route: Default::default(),
        order: None,
        client: "mm".into(),
        venue: "binance".into(),
        action: Action::Withdraw,
        asset: Some("USDT".into()),
        amount: Some(Decimal::from(amount)),
        destination: Some(DEST.into()),
        source_ip: None,
        token_id: None,
    }
}

async fn allows_are_durable_and_limits_survive_a_restart(b: Backend) {
    let (url, _dir) = testing::fresh_store_url(b).await;
    let s = testing::open(&url).await;
    setup(&s).await;
    let d = Decider::start(s.clone(), engine(), DeciderOptions::default());
    let first = d.decide(withdraw(40_000), T0).await.unwrap();
    assert_eq!(first.verdict.outcome, Outcome::Allow, "{:?}", first.verdict);
    let row = s.audit_entry(first.id).await.unwrap().unwrap();
    assert_eq!(row.kind, "decision");
    assert_eq!(row.debit.as_ref().unwrap().usd_cents, 4_000_000);
    drop(d);
    s.close().await;
    // A restart: a new handle and a new decider remember the debit.
    let s = testing::open(&url).await;
    let d = Decider::start(s.clone(), engine(), DeciderOptions::default());
    let v = d
        .decide(withdraw(20_000), T0 + MINUTE)
        .await
        .unwrap()
        .verdict;
    assert_eq!(v.outcome, Outcome::Deny);
    assert!(v.reasons[0].contains("treasury-1h"), "{v:?}");
    let v = d
        .decide(withdraw(10_000), T0 + 2 * MINUTE)
        .await
        .unwrap()
        .verdict;
    assert_eq!(v.outcome, Outcome::Allow, "{v:?}");
    // After the hour the window has room again.
    let v = d
        .decide(withdraw(40_000), T0 + HOUR + 5 * MINUTE)
        .await
        .unwrap()
        .verdict;
    assert_eq!(v.outcome, Outcome::Allow, "{v:?}");
}

async fn two_instances_racing_at_a_cap_never_exceed_it(b: Backend) {
    let (url, _dir) = testing::fresh_store_url(b).await;
    let a = testing::open(&url).await;
    setup(&a).await;
    let b2 = testing::open(&url).await;
    let da = Decider::start(a.clone(), engine(), DeciderOptions::default());
    let db = Decider::start(b2.clone(), engine(), DeciderOptions::default());
    // 40 tasks, each sending 5 requests one after another, spread over both instances, so
    // that each instance decides many small batches interleaved with the other's.
    let mut tasks = vec![];
    for i in 0..40i64 {
        let d = if i % 2 == 0 { da.clone() } else { db.clone() };
        tasks.push(tokio::spawn(async move {
            let mut out = vec![];
            for j in 0..5 {
                out.push(d.decide(withdraw(1_000), T0 + i * 5 + j).await.unwrap());
            }
            out
        }));
    }
    let mut allowed = 0i64;
    let mut ids = vec![];
    for t in tasks {
        for dec in t.await.unwrap() {
            ids.push(dec.id);
            if dec.verdict.outcome == Outcome::Allow {
                allowed += dec.verdict.usd_value_cents.unwrap();
            }
        }
    }
    // Exactly the cap: never more, and no room wasted by a stale view.
    assert_eq!(allowed, CAP_CENTS);
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 200, "every decision has its own audit entry");
    let report = a.verify_audit(&NoKeys, &[]).await.unwrap();
    assert_eq!(report.problem, None);
}

async fn admin_changes_reach_every_instance_on_the_next_decision(b: Backend) {
    let (url, _dir) = testing::fresh_store_url(b).await;
    let a = testing::open(&url).await;
    setup(&a).await;
    let other = testing::open(&url).await;
    let d = Decider::start(other.clone(), engine(), DeciderOptions::default());
    assert_eq!(
        d.decide(withdraw(1), T0).await.unwrap().verdict.outcome,
        Outcome::Allow
    );
    // Another instance removes the destination: the very next decision here is a deny.
    let dest = a.destinations().await.unwrap()[0].clone();
    a.remove_destination(dest.id, "alice", T0 + 1)
        .await
        .unwrap();
    let v = d.decide(withdraw(1), T0 + 2).await.unwrap().verdict;
    assert_eq!(v.outcome, Outcome::Deny);
    assert!(v.reasons[0].contains("not in the address book"), "{v:?}");
    // And a disabled client is refused.
    a.set_client_enabled("mm", false, "alice", T0 + 3)
        .await
        .unwrap();
    let mut read = withdraw(1);
    read.action = Action::Read;
    read.asset = None;
    read.amount = None;
    read.destination = None;
    let v = d.decide(read, T0 + 4).await.unwrap().verdict;
    assert_eq!(v.outcome, Outcome::Deny);
    assert!(v.reasons[0].contains("disabled"), "{v:?}");
}

async fn tokens_are_stored_as_hashes_and_revocable(b: Backend) {
    let (s, _dir) = testing::fresh_store(b).await;
    setup(&s).await;
    let t = keygate_core::auth::new_token([3; 8], [9; 32]);
    let rec = keygate_core::auth::TokenRecord {
        id: t.id.clone(),
        client: "mm".into(),
        kind: keygate_core::auth::TokenKind::Bearer,
        secret_hash: t.secret_hash,
        venues: vec!["binance".into()],
        actions: vec![Action::Read],
        cidrs: vec!["10.0.0.0/24".parse().unwrap()],
        issued_at: T0,
        expires_at: T0 + 15 * MINUTE,
        revoked_at: None,
    };
    s.insert_token(&rec, "alice").await.unwrap();
    let (got, client) = s.token_with_client(&t.id).await.unwrap();
    assert_eq!(got.as_ref(), Some(&rec));
    assert_eq!(client.unwrap().name, "mm");
    assert_eq!(s.tokens(Some("mm")).await.unwrap().len(), 1);
    assert_eq!(s.tokens(None).await.unwrap().len(), 1);
    // The secret is nowhere in the audit log.
    let secret_hex = hex::encode([9u8; 32]);
    for row in s.audit_tail(100).await.unwrap() {
        assert!(!row.entry.contains(&secret_hex));
        assert!(!row.entry.contains(&hex::encode(t.secret_hash)));
    }
    s.revoke_token(&t.id, "alice", T0 + 1).await.unwrap();
    assert!(
        s.token_with_client(&t.id)
            .await
            .unwrap()
            .0
            .unwrap()
            .revoked_at
            .is_some()
    );
    assert!(s.revoke_token(&t.id, "alice", T0 + 2).await.is_err());
}

async fn address_book_needs_another_admin_and_a_cool_down(b: Backend) {
    let (s, _dir) = testing::fresh_store(b).await;
    setup(&s).await;
    let d = s
        .add_destination(
            "binance",
            "USDT",
            "0x00000000000000000000000000000000000000BB",
            "new",
            24 * HOUR,
            "alice",
            T0,
        )
        .await
        .unwrap();
    assert_eq!(d.address, "0x00000000000000000000000000000000000000bb");
    let e = s
        .approve_destination(d.id, "alice", T0 + 1)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("another admin"), "{e}");
    assert!(
        s.add_destination("binance", "USDT", &d.address, "dup", HOUR, "alice", T0)
            .await
            .is_err()
    );
    s.approve_destination(d.id, "bob", T0 + 2).await.unwrap();
    let dec = Decider::start(s.clone(), engine(), DeciderOptions::default());
    let mut i = withdraw(5);
    i.destination = Some(d.address.clone());
    let v = dec.decide(i.clone(), T0 + HOUR).await.unwrap().verdict;
    assert_eq!(v.outcome, Outcome::Deny);
    assert!(v.reasons[0].contains("cool-down"), "{v:?}");
    let v = dec.decide(i, T0 + 24 * HOUR).await.unwrap().verdict;
    assert_eq!(v.outcome, Outcome::Allow, "{v:?}");
}

async fn address_book_entries_keep_their_routes(b: Backend) {
    use keygate_core::route::{Route, Via};
    use keygate_store::NewEntryRow;
    let (s, _dir) = testing::fresh_store(b).await;
    setup(&s).await;
    let addr = "0x00000000000000000000000000000000000000cc";
    let eth = Route::chain(Some("ETH"));
    let phone = Route {
        via: Via::Phone,
        network: None,
        area_code: Some("86".into()),
    };
    let new = |address, route| NewEntryRow {
        venue: "binance",
        asset: "USDT",
        address,
        route,
        label: "cold",
    };
    let on_eth = s
        .add_routed_destination(&new(addr, &eth), 0, "alice", T0)
        .await
        .unwrap();
    // The same address on the default network, or on ETH again: one new entry, one conflict.
    let plain = s
        .add_destination("binance", "USDT", addr, "cold", 0, "alice", T0)
        .await
        .unwrap();
    let e = s
        .add_routed_destination(&new(addr, &eth), 0, "alice", T0)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("on network ETH"), "{e}");
    let by_phone = s
        .add_routed_destination(&new("13800000000", &phone), 0, "alice", T0)
        .await
        .unwrap();
    let listed = s.destinations().await.unwrap();
    // (setup's own entry comes first.)
    let routes: Vec<(i64, Route)> = listed
        .iter()
        .filter(|d| d.id >= on_eth.id)
        .map(|d| (d.id, d.route.clone()))
        .collect();
    assert_eq!(
        routes,
        vec![
            (on_eth.id, eth.clone()),
            (plain.id, Route::default()),
            (by_phone.id, phone)
        ]
    );
    // Only the ETH entry is approved: a withdrawal on ETH goes, one on BSC does not.
    s.approve_destination(on_eth.id, "bob", T0).await.unwrap();
    let dec = Decider::start(s.clone(), engine(), DeciderOptions::default());
    let mut i = withdraw(5);
    i.destination = Some(addr.into());
    i.route = eth;
    let v = dec.decide(i.clone(), T0 + HOUR).await.unwrap().verdict;
    assert_eq!(v.outcome, Outcome::Allow, "{v:?}");
    i.route = Route::chain(Some("BSC"));
    let v = dec.decide(i, T0 + HOUR).await.unwrap().verdict;
    assert_eq!(v.outcome, Outcome::Deny, "{v:?}");
    assert!(v.reasons[0].contains("does not approve another"), "{v:?}");
}

/// A verifier that trusts nothing: for chains without checkpoints.
struct NoKeys;
impl Verifier for NoKeys {
    fn verify(&self, _: &str, _: &[u8], _: &str) -> Result<(), String> {
        Err("no key is trusted".into())
    }
}

/// A stand-in signer for the store's own tests (the binary signs with Ed25519): a keyed hash.
struct TestSigner(&'static str);
impl Signer for TestSigner {
    fn public_key(&self) -> String {
        self.0.to_string()
    }
    fn sign(&self, message: &[u8]) -> String {
        hex::encode(
            Sha256::new()
                .chain_update(self.0)
                .chain_update(message)
                .finalize(),
        )
    }
}
impl Verifier for TestSigner {
    fn verify(&self, key: &str, message: &[u8], sig: &str) -> Result<(), String> {
        if key == self.0 && self.sign(message) == sig {
            Ok(())
        } else {
            Err("signature does not verify".into())
        }
    }
}

async fn raw(s: &Store, sql: &str) {
    sqlx::query(sqlx::AssertSqlSafe(sql.to_string()))
        .execute(s.pool())
        .await
        .unwrap();
}

async fn edited_deleted_or_reordered_entries_are_named(b: Backend) {
    for (tamper, seq, word) in [
        (
            "UPDATE audit_log SET entry = REPLACE(entry, '\"mm\"', '\"mx\"') WHERE seq = 7",
            7,
            "edited",
        ),
        (
            "UPDATE audit_log SET actor = 'client:other' WHERE seq = 6",
            6,
            "edited",
        ),
        (
            "UPDATE audit_log SET mv_usd_cents = 1 WHERE seq = 6",
            6,
            "edited",
        ),
        ("DELETE FROM audit_log WHERE seq = 5", 5, "deleted"),
        (
            "UPDATE audit_log SET seq = seq + 1000 WHERE seq IN (5, 6); UPDATE audit_log SET seq = 5 WHERE seq = 1006; \
          UPDATE audit_log SET seq = 6 WHERE seq = 1005",
            5,
            "reordered",
        ),
        (
            "DELETE FROM audit_log WHERE seq = 9",
            9,
            "removed from the end",
        ),
    ] {
        let (s, _dir) = testing::fresh_store(b).await;
        setup(&s).await; // entries 1-3
        let d = Decider::start(s.clone(), engine(), DeciderOptions::default());
        for i in 0..6 {
            d.decide(withdraw(10), T0 + i).await.unwrap(); // entries 4-9
        }
        assert_eq!(s.verify_audit(&NoKeys, &[]).await.unwrap().problem, None);
        for stmt in tamper.split("; ") {
            raw(&s, stmt).await;
        }
        let p = s
            .verify_audit(&NoKeys, &[])
            .await
            .unwrap()
            .problem
            .unwrap_or_else(|| panic!("{tamper} not found"));
        assert_eq!(p.seq, seq, "{tamper}: {p:?}");
        assert!(p.what.contains(word), "{tamper}: {p:?}");
    }
}

async fn signed_checkpoints_catch_a_rewritten_chain(b: Backend) {
    let (s, _dir) = testing::fresh_store(b).await;
    setup(&s).await;
    let exported = Arc::new(std::sync::Mutex::new(vec![]));
    let sink = exported.clone();
    let d = Decider::start(
        s.clone(),
        engine(),
        DeciderOptions {
            signer: Some(Arc::new(TestSigner("k1"))),
            checkpoints: CheckpointPolicy {
                every_entries: 3,
                every_ms: HOUR,
            },
            on_checkpoint: Some(Arc::new(move |cp| sink.lock().unwrap().push(cp.clone()))),
            hold_ttl: None,
        },
    );
    for i in 0..7 {
        d.decide(withdraw(10), T0 + i).await.unwrap();
    }
    let exported: Vec<_> = exported.lock().unwrap().clone();
    assert!(!exported.is_empty());
    let report = s.verify_audit(&TestSigner("k1"), &exported).await.unwrap();
    assert_eq!(report.problem, None, "{report:?}");
    assert!(report.checkpoints >= 2);
    // Someone with write access rewrites entry 5 and re-hashes the chain from there: the
    // chain is consistent again, but the signed checkpoints are not.
    let rows = s.audit_tail(100).await.unwrap();
    let mut prev = rows.iter().find(|r| r.seq == 4).unwrap().hash.clone();
    for r in rows.iter().filter(|r| r.seq >= 5) {
        let entry = if r.seq == 5 {
            r.entry
                .replace("\"stage\":\"policy\"", "\"stage\":\"limit\"")
        } else {
            r.entry.clone()
        };
        assert!(
            r.seq != 5 || entry != r.entry,
            "the rewrite changes entry 5"
        );
        let hash = keygate_store::audit::chain_hash(&prev, &entry);
        sqlx::query("UPDATE audit_log SET entry = $1, prev_hash = $2, hash = $3 WHERE seq = $4")
            .bind(entry)
            .bind(prev.clone())
            .bind(hash.clone())
            .bind(r.seq)
            .execute(s.pool())
            .await
            .unwrap();
        prev = hash;
    }
    sqlx::query("UPDATE audit_head SET hash = $1")
        .bind(prev)
        .execute(s.pool())
        .await
        .unwrap();
    let p = s
        .verify_audit(&TestSigner("k1"), &exported)
        .await
        .unwrap()
        .problem
        .unwrap();
    assert!(p.what.contains("rewritten"), "{p:?}");
    // A checkpoint signed by a key nobody trusts is refused.
    let p = s
        .verify_audit(&TestSigner("k2"), &[])
        .await
        .unwrap()
        .problem
        .unwrap();
    assert!(p.what.contains("bad signature"), "{p:?}");
}

async fn clocks_ahead_of_the_store_cannot_reopen_windows(b: Backend) {
    let (s, _dir) = testing::fresh_store(b).await;
    setup(&s).await;
    let real_now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    // An admin host two days ahead: its entry is dated no later than the store's clock.
    let seq = s
        .set_price("BTC", Decimal::ONE, "alice", real_now + 2 * 24 * HOUR)
        .await
        .unwrap();
    let row = s.audit_entry(seq).await.unwrap().unwrap();
    assert!(
        row.at_ms <= real_now + MINUTE,
        "admin entry dated {} ahead",
        row.at_ms - real_now
    );
    // A deciding host an hour ahead of the store's clock is refused, and debits nothing.
    let d = Decider::start(s.clone(), engine(), DeciderOptions::default());
    let v = d
        .decide(withdraw(10), real_now + HOUR)
        .await
        .unwrap()
        .verdict;
    assert_eq!(v.outcome, Outcome::Deny, "{v:?}");
    assert!(v.reasons[0].contains("ahead of the store"), "{v:?}");
    assert!(v.debit.is_none());
    let v = d.decide(withdraw(10), real_now).await.unwrap().verdict;
    assert_eq!(v.outcome, Outcome::Allow, "{v:?}");
}

/// The gateway's path through the decider: the token checked against the decider's own state
/// (so a revocation on another instance counts at once), a request id used once across
/// instances even when they race for it, and a denied request leaving its id unused.
async fn gateway_requests_are_authenticated_and_request_ids_never_repeat(b: Backend) {
    use keygate_core::auth::{AuthError, TokenRecord, new_token, parse_token};
    use keygate_store::{Answer, GatewayRequest};

    let (url, _dir) = testing::fresh_store_url(b).await;
    let a = testing::open(&url).await;
    setup(&a).await;
    let b2 = testing::open(&url).await;
    let t = new_token([5; 8], [6; 32]);
    a.insert_token(
        &TokenRecord {
            id: t.id.clone(),
            client: "mm".into(),
            kind: keygate_core::auth::TokenKind::Bearer,
            secret_hash: t.secret_hash,
            venues: vec!["binance".into()],
            actions: vec![Action::Read, Action::Withdraw],
            cidrs: vec!["10.0.0.0/24".parse().unwrap()],
            issued_at: T0 - HOUR,
            expires_at: T0 + HOUR,
            revoked_at: None,
        },
        "alice",
    )
    .await
    .unwrap();
    let da = Decider::start(a.clone(), engine(), DeciderOptions::default());
    let db = Decider::start(b2.clone(), engine(), DeciderOptions::default());
    let text = t.text.to_string();
    let req = move |token: &str, ip: &str, intent: Result<Intent, String>, rid: Option<&str>| {
        GatewayRequest {
            token: parse_token(token).unwrap(),
            ip: ip.parse().unwrap(),
            venue: "binance".into(),
            method: "POST".into(),
            path: "/sapi/v1/capital/withdraw/apply".into(),
            request_text: intent
                .is_ok()
                .then(|| "POST /sapi/v1/capital/withdraw/apply\n".into()),
            intent,
            request_id: rid.map(str::to_string),
            hold: None,
            native_id: true,
        }
    };
    let mut intent = withdraw(100);
    // The gateway does not know the client: the token says who it is.
    intent.client = String::new();
    let forged = format!("{}{}", &text[..21], "0".repeat(64));

    let refused = |a: Answer| match a {
        Answer::Refused { error, .. } => error,
        other => panic!("expected a refusal, got {other:?}"),
    };
    let e = refused(
        da.gateway(req(&forged, "10.0.0.5", Ok(intent.clone()), None), T0)
            .await
            .unwrap(),
    );
    assert!(matches!(e, AuthError::BadSecret { .. }), "{e:?}");
    let e = refused(
        da.gateway(req(&text, "10.0.1.5", Ok(intent.clone()), None), T0)
            .await
            .unwrap(),
    );
    assert!(matches!(e, AuthError::WrongAddress { .. }), "{e:?}");
    // An unclassified request is refused after the token is checked.
    match da
        .gateway(
            req(&text, "10.0.0.5", Err("unknown endpoint".into()), None),
            T0,
        )
        .await
        .unwrap()
    {
        Answer::Rejected { reason, .. } => assert_eq!(reason, "unknown endpoint"),
        other => panic!("{other:?}"),
    }
    // A denied request (unknown destination) leaves its id unused.
    let mut stranger = intent.clone();
    stranger.destination = Some("0x00000000000000000000000000000000000000cc".into());
    match da
        .gateway(req(&text, "10.0.0.5", Ok(stranger), Some("w1")), T0)
        .await
        .unwrap()
    {
        Answer::Decided(d) => assert_eq!(d.verdict.outcome, Outcome::Deny),
        other => panic!("{other:?}"),
    }
    match da
        .gateway(
            req(&text, "10.0.0.5", Ok(intent.clone()), Some("w1")),
            T0 + 1,
        )
        .await
        .unwrap()
    {
        Answer::Decided(d) => {
            assert_eq!(d.verdict.outcome, Outcome::Allow, "{:?}", d.verdict.reasons);
        }
        other => panic!("{other:?}"),
    }
    // The other instance refuses it again.
    assert!(matches!(
        db.gateway(
            req(&text, "10.0.0.5", Ok(intent.clone()), Some("w1")),
            T0 + 2
        )
        .await
        .unwrap(),
        Answer::Rejected { .. }
    ));
    // Twenty racers over both instances for one id: exactly one is decided.
    let mut tasks = vec![];
    for i in 0..20i64 {
        let d = if i % 2 == 0 { da.clone() } else { db.clone() };
        let r = req(&text, "10.0.0.5", Ok(intent.clone()), Some("race"));
        tasks.push(tokio::spawn(async move {
            d.gateway(r, T0 + 10 + i).await.unwrap()
        }));
    }
    let mut decided = 0;
    for task in tasks {
        if let Answer::Decided(d) = task.await.unwrap() {
            assert_eq!(d.verdict.outcome, Outcome::Allow);
            decided += 1;
        }
    }
    assert_eq!(decided, 1);
    // Revoked on one instance: the other refuses the token on its very next request.
    a.revoke_token(&t.id, "alice", T0 + 100).await.unwrap();
    let e = refused(
        db.gateway(req(&text, "10.0.0.5", Ok(intent.clone()), None), T0 + 101)
            .await
            .unwrap(),
    );
    assert!(matches!(e, AuthError::Revoked { .. }), "{e:?}");
}

/// A freeze stops the next decision of every instance, survives a restart, and only a quorum of
/// valid approvals lifts it: a non-approver, an expired or too long-lived approval, a forged
/// signature, a signature made for another freeze, and the same approver twice all fail to
/// count.
async fn a_freeze_holds_across_instances_and_restarts_until_a_quorum_lifts_it(b: Backend) {
    use keygate_core::freeze::{ApprovalPolicy, Scope, approval_message};
    use keygate_store::freeze::Approved;

    // Approvals are checked against the store's clock, so this test runs on the real time.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let (url, _dir) = testing::fresh_store_url(b).await;
    let a = testing::open(&url).await;
    setup(&a).await;
    let db = Decider::start(
        testing::open(&url).await,
        engine(),
        DeciderOptions::default(),
    );
    assert_eq!(
        db.decide(withdraw(10), now).await.unwrap().verdict.outcome,
        Outcome::Allow
    );
    let (f1, _) = a
        .freeze(
            &Scope::Client("mm".into()),
            "test-then-drain",
            "admin:alice",
            now + 1,
        )
        .await
        .unwrap();
    let (f2, _) = a
        .freeze(&Scope::Venue("okx".into()), "other", "admin:alice", now + 1)
        .await
        .unwrap();
    let v = db.decide(withdraw(10), now + 2).await.unwrap().verdict;
    assert_eq!(
        (v.outcome, v.stage),
        (Outcome::Deny, keygate_core::decide::Stage::Freeze)
    );
    // A restart (a new handle and decider) still sees it.
    let db = Decider::start(
        testing::open(&url).await,
        engine(),
        DeciderOptions::default(),
    );
    assert_eq!(
        db.decide(withdraw(10), now + 3)
            .await
            .unwrap()
            .verdict
            .stage,
        keygate_core::decide::Stage::Freeze
    );
    assert_eq!(a.freezes(false).await.unwrap().len(), 2);

    let signer = |k: &'static str| TestSigner(k);
    let policy = ApprovalPolicy {
        approvers: vec!["k1".into(), "k2".into(), "k3".into()],
        quorum: 2,
        max_validity: HOUR,
    };
    let subject = a
        .approval_subject(&format!("freeze:{f1}"), now)
        .await
        .unwrap();
    let other = a
        .approval_subject(&format!("freeze:{f2}"), now)
        .await
        .unwrap();
    let exp = now + 10 * MINUTE;
    let sign = |k: &'static str, s: &keygate_core::freeze::Subject, e: i64| {
        signer(k).sign(&approval_message(s, e))
    };
    let sub = format!("freeze:{f1}");
    let approve = |key: &'static str, sig: String, e: i64| {
        let (a, sub, policy) = (a.clone(), sub.clone(), policy.clone());
        async move { a.approve(&sub, key, &sig, e, &policy, &MultiKey, now).await }
    };
    // Not an approver.
    assert!(approve("k9", sign("k9", &subject, exp), exp).await.is_err());
    // Expired, and valid for too long.
    assert!(
        approve("k1", sign("k1", &subject, now - 1), now - 1)
            .await
            .is_err()
    );
    assert!(
        approve("k1", sign("k1", &subject, now + 2 * HOUR), now + 2 * HOUR)
            .await
            .is_err()
    );
    // Forged: signed by another key; replayed: made for the other freeze.
    assert!(approve("k1", sign("k2", &subject, exp), exp).await.is_err());
    assert!(approve("k1", sign("k1", &other, exp), exp).await.is_err());
    // One valid approval, twice: it counts once.
    for _ in 0..2 {
        assert!(matches!(
            approve("k1", sign("k1", &subject, exp), exp).await.unwrap(),
            Approved::Counted {
                have: 1,
                need: 2,
                ..
            }
        ));
    }
    assert_eq!(
        db.decide(withdraw(10), now + 4)
            .await
            .unwrap()
            .verdict
            .stage,
        keygate_core::decide::Stage::Freeze
    );
    // The second approver completes the quorum.
    match approve("k2", sign("k2", &subject, exp), exp).await.unwrap() {
        Approved::Lifted {
            freeze_id,
            approvers,
            ..
        } => {
            assert_eq!(freeze_id, f1);
            assert_eq!(approvers, vec!["k1".to_string(), "k2".to_string()]);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        db.decide(withdraw(10), now + 5)
            .await
            .unwrap()
            .verdict
            .outcome,
        Outcome::Allow
    );
    // Lifted is lifted: nothing more to approve; the other freeze still holds.
    assert!(approve("k3", sign("k3", &subject, exp), exp).await.is_err());
    assert_eq!(a.freezes(false).await.unwrap().len(), 1);
    assert_eq!(a.freezes(true).await.unwrap().len(), 2);
}

/// Verifies the store tests' keyed-hash signatures for any key.
struct MultiKey;
impl Verifier for MultiKey {
    fn verify(&self, key: &str, message: &[u8], sig: &str) -> Result<(), String> {
        let expected = hex::encode(
            Sha256::new()
                .chain_update(key)
                .chain_update(message)
                .finalize(),
        );
        if expected == sig {
            Ok(())
        } else {
            Err("signature does not verify".into())
        }
    }
}

/// The detectors' history is the store's: a test withdrawal decided before a restart, and the
/// drain after it, on another instance, is still caught, and the freeze it sets is durable.
async fn detectors_remember_across_a_restart_and_freeze_in_the_decision(b: Backend) {
    let watching = || {
        let mut e = Arc::try_unwrap(engine()).unwrap_or_else(|_| unreachable!());
        e.detectors = keygate_core::detect::DetectorConfig::default();
        Arc::new(e)
    };
    let (url, _dir) = testing::fresh_store_url(b).await;
    let a = testing::open(&url).await;
    setup(&a).await;
    let d1 = Decider::start(a.clone(), watching(), DeciderOptions::default());
    let test = d1.decide(withdraw(72), T0).await.unwrap();
    assert_eq!(
        test.verdict.outcome,
        Outcome::Allow,
        "{:?}",
        test.verdict.reasons
    );
    drop(d1);
    let d2 = Decider::start(
        testing::open(&url).await,
        watching(),
        DeciderOptions::default(),
    );
    let drain = d2
        .decide(withdraw(20_000), T0 + 10 * MINUTE)
        .await
        .unwrap()
        .verdict;
    assert_eq!(
        (drain.outcome, drain.stage),
        (Outcome::Deny, keygate_core::decide::Stage::Detector),
        "{:?}",
        drain.reasons
    );
    assert!(
        drain.reasons[0].contains("test_then_drain"),
        "{:?}",
        drain.reasons
    );
    let frozen = a.freezes(false).await.unwrap();
    assert_eq!(frozen.len(), 1);
    assert_eq!(frozen[0].freeze.scope.to_string(), "client:mm");
    // A small, normal withdrawal after it: frozen.
    let v = d2
        .decide(withdraw(50), T0 + 11 * MINUTE)
        .await
        .unwrap()
        .verdict;
    assert_eq!(v.stage, keygate_core::decide::Stage::Freeze);
}

/// A held decision is recorded as a hold, listed while it waits, with its approvals counted
/// (the listing's SQL runs on both backends).
async fn held_decisions_are_listed_with_their_approvals(b: Backend) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let (url, _dir) = testing::fresh_store_url(b).await;
    let s = testing::open(&url).await;
    setup(&s).await;
    let mut e = Arc::try_unwrap(engine()).unwrap_or_else(|_| unreachable!());
    e.policies = Policies::load(&[PolicySource {
        name: "p.cedar".into(),
        text: "permit(principal, action, resource);\n@hold forbid(principal, action, resource) when { context.usd_value_cents > 100000 } unless { context.approvals >= 2 };".into(),
    }])
    .unwrap();
    let d = Decider::start(s.clone(), Arc::new(e), DeciderOptions::default());
    let held = d.decide(withdraw(5_000), now).await.unwrap();
    assert_eq!(
        held.verdict.outcome,
        Outcome::Hold,
        "{:?}",
        held.verdict.reasons
    );
    let holds = s.holds(false, now).await.unwrap();
    assert_eq!(holds.len(), 1);
    assert_eq!((holds[0].decision_id, holds[0].approvals), (held.id, 0));
    assert!(holds[0].expires_at > now);
    // Decided without a request: it binds none, so it is not offered for approval.
    assert_eq!(holds[0].request_text, None);
    let refused = s
        .approval_subject(&format!("hold:{}", held.id), now)
        .await
        .unwrap_err();
    assert!(refused.to_string().contains("new hold"), "{refused}");
    // Expired: no longer waiting, still listed with --all.
    assert!(s.holds(false, now + 2 * HOUR).await.unwrap().is_empty());
    assert_eq!(s.holds(true, now + 2 * HOUR).await.unwrap().len(), 1);
}

/// A hold through the decider's gateway path: it records the request it binds (in its row and
/// its audit entry), approvers sign a digest covering it, and only that request carries it out;
/// another request of the same intent is refused, and so is a hold that binds no request (as
/// holds from before the migration that added `request_text` are).
async fn a_hold_binds_its_request_and_only_that_request_carries_it_out(b: Backend) {
    use keygate_core::auth::{TokenRecord, new_token, parse_token};
    use keygate_core::freeze::{ApprovalPolicy, Subject, approval_message};
    use keygate_store::audit::AuditEntry;
    use keygate_store::decider::Rejection;
    use keygate_store::freeze::Approved;
    use keygate_store::{Answer, GatewayRequest};

    const HELD: &str = "POST /sapi/v1/capital/withdraw/apply\ncoin=USDT&network=ETH&address=0x00000000000000000000000000000000000000aa&amount=5000";
    const SWAPPED: &str = "POST /sapi/v1/capital/withdraw/apply\ncoin=USDT&network=BSC&address=0x00000000000000000000000000000000000000aa&amount=5000";
    // Approvals are checked against the store's clock, so this test runs on the real time.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let (url, _dir) = testing::fresh_store_url(b).await;
    let s = testing::open(&url).await;
    setup(&s).await;
    let t = new_token([3; 8], [4; 32]);
    s.insert_token(
        &TokenRecord {
            id: t.id.clone(),
            client: "mm".into(),
            kind: keygate_core::auth::TokenKind::Bearer,
            secret_hash: t.secret_hash,
            venues: vec!["binance".into()],
            actions: vec![Action::Withdraw],
            cidrs: vec!["10.0.0.0/24".parse().unwrap()],
            issued_at: now - HOUR,
            expires_at: now + HOUR,
            revoked_at: None,
        },
        "alice",
    )
    .await
    .unwrap();
    let mut e = Arc::try_unwrap(engine()).unwrap_or_else(|_| unreachable!());
    e.policies = Policies::load(&[PolicySource {
        name: "p.cedar".into(),
        text: "permit(principal, action, resource);\n@hold forbid(principal, action, resource) when { context.usd_value_cents > 100000 } unless { context.approvals >= 2 };".into(),
    }])
    .unwrap();
    let d = Decider::start(s.clone(), Arc::new(e), DeciderOptions::default());
    let token = t.text.to_string();
    let mut intent = withdraw(5_000);
    intent.client = String::new();
    let send = |text: &str, rid: &str, hold: Option<i64>| {
        let r = GatewayRequest {
            token: parse_token(&token).unwrap(),
            ip: "10.0.0.5".parse().unwrap(),
            venue: "binance".into(),
            method: "POST".into(),
            path: "/sapi/v1/capital/withdraw/apply".into(),
            intent: Ok(intent.clone()),
            request_id: Some(rid.to_string()),
            hold,
            native_id: false,
            request_text: Some(text.to_string()),
        };
        let d = d.clone();
        async move { d.gateway(r, now).await.unwrap() }
    };
    let decided = |a: Answer| match a {
        Answer::Decided(d) => d,
        other => panic!("{other:?}"),
    };
    let held = decided(send(HELD, "w-held", None).await);
    assert_eq!(
        held.verdict.outcome,
        Outcome::Hold,
        "{:?}",
        held.verdict.reasons
    );

    // The hold keeps the request, its digest covers intent and request, and the held
    // decision's audit entry records the same request.
    let row = s.hold(held.id).await.unwrap().expect("the hold");
    assert_eq!(row.request_text.as_deref(), Some(HELD));
    assert_eq!(
        row.digest,
        keygate_store::decider::hold_digest(&withdraw(5_000), HELD)
    );
    assert_ne!(
        row.digest,
        keygate_store::decider::hold_digest(&withdraw(5_000), SWAPPED)
    );
    assert_eq!(
        s.holds(false, now).await.unwrap()[0]
            .request_text
            .as_deref(),
        Some(HELD)
    );
    match s
        .audit_entry(held.id)
        .await
        .unwrap()
        .unwrap()
        .entry()
        .unwrap()
    {
        AuditEntry::Decision(e) => {
            assert_eq!(e.request.unwrap().request_text.as_deref(), Some(HELD));
        }
        other => panic!("{other:?}"),
    }

    // Approved by a quorum: the approvers sign the digest that covers the request.
    let sub = format!("hold:{}", held.id);
    let subject = s.approval_subject(&sub, now).await.unwrap();
    assert!(
        matches!(&subject, Subject::Hold { intent_digest, .. } if *intent_digest == row.digest),
        "{subject:?}"
    );
    let policy = ApprovalPolicy {
        approvers: vec!["k1".into(), "k2".into()],
        quorum: 2,
        max_validity: HOUR,
    };
    let exp = now + 10 * MINUTE;
    let mut last = None;
    for k in ["k1", "k2"] {
        let sig = TestSigner(k).sign(&approval_message(&subject, exp));
        last = Some(
            s.approve(&sub, k, &sig, exp, &policy, &MultiKey, now)
                .await
                .unwrap(),
        );
    }
    assert!(
        matches!(last, Some(Approved::HoldApproved { .. })),
        "{last:?}"
    );

    // The same intent in another request (another network) is refused, and spends nothing.
    match send(SWAPPED, "w-held", Some(held.id)).await {
        Answer::Rejected { code, reason, .. } => {
            assert_eq!(code, Rejection::HoldInvalid);
            assert!(reason.contains("another request"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(s.hold_executed_by(held.id).await.unwrap(), None);
    // The held request carries it out, once.
    let done = decided(send(HELD, "w-held", Some(held.id)).await);
    assert_eq!(
        done.verdict.outcome,
        Outcome::Allow,
        "{:?}",
        done.verdict.reasons
    );
    assert_eq!(s.hold_executed_by(held.id).await.unwrap(), Some(done.id));

    // A hold that binds no request (the shape the migration leaves holds from before it in) is
    // neither offered for approval nor carried out: the bot is told to ask for a new hold.
    let old = decided(send(HELD, "w-old", None).await);
    assert_eq!(old.verdict.outcome, Outcome::Hold);
    sqlx::query("UPDATE holds SET request_text = NULL WHERE decision_id = $1")
        .bind(old.id)
        .execute(s.pool())
        .await
        .unwrap();
    let refused = s
        .approval_subject(&format!("hold:{}", old.id), now)
        .await
        .unwrap_err();
    assert!(refused.to_string().contains("new hold"), "{refused}");
    sqlx::query("UPDATE holds SET approved_ms = $1 WHERE decision_id = $2")
        .bind(now)
        .bind(old.id)
        .execute(s.pool())
        .await
        .unwrap();
    match send(HELD, "w-old", Some(old.id)).await {
        Answer::Rejected { code, reason, .. } => {
            assert_eq!(code, Rejection::HoldInvalid);
            assert!(
                reason.contains("without x-keygate-hold for a new hold"),
                "{reason}"
            );
        }
        other => panic!("{other:?}"),
    }
}
