//! The one error type of the administrative operations. Each variant says what an operator
//! asked for that cannot be done, or which layer below failed.

use keygate_config::ConfigError;
use keygate_store::StoreError;
use keygate_vault::VaultError;

/// Why an administrative operation did not happen. Nothing was changed when one is returned,
/// except where the variant says otherwise.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// A request field that is not valid; the text names it and says what would be.
    #[error("{0}")]
    Invalid(String),
    #[error("client {0} does not exist; see `keygate client list`")]
    NoSuchClient(String),
    #[error("client {0} is disabled; enable it first")]
    ClientDisabled(String),
    #[error(
        "--ttl {ttl} is longer than tokens.max_ttl ({max}); short-lived tokens limit what a leaked one can do"
    )]
    TtlTooLong { ttl: String, max: String },
    #[error("a token must be bound to at least one source address: give --cidr ADDRESS/32")]
    NoSourceAddress,
    #[error("--cidr {0:?} is not an address range; write it like 10.0.0.5/32 or 2001:db8::/64")]
    BadCidr(String),
    #[error("--native needs the master key")]
    NativeNeedsMasterKey,
    #[error("a credential with id {0} already exists; pick another --id or rotate that one")]
    CredentialExists(String),
    /// A token was refused; the refusal is in the audit log as entry `seq`.
    #[error("{error} (audit entry {seq})")]
    TokenRefused {
        error: keygate_core::auth::AuthError,
        seq: i64,
    },
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Vault(#[from] VaultError),
    #[error("{context}: {}", keygate_config::chain(&**.cause))]
    Io {
        context: String,
        cause: Box<dyn std::error::Error + Send + Sync>,
    },
}

pub type Result<T, E = AdminError> = std::result::Result<T, E>;

/// `return Err(AdminError::Invalid(format!(...)))`.
macro_rules! bail {
    ($($t:tt)*) => {
        return Err($crate::error::AdminError::Invalid(format!($($t)*)))
    };
}
pub(crate) use bail;

/// A lower layer's refusal given only as text.
pub(crate) fn invalid(e: impl std::fmt::Display) -> AdminError {
    AdminError::Invalid(e.to_string())
}

/// An I/O failure with what keygate was doing.
pub(crate) fn io<E: std::error::Error + Send + Sync + 'static>(
    context: impl Into<String>,
) -> impl FnOnce(E) -> AdminError {
    let context = context.into();
    move |cause| AdminError::Io {
        context,
        cause: Box::new(cause),
    }
}
