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
    /// The instruments (`BASE/QUOTE`) it may trade; none if empty.
    pub instruments: Vec<String>,
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
        instruments: instrument_list(c.instruments),
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

/// Instruments as an operator typed them: upper case, sorted, without repeats.
fn instrument_list(mut list: Vec<String>) -> Vec<String> {
    for i in &mut list {
        *i = i.trim().to_ascii_uppercase();
    }
    list.sort();
    list.dedup();
    list
}

/// Replaces the instruments a client may trade (an empty list: it trades nothing); returns
/// the list as stored and the audit entry.
pub async fn set_client_instruments(
    h: &StateHandle,
    actor: &str,
    name: &str,
    instruments: Vec<String>,
    now: Millis,
) -> Result<(Vec<String>, i64)> {
    let list = instrument_list(instruments);
    if let Some(i) = list.iter().find(|i| !auth::valid_instrument(i)) {
        return Err(invalid(format!(
            "instrument {i:?} is not valid: write it BASE/QUOTE, such as BTC/USDT"
        )));
    }
    let seq = h
        .store
        .set_client_instruments(name, &list, actor, now)
        .await?;
    checkpoint_if_due(h).await;
    Ok((list, seq))
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
