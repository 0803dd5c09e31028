//! `[venues.NAME]`: an exchange account or an EVM address, as written. Plain data; what is
//! checked and built from it lives in `setup`.

use serde::Deserialize;

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
    /// EVM: the cold address a rescue sweeps the treasury to when its key is used outside
    /// keygate (docs/chain.md). It must be an active address-book entry of this venue (added,
    /// its cool-down passed, approved like any other); none: no rescue at this venue.
    #[serde(default)]
    pub rescue_to: Option<String>,
    /// EVM: more JSON-RPC endpoints a rescue's transactions are sent to, besides `rpc_url`
    /// (another provider, a private relay). HTTPS, except to loopback.
    #[serde(default)]
    pub rescue_rpc_urls: Vec<String>,
    /// The vault credential to sign with [default: the venue's name].
    #[serde(default)]
    pub credential: Option<String>,
    /// Exchanges: the vault credential of the master account's containment key, which locks
    /// this venue's key and sweeps its sub-account when a freeze covers the venue (none: no
    /// containment at this venue). Needs `sub_account`.
    #[serde(default)]
    pub containment_credential: Option<String>,
    /// Exchanges: the sub-account keygate's credential belongs to, as the master account names
    /// it (Binance: its email; OKX: its name).
    #[serde(default)]
    pub sub_account: Option<String>,
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
