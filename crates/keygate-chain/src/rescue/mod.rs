//! Rescue on chain: keygate holds the same key a thief holds, so when the key is used outside
//! keygate it moves the treasury's funds to the venue's rescue address first.
//!
//! What starts a rescue ([`Trigger`]): an outflow the watcher judged unapproved (a transfer, an
//! ERC-20 `Transfer` or `Approval`, code at the treasury — an EIP-7702 delegation — or a nonce
//! moved by something keygate did not sign), a freeze covering the venue, or a transaction from
//! the treasury in the node's pending pool that keygate did not sign ([`Rescuer::watch_pool`]:
//! judged before it is mined, audited as `chain.pending_unapproved` with the containment
//! freeze).
//!
//! What a rescue does ([`Rescuer::drive`], one step per poll): at the treasury's mined nonce
//! and up, it signs transfers of every listed token's full balance and of the ETH left after
//! the gas of all of them, to the rescue address, largest USD value first ([`plan`]). A
//! transaction of the thief's pending at one of those nonces is replaced: the first rung pays
//! at least 12.5 % more than it on both fees ([`ladder`]), so the thief's is never mined if
//! ours is. Each new block that does not mine a nonce bumps it one rung, up to the ceiling
//! ([`ladder::CEILING_TIMES_FIRST`] times the first rung), where it stays. Every transaction
//! is recorded (`Rescues::rescue_signed`, its bytes and audit entry) before it is sent, and
//! sent to every configured endpoint; a node's silence or a dropped transaction is `unknown`,
//! never failed: it is sent again, byte for byte, until its nonce is mined. Once every nonce
//! is mined (by ours: `mined`; by another transaction: `lost`), what is left is planned again;
//! a rescue with nothing left to sweep is done.
//!
//! A rescue is not a transfer: it is not decided, so a freeze does not stop it (it is the one
//! transfer a freeze does not stop); its destination is the venue's `rescue_to`, which the
//! wiring checks is an active address-book entry. One rescue per venue is open at a time (the
//! store keeps that); a restart or another instance reads it and sends what it recorded again,
//! never a second sweep at other nonces. The wiring runs one [`Rescuer`] per venue under a
//! lease.
//!
//! When it cannot win: a thief's transaction sent privately to a builder is in no pool, so
//! keygate sees it only in a block (the watcher's alarm) and sweeps what is left from the next
//! nonce; a thief who outbids the ceiling wins that nonce, and keygate carries on at the next
//! one; an EIP-7702 delegation lets the delegate move funds by calls that need no transaction
//! of the treasury's, so nothing can be replaced: keygate sweeps at once, racing it.

mod drive;
pub mod ladder;
pub mod plan;
pub mod pool;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use alloy::primitives::{Address, B256};
use keygate_core::freeze::Scope;

use crate::persist::{Alarm, PersistError, Reconciled, Rescues};
use crate::rpc::{ClientError, Rpc, RpcError};
use crate::tx::Key;
use crate::watcher::Event;
use crate::{EvmVenue, address_text, hash_text};

pub use drive::Progress;

/// A venue's rescue set-up: where the funds go, and the endpoints every transaction is sent to
/// besides the venue's `rpc_url`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RescueSetup {
    pub to: Address,
    pub endpoints: Vec<String>,
}

/// Why a rescue starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Trigger {
    /// An outflow judged unapproved (its id and asset).
    Outflow { id: String, asset: String },
    /// A freeze covering the venue.
    Freeze(i64),
    /// A transaction from the treasury in the pending pool keygate did not sign.
    Pending(B256),
}

impl Trigger {
    fn reason(&self) -> String {
        match self {
            Trigger::Outflow { id, asset } => format!("unapproved outflow {id} ({asset})"),
            Trigger::Freeze(id) => format!("freeze {id} covers the venue"),
            Trigger::Pending(h) => format!(
                "pending transaction {} from the treasury that keygate did not sign",
                hash_text(h)
            ),
        }
    }

    /// The trigger a watcher's judgement is: an unapproved outflow, whatever its asset (a
    /// transfer, an allowance, code, a nonce).
    pub fn of(e: &Event) -> Option<Trigger> {
        matches!(e.result, Reconciled::Unapproved { .. }).then(|| Trigger::Outflow {
            id: e.outflow.id.clone(),
            asset: e.outflow.asset.clone(),
        })
    }
}

/// A rescue transaction sent (for tests and the benchmark).
#[derive(Debug, Clone)]
pub struct Sent {
    pub nonce: u64,
    pub rung: u32,
    pub hash: B256,
    pub asset: String,
    pub at: Instant,
}

/// Why a rescue step failed (it is retried at the next poll).
#[derive(Debug, thiserror::Error)]
pub enum RescueError {
    #[error(transparent)]
    Rpc(#[from] RpcError),
    #[error(transparent)]
    Store(#[from] PersistError),
    #[error("the rescue's key cannot sign")]
    Key,
    #[error("a recorded rescue transaction is not readable: {0}")]
    Corrupt(String),
}

/// One venue's rescuer.
pub struct Rescuer<P> {
    venue: EvmVenue,
    /// The venue's node first, then the other endpoints.
    rpcs: Vec<Rpc>,
    store: P,
    key: Key,
    to: Address,
    contain: Option<Scope>,
    pool: pool::Pool,
    /// Pending transactions alarmed already (by this process).
    alarmed: HashSet<B256>,
    sent: Option<tokio::sync::mpsc::UnboundedSender<Sent>>,
    actor: String,
}

impl<P: Rescues> Rescuer<P> {
    pub fn new(
        venue: EvmVenue,
        store: P,
        key: Key,
        setup: &RescueSetup,
        contain: Option<Scope>,
    ) -> Result<Self, ClientError> {
        let mut rpcs = vec![Rpc::new(&venue.rpc_url, venue.timeout)?];
        for url in &setup.endpoints {
            rpcs.push(Rpc::new(url, venue.timeout)?);
        }
        let actor = format!("rescue:{}", venue.name);
        Ok(Self {
            venue,
            rpcs,
            store,
            key,
            to: setup.to,
            contain,
            pool: pool::Pool::default(),
            alarmed: HashSet::new(),
            sent: None,
            actor,
        })
    }

    /// Sends every rescue transaction sent to `tx` as well.
    pub fn with_sent(mut self, tx: tokio::sync::mpsc::UnboundedSender<Sent>) -> Self {
        self.sent = Some(tx);
        self
    }

    /// The treasury address it rescues.
    pub fn treasury(&self) -> Address {
        self.key.address()
    }

    fn rpc(&self) -> &Rpc {
        &self.rpcs[0]
    }

    /// Starts a rescue for `t` (or joins the venue's open one): its id.
    pub async fn start(&self, t: &Trigger) -> Result<i64, RescueError> {
        let (id, new) = self
            .store
            .rescue_start(
                &self.venue.name,
                &address_text(&self.treasury()),
                &address_text(&self.to),
                &t.reason(),
                &self.actor,
            )
            .await?;
        if new {
            tracing::error!(venue = %self.venue.name, rescue = id, to = %address_text(&self.to), reason = %t.reason(), "the treasury's key is used outside keygate: sweeping the treasury to its rescue address");
        }
        Ok(id)
    }

    /// Looks at the pending pool: a transaction from the treasury that keygate did not sign
    /// starts a rescue at once (driven right away, so its replacement goes out before anything
    /// else), then is alarmed (`chain.pending_unapproved`, with the containment freeze). Whether
    /// it found one.
    pub async fn watch_pool(&mut self) -> Result<bool, RescueError> {
        let from = self.treasury();
        let (busy, _) = self.pool.busy(self.rpc(), &from).await?;
        if !busy {
            return Ok(false);
        }
        let mut foreign = vec![];
        for t in self.pool.from(self.rpc(), &from).await? {
            if self.alarmed.contains(&t.hash) {
                continue;
            }
            let hash = hash_text(&t.hash);
            if self.store.rescue_tx(&hash).await? || self.store.signed_by_keygate(&hash).await? {
                continue;
            }
            foreign.push(t);
        }
        let Some(first) = foreign.first() else {
            return Ok(false);
        };
        self.start(&Trigger::Pending(first.hash)).await?;
        self.drive().await?;
        for t in foreign {
            self.alarm_pending(&t).await?;
            self.alarmed.insert(t.hash);
        }
        Ok(true)
    }

    async fn alarm_pending(&self, t: &pool::PoolTx) -> Result<(), RescueError> {
        let reason = format!(
            "transaction {} from treasury {} at nonce {} is pending and keygate did not sign it: the key is used outside keygate; keygate replaces it with a sweep to the rescue address",
            hash_text(&t.hash),
            address_text(&t.from),
            t.nonce
        );
        self.store
            .record_alarm(Alarm {
                event: "chain.pending_unapproved",
                actor: &self.actor,
                reason: &reason,
                details: serde_json::json!({
                    "venue": self.venue.name, "tx": hash_text(&t.hash), "nonce": t.nonce.to::<u64>(),
                    "to": t.to.as_ref().map(address_text), "value": t.value.to_string(),
                }),
                contain: self.contain.as_ref(),
            })
            .await?;
        Ok(())
    }

    /// One poll: starts a rescue for each trigger received, looks at the pending pool, and
    /// drives the open rescue.
    pub async fn tick(
        &mut self,
        triggers: &mut tokio::sync::mpsc::UnboundedReceiver<Trigger>,
    ) -> Result<Progress, RescueError> {
        while let Ok(t) = triggers.try_recv() {
            self.start(&t).await?;
        }
        self.watch_pool().await?;
        self.drive().await
    }

    /// Rescues until the task is dropped: a [`Rescuer::tick`] every `every` (and at once when
    /// a trigger arrives). A trigger starts a rescue whoever holds the lease (the store keeps
    /// one open per venue); `hold` is asked before each tick (the wiring's lease): only its
    /// holder drives it.
    pub async fn run<F, Fut>(
        mut self,
        mut triggers: tokio::sync::mpsc::UnboundedReceiver<Trigger>,
        every: Duration,
        hold: F,
    ) where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = bool>,
    {
        let mut next: Option<Trigger> = None;
        loop {
            if let Some(t) = next.take()
                && let Err(e) = self.start(&t).await
            {
                tracing::error!(venue = %self.venue.name, error = %e, "a rescue could not be started; retrying");
                next = Some(t);
            }
            if hold().await {
                if let Err(e) = self.tick(&mut triggers).await {
                    tracing::error!(venue = %self.venue.name, error = %e, "a rescue step failed; retrying at the next poll");
                }
            } else {
                while let Ok(t) = triggers.try_recv() {
                    if let Err(e) = self.start(&t).await {
                        tracing::error!(venue = %self.venue.name, error = %e, "a rescue could not be started; retrying");
                        next = Some(t);
                        break;
                    }
                }
            }
            if next.is_some() {
                tokio::time::sleep(every).await;
                continue;
            }
            tokio::select! {
                t = triggers.recv() => match t {
                    Some(t) => next = Some(t),
                    None => tokio::time::sleep(every).await,
                },
                _ = tokio::time::sleep(every) => {}
            }
        }
    }
}
