//! Running the real `keygate-harness` binary (and, to check what it left, the `keygate` binary
//! built beside it) in a temporary directory, recording everything they print.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// A directory for one test's work, on a memory file system when the machine has one
/// (`/dev/shm`), else the usual temporary directory. The replays through the gateway commit, and
/// so `fsync`, once per event: on a disk that was most of their time (the Kronos demo, 13,203
/// events, took 460 s on a busy machine's disk against 123 s on `/dev/shm` in the same hour).
/// What these tests check is each replay's outcome, not durability, which the kill -9 drills
/// (crates/keygate/tests/cli/drills.rs) check on a real disk.
fn scratch() -> tempfile::TempDir {
    let shm = Path::new("/dev/shm");
    if shm.is_dir()
        && let Ok(dir) = tempfile::tempdir_in(shm)
    {
        return dir;
    }
    tempfile::tempdir().unwrap()
}

pub struct Kg {
    /// The binary `run` runs: keygate-harness, or `keygate()` for the product binary.
    pub exe: PathBuf,
    pub tmp: tempfile::TempDir,
    pub data: PathBuf,
    env: Vec<(String, String)>,
}

impl Kg {
    pub fn new() -> Self {
        let tmp = scratch();
        let data = tmp.path().join("data");
        Self {
            exe: PathBuf::from(env!("CARGO_BIN_EXE_keygate-harness")),
            tmp,
            data,
            env: vec![("KEYGATE_LOG".into(), "trace".into())],
        }
    }

    pub fn env(&mut self, k: &str, v: &str) -> &mut Self {
        self.env.retain(|(ek, _)| ek != k);
        self.env.push((k.into(), v.into()));
        self
    }

    pub fn run(&mut self, args: &[&str], stdin: Option<&str>) -> Output {
        let mut cmd = Command::new(&self.exe);
        for (k, _) in std::env::vars() {
            if k.starts_with("KEYGATE_") && k != "KEYGATE_TEST_POSTGRES_URL" {
                cmd.env_remove(k);
            }
        }
        if self.exe == keygate() {
            cmd.arg("--data-dir").arg(&self.data);
        }
        cmd.args(args);
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
        child.wait_with_output().unwrap()
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
}

/// The `keygate` binary of the same build (`cargo nextest run -p keygate -p keygate-harness`
/// or `cargo build -p keygate` builds it).
pub fn keygate() -> PathBuf {
    let kg = Path::new(env!("CARGO_BIN_EXE_keygate-harness")).with_file_name("keygate");
    assert!(
        kg.is_file(),
        "{} is not built: run `cargo build -p keygate` first",
        kg.display()
    );
    kg
}
