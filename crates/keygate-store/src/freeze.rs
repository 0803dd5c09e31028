//! Freezes in the store, and the approvals that lift them.
//!
//! A freeze is set in one transaction with its audit entry (kind `freeze`), which makes every
//! decider rebuild its state on its next batch: the freeze holds from the next decision of every
//! instance. Lifting needs a quorum of signed approvals; each approval is checked (approver,
//! expiry, signature over the message unique to that freeze) and recorded in one transaction,
//! and the one that completes the quorum lifts the freeze in the same transaction.

use keygate_core::Millis;
use keygate_core::freeze::{ApprovalPolicy, Freeze, Scope, Subject, approval_message};
use serde_json::json;
use sqlx::any::AnyRow;
use sqlx::{Any, Row, Transaction};

use std::borrow::Cow;

use crate::audit::{AuditEntry, FreezeEvent, NewEntry, Verifier, append, lock_head_at};
use crate::{Conflict, Store, StoreError};

/// A freeze as stored, lifted or not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FreezeRow {
    pub freeze: Freeze,
    pub lifted_at: Option<Millis>,
    pub lifted_by: Option<String>,
}

/// What an approval came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Approved {
    /// Recorded; `have` of the `need` approvals are now valid.
    Counted {
        have: usize,
        need: usize,
        audit_id: i64,
    },
    /// This approval completed the quorum: the freeze is lifted.
    Lifted {
        freeze_id: i64,
        approvers: Vec<String>,
        audit_id: i64,
    },
    /// This approval completed the quorum: the held request may now be sent again, once, with
    /// the header `x-keygate-hold`.
    HoldApproved {
        decision_id: i64,
        approvers: Vec<String>,
        audit_id: i64,
    },
    /// This approval completed the quorum: the address-book entry is approved (usable once its
    /// cool-down has passed).
    AddressApproved {
        entry_id: i64,
        approvers: Vec<String>,
        audit_id: i64,
    },
}

/// What approving `subject` (`freeze:ID`, `hold:ID` or `address:ID`) would sign, read with
/// `exec`, if it can still be approved at `now`.
async fn approvable<'e, E>(exec: E, subject: &str, now: Millis) -> Result<Subject, StoreError>
where
    E: sqlx::Executor<'e, Database = Any>,
{
    if let Some(id) = subject
        .strip_prefix("hold:")
        .and_then(|n| n.parse::<i64>().ok())
    {
        let r = sqlx::query(
            "SELECT client, intent_digest, expires_ms, approved_ms, executed_by, request_text FROM holds WHERE decision_id = $1",
        )
        .bind(id)
        .fetch_optional(exec)
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("there is no held decision {id}")))?;
        let expires_at: Millis = r.try_get(2)?;
        if r.try_get::<Option<i64>, _>(3)?.is_some() || r.try_get::<Option<i64>, _>(4)?.is_some() {
            return Err(StoreError::Conflict(Conflict::AlreadyDone(format!(
                "held decision {id} is already approved; nothing to approve"
            ))));
        }
        if expires_at <= now {
            return Err(StoreError::Conflict(Conflict::Rule(format!(
                "held decision {id} expired at {}; an expired hold is a deny",
                keygate_core::time::format_millis(expires_at)
            ))));
        }
        if r.try_get::<Option<String>, _>(5)?.is_none() {
            return Err(StoreError::Conflict(Conflict::Rule(format!(
                "held decision {id} binds no request keygate would forward (it was held before holds were bound to the exact request), so it could never be carried out and is not approved; the client sends the request again for a new hold"
            ))));
        }
        return Ok(Subject::Hold {
            decision_id: id,
            client: r.try_get(0)?,
            intent_digest: r.try_get(1)?,
            expires_at,
        });
    }
    if let Some(id) = subject
        .strip_prefix("address:")
        .and_then(|n| n.parse::<i64>().ok())
    {
        let r = sqlx::query(
            "SELECT venue, asset, address, added_ms, approved_ms FROM destinations WHERE id = $1 AND removed_ms IS NULL",
        )
        .bind(id)
        .fetch_optional(exec)
        .await?
        .ok_or_else(|| {
            StoreError::NotFound(format!(
                "there is no address-book entry {id}; see `keygate address list`"
            ))
        })?;
        if r.try_get::<Option<i64>, _>(4)?.is_some() {
            return Err(StoreError::Conflict(Conflict::AlreadyDone(format!(
                "address-book entry {id} is already approved"
            ))));
        }
        return Ok(Subject::Address {
            entry_id: id,
            venue: r.try_get(0)?,
            asset: r.try_get(1)?,
            address: r.try_get(2)?,
            added_at: r.try_get(3)?,
        });
    }
    let id = freeze_id(subject)?;
    let row = sqlx::query(sqlx::AssertSqlSafe(format!("{FREEZE_COLS} WHERE id = $1")))
        .bind(id)
        .fetch_optional(exec)
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("there is no freeze {id}")))?;
    subject_of(&row_to_freeze(&row)?)
}

const FREEZE_COLS: &str =
    "SELECT id, scope, reason, set_by, set_ms, lifted_ms, lifted_by FROM freezes";

fn row_to_freeze(r: &AnyRow) -> Result<FreezeRow, StoreError> {
    let id: i64 = r.try_get("id")?;
    let scope: String = r.try_get("scope")?;
    Ok(FreezeRow {
        freeze: Freeze {
            id,
            scope: scope
                .parse()
                .map_err(|e| StoreError::Corrupt(format!("freeze {id}: {e}")))?,
            reason: r.try_get("reason")?,
            set_by: r.try_get("set_by")?,
            set_at: r.try_get("set_ms")?,
        },
        lifted_at: r.try_get("lifted_ms")?,
        lifted_by: r.try_get("lifted_by")?,
    })
}

/// The freezes that hold, read in `tx` (for the decider's state).
pub(crate) async fn active(tx: &mut Transaction<'static, Any>) -> Result<Vec<Freeze>, StoreError> {
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "{FREEZE_COLS} WHERE lifted_ms IS NULL ORDER BY id"
    )))
    .fetch_all(&mut **tx)
    .await?
    .iter()
    .map(|r| row_to_freeze(r).map(|f| f.freeze))
    .collect()
}

fn freeze_id(subject: &str) -> Result<i64, StoreError> {
    subject
        .strip_prefix("freeze:")
        .and_then(|n| n.parse::<i64>().ok())
        .filter(|n| *n > 0)
        .ok_or_else(|| {
            StoreError::NotFound(format!(
                "{subject:?} is not something to approve; `keygate freeze list` shows freeze:ID for each freeze"
            ))
        })
}

impl Store {
    /// Sets a freeze. Returns its id and the audit entry's sequence number.
    pub async fn freeze(
        &self,
        scope: &Scope,
        reason: &str,
        actor: &str,
        now: Millis,
    ) -> Result<(i64, i64), StoreError> {
        let mut tx = self.begin_write().await?;
        let (mut head, store_now) = lock_head_at(&mut tx, self).await?;
        let id = set_in(&mut tx, scope, reason, actor, now.min(store_now)).await?;
        let seqs = append(
            &mut tx,
            &mut head,
            vec![freeze_entry(id, scope, reason, actor, now)],
            store_now,
        )
        .await?;
        tx.commit().await?;
        Ok((id, seqs.first().copied().unwrap_or_default()))
    }

    /// Freezes, newest first; lifted ones too when `all`.
    pub async fn freezes(&self, all: bool) -> Result<Vec<FreezeRow>, StoreError> {
        let filter = if all { "" } else { " WHERE lifted_ms IS NULL" };
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "{FREEZE_COLS}{filter} ORDER BY id DESC"
        )))
        .fetch_all(self.pool())
        .await?
        .iter()
        .map(row_to_freeze)
        .collect()
    }

    /// What approving `subject` (`freeze:ID`, `hold:ID`, `address:ID`) means at `now`: the
    /// subject to sign, if it can be approved.
    pub async fn approval_subject(
        &self,
        subject: &str,
        now: Millis,
    ) -> Result<Subject, StoreError> {
        approvable(self.pool(), subject, now).await
    }

    /// Checks and records one signed approval of `subject`; lifts the freeze when it completes
    /// the quorum. Anything wrong (not an approver, expired, too long-lived, a signature that
    /// does not verify over this freeze's message, a freeze no longer active) is an error and
    /// changes nothing. A second approval by the same key replaces its first: it counts once.
    #[allow(clippy::too_many_arguments)]
    pub async fn approve(
        &self,
        subject: &str,
        approver: &str,
        signature: &str,
        expires_at: Millis,
        policy: &ApprovalPolicy,
        verifier: &dyn Verifier,
        now: Millis,
    ) -> Result<Approved, StoreError> {
        let approver = approver.to_ascii_lowercase();
        if !policy.is_approver(&approver) {
            return Err(StoreError::Conflict(Conflict::Approval(format!(
                "key {approver} is not one of the approvers in [approvals] of the config"
            ))));
        }
        let mut tx = self.begin_write().await?;
        let (mut head, store_now) = lock_head_at(&mut tx, self).await?;
        let what = approvable(&mut *tx, subject, store_now).await?;
        let signed = Signed {
            approver: &approver,
            signature,
            expires_at,
        };
        check_signed(&what, &signed, store_now, policy, verifier)?;
        record_approval(&mut tx, &what, &signed, store_now).await?;
        let valid = valid_approvers(&mut tx, &what, store_now, policy).await?;
        let mut entries = vec![NewEntry {
            kind: "approval".into(),
            actor: format!("approver:{approver}"),
            at_ms: now,
            data: NewEntry::data(&json!({
                "event": "approval", "subject": what, "expires_at": expires_at,
                "valid": valid.len(), "quorum": policy.quorum,
            })),
            debit: None,
        }];
        let done = valid.len() >= policy.quorum;
        if done {
            entries.push(carry_out(&mut tx, &what, &valid, store_now, now).await?);
        }
        let seqs = append(&mut tx, &mut head, entries, store_now).await?;
        tx.commit().await?;
        let audit_id = seqs.last().copied().unwrap_or_default();
        Ok(if done {
            approved(what, valid, audit_id)
        } else {
            Approved::Counted {
                have: valid.len(),
                need: policy.quorum,
                audit_id,
            }
        })
    }
}

/// One approver's signed approval, as it was presented.
struct Signed<'a> {
    approver: &'a str,
    signature: &'a str,
    expires_at: Millis,
}

/// Checks an approval against the store's clock and the policy: not expired, not valid for
/// too long, signed by the approver over exactly this subject and expiry.
fn check_signed(
    what: &Subject,
    signed: &Signed<'_>,
    store_now: Millis,
    policy: &ApprovalPolicy,
    verifier: &dyn Verifier,
) -> Result<(), StoreError> {
    let (approver, expires_at) = (signed.approver, signed.expires_at);
    if expires_at <= store_now {
        return Err(StoreError::Conflict(Conflict::Approval(
            "the approval has expired; sign a new one with `keygate approve`".into(),
        )));
    }
    if expires_at - store_now > policy.max_validity {
        return Err(StoreError::Conflict(Conflict::Approval(format!(
            "the approval is valid for longer than approvals.max_validity ({}); sign one that expires sooner",
            keygate_core::time::format_duration(policy.max_validity)
        ))));
    }
    verifier
        .verify(
            approver,
            &approval_message(what, expires_at),
            signed.signature,
        )
        .map_err(|e| {
            StoreError::Conflict(Conflict::Approval(format!(
                "the approval's signature does not verify for {} with key {approver}: {e}",
                what.key()
            )))
        })
}

/// Records an approval; a second one by the same key replaces its first.
async fn record_approval(
    tx: &mut Transaction<'static, Any>,
    what: &Subject,
    signed: &Signed<'_>,
    store_now: Millis,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO approvals (subject, approver, signature, expires_ms, at_ms) VALUES ($1, $2, $3, $4, $5) \
         ON CONFLICT (subject, approver) DO UPDATE SET signature = excluded.signature, \
         expires_ms = excluded.expires_ms, at_ms = excluded.at_ms",
    )
    .bind(what.key())
    .bind(signed.approver.to_string())
    .bind(signed.signature.to_string())
    .bind(signed.expires_at)
    .bind(store_now)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// The approvers of `what` whose approvals count now (unexpired, still approvers), sorted.
async fn valid_approvers(
    tx: &mut Transaction<'static, Any>,
    what: &Subject,
    store_now: Millis,
    policy: &ApprovalPolicy,
) -> Result<Vec<String>, StoreError> {
    let mut valid: Vec<String> = vec![];
    for r in sqlx::query("SELECT approver FROM approvals WHERE subject = $1 AND expires_ms > $2")
        .bind(what.key())
        .bind(store_now)
        .fetch_all(&mut **tx)
        .await?
    {
        let a: String = r.try_get(0)?;
        if policy.is_approver(&a) {
            valid.push(a);
        }
    }
    valid.sort();
    Ok(valid)
}

/// Does what a completed quorum approves (approves the hold or address-book entry, lifts the
/// freeze); gives its audit entry.
async fn carry_out(
    tx: &mut Transaction<'static, Any>,
    what: &Subject,
    valid: &[String],
    store_now: Millis,
    now: Millis,
) -> Result<NewEntry, StoreError> {
    let entry = match what {
        Subject::Hold { decision_id, .. } => {
            sqlx::query("UPDATE holds SET approved_ms = $1 WHERE decision_id = $2")
                .bind(store_now)
                .bind(*decision_id)
                .execute(&mut **tx)
                .await?;
            AuditEntry::Other {
                kind: "hold".into(),
                data: json!({"event": "hold.approved", "decision_id": decision_id, "approvers": valid}),
            }
        }
        Subject::Address { entry_id, .. } => {
            sqlx::query("UPDATE destinations SET approved_ms = $1, approved_by = $2 WHERE id = $3")
                .bind(store_now)
                .bind(format!("quorum:{}", valid.join(",")))
                .bind(*entry_id)
                .execute(&mut **tx)
                .await?;
            AuditEntry::Other {
                kind: "admin".into(),
                data: json!({"action": "address.approve", "entry_id": entry_id, "approvers": valid}),
            }
        }
        Subject::Unfreeze {
            freeze_id: id,
            scope,
            ..
        } => {
            sqlx::query("UPDATE freezes SET lifted_ms = $1, lifted_by = $2 WHERE id = $3")
                .bind(store_now)
                .bind(valid.join(","))
                .bind(*id)
                .execute(&mut **tx)
                .await?;
            sqlx::query("DELETE FROM approvals WHERE subject = $1")
                .bind(what.key())
                .execute(&mut **tx)
                .await?;
            AuditEntry::Freeze(FreezeEvent::Lifted {
                freeze_id: *id,
                scope: Cow::Borrowed(scope),
                approvers: Cow::Borrowed(valid),
            })
        }
    };
    Ok(NewEntry::new("quorum".into(), now, &entry, None))
}

/// What a completed quorum did.
fn approved(what: Subject, approvers: Vec<String>, audit_id: i64) -> Approved {
    match what {
        Subject::Unfreeze { freeze_id, .. } => Approved::Lifted {
            freeze_id,
            approvers,
            audit_id,
        },
        Subject::Hold { decision_id, .. } => Approved::HoldApproved {
            decision_id,
            approvers,
            audit_id,
        },
        Subject::Address { entry_id, .. } => Approved::AddressApproved {
            entry_id,
            approvers,
            audit_id,
        },
    }
}

fn subject_of(row: &FreezeRow) -> Result<Subject, StoreError> {
    if row.lifted_at.is_some() {
        return Err(StoreError::Conflict(Conflict::AlreadyDone(format!(
            "freeze {} was already lifted; nothing to approve",
            row.freeze.id
        ))));
    }
    Ok(Subject::Unfreeze {
        freeze_id: row.freeze.id,
        scope: row.freeze.scope.clone(),
        set_at: row.freeze.set_at,
    })
}

/// Inserts a freeze row in `tx`; returns its id.
pub(crate) async fn set_in(
    tx: &mut Transaction<'static, Any>,
    scope: &Scope,
    reason: &str,
    actor: &str,
    at: Millis,
) -> Result<i64, StoreError> {
    let row = sqlx::query(
        "INSERT INTO freezes (scope, reason, set_by, set_ms) VALUES ($1, $2, $3, $4) RETURNING id",
    )
    .bind(scope.to_string())
    .bind(reason.to_string())
    .bind(actor.to_string())
    .bind(at)
    .fetch_one(&mut **tx)
    .await?;
    Ok(row.try_get(0)?)
}

/// The audit entry of a freeze being set.
pub(crate) fn freeze_entry(
    id: i64,
    scope: &Scope,
    reason: &str,
    actor: &str,
    now: Millis,
) -> NewEntry {
    let entry = AuditEntry::Freeze(FreezeEvent::Set {
        freeze_id: id,
        scope: Cow::Borrowed(scope),
        reason: Cow::Borrowed(reason),
    });
    NewEntry::new(actor.to_string(), now, &entry, None)
}

/// A held decision, as `keygate holds` lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HoldRow {
    pub decision_id: i64,
    pub client: String,
    pub venue: String,
    pub request_id: Option<String>,
    pub expires_at: Millis,
    pub approved_at: Option<Millis>,
    pub executed_by: Option<i64>,
    /// Approvals recorded for it so far.
    pub approvals: i64,
    /// The request it binds, as keygate would forward it (before signing); None for a hold
    /// that binds none, which cannot be carried out.
    pub request_text: Option<String>,
    /// The digest approvers sign (`keygate_core::admit::hold_digest` of the held intent and
    /// `request_text`).
    pub digest: String,
}

const HOLD_COLS: &str = "SELECT h.decision_id, h.client, h.venue, h.request_id, h.expires_ms, h.approved_ms, h.executed_by, \
     (SELECT COUNT(*) FROM approvals a WHERE a.subject = 'hold:' || CAST(h.decision_id AS TEXT)), \
     h.request_text, h.intent_digest FROM holds h";

fn row_to_hold(r: &AnyRow) -> Result<HoldRow, StoreError> {
    Ok(HoldRow {
        decision_id: r.try_get(0)?,
        client: r.try_get(1)?,
        venue: r.try_get(2)?,
        request_id: r.try_get(3)?,
        expires_at: r.try_get(4)?,
        approved_at: r.try_get(5)?,
        executed_by: r.try_get(6)?,
        approvals: r.try_get(7)?,
        request_text: r.try_get(8)?,
        digest: r.try_get(9)?,
    })
}

impl Store {
    /// Held decisions, newest first: only those still waiting for approvals or to be carried
    /// out (not expired), unless `all`.
    pub async fn holds(&self, all: bool, now: Millis) -> Result<Vec<HoldRow>, StoreError> {
        let filter = if all {
            ""
        } else {
            " WHERE h.executed_by IS NULL AND h.expires_ms > $1"
        };
        let sql = format!("{HOLD_COLS}{filter} ORDER BY h.decision_id DESC");
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
        if !all {
            q = q.bind(now);
        }
        q.fetch_all(self.pool())
            .await?
            .iter()
            .map(row_to_hold)
            .collect()
    }

    /// The hold of held decision `decision_id`, if there is one.
    pub async fn hold(&self, decision_id: i64) -> Result<Option<HoldRow>, StoreError> {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "{HOLD_COLS} WHERE h.decision_id = $1"
        )))
        .bind(decision_id)
        .fetch_optional(self.pool())
        .await?
        .as_ref()
        .map(row_to_hold)
        .transpose()
    }
}

impl Store {
    /// The decision that carried out hold `decision_id`, if one did.
    pub async fn hold_executed_by(&self, decision_id: i64) -> Result<Option<i64>, StoreError> {
        let row = sqlx::query("SELECT executed_by FROM holds WHERE decision_id = $1")
            .bind(decision_id)
            .fetch_optional(self.pool())
            .await?;
        Ok(match row {
            Some(r) => r.try_get(0)?,
            None => None,
        })
    }
}
