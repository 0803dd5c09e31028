//! The store suite: every test runs once against SQLite and once against PostgreSQL.
//!
//! The PostgreSQL half needs `KEYGATE_TEST_POSTGRES_URL` (set by `scripts/test`); without it
//! those tests fail with a message saying how to run them.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test crate: a failed unwrap is a failed test

use keygate_store::{
    Backend, CredentialStatus, MASTER_KEY_ID, NewCredential, OpenMode, Store, StoreError, testing,
};

/// A fresh, migrated store of the given backend whose master key id is "k1", plus the temp dir
/// that holds a SQLite file.
async fn fresh(backend: Backend) -> (Store, Option<tempfile::TempDir>) {
    let (s, d) = fresh_empty(backend).await;
    s.set_meta(MASTER_KEY_ID, "k1").await.unwrap();
    (s, d)
}

async fn fresh_empty(backend: Backend) -> (Store, Option<tempfile::TempDir>) {
    testing::fresh_store(backend).await
}

fn cred(id: &str, version: u32, tag: u8) -> NewCredential {
    NewCredential {
        id: id.into(),
        version,
        venue: "binance-main".into(),
        kind: "binance-hmac".into(),
        fingerprint: format!("fp{version}{tag}"),
        key_id: "k1".into(),
        wrapped_key: vec![1, tag, 0, 255],
        ciphertext: vec![2, tag, 0, 255, 7],
        created_ms: 1_700_000_000_000 + i64::from(version) * 1000,
    }
}

keygate_store::both_backends!(
    migrations_apply_once_and_are_idempotent,
    meta_roundtrip,
    credential_add_list_get,
    duplicate_id_is_a_conflict_and_changes_nothing,
    rotate_disables_old_version,
    rotate_from_a_stale_version_changes_nothing,
    concurrent_rotations_leave_one_active_version,
    remove_deletes_every_version,
    rekey_replaces_every_wrapped_key_atomically,
    rekey_with_a_missing_row_changes_nothing,
    writes_under_a_stale_master_key_are_refused,
    concurrent_adds_and_rekey_never_strand_a_row,
    concurrent_duplicate_adds_are_conflicts,
    a_signature_is_used_once_until_it_expires,
    concurrent_uses_of_one_signature_let_one_through,
);

async fn migrations_apply_once_and_are_idempotent(b: Backend) {
    let (s, _d) = fresh(b).await;
    assert_eq!(s.backend(), b);
    assert_eq!(
        s.applied_migrations().await.unwrap(),
        vec![1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 16]
    );
    s.migrate().await.unwrap();
    assert_eq!(
        s.applied_migrations().await.unwrap(),
        vec![1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 16]
    );
    match b {
        Backend::Sqlite => assert_eq!(
            s.sqlite_journal_mode().await.unwrap().as_deref(),
            Some("wal")
        ),
        Backend::Postgres => assert_eq!(s.sqlite_journal_mode().await.unwrap(), None),
    }
}

async fn meta_roundtrip(b: Backend) {
    let (s, _d) = fresh_empty(b).await;
    assert_eq!(s.get_meta("master_key_id").await.unwrap(), None);
    assert_eq!(s.init_meta("master_key_id", "a").await.unwrap(), "a");
    // init_meta never replaces.
    assert_eq!(s.init_meta("master_key_id", "b").await.unwrap(), "a");
    s.set_meta("master_key_id", "c").await.unwrap();
    assert_eq!(
        s.get_meta("master_key_id").await.unwrap().as_deref(),
        Some("c")
    );
}

async fn credential_add_list_get(b: Backend) {
    let (s, _d) = fresh(b).await;
    s.insert_credential(&cred("c2", 1, 2)).await.unwrap();
    s.insert_credential(&NewCredential {
        venue: "okx-main".into(),
        kind: "okx-hmac".into(),
        ..cred("c1", 1, 1)
    })
    .await
    .unwrap();
    let list = s.list_credentials().await.unwrap();
    assert_eq!(list.len(), 2);
    assert_eq!(list[0].id, "c1");
    assert_eq!(list[0].venue, "okx-main");
    assert_eq!(list[0].kind, "okx-hmac");
    assert_eq!(list[0].rotated_ms, None);
    assert_eq!(list[1].id, "c2");
    let row = s.active_credential("c2").await.unwrap().unwrap();
    assert_eq!(row.wrapped_key, vec![1, 2, 0, 255]);
    assert_eq!(row.ciphertext, vec![2, 2, 0, 255, 7]);
    assert_eq!(row.status, CredentialStatus::Active);
    assert_eq!(row.version, 1);
    assert!(s.active_credential("nope").await.unwrap().is_none());
}

async fn duplicate_id_is_a_conflict_and_changes_nothing(b: Backend) {
    let (s, _d) = fresh(b).await;
    s.insert_credential(&cred("c1", 1, 1)).await.unwrap();
    let e = s.insert_credential(&cred("c1", 1, 9)).await.unwrap_err();
    assert!(matches!(e, StoreError::Conflict(_)), "{e}");
    let rows = s.credential_versions("c1").await.unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].ciphertext, cred("c1", 1, 1).ciphertext);
    // Version numbers other than 1 are refused for a new credential.
    assert!(s.insert_credential(&cred("c3", 2, 1)).await.is_err());
    assert!(s.credential_versions("c3").await.unwrap().is_empty());
}

async fn rotate_disables_old_version(b: Backend) {
    let (s, _d) = fresh(b).await;
    s.insert_credential(&cred("c1", 1, 1)).await.unwrap();
    s.rotate_credential(&cred("c1", 2, 2)).await.unwrap();
    let rows = s.credential_versions("c1").await.unwrap();
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0].status, CredentialStatus::Disabled);
    assert_eq!(rows[1].status, CredentialStatus::Active);
    let active = s.active_credential("c1").await.unwrap().unwrap();
    assert_eq!(active.version, 2);
    let list = s.list_credentials().await.unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0].version, 2);
    assert_eq!(list[0].created_ms, cred("c1", 1, 1).created_ms);
    assert_eq!(list[0].rotated_ms, Some(cred("c1", 2, 2).created_ms));
    assert_eq!(list[0].fingerprint, "fp22");
}

async fn rotate_from_a_stale_version_changes_nothing(b: Backend) {
    let (s, _d) = fresh(b).await;
    s.insert_credential(&cred("c1", 1, 1)).await.unwrap();
    s.rotate_credential(&cred("c1", 2, 2)).await.unwrap();
    // Someone still believing version 1 is active tries to rotate to 2 again.
    let e = s.rotate_credential(&cred("c1", 2, 3)).await.unwrap_err();
    assert!(matches!(e, StoreError::Conflict(_)), "{e}");
    // A rotation that changes the venue is refused too.
    let moved = NewCredential {
        venue: "elsewhere".into(),
        ..cred("c1", 3, 3)
    };
    assert!(s.rotate_credential(&moved).await.is_err());
    assert!(s.rotate_credential(&cred("ghost", 2, 1)).await.is_err());
    let rows = s.credential_versions("c1").await.unwrap();
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[1].fingerprint, "fp22");
    assert!(s.credential_versions("ghost").await.unwrap().is_empty());
}

async fn concurrent_rotations_leave_one_active_version(b: Backend) {
    let (s, _d) = fresh(b).await;
    s.insert_credential(&cred("c1", 1, 1)).await.unwrap();
    let mut tasks = Vec::new();
    for tag in 0..8u8 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            s.rotate_credential(&cred("c1", 2, tag)).await
        }));
    }
    let mut won = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(()) => won += 1,
            Err(StoreError::Conflict(_)) => {}
            Err(e) => panic!("a losing rotation must be a Conflict, got: {e}"),
        }
    }
    assert_eq!(won, 1, "exactly one rotation may win");
    let rows = s.credential_versions("c1").await.unwrap();
    assert_eq!(rows.len(), 2);
    assert_eq!(
        rows.iter()
            .filter(|r| r.status == CredentialStatus::Active)
            .count(),
        1
    );
}

async fn remove_deletes_every_version(b: Backend) {
    let (s, _d) = fresh(b).await;
    s.insert_credential(&cred("c1", 1, 1)).await.unwrap();
    s.rotate_credential(&cred("c1", 2, 2)).await.unwrap();
    s.insert_credential(&cred("c2", 1, 1)).await.unwrap();
    assert_eq!(s.remove_credential("c1").await.unwrap(), 2);
    assert_eq!(s.remove_credential("c1").await.unwrap(), 0);
    assert!(s.credential_versions("c1").await.unwrap().is_empty());
    assert_eq!(s.list_credentials().await.unwrap().len(), 1);
}

async fn rekey_replaces_every_wrapped_key_atomically(b: Backend) {
    let (s, _d) = fresh(b).await;
    s.insert_credential(&cred("c1", 1, 1)).await.unwrap();
    s.rotate_credential(&cred("c1", 2, 2)).await.unwrap();
    s.insert_credential(&cred("c2", 1, 3)).await.unwrap();
    let rewrapped: Vec<_> = s
        .all_credential_rows()
        .await
        .unwrap()
        .into_iter()
        .map(|r| (r.id, r.version, vec![9, r.wrapped_key[1]]))
        .collect();
    assert_eq!(rewrapped.len(), 3);
    s.rekey("k1", "k2", &rewrapped, &[]).await.unwrap();
    assert_eq!(
        s.get_meta("master_key_id").await.unwrap().as_deref(),
        Some("k2")
    );
    for r in s.all_credential_rows().await.unwrap() {
        assert_eq!(r.key_id, "k2");
        assert_eq!(r.wrapped_key[0], 9);
        // The sealed secrets themselves are untouched.
        assert_eq!(r.ciphertext[0], 2);
    }
    // A second rekey claiming the old key id is refused.
    let e = s.rekey("k1", "k3", &rewrapped, &[]).await.unwrap_err();
    assert!(matches!(e, StoreError::Conflict(_)), "{e}");
}

async fn rekey_with_a_missing_row_changes_nothing(b: Backend) {
    let (s, _d) = fresh(b).await;
    s.insert_credential(&cred("c1", 1, 1)).await.unwrap();
    s.insert_credential(&cred("c2", 1, 2)).await.unwrap();
    let before = s.all_credential_rows().await.unwrap();
    // Only c1 is rewrapped: c2 would be left under the old key, so nothing may change.
    let partial = vec![("c1".to_string(), 1, vec![9u8, 9])];
    let e = s.rekey("k1", "k2", &partial, &[]).await.unwrap_err();
    assert!(matches!(e, StoreError::Conflict(_)), "{e}");
    assert_eq!(s.all_credential_rows().await.unwrap(), before);
    assert_eq!(
        s.get_meta("master_key_id").await.unwrap().as_deref(),
        Some("k1")
    );
    // A row that does not exist fails the same way.
    let ghost = vec![
        ("c1".to_string(), 1, vec![9u8]),
        ("c2".to_string(), 1, vec![9u8]),
        ("c9".to_string(), 1, vec![9u8]),
    ];
    assert!(s.rekey("k1", "k2", &ghost, &[]).await.is_err());
    assert_eq!(s.all_credential_rows().await.unwrap(), before);
}

async fn writes_under_a_stale_master_key_are_refused(b: Backend) {
    let (s, _d) = fresh(b).await;
    s.insert_credential(&cred("c1", 1, 1)).await.unwrap();
    s.rekey("k1", "k2", &[("c1".into(), 1, vec![9])], &[])
        .await
        .unwrap();
    // An add or a rotation sealed under k1 by a process that has not seen the rekey.
    let e = s.insert_credential(&cred("c2", 1, 1)).await.unwrap_err();
    assert!(matches!(e, StoreError::Conflict(_)), "{e}");
    let e = s.rotate_credential(&cred("c1", 2, 1)).await.unwrap_err();
    assert!(matches!(e, StoreError::Conflict(_)), "{e}");
    assert_eq!(s.all_credential_rows().await.unwrap().len(), 1);
    // Under the current key they go through.
    let k2 = |c: NewCredential| NewCredential {
        key_id: "k2".into(),
        ..c
    };
    s.insert_credential(&k2(cred("c2", 1, 1))).await.unwrap();
    s.rotate_credential(&k2(cred("c1", 2, 1))).await.unwrap();
}

async fn concurrent_adds_and_rekey_never_strand_a_row(b: Backend) {
    // Writers keep adding rows sealed under k1 while a rekey k1 -> k2 rewraps the rows it saw.
    // Adds before the rekey must be caught by it (it retries), adds after it must be refused:
    // at the end every stored row is under the key the store names.
    let (s, _d) = fresh(b).await;
    for i in 0..5 {
        s.insert_credential(&cred(&format!("pre{i}"), 1, i))
            .await
            .unwrap();
    }
    let mut adders = Vec::new();
    for w in 0..4u8 {
        let s = s.clone();
        adders.push(tokio::spawn(async move {
            let mut refused = 0;
            for i in 0..25u8 {
                match s.insert_credential(&cred(&format!("w{w}n{i}"), 1, i)).await {
                    Ok(()) => {}
                    Err(StoreError::Conflict(_)) => refused += 1,
                    Err(e) => panic!("unexpected: {e}"),
                }
                // Leave gaps in which the rekey can win while adds keep coming.
                tokio::time::sleep(std::time::Duration::from_millis(1)).await;
            }
            refused
        }));
    }
    let rekeyer = {
        let s = s.clone();
        tokio::spawn(async move {
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            for _ in 0..200 {
                let rows = s.all_credential_rows().await.unwrap();
                let rewrapped: Vec<_> = rows
                    .into_iter()
                    .map(|r| (r.id, r.version, vec![9]))
                    .collect();
                match s.rekey("k1", "k2", &rewrapped, &[]).await {
                    Ok(()) => return true,
                    Err(StoreError::Conflict(_)) => {}
                    Err(e) => panic!("a failed rekey must be a Conflict, got: {e}"),
                }
            }
            false
        })
    };
    let mut refused = 0;
    for a in adders {
        refused += a.await.unwrap();
    }
    let rekeyed = rekeyer.await.unwrap();
    let current = s.get_meta(MASTER_KEY_ID).await.unwrap().unwrap();
    assert_eq!(current, if rekeyed { "k2" } else { "k1" });
    let rows = s.all_credential_rows().await.unwrap();
    for r in &rows {
        assert_eq!(
            r.key_id, current,
            "row {} is stranded under another key",
            r.id
        );
    }
    eprintln!(
        "rekeyed: {rekeyed}, rows: {}, adds refused: {refused}",
        rows.len()
    );
}

async fn concurrent_duplicate_adds_are_conflicts(b: Backend) {
    let (s, _d) = fresh(b).await;
    let mut tasks = Vec::new();
    for tag in 0..8u8 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            s.insert_credential(&cred("same", 1, tag)).await
        }));
    }
    let mut won = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(()) => won += 1,
            Err(StoreError::Conflict(_)) => {}
            Err(e) => panic!("a duplicate add must be a Conflict, got: {e}"),
        }
    }
    assert_eq!(won, 1);
    assert_eq!(s.credential_versions("same").await.unwrap().len(), 1);
}

#[tokio::test]
async fn sqlite_existing_mode_refuses_a_missing_file() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("missing.db").display());
    let e = Store::open(&url, OpenMode::Existing).await.unwrap_err();
    assert!(e.to_string().contains("keygate init"), "{e}");
    assert!(!dir.path().join("missing.db").exists());
}

#[tokio::test]
async fn postgres_connect_error_hides_password() {
    // Port 9 on loopback: nothing listens there.
    let e = Store::open("postgres://kg:hunter2pw@127.0.0.1:9/kg", OpenMode::Existing)
        .await
        .unwrap_err()
        .to_string();
    assert!(!e.contains("hunter2pw"), "{e}");
    assert!(e.contains("PostgreSQL is running"), "{e}");
}

async fn a_signature_is_used_once_until_it_expires(b: Backend) {
    let (s, _d) = fresh(b).await;
    assert!(s.first_signature_use("aa", 1_000, 66_000).await.unwrap());
    assert!(!s.first_signature_use("aa", 2_000, 67_000).await.unwrap());
    // Another digest is another request.
    assert!(s.first_signature_use("bb", 2_000, 67_000).await.unwrap());
    // A second handle on the same database (another instance, or this one restarted) sees it.
    let other = s.clone();
    assert!(
        !other
            .first_signature_use("aa", 3_000, 68_000)
            .await
            .unwrap()
    );
    // Once its time is over it may be used again (the venue's window refuses it by then),
    // and it is remembered anew.
    assert!(s.first_signature_use("aa", 66_000, 131_000).await.unwrap());
    assert!(!s.first_signature_use("aa", 66_001, 131_001).await.unwrap());
    // Pruning forgets only what has expired.
    assert_eq!(s.remembered_signatures().await.unwrap(), 2);
    assert_eq!(s.prune_signatures(67_000).await.unwrap(), 1);
    assert_eq!(s.remembered_signatures().await.unwrap(), 1);
    assert!(!s.first_signature_use("aa", 67_000, 132_000).await.unwrap());
}

async fn concurrent_uses_of_one_signature_let_one_through(b: Backend) {
    let (s, _d) = fresh(b).await;
    let mut tasks = Vec::new();
    for i in 0..32 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            s.first_signature_use("cafe", 1_000 + i, 66_000 + i).await
        }));
    }
    let mut firsts = 0;
    for t in tasks {
        if t.await.unwrap().unwrap() {
            firsts += 1;
        }
    }
    assert_eq!(firsts, 1, "exactly one of 32 concurrent uses is the first");
    assert_eq!(s.remembered_signatures().await.unwrap(), 1);
}
