//! Stampede control: N concurrent misses cost one load across instances.

use std::sync::Arc;
use std::time::Duration;

use tierstamp::{Cache, Health, Kind, RedisConfig, Scope, Status, Store};

use crate::helpers::*;

/// Two independent cache instances (own connections, own single-flight maps) share
/// one Redis; 1000 concurrent calls on one cold key run the loader once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_concurrent_misses_across_two_instances_load_once() {
    let url = redis_url();
    let ns = Namespace::new(&url);
    let a = redis(&ns, patient(&url)).await.0.build();
    let b = tiered(&ns, patient(&url), false).await.0.build();
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
                .try_get_with(&key, db.loader(Duration::from_millis(200)))
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
        .try_get_with(&key, db.loader(Duration::ZERO))
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
                .try_get_with(&key, db.loader(Duration::from_millis(300)))
                .await
        })
    };
    wait_for(|| db.queries() == 1, "first load started").await;
    db.write("after");
    cache.invalidate("student", &org).await;
    // The write's response has been sent: this read must see it.
    let r = cache
        .try_get_with(&key, db.loader(Duration::ZERO))
        .await
        .unwrap();
    assert_eq!(text(&r.body), "after");
    assert_eq!(text(&early.await.unwrap().unwrap().body), "before");
    assert_eq!(text(&cache.get(&key).await.unwrap().body), "after");
}

/// A Redis cache and a tiered one over a server that was killed, with their
/// breakers open for the rest of the test (no probe reaches the dead server
/// mid-test), and the server's handle.
async fn caches_with_redis_down() -> (Vec<(&'static str, Cache)>, Namespace, RedisServer) {
    let mut server = RedisServer::start();
    let url = server.url();
    let ns = Namespace::new(&url);
    let config = || {
        let mut c = fast_breaker(&url);
        c.breaker.cooldown = Duration::from_secs(600);
        c.breaker.max_cooldown = Duration::from_secs(600);
        c
    };
    let caches = vec![
        ("redis", redis(&ns, config()).await.0.build()),
        ("tiered", tiered(&ns, config(), false).await.0.build()),
    ];
    server.kill();
    let db = Db::new("rows");
    for (name, cache) in &caches {
        let key = cache
            .key(Kind::List, "faculty", &Scope::org(1))
            .build()
            .unwrap();
        for _ in 0..20 {
            cache
                .try_get_with(&key, db.loader(Duration::ZERO))
                .await
                .unwrap();
            if cache.health() == Health::Degraded {
                break;
            }
        }
        assert_eq!(cache.health(), Health::Degraded, "{name}: breaker not open");
    }
    (caches, ns, server)
}

/// While Redis is down every look-up bypasses it; concurrent look-ups of one key
/// in one process still share one load, or an outage would multiply the
/// database's load by the concurrency.
#[tokio::test]
async fn concurrent_bypassed_look_ups_of_one_key_share_one_load() {
    let (caches, _ns, _server) = caches_with_redis_down().await;
    // From here on nothing waits on the network (the breakers refuse at once):
    // the clock moves only when every task is idle, so every caller has asked for
    // the key before the first load's 100 ms are over.
    tokio::time::pause();
    for (name, cache) in caches {
        let db = Db::new("page 1 of faculty");
        let key = cache
            .key(Kind::List, "faculty", &Scope::org(2))
            .param("page", 1)
            .build()
            .unwrap();
        let before = cache.stats();
        let tasks: Vec<_> = (0..50)
            .map(|_| {
                let (cache, key, db) = (cache.clone(), key.clone(), db.clone());
                tokio::spawn(async move {
                    cache
                        .try_get_with(&key, db.loader(Duration::from_millis(100)))
                        .await
                })
            })
            .collect();
        for t in tasks {
            let r = t.await.unwrap().unwrap();
            assert_eq!(
                (r.status, text(&r.body)),
                (Status::Bypass, "page 1 of faculty")
            );
        }
        assert_eq!(db.queries(), 1, "{name}: 50 bypassed callers, loads");
        let after = cache.stats();
        assert_eq!(after.loads - before.loads, 1, "{name}");
        assert_eq!(
            after.bypass - before.bypass,
            50,
            "{name}: each caller counted"
        );
    }
}

/// Bypassed look-ups carry no stamp, but a write this process made (or was told
/// of) still separates them: a look-up that begins after it never joins a load
/// that began before it.
#[tokio::test]
async fn a_bypassed_look_up_after_a_write_does_not_join_an_older_load() {
    let (caches, _ns, _server) = caches_with_redis_down().await;
    tokio::time::pause();
    for (name, cache) in caches {
        let org = Scope::org(3);
        let key = cache.key(Kind::List, "student", &org).build().unwrap();
        let db = Db::new("before");
        let early = {
            let (cache, key, db) = (cache.clone(), key.clone(), db.clone());
            tokio::spawn(async move {
                cache
                    .try_get_with(&key, db.loader(Duration::from_millis(300)))
                    .await
            })
        };
        wait_for(|| db.queries() == 1, "first load started").await;
        db.write("after");
        cache.invalidate("student", &org).await; // cannot reach Redis: kept for replay
        let r = cache
            .try_get_with(&key, db.loader(Duration::ZERO))
            .await
            .unwrap();
        assert_eq!(
            (r.status, text(&r.body)),
            (Status::Bypass, "after"),
            "{name}"
        );
        let early = early.await.unwrap().unwrap();
        assert_eq!(text(&early.body), "before", "{name}");
    }
}
