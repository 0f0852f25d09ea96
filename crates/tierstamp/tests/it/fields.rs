//! Field-level invalidation: an entry keyed by fields (the ids of a list's
//! page in its order, a count) survives writes to other fields of existing
//! rows, and no other write.

use std::time::Duration;

use tierstamp::{Cache, CacheKey, Kind, Scope, Status};

use crate::helpers::*;

const NO_DELAY: Duration = Duration::ZERO;

async fn status(cache: &Cache, key: &CacheKey, db: &Db) -> Status {
    cache
        .try_get_with(key, db.loader(NO_DELAY))
        .await
        .unwrap()
        .status
}

/// Loads `key` if it is not valid; then it is a hit.
async fn warm(cache: &Cache, key: &CacheKey, db: &Db) {
    status(cache, key, db).await;
    assert_eq!(
        status(cache, key, db).await,
        Status::Hit,
        "{}",
        key.as_str()
    );
}

#[tokio::test]
async fn an_entry_keyed_by_fields_survives_writes_to_other_fields_only() {
    for (name, cache, _ns) in each_store().await {
        let org = Scope::org(1);
        // The ids of a page of faculty ordered by last name, and their count.
        let ids = cache
            .key(Kind::List, "faculty", &org)
            .param("ordering", "last_name")
            .fields(["last_name"])
            .build()
            .unwrap();
        let count = cache
            .key(Kind::Count, "faculty", &org)
            .fields(Vec::<String>::new())
            .build()
            .unwrap();
        let page = cache.key(Kind::List, "faculty", &org).build().unwrap();
        let (dbi, dbc, dbp) = (Db::new("5,6"), Db::new("2"), Db::new("[Ada, Bob]"));
        let all = [(&ids, &dbi), (&count, &dbc), (&page, &dbp)];
        for (key, db) in all {
            warm(&cache, key, db).await;
        }

        // Another field of an existing row: the page changes, the ids and the
        // count do not.
        cache
            .invalidate_fields("faculty", 5, &["email", "updated_at"], &org)
            .await;
        assert_eq!(status(&cache, &page, &dbp).await, Status::Miss, "{name}");
        assert_eq!(status(&cache, &ids, &dbi).await, Status::Hit, "{name}");
        assert_eq!(status(&cache, &count, &dbc).await, Status::Hit, "{name}");

        // The field the ids are ordered by: the ids go, the count stays.
        let mut effects = cache.transaction();
        effects.invalidate_fields("faculty", 6, &["last_name"], &org);
        assert!(effects.commit().await, "{name}");
        assert_eq!(status(&cache, &ids, &dbi).await, Status::Miss, "{name}");
        assert_eq!(status(&cache, &count, &dbc).await, Status::Hit, "{name}");

        // Writes that may add or remove rows, or do not say what they changed,
        // and writes to a model they depend on, reach both.
        for what in [
            "a row, fields unknown",
            "the whole model",
            "a dependency",
            "a field no key can name",
        ] {
            warm(&cache, &ids, &dbi).await;
            warm(&cache, &count, &dbc).await;
            match what {
                "a row, fields unknown" => cache.invalidate_row("faculty", 7, &org).await,
                "the whole model" => cache.invalidate("faculty", &org).await,
                "a dependency" => cache.invalidate_row("department", 3, &org).await,
                _ => {
                    cache
                        .invalidate_fields("faculty", 5, &["no field!"], &org)
                        .await
                }
            }
            assert_eq!(
                status(&cache, &ids, &dbi).await,
                Status::Miss,
                "{name}: {what}"
            );
            assert_eq!(
                status(&cache, &count, &dbc).await,
                Status::Miss,
                "{name}: {what}"
            );
        }

        // Another organization's write is another organization's.
        warm(&cache, &ids, &dbi).await;
        cache.invalidate_row("faculty", 5, &Scope::org(2)).await;
        assert_eq!(status(&cache, &ids, &dbi).await, Status::Hit, "{name}");
    }
}

/// The parts of an entry put together from other entries are read from
/// Redis, not from an L1 whose mirror has not heard of a write yet: the
/// composite is stored in Redis, for every instance, under a stamp read from
/// there. A counter moved in Redis without a message stands for a write whose
/// message is still on its way.
#[tokio::test]
async fn the_parts_of_a_composite_are_read_from_redis_not_from_a_mirror_behind_it() {
    let url = redis_url();
    let ns = Namespace::new(&url);
    let cache = tiered(&ns, tierstamp::RedisConfig::new(&url), false)
        .await
        .0
        .build();
    let org = Scope::org(1);
    let row = cache
        .key(Kind::Detail, "faculty", &org)
        .row(5)
        .build()
        .unwrap();
    let db = Db::new("Ada");
    wait_for_l1(&cache, &row, &db).await;
    let mut conn = redis::Client::open(url.as_str())
        .unwrap()
        .get_connection()
        .unwrap();
    let _: i64 = redis::cmd("INCR")
        .arg(&row.gen_keys()[0])
        .query(&mut conn)
        .unwrap();
    assert!(
        cache.prefetch(&[&row]).await[0].is_hit(),
        "L1 has not heard of the write"
    );
    assert!(
        !cache.prefetch_shared(&[&row]).await[0].is_hit(),
        "Redis has"
    );
}
