//! `keygate rekey`: a new master key, every data key rewrapped in one store transaction.
//!
//! Crash safety, in order:
//! 1. an exclusive lock on `keygate.lock` in the data directory, so two rekeys never interleave;
//! 2. the new key material is written to `<file>.new` and synced, with its directory;
//! 3. the store commits (every wrapped key and the store's key id, in one transaction);
//! 4. `<file>.new` is renamed over `<file>`.
//!
//! If the commit reports an error, the store is asked which key it now names: `.new` is kept
//! only if the store took it. If keygate dies between 3 and 4, the next command sees that the
//! store names the key in `.new` and prints the `mv` that finishes the job.

use std::fs;
use std::path::Path;

use anyhow::{Context, Result, bail};
use keygate_store::MASTER_KEY_ID;
use keygate_vault::{Binding, MasterKey, rewrap};

use keygate_config::MasterKeySource;
use keygate_config::instance::{Instance, new_passphrase_key};

pub async fn run(inst: Instance) -> Result<()> {
    let result = rekey(&inst).await;
    inst.store.close().await;
    result
}

fn sync_dir(file: &Path) -> Result<()> {
    let dir = file.parent().unwrap_or(Path::new("."));
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .with_context(|| format!("cannot sync the directory {}", dir.display()))
}

async fn rekey(inst: &Instance) -> Result<()> {
    let lock_path = inst.paths.base.join("keygate.lock");
    let lock = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .with_context(|| format!("cannot open the lock file {}", lock_path.display()))?;
    if lock.try_lock().is_err() {
        bail!(
            "another `keygate rekey` is running on this data directory (it holds {}); wait for it to finish",
            lock_path.display()
        );
    }

    let final_path = inst.paths.key_material(&inst.config);
    let pending = inst.paths.pending_key_material(&inst.config);
    if pending.exists() {
        // We hold the lock and the store uses the current key (Instance::open checked): any
        // `.new` is from a rekey that never committed.
        fs::remove_file(&pending)
            .with_context(|| format!("cannot remove stale {}", pending.display()))?;
    }

    let new_key = match inst.config.vault.master_key {
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
    if let Err(e) = sync_dir(&pending) {
        let _ = fs::remove_file(&pending);
        return Err(e);
    }

    let (count, natives) = match rewrap_all(inst, &new_key).await {
        Ok(n) => n,
        Err(e) => {
            // The commit may have reached the store even if its answer did not reach us.
            return match inst.store.get_meta(MASTER_KEY_ID).await {
                Ok(Some(id)) if id == new_key.id().as_str() => Err(e.context(format!(
                    "the store did commit to the new key; finish with: mv {} {}",
                    pending.display(),
                    final_path.display()
                ))),
                Ok(_) => {
                    let _ = fs::remove_file(&pending);
                    Err(e)
                }
                Err(_) => Err(e.context(format!(
                    "the store could not be asked whether the rekey committed, so {} is kept; \
                     the next keygate command will tell you whether to move it into place",
                    pending.display()
                ))),
            };
        }
    };
    fs::rename(&pending, &final_path)
        .and_then(|_| sync_dir(&final_path).map_err(std::io::Error::other))
        .with_context(|| {
            format!(
                "the store now uses the new master key, but moving it into place failed; finish with: mv {} {}",
                pending.display(),
                final_path.display()
            )
        })?;
    drop(lock);
    tracing::info!(
        old_master_key_id = %inst.master.id(),
        new_master_key_id = %new_key.id(),
        credential_versions = count,
        native_keys = natives,
        "rekeyed"
    );
    println!(
        "rekeyed {count} credential version(s) and {natives} native key(s): master key {} -> {}",
        inst.master.id(),
        new_key.id()
    );
    println!(
        "The new key is in {}; replace your backup of the old one.",
        final_path.display()
    );
    if inst.store.backend() == keygate_store::Backend::Postgres {
        println!(
            "Other instances sharing this store need the new key too: copy it to them and restart them."
        );
    }
    Ok(())
}

async fn rewrap_all(inst: &Instance, new_key: &MasterKey) -> Result<(usize, usize)> {
    if new_key.id() == inst.master.id() {
        bail!("the new master key is the same as the old one; nothing was changed");
    }
    let rows = inst.store.all_credential_rows().await?;
    let mut rewrapped = Vec::with_capacity(rows.len());
    for r in &rows {
        let binding = Binding {
            id: &r.id,
            venue: &r.venue,
            kind: &r.kind,
            version: r.version,
        };
        let w = rewrap(&inst.master, new_key, &binding, &r.wrapped_key)?;
        rewrapped.push((r.id.clone(), r.version, w));
    }
    let natives = inst.store.all_native_keys().await?;
    let mut native = Vec::with_capacity(natives.len());
    for k in &natives {
        let id = keygate_vault::native_key::binding_id(&k.token_id);
        let w = rewrap(
            &inst.master,
            new_key,
            &keygate_vault::native_key::binding(&id, &k.client),
            &k.wrapped_key,
        )?;
        native.push((k.token_id.clone(), w));
    }
    inst.store
        .rekey(
            inst.master.id().as_str(),
            new_key.id().as_str(),
            &rewrapped,
            &native,
        )
        .await?;
    Ok((rows.len(), natives.len()))
}
