//! One attempt at one containment step: build the venue request (signed with the containment
//! credential, naming the leaked key by its public id), pace it, send it, read the answer, and
//! record the outcome. A step is marked as being sent, and committed, before anything is sent;
//! a sweep that may have been carried out already is read back by its client id first.

use std::time::Instant;

use keygate_core::Millis;
use keygate_store::containment::{ContainmentRow, NewStep, StepEnd, StepRow, StepState};
use keygate_store::{Conflict, StoreError};
use keygate_venues::containment::{Holding, Outcome, Request, Target, client_transfer_id};
use keygate_venues::{Adapter, Keys};

use super::plan::{self, Action};
use super::{Containment, Setup};
use crate::{Gateway, VenueSetup};

/// A venue's answer.
struct Answer {
    status: u16,
    body: Vec<u8>,
    /// `Retry-After`, in milliseconds.
    retry_after_ms: Option<u64>,
}

/// What one attempt needs.
pub(super) struct Ctx<'a> {
    pub gw: &'a Gateway,
    pub c: &'a Containment,
    pub setup: &'a Setup,
    pub venue: &'a VenueSetup,
    pub containment: &'a ContainmentRow,
}

impl Ctx<'_> {
    fn actor(&self) -> String {
        format!("containment:{}", self.setup.venue)
    }

    fn now(&self) -> Millis {
        self.gw.store.clock().now()
    }

    /// Builds requests with the containment credential's keys and the leaked key's id.
    async fn build<T>(
        &self,
        f: impl FnOnce(&Adapter, &Target<'_>, &Keys<'_>, Millis) -> Result<T, String>,
    ) -> Result<T, String> {
        let master = self
            .gw
            .credentials
            .get(&self.setup.credential)
            .await
            .map_err(|e| e.to_string())?;
        let master_keys =
            crate::keys(&master, &self.setup.credential).map_err(|e| e.to_string())?;
        let leaked = self
            .gw
            .credentials
            .get(&self.venue.credential)
            .await
            .map_err(|e| e.to_string())?;
        let leaked_keys =
            crate::keys(&leaked, &self.venue.credential).map_err(|e| e.to_string())?;
        let target = Target {
            sub_account: &self.setup.sub_account,
            api_key: leaked_keys.api_key,
        };
        f(&self.venue.adapter, &target, &master_keys, self.now())
    }

    /// Paces and sends a request; a transport failure is `Err` with what went wrong.
    async fn send(&self, req: Request) -> Result<Answer, String> {
        loop {
            let wait = match self.c.pacers.lock() {
                Ok(mut p) => p
                    .entry(self.setup.venue.clone())
                    .or_default()
                    .take(req.cost, Instant::now()),
                Err(_) => return Err("the pacer's lock is poisoned".into()),
            };
            if wait.is_zero() {
                break;
            }
            tokio::time::sleep(wait).await;
        }
        let http = crate::venue_request(
            &self.gw.http,
            &self.venue.base_url,
            req.out,
            self.venue.timeout,
        )
        .map_err(|e| e.to_string())?;
        let resp = http.send().await.map_err(|e| {
            format!(
                "{} {}: {}",
                self.setup.venue,
                req.endpoint,
                crate::send_error(&e)
            )
        })?;
        let status = resp.status().as_u16();
        let retry_after_ms = resp
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(|s| s.saturating_mul(1000));
        let body = resp
            .bytes()
            .await
            .map_err(|e| {
                format!(
                    "{} {}: {}",
                    self.setup.venue,
                    req.endpoint,
                    crate::send_error(&e)
                )
            })?
            .to_vec();
        Ok(Answer {
            status,
            body,
            retry_after_ms,
        })
    }

    /// Builds, sends and reads one request: a transport failure is an unknown outcome.
    async fn exchange(
        &self,
        build: impl FnOnce(&Adapter, &Target<'_>, &Keys<'_>, Millis) -> Result<Request, String>,
        read: impl FnOnce(&Adapter, &Target<'_>, u16, &[u8]) -> Outcome,
    ) -> Outcome {
        let built = self
            .build(|a, t, k, now| build(a, t, k, now).map(|r| (r, t.api_key.to_string())))
            .await;
        let (req, key_id) = match built {
            Ok(r) => r,
            Err(reason) => return Outcome::Unknown { reason },
        };
        let target = Target {
            sub_account: &self.setup.sub_account,
            api_key: &key_id,
        };
        match self.send(req).await {
            Ok(a) => match read(&self.venue.adapter, &target, a.status, &a.body) {
                Outcome::Limited {
                    reason,
                    retry_after_ms,
                } => Outcome::Limited {
                    reason,
                    retry_after_ms: retry_after_ms.or(a.retry_after_ms),
                },
                o => o,
            },
            Err(reason) => Outcome::Unknown { reason },
        }
    }

    /// Records an attempt's end; a step another instance finished meanwhile is left as it is.
    async fn end(
        &self,
        step: &StepRow,
        state: StepState,
        o: &Outcome,
        add: Vec<NewStep>,
        detail: Option<&str>,
    ) -> Result<(), String> {
        let attempts = step.attempts.max(1);
        let wait = match o {
            Outcome::Limited {
                retry_after_ms: Some(ms),
                ..
            } => (*ms).min(i64::MAX as u64) as i64,
            Outcome::Pending { .. } => plan::backoff(&self.c.policy, 1),
            _ => plan::backoff(&self.c.policy, attempts),
        };
        let detail = detail.map(str::to_string).unwrap_or_else(|| o.detail());
        let end = StepEnd {
            state,
            outcome: o.name(),
            detail: &detail,
            venue_ref: o.venue_ref(),
            next_ms: self.now().saturating_add(wait),
            add,
        };
        log(self.setup, step, state, o.name(), &detail);
        match self
            .gw
            .store
            .end_step(
                step.containment_id,
                step.seq,
                &end,
                &client_transfer_id,
                &self.actor(),
            )
            .await
        {
            Ok(_) | Err(StoreError::Conflict(Conflict::AlreadyDone(_))) => Ok(()),
            Err(e) => Err(e.to_string()),
        }
    }

    /// Marks a step as being sent; `None` if it is final already (another instance did it).
    async fn begin(&self, step: &StepRow) -> Result<Option<StepRow>, String> {
        match self
            .gw
            .store
            .begin_step(step.containment_id, step.seq)
            .await
        {
            Ok(s) => Ok(Some(s)),
            Err(StoreError::Conflict(Conflict::AlreadyDone(_))) => Ok(None),
            Err(e) => Err(e.to_string()),
        }
    }
}

fn log(setup: &Setup, step: &StepRow, state: StepState, outcome: &'static str, detail: &str) {
    metrics::counter!("keygate_containment_attempts_total",
        "venue" => setup.venue.clone(), "action" => step.action.clone(), "outcome" => outcome)
    .increment(1);
    match state {
        StepState::Confirmed => tracing::warn!(
            venue = %setup.venue, containment = step.containment_id, step = step.seq,
            action = %step.action, "containment step confirmed by the venue: {detail}"
        ),
        StepState::Refused => tracing::error!(
            venue = %setup.venue, containment = step.containment_id, step = step.seq,
            action = %step.action, "containment step refused for good: {detail}"
        ),
        _ => tracing::error!(
            venue = %setup.venue, containment = step.containment_id, step = step.seq,
            action = %step.action, outcome, "containment step not done yet, to be tried again: {detail}"
        ),
    }
}

/// One attempt at `step`.
pub(super) async fn attempt(ctx: &Ctx<'_>, step: &StepRow) -> Result<(), String> {
    let action = match Action::of(step) {
        Ok(a) => a,
        Err(reason) => {
            let o = Outcome::Refused { reason };
            return ctx.end(step, StepState::Refused, &o, vec![], None).await;
        }
    };
    match action {
        Action::LockKey { lock } => {
            key_step(
                ctx,
                step,
                |a, t, k, now| a.lock_key(t, &lock, k, now).map_err(|e| e.to_string()),
                |a, t, st, b| a.parse_lock(t, &lock, st, b),
            )
            .await
        }
        Action::StopTransfers {} => {
            key_step(
                ctx,
                step,
                |a, t, k, now| a.stop_transfers(t, k, now).map_err(|e| e.to_string()),
                |a, t, st, b| a.parse_stop_transfers(t, st, b),
            )
            .await
        }
        Action::SweepRound { round } => sweep_round(ctx, step, round).await,
        Action::Sweep {
            asset,
            amount,
            wallet,
            ..
        } => {
            let h = Holding {
                asset,
                amount,
                wallet,
            };
            sweep(ctx, step, &h).await
        }
    }
}

/// A lock or the transfer-out switch: idempotent at the venue, so sent again until confirmed.
async fn key_step(
    ctx: &Ctx<'_>,
    step: &StepRow,
    build: impl FnOnce(&Adapter, &Target<'_>, &Keys<'_>, Millis) -> Result<Request, String>,
    read: impl FnOnce(&Adapter, &Target<'_>, u16, &[u8]) -> Outcome,
) -> Result<(), String> {
    let Some(step) = ctx.begin(step).await? else {
        return Ok(());
    };
    let o = ctx.exchange(build, read).await;
    ctx.end(&step, plan::key_step_state(&o), &o, vec![], None)
        .await
}

/// A sweep round: read every wallet's balances and plan a sweep of each, largest USD value
/// first, in the transaction that records the round.
async fn sweep_round(ctx: &Ctx<'_>, step: &StepRow, round: u32) -> Result<(), String> {
    let Some(step) = ctx.begin(step).await? else {
        return Ok(());
    };
    let retry = |reason: String| (StepState::Retry, Outcome::Unknown { reason });
    let reads = ctx
        .build(|a, t, k, now| a.balance_reads(t, k, now).map_err(|e| e.to_string()))
        .await;
    let reads = match reads {
        Ok(r) => r,
        Err(reason) => {
            let (state, o) = retry(reason);
            return ctx.end(&step, state, &o, vec![], None).await;
        }
    };
    let mut holdings = vec![];
    for (wallet, req) in reads {
        let read = match ctx.send(req).await {
            Ok(a) => ctx.venue.adapter.parse_balances(wallet, a.status, &a.body),
            Err(reason) => Err(reason),
        };
        match read {
            Ok(h) => holdings.extend(h),
            Err(reason) => {
                let (state, o) = retry(reason);
                return ctx.end(&step, state, &o, vec![], None).await;
            }
        }
    }
    let prices = prices(ctx).await?;
    let found = holdings
        .iter()
        .map(|h| {
            format!(
                "{} {} ({})",
                h.amount.normalize(),
                h.asset,
                h.wallet.as_str()
            )
        })
        .collect::<Vec<_>>()
        .join(", ");
    let detail = if found.is_empty() {
        format!("round {round}: nothing left to sweep")
    } else {
        format!("round {round}: found {found}")
    };
    let add = plan::sweeps(holdings, &prices, round, ctx.c.policy.sweep_rounds);
    let o = Outcome::Confirmed { venue_ref: None };
    ctx.end(&step, StepState::Confirmed, &o, add, Some(&detail))
        .await
}

/// USD prices for ordering sweeps: the store's latest, then the engine's pinned ones.
async fn prices(
    ctx: &Ctx<'_>,
) -> Result<std::collections::HashMap<String, rust_decimal::Decimal>, String> {
    let mut out: std::collections::HashMap<_, _> = ctx
        .gw
        .store
        .prices()
        .await
        .map_err(|e| e.to_string())?
        .into_iter()
        .map(|p| (p.asset, p.usd))
        .collect();
    for (asset, usd) in &ctx.c.policy.pinned {
        out.insert(asset.clone(), *usd);
    }
    Ok(out)
}

/// A sweep: read back by its client id if it may have been carried out, then sent (with the
/// same client id) only if the venue has no record of it.
async fn sweep(ctx: &Ctx<'_>, step: &StepRow, h: &Holding) -> Result<(), String> {
    let Some(cid) = step.client_id.clone() else {
        let o = Outcome::Refused {
            reason: "the sweep has no client transfer id".into(),
        };
        return ctx.end(step, StepState::Refused, &o, vec![], None).await;
    };
    if plan::must_read_back(step.state) {
        let since = ctx.containment.started_ms;
        let o = ctx
            .exchange(
                |a, t, k, now| {
                    a.sweep_state(t, &cid, since, k, now)
                        .map_err(|e| e.to_string())
                },
                |a, _, status, body| a.parse_sweep_state(&cid, status, body),
            )
            .await;
        let state = match &o {
            Outcome::Confirmed { .. } => StepState::Confirmed,
            Outcome::Pending { .. } => StepState::Pending,
            Outcome::Refused { .. } => StepState::Refused,
            // Accepted before and not listed yet: still pending, never sent twice.
            Outcome::Absent { .. } if step.state == StepState::Pending => StepState::Pending,
            Outcome::Absent { .. } => StepState::Retry,
            Outcome::Unknown { .. } | Outcome::Limited { .. } => StepState::Unknown,
        };
        if state != StepState::Retry {
            return ctx.end(step, state, &o, vec![], None).await;
        }
    }
    let Some(step) = ctx.begin(step).await? else {
        return Ok(());
    };
    let o = ctx
        .exchange(
            |a, t, k, now| a.sweep(t, h, &cid, k, now).map_err(|e| e.to_string()),
            |a, _, status, body| a.parse_sweep(&cid, status, body),
        )
        .await;
    ctx.end(&step, plan::sweep_state(&o), &o, vec![], None)
        .await
}
