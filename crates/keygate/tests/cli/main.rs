//! End-to-end tests of the `keygate` binary, compiled as one test binary (one module per area).
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test crate: a failed unwrap is a failed test

mod util;

mod bots;
mod canary;
mod chain;
mod containment;
mod db_faults;
mod drills;
mod engine;
mod gateway;
mod init;
mod master_key;
mod tamper;
