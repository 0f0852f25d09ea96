//! The cache: [`Cache`], its look-ups and the hit path of `try_get_with`.
//!
//! A look-up answers from an entry only if its stamp validates against the
//! current one; anything else goes to `load.rs`. Keys are built in
//! `request.rs`, invalidations in `invalidate.rs`, configuration in
//! `builder.rs`, batched reads in `prefetch.rs`. See the crate documentation
//! for the protocol.

use std::collections::HashSet;
use std::future::Future;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures::FutureExt;
use futures::future::BoxFuture;

use crate::clock::Clock;
use crate::envelope::{Envelope, Etag, Stamp};
use crate::error::{Erased, LoadError};
use crate::invalidation::Dependencies;
use crate::key::KeyBuilder;
use crate::single_flight::SingleFlight;
use crate::stats::{Counters, StatsSnapshot, Status};
use crate::store::{Health, Store, Tier};
use crate::ttl::TtlPolicy;

mod builder;
mod derived;
mod invalidate;
mod load;
mod prefetch;
mod request;

pub use builder::CacheBuilder;
pub use derived::Derivation;
pub(crate) use invalidate::Target;
pub use prefetch::Prefetched;
pub use request::{CacheKey, KeyRequest};

use builder::Options;
use request::Generations;

/// The answer to a look-up.
#[derive(Debug, Clone)]
pub struct Lookup {
    /// The body, exactly as stored.
    pub body: Bytes,
    /// Its strong ETag.
    pub etag: Etag,
    /// How it was answered (the `X-Cache` header).
    pub status: Status,
    /// Which tier held the entry (`None` when the loader produced the body).
    pub tier: Option<Tier>,
}

/// A loader with its error type erased, and that type's id: callers of one
/// load (a flight) all have the loader's error type, so each gets it back.
/// A loader's start, given the reads of its parts.
type Start = Box<dyn FnOnce(Vec<Prefetched>) -> BoxFuture<'static, Result<Bytes, Erased>> + Send>;

struct Loader {
    start: Start,
    error_type: std::any::TypeId,
    /// The entries the loader puts its value together from
    /// ([`Cache::try_get_with_parts`]), read for it from the shared store:
    /// with the lease, where the leader takes one.
    parts: Vec<CacheKey>,
}

/// What a look-up's flight ends with.
type Outcome = Result<Lookup, Erased>;

struct Inner {
    store: Arc<dyn Store>,
    keys: KeyBuilder,
    ttl: TtlPolicy,
    deps: Dependencies,
    options: Options,
    clock: Clock,
    flights: SingleFlight<Outcome>,
    /// Invalidations this process has made or been told of, each counted before
    /// it returns; the flights of bypassed look-ups are keyed by it (see
    /// [`Inner::bypass_shared`]).
    writes: AtomicU64,
    refreshing: Mutex<HashSet<String>>,
    /// Permits of the stores a miss's answer does not wait for
    /// ([`MAX_BACKGROUND_PUTS`]).
    puts: Arc<tokio::sync::Semaphore>,
    /// The entries those stores carry, by key, until each lands: a miss of
    /// the key in this process under a stamp that validates the entry's is
    /// answered from here (as the load's own flight would have answered it),
    /// not sent to wait on the lease the store holds.
    pending: Mutex<crate::hash::FastMap<Arc<str>, Pending>>,
    counters: Counters,
    /// Per scope and model: the model's name and the generation keys of the model
    /// and its dependencies. Every cached read needs them, and building them (a
    /// string per dependency, checked) showed in profiles.
    generations: Generations,
}

/// Most stores of loaded entries in flight after their answers: past it, a
/// miss's answer waits for its store again. Each holds its entry's body, so
/// a store slower than the loads (Redis lagging under a flood of distinct
/// misses) cannot pile them up in memory.
pub const MAX_BACKGROUND_PUTS: usize = 64;

/// A loaded entry whose store is in flight ([`Inner::pending`]).
struct Pending {
    stamp: Stamp,
    body: Bytes,
    etag: Etag,
}

/// The cache. Cheap to clone; clones share everything.
#[derive(Clone)]
pub struct Cache {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Cache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cache")
            .field("namespace", &self.inner.keys.namespace())
            .finish_non_exhaustive()
    }
}

impl Cache {
    /// The key namespace.
    pub fn keys(&self) -> &KeyBuilder {
        &self.inner.keys
    }

    /// Waits until every store a miss was answered before
    /// ([`CacheBuilder::answer_before_store`]) has landed or failed: what a
    /// process calls before it exits, so that the entries it loaded last are
    /// stored and their leases released (a lease left behind makes every
    /// instance's next miss of its key wait for its TTL). Stores begun while
    /// it waits wait for their answers instead.
    pub async fn settle(&self) {
        let all = MAX_BACKGROUND_PUTS as u32;
        // The semaphore is never closed.
        let _all = self.inner.puts.acquire_many(all).await;
    }

    /// The store's health.
    pub fn health(&self) -> Health {
        self.inner.store.health()
    }

    /// This instance's outcome counters.
    pub fn stats(&self) -> StatsSnapshot {
        self.inner.counters.snapshot()
    }

    /// The valid entry under `key`, if any. Store failures read as `None`.
    pub async fn get(&self, key: &CacheKey) -> Option<Lookup> {
        let fetched = self.inner.fetch(key).await.ok()?;
        let tier = fetched.tier;
        let env = fetched.valid_entry()?;
        let status = if self.inner.clock.now_millis() < env.soft_expiry_ms {
            Status::Hit
        } else {
            Status::Stale
        };
        Some(
            self.inner
                .answer(key, status, Some(tier), env.body.clone(), env.etag),
        )
    }

    /// Removes the entry under `key` (other instances' L1 copies are not told; use
    /// [`invalidate`](Self::invalidate) for data that changed).
    pub async fn delete(&self, key: &CacheKey) {
        let _ = self.inner.store.delete(&key.key).await;
    }

    /// The current stamp of `key`'s dependencies: capture it *before* computing a
    /// value to [`Transaction::set`](crate::Transaction::set) (`None` if the store is unavailable).
    pub async fn stamp(&self, key: &CacheKey) -> Option<Stamp> {
        self.inner
            .store
            .fetch(&key.key, &key.gen_keys)
            .await
            .ok()
            .map(|f| f.stamp)
    }

    /// Stores `body` under `key` if `stamp` (captured before `body` was computed)
    /// is still current.
    pub(crate) async fn put_checked(&self, key: &CacheKey, stamp: Stamp, body: Bytes) -> bool {
        let etag = Etag::of(&body);
        Inner::store_entry(&self.inner, key, stamp, body, etag, 0, None).await
    }

    /// The entry under `key`, computed by `init` on a miss: moka's `try_get_with`.
    ///
    /// * Valid entry: `HIT` (or `STALE` past its TTL), and at most one task per
    ///   process refreshes it in the background, early (XFetch) or when stale.
    /// * Miss: one load per key and captured stamp in this process (single-flight)
    ///   and, through a lease in the shared store, one across instances; waiters get
    ///   the leader's value. The result is stored only if no write landed since the
    ///   stamp was captured.
    /// * Store unavailable: `init` runs and nothing is cached (`BYPASS`);
    ///   concurrent callers for one key in this process share one load, unless
    ///   this process invalidated something (or was told of an invalidation)
    ///   between their arrivals.
    ///
    /// `init` is only polled on a miss or a refresh. Its error is returned to
    /// every caller that waited on the same load as one shared
    /// [`LoadError::Failed`] (its type kept, as moka's `try_get_with` keeps it),
    /// and its panic as [`LoadError::Panicked`]; nothing is cached then. The
    /// shared store failing is never an error (`BYPASS`).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use bytes::Bytes;
    /// use tierstamp::{Cache, Kind, LoadError, MemoryStore, Scope};
    ///
    /// let cache = Cache::builder(MemoryStore::new(1 << 20)).build();
    /// let key = cache.key(Kind::Detail, "user", &Scope::org(1)).param("id", 7).build()?;
    /// let user = cache
    ///     .try_get_with(&key, async { Ok::<_, std::io::Error>(Bytes::from_static(b"{\"id\":7}")) })
    ///     .await?;
    /// assert_eq!(user.body, "{\"id\":7}");
    ///
    /// let hit = cache.try_get_with(&key, async { Err::<Bytes, _>(std::io::Error::other("down")) });
    /// assert!(hit.await.is_ok(), "a hit never runs init");
    ///
    /// let other = cache.key(Kind::Detail, "user", &Scope::org(1)).param("id", 8).build()?;
    /// let failed = cache.try_get_with(&other, async { Err::<Bytes, _>(std::io::Error::other("down")) });
    /// match failed.await {
    ///     Err(LoadError::Failed(e)) => assert_eq!(e.kind(), std::io::ErrorKind::Other),
    ///     _ => unreachable!("the loader's own error, typed"),
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn try_get_with<Fut, E>(
        &self,
        key: &CacheKey,
        init: Fut,
    ) -> Result<Lookup, LoadError<E>>
    where
        Fut: Future<Output = Result<Bytes, E>> + Send + 'static,
        E: Send + Sync + 'static,
    {
        let fetched = self.inner.fetch(key).await;
        let prefetched = Prefetched {
            key: key.key.clone(),
            fetched,
        };
        self.try_get_with_prefetched(key, prefetched, init).await
    }

    /// The entry under `key`, computed by the infallible `init` on a miss: moka's
    /// `get_with`. The shared store failing never fails the call (`BYPASS`).
    ///
    /// # Panics
    ///
    /// If `init` panics: every caller that waited on the same load panics too.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), tierstamp::Error> {
    /// use bytes::Bytes;
    /// use tierstamp::{Cache, Kind, MemoryStore, Scope, Status};
    ///
    /// let cache = Cache::builder(MemoryStore::new(1 << 20)).build();
    /// let key = cache.key(Kind::Stats, "dashboard", &Scope::global()).build()?;
    /// let first = cache.get_with(&key, async { Bytes::from_static(b"42") }).await;
    /// let again = cache.get_with(&key, async { Bytes::from_static(b"43") }).await;
    /// assert_eq!((first.status, again.status), (Status::Miss, Status::Hit));
    /// assert_eq!(again.body, "42");
    /// # Ok(()) }
    /// ```
    pub async fn get_with<Fut>(&self, key: &CacheKey, init: Fut) -> Lookup
    where
        Fut: Future<Output = Bytes> + Send + 'static,
    {
        let init = async move { Ok::<_, std::convert::Infallible>(init.await) };
        match self.try_get_with(key, init).await {
            Ok(lookup) => lookup,
            Err(LoadError::Failed(never)) => match *never {},
            Err(LoadError::Panicked) => panic!("tierstamp: get_with's init panicked"),
        }
    }

    /// [`try_get_with`](Self::try_get_with) starting from a
    /// [`prefetch`](Self::prefetch)ed read.
    pub async fn try_get_with_prefetched<Fut, E>(
        &self,
        key: &CacheKey,
        prefetched: Prefetched,
        init: Fut,
    ) -> Result<Lookup, LoadError<E>>
    where
        Fut: Future<Output = Result<Bytes, E>> + Send + 'static,
        E: Send + Sync + 'static,
    {
        self.try_get_with_parts(key, prefetched, &[], move |_| init)
            .await
    }

    /// [`try_get_with_prefetched`](Self::try_get_with_prefetched) for an entry
    /// put together from other entries, `parts` (a page from its total and
    /// its rows' ids): `init` gets their reads, in their order, made from
    /// the shared store no earlier than the stamp the entry is stored under
    /// (see [`prefetch_shared`](Self::prefetch_shared) for why not from this
    /// process's tier). The leader of a miss reads them with its lease, in
    /// the same round trip where the store can (Redis, keys of one scope).
    /// Reads the store could not answer are handed over as such
    /// ([`Prefetched::is_answered`]).
    pub async fn try_get_with_parts<F, Fut, E>(
        &self,
        key: &CacheKey,
        prefetched: Prefetched,
        parts: &[&CacheKey],
        init: F,
    ) -> Result<Lookup, LoadError<E>>
    where
        F: FnOnce(Vec<Prefetched>) -> Fut + Send + 'static,
        Fut: Future<Output = Result<Bytes, E>> + Send + 'static,
        E: Send + Sync + 'static,
    {
        // Boxed only when it may run: a hit (the common case) allocates nothing for it.
        let boxed = move || Loader {
            start: Box::new(move |parts| {
                async move { init(parts).await.map_err(Erased::failed) }.boxed()
            }),
            error_type: std::any::TypeId::of::<E>(),
            parts: parts.iter().map(|k| (*k).clone()).collect(),
        };
        let fetched = if Arc::ptr_eq(&prefetched.key, &key.key) || prefetched.key == key.key {
            prefetched.fetched
        } else {
            // A read of another key: never trusted for this one.
            self.inner.fetch(key).await
        };
        let inner = &self.inner;
        let fetched = match fetched {
            Ok(f) => f,
            Err(e) => {
                tracing::debug!(key = %key.key, error = %e, "shared store unavailable");
                return Box::pin(Inner::bypass_shared(inner, key, boxed()))
                    .await
                    .map_err(Erased::typed);
            }
        };
        let crate::store::Fetched { entry, stamp, tier } = fetched;
        if let Some(env) = entry.filter(|e| stamp.validates(&e.stamp)) {
            let now = inner.clock.now_millis();
            let status = if now < env.soft_expiry_ms {
                if inner.refresh_early(now, &env) {
                    Inner::spawn_refresh(inner, key, stamp, boxed());
                }
                Status::Hit
            } else {
                Inner::spawn_refresh(inner, key, stamp, boxed());
                Status::Stale
            };
            return Ok(inner.answer(key, status, Some(tier), env.body.clone(), env.etag));
        }
        // Boxed: the miss path's state (single-flight, lease, store write) would
        // otherwise be part of every caller's future, which is moved and boxed on
        // each request even when it hits.
        Box::pin(Inner::miss(inner, key, stamp, boxed()))
            .await
            .map_err(Erased::typed)
    }
}

impl Inner {
    /// The store's answer for `key`, from this process's memory when it can give it.
    async fn fetch(
        &self,
        key: &CacheKey,
    ) -> Result<crate::store::Fetched, crate::error::StoreError> {
        match self.store.fetch_local(&key.key, &key.gen_keys) {
            Some(f) => Ok(f),
            None => self.store.fetch(&key.key, &key.gen_keys).await,
        }
    }

    fn answer(
        &self,
        key: &CacheKey,
        status: Status,
        tier: Option<Tier>,
        body: Bytes,
        etag: Etag,
    ) -> Lookup {
        self.counters.record(status);
        crate::telemetry::lookup(status, key.kind, &key.model);
        tracing::debug!(key = %key.key, outcome = status.as_str(), tier = tier.map(Tier::as_str), "cache look-up");
        Lookup {
            body,
            etag,
            status,
            tier,
        }
    }

    /// XFetch: refresh before expiry with a probability that grows as expiry nears
    /// and with the cost of the load, so one caller refreshes before the crowd.
    fn refresh_early(&self, now_ms: u64, env: &Envelope) -> bool {
        if self.options.beta == 0.0 {
            return false;
        }
        // -ln(u) is below 709 (u >= f64::MIN_POSITIVE): far from expiry no draw can
        // win, and the draw and logarithm are skipped.
        const MAX_DRAW: f64 = 709.0;
        if (now_ms as f64) + env.load_ms as f64 * self.options.beta * MAX_DRAW
            < env.soft_expiry_ms as f64
        {
            return false;
        }
        let u = fastrand::f64().max(f64::MIN_POSITIVE);
        let head_start = env.load_ms as f64 * self.options.beta * -u.ln();
        now_ms as f64 + head_start >= env.soft_expiry_ms as f64
    }
}
