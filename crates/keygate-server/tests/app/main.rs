//! keygate-server's own tests: `app()` driven in-process with `tower::ServiceExt::oneshot`
//! (no socket on the gateway side; the venue is a keygate-sim on loopback), one test per
//! answer the gateway and the transfer API give, asserting status, body and, for native
//! requests, the venue's error format.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test crate: a failed unwrap is a failed test

mod containment;
mod gateway;
mod holds;
mod native;
mod orders;
mod setup;
mod transfers;
