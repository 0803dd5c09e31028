//! After an admin change (already committed): sign an audit checkpoint if one is due, and
//! export it. A failure here does not undo the change, so it is a warning, not an error.

use keygate_config::StateHandle;
use keygate_config::audit_sign::{KeySigner, export, policy};

/// Signs (and exports) a checkpoint if one is due. A failure is logged and warned about on
/// stderr, as every admin command did; the change stands.
pub async fn checkpoint_if_due(h: &StateHandle) {
    let attempt = async {
        let signer = KeySigner(h.audit_key()?);
        if let Some(cp) = h.store.checkpoint_if_due(&signer, policy(h)?).await?
            && let Some(path) = h.export_file()
        {
            export(&path, &cp)?;
        }
        Ok::<(), keygate_config::ConfigError>(())
    };
    if let Err(e) = attempt.await {
        let e = keygate_config::chain(&e);
        tracing::warn!(error = %e, "the change is recorded, but no audit checkpoint could be signed; fix this and run `keygate audit checkpoint`");
        eprintln!(
            "warning: the change is recorded, but no audit checkpoint could be signed ({e}); fix this and run `keygate audit checkpoint`"
        );
    }
}
