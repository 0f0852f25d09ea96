//! `answer_before_store`: a miss answered before its entry is stored, the
//! store still checked against the stamp read before the load, the key's next
//! miss waiting for it rather than loading again, and the stores in flight
//! bounded. And the leader's lease taken with its read in one call.

use std::sync::Arc;
use std::time::Duration;

use tierstamp::store::{Envelope, Fetched};
use tierstamp::{Cache, Health, Kind, MemoryStore, RedisConfig, Scope, Status, Store, StoreError};

use crate::helpers::*;

/// A memory store whose puts wait until the test opens its gate.
#[derive(Clone)]
struct Gated {
    store: MemoryStore,
    gate: Arc<tokio::sync::Semaphore>,
}

impl Gated {
    fn new() -> Self {
        Gated {
            store: MemoryStore::new(16 << 20),
            gate: Arc::new(tokio::sync::Semaphore::new(0)),
        }
    }
    fn open(&self) {
        self.gate
            .add_permits(tokio::sync::Semaphore::MAX_PERMITS / 2);
    }
}

#[tierstamp::async_trait]
impl Store for Gated {
    async fn fetch(&self, key: &str, gen_keys: &[String]) -> Result<Fetched, StoreError> {
        self.store.fetch(key, gen_keys).await
    }
    async fn put(
        &self,
        key: &str,
        gen_keys: &[String],
        entry: &Envelope,
        ttl: Duration,
        lease: Option<u64>,
    ) -> Result<bool, StoreError> {
        let _pass = self.gate.acquire().await.expect("gate open");
        self.store.put(key, gen_keys, entry, ttl, lease).await
    }
    async fn bump(&self, gen_keys: &[String]) -> Result<Vec<u64>, StoreError> {
        self.store.bump(gen_keys).await
    }
    async fn acquire_lease(
        &self,
        key: &str,
        token: u64,
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        self.store.acquire_lease(key, token, ttl).await
    }
    async fn release_lease(&self, key: &str, token: u64) -> Result<(), StoreError> {
        self.store.release_lease(key, token).await
    }
    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        self.store.delete(key).await
    }
    fn health(&self) -> Health {
        Health::Ok
    }
}

fn cache(store: &Gated, before: bool) -> Cache {
    Cache::builder(store.clone())
        .dependencies(deps())
        .answer_before_store(before)
        .build()
}

fn key(cache: &Cache, page: u32) -> tierstamp::CacheKey {
    cache
        .key(Kind::List, "faculty", &Scope::org(1))
        .param("page", page)
        .build()
        .unwrap()
}

/// How long a call that must not finish is given to finish anyway.
const NOT_DONE: Duration = Duration::from_millis(300);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_miss_is_answered_before_its_store_and_the_next_miss_waits_for_it() {
    let store = Gated::new();
    let cache = cache(&store, true);
    let k = key(&cache, 1);
    let db = Db::new("page 1");
    let first = tokio::time::timeout(
        Duration::from_secs(5),
        cache.try_get_with(&k, db.loader(Duration::ZERO)),
    )
    .await
    .expect("the miss waited for its store")
    .unwrap();
    assert_eq!(first.status, Status::Miss);
    assert_eq!(text(&first.body), "page 1");
    // The store has not landed. This process answers the key's next miss
    // from the entry in flight, under the same stamp, without a second load.
    let here = tokio::time::timeout(
        Duration::from_secs(5),
        cache.try_get_with(&k, db.loader(Duration::ZERO)),
    )
    .await
    .expect("this process's next miss waited for the store")
    .unwrap();
    assert_eq!((here.status, text(&here.body)), (Status::Hit, "page 1"));
    // Another instance (its own cache over the same store) finds no entry,
    // and the lease (held until the store lands) keeps it from loading again.
    let other = Cache::builder(store.clone())
        .dependencies(deps())
        .answer_before_store(true)
        .build();
    let next = {
        let (k, db) = (k.clone(), db.clone());
        tokio::spawn(async move { other.try_get_with(&k, db.loader(Duration::ZERO)).await })
    };
    tokio::time::sleep(NOT_DONE).await;
    assert!(
        !next.is_finished(),
        "the other instance did not wait for the store"
    );
    store.open();
    let next = next.await.unwrap().unwrap();
    assert_eq!(next.status, Status::Hit);
    assert_eq!(text(&next.body), "page 1");
    assert_eq!(db.queries(), 1, "a miss loaded again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn by_default_a_miss_waits_for_its_store() {
    let store = Gated::new();
    let cache = cache(&store, false);
    let k = key(&cache, 1);
    let db = Db::new("page 1");
    let first = {
        let (cache, k, db) = (cache.clone(), k.clone(), db.clone());
        tokio::spawn(async move { cache.try_get_with(&k, db.loader(Duration::ZERO)).await })
    };
    tokio::time::sleep(NOT_DONE).await;
    assert!(!first.is_finished(), "answered before its store");
    store.open();
    assert_eq!(first.await.unwrap().unwrap().status, Status::Miss);
    assert_eq!(cache.get(&k).await.map(|l| l.status), Some(Status::Hit));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_before_the_store_lands_keeps_the_loaded_value_out() {
    let store = Gated::new();
    let cache = cache(&store, true);
    let k = key(&cache, 1);
    let db = Db::new("before");
    let first = cache
        .try_get_with(&k, db.loader(Duration::ZERO))
        .await
        .unwrap();
    assert_eq!(text(&first.body), "before");
    // A write commits and invalidates while the store is still in flight.
    db.write("after");
    cache.invalidate("faculty", &Scope::org(1)).await;
    // The entry in flight is not answered under the new stamp: this read
    // loads the new value (once the store in flight lets go of the lease).
    let after = {
        let (cache, k, db) = (cache.clone(), k.clone(), db.clone());
        tokio::spawn(async move { cache.try_get_with(&k, db.loader(Duration::ZERO)).await })
    };
    tokio::time::sleep(NOT_DONE).await;
    store.open();
    assert_eq!(text(&after.await.unwrap().unwrap().body), "after");
    // The store ran against the stamp read before the load, which the write
    // moved: what is stored is the new value, never the one before.
    settled(&cache).await;
    let raw = store.store.fetch(k.as_str(), k.gen_keys()).await.unwrap();
    assert!(
        raw.entry.is_none_or(|e| text(&e.body) == "after"),
        "the value loaded before the write was stored"
    );
    let mut seen = None;
    for _ in 0..100 {
        let next = cache
            .try_get_with(&k, db.loader(Duration::ZERO))
            .await
            .unwrap();
        if next.status == Status::Hit {
            seen = Some(text(&next.body).to_owned());
            break;
        }
        assert_eq!(text(&next.body), "after");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(seen.as_deref(), Some("after"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_the_bound_of_stores_in_flight_answers_wait_again() {
    let store = Gated::new();
    let cache = cache(&store, true);
    let db = Db::new("a page");
    // 64 stores in flight (MAX_BACKGROUND_PUTS), none landed.
    for page in 0..64 {
        let found = tokio::time::timeout(
            Duration::from_secs(5),
            cache.try_get_with(&key(&cache, page), db.loader(Duration::ZERO)),
        )
        .await
        .expect("a miss under the bound waited for its store")
        .unwrap();
        assert_eq!(found.status, Status::Miss);
    }
    let past = {
        let (cache, k, db) = (cache.clone(), key(&cache, 64), db.clone());
        tokio::spawn(async move { cache.try_get_with(&k, db.loader(Duration::ZERO)).await })
    };
    tokio::time::sleep(NOT_DONE).await;
    assert!(!past.is_finished(), "a 65th store in flight did not wait");
    store.open();
    assert_eq!(past.await.unwrap().unwrap().status, Status::Miss);
    // Every permit came back: `settle` returns.
    settled(&cache).await;
}

/// `Cache::settle`, given 5 s: it waits for every store in flight.
async fn settled(cache: &Cache) {
    tokio::time::timeout(Duration::from_secs(5), cache.settle())
        .await
        .expect("a store in flight never landed, or its permit never came back");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settle_waits_for_the_stores_in_flight() {
    let store = Gated::new();
    let cache = cache(&store, true);
    let (k, db) = (key(&cache, 1), Db::new("page 1"));
    cache
        .try_get_with(&k, db.loader(Duration::ZERO))
        .await
        .unwrap();
    let settling = {
        let cache = cache.clone();
        tokio::spawn(async move { cache.settle().await })
    };
    tokio::time::sleep(NOT_DONE).await;
    assert!(!settling.is_finished(), "settled with a store in flight");
    store.open();
    settling.await.unwrap();
    let raw = store.store.fetch(k.as_str(), k.gen_keys()).await.unwrap();
    assert!(
        raw.valid_entry().is_some(),
        "settled before the store landed"
    );
}

/// Redis takes the lease and reads the entry and its parts, with their
/// counters, in one script: `None` while another holds the lease; entries once
/// stored; missing counters created as a read creates them.
#[tokio::test]
async fn redis_takes_the_lease_and_reads_the_key_and_its_parts_in_one_call() {
    let url = redis_url();
    let ns = Namespace::new(&url);
    let (builder, store) = redis(&ns, RedisConfig::new(&url)).await;
    let cache = builder.build();
    let (page, part) = (key(&cache, 1), key(&cache, 2));
    let items = [
        (page.as_str(), page.gen_keys()),
        (part.as_str(), part.gen_keys()),
    ];
    let ttl = Duration::from_secs(5);
    let first = store.lease_and_fetch(&items, 1, ttl).await.unwrap();
    let first = first.expect("a free lease was not taken");
    assert_eq!(first.len(), 2);
    assert!(first.iter().all(|f| f.entry.is_none()));
    assert_eq!(first[0].stamp.gens.len(), page.gen_keys().len());
    assert!(
        first.iter().all(|f| f.stamp.gens.iter().all(|g| *g > 0)),
        "counters not created"
    );
    assert!(
        store
            .lease_and_fetch(&items, 2, ttl)
            .await
            .unwrap()
            .is_none()
    );
    store.release_lease(page.as_str(), 1).await.unwrap();
    let db = Db::new("a page");
    for k in [&page, &part] {
        cache
            .try_get_with(k, db.loader(Duration::ZERO))
            .await
            .unwrap();
    }
    let again = store.lease_and_fetch(&items, 3, ttl).await.unwrap();
    let again = again.expect("the lease was left held by the load");
    assert_eq!(again[0].stamp.gens, first[0].stamp.gens);
    for f in again {
        let env = f.valid_entry().expect("a stored entry was not read");
        assert_eq!(text(&env.body), "a page");
    }
    store.release_lease(page.as_str(), 3).await.unwrap();
}

/// A loader's parts are read for it with the lease, after the read that found
/// the miss: a write in between is in them.
#[tokio::test]
async fn a_loaders_parts_are_read_after_the_miss_on_every_store() {
    for (name, cache, _ns) in each_store().await {
        let (page, part) = (key(&cache, 1), key(&cache, 2));
        let db = Db::new("part v1");
        cache
            .try_get_with(&part, db.loader(Duration::ZERO))
            .await
            .unwrap();
        let seen = cache.prefetch(&[&page, &part]).await;
        assert!(seen[1].is_hit(), "{name}: the part was not cached");
        // A write to the model after the read that found the page missing.
        cache.invalidate("faculty", &Scope::org(1)).await;
        let mut seen = seen.into_iter();
        let page_read = seen.next().unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel();
        let found = cache
            .try_get_with_parts(&page, page_read, &[&part], move |parts| async move {
                let _ = tx.send(
                    parts
                        .iter()
                        .map(|p| (p.is_answered(), p.is_hit()))
                        .collect::<Vec<_>>(),
                );
                Ok::<_, std::io::Error>(bytes::Bytes::from_static(b"page"))
            })
            .await
            .unwrap();
        assert_eq!(found.status, Status::Miss, "{name}");
        assert_eq!(
            rx.await.unwrap(),
            vec![(true, false)],
            "{name}: the part was read before the write"
        );
    }
}

/// On the tiered store, a loader's parts come from Redis, not from this
/// process's copies: another instance's write whose message has not arrived
/// (its counter moved in Redis alone) is in them.
#[tokio::test]
async fn a_loaders_parts_are_read_from_redis_not_from_this_process() {
    let url = redis_url();
    let ns = Namespace::new(&url);
    let cache = tiered(&ns, RedisConfig::new(&url), false).await.0.build();
    // A row's detail: its row counter is one the page does not read.
    let (page, part) = (key(&cache, 1), detail(&cache, &Scope::org(1), 5));
    let db = Db::new("part v1");
    cache
        .try_get_with(&part, db.loader(Duration::ZERO))
        .await
        .unwrap();
    let seen = cache.prefetch(&[&page, &part]).await;
    assert!(seen[1].is_hit(), "the part was not cached");
    // Another instance's write to row 5: its counter moves in Redis, and no
    // message reaches this process.
    let mut redis = redis::Client::open(url.as_str())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let _: i64 = redis::cmd("INCR")
        .arg(&part.gen_keys()[0])
        .query_async(&mut redis)
        .await
        .unwrap();
    let local = cache.prefetch(&[&part]).await;
    assert!(
        local[0].is_hit(),
        "this process heard of the write: no test"
    );
    let page_read = seen.into_iter().next().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel();
    cache
        .try_get_with_parts(&page, page_read, &[&part], move |parts| async move {
            let _ = tx.send(parts.iter().map(|p| p.is_hit()).collect::<Vec<_>>());
            Ok::<_, std::io::Error>(bytes::Bytes::from_static(b"page"))
        })
        .await
        .unwrap();
    assert_eq!(
        rx.await.unwrap(),
        vec![false],
        "the part came from this process's copy"
    );
}

/// A memory store whose puts panic.
#[derive(Clone)]
struct PanickingPut(MemoryStore);

#[tierstamp::async_trait]
impl Store for PanickingPut {
    async fn fetch(&self, key: &str, gen_keys: &[String]) -> Result<Fetched, StoreError> {
        self.0.fetch(key, gen_keys).await
    }
    async fn put(
        &self,
        _: &str,
        _: &[String],
        _: &Envelope,
        _: Duration,
        _: Option<u64>,
    ) -> Result<bool, StoreError> {
        panic!("a put that panics");
    }
    async fn bump(&self, gen_keys: &[String]) -> Result<Vec<u64>, StoreError> {
        self.0.bump(gen_keys).await
    }
    async fn acquire_lease(
        &self,
        key: &str,
        token: u64,
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        self.0.acquire_lease(key, token, ttl).await
    }
    async fn release_lease(&self, key: &str, token: u64) -> Result<(), StoreError> {
        self.0.release_lease(key, token).await
    }
    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        self.0.delete(key).await
    }
    fn health(&self) -> Health {
        Health::Ok
    }
}

/// A store that panics leaves nothing to answer from: the loaded entry is
/// served from this process only while its store is in flight.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_entry_whose_store_panicked_is_not_answered_from_this_process() {
    let cache = Cache::builder(PanickingPut(MemoryStore::new(16 << 20)))
        .dependencies(deps())
        .answer_before_store(true)
        .lease_ttl(Duration::from_millis(50))
        .build();
    let (k, db) = (key(&cache, 1), Db::new("v1"));
    let first = cache
        .try_get_with(&k, db.loader(Duration::ZERO))
        .await
        .unwrap();
    assert_eq!(first.status, Status::Miss);
    settled(&cache).await;
    db.write("v2");
    let next = cache
        .try_get_with(&k, db.loader(Duration::ZERO))
        .await
        .unwrap();
    assert_eq!(
        (next.status, text(&next.body)),
        (Status::Miss, "v2"),
        "an entry nothing stored was answered"
    );
}
