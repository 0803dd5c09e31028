//! Signing and checking audit checkpoints with the instance's Ed25519 key, and exporting them
//! to a file outside the store.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use crate::error::{Context, Result};
use keygate_store::audit::{Checkpoint, CheckpointPolicy, Signer, Verifier};
use keygate_vault::{AuditKey, verify_signature};

use crate::engine::duration;
use crate::instance::StateHandle;

pub struct KeySigner(pub AuditKey);

impl Signer for KeySigner {
    fn public_key(&self) -> String {
        self.0.public_hex()
    }
    fn sign(&self, message: &[u8]) -> String {
        self.0.sign_hex(message)
    }
}

/// Trusts the local key and the configured ones.
pub struct Trusted(pub Vec<String>);

impl Verifier for Trusted {
    fn verify(&self, public_key: &str, message: &[u8], signature: &str) -> Result<(), String> {
        if !self.0.iter().any(|k| k.eq_ignore_ascii_case(public_key)) {
            return Err(format!(
                "it is signed by key {public_key}, which is neither this instance's nor in audit.trusted_keys"
            ));
        }
        verify_signature(public_key, message, signature)
    }
}

pub fn policy(h: &StateHandle) -> Result<CheckpointPolicy> {
    Ok(CheckpointPolicy {
        every_entries: h.config.audit.checkpoint_every.max(1),
        every_ms: duration(
            "audit.checkpoint_interval",
            &h.config.audit.checkpoint_interval,
        )?,
    })
}

/// Appends a checkpoint to the export file (created with mode 0600), synced.
pub fn export(path: &Path, cp: &Checkpoint) -> Result<()> {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot open the checkpoint export file {}", path.display()))?;
    let line = serde_json::to_string(cp)?;
    writeln!(f, "{line}")
        .and_then(|_| f.sync_all())
        .with_context(|| format!("cannot write the checkpoint export file {}", path.display()))
}

/// Reads exported checkpoints (JSON lines).
pub fn read_exported(path: &Path) -> Result<Vec<Checkpoint>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read checkpoints from {}", path.display()))?;
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            serde_json::from_str(l)
                .with_context(|| format!("{} line {}: not a checkpoint", path.display(), i + 1))
        })
        .collect()
}
