//! The crate's error types.

use std::sync::Arc;

/// A failure of the shared store (Redis) or of the circuit breaker in front of it.
///
/// These never reach a caller of [`Cache::get_or_compute`](crate::Cache::get_or_compute):
/// the cache answers from the loader instead (`BYPASS`). They are public for users who
/// drive a [`Store`](crate::Store) directly.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// The circuit breaker is open (or a recovery is in progress): the call was not sent.
    #[error("shared cache unavailable (circuit open)")]
    Unavailable,
    /// The call did not answer within the operation timeout.
    #[error("shared cache call timed out after {0:?}")]
    Timeout(std::time::Duration),
    /// The server or the connection reported an error.
    #[error("redis: {0}")]
    Redis(Arc<redis::RedisError>),
    /// A stored value or a reply could not be decoded.
    #[error("malformed cache data: {0}")]
    Malformed(&'static str),
}

impl StoreError {
    /// Whether the error says the store is unreachable or too slow (and so feeds the
    /// circuit breaker), rather than an answer about the data.
    pub fn is_outage(&self) -> bool {
        match self {
            StoreError::Unavailable | StoreError::Timeout(_) => true,
            StoreError::Redis(e) => {
                e.is_io_error()
                    || e.is_timeout()
                    || e.is_connection_dropped()
                    || e.is_connection_refusal()
            }
            StoreError::Malformed(_) => false,
        }
    }
}

impl From<redis::RedisError> for StoreError {
    fn from(e: redis::RedisError) -> Self {
        StoreError::Redis(Arc::new(e))
    }
}

/// An error a loader returned; shared by every caller that waited on the same load.
pub type LoadError = Arc<dyn std::error::Error + Send + Sync + 'static>;

/// Errors of the cache's public API.
#[derive(Debug, Clone, thiserror::Error)]
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
