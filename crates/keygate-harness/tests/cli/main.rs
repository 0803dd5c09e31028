//! End-to-end tests of the `keygate-harness` binary, compiled as one test binary (one module per
//! area).
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test crate: a failed unwrap is a failed test

mod util;

mod around;
mod replay;
mod trade_scenarios;
