//! [`CacheBuilder`]: a [`Cache`]'s store, key namespace, TTLs, dependencies
//! and tuning, with their defaults.

use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::clock::Clock;
use crate::invalidation::Dependencies;
use crate::key::KeyBuilder;
use crate::single_flight::SingleFlight;
use crate::stats::Counters;
use crate::store::Store;
use crate::ttl::TtlPolicy;

use super::{Cache, Inner};

/// Tuning of [`Cache`]; see [`CacheBuilder`].
#[derive(Debug, Clone)]
pub(super) struct Options {
    pub(super) lease_ttl: Duration,
    pub(super) lease_wait: Duration,
    pub(super) stale_ratio: f64,
    pub(super) beta: f64,
    pub(super) answer_before_store: bool,
}

/// Configures a [`Cache`].
pub struct CacheBuilder {
    store: Arc<dyn Store>,
    keys: KeyBuilder,
    ttl: TtlPolicy,
    deps: Dependencies,
    clock: Clock,
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
    /// Whether a miss is answered as soon as its loader returns, its entry
    /// stored in a task of its own (default `false`: the answer waits for the
    /// store). What is stored is the same: the store is checked against the
    /// stamp read before the load when it runs. Until it lands (or the
    /// lease's TTL passes), the entry answers this process's misses of its key
    /// under a stamp that validates it, and the key's lease stays held, so a
    /// miss on another instance waits for the entry and reads it rather than
    /// loading again. Worth it when
    /// entries are large (a 180 KB page is a transfer of its own); at most
    /// [`MAX_BACKGROUND_PUTS`](crate::MAX_BACKGROUND_PUTS) stores are in
    /// flight so, past that, answers wait again. Call
    /// [`Cache::settle`] before the process exits.
    pub fn answer_before_store(mut self, on: bool) -> Self {
        self.options.answer_before_store = on;
        self
    }
    /// The clock entries' freshness is read against (default: the system's;
    /// a test passes a [`Clock::manual`] and moves it instead of sleeping).
    pub fn clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
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
                clock: self.clock,
                flights: SingleFlight::default(),
                writes: AtomicU64::new(0),
                refreshing: Mutex::default(),
                puts: Arc::new(tokio::sync::Semaphore::new(super::MAX_BACKGROUND_PUTS)),
                pending: Mutex::default(),
                counters: Counters::default(),
                generations: Default::default(),
            }),
        }
    }
}

impl Cache {
    /// Starts configuring a cache over `store`.
    pub fn builder(store: impl Store) -> CacheBuilder {
        CacheBuilder {
            store: Arc::new(store),
            keys: KeyBuilder::new("tierstamp", "v1").expect("valid default namespace"),
            ttl: TtlPolicy::default(),
            deps: Dependencies::default(),
            clock: Clock::system(),
            options: Options {
                lease_ttl: Duration::from_secs(5),
                lease_wait: Duration::from_secs(10),
                stale_ratio: 0.2,
                beta: 1.0,
                answer_before_store: false,
            },
        }
    }
}
