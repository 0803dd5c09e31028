//! Per-address counters of the venue route: refused tokens per minute ([`Throttle`]) and
//! anonymous requests per second ([`PublicLimit`]).
//!
//! Must not know: what a request is or why it was refused.

use std::time::Instant;

use crate::bounds::MAX_AUTH_FAILURES_PER_MINUTE;

/// Counts events per key over fixed windows (a poisoned lock is read through, never skipped).
pub struct Windows<K> {
    window: std::time::Duration,
    by_key: std::sync::Mutex<std::collections::HashMap<K, (Instant, u32)>>,
}

impl<K: std::hash::Hash + Eq> Windows<K> {
    pub fn new(window: std::time::Duration) -> Self {
        Self {
            window,
            by_key: std::sync::Mutex::default(),
        }
    }

    fn map(&self) -> std::sync::MutexGuard<'_, std::collections::HashMap<K, (Instant, u32)>> {
        match self.by_key.lock() {
            Ok(m) => m,
            Err(p) => p.into_inner(),
        }
    }

    /// The count of `key` in its current window.
    pub fn count(&self, key: &K) -> u32 {
        self.map()
            .get(key)
            .filter(|(start, _)| start.elapsed() < self.window)
            .map_or(0, |(_, n)| *n)
    }

    /// Counts one event of `key`; the count in its current window, this one included.
    pub fn add(&self, key: K) -> u32 {
        let mut map = self.map();
        if map.len() > 10_000 {
            map.retain(|_, (start, _)| start.elapsed() < self.window);
        }
        let e = map.entry(key).or_insert((Instant::now(), 0));
        if e.0.elapsed() >= self.window {
            *e = (Instant::now(), 0);
        }
        e.1 = e.1.saturating_add(1);
        e.1
    }
}

/// Counts refused tokens per source address over one-minute windows.
pub struct Throttle(Windows<std::net::IpAddr>);

impl Default for Throttle {
    fn default() -> Self {
        Self(Windows::new(std::time::Duration::from_secs(60)))
    }
}

impl Throttle {
    /// Whether `ip` has used up its refusals for this minute.
    pub(crate) fn blocked(&self, ip: std::net::IpAddr) -> bool {
        self.0.count(&ip) >= MAX_AUTH_FAILURES_PER_MINUTE
    }

    /// Counts one refusal of `ip`.
    pub(crate) fn failed(&self, ip: std::net::IpAddr) {
        if self.0.add(ip) == MAX_AUTH_FAILURES_PER_MINUTE {
            tracing::warn!(%ip, "too many refused tokens from this address; its requests are refused unrecorded for the rest of the minute");
        }
    }
}

/// Requests forwarded without credentials (`anonymous_public`), per venue and source address
/// over one-second windows: anyone who can reach the listener must not spend all of keygate's
/// request weight at the venue, which would get the signed requests of the bots refused.
pub struct PublicLimit(Windows<(String, std::net::IpAddr)>);

impl Default for PublicLimit {
    fn default() -> Self {
        Self(Windows::new(std::time::Duration::from_secs(1)))
    }
}

impl PublicLimit {
    /// Counts one request; whether it is within `per_second`.
    pub(crate) fn admit(&self, venue: &str, ip: std::net::IpAddr, per_second: u32) -> bool {
        self.0.add((venue.to_string(), ip)) <= per_second
    }
}
