//! Clients (bots and services) and their scope: add, enable, disable, list. Every change is one
//! store transaction together with its audit entry.

use keygate_config::StateHandle;
use keygate_core::auth::{self, ClientRecord};
use keygate_core::{Action, Millis};

use crate::checkpoint::checkpoint_if_due;
use crate::error::{Result, invalid};

/// A client to add, as an operator asked for it (duplicates and order do not matter).
#[derive(Debug, Clone)]
pub struct NewClient {
    pub name: String,
    pub venues: Vec<String>,
    pub actions: Vec<Action>,
    pub tags: Vec<String>,
}

/// A client as added, with its audit entry.
#[derive(Debug, Clone)]
pub struct AddedClient {
    pub client: ClientRecord,
    pub seq: i64,
}

/// Adds a client with the venues and actions it may ever use.
pub async fn add_client(
    h: &StateHandle,
    actor: &str,
    c: NewClient,
    now: Millis,
) -> Result<AddedClient> {
    let mut venues = c.venues;
    venues.sort();
    venues.dedup();
    let mut actions = c.actions;
    actions.sort();
    actions.dedup();
    let client = ClientRecord {
        instruments: vec![],
        name: c.name,
        venues,
        actions,
        tags: c.tags,
        enabled: true,
    };
    auth::validate_client(&client).map_err(invalid)?;
    let seq = h.store.add_client(&client, actor, now).await?;
    checkpoint_if_due(h).await;
    Ok(AddedClient { client, seq })
}

/// Enables or disables a client (its tokens stop or start working on the next request);
/// returns the audit entry.
pub async fn set_client_enabled(
    h: &StateHandle,
    actor: &str,
    name: &str,
    enabled: bool,
    now: Millis,
) -> Result<i64> {
    let seq = h
        .store
        .set_client_enabled(name, enabled, actor, now)
        .await?;
    checkpoint_if_due(h).await;
    Ok(seq)
}

/// Every client and its scope.
pub async fn clients(h: &StateHandle) -> Result<Vec<ClientRecord>> {
    Ok(h.store.clients().await?)
}
