//! Client tokens: issue (a bearer token, or an exchange-native API key sealed in the vault),
//! revoke, list, and check one as a request would. The rules of a token (scope within the
//! client's, lifetime within tokens.max_ttl, bound to source addresses) are here, each a step
//! of its own. Secrets are returned once, zeroized on drop, and stored only as a hash (a native
//! key's secret: sealed).

use std::net::IpAddr;

use ipnet::IpNet;
use keygate_config::StateHandle;
use keygate_config::engine::duration;
use keygate_core::auth::{self, ClientRecord, TokenRecord};
use keygate_core::{Action, Millis};
use keygate_store::{NativeKeyRow, TokenSummary};
use keygate_vault::{MasterKey, SecretString};
use zeroize::Zeroizing;

use crate::checkpoint::checkpoint_if_due;
use crate::error::{AdminError, Result, invalid};

/// A token an operator asks for. Empty lists and `None` mean the defaults: the client's scope,
/// tokens.default_ttl and tokens.default_cidrs.
#[derive(Debug, Clone, Default)]
pub struct TokenRequest {
    pub client: String,
    pub ttl: Option<String>,
    pub cidrs: Vec<String>,
    pub venues: Vec<String>,
    pub actions: Vec<Action>,
}

/// The secret of an issued token, shown once.
pub enum IssuedSecret {
    Bearer(Zeroizing<String>),
    Native {
        secret: SecretString,
        passphrase: SecretString,
    },
}

/// An issued token: its record (no secret), the source addresses as asked for, its audit entry
/// and its secret.
pub struct IssuedToken {
    pub record: TokenRecord,
    pub from: Vec<String>,
    pub seq: i64,
    pub secret: IssuedSecret,
}

/// Who a token is for, and the scope it gets (within the client's).
struct Scope {
    client: ClientRecord,
    venues: Vec<String>,
    actions: Vec<Action>,
}

async fn scope(h: &StateHandle, req: &TokenRequest) -> Result<Scope> {
    let client = h
        .store
        .client(&req.client)
        .await?
        .ok_or_else(|| AdminError::NoSuchClient(req.client.clone()))?;
    if !client.enabled {
        return Err(AdminError::ClientDisabled(client.name));
    }
    let (venues, actions) =
        auth::narrow_scope(&client, &req.venues, &req.actions).map_err(invalid)?;
    Ok(Scope {
        client,
        venues,
        actions,
    })
}

/// The token's lifetime: asked for, or tokens.default_ttl; never over tokens.max_ttl.
fn lifetime(h: &StateHandle, ttl: Option<&str>) -> Result<Millis> {
    let tokens = &h.config.tokens;
    let max = duration("tokens.max_ttl", &tokens.max_ttl)?;
    let ttl = match ttl {
        Some(t) => duration("--ttl", t)?,
        None => duration("tokens.default_ttl", &tokens.default_ttl)?,
    };
    if ttl > max {
        return Err(AdminError::TtlTooLong {
            ttl: keygate_core::time::format_duration(ttl),
            max: tokens.max_ttl.clone(),
        });
    }
    Ok(ttl)
}

/// The source addresses the token is bound to (as written, and parsed); at least one.
fn source_addresses(h: &StateHandle, cidrs: &[String]) -> Result<(Vec<String>, Vec<IpNet>)> {
    let texts = if cidrs.is_empty() {
        h.config.tokens.default_cidrs.clone()
    } else {
        cidrs.to_vec()
    };
    if texts.is_empty() {
        return Err(AdminError::NoSourceAddress);
    }
    let nets = texts
        .iter()
        .map(|c| {
            c.parse::<IpNet>()
                .map(|n| n.trunc())
                .map_err(|_| AdminError::BadCidr(c.clone()))
        })
        .collect::<Result<Vec<_>>>()?;
    if let Some(any) = nets.iter().find(|n| n.prefix_len() == 0) {
        tracing::warn!(cidr = %any, "the token may be used from any address");
    }
    Ok((texts, nets))
}

/// A fresh bearer token from 8 random id bytes and 32 random secret bytes.
fn new_bearer() -> Result<auth::NewToken> {
    let mut id = [0u8; 8];
    let mut secret = Zeroizing::new([0u8; 32]);
    keygate_vault::random_bytes(&mut id)?;
    keygate_vault::random_bytes(secret.as_mut())?;
    Ok(auth::new_token(id, *secret))
}

/// A native key's secret parts, sealed under the master key for `rec`: 32 random bytes as 64
/// hex digits (the shape of a Binance secret), and a 32-digit passphrase for OKX. The bearer
/// hash stays that of a secret never shown, so nothing can present this key as a bearer token.
fn new_native(
    master: &MasterKey,
    rec: &TokenRecord,
) -> Result<(NativeKeyRow, SecretString, SecretString)> {
    let mut s = Zeroizing::new([0u8; 32]);
    let mut p = Zeroizing::new([0u8; 16]);
    keygate_vault::random_bytes(s.as_mut())?;
    keygate_vault::random_bytes(p.as_mut())?;
    let secret = SecretString::new(hex::encode(s.as_ref()));
    let passphrase = SecretString::new(hex::encode(p.as_ref()));
    let sealed = keygate_vault::native_key::seal_native_key(
        master,
        &rec.id,
        &rec.client,
        secret.clone(),
        passphrase.clone(),
    )?;
    let row = NativeKeyRow {
        token_id: rec.id.clone(),
        client: rec.client.clone(),
        key_id: sealed.key_id.as_str().to_string(),
        wrapped_key: sealed.wrapped_key,
        ciphertext: sealed.ciphertext,
    };
    Ok((row, secret, passphrase))
}

/// Issues a bearer token, or with `native` (the master key) a native API key whose secret is
/// sealed under it.
pub async fn issue_token(
    h: &StateHandle,
    actor: &str,
    req: &TokenRequest,
    native: Option<&MasterKey>,
    now: Millis,
) -> Result<IssuedToken> {
    let Scope {
        client,
        venues,
        actions,
    } = scope(h, req).await?;
    let ttl = lifetime(h, req.ttl.as_deref())?;
    let (from, cidrs) = source_addresses(h, &req.cidrs)?;
    let t = new_bearer()?;
    let mut record = TokenRecord {
        id: t.id.clone(),
        client: client.name,
        kind: auth::TokenKind::Bearer,
        secret_hash: t.secret_hash,
        venues,
        actions,
        cidrs,
        issued_at: now,
        expires_at: now.saturating_add(ttl),
        revoked_at: None,
    };
    let (seq, secret) = match native {
        None => (
            h.store.insert_token(&record, actor).await?,
            IssuedSecret::Bearer(t.text),
        ),
        Some(master) => {
            record.kind = auth::TokenKind::Native;
            let (sealed, secret, passphrase) = new_native(master, &record)?;
            let seq = h.store.insert_native_key(&record, &sealed, actor).await?;
            (seq, IssuedSecret::Native { secret, passphrase })
        }
    };
    checkpoint_if_due(h).await;
    Ok(IssuedToken {
        record,
        from,
        seq,
        secret,
    })
}

/// Revokes a token: it stops working on the next request of every instance. Returns the audit
/// entry.
pub async fn revoke_token(h: &StateHandle, actor: &str, id: &str, now: Millis) -> Result<i64> {
    let seq = h.store.revoke_token(id, actor, now).await?;
    checkpoint_if_due(h).await;
    Ok(seq)
}

/// Tokens (never their secrets), of one client or all.
pub async fn tokens(h: &StateHandle, client: Option<&str>) -> Result<Vec<TokenSummary>> {
    Ok(h.store.tokens(client).await?)
}

/// A token check: the token's text and the request it would make.
pub struct TokenCheck<'a> {
    pub text: &'a str,
    pub ip: IpAddr,
    pub venue: &'a str,
    pub action: Action,
}

/// Authenticates a token as a request would (the same core authentication the store's writer
/// applies to gateway requests), and audits a refusal: [`AdminError::TokenRefused`] names the
/// audit entry.
pub async fn check_token(h: &StateHandle, c: &TokenCheck<'_>, now: Millis) -> Result<()> {
    let result = match auth::parse_token(c.text) {
        Err(e) => Err(e),
        Ok(p) => {
            let (t, cl) = h.store.token_with_client(&p.id).await?;
            auth::authenticate(&p, t.as_ref(), cl.as_ref(), c.ip, c.venue, c.action, now)
        }
    };
    match result {
        Ok(()) => Ok(()),
        Err(error) => {
            let seq = record_auth_failure(h, &error, c.ip, c.venue, c.action, now).await?;
            Err(AdminError::TokenRefused { error, seq })
        }
    }
}

/// Records a refused token in the audit log; returns the entry.
async fn record_auth_failure(
    h: &StateHandle,
    e: &auth::AuthError,
    ip: IpAddr,
    venue: &str,
    action: Action,
    now: Millis,
) -> Result<i64> {
    let seqs = h
        .store
        .append_audit(vec![keygate_store::decider::auth_failure_entry(
            e,
            ip,
            venue,
            Some(action),
            None,
            now,
        )])
        .await?;
    checkpoint_if_due(h).await;
    Ok(seqs.first().copied().unwrap_or_default())
}
