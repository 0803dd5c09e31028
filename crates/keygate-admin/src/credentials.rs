//! Venue credentials into the vault: names checked, secrets sealed under the master key with
//! their binding (id, venue, kind, version), stored with a fingerprint. Secrets come in as
//! values (the caller reads them from a terminal or stdin) and go out nowhere.

use keygate_config::Instance;
use keygate_core::Millis;
use keygate_store::{NewCredential, StoreError};
use keygate_vault::{Binding, CredentialKind, CredentialSecret, SecretString, seal};

use crate::error::{AdminError, Result, bail};

/// Venue names and credential ids: 1–64 of [a-z0-9_-], starting with a letter or digit.
pub fn check_name(what: &str, s: &str) -> Result<()> {
    let ok = !s.is_empty()
        && s.len() <= 64
        && s.bytes().enumerate().all(|(i, b)| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || (i > 0 && (b == b'-' || b == b'_'))
        });
    if !ok {
        bail!(
            "{what} {s:?} is not valid: use 1 to 64 lowercase letters, digits, '-' or '_', starting with a letter or digit"
        );
    }
    Ok(())
}

/// A new random credential id, cr_ and 10 letters or digits.
pub fn new_id() -> Result<String> {
    const ALPHABET: &[u8] = b"abcdefghijkmnpqrstuvwxyz23456789";
    let mut raw = [0u8; 10];
    keygate_vault::random_bytes(&mut raw)?;
    let tail: String = raw
        .iter()
        .map(|b| ALPHABET[(*b as usize) % ALPHABET.len()] as char)
        .collect();
    Ok(format!("cr_{tail}"))
}

/// A credential version sealed under the instance's master key, ready to store.
pub fn sealed_row(
    inst: &Instance,
    id: &str,
    venue: &str,
    version: u32,
    secret: &CredentialSecret,
    now: Millis,
) -> Result<NewCredential> {
    let sealed = seal(
        &inst.master,
        &Binding {
            id,
            venue,
            kind: secret.kind().as_str(),
            version,
        },
        &secret.encode(),
    )?;
    Ok(NewCredential {
        id: id.to_string(),
        version,
        venue: venue.to_string(),
        kind: secret.kind().as_str().to_string(),
        fingerprint: secret.fingerprint(),
        key_id: sealed.key_id.as_str().to_string(),
        wrapped_key: sealed.wrapped_key,
        ciphertext: sealed.ciphertext,
        created_ms: now,
    })
}

/// A credential as added: its id and fingerprint.
#[derive(Debug, Clone)]
pub struct AddedCredential {
    pub id: String,
    pub fingerprint: String,
}

/// Stores a new credential (version 1) for `venue`, under `id` or a new random one.
pub async fn add_credential(
    inst: &Instance,
    venue: &str,
    kind: CredentialKind,
    id: Option<&str>,
    parts: Vec<SecretString>,
    now: Millis,
) -> Result<AddedCredential> {
    check_name("venue", venue)?;
    let id = match id {
        Some(id) => {
            check_name("credential id", id)?;
            id.to_string()
        }
        None => new_id()?,
    };
    let secret = CredentialSecret::new(kind, parts)?;
    let row = sealed_row(inst, &id, venue, 1, &secret, now)?;
    inst.store
        .insert_credential(&row)
        .await
        .map_err(|e| match e {
            StoreError::Conflict(_) => AdminError::CredentialExists(id.clone()),
            e => e.into(),
        })?;
    tracing::info!(
        credential = %id, venue = %venue, kind = %kind, version = 1,
        fingerprint = %row.fingerprint, "credential added"
    );
    Ok(AddedCredential {
        id,
        fingerprint: row.fingerprint,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for ok in ["binance-main", "a", "okx_2", "cr_abc"] {
            check_name("venue", ok).unwrap();
        }
        for bad in ["", "-a", "Binance", "a b", "a/b", &"x".repeat(65)] {
            assert!(check_name("venue", bad).is_err(), "{bad}");
        }
        let id = new_id().unwrap();
        check_name("id", &id).unwrap();
        assert_eq!(id.len(), 13);
    }
}
