//! keygate's config: the model of keygate.toml (one file, every field documented in
//! docs/config.md, each overridable by `KEYGATE_<SECTION>_<FIELD>`), and the set-up it
//! describes: the decision engine, the venues and chains, the decider and the gateway, the
//! instance's master key and store.
//!
//! Relative paths in the file are relative to the file's own directory, so a data directory can
//! be moved as a whole. This crate must not know the command line (clap), nor print: it returns
//! typed values and [`ConfigError`]s, and its callers (the binary, the harness) decide what to
//! show.

pub mod audit_sign;
pub mod containment;
mod default_text;
mod detectors;
pub mod engine;
mod error;
pub mod input;
pub mod instance;
mod load;
pub mod logging;
mod model;
mod scenario;
mod server;
pub mod setup;
mod venue;

pub use default_text::default_config_text;
pub use detectors::*;
pub use error::{ConfigError, Context, Result, chain, msg};
pub use instance::{Instance, Paths, StateHandle};
pub use load::{resolve_path, resolve_sqlite_url};
pub use model::*;
pub use scenario::*;
pub use server::*;
pub use venue::*;
