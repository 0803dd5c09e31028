//! `keygate init`: what it creates, with which modes, and what it refuses.

use std::os::unix::fs::PermissionsExt;

use crate::util::Kg;

fn mode(p: &std::path::Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

#[test]
fn creates_dir_key_config_and_migrated_database() {
    let mut kg = Kg::new();
    let out = kg.ok(&["init"], None);
    assert!(out.contains("master key"), "{out}");
    assert_eq!(mode(&kg.data), 0o700);
    assert_eq!(mode(&kg.data.join("master.key")), 0o600);
    assert_eq!(mode(&kg.data.join("keygate.toml")), 0o600);
    assert_eq!(mode(&kg.data.join("keygate.db")), 0o600);
    assert_eq!(mode(&kg.data.join("audit.key")), 0o600);
    assert_eq!(mode(&kg.data.join("policies/default.cedar")), 0o600);
    let key = std::fs::read_to_string(kg.data.join("master.key")).unwrap();
    assert_eq!(key.trim().len(), 64);
    let config = std::fs::read_to_string(kg.data.join("keygate.toml")).unwrap();
    assert!(config.contains("# ") && config.contains("url = \"sqlite://keygate.db\""));

    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let s = keygate_store::Store::connect(&kg.db_url(), keygate_store::OpenMode::Existing)
            .await
            .unwrap();
        assert_eq!(
            s.applied_migrations().await.unwrap(),
            vec![1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 16]
        );
        assert_eq!(
            s.sqlite_journal_mode().await.unwrap().as_deref(),
            Some("wal")
        );
        assert!(s.get_meta("master_key_id").await.unwrap().is_some());
    });
    let out = kg.ok(&["credential", "list"], None);
    assert!(out.contains("no credentials"), "{out}");
}

#[test]
fn refuses_to_overwrite_an_existing_data_directory() {
    let mut kg = Kg::new();
    kg.ok(&["init"], None);
    let before = crate::util::snapshot(&kg.data);
    let e = kg.fails(&["init"], None);
    assert!(e.contains("already exists"), "{e}");
    assert_eq!(crate::util::snapshot(&kg.data), before);

    // A directory with anything in it is refused too.
    let mut other = Kg::new();
    std::fs::create_dir(&other.data).unwrap();
    std::fs::write(other.data.join("notes.txt"), "mine").unwrap();
    other.fails(&["init"], None);
    assert_eq!(
        std::fs::read_to_string(other.data.join("notes.txt")).unwrap(),
        "mine"
    );
}

#[test]
fn accepts_an_existing_empty_directory_and_tightens_it() {
    let mut kg = Kg::new();
    std::fs::create_dir(&kg.data).unwrap();
    std::fs::set_permissions(&kg.data, std::fs::Permissions::from_mode(0o755)).unwrap();
    kg.ok(&["init"], None);
    assert_eq!(mode(&kg.data), 0o700);
}

#[test]
fn a_failed_init_leaves_nothing_behind() {
    let mut kg = Kg::new();
    // Nothing listens on port 9: the store cannot be created.
    let e = kg.fails(
        &["init", "--store-url", "postgres://kg@127.0.0.1:9/kg"],
        None,
    );
    assert!(e.contains("PostgreSQL"), "{e}");
    assert!(!kg.data.exists());
    // And a corrected retry works.
    kg.ok(&["init"], None);
}

#[test]
fn refuses_a_password_in_the_store_url() {
    let mut kg = Kg::new();
    for url in [
        "postgres://kg:pw-canary@127.0.0.1:9/kg",
        "postgres://kg@127.0.0.1:9/kg?password=pw-canary",
    ] {
        let e = kg.fails(&["init", "--store-url", url], None);
        assert!(
            e.contains("KEYGATE_STORE_URL") && !e.contains("pw-canary"),
            "{e}"
        );
        assert!(!kg.data.exists());
    }
}

#[test]
fn refuses_a_remote_postgres_without_tls() {
    let mut kg = Kg::new();
    let e = kg.fails(
        &["init", "--store-url", "postgres://kg@db.example.invalid/kg"],
        None,
    );
    assert!(e.contains("sslmode=verify-full"), "{e}");
    assert!(!kg.data.exists());
}

#[test]
fn a_failed_init_in_an_existing_directory_removes_only_its_own_files() {
    let mut kg = Kg::new();
    std::fs::create_dir(&kg.data).unwrap();
    kg.fails(
        &["init", "--store-url", "postgres://kg@127.0.0.1:9/kg"],
        None,
    );
    assert!(kg.data.exists(), "the directory was there before: it stays");
    assert_eq!(std::fs::read_dir(&kg.data).unwrap().count(), 0);
}

#[test]
fn refuses_an_existing_sqlite_file_named_by_store_url() {
    let mut kg = Kg::new();
    let other = kg.tmp.path().join("theirs.db");
    std::fs::write(&other, b"not ours").unwrap();
    let url = format!("sqlite://{}", other.display());
    let e = kg.fails(&["init", "--store-url", &url], None);
    assert!(e.contains("already exists"), "{e}");
    assert_eq!(std::fs::read(&other).unwrap(), b"not ours");
    assert!(!kg.data.exists());
}

#[test]
fn passphrase_init_needs_a_passphrase_from_env_or_terminal() {
    let mut kg = Kg::new();
    let e = kg.fails(&["init", "--passphrase"], None);
    assert!(e.contains("KEYGATE_PASSPHRASE"), "{e}");
    assert!(!kg.data.exists());
    kg.env("KEYGATE_PASSPHRASE", "short");
    let e = kg.fails(&["init", "--passphrase"], None);
    assert!(e.contains("shorter than"), "{e}");
    kg.env("KEYGATE_PASSPHRASE", "a long enough passphrase");
    kg.ok(&["init", "--passphrase"], None);
    assert!(!kg.data.join("master.key").exists());
    let kdf = std::fs::read_to_string(kg.data.join("master.kdf")).unwrap();
    assert!(kdf.contains("argon2id") && kdf.contains("salt"), "{kdf}");
    assert!(!kdf.contains("a long enough passphrase"));
    kg.ok(&["credential", "list"], None);
}

#[test]
fn help_explains_every_subcommand() {
    let mut kg = Kg::new();
    let top = kg.ok(&["--help"], None);
    for sub in ["init", "credential", "rekey"] {
        assert!(top.contains(sub), "{top}");
    }
    let cred = kg.ok(&["credential", "--help"], None);
    for sub in ["add", "list", "rotate", "remove", "verify"] {
        assert!(cred.contains(sub), "{cred}");
    }
    let v = kg.ok(&["--version"], None);
    assert!(v.starts_with("keygate "), "{v}");
}
