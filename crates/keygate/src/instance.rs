//! Opening a keygate instance: config, master key and store, checked against each other before
//! anything is read or written.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use keygate_store::{OpenMode, Store};
use keygate_vault::{KdfParams, KeyId, MasterKey};

use crate::cli::Cli;
use crate::config::{Config, MasterKeySource, resolve_path};
use crate::input;

/// The metadata key under which the store records its master key's id.
pub const MASTER_KEY_ID: &str = "master_key_id";

/// Where the files of an instance are.
#[derive(Debug, Clone)]
pub struct Paths {
    pub config_file: PathBuf,
    /// The directory relative paths in the config are resolved against.
    pub base: PathBuf,
}

impl Paths {
    pub fn from_cli(cli: &Cli) -> Self {
        let config_file = cli
            .config
            .clone()
            .unwrap_or_else(|| cli.data_dir.join("keygate.toml"));
        let base = config_file
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."));
        Self { config_file, base }
    }
}

/// A running instance's view of its own state.
pub struct Instance {
    pub config: Config,
    pub paths: Paths,
    pub store: Store,
    pub master: MasterKey,
}

impl Instance {
    pub fn key_file(&self) -> PathBuf {
        resolve_path(&self.config.vault.key_file, &self.paths.base)
    }

    pub fn kdf_file(&self) -> PathBuf {
        resolve_path(&self.config.vault.kdf_file, &self.paths.base)
    }

    /// Loads the master key, opens the store, and checks that the key is the store's.
    pub async fn open(config: Config, paths: Paths) -> Result<Self> {
        let master = load_master_key(&config, &paths)?;
        let url = config.store_url(&paths.base);
        // Connect without migrating: nothing is written until the key is known to be right.
        let store = Store::connect(&url, OpenMode::Existing).await?;
        let stored = match store.get_meta(MASTER_KEY_ID).await {
            Ok(s) => s,
            Err(e) => {
                store.close().await;
                return Err(anyhow::Error::new(e).context(
                    "cannot read the store's master key id; is store.url a keygate store?",
                ));
            }
        };
        let Some(stored) = stored else {
            store.close().await;
            bail!(
                "the store has no master key id: it was not set up by `keygate init`; run init with --store-url pointing at it"
            );
        };
        if stored != master.id().as_str() {
            store.close().await;
            let pending = pending_key_path(&config, &paths);
            bail!(
                "{}",
                mismatch_message(&master.id(), &stored, &pending, &config, &paths)
            );
        }
        store.migrate().await?;
        Ok(Self {
            config,
            paths,
            store,
            master,
        })
    }
}

/// Where `rekey` writes the new key before it commits.
pub fn pending_key_path(config: &Config, paths: &Paths) -> PathBuf {
    let p = match config.vault.master_key {
        MasterKeySource::File => resolve_path(&config.vault.key_file, &paths.base),
        MasterKeySource::Passphrase => resolve_path(&config.vault.kdf_file, &paths.base),
    };
    with_suffix(&p, ".new")
}

pub fn with_suffix(p: &Path, suffix: &str) -> PathBuf {
    let mut s = p.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

fn mismatch_message(
    got: &KeyId,
    stored: &str,
    pending: &Path,
    config: &Config,
    paths: &Paths,
) -> String {
    let final_path = resolve_path(
        match config.vault.master_key {
            MasterKeySource::File => &config.vault.key_file,
            MasterKeySource::Passphrase => &config.vault.kdf_file,
        },
        &paths.base,
    );
    if pending.exists() {
        format!(
            "the master key (id {got}) is not the one the store uses (id {stored}), and {} is left from an interrupted `keygate rekey` that had already committed. \
             Finish it with: mv {} {}",
            pending.display(),
            pending.display(),
            final_path.display()
        )
    } else {
        format!(
            "the master key (id {got}) is not the one this store was set up with (id {stored}): wrong key file, wrong passphrase, or wrong --data-dir. Nothing was changed."
        )
    }
}

/// The master key as the config says: from the key file (after a permission check) or from a
/// passphrase and the Argon2id parameters beside it.
pub fn load_master_key(config: &Config, paths: &Paths) -> Result<MasterKey> {
    match config.vault.master_key {
        MasterKeySource::File => {
            let path = resolve_path(&config.vault.key_file, &paths.base);
            Ok(MasterKey::read_key_file(&path)?)
        }
        MasterKeySource::Passphrase => {
            let path = resolve_path(&config.vault.kdf_file, &paths.base);
            let params = KdfParams::read(&path)?;
            let pass = input::read_passphrase("KEYGATE_PASSPHRASE", "Master passphrase", false)?;
            MasterKey::derive(&pass, &params).with_context(|| {
                format!(
                    "cannot derive the master key with the parameters in {}",
                    path.display()
                )
            })
        }
    }
}

/// Minimum passphrase length accepted when setting one.
pub const MIN_PASSPHRASE_CHARS: usize = 12;

/// A new passphrase-derived master key: reads the passphrase (env var or terminal, twice),
/// draws fresh parameters and salt, and records the key's id in them.
pub fn new_passphrase_key(env_var: &str) -> Result<(MasterKey, KdfParams)> {
    let pass = input::read_passphrase(env_var, "New master passphrase", true)?;
    if pass.expose().chars().count() < MIN_PASSPHRASE_CHARS {
        bail!(
            "the passphrase is shorter than {MIN_PASSPHRASE_CHARS} characters; choose a longer one"
        );
    }
    let mut params = KdfParams::generate()?;
    let key = MasterKey::derive(&pass, &params)?;
    params.key_id = Some(key.id());
    Ok((key, params))
}
