//! Exchange-native client keys: opening a key's sealed secret to check a signature (the envelope
//! format is the vault's `native_key`), and remembering the signatures already accepted.
//!
//! A native key's secret (and OKX passphrase) is sealed like a venue credential: the vault's
//! envelope under the master key, bound to the token id and its client, so a sealed secret moved
//! to another row fails to open. The gateway opens it to check each signature and keeps the
//! opened copy (zeroized when dropped) for `ttl`, as it does venue credentials; revocation and
//! expiry are checked in the decider on every request, so caching the secret never lets a
//! revoked key through.
//!
//! Every refusal of a native request is answered as the venue would answer it: see
//! [`crate::venue_format`].

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use keygate_store::{NativeKeyRow, Store, StoreError};
use keygate_vault::{CredentialSecret, KeyId, MasterKey, SealedSecret};

/// The most opened native keys kept in memory.
const MAX_CACHED: usize = 10_000;

/// Opens a native key's sealed secret (the vault's native-key envelope, read from its row). The
/// error names the key, never any secret.
pub fn open(master: &MasterKey, row: &NativeKeyRow) -> Result<CredentialSecret, String> {
    let sealed = SealedSecret {
        key_id: KeyId::from_stored(row.key_id.clone()),
        wrapped_key: row.wrapped_key.clone(),
        ciphertext: row.ciphertext.clone(),
    };
    keygate_vault::native_key::open_native_key(master, &row.token_id, &row.client, &sealed)
        .map_err(|e| e.to_string())
}

/// Signatures of native requests already accepted, remembered in the store while their time
/// window is open: a signature is good for one request (Binance's covers only the parameters,
/// so a captured request could otherwise be sent again, within `recvWindow`, even to another
/// endpoint). Every instance on the store shares the memory, and it outlives a restart
/// (`Store::first_signature_use`, migration 0014).
pub struct UsedSignatures {
    store: Store,
    /// When expired signatures were last deleted (ms).
    pruned: AtomicI64,
}

/// Why a signature cannot be used.
#[derive(Debug)]
pub enum Refused {
    /// It was used before, within its window, on this instance or another.
    Again,
    /// The store could not say (or record) whether it was: refused rather than unchecked.
    Unavailable(StoreError),
}

impl UsedSignatures {
    /// How long a signature is remembered: the longest window a venue allows (Binance's
    /// 60 s `recvWindow` plus 1 s ahead; OKX's 30 s either side), with room to spare.
    pub const KEEP_MS: i64 = 65_000;

    pub fn new(store: Store) -> Self {
        Self {
            store,
            pruned: AtomicI64::new(i64::MIN),
        }
    }

    /// The digest a signed request is remembered by: SHA-256 of the key id and its decoded MAC
    /// (which covers the request), hex.
    pub fn digest(key: &str, mac: &[u8]) -> String {
        use sha2::Digest;
        let mut h = sha2::Sha256::new();
        h.update(key.as_bytes());
        h.update([0u8]);
        h.update(mac);
        hex::encode(h.finalize())
    }

    /// Records the first use of `mac` by `key` at `now`, or says why it is refused. Deletes
    /// the expired ones first, at most once per `KEEP_MS` per instance.
    pub async fn first_use(&self, key: &str, mac: &[u8], now: i64) -> Result<(), Refused> {
        self.prune(now).await;
        let until = now.saturating_add(Self::KEEP_MS);
        match self
            .store
            .first_signature_use(&Self::digest(key, mac), now, until)
            .await
        {
            Ok(true) => Ok(()),
            Ok(false) => Err(Refused::Again),
            Err(e) => Err(Refused::Unavailable(e)),
        }
    }

    async fn prune(&self, now: i64) {
        let last = self.pruned.load(Ordering::Relaxed);
        if now.saturating_sub(last) < Self::KEEP_MS
            || self
                .pruned
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_err()
        {
            return;
        }
        if let Err(e) = self.store.prune_signatures(now).await {
            // Not fatal: an expired row is replaced by its next use anyway; tried again later.
            tracing::warn!(error = %e, "expired native signatures could not be deleted");
            self.pruned.store(last, Ordering::Relaxed);
        }
    }
}

/// Opened native keys by token id, each kept for `ttl`.
pub struct NativeKeyCache {
    store: Store,
    ttl: Duration,
    entries: Mutex<HashMap<String, (Instant, Arc<CredentialSecret>)>>,
}

impl NativeKeyCache {
    pub fn new(store: Store, ttl: Duration) -> Self {
        Self {
            store,
            ttl,
            entries: Mutex::new(HashMap::new()),
        }
    }

    /// The opened key `token_id`, or None if no native key has that id. An error (the store
    /// unreachable, a key that does not open) says what, without secret material.
    pub async fn get(
        &self,
        master: &MasterKey,
        token_id: &str,
    ) -> Result<Option<Arc<CredentialSecret>>, String> {
        if let Ok(entries) = self.entries.lock()
            && let Some((at, secret)) = entries.get(token_id)
            && at.elapsed() < self.ttl
        {
            return Ok(Some(secret.clone()));
        }
        let Some(row) = self
            .store
            .native_key(token_id)
            .await
            .map_err(|e| format!("cannot read native key {token_id}: {e}"))?
        else {
            return Ok(None);
        };
        let secret = Arc::new(open(master, &row)?);
        if let Ok(mut entries) = self.entries.lock() {
            if entries.len() >= MAX_CACHED {
                let ttl = self.ttl;
                entries.retain(|_, (at, _)| at.elapsed() < ttl);
                if entries.len() >= MAX_CACHED {
                    entries.clear();
                }
            }
            entries.insert(token_id.to_string(), (Instant::now(), secret.clone()));
        }
        Ok(Some(secret))
    }
}

#[cfg(test)]
mod tests {

    use super::*;
    use keygate_vault::SecretString;

    #[tokio::test]
    async fn a_signature_is_accepted_once_per_window_per_key_and_across_instances() {
        let (store, _dir) =
            keygate_store::testing::fresh_store(keygate_store::Backend::Sqlite).await;
        let used = UsedSignatures::new(store.clone());
        assert!(used.first_use("k1", b"mac", 1_000).await.is_ok());
        assert!(matches!(
            used.first_use("k1", b"mac", 2_000).await,
            Err(Refused::Again)
        ));
        // Another instance on the same store (or this one restarted) remembers it.
        let other = UsedSignatures::new(store.clone());
        assert!(matches!(
            other.first_use("k1", b"mac", 2_500).await,
            Err(Refused::Again)
        ));
        // Another key's identical MAC is another signature.
        assert!(used.first_use("k2", b"mac", 2_000).await.is_ok());
        // Once the window is over it is forgotten (the venue's window refuses it by then),
        // and the expired rows are deleted.
        let later = 2_000 + UsedSignatures::KEEP_MS;
        assert!(used.first_use("k1", b"mac", later).await.is_ok());
        assert!(matches!(
            other.first_use("k1", b"mac", later + 1).await,
            Err(Refused::Again)
        ));
        assert_eq!(store.remembered_signatures().await.unwrap(), 1);
        // A store that cannot answer refuses the signature.
        store.close().await;
        assert!(matches!(
            used.first_use("k3", b"mac", later).await,
            Err(Refused::Unavailable(_))
        ));
    }

    /// A native key's row as `keygate token issue --native` writes it.
    fn seal(
        master: &MasterKey,
        token_id: &str,
        client: &str,
        secret: SecretString,
        passphrase: SecretString,
    ) -> Result<NativeKeyRow, keygate_vault::VaultError> {
        let sealed = keygate_vault::native_key::seal_native_key(
            master, token_id, client, secret, passphrase,
        )?;
        Ok(NativeKeyRow {
            token_id: token_id.into(),
            client: client.into(),
            key_id: sealed.key_id.as_str().to_string(),
            wrapped_key: sealed.wrapped_key,
            ciphertext: sealed.ciphertext,
        })
    }

    #[test]
    fn a_sealed_key_opens_only_for_its_own_row() {
        let master = MasterKey::generate().unwrap();
        let row = seal(
            &master,
            "0123456789abcdef",
            "mm-bot",
            SecretString::new("s3cret".into()),
            SecretString::new("p4ss".into()),
        )
        .unwrap();
        let opened = open(&master, &row).unwrap();
        assert_eq!(opened.parts()[1].expose(), "s3cret");
        assert_eq!(opened.parts()[2].expose(), "p4ss");
        let moved = NativeKeyRow {
            token_id: "fedcba9876543210".into(),
            ..row.clone()
        };
        assert!(open(&master, &moved).is_err());
        let other_client = NativeKeyRow {
            client: "treasury".into(),
            ..row.clone()
        };
        assert!(open(&master, &other_client).is_err());
        let e = open(&MasterKey::generate().unwrap(), &row).unwrap_err();
        assert!(!e.contains("s3cret") && !e.contains("p4ss"), "{e}");
    }
}
