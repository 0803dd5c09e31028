//! keygate-vault: secrets at rest.
//!
//! keygate is the only holder of venue API secrets and wallet keys. This crate keeps them
//! encrypted with envelope encryption: every credential version has its own random data key
//! (AES-256-GCM), and that data key is wrapped by the instance's master key. The credential's
//! id, venue, kind and version are bound to both ciphertexts as associated data, so a ciphertext copied
//! to another row fails to decrypt instead of yielding another credential's secret.
//!
//! The crate knows nothing of databases, HTTP or venues: it turns plaintext into [`SealedSecret`]s
//! and back, loads master keys from files or passphrases, and gives secret types that zeroize on
//! drop and print `[redacted]`.

mod credential;
mod envelope;
mod error;
mod master;
pub mod native_key;
mod secret;
mod signing;

pub use credential::{CredentialKind, CredentialSecret};
pub use envelope::{Binding, SealedSecret, open, rewrap, seal};
pub use error::VaultError;
pub use master::{KdfParams, KeyId, MasterKey, check_key_file_permissions};
pub use secret::{SecretBytes, SecretString};
pub use signing::{ApproverKey, AuditKey, verify_signature};

/// Fill `buf` with bytes from the operating system's secure random source.
pub fn random_bytes(buf: &mut [u8]) -> Result<(), VaultError> {
    getrandom::fill(buf).map_err(|e| VaultError::Random(e.to_string()))
}
