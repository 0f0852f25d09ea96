//! Running a loader: a miss (one load per key and stamp in this process, one
//! across instances through the shared lease, stored only if the stamp is still
//! current), a background refresh, and the bypass while the shared store is
//! unavailable.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::envelope::{Envelope, Etag, Stamp};
use crate::error::Erased;
use crate::stats::Status;
use crate::store::Fetched;

use super::{CacheKey, Inner, Loader, Lookup, Outcome, Pending};

/// Removes a pending entry ([`Inner::pending`]) when its store's task ends:
/// stored (the next miss reads it), refused (a write moved the stamp, which no
/// longer validates it), panicked or never run. Never served from there after
/// that; a newer load's entry of the key (another stamp) is left.
struct PendingGuard {
    inner: Arc<Inner>,
    key: Arc<str>,
    stamp: Stamp,
}

impl Drop for PendingGuard {
    fn drop(&mut self) {
        if let Ok(mut p) = self.inner.pending.lock()
            && p.get(&self.key).is_some_and(|e| e.stamp == self.stamp)
        {
            p.remove(&self.key);
        }
    }
}

impl Inner {
    pub(super) async fn miss(
        inner: &Arc<Inner>,
        key: &CacheKey,
        stamp: Stamp,
        loader: Loader,
    ) -> Outcome {
        if let Some(hit) = inner.pending_hit(key, &stamp) {
            return Ok(hit);
        }
        let flight = format!(
            "{}#{}:{:?}:{:?}",
            key.key, stamp.epoch, stamp.gens, loader.error_type
        );
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
    /// instance counts once this process is told of it (an application may relay
    /// them to [`Cache::invalidate`](crate::Cache::invalidate)); until then, a caller may join a load
    /// that began before that write, a window of one load.
    pub(super) async fn bypass_shared(
        inner: &Arc<Inner>,
        key: &CacheKey,
        loader: Loader,
    ) -> Outcome {
        let writes = inner.writes.load(Ordering::SeqCst);
        // Not a miss flight's name: those have a number after the `#`.
        let flight = format!("{}#bypass:{writes}:{:?}", key.key, loader.error_type);
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
    ) -> Outcome
    where
        Fut: Future<Output = Outcome> + Send + 'static,
    {
        let (result, leader) = inner
            .flights
            .run(flight, start, || Err(Erased::Panicked))
            .await;
        let lookup = result?;
        if !leader {
            // The leader counted its own outcome; a coalesced caller counts one too.
            inner.counters.record(lookup.status);
        }
        Ok(lookup)
    }

    async fn bypass(inner: &Arc<Inner>, key: &CacheKey, loader: Loader) -> Outcome {
        // The store is out of reach: so are the parts.
        let parts = Some(Err(crate::error::StoreError::Unavailable));
        let body = inner.run_loader(key, loader, parts).await?;
        let etag = Etag::of(&body);
        Ok(inner.answer(key, Status::Bypass, None, body, etag))
    }

    /// Runs `loader`, with the reads of its parts: `parts` when they were read
    /// with the lease (or are known out of reach), else read now, from the
    /// shared store (never earlier than the stamp its value is stored under,
    /// which was read before this call).
    async fn run_loader(
        &self,
        key: &CacheKey,
        loader: Loader,
        parts: Option<Result<Vec<Fetched>, crate::error::StoreError>>,
    ) -> Result<Bytes, Erased> {
        self.counters.load();
        let start = Instant::now();
        let read = if loader.parts.is_empty() {
            Vec::new()
        } else {
            let keys: Vec<&CacheKey> = loader.parts.iter().collect();
            let found = match parts {
                Some(found) => found,
                None => {
                    let items: Vec<(&str, &[String])> =
                        keys.iter().map(|k| (&*k.key, &*k.gen_keys)).collect();
                    self.store.fetch_many_shared(&items).await
                }
            };
            crate::Cache::prefetched(&keys, found)
        };
        let result = (loader.start)(read).await;
        crate::telemetry::loader(key.kind, &key.model, start.elapsed().as_secs_f64());
        result
    }

    /// The entry a store in flight carries for `key`, as a hit, if `stamp`
    /// (read for this look-up) validates it: the entry is what the store will
    /// write, valid under that stamp as a stored one would be.
    fn pending_hit(&self, key: &CacheKey, stamp: &Stamp) -> Option<Lookup> {
        let (body, etag) = {
            let pending = self.pending.lock().ok()?;
            let found = pending.get(&key.key)?;
            if !stamp.validates(&found.stamp) {
                return None;
            }
            (found.body.clone(), found.etag)
        };
        Some(self.answer(key, Status::Hit, Some(crate::store::Tier::L1), body, etag))
    }

    /// The leader of a miss: takes the lease, or waits for its holder's value.
    async fn lead(inner: Arc<Inner>, key: CacheKey, mut stamp: Stamp, loader: Loader) -> Outcome {
        let token = fastrand::u64(1..);
        let deadline = Instant::now() + inner.options.lease_wait;
        let mut delay = Duration::from_millis(2);
        loop {
            // The lease and a read of the key in one call: this caller saw the
            // miss before it got here, and an earlier flight for the key may
            // have stored its entry and released the lease in between (1000
            // concurrent callers made two loads that way). The loader's parts
            // are read in the same call, at the stamp its value is stored under.
            let mut items: Vec<(&str, &[String])> = Vec::with_capacity(1 + loader.parts.len());
            items.push((&key.key, &key.gen_keys));
            items.extend(loader.parts.iter().map(|k| (&*k.key, &*k.gen_keys)));
            let leased = inner
                .store
                .lease_and_fetch(&items, token, inner.options.lease_ttl)
                .await;
            drop(items);
            match leased {
                Ok(Some(mut fetched)) if fetched.len() == 1 + loader.parts.len() => {
                    let parts = fetched.split_off(1);
                    let Some(fetched) = fetched.pop() else {
                        unreachable!("one read per item");
                    };
                    // A write since our capture means the load must be stored
                    // under the newer stamp.
                    stamp = fetched.stamp.clone();
                    let tier = fetched.tier;
                    if let Some(env) = fetched.valid_entry() {
                        let _ = inner.store.release_lease(&key.key, token).await;
                        return Ok(inner.answer(
                            &key,
                            Status::Hit,
                            Some(tier),
                            env.body.clone(),
                            env.etag,
                        ));
                    }
                    let parts = Some(Ok(parts));
                    return Inner::load_and_store(&inner, &key, stamp, loader, Some(token), parts)
                        .await;
                }
                Ok(None) => {}
                // The script may have taken the lease before its reply was
                // lost: released (token-checked, so harmless if it did not),
                // or every instance's next miss would wait for its TTL.
                Ok(Some(_)) | Err(_) => {
                    let _ = inner.store.release_lease(&key.key, token).await;
                    return Inner::bypass(&inner, &key, loader).await;
                }
            }
            if Instant::now() >= deadline {
                tracing::warn!(key = %key.key, "lease holder too slow: loading without the lease");
                return Inner::load_and_store(&inner, &key, stamp, loader, None, None).await;
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
    ///
    /// From the shared store, never from this process's copy: `stamp` was read
    /// there, and an in-process copy is checked against counters that may not
    /// have heard yet of a write that `stamp` already holds. Its body, handed
    /// to a caller putting an entry together from parts read from the shared
    /// store, would be stored (or kept) under that newer stamp.
    async fn reread(
        &self,
        key: &CacheKey,
        stamp: &mut Stamp,
    ) -> Result<Option<Lookup>, crate::error::StoreError> {
        let fetched = self
            .store
            .fetch_many_shared(&[(&key.key, &key.gen_keys)])
            .await?
            .pop()
            .ok_or(crate::error::StoreError::Malformed(
                "fetch_many_shared answered no key",
            ))?;
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
        parts: Option<Result<Vec<Fetched>, crate::error::StoreError>>,
    ) -> Outcome {
        let start = Instant::now();
        let body = match inner.run_loader(key, loader, parts).await {
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
        // With `answer_before_store`, the answer does not wait for the store:
        // it runs in a task of its own, which also survives the caller going
        // away (`Cache::settle` waits for it before the process exits). What
        // is stored is the same either way: the put is checked against
        // `stamp` when it runs, and the lease, held until then (or its TTL),
        // sends the key's next miss to wait for it and read it rather than
        // load again. Past `MAX_BACKGROUND_PUTS` in flight, the answer waits.
        let permit = match inner.options.answer_before_store {
            true => inner.puts.clone().try_acquire_owned().ok(),
            false => None,
        };
        match permit {
            Some(permit) => {
                let pending = Pending {
                    stamp: stamp.clone(),
                    body: body.clone(),
                    etag,
                };
                if let Ok(mut p) = inner.pending.lock() {
                    p.insert(key.key.clone(), pending);
                }
                // Made before the task is spawned, and dropped with it however
                // it ends: stored, refused, panicked, or dropped unrun by a
                // runtime shutting down.
                let guard = PendingGuard {
                    inner: inner.clone(),
                    key: key.key.clone(),
                    stamp: stamp.clone(),
                };
                let (inner, key, body) = (inner.clone(), key.clone(), body.clone());
                tokio::spawn(async move {
                    let _guard = guard;
                    Inner::store_entry(&inner, &key, stamp, body, etag, load_ms, lease).await;
                    drop(permit);
                });
            }
            None => {
                Inner::store_entry(inner, key, stamp, body.clone(), etag, load_ms, lease).await;
            }
        }
        Ok(inner.answer(key, Status::Miss, None, body, etag))
    }

    pub(super) async fn store_entry(
        inner: &Arc<Inner>,
        key: &CacheKey,
        stamp: Stamp,
        body: Bytes,
        etag: Etag,
        load_ms: u32,
        lease: Option<u64>,
    ) -> bool {
        let ttl = inner.ttl.ttl(key.kind, &key.model);
        let env = Envelope {
            stamp,
            soft_expiry_ms: inner.clock.now_millis() + ttl.as_millis() as u64,
            load_ms,
            etag,
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
    pub(super) fn spawn_refresh(inner: &Arc<Inner>, key: &CacheKey, stamp: Stamp, loader: Loader) {
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
                if let Ok(body) = inner.run_loader(&key, loader, None).await {
                    let load_ms = start.elapsed().as_millis().min(u32::MAX as u128) as u32;
                    let etag = Etag::of(&body);
                    Inner::store_entry(&inner, &key, stamp, body, etag, load_ms, Some(token)).await;
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
    use crate::key::{Kind, Scope};
    use crate::{Cache, LoadError, MemoryStore};

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
            .try_get_with(&key, async {
                Ok::<_, std::io::Error>(Bytes::from_static(b"one"))
            })
            .await
            .unwrap();
        assert_eq!(first.status, Status::Miss);
        let loads = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counted = loads.clone();
        let late = cache
            .try_get_with_prefetched(&key, seen, async move {
                counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                Ok::<_, std::io::Error>(Bytes::from_static(b"two"))
            })
            .await
            .unwrap();
        assert_eq!(loads.load(std::sync::atomic::Ordering::SeqCst), 0);
        assert_eq!((late.status, &late.body[..]), (Status::Hit, &b"one"[..]));
    }

    #[derive(Debug, PartialEq)]
    struct Refused(&'static str);

    /// Callers coalesced onto one failed load all get the loader's own error,
    /// typed, as one shared `Arc`; the loader ran once.
    #[tokio::test]
    async fn coalesced_callers_share_the_loaders_typed_error() {
        let cache = Cache::builder(MemoryStore::new(1 << 20)).build();
        let key = cache
            .key(Kind::List, "faculty", &Scope::org(1))
            .build()
            .unwrap();
        let loads = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let look_up = || {
            let loads = loads.clone();
            cache.try_get_with(&key, async move {
                loads.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(50)).await;
                Err::<Bytes, _>(Refused("down"))
            })
        };
        let (a, b) = tokio::join!(look_up(), look_up());
        let (Err(LoadError::Failed(a)), Err(LoadError::Failed(b))) = (a, b) else {
            panic!("both callers get the loader's error");
        };
        assert_eq!(*a, Refused("down"));
        assert!(Arc::ptr_eq(&a, &b), "one error, shared");
        assert_eq!(loads.load(std::sync::atomic::Ordering::SeqCst), 1);
    }

    /// Callers of one key whose loaders have different error types never share
    /// a load: each gets an error of its own type.
    #[tokio::test]
    async fn loaders_of_different_error_types_do_not_share_a_load() {
        let cache = Cache::builder(MemoryStore::new(1 << 20)).build();
        let key = cache
            .key(Kind::List, "faculty", &Scope::org(1))
            .build()
            .unwrap();
        let typed = cache.try_get_with(&key, async {
            tokio::time::sleep(Duration::from_millis(50)).await;
            Err::<Bytes, _>(Refused("typed"))
        });
        let io = cache.try_get_with(&key, async {
            tokio::time::sleep(Duration::from_millis(50)).await;
            Err::<Bytes, _>(std::io::Error::other("io"))
        });
        let (typed, io) = tokio::join!(typed, io);
        assert!(matches!(typed, Err(LoadError::Failed(e)) if *e == Refused("typed")));
        assert!(matches!(io, Err(LoadError::Failed(e)) if e.to_string() == "io"));
    }

    /// A loader that panics gives every caller waiting on it `Panicked`, and
    /// the next look-up loads again.
    #[tokio::test]
    async fn a_panicking_loader_is_reported_and_not_remembered() {
        let cache = Cache::builder(MemoryStore::new(1 << 20)).build();
        let key = cache
            .key(Kind::List, "faculty", &Scope::org(1))
            .build()
            .unwrap();
        let panics = || {
            cache.try_get_with(&key, async {
                tokio::time::sleep(Duration::from_millis(20)).await;
                if key_is_unlucky() {
                    panic!("the loader's bug");
                }
                Ok::<_, Refused>(Bytes::new())
            })
        };
        fn key_is_unlucky() -> bool {
            true
        }
        let (a, b) = tokio::join!(panics(), panics());
        assert!(matches!(a, Err(LoadError::Panicked)), "{a:?}");
        assert!(matches!(b, Err(LoadError::Panicked)), "{b:?}");
        let again = cache
            .try_get_with(&key, async { Ok::<_, Refused>(Bytes::from_static(b"ok")) })
            .await
            .unwrap();
        assert_eq!(again.status, Status::Miss);
    }
}
