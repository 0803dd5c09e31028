//! `keygate credential add|list|rotate|remove`: the vault's CLI. Secrets come in through stdin or
//! the terminal and go out nowhere; listings show metadata and a short fingerprint only.

use anyhow::{Context, Result, bail};
use keygate_store::CredentialRow;
use keygate_store::CredentialSummary;
use keygate_vault::{CredentialKind, CredentialSecret};

use keygate_admin::credentials::{check_name, sealed_row};

use crate::cli::{AddArgs, CredentialCommand, IdArg, ListArgs, VerifyArgs};
use crate::commands::{now_ms, time_text};
use keygate_config::input::read_secret_parts;
use keygate_config::instance::Instance;

pub async fn run(inst: Instance, cmd: &CredentialCommand) -> Result<()> {
    let result = match cmd {
        CredentialCommand::Add(a) => add(&inst, a).await,
        CredentialCommand::List(a) => list(&inst, a).await,
        CredentialCommand::Rotate(a) => rotate(&inst, a).await,
        CredentialCommand::Remove(a) => remove(&inst, a).await,
        CredentialCommand::Verify(a) => verify(&inst, a).await,
    };
    inst.store.close().await;
    result
}

async fn add(inst: &Instance, a: &AddArgs) -> Result<()> {
    // The names are checked before a secret is asked for.
    check_name("venue", &a.venue)?;
    if let Some(id) = &a.id {
        check_name("credential id", id)?;
    }
    let parts = read_secret_parts(a.kind)?;
    let added = keygate_admin::credentials::add_credential(
        inst,
        &a.venue,
        a.kind,
        a.id.as_deref(),
        parts,
        now_ms(),
    )
    .await?;
    let (id, fingerprint) = (added.id, added.fingerprint);
    println!(
        "added credential {id} (venue {}, kind {}, version 1, fingerprint {fingerprint})",
        a.venue, a.kind
    );
    Ok(())
}

/// The kind of a stored row; an unknown one means the row was not written by this keygate.
fn stored_kind(r: &CredentialRow) -> Result<CredentialKind> {
    r.kind.parse().map_err(|e: String| {
        anyhow::anyhow!("stored credential {} version {}: {e}", r.id, r.version)
    })
}

fn summary_json(c: &CredentialSummary) -> serde_json::Value {
    serde_json::json!({
        "id": c.id,
        "venue": c.venue,
        "kind": c.kind,
        "version": c.version,
        "created": time_text(c.created_ms),
        "rotated": c.rotated_ms.map(time_text),
        "fingerprint": c.fingerprint,
    })
}

async fn list(inst: &Instance, a: &ListArgs) -> Result<()> {
    let creds = inst.store.list_credentials().await?;
    if a.json {
        for c in &creds {
            println!("{}", summary_json(c));
        }
        return Ok(());
    }
    if creds.is_empty() {
        println!("no credentials; add one with: keygate credential add --venue NAME --kind KIND");
        return Ok(());
    }
    let rows: Vec<[String; 7]> = creds
        .iter()
        .map(|c| {
            [
                c.id.clone(),
                c.venue.clone(),
                c.kind.clone(),
                c.version.to_string(),
                time_text(c.created_ms),
                c.rotated_ms.map(time_text).unwrap_or_else(|| "-".into()),
                c.fingerprint.clone(),
            ]
        })
        .collect();
    let header = [
        "ID",
        "VENUE",
        "KIND",
        "VERSION",
        "CREATED",
        "ROTATED",
        "FINGERPRINT",
    ];
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for r in &rows {
        for (w, cell) in widths.iter_mut().zip(r) {
            *w = (*w).max(cell.len());
        }
    }
    let line = |cells: Vec<&str>| {
        cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_string()
    };
    println!("{}", line(header.to_vec()));
    for r in &rows {
        println!("{}", line(r.iter().map(String::as_str).collect()));
    }
    Ok(())
}

async fn rotate(inst: &Instance, a: &IdArg) -> Result<()> {
    let current = inst
        .store
        .active_credential(&a.id)
        .await?
        .with_context(|| {
            format!(
                "no credential {}; `keygate credential list` shows the ids",
                a.id
            )
        })?;
    let kind = stored_kind(&current)?;
    let secret = CredentialSecret::new(kind, read_secret_parts(kind)?)?;
    if secret.fingerprint() == current.fingerprint {
        bail!(
            "the new secret is the same as version {} of {}; nothing was changed",
            current.version,
            a.id
        );
    }
    let version = current
        .version
        .checked_add(1)
        .context("credential version overflow")?;
    let row = sealed_row(inst, &a.id, &current.venue, version, &secret, now_ms())?;
    inst.store.rotate_credential(&row).await?;
    tracing::info!(
        credential = %a.id, venue = %current.venue, kind = %kind, version,
        disabled_version = current.version, fingerprint = %row.fingerprint, "credential rotated"
    );
    println!(
        "rotated credential {} to version {version} (fingerprint {}); version {} is kept, disabled",
        a.id, row.fingerprint, current.version
    );
    Ok(())
}

async fn remove(inst: &Instance, a: &IdArg) -> Result<()> {
    let n = inst.store.remove_credential(&a.id).await?;
    if n == 0 {
        bail!(
            "no credential {}; `keygate credential list` shows the ids",
            a.id
        );
    }
    tracing::info!(credential = %a.id, versions = n, "credential removed");
    println!("removed credential {} ({n} version(s))", a.id);
    Ok(())
}

/// Decrypts one stored version and checks its fingerprint. The secret is dropped (zeroized)
/// before this returns.
fn check_row(inst: &Instance, r: &CredentialRow) -> Result<()> {
    let secret = keygate_server::open_row(&inst.master, r).map_err(anyhow::Error::msg)?;
    if secret.fingerprint() != r.fingerprint {
        bail!(
            "credential {} version {} decrypts, but not to the secret its fingerprint {} names",
            r.id,
            r.version,
            r.fingerprint
        );
    }
    Ok(())
}

async fn verify(inst: &Instance, a: &VerifyArgs) -> Result<()> {
    let rows = match &a.id {
        Some(id) => {
            let rows = inst.store.credential_versions(id).await?;
            if rows.is_empty() {
                bail!("no credential {id}; `keygate credential list` shows the ids");
            }
            rows
        }
        None => inst.store.all_credential_rows().await?,
    };
    let mut bad = 0usize;
    for r in &rows {
        match check_row(inst, r) {
            Ok(()) => println!("ok      {} version {} ({})", r.id, r.version, r.fingerprint),
            Err(e) => {
                bad += 1;
                tracing::error!(credential = %r.id, version = r.version, error = %e, "credential does not verify");
                println!("FAILED  {} version {}: {e:#}", r.id, r.version);
            }
        }
    }
    if bad > 0 {
        bail!(
            "{bad} of {} credential version(s) failed to verify; restore them from a backup or rotate them",
            rows.len()
        );
    }
    println!("{} credential version(s) verified", rows.len());
    Ok(())
}
