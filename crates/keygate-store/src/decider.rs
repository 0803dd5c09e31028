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

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::sync::Arc;

use keygate_core::auth::{self, AuthError, Presented, TokenRecord};
use keygate_core::decide::{Extra, State, Watched, decide_watched};
use keygate_core::{Engine, Intent, Millis, Verdict};
use sqlx::Row;
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
    #[serde(skip_serializing_if = "Option::is_none")]
    request: Option<RequestInfo<'a>>,
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    detections: &'a [keygate_core::detect::Signal],
}

/// The HTTP request a gateway decision came from.
#[derive(serde::Serialize)]
struct RequestInfo<'a> {
    method: &'a str,
    path: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    request_id: Option<&'a str>,
    /// The client id the venue will report for this request, when it is the request id (else
    /// a withdrawal carries keygate's own, `kg` and the decision's number).
    #[serde(skip_serializing_if = "Option::is_none")]
    venue_ref: Option<&'a str>,
}

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
    /// The request was refused before a decision: it could not be classified (`code`
    /// `unclassified`), its request id was used before (`replayed`), or the hold it names cannot
    /// be used (`hold_invalid`, `hold_pending`, `hold_expired`).
    Rejected {
        id: i64,
        code: &'static str,
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
    Rejected(&'static str, String),
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
        match self.submit(Work::Intent { intent, extra }, now).await? {
            Answer::Decided(d) => Ok(d),
            other => Err(StoreError::Corrupt(format!(
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
    let inputs =
        crate::engine::load_inputs(tx, rebuild_from(engine, head), outflows_since, head).await?;
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

    async fn process(&mut self, mut batch: Vec<Job>) {
        match self.try_process(&mut batch).await {
            Ok(results) => {
                for (job, answer) in batch.into_iter().zip(results) {
                    if let (Some(reply), Some(answer)) = (job.reply, answer) {
                        let _ = reply.send(Ok(answer));
                    }
                }
            }
            Err(e) => {
                self.cache = None;
                let early = batch.iter().filter(|j| j.reply.is_none()).count();
                tracing::error!(error = %e, intents = batch.len(), answered_early = early, "decisions could not be recorded; answering deny");
                let msg = e.to_string();
                for job in batch {
                    if let Some(reply) = job.reply {
                        let _ = reply.send(Err(StoreError::Corrupt(format!(
                            "the decision could not be recorded ({msg}); nothing was allowed"
                        ))));
                    }
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
                                && let Some(o) = crate::engine::outgoing_of(r.at_ms, &r.entry)
                            {
                                c.state.record_outflow(o, self.engine.detectors.window);
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

    /// Decides and records a batch. Answers that let nothing move value (reads, denials,
    /// refusals) are sent as soon as their entries are appended, before the commit; the rest
    /// are returned to be sent after it.
    async fn try_process(&mut self, batch: &mut [Job]) -> Result<Vec<Option<Answer>>, StoreError> {
        let mut tx = self.store.begin_write().await?;
        let (mut head, store_now) = audit::lock_head_at(&mut tx, &self.store).await?;
        self.refresh(&mut tx, &head).await?;
        let Some(cache) = self.cache.as_mut() else {
            return Err(StoreError::Corrupt(
                "decider state missing after refresh".into(),
            ));
        };
        let mut pending = Vec::with_capacity(batch.len());
        let mut entries = Vec::with_capacity(batch.len());
        // Request ids used in this batch, and those to record once the entries have ids.
        let mut batch_ids: HashSet<(String, String, String)> = HashSet::new();
        let mut new_ids: Vec<(usize, (String, String, String))> = vec![];
        let mut freezes: Vec<NewEntry> = vec![];
        let mut new_holds: Vec<(usize, Intent, Option<String>)> = vec![];
        let mut used_holds: Vec<(usize, i64)> = vec![];
        let mut batch_holds: HashSet<i64> = HashSet::new();
        for job in batch.iter() {
            let extra = |e: &Extra| Extra {
                reference_now: Some(store_now),
                ..e.clone()
            };
            let (entry, p) = match &job.work {
                Work::Intent { intent, extra: e } => {
                    let w = decide_watched(&self.engine, &cache.state, intent, job.now, &extra(e));
                    let entry = decision_entry(intent, &w, e, None);
                    if w.verdict.outcome == keygate_core::Outcome::Hold {
                        new_holds.push((entries.len(), intent.clone(), None));
                    }
                    contain(
                        &mut tx,
                        &mut cache.state,
                        &self.engine,
                        &w,
                        intent,
                        &mut freezes,
                    )
                    .await?;
                    (entry, Pending::Decided(w.verdict))
                }
                Work::Gateway(req) => {
                    let token = cache.tokens.get(&req.token.id);
                    let client = token.and_then(|t| cache.state.client(&t.client));
                    let checked = match &req.intent {
                        Ok(i) => auth::authenticate(
                            &req.token, token, client, req.ip, &req.venue, i.action, job.now,
                        )
                        .map(|()| token.map(|t| t.client.clone()).unwrap_or_default()),
                        Err(_) => auth::check_token(&req.token, token, client, req.ip, job.now)
                            .map(|(t, _)| t.client.clone()),
                    };
                    match (checked, &req.intent) {
                        (Err(error), intent) => {
                            let action = intent.as_ref().ok().map(|i| i.action);
                            (
                                refused_entry(req, action, &error, job.now),
                                Pending::Refused(error),
                            )
                        }
                        (Ok(client), Err(reason)) => (
                            rejected_entry(req, &client, "request.unclassified", reason, job.now),
                            Pending::Rejected("unclassified", reason.clone()),
                        ),
                        (Ok(client), Ok(intent)) => {
                            let intent = Intent {
                                client: client.clone(),
                                token_id: Some(req.token.id.clone()),
                                source_ip: Some(req.ip),
                                ..intent.clone()
                            };
                            let hold = match req.hold {
                                // A hold already carried out earlier in this batch is spent.
                                Some(hid) if batch_holds.contains(&hid) => Some(Err((
                                    "hold_invalid",
                                    format!("hold {hid} was already carried out"),
                                ))),
                                Some(hid) => Some(
                                    check_hold(&mut tx, hid, &req.venue, &intent, store_now)
                                        .await?
                                        .map(|h| (hid, h)),
                                ),
                                None => None,
                            };
                            let held_id = hold
                                .as_ref()
                                .and_then(|h| h.as_ref().ok())
                                .and_then(|(_, h)| h.request_id.clone());
                            let key = req
                                .request_id
                                .as_ref()
                                // The held request's own id is the one it may use again.
                                .filter(|r| held_id.as_ref() != Some(*r))
                                .map(|r| (client.clone(), req.venue.clone(), r.clone()));
                            let used = match &key {
                                Some(k) if batch_ids.contains(k) => Some(None),
                                Some(k) => used_request_id(&mut tx, k).await?.map(Some),
                                None => None,
                            };
                            if let Some(Err((code, reason))) = hold {
                                let event = format!("request.{code}");
                                (
                                    rejected_entry(req, &client, &event, &reason, job.now),
                                    Pending::Rejected(code, reason),
                                )
                            } else if let Some(first) = used {
                                let reason = match first {
                                    Some(id) => format!(
                                        "request id {:?} was already used (audit entry {id}); use a new id for each request",
                                        req.request_id.as_deref().unwrap_or_default()
                                    ),
                                    None => format!(
                                        "request id {:?} was already used; use a new id for each request",
                                        req.request_id.as_deref().unwrap_or_default()
                                    ),
                                };
                                (
                                    rejected_entry(
                                        req,
                                        &client,
                                        "request.replayed",
                                        &reason,
                                        job.now,
                                    ),
                                    Pending::Rejected("replayed", reason),
                                )
                            } else {
                                let none = match &hold {
                                    Some(Ok((_, h))) => Extra {
                                        approvals: h.approvals,
                                        approved: true,
                                        ..Extra::default()
                                    },
                                    _ => Extra::default(),
                                };
                                let w = decide_watched(
                                    &self.engine,
                                    &cache.state,
                                    &intent,
                                    job.now,
                                    &extra(&none),
                                );
                                contain(
                                    &mut tx,
                                    &mut cache.state,
                                    &self.engine,
                                    &w,
                                    &intent,
                                    &mut freezes,
                                )
                                .await?;
                                let verdict = &w.verdict;
                                if let Some(Ok((hid, _))) = &hold
                                    && verdict.outcome == keygate_core::Outcome::Allow
                                {
                                    used_holds.push((entries.len(), *hid));
                                    batch_holds.insert(*hid);
                                }
                                if verdict.outcome == keygate_core::Outcome::Hold {
                                    new_holds.push((
                                        entries.len(),
                                        intent.clone(),
                                        req.request_id.clone(),
                                    ));
                                }
                                // A denied request leaves its id unused: the bot may retry it.
                                if let Some(k) = key
                                    && verdict.outcome != keygate_core::Outcome::Deny
                                {
                                    batch_ids.insert(k.clone());
                                    new_ids.push((entries.len(), k));
                                }
                                let info = RequestInfo {
                                    method: &req.method,
                                    path: &req.path,
                                    request_id: req.request_id.as_deref(),
                                    venue_ref: req.request_id.as_deref().filter(|_| req.native_id),
                                };
                                (
                                    decision_entry(&intent, &w, &none, Some(info)),
                                    Pending::Decided(w.verdict),
                                )
                            }
                        }
                    }
                }
            };
            entries.push(entry);
            pending.push(p);
        }
        let seqs = audit::append(&mut tx, &mut head, entries, store_now).await?;
        let hold_ttl = self.opts.hold_ttl.unwrap_or(keygate_core::time::HOUR);
        for (i, intent, request_id) in new_holds {
            let id = seqs.get(i).copied().unwrap_or_default();
            sqlx::query(
                "INSERT INTO holds (decision_id, client, venue, intent_digest, request_id, expires_ms) VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(id)
            .bind(intent.client.clone())
            .bind(intent.venue.clone())
            .bind(hold_digest(&intent))
            .bind(request_id)
            .bind(store_now.saturating_add(hold_ttl))
            .execute(&mut *tx)
            .await?;
        }
        for (i, hid) in used_holds {
            let id = seqs.get(i).copied().unwrap_or_default();
            let done = sqlx::query(
                "UPDATE holds SET executed_ms = $1, executed_by = $2 WHERE decision_id = $3 AND executed_by IS NULL",
            )
            .bind(store_now)
            .bind(id)
            .bind(hid)
            .execute(&mut *tx)
            .await?;
            if done.rows_affected() != 1 {
                // Checked under the same lock a moment ago: this cannot happen; refuse the batch.
                return Err(StoreError::Corrupt(format!(
                    "hold {hid} was carried out twice in one batch"
                )));
            }
        }
        // Freezes the detectors set, after the decisions that set them.
        if !freezes.is_empty() {
            audit::append(&mut tx, &mut head, freezes, store_now).await?;
        }
        for (i, (client, venue, rid)) in new_ids {
            let id = seqs.get(i).copied().unwrap_or_default();
            sqlx::query(
                "INSERT INTO request_ids (client, venue, request_id, decision_id, at_ms) VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(client)
            .bind(venue)
            .bind(rid)
            .bind(id)
            .bind(store_now)
            .execute(&mut *tx)
            .await?;
        }
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
        Ok(answers)
    }
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

/// The audit entry of a decision.
fn decision_entry(
    intent: &Intent,
    w: &Watched,
    extra: &Extra,
    request: Option<RequestInfo<'_>>,
) -> NewEntry {
    let verdict = &w.verdict;
    NewEntry {
        kind: "decision",
        actor: format!("client:{}", intent.client),
        at_ms: verdict.at,
        data: NewEntry::data(&DecisionData {
            intent,
            outcome: verdict.outcome,
            stage: verdict.stage,
            reasons: &verdict.reasons,
            policies: &verdict.policies,
            limits: &verdict.limits,
            usd_value_cents: verdict.usd_value_cents,
            signals: &extra.signals,
            approvals: extra.approvals,
            request,
            detections: &w.signals,
        }),
        debit: verdict.debit.clone(),
    }
}

/// The audit entry of a refused token.
pub fn auth_failure_entry(
    error: &AuthError,
    ip: IpAddr,
    venue: &str,
    action: Option<keygate_core::Action>,
    request: Option<(&str, &str)>,
    now: Millis,
) -> NewEntry {
    let (method, path) = request.unzip();
    NewEntry {
        kind: "auth",
        actor: format!("ip:{ip}"),
        at_ms: now,
        data: NewEntry::data(&serde_json::json!({
            "event": "token.refused", "error": error.code(), "detail": error, "message": error.to_string(),
            "venue": venue, "action": action, "source_ip": ip, "method": method, "path": path,
        })),
        debit: None,
    }
}

fn refused_entry(
    req: &GatewayRequest,
    action: Option<keygate_core::Action>,
    error: &AuthError,
    now: Millis,
) -> NewEntry {
    auth_failure_entry(
        error,
        req.ip,
        &req.venue,
        action,
        Some((&req.method, &req.path)),
        now,
    )
}

fn rejected_entry(
    req: &GatewayRequest,
    client: &str,
    event: &str,
    reason: &str,
    now: Millis,
) -> NewEntry {
    NewEntry {
        kind: "request",
        actor: format!("client:{client}"),
        at_ms: now,
        data: NewEntry::data(&serde_json::json!({
            "event": event, "reason": reason, "venue": req.venue, "method": req.method, "path": req.path,
            "request_id": req.request_id, "token_id": req.token.id, "source_ip": req.ip,
        })),
        debit: None,
    }
}

/// The audit entry that first used a request id, if any did.
async fn used_request_id(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    (client, venue, rid): &(String, String, String),
) -> Result<Option<i64>, StoreError> {
    let row = sqlx::query(
        "SELECT decision_id FROM request_ids WHERE client = $1 AND venue = $2 AND request_id = $3",
    )
    .bind(client.clone())
    .bind(venue.clone())
    .bind(rid.clone())
    .fetch_optional(&mut **tx)
    .await?;
    Ok(match row {
        Some(r) => Some(r.try_get(0)?),
        None => None,
    })
}

/// After a watched decision: applies it to the state ([`State::apply`], as a replay does), and
/// sets the freeze its strongest signal asks for (in this transaction, and in the state at once so the
/// rest of the batch is frozen too).
async fn contain(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
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
    let id = crate::freeze::set_in(tx, &scope, &reason, &actor, at).await?;
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

/// The digest a hold is known by: the intent without its token and source address (the same
/// request may come back with another token, from another host of the client's).
pub fn hold_digest(intent: &Intent) -> String {
    keygate_core::freeze::intent_digest(&Intent {
        token_id: None,
        source_ip: None,
        ..intent.clone()
    })
}

/// An approved hold a request may carry out.
struct UsableHold {
    approvals: i64,
    request_id: Option<String>,
}

/// Checks the hold a request names: the same client, venue and intent, approved by a quorum,
/// not expired, not used. `Err` is (code, reason) for the refusal.
async fn check_hold(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    hid: i64,
    venue: &str,
    intent: &Intent,
    store_now: Millis,
) -> Result<Result<UsableHold, (&'static str, String)>, StoreError> {
    let row = sqlx::query(
        "SELECT client, venue, intent_digest, request_id, expires_ms, approved_ms, executed_by FROM holds WHERE decision_id = $1",
    )
    .bind(hid)
    .fetch_optional(&mut **tx)
    .await?;
    let Some(r) = row else {
        return Ok(Err(("hold_invalid", format!("there is no hold {hid}"))));
    };
    let client: String = r.try_get(0)?;
    let h_venue: String = r.try_get(1)?;
    let digest: String = r.try_get(2)?;
    let request_id: Option<String> = r.try_get(3)?;
    let expires: Millis = r.try_get(4)?;
    let approved: Option<Millis> = r.try_get(5)?;
    let executed_by: Option<i64> = r.try_get(6)?;
    if client != intent.client || h_venue != venue || digest != hold_digest(intent) {
        return Ok(Err((
            "hold_invalid",
            format!("hold {hid} is for another request; send exactly the request that was held"),
        )));
    }
    if let Some(d) = executed_by {
        return Ok(Err((
            "hold_invalid",
            format!("hold {hid} was already carried out (decision {d})"),
        )));
    }
    if expires <= store_now {
        return Ok(Err((
            "hold_expired",
            format!(
                "hold {hid} expired at {}; send the request without x-keygate-hold for a new decision",
                keygate_core::time::format_millis(expires)
            ),
        )));
    }
    if approved.is_none() {
        return Ok(Err((
            "hold_pending",
            format!(
                "hold {hid} is not approved by a quorum yet: keygate approve hold:{hid} --key FILE"
            ),
        )));
    }
    let n = sqlx::query("SELECT COUNT(*) FROM approvals WHERE subject = $1")
        .bind(format!("hold:{hid}"))
        .fetch_one(&mut **tx)
        .await?
        .try_get::<i64, _>(0)?;
    Ok(Ok(UsableHold {
        approvals: n,
        request_id,
    }))
}
