//! The durable decide-and-record step, with group commit.
//!
//! One writer task per store handle takes queued intents in batches. For each batch it opens one
//! write transaction, locks the audit head (which serialises it against every other writer and
//! instance), brings its in-memory state up to date if anyone else has written since its last
//! batch, and then works in three steps: load what the batch's requests need (their tokens'
//! clients, the holds they name with their approvals, the first use of their request ids);
//! decide each in order with keygate-core's pure admission and decision
//! ([`keygate_core::admit`]); write every decision (with its limit debit) to the audit chain,
//! with the holds, request ids and freezes they leave, and commit. Only then does any caller
//! get its verdict: an allow is durable, debit included, before anyone can act on it. If the
//! commit fails, every caller in the batch gets the error (a caller must treat it as a deny)
//! and the state is rebuilt from the store on the next batch.
//!
//! This module knows SQL and the audit entries' shape; the rules a request is admitted and
//! decided by live in keygate-core and must not be repeated here.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

pub use keygate_core::admit::Rejection;
use keygate_core::admit::{
    self, Admission, Admitted, HoldRecord, RequestFacts, RequestKey, RequestRef,
};
use keygate_core::auth::{AuthError, Presented, TokenRecord};
use keygate_core::decide::{Extra, State, Watched, decide_watched};
use keygate_core::{Engine, Intent, Millis, Verdict};
use tokio::sync::{mpsc, oneshot};

use crate::audit::{self, CheckpointPolicy, Head, NewEntry, Signer};
use crate::{Store, StoreError};

mod entries;
mod lite;
mod tx;
pub use entries::auth_failure_entry;
use entries::{decision_entry, refused_entry, rejected_entry};
use std::borrow::Cow;
use tx::{NewHoldRow, WriteTx};

use crate::audit::RequestInfo;

/// The most intents one transaction decides.
const MAX_BATCH: usize = 512;

/// A durable decision: its audit sequence number is its id.
#[derive(Debug, Clone)]
pub struct Decision {
    pub id: i64,
    pub verdict: Verdict,
}

/// A request that reached the gateway, for the decider to authenticate and decide in one step,
/// against the same state (so a token revoked or a client disabled on any instance is refused
/// by the very next decision).
#[derive(Debug)]
pub struct GatewayRequest {
    pub token: Presented,
    pub ip: IpAddr,
    pub venue: String,
    pub method: String,
    pub path: String,
    /// The intent as the venue adapter classified it (its client is set from the token), or
    /// why the request could not be classified.
    pub intent: Result<Intent, String>,
    /// The client's own id for the request, which must never repeat for its client and venue.
    pub request_id: Option<String>,
    /// The approved hold this request carries out (the header `x-keygate-hold`).
    pub hold: Option<i64>,
    /// Whether `request_id` is a venue parameter (which the venue reports back in its
    /// withdrawal history) rather than keygate's own header.
    pub native_id: bool,
    /// The request as keygate would forward it, before signing (the venue adapter's canonical
    /// text, or the transfer API's), or None if it could not be classified. A hold binds it:
    /// approvers are shown it, and only this request can carry the hold out.
    pub request_text: Option<String>,
}

/// What became of a request. Each carries the id of the audit entry that records it.
#[derive(Debug, Clone)]
pub enum Answer {
    Decided(Decision),
    /// The token was refused.
    Refused {
        id: i64,
        error: AuthError,
    },
    /// The request was refused before a decision: it could not be classified, its request id
    /// was used before, or the hold it names cannot be used.
    Rejected {
        id: i64,
        code: Rejection,
        reason: String,
    },
}

enum Work {
    Intent { intent: Intent, extra: Extra },
    Gateway(GatewayRequest),
}

struct Job {
    work: Work,
    now: Millis,
    /// Taken when the answer is sent (early, for what forwards nothing that moves value).
    reply: Option<oneshot::Sender<Result<Answer, StoreError>>>,
}

/// What a job came to, before its audit entry has an id.
enum Pending {
    Decided(Verdict),
    Refused(AuthError),
    Rejected(Rejection, String),
}

enum Msg {
    Decide(Box<Job>),
    Reload(Arc<Engine>, oneshot::Sender<()>),
}

/// Called with each checkpoint after it is committed.
pub type CheckpointHook = Arc<dyn Fn(&audit::Checkpoint) + Send + Sync>;

/// Options for a decider.
#[derive(Clone, Default)]
pub struct DeciderOptions {
    pub signer: Option<Arc<dyn Signer>>,
    pub checkpoints: CheckpointPolicy,
    /// Called with each checkpoint after it is committed (to export it outside the store).
    pub on_checkpoint: Option<CheckpointHook>,
    /// How long a held decision waits for approvals [default: 1 hour].
    pub hold_ttl: Option<Millis>,
}

/// A handle to a store's decision writer. Cheap to clone.
#[derive(Clone)]
pub struct Decider {
    tx: mpsc::Sender<Msg>,
}

/// The writer's view of the store, valid while the audit head is what it saw last.
struct Cache {
    head: Head,
    state: State,
    tokens: HashMap<String, TokenRecord>,
    last_checkpoint: (i64, Millis),
}

struct Writer {
    store: Store,
    engine: Arc<Engine>,
    cache: Option<Cache>,
    opts: DeciderOptions,
    /// The last batch found the database unreachable: the next waits at most [`RETRY_WAIT`]
    /// for a connection, so while the database is down requests are refused at once instead
    /// of each batch waiting the pool's whole acquire timeout.
    unreachable: bool,
}

/// How long a batch waits for a connection while the database is known to be unreachable.
const RETRY_WAIT: std::time::Duration = std::time::Duration::from_millis(500);

impl Decider {
    /// Starts the writer task for `store` with `engine`.
    pub fn start(store: Store, engine: Arc<Engine>, opts: DeciderOptions) -> Self {
        let (tx, rx) = mpsc::channel(MAX_BATCH * 8);
        let path = crate::sqlite_path_of(&store);
        let writer = Writer {
            store,
            engine,
            cache: None,
            unreachable: false,
            opts,
        };
        match path {
            Some(path) => writer.spawn_on_thread(rx, path),
            None => {
                tokio::spawn(writer.run(rx, None));
            }
        }
        Self { tx }
    }

    /// Decides one intent durably. An `Err` means nothing was recorded: treat it as a deny.
    pub async fn decide(&self, intent: Intent, now: Millis) -> Result<Decision, StoreError> {
        self.decide_with(intent, now, Extra::default()).await
    }

    /// Decides with extra policy context (signals, approvals).
    pub async fn decide_with(
        &self,
        intent: Intent,
        now: Millis,
        extra: Extra,
    ) -> Result<Decision, StoreError> {
        match self.submit(Work::Intent { intent, extra }, now).await? {
            Answer::Decided(d) => Ok(d),
            other => Err(StoreError::Internal(format!(
                "the decider answered an intent with {other:?}"
            ))),
        }
    }

    /// Authenticates and decides one gateway request durably. An `Err` means nothing was
    /// recorded: treat it as a deny.
    pub async fn gateway(&self, req: GatewayRequest, now: Millis) -> Result<Answer, StoreError> {
        self.submit(Work::Gateway(req), now).await
    }

    async fn submit(&self, work: Work, now: Millis) -> Result<Answer, StoreError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Msg::Decide(Box::new(Job {
                work,
                now,
                reply: Some(reply),
            })))
            .await
            .map_err(|_| StoreError::WriterGone)?;
        rx.await.map_err(|_| StoreError::WriterGone)?
    }

    /// Swaps in a new engine (a reloaded config); decisions after this use it.
    pub async fn reload(&self, engine: Arc<Engine>) -> Result<(), StoreError> {
        let (done, rx) = oneshot::channel();
        self.tx
            .send(Msg::Reload(engine, done))
            .await
            .map_err(|_| StoreError::WriterGone)?;
        rx.await.map_err(|_| StoreError::WriterGone)
    }
}

/// How far back moves must be read to rebuild every window (the longest limit or statistics
/// window, plus the slot rounding of `keygate_core::limits`).
fn rebuild_from(engine: &Engine, head: &Head) -> Millis {
    let longest = engine
        .limits
        .iter()
        .map(|l| l.window)
        .max()
        .unwrap_or(0)
        .max(keygate_core::time::DAY);
    head.at_ms
        .saturating_sub(longest.saturating_add(longest / 512).saturating_add(1))
}

/// The state a decider would decide with now, read without writing anything (for dry runs).
pub async fn current_state(store: &Store, engine: &Engine) -> Result<State, StoreError> {
    let mut tx = store.pool().begin().await?;
    let head = audit::read_head(&mut *tx).await?;
    let state = load_state(&mut tx, engine, &head).await?;
    tx.rollback().await?;
    Ok(state)
}

/// The state as of `head`, read in `tx`.
async fn load_state(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    engine: &Engine,
    head: &Head,
) -> Result<State, StoreError> {
    let outflows_since = head.at_ms.saturating_sub(engine.detectors.window);
    let trades_since = head.at_ms.saturating_sub(engine.detectors.trade.window);
    let inputs = crate::engine::load_inputs(
        tx,
        rebuild_from(engine, head),
        outflows_since,
        trades_since,
        head,
    )
    .await?;
    State::new(engine, inputs).map_err(|e| StoreError::Corrupt(e.to_string()))
}

/// The SQLite decider's own connection, opened on its thread (again after a failure).
struct Lite {
    path: String,
    conn: Option<std::sync::Mutex<rusqlite::Connection>>,
}

impl Lite {
    fn conn(&mut self) -> Result<&std::sync::Mutex<rusqlite::Connection>, StoreError> {
        if self.conn.is_none() {
            self.conn = Some(std::sync::Mutex::new(lite::open(&self.path)?));
        }
        self.conn
            .as_ref()
            .ok_or_else(|| StoreError::Internal("the decider's connection was not kept".into()))
    }
}

impl Writer {
    /// Runs the writer on a thread of its own, which owns its SQLite connection: every
    /// statement of a batch runs there, with no hand-off to another thread. sqlx reads only
    /// what a rebuild of the state needs (under this connection's write lock, so what it reads
    /// is what this transaction sees).
    fn spawn_on_thread(self, rx: mpsc::Receiver<Msg>, path: String) {
        let rt = match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(rt) => rt,
            Err(e) => {
                tracing::warn!(error = %e, "no runtime for the decider's own thread; deciding through the pool");
                tokio::spawn(self.run(rx, None));
                return;
            }
        };
        let (rx, lite) = (rx, Lite { path, conn: None });
        let cell = std::sync::Arc::new(std::sync::Mutex::new(Some((self, rx, lite))));
        let moved = cell.clone();
        let spawned = std::thread::Builder::new()
            .name("keygate-decider".into())
            .spawn(move || {
                let taken = moved.lock().ok().and_then(|mut g| g.take());
                if let Some((writer, rx, lite)) = taken {
                    rt.block_on(writer.run(rx, Some(lite)));
                }
            });
        if let Err(e) = spawned {
            tracing::warn!(error = %e, "cannot start the decider's thread; deciding through the pool");
            if let Some((writer, rx, _)) = cell.lock().ok().and_then(|mut g| g.take()) {
                tokio::spawn(writer.run(rx, None));
            }
        }
    }

    async fn run(mut self, mut rx: mpsc::Receiver<Msg>, mut lite: Option<Lite>) {
        let mut pending: Option<Msg> = None;
        loop {
            let first = match pending.take() {
                Some(m) => m,
                None => match rx.recv().await {
                    Some(m) => m,
                    None => return,
                },
            };
            let mut batch = match first {
                Msg::Reload(engine, done) => {
                    self.engine = engine;
                    self.cache = None;
                    let _ = done.send(());
                    continue;
                }
                Msg::Decide(job) => vec![*job],
            };
            while batch.len() < MAX_BATCH {
                match rx.try_recv() {
                    Ok(Msg::Decide(job)) => batch.push(*job),
                    Ok(other) => {
                        pending = Some(other);
                        break;
                    }
                    Err(_) => break,
                }
            }
            self.process(lite.as_mut(), batch).await;
        }
    }

    async fn process(&mut self, mut lite: Option<&mut Lite>, mut batch: Vec<Job>) {
        match self.try_process(lite.as_deref_mut(), &mut batch).await {
            Ok(results) => {
                self.unreachable = false;
                for (job, answer) in batch.into_iter().zip(results) {
                    if let (Some(reply), Some(answer)) = (job.reply, answer) {
                        let _ = reply.send(Ok(answer));
                    }
                }
            }
            Err(e) => {
                self.cache = None;
                // The connection is opened afresh for the next batch.
                if let Some(l) = lite {
                    l.conn = None;
                }
                let early = batch.iter().filter(|j| j.reply.is_none()).count();
                tracing::error!(error = %e, intents = batch.len(), answered_early = early, "decisions could not be recorded; answering deny");
                let cause = e.to_string();
                let unavailable = e.is_unavailable();
                self.unreachable = unavailable;
                for job in batch {
                    if let Some(reply) = job.reply {
                        let _ = reply.send(Err(StoreError::NotRecorded {
                            cause: cause.clone(),
                            unavailable,
                        }));
                    }
                }
            }
        }
    }

    /// Brings the cache up to `head`: incrementally when only decisions were appended since,
    /// from scratch otherwise (an admin change, another engine, a first run).
    /// On SQLite the reads go through `reader`, a read transaction of the pool begun before the
    /// decider's own connection took the write lock (see [`Writer::begin`]).
    async fn refresh(
        &mut self,
        tx: &mut WriteTx<'_>,
        reader: Option<&mut sqlx::Transaction<'static, sqlx::Any>>,
        head: &Head,
    ) -> Result<(), StoreError> {
        if self.is_current(head) {
            return Ok(());
        }
        let tx = match (tx, reader) {
            (WriteTx::Sqlx(tx), _) => tx,
            (WriteTx::Lite(_), Some(reader)) => reader,
            (WriteTx::Lite(_), None) => {
                return Err(StoreError::Internal(
                    "the SQLite decider refreshed its state without a reader".into(),
                ));
            }
        };
        if let Some(c) = &mut self.cache {
            let gap = head.seq - c.head.seq;
            if gap > 0 && gap <= 10_000 {
                let rows = audit::rows_after(&mut **tx, c.head.seq, gap).await?;
                // The new rows must continue the chain this cache saw (a store restored from an
                // older backup and written again would not) and end at the head.
                let contiguous = rows.len() as i64 == gap
                    && rows.first().is_some_and(|r| r.prev_hash == c.head.hash)
                    && rows.last().is_some_and(|r| r.hash == head.hash);
                // Only decisions, token and request refusals and reconciliation records leave
                // the rest of the state as it was; anything else (an admin change, and whatever
                // kinds come later) rebuilds it.
                if contiguous
                    && rows.iter().all(|r| {
                        matches!(
                            r.kind.as_str(),
                            "decision" | "auth" | "request" | "reconcile"
                        )
                    })
                {
                    for r in rows {
                        if let Some(m) = &r.debit {
                            c.state.record_move(m);
                            if m.action.moves_funds_out()
                                && let Some(o) = r
                                    .entry()
                                    .ok()
                                    .and_then(|e| crate::engine::outgoing_of(r.at_ms, e))
                            {
                                c.state.record_outflow(o, self.engine.detectors.window);
                            }
                            if m.action == keygate_core::Action::Trade
                                && let Some(t) = r
                                    .entry()
                                    .ok()
                                    .and_then(|e| crate::engine::trade_of(r.at_ms, e))
                            {
                                c.state.record_trade(&self.engine, t);
                            }
                        }
                        c.state.advance(r.at_ms);
                    }
                    c.head = head.clone();
                    return Ok(());
                }
            }
        }
        let state = load_state(tx, &self.engine, head).await?;
        let tokens = crate::engine::load_tokens(tx).await?;
        let last_checkpoint = audit::last_checkpoint(&mut **tx).await?;
        self.cache = Some(Cache {
            head: head.clone(),
            state,
            tokens,
            last_checkpoint,
        });
        Ok(())
    }

    /// Whether the cache is at `head` (nothing to read).
    fn is_current(&self, head: &Head) -> bool {
        self.cache.as_ref().is_some_and(|c| c.head == *head)
    }

    /// Opens the batch's write transaction and locks the head. On SQLite, when the state must
    /// be read again (another writer moved the head), the reads go through the pool: its
    /// connection is taken *before* the write lock, never while holding it, since the pool's
    /// connections may all be waiting for that lock (other writers through the pool: native
    /// signatures, reconciliation, another instance) and the two would wait on each other until
    /// a timeout. If the head moved between, the lock is let go and taken again with a reader.
    async fn begin<'l>(
        &self,
        mut lite: Option<&'l mut Lite>,
    ) -> Result<
        (
            WriteTx<'l>,
            Option<sqlx::Transaction<'static, sqlx::Any>>,
            Head,
            Millis,
        ),
        StoreError,
    > {
        let Some(l) = lite.take() else {
            let begin = self.store.begin_write();
            let tx = if self.unreachable {
                tokio::time::timeout(RETRY_WAIT, begin)
                    .await
                    .map_err(|_| StoreError::Unavailable(sqlx::Error::PoolTimedOut))??
            } else {
                begin.await?
            };
            let mut tx = WriteTx::Sqlx(tx);
            let (head, now) = tx.lock_head_at(&self.store).await?;
            return Ok((tx, None, head, now));
        };
        let conn = l.conn()?;
        let mut reader = None;
        loop {
            let mut tx = WriteTx::Lite(lite::Tx::begin(conn)?);
            let (head, now) = tx.lock_head_at(&self.store).await?;
            if reader.is_some() || self.is_current(&head) {
                return Ok((tx, reader, head, now));
            }
            // Rolled back: nothing is written yet, and the lock is let go while the pool is
            // waited for. (A deferred BEGIN reads nothing until its first query, which comes
            // after the lock is held again, so it reads what the lock holder would.)
            drop(tx);
            reader = Some(self.store.pool().begin().await?);
        }
    }

    /// Decides and records a batch in three steps: load what its requests need, decide them
    /// with the pure admission and decision of keygate-core, write the outcome. Answers that let
    /// nothing move value (reads, denials, refusals) are sent as soon as their entries are
    /// appended, before the commit; the rest are returned to be sent after it.
    async fn try_process(
        &mut self,
        lite: Option<&mut Lite>,
        batch: &mut [Job],
    ) -> Result<Vec<Option<Answer>>, StoreError> {
        let (mut tx, mut reader, mut head, store_now) = self.begin(lite).await?;
        self.refresh(&mut tx, reader.as_mut(), &head).await?;
        drop(reader);
        let Some(cache) = self.cache.as_mut() else {
            return Err(StoreError::Internal(
                "decider state missing after refresh".into(),
            ));
        };
        let (loaded, auths) = load_batch(&mut tx, batch, &cache.tokens, &cache.state).await?;
        let decided = decide_batch(
            &mut tx,
            &self.engine,
            &mut cache.state,
            batch,
            &loaded,
            auths,
            store_now,
        )
        .await?;
        let hold_ttl = self.opts.hold_ttl.unwrap_or(keygate_core::time::HOUR);
        let (seqs, pending) = write_batch(&mut tx, &mut head, decided, store_now, hold_ttl).await?;
        let mut answers: Vec<Option<Answer>> = seqs
            .into_iter()
            .zip(pending)
            .map(|(id, p)| {
                Some(match p {
                    Pending::Decided(verdict) => Answer::Decided(Decision { id, verdict }),
                    Pending::Refused(error) => Answer::Refused { id, error },
                    Pending::Rejected(code, reason) => Answer::Rejected { id, code, reason },
                })
            })
            .collect();
        for (job, answer) in batch.iter_mut().zip(answers.iter_mut()) {
            if answer.as_ref().is_some_and(|a| answers_early(&job.work, a))
                && let (Some(reply), Some(a)) = (job.reply.take(), answer.take())
            {
                let _ = reply.send(Ok(a));
            }
        }
        let mut checkpoint = None;
        if let Some(signer) = &self.opts.signer
            && self.opts.checkpoints.due(&head, cache.last_checkpoint)
        {
            checkpoint = Some(tx.write_checkpoint(&head, signer.as_ref()).await?);
        }
        tx.commit().await?;
        cache.head = head;
        if let Some(cp) = checkpoint {
            cache.last_checkpoint = (cp.seq, cp.at_ms);
            if let Some(f) = &self.opts.on_checkpoint {
                f(&cp);
            }
        }
        Ok(answers)
    }
}

/// Per job: the token's client or why the token was refused (None for an intent).
type Auths<'t> = Vec<Option<Result<&'t str, AuthError>>>;

/// What a batch's gateway requests need decided, as loaded from the store.
struct Loaded {
    /// The hold records the batch's requests name.
    holds: Vec<HoldRecord>,
    /// Per job: its request id and that id's first use.
    facts: Vec<RequestFacts>,
}

fn request_ref(req: &GatewayRequest) -> RequestRef<'_> {
    RequestRef {
        token: &req.token,
        ip: req.ip,
        venue: &req.venue,
        intent: &req.intent,
        request_id: req.request_id.as_deref(),
        hold: req.hold,
        request_text: req.request_text.as_deref(),
    }
}

/// Step 1, load: authenticates each gateway request against the cached tokens, then reads the
/// holds they name and the first use of their request ids (each once per batch).
async fn load_batch<'t>(
    tx: &mut WriteTx<'_>,
    batch: &[Job],
    tokens: &'t HashMap<String, TokenRecord>,
    state: &State,
) -> Result<(Loaded, Auths<'t>), StoreError> {
    let auths: Auths<'t> = batch
        .iter()
        .map(|job| match &job.work {
            Work::Intent { .. } => None,
            Work::Gateway(req) => {
                let token = tokens.get(&req.token.id);
                let client = token.and_then(|t| state.client(&t.client));
                Some(admit::authenticate(
                    &request_ref(req),
                    token,
                    client,
                    job.now,
                ))
            }
        })
        .collect();
    let mut holds: Vec<HoldRecord> = vec![];
    for (job, auth) in batch.iter().zip(&auths) {
        if let Some((req, _)) = admitted(job, auth)
            && let Some(hid) = req.hold
            && !holds.iter().any(|h| h.id == hid)
            && let Some(h) = tx.load_hold(hid).await?
        {
            holds.push(h);
        }
    }
    let mut facts: Vec<RequestFacts> = batch
        .iter()
        .zip(&auths)
        .map(|(job, auth)| RequestFacts {
            key: admitted(job, auth).and_then(|(req, client)| {
                let hold = req.hold.and_then(|hid| holds.iter().find(|h| h.id == hid));
                admit::request_key(&request_ref(req), client, hold)
            }),
            first_use: None,
        })
        .collect();
    let mut first_uses: Vec<Option<i64>> = Vec::with_capacity(facts.len());
    let mut seen: HashMap<&RequestKey, Option<i64>> = HashMap::new();
    for f in &facts {
        let used = match &f.key {
            Some(k) => match seen.get(k) {
                Some(u) => *u,
                None => {
                    let u = tx.used_request_id(k).await?;
                    seen.insert(k, u);
                    u
                }
            },
            None => None,
        };
        first_uses.push(used);
    }
    drop(seen);
    for (f, u) in facts.iter_mut().zip(first_uses) {
        f.first_use = u;
    }
    Ok((Loaded { holds, facts }, auths))
}

/// A gateway request that got past its token and was classified, with its client.
fn admitted<'j, 't>(
    job: &'j Job,
    auth: &Option<Result<&'t str, AuthError>>,
) -> Option<(&'j GatewayRequest, &'t str)> {
    match (&job.work, auth) {
        (Work::Gateway(req), Some(Ok(client))) if req.intent.is_ok() => Some((req, *client)),
        _ => None,
    }
}

/// What a batch came to, to be written: its entries (in job order) and what they leave behind.
struct Decided<'a> {
    entries: Vec<NewEntry>,
    pending: Vec<Pending>,
    /// Freezes the detectors set, appended after the decisions that set them.
    freezes: Vec<NewEntry>,
    /// Each held decision.
    new_holds: Vec<NewHold>,
    /// (entry index, hold id) of each hold an allow carries out.
    used_holds: Vec<(usize, i64)>,
    /// (entry index, request id) of each request id a decision uses.
    new_ids: Vec<(usize, &'a RequestKey)>,
}

/// The HTTP request a gateway decision came from, for its audit entry; a held decision's
/// records the request its hold binds.
fn request_info(req: &GatewayRequest, held: bool) -> RequestInfo<'_> {
    RequestInfo {
        method: Cow::Borrowed(&req.method),
        path: Cow::Borrowed(&req.path),
        request_id: req.request_id.as_deref().map(Cow::Borrowed),
        venue_ref: req
            .request_id
            .as_deref()
            .filter(|_| req.native_id)
            .map(Cow::Borrowed),
        request_text: req
            .request_text
            .as_deref()
            .filter(|_| held)
            .map(Cow::Borrowed),
    }
}

/// A held decision, to be recorded as a hold.
struct NewHold {
    /// Its entry's index in the batch.
    index: usize,
    intent: Intent,
    request_id: Option<String>,
    /// The request it binds (None for a decision made without one: it cannot be carried out).
    request_text: Option<String>,
}

/// Step 2, decide: each job in order, with keygate-core's pure admission and decision. The one
/// write inside is a freeze a detector asks for: its id is in the reasons of every later
/// decision it stops, so it is set at once (in this transaction) before the next job.
async fn decide_batch<'a>(
    tx: &mut WriteTx<'_>,
    engine: &Engine,
    state: &mut State,
    batch: &[Job],
    loaded: &'a Loaded,
    auths: Auths<'a>,
    store_now: Millis,
) -> Result<Decided<'a>, StoreError> {
    let mut memory = admit::Batch::new(&loaded.holds, store_now);
    let mut d = Decided {
        entries: Vec::with_capacity(batch.len()),
        pending: Vec::with_capacity(batch.len()),
        freezes: vec![],
        new_holds: vec![],
        used_holds: vec![],
        new_ids: vec![],
    };
    for ((job, auth), facts) in batch.iter().zip(auths).zip(&loaded.facts) {
        let i = d.entries.len();
        let (entry, p) = match (&job.work, auth) {
            (Work::Intent { intent, extra }, _) => {
                let with_clock = Extra {
                    reference_now: Some(store_now),
                    ..extra.clone()
                };
                let w = decide_watched(engine, state, intent, job.now, &with_clock);
                let entry = decision_entry(intent, &w, extra, None);
                if w.verdict.outcome == keygate_core::Outcome::Hold {
                    d.new_holds.push(NewHold {
                        index: i,
                        intent: intent.clone(),
                        request_id: None,
                        request_text: None,
                    });
                }
                contain(tx, state, engine, &w, intent, &mut d.freezes).await?;
                (entry, Pending::Decided(w.verdict))
            }
            (Work::Gateway(_), None) => {
                return Err(StoreError::Internal(
                    "a gateway request was not authenticated before its decision".into(),
                ));
            }
            (Work::Gateway(req), Some(auth)) => {
                let r = request_ref(req);
                match admit::admit(engine, state, &mut memory, &r, auth, facts, job.now) {
                    Admission::Refused { error, action } => (
                        refused_entry(req, action, &error, job.now),
                        Pending::Refused(error),
                    ),
                    Admission::Rejected {
                        client,
                        rejection,
                        reason,
                    } => (
                        rejected_entry(req, client, rejection.event(), &reason, job.now),
                        Pending::Rejected(rejection, reason),
                    ),
                    Admission::Decided(a) => {
                        contain(tx, state, engine, &a.watched, &a.intent, &mut d.freezes).await?;
                        if let Some(hid) = a.carried_out {
                            d.used_holds.push((i, hid));
                        }
                        if let Some(k) = a.uses_id {
                            d.new_ids.push((i, k));
                        }
                        let held = a.watched.verdict.outcome == keygate_core::Outcome::Hold;
                        let info = request_info(req, held);
                        let entry = decision_entry(&a.intent, &a.watched, &a.extra, Some(info));
                        let Admitted {
                            intent, watched, ..
                        } = *a;
                        if held {
                            d.new_holds.push(NewHold {
                                index: i,
                                intent,
                                request_id: req.request_id.clone(),
                                request_text: req.request_text.clone(),
                            });
                        }
                        (entry, Pending::Decided(watched.verdict))
                    }
                }
            }
        };
        d.entries.push(entry);
        d.pending.push(p);
    }
    Ok(d)
}

/// Step 3, write: appends the entries, then records the holds set and carried out, the
/// freezes and the request ids used, under the entries' ids. Gives the entries' ids.
async fn write_batch(
    tx: &mut WriteTx<'_>,
    head: &mut Head,
    d: Decided<'_>,
    store_now: Millis,
    hold_ttl: Millis,
) -> Result<(Vec<i64>, Vec<Pending>), StoreError> {
    let seqs = tx.append(head, d.entries, store_now).await?;
    let id_of = |i: usize| seqs.get(i).copied().unwrap_or_default();
    for h in d.new_holds {
        let digest = hold_digest(&h.intent, h.request_text.as_deref().unwrap_or_default());
        tx.insert_hold(&NewHoldRow {
            decision_id: id_of(h.index),
            client: &h.intent.client,
            venue: &h.intent.venue,
            digest,
            request_id: h.request_id.as_deref(),
            expires_ms: store_now.saturating_add(hold_ttl),
            request_text: h.request_text.as_deref(),
        })
        .await?;
    }
    for (i, hid) in d.used_holds {
        if tx.execute_hold(hid, id_of(i), store_now).await? != 1 {
            // Checked under the same lock a moment ago: this cannot happen; refuse the batch.
            return Err(StoreError::Internal(format!(
                "hold {hid} was carried out twice in one batch"
            )));
        }
    }
    if !d.freezes.is_empty() {
        tx.append(head, d.freezes, store_now).await?;
    }
    for (i, k) in d.new_ids {
        tx.insert_request_id(k, id_of(i), store_now).await?;
    }
    Ok((seqs, d.pending))
}

/// Whether an answer may go out before its commit: only a gateway answer after which nothing
/// that moves value is forwarded (a read, a denial, a refusal). An allow or hold of anything
/// else waits until its decision and debit are durable.
fn answers_early(work: &Work, answer: &Answer) -> bool {
    let Work::Gateway(req) = work else {
        return false;
    };
    match answer {
        Answer::Refused { .. } | Answer::Rejected { .. } => true,
        Answer::Decided(d) => {
            d.verdict.outcome == keygate_core::Outcome::Deny
                || req
                    .intent
                    .as_ref()
                    .is_ok_and(|i| i.action == keygate_core::Action::Read)
        }
    }
}

/// After a watched decision: applies it to the state ([`State::apply`], as a replay does), and
/// sets the freeze its strongest signal asks for (in this transaction, and in the state at once so the
/// rest of the batch is frozen too).
async fn contain(
    tx: &mut WriteTx<'_>,
    state: &mut State,
    engine: &Engine,
    w: &Watched,
    intent: &Intent,
    entries: &mut Vec<NewEntry>,
) -> Result<(), StoreError> {
    state.apply(engine, w);
    let Some(keygate_core::decide::Containment {
        scope,
        reason,
        actor,
    }) = w.containment()
    else {
        return Ok(());
    };
    let at = w.verdict.at;
    let id = tx.set_freeze(&scope, &reason, &actor, at).await?;
    entries.push(crate::freeze::freeze_entry(id, &scope, &reason, &actor, at));
    state.add_freeze(keygate_core::freeze::Freeze {
        id,
        scope: scope.clone(),
        reason,
        set_by: actor,
        set_at: at,
    });
    tracing::error!(
        alarm = "freeze.set",
        severity = "critical",
        freeze_id = id,
        scope = %scope,
        client = %intent.client,
        "a detector froze {scope}; lifting it needs a quorum: keygate approve freeze:{id} --key FILE"
    );
    Ok(())
}

pub use keygate_core::admit::hold_digest;
