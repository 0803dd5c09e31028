//! Pipelined batches on SQLite: while one batch's COMMIT (its `fsync`) runs on a blocking
//! thread, the decider takes the next batch and decides it against the state the first one
//! leaves, so a request that arrives during a commit does not wait for that commit before its
//! own decision starts.
//!
//! SQLite has one writer: the next batch cannot write, nor be made durable, before the COMMIT
//! in flight returns. What overlaps is the deciding (tokens, admission, Cedar, limits,
//! detectors) and the reads it needs (request ids, through a second, read-only connection, with
//! the ids the batch in flight used laid over them). Soundness:
//!
//! - a batch's answers that wait for its commit are sent by the thread that ran the COMMIT,
//!   the moment it returns, and only if it succeeded;
//! - the next batch is written only after that commit succeeded, and only if the audit head
//!   is then the one it was decided after (nobody else wrote in between); otherwise its
//!   effects are thrown away with the in-memory state and it is decided again against the
//!   state rebuilt from the store, in its own write transaction, as without the pipeline;
//! - nothing of a speculated batch is answered before it is written: its early answers (reads,
//!   denials) go out after its append, as always;
//! - a batch naming a hold is not speculated, and one whose decisions set a freeze stops
//!   speculating (both need the write transaction); it is decided again the plain way.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use keygate_core::Millis;
use keygate_core::admit::RequestKey;
use tokio::sync::oneshot;

use super::tx::{Dry, WriteTx};
use super::{Answer, Decided, Job, Lite, Work, Writer, decide_batch, lite, load_batch};
use crate::StoreError;
use crate::audit::{Checkpoint, Head};

type Reply = oneshot::Sender<Result<Answer, StoreError>>;

/// A batch written and committing.
pub(super) struct InFlight {
    pub commit: tokio::task::JoinHandle<Result<(), StoreError>>,
    /// The audit head once it has committed.
    pub head: Head,
    pub checkpoint: Option<Checkpoint>,
    /// The request ids it used, with their decisions' ids.
    pub used_ids: HashMap<RequestKey, i64>,
}

/// A batch decided while the one before committed, not written yet.
pub(super) struct Speculated {
    pub decided: Decided,
    pub store_now: Millis,
}

/// Runs the COMMIT of the transaction open on `conn` on a blocking thread; sends `waiting`
/// their answers the moment it returns, or the error if it failed.
pub(super) fn spawn_commit(
    conn: Arc<Mutex<rusqlite::Connection>>,
    path: String,
    waiting: Vec<(Reply, Answer)>,
) -> tokio::task::JoinHandle<Result<(), StoreError>> {
    tokio::task::spawn_blocking(move || {
        let done = lite::commit_on(&conn, &path);
        match &done {
            Ok(()) => {
                for (reply, answer) in waiting {
                    let _ = reply.send(Ok(answer));
                }
            }
            Err(e) => {
                let (cause, unavailable) = (e.to_string(), e.is_unavailable());
                for (reply, _) in waiting {
                    let _ = reply.send(Err(StoreError::NotRecorded {
                        cause: cause.clone(),
                        unavailable,
                    }));
                }
            }
        }
        done
    })
}

impl Writer {
    /// The next message; a commit that returns meanwhile is settled.
    pub(super) async fn next(
        &mut self,
        rx: &mut tokio::sync::mpsc::Receiver<super::Msg>,
        inflight: &mut Option<InFlight>,
        lite: Option<&mut Lite>,
    ) -> Option<super::Msg> {
        if let Some(f) = inflight.as_mut() {
            tokio::select! {
                biased;
                done = &mut f.commit => {
                    if let Some(f) = inflight.take() {
                        self.settled(f, done, lite);
                    }
                }
                m = rx.recv() => return m,
            }
        }
        rx.recv().await
    }

    /// Waits for the commit in flight; whether it succeeded.
    pub(super) async fn settle(&mut self, mut f: InFlight, lite: Option<&mut Lite>) -> bool {
        let done = (&mut f.commit).await;
        self.settled(f, done, lite)
    }

    fn settled(
        &mut self,
        f: InFlight,
        done: Result<Result<(), StoreError>, tokio::task::JoinError>,
        lite: Option<&mut Lite>,
    ) -> bool {
        let err = match done {
            Ok(Ok(())) => {
                self.committed(f.head, f.checkpoint);
                if let Some(tx) = lite.and_then(|l| l.checkpoints.as_ref()) {
                    // Full: a wake-up is pending already.
                    let _ = tx.try_send(());
                }
                return true;
            }
            Ok(Err(e)) => e.to_string(),
            Err(e) => format!("the commit's thread failed: {e}"),
        };
        // Its callers have their error already; the state and connection start afresh.
        tracing::error!(error = %err, "a batch's commit failed; its callers were answered deny");
        self.cache = None;
        if let Some(l) = lite {
            l.conn = None;
        }
        false
    }

    /// Decides `batch` against the state the batch in flight leaves, without writing; None if
    /// it cannot be (no state yet, a hold named, a freeze set, a read failed), when it is
    /// decided the plain way once the commit returns.
    pub(super) async fn speculate(
        &mut self,
        lite: &mut Lite,
        batch: &[Job],
        used_ids: &HashMap<RequestKey, i64>,
    ) -> Option<Speculated> {
        let names_hold = |j: &Job| matches!(&j.work, Work::Gateway(r) if r.hold.is_some());
        if self.cache.is_none() || batch.iter().any(names_hold) {
            return None;
        }
        if lite.reader.is_none() {
            lite.reader = lite::open(&lite.path).ok().map(Mutex::new);
        }
        let reader = lite.reader.as_ref()?;
        let simulated = self.store.clock().simulated_now();
        let clock = match reader.lock() {
            Ok(c) => lite::clock_on(&c, simulated),
            Err(_) => Err(StoreError::Internal(
                "the decider's reader was poisoned".into(),
            )),
        };
        let Ok(store_now) = clock else {
            lite.reader = None;
            return None;
        };
        let cache = self.cache.as_mut()?;
        let mut tx = WriteTx::Dry(Dry::new(reader, used_ids));
        let decided = async {
            let (loaded, auths) = load_batch(&mut tx, batch, &cache.tokens, &cache.state).await?;
            decide_batch(
                &mut tx,
                &self.engine,
                &mut cache.state,
                batch,
                &loaded,
                auths,
                store_now,
            )
            .await
        }
        .await;
        match decided {
            Ok(decided) => {
                #[cfg(test)]
                lite::faults::speculated(&lite.path);
                Some(Speculated { decided, store_now })
            }
            Err(_) => {
                // The state may hold part of the batch's effects.
                self.cache = None;
                None
            }
        }
    }
}
