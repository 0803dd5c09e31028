//! Containment by hand and the signed approvals that lift it: freeze a scope, list freezes,
//! approve a subject (freeze:ID, hold:ID or address:ID) with an approver key, list held
//! requests, make an approver key. What an approval would approve is described, and checked
//! against the audit log, before it is signed: for a hold, the intent and the full request
//! keygate will forward if it is carried out (its method, path and every parameter, before
//! signing: no key or signature is in it).

use std::path::Path;

use keygate_config::StateHandle;
use keygate_config::engine::{approval_policy, duration};
use keygate_core::Millis;
use keygate_core::freeze::{Scope, Subject, approval_message};
use keygate_store::audit::{AuditEntry, Verifier};
use keygate_store::freeze::{Approved, FreezeRow, HoldRow};
use keygate_vault::ApproverKey;

use crate::checkpoint::checkpoint_if_due;
use crate::error::{AdminError, Result, bail, invalid, io};

/// Ed25519 signatures, as the vault checks them.
struct Ed25519;

impl Verifier for Ed25519 {
    fn verify(
        &self,
        public_key: &str,
        message: &[u8],
        signature: &str,
    ) -> std::result::Result<(), String> {
        keygate_vault::verify_signature(public_key, message, signature)
    }
}

/// A freeze as set: its id and audit entry.
#[derive(Debug, Clone, Copy)]
pub struct SetFreeze {
    pub id: i64,
    pub seq: i64,
}

/// Freezes `target` (all, client:NAME, venue:NAME, credential:ID) from the next decision of
/// every instance, for `reason`.
pub async fn freeze(
    h: &StateHandle,
    actor: &str,
    target: &str,
    reason: Option<&str>,
    now: Millis,
) -> Result<(Scope, SetFreeze)> {
    let scope: Scope = target.parse().map_err(invalid)?;
    let Some(reason) = reason.filter(|r| !r.trim().is_empty()) else {
        bail!("say why with --reason; it is shown with every decision the freeze denies");
    };
    if reason.len() > 500 {
        bail!("--reason is limited to 500 characters");
    }
    let (id, seq) = h.store.freeze(&scope, reason, actor, now).await?;
    checkpoint_if_due(h).await;
    Ok((scope, SetFreeze { id, seq }))
}

/// Freezes in force (with `all`: lifted ones too).
pub async fn freezes(h: &StateHandle, all: bool) -> Result<Vec<FreezeRow>> {
    Ok(h.store.freezes(all).await?)
}

/// An approval ready to be signed: the subject, described for the approver, and the key.
pub struct PendingApproval {
    pub subject_id: String,
    pub subject: Subject,
    /// What is being approved, in words.
    pub description: String,
    key: ApproverKey,
    public: String,
    ttl: Millis,
}

/// Reads the approver key, checks it is a configured approver and the lifetime is allowed,
/// and describes what `subject` (freeze:ID, hold:ID or address:ID) would approve.
pub async fn prepare_approval(
    h: &StateHandle,
    subject: &str,
    key_file: &Path,
    ttl: &str,
    now: Millis,
) -> Result<PendingApproval> {
    let policy = approval_policy(&h.config)?;
    let key = ApproverKey::read_file(key_file)?;
    let public = key.public_hex();
    if !policy.is_approver(&public) {
        bail!(
            "the key in {} (public key {public}) is not listed in approvals.approvers of the config",
            key_file.display()
        );
    }
    let ttl = duration("--ttl", ttl)?;
    if ttl <= 0 || ttl > policy.max_validity {
        bail!(
            "--ttl must be positive and at most approvals.max_validity ({})",
            h.config.approvals.max_validity
        );
    }
    let found = h.store.approval_subject(subject, now).await?;
    let description = describe(h, &found).await?;
    Ok(PendingApproval {
        subject_id: subject.to_string(),
        subject: found,
        description,
        key,
        public,
        ttl,
    })
}

/// An approval as counted, and until when it is valid.
pub struct Approval {
    pub outcome: Approved,
    pub expires_at: Millis,
}

/// Signs and submits a prepared approval; a quorum lifts the freeze, lets the held request
/// through, or approves the address.
pub async fn approve(h: &StateHandle, p: PendingApproval, now: Millis) -> Result<Approval> {
    let policy = approval_policy(&h.config)?;
    let expires_at = now + p.ttl;
    let signature = p.key.sign_hex(&approval_message(&p.subject, expires_at));
    let outcome = h
        .store
        .approve(
            &p.subject_id,
            &p.public,
            &signature,
            expires_at,
            &policy,
            &Ed25519,
            now,
        )
        .await?;
    checkpoint_if_due(h).await;
    Ok(Approval {
        outcome,
        expires_at,
    })
}

/// What an approval would approve, in words, checked against the audit log for a hold.
async fn describe(h: &StateHandle, subject: &Subject) -> Result<String> {
    Ok(match subject {
        Subject::Unfreeze {
            freeze_id, scope, ..
        } => format!("lifting freeze {freeze_id} of {scope}"),
        Subject::Address {
            entry_id,
            venue,
            asset,
            address,
            ..
        } => format!("address-book entry {entry_id}: {address} for {asset} on {venue}"),
        Subject::Hold {
            decision_id,
            intent_digest,
            expires_at,
            ..
        } => {
            let row = h.store.audit_entry(*decision_id).await?.ok_or_else(|| {
                AdminError::Invalid(format!(
                    "the held decision {decision_id} is not in the audit log"
                ))
            })?;
            let (intent, recorded) = match row.entry() {
                Ok(AuditEntry::Decision(d)) => (
                    d.intent.into_owned(),
                    d.request
                        .and_then(|r| r.request_text)
                        .map(|t| t.into_owned()),
                ),
                Ok(other) => {
                    bail!(
                        "audit entry {decision_id} holds no intent: it is a {} entry",
                        other.kind()
                    )
                }
                Err(e) => bail!("audit entry {decision_id} holds no intent: {e}"),
            };
            let text = held_request(h, *decision_id).await?;
            if recorded.as_deref() != Some(text.as_str()) {
                bail!(
                    "the request of held decision {decision_id} is not the one its audit entry records; run `keygate audit verify`"
                );
            }
            if keygate_store::decider::hold_digest(&intent, &text) != *intent_digest {
                bail!(
                    "the held decision {decision_id} in the audit log does not match the hold's digest; run `keygate audit verify`"
                );
            }
            format!(
                "held decision {decision_id}: {} (hold expires {})\n  the request keygate will forward (then signed with the venue's key), exactly:\n{}",
                summary(&intent),
                crate::time_text(*expires_at),
                request_lines(&text)
            )
        }
    })
}

/// The request held decision `decision_id` binds, as its hold keeps it.
async fn held_request(h: &StateHandle, decision_id: i64) -> Result<String> {
    let hold =
        h.store.hold(decision_id).await?.ok_or_else(|| {
            AdminError::Invalid(format!("there is no held decision {decision_id}"))
        })?;
    match hold.request_text {
        Some(t) => Ok(t),
        None => bail!(
            "held decision {decision_id} binds no request keygate would forward, so it cannot be carried out; the client sends the request again for a new hold"
        ),
    }
}

/// An intent in one line: who, what, how much, where.
fn summary(i: &keygate_core::Intent) -> String {
    format!(
        "{} {} {} {} on {} to {}",
        i.client,
        i.action,
        i.amount.map(|a| a.to_string()).unwrap_or_default(),
        i.asset.as_deref().unwrap_or(""),
        i.venue,
        i.destination.as_deref().unwrap_or("-")
    )
}

/// A request text for the terminal: each of its lines (the request line, then the body if it
/// has one) indented by four spaces.
pub fn request_lines(text: &str) -> String {
    text.lines()
        .filter(|l| !l.is_empty())
        .map(|l| format!("    {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// A held request, with what it would do as its audit entry says.
pub struct HoldView {
    pub row: HoldRow,
    /// done, expired, approved or waiting.
    pub state: &'static str,
    pub what: String,
}

impl HoldView {
    /// The request the hold binds, for the terminal ([`request_lines`]), or why there is none.
    pub fn request(&self) -> String {
        match &self.row.request_text {
            Some(t) => request_lines(t),
            None => "    (binds no request: it cannot be carried out; the client sends the request again for a new hold)".into(),
        }
    }
}

/// Held requests waiting for approvals (with `all`: carried-out and expired ones too).
pub async fn holds(h: &StateHandle, all: bool, now: Millis) -> Result<Vec<HoldView>> {
    let mut out = vec![];
    for row in h.store.holds(all, now).await? {
        let state = match (
            row.executed_by.is_some(),
            row.approved_at,
            row.expires_at <= now,
        ) {
            (true, _, _) => "done",
            (false, _, true) => "expired",
            (false, Some(_), false) => "approved",
            (false, None, false) => "waiting",
        };
        let what = match h.store.audit_entry(row.decision_id).await? {
            Some(entry) => match entry.entry() {
                Ok(AuditEntry::Decision(d)) => summary(&d.intent),
                // Not a readable decision: as an entry without an intent always read.
                _ => "? ?   on ? to -".into(),
            },
            None => "(not in the audit log)".into(),
        };
        out.push(HoldView { row, state, what });
    }
    Ok(out)
}

/// Writes a new approver key (mode 0600) to `out`, which must not exist; returns its public key.
pub fn new_approver_key(out: &Path) -> Result<String> {
    if out.exists() {
        bail!("{} exists; choose another path", out.display());
    }
    let key = ApproverKey::generate()?;
    key.write_file(out)
        .map_err(io(format!("cannot write {}", out.display())))?;
    Ok(key.public_hex())
}
