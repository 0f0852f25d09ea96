//! Failover under load: a master of the Cluster, or the Sentinel deployment's
//! master, killed while readers and a writer run.
//!
//! The failover tests run a bounded load (readers on two instances, a writer
//! invalidating as it goes), kill a master, and check that no call fails (the
//! breaker's window answers `BYPASS`), that caching resumes by itself, and that
//! no read returns a value older than a write whose invalidation had returned.
//! They print the time from the kill to the first hit on the failed shard.
//! `SCALEOUT_FULL=1` runs the load for longer after the failover and kills a
//! second master (the Cluster) or the new master (Sentinel) too.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tierstamp::{Cache, Kind, RedisConfig, Scope, Status};

use super::{layered, namespace, plain, tuned};
use crate::helpers::*;

fn full() -> bool {
    std::env::var("SCALEOUT_FULL").is_ok_and(|v| v == "1")
}

/// What the load saw.
#[derive(Default)]
struct Seen {
    reads: AtomicUsize,
    bypass: AtomicUsize,
    errors: std::sync::Mutex<Vec<String>>,
    stale: std::sync::Mutex<Vec<String>>,
    /// Milliseconds since the load started of the last BYPASS.
    last_bypass_ms: AtomicU64,
}

const ORGS: i64 = 12;

/// Readers on every cache, a writer on the first: each org's value is its
/// version; a read must never return a version older than the last one whose
/// invalidation returned before the read started.
struct Load {
    stop: Arc<AtomicBool>,
    seen: Arc<Seen>,
    committed: Arc<Vec<AtomicU64>>,
    dbs: Arc<Vec<Db>>,
    started: Instant,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    fn start(caches: &[Cache]) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let seen = Arc::new(Seen::default());
        let committed: Arc<Vec<AtomicU64>> =
            Arc::new((0..ORGS).map(|_| AtomicU64::new(0)).collect());
        let dbs: Arc<Vec<Db>> = Arc::new((0..ORGS).map(|_| Db::new("0")).collect());
        let started = Instant::now();
        let mut tasks = Vec::new();
        for (i, cache) in caches.iter().enumerate() {
            for r in 0..2 {
                let (cache, stop, seen, committed, dbs) = (
                    cache.clone(),
                    stop.clone(),
                    seen.clone(),
                    committed.clone(),
                    dbs.clone(),
                );
                tasks.push(tokio::spawn(async move {
                    let mut n = (i * 7 + r) as i64;
                    while !stop.load(Ordering::SeqCst) {
                        n += 1;
                        let org = n % ORGS;
                        let floor = committed[org as usize].load(Ordering::SeqCst);
                        let key = cache.key(Kind::List, "faculty", &Scope::org(org + 1)).build().unwrap();
                        match cache.try_get_with(&key, dbs[org as usize].loader(Duration::ZERO)).await {
                            Ok(l) => {
                                seen.reads.fetch_add(1, Ordering::Relaxed);
                                if l.status == Status::Bypass {
                                    seen.bypass.fetch_add(1, Ordering::Relaxed);
                                    seen.last_bypass_ms.fetch_max(started.elapsed().as_millis() as u64, Ordering::Relaxed);
                                }
                                let v: u64 = text(&l.body).parse().unwrap();
                                if v < floor {
                                    seen.stale.lock().unwrap().push(format!(
                                        "instance {i}: org {} read v{v} ({:?}) after v{floor} was committed",
                                        org + 1,
                                        l.status
                                    ));
                                }
                            }
                            Err(e) => seen.errors.lock().unwrap().push(e.to_string()),
                        }
                        tokio::time::sleep(Duration::from_millis(2)).await;
                    }
                }));
            }
        }
        let (writer, stop2, committed2, dbs2) = (
            caches[0].clone(),
            stop.clone(),
            committed.clone(),
            dbs.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut version = 0u64;
            while !stop2.load(Ordering::SeqCst) {
                version += 1;
                let org = (version % ORGS as u64) as usize;
                dbs2[org].write(&version.to_string());
                writer
                    .invalidate("faculty", &Scope::org(org as i64 + 1))
                    .await;
                committed2[org].store(version, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
        }));
        Load {
            stop,
            seen,
            committed,
            dbs,
            started,
            tasks,
        }
    }

    async fn stop(self) -> Arc<Seen> {
        self.stop.store(true, Ordering::SeqCst);
        for t in self.tasks {
            t.await.unwrap();
        }
        self.seen
    }
}

/// Waits for the first HIT on `org`'s key through `cache` after a kill; returns
/// the time since `since`.
async fn until_hit(cache: &Cache, db: &Db, org: i64, since: Instant, limit: Duration) -> Duration {
    let key = cache
        .key(Kind::List, "faculty", &Scope::org(org))
        .build()
        .unwrap();
    loop {
        let r = cache
            .try_get_with(&key, db.loader(Duration::ZERO))
            .await
            .unwrap();
        if r.status == Status::Hit {
            return since.elapsed();
        }
        assert!(
            since.elapsed() < limit,
            "caching did not resume within {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// After the failover: a write, then reads on every instance, must be fresh.
async fn fresh_after(caches: &[Cache], load_dbs: &[Db]) {
    for org in 1..=ORGS {
        let db = &load_dbs[(org - 1) as usize];
        let v = format!("{}", 1_000_000 + org);
        db.write(&v);
        caches[0].invalidate("faculty", &Scope::org(org)).await;
        for (i, c) in caches.iter().enumerate() {
            let key = c
                .key(Kind::List, "faculty", &Scope::org(org))
                .build()
                .unwrap();
            let r = c
                .try_get_with(&key, db.loader(Duration::ZERO))
                .await
                .unwrap();
            assert_eq!(
                text(&r.body),
                v,
                "instance {i}, org {org}: stale after the failover ({:?})",
                r.status
            );
        }
    }
}

fn report(what: &str, seen: &Seen, resume: Duration) {
    let errors = seen.errors.lock().unwrap();
    let stale = seen.stale.lock().unwrap();
    println!(
        "{what}: caching resumed {:.2} s after the kill; {} reads, {} BYPASS, {} errors, {} stale",
        resume.as_secs_f64(),
        seen.reads.load(Ordering::Relaxed),
        seen.bypass.load(Ordering::Relaxed),
        errors.len(),
        stale.len()
    );
    assert!(
        errors.is_empty(),
        "errors surfaced: {:?}",
        &errors[..errors.len().min(5)]
    );
    assert!(
        stale.is_empty(),
        "stale reads: {:?}",
        &stale[..stale.len().min(5)]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_master_killed_under_load_fails_over_without_errors_or_stale_reads() {
    let mut cluster = tokio::task::spawn_blocking(|| testkit::Cluster::start(3, 1))
        .await
        .unwrap();
    let keys = namespace();
    let config = tuned(RedisConfig::cluster(cluster.urls()));
    let (a, _sa) = layered(config.clone(), &keys).await;
    let (b, _sb) = plain(config.clone(), &keys).await;
    let caches = vec![a.clone(), b.clone()];
    let load = Load::start(&caches);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rounds = if full() { 2 } else { 1 };
    let mut resumes = Vec::new();
    for round in 0..rounds {
        // The master of org 1's slot.
        let key = a
            .key(Kind::List, "faculty", &Scope::org(1))
            .build()
            .unwrap();
        let victim = cluster.master_of(key.as_str());
        let killed = Instant::now();
        cluster.kill(victim);
        let resume = until_hit(&b, &load.dbs[0], 1, killed, Duration::from_secs(30)).await;
        let c = cluster;
        cluster = tokio::task::spawn_blocking(move || {
            c.wait_healthy(Duration::from_secs(30));
            c
        })
        .await
        .unwrap();
        println!(
            "cluster round {round}: master {victim} killed, first hit on its shard after {resume:?}"
        );
        resumes.push(resume);
        tokio::time::sleep(Duration::from_secs(if full() { 10 } else { 1 })).await;
        if full() {
            // The old master comes back as a replica of its successor.
            cluster.node(victim).restart();
            let c = cluster;
            cluster = tokio::task::spawn_blocking(move || {
                c.wait_healthy(Duration::from_secs(30));
                c
            })
            .await
            .unwrap();
        }
    }
    let dbs = load.dbs.clone();
    let seen = load.stop().await;
    fresh_after(&caches, &dbs).await;
    report("cluster failover", &seen, resumes[0]);
    let last_bypass = Duration::from_millis(seen.last_bypass_ms.load(Ordering::Relaxed));
    println!("cluster failover: last BYPASS {last_bypass:?} after the load started");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sentinel_master_killed_under_load_fails_over_and_the_store_follows() {
    let name = format!("m{}", fastrand::u32(..));
    let mut sentinels = tokio::task::spawn_blocking(move || testkit::Sentinels::start(&name))
        .await
        .unwrap();
    let keys = namespace();
    let config = tuned(RedisConfig::sentinel(
        sentinels.urls(),
        sentinels.name.clone(),
    ));
    let (a, _sa) = layered(config.clone(), &keys).await;
    let (b, _sb) = plain(config.clone(), &keys).await;
    // An instance that serves nothing: only its subscriber notices the failover.
    let (_idle, idle) = layered(config.clone(), &keys).await;
    let caches = vec![a.clone(), b.clone()];
    let load = Load::start(&caches);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rounds = if full() { 2 } else { 1 };
    let mut resumes = Vec::new();
    for round in 0..rounds {
        let subscriptions = idle.l2().channel_connects();
        let old = sentinels.kill_master();
        let killed = Instant::now();
        let resume = until_hit(&b, &load.dbs[0], 1, killed, Duration::from_secs(40)).await;
        let s = sentinels;
        let (new, s) = tokio::task::spawn_blocking(move || {
            let new = s.wait_failover(old, Duration::from_secs(30));
            (new, s)
        })
        .await
        .unwrap();
        sentinels = s;
        println!(
            "sentinel round {round}: master {old} killed, {new} promoted, first hit after {resume:?}"
        );
        resumes.push(resume);
        // The idle instance's channel is back, on the new master, by itself.
        let t = Instant::now();
        while !(idle.l2().channel_up() && idle.l2().channel_connects() > subscriptions) {
            assert!(
                t.elapsed() < Duration::from_secs(15),
                "the idle instance's channel did not follow the failover"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        tokio::time::sleep(Duration::from_secs(if full() { 10 } else { 1 })).await;
        if full() {
            // The old master comes back (as a replica, once the sentinels
            // reconfigure it) so that there is a replica to fail over to again.
            let node = sentinels.data.iter_mut().find(|s| s.port == old).unwrap();
            node.restart();
            let mut c = redis::Client::open(node.url())
                .unwrap()
                .get_connection()
                .unwrap();
            let _: redis::RedisResult<()> = redis::cmd("REPLICAOF")
                .arg("127.0.0.1")
                .arg(new)
                .query(&mut c);
            tokio::time::sleep(Duration::from_secs(5)).await;
        }
    }
    let dbs = load.dbs.clone();
    let seen = load.stop().await;
    fresh_after(&caches, &dbs).await;
    report("sentinel failover", &seen, resumes[0]);
}
