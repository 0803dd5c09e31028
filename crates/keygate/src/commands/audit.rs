//! `keygate audit verify|tail|show|checkpoint|export`.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;

use anyhow::{Context, Result, bail};

use crate::cli::AuditCommand;
use crate::commands::time_text;
use keygate_config::audit_sign::{KeySigner, Trusted, export, read_exported};
use keygate_config::instance::StateHandle;

pub async fn run(h: &StateHandle, cmd: &AuditCommand) -> Result<()> {
    match cmd {
        AuditCommand::Verify(a) => {
            let mut trusted = h.config.audit.trusted_keys.clone();
            match h.audit_public_key()? {
                Some(k) => trusted.push(k),
                None => eprintln!(
                    "warning: no audit signing key at audit.signing_key; only audit.trusted_keys are trusted"
                ),
            }
            let external = match (&a.checkpoints, h.export_file()) {
                (Some(p), _) => read_exported(p)?,
                (None, Some(p)) if p.exists() => read_exported(&p)?,
                _ => vec![],
            };
            let r = h.store.verify_audit(&Trusted(trusted), &external).await?;
            match &r.problem {
                None => {
                    println!(
                        "ok: {} entries chain correctly; {} stored and {} exported checkpoint(s) verify",
                        r.entries, r.checkpoints, r.external_checkpoints
                    );
                    Ok(())
                }
                Some(p) => bail!(
                    "the audit log does not verify: {} (checked {} entries before it)",
                    p.what,
                    r.entries
                ),
            }
        }
        AuditCommand::Tail(a) => {
            if a.count < 1 {
                bail!("-n must be at least 1");
            }
            for row in h.store.audit_tail(a.count).await? {
                if a.json {
                    println!("{}", row.entry);
                } else {
                    println!("{}", summary(&row));
                }
            }
            Ok(())
        }
        AuditCommand::Show(a) => {
            let row = h
                .store
                .audit_entry(a.seq)
                .await?
                .with_context(|| format!("there is no audit entry {}", a.seq))?;
            let entry: serde_json::Value = serde_json::from_str(&row.entry)
                .unwrap_or_else(|_| serde_json::Value::String(row.entry.clone()));
            let v =
                serde_json::json!({"entry": entry, "hash": row.hash, "prev_hash": row.prev_hash});
            println!("{}", serde_json::to_string_pretty(&v)?);
            Ok(())
        }
        AuditCommand::Checkpoint => {
            let signer = KeySigner(h.audit_key()?);
            match h.store.checkpoint_now(&signer).await? {
                Some(cp) => {
                    if let Some(p) = h.export_file() {
                        export(&p, &cp)?;
                    }
                    println!("Checkpoint at entry {} signed by {}", cp.seq, cp.public_key);
                }
                None => println!("Nothing new since the last checkpoint"),
            }
            Ok(())
        }
        AuditCommand::Export(a) => {
            let cps = h.store.checkpoints().await?;
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&a.out)
                .with_context(|| {
                    format!("cannot create {} (it must not exist yet)", a.out.display())
                })?;
            for cp in &cps {
                writeln!(f, "{}", serde_json::to_string(cp)?)?;
            }
            f.sync_all()?;
            println!("{} checkpoint(s) written to {}", cps.len(), a.out.display());
            Ok(())
        }
    }
}

/// One line per entry: seq, time, kind, actor, and what happened.
fn summary(row: &keygate_store::audit::AuditRow) -> String {
    let d = row.data();
    let what = match row.kind.as_str() {
        "decision" => {
            let i = &d["intent"];
            let mut s = format!(
                "{} {} {} on {}",
                d["outcome"].as_str().unwrap_or("?").to_uppercase(),
                i["action"].as_str().unwrap_or("?"),
                i["amount"]
                    .as_str()
                    .map(|a| format!("{a} {}", i["asset"].as_str().unwrap_or("")))
                    .unwrap_or_default(),
                i["venue"].as_str().unwrap_or("?"),
            );
            if let Some(r) = d["reasons"]
                .as_array()
                .and_then(|r| r.first())
                .and_then(|r| r.as_str())
            {
                s.push_str(&format!(": {r}"));
            }
            s
        }
        "auth" => format!("token refused: {}", d["message"].as_str().unwrap_or("?")),
        "alarm" => format!(
            "ALARM {}: {}",
            d["event"].as_str().unwrap_or("?"),
            d["reason"].as_str().unwrap_or("?")
        ),
        "request" => format!(
            "{} {} {} refused: {}",
            d["method"].as_str().unwrap_or("?"),
            d["venue"].as_str().unwrap_or("?"),
            d["path"].as_str().unwrap_or("?"),
            d["reason"].as_str().unwrap_or("?")
        ),
        "freeze" => match d["event"].as_str() {
            Some("freeze.lifted") => format!(
                "freeze {} ({}) lifted by a quorum",
                d["freeze_id"].as_i64().unwrap_or_default(),
                d["scope"].as_str().unwrap_or("?")
            ),
            _ => format!(
                "FROZEN {} (freeze {}): {}",
                d["scope"].as_str().unwrap_or("?"),
                d["freeze_id"].as_i64().unwrap_or_default(),
                d["reason"].as_str().unwrap_or("?")
            ),
        },
        "approval" => {
            let s = &d["subject"];
            let what = match s["approve"].as_str() {
                Some("hold") => format!("held decision {}", s["decision_id"]),
                Some("address") => format!("address-book entry {}", s["entry_id"]),
                _ => format!("freeze {}", s["freeze_id"]),
            };
            format!(
                "approval of {what}: {} of {} valid",
                d["valid"].as_i64().unwrap_or_default(),
                d["quorum"].as_i64().unwrap_or_default()
            )
        }
        "hold" => format!(
            "held decision {} approved by a quorum",
            d["decision_id"].as_i64().unwrap_or_default()
        ),
        "reconcile" => {
            let o = &d["outflow"];
            let what = format!(
                "{} {} to {} (venue id {})",
                o["amount"].as_str().unwrap_or("?"),
                o["asset"].as_str().unwrap_or("?"),
                o["destination"].as_str().unwrap_or("?"),
                o["id"].as_str().unwrap_or("?")
            );
            match d["event"].as_str() {
                Some("outflow.matched") => format!(
                    "outflow {what} matches decision {}",
                    d["decision_id"].as_i64().unwrap_or_default()
                ),
                _ => format!("CRITICAL: UNAPPROVED OUTFLOW {what}: no decision allowed it"),
            }
        }
        _ => d["action"].as_str().unwrap_or("?").to_string(),
    };
    format!(
        "{:>8} {} {:<8} {:<20} {what}",
        row.seq,
        time_text(row.at_ms),
        row.kind,
        row.actor
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_alarm_shows_its_event_and_reason() {
        let row = keygate_store::audit::AuditRow {
            seq: 7,
            at_ms: 0,
            kind: "alarm".into(),
            actor: "watcher:eth".into(),
            entry: r#"{"data":{"event":"chain.head_stale","severity":"critical","reason":"the node stopped"}}"#
                .into(),
            prev_hash: String::new(),
            hash: String::new(),
            debit: None,
        };
        let line = summary(&row);
        assert!(
            line.contains("ALARM chain.head_stale: the node stopped"),
            "{line}"
        );
    }
}
