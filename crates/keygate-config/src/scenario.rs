//! The `[scenario]` section: clients and address-book entries a replay starts from. Plain data;
//! `serve` and the admin operations ignore it.

use serde::Deserialize;

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
    /// The instruments (`BASE/QUOTE`) it may trade; none if left out.
    #[serde(default)]
    pub instruments: Vec<String>,
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
