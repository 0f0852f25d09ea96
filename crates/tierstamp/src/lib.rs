//! # tierstamp
//!
//! A two-tier cache (in-process L1, Redis L2) for services whose cached data must
//! stay *correct* under concurrency, failures and many tenants: a write is visible
//! to every reader as soon as it commits, a slow reader never stores stale data,
//! Redis going away costs neither errors nor timeouts, and one tenant's entries are
//! never another's.
//!
//! ```
//! use bytes::Bytes;
//! use tierstamp::{Cache, Kind, MemoryStore, Scope, Status};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let cache = Cache::builder(MemoryStore::new(64 << 20)).build();
//! let org = Scope::org(1);
//! let key = cache.key(Kind::List, "faculty", &org).param("page", 2).build()?;
//!
//! let load = || async { Ok::<_, std::io::Error>(Bytes::from_static(b"[\"Ada\"]")) };
//! assert_eq!(cache.try_get_with(&key, load()).await?.status, Status::Miss);
//! assert_eq!(cache.try_get_with(&key, load()).await?.status, Status::Hit);
//!
//! cache.invalidate("faculty", &org).await; // after the database commit
//! assert_eq!(cache.try_get_with(&key, load()).await?.status, Status::Miss);
//! # Ok(()) }
//! ```
//!
//! With Redis (feature `redis`, on by default), an in-process L1 in front of it and
//! a dependency (faculty lists embed department names):
//!
//! ```no_run
//! # #[cfg(feature = "redis")]
//! # async fn run() -> Result<(), tierstamp::Error> {
//! use tierstamp::{Cache, Dependencies, KeyBuilder, L1Check, RedisConfig, RedisStore, TieredStore};
//!
//! let keys = KeyBuilder::new("myapp", "v1")?;
//! let redis = RedisStore::connect(RedisConfig::new("redis://127.0.0.1:6379/"), &keys).await?;
//! let cache = Cache::builder(TieredStore::new(redis, 64 << 20, L1Check::Mirror))
//!     .keys(keys)
//!     .dependencies(Dependencies::new().model("faculty", ["department"]))
//!     .build();
//! # let _ = cache; Ok(()) }
//! ```
//!
//! Runnable programs are in `examples/`: an axum service (in `tierstamp-axum`), use
//! with no web framework, a store of your own, and PostgreSQL triggers with
//! `LISTEN/NOTIFY` invalidating rows written by other programs.
//!
//! # Features
//!
//! | feature | default | brings |
//! |---|---|---|
//! | `redis` | on | [`RedisStore`], [`TieredStore`], [`RedisConfig`], [`BreakerConfig`] and the `redis` client. Off, the crate is in-process only ([`MemoryStore`] or a [`Store`] of your own) and no Redis client is in the dependency tree. |
//! | `metrics` | off | counters and histograms through the [`metrics`](https://docs.rs/metrics) facade (see [Observability](#observability)); off, they are compiled out. |
//!
//! Redis may be one server, a Redis Cluster or a master behind Redis Sentinel
//! ([`RedisConfig::new`], [`RedisConfig::cluster`], [`RedisConfig::sentinel`]; see
//! [Cluster and Sentinel](#cluster-and-sentinel)).
//!
//! # The API in moka's terms
//!
//! | moka | tierstamp | difference |
//! |---|---|---|
//! | `Cache::builder()` … `.build()` | [`Cache::builder`]`(store)` … [`.build()`](CacheBuilder::build) | the builder takes the [`Store`] |
//! | `get_with(key, init)` | [`Cache::get_with`] | `init` is a future of [`Bytes`](bytes::Bytes); the answer is a [`Lookup`] (body, ETag, `HIT`/`MISS`/`STALE`/`BYPASS`) |
//! | `try_get_with(key, init)` | [`Cache::try_get_with`], [`Cache::try_get_with_prefetched`] (after a [`Cache::prefetch`]) | the error is [`LoadError`]`<E>`, the loader's own error type in one `Arc` shared by every waiter (as moka's `Arc<E>`) |
//! | `get(key)` | [`Cache::get`] | only a *valid* entry is returned |
//! | `invalidate(key)` | [`Cache::invalidate`]`(model, scope)` | invalidates every entry computed from `model` in `scope`, on every instance; [`Cache::delete`] removes one key |
//! | — | [`Cache::transaction`] | invalidations applied after the database commits; [`Transaction::commit_after`] runs the commit and them in one task the caller cannot cancel |
//!
//! Values are bytes (a serialised response body): they travel to Redis, and a hit is
//! sent as it is, with no deserialisation. Everything the API returns is
//! [`Error`]; a [`Store`] implementation returns [`StoreError`].
//!
//! # Concepts
//!
//! ## Keys and scopes
//!
//! An entry key is `{prefix}:{version}:{kind}:{model}:{scope}:{params}`, built by
//! [`Cache::key`]. The [`Scope`] is the isolation unit, a tenant (`Scope::org(7)`) or
//! [`Scope::global`]: take it from the verified caller, never from the request's
//! parameters. Parameters are normalised (sorted, defaults and empty values dropped)
//! so equal queries share a key; a value that is long or holds characters outside
//! `[A-Za-z0-9_.-]` is hashed (128-bit BLAKE3), so no client input can forge or
//! collide another key. The scope is written as a Redis Cluster hash tag
//! (`{org_7}`): an entry, its lease and its generation counters share one slot, so one
//! Lua script reads them together. [`Kind`] picks the TTL tier of [`TtlPolicy`]
//! (TTLs are a backstop: invalidation does not wait for them). The `{prefix}:{version}`
//! namespace is a [`KeyBuilder`]: bumping the version moves every instance to an
//! empty keyspace, and old keys age out by TTL.
//!
//! ## Generations and dependencies
//!
//! Each (model, scope) has a generation counter
//! `{prefix}:gen:{model}:{scope}`, shared by every version so that instances of two
//! versions serving side by side (a rolling deploy) invalidate each other. An entry records the counters of every
//! model it was computed from, as a [`Stamp`](store::Stamp) captured *before* its loader ran: its
//! own model and those declared in [`Dependencies`] (a faculty list embeds department
//! names, so it depends on `department` too). An entry is valid only while the
//! current stamp equals the one it was stored under.
//!
//! A write bumps its model's counter after the database commits ([`Transaction`]):
//! one `INCR` per model in one script, which also publishes the new values. O(1) per
//! model and scope: nothing is scanned or enumerated, `KEYS` is never used. Every
//! later read, on any instance, sees the new generation; the old entries are never
//! served again and age out.
//!
//! **Rows.** An entry computed from one row and what it embeds (a detail) is
//! keyed with [`KeyRequest::row`]: it depends on that row's counter
//! `{prefix}:gen:{model}:{scope}:{row}`, the model's all-rows counter
//! `{prefix}:gen:{model}:{scope}:*` and the counters of the models it embeds,
//! but not on its model's own counter. [`Cache::invalidate_row`] (a write that
//! names its row) bumps the model's counter and the row's: lists, counts,
//! stats and every entry of a model that embeds this one are invalid, the other
//! rows' entries stay. [`Cache::invalidate`] (a write that does not say which
//! rows it changed) bumps the model's counter and its all-rows counter. There
//! is one row counter per row ever read or written, so they expire (an hour,
//! extended to the TTL of any entry stored under them); a lost counter
//! restarts from the clock, above every value it had, so its entries turn into
//! misses and never into stale hits.
//!
//! **Fields.** An entry computed from *which* rows exist and from a few of
//! their fields (the ids of a list's page in its order, a count) is keyed with
//! [`KeyRequest::fields`]: it depends on the model's shape counter
//! `{prefix}:gen:{model}:{scope}:~`, on one counter per named field
//! (`…:~{field}`) and on the model's dependencies. [`Cache::invalidate_fields`]
//! (a write that names the fields it changed in a row that existed before and
//! after it) bumps the model's counter, the row's and those fields'; every other
//! write bumps the shape counter too. A page can then be put together from the
//! ids of its rows and their row entries after a write that moved neither, for
//! a few in-process look-ups instead of a query.
//!
//! The stale-set race ("Scaling Memcache at Facebook", 2013: a reader loads, a write
//! invalidates, the reader stores what it loaded) is closed by construction: the
//! store writes an entry only if the counters still hold the captured values, and
//! even an entry stored under an old stamp would never validate. A missing counter
//! (evicted by `allkeys-lru`) is recreated from the server clock in µs, never from a
//! value it may have had, so eviction cannot resurrect an entry.
//!
//! ## Leases and early refresh
//!
//! On a miss, callers in one process that captured the same stamp share one load
//! (single-flight keyed by key *and* stamp: a caller arriving after a write never
//! joins a load that began before it). Across instances, the leader takes a lease
//! (`SET NX PX`, [`CacheBuilder::lease_ttl`]); the others poll the entry and get the
//! leader's value, or take the lease once it is released or its dead holder's TTL
//! runs out ([`CacheBuilder::lease_wait`]). The load runs in its own task: callers
//! being cancelled does not waste it.
//!
//! Near expiry, one caller refreshes early with a probability that rises as expiry
//! nears and with the load's cost (XFetch, [`CacheBuilder::early_refresh_beta`]);
//! past its TTL an entry is served `STALE` for a while
//! ([`CacheBuilder::stale_ratio`]) while one task per key refreshes it. Nobody waits
//! for a refresh.
//!
//! ## The breaker and outage replay
//!
//! Every Redis call has a short timeout ([`RedisConfig`]) and feeds a circuit
//! breaker ([`BreakerConfig`]): after 3 consecutive failures calls are refused at
//! once and requests are answered by the loader (`BYPASS`) without paying a
//! timeout; a half-open probe closes it again by itself. Concurrent bypassed
//! look-ups of one key in one process share one load (stored nowhere): an
//! outage does not multiply the database's load by the concurrency. With no
//! stamp to go by, these flights are keyed by the count of invalidations this
//! process has made or been told of, so a look-up that begins after such an
//! invalidation returned never joins a load that began before it; a write on
//! another instance that this one has not been told of yet may be missed by a
//! load already in progress. A bump that fails is
//! remembered and replayed before this instance reads Redis again. An instance whose
//! breaker opened bumps the global epoch before it reads again: another instance's
//! invalidation may have been lost in the same outage, so every entry stored before
//! it dies (entries carry the epoch they were computed under). The price is a cold
//! cache after an outage, which a Redis restart would have caused anyway.
//!
//! An instance cut off from Redis while its peers are not can commit writes whose
//! invalidations the peers do not see until it reconnects. [`Transaction::commit`]
//! says so (it returns `false`), so the application can tell its peers another
//! way: through the database, for example (`NOTIFY`, as in the
//! `postgres_notify` example), and its peers bump the counters themselves.
//!
//! ## A Redis that comes back with older data
//!
//! A server restarted from its RDB or AOF, a replica promoted before it received
//! the last bumps, an operator emptying it: the counters are older than writes
//! already acknowledged, the entries that match them come back with them, the
//! epoch key too, and a restart can be too quick for the breaker to open. So the
//! store identifies the server. A marker key, `{prefix:epoch}:identity` (in the
//! epoch's Cluster slot), holds the `run_id` of the Redis process on which the
//! epoch was last validated. One script reads the server's `run_id` (`INFO
//! server`, inside the script) and, if the marker is missing or names another
//! process, bumps the epoch and rewrites the marker: every entry written before
//! is dead, for every instance, including one started later against the restored
//! data (the check reads the data's marker, not this process's memory).
//!
//! * **When.** On every new connection to the master (one server, or behind
//!   Sentinel), before it serves a command; the store adopts the returned epoch
//!   first, and a read's stamp takes the epoch *after* its call returns, so the
//!   read that reconnected cannot validate what it found. A check that fails
//!   fails the call, like an outage. And every [`RedisConfig::identity_interval`],
//!   in a task of its own: the marker again (a flush breaks no connection), and
//!   in a Cluster the `run_id` of every master, compared with the one seen
//!   before at its address (a change, or a master at a new address, counts as
//!   an outage).
//! * **Cost.** One script (with an `INFO` in it) per new connection, and one
//!   per `identity_interval` per instance, plus one `INFO server` to each master in
//!   a Cluster; none on the read path. A cold cache after every Redis restart or
//!   failover, as the breaker's outage already costs; a master added to a
//!   Cluster costs one epoch bump (it cannot be told from a promoted replica).
//! * **The Cluster window.** redis-rs's cluster client reconnects to its nodes
//!   by itself, so no hook runs there: a Cluster master restarted from its own
//!   persistence, without any call of this instance failing, is noticed within
//!   `identity_interval` (1 s by default). Reads in between may be served from it.
//!   A failed call still counts as an outage at once, as before.
//! * The marker lives outside `{prefix}:` so that clearing the application's
//!   keys ([`RedisStore::unlink_prefix`]) keeps it; a Redis ACL that limits the
//!   application's keys must allow it (`~{prefix:epoch}:identity`). `DEBUG
//!   RELOAD` (the same process reloading its RDB) keeps the `run_id` and is not
//!   detected.
//!
//! ## L1 coherence
//!
//! [`TieredStore`] keeps an in-process L1 of entries plus a mirror of the counters,
//! fed by this instance's bumps (synchronously: read-your-writes here), by the
//! invalidation channel (other instances, within the broadcast delay, measured in
//! the project's BENCHMARKS.md) and by Redis reads. L1 answers only while
//! the channel is up (pinged every second) and Redis is healthy; when the channel
//! drops, L1 is cleared and unused until it is back. Strict mode
//! (`TieredStore::new(redis, bytes, L1Check::Strict)`) checks each L1 hit against the counters
//! in Redis, a few bytes per read instead of the body, for users who need no window
//! at all.
//!
//! ## Entries derived from other entries
//!
//! A value put together from cached entries (a page from its rows' entries)
//! can be kept in process as a *derived* entry: [`Derivation::add`] records
//! each part as a [`Cache::prefetch`] read it, [`Cache::remember_derived`]
//! keeps the value under the union of those stamps, and
//! [`Cache::get_derived`] answers it while every part is still valid, so a
//! write to one row leaves every value not built from it standing. It is
//! checked against this process's counters, as an L1 entry is (the mirror of a
//! [`TieredStore`], a [`MemoryStore`]'s own counters), kept only if they hold
//! its values when it is kept, and never stored in Redis.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), tierstamp::Error> {
//! use bytes::Bytes;
//! use tierstamp::{Cache, Derivation, Kind, MemoryStore, Scope};
//!
//! let cache = Cache::builder(MemoryStore::new(1 << 20)).build();
//! let org = Scope::org(1);
//! let row = |id: i64| cache.key(Kind::Detail, "faculty", &org).row(id).build();
//! let (five, six) = (row(5)?, row(6)?);
//! cache.get_with(&five, async { Bytes::from_static(b"Ada") }).await;
//! cache.get_with(&six, async { Bytes::from_static(b"Bob") }).await;
//!
//! let page = cache.key(Kind::List, "faculty", &org).param("page", 1).build()?;
//! let reads = cache.prefetch(&[&five, &six]).await;
//! let mut from = Derivation::default();
//! from.add(&five, &reads[0]);
//! from.add(&six, &reads[1]);
//! cache.remember_derived(&page, from, Bytes::from_static(b"[Ada,Bob]"));
//!
//! cache.invalidate_row("faculty", 7, &org).await; // another row: still valid
//! assert!(cache.get_derived(&page).is_some());
//! cache.invalidate_row("faculty", 5, &org).await; // one of its parts: gone
//! assert!(cache.get_derived(&page).is_none());
//! # Ok(()) }
//! ```
//!
//! ## Cluster and Sentinel
//!
//! [`Topology`] says how Redis is deployed; one [`RedisConnection`] (the
//! `redis` crate's `ConnectionLike`) hides it from the store's calls.
//!
//! * **Cluster.** Every key of one scope carries the scope's hash tag, so an
//!   entry, its lease and its counters live in one slot and every script and
//!   `MGET` stays in it. A [`Store::fetch_many`] spanning scopes (an auth record
//!   and a page of another scope, say) is split by slot and the parts are sent
//!   concurrently; replayed bumps are grouped by slot too: no multi-key command
//!   ever crosses slots. The epoch and the channel are single keys. `PUBLISH`
//!   reaches every node, so the subscriber listens on any of them and moves to
//!   the next configured node when its node dies. [`RedisStore::unlink_prefix`]
//!   and [`RedisStore::primaries`] walk every master (from `CLUSTER NODES`, each
//!   confirmed by `ROLE`); `KEYS` and flushes are never used.
//! * **Sentinel.** The store talks to the master the sentinels report. redis-rs's
//!   Sentinel client does not follow a failover (redis-rs issue 1438), so a call
//!   whose error says the master is gone (a broken connection, `READONLY` from a
//!   demoted master) drops the connection and the next call asks the sentinels
//!   again; one caller rebuilds while the others wait for it, and a failed
//!   rebuild is not retried for 100 ms. The subscriber follows the same master.
//! * **Failover.** Replication is asynchronous: a master that dies may have
//!   acknowledged bumps its replica never received. So in both topologies any
//!   failed call counts as an outage, and the epoch is bumped before Redis is read
//!   again: whatever was cached before the failover is dead. A bump that fails is
//!   retried for [`RedisConfig::bump_retry`] (5 s by default with these
//!   topologies) before it is left for replay: instances reconnect at different
//!   times, and a peer back first must not serve what the write replaced. An
//!   instance that saw no error at all during the failover (an idle one, or one
//!   started after it) is covered by the new master's identity (see [A Redis
//!   that comes back with older data](#a-redis-that-comes-back-with-older-data)):
//!   behind Sentinel before its first read, in a Cluster within `identity_interval`.
//!
//! # Guarantees and the tests that hold them
//!
//! Each guarantee, with the tests in `tests/it/` (`module::test`) that prove it. Tests marked *every store* run against the
//! memory, Redis and tiered stores.
//!
//! 1. **Read-your-writes.** `correctness::a_miss_is_loaded_once_then_hits_until_invalidated`
//!    (every store); `coherence::an_instances_own_write_is_seen_at_once_through_its_l1`;
//!    `stampede::a_caller_arriving_after_a_write_does_not_join_an_older_load`;
//!    while Redis is down: `stampede::a_bypassed_look_up_after_a_write_does_not_join_an_older_load`; data
//!    embedded from other models: `correctness::invalidating_a_dependency_invalidates_the_entries_that_embed_it`
//!    (every store). Other instances' L1: `coherence::another_instances_l1_converges_within_the_broadcast_delay`
//!    (asserts convergence within 2 s and prints the p50 and maximum delay; the
//!    p99 < 5 ms target is measured, see BENCHMARKS.md, not asserted);
//!    `coherence::l1_is_not_trusted_across_a_channel_outage`; strict mode:
//!    `coherence::strict_mode_sees_another_instances_write_at_once`. Derived
//!    entries: `derived::a_derived_entry_lives_while_its_parts_do` (every store),
//!    `derived::parts_read_before_a_write_are_not_kept` (every store),
//!    `derived::another_instances_write_to_a_part_reaches_the_derived_entry`,
//!    `derived::a_part_missed_in_the_shared_store_is_not_answered_from_an_older_l1_copy`.
//! 2. **No stale set.** `correctness::races::a_slow_reader_never_stores_over_an_invalidation`
//!    (every store, the race made deterministic);
//!    `stampede::a_caller_arriving_after_a_write_does_not_join_an_older_load`;
//!    `correctness::versions::an_evicted_generation_counter_never_resurrects_an_entry`.
//! 3. **Invalidation is cheap.** `faults::invalidation_work_is_flat_from_10k_to_1m_cached_keys`
//!    (the commands Redis runs for an invalidation are the same at 10k and 1M keys,
//!    and none is `KEYS`, `SCAN`, `DEL` or `UNLINK`). Its Redis time is measured
//!    by the `cache` benchmark, not asserted by a test.
//! 4. **Transaction-safe.** `correctness::races::rollback_applies_nothing_and_commit_applies_everything`,
//!    `correctness::races::a_transactions_set_is_dropped_if_another_write_landed_since_its_capture`,
//!    `correctness::races::an_invalidation_survives_its_caller_being_cancelled` (every store);
//!    the commit and its invalidation as one uncancellable step, and a commit whose
//!    reply was lost: `on_commit::tests::commit_after_invalidates_though_its_caller_is_dropped_mid_commit`,
//!    `on_commit::tests::commit_after_invalidates_when_the_commit_reports_an_error`.
//!    A process that dies between its commit and its invalidation is the
//!    application's to cover with a durable record, such as an outbox row written
//!    in the same transaction and swept until its invalidation is done.
//! 5. **Writes from outside the API.** No test in `tests/it/`: this crate has no
//!    database side. The `postgres_notify` example, which the project's test script
//!    runs, checks that an `UPDATE` and a `TRUNCATE` by another connection reach the
//!    cache within 1 s and that a rolled-back one does not.
//! 6. **Stampede.** `stampede::a_thousand_concurrent_misses_across_two_instances_load_once`,
//!    `stampede::a_dead_leaders_lease_expires_and_another_caller_loads`; while
//!    Redis is down: `stampede::concurrent_bypassed_look_ups_of_one_key_share_one_load`
//!    (the Redis and tiered stores); early
//!    refresh: `correctness::expiry::entries_are_refreshed_early_before_they_expire`,
//!    `correctness::expiry::an_expired_entry_is_served_stale_while_one_task_refreshes_it`,
//!    `refresh::refreshes_of_one_key_never_run_at_once`.
//! 7. **Graceful degradation.** `faults::killing_redis_bypasses_without_errors_and_the_cache_resumes_by_itself`,
//!    `faults::a_paused_redis_opens_the_breaker`, `faults::a_sleeping_redis_opens_the_breaker`;
//!    nothing stale after the outage: `faults::nothing_invalidated_during_a_hang_is_served_after_it`,
//!    `faults::an_instance_that_saw_an_outage_distrusts_entries_written_before_it`.
//!    A Redis that comes back with older data (module `restore`):
//!    `a_redis_restarted_from_its_rdb_serves_nothing_written_before_through_redis_only`
//!    and `…_through_l1`,
//!    `a_redis_restarted_from_an_aof_that_missed_the_last_writes_serves_nothing_written_before`,
//!    `a_store_started_after_a_restore_from_an_old_snapshot_serves_none_of_it`,
//!    `an_emptied_server_is_counted_and_nothing_from_before_it_is_served`,
//!    `a_failover_to_a_replica_that_missed_the_last_bump_serves_nothing_written_before`
//!    (Sentinel), `a_cluster_master_restarted_from_its_rdb_is_noticed_by_an_idle_instance`.
//! 8. **Tenant isolation.** `correctness::tenants_never_see_each_others_entries_or_invalidations`
//!    (every store), and the property tests of key building (unit tests in
//!    `src/key.rs`: `no_key_escapes_its_prefix_and_scope`,
//!    `different_queries_never_share_a_key`).
//! 9. **Versioning.** `correctness::versions::bumping_the_version_moves_to_an_empty_keyspace`.
//! 10. **Multi-instance.** `coherence::another_instances_l1_converges_within_the_broadcast_delay`,
//!     `stampede::a_thousand_concurrent_misses_across_two_instances_load_once`,
//!     `faults::nothing_invalidated_during_a_hang_is_served_after_it` (a writer and a
//!     reader instance).
//! 11. **Scale-out.** Against real local deployments started by the tests
//!     (`testkit`: 3 masters + 3 replicas; master + replica + 3 sentinels):
//!     `scaleout::cluster_basics_reads_invalidation_fetch_many_broadcast_and_clear`
//!     (look-ups, invalidation, a prefetch across scopes on two masters, L1
//!     broadcast over the cluster's pub/sub, `unlink_prefix` emptying every master
//!     of the namespace and nothing else, the node holding the subscriptions
//!     killed and the channel back on another node);
//!     `scaleout::failover::cluster_master_killed_under_load_fails_over_without_errors_or_stale_reads`
//!     and `scaleout::failover::sentinel_master_killed_under_load_fails_over_and_the_store_follows`
//!     (a master killed under load: no error, caching resumes by itself, no read
//!     older than a write whose invalidation returned; each prints its time to
//!     resume; an idle instance's channel follows the new master by itself);
//!     `store::redis::tests::keys_are_grouped_by_hash_tag`.
//!
//! # Observability
//!
//! `tracing`: one debug event per look-up with its outcome (`HIT`, `MISS`, `STALE`,
//! `BYPASS`) and tier (`RUST_LOG=tierstamp=debug`); warnings for breaker transitions
//! and channel loss. [`Cache::stats`] counts outcomes without any recorder.
//!
//! With the `metrics` feature: `tiercache_lookups_total{outcome,kind,model}`,
//! `tiercache_loader_seconds{kind,model}`, `tiercache_invalidations_total{model}`
//! and, with Redis, `tiercache_redis_seconds{op}`, `tiercache_redis_errors_total{op}`,
//! `tiercache_breaker_transitions_total{to}`, `tiercache_channel_up`.
//! The handles of the per-call series are made once and kept: install the
//! recorder before connecting a store or building a cache, or those series
//! record nothing. `tiercache_lookups_total` is counted per thread and handed to
//! the recorder every 256 look-ups of a thread (a shared counter written on
//! every look-up cost more than the rest of an L1 hit's bookkeeping on 2 cores):
//! call [`publish_metrics`] before the recorder's values are read, as a
//! Prometheus scrape handler does, to include every look-up made so far.
//!
//! # Layout
//!
//! * `key.rs`: keys, scopes, normalisation; `ttl.rs`: TTL tiers; `envelope.rs`: the
//!   stored entry and its [`Stamp`](store::Stamp).
//! * `store.rs`: the [`Store`] trait; `store/memory.rs` ([`MemoryStore`]),
//!   `store/redis.rs` ([`RedisStore`]: its state and the breaker-guarded call;
//!   Lua scripts in `store/redis/`), `store/redis/config.rs` ([`RedisConfig`]),
//!   `store/redis/channel.rs` (the invalidation channel),
//!   `store/redis/recovery.rs` (outage replay, the epoch), `store/redis/read.rs`
//!   (the read path), `store/redis/ops.rs` (the [`Store`] operations),
//!   `store/redis/admin.rs` (clearing, counts, direct connections),
//!   `store/redis/topology.rs` ([`Topology`], [`RedisConnection`]: one server,
//!   Cluster, Sentinel), `store/redis/master.rs` (the rebuilt connection to one
//!   server or the master behind Sentinel), `store/redis/identity.rs` (the
//!   server's identity: a Redis that comes back with older data),
//!   `store/tiered.rs` ([`TieredStore`]).
//! * `cache.rs`: [`Cache`], look-ups, early refresh; `cache/load.rs`: misses,
//!   leases, background refresh, `BYPASS`; `cache/request.rs`: [`CacheKey`],
//!   [`KeyRequest`]; `cache/invalidate.rs`: invalidations; `cache/builder.rs`:
//!   [`CacheBuilder`]; `cache/prefetch.rs`: batched reads; `single_flight.rs`: the
//!   local flights; `hash.rs`: the hasher of the look-up path's maps;
//!   `invalidation.rs`: [`Dependencies`]; `on_commit.rs`:
//!   [`Transaction`]; `breaker.rs`: the circuit breaker; `stats.rs`: [`Status`] and
//!   the counters; `telemetry.rs`: the `metrics` names.
#![deny(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]
// The guide links to the Redis types, which only exist with the `redis` feature.
#![cfg_attr(not(feature = "redis"), allow(rustdoc::broken_intra_doc_links))]

#[cfg(feature = "redis")]
mod breaker;
mod cache;
mod clock;
mod envelope;
mod error;
mod hash;
mod invalidation;
mod key;
mod memo;
mod on_commit;
mod single_flight;
mod stats;
pub mod store;
mod telemetry;
mod ttl;

#[cfg(feature = "redis")]
pub use breaker::BreakerConfig;
pub use cache::{
    Cache, CacheBuilder, CacheKey, Derivation, KeyRequest, Lookup, MAX_BACKGROUND_PUTS, Prefetched,
};
pub use clock::Clock;
pub use envelope::Etag;
pub use error::{Error, LoadError, StoreError};
pub use invalidation::Dependencies;
pub use key::{KeyBuilder, Kind, Scope};
pub use memo::Memo;
pub use on_commit::Transaction;
pub use stats::{StatsSnapshot, Status};
pub use store::memory::{MemoryStore, Usage};
#[cfg(feature = "redis")]
pub use store::redis::{RedisConfig, RedisConnection, RedisStore, Topology};
#[cfg(feature = "redis")]
pub use store::tiered::{L1Check, TieredStore};
pub use store::{Health, Store};
pub use telemetry::publish as publish_metrics;
pub use ttl::TtlPolicy;

/// The attribute that [`Store`] implementations carry (`#[tierstamp::async_trait]`),
/// re-exported so they need not depend on `async-trait` themselves.
pub use async_trait::async_trait;
