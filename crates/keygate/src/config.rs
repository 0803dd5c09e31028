//! keygate.toml: one file, every field documented in docs/config.md, each overridable by an
//! environment variable `KEYGATE_<SECTION>_<FIELD>` (for example `KEYGATE_STORE_URL`).
//!
//! Relative paths in the file are relative to the file's own directory, so a data directory can
//! be moved as a whole.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde::Deserialize;

use crate::cli::LogFormat;

/// The whole configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub store: StoreConfig,
    #[serde(default)]
    pub vault: VaultConfig,
    #[serde(default)]
    pub log: LogConfig,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreConfig {
    /// sqlite://PATH or postgres://USER@HOST/DB.
    #[serde(default = "default_store_url")]
    pub url: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MasterKeySource {
    /// A random 256-bit key in `key_file`.
    File,
    /// A key derived from a passphrase with the Argon2id parameters in `kdf_file`.
    Passphrase,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VaultConfig {
    #[serde(default = "default_master_key")]
    pub master_key: MasterKeySource,
    #[serde(default = "default_key_file")]
    pub key_file: PathBuf,
    #[serde(default = "default_kdf_file")]
    pub kdf_file: PathBuf,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    #[serde(default = "default_log_format")]
    pub format: LogFormat,
    /// A tracing filter: a level (info, debug, …) or directives like `keygate=debug`.
    #[serde(default = "default_log_level")]
    pub level: String,
}

fn default_store_url() -> String {
    "sqlite://keygate.db".into()
}
fn default_master_key() -> MasterKeySource {
    MasterKeySource::File
}
fn default_key_file() -> PathBuf {
    "master.key".into()
}
fn default_kdf_file() -> PathBuf {
    "master.kdf".into()
}
fn default_log_format() -> LogFormat {
    LogFormat::Auto
}
fn default_log_level() -> String {
    "info".into()
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            url: default_store_url(),
        }
    }
}
impl Default for VaultConfig {
    fn default() -> Self {
        Self {
            master_key: default_master_key(),
            key_file: default_key_file(),
            kdf_file: default_kdf_file(),
        }
    }
}
impl Default for LogConfig {
    fn default() -> Self {
        Self {
            format: default_log_format(),
            level: default_log_level(),
        }
    }
}

/// The fields an environment variable may override: (section, field).
const ENV_FIELDS: &[(&str, &str)] = &[
    ("store", "url"),
    ("vault", "master_key"),
    ("vault", "key_file"),
    ("vault", "kdf_file"),
    ("log", "format"),
    ("log", "level"),
];

/// The environment variable that overrides `section.field`.
fn env_var_name(section: &str, field: &str) -> String {
    format!("KEYGATE_{}_{}", section, field).to_ascii_uppercase()
}

impl Config {
    /// Parses TOML text, then applies overrides from `env` (a lookup, so tests need not touch
    /// the process environment).
    pub fn parse(text: &str, env: impl Fn(&str) -> Option<String>) -> Result<Self> {
        let mut table: toml::Table = toml::from_str(text)?;
        for (section, field) in ENV_FIELDS {
            if let Some(value) = env(&env_var_name(section, field)) {
                let sec = table
                    .entry(section.to_string())
                    .or_insert_with(|| toml::Value::Table(toml::Table::new()));
                let Some(sec) = sec.as_table_mut() else {
                    bail!("[{section}] in the config is not a table");
                };
                sec.insert(field.to_string(), toml::Value::String(value));
            }
        }
        Ok(table.try_into()?)
    }

    /// Reads and parses the config file, with `KEYGATE_*` overrides from the environment.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).with_context(|| {
            format!(
                "cannot read the config file {}; run `keygate init` to create a data directory, or pass --data-dir / --config",
                path.display()
            )
        })?;
        Self::parse(&text, |k| std::env::var(k).ok()).with_context(|| {
            format!(
                "config file {} is not valid (see docs/config.md)",
                path.display()
            )
        })
    }

    /// `store.url` with a relative SQLite path made absolute against `base`.
    pub fn store_url(&self, base: &Path) -> String {
        resolve_sqlite_url(&self.store.url, base)
    }
}

/// `sqlite://rel/path` or `sqlite:rel/path` → `sqlite:///base/rel/path`; other URLs unchanged.
pub fn resolve_sqlite_url(url: &str, base: &Path) -> String {
    match keygate_store::sqlite_path(url) {
        Some(path) if !path.starts_with('/') => {
            format!("sqlite://{}", base.join(path).display())
        }
        Some(path) => format!("sqlite://{path}"),
        None => url.to_string(),
    }
}

/// A path from the config, made absolute against `base`.
pub fn resolve_path(p: &Path, base: &Path) -> PathBuf {
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        base.join(p)
    }
}

/// The commented config that `keygate init` writes.
pub fn default_config_text(store_url: &str, source: MasterKeySource) -> String {
    let master_key = match source {
        MasterKeySource::File => "file",
        MasterKeySource::Passphrase => "passphrase",
    };
    format!(
        r#"# keygate configuration, written by `keygate init`.
# Every field is documented in docs/config.md. Each can be overridden by an environment variable
# KEYGATE_<SECTION>_<FIELD>, for example KEYGATE_STORE_URL. Relative paths are relative to the
# directory of this file.

[store]
# Where keygate keeps its state.
#   sqlite://PATH                embedded SQLite in WAL mode; no set-up, one machine
#   postgres://USER@HOST/DB      PostgreSQL, for several instances sharing state
# Put a PostgreSQL password in KEYGATE_STORE_URL rather than in this file.
url = "{store_url}"

[vault]
# Where the master key comes from; it wraps every credential's data key.
#   "file"        a random 256-bit key in key_file (mode 0600; keygate refuses a looser mode)
#   "passphrase"  derived with Argon2id from a passphrase read from the terminal or
#                 KEYGATE_PASSPHRASE; the parameters and salt are in kdf_file
master_key = "{master_key}"
key_file = "master.key"
kdf_file = "master.kdf"

[log]
# "auto" (JSON unless stderr is a terminal), "json" or "text".
format = "auto"
# A level (error, warn, info, debug, trace) or tracing directives such as "keygate=debug".
level = "info"
"#
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    #[test]
    fn default_text_parses_to_defaults() {
        let c = Config::parse(
            &default_config_text("sqlite://keygate.db", MasterKeySource::File),
            no_env,
        )
        .unwrap();
        assert_eq!(c.store.url, "sqlite://keygate.db");
        assert_eq!(c.vault.master_key, MasterKeySource::File);
        assert_eq!(c.vault.key_file, PathBuf::from("master.key"));
        assert_eq!(c.log.format, LogFormat::Auto);
        let c = Config::parse("", no_env).unwrap();
        assert_eq!(c.store.url, "sqlite://keygate.db");
    }

    #[test]
    fn env_overrides_file() {
        let c = Config::parse("[store]\nurl = \"sqlite://a.db\"\n", |k| {
            (k == "KEYGATE_STORE_URL").then(|| "postgres://h/db".to_string())
        })
        .unwrap();
        assert_eq!(c.store.url, "postgres://h/db");
        let c = Config::parse("", |k| {
            (k == "KEYGATE_VAULT_MASTER_KEY").then(|| "passphrase".to_string())
        })
        .unwrap();
        assert_eq!(c.vault.master_key, MasterKeySource::Passphrase);
    }

    #[test]
    fn unknown_fields_and_bad_values_are_errors() {
        let e = Config::parse("[store]\nulr = \"x\"\n", no_env).unwrap_err();
        assert!(format!("{e:#}").contains("ulr"), "{e:#}");
        let e = Config::parse("[vault]\nmaster_key = \"hsm\"\n", no_env).unwrap_err();
        assert!(format!("{e:#}").contains("hsm"), "{e:#}");
        assert!(Config::parse("[store", no_env).is_err());
    }

    #[test]
    fn relative_sqlite_paths_resolve_against_the_config_dir() {
        let base = Path::new("/data/kg");
        assert_eq!(
            resolve_sqlite_url("sqlite://keygate.db", base),
            "sqlite:///data/kg/keygate.db"
        );
        assert_eq!(
            resolve_sqlite_url("sqlite:///abs.db", base),
            "sqlite:///abs.db"
        );
        assert_eq!(
            resolve_sqlite_url("sqlite:rel.db", base),
            "sqlite:///data/kg/rel.db"
        );
        assert_eq!(
            resolve_sqlite_url("postgres://h/db", base),
            "postgres://h/db"
        );
    }
}
