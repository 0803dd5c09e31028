//! The SQLite decider's own connection (rusqlite), used on the decider's thread only: each of a
//! batch's statements runs right there, instead of being handed to sqlx's SQLite worker thread
//! and back over a channel. The statements are the same as the sqlx path's (same tables, same
//! values), prepared once and cached.
//!
//! A [`Tx`] is a `BEGIN IMMEDIATE` transaction (the write lock, taken at once, waiting up to the
//! busy timeout for another writer); it rolls back when dropped uncommitted.

use keygate_core::Millis;
use keygate_core::admit::{HoldRecord, RequestKey};
use std::sync::{Mutex, MutexGuard};

use rusqlite::{Connection, OpenFlags, OptionalExtension, params};

use crate::StoreError;
use crate::audit::{AuditRow, Checkpoint, Head};

/// Opens the store's SQLite file (which must exist and be migrated) with the pool's settings:
/// every commit durable before it returns, deleted content overwritten, foreign keys on.
pub(crate) fn open(path: &str) -> Result<Connection, StoreError> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.execute_batch(
        "PRAGMA secure_delete = ON; PRAGMA synchronous = FULL; PRAGMA busy_timeout = 10000; PRAGMA foreign_keys = ON;",
    )?;
    let mode: String = conn.query_row("PRAGMA journal_mode", [], |r| r.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(StoreError::Config(format!(
            "the SQLite store is in journal mode {mode:?}, not WAL; open it with keygate once (which switches it) and start again"
        )));
    }
    Ok(conn)
}

/// The least time between two checkpoints of the WAL.
const CHECKPOINT_EVERY: std::time::Duration = std::time::Duration::from_millis(250);

/// Starts a thread with a connection of its own that checkpoints the WAL (`PASSIVE`: it
/// never waits for, nor blocks, the writer) at most every [`CHECKPOINT_EVERY`], when woken
/// after a commit; it ends when the sender is dropped. SQLite's automatic checkpoint would
/// otherwise run inside the COMMIT that crosses 1,000 pages, copying the WAL into the database
/// and syncing it while that batch's callers (and everyone queued behind it) wait. Durability
/// is the same: each COMMIT syncs the WAL (`synchronous = FULL`), and a checkpoint syncs the
/// database before the WAL is reused.
pub(crate) fn checkpointer(path: &str) -> Option<std::sync::mpsc::SyncSender<()>> {
    let conn = match open(path) {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(error = %e, "no connection for the WAL checkpointer; checkpointing in commits");
            return None;
        }
    };
    let (tx, rx) = std::sync::mpsc::sync_channel::<()>(1);
    let spawned = std::thread::Builder::new()
        .name("keygate-checkpoint".into())
        .spawn(move || {
            while rx.recv().is_ok() {
                if let Err(e) = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
                    tracing::warn!(error = %e, "a WAL checkpoint failed; the next commit tries again");
                }
                std::thread::sleep(CHECKPOINT_EVERY);
            }
        });
    match spawned {
        Ok(_) => Some(tx),
        Err(e) => {
            tracing::warn!(error = %e, "cannot start the WAL checkpointer; checkpointing in commits");
            None
        }
    }
}

/// Commits the transaction a detached [`Tx`] left open on `conn`; rolls it back if the COMMIT
/// fails (so nothing of it stays, and the connection can begin again).
pub(crate) fn commit_on(conn: &Mutex<Connection>, path: &str) -> Result<(), StoreError> {
    let c = lock(conn)?;
    #[cfg(test)]
    if let Some(e) = faults::commit(path) {
        let _ = c.execute_batch("ROLLBACK");
        return Err(e);
    }
    let _ = path;
    match c.execute_batch("COMMIT") {
        Ok(()) => Ok(()),
        Err(e) => {
            let _ = c.execute_batch("ROLLBACK");
            Err(e.into())
        }
    }
}

/// The audit entry that first used a request id, if any did, read on `c`.
pub(crate) fn used_request_id_on(
    c: &Connection,
    k: &RequestKey,
) -> Result<Option<i64>, StoreError> {
    Ok(c.prepare_cached(
        "SELECT decision_id FROM request_ids WHERE client = ?1 AND venue = ?2 AND request_id = ?3",
    )?
    .query_row(params![k.client, k.venue, k.request_id], |r| r.get(0))
    .optional()?)
}

/// The store's clock, read on `c` as the head lock reads it (or the simulated time).
pub(crate) fn clock_on(c: &Connection, simulated: Option<Millis>) -> Result<Millis, StoreError> {
    if let Some(t) = simulated {
        return Ok(t);
    }
    let sql = format!("SELECT {}", crate::audit::now_sql(crate::Backend::Sqlite));
    Ok(c.prepare_cached(&sql)?.query_row([], |r| r.get(0))?)
}

/// Faults for the decider's tests: a commit that stalls, then fails (rolled back), for a store
/// file; and how many batches were decided while one committed.
#[cfg(test)]
pub(crate) mod faults {
    use std::collections::HashMap;
    use std::sync::Mutex;
    use std::time::Duration;

    #[derive(Default)]
    struct Plan {
        stalls: usize,
        fail: bool,
        stall: Duration,
        speculated: usize,
    }

    static PLANS: Mutex<Option<HashMap<String, Plan>>> = Mutex::new(None);

    fn with<T>(path: &str, f: impl FnOnce(&mut Plan) -> T) -> T {
        let mut g = PLANS.lock().unwrap_or_else(|p| p.into_inner());
        f(g.get_or_insert_with(HashMap::new)
            .entry(path.to_string())
            .or_default())
    }

    /// The next commit on `path` stalls for `stall`, then fails (rolled back) if `fail`.
    pub(crate) fn stall_next_commit(path: &str, stall: Duration, fail: bool) {
        with(path, |p| {
            p.stalls = 1;
            p.fail = fail;
            p.stall = stall;
        });
    }

    pub(crate) fn speculated_batches(path: &str) -> usize {
        with(path, |p| p.speculated)
    }

    pub(crate) fn speculated(path: &str) {
        with(path, |p| p.speculated += 1);
    }

    pub(super) fn commit(path: &str) -> Option<crate::StoreError> {
        let (stall, fail) = with(path, |p| {
            (p.stalls > 0).then(|| {
                p.stalls -= 1;
                (p.stall, p.fail)
            })
        })?;
        std::thread::sleep(stall);
        fail.then(|| crate::StoreError::Internal("injected commit failure".into()))
    }
}

/// A write transaction on the decider's connection. (The mutex is never contended: only the
/// decider's thread uses the connection. It makes the transaction `Send`, as the writer's
/// future must be for PostgreSQL's path.)
pub(crate) struct Tx<'c> {
    conn: &'c Mutex<Connection>,
    open: bool,
}

fn lock(conn: &Mutex<Connection>) -> Result<MutexGuard<'_, Connection>, StoreError> {
    conn.lock()
        .map_err(|_| StoreError::Internal("the decider's connection was poisoned".into()))
}

impl Drop for Tx<'_> {
    fn drop(&mut self) {
        if self.open
            && let Ok(c) = lock(self.conn)
        {
            // Nothing was committed; a failed rollback leaves nothing committed either.
            let _ = c.execute_batch("ROLLBACK");
        }
    }
}

impl<'c> Tx<'c> {
    /// Begins a transaction holding the write lock.
    /// A transaction left open (a COMMIT and the ROLLBACK after it both failed) is rolled back
    /// first, so one failure never stops every later batch (the bug sqlx's path had on a full
    /// disk; rusqlite's rollback on drop has not shown it, this makes sure).
    pub(crate) fn begin(conn: &'c Mutex<Connection>) -> Result<Self, StoreError> {
        let c = lock(conn)?;
        if !c.is_autocommit() {
            c.execute_batch("ROLLBACK")?;
        }
        c.execute_batch("BEGIN IMMEDIATE")?;
        Ok(Self { conn, open: true })
    }

    #[cfg(test)]
    pub(crate) fn commit(mut self) -> Result<(), StoreError> {
        lock(self.conn)?.execute_batch("COMMIT")?;
        self.open = false;
        Ok(())
    }

    /// Leaves the transaction open for [`commit_on`] (on another thread) to end.
    pub(crate) fn detach(mut self) {
        self.open = false;
    }

    fn c(&self) -> Result<MutexGuard<'c, Connection>, StoreError> {
        lock(self.conn)
    }

    /// Locks the head (the write lock is held already; the update makes the head part of this
    /// transaction as on PostgreSQL) and reads the store's clock, in one statement.
    pub(crate) fn lock_head_at(
        &self,
        simulated: Option<Millis>,
    ) -> Result<(Head, Millis), StoreError> {
        let sql = format!(
            "UPDATE audit_head SET seq = seq WHERE id = 1 RETURNING seq, hash, at_ms, {}",
            crate::audit::now_sql(crate::Backend::Sqlite)
        );
        let row = self
            .c()?
            .prepare_cached(&sql)?
            .query_row([], |r| {
                Ok((
                    Head {
                        seq: r.get(0)?,
                        hash: r.get(1)?,
                        at_ms: r.get(2)?,
                    },
                    r.get::<_, Millis>(3)?,
                ))
            })
            .optional()?;
        let (head, now) =
            row.ok_or_else(|| StoreError::Corrupt("the audit_head row is missing".into()))?;
        Ok((head, simulated.unwrap_or(now)))
    }

    /// Inserts rows already chained after the head, and moves the head to `head`.
    pub(crate) fn insert_audit(&self, rows: &[AuditRow], head: &Head) -> Result<(), StoreError> {
        let c = self.c()?;
        let mut ins = c.prepare_cached(
            "INSERT INTO audit_log (seq, at_ms, kind, actor, entry, prev_hash, hash, mv_client, mv_venue, mv_asset, mv_action, mv_amount, mv_usd_cents) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
        )?;
        for r in rows {
            let d = r.debit.as_ref();
            ins.execute(params![
                r.seq,
                r.at_ms,
                r.kind,
                r.actor,
                r.entry,
                r.prev_hash,
                r.hash,
                d.map(|m| m.client.as_str()),
                d.map(|m| m.venue.as_str()),
                d.map(|m| m.asset.as_str()),
                d.map(|m| m.action.as_str()),
                d.map(|m| m.amount.to_string()),
                d.map(|m| m.usd_cents),
            ])?;
        }
        drop(ins);
        c.prepare_cached("UPDATE audit_head SET seq = ?1, hash = ?2, at_ms = ?3 WHERE id = 1")?
            .execute(params![head.seq, head.hash, head.at_ms])?;
        Ok(())
    }

    /// The audit entry that first used a request id, if any did.
    pub(crate) fn used_request_id(&self, k: &RequestKey) -> Result<Option<i64>, StoreError> {
        let c = self.c()?;
        used_request_id_on(&c, k)
    }

    pub(crate) fn insert_request_id(
        &self,
        k: &RequestKey,
        decision_id: i64,
        at: Millis,
    ) -> Result<(), StoreError> {
        self.c()?
            .prepare_cached(
                "INSERT INTO request_ids (client, venue, request_id, decision_id, at_ms) VALUES (?1, ?2, ?3, ?4, ?5)",
            )?
            .execute(params![k.client, k.venue, k.request_id, decision_id, at])?;
        Ok(())
    }

    /// The hold `hid` with its number of approvals, if there is one.
    pub(crate) fn load_hold(&self, hid: i64) -> Result<Option<HoldRecord>, StoreError> {
        Ok(self
            .c()?
            .prepare_cached(
                "SELECT client, venue, intent_digest, request_id, expires_ms, approved_ms, executed_by, (SELECT COUNT(*) FROM approvals WHERE subject = ?2), request_text FROM holds WHERE decision_id = ?1",
            )?
            .query_row(params![hid, format!("hold:{hid}")], |r| {
                Ok(HoldRecord {
                    id: hid,
                    client: r.get(0)?,
                    venue: r.get(1)?,
                    digest: r.get(2)?,
                    request_id: r.get(3)?,
                    expires_ms: r.get(4)?,
                    approved_ms: r.get(5)?,
                    executed_by: r.get(6)?,
                    approvals: r.get(7)?,
                    request_text: r.get(8)?,
                })
            })
            .optional()?)
    }

    pub(crate) fn insert_hold(&self, h: &super::tx::NewHoldRow<'_>) -> Result<(), StoreError> {
        self.c()?
            .prepare_cached(
                "INSERT INTO holds (decision_id, client, venue, intent_digest, request_id, expires_ms, request_text) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )?
            .execute(params![
                h.decision_id,
                h.client,
                h.venue,
                h.digest,
                h.request_id,
                h.expires_ms,
                h.request_text
            ])?;
        Ok(())
    }

    /// Marks hold `hid` carried out by `by`; the number of rows changed (1, or 0 if it was
    /// carried out already).
    pub(crate) fn execute_hold(&self, hid: i64, by: i64, at: Millis) -> Result<usize, StoreError> {
        Ok(self
            .c()?
            .prepare_cached(
                "UPDATE holds SET executed_ms = ?1, executed_by = ?2 WHERE decision_id = ?3 AND executed_by IS NULL",
            )?
            .execute(params![at, by, hid])?)
    }

    /// Sets a freeze; its id.
    pub(crate) fn set_freeze(
        &self,
        scope: &str,
        reason: &str,
        actor: &str,
        at: Millis,
    ) -> Result<i64, StoreError> {
        Ok(self
            .c()?
            .prepare_cached(
                "INSERT INTO freezes (scope, reason, set_by, set_ms) VALUES (?1, ?2, ?3, ?4) RETURNING id",
            )?
            .query_row(params![scope, reason, actor, at], |r| r.get(0))?)
    }

    pub(crate) fn insert_checkpoint(&self, cp: &Checkpoint) -> Result<(), StoreError> {
        self.c()?
            .prepare_cached(
                "INSERT INTO audit_checkpoints (seq, hash, at_ms, public_key, signature) VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (seq) DO NOTHING",
            )?
            .execute(params![cp.seq, cp.hash, cp.at_ms, cp.public_key, cp.signature])?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_transaction_left_open_is_rolled_back_before_the_next_begins() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch("PRAGMA journal_mode = WAL; CREATE TABLE t (x INTEGER);")
            .unwrap();
        let conn = Mutex::new(conn);
        // Left open, as a COMMIT and a ROLLBACK that both failed would leave it.
        conn.lock()
            .unwrap()
            .execute_batch("BEGIN IMMEDIATE; INSERT INTO t VALUES (1);")
            .unwrap();
        let tx = Tx::begin(&conn).unwrap();
        tx.c()
            .unwrap()
            .execute_batch("INSERT INTO t VALUES (2);")
            .unwrap();
        tx.commit().unwrap();
        let rows: Vec<i64> = conn
            .lock()
            .unwrap()
            .prepare("SELECT x FROM t")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(
            rows,
            vec![2],
            "the abandoned insert is gone, the new one committed"
        );
    }
}
