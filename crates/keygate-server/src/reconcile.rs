//! The reconciliation task: reads each venue's withdrawal history with keygate's own
//! credential and judges every withdrawal in it against the decisions keygate allowed. A
//! withdrawal nothing allowed is a critical alarm: an audit entry, an error log line and a
//! metric, and (as the config's `[containment]` says; everything by default) a freeze set in the
//! same transaction, which only a quorum of approvals lifts.
//!
//! Where it last read up to is kept in the store, so after a restart it reads from there, not
//! from "now": downtime leaves no gap.

use std::sync::Arc;
use std::time::Duration;

use keygate_core::Millis;
use keygate_store::reconcile::Reconciled;

use crate::{Gateway, VenueSetup};

/// How far the next read overlaps the last one (venues list a withdrawal a little late).
const OVERLAP: Millis = 10 * 60 * 1000;

/// The most history pages one pass reads.
const MAX_PAGES: usize = 50;

/// Reads one page of a venue's withdrawal history.
async fn read_page(
    gw: &Gateway,
    setup: &VenueSetup,
    since: Millis,
    page: Option<&keygate_venues::HistoryPage>,
    now: Millis,
) -> Result<Vec<keygate_core::outflow::Outflow>, String> {
    let secret = gw
        .credentials
        .get(&setup.credential)
        .await
        .map_err(|e| e.to_string())?;
    let out = setup.adapter.withdrawal_history(
        since,
        page,
        &crate::keys(&secret, &setup.credential).map_err(|e| e.to_string())?,
        now,
    );
    drop(secret);
    let req = crate::venue_request(&gw.http, &setup.base_url, out, setup.timeout)
        .map_err(|e| e.to_string())?;
    let resp = req.send().await.map_err(|e| {
        format!(
            "cannot read {}'s withdrawal history: {}",
            setup.name,
            crate::send_error(&e)
        )
    })?;
    let status = resp.status();
    let body = resp
        .bytes()
        .await
        .map_err(|_| format!("cannot read {}'s withdrawal history answer", setup.name))?;
    if !status.is_success() {
        let text = String::from_utf8_lossy(&body);
        return Err(format!(
            "{} answered the withdrawal history with HTTP {status}: {}",
            setup.name,
            text.chars().take(200).collect::<String>()
        ));
    }
    setup.adapter.parse_withdrawal_history(&setup.name, &body)
}

/// What one pass found.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Pass {
    pub seen: usize,
    pub matched: usize,
    pub unapproved: Vec<i64>,
}

fn cursor_key(venue: &str) -> String {
    format!("reconcile.{venue}.read_until_ms")
}

/// Reads one venue's history once and judges every withdrawal in it.
pub async fn pass(gw: &Gateway, setup: &VenueSetup) -> Result<Pass, String> {
    let now = gw.store.clock().now();
    let stored = gw
        .store
        .get_meta(&cursor_key(&setup.name))
        .await
        .map_err(|e| e.to_string())?
        .and_then(|s| s.parse::<Millis>().ok());
    let lookback = setup.reconcile_lookback.as_millis() as Millis;
    let since = match stored {
        Some(t) => t.saturating_sub(OVERLAP),
        None => now.saturating_sub(lookback),
    };
    let mut outflows = vec![];
    let mut page = None;
    for _ in 0..MAX_PAGES {
        let rows = read_page(gw, setup, since, page.as_ref(), now).await?;
        let next = setup.adapter.next_history_page(since, page.as_ref(), &rows);
        outflows.extend(rows);
        match next {
            Some(n) => page = Some(n),
            None => {
                page = None;
                break;
            }
        }
    }
    if page.is_some() {
        // Never move the cursor past what was not read: the next pass starts here again.
        return Err(format!(
            "{}'s withdrawal history since {since} ms is longer than {MAX_PAGES} pages; it was not all read",
            setup.name
        ));
    }
    // OKX reads from the newest backwards; what is older than the window is not this pass's.
    outflows.retain(|o| o.at >= since);
    outflows.sort_by_key(|o| o.at);
    let mut p = Pass::default();
    for o in &outflows {
        match gw
            .store
            .reconcile_outflow(o, setup.contain.as_ref())
            .await
            .map_err(|e| e.to_string())?
        {
            Reconciled::Known => {}
            Reconciled::Matched { .. } => {
                p.seen += 1;
                p.matched += 1;
            }
            Reconciled::Unapproved {
                audit_id,
                freeze_id,
            } => {
                p.seen += 1;
                p.unapproved.push(audit_id);
                metrics::counter!("keygate_unapproved_outflows_total", "venue" => setup.name.clone())
                    .increment(1);
                tracing::error!(
                    alarm = "outflow.unapproved",
                    severity = "critical",
                    venue = %setup.name,
                    venue_id = %o.id,
                    asset = %o.asset,
                    amount = %o.amount,
                    destination = %o.destination,
                    audit_id,
                    freeze_id,
                    "a withdrawal keygate did not approve left the venue: a credential is being used outside keygate"
                );
                if let (Some(id), Some(scope)) = (freeze_id, &setup.contain) {
                    tracing::error!(
                        alarm = "freeze.set",
                        severity = "critical",
                        freeze_id = id,
                        scope = %scope,
                        "{scope} is frozen; lifting it needs a quorum: keygate approve freeze:{id} --key FILE"
                    );
                }
            }
        }
    }
    gw.store
        .set_meta(&cursor_key(&setup.name), &now.to_string())
        .await
        .map_err(|e| e.to_string())?;
    metrics::gauge!("keygate_reconcile_last_success_ms", "venue" => setup.name.clone())
        .set(now as f64);
    Ok(p)
}

/// Runs [`pass`] for every venue that asks for it, forever. A failed pass is logged as an
/// error every time (reconciliation that cannot run is a blind spot, never silent).
pub fn spawn(gw: Arc<Gateway>) -> Vec<tokio::task::JoinHandle<()>> {
    let mut handles = vec![];
    let venues: Vec<VenueSetup> = gw.venues.values().cloned().collect();
    for setup in venues {
        let Some(every) = setup.reconcile_every else {
            continue;
        };
        let gw = gw.clone();
        handles.push(tokio::spawn(async move {
            let mut tick = tokio::time::interval(every.max(Duration::from_millis(100)));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                if let Err(e) = pass(&gw, &setup).await {
                    metrics::counter!("keygate_reconcile_errors_total", "venue" => setup.name.clone())
                        .increment(1);
                    tracing::error!(venue = %setup.name, error = %e, "reconciliation failed; withdrawals at this venue are not being checked");
                }
                if let Err(e) = crate::reconcile_orders::pass(&gw, &setup).await {
                    metrics::counter!("keygate_reconcile_errors_total", "venue" => setup.name.clone())
                        .increment(1);
                    tracing::error!(venue = %setup.name, error = %e, "order reconciliation failed; orders at this venue are not being checked");
                }
                if let Err(e) = crate::reconcile_transfers::pass(&gw, &setup).await {
                    metrics::counter!("keygate_reconcile_errors_total", "venue" => setup.name.clone())
                        .increment(1);
                    tracing::error!(venue = %setup.name, error = %e, "transfer reconciliation failed; transfers out of this sub-account are not being checked");
                }
            }
        }));
    }
    handles
}
