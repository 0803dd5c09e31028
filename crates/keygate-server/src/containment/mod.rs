//! Containment at the venue: when a freeze covers a venue that has a containment credential,
//! keygate takes the leaked sub-account key and the sub-account's funds out of reach with the
//! master account's own endpoints: it locks the key (IP restriction to keygate's egress, or
//! deletion), sweeps the balances to the master (largest USD value first, in rounds until
//! nothing is left), and stops transfers out where the venue has a switch.
//!
//! Each containment and step is a row in the store (`keygate_store::containment`), written
//! before anything is sent; one instance at a time works on a venue, under the store's lease
//! `containment.VENUE`; every attempt's outcome is an audit entry. A step the venue confirmed is
//! never sent again, after a restart or on another instance: a sweep carries a client transfer
//! id derived from its containment and step, and one that may have been carried out is read
//! back by that id before anything is sent again. Requests are paced within the venue's
//! documented limits (`pace`) and retried with backoff until the venue confirms them. Nothing
//! here undoes containment, and lifting the freeze does not either.
//!
//! `plan` decides (pure); `step` carries out one attempt.

mod pace;
pub mod plan;
mod step;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use keygate_venues::containment::{Lock, client_transfer_id};
use rust_decimal::Decimal;

use crate::Gateway;

/// What containment does (the config's `[containment]`), for every venue.
#[derive(Debug, Clone)]
pub struct Policy {
    /// How the leaked key is locked; `None`: it is not.
    pub lock: Option<Lock>,
    /// Stop transfers out of the sub-account, where the venue has a switch (OKX).
    pub stop_transfers: bool,
    /// Sweep the sub-account's balances to the master account.
    pub sweep: bool,
    /// How many times the balances are read and swept (a round sweeps what the one before left).
    pub sweep_rounds: u32,
    /// The first wait before an attempt is repeated; it doubles up to `retry_max`.
    pub retry_min: Duration,
    pub retry_max: Duration,
    /// How often the runner looks for freezes and due steps.
    pub every: Duration,
    /// How long an instance holds a venue's containment without renewing it.
    pub lease_ttl: Duration,
    /// USD prices of assets the store may have none for (the engine's pinned ones), to order
    /// sweeps.
    pub pinned: Vec<(String, Decimal)>,
}

/// One venue's containment: the master-account credential and the sub-account it manages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Setup {
    pub venue: String,
    /// The vault credential of the master account's containment key.
    pub credential: String,
    /// Binance: the sub-account's email; OKX: its name.
    pub sub_account: String,
}

/// Containment for the gateway's venues.
#[derive(Debug)]
pub struct Containment {
    pub policy: Policy,
    pub venues: Vec<Setup>,
    /// Who holds the leases: this process.
    owner: String,
    pacers: Mutex<HashMap<String, pace::Pacer>>,
}

impl Containment {
    pub fn new(policy: Policy, venues: Vec<Setup>) -> Self {
        let mut id = [0u8; 8];
        let _ = getrandom::fill(&mut id);
        Self {
            policy,
            venues,
            owner: format!("containment-{}", hex::encode(id)),
            pacers: Mutex::new(HashMap::new()),
        }
    }
}

/// What one pass did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Pass {
    /// Containments started.
    pub started: Vec<i64>,
    /// Step attempts made.
    pub attempts: usize,
}

/// The most attempts one pass makes (a pass ends early; the next one goes on).
const MAX_ATTEMPTS: usize = 64;

/// Starts the containments freezes call for, then makes every due attempt.
pub async fn pass(gw: &Gateway) -> Result<Pass, String> {
    pass_limited(gw, MAX_ATTEMPTS).await
}

/// [`pass`], with at most `max_attempts` attempts (a test stops between two steps this way).
pub async fn pass_limited(gw: &Gateway, max_attempts: usize) -> Result<Pass, String> {
    let Some(c) = gw.containment.as_deref() else {
        return Ok(Pass::default());
    };
    let mut p = Pass {
        started: start_due(gw, c).await?,
        attempts: 0,
    };
    for setup in &c.venues {
        if p.attempts >= max_attempts {
            break;
        }
        p.attempts += run_venue(gw, c, setup, max_attempts - p.attempts).await?;
    }
    Ok(p)
}

/// Starts a containment for each venue a freeze newly covers.
async fn start_due(gw: &Gateway, c: &Containment) -> Result<Vec<i64>, String> {
    let freezes: Vec<_> = gw
        .store
        .freezes(false)
        .await
        .map_err(|e| e.to_string())?
        .into_iter()
        .map(|f| f.freeze)
        .collect();
    if freezes.is_empty() {
        return Ok(vec![]);
    }
    let existing = gw
        .store
        .containments(true)
        .await
        .map_err(|e| e.to_string())?;
    let mut started = vec![];
    for s in &c.venues {
        let Some(v) = gw.venues.get(&s.venue) else {
            continue;
        };
        let Some(freeze_id) = plan::due(&freezes, &existing, &s.venue, &v.credential) else {
            continue;
        };
        let steps = plan::initial_steps(&c.policy, v.adapter.can_stop_transfers());
        if steps.is_empty() {
            continue;
        }
        let actor = format!("containment:{}", s.venue);
        if let Some(id) = gw
            .store
            .start_containment(&s.venue, freeze_id, &steps, &client_transfer_id, &actor)
            .await
            .map_err(|e| e.to_string())?
        {
            tracing::error!(
                venue = %s.venue, containment = id, freeze_id,
                "freeze {freeze_id} covers {}: containing it at the venue (keygate containment status)",
                s.venue
            );
            started.push(id);
        }
    }
    Ok(started)
}

/// Works on a venue's open containments, under its lease; returns the attempts made.
async fn run_venue(
    gw: &Gateway,
    c: &Containment,
    setup: &Setup,
    budget: usize,
) -> Result<usize, String> {
    let Some(venue) = gw.venues.get(&setup.venue) else {
        return Ok(0);
    };
    let lease = format!("containment.{}", setup.venue);
    let ttl = c.policy.lease_ttl.as_millis().min(i64::MAX as u128) as i64;
    let mut attempts = 0;
    while attempts < budget {
        let open: Vec<_> = gw
            .store
            .containments(false)
            .await
            .map_err(|e| e.to_string())?
            .into_iter()
            .filter(|r| r.venue == setup.venue)
            .collect();
        let now = gw.store.clock().now();
        // The oldest containment first; within it, the first due step.
        let next = open
            .iter()
            .rev()
            .find_map(|r| plan::runnable(&r.steps, now).first().map(|seq| (r, *seq)));
        let Some((row, seq)) = next else {
            break;
        };
        if !gw
            .store
            .lease(&lease, &c.owner, ttl)
            .await
            .map_err(|e| e.to_string())?
        {
            break;
        }
        let Some(step) = row.steps.iter().find(|s| s.seq == seq) else {
            break;
        };
        let ctx = step::Ctx {
            gw,
            c,
            setup,
            venue,
            containment: row,
        };
        step::attempt(&ctx, step).await?;
        attempts += 1;
    }
    Ok(attempts)
}

/// Runs [`pass`] every `policy.every`, forever, if the gateway has containment. A failed pass
/// is logged as an error every time.
pub fn spawn(gw: Arc<Gateway>) -> Option<tokio::task::JoinHandle<()>> {
    let every = gw.containment.as_ref()?.policy.every;
    Some(tokio::spawn(async move {
        let mut tick = tokio::time::interval(every.max(Duration::from_millis(50)));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if let Err(e) = pass(&gw).await {
                metrics::counter!("keygate_containment_errors_total").increment(1);
                tracing::error!(error = %e, "containment could not run; venues a freeze covers may not be contained");
            }
        }
    }))
}
