//! End-to-end tests of the `keygate-harness` binary, compiled as one test binary (one module per
//! area).

mod util;

mod replay;
