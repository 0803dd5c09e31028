//! The engine's state in the store: clients, tokens, the address book and observed prices.
//! Every change is one transaction that also appends its audit entry, so nothing changes
//! without a record, and every decider sees the change on its next batch (the audit head moves).

use ipnet::IpNet;
use keygate_core::auth::{ClientRecord, TokenKind, TokenRecord};
use keygate_core::book::Destination;
use keygate_core::intent::normalize_address;
use keygate_core::route::{Route, Via};
use keygate_core::{Action, Millis};
use rust_decimal::Decimal;
use serde_json::json;
use sqlx::any::AnyRow;
use sqlx::{Any, Row, Transaction};

use crate::audit::{NewEntry, append, lock_head};
use crate::{Conflict, Store, StoreError, is_unique_violation};

fn to_json<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string(v).unwrap_or_else(|_| "[]".into())
}

fn from_json<T: serde::de::DeserializeOwned>(text: &str, what: &str) -> Result<T, StoreError> {
    serde_json::from_str(text).map_err(|e| StoreError::Corrupt(format!("{what}: {e}")))
}

fn row_to_client(r: &AnyRow) -> Result<ClientRecord, StoreError> {
    let name: String = r.try_get("name")?;
    let what = format!("client {name}");
    Ok(ClientRecord {
        instruments: from_json(&r.try_get::<String, _>("instruments")?, &what)?,
        venues: from_json(&r.try_get::<String, _>("venues")?, &what)?,
        actions: from_json(&r.try_get::<String, _>("actions")?, &what)?,
        tags: from_json(&r.try_get::<String, _>("tags")?, &what)?,
        enabled: r.try_get::<i64, _>("enabled")? == 1,
        name,
    })
}

fn row_to_token(r: &AnyRow) -> Result<TokenRecord, StoreError> {
    let id: String = r.try_get("id")?;
    let what = format!("token {id}");
    let mut secret_hash = [0u8; 32];
    hex::decode_to_slice(r.try_get::<String, _>("secret_hash")?, &mut secret_hash)
        .map_err(|_| StoreError::Corrupt(format!("{what}: bad secret hash")))?;
    let cidrs: Vec<String> = from_json(&r.try_get::<String, _>("cidrs")?, &what)?;
    let cidrs = cidrs
        .iter()
        .map(|c| c.parse::<IpNet>())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| StoreError::Corrupt(format!("{what}: bad CIDR")))?;
    let kind: String = r.try_get("kind")?;
    let kind = kind
        .parse::<TokenKind>()
        .map_err(|e| StoreError::Corrupt(format!("{what}: {e}")))?;
    Ok(TokenRecord {
        client: r.try_get("client")?,
        kind,
        secret_hash,
        venues: from_json(&r.try_get::<String, _>("venues")?, &what)?,
        actions: from_json(&r.try_get::<String, _>("actions")?, &what)?,
        cidrs,
        issued_at: r.try_get("issued_ms")?,
        expires_at: r.try_get("expires_ms")?,
        revoked_at: r.try_get("revoked_ms")?,
        id,
    })
}

/// A new address-book entry: a destination and its route, with a label.
#[derive(Debug, Clone, Copy)]
pub struct NewEntryRow<'a> {
    pub venue: &'a str,
    pub asset: &'a str,
    pub address: &'a str,
    pub route: &'a Route,
    pub label: &'a str,
}

/// A route's columns: `via`, and '' for no network or area code.
fn route_columns(route: &Route) -> (String, String, String) {
    (
        route.via.as_str().to_string(),
        route.network.clone().unwrap_or_default(),
        route.area_code.clone().unwrap_or_default(),
    )
}

fn row_to_route(r: &AnyRow, id: i64) -> Result<Route, StoreError> {
    let via: String = r.try_get("via")?;
    let some = |s: String| (!s.is_empty()).then_some(s);
    let route = Route {
        via: via
            .parse::<Via>()
            .map_err(|e| StoreError::Corrupt(format!("address-book entry {id}: {e}")))?,
        network: some(r.try_get("network")?),
        area_code: some(r.try_get("area_code")?),
    };
    route
        .check()
        .map_err(|e| StoreError::Corrupt(format!("address-book entry {id}: {e}")))?;
    Ok(route)
}

fn row_to_destination(r: &AnyRow) -> Result<Destination, StoreError> {
    let id: i64 = r.try_get("id")?;
    Ok(Destination {
        route: row_to_route(r, id)?,
        id,
        venue: r.try_get("venue")?,
        asset: r.try_get("asset")?,
        address: r.try_get("address")?,
        label: r.try_get("label")?,
        added_at: r.try_get("added_ms")?,
        added_by: r.try_get("added_by")?,
        usable_from: r.try_get("usable_from_ms")?,
        approved_at: r.try_get("approved_ms")?,
        approved_by: r.try_get("approved_by")?,
    })
}

/// The sealed secret of a native key, as stored. None of it is secret: `ciphertext` is sealed
/// under a data key that `wrapped_key` holds wrapped by the master key `key_id`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NativeKeyRow {
    pub token_id: String,
    pub client: String,
    pub key_id: String,
    pub wrapped_key: Vec<u8>,
    pub ciphertext: Vec<u8>,
}

fn row_to_native_key(r: &AnyRow) -> Result<NativeKeyRow, StoreError> {
    Ok(NativeKeyRow {
        token_id: r.try_get("token_id")?,
        client: r.try_get("client")?,
        key_id: r.try_get("key_id")?,
        wrapped_key: r.try_get("wrapped_key")?,
        ciphertext: r.try_get("ciphertext")?,
    })
}

/// A token as listed (no hash).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct TokenSummary {
    pub id: String,
    pub client: String,
    pub kind: TokenKind,
    pub venues: Vec<String>,
    pub actions: Vec<Action>,
    pub cidrs: Vec<String>,
    pub issued_ms: Millis,
    pub expires_ms: Millis,
    pub revoked_ms: Option<Millis>,
}

/// An observed price as stored.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PriceRow {
    pub asset: String,
    pub usd: Decimal,
    pub as_of_ms: Millis,
    pub set_by: String,
}

const CLIENT_COLS: &str = "SELECT name, venues, actions, tags, enabled, instruments FROM clients";
const TOKEN_COLS: &str = "SELECT id, client, kind, secret_hash, venues, actions, cidrs, issued_ms, expires_ms, revoked_ms FROM tokens";
const DEST_COLS: &str = "SELECT id, venue, asset, address, via, network, area_code, label, added_ms, added_by, usable_from_ms, approved_ms, approved_by FROM destinations";

fn admin(actor: &str, at_ms: Millis, data: serde_json::Value) -> NewEntry {
    NewEntry {
        kind: "admin".into(),
        actor: actor.to_string(),
        at_ms,
        data: NewEntry::data(&data),
        debit: None,
    }
}

/// A write transaction with the audit head locked: make the change, append its entry, commit.
struct Audited {
    tx: Transaction<'static, Any>,
    head: crate::audit::Head,
    store: Store,
}

impl Audited {
    async fn begin(store: &Store) -> Result<Self, StoreError> {
        let mut tx = store.begin_write().await?;
        let head = lock_head(&mut tx).await?;
        Ok(Self {
            tx,
            head,
            store: store.clone(),
        })
    }

    async fn commit(mut self, entry: NewEntry) -> Result<i64, StoreError> {
        let now = crate::audit::db_now(&mut self.tx, &self.store).await?;
        let seqs = append(&mut self.tx, &mut self.head, vec![entry], now).await?;
        self.tx.commit().await?;
        Ok(seqs.first().copied().unwrap_or_default())
    }
}

impl Store {
    /// Adds a client. Returns the audit entry's sequence number.
    pub async fn add_client(
        &self,
        c: &ClientRecord,
        actor: &str,
        now: Millis,
    ) -> Result<i64, StoreError> {
        let mut w = Audited::begin(self).await?;
        sqlx::query(
            "INSERT INTO clients (name, venues, actions, tags, enabled, created_ms, updated_ms, instruments) VALUES ($1, $2, $3, $4, $5, $6, $6, $7)",
        )
        .bind(c.name.clone())
        .bind(to_json(&c.venues))
        .bind(to_json(&c.actions))
        .bind(to_json(&c.tags))
        .bind(i64::from(c.enabled))
        .bind(now)
        .bind(to_json(&c.instruments))
        .execute(&mut *w.tx)
        .await
        .map_err(|e| {
            if is_unique_violation(&e) {
                StoreError::Conflict(Conflict::Exists(format!("client {} already exists", c.name)))
            } else {
                e.into()
            }
        })?;
        w.commit(admin(
            actor,
            now,
            json!({"action": "client.add", "client": c}),
        ))
        .await
    }

    /// Sets the instruments (`BASE/QUOTE`) a client may trade, replacing the list it had.
    pub async fn set_client_instruments(
        &self,
        name: &str,
        instruments: &[String],
        actor: &str,
        now: Millis,
    ) -> Result<i64, StoreError> {
        let mut w = Audited::begin(self).await?;
        let done =
            sqlx::query("UPDATE clients SET instruments = $1, updated_ms = $2 WHERE name = $3")
                .bind(to_json(&instruments))
                .bind(now)
                .bind(name.to_string())
                .execute(&mut *w.tx)
                .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!(
                "client {name}; see `keygate client list`"
            )));
        }
        w.commit(admin(
            actor,
            now,
            json!({"action": "client.instruments", "client": name, "instruments": instruments}),
        ))
        .await
    }

    /// Enables or disables a client; its tokens stop (or start) working on the next request.
    pub async fn set_client_enabled(
        &self,
        name: &str,
        enabled: bool,
        actor: &str,
        now: Millis,
    ) -> Result<i64, StoreError> {
        let mut w = Audited::begin(self).await?;
        let done = sqlx::query("UPDATE clients SET enabled = $1, updated_ms = $2 WHERE name = $3")
            .bind(i64::from(enabled))
            .bind(now)
            .bind(name.to_string())
            .execute(&mut *w.tx)
            .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!(
                "client {name}; see `keygate client list`"
            )));
        }
        let action = if enabled {
            "client.enable"
        } else {
            "client.disable"
        };
        w.commit(admin(actor, now, json!({"action": action, "client": name})))
            .await
    }

    pub async fn clients(&self) -> Result<Vec<ClientRecord>, StoreError> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!("{CLIENT_COLS} ORDER BY name")))
            .fetch_all(self.pool())
            .await?;
        rows.iter().map(row_to_client).collect()
    }

    pub async fn client(&self, name: &str) -> Result<Option<ClientRecord>, StoreError> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "{CLIENT_COLS} WHERE name = $1"
        )))
        .bind(name.to_string())
        .fetch_optional(self.pool())
        .await?;
        row.as_ref().map(row_to_client).transpose()
    }

    /// Stores a new token (only its hash) and audits its issue (without any secret).
    pub async fn insert_token(&self, t: &TokenRecord, actor: &str) -> Result<i64, StoreError> {
        self.insert_token_with(t, None, actor).await
    }

    /// Stores a new native key: its token record and its sealed secret, in one transaction with
    /// the audit entry of its issue (without any secret). Fails with `Conflict`, changing
    /// nothing, if the store's master key is no longer `sealed.key_id`.
    pub async fn insert_native_key(
        &self,
        t: &TokenRecord,
        sealed: &NativeKeyRow,
        actor: &str,
    ) -> Result<i64, StoreError> {
        if t.kind != TokenKind::Native || sealed.token_id != t.id || sealed.client != t.client {
            return Err(StoreError::Conflict(Conflict::Rule(format!(
                "token {} is not the native key its sealed secret is for",
                t.id
            ))));
        }
        self.insert_token_with(t, Some(sealed), actor).await
    }

    async fn insert_token_with(
        &self,
        t: &TokenRecord,
        sealed: Option<&NativeKeyRow>,
        actor: &str,
    ) -> Result<i64, StoreError> {
        let mut w = Audited::begin(self).await?;
        if let Some(k) = sealed {
            crate::credentials::lock_master_key_id(&mut w.tx, &k.key_id).await?;
        }
        let cidrs: Vec<String> = t.cidrs.iter().map(ToString::to_string).collect();
        sqlx::query(
            "INSERT INTO tokens (id, client, kind, secret_hash, venues, actions, cidrs, issued_ms, expires_ms, revoked_ms) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, NULL)",
        )
        .bind(t.id.clone())
        .bind(t.client.clone())
        .bind(t.kind.as_str())
        .bind(hex::encode(t.secret_hash))
        .bind(to_json(&t.venues))
        .bind(to_json(&t.actions))
        .bind(to_json(&cidrs))
        .bind(t.issued_at)
        .bind(t.expires_at)
        .execute(&mut *w.tx)
        .await
        .map_err(|e| {
            if is_unique_violation(&e) {
                StoreError::Conflict(Conflict::Exists(format!("token id {} already exists; issue again", t.id)))
            } else {
                e.into()
            }
        })?;
        if let Some(k) = sealed {
            sqlx::query(
                "INSERT INTO native_keys (token_id, client, key_id, wrapped_key, ciphertext) VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(k.token_id.clone())
            .bind(k.client.clone())
            .bind(k.key_id.clone())
            .bind(k.wrapped_key.clone())
            .bind(k.ciphertext.clone())
            .execute(&mut *w.tx)
            .await?;
        }
        w.commit(admin(
            actor,
            t.issued_at,
            json!({"action": "token.issue", "token": t.id, "client": t.client, "kind": t.kind,
                   "venues": t.venues, "actions": t.actions, "cidrs": cidrs, "expires_ms": t.expires_at}),
        ))
        .await
    }

    /// The sealed secret of native key `token_id`, if there is one.
    pub async fn native_key(&self, token_id: &str) -> Result<Option<NativeKeyRow>, StoreError> {
        let row = sqlx::query(
            "SELECT token_id, client, key_id, wrapped_key, ciphertext FROM native_keys WHERE token_id = $1",
        )
        .bind(token_id.to_string())
        .fetch_optional(self.pool())
        .await?;
        row.as_ref().map(row_to_native_key).transpose()
    }

    /// Every native key's sealed secret (for rekeying and verification).
    pub async fn all_native_keys(&self) -> Result<Vec<NativeKeyRow>, StoreError> {
        sqlx::query(
            "SELECT token_id, client, key_id, wrapped_key, ciphertext FROM native_keys ORDER BY token_id",
        )
        .fetch_all(self.pool())
        .await?
        .iter()
        .map(row_to_native_key)
        .collect()
    }

    /// Revokes a token; it stops working on the next request of every instance.
    pub async fn revoke_token(
        &self,
        id: &str,
        actor: &str,
        now: Millis,
    ) -> Result<i64, StoreError> {
        let mut w = Audited::begin(self).await?;
        let done =
            sqlx::query("UPDATE tokens SET revoked_ms = $1 WHERE id = $2 AND revoked_ms IS NULL")
                .bind(now)
                .bind(id.to_string())
                .execute(&mut *w.tx)
                .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!(
                "token {id} (or it is already revoked); see `keygate token list`"
            )));
        }
        w.commit(admin(
            actor,
            now,
            json!({"action": "token.revoke", "token": id}),
        ))
        .await
    }

    /// A token and its client, read fresh from the store (so revocations and disables made by
    /// any instance count at once).
    pub async fn token_with_client(
        &self,
        id: &str,
    ) -> Result<(Option<TokenRecord>, Option<ClientRecord>), StoreError> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!("{TOKEN_COLS} WHERE id = $1")))
            .bind(id.to_string())
            .fetch_optional(self.pool())
            .await?;
        let Some(token) = row.as_ref().map(row_to_token).transpose()? else {
            return Ok((None, None));
        };
        let client = self.client(&token.client).await?;
        Ok((Some(token), client))
    }

    pub async fn tokens(&self, client: Option<&str>) -> Result<Vec<TokenSummary>, StoreError> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "{TOKEN_COLS} WHERE ($1 IS NULL OR client = $1) ORDER BY issued_ms, id"
        )))
        .bind(client.map(str::to_string))
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|r| {
                let t = row_to_token(r)?;
                Ok(TokenSummary {
                    id: t.id,
                    client: t.client,
                    kind: t.kind,
                    venues: t.venues,
                    actions: t.actions,
                    cidrs: t.cidrs.iter().map(ToString::to_string).collect(),
                    issued_ms: t.issued_at,
                    expires_ms: t.expires_at,
                    revoked_ms: t.revoked_at,
                })
            })
            .collect()
    }

    /// Adds an address-book entry on the default route (on chain, the venue's default
    /// network), usable after `cooldown` and an admin's approval.
    #[allow(clippy::too_many_arguments)]
    pub async fn add_destination(
        &self,
        venue: &str,
        asset: &str,
        address: &str,
        label: &str,
        cooldown: Millis,
        actor: &str,
        now: Millis,
    ) -> Result<Destination, StoreError> {
        let new = NewEntryRow {
            venue,
            asset,
            address,
            route: &Route::default(),
            label,
        };
        self.add_routed_destination(&new, cooldown, actor, now)
            .await
    }

    /// Adds an address-book entry for `new.route`, usable after `cooldown` and an admin's
    /// approval. The route must be well formed ([`Route::check`]).
    pub async fn add_routed_destination(
        &self,
        new: &NewEntryRow<'_>,
        cooldown: Millis,
        actor: &str,
        now: Millis,
    ) -> Result<Destination, StoreError> {
        let NewEntryRow {
            venue,
            asset,
            address,
            route,
            label,
        } = *new;
        route
            .check()
            .map_err(|e| StoreError::Internal(format!("an address-book route not checked: {e}")))?;
        let mut w = Audited::begin(self).await?;
        let address = normalize_address(address);
        let (via, network, area_code) = route_columns(route);
        let row = sqlx::query(
            "INSERT INTO destinations (venue, asset, address, label, added_ms, added_by, usable_from_ms, via, network, area_code) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) RETURNING id",
        )
        .bind(venue.to_string())
        .bind(asset.to_string())
        .bind(address.clone())
        .bind(label.to_string())
        .bind(now)
        .bind(actor.to_string())
        .bind(now.saturating_add(cooldown))
        .bind(via)
        .bind(network)
        .bind(area_code)
        .fetch_one(&mut *w.tx)
        .await
        .map_err(|e| {
            if is_unique_violation(&e) {
                StoreError::Conflict(Conflict::Exists(format!("{address} is already in the address book for {asset} on {venue}, {route}")))
            } else {
                e.into()
            }
        })?;
        let d = Destination {
            route: route.clone(),
            id: row.try_get(0)?,
            venue: venue.into(),
            asset: asset.into(),
            address,
            label: label.into(),
            added_at: now,
            added_by: actor.into(),
            usable_from: now.saturating_add(cooldown),
            approved_at: None,
            approved_by: None,
        };
        w.commit(admin(
            actor,
            now,
            json!({"action": "address.add", "destination": d}),
        ))
        .await?;
        Ok(d)
    }

    /// Approves an address-book entry. An admin may not approve an entry they added.
    pub async fn approve_destination(
        &self,
        id: i64,
        actor: &str,
        now: Millis,
    ) -> Result<Destination, StoreError> {
        let mut w = Audited::begin(self).await?;
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "{DEST_COLS} WHERE id = $1 AND removed_ms IS NULL"
        )))
        .bind(id)
        .fetch_optional(&mut *w.tx)
        .await?;
        let mut d = row
            .as_ref()
            .map(row_to_destination)
            .transpose()?
            .ok_or_else(|| {
                StoreError::NotFound(format!(
                    "address-book entry {id}; see `keygate address list`"
                ))
            })?;
        if d.approved_at.is_some() {
            return Err(StoreError::Conflict(Conflict::AlreadyDone(format!(
                "address-book entry {id} is already approved"
            ))));
        }
        if d.added_by == actor {
            return Err(StoreError::Conflict(Conflict::Rule(format!(
                "{actor} added address-book entry {id} and so may not approve it; another admin must"
            ))));
        }
        sqlx::query("UPDATE destinations SET approved_ms = $1, approved_by = $2 WHERE id = $3")
            .bind(now)
            .bind(actor.to_string())
            .bind(id)
            .execute(&mut *w.tx)
            .await?;
        d.approved_at = Some(now);
        d.approved_by = Some(actor.into());
        w.commit(admin(
            actor,
            now,
            json!({"action": "address.approve", "destination": d}),
        ))
        .await?;
        Ok(d)
    }

    /// Removes an address-book entry; withdrawals to it are refused from the next decision on.
    pub async fn remove_destination(
        &self,
        id: i64,
        actor: &str,
        now: Millis,
    ) -> Result<i64, StoreError> {
        let mut w = Audited::begin(self).await?;
        let done = sqlx::query(
            "UPDATE destinations SET removed_ms = $1 WHERE id = $2 AND removed_ms IS NULL",
        )
        .bind(now)
        .bind(id)
        .execute(&mut *w.tx)
        .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!(
                "address-book entry {id}; see `keygate address list`"
            )));
        }
        w.commit(admin(
            actor,
            now,
            json!({"action": "address.remove", "id": id}),
        ))
        .await
    }

    /// The live address book.
    pub async fn destinations(&self) -> Result<Vec<Destination>, StoreError> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "{DEST_COLS} WHERE removed_ms IS NULL ORDER BY id"
        )))
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(row_to_destination).collect()
    }

    /// Records an observed price.
    pub async fn set_price(
        &self,
        asset: &str,
        usd: Decimal,
        actor: &str,
        now: Millis,
    ) -> Result<i64, StoreError> {
        let mut w = Audited::begin(self).await?;
        sqlx::query(
            "INSERT INTO prices (asset, usd, as_of_ms, set_by) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (asset) DO UPDATE SET usd = excluded.usd, as_of_ms = excluded.as_of_ms, set_by = excluded.set_by",
        )
        .bind(asset.to_string())
        .bind(usd.to_string())
        .bind(now)
        .bind(actor.to_string())
        .execute(&mut *w.tx)
        .await?;
        w.commit(admin(
            actor,
            now,
            json!({"action": "price.set", "asset": asset, "usd": usd}),
        ))
        .await
    }

    pub async fn prices(&self) -> Result<Vec<PriceRow>, StoreError> {
        let rows = sqlx::query("SELECT asset, usd, as_of_ms, set_by FROM prices ORDER BY asset")
            .fetch_all(self.pool())
            .await?;
        rows.iter()
            .map(|r| {
                let asset: String = r.try_get(0)?;
                let usd: String = r.try_get(1)?;
                Ok(PriceRow {
                    usd: usd.parse().map_err(|_| {
                        StoreError::Corrupt(format!("the stored price of {asset} is not a decimal"))
                    })?,
                    asset,
                    as_of_ms: r.try_get(2)?,
                    set_by: r.try_get(3)?,
                })
            })
            .collect()
    }
}

/// Everything `decide` needs from the store, read inside the decider's transaction.
pub(crate) async fn load_inputs(
    tx: &mut Transaction<'static, Any>,
    moves_since: Millis,
    outflows_since: Millis,
    trades_since: Millis,
    head: &crate::audit::Head,
) -> Result<keygate_core::decide::StateInputs, StoreError> {
    let clock = head.at_ms;
    let clients = sqlx::query(sqlx::AssertSqlSafe(format!("{CLIENT_COLS} ORDER BY name")))
        .fetch_all(&mut **tx)
        .await?
        .iter()
        .map(row_to_client)
        .collect::<Result<Vec<_>, _>>()?;
    let destinations = sqlx::query(sqlx::AssertSqlSafe(format!(
        "{DEST_COLS} WHERE removed_ms IS NULL ORDER BY id"
    )))
    .fetch_all(&mut **tx)
    .await?
    .iter()
    .map(row_to_destination)
    .collect::<Result<Vec<_>, _>>()?;
    let mut prices = vec![];
    for r in sqlx::query("SELECT asset, usd, as_of_ms FROM prices")
        .fetch_all(&mut **tx)
        .await?
    {
        let asset: String = r.try_get(0)?;
        let usd: String = r.try_get(1)?;
        let usd: Decimal = usd.parse().map_err(|_| {
            StoreError::Corrupt(format!("the stored price of {asset} is not a decimal"))
        })?;
        prices.push((asset, usd, r.try_get(2)?));
    }
    let moves = crate::audit::moves_since(&mut **tx, moves_since, head.seq).await?;
    let freezes = crate::freeze::active(tx).await?;
    let outflows = allowed_since(
        tx,
        "'withdraw', 'transfer'",
        outflows_since,
        head,
        outgoing_of,
    )
    .await?;
    let trades = allowed_since(tx, "'trade'", trades_since, head, trade_of).await?;
    let trades_complete_since: Option<Millis> =
        sqlx::query_scalar("SELECT MIN(at_ms) FROM audit_log")
            .fetch_one(&mut **tx)
            .await?;
    let mut clients_since = vec![];
    for r in sqlx::query("SELECT name, created_ms FROM clients")
        .fetch_all(&mut **tx)
        .await?
    {
        clients_since.push((r.try_get(0)?, r.try_get(1)?));
    }
    Ok(keygate_core::decide::StateInputs {
        trades,
        trades_complete_since,
        clients_since,
        clients,
        destinations,
        prices,
        moves,
        clock,
        freezes,
        outflows,
    })
}

/// What the detectors remember of each allowed decision of `actions` (a fixed SQL list of
/// action names) since `since`, in the log's order: `read` gives it from the audit entry.
async fn allowed_since<T>(
    tx: &mut Transaction<'static, Any>,
    actions: &'static str,
    since: Millis,
    head: &crate::audit::Head,
    read: fn(Millis, crate::audit::AuditEntry<'_>) -> Option<T>,
) -> Result<Vec<T>, StoreError> {
    let mut out = vec![];
    for r in sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT at_ms, entry FROM audit_log WHERE mv_action IN ({actions}) \
         AND at_ms >= $1 AND seq <= $2 ORDER BY seq"
    )))
    .bind(since)
    .bind(head.seq)
    .fetch_all(&mut **tx)
    .await?
    {
        let at: Millis = r.try_get(0)?;
        let entry: String = r.try_get(1)?;
        if let Some(v) = crate::audit::AuditEntry::from_canonical(&entry)
            .ok()
            .and_then(|e| read(at, e))
        {
            out.push(v);
        }
    }
    Ok(out)
}

/// The trade an allowed order's audit entry records, for the trade detectors.
pub(crate) fn trade_of(
    at: Millis,
    entry: crate::audit::AuditEntry<'_>,
) -> Option<keygate_core::detect::trade::TradeDone> {
    let crate::audit::AuditEntry::Decision(d) = entry else {
        return None;
    };
    keygate_core::decide::trade_done(&d.intent, d.usd_value_cents?, at)
}

/// Every token, by id, for the decider's authentication.
pub(crate) async fn load_tokens(
    tx: &mut Transaction<'static, Any>,
) -> Result<std::collections::HashMap<String, TokenRecord>, StoreError> {
    sqlx::query(TOKEN_COLS)
        .fetch_all(&mut **tx)
        .await?
        .iter()
        .map(|r| row_to_token(r).map(|t| (t.id.clone(), t)))
        .collect()
}

/// The outflow an allowed withdrawal's or transfer's audit entry records, for the detectors.
pub(crate) fn outgoing_of(
    at: Millis,
    entry: crate::audit::AuditEntry<'_>,
) -> Option<keygate_core::detect::Outgoing> {
    let crate::audit::AuditEntry::Decision(d) = entry else {
        return None;
    };
    let usd_cents = d.usd_value_cents?;
    let i = d.intent.into_owned();
    Some(keygate_core::detect::Outgoing {
        at,
        client: i.client,
        venue: i.venue,
        asset: i.asset?,
        destination: normalize_address(&i.destination?),
        usd_cents,
    })
}
