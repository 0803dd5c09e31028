//! Running the real `keygate` binary in a temporary data directory, recording everything it
//! prints so that tests can scan it.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

pub struct Kg {
    pub tmp: tempfile::TempDir,
    pub data: PathBuf,
    env: Vec<(String, String)>,
    /// Every byte any command printed, stdout and stderr.
    pub transcript: Vec<u8>,
}

impl Kg {
    pub fn new() -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let data = tmp.path().join("data");
        Self {
            tmp,
            data,
            env: vec![("KEYGATE_LOG".into(), "trace".into())],
            transcript: Vec::new(),
        }
    }

    pub fn env(&mut self, k: &str, v: &str) -> &mut Self {
        self.env.retain(|(ek, _)| ek != k);
        self.env.push((k.into(), v.into()));
        self
    }

    pub fn run(&mut self, args: &[&str], stdin: Option<&str>) -> Output {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_keygate"));
        for (k, _) in std::env::vars() {
            if k.starts_with("KEYGATE_") && k != "KEYGATE_TEST_POSTGRES_URL" {
                cmd.env_remove(k);
            }
        }
        cmd.arg("--data-dir").arg(&self.data).args(args);
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().unwrap();
        let mut input = child.stdin.take().unwrap();
        if let Some(s) = stdin {
            input.write_all(s.as_bytes()).unwrap();
        }
        drop(input);
        let out = child.wait_with_output().unwrap();
        self.transcript.extend_from_slice(&out.stdout);
        self.transcript.extend_from_slice(&out.stderr);
        out
    }

    /// Runs a command that must succeed; returns its stdout.
    pub fn ok(&mut self, args: &[&str], stdin: Option<&str>) -> String {
        let out = self.run(args, stdin);
        assert!(
            out.status.success(),
            "keygate {args:?} failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// The last `n` audit entries as JSON lines, read again (for up to 10 s) until `done` holds.
    /// The gateway answers a refusal before its audit entry commits (it forwards nothing), so a
    /// test that reads the log right after a refusal waits for that commit; the caller's
    /// assertions then decide, whether `done` came true or time ran out.
    pub fn audit_tail_until(&mut self, n: &str, done: impl Fn(&str) -> bool) -> String {
        let until = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            let tail = self.ok(&["audit", "tail", "-n", n, "--json"], None);
            if done(&tail) || std::time::Instant::now() > until {
                return tail;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }

    /// Adds `address` as the USDT "cold wallet" of each of `venues` (as the current actor), has
    /// "bob" approve them (entries 1 to N: the data directory's first entries), and waits out
    /// the 1 s cool-down the tests configure. The actor stays "bob". The entries are for
    /// withdrawals naming no network (the venue's default).
    pub fn cold_wallet(&mut self, address: &str, venues: &[&str]) {
        let plain: Vec<(&str, Option<&str>)> = venues.iter().map(|v| (*v, None)).collect();
        self.cold_wallet_on(address, &plain);
    }

    /// [`Kg::cold_wallet`], each entry for the network named beside its venue.
    pub fn cold_wallet_on(&mut self, address: &str, venues: &[(&str, Option<&str>)]) {
        for (venue, network) in venues {
            let mut args = vec![
                "address",
                "add",
                address,
                "--venue",
                venue,
                "--asset",
                "USDT",
                "--label",
                "cold wallet",
            ];
            if let Some(n) = network {
                args.extend(["--network", n]);
            }
            self.ok(&args, None);
        }
        self.env("KEYGATE_ACTOR", "bob");
        for id in 1..=venues.len() {
            self.ok(&["address", "approve", &id.to_string()], None);
        }
        std::thread::sleep(std::time::Duration::from_millis(1100));
    }

    /// Runs a command that must fail with a non-zero exit; returns its stderr.
    pub fn fails(&mut self, args: &[&str], stdin: Option<&str>) -> String {
        let out = self.run(args, stdin);
        assert!(
            !out.status.success(),
            "keygate {args:?} should have failed; stdout:\n{}",
            String::from_utf8_lossy(&out.stdout)
        );
        assert_eq!(out.status.code(), Some(1));
        String::from_utf8(out.stderr).unwrap()
    }

    pub fn db_url(&self) -> String {
        format!("sqlite://{}", self.data.join("keygate.db").display())
    }

    /// `credential add --id ID --venue VENUE --kind KIND`, the key's lines on stdin.
    pub fn credential(&mut self, id: &str, venue: &str, kind: &str, stdin: &str) {
        let args = [
            "credential",
            "add",
            "--id",
            id,
            "--venue",
            venue,
            "--kind",
            kind,
        ];
        self.ok(&args, Some(stdin));
    }

    /// `client add NAME` on `venues`, allowed `actions`, trading `instruments` (none: the
    /// command's default).
    pub fn client(&mut self, name: &str, venues: &[&str], actions: &[&str], instruments: &[&str]) {
        let mut args = vec!["client", "add", name];
        for v in venues {
            args.extend(["--venue", v]);
        }
        for a in actions {
            args.extend(["--action", a]);
        }
        for i in instruments {
            args.extend(["--instrument", i]);
        }
        self.ok(&args, None);
    }

    /// Rewrites keygate.toml with `edit`.
    pub fn edit_config(&mut self, edit: impl FnOnce(String) -> String) {
        let path = self.data.join("keygate.toml");
        let cfg = std::fs::read_to_string(&path).unwrap();
        std::fs::write(&path, edit(cfg)).unwrap();
    }

    /// policies/withdraw.cedar: `client` may withdraw to the address labelled "cold wallet"
    /// only (policy `id`).
    pub fn withdraw_to_cold(&mut self, id: &str, client: &str) {
        std::fs::write(
            self.data.join("policies/withdraw.cedar"),
            format!(
                "@id(\"{id}\")\npermit (principal == Keygate::Client::\"{client}\", action == Keygate::Action::\"withdraw\", resource)\nwhen {{ context has destination && context.destination.label == \"cold wallet\" }};\n"
            ),
        )
        .unwrap();
    }

    /// The id printed by `credential add`.
    pub fn add(&mut self, venue: &str, kind: &str, stdin: &str) -> String {
        let out = self.ok(
            &["credential", "add", "--venue", venue, "--kind", kind],
            Some(stdin),
        );
        out.split_whitespace()
            .nth(2)
            .expect("credential add prints `added credential ID …`")
            .to_string()
    }
}

/// A random marker no real output would contain.
pub fn canary(tag: &str) -> String {
    let mut r = [0u8; 8];
    getrandom::fill(&mut r).unwrap();
    format!("CANARY{tag}{}", hex::encode(r))
}

/// Every file under `dir`, with its bytes.
pub fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.insert(p.clone(), std::fs::read(&p).unwrap());
            }
        }
    }
    out
}

/// The forms in which a leaked secret could show up: its bytes, and its bytes in hex.
pub fn leak_forms(secret: &str) -> Vec<Vec<u8>> {
    let b = secret.as_bytes();
    vec![
        b.to_vec(),
        hex::encode(b).into_bytes(),
        hex::encode_upper(b).into_bytes(),
    ]
}

pub fn find(hay: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && hay.windows(needle.len()).any(|w| w == needle)
}

/// Fails naming `place` if any form of any secret occurs in `hay`.
pub fn assert_no_leak(place: &str, hay: &[u8], secrets: &[Vec<u8>]) {
    for s in secrets {
        assert!(
            !find(hay, s),
            "a secret leaked into {place}: found {:?}",
            String::from_utf8_lossy(s)
        );
    }
}
