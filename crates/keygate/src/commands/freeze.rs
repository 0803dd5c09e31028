//! `keygate freeze`, `keygate approve` and `keygate approver keygen`: containment by hand, and
//! the signed approvals that lift it.

use std::path::Path;

use anyhow::{Context, Result, bail};
use keygate_core::freeze::{Scope, approval_message};
use keygate_store::audit::Verifier;
use keygate_store::freeze::Approved;

use crate::cli::{ApproveArgs, ApproverCommand, FreezeArgs};
use crate::commands::{now_ms, time_text};
use keygate_config::engine::{approval_policy, duration};
use keygate_config::instance::StateHandle;

/// Ed25519 signatures, as the vault checks them.
struct Ed25519;

impl Verifier for Ed25519 {
    fn verify(&self, public_key: &str, message: &[u8], signature: &str) -> Result<(), String> {
        keygate_vault::verify_signature(public_key, message, signature)
    }
}

pub async fn freeze(h: &StateHandle, actor: &str, a: &FreezeArgs) -> Result<()> {
    if a.target == "list" {
        return list(h, a.all).await;
    }
    let scope: Scope = a.target.parse().map_err(anyhow::Error::msg)?;
    let Some(reason) = a.reason.as_deref().filter(|r| !r.trim().is_empty()) else {
        bail!("say why with --reason; it is shown with every decision the freeze denies");
    };
    if reason.len() > 500 {
        bail!("--reason is limited to 500 characters");
    }
    let (id, seq) = h.store.freeze(&scope, reason, actor, now_ms()).await?;
    crate::commands::audit_sign::checkpoint_if_due(h).await?;
    println!(
        "freeze {id}: {scope} is frozen from the next decision of every instance (audit entry {seq}).\nLifting it needs {} approvals: keygate approve freeze:{id} --key FILE",
        h.config.approvals.quorum
    );
    Ok(())
}

async fn list(h: &StateHandle, all: bool) -> Result<()> {
    let rows = h.store.freezes(all).await?;
    if rows.is_empty() {
        println!(
            "{}",
            if all {
                "no freezes"
            } else {
                "nothing is frozen"
            }
        );
        return Ok(());
    }
    println!(
        "{:<8} {:<28} {:<20} {:<24} {:<20} reason",
        "id", "scope", "set", "set by", "lifted"
    );
    for r in rows {
        let lifted = r
            .lifted_at
            .map(time_text)
            .unwrap_or_else(|| "FROZEN".to_string());
        println!(
            "{:<8} {:<28} {:<20} {:<24} {:<20} {}",
            format!("freeze:{}", r.freeze.id),
            r.freeze.scope.to_string(),
            time_text(r.freeze.set_at),
            r.freeze.set_by,
            lifted,
            r.freeze.reason
        );
    }
    Ok(())
}

pub async fn approve(h: &StateHandle, a: &ApproveArgs) -> Result<()> {
    let policy = approval_policy(&h.config)?;
    let key = keygate_vault::ApproverKey::read_file(&a.key)?;
    let public = key.public_hex();
    if !policy.is_approver(&public) {
        bail!(
            "the key in {} (public key {public}) is not listed in approvals.approvers of the config",
            a.key.display()
        );
    }
    let ttl = duration("--ttl", &a.ttl)?;
    if ttl <= 0 || ttl > policy.max_validity {
        bail!(
            "--ttl must be positive and at most approvals.max_validity ({})",
            h.config.approvals.max_validity
        );
    }
    let subject = h.store.approval_subject(&a.subject, now_ms()).await?;
    // Say what is being approved before signing it.
    println!("approving {}", describe(h, &subject).await?);
    let expires_at = now_ms() + ttl;
    let signature = key.sign_hex(&approval_message(&subject, expires_at));
    let outcome = h
        .store
        .approve(
            &a.subject,
            &public,
            &signature,
            expires_at,
            &policy,
            &Ed25519,
            now_ms(),
        )
        .await?;
    crate::commands::audit_sign::checkpoint_if_due(h).await?;
    match outcome {
        Approved::Counted {
            have,
            need,
            audit_id,
        } => println!(
            "approval of {} counted: {have} of {need}, valid until {} (audit entry {audit_id})",
            a.subject,
            time_text(expires_at)
        ),
        Approved::Lifted {
            freeze_id,
            approvers,
            audit_id,
        } => println!(
            "freeze {freeze_id} lifted by {} approvers (audit entry {audit_id})",
            approvers.len()
        ),
        Approved::AddressApproved {
            entry_id,
            approvers,
            audit_id,
        } => println!(
            "address-book entry {entry_id} approved by {} approvers (audit entry {audit_id}); it is usable once its cool-down has passed",
            approvers.len()
        ),
        Approved::HoldApproved {
            decision_id,
            approvers,
            audit_id,
        } => println!(
            "held decision {decision_id} approved by {} approvers (audit entry {audit_id}); the client may now send the same request again, once, with the header x-keygate-hold: {decision_id}",
            approvers.len()
        ),
    }
    Ok(())
}

/// What an approval would approve, in words, checked against the audit log for a hold.
async fn describe(h: &StateHandle, subject: &keygate_core::freeze::Subject) -> Result<String> {
    use keygate_core::freeze::Subject;
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
            let row = h.store.audit_entry(*decision_id).await?.with_context(|| {
                format!("the held decision {decision_id} is not in the audit log")
            })?;
            let intent: keygate_core::Intent = serde_json::from_value(row.data()["intent"].clone())
                .with_context(|| format!("audit entry {decision_id} holds no intent"))?;
            if keygate_store::decider::hold_digest(&intent) != *intent_digest {
                bail!(
                    "the held decision {decision_id} in the audit log does not match the hold's digest; run `keygate audit verify`"
                );
            }
            format!(
                "held decision {decision_id}: {} {} {} {} on {} to {} (hold expires {})",
                intent.client,
                intent.action,
                intent.amount.map(|a| a.to_string()).unwrap_or_default(),
                intent.asset.as_deref().unwrap_or(""),
                intent.venue,
                intent.destination.as_deref().unwrap_or("-"),
                time_text(*expires_at)
            )
        }
    })
}

/// `keygate holds`: held requests, what they would do, and where their approval stands.
pub async fn holds(h: &StateHandle, all: bool) -> Result<()> {
    let now = now_ms();
    let rows = h.store.holds(all, now).await?;
    if rows.is_empty() {
        println!("no held requests{}", if all { "" } else { " waiting" });
        return Ok(());
    }
    println!(
        "{:<12} {:<10} {:<22} {:<10} what",
        "subject", "state", "expires", "approvals"
    );
    for r in rows {
        let state = match (r.executed_by, r.approved_at, r.expires_at <= now) {
            (Some(_), _, _) => "done",
            (None, _, true) => "expired",
            (None, Some(_), false) => "approved",
            (None, None, false) => "waiting",
        };
        let what = match h.store.audit_entry(r.decision_id).await? {
            Some(row) => {
                let d = row.data();
                let i = &d["intent"];
                format!(
                    "{} {} {} {} on {} to {}",
                    i["client"].as_str().unwrap_or("?"),
                    i["action"].as_str().unwrap_or("?"),
                    i["amount"].as_str().unwrap_or(""),
                    i["asset"].as_str().unwrap_or(""),
                    i["venue"].as_str().unwrap_or("?"),
                    i["destination"].as_str().unwrap_or("-")
                )
            }
            None => "(not in the audit log)".into(),
        };
        println!(
            "{:<12} {:<10} {:<22} {:<10} {what}",
            format!("hold:{}", r.decision_id),
            state,
            time_text(r.expires_at),
            format!("{}/{}", r.approvals, h.config.approvals.quorum),
        );
    }
    Ok(())
}

pub fn approver(cmd: &ApproverCommand) -> Result<()> {
    match cmd {
        ApproverCommand::Keygen { out } => keygen(out),
    }
}

fn keygen(out: &Path) -> Result<()> {
    if out.exists() {
        bail!("{} exists; choose another path", out.display());
    }
    let key = keygate_vault::ApproverKey::generate()?;
    key.write_file(out)
        .with_context(|| format!("cannot write {}", out.display()))?;
    println!(
        "wrote {} (mode 0600; keep it with the approver, not on keygate's host).\nAdd its public key to approvals.approvers in the config:\n  \"{}\"",
        out.display(),
        key.public_hex()
    );
    Ok(())
}
