//! The one error type of the config layer: what is wrong with a setting, a file it names, or
//! the store and keys it points at. Every message names the field or file.

use std::fmt::Display;

/// What went wrong reading the config or setting up what it describes.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A setting (or an argument standing for one) that is not valid; the text names it.
    #[error("{0}")]
    Invalid(String),
    /// Something below failed; `context` says what keygate was doing. Shown as
    /// `context: cause` with the cause's whole chain, so the text is complete on its own.
    #[error("{context}: {}", chain(.cause))]
    Context {
        context: String,
        cause: Box<ConfigError>,
    },
    #[error(transparent)]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Toml(#[from] toml::de::Error),
    #[error(transparent)]
    Json(#[from] serde_json::Error),
    #[error(transparent)]
    Store(#[from] keygate_store::StoreError),
    #[error(transparent)]
    Vault(#[from] keygate_vault::VaultError),
    #[error(transparent)]
    Policy(#[from] keygate_core::policy::PolicyError),
    #[error(transparent)]
    Engine(#[from] keygate_core::decide::EngineError),
    #[error(transparent)]
    Url(#[from] url::ParseError),
    #[error(transparent)]
    Tls(#[from] tokio_rustls::rustls::Error),
}

pub type Result<T, E = ConfigError> = std::result::Result<T, E>;

/// An error and its sources, joined by ": " (what anyhow's `{:#}` shows).
pub fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut next = e.source();
    while let Some(s) = next {
        text.push_str(": ");
        text.push_str(&s.to_string());
        next = s.source();
    }
    text
}

/// A lower layer's error given as text only (its `Display`), kept as an invalid setting.
pub fn msg(e: impl Display) -> ConfigError {
    ConfigError::Invalid(e.to_string())
}

/// Says what keygate was doing when something failed (like anyhow's, but typed).
pub trait Context<T> {
    fn context(self, context: impl Display) -> Result<T>;
    fn with_context<D: Display>(self, f: impl FnOnce() -> D) -> Result<T>;
}

impl<T, E: Into<ConfigError>> Context<T> for std::result::Result<T, E> {
    fn context(self, context: impl Display) -> Result<T> {
        self.map_err(|e| ConfigError::Context {
            context: context.to_string(),
            cause: Box::new(e.into()),
        })
    }
    fn with_context<D: Display>(self, f: impl FnOnce() -> D) -> Result<T> {
        self.map_err(|e| ConfigError::Context {
            context: f().to_string(),
            cause: Box::new(e.into()),
        })
    }
}

impl<T> Context<T> for Option<T> {
    fn context(self, context: impl Display) -> Result<T> {
        self.ok_or_else(|| ConfigError::Invalid(context.to_string()))
    }
    fn with_context<D: Display>(self, f: impl FnOnce() -> D) -> Result<T> {
        self.ok_or_else(|| ConfigError::Invalid(f().to_string()))
    }
}

/// `return Err(ConfigError::Invalid(format!(...)))`.
macro_rules! bail {
    ($($t:tt)*) => {
        return Err($crate::error::ConfigError::Invalid(format!($($t)*)).into())
    };
}
pub(crate) use bail;

/// `ConfigError::Invalid(format!(...))`.
macro_rules! invalid {
    ($($t:tt)*) => {
        $crate::error::ConfigError::Invalid(format!($($t)*))
    };
}
pub(crate) use invalid;
