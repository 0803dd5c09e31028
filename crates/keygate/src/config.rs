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
    /// Clients and address-book entries for `keygate replay` and `keygate demo` (which start
    /// from an empty store); `serve` and the admin commands ignore it.
    #[serde(default)]
    pub scenario: ScenarioConfig,
}

/// What a replay declares up front: its clients and address book.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScenarioConfig {
    #[serde(default)]
    pub clients: Vec<ScenarioClient>,
    #[serde(default)]
    pub destinations: Vec<ScenarioDestination>,
}

/// A client of a replay, as `keygate client add` would make it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScenarioClient {
    pub name: String,
    pub venues: Vec<String>,
    pub actions: Vec<keygate_core::Action>,
    /// Where its token may be used from (the gateway replay issues one bound to these).
    pub cidrs: Vec<String>,
}

/// An address-book entry of a replay, approved when added.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScenarioDestination {
    pub venue: String,
    pub asset: String,
    pub address: String,
    pub label: String,
    /// When it was added (RFC 3339); it is usable once the cool-down has passed.
    pub added: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// Where `keygate serve` listens. Loopback by default: put it on another address only
    /// with TLS, or behind a proxy you trust.
    #[serde(default = "default_listen")]
    pub listen: String,
    /// A PEM certificate chain; with `tls_key`, `serve` speaks HTTPS only.
    #[serde(default)]
    pub tls_cert: Option<PathBuf>,
    /// The PEM private key of `tls_cert`.
    #[serde(default)]
    pub tls_key: Option<PathBuf>,
    /// How long an opened venue credential stays in memory (a rotation on any instance takes
    /// effect within it).
    #[serde(default = "default_credential_ttl")]
    pub credential_ttl: String,
}

fn default_listen() -> String {
    "127.0.0.1:8620".into()
}

fn default_credential_ttl() -> String {
    "30s".into()
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: default_listen(),
            tls_cert: None,
            tls_key: None,
            credential_ttl: default_credential_ttl(),
        }
    }
}

/// Who may lift a freeze, and how many of them must.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApprovalsConfig {
    /// Approvers' Ed25519 public keys (hex; `keygate approver keygen` makes one).
    #[serde(default)]
    pub approvers: Vec<String>,
    /// How many distinct approvers must sign.
    #[serde(default = "default_quorum")]
    pub quorum: usize,
    /// The longest an approval may stay valid for.
    #[serde(default = "default_max_validity")]
    pub max_validity: String,
    /// How long a held request waits for approvals; after that it is a deny.
    #[serde(default = "default_max_validity")]
    pub hold_ttl: String,
}

fn default_quorum() -> usize {
    2
}
fn default_max_validity() -> String {
    "1h".into()
}

impl Default for ApprovalsConfig {
    fn default() -> Self {
        Self {
            approvers: vec![],
            quorum: default_quorum(),
            max_validity: default_max_validity(),
            hold_ttl: default_max_validity(),
        }
    }
}

/// The anomaly detectors; every field left out keeps its default (docs/detection.md).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DetectorsConfig {
    pub window: Option<String>,
    pub min_samples: Option<usize>,
    /// A request whose signals' scores add up to at least this is held, denied, or frozen
    /// (its client), whatever each signal asks for.
    pub score_hold: Option<i64>,
    pub score_deny: Option<i64>,
    pub score_freeze: Option<i64>,
    pub new_destination: Option<RuleConfig>,
    pub size_jump: Option<SizeJumpConfig>,
    pub velocity: Option<VelocityConfig>,
    pub test_then_drain: Option<DrainConfig>,
    pub off_hours: Option<RuleConfig>,
}

/// A detector's switch, score and response.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleConfig {
    pub enabled: Option<bool>,
    pub score: Option<i64>,
    pub response: Option<keygate_core::detect::Response>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SizeJumpConfig {
    #[serde(flatten)]
    pub rule: RuleConfig,
    pub factor: Option<String>,
    pub mads: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VelocityConfig {
    #[serde(flatten)]
    pub rule: RuleConfig,
    pub window: Option<String>,
    pub factor: Option<i64>,
    pub min_count: Option<usize>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DrainConfig {
    #[serde(flatten)]
    pub rule: RuleConfig,
    pub within: Option<String>,
    pub test_max_usd: Option<String>,
    pub ratio: Option<i64>,
    pub drain_min_usd: Option<String>,
}

/// Where alerts go besides the log.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertsConfig {
    #[serde(default)]
    pub webhooks: Vec<WebhookConfig>,
}

/// One webhook alert sink.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    /// A name for logs, metrics and its delivery cursor.
    pub name: String,
    /// Where to POST (https, or http to a loopback address).
    pub url: String,
    /// "json" (keygate's alert, HMAC-signed) or "slack" (`{"text": …}`).
    #[serde(default = "default_webhook_format")]
    pub format: String,
    /// The environment variable holding a JSON sink's HMAC secret.
    #[serde(default)]
    pub secret_env: Option<String>,
    /// The longest wait between two delivery attempts.
    #[serde(default = "default_max_backoff")]
    pub max_backoff: String,
}

fn default_webhook_format() -> String {
    "json".into()
}
fn default_max_backoff() -> String {
    "60s".into()
}

/// What keygate freezes by itself.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContainmentConfig {
    /// On an unapproved outflow (reconciliation): "all", "venue", "credential" or "none".
    #[serde(default = "default_unapproved_outflow")]
    pub unapproved_outflow: String,
}

fn default_unapproved_outflow() -> String {
    "all".into()
}

impl Default for ContainmentConfig {
    fn default() -> Self {
        Self {
            unapproved_outflow: default_unapproved_outflow(),
        }
    }
}

/// What a venue is: an exchange's REST dialect, or an EVM chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum VenueKindConfig {
    Binance,
    Okx,
    Evm,
}

impl VenueKindConfig {
    /// The exchange dialect, or None for an EVM venue.
    pub fn exchange(self) -> Option<keygate_venues::VenueKind> {
        match self {
            Self::Binance => Some(keygate_venues::VenueKind::Binance),
            Self::Okx => Some(keygate_venues::VenueKind::Okx),
            Self::Evm => None,
        }
    }
}

/// An ERC-20 token of an EVM venue.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenConfig {
    /// The token's contract address.
    pub contract: String,
    /// Its decimals (6 for USDT).
    pub decimals: u8,
}

/// One venue: an exchange the gateway forwards to, or an EVM chain keygate transfers on and
/// watches.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VenueConfig {
    /// binance, okx (REST dialects) or evm.
    pub kind: VenueKindConfig,
    /// Exchanges: the REST base URL, such as https://api.binance.com. HTTPS, except to loopback.
    #[serde(default)]
    pub base_url: Option<String>,
    /// EVM: the node's JSON-RPC URL. HTTPS, except to loopback.
    #[serde(default)]
    pub rpc_url: Option<String>,
    /// EVM: the chain id (checked against the node's).
    #[serde(default)]
    pub chain_id: Option<u64>,
    /// EVM: blocks after which a transfer counts as confirmed [default: 12].
    #[serde(default = "default_confirmations")]
    pub confirmations: u64,
    /// EVM: how often the watcher asks the node for new blocks [default: 100ms].
    #[serde(default = "default_poll")]
    pub poll: String,
    /// EVM: how many recent blocks the watcher re-checks on a reorg [default: 64].
    #[serde(default = "default_reorg_depth")]
    pub reorg_depth: u64,
    /// EVM: the ERC-20 tokens, by symbol. "ETH" is the native asset.
    #[serde(default)]
    pub tokens: std::collections::BTreeMap<String, TokenConfig>,
    /// The vault credential to sign with [default: the venue's name].
    #[serde(default)]
    pub credential: Option<String>,
    /// How long a forwarded request may take.
    #[serde(default = "default_venue_timeout")]
    pub timeout: String,
    /// Binance: the recvWindow keygate signs with.
    #[serde(default = "default_recv_window")]
    pub recv_window: String,
    /// Binance: quote assets that split a symbol such as BTCUSDT [default: a built-in list].
    #[serde(default)]
    pub quote_assets: Option<Vec<String>>,
    /// GET paths allowed as reads beyond those keygate knows.
    #[serde(default)]
    pub extra_read_paths: Vec<String>,
    /// How often to reconcile the venue's withdrawal history ("off" to disable).
    #[serde(default = "default_reconcile_every")]
    pub reconcile_every: String,
    /// How far back the first reconciliation reads.
    #[serde(default = "default_reconcile_lookback")]
    pub reconcile_lookback: String,
    /// Forward the venue's public market-data endpoints to requests that carry no credentials
    /// (as client libraries such as ccxt send them): unsigned, not decided, not audited.
    #[serde(default)]
    pub anonymous_public: bool,
    /// Requests a second one source address may send without credentials, where
    /// `anonymous_public` is on (the rest are answered 429).
    #[serde(default = "default_anonymous_rate")]
    pub anonymous_rate: u32,
}

fn default_anonymous_rate() -> u32 {
    10
}

fn default_confirmations() -> u64 {
    12
}
fn default_poll() -> String {
    "100ms".into()
}
fn default_reorg_depth() -> u64 {
    64
}
fn default_venue_timeout() -> String {
    "10s".into()
}
fn default_recv_window() -> String {
    "5s".into()
}
fn default_reconcile_every() -> String {
    "60s".into()
}
fn default_reconcile_lookback() -> String {
    "24h".into()
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

/// The commented config that `keygate init` writes.
pub fn default_config_text(store_url: &str, source: MasterKeySource) -> String {
    let master_key = match source {
        MasterKeySource::File => "file",
        MasterKeySource::Passphrase => "passphrase",
    };
    format!(
        r#"# keygate configuration, written by `keygate init`.
# Every field is documented in docs/config.md, with the ones an environment variable
# KEYGATE_<SECTION>_<FIELD> can override (for example KEYGATE_STORE_URL). Relative paths are relative to the
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

[policy]
# Cedar policy files, or directories whose *.cedar files are all loaded. Nothing is allowed that
# no policy permits. Check changes first: keygate policy validate; keygate policy test.
files = ["policies"]

[prices]
# A value-moving request priced from an observed price older than this is denied.
max_age = "5m"

[prices.pinned]
# Prices you fix yourself (USD per unit); they never go stale. Others: `keygate price set`.
USDT = "1"
USDC = "1"

[tokens]
default_ttl = "15m"
max_ttl = "24h"
# Where a token may be used from when `token issue` gets no --cidr: this machine only.
default_cidrs = ["127.0.0.1/32", "::1/128"]

[address_book]
# A new destination is usable only after this cool-down and another admin's approval.
# `address add --cooldown` may lengthen it, never shorten it.
cooldown = "24h"

[decide]
# If this host's clock is further behind the latest audit entry, or ahead of the store's clock,
# keygate denies (a clock that jumped ahead must not reopen limit windows).
max_clock_skew = "5s"

[audit]
# The Ed25519 key that signs audit checkpoints, and where checkpoints are exported (keep a copy
# of that file somewhere the store's writers cannot reach).
signing_key = "audit.key"
checkpoint_every = 1000
checkpoint_interval = "1m"
export_file = "audit-checkpoints.jsonl"
trusted_keys = []

[server]
# Where `keygate serve` listens. Loopback by default; on any other address set tls_cert and
# tls_key (PEM files) so tokens never cross the network in clear text.
listen = "127.0.0.1:8620"
# How long an opened venue credential stays in memory; a rotation takes effect within it.
credential_ttl = "30s"

# The venues the gateway serves. A bot calls http://LISTEN/venues/<name>/<the venue's REST path>
# with its keygate token; keygate decides, signs with the credential and forwards.
# [venues.binance-main]
# kind = "binance"                      # or "okx"
# base_url = "https://api.binance.com"  # https, except to a loopback address
# credential = "binance-main"           # the vault credential's id [default: the venue's name]
# timeout = "10s"
# reconcile_every = "60s"               # read the withdrawal history and match it; "off" disables
# reconcile_lookback = "24h"            # how far back the first reading goes
# extra_read_paths = []                 # more GET paths to allow as reads
# anonymous_public = false              # forward public market data without credentials (ccxt)
# anonymous_rate = 10                   # ... at most this many a second per source address
#
# An EVM chain: transfers through POST /v1/transfers, and a watcher that freezes on any outflow
# keygate did not sign (docs/chain.md).
# [venues.eth]
# kind = "evm"
# rpc_url = "https://…"                 # the node's JSON-RPC URL; https, except to loopback
# chain_id = 1                          # checked against the node
# credential = "eth"                    # an evm-key credential [default: the venue's name]
# confirmations = 12                    # depth at which a transfer is reported confirmed
# poll = "100ms"                        # how often the watcher asks for new blocks
# [venues.eth.tokens]
# USDT = {{ contract = "0xdAC17F958D2ee523a2206206994597C13D831ec7", decimals = 6 }}

[approvals]
# Freezes are lifted only by this many signed approvals of distinct approvers (Ed25519 keys;
# `keygate approver keygen --out FILE` makes one and prints the public key to list here).
approvers = []
quorum = 2
max_validity = "1h"
# How long a held request waits for approvals (`keygate approve hold:ID`); then it is a deny.
hold_ttl = "1h"

[detectors]
# Anomaly detectors over each client's withdrawals and transfers, against its own history over
# `window` (see docs/detection.md for every field). response: alert, hold, deny, freeze-client,
# freeze-credential, freeze-venue or freeze-all; the strongest signal of a request is applied.
window = "14d"
[detectors.new_destination]
response = "alert"
[detectors.size_jump]
response = "hold"
[detectors.velocity]
response = "hold"
[detectors.test_then_drain]
response = "freeze-client"
[detectors.off_hours]
response = "alert"

[containment]
# What an unapproved outflow (a withdrawal reconciliation cannot match) freezes: "all",
# "venue", "credential" or "none" (alarm only).
unapproved_outflow = "all"

# Rolling limits over allowed withdrawals and transfers (see docs/config.md). client, venue and
# asset narrow a limit; "*" gives each client (venue, asset) its own bucket.
[[limits]]
name = "treasury-24h"
window = "24h"
max_usd = "1000000"

[[limits]]
name = "per-client-1h"
client = "*"
window = "1h"
max_usd = "100000"
max_count = 20
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

#[cfg(test)]
mod detector_config_tests {
    use super::*;

    #[test]
    fn detector_sections_parse_and_typos_are_errors() {
        let c = Config::parse(
            "[detectors.size_jump]\nresponse = \"deny\"\nfactor = \"20\"\n[detectors.test_then_drain]\nwithin = \"30m\"\nscore = 80\n",
            |_| None,
        )
        .unwrap();
        let s = c.detectors.size_jump.unwrap();
        assert_eq!(s.rule.response, Some(keygate_core::detect::Response::Deny));
        assert_eq!(s.factor.as_deref(), Some("20"));
        assert_eq!(c.detectors.test_then_drain.unwrap().rule.score, Some(80));
        for bad in [
            "[detectors.size_jump]\nfactr = \"20\"\n",
            "[detectors.size_jump]\nresponse = \"panic\"\n",
            "[detectors]\nwindw = \"1d\"\n",
        ] {
            assert!(Config::parse(bad, |_| None).is_err(), "{bad}");
        }
    }
}
