//! The `[server]`, `[approvals]`, `[alerts]` and `[containment]` sections. Plain data with
//! serde defaults; it must not know how they are checked (see `setup` and `engine`).

use std::path::PathBuf;

use serde::Deserialize;

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

/// What keygate freezes by itself, and what it does at a venue a freeze covers (for venues
/// with a `containment_credential`; see docs/containment.md).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContainmentConfig {
    /// On an unapproved outflow (reconciliation): "all", "venue", "credential" or "none".
    #[serde(default = "default_unapproved_outflow")]
    pub unapproved_outflow: String,
    /// How the leaked sub-account key is locked: "ip-restrict" (to `egress_ip`), "delete"
    /// (OKX only) or "off" [default: ip-restrict].
    #[serde(default = "default_lock_key")]
    pub lock_key: String,
    /// Stop transfers out of the sub-account where the venue has a switch (OKX) [default: true].
    #[serde(default = "yes")]
    pub stop_transfers: bool,
    /// Sweep the sub-account's balances to the master account [default: true].
    #[serde(default = "yes")]
    pub sweep: bool,
    /// How many times balances are read and swept [default: 3].
    #[serde(default = "default_sweep_rounds")]
    pub sweep_rounds: u32,
    /// keygate's own egress IP addresses: the only ones a locked key still works from.
    #[serde(default)]
    pub egress_ip: Vec<String>,
    /// The first wait before a step is tried again; it doubles up to `retry_max`.
    #[serde(default = "default_retry_min")]
    pub retry_min: String,
    #[serde(default = "default_retry_max")]
    pub retry_max: String,
    /// How often keygate looks for freezes to contain and steps to try [default: 1s].
    #[serde(default = "default_every")]
    pub every: String,
    /// How long one instance holds a venue's containment without renewing it [default: 15s].
    #[serde(default = "default_lease_ttl")]
    pub lease_ttl: String,
}

fn default_unapproved_outflow() -> String {
    "all".into()
}
fn default_lock_key() -> String {
    "ip-restrict".into()
}
fn yes() -> bool {
    true
}
fn default_sweep_rounds() -> u32 {
    3
}
fn default_retry_min() -> String {
    "1s".into()
}
fn default_retry_max() -> String {
    "60s".into()
}
fn default_every() -> String {
    "1s".into()
}
fn default_lease_ttl() -> String {
    "15s".into()
}

impl Default for ContainmentConfig {
    fn default() -> Self {
        Self {
            unapproved_outflow: default_unapproved_outflow(),
            lock_key: default_lock_key(),
            stop_transfers: true,
            sweep: true,
            sweep_rounds: default_sweep_rounds(),
            egress_ip: vec![],
            retry_min: default_retry_min(),
            retry_max: default_retry_max(),
            every: default_every(),
            lease_ttl: default_lease_ttl(),
        }
    }
}
