//! Reconciliation of a venue's order history: each order is matched, once, to the allowed trade
//! decision keygate forwarded it for (`keygate_core::venue_order::explains`), or raises the
//! unapproved-action alarm and, in the same transaction, the freeze `[containment]
//! unapproved_outflow` names: the same freeze, by the same code, as an unapproved withdrawal.
//! The `venue_orders` table makes sure an order is judged once and a decision explains at most
//! one order.

use std::borrow::Cow;

use keygate_core::outflow::{MATCH_AFTER, MATCH_BEFORE};
use keygate_core::venue_order::{AllowedOrder, VenueOrder, explains};
use sqlx::Row;

use crate::audit::{AuditEntry, NewEntry, ReconcileEvent, db_now, lock_head};
use crate::reconcile::{Judged, Reconciled, Tx, withdrawal_reference};
use crate::{Store, StoreError};

impl Store {
    /// Judges one order of a venue's history in one transaction (see the module's comment).
    pub async fn reconcile_order(
        &self,
        o: &VenueOrder,
        contain: Option<&keygate_core::freeze::Scope>,
    ) -> Result<Reconciled, StoreError> {
        let mut tx = self.begin_write().await?;
        let mut head = lock_head(&mut tx).await?;
        if Judged::Orders.is_known(&mut tx, &o.venue, &o.id).await? {
            tx.rollback().await?;
            return Ok(Reconciled::Known);
        }
        let matched = find_match(&mut tx, o).await?;
        let now = db_now(&mut tx, self).await?;
        let entries = vec![judgement_entry(o, matched, now)];
        Judged::Orders
            .record(
                tx,
                &mut head,
                (&o.venue, &o.id),
                matched,
                entries,
                contain,
                now,
                || {
                    format!(
                        "an unapproved order at {}: {} {} (venue order {}, client id {})",
                        o.venue,
                        o.side.as_str(),
                        o.symbol,
                        o.id,
                        o.client_id.as_deref().unwrap_or("none")
                    )
                },
            )
            .await
    }
}

/// The earliest unmatched allowed trade decision that explains `o`, if any.
async fn find_match(tx: &mut Tx, o: &VenueOrder) -> Result<Option<i64>, StoreError> {
    if o.client_id.is_none() {
        return Ok(None);
    }
    let rows = sqlx::query(
        "SELECT seq, at_ms, entry FROM audit_log \
         WHERE mv_venue = $1 AND mv_action = 'trade' AND at_ms >= $2 AND at_ms <= $3 \
         AND NOT EXISTS (SELECT 1 FROM venue_orders v WHERE v.decision_id = audit_log.seq) \
         ORDER BY seq",
    )
    .bind(o.venue.clone())
    .bind(o.at.saturating_sub(MATCH_BEFORE))
    .bind(o.at.saturating_add(MATCH_AFTER))
    .fetch_all(&mut **tx)
    .await?;
    for r in rows {
        let seq: i64 = r.try_get(0)?;
        let at: i64 = r.try_get(1)?;
        let entry: String = r.try_get(2)?;
        if candidate(seq, at, &o.venue, &entry)?.is_some_and(|d| explains(&d, o)) {
            return Ok(Some(seq));
        }
    }
    Ok(None)
}

/// An allowed trade decision's order, as read from its audit row (None without an order).
fn candidate(
    seq: i64,
    at: i64,
    venue: &str,
    entry: &str,
) -> Result<Option<AllowedOrder>, StoreError> {
    let entry = AuditEntry::from_canonical(entry)
        .map_err(|e| StoreError::Corrupt(format!("audit entry {seq}: {e}")))?;
    let AuditEntry::Decision(d) = entry else {
        return Ok(None);
    };
    let (Some(order), Some(client_id)) =
        (d.intent.order.clone(), withdrawal_reference(Some(&d), seq))
    else {
        return Ok(None);
    };
    Ok(Some(AllowedOrder {
        decision_id: seq,
        at,
        venue: venue.to_string(),
        client_id,
        symbol: order.symbol,
        side: order.side,
    }))
}

fn judgement_entry(o: &VenueOrder, matched: Option<i64>, now: keygate_core::Millis) -> NewEntry {
    let order = Cow::Borrowed(o);
    let event = match matched {
        Some(decision_id) => ReconcileEvent::OrderMatched { order, decision_id },
        None => ReconcileEvent::OrderUnapproved {
            severity: Cow::Borrowed("critical"),
            order,
            reason: format!(
                "an order to {} {} (venue order {}, client id {}, {} filled so far in the quote asset) was placed at {} and no decision of keygate forwarded it: a credential is being used outside keygate",
                o.side.as_str(),
                o.symbol,
                o.id,
                o.client_id.as_deref().unwrap_or("none"),
                o.filled_quote,
                o.venue
            ),
        },
    };
    NewEntry::new(
        format!("venue:{}", o.venue),
        now,
        &AuditEntry::Reconcile(event),
        None,
    )
}
