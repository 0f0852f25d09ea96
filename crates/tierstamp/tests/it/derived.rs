//! Entries derived in process from other entries (a page from its rows'
//! entries): valid while every part is, whatever else of the model changes,
//! on the instance that holds them and on others once they hear of a write.

use std::time::Duration;

use bytes::Bytes;
use tierstamp::{Cache, CacheKey, Derivation, Kind, RedisConfig, Scope, Status};

use crate::helpers::*;

fn page(cache: &Cache, org: &Scope) -> CacheKey {
    cache
        .key(Kind::List, "faculty", org)
        .param("page", 1)
        .build()
        .unwrap()
}

/// Caches rows 5 and 6, then reads them and records what the page is
/// derived from (as a page's loader does).
async fn parts(cache: &Cache, org: &Scope) -> Derivation {
    let (five, six) = (detail(cache, org, 5), detail(cache, org, 6));
    for (key, name) in [(&five, "Ada"), (&six, "Bob")] {
        cache.get_with(key, async move { Bytes::from(name) }).await;
    }
    let reads = cache.prefetch(&[&five, &six]).await;
    let mut from = Derivation::default();
    from.add(&five, &reads[0]);
    from.add(&six, &reads[1]);
    from
}

#[tokio::test]
async fn a_derived_entry_lives_while_its_parts_do() {
    for (name, cache, _ns) in each_store().await {
        let org = Scope::org(1);
        let page = page(&cache, &org);
        let from = parts(&cache, &org).await;
        let kept = cache.remember_derived(&page, from, Bytes::from_static(b"[Ada,Bob]"));
        if name == "redis" {
            // No process-local tier: nothing is derived, nothing is served.
            assert!(!kept, "{name}");
            assert!(cache.get_derived(&page).is_none(), "{name}");
            continue;
        }
        assert!(kept, "{name}");
        let hit = cache.get_derived(&page).expect(name);
        assert_eq!((hit.status, text(&hit.body)), (Status::Hit, "[Ada,Bob]"));

        // Another row, another model: the parts are untouched.
        cache.invalidate_row("faculty", 7, &org).await;
        cache.invalidate("program", &org).await;
        cache.invalidate_row("faculty", 5, &Scope::org(2)).await;
        assert!(cache.get_derived(&page).is_some(), "{name}: kept");

        // A part's row, or a model the parts embed: gone.
        cache.invalidate_row("faculty", 5, &org).await;
        assert!(cache.get_derived(&page).is_none(), "{name}: row 5 changed");
        let from = parts(&cache, &org).await;
        assert!(cache.remember_derived(&page, from, Bytes::from_static(b"[Ada L.,Bob]")));
        cache.invalidate("department", &org).await;
        assert!(
            cache.get_derived(&page).is_none(),
            "{name}: departments changed"
        );
    }
}

/// Parts read before a write to one of them: the derived entry is not kept
/// (it would show what the write replaced).
#[tokio::test]
async fn parts_read_before_a_write_are_not_kept() {
    for (name, cache, _ns) in each_store().await {
        let org = Scope::org(1);
        let page = page(&cache, &org);
        let from = parts(&cache, &org).await;
        cache.invalidate_row("faculty", 6, &org).await;
        assert!(
            !cache.remember_derived(&page, from, Bytes::from_static(b"[Ada,Bob]")),
            "{name}"
        );
        assert!(cache.get_derived(&page).is_none(), "{name}");
    }
}

/// Another instance's write to a part: the derived entry stops being served
/// once its message arrives, and the holder never serves it after reading
/// the part's new value.
#[tokio::test]
async fn another_instances_write_to_a_part_reaches_the_derived_entry() {
    let url = redis_url();
    let ns = Namespace::new(&url);
    let a = tiered(&ns, RedisConfig::new(&url), false).await.0.build();
    let b = tiered(&ns, RedisConfig::new(&url), false).await.0.build();
    let org = Scope::org(3);
    let page = page(&b, &org);
    let from = parts(&b, &org).await;
    assert!(b.remember_derived(&page, from, Bytes::from_static(b"[Ada,Bob]")));
    a.invalidate_row("faculty", 8, &org).await;
    a.invalidate_row("faculty", 5, &org).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(2);
    while b.get_derived(&page).is_some() {
        assert!(
            std::time::Instant::now() < deadline,
            "B kept serving a page whose row changed on A"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    // Row 8 is not a part: only row 5's message could have ended it. Read
    // after the message, the parts are kept again.
    let from = parts(&b, &org).await;
    assert!(b.remember_derived(&page, from, Bytes::from_static(b"[Ada L.,Bob]")));
}

/// An L1 checked against Redis on every hit keeps no derived entry (it has
/// no mirror to check one against); past its TTL a derived entry is gone.
#[tokio::test]
async fn strict_l1_keeps_none_and_a_derived_entry_expires() {
    let url = redis_url();
    let ns = Namespace::new(&url);
    let strict = tiered(&ns, RedisConfig::new(&url), true).await.0.build();
    let org = Scope::org(4);
    let from = parts(&strict, &org).await;
    assert!(!strict.remember_derived(&page(&strict, &org), from, Bytes::new()));

    let clock = tierstamp::Clock::manual();
    let cache = memory(&ns).clock(clock.clone()).build();
    let key = page(&cache, &org);
    let from = parts(&cache, &org).await;
    assert!(cache.remember_derived(&key, from, Bytes::new()));
    assert!(cache.get_derived(&key).is_some());
    clock.advance(Duration::from_secs(24 * 3600));
    assert!(cache.get_derived(&key).is_none());
}

/// A store whose next shared read is not learned by its L1 (as when the
/// channel session moves during the round trip): what lets the L1 hold an
/// older copy than the shared store while the caller holds a newer stamp.
struct Unlearned {
    tiered: tierstamp::TieredStore,
    skip_next: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

#[tierstamp::async_trait]
impl tierstamp::Store for Unlearned {
    async fn fetch(
        &self,
        key: &str,
        g: &[String],
    ) -> Result<tierstamp::store::Fetched, tierstamp::StoreError> {
        self.tiered.fetch(key, g).await
    }
    fn fetch_local(&self, key: &str, g: &[String]) -> Option<tierstamp::store::Fetched> {
        self.tiered.fetch_local(key, g)
    }
    fn fetch_derived(&self, key: &str) -> Option<tierstamp::store::Fetched> {
        self.tiered.fetch_derived(key)
    }
    fn keep_derived(
        &self,
        key: &str,
        deps: std::sync::Arc<[String]>,
        entry: std::sync::Arc<tierstamp::store::Envelope>,
        ttl: Duration,
    ) -> bool {
        self.tiered.keep_derived(key, deps, entry, ttl)
    }
    async fn fetch_many(
        &self,
        items: &[(&str, &[String])],
    ) -> Result<Vec<tierstamp::store::Fetched>, tierstamp::StoreError> {
        self.tiered.fetch_many(items).await
    }
    async fn fetch_many_shared(
        &self,
        items: &[(&str, &[String])],
    ) -> Result<Vec<tierstamp::store::Fetched>, tierstamp::StoreError> {
        if self
            .skip_next
            .swap(false, std::sync::atomic::Ordering::SeqCst)
        {
            return self.tiered.l2().fetch_many(items).await;
        }
        self.tiered.fetch_many_shared(items).await
    }
    async fn put(
        &self,
        key: &str,
        g: &[String],
        e: &tierstamp::store::Envelope,
        ttl: Duration,
        lease: Option<u64>,
    ) -> Result<bool, tierstamp::StoreError> {
        self.tiered.put(key, g, e, ttl, lease).await
    }
    async fn bump(&self, g: &[String]) -> Result<Vec<u64>, tierstamp::StoreError> {
        self.tiered.bump(g).await
    }
    async fn acquire_lease(
        &self,
        key: &str,
        token: u64,
        ttl: Duration,
    ) -> Result<bool, tierstamp::StoreError> {
        self.tiered.acquire_lease(key, token, ttl).await
    }
    async fn release_lease(&self, key: &str, token: u64) -> Result<(), tierstamp::StoreError> {
        self.tiered.release_lease(key, token).await
    }
    async fn delete(&self, key: &str) -> Result<(), tierstamp::StoreError> {
        self.tiered.delete(key).await
    }
    fn health(&self) -> tierstamp::Health {
        self.tiered.health()
    }
}

/// A part read from the shared store as a miss (another instance wrote it;
/// this one has not heard yet, and holds the old copy in L1) is loaded, not
/// answered from that L1 copy: the derived entry recorded under the newer
/// counters must never hold what the write replaced, even once this
/// instance has heard of the write.
#[tokio::test]
async fn a_part_missed_in_the_shared_store_is_not_answered_from_an_older_l1_copy() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    let url = redis_url();
    let ns = Namespace::new(&url);
    let (_, tiered) = tiered(&ns, RedisConfig::new(&url), false).await;
    let skip_next = Arc::new(AtomicBool::new(false));
    let cache = Cache::builder(Unlearned {
        tiered,
        skip_next: skip_next.clone(),
    })
    .keys(ns.keys.clone())
    .dependencies(deps())
    .build();
    let org = Scope::org(9);
    let (five, pg) = (detail(&cache, &org, 5), page(&cache, &org));
    cache
        .get_with(&five, async { Bytes::from_static(b"Ada") })
        .await;
    // Another instance's write to row 5, its message not yet arrived: the
    // row's counter moves in Redis; the database now says "Ada L.".
    let mut redis = redis::Client::open(url.as_str())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let _: u64 = redis::cmd("INCR")
        .arg(&five.gen_keys()[0])
        .query_async(&mut redis)
        .await
        .unwrap();

    // The page's loader reads its part from the shared store (not learned
    // here), records it, and loads it.
    skip_next.store(true, Ordering::SeqCst);
    let mut reads = cache.prefetch_shared(&[&five]).await;
    assert!(!reads[0].is_hit(), "the shared entry predates the write");
    let mut from = Derivation::default();
    from.add(&five, &reads[0]);
    let part = cache
        .try_get_with_prefetched(&five, reads.pop().unwrap(), async {
            Ok::<_, std::io::Error>(Bytes::from_static(b"Ada L."))
        })
        .await
        .unwrap();
    assert_eq!(
        text(&part.body),
        "Ada L.",
        "{:?} {:?}",
        part.status,
        part.tier
    );
    // This instance hears of the write (here, by a read).
    let _ = cache.prefetch_shared(&[&five]).await;
    cache.remember_derived(&pg, from, part.body.clone());
    if let Some(served) = cache.get_derived(&pg) {
        assert_eq!(text(&served.body), "Ada L.");
    }
}

/// Parts read before their rows' counters exist (rows never written nor
/// cached): the in-process store creates them with the values the reads were
/// answered, so the derived entry is kept, and a write to one of those rows
/// still ends it.
#[tokio::test]
async fn parts_whose_row_counters_do_not_exist_yet_are_kept_in_process() {
    let url = redis_url();
    let ns = Namespace::new(&url);
    let cache = memory(&ns).build();
    let org = Scope::org(5);
    let (five, six, pg) = (
        detail(&cache, &org, 5),
        detail(&cache, &org, 6),
        page(&cache, &org),
    );
    let reads = cache.prefetch(&[&five, &six]).await;
    assert!(!reads[0].is_hit() && !reads[1].is_hit());
    let mut from = Derivation::default();
    from.add(&five, &reads[0]);
    from.add(&six, &reads[1]);
    assert!(cache.remember_derived(&pg, from, Bytes::from_static(b"[Ada,Bob]")));
    assert!(cache.get_derived(&pg).is_some());
    cache.invalidate_row("faculty", 6, &org).await;
    assert!(cache.get_derived(&pg).is_none(), "row 6 changed");

    // Rows 7 and 8, no counters yet; row 8 written between the reads and the
    // keep: its counter, created by the write, is not the value read.
    let (seven, eight) = (detail(&cache, &org, 7), detail(&cache, &org, 8));
    let reads = cache.prefetch(&[&seven, &eight]).await;
    let mut from = Derivation::default();
    from.add(&seven, &reads[0]);
    from.add(&eight, &reads[1]);
    cache.invalidate_row("faculty", 8, &org).await;
    assert!(!cache.remember_derived(&pg, from, Bytes::from_static(b"[Cy,Di]")));
    assert!(cache.get_derived(&pg).is_none());
}
