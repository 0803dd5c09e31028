//! Runs the `keygate-sim` binary: the one `listening on` line, serving on the
//! printed address, and exit code 2 for a bad command line or account file.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test crate: a failed unwrap is a failed test

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_keygate-sim");

/// A file in the temp directory, removed when dropped.
struct TempFile(PathBuf);

impl TempFile {
    fn new(name: &str, contents: &str) -> TempFile {
        let path =
            std::env::temp_dir().join(format!("keygate-sim-{}-{name}.json", std::process::id()));
        std::fs::write(&path, contents).unwrap();
        TempFile(path)
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// The child process, killed when dropped (also when a test fails).
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

const ACCOUNTS: &str = r#"{"accounts":[
    {"venue":"binance","api_key":"k","secret":"s","balances":{"BTC":"1"}},
    {"venue":"okx","api_key":"o","secret":"s","passphrase":"p"}
]}"#;

#[test]
fn prints_one_listening_line_then_serves() {
    let accounts = TempFile::new("good", ACCOUNTS);
    let child = Command::new(BIN)
        .arg("--accounts")
        .arg(&accounts.0)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut running = Running(child);
    let stdout = running.0.stdout.take().unwrap();
    let mut reader = BufReader::new(stdout);
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    let addr = line
        .strip_prefix("listening on http://")
        .and_then(|rest| rest.strip_suffix('\n'))
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"));
    assert!(addr.starts_with("127.0.0.1:"), "{addr}");
    assert_ne!(addr, "127.0.0.1:0");

    let mut stream = TcpStream::connect(addr).unwrap();
    write!(
        stream,
        "GET /api/v3/time HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut reply = String::new();
    stream.read_to_string(&mut reply).unwrap();
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    assert!(reply.contains("\"serverTime\":"), "{reply}");

    // Nothing else is printed on stdout.
    let _ = running.0.kill();
    let _ = running.0.wait();
    let mut rest = String::new();
    reader.read_to_string(&mut rest).unwrap();
    assert_eq!(rest, "");
}

/// Runs the binary to completion; returns its exit code, stdout and stderr.
fn run(args: &[&str]) -> (Option<i32>, String, String) {
    let output = Command::new(BIN).args(args).output().unwrap();
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn bad_configuration_exits_with_2() {
    let missing = std::env::temp_dir().join("keygate-sim-no-such-file.json");
    let (code, stdout, stderr) = run(&["--accounts", missing.to_str().unwrap()]);
    assert_eq!(code, Some(2));
    assert_eq!(stdout, "");
    assert!(stderr.contains("cannot read"), "{stderr}");

    let bad_json = TempFile::new("bad-json", r#"{"accounts":[{"venue":"binance"}"#);
    let (code, stdout, stderr) = run(&["--accounts", bad_json.0.to_str().unwrap()]);
    assert_eq!((code, stdout.as_str()), (Some(2), ""));
    assert!(stderr.contains("bad account file"), "{stderr}");

    let duplicate = TempFile::new(
        "duplicate",
        r#"{"accounts":[{"venue":"binance","api_key":"k","secret":"s"},
                        {"venue":"binance","api_key":"k","secret":"t"}]}"#,
    );
    let (code, _, stderr) = run(&["--accounts", duplicate.0.to_str().unwrap()]);
    assert_eq!(code, Some(2));
    assert!(stderr.contains("more than once"), "{stderr}");

    let no_passphrase = TempFile::new(
        "no-passphrase",
        r#"{"accounts":[{"venue":"okx","api_key":"k","secret":"s"}]}"#,
    );
    let (code, _, stderr) = run(&["--accounts", no_passphrase.0.to_str().unwrap()]);
    assert_eq!(code, Some(2));
    assert!(stderr.contains("passphrase"), "{stderr}");

    // Missing --accounts, and an address that is not IP:PORT.
    assert_eq!(run(&[]).0, Some(2));
    let good = TempFile::new("good-for-args", ACCOUNTS);
    let path = good.0.to_str().unwrap();
    assert_eq!(
        run(&["--accounts", path, "--listen", "localhost"]).0,
        Some(2)
    );
}

#[test]
fn non_loopback_listen_is_refused_unless_allowed() {
    let accounts = TempFile::new("loopback", ACCOUNTS);
    let path = accounts.0.to_str().unwrap();
    let (code, stdout, stderr) = run(&["--accounts", path, "--listen", "0.0.0.0:0"]);
    assert_eq!(code, Some(2));
    assert_eq!(stdout, "");
    assert!(stderr.contains("non-loopback"), "{stderr}");
    let (code, _, stderr) = run(&["--accounts", path, "--listen", "[::]:0"]);
    assert_eq!(code, Some(2));
    assert!(stderr.contains("--allow-non-loopback"), "{stderr}");
}
