//! L1 coherence across instances: the invalidation channel, strict mode, and what
//! happens when the channel drops.

use std::time::{Duration, Instant};

use tierstamp::store::Tier;
use tierstamp::{Kind, Scope, Status};

use crate::helpers::*;

#[tokio::test]
async fn an_instances_own_write_is_seen_at_once_through_its_l1() {
    let url = redis_url();
    let ns = Namespace::new(&url);
    let a = tiered(&ns, fast_breaker(&url), false).await.0.build();
    let db = Db::new("v1");
    let org = Scope::org(1);
    let key = a.key(Kind::List, "faculty", &org).build().unwrap();
    a.try_get_with(&key, db.loader(Duration::ZERO))
        .await
        .unwrap();
    let r = a
        .try_get_with(&key, db.loader(Duration::ZERO))
        .await
        .unwrap();
    assert_eq!(r.tier, Some(Tier::L1));
    db.write("v2");
    a.invalidate("department", &org).await;
    let r = a
        .try_get_with(&key, db.loader(Duration::ZERO))
        .await
        .unwrap();
    assert_eq!((r.status, text(&r.body)), (Status::Miss, "v2"));
}

#[tokio::test]
async fn another_instances_l1_converges_within_the_broadcast_delay() {
    let url = redis_url();
    let ns = Namespace::new(&url);
    let a = tiered(&ns, fast_breaker(&url), false).await.0.build();
    let b = tiered(&ns, fast_breaker(&url), false).await.0.build();
    let db = Db::new("v1");
    let org = Scope::org(1);
    let key = b.key(Kind::List, "faculty", &org).build().unwrap();
    let mut delays = Vec::new();
    for round in 0..20 {
        b.try_get_with(&key, db.loader(Duration::ZERO))
            .await
            .unwrap();
        let r = b
            .try_get_with(&key, db.loader(Duration::ZERO))
            .await
            .unwrap();
        assert_eq!(
            r.tier,
            Some(Tier::L1),
            "round {round}: B should hold the entry in L1"
        );
        let new = format!("v{}", round + 2);
        db.write(&new);
        a.invalidate("faculty", &org).await;
        let t = Instant::now();
        loop {
            let r = b
                .try_get_with(&key, db.loader(Duration::ZERO))
                .await
                .unwrap();
            if text(&r.body) == new {
                break;
            }
            assert!(t.elapsed() < Duration::from_secs(2), "B never converged");
            tokio::task::yield_now().await;
        }
        delays.push(t.elapsed());
    }
    delays.sort();
    println!(
        "broadcast convergence over 20 writes: p50 {:?}, max {:?}",
        delays[10], delays[19]
    );
}

#[tokio::test]
async fn strict_mode_sees_another_instances_write_at_once() {
    let url = redis_url();
    let ns = Namespace::new(&url);
    let a = tiered(&ns, fast_breaker(&url), false).await.0.build();
    let b = tiered(&ns, fast_breaker(&url), true).await.0.build();
    let db = Db::new("v1");
    let org = Scope::org(1);
    let key = b
        .key(Kind::Detail, "faculty", &org)
        .param("id", 3)
        .build()
        .unwrap();
    for round in 0..20 {
        b.try_get_with(&key, db.loader(Duration::ZERO))
            .await
            .unwrap();
        let r = b
            .try_get_with(&key, db.loader(Duration::ZERO))
            .await
            .unwrap();
        assert_eq!(r.tier, Some(Tier::L1));
        let new = format!("v{}", round + 2);
        db.write(&new);
        a.invalidate("faculty", &org).await;
        let r = b
            .try_get_with(&key, db.loader(Duration::ZERO))
            .await
            .unwrap();
        assert_eq!(
            text(&r.body),
            new,
            "round {round}: strict L1 served a stale entry"
        );
    }
}

/// While an instance's channel is down it hears no invalidations, so its L1 must
/// not answer; when the channel is back, nothing L1 held before may validate.
#[tokio::test]
async fn l1_is_not_trusted_across_a_channel_outage() {
    let server = RedisServer::start();
    let url = server.url();
    let ns = Namespace::new(&url);
    let a = tiered(&ns, fast_breaker(&url), false).await.0.build();
    let (builder, b_store) = tiered(&ns, fast_breaker(&url), false).await;
    let b = builder.build();
    let db = Db::new("v1");
    let org = Scope::org(1);
    let key = b.key(Kind::List, "faculty", &org).build().unwrap();
    b.try_get_with(&key, db.loader(Duration::ZERO))
        .await
        .unwrap();
    assert_eq!(
        b.try_get_with(&key, db.loader(Duration::ZERO))
            .await
            .unwrap()
            .tier,
        Some(Tier::L1)
    );

    let connects = b_store.l2().channel_connects();
    let mut admin = server.connection();
    let _: u64 = redis::cmd("CLIENT")
        .arg("KILL")
        .arg("TYPE")
        .arg("pubsub")
        .query(&mut admin)
        .unwrap();
    // A writes while B may not be listening: its message can be lost.
    db.write("v2");
    a.invalidate("faculty", &org).await;
    wait_for(
        || b_store.l2().channel_connects() > connects,
        "B resubscribed",
    )
    .await;
    let r = b
        .try_get_with(&key, db.loader(Duration::ZERO))
        .await
        .unwrap();
    assert_eq!(text(&r.body), "v2");
    assert_ne!(r.tier, Some(Tier::L1));
}

/// Redis hangs (SIGSTOP) while another instance holds the entry in its L1: a
/// write whose invalidation cannot reach Redis must not return before that
/// L1 stopped answering, so no read that starts after the write's response
/// sees the old value, with no window at all. Before the channel's
/// heartbeat, the reader's L1 answered until its ping timed out (up to
/// `ping_interval + 2 × op_timeout`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_l1_answers_after_a_write_that_could_not_reach_a_hung_redis_returns() {
    let server = RedisServer::start();
    let url = server.url();
    let ns = Namespace::new(&url);
    let mut config = fast_breaker(&url);
    // The old cadence: without the heartbeat, the reader's L1 would answer for
    // up to a second after the hang.
    config.ping_interval = Duration::from_millis(1000);
    let writer = redis(&ns, config.clone()).await.0.build();
    let reader = tiered(&ns, config, false).await.0.build();
    let db = Db::new("old");
    let org = Scope::org(1);
    let key = writer.key(Kind::Detail, "student", &org).build().unwrap();
    reader
        .try_get_with(&key, db.loader(Duration::ZERO))
        .await
        .unwrap();
    wait_for_l1(&reader, &key, &db).await;

    server.pause();
    db.write("new");
    writer.invalidate("student", &org).await; // the write's response goes now
    never_old(&reader, &key, &db).await;
    server.resume();
}
