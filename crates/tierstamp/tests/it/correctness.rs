//! Behaviour every store must share: hits, invalidation, dependencies, the
//! stale-set race, on-commit, tenant isolation, versioning, stale-while-revalidate.

use std::time::Duration;

use bytes::Bytes;
use tierstamp::store::Tier;
use tierstamp::{
    Cache, Clock, Kind, L1Check, RedisConfig, RedisStore, Scope, Status, TieredStore, TtlPolicy,
};
use tokio::sync::oneshot;

use crate::helpers::*;

const NO_DELAY: Duration = Duration::ZERO;

#[tokio::test]
async fn a_miss_is_loaded_once_then_hits_until_invalidated() {
    for (name, cache, _ns) in each_store().await {
        let db = Db::new("v1");
        let org = Scope::org(1);
        let key = cache
            .key(Kind::List, "faculty", &org)
            .param("page", 1)
            .build()
            .unwrap();
        let r = cache.try_get_with(&key, db.loader(NO_DELAY)).await.unwrap();
        assert_eq!((r.status, text(&r.body)), (Status::Miss, "v1"), "{name}");
        let r = cache.try_get_with(&key, db.loader(NO_DELAY)).await.unwrap();
        assert_eq!((r.status, text(&r.body)), (Status::Hit, "v1"), "{name}");
        assert_eq!(db.queries(), 1, "{name}");
        db.write("v2");
        cache.invalidate("faculty", &org).await;
        let r = cache.try_get_with(&key, db.loader(NO_DELAY)).await.unwrap();
        assert_eq!((r.status, text(&r.body)), (Status::Miss, "v2"), "{name}");
        assert_eq!(r.etag, tierstamp::Etag::of(b"v2"), "{name}");
    }
}

#[tokio::test]
async fn invalidating_a_dependency_invalidates_the_entries_that_embed_it() {
    for (name, cache, _ns) in each_store().await {
        let db = Db::new("Ada, dept CS");
        let org = Scope::org(1);
        let faculty = cache.key(Kind::List, "faculty", &org).build().unwrap();
        let users = cache.key(Kind::List, "user", &org).build().unwrap();
        cache
            .try_get_with(&faculty, db.loader(NO_DELAY))
            .await
            .unwrap();
        cache
            .try_get_with(&users, db.loader(NO_DELAY))
            .await
            .unwrap();
        db.write("Ada, dept Computing");
        cache.invalidate("department", &org).await;
        let r = cache
            .try_get_with(&faculty, db.loader(NO_DELAY))
            .await
            .unwrap();
        assert_eq!(
            (r.status, text(&r.body)),
            (Status::Miss, "Ada, dept Computing"),
            "{name}"
        );
        // Users do not embed departments: untouched.
        let r = cache
            .try_get_with(&users, db.loader(NO_DELAY))
            .await
            .unwrap();
        assert_eq!(r.status, Status::Hit, "{name}");
    }
}

/// The race of "Scaling Memcache at Facebook": a reader loads, a write commits and
/// invalidates, then the reader stores what it loaded. Made deterministic: the
/// loader blocks until the write is done.
#[tokio::test]
async fn a_slow_reader_never_stores_over_an_invalidation() {
    for (name, cache, _ns) in each_store().await {
        let org = Scope::org(1);
        let key = cache
            .key(Kind::Detail, "student", &org)
            .param("id", 7)
            .build()
            .unwrap();
        let (started_tx, started) = oneshot::channel::<()>();
        let (release, release_rx) = oneshot::channel::<()>();
        let slow = {
            let cache = cache.clone();
            let key = key.clone();
            tokio::spawn(async move {
                cache
                    .try_get_with(&key, async move {
                        // The database read happens here, before the write.
                        let old = Bytes::from_static(b"semester 1");
                        started_tx.send(()).unwrap();
                        release_rx.await.unwrap();
                        Ok::<_, std::io::Error>(old)
                    })
                    .await
            })
        };
        started.await.unwrap();
        // The write commits, then invalidates; only then does the reader finish.
        cache.invalidate("student", &org).await;
        release.send(()).unwrap();
        let r = slow.await.unwrap().unwrap();
        assert_eq!(
            (r.status, text(&r.body)),
            (Status::Miss, "semester 1"),
            "{name}: it began before the write"
        );
        assert!(
            cache.get(&key).await.is_none(),
            "{name}: the pre-write value must not be cached"
        );
        let db = Db::new("semester 2");
        let r = cache.try_get_with(&key, db.loader(NO_DELAY)).await.unwrap();
        assert_eq!(
            (r.status, text(&r.body)),
            (Status::Miss, "semester 2"),
            "{name}"
        );
    }
}

#[tokio::test]
async fn rollback_applies_nothing_and_commit_applies_everything() {
    for (name, cache, _ns) in each_store().await {
        let db = Db::new("v1");
        let org = Scope::org(3);
        let list = cache.key(Kind::List, "program", &org).build().unwrap();
        let count = cache
            .key(Kind::Count, "program", &org)
            .param("q", "x")
            .build()
            .unwrap();
        cache
            .try_get_with(&list, db.loader(NO_DELAY))
            .await
            .unwrap();

        let stamp = cache.stamp(&count).await.unwrap();
        let mut tx = cache.transaction();
        tx.invalidate("program", &org);
        tx.set(count.clone(), stamp.clone(), Bytes::from_static(b"41"));
        tx.rollback();
        assert_eq!(
            cache.get(&list).await.map(|l| l.status),
            Some(Status::Hit),
            "{name}: rollback invalidated"
        );
        assert!(cache.get(&count).await.is_none(), "{name}: rollback set");

        let mut tx = cache.transaction();
        tx.invalidate("program", &org);
        tx.invalidate("program", &org);
        tx.set(count.clone(), stamp, Bytes::from_static(b"42"));
        assert!(
            cache.get(&list).await.is_some(),
            "{name}: queued effects must wait for commit"
        );
        tx.commit().await;
        assert!(
            cache.get(&list).await.is_none(),
            "{name}: commit did not invalidate"
        );
        assert_eq!(
            cache.get(&count).await.map(|l| l.body),
            Some(Bytes::from_static(b"42")),
            "{name}"
        );
        assert_eq!(
            cache.stats().invalidations,
            1,
            "{name}: duplicate invalidations are merged"
        );
    }
}

#[tokio::test]
async fn tenants_never_see_each_others_entries_or_invalidations() {
    for (name, cache, _ns) in each_store().await {
        let (one, two) = (Scope::org(1), Scope::org(2));
        let k1 = cache
            .key(Kind::List, "faculty", &one)
            .param("page", 1)
            .build()
            .unwrap();
        let k2 = cache
            .key(Kind::List, "faculty", &two)
            .param("page", 1)
            .build()
            .unwrap();
        assert_ne!(k1, k2);
        cache
            .try_get_with(&k1, Db::new("org1 rows").loader(NO_DELAY))
            .await
            .unwrap();
        let r = cache
            .try_get_with(&k2, Db::new("org2 rows").loader(NO_DELAY))
            .await
            .unwrap();
        assert_eq!(
            (r.status, text(&r.body)),
            (Status::Miss, "org2 rows"),
            "{name}"
        );
        cache.invalidate("faculty", &one).await;
        assert_eq!(
            cache.get(&k2).await.map(|l| l.status),
            Some(Status::Hit),
            "{name}"
        );
        assert!(cache.get(&k1).await.is_none(), "{name}");
    }
}

#[tokio::test]
async fn loader_errors_are_returned_and_nothing_is_cached() {
    for (name, cache, _ns) in each_store().await {
        let key = cache
            .key(Kind::Stats, "dashboard", &Scope::org(1))
            .build()
            .unwrap();
        let err = cache
            .try_get_with(&key, async {
                Err::<Bytes, _>(std::io::Error::other("db down"))
            })
            .await
            .unwrap_err();
        assert!(err.to_string().contains("db down"), "{name}: {err}");
        assert!(cache.get(&key).await.is_none(), "{name}");
        let r = cache
            .try_get_with(&key, Db::new("ok").loader(NO_DELAY))
            .await
            .unwrap();
        assert_eq!(r.status, Status::Miss, "{name}");
    }
}

#[tokio::test]
async fn bumping_the_version_moves_to_an_empty_keyspace() {
    let url = redis_url();
    let ns = Namespace::new(&url);
    let v2 = ns.with_version("v2");
    assert_ne!(ns.keys.namespace(), v2.namespace());
    let old = redis(&ns, RedisConfig::new(&url)).await.0.build();
    let new = Cache::builder(
        RedisStore::connect(RedisConfig::new(&url), &v2)
            .await
            .unwrap(),
    )
    .keys(v2)
    .dependencies(deps())
    .build();
    let org = Scope::org(1);
    let k_old = old.key(Kind::List, "faculty", &org).build().unwrap();
    let k_new = new.key(Kind::List, "faculty", &org).build().unwrap();
    old.try_get_with(&k_old, Db::new("old").loader(NO_DELAY))
        .await
        .unwrap();
    assert!(new.get(&k_new).await.is_none());
    let r = new
        .try_get_with(&k_new, Db::new("new").loader(NO_DELAY))
        .await
        .unwrap();
    assert_eq!(text(&r.body), "new");
    // The old version keeps working for instances not yet moved.
    assert_eq!(
        old.get(&k_old).await.map(|l| l.body),
        Some(Bytes::from_static(b"old"))
    );
}

/// A rolling deploy: instances of two versions serve side by side over one
/// database. A write served by either must invalidate the entries of both, L1s
/// included; with versioned counters the other half would serve the old data until
/// its TTL.
#[tokio::test]
async fn two_versions_side_by_side_invalidate_each_other() {
    let url = redis_url();
    let ns = Namespace::new(&url);
    let old = tiered(&ns, fast_breaker(&url), false).await.0.build();
    let v2 = ns.with_version("v2");
    let store = TieredStore::new(
        RedisStore::connect(fast_breaker(&url), &v2).await.unwrap(),
        16 << 20,
        L1Check::Mirror,
    );
    wait_for(|| store.l2().channel_up(), "invalidation channel up").await;
    let new = Cache::builder(store).keys(v2).dependencies(deps()).build();
    let org = Scope::org(1);
    let db = Db::new("a");
    for (round, (writer, reader)) in [(&old, &new), (&new, &old), (&old, &new)]
        .into_iter()
        .enumerate()
    {
        for cache in [&old, &new] {
            let key = cache.key(Kind::List, "faculty", &org).build().unwrap();
            cache.try_get_with(&key, db.loader(NO_DELAY)).await.unwrap();
            let r = cache.try_get_with(&key, db.loader(NO_DELAY)).await.unwrap();
            assert_eq!(r.tier, Some(Tier::L1), "round {round}: cached in L1");
        }
        let value = format!("b{round}");
        db.write(&value);
        writer.invalidate("department", &org).await;
        let key = reader.key(Kind::List, "faculty", &org).build().unwrap();
        let t = std::time::Instant::now();
        loop {
            let r = reader
                .try_get_with(&key, db.loader(NO_DELAY))
                .await
                .unwrap();
            if text(&r.body) == value {
                break;
            }
            assert!(
                t.elapsed() < Duration::from_secs(2),
                "round {round}: the other version kept serving {:?}",
                text(&r.body)
            );
            tokio::task::yield_now().await;
        }
        // Through Redis the other version is fresh at once (no broadcast needed).
        let through_redis = Cache::builder(
            RedisStore::connect(RedisConfig::new(&url), reader.keys())
                .await
                .unwrap(),
        )
        .keys(reader.keys().clone())
        .dependencies(deps())
        .build();
        let r = through_redis
            .try_get_with(&key, db.loader(NO_DELAY))
            .await
            .unwrap();
        assert_eq!(text(&r.body), value, "round {round}: through Redis");
    }
}

/// allkeys-lru may evict a generation counter. If it restarted at a fixed value, an
/// entry stored under that value would become valid again.
#[tokio::test]
async fn an_evicted_generation_counter_never_resurrects_an_entry() {
    let url = redis_url();
    let ns = Namespace::new(&url);
    let (builder, store) = redis(&ns, RedisConfig::new(&url)).await;
    let cache = builder.build();
    let org = Scope::org(1);
    let key = cache.key(Kind::List, "user", &org).build().unwrap();
    cache
        .try_get_with(&key, Db::new("before").loader(NO_DELAY))
        .await
        .unwrap();
    let mut conn = store.connection();
    let gen_key = &key.gen_keys()[0];
    let _: () = redis::cmd("DEL")
        .arg(gen_key)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(
        cache.get(&key).await.is_none(),
        "an entry survived the loss of its counter"
    );
    let _: () = redis::cmd("DEL")
        .arg(gen_key)
        .query_async(&mut conn)
        .await
        .unwrap();
    cache.invalidate("user", &org).await; // bump of a missing counter
    let g: u64 = redis::cmd("GET")
        .arg(gen_key)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(
        g > 1_600_000_000_000_000,
        "a restarted counter starts from the clock in µs, got {g}"
    );
}

#[tokio::test]
async fn an_expired_entry_is_served_stale_while_one_task_refreshes_it() {
    let url = redis_url();
    let ns = Namespace::new(&url);
    let ttl = TtlPolicy::default().list(Duration::from_secs(60));
    // The entries' time passes on a manual clock: no sleep, and no race with
    // the real one.
    let clock = Clock::manual();
    for cache in [
        memory(&ns)
            .ttl(ttl.clone())
            .stale_ratio(20.0)
            .early_refresh_beta(0.0)
            .clock(clock.clone())
            .build(),
        redis(&ns, RedisConfig::new(&url))
            .await
            .0
            .ttl(ttl.clone())
            .stale_ratio(20.0)
            .early_refresh_beta(0.0)
            .clock(clock.clone())
            .build(),
    ] {
        let db = Db::new("v1");
        let key = cache
            .key(Kind::List, "faculty", &Scope::org(9))
            .param("n", fastrand::u32(..))
            .build()
            .unwrap();
        cache.try_get_with(&key, db.loader(NO_DELAY)).await.unwrap();
        let r = cache.try_get_with(&key, db.loader(NO_DELAY)).await.unwrap();
        assert_eq!(r.status, Status::Hit, "fresh until its TTL has passed");
        clock.advance(Duration::from_secs(61));
        db.write("v2");
        let mut stale = 0;
        for _ in 0..20 {
            let r = cache
                .try_get_with(&key, db.loader(Duration::from_millis(100)))
                .await
                .unwrap();
            if r.status == Status::Stale {
                assert_eq!(text(&r.body), "v1");
                stale += 1;
            }
        }
        assert!(stale > 0, "nothing was served stale");
        wait_for(|| db.queries() >= 2, "background refresh").await;
        tokio::time::sleep(Duration::from_millis(150)).await;
        let r = cache.try_get_with(&key, db.loader(NO_DELAY)).await.unwrap();
        assert_eq!((r.status, text(&r.body)), (Status::Hit, "v2"));
        assert_eq!(db.queries(), 2, "one refresh for twenty stale reads");
    }
}

#[tokio::test]
async fn entries_are_refreshed_early_before_they_expire() {
    let url = redis_url();
    let ns = Namespace::new(&url);
    // A huge β makes XFetch refresh on the first hit, deterministically.
    let cache = redis(&ns, RedisConfig::new(&url))
        .await
        .0
        .early_refresh_beta(1e12)
        .build();
    let db = Db::new("v1");
    let key = cache
        .key(Kind::Detail, "faculty", &Scope::org(1))
        .param("id", 1)
        .build()
        .unwrap();
    cache
        .try_get_with(&key, db.loader(Duration::from_millis(5)))
        .await
        .unwrap();
    db.write("v2");
    let r = cache
        .try_get_with(&key, db.loader(Duration::from_millis(5)))
        .await
        .unwrap();
    assert_eq!(
        (r.status, text(&r.body)),
        (Status::Hit, "v1"),
        "early refresh never makes a caller wait"
    );
    wait_for(|| db.queries() == 2, "early refresh").await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    let r = cache.get(&key).await.unwrap();
    assert_eq!(text(&r.body), "v2");
}

/// A value computed inside a transaction is stored at commit only if no other
/// write landed since its stamp was captured (its data would be missing).
#[tokio::test]
async fn a_transactions_set_is_dropped_if_another_write_landed_since_its_capture() {
    for (name, cache, _ns) in each_store().await {
        let org = Scope::org(4);
        let count = cache.key(Kind::Count, "faculty", &org).build().unwrap();
        let stamp = cache.stamp(&count).await.unwrap();
        cache.invalidate("department", &org).await; // someone else's write
        let mut tx = cache.transaction();
        tx.invalidate("faculty", &org);
        tx.set(count.clone(), stamp, Bytes::from_static(b"7"));
        tx.commit().await;
        assert!(
            cache.get(&count).await.is_none(),
            "{name}: stored a value that misses another write"
        );
    }
}

/// The database has committed when the invalidation starts: a caller cancelled
/// right then (client gone, timeout layer) must not lose it.
#[tokio::test]
async fn an_invalidation_survives_its_caller_being_cancelled() {
    for (name, cache, _ns) in each_store().await {
        let org = Scope::org(5);
        let key = cache.key(Kind::List, "user", &org).build().unwrap();
        cache
            .try_get_with(&key, Db::new("v1").loader(NO_DELAY))
            .await
            .unwrap();
        let _ = tokio::time::timeout(Duration::ZERO, cache.invalidate("user", &org)).await;
        let mut gone = false;
        for _ in 0..200 {
            if cache.get(&key).await.is_none() {
                gone = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert!(gone, "{name}: the cancelled invalidation was lost");
    }
}

#[tokio::test]
async fn a_prefetch_reads_several_keys_at_once_and_feeds_try_get_with() {
    for (name, cache, _ns) in each_store().await {
        let org = Scope::org(6);
        let auth = cache
            .key(Kind::Detail, "user", &org)
            .param("auth", 1)
            .build()
            .unwrap();
        let page = cache.key(Kind::List, "faculty", &org).build().unwrap();
        cache
            .try_get_with(&auth, Db::new("active").loader(NO_DELAY))
            .await
            .unwrap();
        let mut found = cache.prefetch(&[&auth, &page]).await.into_iter();
        let (a, p) = (found.next().unwrap(), found.next().unwrap());
        let r = cache
            .try_get_with_prefetched(&auth, a, Db::new("x").loader(NO_DELAY))
            .await
            .unwrap();
        assert_eq!((r.status, text(&r.body)), (Status::Hit, "active"), "{name}");
        let r = cache
            .try_get_with_prefetched(&page, p, Db::new("rows").loader(NO_DELAY))
            .await
            .unwrap();
        assert_eq!((r.status, text(&r.body)), (Status::Miss, "rows"), "{name}");
        // A read of another key is never used for this one.
        let wrong = cache.prefetch(&[&page]).await.pop().unwrap();
        cache.invalidate("user", &org).await;
        let r = cache
            .try_get_with_prefetched(&auth, wrong, Db::new("inactive").loader(NO_DELAY))
            .await
            .unwrap();
        assert_eq!(
            (r.status, text(&r.body)),
            (Status::Miss, "inactive"),
            "{name}"
        );
    }
}

#[tokio::test]
async fn a_prefetch_of_one_scope_is_one_redis_call() {
    let url = redis_url();
    let ns = Namespace::new(&url);
    let (builder, store) = redis(&ns, RedisConfig::new(&url)).await;
    let cache = builder.build();
    let org = Scope::org(1);
    let keys: Vec<_> = (0..3)
        .map(|i| {
            cache
                .key(Kind::Detail, "student", &org)
                .param("id", i)
                .build()
                .unwrap()
        })
        .collect();
    let refs: Vec<_> = keys.iter().collect();
    // The subscriber re-reads the epoch once it listens (one call of its own,
    // in the background): let it finish so only the prefetches are counted.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while store.channel_connects() == 0 || store.call_counts().0 < 2 {
        assert!(
            std::time::Instant::now() < deadline,
            "subscriber never started"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    // The first read of a scope creates its generation counters: a plain MGET
    // finds them missing, and the script that creates them follows.
    let (before, _) = store.call_counts();
    assert_eq!(cache.prefetch(&refs).await.len(), 3);
    assert_eq!(store.call_counts().0 - before, 2);
    // From then on, one MGET.
    let (before, _) = store.call_counts();
    let found = cache.prefetch(&refs).await;
    assert_eq!(found.len(), 3);
    assert_eq!(store.call_counts().0 - before, 1);
}

/// moka's names: `try_get_with` and `get_with` take the loader as a future and
/// behave like `try_get_with_prefetched`, on every store.
#[tokio::test]
async fn get_with_and_try_get_with_follow_one_look_up() {
    for (name, cache, _ns) in each_store().await {
        let org = Scope::org(8);
        let key = cache.key(Kind::List, "program", &org).build().unwrap();
        let failed = cache
            .try_get_with(&key, async {
                Err::<Bytes, _>(std::io::Error::other("db down"))
            })
            .await;
        assert!(
            matches!(&failed, Err(tierstamp::LoadError::Failed(e)) if e.to_string() == "db down"),
            "{name}: {failed:?}"
        );
        assert!(
            cache.get(&key).await.is_none(),
            "{name}: an error was cached"
        );

        let r = cache
            .get_with(&key, async { Bytes::from_static(b"v1") })
            .await;
        assert_eq!((r.status, text(&r.body)), (Status::Miss, "v1"), "{name}");
        let r = cache
            .try_get_with(&key, async {
                Ok::<_, std::io::Error>(Bytes::from_static(b"v2"))
            })
            .await
            .unwrap();
        assert_eq!((r.status, text(&r.body)), (Status::Hit, "v1"), "{name}");
        cache.invalidate("program", &org).await;
        let r = cache
            .get_with(&key, async { Bytes::from_static(b"v2") })
            .await;
        assert_eq!((r.status, text(&r.body)), (Status::Miss, "v2"), "{name}");
    }
}

/// One statement over many tenants: `invalidate_across` kills the model in
/// every scope named (2,500 here, past one script's batch) and nowhere else.
#[tokio::test]
async fn invalidating_across_many_scopes_reaches_each_and_no_other() {
    for (name, cache, _ns) in each_store().await {
        let db = Db::new("v1");
        let named: Vec<Scope> = (1..=2500).map(Scope::org).collect();
        let other = Scope::org(9999);
        let keys: Vec<_> = [Scope::org(1), Scope::org(2500), other.clone()]
            .iter()
            .map(|s| cache.key(Kind::List, "faculty", s).build().unwrap())
            .collect();
        for k in &keys {
            cache.try_get_with(k, db.loader(NO_DELAY)).await.unwrap();
        }
        assert!(
            cache.invalidate_across(&["faculty"], &named).await,
            "{name}"
        );
        let statuses: Vec<Status> = futures_statuses(&cache, &keys, &db).await;
        assert_eq!(
            statuses,
            [Status::Miss, Status::Miss, Status::Hit],
            "{name}"
        );
    }
}

async fn futures_statuses(
    cache: &tierstamp::Cache,
    keys: &[tierstamp::CacheKey],
    db: &Db,
) -> Vec<Status> {
    let mut out = Vec::new();
    for k in keys {
        out.push(
            cache
                .try_get_with(k, db.loader(NO_DELAY))
                .await
                .unwrap()
                .status,
        );
    }
    out
}
