//! The durable decide-and-record step, with group commit.
//!
//! One writer task per store handle takes queued intents in batches. For each batch it opens one
//! write transaction, locks the audit head (which serialises it against every other writer and
//! instance), brings its in-memory state up to date if anyone else has written since its last
//! batch, runs the pure `decide` on each intent in order, appends every decision (with its limit
//! debit) to the audit chain, and commits. Only then does any caller get its verdict: an allow
//! is durable, debit included, before anyone can act on it. If the commit fails, every caller in
//! the batch gets the error (a caller must treat it as a deny) and the state is rebuilt from the
//! store on the next batch.

use std::sync::Arc;

use keygate_core::decide::{Extra, State, decide_with};
use keygate_core::{Engine, Intent, Millis, Verdict};
use tokio::sync::{mpsc, oneshot};

use crate::audit::{self, CheckpointPolicy, Head, NewEntry, Signer};
use crate::{Store, StoreError};

/// What a decision's audit entry records (besides its debit).
#[derive(serde::Serialize)]
struct DecisionData<'a> {
    intent: &'a Intent,
    outcome: keygate_core::Outcome,
    stage: keygate_core::decide::Stage,
    reasons: &'a [String],
    policies: &'a [String],
    limits: &'a [keygate_core::LimitCheck],
    usd_value_cents: Option<i64>,
    signals: &'a [String],
    approvals: i64,
}

/// The most intents one transaction decides.
const MAX_BATCH: usize = 512;

/// A durable decision: its audit sequence number is its id.
#[derive(Debug, Clone)]
pub struct Decision {
    pub id: i64,
    pub verdict: Verdict,
}

struct Job {
    intent: Intent,
    now: Millis,
    extra: Extra,
    reply: oneshot::Sender<Result<Decision, StoreError>>,
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
    last_checkpoint: (i64, Millis),
}

struct Writer {
    store: Store,
    engine: Arc<Engine>,
    cache: Option<Cache>,
    opts: DeciderOptions,
}

impl Decider {
    /// Starts the writer task for `store` with `engine`.
    pub fn start(store: Store, engine: Arc<Engine>, opts: DeciderOptions) -> Self {
        let (tx, rx) = mpsc::channel(MAX_BATCH * 8);
        let writer = Writer {
            store,
            engine,
            cache: None,
            opts,
        };
        tokio::spawn(writer.run(rx));
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
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Msg::Decide(Box::new(Job {
                intent,
                now,
                extra,
                reply,
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
    let inputs = crate::engine::load_inputs(tx, rebuild_from(engine, head), head).await?;
    State::new(engine, inputs).map_err(|e| StoreError::Corrupt(e.to_string()))
}

impl Writer {
    async fn run(mut self, mut rx: mpsc::Receiver<Msg>) {
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
            self.process(batch).await;
        }
    }

    async fn process(&mut self, batch: Vec<Job>) {
        match self.try_process(&batch).await {
            Ok(results) => {
                for (job, decision) in batch.into_iter().zip(results) {
                    let _ = job.reply.send(Ok(decision));
                }
            }
            Err(e) => {
                self.cache = None;
                tracing::error!(error = %e, intents = batch.len(), "decisions could not be recorded; answering deny");
                let msg = e.to_string();
                for job in batch {
                    let _ = job.reply.send(Err(StoreError::Corrupt(format!(
                        "the decision could not be recorded ({msg}); nothing was allowed"
                    ))));
                }
            }
        }
    }

    /// Brings the cache up to `head`: incrementally when only decisions were appended since,
    /// from scratch otherwise (an admin change, another engine, a first run).
    async fn refresh(
        &mut self,
        tx: &mut sqlx::Transaction<'static, sqlx::Any>,
        head: &Head,
    ) -> Result<(), StoreError> {
        if let Some(c) = &mut self.cache {
            if c.head == *head {
                return Ok(());
            }
            let gap = head.seq - c.head.seq;
            if gap > 0 && gap <= 10_000 {
                let rows = audit::rows_after(&mut **tx, c.head.seq, gap).await?;
                // The new rows must continue the chain this cache saw (a store restored from an
                // older backup and written again would not) and end at the head.
                let contiguous = rows.len() as i64 == gap
                    && rows.first().is_some_and(|r| r.prev_hash == c.head.hash)
                    && rows.last().is_some_and(|r| r.hash == head.hash);
                // Only decisions and token events leave the rest of the state as it was;
                // anything else (an admin change, and whatever kinds come later) rebuilds it.
                if contiguous
                    && rows
                        .iter()
                        .all(|r| r.kind == "decision" || r.kind == "auth")
                {
                    for r in rows {
                        if let Some(m) = &r.debit {
                            c.state.record_move(m);
                        }
                        c.state.advance(r.at_ms);
                    }
                    c.head = head.clone();
                    return Ok(());
                }
            }
        }
        let state = load_state(tx, &self.engine, head).await?;
        let last_checkpoint = audit::last_checkpoint(&mut **tx).await?;
        self.cache = Some(Cache {
            head: head.clone(),
            state,
            last_checkpoint,
        });
        Ok(())
    }

    async fn try_process(&mut self, batch: &[Job]) -> Result<Vec<Decision>, StoreError> {
        let mut tx = self.store.begin_write().await?;
        let mut head = audit::lock_head(&mut tx).await?;
        let store_now = audit::db_now(&mut tx, self.store.backend()).await?;
        self.refresh(&mut tx, &head).await?;
        let Some(cache) = self.cache.as_mut() else {
            return Err(StoreError::Corrupt(
                "decider state missing after refresh".into(),
            ));
        };
        let mut verdicts = Vec::with_capacity(batch.len());
        let mut entries = Vec::with_capacity(batch.len());
        for job in batch {
            let extra = Extra {
                reference_now: Some(store_now),
                ..job.extra.clone()
            };
            let verdict = decide_with(&self.engine, &cache.state, &job.intent, job.now, &extra);
            cache.state.record(&verdict);
            entries.push(NewEntry {
                kind: "decision",
                actor: format!("client:{}", job.intent.client),
                at_ms: verdict.at,
                data: NewEntry::data(&DecisionData {
                    intent: &job.intent,
                    outcome: verdict.outcome,
                    stage: verdict.stage,
                    reasons: &verdict.reasons,
                    policies: &verdict.policies,
                    limits: &verdict.limits,
                    usd_value_cents: verdict.usd_value_cents,
                    signals: &job.extra.signals,
                    approvals: job.extra.approvals,
                }),
                debit: verdict.debit.clone(),
            });
            verdicts.push(verdict);
        }
        let seqs = audit::append(&mut tx, &mut head, entries, store_now).await?;
        let mut checkpoint = None;
        if let Some(signer) = &self.opts.signer
            && self.opts.checkpoints.due(&head, cache.last_checkpoint)
        {
            checkpoint = Some(audit::write_checkpoint(&mut tx, &head, signer.as_ref()).await?);
        }
        tx.commit().await?;
        cache.head = head;
        if let Some(cp) = checkpoint {
            cache.last_checkpoint = (cp.seq, cp.at_ms);
            if let Some(f) = &self.opts.on_checkpoint {
                f(&cp);
            }
        }
        Ok(seqs
            .into_iter()
            .zip(verdicts)
            .map(|(id, verdict)| Decision { id, verdict })
            .collect())
    }
}
