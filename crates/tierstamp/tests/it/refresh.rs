//! Background refresh: at most one task per key per process refreshes an entry.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use tierstamp::store::{Envelope, Fetched};
use tierstamp::{
    Cache, Clock, Health, Kind, MemoryStore, Scope, Status, Store, StoreError, TtlPolicy,
};

/// A memory store that grants every lease: what keeps the refreshes of one key
/// apart is then this process's mark of the refresh in progress alone (with a
/// real lease, a second refresh task fails to take it while the first holds
/// it, and costs a lease request instead of a load).
struct EveryLease(MemoryStore);

#[tierstamp::async_trait]
impl Store for EveryLease {
    async fn fetch(&self, key: &str, gen_keys: &[String]) -> Result<Fetched, StoreError> {
        self.0.fetch(key, gen_keys).await
    }
    fn fetch_local(&self, key: &str, gen_keys: &[String]) -> Option<Fetched> {
        self.0.fetch_local(key, gen_keys)
    }
    async fn put(
        &self,
        key: &str,
        gen_keys: &[String],
        entry: &Envelope,
        ttl: Duration,
        _lease: Option<u64>,
    ) -> Result<bool, StoreError> {
        self.0.put(key, gen_keys, entry, ttl, None).await
    }
    async fn bump(&self, gen_keys: &[String]) -> Result<Vec<u64>, StoreError> {
        self.0.bump(gen_keys).await
    }
    async fn acquire_lease(&self, _: &str, _: u64, _: Duration) -> Result<bool, StoreError> {
        Ok(true)
    }
    async fn release_lease(&self, _: &str, _: u64) -> Result<(), StoreError> {
        Ok(())
    }
    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        self.0.delete(key).await
    }
    fn health(&self) -> Health {
        Health::Ok
    }
}

/// A cache whose list entries stay servable (`STALE`) for the rest of the
/// test, and a key holding one, stale on the cache's (manual) clock.
async fn stale_entry(store: impl Store) -> (Cache, tierstamp::CacheKey) {
    let clock = Clock::manual();
    let cache = Cache::builder(store)
        .clock(clock.clone())
        .ttl(TtlPolicy::default().list(Duration::from_secs(1)))
        .stale_ratio(1e6)
        .early_refresh_beta(0.0)
        .build();
    let key = cache
        .key(Kind::List, "faculty", &Scope::org(1))
        .build()
        .unwrap();
    cache
        .try_get_with(&key, async {
            Ok::<_, std::io::Error>(Bytes::from_static(b"v1"))
        })
        .await
        .unwrap();
    clock.advance(Duration::from_secs(2));
    assert_eq!(cache.get(&key).await.map(|l| l.status), Some(Status::Stale));
    (cache, key)
}

/// Two threads keep reading a stale entry, so that one of them asks for a
/// refresh whenever the key's previous refresh ends. Each refresh fails (the
/// entry stays stale) and notes whether another refresh of the key was loading
/// at the same time. It never may: a refresh starts only once the previous
/// one's mark is gone, and that is after its load.
///
/// A race, so the test repeats it, up to 10,000 refreshes: a mark removed twice
/// (the second removal taking the next refresh's mark) failed it well within
/// that on every run (see the CHANGELOG).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refreshes_of_one_key_never_run_at_once() {
    const REFRESHES: usize = 10_000;
    let (cache, key) = stale_entry(EveryLease(MemoryStore::new(1 << 20))).await;
    let loading = Arc::new(AtomicUsize::new(0));
    let overlaps = Arc::new(AtomicUsize::new(0));
    let refreshes = Arc::new(AtomicUsize::new(0));
    let readers: Vec<_> = (0..2)
        .map(|_| {
            let (cache, key) = (cache.clone(), key.clone());
            let (loading, overlaps, refreshes) =
                (loading.clone(), overlaps.clone(), refreshes.clone());
            tokio::spawn(async move {
                for _ in 0..20 * REFRESHES {
                    if refreshes.load(Ordering::SeqCst) >= REFRESHES
                        || overlaps.load(Ordering::SeqCst) > 0
                    {
                        break;
                    }
                    let (loading, overlaps, refreshes) =
                        (loading.clone(), overlaps.clone(), refreshes.clone());
                    let refresh = async move {
                        refreshes.fetch_add(1, Ordering::SeqCst);
                        if loading.fetch_add(1, Ordering::SeqCst) > 0 {
                            overlaps.fetch_add(1, Ordering::SeqCst);
                        }
                        for _ in 0..4 {
                            tokio::task::yield_now().await;
                        }
                        loading.fetch_sub(1, Ordering::SeqCst);
                        Err::<Bytes, _>(std::io::Error::other("not now"))
                    };
                    let r = cache.try_get_with(&key, refresh).await.unwrap();
                    assert_eq!((r.status, &r.body[..]), (Status::Stale, &b"v1"[..]));
                    tokio::task::yield_now().await;
                }
            })
        })
        .collect();
    for r in readers {
        r.await.unwrap();
    }
    let refreshes = refreshes.load(Ordering::SeqCst);
    assert_eq!(
        overlaps.load(Ordering::SeqCst),
        0,
        "two refreshes of one key ran at once (within {refreshes} refreshes)"
    );
    assert!(refreshes > 100, "only {refreshes} refreshes ran");
}

/// A refresh whose task never ran (its runtime shut down first) must not leave
/// the key marked as refreshing: a later stale read, on another runtime, starts
/// a refresh.
#[test]
fn a_refresh_dropped_before_it_ran_does_not_block_the_next() {
    let runtime = || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    };
    let first = runtime();
    let (cache, key) = first.block_on(stale_entry(MemoryStore::new(1 << 20)));
    // `block_on` returns as soon as the read does: the refresh's task, spawned by
    // the read, has not run yet, and is dropped with its runtime.
    let r = first
        .block_on(cache.try_get_with(&key, async {
            Ok::<_, std::io::Error>(Bytes::from_static(b"never"))
        }))
        .unwrap();
    assert_eq!(r.status, Status::Stale);
    drop(first);

    runtime().block_on(async {
        let (refreshed, refresh_ran) = tokio::sync::oneshot::channel();
        let r = cache
            .try_get_with(&key, async move {
                let _ = refreshed.send(());
                Ok::<_, std::io::Error>(Bytes::from_static(b"v2"))
            })
            .await
            .unwrap();
        assert_eq!(r.status, Status::Stale);
        // The loader is dropped unrun if no refresh was started.
        refresh_ran
            .await
            .expect("no refresh started: the key stayed marked");
    });
}
