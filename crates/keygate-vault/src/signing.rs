//! Ed25519 signing keys: the instance's, which signs audit checkpoints, and approvers', which
//! sign approvals (the same type and file format). Kept like the master key: hex in a file of
//! mode 0600, refused if group or others may read or write it.

use std::fs;
use std::path::Path;

use ed25519_dalek::{Signature, Signer as _, SigningKey, VerifyingKey};
use zeroize::Zeroizing;

use crate::master::{check_key_file_permissions, write_new_private_file};
use crate::{VaultError, random_bytes};

/// An Ed25519 signing key (zeroized on drop by ed25519-dalek).
pub struct AuditKey(SigningKey);

/// An approver's key: an Ed25519 key in the same file format as the audit key.
pub type ApproverKey = AuditKey;

impl std::fmt::Debug for AuditKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "AuditKey(public {})", self.public_hex())
    }
}

impl AuditKey {
    pub fn generate() -> Result<Self, VaultError> {
        let mut seed = Zeroizing::new([0u8; 32]);
        random_bytes(seed.as_mut())?;
        Ok(Self(SigningKey::from_bytes(&seed)))
    }

    /// The public key, 64 hex characters.
    pub fn public_hex(&self) -> String {
        hex::encode(self.0.verifying_key().as_bytes())
    }

    /// Signs `message`; the signature is 128 hex characters.
    pub fn sign_hex(&self, message: &[u8]) -> String {
        hex::encode(self.0.sign(message).to_bytes())
    }

    /// Writes the key (its 32-byte seed, hex) to a new file of mode 0600. Refuses to overwrite.
    pub fn write_file(&self, path: &Path) -> Result<(), VaultError> {
        let mut text = Zeroizing::new(hex::encode(self.0.to_bytes()));
        text.push('\n');
        write_new_private_file(path, text.as_bytes()).map_err(|reason| VaultError::KeyFile {
            path: path.to_path_buf(),
            reason,
        })
    }

    /// Reads a key written by [`AuditKey::write_file`], after the permission check.
    pub fn read_file(path: &Path) -> Result<Self, VaultError> {
        check_key_file_permissions(path)?;
        let err = |reason: String| VaultError::KeyFile {
            path: path.to_path_buf(),
            reason,
        };
        let text = Zeroizing::new(
            fs::read_to_string(path).map_err(|e| err(format!("cannot read it: {e}")))?,
        );
        let mut seed = Zeroizing::new([0u8; 32]);
        hex::decode_to_slice(text.trim(), seed.as_mut()).map_err(|_| {
            err("it does not hold an Ed25519 key (expected 64 hex characters)".into())
        })?;
        Ok(Self(SigningKey::from_bytes(&seed)))
    }
}

/// Checks an Ed25519 signature given as hex, by a public key given as hex.
pub fn verify_signature(
    public_hex: &str,
    message: &[u8],
    signature_hex: &str,
) -> Result<(), String> {
    let mut pk = [0u8; 32];
    hex::decode_to_slice(public_hex, &mut pk)
        .map_err(|_| "the public key is not 64 hex characters".to_string())?;
    let key = VerifyingKey::from_bytes(&pk)
        .map_err(|_| "the public key is not a valid Ed25519 key".to_string())?;
    let mut sig = [0u8; 64];
    hex::decode_to_slice(signature_hex, &mut sig)
        .map_err(|_| "the signature is not 128 hex characters".to_string())?;
    key.verify_strict(message, &Signature::from_bytes(&sig))
        .map_err(|_| "the signature does not verify".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signs_verifies_and_round_trips_through_a_private_file() {
        let k = AuditKey::generate().unwrap();
        let sig = k.sign_hex(b"checkpoint");
        assert_eq!(
            verify_signature(&k.public_hex(), b"checkpoint", &sig),
            Ok(())
        );
        assert!(verify_signature(&k.public_hex(), b"checkpoinT", &sig).is_err());
        let other = AuditKey::generate().unwrap();
        assert!(verify_signature(&other.public_hex(), b"checkpoint", &sig).is_err());
        assert!(verify_signature("zz", b"x", &sig).is_err());
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.key");
        k.write_file(&path).unwrap();
        assert_eq!(
            AuditKey::read_file(&path).unwrap().public_hex(),
            k.public_hex()
        );
        assert!(k.write_file(&path).is_err(), "never overwrites");
        assert!(!format!("{k:?}").contains(&hex::encode(k.0.to_bytes())));
    }
}
