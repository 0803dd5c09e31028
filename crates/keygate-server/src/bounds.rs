//! The gateway's fixed bounds, in one module that the gateway's steps and the refusals that
//! name them both read (so neither imports the other for them).

/// The largest request body the gateway reads.
pub const MAX_BODY: usize = 64 * 1024;

/// Refused tokens one source address may send per minute before the gateway stops passing its
/// requests to the decider (each refusal is an audit write; a flood must not become one).
pub const MAX_AUTH_FAILURES_PER_MINUTE: u32 = 30;
