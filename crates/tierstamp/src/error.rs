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

/// Why a look-up's loader gave no value. Every caller coalesced onto the same
/// load receives the same one, as moka's `try_get_with` shares its `Arc<E>`.
#[derive(Debug)]
#[non_exhaustive]
pub enum LoadError<E> {
    /// The loader returned this error; nothing was cached.
    Failed(Arc<E>),
    /// The loader panicked, or its task was dropped unfinished (a runtime
    /// shutting down); nothing was cached, and the next look-up loads again.
    Panicked,
}

impl<E> Clone for LoadError<E> {
    fn clone(&self) -> Self {
        match self {
            LoadError::Failed(e) => LoadError::Failed(e.clone()),
            LoadError::Panicked => LoadError::Panicked,
        }
    }
}

/// The loader's own error is shown as it is (and its `source` is the loader
/// error's).
impl<E: std::fmt::Display> std::fmt::Display for LoadError<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LoadError::Failed(e) => e.fmt(f),
            LoadError::Panicked => f.write_str("loader panicked"),
        }
    }
}

impl<E: std::error::Error> std::error::Error for LoadError<E> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            LoadError::Failed(e) => e.source(),
            LoadError::Panicked => None,
        }
    }
}

/// A loader's error with its type erased, as the cache carries it between the
/// callers of one load (their flight is named by the error's type, so every
/// caller of a flight can recover it: see [`Erased::typed`]).
#[derive(Clone)]
pub(crate) enum Erased {
    Failed(Arc<dyn std::any::Any + Send + Sync>),
    Panicked,
}

impl Erased {
    pub(crate) fn failed<E: Send + Sync + 'static>(e: E) -> Self {
        Erased::Failed(Arc::new(e))
    }

    /// The error as the caller's loader type. Every caller of a flight has the
    /// same error type (flights are named by it), so the cast holds; were it to
    /// fail, the caller is told nothing was loaded rather than given a wrong value.
    pub(crate) fn typed<E: Send + Sync + 'static>(self) -> LoadError<E> {
        match self {
            Erased::Failed(e) => match e.downcast::<E>() {
                Ok(e) => LoadError::Failed(e),
                Err(_) => {
                    debug_assert!(false, "a flight's callers share one error type");
                    LoadError::Panicked
                }
            },
            Erased::Panicked => LoadError::Panicked,
        }
    }
}

/// The error of the cache's key building and set-up.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
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
