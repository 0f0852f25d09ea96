//! The in-process store: the whole cache of a single instance.
//!
//! The generation counters are here; the entries (their weight bound and
//! per-entry expiry) are in [`entries`], shared with the tiered store's L1.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;

use super::{Fetched, Health, Store, Tier, lease_key, now_micros};
use crate::envelope::{Envelope, Stamp};
use crate::error::StoreError;
use crate::hash::FastMap;

mod entries;

pub(crate) use entries::Entries;

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

#[async_trait]
impl Store for MemoryStore {
    async fn fetch(&self, key: &str, gen_keys: &[String]) -> Result<Fetched, StoreError> {
        Ok(self.read(key, gen_keys))
    }

    fn fetch_local(&self, key: &str, gen_keys: &[String]) -> Option<Fetched> {
        Some(self.read(key, gen_keys))
    }

    fn fetch_derived(&self, key: &str) -> Option<Fetched> {
        let held = self.entries.get(key)?;
        let deps = held.deps.as_ref()?;
        let gens = self.gens.lock().expect("gens lock");
        let values = deps
            .iter()
            .map(|k| gens.map.get(k).copied())
            .collect::<Option<Vec<u64>>>()?;
        Some(Fetched {
            entry: Some(held.env),
            stamp: Stamp {
                epoch: 0,
                gens: values,
            },
            tier: Tier::Memory,
        })
    }

    fn keep_derived(
        &self,
        key: &str,
        deps: Arc<[String]>,
        entry: Arc<Envelope>,
        ttl: Duration,
    ) -> bool {
        // Checked under the lock a bump takes: a bump after the check makes
        // the entry invalid at its next read. A row counter a part's read was
        // answered without is created with that answer, as `put` does, if
        // nothing was dropped since ([`Gens::dropped_at`]): no write bumped
        // the row in between, since a bump creates its counter.
        let mut gens = self.gens.lock().expect("gens lock");
        let current = entry.stamp.epoch == 0
            && deps.len() == entry.stamp.gens.len()
            && deps
                .iter()
                .zip(&entry.stamp.gens)
                .all(|(k, v)| match gens.map.get(k) {
                    Some(held) => held == v,
                    None => is_row(k) && *v >= gens.dropped_at,
                });
        if current {
            for (k, v) in deps.iter().zip(&entry.stamp.gens) {
                gens.map.entry(k.clone()).or_insert(*v);
            }
        }
        drop(gens);
        if current {
            self.entries
                .insert_derived(key.to_owned(), entry, deps, ttl);
        }
        current
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

    /// A derived entry whose part was read without its row's counter is kept
    /// (and the counter created) only if no counters were dropped since the
    /// read, as a put is.
    #[tokio::test]
    async fn a_derived_entry_creates_a_rows_counter_only_if_nothing_was_dropped_since_the_read() {
        let store = MemoryStore::new(1 << 20);
        let keys: Arc<[String]> = Arc::from(vec!["p:gen:faculty:{org_1}:5".to_owned()]);
        let keep = |stamp: Stamp| {
            let mut env = (*envelope(1)).clone();
            env.stamp = stamp;
            store.keep_derived("d", keys.clone(), Arc::new(env), Duration::from_secs(60))
        };
        let read = store.stamp(&keys);
        store.gens.lock().unwrap().dropped_at = now_micros() + 1;
        assert!(!keep(read), "a read from before a drop");
        assert!(store.gens.lock().unwrap().map.is_empty());
        let read = store.stamp(&keys);
        assert!(keep(read.clone()), "a read from after it");
        assert_eq!(store.stamp(&keys), read);
        assert!(store.fetch_derived("d").is_some());
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

    pub(super) fn envelope(body_len: usize) -> Arc<Envelope> {
        let body = Bytes::from(vec![b'x'; body_len]);
        Arc::new(Envelope {
            stamp: Stamp::default(),
            soft_expiry_ms: 0,
            load_ms: 0,
            etag: crate::envelope::Etag::of(&body),
            body,
        })
    }
}
