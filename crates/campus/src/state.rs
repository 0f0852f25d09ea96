//! The application state shared by every handler, and the cache it is built on.

use std::future::Future;
use std::sync::Arc;

use bytes::Bytes;
use sea_orm::DatabaseConnection;
use tiercache::{
    Cache, CacheKey, Etag, KeyBuilder, Lookup, MemoryStore, Prefetched, RedisStore, Status,
    TieredStore,
};

use crate::auth::{Claimed, Jwt};
use crate::config::Config;
use crate::error::ApiError;

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

/// What every handler shares.
pub struct Shared {
    pub db: DatabaseConnection,
    pub cache: Cache,
    /// The shared store, when Redis is configured (statistics, clean-up).
    pub redis: Option<RedisStore>,
    /// Redis URL and key prefix, for the dashboard's report.
    pub redis_target: Option<(String, String)>,
    /// The in-process store, when there is no Redis (reports, clearing).
    pub local: Option<MemoryStore>,
    pub cache_enabled: bool,
    pub bench_routes: bool,
    pub jwt: Arc<Jwt>,
    /// The listener for writes from outside the API (PostgreSQL only).
    pub changes: crate::ops::changes::Status,
    /// Look-ups and invalidations per organization, for `/admin/cache/`.
    pub activity: crate::ops::activity::Activity,
    /// List requests already parsed, with their cache keys.
    pub lists: crate::resource::ListMemo,
    /// The dashboard's last report and its keyspace walks (at most one a
    /// minute in a deployment).
    pub reports: crate::ops::dashboard::Reports,
    pub metrics: Option<metrics_exporter_prometheus::PrometheusHandle>,
    /// The bounds on what a client can make this instance spend.
    pub limits: crate::config::Limits,
    /// Login hashing and throttling.
    pub login: crate::login::LoginGuard,
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
pub async fn build_cache(
    config: &Config,
) -> anyhow::Result<(Cache, Option<RedisStore>, Option<MemoryStore>)> {
    let keys = KeyBuilder::new(&config.cache_key_prefix, &config.cache_version)
        .map_err(|e| anyhow::anyhow!("CACHE_KEY_PREFIX / CACHE_VERSION: {e}"))?;
    let l1_bytes = config.cache_l1_max_mb.max(1) << 20;
    let (builder, redis, local) = match config.redis()? {
        Some(redis_config) => {
            let redis = RedisStore::connect(redis_config, &keys)
                .await
                .map_err(|e| anyhow::anyhow!("REDIS_URL: {e}"))?;
            let builder = if config.cache_l1 == "on" {
                Cache::builder(TieredStore::new(
                    redis.clone(),
                    l1_bytes,
                    config.cache_l1_strict,
                ))
            } else {
                Cache::builder(redis.clone())
            };
            (builder, Some(redis), None)
        }
        None => {
            let local = MemoryStore::new(l1_bytes);
            (Cache::builder(local.clone()), None, Some(local))
        }
    };
    let cache = builder
        .keys(keys)
        .ttl(config.ttl())
        .dependencies(crate::model::dependencies())
        .build();
    Ok((cache, redis, local))
}

impl AppState {
    /// The cached value of `key`, computed by `loader` on a miss; with the cache
    /// disabled, always computed (`BYPASS`).
    pub async fn cached<F, Fut>(&self, key: &CacheKey, loader: F) -> Result<Lookup, ApiError>
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = Result<Bytes, ApiError>> + Send + 'static,
    {
        self.cached_with(key, None, loader).await
    }

    /// [`cached`](Self::cached), starting from a prefetched read when there is one.
    pub async fn cached_with<F, Fut>(
        &self,
        key: &CacheKey,
        prefetched: Option<Prefetched>,
        loader: F,
    ) -> Result<Lookup, ApiError>
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = Result<Bytes, ApiError>> + Send + 'static,
    {
        let org = crate::ops::activity::org_of(key.scope());
        if !self.cache_enabled {
            let body = loader().await?;
            if let Some(org) = org {
                self.activity.record(org, key.model(), Status::Bypass);
            }
            return Ok(Lookup {
                etag: Etag::of(&body),
                body,
                status: Status::Bypass,
                tier: None,
            });
        }
        let result = match prefetched {
            Some(p) => self.cache.get_or_compute_with(key, p, loader).await,
            None => self.cache.get_or_compute(key, loader).await,
        };
        let lookup = result.map_err(ApiError::from_cache)?;
        if let Some(org) = org {
            self.activity.record(org, key.model(), lookup.status);
        }
        Ok(lookup)
    }

    /// Authorizes the caller and reads `key` with one cache round trip for both.
    pub async fn authorized_read<F, Fut>(
        &self,
        claimed: &Claimed,
        key: &CacheKey,
        loader: F,
    ) -> Result<Lookup, ApiError>
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = Result<Bytes, ApiError>> + Send + 'static,
    {
        if !self.cache_enabled {
            crate::auth::authorize(self, claimed, None).await?;
            return self.cached_with(key, None, loader).await;
        }
        let auth_key = crate::auth::auth_key(self, claimed)?;
        let mut found = self.cache.prefetch(&[auth_key, key]).await.into_iter();
        let (auth, page) = (found.next(), found.next());
        // Nothing of the response is used before the user is known to be active.
        crate::auth::authorize(self, claimed, auth).await?;
        self.cached_with(key, page, loader).await
    }
}

impl ApiError {
    /// Recovers the API error a loader returned through the cache (shared with
    /// every caller coalesced onto the same load).
    pub fn from_cache(e: tiercache::Error) -> Self {
        match e {
            tiercache::Error::Loader(inner) => match inner.downcast_ref::<ApiError>() {
                Some(ApiError::NotFound) => ApiError::NotFound,
                Some(ApiError::InvalidPage) => ApiError::InvalidPage,
                Some(ApiError::Unavailable) => ApiError::Unavailable,
                Some(other) => ApiError::Internal(anyhow::anyhow!("{other}")),
                None => ApiError::Internal(anyhow::anyhow!("{inner}")),
            },
            other => ApiError::Internal(other.into()),
        }
    }
}
