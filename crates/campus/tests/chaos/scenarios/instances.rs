//! Several `campus serve` instances on one deployment: one killed (and the
//! lease it held), a thousand cold requests across two coalesced into one
//! query, and two cache versions side by side.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use reqwest::Method;
use sea_orm::sqlx;

use super::{WINDOWS, begin, finish};
use crate::load::{Summary, World};
use crate::{Rig, Row};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_instance_killed_and_the_lease_it_held() {
    // A slow Redis answer on a saturated host must not make the survivor bypass
    // the key (and so never meet the dead holder's lease).
    let patient: &[(&str, &str)] = &[("REDIS_TIMEOUT_MS", "3000")];
    let mut rig = Rig::start("instancekill", &[patient, patient]).await;
    let run = begin(&rig).await;
    let t0 = Instant::now();
    run.world.up[1].store(false, Ordering::SeqCst);
    rig.campus[1].kill();
    let t1 = Instant::now();
    let world = run.world.clone();
    let out = finish(&rig, run, (t0, t1), WINDOWS).await;
    out.assert_correct();
    let survivor = {
        let samples = world.samples.lock().unwrap();
        Summary::of(samples.iter().filter(|s| s.instance == 0))
    };
    assert_eq!(
        survivor.s5xx + survivor.transport,
        0,
        "the survivor failed requests"
    );
    let killed_errors = out.all.transport;

    // The lease: a loader of a restarted instance 1 takes one for a cold key and
    // blocks on a table lock; it is killed holding it. The survivor must load the
    // key itself once the lease expires, not wait forever nor fail.
    let mut env = rig.env.clone();
    env.push(("REDIS_TIMEOUT_MS".into(), "3000".into()));
    rig.campus[1] = crate::procs::Campus::spawn("campus1b", &rig.scratch.0, &env);
    rig.wait_ready(&rig.campus[1]).await;
    let mut lock = rig.db.begin().await.unwrap();
    sqlx::query("LOCK TABLE departments IN ACCESS EXCLUSIVE MODE")
        .execute(&mut *lock)
        .await
        .unwrap();
    let term = format!("lease{}", fastrand::u32(..));
    let path = format!("/api/departments/?search={term}");
    let token = world.orgs[0].token.clone();
    let url = format!("{}{path}", rig.campus[1].base);
    // One Host for both instances, as behind a load balancer: the key (its
    // `next` links) depends on it, and the survivor must want the same key.
    let blocked = tokio::spawn(async move {
        reqwest::Client::new()
            .get(url)
            .header("host", "campus.example")
            .bearer_auth(token)
            .send()
            .await
    });
    let deadline = Instant::now() + Duration::from_secs(10);
    let leases = loop {
        // This key's lease only (the search term is in the key as it is), not a
        // background refresh's.
        let leases = rig
            .redis
            .scan(&format!("{}:*search={term}*:lease", crate::PREFIX));
        if !leases.is_empty() {
            break leases;
        }
        assert!(Instant::now() < deadline, "the loader never took a lease");
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    rig.campus[1].kill();
    blocked.abort();
    lock.rollback().await.unwrap();
    let t = Instant::now();
    let r = reqwest::Client::new()
        .get(format!("{}{path}", rig.campus[0].base))
        .header("host", "campus.example")
        .bearer_auth(&world.orgs[0].token)
        .send()
        .await
        .unwrap();
    let waited = t.elapsed();
    let status = r.status().as_u16();
    let x_cache = r.headers()["x-cache"].to_str().unwrap().to_owned();
    assert_eq!(status, 200, "the survivor failed the key whose lease died");
    assert_eq!(
        x_cache, "MISS",
        "the survivor should have waited out the lease and loaded the key itself"
    );
    // The dead holder's lease is gone now: it expired (the survivor's own lease
    // was released when it stored the key).
    assert!(
        rig.redis.scan(&leases[0]).is_empty(),
        "the lease outlived its TTL"
    );
    assert!(
        waited < Duration::from_secs(10),
        "the survivor waited past the lease wait: {waited:?}"
    );
    println!(
        "lease {leases:?} of a killed loader: the survivor answered {x_cache} after {waited:?}"
    );
    out.row(
        "an_instance_killed_and_the_lease_it_held",
        "instance 1 SIGKILLed under load; then killed again holding a lease",
        format!(
            "{killed_errors} requests in flight on the killed instance got no answer; the survivor: 0 errors; a dead holder's lease (TTL 5 s) delayed its key {:.2} s, then {x_cache}",
            waited.as_secs_f64()
        ),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_thousand_cold_requests_across_two_instances_query_once() {
    // On a saturated 2-core host (1000 connections, two servers, PostgreSQL,
    // Redis and the rest of the suite) Redis answers can take longer than the
    // default 250 ms; the breaker would then open and those requests bypass
    // the cache by design. This scenario is about coalescing, not degradation.
    let patient: &[(&str, &str)] = &[("REDIS_TIMEOUT_MS", "3000")];
    let rig = Rig::start("stampede", &[patient, patient]).await;
    let world = Arc::new(World::new(rig.bases(), 1).await);
    let token = world.orgs[0].token.clone();
    // The auth record of the token is cached on both instances first: only the
    // list's own queries are counted.
    for i in 0..2 {
        world
            .send(i, Method::GET, "/api/auth/me/", &token, None)
            .await;
    }
    let path = "/api/students/?page_size=100&ordering=-batch&semester=3";
    let reset = || sqlx::query("SELECT pg_stat_statements_reset()").execute(&rig.db);
    reset().await.unwrap();
    // Hold the table so that every request is in flight before the first load
    // can finish: the test proves coalescing, not speed.
    let mut lock = rig.db.begin().await.unwrap();
    sqlx::query("LOCK TABLE students IN ACCESS EXCLUSIVE MODE")
        .execute(&mut *lock)
        .await
        .unwrap();
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(1000)
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let tasks: Vec<_> = (0..1000)
        .map(|n| {
            let url = format!("{}{path}", world.bases[n % 2]);
            let (client, token) = (client.clone(), token.clone());
            tokio::spawn(async move {
                // Behind a load balancer every instance sees one Host; the list's
                // `next` links (and so its key) depend on it.
                let r = client
                    .get(url)
                    .header("host", "campus.example")
                    .bearer_auth(token)
                    .send()
                    .await
                    .unwrap();
                let x = r.headers()["x-cache"].to_str().unwrap().to_owned();
                (r.status().as_u16(), x, r.bytes().await.unwrap())
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_secs(3)).await;
    lock.rollback().await.unwrap();
    let mut bodies = std::collections::HashSet::new();
    let mut x_cache = std::collections::HashMap::<String, usize>::new();
    for t in tasks {
        let (status, x, body) = t.await.unwrap();
        assert_eq!(status, 200);
        *x_cache.entry(x).or_default() += 1;
        bodies.insert(body);
    }
    assert_eq!(bodies.len(), 1, "callers got different answers");
    let rows = sqlx::query(
        "SELECT query, calls FROM pg_stat_statements \
         WHERE query ILIKE '%FROM \"students\"%' AND query NOT ILIKE '%pg_stat_statements%'",
    )
    .fetch_all(&rig.db)
    .await
    .unwrap();
    use sea_orm::sqlx::Row as _;
    let calls: Vec<(String, i64)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    println!("statements on students: {calls:?}; x-cache {x_cache:?}");
    assert!(!calls.is_empty(), "pg_stat_statements saw no query at all");
    for (q, n) in &calls {
        assert_eq!(*n, 1, "{n} calls of {q}");
    }
    let summary = Summary::default();
    let row = Row {
        scenario: "a_thousand_cold_requests_across_two_instances_query_once",
        fault:
            "1000 concurrent cold requests for one list, 500 per instance, table held locked 3 s"
                .into(),
        load: Summary {
            requests: 1000,
            ..summary.clone()
        },
        readers: 1000,
        writers: 0,
        stale: 0,
        in_window: "n/a".into(),
        lost: 0,
        during: summary,
        notes: format!(
            "{} statements on students, each called once (pg_stat_statements); one body for all; X-Cache {x_cache:?}",
            calls.len()
        ),
    };
    row.write();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_cache_versions_side_by_side() {
    let rig = Rig::start(
        "versions",
        &[&[("CACHE_VERSION", "v1")], &[("CACHE_VERSION", "v2")]],
    )
    .await;
    let run = begin(&rig).await;
    let t = Instant::now();
    tokio::time::sleep(run.mode.warm).await;
    let out = finish(&rig, run, (t, Instant::now()), WINDOWS).await;
    out.assert_correct();
    assert_eq!(out.all.s5xx + out.all.transport, 0);
    assert!(out.all.hits() > 0);
    out.row(
        "two_cache_versions_side_by_side",
        "instance 0 on `CACHE_VERSION=v1`, instance 1 on `v2`",
        format!(
            "hits {}; versioned entries, shared counters",
            out.all.hits()
        ),
    );
}
