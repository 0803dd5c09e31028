//! Opening a keygate instance: config, master key and store, checked against each other before
//! anything is written.

use std::path::{Path, PathBuf};

use crate::error::{Context, Result, bail};
use keygate_store::{MASTER_KEY_ID, OpenMode, Store};
use keygate_vault::{KdfParams, MasterKey, VaultError};

use crate::input;
use crate::{Config, MasterKeySource, resolve_path};

/// Where the files of an instance are.
#[derive(Debug, Clone)]
pub struct Paths {
    pub config_file: PathBuf,
    /// The directory relative paths in the config are resolved against.
    pub base: PathBuf,
}

impl Paths {
    /// The paths of the instance in `data_dir`, or of the config file `config` if given.
    pub fn new(data_dir: &Path, config: Option<&Path>) -> Self {
        let config_file = config
            .map(Path::to_path_buf)
            .unwrap_or_else(|| data_dir.join("keygate.toml"));
        let base = config_file
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."));
        Self { config_file, base }
    }

    /// The file that holds (file mode) or describes (passphrase mode) the master key.
    pub fn key_material(&self, config: &Config) -> PathBuf {
        resolve_path(
            match config.vault.master_key {
                MasterKeySource::File => &config.vault.key_file,
                MasterKeySource::Passphrase => &config.vault.kdf_file,
            },
            &self.base,
        )
    }

    /// Where `rekey` writes the new key material before the store commits to it.
    pub fn pending_key_material(&self, config: &Config) -> PathBuf {
        with_suffix(&self.key_material(config), ".new")
    }
}

pub fn with_suffix(p: &Path, suffix: &str) -> PathBuf {
    let mut s = p.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

/// A running instance's view of its own state.
pub struct Instance {
    pub config: Config,
    pub paths: Paths,
    pub store: Store,
    pub master: MasterKey,
}

/// A master key as loaded, and whether it came from the `.new` file of an interrupted rekey.
struct LoadedKey {
    key: MasterKey,
    from_pending: bool,
}

impl Instance {
    /// Loads the master key, opens the store, and checks that the key is the store's. Nothing
    /// is written (not even a migration) before that check passes.
    pub async fn open(config: Config, paths: Paths) -> Result<Self> {
        let loaded = load_master_key(&config, &paths)?;
        let url = config.store_url(&paths.base);
        let store = Store::connect(&url, OpenMode::Existing).await?;
        match check_key_against_store(&store, &loaded, &config, &paths).await {
            Ok(()) => {}
            Err(e) => {
                store.close().await;
                return Err(e);
            }
        }
        store.migrate().await?;
        Ok(Self {
            config,
            paths,
            store,
            master: loaded.key,
        })
    }
}

async fn check_key_against_store(
    store: &Store,
    loaded: &LoadedKey,
    config: &Config,
    paths: &Paths,
) -> Result<()> {
    let stored = store
        .get_meta(MASTER_KEY_ID)
        .await
        .context("cannot read the store's master key id; is store.url a keygate store?")?
        .context(
            "the store has no master key id: it was not set up by `keygate init`; run init with --store-url pointing at it",
        )?;
    let got = loaded.key.id();
    let finish = || {
        let pending = paths.pending_key_material(config);
        format!(
            "an interrupted `keygate rekey` had already committed the store to the key in {}. Finish it with: mv {} {}",
            pending.display(),
            pending.display(),
            paths.key_material(config).display()
        )
    };
    if loaded.from_pending {
        if stored == got.as_str() {
            bail!("this is the new passphrase, but {}", finish());
        }
        bail!("{}", VaultError::WrongPassphrase);
    }
    if stored == got.as_str() {
        return Ok(());
    }
    if pending_key_id(config, paths).is_some_and(|p| p == stored) {
        bail!(
            "the master key (id {got}) is not the one the store uses (id {stored}): {}",
            finish()
        );
    }
    bail!(
        "the master key (id {got}) is not the one this store was set up with (id {stored}): wrong key file, wrong passphrase, or wrong --data-dir. Nothing was changed."
    )
}

/// The id of the key material a rekey left in `.new`, if there is one that can be read. Never
/// asks for a passphrase: passphrase mode records the id in the parameters file.
fn pending_key_id(config: &Config, paths: &Paths) -> Option<String> {
    let pending = paths.pending_key_material(config);
    if !pending.exists() {
        return None;
    }
    match config.vault.master_key {
        MasterKeySource::File => MasterKey::read_key_file(&pending)
            .ok()
            .map(|k| k.id().to_string()),
        MasterKeySource::Passphrase => KdfParams::read(&pending)
            .ok()
            .and_then(|p| p.key_id)
            .map(|k| k.to_string()),
    }
}

/// The master key as the config says: from the key file (after a permission check) or from a
/// passphrase and the Argon2id parameters beside it. A passphrase that only fits the `.new`
/// parameters of an interrupted rekey is reported as such by the caller.
fn load_master_key(config: &Config, paths: &Paths) -> Result<LoadedKey> {
    let path = paths.key_material(config);
    match config.vault.master_key {
        MasterKeySource::File => Ok(LoadedKey {
            key: MasterKey::read_key_file(&path)?,
            from_pending: false,
        }),
        MasterKeySource::Passphrase => {
            let params = KdfParams::read(&path)?;
            let pass = input::read_passphrase("KEYGATE_PASSPHRASE", "Master passphrase", false)?;
            match MasterKey::derive(&pass, &params) {
                Ok(key) => Ok(LoadedKey {
                    key,
                    from_pending: false,
                }),
                Err(VaultError::WrongPassphrase) => {
                    let pending = paths.pending_key_material(config);
                    if let Ok(p) = KdfParams::read(&pending)
                        && let Ok(key) = MasterKey::derive(&pass, &p)
                    {
                        return Ok(LoadedKey {
                            key,
                            from_pending: true,
                        });
                    }
                    Err(VaultError::WrongPassphrase.into())
                }
                Err(e) => Err(e).with_context(|| {
                    format!(
                        "cannot derive the master key with the parameters in {}",
                        path.display()
                    )
                }),
            }
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

/// What the engine's admin commands need: the config and the store, without the master key
/// (they touch no secret). The store must be one `keygate init` set up.
pub struct StateHandle {
    pub config: Config,
    pub paths: Paths,
    pub store: Store,
}

impl StateHandle {
    pub async fn open(config: Config, paths: Paths) -> Result<Self> {
        let url = config.store_url(&paths.base);
        let store = Store::connect(&url, OpenMode::Existing).await?;
        let claimed = store
            .get_meta(MASTER_KEY_ID)
            .await
            .context("cannot read the store's metadata; is store.url a keygate store?")?;
        if claimed.is_none() {
            store.close().await;
            bail!(
                "the store was not set up by `keygate init`; run init, or point --data-dir at your data directory"
            );
        }
        store.migrate().await?;
        Ok(Self {
            config,
            paths,
            store,
        })
    }

    /// The instance's audit signing key; created (with a warning) if this data directory
    /// predates it.
    pub fn audit_key(&self) -> Result<keygate_vault::AuditKey> {
        let path = resolve_path(&self.config.audit.signing_key, &self.paths.base);
        if !path.exists() {
            let key = keygate_vault::AuditKey::generate()?;
            key.write_file(&path)?;
            tracing::warn!(path = %path.display(), public_key = %key.public_hex(), "created a new audit signing key");
            return Ok(key);
        }
        Ok(keygate_vault::AuditKey::read_file(&path)?)
    }

    /// The audit signing key's public half, if the key exists (never creates it).
    pub fn audit_public_key(&self) -> Result<Option<String>> {
        let path = resolve_path(&self.config.audit.signing_key, &self.paths.base);
        if !path.exists() {
            return Ok(None);
        }
        Ok(Some(
            keygate_vault::AuditKey::read_file(&path)?.public_hex(),
        ))
    }

    /// Where checkpoints are exported, if anywhere.
    pub fn export_file(&self) -> Option<PathBuf> {
        let p = &self.config.audit.export_file;
        (!p.as_os_str().is_empty()).then(|| resolve_path(p, &self.paths.base))
    }
}
