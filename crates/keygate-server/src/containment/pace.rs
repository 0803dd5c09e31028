//! Pacing: containment's own requests kept within each venue's documented limits, so keygate
//! never earns a ban while it contains. Binance: request weight per minute, per account (UID)
//! and per source address (IP), with a margin left for keygate's other requests; OKX: each
//! endpoint's documented rate.
//!
//! The pacer counts what this instance sent; the venue's 429 answers (and `Retry-After`) are
//! honoured separately, as a step's backoff.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use keygate_venues::containment::Cost;

/// Binance's per-minute limits for `/sapi` endpoints (UID 180,000, IP 12,000), of which
/// containment uses at most this share.
const BINANCE_UID_BUDGET: u32 = 150_000;
const BINANCE_IP_BUDGET: u32 = 10_000;

/// The longest one wait lasts.
const MAX_WAIT: Duration = Duration::from_secs(61);

/// What one venue's containment requests have used.
#[derive(Debug, Default)]
pub struct Pacer {
    /// Binance: (minute start, UID weight, IP weight).
    minute: Option<(Instant, u32, u32)>,
    /// OKX: endpoint -> when its recent requests were sent.
    sent: HashMap<&'static str, Vec<Instant>>,
}

impl Pacer {
    /// How long to wait before a request of `cost` may go at `now` (zero: at once). Counts it
    /// when it may go now.
    pub fn take(&mut self, cost: Cost, now: Instant) -> Duration {
        match cost {
            Cost::Weight { uid, ip } => self.take_weight(uid, ip, now),
            Cost::Rate {
                endpoint,
                requests,
                per_ms,
            } => self.take_rate(endpoint, requests, per_ms, now),
        }
    }

    fn take_weight(&mut self, uid: u32, ip: u32, now: Instant) -> Duration {
        let minute = Duration::from_secs(60);
        let (start, used_uid, used_ip) = match self.minute {
            Some((s, u, i)) if now.duration_since(s) < minute => (s, u, i),
            _ => (now, 0, 0),
        };
        let over = used_uid.saturating_add(uid) > BINANCE_UID_BUDGET
            || used_ip.saturating_add(ip) > BINANCE_IP_BUDGET;
        if over && (used_uid > 0 || used_ip > 0) {
            self.minute = Some((start, used_uid, used_ip));
            return (start + minute)
                .saturating_duration_since(now)
                .min(MAX_WAIT);
        }
        self.minute = Some((
            start,
            used_uid.saturating_add(uid),
            used_ip.saturating_add(ip),
        ));
        Duration::ZERO
    }

    fn take_rate(
        &mut self,
        endpoint: &'static str,
        requests: u32,
        per_ms: i64,
        now: Instant,
    ) -> Duration {
        let window = Duration::from_millis(per_ms.max(1) as u64);
        let times = self.sent.entry(endpoint).or_default();
        times.retain(|t| now.duration_since(*t) < window);
        if times.len() >= requests.max(1) as usize
            && let Some(oldest) = times.first()
        {
            // Past the oldest by a little: the venue's window may not start where ours does.
            return (*oldest + window + Duration::from_millis(50))
                .saturating_duration_since(now)
                .min(MAX_WAIT);
        }
        times.push(now);
        Duration::ZERO
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binance_weight_is_kept_under_the_minute_budget() {
        let mut p = Pacer::default();
        let t0 = Instant::now();
        let lock = Cost::Weight { uid: 3000, ip: 0 };
        for _ in 0..50 {
            assert_eq!(p.take(lock, t0), Duration::ZERO);
        }
        // 50 × 3000 = 150,000: the next waits for the minute to end.
        let wait = p.take(lock, t0 + Duration::from_secs(20));
        assert_eq!(wait, Duration::from_secs(40));
        assert_eq!(p.take(lock, t0 + Duration::from_secs(60)), Duration::ZERO);
        // A request heavier than the whole budget still goes, alone in its minute.
        let mut q = Pacer::default();
        assert_eq!(
            q.take(
                Cost::Weight {
                    uid: 200_000,
                    ip: 0
                },
                t0
            ),
            Duration::ZERO
        );
    }

    #[test]
    fn okx_rates_are_kept_per_endpoint() {
        let mut p = Pacer::default();
        let t0 = Instant::now();
        let lock = Cost::Rate {
            endpoint: "sub.modify_apikey",
            requests: 1,
            per_ms: 1000,
        };
        let transfer = Cost::Rate {
            endpoint: "sub.transfer",
            requests: 2,
            per_ms: 1000,
        };
        assert_eq!(p.take(lock, t0), Duration::ZERO);
        assert_eq!(p.take(transfer, t0), Duration::ZERO);
        assert_eq!(p.take(transfer, t0), Duration::ZERO);
        assert_eq!(
            p.take(lock, t0 + Duration::from_millis(400)),
            Duration::from_millis(650)
        );
        assert_eq!(
            p.take(transfer, t0 + Duration::from_millis(100)),
            Duration::from_millis(950)
        );
        assert_eq!(
            p.take(lock, t0 + Duration::from_millis(1000)),
            Duration::ZERO
        );
    }
}
