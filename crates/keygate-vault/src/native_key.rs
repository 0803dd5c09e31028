//! The envelope format of an exchange-native client key (a key keygate issues to a bot that
//! signs as the exchange documents): its secret and OKX passphrase are sealed like a venue
//! credential, under the master key, bound to the token id and its client, so a sealed secret
//! moved to another key's row fails to open.
//!
//! Must not know where the sealed parts are stored (the store's row) or how a signature is
//! checked (the gateway's): it turns a key's parts into a [`SealedSecret`] and back.

use crate::{Binding, CredentialKind, CredentialSecret, MasterKey, SealedSecret, SecretString};
use crate::{VaultError, open, seal};

/// The credential kind a native key's parts are kept as: API key, secret, passphrase.
const PARTS_KIND: CredentialKind = CredentialKind::OkxHmac;
/// The kind named in a native key's envelope binding.
const BINDING_KIND: &str = "native-key";

/// The id a native key's sealed secret is bound to.
pub fn binding_id(token_id: &str) -> String {
    format!("native-key:{token_id}")
}

/// The envelope binding of a native key: its binding id and its client.
pub fn binding<'a>(id: &'a str, client: &'a str) -> Binding<'a> {
    Binding {
        id,
        venue: client,
        kind: BINDING_KIND,
        version: 1,
    }
}

/// Seals a new native key's secret and passphrase for `token_id` of `client`.
pub fn seal_native_key(
    master: &MasterKey,
    token_id: &str,
    client: &str,
    secret: SecretString,
    passphrase: SecretString,
) -> Result<SealedSecret, VaultError> {
    let parts = CredentialSecret::new(
        PARTS_KIND,
        vec![SecretString::new(token_id.to_string()), secret, passphrase],
    )?;
    let id = binding_id(token_id);
    seal(master, &binding(&id, client), &parts.encode())
}

/// Why a native key's sealed secret did not open. Names the key, never any secret.
#[derive(Debug, thiserror::Error)]
pub enum NativeKeyError {
    #[error("native key {token_id}: {source}")]
    Vault {
        token_id: String,
        #[source]
        source: VaultError,
    },
    #[error("native key {token_id}: the sealed secret is another key's")]
    AnotherKeys { token_id: String },
}

/// Opens the sealed secret of native key `token_id` of `client`: its parts (API key, secret,
/// passphrase), checked to be this key's.
pub fn open_native_key(
    master: &MasterKey,
    token_id: &str,
    client: &str,
    sealed: &SealedSecret,
) -> Result<CredentialSecret, NativeKeyError> {
    let vault = |source| NativeKeyError::Vault {
        token_id: token_id.to_string(),
        source,
    };
    let id = binding_id(token_id);
    let plain = open(master, &binding(&id, client), sealed).map_err(vault)?;
    let parts = CredentialSecret::decode(PARTS_KIND, &plain).map_err(vault)?;
    if parts.parts().first().map(|p| p.expose()) != Some(token_id) {
        return Err(NativeKeyError::AnotherKeys {
            token_id: token_id.to_string(),
        });
    }
    Ok(parts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_key_opens_for_its_own_id_and_client_only() {
        let master = MasterKey::generate().unwrap();
        let sealed = seal_native_key(
            &master,
            "t1",
            "bot",
            SecretString::new("s".repeat(64)),
            SecretString::new("p".repeat(32)),
        )
        .unwrap();
        let parts = open_native_key(&master, "t1", "bot", &sealed).unwrap();
        assert_eq!(parts.parts()[1].expose(), "s".repeat(64));
        assert!(open_native_key(&master, "t2", "bot", &sealed).is_err());
        assert!(open_native_key(&master, "t1", "other", &sealed).is_err());
    }
}
