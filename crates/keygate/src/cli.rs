//! The command line, declared with clap's derive API. Every subcommand explains itself in one
//! line of `--help`.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// keygate holds your venue API secrets and hot-wallet keys, so your bots never do.
///
/// Bots get short-lived scoped tokens; every request is decided against policies, limits and
/// anomaly detectors; secrets stay encrypted at rest. See docs/ for the full guide.
#[derive(Debug, Parser)]
#[command(name = "keygate", version, propagate_version = true)]
pub struct Cli {
    /// Data directory: config, SQLite database and master key.
    #[arg(
        long,
        global = true,
        env = "KEYGATE_DATA_DIR",
        default_value = "keygate-data"
    )]
    pub data_dir: PathBuf,

    /// Config file [default: DATA_DIR/keygate.toml].
    #[arg(long, global = true, env = "KEYGATE_CONFIG")]
    pub config: Option<PathBuf>,

    /// Log format on stderr: json, text, or auto (JSON unless stderr is a terminal).
    #[arg(long, global = true, env = "KEYGATE_LOG_FORMAT")]
    pub log_format: Option<LogFormat>,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Auto,
    Json,
    Text,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create a data directory: commented config, database with migrations, and master key.
    Init(InitArgs),
    /// Add, list, rotate or remove venue credentials (secrets come from stdin or the terminal).
    #[command(subcommand)]
    Credential(CredentialCommand),
    /// Move every credential's data key to a new master key, in one transaction.
    Rekey,
}

#[derive(Debug, Args)]
pub struct InitArgs {
    /// Derive the master key from a passphrase (terminal prompt or KEYGATE_PASSPHRASE) with
    /// Argon2id, instead of a random key in master.key.
    #[arg(long)]
    pub passphrase: bool,

    /// Store URL to write into the config: sqlite://PATH (default, relative to the data
    /// directory) or postgres://USER@HOST/DB to share state between instances.
    #[arg(long, value_name = "URL")]
    pub store_url: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum CredentialCommand {
    /// Store a new credential; its secret parts are read from stdin, one per line, or prompted.
    Add(AddArgs),
    /// Show credentials' metadata (never their secrets).
    List(ListArgs),
    /// Store a new version of a credential and disable the old one.
    Rotate(IdArg),
    /// Delete a credential and all its versions.
    Remove(IdArg),
    /// Check that every stored version decrypts with the master key and matches its fingerprint.
    Verify(VerifyArgs),
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// Only this credential [default: all].
    pub id: Option<String>,
}

#[derive(Debug, Args)]
pub struct AddArgs {
    /// Venue the credential is for, e.g. binance-main (letters, digits, - and _).
    #[arg(long)]
    pub venue: String,

    /// binance-hmac (API key, secret), okx-hmac (API key, secret, passphrase) or evm-key
    /// (private key hex).
    #[arg(long)]
    pub kind: keygate_vault::CredentialKind,

    /// Id to give the credential [default: a random cr_… id].
    #[arg(long)]
    pub id: Option<String>,
}

#[derive(Debug, Args)]
pub struct ListArgs {
    /// Print JSON lines instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct IdArg {
    /// The credential's id, as `credential list` shows it.
    pub id: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn every_subcommand_has_a_one_line_help() {
        fn walk(cmd: &clap::Command, path: &str) {
            for sub in cmd.get_subcommands() {
                let name = format!("{path} {}", sub.get_name());
                let about = sub.get_about().map(|a| a.to_string()).unwrap_or_default();
                assert!(!about.is_empty(), "`{name}` has no help line");
                assert!(!about.contains('\n'), "`{name}` help is not one line");
                walk(sub, &name);
            }
        }
        walk(&Cli::command(), "keygate");
    }
}
