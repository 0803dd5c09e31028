//! Master keys: the key that wraps every credential's data key.
//!
//! Two providers: a random 256-bit key kept in a file of its own (mode 0600, hex text), or a key
//! derived with Argon2id from a passphrase whose parameters and salt are kept beside it in a small
//! JSON file. Either way the key has a [`KeyId`], a one-way tag that lets keygate tell a wrong key
//! from a right one before it touches any data.

use std::fmt;
use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use argon2::{Algorithm, Argon2, Params, Version};
use hmac::{Hmac, KeyInit, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use zeroize::Zeroizing;

use crate::{SecretString, VaultError, random_bytes};

/// Length of a master key in bytes (256 bits).
pub const MASTER_KEY_LEN: usize = 32;

/// The master key. Zeroized on drop; Debug prints `[redacted]`.
pub struct MasterKey(Zeroizing<[u8; MASTER_KEY_LEN]>);

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MasterKey({}, [redacted])", self.id())
    }
}

/// A public tag of a master key: HMAC-SHA256(key, label), first 8 bytes in hex. It identifies a
/// key without revealing it, so keygate can say "this is not the key the store was sealed with".
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct KeyId(String);

impl KeyId {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Accepts a key id read back from storage.
    pub fn from_stored(s: impl Into<String>) -> Self {
        Self(s.into())
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyId({})", self.0)
    }
}

const KEY_ID_LABEL: &[u8] = b"keygate/master-key-id/v1";

impl MasterKey {
    /// A new random key from the operating system's secure random source.
    pub fn generate() -> Result<Self, VaultError> {
        let mut k = Zeroizing::new([0u8; MASTER_KEY_LEN]);
        random_bytes(k.as_mut())?;
        Ok(Self(k))
    }

    pub fn from_bytes(bytes: [u8; MASTER_KEY_LEN]) -> Self {
        Self(Zeroizing::new(bytes))
    }

    pub(crate) fn bytes(&self) -> &[u8; MASTER_KEY_LEN] {
        &self.0
    }

    /// This key's public tag.
    #[allow(
        clippy::expect_used,
        reason = "infallible: HMAC accepts keys of any length, and this one is always 32 bytes"
    )]
    pub fn id(&self) -> KeyId {
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(self.0.as_ref())
            .expect("HMAC accepts keys of any length");
        mac.update(KEY_ID_LABEL);
        let tag = mac.finalize().into_bytes();
        KeyId(hex::encode(&tag[..8]))
    }

    /// Writes the key as hex text to a new file created with mode 0600. Refuses to overwrite.
    pub fn write_key_file(&self, path: &Path) -> Result<(), VaultError> {
        let err = |reason: String| VaultError::KeyFile {
            path: path.to_path_buf(),
            reason,
        };
        let mut text = Zeroizing::new(hex::encode(self.0.as_ref()));
        text.push('\n');
        write_new_private_file(path, text.as_bytes()).map_err(err)
    }

    /// Reads a key file written by [`MasterKey::write_key_file`], after checking that neither
    /// group nor others may read or write it.
    pub fn read_key_file(path: &Path) -> Result<Self, VaultError> {
        check_key_file_permissions(path)?;
        let err = |reason: &str| VaultError::KeyFile {
            path: path.to_path_buf(),
            reason: reason.to_string(),
        };
        let text = Zeroizing::new(
            fs::read_to_string(path).map_err(|e| err(&format!("cannot read it: {e}")))?,
        );
        let mut key = Zeroizing::new([0u8; MASTER_KEY_LEN]);
        hex::decode_to_slice(text.trim(), key.as_mut()).map_err(|_| {
            err("it does not hold a master key (expected 64 hex characters); restore it from your backup")
        })?;
        Ok(Self(key))
    }

    /// Derives the key from a passphrase with the given Argon2id parameters.
    pub fn derive(passphrase: &SecretString, params: &KdfParams) -> Result<Self, VaultError> {
        if passphrase.is_empty() {
            return Err(VaultError::Kdf("the passphrase is empty".into()));
        }
        let salt =
            hex::decode(&params.salt).map_err(|_| VaultError::Kdf("the salt is not hex".into()))?;
        let argon = Argon2::new(
            Algorithm::Argon2id,
            Version::V0x13,
            Params::new(
                params.m_cost_kib,
                params.t_cost,
                params.p_cost,
                Some(MASTER_KEY_LEN),
            )
            .map_err(|e| VaultError::Kdf(format!("invalid Argon2id parameters: {e}")))?,
        );
        let mut key = Zeroizing::new([0u8; MASTER_KEY_LEN]);
        argon
            .hash_password_into(passphrase.expose().as_bytes(), &salt, key.as_mut())
            .map_err(|e| VaultError::Kdf(e.to_string()))?;
        let key = Self(key);
        if let Some(expected) = &params.key_id
            && key.id() != *expected
        {
            return Err(VaultError::WrongPassphrase);
        }
        Ok(key)
    }
}

/// Creates `path` with mode 0600 (refusing to overwrite), writes `bytes` and syncs them to disk.
/// The error says which step failed.
pub(crate) fn write_new_private_file(path: &Path, bytes: &[u8]) -> Result<(), String> {
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| format!("cannot create it: {e}"))?;
    f.write_all(bytes)
        .and_then(|_| f.sync_all())
        .map_err(|e| format!("cannot write it: {e}"))
}

/// Refuses a key file that group or others may read or write, or that is not a regular file.
pub fn check_key_file_permissions(path: &Path) -> Result<(), VaultError> {
    let meta = fs::metadata(path).map_err(|e| VaultError::KeyFile {
        path: path.to_path_buf(),
        reason: format!("cannot open it: {e}; run `keygate init` to create a data directory, or point --data-dir at yours"),
    })?;
    if !meta.is_file() {
        return Err(VaultError::KeyFile {
            path: path.to_path_buf(),
            reason: "it is not a regular file".into(),
        });
    }
    let mode = meta.permissions().mode() & 0o7777;
    if mode & 0o077 != 0 {
        return Err(VaultError::KeyFilePermissions {
            path: path.to_path_buf(),
            mode,
        });
    }
    Ok(())
}

/// Argon2id parameters and salt for a passphrase-derived master key, stored beside it as JSON.
/// `key_id` lets keygate reject a wrong passphrase before it opens anything.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KdfParams {
    /// Always "argon2id".
    pub algorithm: String,
    /// Memory cost in KiB.
    pub m_cost_kib: u32,
    /// Number of passes.
    pub t_cost: u32,
    /// Degree of parallelism.
    pub p_cost: u32,
    /// Random salt, hex.
    pub salt: String,
    /// Tag of the derived key, set once the key is derived.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_id: Option<KeyId>,
}

impl KdfParams {
    /// Upper bounds accepted when reading parameters: 4 GiB, 64 passes, 16 lanes.
    pub const MAX_M_COST_KIB: u32 = 4 * 1024 * 1024;
    pub const MAX_T_COST: u32 = 64;
    pub const MAX_P_COST: u32 = 16;

    /// Fresh parameters with a random 16-byte salt: 64 MiB, 3 passes, 1 lane (stronger than the
    /// argon2 crate's interactive default, still well under a second on a server).
    pub fn generate() -> Result<Self, VaultError> {
        let mut salt = [0u8; 16];
        random_bytes(&mut salt)?;
        Ok(Self {
            algorithm: "argon2id".into(),
            m_cost_kib: 64 * 1024,
            t_cost: 3,
            p_cost: 1,
            salt: hex::encode(salt),
            key_id: None,
        })
    }

    pub fn read(path: &Path) -> Result<Self, VaultError> {
        let err = |reason: String| VaultError::KdfFile {
            path: path.to_path_buf(),
            reason,
        };
        let text = fs::read_to_string(path).map_err(|e| err(format!("cannot read it: {e}")))?;
        let p: Self = serde_json::from_str(&text).map_err(|e| err(format!("not valid: {e}")))?;
        if p.algorithm != "argon2id" {
            return Err(err(format!(
                "unsupported algorithm {:?} (only argon2id)",
                p.algorithm
            )));
        }
        // Bounds, so that an edited file cannot make keygate allocate without limit or spin.
        if !(8..=Self::MAX_M_COST_KIB).contains(&p.m_cost_kib)
            || !(1..=Self::MAX_T_COST).contains(&p.t_cost)
            || !(1..=Self::MAX_P_COST).contains(&p.p_cost)
        {
            return Err(err(format!(
                "parameters out of range: m_cost_kib must be 8..={}, t_cost 1..={}, p_cost 1..={}",
                Self::MAX_M_COST_KIB,
                Self::MAX_T_COST,
                Self::MAX_P_COST
            )));
        }
        Ok(p)
    }

    /// Writes the parameters to a new file (mode 0600). Refuses to overwrite.
    pub fn write_new(&self, path: &Path) -> Result<(), VaultError> {
        let err = |reason: String| VaultError::KdfFile {
            path: path.to_path_buf(),
            reason,
        };
        let mut text = serde_json::to_string_pretty(self).map_err(|e| err(e.to_string()))?;
        text.push('\n');
        write_new_private_file(path, text.as_bytes()).map_err(err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn quick_params() -> KdfParams {
        KdfParams {
            m_cost_kib: 1024,
            t_cost: 1,
            ..KdfParams::generate().unwrap()
        }
    }

    #[test]
    fn key_file_roundtrip_and_permissions() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("master.key");
        let k = MasterKey::generate().unwrap();
        k.write_key_file(&path).unwrap();
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(MasterKey::read_key_file(&path).unwrap().id(), k.id());
        // Refuses to overwrite.
        assert!(
            MasterKey::generate()
                .unwrap()
                .write_key_file(&path)
                .is_err()
        );

        for bad in [0o640, 0o604, 0o660, 0o644] {
            fs::set_permissions(&path, fs::Permissions::from_mode(bad)).unwrap();
            let e = MasterKey::read_key_file(&path).unwrap_err().to_string();
            assert!(e.contains("chmod 600"), "{e}");
        }
    }

    #[test]
    fn malformed_key_file_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("master.key");
        fs::write(&path, "not a key\n").unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
        let e = MasterKey::read_key_file(&path).unwrap_err().to_string();
        assert!(e.contains("64 hex characters"), "{e}");
    }

    #[test]
    fn passphrase_derivation_is_deterministic_and_checks_key_id() {
        let mut p = quick_params();
        let pass = SecretString::new("correct horse battery staple".into());
        let k1 = MasterKey::derive(&pass, &p).unwrap();
        let k2 = MasterKey::derive(&pass, &p).unwrap();
        assert_eq!(k1.id(), k2.id());
        p.key_id = Some(k1.id());
        assert!(MasterKey::derive(&pass, &p).is_ok());
        let wrong = SecretString::new("correct horse battery stapler".into());
        assert!(matches!(
            MasterKey::derive(&wrong, &p),
            Err(VaultError::WrongPassphrase)
        ));
        let other_salt = KdfParams {
            key_id: None,
            ..quick_params()
        };
        assert_ne!(MasterKey::derive(&pass, &other_salt).unwrap().id(), k1.id());
    }

    #[test]
    fn kdf_file_bounds_are_checked() {
        let dir = tempfile::tempdir().unwrap();
        let ok = quick_params();
        for (i, bad) in [
            KdfParams {
                m_cost_kib: u32::MAX,
                ..ok.clone()
            },
            KdfParams {
                t_cost: 0,
                ..ok.clone()
            },
            KdfParams {
                p_cost: 1000,
                ..ok.clone()
            },
            KdfParams {
                algorithm: "scrypt".into(),
                ..ok.clone()
            },
        ]
        .into_iter()
        .enumerate()
        {
            let path = dir.path().join(format!("kdf{i}"));
            bad.write_new(&path).unwrap();
            assert!(KdfParams::read(&path).is_err(), "{bad:?}");
        }
        let path = dir.path().join("ok");
        ok.write_new(&path).unwrap();
        assert_eq!(KdfParams::read(&path).unwrap(), ok);
    }

    #[test]
    fn debug_does_not_show_key_bytes() {
        let k = MasterKey::from_bytes([0xab; 32]);
        let shown = format!("{k:?}");
        assert!(!shown.contains("abab"), "{shown}");
        assert!(shown.contains("[redacted]"));
    }
}
