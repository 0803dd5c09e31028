//! Reconciliation: each outflow a venue (or the chain watcher) reports is matched, once, to the allowed decision that
//! explains it, or raises an alarm. Both are audit entries; the `venue_withdrawals` table makes
//! sure an outflow is judged once and a decision explains at most one outflow.

use keygate_core::outflow::{AllowedOut, MATCH_AFTER, MATCH_BEFORE, Outflow, explains};
use rust_decimal::Decimal;
use sqlx::Row;
use sqlx::any::AnyRow;

use std::borrow::Cow;

use crate::audit::{
    AuditEntry, DecisionEntry, NewEntry, ReconcileEvent, append, db_now, lock_head,
};
use crate::{Store, StoreError};

/// What became of one outflow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reconciled {
    /// Seen before; nothing was written.
    Known,
    /// Explained by an allowed decision.
    Matched { decision_id: i64, audit_id: i64 },
    /// Explained by nothing keygate allowed: the audit entry of the alarm, and the freeze it
    /// set (if containment asks for one).
    Unapproved {
        audit_id: i64,
        freeze_id: Option<i64>,
    },
}

impl Store {
    /// Judges one outflow in one transaction: matches it to the earliest unmatched allowed
    /// decision that explains it, or records it as unapproved and, in the same transaction,
    /// sets a freeze of `contain` (when given): from the next decision on, nothing in that
    /// scope is allowed until a quorum lifts it.
    pub async fn reconcile_outflow(
        &self,
        o: &Outflow,
        contain: Option<&keygate_core::freeze::Scope>,
    ) -> Result<Reconciled, StoreError> {
        let mut tx = self.begin_write().await?;
        let mut head = lock_head(&mut tx).await?;
        if Judged::Withdrawals
            .is_known(&mut tx, &o.venue, &o.id)
            .await?
        {
            tx.rollback().await?;
            return Ok(Reconciled::Known);
        }
        let matched = find_match(&mut tx, o).await?;
        let now = db_now(&mut tx, self).await?;
        let entries = vec![judgement_entry(o, matched, now)];
        Judged::Withdrawals
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
                        "an unapproved outflow of {} {} from {} to {} (venue id {})",
                        o.amount, o.asset, o.venue, o.destination, o.id
                    )
                },
            )
            .await
    }
}

pub(crate) type Tx = sqlx::Transaction<'static, sqlx::Any>;

/// Sets, in `tx`, the freeze of `scope` that an unapproved action at `venue` calls for (as
/// `[containment] unapproved_outflow` names it), and adds its audit entry to `entries`.
pub(crate) async fn freeze_in(
    tx: &mut Tx,
    scope: &keygate_core::freeze::Scope,
    reason: &str,
    venue: &str,
    now: keygate_core::Millis,
    entries: &mut Vec<NewEntry>,
) -> Result<i64, StoreError> {
    let actor = format!("reconcile:{venue}");
    let id = crate::freeze::set_in(tx, scope, reason, &actor, now).await?;
    entries.push(crate::freeze::freeze_entry(id, scope, reason, &actor, now));
    Ok(id)
}

/// Where the items of a venue's history judged so far are remembered, so each is judged once.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Judged {
    /// Outflows (`venue_withdrawals`).
    Withdrawals,
    /// Orders (`venue_orders`).
    Orders,
}

impl Judged {
    /// Whether item `id` of `venue` was judged before.
    pub(crate) async fn is_known(
        self,
        tx: &mut Tx,
        venue: &str,
        id: &str,
    ) -> Result<bool, StoreError> {
        let sql = match self {
            Self::Withdrawals => {
                "SELECT 1 FROM venue_withdrawals WHERE venue = $1 AND venue_id = $2"
            }
            Self::Orders => "SELECT 1 FROM venue_orders WHERE venue = $1 AND venue_id = $2",
        };
        let known = sqlx::query(sql)
            .bind(venue.to_string())
            .bind(id.to_string())
            .fetch_optional(&mut **tx)
            .await?;
        Ok(known.is_some())
    }

    /// Ends the judgement of item `(venue, id)` in `tx`: when nothing `matched`, the freeze
    /// `contain` asks for (its reason from `reason`) joins `entries`; then the entries are
    /// appended, the item remembered as judged, and the transaction committed.
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn record(
        self,
        mut tx: Tx,
        head: &mut crate::audit::Head,
        (venue, id): (&str, &str),
        matched: Option<i64>,
        mut entries: Vec<NewEntry>,
        contain: Option<&keygate_core::freeze::Scope>,
        now: keygate_core::Millis,
        reason: impl FnOnce() -> String,
    ) -> Result<Reconciled, StoreError> {
        let mut freeze_id = None;
        if matched.is_none()
            && let Some(scope) = contain
        {
            freeze_id = Some(freeze_in(&mut tx, scope, &reason(), venue, now, &mut entries).await?);
        }
        let seqs = append(&mut tx, head, entries, now).await?;
        let audit_id = seqs.first().copied().unwrap_or_default();
        let sql = match self {
            Self::Withdrawals => {
                "INSERT INTO venue_withdrawals (venue, venue_id, decision_id, audit_id, seen_ms) VALUES ($1, $2, $3, $4, $5)"
            }
            Self::Orders => {
                "INSERT INTO venue_orders (venue, venue_id, decision_id, audit_id, seen_ms) VALUES ($1, $2, $3, $4, $5)"
            }
        };
        sqlx::query(sql)
            .bind(venue.to_string())
            .bind(id.to_string())
            .bind(matched)
            .bind(audit_id)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(match matched {
            Some(decision_id) => Reconciled::Matched {
                decision_id,
                audit_id,
            },
            None => Reconciled::Unapproved {
                audit_id,
                freeze_id,
            },
        })
    }
}

/// The earliest unmatched allowed decision that explains `o`, if any.
async fn find_match(tx: &mut Tx, o: &Outflow) -> Result<Option<i64>, StoreError> {
    let rows = sqlx::query(
        "SELECT seq, at_ms, mv_amount, entry, mv_action FROM audit_log \
         WHERE mv_venue = $1 AND mv_asset = $2 \
         AND ((mv_action = 'withdraw' AND at_ms >= $3 AND at_ms <= $4) \
           OR (mv_action = 'transfer' AND seq IN (SELECT decision_id FROM evm_tx_hashes WHERE tx_hash = $5))) \
         AND NOT EXISTS (SELECT 1 FROM venue_withdrawals w WHERE w.decision_id = audit_log.seq) \
         ORDER BY seq",
    )
    .bind(o.venue.clone())
    .bind(o.asset.clone())
    .bind(o.at.saturating_sub(MATCH_BEFORE))
    .bind(o.at.saturating_add(MATCH_AFTER))
    .bind(o.reference.clone().unwrap_or_default())
    .fetch_all(&mut **tx)
    .await?;
    for r in rows {
        let candidate = candidate(tx, o, &r).await?;
        if explains(&candidate, o) {
            return Ok(Some(candidate.decision_id));
        }
    }
    Ok(None)
}

/// An allowed decision's outflow, as read from its audit row, to be matched against `o`.
async fn candidate(tx: &mut Tx, o: &Outflow, r: &AnyRow) -> Result<AllowedOut, StoreError> {
    let seq: i64 = r.try_get(0)?;
    let amount: String = r.try_get(2)?;
    let entry: String = r.try_get(3)?;
    let amount: Decimal = amount.parse().map_err(|_| {
        StoreError::Corrupt(format!(
            "audit entry {seq}: its debit amount is not a decimal"
        ))
    })?;
    let entry = AuditEntry::from_canonical(&entry)
        .map_err(|e| StoreError::Corrupt(format!("audit entry {seq}: {e}")))?;
    let decision = match entry {
        AuditEntry::Decision(d) => Some(d),
        _ => None,
    };
    let destination = decision.as_ref().and_then(|d| d.intent.destination.clone());
    let action: String = r.try_get(4)?;
    let transfer = action == "transfer";
    let reference = if transfer {
        transfer_reference(tx, o, seq).await?
    } else {
        withdrawal_reference(decision.as_ref(), seq)
    };
    // A transfer's signed hash binds its decision to this very transaction, however long it
    // waited in the pool: it is judged as of when it was mined.
    let at: i64 = if transfer { o.at } else { r.try_get(1)? };
    Ok(AllowedOut {
        decision_id: seq,
        at,
        venue: o.venue.clone(),
        asset: o.asset.clone(),
        amount,
        destination,
        reference,
    })
}

/// A transfer's reference: the hash of a transaction keygate signed for it (an outflow on
/// chain carries its transaction hash), `o`'s own when it is one of them.
async fn transfer_reference(
    tx: &mut Tx,
    o: &Outflow,
    seq: i64,
) -> Result<Option<String>, StoreError> {
    let hashes: Vec<String> =
        sqlx::query("SELECT tx_hash FROM evm_tx_hashes WHERE decision_id = $1 ORDER BY tx_hash")
            .bind(seq)
            .fetch_all(&mut **tx)
            .await?
            .iter()
            .map(|h| h.try_get::<String, _>(0))
            .collect::<Result<_, _>>()?;
    Ok(match &o.reference {
        Some(r) if hashes.contains(r) => Some(r.clone()),
        _ => hashes.into_iter().next(),
    })
}

/// A withdrawal's reference: the bot's request id when the venue reports it, or the one the
/// gateway sets on a withdrawal without one.
pub(crate) fn withdrawal_reference(
    decision: Option<&DecisionEntry<'_>>,
    seq: i64,
) -> Option<String> {
    let request = decision?.request.as_ref()?;
    Some(match &request.venue_ref {
        Some(r) => r.to_string(),
        None => keygate_core::outflow::gateway_reference(seq),
    })
}

/// The audit entry that records how `o` was judged.
fn judgement_entry(o: &Outflow, matched: Option<i64>, now: keygate_core::Millis) -> NewEntry {
    let outflow = Cow::Borrowed(o);
    let event = match matched {
        Some(decision_id) => ReconcileEvent::Matched {
            outflow,
            decision_id,
        },
        None => ReconcileEvent::Unapproved {
            severity: Cow::Borrowed("critical"),
            outflow,
            reason: format!(
                "{} {} left {} to {} (venue id {}) and no decision of keygate allowed it: a credential is being used outside keygate",
                o.amount, o.asset, o.venue, o.destination, o.id
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
