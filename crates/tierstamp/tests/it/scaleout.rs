//! Scale-out: the store on a real Redis Cluster (3 masters + 3
//! replicas) and behind real Sentinels (master + replica + 3 sentinels), each
//! started by the test on free loopback ports (`testkit`) and stopped by PID.

mod failover;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use tierstamp::store::Tier;
use tierstamp::{
    BreakerConfig, Cache, KeyBuilder, Kind, L1Check, RedisConfig, RedisStore, Scope, Status,
    TieredStore,
};

use crate::helpers::*;

fn namespace() -> KeyBuilder {
    KeyBuilder::new("scale", &format!("t{}", fastrand::u32(..))).unwrap()
}

fn tuned(mut c: RedisConfig) -> RedisConfig {
    c.op_timeout = Duration::from_millis(200);
    c.connect_timeout = Duration::from_millis(300);
    c.breaker = BreakerConfig {
        threshold: 3,
        cooldown: Duration::from_millis(100),
        max_cooldown: Duration::from_millis(400),
        probe_timeout: Duration::from_millis(500),
    };
    c.ping_interval = Duration::from_millis(200);
    c.identity_interval = Duration::from_millis(200);
    c
}

async fn plain(config: RedisConfig, keys: &KeyBuilder) -> (Cache, RedisStore) {
    let store = RedisStore::connect(config, keys).await.unwrap();
    let cache = Cache::builder(store.clone())
        .keys(keys.clone())
        .dependencies(deps())
        .build();
    (cache, store)
}

async fn layered(config: RedisConfig, keys: &KeyBuilder) -> (Cache, TieredStore) {
    let store = TieredStore::new(
        RedisStore::connect(config, keys).await.unwrap(),
        16 << 20,
        L1Check::Mirror,
    );
    wait_for(|| store.l2().channel_up(), "invalidation channel up").await;
    let cache = Cache::builder(store.clone())
        .keys(keys.clone())
        .dependencies(deps())
        .build();
    (cache, store)
}

/// Keys of `prefix` on one node, by SCAN.
fn keys_on(url: &str, pattern: &str) -> BTreeSet<String> {
    let mut c = redis::Client::open(url)
        .unwrap()
        .get_connection_with_timeout(Duration::from_secs(2))
        .unwrap();
    testkit::scan(&mut c, pattern)
        .unwrap()
        .into_iter()
        .collect()
}

/// Two orgs whose keys live on different masters.
fn orgs_on_two_masters(cluster: &testkit::Cluster, keys: &KeyBuilder) -> (i64, i64) {
    let probe = |org: i64| {
        let cache = Cache::builder(tierstamp::MemoryStore::new(1 << 20))
            .keys(keys.clone())
            .build();
        let key = cache
            .key(Kind::List, "faculty", &Scope::org(org))
            .build()
            .unwrap();
        cluster.master_of(key.as_str())
    };
    let first = probe(1);
    let other = (2..100).find(|&o| probe(o) != first).unwrap();
    (1, other)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_basics_reads_invalidation_fetch_many_broadcast_and_clear() {
    let cluster = tokio::task::spawn_blocking(|| testkit::Cluster::start(3, 1))
        .await
        .unwrap();
    let keys = namespace();
    let config = tuned(RedisConfig::cluster(cluster.urls()));
    let (a, _store_a) = layered(config.clone(), &keys).await;
    let (b, store_b) = layered(config.clone(), &keys).await;
    let (o1, o2) = orgs_on_two_masters(&cluster, &keys);
    let (s1, s2) = (Scope::org(o1), Scope::org(o2));
    let db1 = Db::new("one");
    let db2 = Db::new("two");
    let k1 = a.key(Kind::List, "faculty", &s1).build().unwrap();
    let k2 = a.key(Kind::List, "faculty", &s2).build().unwrap();

    // try_get_with and invalidation, dependencies included.
    assert_eq!(
        a.try_get_with(&k1, db1.loader(Duration::ZERO))
            .await
            .unwrap()
            .status,
        Status::Miss
    );
    let hit = b
        .try_get_with(&k1, db1.loader(Duration::ZERO))
        .await
        .unwrap();
    assert_eq!((hit.status, text(&hit.body)), (Status::Hit, "one"));
    db1.write("one-b");
    a.invalidate("department", &s1).await;
    let r = a
        .try_get_with(&k1, db1.loader(Duration::ZERO))
        .await
        .unwrap();
    assert_eq!((r.status, text(&r.body)), (Status::Miss, "one-b"));

    // One prefetch across two scopes on two masters: split by slot, both found.
    a.try_get_with(&k2, db2.loader(Duration::ZERO))
        .await
        .unwrap();
    let fresh = namespace_peer(&config, &keys).await;
    let found = fresh.prefetch(&[&k1, &k2]).await;
    let mut it = found.into_iter();
    for (k, db, want) in [(&k1, &db1, "one-b"), (&k2, &db2, "two")] {
        let r = fresh
            .try_get_with_prefetched(k, it.next().unwrap(), db.loader(Duration::ZERO))
            .await
            .unwrap();
        assert_eq!((r.status, text(&r.body)), (Status::Hit, want), "{k:?}");
    }

    // L1 broadcast over the cluster's pub/sub: B holds k2 in L1, A invalidates.
    b.try_get_with(&k2, db2.loader(Duration::ZERO))
        .await
        .unwrap();
    let r = b
        .try_get_with(&k2, db2.loader(Duration::ZERO))
        .await
        .unwrap();
    assert_eq!(r.tier, Some(Tier::L1));
    db2.write("two-b");
    let sent = Instant::now();
    a.invalidate("faculty", &s2).await;
    loop {
        let r = b
            .try_get_with(&k2, db2.loader(Duration::ZERO))
            .await
            .unwrap();
        if text(&r.body) == "two-b" {
            break;
        }
        assert!(
            sent.elapsed() < Duration::from_secs(2),
            "B's L1 never heard the invalidation"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    println!(
        "cluster: B's L1 converged {:?} after A's invalidation",
        sent.elapsed()
    );

    // unlink_prefix walks every master: this prefix's keys go, others stay.
    for org in 1..=30 {
        let k = a
            .key(Kind::Detail, "student", &Scope::org(org))
            .build()
            .unwrap();
        a.try_get_with(&k, db1.loader(Duration::ZERO))
            .await
            .unwrap();
    }
    let keep = format!("redis://127.0.0.1:{}/", cluster.master_of("scalex:{keep}"));
    let mut other = redis::Client::open(keep.as_str())
        .unwrap()
        .get_connection()
        .unwrap();
    let _: () = redis::cmd("SET")
        .arg("scalex:{keep}")
        .arg("1")
        .query(&mut other)
        .unwrap_or(());
    let masters = cluster.masters();
    let url = |p: u16| format!("redis://127.0.0.1:{p}/");
    let holding = masters
        .iter()
        .filter(|&&p| !keys_on(&url(p), "scale:*").is_empty())
        .count();
    assert!(
        holding >= 2,
        "the namespace's keys should span masters ({holding})"
    );
    let others_before: BTreeSet<String> = masters
        .iter()
        .flat_map(|&p| keys_on(&url(p), "*"))
        .filter(|k| !k.starts_with("scale:"))
        .collect();
    let removed = store_b.l2().unlink_prefix("scale").await.unwrap();
    assert!(removed >= 30, "removed {removed}");
    for &p in &masters {
        assert!(
            keys_on(&url(p), "scale:*").is_empty(),
            "keys left on master {p}"
        );
    }
    let others_after: BTreeSet<String> = masters
        .iter()
        .flat_map(|&p| keys_on(&url(p), "*"))
        .filter(|k| !k.starts_with("scale:"))
        .collect();
    assert!(others_after.contains("scalex:{keep}"));
    assert_eq!(
        others_before, others_after,
        "unlink_prefix touched other keys"
    );

    // The node B listens on dies: its subscriber moves to another node and the
    // broadcast works again (after the failover, if that node was a master).
    let subscribed: Vec<u16> = cluster
        .topology()
        .iter()
        .map(|n| n.port)
        .filter(|&p| {
            let mut c = redis::Client::open(format!("redis://127.0.0.1:{p}/"))
                .unwrap()
                .get_connection()
                .unwrap();
            let list: String = redis::cmd("CLIENT")
                .arg("LIST")
                .arg("TYPE")
                .arg("pubsub")
                .query(&mut c)
                .unwrap();
            !list.trim().is_empty()
        })
        .collect();
    assert!(!subscribed.is_empty(), "no node holds a subscription");
    let before = store_b.l2().channel_connects();
    let mut cluster = cluster;
    for &p in &subscribed {
        cluster.kill(p);
    }
    let t = Instant::now();
    while !(store_b.l2().channel_up() && store_b.l2().channel_connects() > before) {
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "B's channel did not move off the dead node"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let cluster = tokio::task::spawn_blocking(move || {
        cluster.wait_healthy(Duration::from_secs(30));
        cluster
    })
    .await
    .unwrap();
    println!(
        "cluster: node(s) {subscribed:?} killed; B resubscribed elsewhere after {:?}",
        t.elapsed()
    );
    let k3 = a.key(Kind::List, "faculty", &s1).build().unwrap();
    let db3 = Db::new("three");
    loop {
        // Until A's store is clean again (a killed master means a failover).
        let r = b
            .try_get_with(&k3, db3.loader(Duration::ZERO))
            .await
            .unwrap();
        let r2 = b
            .try_get_with(&k3, db3.loader(Duration::ZERO))
            .await
            .unwrap();
        if r2.tier == Some(Tier::L1) && r.status != Status::Bypass {
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "B's L1 never came back"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    db3.write("three-b");
    a.invalidate("faculty", &s1).await;
    let sent = Instant::now();
    loop {
        let r = b
            .try_get_with(&k3, db3.loader(Duration::ZERO))
            .await
            .unwrap();
        if text(&r.body) == "three-b" {
            break;
        }
        assert!(
            sent.elapsed() < Duration::from_secs(2),
            "B's L1 never heard the invalidation after resubscribing"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    drop(cluster);
}

/// A third instance with no L1 (what another process would see).
async fn namespace_peer(config: &RedisConfig, keys: &KeyBuilder) -> Cache {
    plain(config.clone(), keys).await.0
}
