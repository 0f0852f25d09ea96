//! Keyspaces and generation counters: a version bump starts empty, two versions
//! side by side invalidate each other, and a counter lost to eviction never
//! makes an old entry valid again.

use std::time::Duration;

use bytes::Bytes;
use tierstamp::store::Tier;
use tierstamp::{Cache, Kind, L1Check, RedisConfig, RedisStore, Scope, TieredStore};

use super::NO_DELAY;
use crate::helpers::*;

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
