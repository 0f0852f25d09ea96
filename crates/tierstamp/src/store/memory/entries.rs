//! The entries held in process, by a [`MemoryStore`](super::MemoryStore) and
//! by a [`TieredStore`](crate::TieredStore)'s L1: their weight bound, their
//! sharding and their per-entry expiry.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::envelope::Envelope;
use crate::hash::Hasher;

/// An entry held in process, until its TTL runs out.
#[derive(Debug, Clone)]
pub(crate) struct Held {
    pub(crate) env: Arc<Envelope>,
    /// For an entry derived in process from other entries: the counters its
    /// stamp's values belong to (a stored entry's are given by its key).
    pub(crate) deps: Option<Arc<[String]>>,
    expires: Instant,
}

/// The in-process entries (of a [`MemoryStore`] or of a [`TieredStore`]'s L1):
/// envelopes bounded by their weight in bytes, each expiring after its own TTL.
///
/// quick_cache, not moka: moka's per-read bookkeeping (recency and expiry
/// buffers, their housekeeping) cost about 0.45 µs per look-up, and a cached
/// request makes two (its auth record and its page); a quick_cache read is a
/// shard read-lock and a reference bit. It has no per-entry TTL, so the expiry
/// is checked on read: an expired entry is never returned, and holds memory
/// only until it is read again or evicted by the weight bound.
///
/// [`MemoryStore`]: super::MemoryStore
/// [`TieredStore`]: crate::TieredStore
pub(crate) struct Entries {
    cache: quick_cache::sync::Cache<String, Held, Weight, Hasher>,
}

/// An entry weighs its body, metadata and key, in bytes.
#[derive(Clone)]
struct Weight;

impl quick_cache::Weighter<String, Held> for Weight {
    fn weight(&self, key: &String, held: &Held) -> u64 {
        let deps = held
            .deps
            .as_ref()
            .map_or(0, |d| d.iter().map(|k| k.len() as u64 + 16).sum());
        u64::from(held.env.weight()) + key.len() as u64 + deps
    }
}

/// The weight an average entry is assumed to have when sizing the table.
const TYPICAL_ENTRY_BYTES: u64 = 4096;

/// The least weight a shard holds. quick_cache splits the bound between shards
/// and refuses an entry heavier than (nearly all of) its shard's share, so half
/// of this is admitted under any bound of at least this much (a
/// `page_size=500` list is about 500 KB), and half the bound under a smaller
/// one (a single shard).
const MIN_SHARD_BYTES: u64 = 4 << 20;

impl Entries {
    pub(crate) fn new(max_bytes: u64) -> Self {
        let items = (max_bytes / TYPICAL_ENTRY_BYTES).clamp(64, 1 << 20) as usize;
        // quick_cache's own default (4 per core), fewer if that would make a
        // shard smaller than `MIN_SHARD_BYTES`; a power of two.
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let most = (max_bytes / MIN_SHARD_BYTES).max(1) as usize;
        let shards = (cores * 4).min(most);
        let shards = if shards.is_power_of_two() {
            shards
        } else {
            shards.next_power_of_two() / 2
        };
        let options = quick_cache::OptionsBuilder::new()
            .shards(shards)
            .estimated_items_capacity(items)
            .weight_capacity(max_bytes)
            .build()
            .expect("shards, items and weight are set");
        Entries {
            cache: quick_cache::sync::Cache::with_options(
                options,
                Weight,
                Hasher::default(),
                Default::default(),
            ),
        }
    }

    /// The entry under `key`, unless it has expired.
    pub(crate) fn get(&self, key: &str) -> Option<Held> {
        let held = self.cache.get(key)?;
        if Instant::now() < held.expires {
            return Some(held);
        }
        self.drop_expired(key, &held);
        None
    }

    /// Removes the copy `held` read under `key`, and only it: a fresher one put
    /// since stays.
    fn drop_expired(&self, key: &str, held: &Held) {
        self.cache
            .remove_if(key, |h| Arc::ptr_eq(&h.env, &held.env));
    }

    pub(crate) fn insert(&self, key: String, env: Arc<Envelope>, ttl: Duration) {
        self.insert_held(key, env, None, ttl);
    }

    /// Holds an entry derived from others, valid while the counters `deps`
    /// keep the values of its stamp.
    pub(crate) fn insert_derived(
        &self,
        key: String,
        env: Arc<Envelope>,
        deps: Arc<[String]>,
        ttl: Duration,
    ) {
        self.insert_held(key, env, Some(deps), ttl);
    }

    fn insert_held(
        &self,
        key: String,
        env: Arc<Envelope>,
        deps: Option<Arc<[String]>>,
        ttl: Duration,
    ) {
        let now = Instant::now();
        // A TTL too long for the clock (a misconfiguration) keeps the entry for a
        // century rather than panicking on the overflow.
        let expires = now
            .checked_add(ttl)
            .or_else(|| now.checked_add(Duration::from_secs(100 * 365 * 86_400)))
            .unwrap_or(now);
        self.cache.insert(key, Held { env, deps, expires });
    }

    pub(crate) fn remove(&self, key: &str) {
        self.cache.remove(key);
    }

    pub(crate) fn clear(&self) {
        self.cache.clear();
    }

    pub(crate) fn len(&self) -> u64 {
        self.cache.len() as u64
    }

    pub(crate) fn weight(&self) -> u64 {
        self.cache.weight()
    }

    pub(super) fn keys(&self) -> impl Iterator<Item = String> + '_ {
        self.cache.iter().map(|(k, _)| k)
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::envelope;
    use super::*;

    #[test]
    fn an_entry_is_not_returned_once_its_ttl_has_run_out() {
        let entries = Entries::new(1 << 20);
        entries.insert("a".into(), envelope(10), Duration::from_millis(500));
        entries.insert("b".into(), envelope(10), Duration::from_secs(60));
        assert!(entries.get("a").is_some());
        std::thread::sleep(Duration::from_millis(600));
        assert!(entries.get("a").is_none());
        assert!(entries.get("b").is_some());
        // The expired copy is dropped when it is found expired.
        assert_eq!(entries.len(), 1);
    }

    #[test]
    fn finding_an_entry_expired_does_not_drop_a_fresher_one() {
        let entries = Entries::new(1 << 20);
        entries.insert("k".into(), envelope(10), Duration::ZERO);
        let expired = entries.cache.get("k").unwrap();
        let fresh = envelope(11);
        entries.insert("k".into(), fresh.clone(), Duration::from_secs(60));
        // The expired copy was read before the fresh one landed.
        entries.drop_expired("k", &expired);
        assert!(Arc::ptr_eq(&entries.get("k").unwrap().env, &fresh));
        entries.drop_expired("k", &entries.cache.get("k").unwrap());
        assert!(
            entries.get("k").is_none(),
            "the copy read is the one removed"
        );
    }

    #[test]
    fn an_absurd_ttl_keeps_the_entry_instead_of_panicking() {
        let entries = Entries::new(1 << 20);
        entries.insert("k".into(), envelope(10), Duration::MAX);
        assert!(entries.get("k").is_some());
    }

    #[test]
    fn large_entries_are_admitted_whatever_the_bound() {
        for max in [1 << 20, 3 << 20, 16 << 20, 64 << 20, 1 << 30] {
            let entries = Entries::new(max);
            let size = (max / 2).min(MIN_SHARD_BYTES / 2) as usize - 1024;
            entries.insert("big".into(), envelope(size), Duration::from_secs(60));
            assert!(
                entries.get("big").is_some(),
                "{size} bytes under a bound of {max}"
            );
        }
    }

    #[test]
    fn the_entries_stay_within_their_weight_bound() {
        let max = 256 * 1024;
        let entries = Entries::new(max);
        for i in 0..1000 {
            entries.insert(format!("key:{i}"), envelope(2000), Duration::from_secs(60));
            assert!(entries.weight() <= max, "{} > {max}", entries.weight());
        }
        assert!(entries.len() > 50, "the bound is used, not wasted");
        assert!(entries.len() < 1000);
    }
}
