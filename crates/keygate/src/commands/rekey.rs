//! `keygate rekey`: a new master key, every data key rewrapped in one store transaction.
//!
//! Crash safety: the new key is written to `<key file>.new` first, then the store commits, then
//! the file is renamed into place. If keygate dies between commit and rename, the next start
//! says exactly which `mv` finishes the job; a `.new` file the store never committed to is stale
//! and is replaced on the next rekey.

use std::fs;

use anyhow::{Context, Result, bail};
use keygate_vault::{Binding, MasterKey, rewrap};

use crate::config::MasterKeySource;
use crate::instance::{Instance, MASTER_KEY_ID, new_passphrase_key, pending_key_path};

pub async fn run(inst: Instance) -> Result<()> {
    let result = rekey(&inst).await;
    inst.store.close().await;
    result
}

async fn rekey(inst: &Instance) -> Result<()> {
    let source = inst.config.vault.master_key;
    let final_path = match source {
        MasterKeySource::File => inst.key_file(),
        MasterKeySource::Passphrase => inst.kdf_file(),
    };
    let pending = pending_key_path(&inst.config, &inst.paths);
    if pending.exists() {
        // The store still uses the current key (Instance::open checked), so this is stale.
        fs::remove_file(&pending)
            .with_context(|| format!("cannot remove stale {}", pending.display()))?;
    }

    let new_key = match source {
        MasterKeySource::File => {
            let k = MasterKey::generate()?;
            k.write_key_file(&pending)?;
            k
        }
        MasterKeySource::Passphrase => {
            let (k, params) = new_passphrase_key("KEYGATE_NEW_PASSPHRASE")?;
            params.write_new(&pending)?;
            k
        }
    };

    let outcome = rewrap_all(inst, &new_key).await;
    let count = match outcome {
        Ok(n) => n,
        Err(e) => {
            let _ = fs::remove_file(&pending);
            return Err(e);
        }
    };
    fs::rename(&pending, &final_path).with_context(|| {
        format!(
            "the store now uses the new master key, but moving it into place failed; finish with: mv {} {}",
            pending.display(),
            final_path.display()
        )
    })?;
    if let Some(dir) = final_path.parent()
        && let Ok(d) = fs::File::open(dir)
    {
        let _ = d.sync_all();
    }
    tracing::info!(
        old_master_key_id = %inst.master.id(),
        new_master_key_id = %new_key.id(),
        credential_versions = count,
        "rekeyed"
    );
    println!(
        "rekeyed {count} credential version(s): master key {} -> {}",
        inst.master.id(),
        new_key.id()
    );
    println!(
        "The new key is in {}; replace your backup of the old one.",
        final_path.display()
    );
    Ok(())
}

async fn rewrap_all(inst: &Instance, new_key: &MasterKey) -> Result<usize> {
    let rows = inst.store.all_credential_rows().await?;
    let mut rewrapped = Vec::with_capacity(rows.len());
    for r in &rows {
        let binding = Binding {
            id: &r.id,
            venue: &r.venue,
            version: r.version,
        };
        let w = rewrap(&inst.master, new_key, &binding, &r.wrapped_key)?;
        rewrapped.push((r.id.clone(), r.version, w));
    }
    if new_key.id() == inst.master.id() {
        bail!("the new master key is the same as the old one; nothing was changed");
    }
    inst.store
        .rekey(
            MASTER_KEY_ID,
            inst.master.id().as_str(),
            new_key.id().as_str(),
            &rewrapped,
        )
        .await?;
    Ok(rows.len())
}
