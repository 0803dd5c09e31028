//! `keygate init`: a new data directory with config, database and master key. Never overwrites;
//! on failure it removes what it created.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

use anyhow::{Context, Result, bail};
use keygate_store::{OpenMode, Store, redact_url};
use keygate_vault::MasterKey;

use crate::cli::{Cli, InitArgs};
use crate::config::{
    Config, MasterKeySource, default_config_text, resolve_path, resolve_sqlite_url,
};
use crate::instance::{MASTER_KEY_ID, Paths, new_passphrase_key};

pub async fn run(cli: &Cli, args: &InitArgs) -> Result<()> {
    let dir = &cli.data_dir;
    if cli.config.is_some() {
        bail!(
            "`init` writes its config inside the data directory; drop --config and use --data-dir"
        );
    }
    let created = prepare_dir(dir)?;
    match populate(cli, args).await {
        Ok(()) => Ok(()),
        Err(e) => {
            // Leave nothing half-made behind, so that a corrected retry works.
            if created {
                let _ = fs::remove_dir_all(dir);
            } else if let Ok(entries) = fs::read_dir(dir) {
                for entry in entries.flatten() {
                    let _ = fs::remove_file(entry.path());
                }
            }
            Err(e)
        }
    }
}

/// Creates the directory with mode 0700, or accepts an existing empty one. Returns whether it
/// created it.
fn prepare_dir(dir: &Path) -> Result<bool> {
    if dir.exists() {
        let empty = fs::read_dir(dir)
            .with_context(|| format!("cannot read {}", dir.display()))?
            .next()
            .is_none();
        if !empty {
            bail!(
                "data directory {} already exists and is not empty; keygate init never overwrites one. \
                 Choose another --data-dir (or remove that one if you really mean to start over: its credentials cannot be recovered without its master key)",
                dir.display()
            );
        }
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
            .with_context(|| format!("cannot set mode 0700 on {}", dir.display()))?;
        Ok(false)
    } else {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .with_context(|| format!("cannot create the data directory {}", dir.display()))?;
        // `recursive` applies the mode to every new level, but umask may have narrowed it.
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700))?;
        Ok(true)
    }
}

async fn populate(cli: &Cli, args: &InitArgs) -> Result<()> {
    let paths = Paths::from_cli(cli);
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
    if redact_url(&store_url) != store_url {
        bail!(
            "--store-url carries a password, which would be written into keygate.toml; \
             give the URL without it and set the full URL in KEYGATE_STORE_URL when you run keygate"
        );
    }

    let config_text = default_config_text(&store_url, source);
    let config = Config::parse(&config_text, |_| None)?;

    // The master key first: it is what everything else is checked against.
    let key = match source {
        MasterKeySource::File => {
            let key = MasterKey::generate()?;
            key.write_key_file(&resolve_path(&config.vault.key_file, &paths.base))?;
            key
        }
        MasterKeySource::Passphrase => {
            let (key, params) = new_passphrase_key("KEYGATE_PASSPHRASE")?;
            params.write_new(&resolve_path(&config.vault.kdf_file, &paths.base))?;
            key
        }
    };

    // The store: created and migrated; a shared PostgreSQL store may already have a key.
    let url = std::env::var("KEYGATE_STORE_URL")
        .ok()
        .filter(|_| args.store_url.is_some())
        .unwrap_or_else(|| resolve_sqlite_url(&store_url, &paths.base));
    let store = Store::open(&url, OpenMode::Create).await?;
    let stored = store.init_meta(MASTER_KEY_ID, key.id().as_str()).await?;
    store.close().await;
    if stored != key.id().as_str() {
        bail!(
            "the store at {} already belongs to another keygate master key (id {stored}). \
             To add an instance to it, copy an existing instance's data directory instead of running init",
            redact_url(&url)
        );
    }

    // Nothing in the data directory is for anyone else's eyes.
    if let Some(db) = url.strip_prefix("sqlite://") {
        fs::set_permissions(db, fs::Permissions::from_mode(0o600))
            .with_context(|| format!("cannot set mode 0600 on {db}"))?;
    }
    fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&paths.config_file)
        .and_then(|mut f| f.write_all(config_text.as_bytes()))
        .with_context(|| format!("cannot write {}", paths.config_file.display()))?;

    tracing::info!(
        data_dir = %cli.data_dir.display(),
        master_key = ?source,
        master_key_id = %key.id(),
        store = %redact_url(&url),
        "initialised data directory"
    );
    let dir = cli.data_dir.display();
    println!("Created keygate data directory {dir}");
    println!("  config      {}", paths.config_file.display());
    match source {
        MasterKeySource::File => println!(
            "  master key  {} (mode 0600, id {})",
            resolve_path(&config.vault.key_file, &paths.base).display(),
            key.id()
        ),
        MasterKeySource::Passphrase => println!(
            "  master key  from your passphrase, Argon2id parameters in {} (id {})",
            resolve_path(&config.vault.kdf_file, &paths.base).display(),
            key.id()
        ),
    }
    println!("  store       {}", redact_url(&url));
    println!();
    println!(
        "Back up the master key{}: without it no credential can be decrypted.",
        if source == MasterKeySource::Passphrase {
            " parameters and remember the passphrase"
        } else {
            " file"
        }
    );
    println!("Next: keygate --data-dir {dir} credential add --venue NAME --kind binance-hmac");
    Ok(())
}
