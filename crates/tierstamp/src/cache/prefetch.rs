//! Batched reads: [`Cache::prefetch`] of several keys in one round trip, and
//! [`Cache::set_if_unchanged`] of a body computed after such a read. A
//! [`Prefetched`] read is trusted only for the key it was made for.

use std::sync::Arc;

use bytes::Bytes;

use super::{Cache, CacheKey};

/// The result of [`Cache::prefetch`] for one key.
#[derive(Debug)]
pub struct Prefetched {
    pub(super) key: Arc<str>,
    pub(super) fetched: Result<crate::store::Fetched, crate::error::StoreError>,
}

impl Prefetched {
    /// Whether the read found an entry valid now: handed to
    /// [`Cache::try_get_with_prefetched`], it answers without running the loader.
    pub fn is_hit(&self) -> bool {
        matches!(&self.fetched, Ok(f) if f.entry.as_ref().is_some_and(|e| f.stamp.validates(&e.stamp)))
    }

    /// Whether the store answered the read (hit or miss), so that a value
    /// loaded for it can be stored: `false` while the shared store is
    /// unavailable, when a load would only be thrown away.
    pub fn is_answered(&self) -> bool {
        self.fetched.is_ok()
    }
}

impl Cache {
    /// Reads several keys in one round trip (when they share a scope); hand each
    /// result to [`try_get_with_prefetched`](Cache::try_get_with_prefetched). A request that
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

    pub(super) fn prefetched(
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
}
