//! `init`: a new data directory with config, database and master key. Never overwrites; on
//! failure it removes exactly what it created.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use keygate_config::engine::DEFAULT_POLICY;
use keygate_config::instance::{Paths, new_passphrase_key, with_suffix};
use keygate_config::{
    Config, MasterKeySource, default_config_text, resolve_path, resolve_sqlite_url,
};
use keygate_store::{MASTER_KEY_ID, OpenMode, Store, has_password, redact_url, sqlite_path};
use keygate_vault::{AuditKey, MasterKey};

use crate::error::{AdminError, Result, bail, io};

/// What this run of init created, so that a failure can take exactly that back.
#[derive(Default)]
struct Created {
    dir: Option<PathBuf>,
    subdirs: Vec<PathBuf>,
    files: Vec<PathBuf>,
}

impl Created {
    fn undo(&self) {
        for f in &self.files {
            let _ = fs::remove_file(f);
        }
        for d in self.subdirs.iter().rev() {
            let _ = fs::remove_dir(d);
        }
        if let Some(dir) = &self.dir {
            // Only if empty: never delete something this run did not make.
            let _ = fs::remove_dir(dir);
        }
    }
}

/// A data directory to create.
#[derive(Debug, Clone)]
pub struct InitRequest {
    pub data_dir: PathBuf,
    /// Derive the master key from a passphrase (KEYGATE_PASSPHRASE or the terminal) instead of
    /// a random key file.
    pub passphrase: bool,
    /// The store URL to write into the config [default: sqlite://keygate.db].
    pub store_url: Option<String>,
}

/// A data directory as created.
#[derive(Debug, Clone)]
pub struct Initialized {
    pub paths: Paths,
    pub config: Config,
    pub source: MasterKeySource,
    pub master_key_id: String,
    /// The store's URL, with any password removed.
    pub store: String,
}

/// Creates a data directory: commented config, master key, audit key, default policy and a
/// migrated store claimed by the key. Never overwrites; on failure it removes exactly what it
/// created.
pub async fn init(req: &InitRequest) -> Result<Initialized> {
    let mut created = Created::default();
    let result = match prepare_dir(&req.data_dir, &mut created) {
        Ok(()) => populate(req, &mut created).await,
        Err(e) => Err(e),
    };
    if result.is_err() {
        created.undo();
    }
    result
}

/// Creates the directory with mode 0700, or accepts an existing empty one.
fn prepare_dir(dir: &Path, created: &mut Created) -> Result<()> {
    if dir.exists() {
        let empty = fs::read_dir(dir)
            .map_err(io(format!("cannot read {}", dir.display())))?
            .next()
            .is_none();
        if !empty {
            bail!(
                "data directory {} already exists and is not empty; keygate init never overwrites one. \
                 Choose another --data-dir (or remove that one if you really mean to start over: its credentials cannot be recovered without its master key)",
                dir.display()
            );
        }
    } else {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(io(format!(
                "cannot create the data directory {}",
                dir.display()
            )))?;
        created.dir = Some(dir.to_path_buf());
    }
    // Umask may have narrowed the mode; an existing directory may have had a looser one.
    fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
        .map_err(io(format!("cannot set mode 0700 on {}", dir.display())))
}

/// Writes a new file with mode 0600, recording it as created.
fn write_private(path: &Path, text: &str, created: &mut Created) -> Result<()> {
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(io(format!("cannot create {}", path.display())))?;
    created.files.push(path.to_path_buf());
    f.write_all(text.as_bytes())
        .and_then(|_| f.sync_all())
        .map_err(io(format!("cannot write {}", path.display())))
}

async fn populate(args: &InitRequest, created: &mut Created) -> Result<Initialized> {
    let paths = Paths::new(&args.data_dir, None);
    let source = if args.passphrase {
        MasterKeySource::Passphrase
    } else {
        MasterKeySource::File
    };
    let store_url = args
        .store_url
        .clone()
        .unwrap_or_else(|| "sqlite://keygate.db".to_string());
    keygate_store::Backend::of_url(&store_url)?;
    if has_password(&store_url) {
        bail!(
            "--store-url carries a password, which would be written into keygate.toml; \
             give the URL without it and set the full URL in KEYGATE_STORE_URL when you run keygate"
        );
    }
    let config_text = default_config_text(&store_url, source);
    let config = Config::parse(&config_text, |_| None)?;

    // The master key first: everything else is checked against it.
    let key_path = paths.key_material(&config);
    let key = match source {
        MasterKeySource::File => {
            let key = MasterKey::generate()?;
            key.write_key_file(&key_path)?;
            key
        }
        MasterKeySource::Passphrase => {
            let (key, params) = new_passphrase_key("KEYGATE_PASSPHRASE")?;
            params.write_new(&key_path)?;
            key
        }
    };
    created.files.push(key_path);
    write_private(&paths.config_file, &config_text, created)?;

    // The audit signing key, and a starting policy that allows no withdrawal.
    let audit_key_path = resolve_path(&config.audit.signing_key, &paths.base);
    let audit_key = AuditKey::generate()?;
    audit_key.write_file(&audit_key_path)?;
    created.files.push(audit_key_path);
    let policy_dir = paths.base.join("policies");
    fs::DirBuilder::new()
        .mode(0o700)
        .create(&policy_dir)
        .map_err(io(format!("cannot create {}", policy_dir.display())))?;
    created.subdirs.push(policy_dir.clone());
    write_private(&policy_dir.join("default.cedar"), DEFAULT_POLICY, created)?;

    // The store: created (SQLite) and migrated. Recording our key id is the last step that can
    // fail, so a failed init never leaves a store claimed by a key that was then deleted.
    let url = std::env::var("KEYGATE_STORE_URL")
        .ok()
        .filter(|_| args.store_url.is_some())
        .unwrap_or_else(|| resolve_sqlite_url(&store_url, &paths.base));
    let db_file = sqlite_path(&url).map(PathBuf::from);
    if let Some(db) = &db_file {
        if db.exists() {
            bail!(
                "{} already exists; init creates a new database. Point --store-url at a new file",
                db.display()
            );
        }
        created.files.push(db.clone());
        created.files.push(with_suffix(db, "-wal"));
        created.files.push(with_suffix(db, "-shm"));
    }
    let store = Store::open(&url, OpenMode::Create).await?;
    let claimed = async {
        if let Some(db) = &db_file {
            fs::set_permissions(db, fs::Permissions::from_mode(0o600))
                .map_err(io(format!("cannot set mode 0600 on {}", db.display())))?;
        }
        let stored = store.init_meta(MASTER_KEY_ID, key.id().as_str()).await?;
        if stored != key.id().as_str() {
            bail!(
                "the store at {} already belongs to another keygate master key (id {stored}). \
                 To add an instance to it, copy an existing instance's data directory instead of running init",
                redact_url(&url)
            );
        }
        Ok::<(), AdminError>(())
    }
    .await;
    store.close().await;
    claimed?;

    tracing::info!(
        data_dir = %args.data_dir.display(),
        master_key = ?source,
        master_key_id = %key.id(),
        store = %redact_url(&url),
        "initialised data directory"
    );
    Ok(Initialized {
        paths,
        config,
        source,
        master_key_id: key.id().to_string(),
        store: redact_url(&url),
    })
}
