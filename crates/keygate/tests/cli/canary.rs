//! Invariant 3: a secret's plaintext never reaches disk, a log line, an error message or any
//! output. Plant canaries through every credential command, then scan the SQLite files (or a
//! PostgreSQL dump), every log line, and every byte every command printed.

use crate::util::{Kg, assert_no_leak, canary, leak_forms, snapshot};

/// Scans every file in the data directory and every byte the commands printed (trace-level logs
/// included) for any form of the secrets.
fn assert_data_dir_and_output_clean(kg: &Kg, forms: &[Vec<u8>]) {
    let files = snapshot(&kg.data);
    assert!(files.keys().any(|p| p.ends_with("keygate.toml")));
    for (path, bytes) in &files {
        assert_no_leak(&path.display().to_string(), bytes, forms);
    }
    assert!(
        kg.transcript.len() > 1000,
        "trace logging should have produced output to scan"
    );
    assert_no_leak(
        "the commands' stdout, stderr and logs",
        &kg.transcript,
        forms,
    );
}

/// Runs every credential command with canary secrets; returns all forms of all canaries.
fn exercise(kg: &mut Kg) -> Vec<Vec<u8>> {
    let (bkey, bsec) = (canary("BKEY"), canary("BSEC"));
    let (okey, osec, opass) = (canary("OKEY"), canary("OSEC"), canary("OPASS"));
    let (rkey, rsec) = (canary("RKEY"), canary("RSEC"));
    let mut evm = [0u8; 32];
    getrandom::fill(&mut evm).unwrap();
    evm[0] = 0x11; // keep it inside the secp256k1 range
    let evm_hex = hex::encode(evm);

    let b = kg.add("binance-main", "binance-hmac", &format!("{bkey}\n{bsec}\n"));
    kg.add(
        "okx-main",
        "okx-hmac",
        &format!("{okey}\r\n{osec}\r\n{opass}\r\n"),
    );
    kg.add("eth-hot", "evm-key", &format!("0x{evm_hex}\n"));
    kg.ok(&["credential", "list"], None);
    kg.ok(&["credential", "list", "--json"], None);
    kg.ok(
        &["credential", "rotate", &b],
        Some(&format!("{rkey}\n{rsec}\n")),
    );
    kg.ok(&["credential", "verify"], None);
    // Failing commands print errors: those must not leak either.
    kg.fails(
        &[
            "credential",
            "add",
            "--venue",
            "x",
            "--kind",
            "binance-hmac",
        ],
        Some(&format!("{bsec} with space\n{bsec}\n")),
    );
    kg.fails(
        &["credential", "add", "--venue", "x", "--kind", "evm-key"],
        Some(&format!("{bsec}\n")),
    );
    kg.fails(
        &["credential", "rotate", &b],
        Some(&format!("{rkey}\n{rsec}\n")),
    );
    kg.ok(&["rekey"], None);
    kg.ok(&["credential", "verify"], None);
    kg.ok(&["credential", "remove", &b], None);

    let mut forms = Vec::new();
    for s in [&bkey, &bsec, &okey, &osec, &opass, &rkey, &rsec, &evm_hex] {
        forms.extend(leak_forms(s));
    }
    forms.push(evm.to_vec());
    // The scan itself must be able to fail: the canaries are in what we fed in.
    assert!(crate::util::find(
        format!("{bkey}\n").as_bytes(),
        &leak_forms(&bkey)[0]
    ));
    forms
}

#[test]
fn sqlite_canary_never_leaks() {
    let mut kg = Kg::new();
    kg.ok(&["init"], None);
    let forms = exercise(&mut kg);
    // The scan covers the SQLite database itself.
    assert!(snapshot(&kg.data).keys().any(|p| p.ends_with("keygate.db")));
    assert_data_dir_and_output_clean(&kg, &forms);
}

#[test]
fn passphrase_canaries_never_leak() {
    let (old, new) = (canary("OLDPASS"), canary("NEWPASS"));
    let mut kg = Kg::new();
    kg.env("KEYGATE_PASSPHRASE", &old);
    kg.ok(&["init", "--passphrase"], None);
    kg.add("binance-main", "binance-hmac", "k\ns\n");
    kg.env("KEYGATE_PASSPHRASE", "not the passphrase at all");
    kg.fails(&["credential", "list"], None);
    kg.env("KEYGATE_PASSPHRASE", &old);
    kg.env("KEYGATE_NEW_PASSPHRASE", &new);
    kg.ok(&["rekey"], None);
    kg.env("KEYGATE_PASSPHRASE", &new);
    kg.ok(&["credential", "verify"], None);
    let mut forms = leak_forms(&old);
    forms.extend(leak_forms(&new));
    assert_data_dir_and_output_clean(&kg, &forms);
}

#[test]
fn postgres_canary_never_leaks() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let url = rt.block_on(keygate_store::testing::fresh_postgres_url());
    let mut kg = Kg::new();
    kg.ok(&["init", "--store-url", &url], None);
    // The database password travels in KEYGATE_STORE_URL, as docs/config.md says. The test
    // server trusts loopback, so any password connects, and it must show up nowhere.
    let db_password = canary("DBPASS");
    let with_password = url.replacen(
        "postgres://keygate@",
        &format!("postgres://keygate:{db_password}@"),
        1,
    );
    assert_ne!(with_password, url);
    kg.env("KEYGATE_STORE_URL", &with_password);
    let mut forms = exercise(&mut kg);
    forms.extend(leak_forms(&db_password));

    let dump = kg.tmp.path().join("dump.sql");
    let status = std::process::Command::new("pg_dump")
        .arg("--dbname")
        .arg(&url)
        .arg("--file")
        .arg(&dump)
        .status()
        .expect("pg_dump is needed: run the tests with scripts/test, which puts it on PATH");
    assert!(status.success(), "pg_dump failed");
    let dump = std::fs::read(&dump).unwrap();
    // The dump holds the sealed rows (so the scan covers real data).
    assert!(String::from_utf8_lossy(&dump).contains("okx-main"));
    assert_no_leak("the PostgreSQL dump", &dump, &forms);
    assert_data_dir_and_output_clean(&kg, &forms);
}

/// The native path: a bot's keygate secret and OKX passphrase, and the venue secrets behind
/// them, show up nowhere keygate writes or answers (debug logs, the data directory, the audit
/// log, answers to good and bad requests, a rekey); and the bot's secret is not the venue's:
/// sent to the venue directly, it is refused there.
#[test]
fn native_key_secrets_never_leak_and_never_work_at_the_venue() {
    use crate::bots::sign;
    use crate::gateway::{Serve, http};

    let mut b = crate::bots::setup();
    // `token issue --native` printed the key once, by design; everything after must not.
    let mark = b.kg.transcript.len();
    let k = &b.native;
    let (key, secret, pass) = (k.key.clone(), k.secret.clone(), k.passphrase.clone());
    let mut forms = b.venue_secrets.clone();
    forms.extend(leak_forms(&secret));
    forms.extend(leak_forms(&pass));
    let mut answers = Vec::new();
    let exercise = |serve: &Serve, answers: &mut Vec<u8>| {
        let now = sign::now_ms();
        let q = sign::binance("", &secret, now);
        let bad = sign::binance("", "not-it", now);
        for q in [q, bad] {
            let a = http(
                serve.addr,
                "GET",
                &format!("/venues/binance-main/api/v3/account?{q}"),
                &[("X-MBX-APIKEY", key.as_str())],
                b"",
            );
            answers.extend_from_slice(a.body.as_bytes());
        }
        let good = sign::okx(k, &secret, now, "GET", "/api/v5/account/balance", "");
        let mut wrong = good.clone();
        wrong.retain(|(n, _)| n != "OK-ACCESS-PASSPHRASE");
        wrong.push(("OK-ACCESS-PASSPHRASE".into(), format!("{pass}x")));
        for h in [good, wrong] {
            let h: Vec<(&str, &str)> = h.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
            let a = http(
                serve.addr,
                "GET",
                "/venues/okx-main/api/v5/account/balance",
                &h,
                b"",
            );
            answers.extend_from_slice(a.body.as_bytes());
        }
    };
    let serve = Serve::start(&b.kg);
    exercise(&serve, &mut answers);
    assert!(
        String::from_utf8_lossy(&answers).contains("\"balances\""),
        "the signed request should have gone through: {}",
        String::from_utf8_lossy(&answers)
    );
    let mut logs = serve.output();
    drop(serve);
    // A rekey rewraps the native key too: it still works after.
    let out = b.kg.ok(&["rekey"], None);
    assert!(out.contains("and 1 native key(s)"), "{out}");
    let serve = Serve::start(&b.kg);
    let before = answers.len();
    exercise(&serve, &mut answers);
    assert!(
        String::from_utf8_lossy(&answers[before..]).contains("\"balances\""),
        "the native key should work after a rekey"
    );
    logs.extend(serve.output());
    drop(serve);
    b.kg.ok(&["audit", "tail", "-n", "500", "--json"], None);
    b.kg.ok(&["token", "list", "--json"], None);
    b.kg.ok(&["audit", "verify"], None);

    assert_no_leak("serve's debug logs", &logs, &forms);
    assert_no_leak("the gateway's answers", &answers, &forms);
    assert_no_leak(
        "the commands' output after the issue",
        &b.kg.transcript[mark..],
        &forms,
    );
    for (path, bytes) in snapshot(&b.kg.data) {
        assert_no_leak(&path.display().to_string(), &bytes, &forms);
    }

    // The bot's secret at the venue itself: under the bot's key id the venue knows no such
    // key, and under the venue's own key the signature is wrong. Nothing happens there.
    let sim = b.sim_addr;
    let now = sign::now_ms();
    let q = sign::binance("", &secret, now);
    for (api_key, code) in [(key.as_str(), -2015), ("bkey", -1022)] {
        let a = http(
            sim,
            "GET",
            &format!("/api/v3/account?{q}"),
            &[("X-MBX-APIKEY", api_key)],
            b"",
        );
        assert!(a.status >= 400, "{}", a.body);
        assert_eq!(a.json()["code"], code, "{}", a.body);
    }
    let bot_key = crate::bots::NativeKey {
        key: "okey".into(),
        secret: secret.clone(),
        passphrase: pass.clone(),
    };
    let h = sign::okx(&bot_key, &secret, now, "GET", "/api/v5/account/balance", "");
    let h: Vec<(&str, &str)> = h.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
    let a = http(sim, "GET", "/api/v5/account/balance", &h, b"");
    assert_eq!(a.status, 401, "{}", a.body);
    assert_ne!(a.json()["code"], "0", "{}", a.body);
    assert!(b.sim.withdrawals().is_empty() && b.sim.orders().is_empty());
}
