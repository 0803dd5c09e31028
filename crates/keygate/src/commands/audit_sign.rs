//! Signing and checking audit checkpoints with the instance's Ed25519 key, and exporting them
//! to a file outside the store.

use anyhow::Result;
pub use keygate_config::audit_sign::{KeySigner, Trusted, export, policy, read_exported};
use keygate_config::instance::StateHandle;

/// After an admin change (already committed): sign a checkpoint if one is due, and export it.
/// A failure here does not undo the change, so it is a warning that says so, not an error.
pub async fn checkpoint_if_due(h: &StateHandle) -> Result<()> {
    let attempt = async {
        let signer = KeySigner(h.audit_key()?);
        if let Some(cp) = h.store.checkpoint_if_due(&signer, policy(h)?).await?
            && let Some(path) = h.export_file()
        {
            export(&path, &cp)?;
        }
        anyhow::Ok(())
    };
    if let Err(e) = attempt.await {
        tracing::warn!(error = %format!("{e:#}"), "the change is recorded, but no audit checkpoint could be signed; fix this and run `keygate audit checkpoint`");
        eprintln!(
            "warning: the change is recorded, but no audit checkpoint could be signed ({e:#}); fix this and run `keygate audit checkpoint`"
        );
    }
    Ok(())
}
