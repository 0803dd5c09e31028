//! keygate-core: the pure domain of keygate.
//!
//! Intents (what a request would do), prices and USD values, rolling limits, the address book,
//! client tokens, Cedar policy evaluation, and [`decide`], which turns (state, intent, now) into a
//! verdict with its reasons. Nothing here does IO, reads a clock or awaits: time is always an
//! argument, so the server and the replay engine run the very same code.

pub mod admit;
pub mod auth;
pub mod book;
pub mod decide;
pub mod detect;
pub mod freeze;
pub mod intent;
pub mod limits;
pub mod order;
pub mod outflow;
pub mod policy;
pub mod price;
pub mod replay;
pub mod route;
pub mod time;
pub mod venue_order;

pub use decide::{Debit, Engine, EngineError, LimitCheck, Outcome, State, Verdict, decide};
pub use intent::{Action, Intent, IntentError};
pub use time::Millis;
