//! Fault tests: each starts its own `redis-server` and kills, pauses or slows it.

use std::time::Duration;

use tierstamp::{Health, Kind, Scope, Status};

use crate::helpers::*;

/// Redis killed under a stream of reads and invalidations: every call succeeds
/// (BYPASS), the breaker stops the calls to Redis, and after a restart the cache
/// resumes by itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_redis_bypasses_without_errors_and_the_cache_resumes_by_itself() {
    let mut server = RedisServer::start();
    let url = server.url();
    let ns = Namespace::new(&url);
    let (builder, store) = redis(&ns, fast_breaker(&url)).await;
    let cache = builder.build();
    let db = Db::new("rows");
    let org = Scope::org(1);
    let key = cache.key(Kind::List, "faculty", &org).build().unwrap();
    cache
        .try_get_with(&key, db.loader(Duration::ZERO))
        .await
        .unwrap();
    assert_eq!(
        cache
            .try_get_with(&key, db.loader(Duration::ZERO))
            .await
            .unwrap()
            .status,
        Status::Hit
    );

    server.kill();
    let (attempts_before, _) = store.call_counts();
    for i in 0..300 {
        if i % 10 == 0 {
            cache.invalidate("faculty", &org).await;
        }
        let r = cache
            .try_get_with(&key, db.loader(Duration::ZERO))
            .await
            .unwrap();
        assert_eq!(text(&r.body), "rows");
        if i > 20 {
            assert_eq!(r.status, Status::Bypass);
        }
    }
    assert_eq!(cache.health(), Health::Degraded);
    let (attempts, refused) = store.call_counts();
    // 300 reads and 30 invalidations: nearly all refused by the open breaker without
    // touching the network (only the first failures and the probes went out).
    assert!(refused > 250, "refused {refused}");
    assert!(
        attempts - attempts_before < 40,
        "{} calls reached the dead server",
        attempts - attempts_before
    );

    server.restart();
    let mut statuses = Vec::new();
    for _ in 0..400 {
        let r = cache
            .try_get_with(&key, db.loader(Duration::ZERO))
            .await
            .unwrap();
        statuses.push(r.status);
        if r.status == Status::Hit {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(
        statuses.last(),
        Some(&Status::Hit),
        "caching did not resume: {statuses:?}"
    );
    assert_eq!(cache.health(), Health::Ok);
}

/// The dangerous outage: Redis hangs (a partition) and keeps its data. A write
/// whose invalidation could not reach it must still never let the old entry be
/// served afterwards, on the writer nor on an instance that only read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_invalidated_during_a_hang_is_served_after_it() {
    let server = RedisServer::start();
    let url = server.url();
    let ns = Namespace::new(&url);
    let writer = redis(&ns, fast_breaker(&url)).await.0.build();
    let reader = tiered(&ns, fast_breaker(&url), false).await.0.build();
    let db = Db::new("old");
    let org = Scope::org(1);
    let key = writer.key(Kind::List, "student", &org).build().unwrap();
    writer
        .try_get_with(&key, db.loader(Duration::ZERO))
        .await
        .unwrap();
    reader
        .try_get_with(&key, db.loader(Duration::ZERO))
        .await
        .unwrap();
    assert_eq!(
        reader
            .try_get_with(&key, db.loader(Duration::ZERO))
            .await
            .unwrap()
            .status,
        Status::Hit
    );

    server.pause();
    db.write("new");
    writer.invalidate("student", &org).await; // cannot reach Redis
    for _ in 0..6 {
        let r = writer
            .try_get_with(&key, db.loader(Duration::ZERO))
            .await
            .unwrap();
        assert_eq!(text(&r.body), "new", "the writer must read its own write");
    }
    assert_eq!(writer.health(), Health::Degraded);
    // The reader's L1 cannot hear of a write that never reached Redis: it may answer
    // from L1 until its channel's ping fails (the documented window). Then it bypasses.
    for _ in 0..300 {
        reader
            .try_get_with(&key, db.loader(Duration::ZERO))
            .await
            .unwrap();
        if reader.health() == Health::Degraded {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(
        reader.health(),
        Health::Degraded,
        "the reader never noticed the hang"
    );
    server.resume();

    let mut hits = 0;
    for _ in 0..300 {
        for cache in [&writer, &reader] {
            let r = cache
                .try_get_with(&key, db.loader(Duration::ZERO))
                .await
                .unwrap();
            assert_eq!(
                text(&r.body),
                "new",
                "served a value invalidated during the hang ({:?})",
                r.status
            );
            hits += (r.status == Status::Hit) as usize;
        }
        if hits >= 4 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(hits >= 4, "caching did not resume after the hang");
}

/// Without the epoch bump, an instance that saw the outage but did not write would
/// read the old entry before the writer replays its invalidation. Here the writer
/// never comes back (it was dropped), so only the epoch protects the reader.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_that_saw_an_outage_distrusts_entries_written_before_it() {
    let server = RedisServer::start();
    let url = server.url();
    let ns = Namespace::new(&url);
    let reader = redis(&ns, fast_breaker(&url)).await.0.build();
    let db = Db::new("old");
    let key = reader
        .key(Kind::List, "student", &Scope::org(1))
        .build()
        .unwrap();
    reader
        .try_get_with(&key, db.loader(Duration::ZERO))
        .await
        .unwrap();
    server.pause();
    db.write("new"); // a writer elsewhere commits; its invalidation is lost with it
    for _ in 0..6 {
        reader
            .try_get_with(&key, db.loader(Duration::ZERO))
            .await
            .unwrap();
    }
    server.resume();
    for _ in 0..100 {
        let r = reader
            .try_get_with(&key, db.loader(Duration::ZERO))
            .await
            .unwrap();
        assert_eq!(text(&r.body), "new", "{:?}", r.status);
        if r.status == Status::Hit {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("caching did not resume");
}

async fn assert_breaker_opens_while(
    server: &RedisServer,
    slow: impl FnOnce(redis::Connection) + Send + 'static,
) {
    let url = server.url();
    let ns = Namespace::new(&url);
    let (builder, store) = redis(&ns, fast_breaker(&url)).await;
    let cache = builder.build();
    let db = Db::new("rows");
    let key = cache
        .key(Kind::Detail, "faculty", &Scope::org(1))
        .param("id", 1)
        .build()
        .unwrap();
    cache
        .try_get_with(&key, db.loader(Duration::ZERO))
        .await
        .unwrap();
    let conn = server.connection();
    let slowing = std::thread::spawn(move || slow(conn));
    tokio::time::sleep(Duration::from_millis(50)).await;
    let mut bypassed = 0;
    for _ in 0..20 {
        let r = cache
            .try_get_with(&key, db.loader(Duration::ZERO))
            .await
            .unwrap();
        assert_eq!(text(&r.body), "rows");
        bypassed += (r.status == Status::Bypass) as usize;
    }
    assert_eq!(cache.health(), Health::Degraded, "the breaker did not open");
    assert!(
        store.call_counts().1 > 0,
        "no call was refused by the breaker"
    );
    assert!(bypassed >= 17, "only {bypassed} of 20 reads bypassed");
    slowing.join().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_redis_opens_the_breaker() {
    let server = RedisServer::start();
    assert_breaker_opens_while(&server, |mut c| {
        let _: () = redis::cmd("CLIENT")
            .arg("PAUSE")
            .arg(1500)
            .arg("ALL")
            .query(&mut c)
            .unwrap();
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sleeping_redis_opens_the_breaker() {
    let server = RedisServer::start();
    assert_breaker_opens_while(&server, |mut c| {
        let _: () = redis::cmd("DEBUG")
            .arg("SLEEP")
            .arg(1.5)
            .query(&mut c)
            .unwrap();
    })
    .await;
}

/// Invalidation touches the generation counter of one model and scope, whatever
/// the number of keys cached: the commands Redis runs for it are the same at 10k
/// and at 1M keys (and none of them scans).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalidation_work_is_flat_from_10k_to_1m_cached_keys() {
    let server = RedisServer::start();
    let url = server.url();
    let ns = Namespace::new(&url);
    // No periodic identity check inside the measured window: its script would
    // be counted as part of the invalidation (the channel's pings are left out
    // of the count below).
    let mut config = fast_breaker(&url);
    config.identity_interval = Duration::from_secs(3600);
    let (builder, store) = redis(&ns, config).await;
    let cache = builder.build();
    let org = Scope::org(1);
    let mut admin = server.connection();
    let mut work = Vec::new();
    // Warm-up: script loading and counter creation happen once, not per invalidation.
    cache.invalidate("faculty", &org).await;
    for total in [10_000u64, 1_000_000] {
        let prefix = format!("{}:list:faculty:{}:p=", ns.keys.namespace(), org);
        let _: () = redis::cmd("DEBUG")
            .arg("POPULATE")
            .arg(total)
            .arg(&prefix)
            .arg(64)
            .query(&mut admin)
            .unwrap();
        // POPULATE blocks the server for a while: let whatever it delayed
        // settle before measuring.
        tokio::time::sleep(Duration::from_millis(1000)).await;
        wait_for(|| store.channel_up() && store.is_clean(), "store settled").await;
        let _: () = redis::cmd("CONFIG")
            .arg("RESETSTAT")
            .query(&mut admin)
            .unwrap();
        cache.invalidate("faculty", &org).await;
        let info: String = redis::cmd("INFO")
            .arg("commandstats")
            .query(&mut admin)
            .unwrap();
        let mut calls: Vec<(String, u64)> = info
            .lines()
            .filter_map(|l| {
                let (name, rest) = l.strip_prefix("cmdstat_")?.split_once(':')?;
                let n = rest
                    .split(',')
                    .find_map(|kv| kv.strip_prefix("calls="))?
                    .parse()
                    .ok()?;
                (!name.starts_with("info")
                    && !name.starts_with("config")
                    && name != "subscribe"
                    && name != "ping")
                    .then(|| (name.to_owned(), n))
            })
            .collect();
        calls.sort();
        let dbsize: u64 = redis::cmd("DBSIZE").query(&mut admin).unwrap();
        assert!(dbsize >= total);
        assert!(
            calls
                .iter()
                .all(|(n, _)| !matches!(n.as_str(), "keys" | "scan" | "del" | "unlink")),
            "{calls:?}"
        );
        work.push(calls);
    }
    assert!(!work[0].is_empty());
    assert_eq!(
        work[0], work[1],
        "invalidation did more work with more keys"
    );
}
