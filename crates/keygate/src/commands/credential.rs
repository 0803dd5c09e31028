//! `keygate credential add|list|rotate|remove`: the vault's CLI. Secrets come in through stdin or
//! the terminal and go out nowhere; listings show metadata and a short fingerprint only.

use anyhow::{Context, Result, bail};
use keygate_store::CredentialRow;
use keygate_store::{CredentialSummary, NewCredential, StoreError};
use keygate_vault::{Binding, CredentialKind, CredentialSecret, seal};

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

/// Venue names and credential ids: 1–64 of [a-z0-9_-], starting with a letter or digit.
fn check_name(what: &str, s: &str) -> Result<()> {
    let ok = !s.is_empty()
        && s.len() <= 64
        && s.bytes().enumerate().all(|(i, b)| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || (i > 0 && (b == b'-' || b == b'_'))
        });
    if !ok {
        bail!(
            "{what} {s:?} is not valid: use 1 to 64 lowercase letters, digits, '-' or '_', starting with a letter or digit"
        );
    }
    Ok(())
}

fn new_id() -> Result<String> {
    const ALPHABET: &[u8] = b"abcdefghijkmnpqrstuvwxyz23456789";
    let mut raw = [0u8; 10];
    keygate_vault::random_bytes(&mut raw)?;
    let tail: String = raw
        .iter()
        .map(|b| ALPHABET[(*b as usize) % ALPHABET.len()] as char)
        .collect();
    Ok(format!("cr_{tail}"))
}

fn sealed_row(
    inst: &Instance,
    id: &str,
    venue: &str,
    version: u32,
    secret: &CredentialSecret,
) -> Result<NewCredential> {
    let sealed = seal(
        &inst.master,
        &Binding {
            id,
            venue,
            kind: secret.kind().as_str(),
            version,
        },
        &secret.encode(),
    )?;
    Ok(NewCredential {
        id: id.to_string(),
        version,
        venue: venue.to_string(),
        kind: secret.kind().as_str().to_string(),
        fingerprint: secret.fingerprint(),
        key_id: sealed.key_id.as_str().to_string(),
        wrapped_key: sealed.wrapped_key,
        ciphertext: sealed.ciphertext,
        created_ms: now_ms(),
    })
}

async fn add(inst: &Instance, a: &AddArgs) -> Result<()> {
    check_name("venue", &a.venue)?;
    let id = match &a.id {
        Some(id) => {
            check_name("credential id", id)?;
            id.clone()
        }
        None => new_id()?,
    };
    let secret = CredentialSecret::new(a.kind, read_secret_parts(a.kind)?)?;
    let row = sealed_row(inst, &id, &a.venue, 1, &secret)?;
    inst.store
        .insert_credential(&row)
        .await
        .map_err(|e| match e {
            StoreError::Conflict(_) => anyhow::anyhow!(
                "a credential with id {id} already exists; pick another --id or rotate that one"
            ),
            e => e.into(),
        })?;
    tracing::info!(
        credential = %id, venue = %a.venue, kind = %a.kind, version = 1,
        fingerprint = %row.fingerprint, "credential added"
    );
    println!(
        "added credential {id} (venue {}, kind {}, version 1, fingerprint {})",
        a.venue, a.kind, row.fingerprint
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
    let row = sealed_row(inst, &a.id, &current.venue, version, &secret)?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for ok in ["binance-main", "a", "okx_2", "cr_abc"] {
            check_name("venue", ok).unwrap();
        }
        for bad in ["", "-a", "Binance", "a b", "a/b", &"x".repeat(65)] {
            assert!(check_name("venue", bad).is_err(), "{bad}");
        }
        let id = new_id().unwrap();
        check_name("id", &id).unwrap();
        assert_eq!(id.len(), 13);
    }
}
