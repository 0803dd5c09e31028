//! Containment at the venue, in the store: one containment per venue and freeze, and its steps,
//! each written before it is sent and updated with its outcome, every change in one transaction
//! with its audit entry (kind `containment`). Knows nothing of venues: a step is an action name
//! and its JSON parameters, which keygate-server gives meaning.
//!
//! The rules the store keeps, whoever calls: a step that is final (confirmed, or refused for
//! good) is never begun or changed again; a containment is done, in the same transaction, when
//! its last step becomes final; a sweep round's new steps are added in the transaction that
//! records the round, so a crash never leaves a round done without its sweeps or repeats them.

use std::borrow::Cow;

use keygate_core::Millis;
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::audit::{
    AuditEntry, ContainmentEvent, NewEntry, PlannedStep, StepAttempt, append, lock_head_at,
};
use crate::{Conflict, Store, StoreError};

type Tx = sqlx::Transaction<'static, sqlx::Any>;

/// Where a step stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StepState {
    /// Not tried yet.
    Planned,
    /// Being sent, or sent with no outcome recorded (a crash or a lost answer): the venue may
    /// or may not have done it.
    Sending,
    /// Accepted by the venue, not final yet (read its state again).
    Pending,
    /// An attempt whose outcome the answer did not say.
    Unknown,
    /// An attempt failed and nothing happened; try again after `next_ms`.
    Retry,
    /// Done, as the venue confirmed. Final.
    Confirmed,
    /// Refused, and not to be tried again (nothing happened). Final.
    Refused,
}

impl StepState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Planned => "planned",
            Self::Sending => "sending",
            Self::Pending => "pending",
            Self::Unknown => "unknown",
            Self::Retry => "retry",
            Self::Confirmed => "confirmed",
            Self::Refused => "refused",
        }
    }

    pub fn is_final(self) -> bool {
        matches!(self, Self::Confirmed | Self::Refused)
    }

    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "planned" => Self::Planned,
            "sending" => Self::Sending,
            "pending" => Self::Pending,
            "unknown" => Self::Unknown,
            "retry" => Self::Retry,
            "confirmed" => Self::Confirmed,
            "refused" => Self::Refused,
            _ => return None,
        })
    }
}

/// A step to plan.
#[derive(Debug, Clone, PartialEq)]
pub struct NewStep {
    pub action: String,
    pub params: serde_json::Value,
    /// Whether the step carries a client transfer id (made from the containment's id and the
    /// step's sequence number by the `client_id` function it is planned with).
    pub client_id: bool,
}

/// A step as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct StepRow {
    pub containment_id: i64,
    pub seq: i64,
    pub action: String,
    pub params: serde_json::Value,
    pub client_id: Option<String>,
    pub state: StepState,
    pub attempts: i64,
    pub last_error: Option<String>,
    pub venue_ref: Option<String>,
    pub next_ms: Millis,
    pub updated_ms: Millis,
}

/// A containment with its steps, in order.
#[derive(Debug, Clone, PartialEq)]
pub struct ContainmentRow {
    pub id: i64,
    pub venue: String,
    pub freeze_id: i64,
    pub started_ms: Millis,
    pub done_ms: Option<Millis>,
    pub steps: Vec<StepRow>,
}

/// How an attempt ended.
#[derive(Debug, Clone, PartialEq)]
pub struct StepEnd<'a> {
    /// The step's state after it.
    pub state: StepState,
    /// What the answer said (confirmed, pending, refused, limited, unknown, absent).
    pub outcome: &'a str,
    pub detail: &'a str,
    pub venue_ref: Option<&'a str>,
    /// Not to be tried again before this (ignored for a final state).
    pub next_ms: Millis,
    /// Steps to add after every other (a sweep round's sweeps).
    pub add: Vec<NewStep>,
}

/// Makes a client transfer id from a containment's id and a step's sequence number.
pub type ClientIdFn<'a> = &'a (dyn Fn(i64, i64) -> String + Sync);

const STEP_COLS: &str = "SELECT containment_id, seq, action, params, client_id, state, attempts, last_error, venue_ref, next_ms, updated_ms FROM containment_steps";

fn step_of(r: &AnyRow) -> Result<StepRow, StoreError> {
    let containment_id: i64 = r.try_get(0)?;
    let seq: i64 = r.try_get(1)?;
    let corrupt = |what: &str| {
        StoreError::Corrupt(format!("containment {containment_id} step {seq}: {what}"))
    };
    let params: String = r.try_get(3)?;
    let state: String = r.try_get(5)?;
    Ok(StepRow {
        containment_id,
        seq,
        action: r.try_get(2)?,
        params: serde_json::from_str(&params).map_err(|_| corrupt("params are not JSON"))?,
        client_id: r.try_get(4)?,
        state: StepState::parse(&state).ok_or_else(|| corrupt("unknown state"))?,
        attempts: r.try_get(6)?,
        last_error: r.try_get(7)?,
        venue_ref: r.try_get(8)?,
        next_ms: r.try_get(9)?,
        updated_ms: r.try_get(10)?,
    })
}

/// Inserts `steps` after the containment's last, returning them as planned.
async fn insert_steps(
    tx: &mut Tx,
    containment_id: i64,
    steps: &[NewStep],
    client_id: ClientIdFn<'_>,
    now: Millis,
) -> Result<Vec<PlannedStep<'static>>, StoreError> {
    let last: Option<i64> =
        sqlx::query("SELECT MAX(seq) FROM containment_steps WHERE containment_id = $1")
            .bind(containment_id)
            .fetch_one(&mut **tx)
            .await?
            .try_get(0)?;
    let mut seq = last.unwrap_or(0);
    let mut planned = vec![];
    for s in steps {
        seq += 1;
        let cid = s.client_id.then(|| client_id(containment_id, seq));
        sqlx::query(
            "INSERT INTO containment_steps (containment_id, seq, action, params, client_id, state, attempts, next_ms, updated_ms) \
             VALUES ($1, $2, $3, $4, $5, 'planned', 0, $6, $6)",
        )
        .bind(containment_id)
        .bind(seq)
        .bind(s.action.clone())
        .bind(s.params.to_string())
        .bind(cid.clone())
        .bind(now)
        .execute(&mut **tx)
        .await?;
        planned.push(PlannedStep {
            seq,
            action: Cow::Owned(s.action.clone()),
            params: s.params.clone(),
            client_id: cid.map(Cow::Owned),
        });
    }
    Ok(planned)
}

async fn steps_of(tx: &mut Tx, containment_id: i64) -> Result<Vec<StepRow>, StoreError> {
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "{STEP_COLS} WHERE containment_id = $1 ORDER BY seq"
    )))
    .bind(containment_id)
    .fetch_all(&mut **tx)
    .await?
    .iter()
    .map(step_of)
    .collect()
}

async fn venue_of(tx: &mut Tx, containment_id: i64) -> Result<String, StoreError> {
    sqlx::query("SELECT venue FROM containments WHERE id = $1")
        .bind(containment_id)
        .fetch_optional(&mut **tx)
        .await?
        .map(|r| r.try_get(0))
        .transpose()?
        .ok_or_else(|| StoreError::NotFound(format!("there is no containment {containment_id}")))
}

impl Store {
    /// Starts containment of `venue` for freeze `freeze_id` with `steps`, in one transaction
    /// with its audit entry. `None` if that venue and freeze have one already.
    pub async fn start_containment(
        &self,
        venue: &str,
        freeze_id: i64,
        steps: &[NewStep],
        client_id: ClientIdFn<'_>,
        actor: &str,
    ) -> Result<Option<i64>, StoreError> {
        let mut tx = self.begin_write().await?;
        let (mut head, now) = lock_head_at(&mut tx, self).await?;
        let id: Option<i64> = sqlx::query(
            "INSERT INTO containments (venue, freeze_id, started_ms) VALUES ($1, $2, $3) \
             ON CONFLICT (venue, freeze_id) DO NOTHING RETURNING id",
        )
        .bind(venue.to_string())
        .bind(freeze_id)
        .bind(now)
        .fetch_optional(&mut *tx)
        .await?
        .map(|r| r.try_get(0))
        .transpose()?;
        let Some(id) = id else {
            tx.rollback().await?;
            return Ok(None);
        };
        let planned = insert_steps(&mut tx, id, steps, client_id, now).await?;
        let entry = AuditEntry::Containment(ContainmentEvent::Started {
            containment_id: id,
            venue: Cow::Borrowed(venue),
            freeze_id,
            steps: planned,
        });
        append(
            &mut tx,
            &mut head,
            vec![NewEntry::new(actor.to_string(), now, &entry, None)],
            now,
        )
        .await?;
        tx.commit().await?;
        Ok(Some(id))
    }

    /// Containments, newest first, with their steps; only those not done unless `all`.
    pub async fn containments(&self, all: bool) -> Result<Vec<ContainmentRow>, StoreError> {
        let filter = if all { "" } else { " WHERE done_ms IS NULL" };
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT id, venue, freeze_id, started_ms, done_ms FROM containments{filter} ORDER BY id DESC"
        )))
        .fetch_all(self.pool())
        .await?;
        let mut out = Vec::with_capacity(rows.len());
        for r in rows {
            let id: i64 = r.try_get(0)?;
            let steps = sqlx::query(sqlx::AssertSqlSafe(format!(
                "{STEP_COLS} WHERE containment_id = $1 ORDER BY seq"
            )))
            .bind(id)
            .fetch_all(self.pool())
            .await?
            .iter()
            .map(step_of)
            .collect::<Result<_, _>>()?;
            out.push(ContainmentRow {
                id,
                venue: r.try_get(1)?,
                freeze_id: r.try_get(2)?,
                started_ms: r.try_get(3)?,
                done_ms: r.try_get(4)?,
                steps,
            });
        }
        Ok(out)
    }

    /// Marks a step as being sent (one more attempt), committed before anything is sent. A
    /// final step is refused (`Conflict::AlreadyDone`): it is never sent again.
    pub async fn begin_step(&self, containment_id: i64, seq: i64) -> Result<StepRow, StoreError> {
        let mut tx = self.begin_write().await?;
        let (_, now) = lock_head_at(&mut tx, self).await?;
        let done = sqlx::query(
            "UPDATE containment_steps SET state = 'sending', attempts = attempts + 1, updated_ms = $3 \
             WHERE containment_id = $1 AND seq = $2 AND state NOT IN ('confirmed', 'refused')",
        )
        .bind(containment_id)
        .bind(seq)
        .bind(now)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if done == 0 {
            tx.rollback().await?;
            return Err(StoreError::Conflict(Conflict::AlreadyDone(format!(
                "containment {containment_id} step {seq} is final (or does not exist); it is not sent again"
            ))));
        }
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "{STEP_COLS} WHERE containment_id = $1 AND seq = $2"
        )))
        .bind(containment_id)
        .bind(seq)
        .fetch_one(&mut *tx)
        .await?;
        let step = step_of(&row)?;
        tx.commit().await?;
        Ok(step)
    }

    /// Records how an attempt at a step ended, with its audit entry, adding `end.add` steps in
    /// the same transaction; finishes the containment if every step is now final. Returns
    /// whether it is done. A final step is not changed (`Conflict::AlreadyDone`).
    pub async fn end_step(
        &self,
        containment_id: i64,
        seq: i64,
        end: &StepEnd<'_>,
        client_id: ClientIdFn<'_>,
        actor: &str,
    ) -> Result<bool, StoreError> {
        let mut tx = self.begin_write().await?;
        let (mut head, now) = lock_head_at(&mut tx, self).await?;
        let venue = venue_of(&mut tx, containment_id).await?;
        let row = sqlx::query(
            "UPDATE containment_steps SET state = $3, last_error = $4, venue_ref = COALESCE($5, venue_ref), \
             next_ms = $6, updated_ms = $7 \
             WHERE containment_id = $1 AND seq = $2 AND state NOT IN ('confirmed', 'refused') \
             RETURNING action, attempts",
        )
        .bind(containment_id)
        .bind(seq)
        .bind(end.state.as_str())
        .bind((!end.state.is_final() || end.state == StepState::Refused).then(|| end.detail.to_string()))
        .bind(end.venue_ref.map(str::to_string))
        .bind(end.next_ms)
        .bind(now)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = row else {
            tx.rollback().await?;
            return Err(StoreError::Conflict(Conflict::AlreadyDone(format!(
                "containment {containment_id} step {seq} is final (or does not exist); its outcome stays"
            ))));
        };
        let planned = insert_steps(&mut tx, containment_id, &end.add, client_id, now).await?;
        let attempt = AuditEntry::Containment(ContainmentEvent::Step(StepAttempt {
            containment_id,
            venue: Cow::Borrowed(&venue),
            seq,
            action: Cow::Owned(row.try_get(0)?),
            attempt: row.try_get(1)?,
            outcome: Cow::Borrowed(end.outcome),
            state: Cow::Borrowed(end.state.as_str()),
            detail: Cow::Borrowed(end.detail),
            venue_ref: end.venue_ref.map(Cow::Borrowed),
            planned,
        }));
        let mut entries = vec![NewEntry::new(actor.to_string(), now, &attempt, None)];
        let done = steps_of(&mut tx, containment_id)
            .await?
            .iter()
            .all(|s| s.state.is_final());
        if done {
            sqlx::query("UPDATE containments SET done_ms = $2 WHERE id = $1 AND done_ms IS NULL")
                .bind(containment_id)
                .bind(now)
                .execute(&mut *tx)
                .await?;
            let entry = AuditEntry::Containment(ContainmentEvent::Done {
                containment_id,
                venue: Cow::Borrowed(&venue),
            });
            entries.push(NewEntry::new(actor.to_string(), now, &entry, None));
        }
        append(&mut tx, &mut head, entries, now).await?;
        tx.commit().await?;
        Ok(done)
    }
}
