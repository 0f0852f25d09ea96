//! The application state shared by every handler, and the cache it is built on.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64};

use sea_orm::DatabaseConnection;
use tierstamp::{Cache, KeyBuilder, L1Check, MemoryStore, RedisStore, TieredStore};

use crate::auth::Jwt;
use crate::config::Config;

/// Cloned for every request (axum's `State`), so it is one `Arc`: one atomic
/// increment instead of one per shared field.
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

impl AppState {
    pub fn new(shared: Shared) -> Self {
        AppState(Arc::new(shared))
    }
}

impl std::ops::Deref for AppState {
    type Target = Shared;
    fn deref(&self) -> &Shared {
        &self.0
    }
}

/// Where the cache's entries live.
pub enum Backend {
    /// Redis, with or without an L1 in front: the shared store, and the URL
    /// and key prefix the dashboard's report names.
    Redis {
        store: RedisStore,
        url: String,
        prefix: String,
    },
    /// This process only.
    Local(MemoryStore),
}

impl Backend {
    pub fn redis(&self) -> Option<&RedisStore> {
        match self {
            Backend::Redis { store, .. } => Some(store),
            Backend::Local(_) => None,
        }
    }

    pub fn local(&self) -> Option<&MemoryStore> {
        match self {
            Backend::Local(store) => Some(store),
            Backend::Redis { .. } => None,
        }
    }
}

/// What every handler shares.
pub struct Shared {
    pub db: DatabaseConnection,
    pub cache: Cache,
    /// Where the entries live, for operators' reports and clean-up.
    pub backend: Backend,
    pub cache_enabled: bool,
    pub bench_routes: bool,
    pub jwt: Arc<Jwt>,
    /// The listener for writes from outside the API (PostgreSQL only).
    pub changes: ListenerStatus,
    /// Look-ups and invalidations per organization, for `/admin/cache/`.
    pub activity: crate::ops::activity::Activity,
    /// List requests already parsed, with their cache keys.
    pub lists: crate::listing::ListMemo,
    /// The dashboard's last report and its keyspace walks (at most one a
    /// minute in a deployment).
    pub reports: crate::ops::report::Reports,
    pub metrics: Option<metrics_exporter_prometheus::PrometheusHandle>,
    /// The bounds on what a client can make this instance spend.
    pub limits: crate::config::Limits,
    /// Login hashing and throttling.
    pub login: crate::login::LoginGuard,
}

/// The outside-writes listener's state ([`crate::changes`]), for `/readyz`.
#[derive(Debug, Default)]
pub struct ListenerStatus {
    pub listening: AtomicBool,
    /// Connections made (the first, then each reconnection).
    pub connects: AtomicU64,
    /// An invalidation of every organization is waiting for the database to
    /// list them (see [`crate::changes`]).
    pub retrying: AtomicBool,
    /// Failed attempts to list the organizations, since the start.
    pub failures: AtomicU64,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("cache", &self.cache)
            .finish_non_exhaustive()
    }
}

/// Errors name the variable.
/// Builds the cache the configuration asks for, with the Redis store (when
/// configured) or the in-process store (when not) for operators' reports.
pub async fn build_cache(config: &Config) -> anyhow::Result<(Cache, Backend)> {
    let keys = KeyBuilder::new(&config.cache_key_prefix, &config.cache_version)
        .map_err(|e| anyhow::anyhow!("CACHE_KEY_PREFIX / CACHE_VERSION: {e}"))?;
    let l1_bytes = config.cache_l1_max_mb.max(1) << 20;
    let (builder, backend) = match config.redis()? {
        Some(redis_config) => {
            let redis = RedisStore::connect(redis_config, &keys)
                .await
                .map_err(|e| anyhow::anyhow!("REDIS_URL: {e}"))?;
            let builder = if config.cache_l1 == "on" {
                Cache::builder(TieredStore::new(
                    redis.clone(),
                    l1_bytes,
                    if config.cache_l1_strict {
                        L1Check::Strict
                    } else {
                        L1Check::Mirror
                    },
                ))
            } else {
                Cache::builder(redis.clone())
            };
            let backend = Backend::Redis {
                store: redis,
                url: config.redis_url.clone().unwrap_or_default(),
                prefix: config.cache_key_prefix.clone(),
            };
            (builder, backend)
        }
        None => {
            let local = MemoryStore::new(l1_bytes);
            (Cache::builder(local.clone()), Backend::Local(local))
        }
    };
    let cache = builder
        .keys(keys)
        .ttl(config.ttl())
        .dependencies(crate::model::dependencies())
        // A cold 500-row page is a 180 KB store: its answer does not wait
        // for it (the key's next miss does, through the lease).
        .answer_before_store(true)
        .build();
    Ok((cache, backend))
}
