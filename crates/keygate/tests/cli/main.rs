//! End-to-end tests of the `keygate` binary, compiled as one test binary (one module per area).

mod util;

mod bots;
mod canary;
mod chain;
mod engine;
mod gateway;
mod init;
mod master_key;
mod tamper;
