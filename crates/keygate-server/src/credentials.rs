//! Opened venue credentials, kept in memory for a short while.
//!
//! Opening a credential costs a store read and an AES-GCM open; the cache keeps the opened
//! secret (zeroized when the last user drops it) for `ttl`, so a rotation done on any instance
//! is picked up within `ttl`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use keygate_store::{CredentialRow, Store, StoreError};
use keygate_vault::{
    Binding, CredentialKind, CredentialSecret, KeyId, MasterKey, SealedSecret, VaultError,
};

/// Why a venue credential cannot be used. Never carries secret material.
#[derive(Debug, thiserror::Error)]
pub enum CredentialError {
    #[error("cannot read credential {id}: {error}")]
    Read { id: String, error: Box<StoreError> },
    #[error("credential {0} is not in the vault; add it with `keygate credential add`")]
    Missing(String),
    /// The stored kind is not one keygate knows (the reason says why).
    #[error("stored credential {id} version {version}: {reason}")]
    Kind {
        id: String,
        version: u32,
        reason: String,
    },
    /// The sealed secret does not open, or is not of its kind's shape.
    #[error(transparent)]
    Vault(#[from] VaultError),
    #[error(
        "credential {0} is not an exchange API key pair; give the venue a binance-hmac or okx-hmac credential"
    )]
    NotApiKey(String),
}

/// Decrypts one stored credential version.
pub fn open_row(
    master: &MasterKey,
    r: &CredentialRow,
) -> Result<CredentialSecret, CredentialError> {
    let kind: CredentialKind = r.kind.parse().map_err(|reason| CredentialError::Kind {
        id: r.id.clone(),
        version: r.version,
        reason,
    })?;
    let plain = keygate_vault::open(
        master,
        &Binding {
            id: &r.id,
            venue: &r.venue,
            kind: &r.kind,
            version: r.version,
        },
        &SealedSecret {
            key_id: KeyId::from_stored(r.key_id.clone()),
            wrapped_key: r.wrapped_key.clone(),
            ciphertext: r.ciphertext.clone(),
        },
    )?;
    Ok(CredentialSecret::decode(kind, &plain)?)
}

/// A cache of opened credentials by id.
pub struct CredentialCache {
    store: Store,
    master: MasterKey,
    ttl: Duration,
    entries: Mutex<HashMap<String, (Instant, Arc<CredentialSecret>)>>,
}

impl CredentialCache {
    pub fn new(store: Store, master: MasterKey, ttl: Duration) -> Self {
        Self {
            store,
            master,
            ttl,
            entries: Mutex::new(HashMap::new()),
        }
    }

    /// The master key the cache opens with.
    pub(crate) fn master(&self) -> &MasterKey {
        &self.master
    }

    /// The active version of credential `id`, opened. The error says what to do, and never
    /// carries secret material.
    pub async fn get(&self, id: &str) -> Result<Arc<CredentialSecret>, CredentialError> {
        if let Ok(entries) = self.entries.lock()
            && let Some((at, secret)) = entries.get(id)
            && at.elapsed() < self.ttl
        {
            return Ok(secret.clone());
        }
        let row = self
            .store
            .active_credential(id)
            .await
            .map_err(|error| CredentialError::Read {
                id: id.to_string(),
                error: Box::new(error),
            })?
            .ok_or_else(|| CredentialError::Missing(id.to_string()))?;
        let secret = Arc::new(open_row(&self.master, &row)?);
        if let Ok(mut entries) = self.entries.lock() {
            entries.insert(id.to_string(), (Instant::now(), secret.clone()));
        }
        Ok(secret)
    }
}

/// The signing keys of an opened API-key credential (key, secret, and OKX's passphrase).
pub fn keys<'a>(
    secret: &'a CredentialSecret,
    id: &str,
) -> Result<keygate_venues::Keys<'a>, CredentialError> {
    let parts = secret.parts();
    let part = |i: usize| parts.get(i).map(|p| p.expose());
    match (part(0), part(1)) {
        (Some(api_key), Some(api_secret)) if secret.kind() != CredentialKind::EvmKey => {
            Ok(keygate_venues::Keys {
                api_key,
                secret: api_secret,
                passphrase: part(2),
            })
        }
        _ => Err(CredentialError::NotApiKey(id.to_string())),
    }
}
