//! The crate's error types: [`Error`] for users of the cache, [`StoreError`] for
//! implementors of a [`Store`](crate::Store).

use std::sync::Arc;

/// A failure of a [`Store`](crate::Store): what its methods return.
///
/// These never reach a caller of the [`Cache`](crate::Cache)'s look-ups: the cache
/// answers from the loader instead (`BYPASS`). They are public for users who write
/// a store or drive one directly.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The circuit breaker is open (or a recovery is in progress): the call was not sent.
    #[error("shared cache unavailable (circuit open)")]
    Unavailable,
    /// The call did not answer within the operation timeout.
    #[error("shared cache call timed out after {0:?}")]
    Timeout(std::time::Duration),
    /// The backend (server, connection or client library) reported an error.
    #[error("cache store: {source}")]
    Backend {
        /// What the backend said.
        source: Arc<dyn std::error::Error + Send + Sync + 'static>,
        /// Whether it means the backend is unreachable or too slow (see
        /// [`is_outage`](StoreError::is_outage)).
        outage: bool,
    },
    /// A stored value or a reply could not be decoded.
    #[error("malformed cache data: {0}")]
    Malformed(&'static str),
}

impl StoreError {
    /// A backend error; `outage` tells whether it means the backend is unreachable
    /// or too slow (a refused connection, a reset) rather than an answer about the
    /// data (a wrong type under a key).
    pub fn backend(
        error: impl Into<Box<dyn std::error::Error + Send + Sync + 'static>>,
        outage: bool,
    ) -> Self {
        StoreError::Backend {
            source: Arc::from(error.into()),
            outage,
        }
    }

    /// Whether the error says the store is unreachable or too slow (and so feeds the
    /// circuit breaker), rather than an answer about the data.
    pub fn is_outage(&self) -> bool {
        match self {
            StoreError::Unavailable | StoreError::Timeout(_) => true,
            StoreError::Backend { outage, .. } => *outage,
            StoreError::Malformed(_) => false,
        }
    }
}

/// An error a loader returned; shared by every caller that waited on the same load.
pub type LoadError = Arc<dyn std::error::Error + Send + Sync + 'static>;

/// The error of the cache's API.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The loader failed; nothing was cached. Every caller coalesced onto the same
    /// load receives the same error.
    #[error("loader failed: {0}")]
    Loader(LoadError),
    /// A key segment (prefix, version, kind, model or scope) is not a valid identifier.
    #[error(
        "invalid cache key segment {segment}: {value:?} (allowed: [A-Za-z0-9_.-], 1..=64 chars)"
    )]
    InvalidKey {
        /// Which segment was rejected.
        segment: &'static str,
        /// The rejected value.
        value: String,
    },
    /// The store could not be built (bad URL, unreachable at start-up when required).
    #[error("cache store configuration: {0}")]
    Config(String),
}
