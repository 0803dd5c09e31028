//! Reconciliation of a sub-account's internal-transfer history (Binance; see
//! `keygate_venues::sub_transfers`), beside the withdrawal and order ones and on their
//! interval: a transfer out to another sub-account of the same master leaves the sweep's
//! reach, and keygate forwards none, so each is judged by `Store::reconcile_outflow` like a
//! withdrawal: nothing explains it, and it raises the unapproved-outflow alarm and the freeze
//! `[containment] unapproved_outflow` names. Judged once (by `subtransfer:<tranId>`).
//!
//! Read only for a venue with containment (its key is a sub-account's). The cursor is kept in
//! the store (`reconcile.{venue}.transfers_until_ms`), each read
//! overlapping the last by [`OVERLAP`].

use keygate_core::Millis;
use keygate_core::outflow::Outflow;
use keygate_store::reconcile::Reconciled;

use crate::reconcile_orders::send;
use crate::{Gateway, VenueSetup};

/// How far the next read overlaps the last one.
const OVERLAP: Millis = 10 * 60 * 1000;

/// The most history pages one pass reads.
const MAX_PAGES: usize = 50;

fn cursor_key(venue: &str) -> String {
    format!("reconcile.{venue}.transfers_until_ms")
}

/// Whether the venue's key is a sub-account's: the venue has containment (`sub_account` in
/// `[venues.NAME]`). Any other key has no sub-account transfer history to read.
fn is_sub_account(gw: &Gateway, setup: &VenueSetup) -> bool {
    gw.containment
        .as_ref()
        .is_some_and(|c| c.venues.iter().any(|v| v.venue == setup.name))
}

/// The transfers out since `since`, page by page; `None` where the venue has no such history.
async fn read(
    gw: &Gateway,
    setup: &VenueSetup,
    since: Millis,
) -> Result<Option<Vec<Outflow>>, String> {
    if !setup.adapter.reads_sub_transfers() || !is_sub_account(gw, setup) {
        return Ok(None);
    }
    let mut from = since;
    let mut out = vec![];
    for _ in 0..MAX_PAGES {
        let now = gw.store.clock().now();
        let Some(body) = send(gw, setup, "sub-account transfer history", |k| {
            setup.adapter.sub_transfer_history(from, k, now)
        })
        .await?
        else {
            return Ok(Some(out));
        };
        let rows: Vec<serde_json::Value> = serde_json::from_slice(&body).map_err(|_| {
            format!(
                "{}'s sub-account transfer history is not a list",
                setup.name
            )
        })?;
        let read = rows.len();
        let last = rows.iter().filter_map(|r| r.get("time")?.as_i64()).max();
        out.extend(setup.adapter.parse_sub_transfers(&setup.name, &body)?);
        match setup.adapter.next_sub_transfer_since(read, last) {
            Some(next) if next > from => from = next,
            _ => return Ok(Some(out)),
        }
    }
    Err(format!(
        "{}'s sub-account transfer history since {since} ms is longer than {MAX_PAGES} pages; it was not all read",
        setup.name
    ))
}

/// Reads one venue's internal-transfer history once and judges every transfer out in it;
/// returns the audit ids of the unapproved ones.
pub async fn pass(gw: &Gateway, setup: &VenueSetup) -> Result<Vec<i64>, String> {
    let now = gw.store.clock().now();
    let stored = gw
        .store
        .get_meta(&cursor_key(&setup.name))
        .await
        .map_err(|e| e.to_string())?
        .and_then(|s| s.parse::<Millis>().ok());
    let since = match stored {
        Some(t) => t.saturating_sub(OVERLAP),
        None => now.saturating_sub(setup.reconcile_lookback.as_millis() as Millis),
    };
    let Some(mut transfers) = read(gw, setup, since).await? else {
        return Ok(vec![]);
    };
    transfers.retain(|o| o.at >= since);
    transfers.sort_by_key(|o| o.at);
    let mut unapproved = vec![];
    for o in &transfers {
        if let Reconciled::Unapproved {
            audit_id,
            freeze_id,
        } = gw
            .store
            .reconcile_outflow(o, setup.contain.as_ref())
            .await
            .map_err(|e| e.to_string())?
        {
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
                "a transfer to another sub-account keygate did not make: a credential is being used outside keygate"
            );
            unapproved.push(audit_id);
        }
    }
    gw.store
        .set_meta(&cursor_key(&setup.name), &now.to_string())
        .await
        .map_err(|e| e.to_string())?;
    Ok(unapproved)
}
