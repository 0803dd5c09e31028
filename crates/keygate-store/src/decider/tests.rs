//! The pipeline's guarantees, with a commit made to stall (and fail) on the decider's SQLite
//! connection: a batch decided while an earlier one commits is answered only after that commit,
//! and never with decisions that counted an earlier batch whose commit failed.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use keygate_core::auth::ClientRecord;
use keygate_core::limits::{LimitSpec, Selector};
use keygate_core::policy::{Policies, PolicySource};
use keygate_core::time::{HOUR, MINUTE};
use keygate_core::{Action, Engine, Intent, Outcome};
use rust_decimal::Decimal;

use super::lite::faults;
use super::{Decider, DeciderOptions, Decision};
use crate::{Backend, Store, StoreError, testing};

const T0: i64 = 1_700_000_000_000;
const DEST: &str = "0x00000000000000000000000000000000000000aa";

/// Withdrawals capped at USD 100 an hour over all clients.
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
            actions: vec![Action::Withdraw],
            window: HOUR,
            max_usd_cents: Some(10_000),
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

fn withdraw(amount: i64) -> Intent {
    Intent {
        order: None,
        client: "mm".into(),
        venue: "binance".into(),
        action: Action::Withdraw,
        asset: Some("USDT".into()),
        amount: Some(Decimal::from(amount)),
        destination: Some(DEST.into()),
        route: Default::default(),
        source_ip: None,
        token_id: None,
    }
}

/// A SQLite store with a client and an approved destination, a decider on it that has decided
/// (and committed) a USD 10 withdrawal, the store file's path and that decision's id.
async fn started() -> (Store, Decider, String, i64, tempfile::TempDir) {
    let (url, dir) = testing::fresh_store_url(Backend::Sqlite).await;
    let s = testing::open(&url).await;
    let client = ClientRecord {
        instruments: vec![],
        name: "mm".into(),
        venues: vec!["binance".into()],
        actions: Action::ALL.to_vec(),
        tags: vec![],
        enabled: true,
    };
    let t = T0 - 2 * 24 * HOUR;
    s.add_client(&client, "alice", t).await.unwrap();
    let d = s
        .add_destination("binance", "USDT", DEST, "cold", 24 * HOUR, "alice", t)
        .await
        .unwrap();
    s.approve_destination(d.id, "bob", t + 1).await.unwrap();
    let path = crate::sqlite_path_of(&s).unwrap();
    let dec = Decider::start(s.clone(), engine(), DeciderOptions::default());
    let first = dec.decide(withdraw(10), T0).await.unwrap();
    assert_eq!(first.verdict.outcome, Outcome::Allow, "{:?}", first.verdict);
    (s, dec, path, first.id, dir.unwrap())
}

/// Submits `a`, then `b` while `a`'s commit stalls; both results with when each came back.
async fn during_a_stalled_commit(
    dec: &Decider,
    path: &str,
    fail: bool,
) -> (
    (Result<Decision, StoreError>, Instant),
    (Result<Decision, StoreError>, Instant),
) {
    let before = faults::speculated_batches(path);
    faults::stall_next_commit(path, Duration::from_millis(400), fail);
    let da = dec.clone();
    let a = tokio::spawn(async move {
        let r = da.decide(withdraw(60), T0 + 1_000).await;
        (r, Instant::now())
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let db = dec.clone();
    let b = tokio::spawn(async move {
        let r = db.decide(withdraw(60), T0 + 2_000).await;
        (r, Instant::now())
    });
    let (a, b) = (a.await.unwrap(), b.await.unwrap());
    assert!(
        faults::speculated_batches(path) > before,
        "the second withdrawal was decided while the first one's commit was in flight"
    );
    (a, b)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_decided_during_a_failed_commit_is_decided_again_without_it() {
    let (s, dec, path, first, _dir) = started().await;
    let ((a, _), (b, _)) = during_a_stalled_commit(&dec, &path, true).await;
    assert!(
        matches!(a, Err(StoreError::NotRecorded { .. })),
        "the failed commit's caller is told nothing was recorded: {a:?}"
    );
    // Decided during the commit against USD 70 spent (10 + 60), B would be denied (130 > 100).
    // A was never recorded: against the rebuilt state, B fits (70 <= 100).
    let b = b.unwrap();
    assert_eq!(b.verdict.outcome, Outcome::Allow, "{:?}", b.verdict);
    let row = s.audit_entry(b.id).await.unwrap().unwrap();
    assert_eq!(row.kind, "decision");
    assert_eq!(row.debit.as_ref().unwrap().usd_cents, 6_000);
    assert_eq!(
        b.id,
        first + 1,
        "A's entry was rolled back: B's follows the first decision"
    );
    assert!(s.audit_entry(first + 2).await.unwrap().is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_decided_during_a_commit_counts_it_and_is_answered_after_it() {
    let (s, dec, path, first, _dir) = started().await;
    let ((a, a_at), (b, b_at)) = during_a_stalled_commit(&dec, &path, false).await;
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!(a.verdict.outcome, Outcome::Allow, "{:?}", a.verdict);
    // B was decided while A committed, with A's debit counted: 10 + 60 + 60 > 100.
    assert_eq!(b.verdict.outcome, Outcome::Deny, "{:?}", b.verdict);
    assert!(
        a_at <= b_at,
        "B's answer went out before A's commit returned"
    );
    assert_eq!(
        (a.id, b.id),
        (first + 1, first + 2),
        "the chain keeps the batches' order"
    );
    let report = s.verify_audit(&NoKeys, &[]).await.unwrap();
    assert_eq!(report.problem, None);
    assert_eq!(report.entries as i64, first + 2);
}

struct NoKeys;
impl crate::audit::Verifier for NoKeys {
    fn verify(&self, _: &str, _: &[u8], _: &str) -> Result<(), String> {
        Err("no keys".into())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_wal_is_checkpointed_off_the_commit_path() {
    let (_s, dec, path, _first, _dir) = started().await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    let before = std::fs::metadata(&path).unwrap().len();
    for i in 0..200 {
        dec.decide(withdraw(0), T0 + 10_000 + i).await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(600)).await;
    // 200 entries are far fewer than the 1,000 pages at which SQLite's own checkpoint runs:
    // only the checkpointer copies them into the database file.
    let after = std::fs::metadata(&path).unwrap().len();
    assert!(
        after > before,
        "the database file grew from {before} bytes to {after}"
    );
    let conn = super::lite::open(&path).unwrap();
    let auto: i64 = conn
        .query_row("PRAGMA wal_autocheckpoint", [], |r| r.get(0))
        .unwrap();
    assert_eq!(
        auto, 1000,
        "only the decider's own connection stops checkpointing itself"
    );
}
