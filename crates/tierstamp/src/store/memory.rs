//! The in-process store: the whole cache of a single instance.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;

use super::{Fetched, Health, Store, Tier, lease_key, now_micros};
use crate::envelope::{Envelope, Stamp};
use crate::error::StoreError;
use crate::hash::{FastMap, Hasher};

/// An in-process store, bounded by bytes.
///
/// Generation counters live in a plain map beside the entries. Model counters
/// are few (one per model and scope, plus an all-rows one) and never dropped;
/// rows' counters (one per row read or written) are dropped all at once past
/// 200,000 counters. A dropped counter restarts from the clock in microseconds,
/// above any value it had, so dropping one only turns its entries into misses.
#[derive(Clone)]
pub struct MemoryStore {
    entries: Arc<Entries>,
    max_bytes: u64,
    gens: Arc<Mutex<Gens>>,
    leases: Arc<Mutex<HashMap<String, (u64, Instant)>>>,
}

/// A [`MemoryStore`]'s contents at one moment ([`MemoryStore::usage`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Usage {
    /// Weight of the entries held (body, metadata and key), in bytes.
    pub bytes: u64,
    /// The bound the store was built with, in bytes.
    pub max_bytes: u64,
    /// Entries held.
    pub total_keys: u64,
    /// Entries per kind segment (`list`, `detail`, `count`, `stats`).
    pub keys_by_kind: std::collections::BTreeMap<String, u64>,
}

impl std::fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryStore")
            .field("entries", &self.entries.len())
            .finish()
    }
}

impl MemoryStore {
    /// A store holding at most `max_bytes` of entries.
    pub fn new(max_bytes: u64) -> Self {
        MemoryStore {
            entries: Arc::new(Entries::new(max_bytes)),
            max_bytes,
            gens: Arc::default(),
            leases: Arc::default(),
        }
    }

    /// Number of entries held (expired ones included until they are read or
    /// evicted).
    pub fn entry_count(&self) -> u64 {
        self.entries.len()
    }

    /// Removes every entry (generations are kept, so nothing old can come back),
    /// and says how many there were.
    pub fn clear(&self) -> u64 {
        let n = self.entry_count();
        self.entries.clear();
        n
    }

    /// What the store holds, for operators' reports: entries per kind (the key's
    /// kind segment, `{prefix}:{version}:{kind}:…`) and their weight in bytes.
    /// Walks every entry: meant for an occasional report, not a hot path.
    pub fn usage(&self) -> Usage {
        let mut keys_by_kind = std::collections::BTreeMap::new();
        let mut total_keys = 0;
        for key in self.entries.keys() {
            total_keys += 1;
            let kind = key.split(':').nth(2).unwrap_or("other");
            *keys_by_kind.entry(kind.to_owned()).or_insert(0) += 1;
        }
        Usage {
            bytes: self.entries.weight(),
            max_bytes: self.max_bytes,
            total_keys,
            keys_by_kind,
        }
    }

    fn read(&self, key: &str, gen_keys: &[String]) -> Fetched {
        let stamp = self.stamp(gen_keys);
        let entry = self.entries.get(key).map(|h| h.env);
        Fetched {
            entry,
            stamp,
            tier: Tier::Memory,
        }
    }

    fn stamp(&self, gen_keys: &[String]) -> Stamp {
        let mut gens = self.gens.lock().expect("gens lock");
        bound(&mut gens);
        // A missing row counter is answered with a fresh value and not
        // created: reading rows (any id a client names) must not grow the map.
        // The put of what the read loads creates it ([`Gens::dropped_at`]).
        let values = gen_keys
            .iter()
            .map(|k| match gens.map.get(k) {
                Some(v) => *v,
                None if is_row(k) => now_micros(),
                None => *gens.map.entry(k.clone()).or_insert_with(now_micros),
            })
            .collect();
        Stamp {
            epoch: 0,
            gens: values,
        }
    }
}

/// Most counters held before rows' counters are dropped (about 100 bytes each).
pub(crate) const MAX_ROW_GENS: usize = 200_000;

/// A row's counter: its key ends in a row id, not in `}` (a model's) or `*`
/// (a model's all-rows counter).
pub(crate) fn is_row(key: &str) -> bool {
    !(key.ends_with('}') || key.ends_with('*'))
}

/// The counters, and when rows' counters were last dropped.
#[derive(Default)]
struct Gens {
    map: FastMap<String, u64>,
    /// The clock (µs) just after the last drop of counters. A row counter
    /// missing at a put, whose value was answered (not stored) at or after
    /// this, never existed since: no write bumped the row between the read
    /// and the put (a bump creates the counter, and nothing dropped it), so
    /// the put may create it with the value the read was answered.
    dropped_at: u64,
}

/// Drops every row's counter once the map holds [`MAX_ROW_GENS`] counters.
fn bound(gens: &mut Gens) {
    if gens.map.len() >= MAX_ROW_GENS {
        gens.map.retain(|k, _| !is_row(k));
        // Tens of thousands of scopes: model counters alone fill it.
        if gens.map.len() >= MAX_ROW_GENS / 2 {
            gens.map.clear();
        }
        gens.dropped_at = now_micros() + 1;
    }
}

/// An entry held in process, until its TTL runs out.
#[derive(Debug, Clone)]
pub(crate) struct Held {
    pub(crate) env: Arc<Envelope>,
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
/// [`TieredStore`]: super::TieredStore
pub(crate) struct Entries {
    cache: quick_cache::sync::Cache<String, Held, Weight, Hasher>,
}

/// An entry weighs its body, metadata and key, in bytes.
#[derive(Clone)]
struct Weight;

impl quick_cache::Weighter<String, Held> for Weight {
    fn weight(&self, key: &String, held: &Held) -> u64 {
        u64::from(held.env.weight()) + key.len() as u64
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
        let now = Instant::now();
        // A TTL too long for the clock (a misconfiguration) keeps the entry for a
        // century rather than panicking on the overflow.
        let expires = now
            .checked_add(ttl)
            .or_else(|| now.checked_add(Duration::from_secs(100 * 365 * 86_400)))
            .unwrap_or(now);
        self.cache.insert(key, Held { env, expires });
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

    fn keys(&self) -> impl Iterator<Item = String> + '_ {
        self.cache.iter().map(|(k, _)| k)
    }
}

#[async_trait]
impl Store for MemoryStore {
    async fn fetch(&self, key: &str, gen_keys: &[String]) -> Result<Fetched, StoreError> {
        Ok(self.read(key, gen_keys))
    }

    fn fetch_local(&self, key: &str, gen_keys: &[String]) -> Option<Fetched> {
        Some(self.read(key, gen_keys))
    }

    async fn put(
        &self,
        key: &str,
        gen_keys: &[String],
        entry: &Envelope,
        ttl: Duration,
        lease: Option<u64>,
    ) -> Result<bool, StoreError> {
        let stored = {
            // Held across check and insert so a bump cannot slip in between.
            let mut gens = self.gens.lock().expect("gens lock");
            // A row counter the read was answered without: created with that
            // answer if nothing was dropped since ([`Gens::dropped_at`]).
            for (k, v) in gen_keys.iter().zip(&entry.stamp.gens) {
                if is_row(k) && !gens.map.contains_key(k) && *v >= gens.dropped_at {
                    gens.map.insert(k.clone(), *v);
                }
            }
            let current: Vec<u64> = gen_keys
                .iter()
                .map(|k| gens.map.get(k).copied().unwrap_or(0))
                .collect();
            if current == entry.stamp.gens {
                self.entries
                    .insert(key.to_owned(), Arc::new(entry.clone()), ttl);
                true
            } else {
                false
            }
        };
        if let Some(token) = lease {
            self.release_lease(key, token).await?;
        }
        Ok(stored)
    }

    async fn bump(&self, gen_keys: &[String]) -> Result<Vec<u64>, StoreError> {
        let mut gens = self.gens.lock().expect("gens lock");
        bound(&mut gens);
        Ok(gen_keys
            .iter()
            .map(|k| {
                let g = gens.map.entry(k.clone()).or_insert_with(now_micros);
                *g += 1;
                *g
            })
            .collect())
    }

    async fn acquire_lease(
        &self,
        key: &str,
        token: u64,
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        let now = Instant::now();
        let mut leases = self.leases.lock().expect("lease lock");
        leases.retain(|_, (_, until)| *until > now);
        let lk = lease_key(key);
        if leases.contains_key(&lk) {
            return Ok(false);
        }
        leases.insert(lk, (token, now + ttl));
        Ok(true)
    }

    async fn release_lease(&self, key: &str, token: u64) -> Result<(), StoreError> {
        let mut leases = self.leases.lock().expect("lease lock");
        let lk = lease_key(key);
        if leases.get(&lk).is_some_and(|(t, _)| *t == token) {
            leases.remove(&lk);
        }
        Ok(())
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        self.entries.remove(key);
        Ok(())
    }

    fn health(&self) -> Health {
        Health::Ok
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    /// A row counter a read was answered without is created by the put of
    /// that read, unless counters were dropped since the read (a write's bump
    /// may have created it and lost it with them).
    #[tokio::test]
    async fn a_put_creates_a_rows_counter_only_if_nothing_was_dropped_since_the_read() {
        let store = MemoryStore::new(1 << 20);
        let keys = ["p:gen:faculty:{org_1}:5".to_owned()];
        let put = |stamp: Stamp| {
            let store = store.clone();
            let keys = keys.clone();
            async move {
                let mut env = (*envelope(1)).clone();
                env.stamp = stamp;
                store
                    .put("k", &keys, &env, Duration::from_secs(60), None)
                    .await
                    .unwrap()
            }
        };
        let read = store.stamp(&keys);
        store.gens.lock().unwrap().dropped_at = now_micros() + 1;
        assert!(!put(read).await, "a read from before a drop");
        assert!(store.gens.lock().unwrap().map.is_empty());
        let read = store.stamp(&keys);
        assert!(put(read.clone()).await, "a read from after it");
        assert_eq!(store.stamp(&keys), read);
    }

    /// Rows' counters are bounded; model counters stay; a row whose counter
    /// was dropped restarts above its old value (its entries become misses).
    #[tokio::test]
    async fn rows_counters_are_dropped_past_the_bound_and_restart_higher() {
        let store = MemoryStore::new(1 << 20);
        let model = "p:gen:faculty:{org_1}".to_owned();
        let row = |i: usize| format!("p:gen:faculty:{{org_1}}:{i}");
        let first = store.stamp(&[model.clone(), row(0)]);
        assert_eq!(
            store.gens.lock().unwrap().map.len(),
            1,
            "reading a row creates nothing"
        );
        let bumped = store.bump(&[row(0)]).await.unwrap()[0];
        for i in 1..MAX_ROW_GENS {
            store.bump(&[row(i)]).await.unwrap();
        }
        assert!(store.gens.lock().unwrap().map.len() <= MAX_ROW_GENS);
        let again = store.stamp(&[model.clone(), row(0)]);
        assert!(
            store.gens.lock().unwrap().map.len() < 10,
            "rows' counters dropped"
        );
        assert_eq!(again.gens[0], first.gens[0], "the model's counter stays");
        assert!(again.gens[1] > bumped, "{} <= {bumped}", again.gens[1]);
    }

    fn envelope(body_len: usize) -> Arc<Envelope> {
        let body = Bytes::from(vec![b'x'; body_len]);
        Arc::new(Envelope {
            stamp: Stamp::default(),
            soft_expiry_ms: 0,
            load_ms: 0,
            etag: crate::envelope::Etag::of(&body),
            body,
        })
    }

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
