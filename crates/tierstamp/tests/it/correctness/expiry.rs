//! Expiry: an expired entry is served stale while one task refreshes it, and
//! entries are refreshed early (XFetch) before they expire.

use std::time::Duration;

use tierstamp::{Clock, Kind, RedisConfig, Scope, Status, TtlPolicy};

use super::NO_DELAY;
use crate::helpers::*;

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
