//! Scale-out (SPEC §5.11): the same load and history checker, with the two
//! `campus serve` processes on a Redis Cluster (3 masters + 3 replicas) or
//! behind Sentinel (master + replica + 3 sentinels), deployed by `testkit` on
//! free loopback ports; a master is killed mid-load. No 5xx may reach a client
//! (the breaker answers `BYPASS`), caching must resume by itself (`X-Cache:
//! HIT` on every instance again), and the checker finds no stale read and no
//! lost write. `CHAOS_FULL=1` runs the load longer, like the other scenarios.

use std::time::{Duration, Instant};

use crate::Rig;
use crate::scenarios::{WINDOWS, begin, finish, until_hits};

const PAGE: &str = "/api/departments/?page_size=500";

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cluster_master_killed() {
    let mut cluster = tokio::task::spawn_blocking(|| testkit::Cluster::start(3, 1))
        .await
        .unwrap();
    let urls = cluster.url_list();
    let extra: &[(&str, &str)] = &[("REDIS_MODE", "cluster"), ("REDIS_URL", &urls)];
    let rig = Rig::start("cluster", &[extra, extra]).await;
    let run = begin(&rig).await;
    // The master holding the first organization's entries and counters.
    let victim = cluster.master_of("{org_1}");
    let t0 = Instant::now();
    cluster.kill(victim);
    let resumed = until_hits(&run.world, PAGE, Duration::from_secs(30)).await;
    let t1 = Instant::now();
    let cluster = tokio::task::spawn_blocking(move || {
        cluster.wait_healthy(Duration::from_secs(30));
        cluster
    })
    .await
    .unwrap();
    let out = finish(&rig, run, (t0, t1), WINDOWS).await;
    out.assert_correct();
    assert_eq!(
        out.all.s5xx + out.all.transport,
        0,
        "a master's failover must cost no error"
    );
    let resumed = resumed.expect("caching never resumed after the failover");
    println!(
        "cluster: master {victim} killed; HIT again on every instance {:.2} s later; BYPASS during {}",
        resumed.as_secs_f64(),
        out.during.bypass()
    );
    out.row(
        "cluster_master_killed",
        "Redis Cluster (3+3): a master SIGKILLed, its replica promoted",
        format!(
            "BYPASS {} during; HIT again on both instances {:.2} s after the kill",
            out.during.bypass(),
            resumed.as_secs_f64()
        ),
    );
    cache_stats_walks_every_master(&rig, &cluster, &urls);
    drop(cluster);
}

/// `cache-stats` counts the keys of every master, and `--clear` removes them
/// from every master (and nothing else).
fn cache_stats_walks_every_master(rig: &Rig, cluster: &testkit::Cluster, urls: &str) {
    let mut env = rig.env.clone();
    env.extend(
        [("REDIS_MODE", "cluster"), ("REDIS_URL", urls)]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string())),
    );
    let count = |pattern: &str| -> Vec<usize> {
        cluster
            .masters()
            .iter()
            .map(|p| {
                let mut c = redis::Client::open(format!("redis://127.0.0.1:{p}/"))
                    .unwrap()
                    .get_connection()
                    .unwrap();
                testkit::scan(&mut c, pattern).unwrap().len()
            })
            .collect()
    };
    let mut other = redis::Client::open(format!(
        "redis://127.0.0.1:{}/",
        cluster.master_of("other:{x}")
    ))
    .unwrap()
    .get_connection()
    .unwrap();
    let _: () = redis::cmd("SET")
        .arg("other:{x}")
        .arg("1")
        .query(&mut other)
        .unwrap();
    let per_master = count(&format!("{}:*", crate::PREFIX));
    assert!(
        per_master.iter().filter(|&&n| n > 0).count() >= 2,
        "the keys should span masters: {per_master:?}"
    );
    let out = crate::procs::Campus::campus_cmd(&env)
        .args(["cache-stats", "--json"])
        .output()
        .unwrap();
    let report: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|_| panic!("cache-stats: {}", String::from_utf8_lossy(&out.stderr)));
    // Instances keep writing their counters meanwhile: at least what was there.
    let total = report["total_keys"].as_u64().unwrap() as usize;
    assert!(
        total >= per_master.iter().sum::<usize>() - 2,
        "cache-stats saw {total} keys, the masters hold {per_master:?}"
    );
    let out = crate::procs::Campus::campus_cmd(&env)
        .args([
            "cache-stats",
            "--clear",
            "--json",
            "--min-lookups",
            "1000000000",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "cache-stats --clear: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Only the instances' own counter hashes may have been written since.
    let left: usize = count(&format!("{}:*", crate::PREFIX)).iter().sum();
    assert!(left <= 2, "{left} keys left after --clear");
    assert_eq!(
        count("other:*").iter().sum::<usize>(),
        1,
        "--clear touched another prefix"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sentinel_master_killed() {
    let name = format!("campus{}", fastrand::u32(..));
    let mut sentinels = tokio::task::spawn_blocking(move || testkit::Sentinels::start(&name))
        .await
        .unwrap();
    let urls = sentinels.url_list();
    let extra: &[(&str, &str)] = &[
        ("REDIS_MODE", "sentinel"),
        ("REDIS_URL", &urls),
        ("REDIS_SENTINEL_MASTER", &sentinels.name),
    ];
    let rig = Rig::start("sentinel", &[extra, extra]).await;
    let run = begin(&rig).await;
    let t0 = Instant::now();
    let old = sentinels.kill_master();
    let resumed = until_hits(&run.world, PAGE, Duration::from_secs(40)).await;
    let t1 = Instant::now();
    let (new, sentinels) = tokio::task::spawn_blocking(move || {
        (
            sentinels.wait_failover(old, Duration::from_secs(30)),
            sentinels,
        )
    })
    .await
    .unwrap();
    let out = finish(&rig, run, (t0, t1), WINDOWS).await;
    out.assert_correct();
    assert_eq!(
        out.all.s5xx + out.all.transport,
        0,
        "a master's failover must cost no error"
    );
    let resumed = resumed.expect("caching never resumed after the failover");
    println!(
        "sentinel: master {old} killed, {new} promoted; HIT again on every instance {:.2} s later; BYPASS during {}",
        resumed.as_secs_f64(),
        out.during.bypass()
    );
    out.row(
        "sentinel_master_killed",
        "Sentinel (master + replica, 3 sentinels): the master SIGKILLed, the replica promoted",
        format!(
            "BYPASS {} during; HIT again on both instances {:.2} s after the kill",
            out.during.bypass(),
            resumed.as_secs_f64()
        ),
    );
    drop(sentinels);
}
