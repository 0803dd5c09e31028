//! A watcher's health: [`Health`] (lag in blocks, time failing, stalled), exported as
//! Prometheus gauges, and what [`Watcher::poll`] makes of each step's outcome: the stall alarm
//! (`chain.watcher_stalled`), the stale-head alarm (`chain.head_stale`) and the alarm of a block
//! whose logs stay unverifiable (`chain.block_unverifiable`).
//!
//! It must not judge blocks or read them: it only watches how stepping goes.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::hash_text;
use crate::persist::{Alarm, Alarmed, WatchStore};

use super::{WatchError, Watcher};

/// How a watcher is doing, shared with whoever reads it (tests; the same figures go to the
/// Prometheus recorder, if one is installed: `keygate_chain_watcher_lag_blocks`,
/// `keygate_chain_watcher_failing_seconds`, `keygate_chain_watcher_stalled`, labelled by venue,
/// and the counter `keygate_chain_watcher_errors_total`).
#[derive(Debug, Clone, Default)]
pub struct Health(Arc<HealthState>);

#[derive(Debug, Default)]
struct HealthState {
    lag: AtomicU64,
    failing_ms: AtomicU64,
    stalled: AtomicBool,
}

impl Health {
    /// Blocks between the node's newest (as last seen) and the last block judged.
    pub fn lag_blocks(&self) -> u64 {
        self.0.lag.load(Ordering::Relaxed)
    }

    /// How long every step has been failing (zero when the last one succeeded).
    pub fn failing_for(&self) -> Duration {
        Duration::from_millis(self.0.failing_ms.load(Ordering::Relaxed))
    }

    /// Whether the watcher has been failing for longer than its stall threshold.
    pub fn stalled(&self) -> bool {
        self.0.stalled.load(Ordering::Relaxed)
    }
}

impl<P: WatchStore> Watcher<P> {
    /// One [`Watcher::step`], and what its outcome says about the watcher's health. A failing
    /// watcher retries every poll and catches up when it can (a gap is never skipped); while it
    /// fails, the figures show it at once, and once it has failed for longer than the stall
    /// threshold it writes one audited critical alarm (`chain.watcher_stalled`) and logs again
    /// at every threshold's worth of failing; it logs its recovery.
    pub async fn poll(&mut self) -> Result<u64, WatchError> {
        let result = self.step().await;
        let venue = self.venue.name.clone();
        let now = Instant::now();
        if result.is_err() {
            // What the failed step changed in memory (blocks dropped for a reorg, nonces) is
            // read again from the checkpoint: a step never starts from a half-done one.
            self.loaded = false;
            self.kept.clear();
            self.nonces.clear();
            if let Err(e) = self.load().await {
                tracing::error!(venue = %self.venue.name, error = %e, "the chain watcher's checkpoint cannot be read again; it is read at the next poll");
            }
        }
        self.unverifiable(&result, now).await;
        self.stale_head(now).await;
        // Caught up with the highest newest block the node ever named: a backend behind the
        // others answering "nothing new" is not a recovery.
        let caught_up = match (self.last(), self.head_high) {
            (Some((n, _)), Some((h, _))) => n >= h,
            _ => true,
        };
        match &result {
            Ok(_) if !caught_up => {}
            Ok(_) => {
                if let Some(since) = self.failing_since.take() {
                    tracing::info!(venue = %venue, failed_for_ms = since.elapsed().as_millis() as u64, stall_alarm = self.stall_alarmed, "the chain watcher is following the node again; the blocks it could not judge meanwhile are judged");
                }
                self.stall_alarmed = false;
                self.last_logged = None;
            }
            Err(e) => {
                metrics::counter!("keygate_chain_watcher_errors_total", "venue" => venue.clone())
                    .increment(1);
                let since = *self.failing_since.get_or_insert(now);
                let failing = now.duration_since(since);
                let due = self
                    .last_logged
                    .is_none_or(|t| now.duration_since(t) >= self.stall_after);
                if self.last_logged.is_none() {
                    tracing::error!(venue = %venue, error = %e, "the chain watcher cannot follow the node; retrying every poll, and catching up when it can");
                    self.last_logged = Some(now);
                } else if failing >= self.stall_after && !self.stall_alarmed && due {
                    // Tried again (at the same interval) until the store takes it.
                    self.stall_alarm(failing, e).await;
                } else if due {
                    tracing::error!(venue = %venue, error = %e, failing_for_ms = failing.as_millis() as u64, lag_blocks = self.health.lag_blocks(), "the chain watcher still cannot follow the node; outflows at this venue are not being judged");
                    self.last_logged = Some(now);
                }
            }
        }
        let failing = self
            .failing_since
            .map(|t| now.duration_since(t))
            .unwrap_or_default();
        let stalled = failing >= self.stall_after && self.failing_since.is_some();
        let h = &self.health.0;
        h.failing_ms.store(
            u64::try_from(failing.as_millis()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
        h.stalled.store(stalled, Ordering::Relaxed);
        metrics::gauge!("keygate_chain_watcher_failing_seconds", "venue" => venue.clone())
            .set(failing.as_secs_f64());
        metrics::gauge!("keygate_chain_watcher_stalled", "venue" => venue).set(if stalled {
            1.0
        } else {
            0.0
        });
        result
    }

    /// Follows a block whose logs cannot be verified: after the stall threshold, an audited
    /// critical alarm (`chain.block_unverifiable`) with the containment freeze, once per block;
    /// once written, the block's empty answer is taken so the watcher goes on (frozen).
    async fn unverifiable(&mut self, result: &Result<u64, WatchError>, now: Instant) {
        let Err(WatchError::Incomplete(n)) = result else {
            if result.is_ok() {
                self.unverified = None;
            }
            return;
        };
        let n = *n;
        let since = match self.unverified {
            Some((m, t)) if m == n => t,
            _ => {
                self.unverified = Some((n, now));
                now
            }
        };
        if now.duration_since(since) < self.stall_after || self.accept_unverified == Some(n) {
            return;
        }
        let reason = format!(
            "the logs of block {n} at {} cannot be verified against its bloom (the node leaves some out, or there are too many to read) for {} s: a treasury token outflow in it may be unseen",
            self.venue.name,
            now.duration_since(since).as_secs()
        );
        match self
            .store
            .record_alarm(Alarm {
                event: "chain.block_unverifiable",
                actor: &format!("watcher:{}", self.venue.name),
                reason: &reason,
                details: serde_json::json!({"venue": self.venue.name, "block": n}),
                contain: self.contain.as_ref(),
            })
            .await
        {
            Ok(Alarmed {
                audit_id,
                freeze_id,
            }) => {
                tracing::error!(alarm = "chain.block_unverifiable", severity = "critical", venue = %self.venue.name, block = n, audit_id, freeze_id, "{reason}; containment applied, and the watcher goes on past it");
                self.accept_unverified = Some(n);
            }
            Err(e) => {
                tracing::error!(alarm = "chain.block_unverifiable", severity = "critical", venue = %self.venue.name, block = n, store_error = %e, "{reason}; and the alarm could not be written (tried again)");
            }
        }
    }

    /// Follows the node's newest block: the time since it last rose is exported
    /// (`keygate_chain_watcher_head_age_seconds`), and beyond the stale-head threshold it is one
    /// audited critical alarm (`chain.head_stale`) until it rises again.
    async fn stale_head(&mut self, now: Instant) {
        let Some((head, since)) = self.head_high else {
            return;
        };
        let age = now.duration_since(since);
        metrics::gauge!("keygate_chain_watcher_head_age_seconds", "venue" => self.venue.name.clone())
            .set(age.as_secs_f64());
        if age < self.stale_after || self.stale_alarmed {
            return;
        }
        let reason = format!(
            "the node of {} has named block {head} its newest for {} s: it may have stopped syncing, and outflows on the real chain are not being judged; check the node",
            self.venue.name,
            age.as_secs()
        );
        match self
            .store
            .record_alarm(Alarm {
                event: "chain.head_stale",
                actor: &format!("watcher:{}", self.venue.name),
                reason: &reason,
                details: serde_json::json!({"venue": self.venue.name, "head": head, "for_ms": u64::try_from(age.as_millis()).unwrap_or(u64::MAX)}),
                contain: None,
            })
            .await
        {
            Ok(Alarmed { audit_id, .. }) => {
                self.stale_alarmed = true;
                tracing::error!(alarm = "chain.head_stale", severity = "critical", venue = %self.venue.name, head, audit_id, "{reason}");
            }
            Err(e) => {
                tracing::error!(alarm = "chain.head_stale", severity = "critical", venue = %self.venue.name, head, store_error = %e, "{reason}; and the alarm could not be written (tried again)");
            }
        }
    }

    /// Writes the stall alarm (once per failure; tried again at the next poll if the store
    /// cannot take it) and logs it.
    async fn stall_alarm(&mut self, failing: Duration, error: &WatchError) {
        let venue = self.venue.name.clone();
        let last = self.last();
        let reason = format!(
            "the chain watcher of {venue} has failed for {} s ({error}); outflows at this venue are not being judged until it recovers: check the node",
            failing.as_secs()
        );
        let details = serde_json::json!({
            "venue": venue, "failing_for_ms": u64::try_from(failing.as_millis()).unwrap_or(u64::MAX),
            "last_block": last.map(|(n, _)| n), "last_hash": last.map(|(_, h)| hash_text(&h)),
            "lag_blocks": self.health.lag_blocks(), "error": error.to_string(),
        });
        self.last_logged = Some(Instant::now());
        match self
            .store
            .record_alarm(Alarm {
                event: "chain.watcher_stalled",
                actor: &format!("watcher:{venue}"),
                reason: &reason,
                details,
                contain: None,
            })
            .await
        {
            Ok(Alarmed { audit_id, .. }) => {
                self.stall_alarmed = true;
                tracing::error!(alarm = "chain.watcher_stalled", severity = "critical", venue = %venue, audit_id, "{reason}");
            }
            Err(se) => {
                tracing::error!(alarm = "chain.watcher_stalled", severity = "critical", venue = %venue, store_error = %se, "{reason}; and the alarm could not be written to the audit log");
            }
        }
    }

    /// Records the lag: blocks from the last one judged to the node's newest, `head`.
    pub(super) fn lag(&self, head: u64) {
        let lag = self
            .last()
            .map(|(n, _)| head.saturating_sub(n))
            .unwrap_or(0);
        self.health.0.lag.store(lag, Ordering::Relaxed);
        metrics::gauge!("keygate_chain_watcher_lag_blocks", "venue" => self.venue.name.clone())
            .set(lag as f64);
    }
}
