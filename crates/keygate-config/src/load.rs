//! Reading keygate.toml: TOML text, `KEYGATE_<SECTION>_<FIELD>` overrides from the environment,
//! and paths relative to the file's directory. It must not know what the fields mean.

use std::path::{Path, PathBuf};

use crate::Config;
use crate::error::{Context, Result, bail};

/// The fields an environment variable may override: (section, field).
const ENV_FIELDS: &[(&str, &str)] = &[
    ("store", "url"),
    ("vault", "master_key"),
    ("vault", "key_file"),
    ("vault", "kdf_file"),
    ("log", "format"),
    ("log", "level"),
    ("prices", "max_age"),
    ("tokens", "default_ttl"),
    ("tokens", "max_ttl"),
    ("address_book", "cooldown"),
    ("audit", "signing_key"),
    ("audit", "export_file"),
    ("decide", "max_clock_skew"),
    ("server", "listen"),
    ("server", "credential_ttl"),
    ("containment", "unapproved_outflow"),
    ("containment", "lock_key"),
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

    /// Reads and parses a config file exactly as written, with no environment override (a
    /// replay's config: the same file must give the same replay on any host).
    pub fn load_as_written(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the config file {}", path.display()))?;
        Self::parse(&text, |_| None).with_context(|| {
            format!(
                "config file {} is not valid (see docs/config.md)",
                path.display()
            )
        })
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{LogFormat, MasterKeySource, default_config_text};

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
