//! Redis faults: killed, paused, its pub/sub connections cut, and one instance
//! cut off from it while the other keeps it. None may cost an error, a stale
//! read past its window, or a lost write.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::{OUTSIDE, WINDOWS, begin, finish, until_hits};
use crate::history::Windows;
use crate::{Rig, metric_sum};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_killed_for_five_seconds() {
    let mut rig = Rig::start("rediskill", &[&[], &[]]).await;
    let run = begin(&rig).await;
    let calls_before: f64 = metric_sum(&rig.campus[0].base, "tiercache_redis_seconds_count").await;
    let t0 = Instant::now();
    rig.redis.kill();
    // The breaker opens after a few failed calls; from then on no request may
    // wait on Redis.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let open_from = Instant::now();
    let calls_open: f64 = metric_sum(&rig.campus[0].base, "tiercache_redis_seconds_count").await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    let calls_open_end: f64 =
        metric_sum(&rig.campus[0].base, "tiercache_redis_seconds_count").await;
    let open_to = Instant::now();
    rig.redis.restart();
    let t1 = Instant::now();
    let resumed = until_hits(
        &run.world,
        "/api/departments/?page_size=500",
        Duration::from_secs(15),
    )
    .await;
    let open = run.world.samples_between(open_from, open_to);
    let out = finish(&rig, run, (t0, t1), WINDOWS).await;
    out.assert_correct();
    assert_eq!(
        out.all.s5xx + out.all.transport,
        0,
        "Redis down must cost no error"
    );
    assert!(
        out.during.bypass() > 0,
        "no BYPASS during the outage: {:?}",
        out.during.x_cache
    );
    let resumed = resumed.expect("caching never resumed after Redis came back");
    // Instance 0's own calls while its breaker was open: probes only, not one per
    // request.
    let attempts = calls_open_end - calls_open;
    let requests0 = out
        .world
        .samples
        .lock()
        .unwrap()
        .iter()
        .filter(|s| s.instance == 0 && s.start >= open_from && s.start < open_to)
        .count();
    println!(
        "Redis calls of instance 0: {} before the kill; {attempts} while open, for {requests0} requests; open-breaker p99 {:?}; hits again {resumed:?} after restart",
        calls_before, open.p99
    );
    assert!(
        attempts * 10.0 < requests0 as f64,
        "{attempts} Redis calls for {requests0} requests while the breaker was open"
    );
    out.row(
        "redis_killed_for_five_seconds",
        "Redis SIGKILL, restarted empty after 5 s",
        format!(
            "BYPASS {} during; p99 with the breaker open {:.1} ms; {attempts} Redis calls for {requests0} requests while open; HIT again {:.2} s after restart",
            out.during.bypass(),
            open.p99.as_secs_f64() * 1e3,
            resumed.as_secs_f64()
        ),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_paused() {
    let rig = Rig::start("redispause", &[&[], &[]]).await;
    let run = begin(&rig).await;
    let t0 = Instant::now();
    rig.redis.pause(3000);
    tokio::time::sleep(Duration::from_millis(3000)).await;
    let t1 = Instant::now();
    let resumed = until_hits(
        &run.world,
        "/api/departments/?page_size=500",
        Duration::from_secs(15),
    )
    .await;
    // A hung Redis answers no channel ping: each instance's L1 stops within the
    // operation timeout of the pause, and a write that could not reach Redis
    // waits that long before its response. No window beyond the broadcast one.
    let out = finish(&rig, run, (t0, t1), WINDOWS).await;
    out.assert_correct();
    assert_eq!(out.all.s5xx + out.all.transport, 0);
    let resumed = resumed.expect("caching never resumed after the pause");
    out.row(
        "redis_paused",
        "`CLIENT PAUSE 3000 ALL`",
        format!(
            "BYPASS {} during; HIT again {:.2} s after; no window beyond the broadcast one for other instances' L1",
            out.during.bypass(),
            resumed.as_secs_f64()
        ),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pubsub_connection_cut() {
    let rig = Rig::start("pubsub", &[&[], &[]]).await;
    let run = begin(&rig).await;
    let t0 = Instant::now();
    let mut cut = 0;
    for _ in 0..3 {
        cut += rig.redis.kill_pubsub();
        tokio::time::sleep(Duration::from_millis(700)).await;
    }
    let t1 = Instant::now();
    let out = finish(&rig, run, (t0, t1), WINDOWS).await;
    out.assert_correct();
    assert!(cut >= 2, "no subscription was cut");
    assert_eq!(out.all.s5xx + out.all.transport, 0);
    out.row(
        "pubsub_connection_cut",
        "`CLIENT KILL TYPE pubsub`, 3 times, 0.7 s apart",
        format!("{cut} subscriptions cut; L1 unused while down"),
    );
}

/// A partial failure: instance 0 loses Redis, instance 1 keeps it. Instance 0's
/// writes cannot bump the counters; instance 1 would serve their old rows from
/// Redis until instance 0 reconnects, unless told another way: the write sends
/// its invalidation through PostgreSQL (NOTIFY), and instance 1 applies it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_instance_cut_off_from_redis() {
    let mut rig = Rig::start_with("cutoff", &[&[], &[]], true).await;
    let run = begin(&rig).await;
    // Every write goes through the cut-off instance meanwhile: a write through
    // instance 1 would bump the same counters and hide a missed invalidation.
    run.world.writes_to.store(0, Ordering::SeqCst);
    let t0 = Instant::now();
    rig.proxy.as_mut().unwrap().cut().await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    rig.proxy.as_mut().unwrap().restore().await;
    let t1 = Instant::now();
    run.world.writes_to.store(usize::MAX, Ordering::SeqCst);
    {
        let samples = run.world.samples.lock().unwrap();
        let mut slow: Vec<_> = samples
            .iter()
            .filter(|s| s.start >= t0 && s.start < t1)
            .collect();
        slow.sort_by_key(|s| std::cmp::Reverse(s.took));
        for s in slow.iter().take(8) {
            println!(
                "slow during the cut: {:?} at +{:?} instance {} write {} status {} {}",
                s.took,
                s.start - t0,
                s.instance,
                s.write,
                s.status,
                s.path
            );
        }
    }
    let undelivered = {
        let samples = run.world.samples.lock().unwrap();
        samples
            .iter()
            .filter(|s| s.write && s.instance == 0 && s.start >= t0 && s.start < t1)
            .count()
    };
    // Instance 1 learns of instance 0's writes through PostgreSQL: the window of
    // an outside write, not of the pub/sub broadcast.
    let windows = Windows {
        broadcast: OUTSIDE,
        outside: OUTSIDE,
    };
    let out = finish(&rig, run, (t0, t1), windows).await;
    out.assert_correct();
    assert_eq!(out.all.s5xx + out.all.transport, 0);
    assert!(undelivered > 0, "instance 0 wrote nothing while cut off");
    let log = std::fs::read_to_string(&rig.campus[0].log).unwrap();
    let notified = log.matches("invalidation sent through PostgreSQL").count();
    assert!(notified > 0, "no invalidation went through PostgreSQL");
    out.row(
        "one_instance_cut_off_from_redis",
        "instance 0's connection to Redis cut for 3 s (a proxy), instance 1 keeps its own",
        format!(
            "{undelivered} writes through instance 0 while cut off, {notified} invalidations sent through PostgreSQL; lagging reads of instance 1 max {:.1} ms",
            out.verdict.max_lag_in_window.as_secs_f64() * 1e3
        ),
    );
}
