//! Containment at the venue, in the store: one containment per venue and freeze, steps that are
//! never begun or changed once final (across store handles, as two instances would be), sweep
//! rounds that add their steps atomically, and every change audited. Every test runs on SQLite
//! and on PostgreSQL.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test crate: a failed unwrap is a failed test

use keygate_store::audit::{AuditEntry, ContainmentEvent};
use keygate_store::containment::{NewStep, StepEnd, StepState};
use keygate_store::{Backend, Conflict, StoreError, testing};
use serde_json::json;

keygate_store::both_backends!(
    one_containment_per_venue_and_freeze_with_its_steps_audited,
    a_final_step_is_never_begun_or_changed_again_by_any_instance,
    a_round_adds_its_sweeps_in_its_own_transaction_and_the_last_final_step_finishes,
);

struct NoKeys;
impl keygate_store::audit::Verifier for NoKeys {
    fn verify(&self, _: &str, _: &[u8], _: &str) -> Result<(), String> {
        Err("no key is trusted".into())
    }
}

fn ids(c: i64, s: i64) -> String {
    format!("kgc{c}s{s}")
}

fn steps() -> Vec<NewStep> {
    vec![
        NewStep {
            action: "lock-key".into(),
            params: json!({"how": "ip-restrict", "addresses": ["127.0.0.1"]}),
            client_id: false,
        },
        NewStep {
            action: "sweep-round".into(),
            params: json!({"round": 1}),
            client_id: false,
        },
    ]
}

fn end(state: StepState, outcome: &'static str) -> StepEnd<'static> {
    StepEnd {
        state,
        outcome,
        detail: "test",
        venue_ref: None,
        next_ms: 0,
        add: vec![],
    }
}

async fn one_containment_per_venue_and_freeze_with_its_steps_audited(b: Backend) {
    let (store, _dir) = testing::fresh_store(b).await;
    let id = store
        .start_containment("binance", 7, &steps(), &ids, "containment:binance")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        store
            .start_containment("binance", 7, &steps(), &ids, "containment:binance")
            .await
            .unwrap(),
        None,
        "a second start for the same venue and freeze does nothing"
    );
    let other = store
        .start_containment("okx", 7, &steps(), &ids, "containment:okx")
        .await
        .unwrap()
        .unwrap();
    assert_ne!(id, other);
    let all = store.containments(false).await.unwrap();
    assert_eq!(all.len(), 2);
    let c = all.iter().find(|c| c.id == id).unwrap();
    assert_eq!(
        (c.venue.as_str(), c.freeze_id, c.done_ms),
        ("binance", 7, None)
    );
    assert_eq!(c.steps.len(), 2);
    assert_eq!(c.steps[0].action, "lock-key");
    assert_eq!(c.steps[0].state, StepState::Planned);
    assert_eq!(c.steps[1].seq, 2);
    let tail = store.audit_tail(5).await.unwrap();
    let started: Vec<_> = tail
        .iter()
        .filter_map(|r| match r.entry().unwrap() {
            AuditEntry::Containment(ContainmentEvent::Started {
                containment_id,
                steps,
                ..
            }) => Some((containment_id, steps.len())),
            _ => None,
        })
        .collect();
    assert_eq!(started, vec![(id, 2), (other, 2)]);
    assert_eq!(
        store.verify_audit(&NoKeys, &[]).await.unwrap().problem,
        None
    );
}

async fn a_final_step_is_never_begun_or_changed_again_by_any_instance(b: Backend) {
    let (url, _dir) = testing::fresh_store_url(b).await;
    let a = testing::open(&url).await;
    let other = testing::open(&url).await;
    let id = a
        .start_containment("binance", 1, &steps(), &ids, "containment:binance")
        .await
        .unwrap()
        .unwrap();
    let s = a.begin_step(id, 1).await.unwrap();
    assert_eq!((s.state, s.attempts), (StepState::Sending, 1));
    // The answer was lost: the other instance finds it sending, tries again, and it is
    // confirmed.
    let seen = other.containments(false).await.unwrap();
    assert_eq!(seen[0].steps[0].state, StepState::Sending);
    let s = other.begin_step(id, 1).await.unwrap();
    assert_eq!(s.attempts, 2);
    let finished = other
        .end_step(
            id,
            1,
            &end(StepState::Confirmed, "confirmed"),
            &ids,
            "containment:binance",
        )
        .await
        .unwrap();
    assert!(!finished, "the sweep round is still to do");
    // Neither instance can send it again or change its outcome.
    for store in [&a, &other] {
        let e = store.begin_step(id, 1).await.unwrap_err();
        assert!(
            matches!(e, StoreError::Conflict(Conflict::AlreadyDone(_))),
            "{e}"
        );
        let e = store
            .end_step(id, 1, &end(StepState::Retry, "unknown"), &ids, "x")
            .await
            .unwrap_err();
        assert!(
            matches!(e, StoreError::Conflict(Conflict::AlreadyDone(_))),
            "{e}"
        );
    }
    let c = &a.containments(false).await.unwrap()[0];
    assert_eq!(
        (c.steps[0].state, c.steps[0].attempts),
        (StepState::Confirmed, 2)
    );
    assert!(matches!(
        a.begin_step(id, 99).await.unwrap_err(),
        StoreError::Conflict(_)
    ));
}

async fn a_round_adds_its_sweeps_in_its_own_transaction_and_the_last_final_step_finishes(
    b: Backend,
) {
    let (store, _dir) = testing::fresh_store(b).await;
    let id = store
        .start_containment("okx", 3, &steps(), &ids, "containment:okx")
        .await
        .unwrap()
        .unwrap();
    store.begin_step(id, 1).await.unwrap();
    store
        .end_step(id, 1, &end(StepState::Confirmed, "confirmed"), &ids, "c")
        .await
        .unwrap();
    store.begin_step(id, 2).await.unwrap();
    let mut round = end(StepState::Confirmed, "confirmed");
    round.add = vec![NewStep {
        action: "sweep".into(),
        params: json!({"asset": "USDT", "amount": "500", "wallet": "trading"}),
        client_id: true,
    }];
    assert!(!store.end_step(id, 2, &round, &ids, "c").await.unwrap());
    let c = &store.containments(false).await.unwrap()[0];
    assert_eq!(c.steps.len(), 3);
    assert_eq!(
        c.steps[2].client_id.as_deref(),
        Some(format!("kgc{id}s3").as_str())
    );
    store.begin_step(id, 3).await.unwrap();
    let mut pending = end(StepState::Pending, "pending");
    pending.venue_ref = Some("754147");
    pending.next_ms = 5;
    assert!(!store.end_step(id, 3, &pending, &ids, "c").await.unwrap());
    let c = &store.containments(false).await.unwrap()[0];
    assert_eq!(
        (c.steps[2].state, c.steps[2].venue_ref.as_deref()),
        (StepState::Pending, Some("754147"))
    );
    store.begin_step(id, 3).await.unwrap();
    assert!(
        store
            .end_step(id, 3, &end(StepState::Confirmed, "confirmed"), &ids, "c")
            .await
            .unwrap(),
        "the last step made final finishes the containment"
    );
    assert!(store.containments(false).await.unwrap().is_empty());
    let all = store.containments(true).await.unwrap();
    assert!(all[0].done_ms.is_some());
    // The venue's id stays when a later attempt brings none.
    assert_eq!(all[0].steps[2].venue_ref.as_deref(), Some("754147"));
    let done = store
        .audit_tail(3)
        .await
        .unwrap()
        .iter()
        .any(|r| matches!(r.entry().unwrap(), AuditEntry::Containment(ContainmentEvent::Done { containment_id, .. }) if containment_id == id));
    assert!(done);
    assert_eq!(
        store.verify_audit(&NoKeys, &[]).await.unwrap().problem,
        None
    );
}
