//! The config model: the top-level [`Config`] and the sections of store, vault, log, policy,
//! prices, tokens, address book, audit, decide and limits. Plain data with serde defaults; it
//! must not know how a section is checked or used (see `engine` and `setup`).

use std::path::PathBuf;

use serde::Deserialize;

use crate::{
    AlertsConfig, ApprovalsConfig, ContainmentConfig, DetectorsConfig, ScenarioConfig,
    ServerConfig, VenueConfig,
};

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
    #[serde(default)]
    pub policy: PolicyConfig,
    #[serde(default)]
    pub prices: PricesConfig,
    #[serde(default)]
    pub tokens: TokensConfig,
    #[serde(default)]
    pub address_book: AddressBookConfig,
    #[serde(default)]
    pub audit: AuditConfig,
    #[serde(default)]
    pub decide: DecideConfig,
    #[serde(default)]
    pub trading: TradingConfig,
    #[serde(default)]
    pub limits: Vec<LimitConfig>,
    #[serde(default)]
    pub server: ServerConfig,
    #[serde(default)]
    pub approvals: ApprovalsConfig,
    #[serde(default)]
    pub containment: ContainmentConfig,
    #[serde(default)]
    pub detectors: DetectorsConfig,
    #[serde(default)]
    pub alerts: AlertsConfig,
    /// The venues the gateway serves, by name (the name in `/venues/<name>/…`, in client
    /// scopes, limits and policies).
    #[serde(default)]
    pub venues: std::collections::BTreeMap<String, VenueConfig>,
    /// Clients and address-book entries for `keygate-harness replay` and `keygate-harness demo` (which start
    /// from an empty store); `serve` and the admin commands ignore it.
    #[serde(default)]
    pub scenario: ScenarioConfig,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DecideConfig {
    /// How far this host's clock may be behind the latest audit entry (or ahead of the store's
    /// clock) before keygate
    /// denies (instead of dating decisions forward).
    #[serde(default = "default_max_clock_skew")]
    pub max_clock_skew: String,
}

fn default_max_clock_skew() -> String {
    "5s".into()
}

impl Default for DecideConfig {
    fn default() -> Self {
        Self {
            max_clock_skew: default_max_clock_skew(),
        }
    }
}

/// How orders are valued: `[trading]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TradingConfig {
    /// A market order sized in its base asset is valued at the reference price plus this many
    /// basis points (the most it may fill above the market).
    #[serde(default = "default_slippage_bps")]
    pub slippage_bps: i64,
    /// An order whose instrument's reference price is older than this is denied.
    #[serde(default = "default_reference_max_age")]
    pub reference_max_age: String,
    /// How often `serve` reads each traded instrument's book from its venue.
    #[serde(default = "default_reference_poll")]
    pub reference_poll: String,
}

fn default_slippage_bps() -> i64 {
    100
}

fn default_reference_max_age() -> String {
    "30s".into()
}

fn default_reference_poll() -> String {
    "5s".into()
}

impl Default for TradingConfig {
    fn default() -> Self {
        Self {
            slippage_bps: default_slippage_bps(),
            reference_max_age: default_reference_max_age(),
            reference_poll: default_reference_poll(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyConfig {
    /// Cedar policy files, or directories whose `*.cedar` files are all loaded (sorted by name).
    #[serde(default = "default_policy_files")]
    pub files: Vec<PathBuf>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PricesConfig {
    /// An observed price older than this is stale, and a value-moving request priced from it
    /// is denied.
    #[serde(default = "default_price_max_age")]
    pub max_age: String,
    /// Prices fixed by the operator, in USD per unit (decimal strings); they never go stale.
    #[serde(default)]
    pub pinned: std::collections::BTreeMap<String, String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokensConfig {
    /// The lifetime of a token when `token issue` is given no --ttl.
    #[serde(default = "default_token_ttl")]
    pub default_ttl: String,
    /// The longest lifetime `token issue` accepts.
    #[serde(default = "default_token_max_ttl")]
    pub max_ttl: String,
    /// Where a token may be used from when `token issue` is given no --cidr.
    #[serde(default = "default_token_cidrs")]
    pub default_cidrs: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AddressBookConfig {
    /// How long a new address-book entry waits before it can be used.
    #[serde(default = "default_cooldown")]
    pub cooldown: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditConfig {
    /// The instance's Ed25519 key that signs checkpoints (mode 0600).
    #[serde(default = "default_signing_key")]
    pub signing_key: PathBuf,
    /// Write a signed checkpoint after this many entries...
    #[serde(default = "default_checkpoint_every")]
    pub checkpoint_every: i64,
    /// ...or this long after the last one, whichever comes first.
    #[serde(default = "default_checkpoint_interval")]
    pub checkpoint_interval: String,
    /// Every checkpoint is also appended to this file, outside the store ("" to disable).
    #[serde(default = "default_export_file")]
    pub export_file: PathBuf,
    /// Other instances' public keys (hex) whose checkpoints `audit verify` accepts.
    #[serde(default)]
    pub trusted_keys: Vec<String>,
}

/// One rolling limit; see docs/config.md.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitConfig {
    pub name: String,
    pub window: String,
    pub client: Option<String>,
    pub venue: Option<String>,
    pub asset: Option<String>,
    pub actions: Option<Vec<keygate_core::Action>>,
    pub max_usd: Option<String>,
    pub max_amount: Option<String>,
    pub max_count: Option<u64>,
}

fn default_policy_files() -> Vec<PathBuf> {
    vec!["policies".into()]
}
fn default_price_max_age() -> String {
    "5m".into()
}
fn default_token_ttl() -> String {
    "15m".into()
}
fn default_token_max_ttl() -> String {
    "24h".into()
}
fn default_token_cidrs() -> Vec<String> {
    vec!["127.0.0.1/32".into(), "::1/128".into()]
}
fn default_cooldown() -> String {
    "24h".into()
}
fn default_signing_key() -> PathBuf {
    "audit.key".into()
}
fn default_checkpoint_every() -> i64 {
    1000
}
fn default_checkpoint_interval() -> String {
    "1m".into()
}
fn default_export_file() -> PathBuf {
    "audit-checkpoints.jsonl".into()
}

impl Default for PolicyConfig {
    fn default() -> Self {
        Self {
            files: default_policy_files(),
        }
    }
}
impl Default for PricesConfig {
    fn default() -> Self {
        Self {
            max_age: default_price_max_age(),
            pinned: Default::default(),
        }
    }
}
impl Default for TokensConfig {
    fn default() -> Self {
        Self {
            default_ttl: default_token_ttl(),
            max_ttl: default_token_max_ttl(),
            default_cidrs: default_token_cidrs(),
        }
    }
}
impl Default for AddressBookConfig {
    fn default() -> Self {
        Self {
            cooldown: default_cooldown(),
        }
    }
}
impl Default for AuditConfig {
    fn default() -> Self {
        Self {
            signing_key: default_signing_key(),
            checkpoint_every: default_checkpoint_every(),
            checkpoint_interval: default_checkpoint_interval(),
            export_file: default_export_file(),
            trusted_keys: vec![],
        }
    }
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

/// The log format on stderr: JSON, text, or JSON unless stderr is a terminal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Auto,
    Json,
    Text,
}

impl LogFormat {
    /// Every format, by its name in the config and on the command line.
    pub const ALL: [(&'static str, LogFormat); 3] = [
        ("auto", LogFormat::Auto),
        ("json", LogFormat::Json),
        ("text", LogFormat::Text),
    ];
}
