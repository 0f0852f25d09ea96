//! Writes racing reads and their own callers: a reader never stores over an
//! invalidation (the stale-set race), a transaction applies its invalidations
//! and sets at commit only and drops a set another write overtook, and an
//! invalidation outlives its cancelled caller.

use std::time::Duration;

use bytes::Bytes;
use tierstamp::{Kind, Scope, Status};
use tokio::sync::oneshot;

use super::NO_DELAY;
use crate::helpers::*;

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
