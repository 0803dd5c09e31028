//! keygate's administrative operations as a library: init, clients, tokens (and the token
//! check), prices, the address book, freezes, approvals and holds, credentials. Typed requests
//! in, typed results and one [`AdminError`] out; every change is one store transaction with its
//! audit entry, followed by a checkpoint if one is due. The CLI calls these today; an HTTP
//! admin API can call them tomorrow.
//!
//! It must not know the command line (clap) nor how results are shown: no printing, except the
//! one warning a failed checkpoint gives on stderr. Time is an argument (`now`), read by the
//! caller.

pub mod addresses;
mod checkpoint;
pub mod clients;
pub mod credentials;
mod error;
pub mod freezes;
pub mod init;
pub mod prices;
pub mod tokens;

pub use checkpoint::checkpoint_if_due;
pub use error::{AdminError, Result};

/// A time for people: RFC 3339, UTC, to the second.
pub fn time_text(ms: keygate_core::Millis) -> String {
    chrono::DateTime::<chrono::Utc>::from_timestamp_millis(ms)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_else(|| format!("{ms}ms"))
}
