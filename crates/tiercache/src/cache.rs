//! The cache: look-ups, `get_or_compute`, invalidation.
//!
//! See the crate documentation for the protocol; this file is its implementation.

use std::collections::HashSet;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::FutureExt;
use futures::future::BoxFuture;

use crate::envelope::{Envelope, Etag, Stamp};
use crate::error::{Error, LoadError};
use crate::hash::FastMap;
use crate::invalidation::Dependencies;
use crate::key::{EntryKeyBuilder, KeyBuilder, Kind, Scope};
use crate::single_flight::SingleFlight;
use crate::stats::{Counters, StatsSnapshot, Status};
use crate::store::{Health, Store, Tier, now_millis};
use crate::ttl::TtlPolicy;

/// A fully built key: the entry key and the generation counters it depends on.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CacheKey {
    key: Arc<str>,
    kind: Kind,
    model: Arc<str>,
    scope: Scope,
    gen_keys: Arc<[String]>,
}

impl CacheKey {
    /// The entry's key in the store.
    pub fn as_str(&self) -> &str {
        &self.key
    }
    /// The entry's kind.
    pub fn kind(&self) -> Kind {
        self.kind
    }
    /// The model the entry belongs to.
    pub fn model(&self) -> &str {
        &self.model
    }
    /// The entry's scope.
    pub fn scope(&self) -> &Scope {
        &self.scope
    }
    /// The generation counters the entry depends on.
    pub fn gen_keys(&self) -> &[String] {
        &self.gen_keys
    }
}

/// Builds a [`CacheKey`]; see [`Cache::key`].
#[derive(Debug)]
pub struct KeyRequest<'a> {
    cache: &'a Cache,
    entry: EntryKeyBuilder<'a>,
    kind: Kind,
    model: &'a str,
    scope: &'a Scope,
    basis: Basis,
}

/// What an entry is computed from, which picks the counters it depends on.
#[derive(Debug)]
enum Basis {
    /// Any rows of its model: the model's counter.
    Model,
    /// One row ([`KeyRequest::row`]).
    Row(String),
    /// Which rows exist and some of their fields ([`KeyRequest::fields`]).
    Fields(Vec<String>),
}

impl<'a> KeyRequest<'a> {
    /// Adds a query parameter (client input is normalised and hashed).
    pub fn param(mut self, name: impl Into<String>, value: impl ToString) -> Self {
        self.entry = self.entry.param(name, value);
        self
    }
    /// Adds parameters.
    pub fn params<I, N, V>(mut self, params: I) -> Self
    where
        I: IntoIterator<Item = (N, V)>,
        N: Into<String>,
        V: ToString,
    {
        self.entry = self.entry.params(params);
        self
    }
    /// Declares a parameter's default, dropped from the key.
    pub fn default(mut self, name: impl Into<String>, value: impl ToString) -> Self {
        self.entry = self.entry.default(name, value);
        self
    }
    /// Makes this the key of one row's entry (a detail, an auth record): it
    /// gets the parameter `row={row}` and depends on that row's counter, the
    /// model's all-rows counter and the model's dependencies, instead of the
    /// model's own counter. [`Cache::invalidate_row`] of another row leaves it
    /// valid; [`Cache::invalidate`] of the model, or of a model it depends on,
    /// does not.
    ///
    /// Only for entries computed from that row (and from the models the
    /// model's declared dependencies name) alone: an entry that reads other
    /// rows of its own model must stay a model-wide key.
    pub fn row(mut self, row: impl ToString) -> Self {
        let row = row.to_string();
        self.entry = self.entry.param("row", &row);
        self.basis = Basis::Row(row);
        self
    }
    /// Makes this the key of an entry computed from *which* rows of its model
    /// exist and from the named fields of them, not from the rest of their
    /// fields: the ids of a list's page in its order, a count. It depends on
    /// the model's shape counter, on one counter per field and on the model's
    /// dependencies, instead of on the model's own counter.
    ///
    /// [`Cache::invalidate_fields`] of other fields leaves it valid; a write
    /// that may add or remove rows or does not name its fields
    /// ([`Cache::invalidate_row`], [`Cache::invalidate`]), a write to one of
    /// `fields`, or an invalidation of a model it depends on, does not. Name
    /// every field the entry's rows were chosen, filtered or ordered by.
    /// Replaces [`row`](Self::row) (the last call wins).
    pub fn fields<I, F>(mut self, fields: I) -> Self
    where
        I: IntoIterator<Item = F>,
        F: Into<String>,
    {
        let mut fields: Vec<String> = fields.into_iter().map(Into::into).collect();
        fields.sort();
        fields.dedup();
        self.basis = Basis::Fields(fields);
        self
    }
    /// The key, with the generation keys of the model and its dependencies.
    pub fn build(self) -> Result<CacheKey, Error> {
        let inner = &self.cache.inner;
        let (model, gen_keys) = match &self.basis {
            Basis::Model => inner.generations(self.model, self.scope)?,
            Basis::Row(row) => {
                let (model, tail) = inner.row_generations(self.model, self.scope)?;
                let mut keys = Vec::with_capacity(tail.len() + 1);
                keys.push(inner.keys.row_generation(self.model, self.scope, row)?);
                keys.extend(tail.iter().cloned());
                (model, keys.into())
            }
            Basis::Fields(fields) => {
                // The model's own counter comes first in the model-wide keys;
                // its dependencies' follow.
                let (model, model_wide) = inner.generations(self.model, self.scope)?;
                let mut keys = Vec::with_capacity(fields.len() + model_wide.len());
                keys.push(inner.keys.shape_generation(self.model, self.scope)?);
                for f in fields {
                    keys.push(inner.keys.field_generation(self.model, self.scope, f)?);
                }
                keys.extend(model_wide[1..].iter().cloned());
                (model, keys.into())
            }
        };
        Ok(CacheKey {
            key: self.entry.build()?.into(),
            kind: self.kind,
            model,
            scope: self.scope.clone(),
            gen_keys,
        })
    }
}

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

/// The result of [`Cache::prefetch`] for one key.
#[derive(Debug)]
pub struct Prefetched {
    key: Arc<str>,
    fetched: Result<crate::store::Fetched, crate::error::StoreError>,
}

impl Prefetched {
    /// Whether the read found an entry valid now: handed to
    /// [`Cache::get_or_compute_with`], it answers without running the loader.
    pub fn is_hit(&self) -> bool {
        matches!(&self.fetched, Ok(f) if f.entry.as_ref().is_some_and(|e| f.stamp.validates(&e.stamp)))
    }
}

type Loader = Box<dyn FnOnce() -> BoxFuture<'static, Result<Bytes, LoadError>> + Send>;

/// Tuning of [`Cache`]; see [`CacheBuilder`].
#[derive(Debug, Clone)]
struct Options {
    lease_ttl: Duration,
    lease_wait: Duration,
    stale_ratio: f64,
    beta: f64,
}

struct Inner {
    store: Arc<dyn Store>,
    keys: KeyBuilder,
    ttl: TtlPolicy,
    deps: Dependencies,
    options: Options,
    flights: SingleFlight<Result<Lookup, Error>>,
    /// Invalidations this process has made or been told of, each counted before
    /// it returns; the flights of bypassed look-ups are keyed by it (see
    /// [`Inner::bypass_shared`]).
    writes: AtomicU64,
    refreshing: Mutex<HashSet<String>>,
    counters: Counters,
    /// Per scope and model: the model's name and the generation keys of the model
    /// and its dependencies. Every cached read needs them, and building them (a
    /// string per dependency, checked) showed in profiles.
    generations: RwLock<Generations>,
}

type Generations = FastMap<Scope, FastMap<Box<str>, Memoized>>;

/// A model's shared name, the generation keys of its model-wide entries (its
/// own counter, then its dependencies'), and those of its row entries after
/// the row's own counter (its all-rows counter, then its dependencies').
#[derive(Clone)]
struct Memoized {
    model: Arc<str>,
    gen_keys: Arc<[String]>,
    row_tail: Arc<[String]>,
}

/// Most scopes whose generation keys are remembered before the memo is emptied
/// (it is rebuilt on use): about 2 KB per scope of a few models, 20 MB at most.
const MAX_MEMO_SCOPES: usize = 10_000;

impl Inner {
    /// The model's shared name and the generation keys of its model-wide
    /// entries.
    fn generations(&self, model: &str, scope: &Scope) -> Result<(Arc<str>, Arc<[String]>), Error> {
        let m = self.memoized(model, scope)?;
        Ok((m.model, m.gen_keys))
    }

    /// The model's shared name and the generation keys of its row entries,
    /// after the row's own counter.
    fn row_generations(
        &self,
        model: &str,
        scope: &Scope,
    ) -> Result<(Arc<str>, Arc<[String]>), Error> {
        let m = self.memoized(model, scope)?;
        Ok((m.model, m.row_tail))
    }

    fn memoized(&self, model: &str, scope: &Scope) -> Result<Memoized, Error> {
        if let Some(found) = self
            .generations
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(scope)
            .and_then(|models| models.get(model))
        {
            return Ok(found.clone());
        }
        let gen_keys = self
            .deps
            .each(model)
            .map(|m| self.keys.generation(m, scope))
            .collect::<Result<Arc<[String]>, _>>()?;
        let row_tail = std::iter::once(self.keys.rows_generation(model, scope))
            .chain(gen_keys[1..].iter().cloned().map(Ok))
            .collect::<Result<Arc<[String]>, _>>()?;
        let found = Memoized {
            model: Arc::from(model),
            gen_keys,
            row_tail,
        };
        let mut memo = self.generations.write().unwrap_or_else(|e| e.into_inner());
        if memo.len() >= MAX_MEMO_SCOPES {
            memo.clear();
        }
        memo.entry(scope.clone())
            .or_default()
            .insert(model.into(), found.clone());
        Ok(found)
    }
}

/// What an invalidation is aimed at.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Target<'a> {
    /// Every entry of the model: its counter, its all-rows counter and its
    /// shape counter.
    Model(&'a str),
    /// One row, fields unknown (or rows added or removed): the model's counter
    /// (model-wide entries), the row's and the shape counter.
    Row(&'a str, &'a str),
    /// Some fields of one row that existed before and after the write: the
    /// model's counter, the row's and those fields'.
    Fields(&'a str, &'a str, &'a [String]),
}

impl Target<'_> {
    fn model(&self) -> &str {
        match self {
            Target::Model(m) | Target::Row(m, _) | Target::Fields(m, _, _) => m,
        }
    }

    fn gen_keys(&self, keys: &KeyBuilder, scope: &Scope) -> Result<Vec<String>, Error> {
        Ok(match *self {
            Target::Model(m) => vec![
                keys.generation(m, scope)?,
                keys.rows_generation(m, scope)?,
                keys.shape_generation(m, scope)?,
            ],
            Target::Row(m, row) => vec![
                keys.generation(m, scope)?,
                keys.row_generation(m, scope, row)?,
                keys.shape_generation(m, scope)?,
            ],
            Target::Fields(m, row, fields) => {
                let mut out = Vec::with_capacity(fields.len() + 2);
                out.push(keys.generation(m, scope)?);
                out.push(keys.row_generation(m, scope, row)?);
                for f in fields {
                    out.push(keys.field_generation(m, scope, f)?);
                }
                out
            }
        })
    }
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

/// Configures a [`Cache`].
pub struct CacheBuilder {
    store: Arc<dyn Store>,
    keys: KeyBuilder,
    ttl: TtlPolicy,
    deps: Dependencies,
    options: Options,
}

impl std::fmt::Debug for CacheBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CacheBuilder")
            .field("keys", &self.keys)
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

impl CacheBuilder {
    /// The key namespace (`{prefix}:{version}`); use the same one the store was
    /// built with.
    pub fn keys(mut self, keys: KeyBuilder) -> Self {
        self.keys = keys;
        self
    }
    /// The TTL policy.
    pub fn ttl(mut self, ttl: TtlPolicy) -> Self {
        self.ttl = ttl;
        self
    }
    /// The dependency graph.
    pub fn dependencies(mut self, deps: Dependencies) -> Self {
        self.deps = deps;
        self
    }
    /// How long a loader's lease lives if its holder dies (default 5 s).
    pub fn lease_ttl(mut self, ttl: Duration) -> Self {
        self.options.lease_ttl = ttl;
        self
    }
    /// How long a caller waits for another instance's load before loading itself
    /// (default 10 s; a dead holder's lease expires first).
    pub fn lease_wait(mut self, wait: Duration) -> Self {
        self.options.lease_wait = wait;
        self
    }
    /// How long past its TTL an entry may be served `STALE` while it refreshes, as a
    /// fraction of the TTL (default 0.2).
    pub fn stale_ratio(mut self, ratio: f64) -> Self {
        self.options.stale_ratio = ratio.max(0.0);
        self
    }
    /// β of probabilistic early refresh (XFetch); 0 disables it (default 1).
    pub fn early_refresh_beta(mut self, beta: f64) -> Self {
        self.options.beta = beta.max(0.0);
        self
    }
    /// The cache.
    pub fn build(self) -> Cache {
        Cache {
            inner: Arc::new(Inner {
                store: self.store,
                keys: self.keys,
                ttl: self.ttl,
                deps: self.deps,
                options: self.options,
                flights: SingleFlight::default(),
                writes: AtomicU64::new(0),
                refreshing: Mutex::default(),
                counters: Counters::default(),
                generations: RwLock::default(),
            }),
        }
    }
}

impl Cache {
    /// Starts configuring a cache over `store`.
    pub fn builder(store: impl Store) -> CacheBuilder {
        CacheBuilder {
            store: Arc::new(store),
            keys: KeyBuilder::new("tiercache", "v1").expect("valid default namespace"),
            ttl: TtlPolicy::default(),
            deps: Dependencies::default(),
            options: Options {
                lease_ttl: Duration::from_secs(5),
                lease_wait: Duration::from_secs(10),
                stale_ratio: 0.2,
                beta: 1.0,
            },
        }
    }

    /// Starts a key for an entry of `kind` of `model` in `scope`.
    pub fn key<'a>(&'a self, kind: Kind, model: &'a str, scope: &'a Scope) -> KeyRequest<'a> {
        KeyRequest {
            cache: self,
            entry: self.inner.keys.entry(kind, model, scope),
            kind,
            model,
            scope,
            basis: Basis::Model,
        }
    }

    /// The key namespace.
    pub fn keys(&self) -> &KeyBuilder {
        &self.inner.keys
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
        let status = if now_millis() < env.soft_expiry_ms {
            Status::Hit
        } else {
            Status::Stale
        };
        Some(
            self.inner
                .answer(key, status, Some(tier), env.body.clone(), env.etag),
        )
    }

    /// Stores `body` under `key` as current.
    ///
    /// Only correct if `body` was computed after the last write to its
    /// dependencies; [`get_or_compute`](Self::get_or_compute) guarantees that, this
    /// does not. Returns whether the store took it.
    pub async fn set(&self, key: &CacheKey, body: Bytes) -> bool {
        let Ok(fetched) = self.inner.store.fetch(&key.key, &key.gen_keys).await else {
            return false;
        };
        Inner::store_entry(&self.inner, key, fetched.stamp, body, 0, None).await
    }

    /// Removes the entry under `key` (other instances' L1 copies are not told; use
    /// [`invalidate`](Self::invalidate) for data that changed).
    pub async fn delete(&self, key: &CacheKey) {
        let _ = self.inner.store.delete(&key.key).await;
    }

    /// Invalidates every entry of `model` in `scope`, and every entry that depends on
    /// it. O(1): two counter bumps (the model's and its all-rows counter). Never
    /// fails: an invalidation that cannot reach the shared store is replayed
    /// before the store is read again.
    pub async fn invalidate(&self, model: &str, scope: &Scope) {
        self.invalidate_models([model], scope).await;
    }

    /// Invalidates what a write to one row of `model` changes: the model-wide
    /// entries (lists, counts, stats), that row's entries ([`KeyRequest::row`]),
    /// and every entry of a model that depends on `model`. Other rows' entries
    /// stay valid. For a write that may have changed other rows too, use
    /// [`invalidate`](Self::invalidate).
    pub async fn invalidate_row(&self, model: &str, row: impl ToString, scope: &Scope) {
        let row = row.to_string();
        self.bump(&[Target::Row(model, &row)], scope).await;
    }

    /// Invalidates what a write to `fields` of one row of `model` changes, when
    /// the row existed before the write and exists after it: what
    /// [`invalidate_row`](Self::invalidate_row) does, except that entries keyed
    /// with [`KeyRequest::fields`] stay valid unless they name one of
    /// `fields`. Name every field the write may have changed, those the
    /// server sets by itself (an `updated_at`) included; when in doubt, use
    /// [`invalidate_row`](Self::invalidate_row).
    pub async fn invalidate_fields<F: AsRef<str>>(
        &self,
        model: &str,
        row: impl ToString,
        fields: &[F],
        scope: &Scope,
    ) {
        let row = row.to_string();
        let fields: Vec<String> = fields.iter().map(|f| f.as_ref().to_owned()).collect();
        self.bump(&[Target::Fields(model, &row, &fields)], scope)
            .await;
    }

    /// Invalidates several models of one scope in one round trip.
    pub async fn invalidate_models<'m>(
        &self,
        models: impl IntoIterator<Item = &'m str>,
        scope: &Scope,
    ) {
        let targets: Vec<Target<'_>> = models.into_iter().map(Target::Model).collect();
        self.bump(&targets, scope).await;
    }

    /// Invalidates `models` in each of `scopes` (a statement that touched many
    /// tenants) in as few round trips as the store allows: one per batch of
    /// counters (one per slot in a Cluster), instead of one per scope. Returns
    /// whether the shared store took every bump (one that did not is replayed,
    /// as for [`invalidate`](Self::invalidate)).
    pub async fn invalidate_across<'s>(
        &self,
        models: &[&str],
        scopes: impl IntoIterator<Item = &'s Scope>,
    ) -> bool {
        let mut gen_keys = Vec::new();
        let mut names = Vec::new();
        for scope in scopes {
            for m in models {
                match Target::Model(m).gen_keys(&self.inner.keys, scope) {
                    Ok(keys) => {
                        gen_keys.extend(keys);
                        names.push((*m).to_owned());
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "invalidation of an invalid model name ignored")
                    }
                }
            }
        }
        self.bump_gen_keys(gen_keys, names, "many scopes".to_owned())
            .await
            .is_some()
    }

    /// Bumps the counters of `targets` in `scope`; returns the new values if the
    /// shared store took them.
    pub(crate) async fn bump(
        &self,
        targets: &[Target<'_>],
        scope: &Scope,
    ) -> Option<Vec<(String, u64)>> {
        let mut gen_keys = Vec::new();
        let mut names = Vec::new();
        for t in targets {
            // A row or field that cannot be named in a key (not
            // `[A-Za-z0-9_.-]`): the whole model, rather than nothing.
            let whole = Target::Model(t.model());
            let keys = t
                .gen_keys(&self.inner.keys, scope)
                .or_else(|_| whole.gen_keys(&self.inner.keys, scope));
            match keys {
                Ok(keys) => {
                    for k in keys {
                        if !gen_keys.contains(&k) {
                            gen_keys.push(k);
                        }
                    }
                    names.push(t.model().to_owned());
                }
                Err(e) => {
                    tracing::error!(error = %e, "invalidation of an invalid model or row ignored")
                }
            }
        }
        self.bump_gen_keys(gen_keys, names, scope.to_string()).await
    }

    /// Bumps `gen_keys` (of the models `names`, for the logs) in a task of its
    /// own: a caller cancelled after its database commit (a client gone, a
    /// timeout) must not lose it.
    async fn bump_gen_keys(
        &self,
        gen_keys: Vec<String>,
        names: Vec<String>,
        scope: String,
    ) -> Option<Vec<(String, u64)>> {
        if gen_keys.is_empty() {
            return None;
        }
        // Before the bump, which may fail: a bypassed look-up that begins after
        // this call returns must not join a load that began before it.
        self.inner.writes.fetch_add(1, Ordering::SeqCst);
        let inner = self.inner.clone();
        let task = tokio::spawn(async move {
            let result = inner.store.bump(&gen_keys).await;
            let delivered = result.is_ok();
            if let Err(e) = &result {
                tracing::warn!(error = %e, models = ?names, %scope, "invalidation deferred until the shared store answers");
            }
            for m in &names {
                inner.counters.invalidation(delivered);
                crate::telemetry::invalidation(m);
            }
            tracing::debug!(models = ?names, %scope, delivered, "INVALIDATE");
            result
                .ok()
                .map(|values| gen_keys.into_iter().zip(values).collect())
        });
        task.await.ok().flatten()
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
        Inner::store_entry(&self.inner, key, stamp, body, 0, None).await
    }

    /// The entry under `key`, computed by `loader` on a miss.
    ///
    /// * Valid entry: `HIT` (or `STALE` past its TTL), and at most one task per
    ///   process refreshes it in the background, early (XFetch) or when stale.
    /// * Miss: one load per key and captured stamp in this process (single-flight)
    ///   and, through a lease in the shared store, one across instances; waiters get
    ///   the leader's value. The result is stored only if no write landed since the
    ///   stamp was captured.
    /// * Store unavailable: the loader runs and nothing is cached (`BYPASS`);
    ///   concurrent callers for one key in this process share one load, unless
    ///   this process invalidated something (or was told of an invalidation)
    ///   between their arrivals.
    ///
    /// Only a loader error is returned as an error; nothing is cached then.
    pub async fn get_or_compute<F, Fut, E>(
        &self,
        key: &CacheKey,
        loader: F,
    ) -> Result<Lookup, Error>
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = Result<Bytes, E>> + Send + 'static,
        E: Into<Box<dyn std::error::Error + Send + Sync + 'static>>,
    {
        let fetched = self.inner.fetch(key).await;
        self.get_or_compute_with(
            key,
            Prefetched {
                key: key.key.clone(),
                fetched,
            },
            loader,
        )
        .await
    }

    /// The entry under `key`, computed by `init` on a miss: moka's `try_get_with`.
    ///
    /// The same look-up as [`get_or_compute`](Self::get_or_compute), with the
    /// loader given as a future (it is only polled on a miss or a refresh). An error
    /// of `init` is returned to every caller that waited on the same load as one
    /// shared [`Error::Loader`], and nothing is cached.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), tiercache::Error> {
    /// use bytes::Bytes;
    /// use tiercache::{Cache, Kind, MemoryStore, Scope};
    ///
    /// let cache = Cache::builder(MemoryStore::new(1 << 20)).build();
    /// let key = cache.key(Kind::Detail, "user", &Scope::org(1)).param("id", 7).build()?;
    /// let user = cache
    ///     .try_get_with(&key, async { Ok::<_, std::io::Error>(Bytes::from_static(b"{\"id\":7}")) })
    ///     .await?;
    /// assert_eq!(user.body, "{\"id\":7}");
    ///
    /// let failed = cache.try_get_with(&key, async { Err::<Bytes, _>(std::io::Error::other("down")) });
    /// assert!(failed.await.is_ok(), "a hit never runs init");
    /// # Ok(()) }
    /// ```
    pub async fn try_get_with<Fut, E>(&self, key: &CacheKey, init: Fut) -> Result<Lookup, Error>
    where
        Fut: Future<Output = Result<Bytes, E>> + Send + 'static,
        E: Into<Box<dyn std::error::Error + Send + Sync + 'static>>,
    {
        self.get_or_compute(key, move || init).await
    }

    /// The entry under `key`, computed by the infallible `init` on a miss: moka's
    /// `get_with`. The shared store failing never fails the call (`BYPASS`).
    ///
    /// # Panics
    ///
    /// If `init` panics: every caller that waited on the same load panics too.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), tiercache::Error> {
    /// use bytes::Bytes;
    /// use tiercache::{Cache, Kind, MemoryStore, Scope, Status};
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
        let loader = move || async move { Ok::<_, std::convert::Infallible>(init.await) };
        match self.get_or_compute(key, loader).await {
            Ok(lookup) => lookup,
            // The only loader error left is the single-flight's report of a panic.
            Err(e) => panic!("tiercache: get_with's init failed: {e}"),
        }
    }

    /// Reads several keys in one round trip (when they share a scope); hand each
    /// result to [`get_or_compute_with`](Self::get_or_compute_with). A request that
    /// needs two entries (an auth record and a page) pays one Redis call, not two.
    pub async fn prefetch(&self, keys: &[&CacheKey]) -> Vec<Prefetched> {
        let store = &self.inner.store;
        let local: Option<Vec<Prefetched>> = keys
            .iter()
            .map(|k| {
                store.fetch_local(&k.key, &k.gen_keys).map(|f| Prefetched {
                    key: k.key.clone(),
                    fetched: Ok(f),
                })
            })
            .collect();
        if let Some(all) = local {
            return all;
        }
        let items: Vec<(&str, &[String])> = keys.iter().map(|k| (&*k.key, &*k.gen_keys)).collect();
        Self::prefetched(keys, store.fetch_many(&items).await)
    }

    /// [`prefetch`](Self::prefetch) from the shared store itself, never from this
    /// process's in-process tier: for the parts of an entry put together from
    /// other entries (a page from its rows' entries) inside that entry's loader.
    ///
    /// The composite's stamp was read from the shared store, and what it stores
    /// there every instance reads. The in-process tier hears of another
    /// instance's write only when that write's message arrives, so a part read
    /// from it could predate a write the composite's stamp already holds, and
    /// the composite would be stored stale for everyone. Parts read here are
    /// checked against the shared store's counters at the time of the read,
    /// after the composite's stamp was.
    pub async fn prefetch_shared(&self, keys: &[&CacheKey]) -> Vec<Prefetched> {
        let items: Vec<(&str, &[String])> = keys.iter().map(|k| (&*k.key, &*k.gen_keys)).collect();
        let found = self.inner.store.fetch_many_shared(&items).await;
        Self::prefetched(keys, found)
    }

    fn prefetched(
        keys: &[&CacheKey],
        found: Result<Vec<crate::store::Fetched>, crate::error::StoreError>,
    ) -> Vec<Prefetched> {
        match found {
            Ok(found) => keys
                .iter()
                .zip(found)
                .map(|(k, f)| Prefetched {
                    key: k.key.clone(),
                    fetched: Ok(f),
                })
                .collect(),
            Err(e) => keys
                .iter()
                .map(|k| Prefetched {
                    key: k.key.clone(),
                    fetched: Err(e.clone()),
                })
                .collect(),
        }
    }

    /// Stores `body` under `key` if the counters `read` found (a
    /// [`prefetch`](Self::prefetch) or [`prefetch_shared`](Self::prefetch_shared)
    /// of `key` made *before* `body` was computed) are still current: a body
    /// computed for another purpose (a row read as part of a page) cached for
    /// its own key, with the same stale-set defence as a load. Returns whether
    /// it stored.
    pub async fn set_if_unchanged(&self, key: &CacheKey, read: &Prefetched, body: Bytes) -> bool {
        match &read.fetched {
            Ok(f) if *read.key == *key.key => self.put_checked(key, f.stamp.clone(), body).await,
            _ => false,
        }
    }

    /// [`get_or_compute`](Self::get_or_compute) starting from a [`prefetch`](Self::prefetch)ed read.
    pub async fn get_or_compute_with<F, Fut, E>(
        &self,
        key: &CacheKey,
        prefetched: Prefetched,
        loader: F,
    ) -> Result<Lookup, Error>
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = Result<Bytes, E>> + Send + 'static,
        E: Into<Box<dyn std::error::Error + Send + Sync + 'static>>,
    {
        // Boxed only when it may run: a hit (the common case) allocates nothing for it.
        let boxed = move || -> Loader {
            Box::new(move || {
                async move { loader().await.map_err(|e| LoadError::from(e.into())) }.boxed()
            })
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
                return Box::pin(Inner::bypass_shared(inner, key, boxed())).await;
            }
        };
        let crate::store::Fetched { entry, stamp, tier } = fetched;
        if let Some(env) = entry.filter(|e| stamp.validates(&e.stamp)) {
            let now = now_millis();
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
        Box::pin(Inner::miss(inner, key, stamp, boxed())).await
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

    async fn miss(
        inner: &Arc<Inner>,
        key: &CacheKey,
        stamp: Stamp,
        loader: Loader,
    ) -> Result<Lookup, Error> {
        let flight = format!("{}#{}:{:?}", key.key, stamp.epoch, stamp.gens);
        let (leader_inner, leader_key) = (inner.clone(), key.clone());
        Inner::coalesce(inner, flight, move || {
            Inner::lead(leader_inner, leader_key, stamp, loader)
        })
        .await
    }

    /// A look-up while the shared store is unavailable (`BYPASS`): concurrent
    /// callers for one key in this process share one load, which stores nothing.
    ///
    /// There is no stamp to key the flight by (the counters are out of reach, and
    /// the L1 mirror is emptied by an outage), so it is keyed by this process's
    /// count of invalidations, `writes`: a write whose invalidation returned
    /// before a caller began has moved the count, and that caller starts a load
    /// of its own rather than join one that began before the write and may have
    /// read what it replaced. The count is global, not per model and scope: any
    /// write splits the flights of every key (a few more loads around writes
    /// during an outage), and no map of counters grows. A write made by another
    /// instance counts once this process is told of it (Campus relays them by
    /// `NOTIFY` to [`Cache::invalidate`]); until then, a caller may join a load
    /// that began before that write, a window of one load.
    async fn bypass_shared(
        inner: &Arc<Inner>,
        key: &CacheKey,
        loader: Loader,
    ) -> Result<Lookup, Error> {
        let writes = inner.writes.load(Ordering::SeqCst);
        // Not a miss flight's name: those have a number after the `#`.
        let flight = format!("{}#bypass:{writes}", key.key);
        let (leader_inner, leader_key) = (inner.clone(), key.clone());
        Inner::coalesce(inner, flight, move || async move {
            Inner::bypass(&leader_inner, &leader_key, loader).await
        })
        .await
    }

    /// Runs `start()`'s look-up as the flight named `flight`, or joins the flight
    /// of that name in progress.
    async fn coalesce<Fut>(
        inner: &Arc<Inner>,
        flight: String,
        start: impl FnOnce() -> Fut,
    ) -> Result<Lookup, Error>
    where
        Fut: Future<Output = Result<Lookup, Error>> + Send + 'static,
    {
        let (result, leader) = inner
            .flights
            .run(flight, start, || {
                Err(Error::Loader(LoadError::from(Box::<
                    dyn std::error::Error + Send + Sync,
                >::from(
                    "loader panicked"
                ))))
            })
            .await;
        let lookup = result?;
        if !leader {
            // The leader counted its own outcome; a coalesced caller counts one too.
            inner.counters.record(lookup.status);
        }
        Ok(lookup)
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

    async fn bypass(inner: &Arc<Inner>, key: &CacheKey, loader: Loader) -> Result<Lookup, Error> {
        let body = inner.run_loader(key, loader).await?;
        let etag = Etag::of(&body);
        Ok(inner.answer(key, Status::Bypass, None, body, etag))
    }

    async fn run_loader(&self, key: &CacheKey, loader: Loader) -> Result<Bytes, Error> {
        self.counters.load();
        let start = Instant::now();
        let result = loader().await;
        crate::telemetry::loader(key.kind, &key.model, start.elapsed().as_secs_f64());
        result.map_err(Error::Loader)
    }

    /// The leader of a miss: takes the lease, or waits for its holder's value.
    async fn lead(
        inner: Arc<Inner>,
        key: CacheKey,
        mut stamp: Stamp,
        loader: Loader,
    ) -> Result<Lookup, Error> {
        let token = fastrand::u64(1..);
        let deadline = Instant::now() + inner.options.lease_wait;
        let mut delay = Duration::from_millis(2);
        loop {
            match inner
                .store
                .acquire_lease(&key.key, token, inner.options.lease_ttl)
                .await
            {
                Ok(true) => {
                    // This caller saw the miss before it got here, and an earlier
                    // flight for the key may have stored its entry and released
                    // the lease in between (1000 concurrent callers made two loads
                    // that way): read once more before loading.
                    let reread = inner.reread(&key, &mut stamp).await;
                    if !matches!(reread, Ok(None)) {
                        let _ = inner.store.release_lease(&key.key, token).await;
                    }
                    return match reread {
                        Ok(Some(hit)) => Ok(hit),
                        Ok(None) => {
                            Inner::load_and_store(&inner, &key, stamp, loader, Some(token)).await
                        }
                        Err(_) => Inner::bypass(&inner, &key, loader).await,
                    };
                }
                Ok(false) => {}
                Err(_) => return Inner::bypass(&inner, &key, loader).await,
            }
            if Instant::now() >= deadline {
                tracing::warn!(key = %key.key, "lease holder too slow: loading without the lease");
                return Inner::load_and_store(&inner, &key, stamp, loader, None).await;
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_millis(50));
            match inner.reread(&key, &mut stamp).await {
                Ok(Some(hit)) => return Ok(hit),
                Ok(None) => {}
                Err(_) => return Inner::bypass(&inner, &key, loader).await,
            }
        }
    }

    /// Reads `key` again on the way to a load: its entry as a hit if one is now
    /// valid, else `None` with `stamp` moved to the current one (a write since our
    /// capture means the load we may still do must be stored under the newer one).
    async fn reread(
        &self,
        key: &CacheKey,
        stamp: &mut Stamp,
    ) -> Result<Option<Lookup>, crate::error::StoreError> {
        let fetched = self.store.fetch(&key.key, &key.gen_keys).await?;
        let tier = fetched.tier;
        *stamp = fetched.stamp.clone();
        Ok(fetched
            .valid_entry()
            .map(|env| self.answer(key, Status::Hit, Some(tier), env.body.clone(), env.etag)))
    }

    /// Runs the loader and stores its result under `stamp` (checked).
    async fn load_and_store(
        inner: &Arc<Inner>,
        key: &CacheKey,
        stamp: Stamp,
        loader: Loader,
        lease: Option<u64>,
    ) -> Result<Lookup, Error> {
        let start = Instant::now();
        let body = match inner.run_loader(key, loader).await {
            Ok(b) => b,
            Err(e) => {
                if let Some(token) = lease {
                    let _ = inner.store.release_lease(&key.key, token).await;
                }
                return Err(e);
            }
        };
        let load_ms = start.elapsed().as_millis().min(u32::MAX as u128) as u32;
        let etag = Etag::of(&body);
        Inner::store_entry(inner, key, stamp, body.clone(), load_ms, lease).await;
        Ok(inner.answer(key, Status::Miss, None, body, etag))
    }

    async fn store_entry(
        inner: &Arc<Inner>,
        key: &CacheKey,
        stamp: Stamp,
        body: Bytes,
        load_ms: u32,
        lease: Option<u64>,
    ) -> bool {
        let ttl = inner.ttl.ttl(key.kind, &key.model);
        let env = Envelope {
            stamp,
            soft_expiry_ms: now_millis() + ttl.as_millis() as u64,
            load_ms,
            etag: Etag::of(&body),
            body,
        };
        let hard = ttl + ttl.mul_f64(inner.options.stale_ratio);
        match inner
            .store
            .put(&key.key, &key.gen_keys, &env, hard, lease)
            .await
        {
            Ok(stored) => {
                if !stored {
                    tracing::debug!(key = %key.key, "a write landed during the load: result not stored");
                }
                stored
            }
            Err(e) => {
                tracing::debug!(key = %key.key, error = %e, "result not stored");
                false
            }
        }
    }

    /// Refreshes an entry in the background, once per key per process, under the
    /// shared lease (so once across instances).
    fn spawn_refresh(inner: &Arc<Inner>, key: &CacheKey, stamp: Stamp, loader: Loader) {
        if !inner
            .refreshing
            .lock()
            .expect("refresh lock")
            .insert(key.key.to_string())
        {
            return;
        }
        /// The mark of the refresh in progress, removed when its task ends, even
        /// by a panicking loader, or is dropped before it ran (its runtime shut
        /// down): made before the task is spawned. Nothing else removes it: a
        /// second removal could take the mark of the key's next refresh, and a
        /// third would then start beside it.
        struct Refreshing(Arc<Inner>, String);
        impl Drop for Refreshing {
            fn drop(&mut self) {
                if let Ok(mut r) = self.0.refreshing.lock() {
                    r.remove(&self.1);
                }
            }
        }
        let refreshing = Refreshing(inner.clone(), key.key.to_string());
        let inner = inner.clone();
        let key = key.clone();
        tokio::spawn(async move {
            let _refreshing = refreshing;
            let token = fastrand::u64(1..);
            if let Ok(true) = inner
                .store
                .acquire_lease(&key.key, token, inner.options.lease_ttl)
                .await
            {
                let start = Instant::now();
                if let Ok(body) = inner.run_loader(&key, loader).await {
                    let load_ms = start.elapsed().as_millis().min(u32::MAX as u128) as u32;
                    Inner::store_entry(&inner, &key, stamp, body, load_ms, Some(token)).await;
                } else {
                    let _ = inner.store.release_lease(&key.key, token).await;
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MemoryStore;

    #[test]
    fn generation_keys_are_remembered_per_scope_and_model() {
        let cache = Cache::builder(MemoryStore::new(1 << 20))
            .dependencies(Dependencies::new().model("faculty", ["department"]))
            .build();
        let key = |model, scope: &Scope| cache.key(Kind::List, model, scope).build().unwrap();
        let (one, two) = (Scope::org(1), Scope::org(2));
        let a = key("faculty", &one);
        let b = key("faculty", &one);
        assert!(Arc::ptr_eq(&a.gen_keys, &b.gen_keys), "built once");
        assert_eq!(
            a.gen_keys(),
            [
                "tiercache:gen:faculty:{org_1}",
                "tiercache:gen:department:{org_1}"
            ]
        );
        assert_eq!(
            key("faculty", &two).gen_keys(),
            [
                "tiercache:gen:faculty:{org_2}",
                "tiercache:gen:department:{org_2}"
            ]
        );
        assert_eq!(
            key("department", &one).gen_keys(),
            ["tiercache:gen:department:{org_1}"]
        );
        // A bad model name is refused every time, never remembered.
        for _ in 0..2 {
            assert!(cache.key(Kind::List, "no:pe", &one).build().is_err());
        }
    }

    /// A caller that saw the miss, then reaches the lease after another flight for
    /// the key stored its entry and released it, gets that entry: no second load.
    #[tokio::test]
    async fn a_miss_seen_before_another_flight_stored_does_not_load_again() {
        let cache = Cache::builder(MemoryStore::new(1 << 20)).build();
        let key = cache
            .key(Kind::List, "faculty", &Scope::org(1))
            .build()
            .unwrap();
        let seen = cache.prefetch(&[&key]).await.pop().unwrap();
        let first = cache
            .get_or_compute(&key, || async {
                Ok::<_, Error>(Bytes::from_static(b"one"))
            })
            .await
            .unwrap();
        assert_eq!(first.status, Status::Miss);
        let loads = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counted = loads.clone();
        let late = cache
            .get_or_compute_with(&key, seen, move || async move {
                counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                Ok::<_, Error>(Bytes::from_static(b"two"))
            })
            .await
            .unwrap();
        assert_eq!(loads.load(std::sync::atomic::Ordering::SeqCst), 0);
        assert_eq!((late.status, &late.body[..]), (Status::Hit, &b"one"[..]));
    }
}
