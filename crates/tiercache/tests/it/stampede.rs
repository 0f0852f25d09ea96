//! Stampede control: N concurrent misses cost one load across instances.

use std::sync::Arc;
use std::time::Duration;

use tiercache::{Kind, RedisConfig, Scope, Status, Store};

use crate::helpers::*;

/// Two independent cache instances (own connections, own single-flight maps) share
/// one Redis; 1000 concurrent calls on one cold key run the loader once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_concurrent_misses_across_two_instances_load_once() {
    let url = redis_url();
    let ns = Namespace::new(&url);
    let a = redis(&ns, RedisConfig::new(&url)).await.0.build();
    let b = tiered(&ns, RedisConfig::new(&url), false).await.0.build();
    let db = Db::new("page 1 of faculty");
    let key = a
        .key(Kind::List, "faculty", &Scope::org(1))
        .param("page", 1)
        .build()
        .unwrap();
    let barrier = Arc::new(tokio::sync::Barrier::new(1000));
    let mut tasks = Vec::new();
    for i in 0..1000 {
        let cache = if i % 2 == 0 { a.clone() } else { b.clone() };
        let (key, db, barrier) = (key.clone(), db.clone(), barrier.clone());
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            cache
                .get_or_compute(&key, db.loader(Duration::from_millis(200)))
                .await
        }));
    }
    for t in tasks {
        let r = t.await.unwrap().unwrap();
        assert_eq!(text(&r.body), "page 1 of faculty");
        assert_ne!(r.status, Status::Bypass);
    }
    assert_eq!(db.queries(), 1, "the loader ran more than once");
    assert_eq!(a.stats().loads + b.stats().loads, 1);
}

/// A leader that dies holding its lease must not block the key for longer than the
/// lease's TTL: the next caller loads once it expires.
#[tokio::test]
async fn a_dead_leaders_lease_expires_and_another_caller_loads() {
    let url = redis_url();
    let ns = Namespace::new(&url);
    let (builder, store) = redis(&ns, RedisConfig::new(&url)).await;
    let cache = builder.lease_ttl(Duration::from_millis(300)).build();
    let key = cache
        .key(Kind::Detail, "student", &Scope::org(1))
        .param("id", 1)
        .build()
        .unwrap();
    // A "dead" instance took the lease and will never store or release it.
    assert!(
        store
            .acquire_lease(key.as_str(), 12345, Duration::from_millis(300))
            .await
            .unwrap()
    );
    let db = Db::new("row");
    let r = cache
        .get_or_compute(&key, db.loader(Duration::ZERO))
        .await
        .unwrap();
    assert_eq!((r.status, text(&r.body)), (Status::Miss, "row"));
    assert_eq!(db.queries(), 1);
    assert_eq!(cache.get(&key).await.map(|l| l.status), Some(Status::Hit));
}

/// Callers that captured different stamps must not share a load: one arriving after
/// a write would otherwise receive the pre-write result.
#[tokio::test]
async fn a_caller_arriving_after_a_write_does_not_join_an_older_load() {
    let url = redis_url();
    let ns = Namespace::new(&url);
    let cache = redis(&ns, RedisConfig::new(&url)).await.0.build();
    let org = Scope::org(1);
    let key = cache.key(Kind::List, "student", &org).build().unwrap();
    let db = Db::new("before");
    let early = {
        let (cache, key, db) = (cache.clone(), key.clone(), db.clone());
        tokio::spawn(async move {
            cache
                .get_or_compute(&key, db.loader(Duration::from_millis(300)))
                .await
        })
    };
    wait_for(|| db.queries() == 1, "first load started").await;
    db.write("after");
    cache.invalidate("student", &org).await;
    // The write's response has been sent: this read must see it.
    let r = cache
        .get_or_compute(&key, db.loader(Duration::ZERO))
        .await
        .unwrap();
    assert_eq!(text(&r.body), "after");
    assert_eq!(text(&early.await.unwrap().unwrap().body), "before");
    assert_eq!(text(&cache.get(&key).await.unwrap().body), "after");
}
