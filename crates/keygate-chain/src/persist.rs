//! What keygate-chain needs of persistence, as traits it owns, grouped by job: the watcher's
//! checkpoint ([`Checkpoints`]), the judgement of outflows ([`Outflows`]), audited alarms with
//! their containment freeze ([`Alarms`]), the nonces held per signing address with the
//! transactions signed at them ([`NonceHolds`]) and the transfers' records
//! ([`TransferRecords`]); [`Clock`] is the time they all read. The types that cross these traits
//! are defined here too.
//!
//! This module must not know how or where anything is kept: no SQL, no `keygate_store`. The one
//! implementation for keygate's store is [`crate::adapter`]. Each method returns a `Send`
//! future, so a watcher or a transfer over any implementation can run on a spawned task.

use std::future::Future;

use keygate_core::book::Destination;
use keygate_core::freeze::Scope;
use keygate_core::outflow::Outflow;

/// Why persistence failed: the store's own error, shown as it is.
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub struct PersistError(Box<dyn std::error::Error + Send + Sync + 'static>);

impl PersistError {
    pub fn new(e: impl std::error::Error + Send + Sync + 'static) -> Self {
        Self(Box::new(e))
    }
}

/// What a result of persistence is.
pub type Persisted<T> = Result<T, PersistError>;

/// The time, in milliseconds since the Unix epoch, as the store keeps it (it may be simulated).
pub trait Clock: Send + Sync {
    fn now_ms(&self) -> i64;
}

/// The watcher's checkpoint: one text per key.
pub trait Checkpoints: Send + Sync {
    fn checkpoint(&self, key: &str) -> impl Future<Output = Persisted<Option<String>>> + Send;
    fn set_checkpoint(&self, key: &str, text: &str) -> impl Future<Output = Persisted<()>> + Send;
}

/// What became of one outflow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reconciled {
    /// Seen before; nothing was written.
    Known,
    /// Explained by an allowed decision.
    Matched { decision_id: i64, audit_id: i64 },
    /// Explained by nothing keygate allowed: the audit entry of the alarm, and the freeze it
    /// set (if containment asks for one).
    Unapproved {
        audit_id: i64,
        freeze_id: Option<i64>,
    },
}

/// The judgement of outflows: what keygate signed, what was judged, the address book.
pub trait Outflows: Clock {
    /// Whether keygate signed the transaction with this hash (`0x` and 64 hex digits).
    fn signed_by_keygate(&self, tx_hash: &str) -> impl Future<Output = Persisted<bool>> + Send;
    /// Whether keygate signed the transaction with this hash for a rescue (a sweep to the
    /// venue's rescue address: not an outflow to judge).
    fn rescue_tx(&self, tx_hash: &str) -> impl Future<Output = Persisted<bool>> + Send;
    /// Whether an outflow with this id was judged already at `venue`.
    fn outflow_known(&self, venue: &str, id: &str) -> impl Future<Output = Persisted<bool>> + Send;
    /// The address book's entries (every venue, not removed).
    fn destinations(&self) -> impl Future<Output = Persisted<Vec<Destination>>> + Send;
    /// Judges one outflow in one transaction: matched to the allowed decision that explains
    /// it, or recorded as unapproved with the freeze of `contain`.
    fn reconcile(
        &self,
        outflow: &Outflow,
        contain: Option<&Scope>,
    ) -> impl Future<Output = Persisted<Reconciled>> + Send;
}

/// An audited alarm to record.
#[derive(Debug, Clone)]
pub struct Alarm<'a> {
    /// The audit event, such as `chain.nonce_gap`.
    pub event: &'a str,
    pub actor: &'a str,
    pub reason: &'a str,
    pub details: serde_json::Value,
    /// The freeze to set with it, in the same transaction.
    pub contain: Option<&'a Scope>,
}

/// What recording an alarm wrote: its audit entry and the freeze (if one was asked for).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Alarmed {
    pub audit_id: i64,
    pub freeze_id: Option<i64>,
}

/// Audited alarms, with the containment freeze.
pub trait Alarms: Send + Sync {
    fn record_alarm(&self, alarm: Alarm<'_>) -> impl Future<Output = Persisted<Alarmed>> + Send;
}

/// Everything a watcher writes and reads.
pub trait WatchStore: Checkpoints + Outflows + Alarms + 'static {}

impl<T: Checkpoints + Outflows + Alarms + 'static> WatchStore for T {}

/// What a node answered when a signed transaction was sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TxOutcome {
    /// Recorded, not yet answered (a crash here leaves it possibly out).
    Signed,
    /// In the node's pool (or already mined).
    Accepted,
    /// Refused outright: it is in no pool and can never be mined unless sent again.
    Refused,
    /// No clear answer: it may be out.
    Unknown,
}

/// One transaction signed for a transfer, as recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxRecord {
    /// `0x` and 64 hex digits.
    pub tx_hash: String,
    pub decision_id: i64,
    pub nonce: u64,
    /// The signed bytes, hex without 0x (None for transactions from before they were kept).
    pub raw: Option<String>,
    pub outcome: TxOutcome,
    pub at_ms: i64,
    /// How many times it was claimed for sending it again.
    pub claims: i64,
}

impl TxRecord {
    /// Whether this transaction may be (or have been) in a node's pool, so may still be mined.
    pub fn maybe_out(&self) -> bool {
        self.outcome != TxOutcome::Refused
    }
}

/// A transaction signed for a transfer, about to be sent.
#[derive(Debug, Clone)]
pub struct NewTx<'a> {
    pub decision_id: i64,
    pub tx_hash: &'a str,
    /// The signed bytes, hex without 0x.
    pub raw: &'a str,
}

/// What taking a nonce gave.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Took {
    /// Taken, and the transaction recorded.
    Taken,
    /// Another transfer (or instance) holds the nonce.
    NonceHeld,
    /// Another recorded transaction has the very same bytes (signing is deterministic): sign
    /// something different.
    SameBytes,
    /// The transfer was given up: send nothing.
    Abandoned,
}

/// The nonces held per signing address (`from`: `0x` and 40 lower-case hex digits), each taken
/// with the transaction signed at it. See the store's methods of the same job for the rules
/// each keeps (unique per address, compare-and-set on what was read).
pub trait NonceHolds: Clock {
    /// The nonces of `from` held from `min` up, each with the newest transaction signed at it
    /// that may be out (or, when every one was refused, the newest refused one), lowest first.
    fn held(&self, from: &str, min: u64) -> impl Future<Output = Persisted<Vec<TxRecord>>> + Send;
    /// Takes `nonce` of `from` and records `tx` signed at it, in one transaction.
    fn take_nonce(
        &self,
        from: &str,
        nonce: u64,
        tx: &NewTx<'_>,
    ) -> impl Future<Output = Persisted<Took>> + Send;
    /// Records a refusal outright and gives the nonce back, only while the transaction is
    /// still unanswered and unclaimed; whether it did.
    fn tx_refused(
        &self,
        from: &str,
        nonce: u64,
        decision_id: i64,
        tx_hash: &str,
    ) -> impl Future<Output = Persisted<bool>> + Send;
    /// After a failed take: writes the transaction refused (whether or not the take landed)
    /// and gives the nonce back; false if it was answered meanwhile.
    fn tx_tombstone(
        &self,
        from: &str,
        nonce: u64,
        decision_id: i64,
        tx_hash: &str,
    ) -> impl Future<Output = Persisted<bool>> + Send;
    /// Claims a recorded transaction for sending it again, only if it is still as read.
    fn tx_claim(
        &self,
        tx_hash: &str,
        seen_outcome: TxOutcome,
        seen_claims: i64,
    ) -> impl Future<Output = Persisted<bool>> + Send;
    /// Records what the node answered to a signed transaction (a refusal stands).
    fn tx_outcome(
        &self,
        tx_hash: &str,
        outcome: TxOutcome,
    ) -> impl Future<Output = Persisted<()>> + Send;
    /// Gives `nonce` of `from` back, if `decision_id` holds it; whether it did.
    fn release_nonce(
        &self,
        from: &str,
        nonce: u64,
        decision_id: i64,
    ) -> impl Future<Output = Persisted<bool>> + Send;
}

/// How a transfer's sending ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransferState {
    /// A node accepted a transaction.
    Sent,
    /// No clear answer: a transaction may be out.
    Unknown,
    /// Every transaction was refused outright: nothing can be mined.
    Refused,
}

/// A transfer about to be signed.
#[derive(Debug, Clone)]
pub struct NewTransfer<'a> {
    pub decision_id: i64,
    pub venue: &'a str,
    pub client: &'a str,
    pub client_ref: &'a str,
    pub asset: &'a str,
    /// Decimal text in token units.
    pub amount: &'a str,
    pub destination: &'a str,
    pub from_address: &'a str,
    pub at_ms: i64,
}

/// A recorded transfer, as far as reading its state needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransferRecord {
    pub decision_id: i64,
    pub from_address: String,
    /// The transaction a node accepted last (or that may be pending).
    pub tx_hash: Option<String>,
    /// Whether it is still being signed and sent (nothing answered yet).
    pub signing: bool,
    pub error: Option<String>,
    pub at_ms: i64,
    /// How many transactions took a nonce for it.
    pub attempts: i64,
}

/// The transfers' records.
pub trait TransferRecords: NonceHolds {
    /// Records a transfer about to be signed (state `signing`).
    fn begin_transfer(&self, t: &NewTransfer<'_>) -> impl Future<Output = Persisted<()>> + Send;
    /// Records how sending ended: its state, the transaction (hash, nonce) a node accepted or
    /// that may be pending, and the error when it was not accepted.
    fn transfer_done(
        &self,
        decision_id: i64,
        state: TransferState,
        tx: Option<(&str, u64)>,
        error: Option<&str>,
    ) -> impl Future<Output = Persisted<()>> + Send;
    /// Gives up a transfer still `signing` whose attempts are still `seen`, recording `error`;
    /// whether it did.
    fn abandon_transfer(
        &self,
        decision_id: i64,
        seen: i64,
        error: &str,
    ) -> impl Future<Output = Persisted<bool>> + Send;
}

/// A transaction of a rescue, as recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RescueTx {
    pub nonce: u64,
    pub rung: u32,
    /// ETH or a token symbol.
    pub asset: String,
    /// Integer units, decimal text.
    pub units: String,
    pub gas: u64,
    /// Wei.
    pub max_fee: u128,
    pub tip: u128,
    /// `0x` and 64 hex digits.
    pub tx_hash: String,
    /// Hex without 0x.
    pub raw: String,
    /// The node's newest block when it was signed.
    pub block: u64,
    pub state: RescueTxState,
}

/// Where a rescue transaction stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RescueTxState {
    /// Recorded; it may or may not have been sent.
    Signed,
    /// A node took it.
    Sent,
    /// No clear answer: it may be in a pool.
    Unknown,
    /// Every node refused it (it may still be sent again: a refusal for its nonce is read from
    /// the chain, never taken as final).
    Refused,
    /// In a block. Final.
    Mined,
    /// Another rung of the same nonce is in a block. Final.
    Replaced,
    /// Another transaction (the thief's) used its nonce. Final.
    Lost,
}

impl RescueTxState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Signed => "signed",
            Self::Sent => "sent",
            Self::Unknown => "unknown",
            Self::Refused => "refused",
            Self::Mined => "mined",
            Self::Replaced => "replaced",
            Self::Lost => "lost",
        }
    }

    /// The state a stored text names; anything else reads as `unknown` (it may be out).
    pub fn parse(s: &str) -> Self {
        [
            Self::Signed,
            Self::Sent,
            Self::Refused,
            Self::Mined,
            Self::Replaced,
            Self::Lost,
        ]
        .into_iter()
        .find(|st| st.as_str() == s)
        .unwrap_or(Self::Unknown)
    }

    pub fn is_final(self) -> bool {
        matches!(self, Self::Mined | Self::Replaced | Self::Lost)
    }
}

/// An open rescue, as recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RescueRecord {
    pub id: i64,
    pub venue: String,
    pub from_address: String,
    pub rescue_to: String,
    pub reason: String,
    /// By nonce, then rung.
    pub txs: Vec<RescueTx>,
}

/// The rescues' records. See the store's methods of the same job for the rules each keeps.
pub trait Rescues: Clock + Outflows + Alarms + 'static {
    /// Starts a rescue, or gives the venue's open one: (id, newly started).
    fn rescue_start(
        &self,
        venue: &str,
        from: &str,
        to: &str,
        reason: &str,
        actor: &str,
    ) -> impl Future<Output = Persisted<(i64, bool)>> + Send;
    /// The venue's open rescue.
    fn rescue_open(
        &self,
        venue: &str,
    ) -> impl Future<Output = Persisted<Option<RescueRecord>>> + Send;
    /// Records a rescue transaction before it is sent; false if its nonce and rung are taken.
    fn rescue_signed(
        &self,
        rescue_id: i64,
        tx: &RescueTx,
        actor: &str,
    ) -> impl Future<Output = Persisted<bool>> + Send;
    /// Records what became of a rescue transaction; false if nothing changed.
    fn rescue_tx_state(
        &self,
        tx_hash: &str,
        state: RescueTxState,
        detail: &str,
        actor: &str,
    ) -> impl Future<Output = Persisted<bool>> + Send;
    /// Closes a rescue.
    fn rescue_done(
        &self,
        rescue_id: i64,
        outcome: &str,
        actor: &str,
    ) -> impl Future<Output = Persisted<bool>> + Send;
    /// USD prices per whole unit, by asset.
    fn usd_prices(
        &self,
    ) -> impl Future<Output = Persisted<Vec<(String, rust_decimal::Decimal)>>> + Send;
}
