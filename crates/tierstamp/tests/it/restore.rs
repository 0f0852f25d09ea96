//! A Redis that comes back with *older* data: restarted from its RDB
//! or from an AOF that missed the last writes, flushed, a replica promoted
//! before it received the last bumps. Its counters match the entries restored
//! with them, and a restart can be too quick for the breaker to open: nothing
//! validated before must be served after, on an instance that lived through it
//! or one that starts afterwards.
//!
//! Each test owns its servers (free ports, a directory of its own, stopped by
//! PID) and checks that the older data really is back before it reads.

use std::path::{Path, PathBuf};
use std::time::Duration;

use tierstamp::{Cache, CacheKey, KeyBuilder, Kind, RedisConfig, RedisStore, Scope, Status};

use crate::helpers::*;

/// A directory of its own for a server's files, removed when dropped.
struct Dir(PathBuf);

impl Dir {
    fn new(what: &str) -> Dir {
        let dir = std::env::temp_dir().join(format!(
            "tierstamp-{what}-{}-{:08x}",
            std::process::id(),
            fastrand::u32(..)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        Dir(dir)
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// A `redis-server` on a free port, working in `dir` (its RDB and AOF files go
/// there), with `args` after testkit's `--save "" --appendonly no`.
fn server_in(dir: &Dir, args: &[&str]) -> testkit::Server {
    let port = testkit::free_ports(1)[0];
    testkit::Server::start(
        port,
        dir.path(),
        args.iter().map(|a| a.to_string()).collect(),
    )
}

fn conn(url: &str) -> redis::Connection {
    redis::Client::open(url)
        .unwrap()
        .get_connection_with_timeout(Duration::from_secs(2))
        .unwrap()
}

fn info_field(url: &str, field: &str) -> String {
    let info: String = redis::cmd("INFO")
        .arg("server")
        .query(&mut conn(url))
        .unwrap();
    info.lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .unwrap_or_else(|| panic!("no {field} in INFO server"))
        .trim()
        .to_owned()
}

/// Whether the entry under `key` on the server at `url` holds `body` (the
/// envelope ends with the body).
fn holds(url: &str, key: &CacheKey, body: &str) -> bool {
    let raw: Option<Vec<u8>> = redis::cmd("GET")
        .arg(key.as_str())
        .query(&mut conn(url))
        .unwrap();
    raw.is_some_and(|r| r.ends_with(body.as_bytes()))
}

fn fast(mut c: RedisConfig) -> RedisConfig {
    let f = fast_breaker("redis://unused/");
    c.op_timeout = f.op_timeout;
    c.connect_timeout = f.connect_timeout;
    c.breaker = f.breaker;
    c.ping_interval = f.ping_interval;
    c.identity_interval = f.identity_interval;
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

async fn expect(cache: &Cache, key: &CacheKey, db: &Db, status: Status, body: &str) {
    let r = cache
        .try_get_with(key, db.loader(Duration::ZERO))
        .await
        .unwrap();
    assert_eq!((r.status, text(&r.body)), (status, body));
}

/// Caches `old`, then `new` after a write and its invalidation, through
/// `cache`; `snapshot` runs in between (while Redis holds `old`).
async fn old_then_new(
    cache: &Cache,
    key: &CacheKey,
    db: &Db,
    org: &Scope,
    snapshot: impl FnOnce(),
) {
    db.write("old");
    expect(cache, key, db, Status::Miss, "old").await;
    expect(cache, key, db, Status::Hit, "old").await;
    snapshot();
    db.write("new");
    cache.invalidate("faculty", org).await;
    expect(cache, key, db, Status::Miss, "new").await;
    expect(cache, key, db, Status::Hit, "new").await;
}

/// Reads through every cache until each answers a HIT: none may ever return
/// `old` (BYPASS and MISS are fine, the loader answers `new`).
async fn never_old_until_hits(caches: &[&Cache], key: &CacheKey, db: &Db) {
    let mut seen = Vec::new();
    for _ in 0..500 {
        let mut all_hit = true;
        for (i, cache) in caches.iter().enumerate() {
            let r = cache
                .try_get_with(key, db.loader(Duration::ZERO))
                .await
                .unwrap();
            assert_eq!(
                text(&r.body),
                "new",
                "instance {i} served the value invalidated before Redis went back in time ({:?}; before: {seen:?})",
                r.status
            );
            seen.push(r.status);
            all_hit &= r.status == Status::Hit;
        }
        if all_hit {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("caching did not resume: {seen:?}");
}

/// Warm, `SAVE`, write and invalidate, `kill -9`, restart on the same port and
/// directory (Redis loads the RDB): the restored entry matches the restored
/// counters and epoch, and must still not be served.
async fn restarted_from_its_rdb(tiered_store: bool) {
    let dir = Dir::new("rdb");
    let mut server = server_in(&dir, &[]);
    let url = server.url();
    let ns = Namespace::new(&url);
    let cache = if tiered_store {
        tiered(&ns, fast_breaker(&url), false).await.0.build()
    } else {
        redis(&ns, fast_breaker(&url)).await.0.build()
    };
    let (db, org) = (Db::default(), Scope::org(1));
    let key = cache.key(Kind::List, "faculty", &org).build().unwrap();
    old_then_new(&cache, &key, &db, &org, || {
        let _: () = redis::cmd("SAVE").query(&mut conn(&url)).unwrap();
    })
    .await;

    server.restart();
    assert!(
        holds(&url, &key, "old"),
        "the RDB did not bring the old entry back"
    );
    never_old_until_hits(&[&cache], &key, &db).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_restarted_from_its_rdb_serves_nothing_written_before_through_redis_only() {
    restarted_from_its_rdb(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_restarted_from_its_rdb_serves_nothing_written_before_through_l1() {
    restarted_from_its_rdb(true).await;
}

/// `appendonly yes`, `appendfsync always`: the AOF is copied while Redis holds
/// the old entry (every acknowledged write is on disk), the write and its
/// invalidation land, Redis is killed and restarted on the copy: an AOF that
/// lost its last writes, as `appendfsync everysec` may.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_restarted_from_an_aof_that_missed_the_last_writes_serves_nothing_written_before() {
    let dir = Dir::new("aof");
    let mut server = server_in(&dir, &["--appendonly", "yes", "--appendfsync", "always"]);
    let url = server.url();
    let ns = Namespace::new(&url);
    let cache = tiered(&ns, fast_breaker(&url), false).await.0.build();
    let (db, org) = (Db::default(), Scope::org(1));
    let key = cache.key(Kind::List, "faculty", &org).build().unwrap();
    let aof = dir.path().join("appendonlydir");
    let copy = dir.path().join("aof-copy");
    old_then_new(&cache, &key, &db, &org, || copy_dir(&aof, &copy)).await;

    server.kill();
    std::fs::remove_dir_all(&aof).unwrap();
    copy_dir(&copy, &aof);
    server.restart();
    assert!(
        holds(&url, &key, "old"),
        "the AOF did not bring the old entry back"
    );
    never_old_until_hits(&[&cache], &key, &db).await;
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for file in std::fs::read_dir(from).unwrap() {
        let file = file.unwrap();
        std::fs::copy(file.path(), to.join(file.file_name())).unwrap();
    }
}

/// A process that starts after the restore has no memory of the old server:
/// the marker in the restored data names the process that wrote it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_started_after_a_restore_from_an_old_snapshot_serves_none_of_it() {
    let dir = Dir::new("fresh");
    let mut server = server_in(&dir, &[]);
    let url = server.url();
    let ns = Namespace::new(&url);
    let (db, org) = (Db::default(), Scope::org(1));
    let (before, key) = {
        let (builder, store) = redis(&ns, fast_breaker(&url)).await;
        let cache = builder.build();
        let key = cache.key(Kind::List, "faculty", &org).build().unwrap();
        old_then_new(&cache, &key, &db, &org, || {
            let _: () = redis::cmd("SAVE").query(&mut conn(&url)).unwrap();
        })
        .await;
        (store.epoch(), key)
    };

    server.restart();
    assert!(
        holds(&url, &key, "old"),
        "the RDB did not bring the old entry back"
    );
    // Time for its first call even on a busy machine: a store that starts
    // without Redis counts an outage, which would protect it whatever the
    // marker says.
    let mut config = fast_breaker(&url);
    config.op_timeout = Duration::from_secs(2);
    let (builder, store) = redis(&ns, config).await;
    let cache = builder.build();
    assert!(
        store.epoch() > before,
        "the fresh store reads under the restored epoch"
    );
    never_old_until_hits(&[&cache], &key, &db).await;
}

/// An operator emptying the server breaks no connection: the periodic check
/// finds the marker gone and bumps the epoch, which every instance adopts, so
/// nothing validated before (here: an L1 entry) is served after it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_emptied_server_is_counted_and_nothing_from_before_it_is_served() {
    let server = RedisServer::start();
    let url = server.url();
    let ns = Namespace::new(&url);
    let (builder, store) = tiered(&ns, fast_breaker(&url), false).await;
    let cache = builder.build();
    let (peer_builder, peer) = redis(&ns, fast_breaker(&url)).await;
    let peer_cache = peer_builder.build();
    let (db, org) = (Db::new("old"), Scope::org(1));
    let key = cache.key(Kind::List, "faculty", &org).build().unwrap();
    expect(&cache, &key, &db, Status::Miss, "old").await;
    let r = cache
        .try_get_with(&key, db.loader(Duration::ZERO))
        .await
        .unwrap();
    assert_eq!(
        (r.status, r.tier),
        (Status::Hit, Some(tierstamp::store::Tier::L1))
    );
    // The database moved on, and the invalidation that said so was flushed
    // with the rest: an entry from before the flush would answer "old".
    db.write("new");
    let (before, peer_before) = (store.l2().epoch(), peer.epoch());

    // The fault under test, injected into this test's own redis-server (as
    // others kill or pause theirs): every key removed, SCAN + UNLINK (the
    // project never flushes; the effect on the data is the same).
    let mut conn = server.connection();
    let mut cursor = 0u64;
    loop {
        let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("COUNT")
            .arg(1000)
            .query(&mut conn)
            .unwrap();
        if !keys.is_empty() {
            let _: u64 = redis::cmd("UNLINK").arg(&keys).query(&mut conn).unwrap();
        }
        if next == 0 {
            break;
        }
        cursor = next;
    }
    wait_for(
        || store.l2().epoch() > before && peer.epoch() > peer_before,
        "both instances noticed the flush",
    )
    .await;
    never_old_until_hits(&[&cache, &peer_cache], &key, &db).await;
}

/// The process id of the server at `url`.
fn pid(url: &str) -> nix::unistd::Pid {
    nix::unistd::Pid::from_raw(info_field(url, "process_id").parse().unwrap())
}

/// Sentinel promotes a replica that never received the last bump. The replica
/// is stopped (SIGSTOP) and its link cut (`CLIENT KILL TYPE replica` on the
/// master) so that it cannot catch up, the bump lands on the master alone, the
/// master is killed and the replica resumed (SIGCONT) before the sentinels
/// judge it, so they promote it. Neither an instance that was idle during the
/// failover (no failed call, so no outage of its own) nor one started after it
/// may serve what the lost bump invalidated.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failover_to_a_replica_that_missed_the_last_bump_serves_nothing_written_before() {
    let name = format!("r{}", fastrand::u32(..));
    let mut sentinels = tokio::task::spawn_blocking(move || testkit::Sentinels::start(&name))
        .await
        .unwrap();
    let keys = KeyBuilder::new("restore", &format!("t{}", fastrand::u32(..))).unwrap();
    let mut config = fast(RedisConfig::sentinel(
        sentinels.urls(),
        sentinels.name.clone(),
    ));
    // Time for a Sentinel lookup on a store's first call: a store whose first
    // call fails counts an outage of its own, which would protect it here
    // whatever the new master's identity.
    config.op_timeout = Duration::from_secs(2);
    let (cache, _store) = plain(config.clone(), &keys).await;
    let (db, org) = (Db::default(), Scope::org(1));
    let key = cache.key(Kind::List, "faculty", &org).build().unwrap();
    let (master, replica) = (sentinels.data[0].url(), sentinels.data[1].url());
    let replica_port = sentinels.data[1].port;
    let replica_pid = pid(&replica);
    old_then_new(&cache, &key, &db, &org, || {
        // The replica has the old entry (it was in sync); from here on it
        // receives nothing.
        testkit::wait_until(
            Duration::from_secs(5),
            "the replica holds the entry",
            || holds(&replica, &key, "old"),
        );
        nix::sys::signal::kill(replica_pid, nix::sys::signal::Signal::SIGSTOP).unwrap();
        let _: () = redis::cmd("CLIENT")
            .arg("KILL")
            .arg("TYPE")
            .arg("replica")
            .query(&mut conn(&master))
            .unwrap();
    })
    .await;

    let old = sentinels.kill_master();
    nix::sys::signal::kill(replica_pid, nix::sys::signal::Signal::SIGCONT).unwrap();
    let (new, sentinels) = tokio::task::spawn_blocking(move || {
        let new = sentinels.wait_failover(old, Duration::from_secs(30));
        (new, sentinels)
    })
    .await
    .unwrap();
    assert_eq!(new, replica_port);
    assert!(
        holds(&replica, &key, "old"),
        "the promoted replica should lack the last bump"
    );
    // The fresh instance first: a failed call of the idle one would count as
    // an outage and bump the epoch for both (the rule that covers an instance
    // that saw the failover); the new master's own identity must suffice.
    let (fresh, _fresh_store) = plain(config, &keys).await;
    never_old_until_hits(&[&fresh], &key, &db).await;
    never_old_until_hits(&[&cache], &key, &db).await;
    drop(sentinels);
}

/// A Cluster master restarted from its RDB before the cluster fails it over:
/// redis-rs reconnects to it by itself, so an idle instance may see no failed
/// call. The periodic check sees the master's new `run_id` (this one is not
/// the node holding the epoch and its marker) and counts an outage.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_master_restarted_from_its_rdb_is_noticed_by_an_idle_instance() {
    let mut cluster = tokio::task::spawn_blocking(|| testkit::Cluster::start(3, 0))
        .await
        .unwrap();
    let keys = KeyBuilder::new("restore", &format!("t{}", fastrand::u32(..))).unwrap();
    let (cache, store) = plain(fast(RedisConfig::cluster(cluster.urls())), &keys).await;
    let epoch_node = cluster.master_of(&format!("{}:epoch", keys.prefix()));
    let (org, key) = (1..100)
        .map(|o| {
            let org = Scope::org(o);
            let key = cache.key(Kind::List, "faculty", &org).build().unwrap();
            (org, key)
        })
        .find(|(_, key)| cluster.master_of(key.as_str()) != epoch_node)
        .unwrap();
    // The marker check runs in a Cluster too, as one script in the epoch's
    // slot: the marker names the process of the epoch's master.
    let epoch_url = format!("redis://127.0.0.1:{epoch_node}/");
    let run_id = info_field(&epoch_url, "run_id");
    let marker = format!("{{{}:epoch}}:identity", keys.prefix());
    wait_for(
        || {
            redis::cmd("GET")
                .arg(&marker)
                .query::<Option<String>>(&mut conn(&epoch_url))
                .unwrap()
                .as_deref()
                == Some(run_id.as_str())
        },
        "the marker on the epoch's master",
    )
    .await;
    let victim = cluster.master_of(key.as_str());
    let url = format!("redis://127.0.0.1:{victim}/");
    let db = Db::default();
    old_then_new(&cache, &key, &db, &org, || {
        let _: () = redis::cmd("SAVE").query(&mut conn(&url)).unwrap();
    })
    .await;
    // Only this node saves: the cluster's shared directory's dump.rdb is its.
    let epoch = store.epoch();

    cluster.node(victim).restart();
    // Back in the cluster (it answers CLUSTERDOWN until it has met the others).
    let cluster = tokio::task::spawn_blocking(move || {
        cluster.wait_healthy(Duration::from_secs(30));
        cluster
    })
    .await
    .unwrap();
    assert!(
        holds(&url, &key, "old"),
        "the RDB did not bring the old entry back"
    );
    wait_for(
        || !store.is_clean() || store.epoch() > epoch,
        "the idle instance noticed the restart",
    )
    .await;
    never_old_until_hits(&[&cache], &key, &db).await;
    drop(cluster);
}
