//! Row-level invalidation: a write to one row leaves the other rows' entries
//! valid, while a write to the whole model or to a model they embed reaches
//! every one of them.

use std::time::Duration;

use tierstamp::store::Tier;
use tierstamp::{Cache, CacheKey, Kind, RedisConfig, Scope, Status};

use crate::helpers::*;

const NO_DELAY: Duration = Duration::ZERO;

/// Loads `key` and checks that it is then a hit.
async fn warm(cache: &Cache, key: &CacheKey, db: &Db) {
    assert_eq!(
        status(cache, key, db).await.0,
        Status::Miss,
        "{}",
        key.as_str()
    );
    assert_eq!(
        status(cache, key, db).await.0,
        Status::Hit,
        "{}",
        key.as_str()
    );
}

async fn status(cache: &Cache, key: &CacheKey, db: &Db) -> (Status, String) {
    let r = cache.try_get_with(key, db.loader(NO_DELAY)).await.unwrap();
    (r.status, text(&r.body).to_owned())
}

#[tokio::test]
async fn a_write_to_one_row_leaves_the_other_rows_entries_valid() {
    for (name, cache, _ns) in each_store().await {
        let org = Scope::org(1);
        let (five, six) = (detail(&cache, &org, 5), detail(&cache, &org, 6));
        let list = cache.key(Kind::List, "faculty", &org).build().unwrap();
        let (db5, db6, dbl) = (Db::new("Ada"), Db::new("Bob"), Db::new("[Ada, Bob]"));
        for (key, db) in [(&five, &db5), (&six, &db6), (&list, &dbl)] {
            warm(&cache, key, db).await;
        }
        db5.write("Ada L.");
        dbl.write("[Ada L., Bob]");
        let mut effects = cache.transaction();
        effects.invalidate_row("faculty", 5, &org);
        assert!(effects.commit().await, "{name}");
        assert_eq!(
            status(&cache, &five, &db5).await,
            (Status::Miss, "Ada L.".into()),
            "{name}"
        );
        assert_eq!(
            status(&cache, &list, &dbl).await,
            (Status::Miss, "[Ada L., Bob]".into()),
            "{name}: lists see every row's write"
        );
        assert_eq!(
            status(&cache, &six, &db6).await,
            (Status::Hit, "Bob".into()),
            "{name}: another row's entry stays"
        );
        assert_eq!(db6.queries(), 1, "{name}");
        // Another organization's row 6 is another row.
        cache.invalidate_row("faculty", 6, &Scope::org(2)).await;
        assert_eq!(status(&cache, &six, &db6).await.0, Status::Hit, "{name}");
    }
}

#[tokio::test]
async fn a_whole_model_write_or_a_dependencys_reaches_every_row() {
    for (name, cache, _ns) in each_store().await {
        let org = Scope::org(1);
        let six = detail(&cache, &org, 6);
        let db = Db::new("Bob, dept CS");
        warm(&cache, &six, &db).await;
        // Faculty embed their department: a department write reaches them.
        db.write("Bob, dept Computing");
        cache.invalidate_row("department", 3, &org).await;
        assert_eq!(
            status(&cache, &six, &db).await,
            (Status::Miss, "Bob, dept Computing".into()),
            "{name}"
        );
        // A write that does not say which rows it changed reaches them all.
        db.write("Bob, emeritus");
        cache.invalidate("faculty", &org).await;
        assert_eq!(
            status(&cache, &six, &db).await,
            (Status::Miss, "Bob, emeritus".into()),
            "{name}"
        );
        // Models that do not embed faculty: untouched by a faculty row's write.
        let user = cache
            .key(Kind::Detail, "user", &org)
            .row(6)
            .build()
            .unwrap();
        let users = Db::new("user 6");
        warm(&cache, &user, &users).await;
        cache.invalidate_row("faculty", 6, &org).await;
        assert_eq!(status(&cache, &user, &users).await.0, Status::Hit, "{name}");
        // A row no key can name: the whole model, never nothing.
        warm(&cache, &six, &db).await;
        cache.invalidate_row("faculty", "not a row!", &org).await;
        assert_eq!(status(&cache, &six, &db).await.0, Status::Miss, "{name}");
    }
}

/// A row's counter lives as long as the entries stamped with it (and no
/// longer than needed: one exists per row ever read); model counters have no
/// TTL. Losing a row's counter turns its entry into a miss, never a stale hit.
#[tokio::test]
async fn a_rows_counter_expires_after_its_entries_and_its_loss_is_a_miss() {
    let url = redis_url();
    let ns = Namespace::new(&url);
    let (builder, store) = redis(&ns, RedisConfig::new(&url)).await;
    let cache = builder
        .ttl(tierstamp::TtlPolicy::default().detail(Duration::from_secs(7200)))
        .build();
    let org = Scope::org(1);
    let six = detail(&cache, &org, 6);
    let db = Db::new("Bob");
    let mut conn = store.connection();
    let row = six.gen_keys()[0].clone();
    // A read of an id that stores nothing (a 404) leaves a counter for
    // seconds, not an hour: clients name any id they like.
    let nothing = detail(&cache, &org, 7);
    assert!(cache.get(&nothing).await.is_none());
    let left: i64 = redis::cmd("PTTL")
        .arg(&nothing.gen_keys()[0])
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(
        left > 0 && left <= 10_000,
        "a read's row counter: {left} ms"
    );
    warm(&cache, &six, &db).await;
    let pttl = |k: String| {
        let mut conn = conn.clone();
        async move {
            redis::cmd("PTTL")
                .arg(k)
                .query_async::<i64>(&mut conn)
                .await
                .unwrap()
        }
    };
    let (rows, department) = (six.gen_keys()[1].clone(), six.gen_keys()[2].clone());
    assert!(row.ends_with(":{org_1}:6"), "{row}");
    assert!(rows.ends_with(":{org_1}:*"), "{rows}");
    let left = pttl(row.clone()).await;
    // Past the entry's 2 h (its stale window included), not the 1 h a counter
    // gets when created.
    assert!(left > 7_200_000, "the row counter's TTL: {left} ms");
    assert_eq!(pttl(rows).await, -1);
    assert_eq!(pttl(department).await, -1);
    let _: () = redis::cmd("DEL")
        .arg(&row)
        .query_async(&mut conn)
        .await
        .unwrap();
    db.write("Bob, renamed while its counter was gone");
    assert_eq!(
        status(&cache, &six, &db).await,
        (
            Status::Miss,
            "Bob, renamed while its counter was gone".into()
        )
    );
}

/// Another instance's L1 drops only the written row's entry.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_instances_l1_keeps_the_rows_nobody_wrote() {
    let url = redis_url();
    let ns = Namespace::new(&url);
    let writer = tiered(&ns, RedisConfig::new(&url), false).await.0.build();
    let reader = tiered(&ns, RedisConfig::new(&url), false).await.0.build();
    let org = Scope::org(1);
    let (five, six) = (detail(&reader, &org, 5), detail(&reader, &org, 6));
    let (db5, db6) = (Db::new("Ada"), Db::new("Bob"));
    warm(&reader, &five, &db5).await;
    warm(&reader, &six, &db6).await;
    db5.write("Ada L.");
    writer.invalidate_row("faculty", 5, &org).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while status(&reader, &five, &db5).await.1 != "Ada L." {
        assert!(
            std::time::Instant::now() < deadline,
            "the write never reached the reader"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let r = reader
        .try_get_with(&six, db6.loader(NO_DELAY))
        .await
        .unwrap();
    assert_eq!((r.status, r.tier), (Status::Hit, Some(Tier::L1)));
    assert_eq!(db6.queries(), 1);
}
