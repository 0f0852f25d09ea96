//! The in-process store: the whole cache of a single instance.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use moka::sync::Cache as Moka;

use super::{Fetched, Health, Store, Tier, lease_key, now_micros};
use crate::envelope::{Envelope, Stamp};
use crate::error::StoreError;
use crate::hash::{FastMap, Hasher};

/// An in-process store, bounded by bytes.
///
/// Generation counters live in a plain map beside the entries (they are few: one
/// per model and scope) and are never evicted, so eviction can only drop entries.
#[derive(Clone)]
pub struct MemoryStore {
    entries: Moka<String, Arc<Held>, Hasher>,
    max_bytes: u64,
    gens: Arc<Mutex<FastMap<String, u64>>>,
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
            .field("entries", &self.entries.entry_count())
            .finish()
    }
}

impl MemoryStore {
    /// A store holding at most `max_bytes` of entries.
    pub fn new(max_bytes: u64) -> Self {
        MemoryStore {
            entries: entry_cache(max_bytes),
            max_bytes,
            gens: Arc::default(),
            leases: Arc::default(),
        }
    }

    /// Number of entries held (approximate, like moka's).
    pub fn entry_count(&self) -> u64 {
        self.entries.run_pending_tasks();
        self.entries.entry_count()
    }

    /// Removes every entry (generations are kept, so nothing old can come back),
    /// and says how many there were.
    pub fn clear(&self) -> u64 {
        let n = self.entry_count();
        self.entries.invalidate_all();
        self.entries.run_pending_tasks();
        n
    }

    /// What the store holds, for operators' reports: entries per kind (the key's
    /// kind segment, `{prefix}:{version}:{kind}:…`) and their weight in bytes.
    /// Walks every entry: meant for an occasional report, not a hot path.
    pub fn usage(&self) -> Usage {
        self.entries.run_pending_tasks();
        let mut keys_by_kind = std::collections::BTreeMap::new();
        let mut total_keys = 0;
        for (key, _) in self.entries.iter() {
            total_keys += 1;
            let kind = key.split(':').nth(2).unwrap_or("other");
            *keys_by_kind.entry(kind.to_owned()).or_insert(0) += 1;
        }
        Usage {
            bytes: self.entries.weighted_size(),
            max_bytes: self.max_bytes,
            total_keys,
            keys_by_kind,
        }
    }

    fn stamp(&self, gen_keys: &[String]) -> Stamp {
        let mut gens = self.gens.lock().expect("gens lock");
        let values = gen_keys
            .iter()
            .map(|k| *gens.entry(k.clone()).or_insert_with(now_micros))
            .collect();
        Stamp {
            epoch: 0,
            gens: values,
        }
    }
}

/// An entry held in process, with the TTL it was stored for.
#[derive(Debug)]
pub(crate) struct Held {
    pub(crate) env: Arc<Envelope>,
    pub(crate) ttl: Duration,
}

/// A moka cache of envelopes weighed by bytes, each expiring after its own TTL.
pub(crate) fn entry_cache(max_bytes: u64) -> Moka<String, Arc<Held>, Hasher> {
    Moka::builder()
        .max_capacity(max_bytes)
        .weigher(|k: &String, v: &Arc<Held>| v.env.weight().saturating_add(k.len() as u32))
        .expire_after(PerEntryTtl)
        .build_with_hasher(Hasher::default())
}

struct PerEntryTtl;

impl moka::Expiry<String, Arc<Held>> for PerEntryTtl {
    fn expire_after_create(
        &self,
        _key: &String,
        value: &Arc<Held>,
        _now: Instant,
    ) -> Option<Duration> {
        Some(value.ttl)
    }
    fn expire_after_update(
        &self,
        _key: &String,
        value: &Arc<Held>,
        _now: Instant,
        _current: Option<Duration>,
    ) -> Option<Duration> {
        Some(value.ttl)
    }
}

#[async_trait]
impl Store for MemoryStore {
    async fn fetch(&self, key: &str, gen_keys: &[String]) -> Result<Fetched, StoreError> {
        let stamp = self.stamp(gen_keys);
        let entry = self.entries.get(key).map(|h| h.env.clone());
        Ok(Fetched {
            entry,
            stamp,
            tier: Tier::Memory,
        })
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
            let gens = self.gens.lock().expect("gens lock");
            let current: Vec<u64> = gen_keys
                .iter()
                .map(|k| gens.get(k).copied().unwrap_or(0))
                .collect();
            if current == entry.stamp.gens {
                self.entries.insert(
                    key.to_owned(),
                    Arc::new(Held {
                        env: Arc::new(entry.clone()),
                        ttl,
                    }),
                );
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
        Ok(gen_keys
            .iter()
            .map(|k| {
                let g = gens.entry(k.clone()).or_insert_with(now_micros);
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
        self.entries.invalidate(key);
        Ok(())
    }

    fn health(&self) -> Health {
        Health::Ok
    }
}
