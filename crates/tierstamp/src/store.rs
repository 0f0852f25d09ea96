//! The storage side of the cache: one trait, three implementations, and what an
//! implementation of the trait reads and writes ([`Envelope`], [`Stamp`],
//! [`Fetched`], [`Tier`]): a custom store is written against this module alone.
//!
//! * [`MemoryStore`](crate::MemoryStore): in-process only (quick_cache, bounded by bytes). The whole cache of
//!   a single instance; generations live next to the entries.
//! * [`RedisStore`](crate::RedisStore): the shared store. Generation checks run server-side in Lua so a
//!   read is one round trip; a circuit breaker guards every call; invalidations that
//!   could not be delivered are replayed (and the epoch bumped) before the next read.
//! * [`TieredStore`](crate::TieredStore): an in-process L1 in front of a [`RedisStore`](crate::RedisStore), kept coherent
//!   by the invalidation channel.
//!
//! The trait is deliberately small and generation-aware: a store is asked for an
//! entry *and* the current stamp of its dependencies, and it stores an entry only if
//! the stamp it was computed under is still current. Validity is judged by the
//! [`Cache`](crate::Cache), which compares the two stamps.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

pub use crate::envelope::{Envelope, Stamp};
use crate::error::StoreError;

pub(crate) mod memory;
#[cfg(feature = "redis")]
pub(crate) mod redis;
#[cfg(feature = "redis")]
pub(crate) mod tiered;

/// Where an answer came from, for metrics and `tracing`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tier {
    /// A [`MemoryStore`](crate::MemoryStore)(memory::MemoryStore).
    Memory,
    /// The in-process L1 of a [`TieredStore`](crate::TieredStore)(tiered::TieredStore).
    L1,
    /// Redis.
    L2,
}

impl Tier {
    /// A short label.
    pub fn as_str(self) -> &'static str {
        match self {
            Tier::Memory => "memory",
            Tier::L1 => "l1",
            Tier::L2 => "l2",
        }
    }
}

/// The answer to [`Store::fetch`].
#[derive(Debug, Clone)]
pub struct Fetched {
    /// The stored entry, valid or not.
    pub entry: Option<Arc<Envelope>>,
    /// The current stamp of the dependencies (missing counters were created).
    pub stamp: Stamp,
    /// Which tier answered.
    pub tier: Tier,
}

impl Fetched {
    /// The entry, if it is valid under the current stamp.
    pub fn valid_entry(self) -> Option<Arc<Envelope>> {
        let stamp = self.stamp;
        self.entry.filter(|e| stamp.validates(&e.stamp))
    }
}

/// Health of a store, as `/readyz` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Health {
    /// Reads and writes go to the store.
    Ok,
    /// The store is unreachable or recovering: callers bypass it.
    Degraded,
}

/// A cache store that understands generations.
///
/// `gen_keys` name the generation counters of an entry's dependencies; every key
/// passed in one call shares the entry's scope (and so one Redis Cluster slot).
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Reads an entry and the current stamp of `gen_keys`, creating missing counters
    /// with a value that cannot repeat.
    async fn fetch(&self, key: &str, gen_keys: &[String]) -> Result<Fetched, StoreError>;

    /// What [`fetch`](Self::fetch) would answer, when this process's memory alone
    /// can say it without waiting on anything (an L1 hit); `None` otherwise, and
    /// the caller fetches. Cached reads try it first: most are answered here, and
    /// skipping the `async` call skips its boxed future.
    fn fetch_local(&self, _key: &str, _gen_keys: &[String]) -> Option<Fetched> {
        None
    }

    /// An entry this process derived from other entries, held under `key` by
    /// [`keep_derived`](Self::keep_derived), with the current values of the
    /// counters it was derived under (in its stamp's order); `None` if none is
    /// held, or one of those counters is unknown here. Served only from this
    /// process's memory: stores without a process-local tier hold none.
    fn fetch_derived(&self, _key: &str) -> Option<Fetched> {
        None
    }

    /// Holds `entry`, derived in this process from other entries, under `key`,
    /// as long as the counters `deps` keep the values of `entry.stamp` (one per
    /// counter). Kept only if those are the current values here now; returns
    /// whether it was kept. Never stored in a shared tier: another instance
    /// may not know yet of a write this process's parts already reflect.
    fn keep_derived(
        &self,
        _key: &str,
        _deps: Arc<[String]>,
        _entry: Arc<Envelope>,
        _ttl: Duration,
    ) -> bool {
        false
    }

    /// Several [`fetch`](Self::fetch)es at once; stores that can (Redis) answer
    /// them in one round trip when every key shares one scope.
    async fn fetch_many(&self, items: &[(&str, &[String])]) -> Result<Vec<Fetched>, StoreError> {
        let mut out = Vec::with_capacity(items.len());
        for (key, gen_keys) in items {
            out.push(self.fetch(key, gen_keys).await?);
        }
        Ok(out)
    }

    /// [`fetch_many`](Self::fetch_many) from the shared store itself, never from
    /// a copy this process holds: what an entry put together from other entries
    /// reads, since it is stored for every instance under a stamp read from the
    /// shared store and its parts must be as new as that stamp. Stores without
    /// a process-local tier answer as `fetch_many` does.
    async fn fetch_many_shared(
        &self,
        items: &[(&str, &[String])],
    ) -> Result<Vec<Fetched>, StoreError> {
        self.fetch_many(items).await
    }

    /// Stores `entry` under `key` for `ttl`, only if the generations of `gen_keys` still
    /// equal `entry.stamp.gens` (so a slow reader never overwrites a fresher entry).
    /// Releases the lease `lease` on `key` if given. Returns whether it stored.
    async fn put(
        &self,
        key: &str,
        gen_keys: &[String],
        entry: &Envelope,
        ttl: Duration,
        lease: Option<u64>,
    ) -> Result<bool, StoreError>;

    /// Bumps the generations of `gen_keys` (all in one scope) and broadcasts the new
    /// values; returns them. On failure the store must remember the bump and deliver
    /// it before its next read.
    async fn bump(&self, gen_keys: &[String]) -> Result<Vec<u64>, StoreError>;

    /// Takes the lease on `key` for `ttl` if nobody holds it.
    async fn acquire_lease(&self, key: &str, token: u64, ttl: Duration)
    -> Result<bool, StoreError>;

    /// Takes the lease on the first item's key for `ttl` if nobody holds it
    /// and, when it did, reads every item as
    /// [`fetch_many_shared`](Self::fetch_many_shared) does (in their order):
    /// what the leader of a miss does before loading, reading its key once
    /// more and the parts its loader puts together. `None` if someone else
    /// holds the lease. Stores that can (Redis, items of one scope) do it in
    /// one round trip, so the parts are read at the very stamp the entry will
    /// be stored under.
    async fn lease_and_fetch(
        &self,
        items: &[(&str, &[String])],
        token: u64,
        ttl: Duration,
    ) -> Result<Option<Vec<Fetched>>, StoreError> {
        let Some((key, _)) = items.first() else {
            return Err(StoreError::Malformed("lease_and_fetch of no key"));
        };
        if !self.acquire_lease(key, token, ttl).await? {
            return Ok(None);
        }
        match self.fetch_many_shared(items).await {
            Ok(fetched) if fetched.len() == items.len() => Ok(Some(fetched)),
            failed => {
                // Not left to expire: the next miss would wait for it.
                let _ = self.release_lease(key, token).await;
                Err(failed.err().unwrap_or(StoreError::Malformed(
                    "fetch_many answered another number of keys",
                )))
            }
        }
    }

    /// Releases the lease on `key` if `token` still holds it.
    async fn release_lease(&self, key: &str, token: u64) -> Result<(), StoreError>;

    /// Removes an entry.
    async fn delete(&self, key: &str) -> Result<(), StoreError>;

    /// Whether the store is currently usable.
    fn health(&self) -> Health;
}

/// The lease key of an entry key. Entry keys' parameter segments always contain `=`
/// or `~`, so no entry key ends in `:lease`; the hash tag is kept.
pub(crate) fn lease_key(key: &str) -> String {
    format!("{key}:lease")
}

/// Microseconds since the Unix epoch: the start value of a missing generation
/// counter in the memory store. Larger than any value the counter had before it was
/// lost (a counter is bumped far less than once per microsecond), so a lost counter
/// never resurrects an old entry.
pub(crate) fn now_micros() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(1)
}

/// Milliseconds since the Unix epoch.
pub(crate) fn now_millis() -> u64 {
    now_micros() / 1000
}
