//! The master key: a wrong key or passphrase gives a clear error, a non-zero exit, and writes
//! nothing; a loose key file is refused; rekey moves everything to a new key.

use std::os::unix::fs::PermissionsExt;

use crate::util::{Kg, snapshot};

/// Files that must not change: everything but SQLite's transient -wal/-shm files, which SQLite
/// itself creates and removes around any open.
fn durable(kg: &Kg) -> std::collections::BTreeMap<std::path::PathBuf, Vec<u8>> {
    let mut s = snapshot(&kg.data);
    s.retain(|p, _| {
        let n = p.to_string_lossy();
        !(n.ends_with("-wal") || n.ends_with("-shm"))
    });
    s
}

#[test]
fn wrong_master_key_file_is_refused_and_changes_nothing() {
    let mut a = Kg::new();
    a.ok(&["init"], None);
    let id = a.add("binance-main", "binance-hmac", "k\ns\n");
    let mut b = Kg::new();
    b.ok(&["init"], None);
    std::fs::copy(b.data.join("master.key"), a.data.join("master.key")).unwrap();
    let before = durable(&a);
    for args in [
        vec!["credential", "list"],
        vec!["credential", "verify"],
        vec!["credential", "remove", &id],
        vec!["rekey"],
    ] {
        let e = a.fails(&args, None);
        assert!(
            e.contains("is not the one this store was set up with"),
            "{args:?}: {e}"
        );
    }
    let e = a.fails(
        &[
            "credential",
            "add",
            "--venue",
            "v",
            "--kind",
            "binance-hmac",
        ],
        Some("k\ns\n"),
    );
    assert!(e.contains("is not the one"), "{e}");
    assert_eq!(durable(&a), before);
}

#[test]
fn wrong_passphrase_is_refused_and_changes_nothing() {
    let mut kg = Kg::new();
    kg.env("KEYGATE_PASSPHRASE", "the right passphrase");
    kg.ok(&["init", "--passphrase"], None);
    kg.add("okx-main", "okx-hmac", "k\ns\np\n");
    let before = durable(&kg);
    kg.env("KEYGATE_PASSPHRASE", "the wrong passphrase");
    for args in [vec!["credential", "list"], vec!["rekey"]] {
        let e = kg.fails(&args, None);
        assert!(e.contains("passphrase is wrong"), "{e}");
    }
    let e = kg.fails(
        &[
            "credential",
            "add",
            "--venue",
            "v",
            "--kind",
            "binance-hmac",
        ],
        Some("k\ns\n"),
    );
    assert!(e.contains("passphrase is wrong"), "{e}");
    assert_eq!(durable(&kg), before);
    kg.env("KEYGATE_PASSPHRASE", "the right passphrase");
    let out = kg.ok(&["credential", "list"], None);
    assert!(out.contains("okx-main"));
}

#[test]
fn loose_key_file_permissions_are_refused_with_the_fix() {
    let mut kg = Kg::new();
    kg.ok(&["init"], None);
    let key = kg.data.join("master.key");
    for m in [0o640, 0o604, 0o644] {
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(m)).unwrap();
        let e = kg.fails(&["credential", "list"], None);
        assert!(e.contains(&format!("chmod 600 {}", key.display())), "{e}");
    }
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    kg.ok(&["credential", "list"], None);
}

#[test]
fn missing_data_dir_says_to_run_init() {
    let mut kg = Kg::new();
    let e = kg.fails(&["credential", "list"], None);
    assert!(e.contains("keygate init"), "{e}");
    assert!(!kg.data.exists());
}

#[test]
fn rekey_with_a_key_file_keeps_every_credential_readable() {
    let mut kg = Kg::new();
    kg.ok(&["init"], None);
    let id = kg.add("binance-main", "binance-hmac", "k1\ns1\n");
    kg.ok(&["credential", "rotate", &id], Some("k2\ns2\n"));
    kg.add("eth-hot", "evm-key", &format!("{}\n", "22".repeat(32)));
    let old_key = std::fs::read(kg.data.join("master.key")).unwrap();
    let out = kg.ok(&["rekey"], None);
    assert!(out.contains("rekeyed 3 credential version(s)"), "{out}");
    let new_key = std::fs::read(kg.data.join("master.key")).unwrap();
    assert_ne!(old_key, new_key);
    assert!(!kg.data.join("master.key.new").exists());
    let mode = std::fs::metadata(kg.data.join("master.key"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let out = kg.ok(&["credential", "verify"], None);
    assert!(out.contains("3 credential version(s) verified"), "{out}");

    // The old key no longer opens anything.
    let current = std::fs::read(kg.data.join("master.key")).unwrap();
    std::fs::write(kg.data.join("master.key"), &old_key).unwrap();
    kg.fails(&["credential", "verify"], None);
    std::fs::write(kg.data.join("master.key"), &current).unwrap();
    kg.ok(&["credential", "verify"], None);
}

#[test]
fn rekey_with_a_passphrase() {
    let mut kg = Kg::new();
    kg.env("KEYGATE_PASSPHRASE", "old passphrase here");
    kg.ok(&["init", "--passphrase"], None);
    kg.add("okx-main", "okx-hmac", "k\ns\np\n");
    let e = kg.fails(&["rekey"], None);
    assert!(e.contains("KEYGATE_NEW_PASSPHRASE"), "{e}");
    kg.env("KEYGATE_NEW_PASSPHRASE", "new passphrase here");
    kg.ok(&["rekey"], None);
    let e = kg.fails(&["credential", "verify"], None);
    assert!(e.contains("passphrase is wrong"), "{e}");
    kg.env("KEYGATE_PASSPHRASE", "new passphrase here");
    let out = kg.ok(&["credential", "verify"], None);
    assert!(out.contains("1 credential version(s) verified"), "{out}");
}

#[test]
fn an_interrupted_rekey_says_how_to_finish() {
    // Simulate a crash between the store's commit and the rename: the store uses the new key,
    // the new key is still in master.key.new.
    let mut kg = Kg::new();
    kg.ok(&["init"], None);
    kg.add("binance-main", "binance-hmac", "k\ns\n");
    let old = std::fs::read(kg.data.join("master.key")).unwrap();
    kg.ok(&["rekey"], None);
    std::fs::rename(kg.data.join("master.key"), kg.data.join("master.key.new")).unwrap();
    std::fs::write(kg.data.join("master.key"), &old).unwrap();
    std::fs::set_permissions(
        kg.data.join("master.key"),
        std::fs::Permissions::from_mode(0o600),
    )
    .unwrap();
    let e = kg.fails(&["credential", "list"], None);
    assert!(e.contains("interrupted `keygate rekey`"), "{e}");
    let key = kg.data.join("master.key");
    assert!(
        e.contains(&format!("mv {}.new {}", key.display(), key.display())),
        "{e}"
    );
    std::fs::rename(kg.data.join("master.key.new"), kg.data.join("master.key")).unwrap();
    kg.ok(&["credential", "verify"], None);
}

#[test]
fn two_rekeys_never_interleave() {
    let mut kg = Kg::new();
    kg.ok(&["init"], None);
    kg.add("binance-main", "binance-hmac", "k\ns\n");
    // Another rekey holds the data directory's lock.
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(kg.data.join("keygate.lock"))
        .unwrap();
    lock.lock().unwrap();
    let before = durable(&kg);
    let e = kg.fails(&["rekey"], None);
    assert!(e.contains("another `keygate rekey` is running"), "{e}");
    assert_eq!(durable(&kg), before);
    drop(lock);
    kg.ok(&["rekey"], None);
    kg.ok(&["credential", "verify"], None);
}

#[test]
fn an_interrupted_passphrase_rekey_says_how_to_finish() {
    let mut kg = Kg::new();
    kg.env("KEYGATE_PASSPHRASE", "old passphrase here");
    kg.ok(&["init", "--passphrase"], None);
    kg.add("okx-main", "okx-hmac", "k\ns\np\n");
    let old_kdf = std::fs::read(kg.data.join("master.kdf")).unwrap();
    kg.env("KEYGATE_NEW_PASSPHRASE", "new passphrase here");
    kg.ok(&["rekey"], None);
    // As if keygate died after the commit and before the rename.
    std::fs::rename(kg.data.join("master.kdf"), kg.data.join("master.kdf.new")).unwrap();
    std::fs::write(kg.data.join("master.kdf"), &old_kdf).unwrap();
    kg.env("KEYGATE_PASSPHRASE", "new passphrase here");
    let e = kg.fails(&["credential", "list"], None);
    let kdf = kg.data.join("master.kdf");
    assert!(
        e.contains("this is the new passphrase")
            && e.contains(&format!("mv {}.new {}", kdf.display(), kdf.display())),
        "{e}"
    );
    // The old passphrase is told apart too: the store has moved on.
    kg.env("KEYGATE_PASSPHRASE", "old passphrase here");
    let e = kg.fails(&["credential", "list"], None);
    assert!(e.contains("interrupted `keygate rekey`"), "{e}");
    std::fs::rename(kg.data.join("master.kdf.new"), &kdf).unwrap();
    kg.env("KEYGATE_PASSPHRASE", "new passphrase here");
    kg.ok(&["credential", "verify"], None);
}

#[test]
fn a_stale_new_key_file_never_gets_an_mv_hint() {
    // A .new left by a rekey that never committed, and a wrong key in master.key: moving .new
    // into place would not help, so keygate must not suggest it.
    let mut a = Kg::new();
    a.ok(&["init"], None);
    let mut b = Kg::new();
    b.ok(&["init"], None);
    let mut c = Kg::new();
    c.ok(&["init"], None);
    std::fs::copy(b.data.join("master.key"), a.data.join("master.key.new")).unwrap();
    std::fs::copy(c.data.join("master.key"), a.data.join("master.key")).unwrap();
    let e = a.fails(&["credential", "list"], None);
    assert!(
        e.contains("is not the one this store was set up with"),
        "{e}"
    );
    assert!(!e.contains("mv "), "{e}");
}
