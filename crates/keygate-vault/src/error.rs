//! The vault's error type. Messages name what failed and what to do; they never carry secret
//! material.

use std::path::PathBuf;

/// Everything that can go wrong in the vault.
#[derive(Debug, thiserror::Error)]
pub enum VaultError {
    #[error(
        "{what} failed to decrypt: the ciphertext was altered, moved from another credential's \
         row, or the master key is not the one it was sealed with"
    )]
    Decrypt { what: String },

    #[error(
        "{what} has an unknown format (version byte {version}); was it written by a newer keygate?"
    )]
    UnknownFormat { what: String, version: u8 },

    #[error("{what} is truncated or malformed ({len} bytes)")]
    Malformed { what: String, len: usize },

    #[error(
        "master key file {path} is readable or writable by group or others (mode {mode:04o}); \
         keygate refuses to use it. Fix it with: chmod 600 {path}",
        path = path.display()
    )]
    KeyFilePermissions { path: PathBuf, mode: u32 },

    #[error("master key file {path}: {reason}", path = path.display())]
    KeyFile { path: PathBuf, reason: String },

    #[error("key derivation parameters in {path}: {reason}", path = path.display())]
    KdfFile { path: PathBuf, reason: String },

    #[error("key derivation failed: {0}")]
    Kdf(String),

    #[error(
        "the passphrase is wrong: it does not derive the master key this data directory was set up with"
    )]
    WrongPassphrase,

    #[error("invalid {kind} secret: {reason}")]
    InvalidSecret { kind: &'static str, reason: String },

    #[error("the operating system's random source failed: {0}")]
    Random(String),
}
