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
