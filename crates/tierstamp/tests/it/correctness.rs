//! Behaviour every store must share: hits, invalidation, dependencies, the
//! stale-set race, on-commit, tenant isolation, versioning, stale-while-revalidate.

mod expiry;
mod races;
mod versions;

use std::time::Duration;

use bytes::Bytes;
use tierstamp::{Kind, RedisConfig, Scope, Status};

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
