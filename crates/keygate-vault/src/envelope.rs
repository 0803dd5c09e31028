//! Envelope encryption of credential secrets.
//!
//! ```text
//! data key  = 32 random bytes, one per credential version
//! ciphertext   = 0x01 || nonce(12) || AES-256-GCM(data key, secret,   aad = "keygate/credential/v1" || binding)
//! wrapped key  = 0x01 || nonce(12) || AES-256-GCM(master,   data key, aad = "keygate/data-key/v1"   || binding)
//! binding      = length-prefixed id, venue and kind, and the version as 4 bytes big-endian
//! ```
//!
//! Both ciphertexts are bound to the credential's id, venue, kind and version, so a ciphertext or a
//! wrapped key copied into another row fails authentication. Rekeying rewraps the data keys and
//! leaves the secret ciphertexts untouched.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use zeroize::Zeroizing;

use crate::master::MasterKey;
use crate::{KeyId, SecretBytes, VaultError, random_bytes};

const FORMAT_V1: u8 = 1;
const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;
const DATA_KEY_LEN: usize = 32;
const SECRET_LABEL: &[u8] = b"keygate/credential/v1";
const DATA_KEY_LABEL: &[u8] = b"keygate/data-key/v1";

/// What a sealed secret is bound to: the row it belongs in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binding<'a> {
    pub id: &'a str,
    pub venue: &'a str,
    /// The credential kind's name, e.g. "binance-hmac".
    pub kind: &'a str,
    pub version: u32,
}

impl Binding<'_> {
    fn aad(&self, label: &[u8]) -> Vec<u8> {
        let parts = [
            self.id.as_bytes(),
            self.venue.as_bytes(),
            self.kind.as_bytes(),
        ];
        let mut aad =
            Vec::with_capacity(label.len() + parts.iter().map(|p| 4 + p.len()).sum::<usize>() + 4);
        aad.extend_from_slice(label);
        for part in parts {
            aad.extend_from_slice(&(part.len() as u32).to_be_bytes());
            aad.extend_from_slice(part);
        }
        aad.extend_from_slice(&self.version.to_be_bytes());
        aad
    }

    fn describe(&self, what: &str) -> String {
        format!(
            "{what} of credential {} version {} (venue {})",
            self.id, self.version, self.venue
        )
    }
}

/// A secret as stored: the secret encrypted under its data key, the data key wrapped by the
/// master key, and the id of that master key. None of it is secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealedSecret {
    pub key_id: KeyId,
    pub wrapped_key: Vec<u8>,
    pub ciphertext: Vec<u8>,
}

fn encrypt(key: &[u8], plaintext: &[u8], aad: &[u8]) -> Result<Vec<u8>, VaultError> {
    let cipher = Aes256Gcm::new_from_slice(key)
        .map_err(|_| VaultError::Kdf("AES-256-GCM needs a 32-byte key".into()))?;
    let mut nonce = [0u8; NONCE_LEN];
    random_bytes(&mut nonce)?;
    let ct = cipher
        .encrypt(
            &Nonce::from(nonce),
            Payload {
                msg: plaintext,
                aad,
            },
        )
        .map_err(|_| VaultError::Random("AES-256-GCM encryption failed".into()))?;
    let mut out = Vec::with_capacity(1 + NONCE_LEN + ct.len());
    out.push(FORMAT_V1);
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&ct);
    Ok(out)
}

fn decrypt(key: &[u8], sealed: &[u8], aad: &[u8], what: String) -> Result<Vec<u8>, VaultError> {
    let Some((&version, rest)) = sealed.split_first() else {
        return Err(VaultError::Malformed { what, len: 0 });
    };
    if version != FORMAT_V1 {
        return Err(VaultError::UnknownFormat { what, version });
    }
    if rest.len() < NONCE_LEN + TAG_LEN {
        return Err(VaultError::Malformed {
            what,
            len: sealed.len(),
        });
    }
    let (nonce, ct) = rest.split_at(NONCE_LEN);
    let mut nonce_arr = [0u8; NONCE_LEN];
    nonce_arr.copy_from_slice(nonce);
    let cipher = Aes256Gcm::new_from_slice(key)
        .map_err(|_| VaultError::Kdf("AES-256-GCM needs a 32-byte key".into()))?;
    cipher
        .decrypt(&Nonce::from(nonce_arr), Payload { msg: ct, aad })
        .map_err(|_| VaultError::Decrypt { what })
}

fn unwrap_data_key(
    master: &MasterKey,
    binding: &Binding<'_>,
    wrapped: &[u8],
) -> Result<Zeroizing<Vec<u8>>, VaultError> {
    let dk = Zeroizing::new(decrypt(
        master.bytes(),
        wrapped,
        &binding.aad(DATA_KEY_LABEL),
        binding.describe("the data key"),
    )?);
    if dk.len() != DATA_KEY_LEN {
        return Err(VaultError::Malformed {
            what: binding.describe("the data key"),
            len: dk.len(),
        });
    }
    Ok(dk)
}

/// Encrypts `plaintext` under a fresh data key and wraps that key with `master`.
pub fn seal(
    master: &MasterKey,
    binding: &Binding<'_>,
    plaintext: &SecretBytes,
) -> Result<SealedSecret, VaultError> {
    let mut dk = Zeroizing::new([0u8; DATA_KEY_LEN]);
    random_bytes(dk.as_mut())?;
    let ciphertext = encrypt(dk.as_ref(), plaintext.expose(), &binding.aad(SECRET_LABEL))?;
    let wrapped_key = encrypt(master.bytes(), dk.as_ref(), &binding.aad(DATA_KEY_LABEL))?;
    Ok(SealedSecret {
        key_id: master.id(),
        wrapped_key,
        ciphertext,
    })
}

/// Decrypts a sealed secret. Fails with a clear error, never garbage, when anything was altered,
/// moved to another row, or sealed under another master key.
pub fn open(
    master: &MasterKey,
    binding: &Binding<'_>,
    sealed: &SealedSecret,
) -> Result<SecretBytes, VaultError> {
    let dk = unwrap_data_key(master, binding, &sealed.wrapped_key)?;
    let pt = decrypt(
        &dk,
        &sealed.ciphertext,
        &binding.aad(SECRET_LABEL),
        binding.describe("the secret"),
    )?;
    Ok(SecretBytes::new(pt))
}

/// Moves a wrapped data key from `old` to `new` master key, without touching the ciphertext.
pub fn rewrap(
    old: &MasterKey,
    new: &MasterKey,
    binding: &Binding<'_>,
    wrapped_key: &[u8],
) -> Result<Vec<u8>, VaultError> {
    let dk = unwrap_data_key(old, binding, wrapped_key)?;
    encrypt(new.bytes(), &dk, &binding.aad(DATA_KEY_LABEL))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn b(id: &str, venue: &str, version: u32) -> Binding<'static> {
        Binding {
            id: Box::leak(id.to_string().into_boxed_str()),
            venue: Box::leak(venue.to_string().into_boxed_str()),
            kind: "binance-hmac",
            version,
        }
    }

    #[test]
    fn roundtrip() {
        let mk = MasterKey::generate().unwrap();
        let pt = SecretBytes::new(b"api-secret-canary".to_vec());
        let sealed = seal(&mk, &b("c1", "binance", 1), &pt).unwrap();
        assert_eq!(sealed.key_id, mk.id());
        assert!(
            !sealed
                .ciphertext
                .windows(pt.len())
                .any(|w| w == pt.expose())
        );
        assert_eq!(open(&mk, &b("c1", "binance", 1), &sealed).unwrap(), pt);
    }

    #[test]
    fn moved_to_another_row_fails() {
        let mk = MasterKey::generate().unwrap();
        let pt = SecretBytes::new(b"s".to_vec());
        let sealed = seal(&mk, &b("c1", "binance", 1), &pt).unwrap();
        for other in [
            b("c2", "binance", 1),
            b("c1", "okx", 1),
            b("c1", "binance", 2),
            b("c1binance", "", 1),
            Binding {
                kind: "okx-hmac",
                ..b("c1", "binance", 1)
            },
        ] {
            let e = open(&mk, &other, &sealed).unwrap_err();
            assert!(matches!(e, VaultError::Decrypt { .. }), "{e}");
            assert!(e.to_string().contains("failed to decrypt"));
        }
        // Swapping only the ciphertext between two rows fails too.
        let other = seal(&mk, &b("c2", "binance", 1), &pt).unwrap();
        let franken = SealedSecret {
            ciphertext: other.ciphertext.clone(),
            ..sealed.clone()
        };
        assert!(open(&mk, &b("c1", "binance", 1), &franken).is_err());
    }

    #[test]
    fn wrong_master_key_fails() {
        let mk = MasterKey::generate().unwrap();
        let sealed = seal(&mk, &b("c1", "v", 1), &SecretBytes::new(b"x".to_vec())).unwrap();
        let other = MasterKey::generate().unwrap();
        assert!(matches!(
            open(&other, &b("c1", "v", 1), &sealed),
            Err(VaultError::Decrypt { .. })
        ));
    }

    #[test]
    fn rewrap_moves_to_new_key() {
        let old = MasterKey::generate().unwrap();
        let new = MasterKey::generate().unwrap();
        let bind = b("c1", "v", 3);
        let pt = SecretBytes::new(b"secret".to_vec());
        let sealed = seal(&old, &bind, &pt).unwrap();
        let rewrapped = SealedSecret {
            key_id: new.id(),
            wrapped_key: rewrap(&old, &new, &bind, &sealed.wrapped_key).unwrap(),
            ciphertext: sealed.ciphertext.clone(),
        };
        assert_eq!(open(&new, &bind, &rewrapped).unwrap(), pt);
        assert!(open(&old, &bind, &rewrapped).is_err());
        // Rewrapping with the wrong old key fails and produces nothing.
        assert!(rewrap(&new, &old, &bind, &sealed.wrapped_key).is_err());
    }

    #[test]
    fn truncated_and_unknown_formats_are_clear_errors() {
        let mk = MasterKey::generate().unwrap();
        let bind = b("c1", "v", 1);
        let sealed = seal(&mk, &bind, &SecretBytes::new(b"x".to_vec())).unwrap();
        let mut s = sealed.clone();
        s.ciphertext.truncate(5);
        assert!(matches!(
            open(&mk, &bind, &s),
            Err(VaultError::Malformed { .. })
        ));
        let mut s = sealed.clone();
        s.wrapped_key.clear();
        assert!(matches!(
            open(&mk, &bind, &s),
            Err(VaultError::Malformed { .. })
        ));
        let mut s = sealed;
        s.ciphertext[0] = 9;
        assert!(matches!(
            open(&mk, &bind, &s),
            Err(VaultError::UnknownFormat { version: 9, .. })
        ));
    }

    proptest! {
        // Flipping any bit of either stored ciphertext makes decryption fail, never return
        // garbage, never panic.
        #[test]
        fn any_bit_flip_is_detected(
            secret in proptest::collection::vec(any::<u8>(), 0..200),
            which in any::<bool>(),
            pos in any::<usize>(),
            bit in 0u8..8,
        ) {
            let mk = MasterKey::from_bytes([7; 32]);
            let bind = b("cred", "binance", 1);
            let mut sealed = seal(&mk, &bind, &SecretBytes::new(secret)).unwrap();
            let target = if which { &mut sealed.ciphertext } else { &mut sealed.wrapped_key };
            let i = pos % target.len();
            target[i] ^= 1 << bit;
            prop_assert!(open(&mk, &bind, &sealed).is_err());
        }

        // Arbitrary bytes as stored values never panic.
        #[test]
        fn garbage_never_panics(
            wrapped in proptest::collection::vec(any::<u8>(), 0..100),
            ct in proptest::collection::vec(any::<u8>(), 0..100),
        ) {
            let mk = MasterKey::from_bytes([7; 32]);
            let sealed = SealedSecret { key_id: mk.id(), wrapped_key: wrapped, ciphertext: ct };
            prop_assert!(open(&mk, &b("c", "v", 1), &sealed).is_err());
        }
    }
}
