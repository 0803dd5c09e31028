//! The audit log: an append-only, hash-chained record of every decision, admin action and token
//! event. Each entry's hash is SHA-256 over a domain tag, the previous entry's hash and the
//! entry's canonical JSON, so editing, dropping or reordering any entry breaks the chain from
//! there on. Checkpoints, signed with the instance's Ed25519 key (the signer is passed in: the
//! store itself knows no keys), pin the chain's hash at a sequence number; exported to a file
//! outside the store, they also catch a chain rewritten from scratch.
//!
//! Every append locks the one-row `audit_head` first, so appends from several processes or
//! instances are serialised and the chain stays one line.

use keygate_core::Millis;
use keygate_core::limits::Move;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use sqlx::any::AnyRow;
use sqlx::{Any, AssertSqlSafe, Row, Transaction};

use crate::{Store, StoreError};

mod entry;
use entry::Canonical;
pub use entry::{
    Alarm, AuditEntry, AuditRow, AuthEvent, ContainmentEvent, DecisionEntry, FreezeEvent, NewEntry,
    PlannedStep, ReconcileEvent, RequestInfo, RequestRefused, RescueEvent, StepAttempt,
    TokenRefused,
};

/// The previous hash of the first entry.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

const HASH_DOMAIN: &[u8] = b"keygate/audit/v1\0";
const CHECKPOINT_DOMAIN: &[u8] = b"keygate/audit-checkpoint/v1\0";

/// The end of the chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    pub seq: i64,
    pub hash: String,
    pub at_ms: Millis,
}

/// A signed checkpoint of the chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    pub seq: i64,
    pub hash: String,
    pub at_ms: Millis,
    pub public_key: String,
    pub signature: String,
}

/// Signs checkpoints (the binary implements it with the instance's Ed25519 key).
pub trait Signer: Send + Sync {
    /// The public key, hex.
    fn public_key(&self) -> String;
    /// The signature of `message`, hex.
    fn sign(&self, message: &[u8]) -> String;
}

/// Checks checkpoint signatures against the keys the operator trusts.
pub trait Verifier {
    fn verify(&self, public_key: &str, message: &[u8], signature: &str) -> Result<(), String>;
}

/// The bytes a checkpoint signs.
pub fn checkpoint_message(seq: i64, hash: &str, at_ms: Millis) -> Vec<u8> {
    let mut m = CHECKPOINT_DOMAIN.to_vec();
    m.extend_from_slice(format!("{seq}\n{hash}\n{at_ms}").as_bytes());
    m
}

/// The hash of an entry that follows `prev`.
pub fn chain_hash(prev: &str, entry: &str) -> String {
    let mut h = Sha256::new();
    h.update(HASH_DOMAIN);
    h.update(prev.as_bytes());
    h.update(b"\n");
    h.update(entry.as_bytes());
    hex::encode(h.finalize())
}

/// The store's clock, Unix milliseconds: the one clock every instance sharing the store sees
/// (or the replay's simulated one).
pub(crate) async fn db_now(
    tx: &mut Transaction<'static, Any>,
    store: &crate::Store,
) -> Result<Millis, StoreError> {
    if let Some(now) = store.clock().simulated_now() {
        return Ok(now);
    }
    let sql = format!("SELECT {}", now_sql(store.backend()));
    Ok(sqlx::query(AssertSqlSafe(sql))
        .fetch_one(&mut **tx)
        .await?
        .try_get(0)?)
}

/// The store's clock as SQL, in milliseconds since the Unix epoch.
pub(crate) fn now_sql(backend: crate::Backend) -> &'static str {
    match backend {
        crate::Backend::Sqlite => {
            "CAST(ROUND((julianday('now') - 2440587.5) * 86400000.0) AS INTEGER)"
        }
        crate::Backend::Postgres => {
            "CAST(FLOOR(EXTRACT(EPOCH FROM clock_timestamp()) * 1000) AS BIGINT)"
        }
    }
}

/// Locks the chain's head for this transaction and reads the store's clock, in one statement
/// (the decider runs this once per batch).
pub(crate) async fn lock_head_at(
    tx: &mut Transaction<'static, Any>,
    store: &crate::Store,
) -> Result<(Head, Millis), StoreError> {
    let sql = format!(
        "UPDATE audit_head SET seq = seq WHERE id = 1 RETURNING seq, hash, at_ms, {}",
        now_sql(store.backend())
    );
    let row = sqlx::query(AssertSqlSafe(sql))
        .fetch_optional(&mut **tx)
        .await?;
    let now: Option<Millis> = row.as_ref().map(|r| r.try_get(3)).transpose()?;
    let now = store.clock().simulated_now().or(now);
    Ok((head_of(row)?, now.unwrap_or_default()))
}

/// Locks the chain's head for this transaction and returns it.
pub(crate) async fn lock_head(tx: &mut Transaction<'static, Any>) -> Result<Head, StoreError> {
    let row =
        sqlx::query("UPDATE audit_head SET seq = seq WHERE id = 1 RETURNING seq, hash, at_ms")
            .fetch_optional(&mut **tx)
            .await?;
    head_of(row)
}

/// The head from a row whose first columns are (seq, hash, at_ms).
fn head_of(row: Option<sqlx::any::AnyRow>) -> Result<Head, StoreError> {
    let row = row.ok_or_else(|| StoreError::Corrupt("the audit_head row is missing".into()))?;
    Ok(Head {
        seq: row.try_get(0)?,
        hash: row.try_get(1)?,
        at_ms: row.try_get(2)?,
    })
}

/// Reads the head without locking.
pub(crate) async fn read_head<'e, E>(exec: E) -> Result<Head, StoreError>
where
    E: sqlx::Executor<'e, Database = Any>,
{
    let row = sqlx::query("SELECT seq, hash, at_ms FROM audit_head WHERE id = 1")
        .fetch_optional(exec)
        .await?;
    head_of(row)
}

const COLUMNS: &str = "seq, at_ms, kind, actor, entry, prev_hash, hash, mv_client, mv_venue, mv_asset, mv_action, mv_amount, mv_usd_cents";
const NCOL: usize = 13;

fn insert_sql(rows: usize) -> String {
    let mut sql = format!("INSERT INTO audit_log ({COLUMNS}) VALUES ");
    for r in 0..rows {
        if r > 0 {
            sql.push_str(", ");
        }
        sql.push('(');
        for c in 0..NCOL {
            if c > 0 {
                sql.push_str(", ");
            }
            sql.push_str(&format!("${}", r * NCOL + c + 1));
        }
        sql.push(')');
    }
    sql
}

/// Appends entries after `head` (which must be locked in `tx`) and moves the head. An entry is
/// never dated before the one it follows. Returns the new entries' sequence numbers.
///
/// Only decisions keep the time they were decided at (the decider has checked it against the
/// store's clock, `store_now`). Other entries are dated no later than `store_now`, so an admin
/// host whose clock runs ahead cannot move the decisions' clock forward.
pub(crate) async fn append(
    tx: &mut Transaction<'static, Any>,
    head: &mut Head,
    entries: Vec<NewEntry>,
    store_now: Millis,
) -> Result<Vec<i64>, StoreError> {
    let rows = chain_rows(head, entries, store_now)?;
    let seqs: Vec<i64> = rows.iter().map(|r| r.seq).collect();
    let mut rest = rows.into_iter().peekable();
    let mut left = seqs.len();
    while rest.peek().is_some() {
        // Small statements: SQLite looks up each `$N` by a linear scan, so a statement's cost
        // grows with the square of its parameters.
        let n = [16, 4, 1].into_iter().find(|n| *n <= left).unwrap_or(1);
        left -= n;
        let sql = insert_sql(n);
        let mut q = sqlx::query(AssertSqlSafe(sql));
        for r in rest.by_ref().take(n) {
            let d = r.debit.as_ref();
            q = q
                .bind(r.seq)
                .bind(r.at_ms)
                .bind(r.kind)
                .bind(r.actor)
                .bind(r.entry)
                .bind(r.prev_hash)
                .bind(r.hash)
                .bind(d.map(|m| m.client.clone()))
                .bind(d.map(|m| m.venue.clone()))
                .bind(d.map(|m| m.asset.clone()))
                .bind(d.map(|m| m.action.as_str().to_string()))
                .bind(d.map(|m| m.amount.to_string()))
                .bind(d.map(|m| m.usd_cents));
        }
        q.execute(&mut **tx).await?;
    }
    sqlx::query("UPDATE audit_head SET seq = $1, hash = $2, at_ms = $3 WHERE id = 1")
        .bind(head.seq)
        .bind(head.hash.clone())
        .bind(head.at_ms)
        .execute(&mut **tx)
        .await?;
    Ok(seqs)
}

/// The rows `entries` become after `head` (dated, chained and hashed; see [`append`]), and
/// `head` moved to the last of them. Nothing is written.
pub(crate) fn chain_rows(
    head: &mut Head,
    entries: Vec<NewEntry>,
    store_now: Millis,
) -> Result<Vec<AuditRow>, StoreError> {
    let mut rows = Vec::with_capacity(entries.len());
    for e in entries {
        let seq = head.seq + 1;
        let dated = if e.kind == "decision" {
            e.at_ms
        } else {
            e.at_ms.min(store_now)
        };
        let at_ms = dated.max(head.at_ms);
        let entry = serde_json::to_string(&Canonical {
            seq,
            at_ms,
            kind: e.kind.as_ref(),
            actor: &e.actor,
            data: &e.data,
            debit: e.debit.clone(),
        })
        .map_err(|err| StoreError::Corrupt(format!("cannot encode audit entry: {err}")))?;
        let hash = chain_hash(&head.hash, &entry);
        rows.push(AuditRow {
            seq,
            at_ms,
            kind: e.kind.into_owned(),
            actor: e.actor,
            entry,
            prev_hash: std::mem::replace(&mut head.hash, hash.clone()),
            hash,
            debit: e.debit,
        });
        head.seq = seq;
        head.at_ms = at_ms;
    }
    Ok(rows)
}

/// The latest checkpoint's (seq, at_ms), or (0, 0).
pub(crate) async fn last_checkpoint<'e, E>(exec: E) -> Result<(i64, Millis), StoreError>
where
    E: sqlx::Executor<'e, Database = Any>,
{
    let row = sqlx::query("SELECT seq, at_ms FROM audit_checkpoints ORDER BY seq DESC LIMIT 1")
        .fetch_optional(exec)
        .await?;
    Ok(match row {
        Some(r) => (r.try_get(0)?, r.try_get(1)?),
        None => (0, 0),
    })
}

/// Signs and stores a checkpoint of `head` in `tx`.
pub(crate) async fn write_checkpoint(
    tx: &mut Transaction<'static, Any>,
    head: &Head,
    signer: &dyn Signer,
) -> Result<Checkpoint, StoreError> {
    let cp = sign_checkpoint(head, signer);
    sqlx::query(
        "INSERT INTO audit_checkpoints (seq, hash, at_ms, public_key, signature) VALUES ($1, $2, $3, $4, $5) \
         ON CONFLICT (seq) DO NOTHING",
    )
    .bind(cp.seq)
    .bind(cp.hash.clone())
    .bind(cp.at_ms)
    .bind(cp.public_key.clone())
    .bind(cp.signature.clone())
    .execute(&mut **tx)
    .await?;
    Ok(cp)
}

/// A checkpoint of `head`, signed (not stored).
pub(crate) fn sign_checkpoint(head: &Head, signer: &dyn Signer) -> Checkpoint {
    Checkpoint {
        seq: head.seq,
        hash: head.hash.clone(),
        at_ms: head.at_ms,
        public_key: signer.public_key(),
        signature: signer.sign(&checkpoint_message(head.seq, &head.hash, head.at_ms)),
    }
}

/// When to write a checkpoint.
#[derive(Debug, Clone, Copy)]
pub struct CheckpointPolicy {
    /// After this many entries since the last one.
    pub every_entries: i64,
    /// Or after this long since the last one, if anything was appended.
    pub every_ms: Millis,
}

impl Default for CheckpointPolicy {
    fn default() -> Self {
        Self {
            every_entries: 1_000,
            every_ms: 60_000,
        }
    }
}

impl CheckpointPolicy {
    pub fn due(&self, head: &Head, last: (i64, Millis)) -> bool {
        head.seq > last.0
            && (head.seq - last.0 >= self.every_entries || head.at_ms - last.1 >= self.every_ms)
    }
}

fn row_to_audit(r: &AnyRow) -> Result<AuditRow, StoreError> {
    let usd: Option<i64> = r.try_get("mv_usd_cents")?;
    let debit = match usd {
        None => None,
        Some(usd_cents) => {
            let seq: i64 = r.try_get("seq")?;
            let bad = |what: &str| {
                StoreError::Corrupt(format!("audit entry {seq}: its {what} column is not valid"))
            };
            let text = |col: &str| -> Result<String, StoreError> {
                r.try_get::<Option<String>, _>(col)?.ok_or_else(|| bad(col))
            };
            if usd_cents < 0 {
                return Err(bad("mv_usd_cents"));
            }
            let amount: rust_decimal::Decimal =
                text("mv_amount")?.parse().map_err(|_| bad("mv_amount"))?;
            if amount <= rust_decimal::Decimal::ZERO {
                return Err(bad("mv_amount"));
            }
            Some(Move {
                at: r.try_get("at_ms")?,
                client: text("mv_client")?,
                venue: text("mv_venue")?,
                asset: text("mv_asset")?,
                action: text("mv_action")?.parse().map_err(|_| bad("mv_action"))?,
                amount,
                usd_cents,
            })
        }
    };
    Ok(AuditRow {
        seq: r.try_get("seq")?,
        at_ms: r.try_get("at_ms")?,
        kind: r.try_get("kind")?,
        actor: r.try_get("actor")?,
        entry: r.try_get("entry")?,
        prev_hash: r.try_get("prev_hash")?,
        hash: r.try_get("hash")?,
        debit,
    })
}

const SELECT_ROWS: &str = "SELECT seq, at_ms, kind, actor, entry, prev_hash, hash, mv_client, mv_venue, mv_asset, mv_action, mv_amount, mv_usd_cents FROM audit_log";

/// Allowed moves dated after `since` among entries 1..=`head_seq`, in order, for rebuilding
/// the limits.
pub(crate) async fn moves_since<'e, E>(
    exec: E,
    since: Millis,
    head_seq: i64,
) -> Result<Vec<Move>, StoreError>
where
    E: sqlx::Executor<'e, Database = Any>,
{
    let rows = sqlx::query(
        "SELECT seq, at_ms, kind, actor, entry, prev_hash, hash, mv_client, mv_venue, mv_asset, mv_action, mv_amount, mv_usd_cents \
         FROM audit_log WHERE at_ms > $1 AND mv_usd_cents IS NOT NULL AND seq BETWEEN 1 AND $2 ORDER BY seq",
    )
    .bind(since)
    .bind(head_seq)
    .fetch_all(exec)
    .await?;
    rows.iter()
        .map(|r| row_to_audit(r).map(|a| a.debit))
        .filter_map(Result::transpose)
        .collect()
}

/// Entries after `seq`, in order (at most `limit`).
pub(crate) async fn rows_after<'e, E>(
    exec: E,
    seq: i64,
    limit: i64,
) -> Result<Vec<AuditRow>, StoreError>
where
    E: sqlx::Executor<'e, Database = Any>,
{
    let rows = sqlx::query(AssertSqlSafe(format!(
        "{SELECT_ROWS} WHERE seq > $1 ORDER BY seq LIMIT $2"
    )))
    .bind(seq)
    .bind(limit)
    .fetch_all(exec)
    .await?;
    rows.iter().map(row_to_audit).collect()
}

/// Every checkpoint, in order, read with `exec`.
async fn checkpoints_in<'e, E>(exec: E) -> Result<Vec<Checkpoint>, StoreError>
where
    E: sqlx::Executor<'e, Database = Any>,
{
    let rows = sqlx::query(
        "SELECT seq, hash, at_ms, public_key, signature FROM audit_checkpoints ORDER BY seq",
    )
    .fetch_all(exec)
    .await?;

    rows.iter()
        .map(|r| {
            Ok(Checkpoint {
                seq: r.try_get(0)?,
                hash: r.try_get(1)?,
                at_ms: r.try_get(2)?,
                public_key: r.try_get(3)?,
                signature: r.try_get(4)?,
            })
        })
        .collect()
}

/// The first problem `audit verify` found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    /// The entry (or checkpoint) sequence number it concerns.
    pub seq: i64,
    pub what: String,
}

/// What `audit verify` found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VerifyReport {
    pub entries: i64,
    pub checkpoints: usize,
    pub external_checkpoints: usize,
    pub head_seq: i64,
    pub problem: Option<Problem>,
}

/// A problem found, as `audit verify` reports it.
fn found(seq: i64, what: String) -> Result<(), Problem> {
    Err(Problem { seq, what })
}

fn check_row(r: &AuditRow, expected: i64, prev: &Head) -> Result<(), Problem> {
    if r.seq != expected {
        return found(
            expected,
            format!(
                "entry {expected} is missing (the next stored entry is {}): entries were deleted",
                r.seq
            ),
        );
    }
    let c: Canonical<'_> = match serde_json::from_str(&r.entry) {
        Ok(c) => c,
        Err(e) => {
            return found(
                r.seq,
                format!("entry {} does not parse ({e}): it was edited", r.seq),
            );
        }
    };
    if c.seq != r.seq {
        return found(
            r.seq,
            format!(
                "entry {} holds the content of entry {}: entries were reordered",
                r.seq, c.seq
            ),
        );
    }
    if r.prev_hash != prev.hash {
        return found(
            r.seq,
            format!(
                "entry {}'s previous-hash does not match entry {}: an entry before it was changed, removed or reordered",
                r.seq, prev.seq
            ),
        );
    }
    if chain_hash(&r.prev_hash, &r.entry) != r.hash {
        return found(
            r.seq,
            format!(
                "entry {}'s hash does not match its content: it was edited",
                r.seq
            ),
        );
    }
    if c.at_ms != r.at_ms || c.kind != r.kind || c.actor != r.actor || c.debit != r.debit {
        return found(
            r.seq,
            format!(
                "entry {}'s columns (time, kind, actor or debit) do not match its hashed content: it was edited",
                r.seq
            ),
        );
    }
    if r.at_ms < prev.at_ms {
        return found(
            r.seq,
            format!(
                "entry {} is dated before entry {}: entries were reordered",
                r.seq, prev.seq
            ),
        );
    }
    Ok(())
}

impl Store {
    /// Appends entries in one transaction of their own (for admin actions that change nothing
    /// else, and token events). Returns their sequence numbers.
    pub async fn append_audit(&self, entries: Vec<NewEntry>) -> Result<Vec<i64>, StoreError> {
        let mut tx = self.begin_write().await?;
        let mut head = lock_head(&mut tx).await?;
        let now = db_now(&mut tx, self).await?;
        let seqs = append(&mut tx, &mut head, entries, now).await?;
        tx.commit().await?;
        Ok(seqs)
    }

    /// The head of the chain.
    pub async fn audit_head(&self) -> Result<Head, StoreError> {
        read_head(self.pool()).await
    }

    /// The last `n` entries, oldest first.
    /// Up to `limit` entries after `seq`, in order (for readers that follow the log).
    pub async fn audit_after(&self, seq: i64, limit: i64) -> Result<Vec<AuditRow>, StoreError> {
        rows_after(self.pool(), seq, limit).await
    }

    pub async fn audit_tail(&self, n: i64) -> Result<Vec<AuditRow>, StoreError> {
        let head = self.audit_head().await?;
        rows_after(self.pool(), (head.seq - n).max(0), n).await
    }

    /// One entry.
    pub async fn audit_entry(&self, seq: i64) -> Result<Option<AuditRow>, StoreError> {
        let row = sqlx::query(AssertSqlSafe(format!("{SELECT_ROWS} WHERE seq = $1")))
            .bind(seq)
            .fetch_optional(self.pool())
            .await?;
        row.as_ref().map(row_to_audit).transpose()
    }

    /// Every checkpoint, in order.
    pub async fn checkpoints(&self) -> Result<Vec<Checkpoint>, StoreError> {
        checkpoints_in(self.pool()).await
    }

    /// Writes a checkpoint of the current head now (if anything was appended since the last).
    pub async fn checkpoint_now(
        &self,
        signer: &dyn Signer,
    ) -> Result<Option<Checkpoint>, StoreError> {
        let mut tx = self.begin_write().await?;
        let head = lock_head(&mut tx).await?;
        let last = last_checkpoint(&mut *tx).await?;
        if head.seq == 0 || head.seq <= last.0 {
            return Ok(None);
        }
        let cp = write_checkpoint(&mut tx, &head, signer).await?;
        tx.commit().await?;
        Ok(Some(cp))
    }

    /// Writes a checkpoint if `policy` says one is due.
    pub async fn checkpoint_if_due(
        &self,
        signer: &dyn Signer,
        policy: CheckpointPolicy,
    ) -> Result<Option<Checkpoint>, StoreError> {
        let head = self.audit_head().await?;
        let last = last_checkpoint(self.pool()).await?;
        if policy.due(&head, last) {
            self.checkpoint_now(signer).await
        } else {
            Ok(None)
        }
    }

    /// Walks the whole chain and every checkpoint (stored, and `external` ones exported
    /// earlier), and reports the first problem. Signatures are checked by `verifier`.
    pub async fn verify_audit(
        &self,
        verifier: &dyn Verifier,
        external: &[Checkpoint],
    ) -> Result<VerifyReport, StoreError> {
        // One consistent snapshot, so entries appended while it runs are neither "inserted"
        // nor "removed": SQLite's read transactions are snapshots; PostgreSQL needs REPEATABLE READ.
        let mut tx = match self.backend() {
            crate::Backend::Sqlite => self.pool().begin().await?,
            crate::Backend::Postgres => {
                self.pool()
                    .begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
                    .await?
            }
        };
        let head = read_head(&mut *tx).await?;
        let stored = checkpoints_in(&mut *tx).await?;
        let mut report = VerifyReport {
            entries: 0,
            checkpoints: stored.len(),
            external_checkpoints: external.len(),
            head_seq: head.seq,
            problem: None,
        };
        report.problem = walk(
            &mut tx,
            &head,
            verifier,
            &stored,
            external,
            &mut report.entries,
        )
        .await?
        .err();
        Ok(report)
    }
}

/// The verification proper: the first problem as `Ok(Err(problem))`; `entries` counts the
/// entries that checked out before it.
async fn walk(
    tx: &mut Transaction<'static, Any>,
    head: &Head,
    verifier: &dyn Verifier,
    stored: &[Checkpoint],
    external: &[Checkpoint],
    entries: &mut i64,
) -> Result<Result<(), Problem>, StoreError> {
    // Checkpoint hashes by seq, checked as the walk reaches them.
    let mut wanted: std::collections::BTreeMap<i64, Vec<(&Checkpoint, &str)>> = Default::default();
    for (cp, origin) in stored
        .iter()
        .map(|c| (c, "stored"))
        .chain(external.iter().map(|c| (c, "exported")))
    {
        if let Err(e) = verifier.verify(
            &cp.public_key,
            &checkpoint_message(cp.seq, &cp.hash, cp.at_ms),
            &cp.signature,
        ) {
            return Ok(found(
                cp.seq,
                format!(
                    "the {origin} checkpoint at entry {} has a bad signature: {e}",
                    cp.seq
                ),
            ));
        }
        wanted.entry(cp.seq).or_default().push((cp, origin));
    }
    let mut prev = Head {
        seq: 0,
        hash: GENESIS.to_string(),
        at_ms: i64::MIN,
    };
    loop {
        let rows = rows_after(&mut **tx, prev.seq, 10_000).await?;
        if rows.is_empty() {
            break;
        }
        for r in &rows {
            if let Err(p) = check_row(r, prev.seq + 1, &prev) {
                return Ok(Err(p));
            }
            for (cp, origin) in wanted.remove(&r.seq).unwrap_or_default() {
                if cp.hash != r.hash {
                    return Ok(found(
                        r.seq,
                        format!(
                            "entry {} does not match the {origin} signed checkpoint at it: the chain up to it was rewritten",
                            r.seq
                        ),
                    ));
                }
            }
            *entries += 1;
            prev = Head {
                seq: r.seq,
                hash: r.hash.clone(),
                at_ms: r.at_ms,
            };
        }
    }
    if let Some((seq, cps)) = wanted.into_iter().next() {
        return Ok(found(
            seq,
            format!(
                "the {} signed checkpoint at entry {seq} is beyond the log's last entry {}: entries were removed from the end",
                cps.first().map(|c| c.1).unwrap_or("stored"),
                prev.seq
            ),
        ));
    }
    let stray: i64 = sqlx::query("SELECT COUNT(*) FROM audit_log WHERE seq < 1 OR seq > $1")
        .bind(head.seq)
        .fetch_one(&mut **tx)
        .await?
        .try_get(0)?;
    if stray > 0 {
        return Ok(found(
            head.seq + 1,
            format!(
                "{stray} stored entr{} numbered outside 1..{}: entries were inserted or the head was rolled back",
                if stray == 1 { "y is" } else { "ies are" },
                head.seq
            ),
        ));
    }
    if head.seq != prev.seq || (head.seq > 0 && head.hash != prev.hash) {
        return Ok(found(
            prev.seq + 1,
            format!(
                "the chain's head says entry {} but the log ends at entry {}: entries were removed from the end",
                head.seq, prev.seq
            ),
        ));
    }
    if head.seq > 0 && head.at_ms != prev.at_ms {
        return Ok(found(
            head.seq,
            format!(
                "the chain's head is dated {} but entry {} is dated {}: the head was edited",
                head.at_ms, prev.seq, prev.at_ms
            ),
        ));
    }
    Ok(Ok(()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_cover_the_previous_hash_and_the_entry() {
        let a = chain_hash(GENESIS, "{}");
        assert_ne!(a, chain_hash(GENESIS, "{ }"));
        assert_ne!(a, chain_hash(&a, "{}"));
        assert_eq!(a.len(), 64);
        assert_eq!(insert_sql(2).matches('$').count(), 2 * NCOL);
    }
}
