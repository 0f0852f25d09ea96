//! Entries derived in process from other entries: a page put together from
//! its rows' entries, held by this process for as long as every entry it was
//! put together from is unchanged, rather than for as long as nothing of its
//! model changed.
//!
//! A derived entry's stamp is the union of its parts' stamps, as they were
//! read ([`Derivation::add`]). It is served only from this process's memory,
//! checked against the counters this process knows (a [`TieredStore`]'s
//! mirror, a [`MemoryStore`]'s own counters), exactly as an L1 entry is; it is
//! kept only if those counters hold its values when it is kept, and it never
//! goes to the shared tier, where another instance could read it before that
//! instance hears of a write the parts already reflect.
//!
//! A part read as a miss and then loaded is recorded with the values read
//! before the load: what the load returns is at least that new (it reads the
//! database, or the shared store again, never this process's older copy:
//! `Inner::reread`), and a write since has moved one of those counters, so
//! the derived entry is not served.
//!
//! [`TieredStore`]: crate::TieredStore
//! [`MemoryStore`]: crate::MemoryStore

use std::sync::Arc;

use bytes::Bytes;

use super::{Cache, CacheKey, Lookup, Prefetched};
use crate::envelope::{Envelope, Etag, Stamp};
use crate::hash::FastMap;
use crate::stats::Status;

/// What an entry is derived from: the counters its parts were read under,
/// gathered part by part with [`add`](Self::add) before the parts are used,
/// then handed to [`Cache::remember_derived`].
#[derive(Debug, Default, Clone)]
pub struct Derivation {
    epoch: Option<u64>,
    deps: FastMap<String, u64>,
    /// A part's read failed, or two parts were read under different values
    /// of one counter (a write between the reads): nothing is kept.
    broken: bool,
}

impl Derivation {
    /// Records that the derived entry is made from the entry of `key` as
    /// `read` (a [`Cache::prefetch`] of `key`) found it.
    pub fn add(&mut self, key: &CacheKey, read: &Prefetched) {
        let Ok(fetched) = &read.fetched else {
            self.broken = true;
            return;
        };
        let stamp = &fetched.stamp;
        if *read.key != *key.key
            || stamp.gens.len() != key.gen_keys.len()
            || self.epoch.is_some_and(|e| e != stamp.epoch)
        {
            self.broken = true;
            return;
        }
        self.epoch = Some(stamp.epoch);
        for (k, v) in key.gen_keys.iter().zip(&stamp.gens) {
            if *self.deps.entry(k.clone()).or_insert(*v) != *v {
                self.broken = true;
            }
        }
    }
}

/// Derived entries live beside stored ones in process, under a key no stored
/// entry has (entry keys never contain `#`).
fn derived_key(key: &CacheKey) -> &str {
    key.derived
        .get_or_init(|| format!("{}#derived", key.key).into())
}

impl Cache {
    /// The entry derived for `key` ([`remember_derived`](Self::remember_derived)),
    /// if this process holds one, it is within its TTL, and every entry it was
    /// derived from is still valid: `HIT`. Reads this process's memory only.
    pub fn get_derived(&self, key: &CacheKey) -> Option<Lookup> {
        let fetched = self.inner.store.fetch_derived(derived_key(key))?;
        let tier = fetched.tier;
        let env = fetched.valid_entry()?;
        if self.inner.clock.now_millis() >= env.soft_expiry_ms {
            return None;
        }
        Some(
            self.inner
                .answer(key, Status::Hit, Some(tier), env.body.clone(), env.etag),
        )
    }

    /// Keeps `body`, derived from the parts `from` records, as the derived
    /// entry of `key` in this process, for `key`'s TTL: valid while every
    /// part is. Kept only if the store has a process-local tier and its
    /// counters still hold the values the parts were read under; returns
    /// whether it was kept.
    pub fn remember_derived(&self, key: &CacheKey, from: Derivation, body: Bytes) -> bool {
        let (Some(epoch), false) = (from.epoch, from.broken) else {
            return false;
        };
        let (deps, gens): (Vec<String>, Vec<u64>) = from.deps.into_iter().unzip();
        let ttl = self.inner.ttl.ttl(key.kind, &key.model);
        let env = Envelope {
            stamp: Stamp { epoch, gens },
            soft_expiry_ms: self.inner.clock.now_millis() + ttl.as_millis() as u64,
            load_ms: 0,
            etag: Etag::of(&body),
            body,
        };
        self.inner
            .store
            .keep_derived(derived_key(key), deps.into(), Arc::new(env), ttl)
    }
}
