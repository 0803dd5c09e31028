//! Nonces per signing address: held in the store, healed against the node, never reused while a
//! transaction signed at them may still be mined.
//!
//! The rules that keep a transfer from being paid twice and an address from jamming:
//! - A nonce is taken in the store (unique per address, across instances sharing a key) in the
//!   same transaction that records the transaction signed at it, its hash and its bytes, before
//!   anything is sent. The next nonce is the smallest one from the node's pending nonce up that
//!   no transfer holds, so a node that lags or forgot keygate's transactions cannot hand out a
//!   nonce keygate already used. Two transfers never share bytes (signing is deterministic, so
//!   a second one with the very same bytes pays a little more tip).
//! - A transfer is signed again at another nonce only after the node refused its transaction
//!   outright for a reason other than a used nonce, and that refusal and the nonce's release are
//!   recorded in one store transaction, only while the transaction is still unanswered (a copy
//!   a node took meanwhile makes it `unknown`): a refused transaction is never sent again. A
//!   "nonce too low" is never a reason to sign again (the transfer's own bytes may be what used
//!   it); a send with no clear answer leaves the transfer `unknown` with its nonce held. Only
//!   the chain then decides it.
//! - A held nonce the node no longer counts (its transaction dropped from the pool, the node
//!   restarted) is healed by sending the very same bytes again before the next nonce is chosen,
//!   unless it is being sent right now. If the node refuses them outright (or answers unknown
//!   errors for [`RELEASE_UNKNOWN_AFTER_MS`]), the nonce is given back: the transfer is never
//!   signed again, so whichever transaction is then mined at the nonce, only one can be. If it
//!   cannot be sent again yet, nothing new is signed ([`SendError::Blocked`]) rather than
//!   above a gap it would wait behind.
//!
//! Sends from one address are serialised in each process (one async lock per address); across
//! processes the store's unique nonce is what counts.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::persist::{NewTx, NonceHolds, PersistError, Took, TxOutcome, TxRecord};
use alloy::primitives::{Address, B256};

use crate::rpc::{Rpc, RpcError};
use crate::tx::{Key, Plan, Signed, sign};
use crate::{address_text, hash_text};

/// How many times one transfer is signed again after the node said its nonce is ahead.
pub const MAX_ATTEMPTS: usize = 4;

/// How many times a nonce may be lost to another instance in one send.
const MAX_RACES: usize = 64;

/// The per-address send locks of this process.
#[derive(Debug, Default)]
pub struct NonceManager {
    slots: Mutex<HashMap<Address, Arc<tokio::sync::Mutex<()>>>>,
}

/// Why a transfer was not sent, or may not have been.
#[derive(Debug, Clone, thiserror::Error)]
pub enum SendError {
    /// Nothing was signed: the node could not be asked for the nonce.
    #[error(transparent)]
    Rpc(#[from] RpcError),
    #[error("the transaction could not be recorded before sending ({0}); nothing was sent")]
    Record(String),
    #[error("the key cannot sign")]
    Key,
    #[error("the node refused the nonce {MAX_ATTEMPTS} times in a row; nothing is pending")]
    NonceChurn,
    #[error("the transfer was given up before it was sent (it waited too long); nothing was sent")]
    Abandoned,
    /// A transaction of keygate's the node no longer has could not be sent again: anything
    /// signed now would wait behind it.
    #[error(
        "keygate's transaction at nonce {nonce} is not in the node's pool and could not be sent again now; nothing was signed for this transfer: send it again later"
    )]
    Blocked { nonce: u64 },
    /// The node refused the transaction outright: nothing is pending.
    #[error("the node refused the transaction ({0}); nothing is pending")]
    Refused(RpcError),
    /// No clear answer: the transaction may be in a pool and may be mined.
    #[error(
        "the node gave no clear answer to the send ({error}); transaction {hash} at nonce {nonce} may be pending"
    )]
    Unclear {
        hash: String,
        nonce: u64,
        error: RpcError,
    },
}

impl SendError {
    /// Whether a transaction of the transfer may be out (so it must not be sent anew).
    pub fn maybe_out(&self) -> bool {
        self.maybe_pending().is_some()
    }

    /// The transaction (hash, nonce) that may be pending, after a send with no clear answer.
    pub fn maybe_pending(&self) -> Option<(&str, u64)> {
        match self {
            SendError::Unclear { hash, nonce, .. } => Some((hash, *nonce)),
            _ => None,
        }
    }
}

/// What a node's answer to `eth_sendRawTransaction` means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The same transaction is already in the pool: it was sent.
    AlreadyKnown,
    /// Refused outright because of its nonce: the nonce is used or another transaction holds
    /// it in the pool (`used` true), or it is ahead of what the node expects.
    Nonce { used: bool },
    /// Refused outright for another reason (funds, fees, gas): it is in no pool.
    Refused,
    /// No clear answer: it may be in a pool.
    Unclear,
}

/// Whether `phrase` is in `text` as whole words (so "known transaction" is not found in
/// "unknown transaction").
fn has_phrase(text: &str, phrase: &str) -> bool {
    let word = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric());
    text.match_indices(phrase).any(|(i, _)| {
        !word(text[..i].chars().next_back()) && !word(text[i + phrase.len()..].chars().next())
    })
}

/// Classifies a node's error answer to `eth_sendRawTransaction` (geth, anvil, reth, erigon,
/// nethermind and besu wordings, matched as whole words). Only wordings known to mean "not
/// added to the pool" count as refusals; anything else (a proxy's error, a timeout) may hide a
/// transaction that went out.
pub fn classify(e: &RpcError) -> Refusal {
    if e.not_delivered() {
        return Refusal::Refused;
    }
    let Some(m) = e.node_message() else {
        return Refusal::Unclear;
    };
    let has = |phrases: &[&str]| phrases.iter().any(|p| has_phrase(&m, p));
    if has(&[
        "already known",
        "already imported",
        "known transaction",
        "alreadyknown",
        "existing tx with same hash",
        "transaction already exists",
    ]) {
        Refusal::AlreadyKnown
    } else if has(&[
        "nonce too low",
        "oldnonce",
        "nonce is too low",
        "replacement transaction underpriced",
        "already exists with the same nonce",
        "could not replace existing tx",
        "replacementnotallowed",
        "replacement underpriced",
    ]) {
        Refusal::Nonce { used: true }
    } else if has(&[
        "nonce too high",
        "nonce is too high",
        "noncegap",
        "nonce too far in future",
    ]) {
        Refusal::Nonce { used: false }
    } else if has(&[
        "insufficient funds",
        "insufficientfunds",
        "upfront cost exceeds account balance",
        "fee cap",
        "less than block base fee",
        "transaction underpriced",
        "underpriced",
        "fee too low",
        "feetoolow",
        "feetoolowtocompete",
        "gas price below minimum",
        "below configured minimum gas price",
        "max priority fee per gas higher than max fee per gas",
        "intrinsic gas too low",
        "intrinsicgas",
        "exceeds block gas limit",
        "gas limit is too high",
        "gas limit reached",
        "invalid sender",
        "invalid chain id",
        "exceeds the configured cap",
        "oversized data",
        "txpool is full",
        "sub-pool is full",
        "account limit exceeded",
        "transaction type not supported",
    ]) {
        Refusal::Refused
    } else {
        Refusal::Unclear
    }
}

/// The smallest nonce from `pending` up that is not in `held` (ascending).
fn first_free(pending: u64, held: impl IntoIterator<Item = u64>) -> Option<u64> {
    let mut n = pending;
    for h in held {
        if h == n {
            n = n.checked_add(1)?;
        } else if h > n {
            break;
        }
    }
    Some(n)
}

impl NonceManager {
    /// The send lock of `address`, held from choosing a nonce until the node answered.
    pub async fn lock(&self, address: Address) -> tokio::sync::OwnedMutexGuard<()> {
        let slot = {
            let mut slots = match self.slots.lock() {
                Ok(s) => s,
                Err(p) => p.into_inner(),
            };
            slots.entry(address).or_default().clone()
        };
        slot.lock_owned().await
    }

    /// Heals `address`'s held nonces the node no longer counts, before a decision is made: a
    /// transfer that would be [`SendError::Blocked`] is refused before it costs a decision.
    pub async fn unblocked(
        &self,
        rpc: &Rpc,
        store: &impl NonceHolds,
        address: Address,
        timeout: std::time::Duration,
    ) -> Result<(), SendError> {
        let from = address_text(&address);
        let _slot = self.lock(address).await;
        let pending = rpc.nonce(&address, "pending").await?;
        heal_from(rpc, store, &from, pending, timeout).await
    }

    /// Signs and sends `plan` from `key`'s address for `decision_id`: heals the address's held
    /// nonces the node no longer counts, takes the next free nonce in the store with the signed
    /// transaction, and sends it (`timeout`: how long one node call may take). The accepted
    /// transaction; [`SendError::Unclear`] when it may be out (it keeps its nonce); any other
    /// error means nothing of it is pending.
    pub async fn send(
        &self,
        rpc: &Rpc,
        store: &impl NonceHolds,
        key: &Key,
        plan: &Plan,
        decision_id: i64,
        timeout: std::time::Duration,
    ) -> Result<Signed, SendError> {
        let address = key.address();
        let from = address_text(&address);
        let _slot = self.lock(address).await;
        let mut refusals = 0;
        let mut healed = false;
        let mut bump = 0u128;
        for _ in 0..MAX_RACES {
            let pending = rpc.nonce(&address, "pending").await?;
            if !healed {
                // A held nonce that could not be restored would leave a gap below anything
                // signed now, which would wait behind it: refuse rather than sign above it.
                heal_from(rpc, store, &from, pending, timeout).await?;
                healed = true;
            }
            let nonce = next_nonce(store, &from, pending).await?;
            let signed = sign(key, &bumped(plan, bump), nonce).map_err(|_| SendError::Key)?;
            let attempt = Attempt {
                from: &from,
                nonce,
                decision_id,
                hash: hash_text(&signed.hash),
            };
            match take(store, &attempt, &signed).await? {
                Took::Taken => {}
                // Another instance took it between our read and our write: choose again.
                Took::NonceHeld => continue,
                // The very bytes of another transaction (of a refused transfer with the same
                // payment): a little more tip makes this one its own.
                Took::SameBytes => {
                    bump = next_bump(bump, decision_id);
                    continue;
                }
                Took::Abandoned => return Err(SendError::Abandoned),
            }
            match deliver(rpc, store, &attempt, signed).await {
                Delivery::Done(result) => return result,
                Delivery::NonceAhead => {
                    refusals += 1;
                    if refusals >= MAX_ATTEMPTS {
                        return Err(SendError::NonceChurn);
                    }
                }
            }
        }
        Err(SendError::NonceChurn)
    }
}

/// Heals the held nonces of `from` from the node's `pending` nonce up (see [`heal`]): a nonce
/// that stays held without the node having its transaction is [`SendError::Blocked`].
async fn heal_from(
    rpc: &Rpc,
    store: &impl NonceHolds,
    from: &str,
    pending: u64,
    timeout: std::time::Duration,
) -> Result<(), SendError> {
    let held = store
        .held(from, pending)
        .await
        .map_err(|e| SendError::Record(e.to_string()))?;
    heal(rpc, store, from, &held, timeout)
        .await
        .map_err(|nonce| SendError::Blocked { nonce })
}

/// The next free nonce of `from`: the smallest from the node's `pending` up that the store does
/// not hold.
async fn next_nonce(store: &impl NonceHolds, from: &str, pending: u64) -> Result<u64, SendError> {
    let held = store
        .held(from, pending)
        .await
        .map_err(|e| SendError::Record(e.to_string()))?;
    first_free(pending, held.iter().map(|t| t.nonce)).ok_or(SendError::Refused(RpcError::Bad {
        method: "eth_getTransactionCount",
        detail: "the address's nonces are exhausted".into(),
    }))
}

/// `plan` with `bump` more tip (and fee cap): a transaction whose bytes differ from another's.
fn bumped(plan: &Plan, bump: u128) -> Plan {
    let mut plan = plan.clone();
    plan.max_priority_fee_per_gas = plan.max_priority_fee_per_gas.saturating_add(bump);
    plan.max_fee_per_gas = plan.max_fee_per_gas.saturating_add(bump);
    plan
}

/// The next tip bump after signing met the very bytes of another transaction: seeded by the
/// decision (so repeats rarely meet again), then one more each time.
fn next_bump(bump: u128, decision_id: i64) -> u128 {
    if bump == 0 {
        1 + u128::from(decision_id.unsigned_abs() % 997)
    } else {
        bump.saturating_add(1)
    }
}

/// One signed transaction of a transfer, at its nonce.
struct Attempt<'a> {
    from: &'a str,
    nonce: u64,
    decision_id: i64,
    /// The transaction's hash as the store keeps it.
    hash: String,
}

/// Takes the attempt's nonce in the store with its signed transaction, before it is sent.
async fn take(
    store: &impl NonceHolds,
    a: &Attempt<'_>,
    signed: &Signed,
) -> Result<Took, SendError> {
    let raw = hex::encode(&signed.raw);
    let new = NewTx {
        decision_id: a.decision_id,
        tx_hash: &a.hash,
        raw: &raw,
    };
    match store.take_nonce(a.from, a.nonce, &new).await {
        Ok(t) => Ok(t),
        // The commit may have landed all the same (a connection lost during it): the
        // transaction is then recorded `signed`, which a heal would send. Marked refused (if it
        // is there), nothing is pending; if that cannot be known, it may be.
        Err(e) => Err(
            match store
                .tx_tombstone(a.from, a.nonce, a.decision_id, &a.hash)
                .await
            {
                Ok(true) => SendError::Record(e.to_string()),
                Ok(false) | Err(_) => unclear_of(&a.hash, a.nonce, e),
            },
        ),
    }
}

/// What sending one taken attempt gave.
enum Delivery {
    /// The send's end: the accepted transaction, or why it is not (or may not be) out.
    Done(Result<Signed, SendError>),
    /// The node said the nonce is ahead of it: the refusal is recorded and the nonce given
    /// back; choose another.
    NonceAhead,
}

/// Sends a taken attempt and records what the node answered.
async fn deliver(rpc: &Rpc, store: &impl NonceHolds, a: &Attempt<'_>, signed: Signed) -> Delivery {
    let (from, nonce, hash) = (a.from, a.nonce, a.hash.as_str());
    let error = match rpc.send_raw(&signed.raw).await {
        Ok(_) => {
            outcome(store, hash, TxOutcome::Accepted).await;
            return Delivery::Done(Ok(signed));
        }
        Err(e) => e,
    };
    let unclear = |error| {
        Delivery::Done(Err(SendError::Unclear {
            hash: hash.to_string(),
            nonce,
            error,
        }))
    };
    match classify(&error) {
        Refusal::AlreadyKnown => {
            outcome(store, hash, TxOutcome::Accepted).await;
            Delivery::Done(Ok(signed))
        }
        Refusal::Nonce { used: true } => {
            // Used by these very bytes (sent meanwhile by another instance's healing or a
            // status read, and mined), or by a transaction keygate did not sign. Never signed
            // again: the chain decides.
            if known(rpc, &signed.hash).await {
                outcome(store, hash, TxOutcome::Accepted).await;
                return Delivery::Done(Ok(signed));
            }
            tracing::warn!(address = %from, nonce, tx = %hash, error = %error, "the node says the nonce is used, not by this transaction as far as it knows; the transfer is left to the chain, not signed again");
            outcome(store, hash, TxOutcome::Unknown).await;
            unclear(error)
        }
        Refusal::Unclear => {
            tracing::warn!(address = %from, nonce, tx = %hash, error = %error, "no clear answer to a send: the transaction may be pending; it keeps its nonce");
            outcome(store, hash, TxOutcome::Unknown).await;
            unclear(error)
        }
        refusal @ (Refusal::Nonce { used: false } | Refusal::Refused) => {
            // Refused outright: recorded with the nonce's release in one transaction, or else
            // treated as possibly out (a refused row left `signed` could be sent again by a
            // heal).
            match store.tx_refused(from, nonce, a.decision_id, hash).await {
                Ok(true) => {}
                // Answered meanwhile: something else sent it, and a node took it.
                Ok(false) => return unclear(error),
                Err(e) => {
                    tracing::error!(address = %from, nonce, tx = %hash, error = %e, "a refused transaction could not be recorded as refused; the transfer is left to the chain");
                    return unclear(error);
                }
            }
            if refusal == Refusal::Refused {
                return Delivery::Done(Err(SendError::Refused(error)));
            }
            tracing::warn!(address = %from, nonce, error = %error, "the node says the nonce is ahead of it; choosing another");
            Delivery::NonceAhead
        }
    }
}

/// The error of a send that may have gone out.
fn unclear_of(hash: &str, nonce: u64, e: PersistError) -> SendError {
    SendError::Unclear {
        hash: hash.to_string(),
        nonce,
        error: RpcError::Bad {
            method: "eth_sendRawTransaction",
            detail: format!("the store could not say whether it was recorded ({e})"),
        },
    }
}

/// Whether the node knows a transaction (pooled or mined).
async fn known(rpc: &Rpc, hash: &B256) -> bool {
    matches!(rpc.transaction(hash).await, Ok(Some(_)))
        || matches!(rpc.receipt(hash).await, Ok(Some(_)))
}

/// Records a send's outcome; a failure leaves the row `signed`, read as "may be out": the safe
/// side for a transaction a node took or may have taken.
async fn outcome(store: &impl NonceHolds, hash: &str, outcome: TxOutcome) {
    if let Err(e) = store.tx_outcome(hash, outcome).await {
        tracing::error!(tx = %hash, error = %e, "a transaction's send outcome could not be recorded");
    }
}

/// Gives a nonce back; whether it could be (a failure leaves it held, and is logged).
async fn release(store: &impl NonceHolds, from: &str, nonce: u64, decision_id: i64) -> bool {
    match store.release_nonce(from, nonce, decision_id).await {
        Ok(_) => true,
        Err(e) => {
            tracing::error!(address = %from, nonce, error = %e, "a nonce could not be given back; it stays held");
            false
        }
    }
}

/// How long after it was signed a held transaction the node no longer has, and answers with an
/// error keygate does not know when it is sent again, gives its nonce back.
pub const RELEASE_UNKNOWN_AFTER_MS: i64 = 10 * 60_000;

/// Whether a recorded transaction was written less than twice `timeout` ago and not answered
/// yet: it is being sent right now (by this process or another), so it is not sent again.
pub fn being_sent(t: &TxRecord, now: i64, timeout: std::time::Duration) -> bool {
    let fresh_ms = i64::try_from(timeout.as_millis().saturating_mul(2)).unwrap_or(i64::MAX);
    t.outcome == TxOutcome::Signed && now.saturating_sub(t.at_ms) < fresh_ms
}

/// Sends again, byte for byte, each held transaction the node does not count (`held`: the
/// newest transaction at each held nonce from the node's pending nonce up, lowest first),
/// except one being sent right now. One the node refuses outright gives its nonce back, and so
/// does one signed more than [`RELEASE_UNKNOWN_AFTER_MS`] ago that the node answers with an
/// error keygate does not know (or that cannot be sent for another reason than an unreachable
/// node). The first nonce that stays held without the node having its transaction ends the
/// healing: `Err(nonce)` (a gap there would hold up everything above).
async fn heal(
    rpc: &Rpc,
    store: &impl NonceHolds,
    from: &str,
    held: &[TxRecord],
    timeout: std::time::Duration,
) -> Result<(), u64> {
    let now = store.now_ms();
    for t in held {
        let old = now.saturating_sub(t.at_ms) >= RELEASE_UNKNOWN_AFTER_MS;
        // Whether this nonce no longer holds up what is signed above it.
        let clear = if t.outcome == TxOutcome::Refused {
            // Every transaction at this nonce was refused (the newest live one comes first):
            // never sent again, and the nonce should have gone back with the refusal.
            release(store, from, t.nonce, t.decision_id).await
        } else if being_sent(t, now, timeout) {
            true
        } else {
            match resend(rpc, store, t).await {
                Ok(Resent::Known | Resent::Changed) => true,
                Ok(Resent::Sent) => {
                    tracing::warn!(address = %from, nonce = t.nonce, tx = %t.tx_hash, "the node no longer had a transaction of keygate's; sent the same bytes again");
                    true
                }
                Ok(Resent::Refused(e)) => {
                    tracing::warn!(alarm = "chain.nonce_released", address = %from, nonce = t.nonce, tx = %t.tx_hash, error = %e, "the node refuses a dropped transaction of keygate's; its nonce is given back (only one transaction can be mined at it)");
                    release(store, from, t.nonce, t.decision_id).await
                }
                Ok(Resent::Unknown(e)) if old => {
                    tracing::warn!(alarm = "chain.nonce_released", address = %from, nonce = t.nonce, tx = %t.tx_hash, error = %e, "a dropped transaction of keygate's signed long ago is answered with errors; its nonce is given back (only one transaction can be mined at it)");
                    release(store, from, t.nonce, t.decision_id).await
                }
                Err(e) if old && !e.unreachable() => {
                    tracing::warn!(alarm = "chain.nonce_released", address = %from, nonce = t.nonce, tx = %t.tx_hash, error = %e, "a dropped transaction of keygate's signed long ago cannot be sent again; its nonce is given back (only one transaction can be mined at it)");
                    release(store, from, t.nonce, t.decision_id).await
                }
                Ok(Resent::Unknown(e)) => {
                    tracing::warn!(address = %from, nonce = t.nonce, tx = %t.tx_hash, error = %e, "a dropped transaction could not be sent again now; it keeps its nonce");
                    false
                }
                Err(e) => {
                    tracing::warn!(address = %from, nonce = t.nonce, tx = %t.tx_hash, error = %e, "a dropped transaction could not be sent again now; it keeps its nonce");
                    false
                }
            }
        };
        if !clear {
            return Err(t.nonce);
        }
    }
    Ok(())
}

/// What sending a recorded transaction again gave.
#[derive(Debug)]
pub enum Resent {
    /// The node knows it already (pooled or mined).
    Known,
    /// The node took it again.
    Sent,
    /// The node refused it outright (or its bytes were never kept): it is in no pool here.
    Refused(String),
    /// The node answered with an error keygate does not know: it is not in this node's pool,
    /// but the error may be a proxy's.
    Unknown(String),
    /// It changed since it was read (refused by its sender, or claimed by another copy being
    /// sent): not sent from here.
    Changed,
}

/// Sends a recorded transaction again, byte for byte, unless the node knows it.
pub async fn resend(rpc: &Rpc, store: &impl NonceHolds, t: &TxRecord) -> Result<Resent, RpcError> {
    let Ok(hash) = t.tx_hash.parse::<B256>() else {
        return Ok(Resent::Refused("its hash is not readable".into()));
    };
    if rpc.transaction(&hash).await?.is_some() {
        return Ok(Resent::Known);
    }
    let Some(raw) = t.raw.as_deref().and_then(|r| hex::decode(r).ok()) else {
        return Ok(Resent::Refused(
            "its bytes were not kept (signed before keygate kept them)".into(),
        ));
    };
    // Claimed first: a sender that records a refusal from now on finds it claimed (and does
    // not give the nonce back or sign again), and one that recorded it first wins here.
    match store.tx_claim(&t.tx_hash, t.outcome, t.claims).await {
        Ok(true) => {}
        Ok(false) => return Ok(Resent::Changed),
        Err(e) => {
            tracing::warn!(tx = %t.tx_hash, error = %e, "a transaction could not be claimed for sending it again; not sent");
            return Ok(Resent::Changed);
        }
    }
    let answer = rpc.send_raw(&raw).await;
    let (outcome, result) = match answer {
        Ok(_) => (TxOutcome::Accepted, Ok(Resent::Sent)),
        Err(e) => match classify(&e) {
            Refusal::AlreadyKnown => (TxOutcome::Accepted, Ok(Resent::Known)),
            // Its nonce is used: mined (the receipt says whose) or taken by another
            // transaction; either way nothing is to be given back or sent.
            Refusal::Nonce { used: true } => return Ok(Resent::Known),
            // The node answered with an error: it does not hold the transaction. (Only its nonce
            // is given back, never the transfer signed again, so this cannot pay twice.)
            Refusal::Nonce { used: false } | Refusal::Refused => {
                return Ok(Resent::Refused(e.to_string()));
            }
            Refusal::Unclear if matches!(e, RpcError::Node { .. }) => {
                return Ok(Resent::Unknown(e.to_string()));
            }
            Refusal::Unclear => return Err(e),
        },
    };
    if let Err(e) = store.tx_outcome(&t.tx_hash, outcome).await {
        tracing::error!(tx = %t.tx_hash, error = %e, "a transaction's send outcome could not be recorded");
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(msg: &str) -> RpcError {
        RpcError::Node {
            method: "eth_sendRawTransaction",
            code: -32000,
            message: msg.into(),
        }
    }

    #[test]
    fn classifies_the_nodes_wordings() {
        assert_eq!(
            classify(&node("nonce too low")),
            Refusal::Nonce { used: true }
        );
        assert_eq!(
            classify(&node("Nonce too high. Expected nonce to be 3 but got 9")),
            Refusal::Nonce { used: false }
        );
        assert_eq!(
            classify(&node("replacement transaction underpriced")),
            Refusal::Nonce { used: true }
        );
        assert_eq!(classify(&node("already known")), Refusal::AlreadyKnown);
        // Whole words: an unknown transaction is not a known one.
        assert_eq!(
            classify(&node("unknown transaction type")),
            Refusal::Unclear
        );
        // Other clients' wordings.
        assert_eq!(classify(&node("AlreadyKnown")), Refusal::AlreadyKnown);
        assert_eq!(
            classify(&node("could not replace existing tx")),
            Refusal::Nonce { used: true }
        );
        assert_eq!(classify(&node("FeeTooLowToCompete")), Refusal::Refused);
        assert_eq!(
            classify(&node("InsufficientFunds, Account balance: 0")),
            Refusal::Refused
        );
        assert_eq!(
            classify(&node("transaction gas price below minimum: gas tip cap 1")),
            Refusal::Refused
        );
        assert_eq!(classify(&node("fee too low")), Refusal::Refused);
        assert_eq!(
            classify(&node("insufficient funds for gas * price + value")),
            Refusal::Refused
        );
        assert_eq!(
            classify(&node("max fee per gas less than block base fee")),
            Refusal::Refused
        );
        // A proxy's or an unknown error may hide a transaction that went out.
        assert_eq!(
            classify(&node("upstream request timeout")),
            Refusal::Unclear
        );
        assert_eq!(
            classify(&RpcError::Unreachable {
                url: "x".into(),
                reason: "timed out"
            }),
            Refusal::Unclear
        );
        assert_eq!(
            classify(&RpcError::Bad {
                method: "eth_sendRawTransaction",
                detail: "HTTP 502, not JSON".into()
            }),
            Refusal::Unclear
        );
    }

    #[tokio::test]
    async fn a_send_that_could_not_connect_was_not_delivered() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .unwrap();
        let rpc = Rpc::new(
            &format!("http://127.0.0.1:{port}"),
            std::time::Duration::from_secs(2),
        )
        .unwrap();
        let e = rpc.send_raw(&[0x02]).await.unwrap_err();
        assert!(e.not_delivered(), "{e}");
        assert_eq!(classify(&e), Refusal::Refused);
    }

    #[test]
    fn the_first_free_nonce_skips_held_ones() {
        assert_eq!(first_free(5, []), Some(5));
        assert_eq!(first_free(5, [5, 6, 8]), Some(7));
        assert_eq!(first_free(5, [6, 7]), Some(5));
        assert_eq!(first_free(u64::MAX, [u64::MAX]), None);
    }
}
