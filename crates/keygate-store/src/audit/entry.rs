//! Audit entries as types: what each kind of entry records, written from and read back as the
//! same type. keygate-store owns them because it owns the log's format and its hash chain: the
//! bytes these types serialise to are the bytes that are hashed, so a field's name, order or
//! presence must never change (existing logs must still verify). Fields are declared in the
//! order today's entries hold them (serde_json keeps insertion order in this workspace, its
//! `preserve_order` feature being on; a struct serialises in declaration order either way), and
//! the tests below prove each kind's bytes equal the old `json!` construction's.
//!
//! Fields borrow (`Cow`) so writing an entry copies nothing; read back, they are owned. Kinds
//! not typed yet are read as [`AuditEntry::Other`]. This module knows nothing of SQL.

use std::borrow::Cow;
use std::net::IpAddr;

use keygate_core::auth::AuthError;
use keygate_core::decide::Stage;
use keygate_core::detect::Signal;
use keygate_core::freeze::Scope;
use keygate_core::limits::Move;
use keygate_core::outflow::Outflow;
use keygate_core::venue_order::VenueOrder;
use keygate_core::{Action, Intent, LimitCheck, Millis, Outcome};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::StoreError;

/// One audit entry's content (its `kind` and `data`), by kind.
// Not boxed: an entry is built, serialised and dropped at once (a decision's carries its intent,
// order included); a box would be one more allocation per decision.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum AuditEntry<'a> {
    /// `decision`: a request decided.
    Decision(DecisionEntry<'a>),
    /// `auth`: a token event, tagged by `event`.
    Auth(AuthEvent<'a>),
    /// `request`: a request refused before a decision.
    Request(RequestRefused<'a>),
    /// `freeze`: a freeze set or lifted, tagged by `event`.
    Freeze(FreezeEvent<'a>),
    /// `alarm`: a watcher that lost track of a chain.
    Alarm(Alarm<'a>),
    /// `reconcile`: how an outflow a venue reported was judged, tagged by `event`.
    Reconcile(ReconcileEvent<'a>),
    /// `containment`: containment at a venue started, a step's attempt and its outcome, or all
    /// done, tagged by `event`.
    Containment(ContainmentEvent<'a>),
    /// `rescue`: a sweep of an EVM treasury to its rescue address started, a transaction of it
    /// signed, what became of one, or all done, tagged by `event`.
    Rescue(RescueEvent<'a>),
    /// Any other kind, as stored (kinds not typed yet).
    Other {
        kind: String,
        data: serde_json::Value,
    },
}

impl AuditEntry<'_> {
    /// The entry's `kind`, as the log's `kind` column holds it.
    pub fn kind(&self) -> Cow<'static, str> {
        match self {
            AuditEntry::Decision(_) => Cow::Borrowed("decision"),
            AuditEntry::Auth(_) => Cow::Borrowed("auth"),
            AuditEntry::Request(_) => Cow::Borrowed("request"),
            AuditEntry::Freeze(_) => Cow::Borrowed("freeze"),
            AuditEntry::Alarm(_) => Cow::Borrowed("alarm"),
            AuditEntry::Reconcile(_) => Cow::Borrowed("reconcile"),
            AuditEntry::Containment(_) => Cow::Borrowed("containment"),
            AuditEntry::Rescue(_) => Cow::Borrowed("rescue"),
            AuditEntry::Other { kind, .. } => Cow::Owned(kind.clone()),
        }
    }

    /// The entry's `data`, serialised: the bytes the chain hashes.
    pub fn data(&self) -> Result<Box<RawValue>, serde_json::Error> {
        match self {
            AuditEntry::Decision(d) => serde_json::value::to_raw_value(d),
            AuditEntry::Auth(a) => serde_json::value::to_raw_value(a),
            AuditEntry::Request(r) => serde_json::value::to_raw_value(r),
            AuditEntry::Freeze(f) => serde_json::value::to_raw_value(f),
            AuditEntry::Alarm(a) => serde_json::value::to_raw_value(a),
            AuditEntry::Reconcile(r) => serde_json::value::to_raw_value(r),
            AuditEntry::Containment(c) => serde_json::value::to_raw_value(c),
            AuditEntry::Rescue(r) => serde_json::value::to_raw_value(r),
            AuditEntry::Other { data, .. } => serde_json::value::to_raw_value(data),
        }
    }

    /// Reads an entry from its canonical JSON (the log's `entry` column).
    pub fn from_canonical(entry: &str) -> Result<AuditEntry<'static>, serde_json::Error> {
        let c: Canonical<'_> = serde_json::from_str(entry)?;
        AuditEntry::parse(c.kind, c.data.get())
    }

    /// Reads an entry of `kind` from its stored `data`.
    pub fn parse(kind: &str, data: &str) -> Result<AuditEntry<'static>, serde_json::Error> {
        Ok(match kind {
            "decision" => AuditEntry::Decision(serde_json::from_str(data)?),
            "auth" => AuditEntry::Auth(serde_json::from_str(data)?),
            "request" => AuditEntry::Request(serde_json::from_str(data)?),
            "freeze" => AuditEntry::Freeze(serde_json::from_str(data)?),
            "alarm" => AuditEntry::Alarm(serde_json::from_str(data)?),
            "reconcile" => AuditEntry::Reconcile(serde_json::from_str(data)?),
            "containment" => AuditEntry::Containment(serde_json::from_str(data)?),
            "rescue" => AuditEntry::Rescue(serde_json::from_str(data)?),
            _ => AuditEntry::Other {
                kind: kind.to_string(),
                data: serde_json::from_str(data)?,
            },
        })
    }
}

/// What a decision's entry records (besides its debit, which has columns of its own).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DecisionEntry<'a> {
    pub intent: Cow<'a, Intent>,
    pub outcome: Outcome,
    pub stage: Stage,
    pub reasons: Cow<'a, [String]>,
    pub policies: Cow<'a, [String]>,
    pub limits: Cow<'a, [LimitCheck]>,
    pub usd_value_cents: Option<i64>,
    pub signals: Cow<'a, [String]>,
    pub approvals: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request: Option<RequestInfo<'a>>,
    #[serde(default, skip_serializing_if = "no_detections")]
    pub detections: Cow<'a, [Signal]>,
}

fn no_detections(d: &[Signal]) -> bool {
    d.is_empty()
}

/// The HTTP request a gateway decision came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestInfo<'a> {
    pub method: Cow<'a, str>,
    pub path: Cow<'a, str>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<Cow<'a, str>>,
    /// The client id the venue will report for this request, when it is the request id (else
    /// a withdrawal carries keygate's own, `kg` and the decision's number).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub venue_ref: Option<Cow<'a, str>>,
    /// A held decision's request as keygate would forward it (before signing): what its hold
    /// binds and approvers are shown. Absent for every other decision.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_text: Option<Cow<'a, str>>,
}

/// A token event (kind `auth`), tagged by its `event`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event")]
pub enum AuthEvent<'a> {
    #[serde(rename = "token.refused")]
    TokenRefused(TokenRefused<'a>),
}

/// A refused token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenRefused<'a> {
    /// The error's code ([`AuthError::code`]).
    pub error: Cow<'a, str>,
    pub detail: Cow<'a, AuthError>,
    pub message: String,
    pub venue: Cow<'a, str>,
    pub action: Option<Action>,
    pub source_ip: IpAddr,
    pub method: Option<Cow<'a, str>>,
    pub path: Option<Cow<'a, str>>,
}

/// A request refused before a decision (kind `request`); `event` says why, as
/// `keygate_core::admit` names it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestRefused<'a> {
    pub event: Cow<'a, str>,
    pub reason: Cow<'a, str>,
    pub venue: Cow<'a, str>,
    pub method: Cow<'a, str>,
    pub path: Cow<'a, str>,
    pub request_id: Option<Cow<'a, str>>,
    pub token_id: Cow<'a, str>,
    pub source_ip: IpAddr,
}

/// An entry to append: what happened, who did it, when.
#[derive(Debug, Clone)]
pub struct NewEntry {
    /// `decision`, `admin`, `auth`, … (see [`AuditEntry::kind`]).
    pub kind: Cow<'static, str>,
    pub actor: String,
    pub at_ms: Millis,
    /// The entry's JSON object, already serialised (see [`NewEntry::data`]).
    pub data: Box<RawValue>,
    /// An allowed decision's debit, counted by the limits.
    pub debit: Option<Move>,
}

impl NewEntry {
    /// The entry that records `entry`: its kind, and its data serialised from the typed value.
    pub fn new(actor: String, at_ms: Millis, entry: &AuditEntry<'_>, debit: Option<Move>) -> Self {
        NewEntry {
            kind: entry.kind(),
            actor,
            at_ms,
            data: entry.data().unwrap_or_else(|e| unserialisable(&e)),
            debit,
        }
    }

    /// Serialises `data` for an entry of a kind not typed yet; a value that cannot be
    /// serialised is recorded as an error string rather than lost.
    pub fn data(data: &impl Serialize) -> Box<RawValue> {
        serde_json::value::to_raw_value(data).unwrap_or_else(|e| unserialisable(&e))
    }
}

/// What is recorded for an entry whose data cannot be serialised.
fn unserialisable(e: &serde_json::Error) -> Box<RawValue> {
    serde_json::value::to_raw_value(&format!("unserialisable entry: {e}"))
        .unwrap_or_else(|_| RawValue::from_string("null".into()).unwrap_or_default())
}

/// The canonical form that is hashed, and stored as `entry`.
#[derive(Serialize, Deserialize)]
pub(super) struct Canonical<'a> {
    pub seq: i64,
    pub at_ms: Millis,
    pub kind: &'a str,
    pub actor: &'a str,
    #[serde(borrow)]
    pub data: &'a RawValue,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub debit: Option<Move>,
}

/// A freeze set or lifted (kind `freeze`), tagged by its `event`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event")]
pub enum FreezeEvent<'a> {
    #[serde(rename = "freeze.set")]
    Set {
        freeze_id: i64,
        scope: Cow<'a, Scope>,
        reason: Cow<'a, str>,
    },
    /// Lifted by a quorum of approvers.
    #[serde(rename = "freeze.lifted")]
    Lifted {
        freeze_id: i64,
        scope: Cow<'a, Scope>,
        approvers: Cow<'a, [String]>,
    },
}

/// A watcher's alarm (kind `alarm`): `event` names what it lost track of.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Alarm<'a> {
    pub event: Cow<'a, str>,
    pub severity: Cow<'a, str>,
    pub reason: Cow<'a, str>,
    /// What the watcher reports, as it reports it.
    pub details: serde_json::Value,
}

/// How an outflow a venue or chain reported was judged (kind `reconcile`), tagged by `event`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event")]
pub enum ReconcileEvent<'a> {
    /// An allowed decision accounts for it.
    #[serde(rename = "outflow.matched")]
    Matched {
        outflow: Cow<'a, Outflow>,
        decision_id: i64,
    },
    /// No decision allowed it.
    #[serde(rename = "outflow.unapproved")]
    Unapproved {
        severity: Cow<'a, str>,
        outflow: Cow<'a, Outflow>,
        reason: String,
    },
    /// An order in the venue's history that an allowed trade decision accounts for.
    #[serde(rename = "order.matched")]
    OrderMatched {
        order: Cow<'a, VenueOrder>,
        decision_id: i64,
    },
    /// An order in the venue's history that no decision of keygate's forwarded: the key was
    /// used around keygate.
    #[serde(rename = "order.unapproved")]
    OrderUnapproved {
        severity: Cow<'a, str>,
        order: Cow<'a, VenueOrder>,
        reason: String,
    },
}

/// Containment at a venue (kind `containment`), tagged by `event`. Steps are named by their
/// containment and sequence number; `params` is the step's JSON as stored (addresses, assets and
/// amounts, never a key or secret).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event")]
pub enum ContainmentEvent<'a> {
    /// A freeze covers the venue: containment starts with these steps.
    #[serde(rename = "containment.started")]
    Started {
        containment_id: i64,
        venue: Cow<'a, str>,
        freeze_id: i64,
        steps: Vec<PlannedStep<'a>>,
    },
    /// One attempt at a step, and what the venue's answer (or its absence) came to.
    #[serde(rename = "containment.step")]
    Step(StepAttempt<'a>),
    /// Every step is final.
    #[serde(rename = "containment.done")]
    Done {
        containment_id: i64,
        venue: Cow<'a, str>,
    },
}

/// A step as planned.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlannedStep<'a> {
    pub seq: i64,
    pub action: Cow<'a, str>,
    pub params: serde_json::Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<Cow<'a, str>>,
}

/// One attempt at a containment step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepAttempt<'a> {
    pub containment_id: i64,
    pub venue: Cow<'a, str>,
    pub seq: i64,
    pub action: Cow<'a, str>,
    pub attempt: i64,
    /// What the answer said: confirmed, pending, refused, limited, unknown or absent.
    pub outcome: Cow<'a, str>,
    /// The step's state after it.
    pub state: Cow<'a, str>,
    pub detail: Cow<'a, str>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub venue_ref: Option<Cow<'a, str>>,
    /// Steps this attempt planned (a sweep round's sweeps).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub planned: Vec<PlannedStep<'a>>,
}

/// A rescue of an EVM treasury (kind `rescue`), tagged by `event`. Amounts are integer units
/// and fees wei, as decimal text; never a key or signed bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event")]
pub enum RescueEvent<'a> {
    /// The treasury `from` is being swept to `to`, because of `reason`.
    #[serde(rename = "rescue.started")]
    Started {
        rescue_id: i64,
        venue: Cow<'a, str>,
        from: Cow<'a, str>,
        to: Cow<'a, str>,
        reason: Cow<'a, str>,
    },
    /// A transaction of the sweep, recorded before it is sent.
    #[serde(rename = "rescue.signed")]
    Signed {
        rescue_id: i64,
        venue: Cow<'a, str>,
        nonce: i64,
        rung: i64,
        asset: Cow<'a, str>,
        units: Cow<'a, str>,
        max_fee: Cow<'a, str>,
        tip: Cow<'a, str>,
        tx_hash: Cow<'a, str>,
    },
    /// What became of a transaction of the sweep: sent, unknown, refused, mined, replaced, lost.
    #[serde(rename = "rescue.tx")]
    Tx {
        rescue_id: i64,
        venue: Cow<'a, str>,
        tx_hash: Cow<'a, str>,
        state: Cow<'a, str>,
        detail: Cow<'a, str>,
    },
    /// Every nonce of the sweep is mined and nothing is left to sweep.
    #[serde(rename = "rescue.done")]
    Done {
        rescue_id: i64,
        venue: Cow<'a, str>,
        outcome: Cow<'a, str>,
    },
}

/// A stored entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuditRow {
    pub seq: i64,
    pub at_ms: Millis,
    pub kind: String,
    pub actor: String,
    /// The canonical JSON that was hashed.
    pub entry: String,
    pub prev_hash: String,
    pub hash: String,
    #[serde(skip)]
    pub debit: Option<Move>,
}

impl AuditRow {
    /// The entry's `data`, parsed untyped (for kinds not typed yet).
    pub fn data(&self) -> serde_json::Value {
        serde_json::from_str::<serde_json::Value>(&self.entry)
            .ok()
            .and_then(|v| v.get("data").cloned())
            .unwrap_or(serde_json::Value::Null)
    }

    /// The entry's content, typed: its `kind` column and the `data` of its canonical JSON.
    pub fn entry(&self) -> Result<AuditEntry<'static>, StoreError> {
        /// The canonical JSON's `data`, the rest ignored.
        #[derive(Deserialize)]
        struct Data<'a> {
            #[serde(borrow)]
            data: &'a RawValue,
        }
        serde_json::from_str::<Data<'_>>(&self.entry)
            .and_then(|d| AuditEntry::parse(&self.kind, d.data.get()))
            .map_err(|e| {
                StoreError::Corrupt(format!("audit entry {} cannot be read: {e}", self.seq))
            })
    }
}

#[cfg(test)]
mod tests;
