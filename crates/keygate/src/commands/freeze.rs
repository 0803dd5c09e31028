//! `keygate freeze`, `keygate approve`, `keygate holds` and `keygate approver keygen`: parse,
//! call [`keygate_admin::freezes`], print.

use std::path::Path;

use anyhow::Result;
use keygate_admin::freezes;
use keygate_config::StateHandle;
use keygate_store::freeze::Approved;

use crate::cli::{ApproveArgs, ApproverCommand, FreezeArgs};
use crate::commands::{now_ms, time_text};

pub async fn freeze(h: &StateHandle, actor: &str, a: &FreezeArgs) -> Result<()> {
    if a.target == "list" {
        return list(h, a.all).await;
    }
    let (scope, set) = freezes::freeze(h, actor, &a.target, a.reason.as_deref(), now_ms()).await?;
    println!(
        "freeze {}: {scope} is frozen from the next decision of every instance (audit entry {}).\nLifting it needs {} approvals: keygate approve freeze:{} --key FILE",
        set.id, set.seq, h.config.approvals.quorum, set.id
    );
    Ok(())
}

async fn list(h: &StateHandle, all: bool) -> Result<()> {
    let rows = freezes::freezes(h, all).await?;
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
    let pending = freezes::prepare_approval(h, &a.subject, &a.key, &a.ttl, now_ms()).await?;
    // Say what is being approved before signing it.
    println!("approving {}", pending.description);
    let done = freezes::approve(h, pending, now_ms()).await?;
    let expires_at = done.expires_at;
    match done.outcome {
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

/// `keygate holds`: held requests, what they would do (and, beneath each, the exact request it
/// binds), and where their approval stands.
pub async fn holds(h: &StateHandle, all: bool) -> Result<()> {
    let rows = freezes::holds(h, all, now_ms()).await?;
    if rows.is_empty() {
        println!("no held requests{}", if all { "" } else { " waiting" });
        return Ok(());
    }
    println!(
        "{:<12} {:<10} {:<22} {:<10} what",
        "subject", "state", "expires", "approvals"
    );
    for v in rows {
        let r = &v.row;
        println!(
            "{:<12} {:<10} {:<22} {:<10} {}",
            format!("hold:{}", r.decision_id),
            v.state,
            time_text(r.expires_at),
            format!("{}/{}", r.approvals, h.config.approvals.quorum),
            v.what
        );
        println!("{}", v.request());
    }
    Ok(())
}

pub fn approver(cmd: &ApproverCommand) -> Result<()> {
    match cmd {
        ApproverCommand::Keygen { out } => keygen(out),
    }
}

fn keygen(out: &Path) -> Result<()> {
    let public = freezes::new_approver_key(out)?;
    println!(
        "wrote {} (mode 0600; keep it with the approver, not on keygate's host).\nAdd its public key to approvals.approvers in the config:\n  \"{}\"",
        out.display(),
        public
    );
    Ok(())
}
