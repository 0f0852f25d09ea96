//! # tiercache
//!
//! A two-tier cache (in-process L1, Redis L2) for services whose cached data must
//! stay *correct* under concurrency, failures and many tenants: a write is visible
//! to every reader as soon as it commits, a slow reader never stores stale data,
//! Redis going away costs neither errors nor timeouts, and one tenant's entries are
//! never another's.
//!
//! ```
//! use bytes::Bytes;
//! use tiercache::{Cache, Kind, MemoryStore, Scope, Status};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), tiercache::Error> {
//! let cache = Cache::builder(MemoryStore::new(64 << 20)).build();
//! let org = Scope::org(1);
//! let key = cache.key(Kind::List, "faculty", &org).param("page", 2).build()?;
//!
//! let load = || async { Ok::<_, std::io::Error>(Bytes::from_static(b"[\"Ada\"]")) };
//! assert_eq!(cache.get_or_compute(&key, load).await?.status, Status::Miss);
//! assert_eq!(cache.get_or_compute(&key, load).await?.status, Status::Hit);
//!
//! cache.invalidate("faculty", &org).await; // after the database commit
//! assert_eq!(cache.get_or_compute(&key, load).await?.status, Status::Miss);
//! # Ok(()) }
//! ```
//!
//! # The protocol
//!
//! **Names.** An entry key is `{prefix}:{version}:{kind}:{model}:{scope}:{params}`
//! ([`key`]); the scope is a Redis Cluster hash tag (`{org_7}`), so an entry, its
//! lease and its generation counters `{prefix}:{version}:gen:{model}:{scope}` share
//! one slot. A model's entries depend on the counters of the model and of the models
//! declared in [`Dependencies`] (a faculty list embeds department names).
//!
//! **Read** ([`Cache::get_or_compute`]). One round trip (a Lua script) returns the
//! entry and the current generations of its dependencies; a missing counter is
//! created from the server clock in µs, never 0, so an evicted counter cannot make
//! an old entry valid again. Together with this instance's epoch they form the
//! current [`Stamp`]. The entry is valid iff it was stored under exactly these
//! generations and an epoch not older than ours: `HIT` (or `STALE` past its TTL,
//! served while one task refreshes it; XFetch refreshes early with a probability
//! that rises near expiry).
//!
//! **Miss.** The stamp just read is *captured*. Callers that captured the same stamp
//! share one load (single-flight keyed by key *and* stamp: a caller that arrives
//! after a write never joins a load that began before it). The leader takes a lease
//! (`SET NX PX`) so one instance loads; the others poll the entry and return the
//! leader's value, or take the lease once it is released or its dead holder's TTL
//! runs out. The result is stored by a script that checks the generations are still
//! the captured ones: a reader that was slow while a write landed stores nothing.
//! Even if it did, the entry would carry the old stamp and never validate: the
//! stale-set race is closed by construction, not by timing.
//!
//! **Write.** The database transaction commits; then the [`Transaction`] buffer
//! (on-commit) bumps the changed models' counters: one `INCR` per model in one
//! script, which also publishes the new values on the invalidation channel. Only
//! then does the write's response go out: every later read, on any instance, through
//! Redis, sees the new generation. Invalidation is O(1) per model and scope: nothing
//! is scanned, nothing enumerated, `KEYS` is never used. A rolled-back transaction
//! drops its effects.
//!
//! **L1** ([`TieredStore`]). An in-process cache of envelopes plus a mirror of the
//! counters fed by this instance's bumps (synchronously: read-your-writes here), by
//! the channel (other instances, within the broadcast delay) and by Redis reads. L1
//! answers only while the channel is up (pinged every second) and Redis is healthy;
//! when the channel drops, L1 is cleared. Strict mode checks each L1 hit against the
//! generations in Redis, closing the broadcast window for a few bytes per read.
//!
//! **Outage** ([`RedisStore`], [`breaker`]). Every Redis call has a short timeout and
//! feeds a circuit breaker; after 3 consecutive failures calls are refused at once
//! and requests are served by the loader (`BYPASS`), with no timeout paid. A bump
//! that fails is remembered and replayed before this instance reads Redis again. An
//! instance whose breaker opened bumps the global epoch before it reads again: any
//! instance's invalidation may have been lost in the outage, so every entry stored
//! before it dies. A half-open probe closes the breaker by itself.
//!
//! What is not covered: an instance cut off from Redis while its peers are not can
//! commit writes whose invalidations the peers do not see until it reconnects. A
//! database-side notification (PostgreSQL `LISTEN/NOTIFY`, as Campus does) closes
//! that gap by letting every instance bump the counters itself.
//!
//! # Layout
//!
//! * [`key`]: key building and normalisation; [`ttl`]: TTL tiers;
//!   [`envelope`]: the stored entry and its [`Stamp`].
//! * [`store`]: the [`Store`] trait; [`MemoryStore`], [`RedisStore`] (Lua scripts
//!   next to it), [`TieredStore`].
//! * `cache`: [`Cache`], `get_or_compute`, leases, early refresh;
//!   `single_flight`: the local flights; `invalidation`: [`Dependencies`];
//!   `on_commit`: [`Transaction`]; [`breaker`]: the circuit breaker;
//!   `stats`: [`Status`] and the counters.
//!
//! # Observability
//!
//! `metrics`: `tiercache_lookups_total{outcome,kind,model}`,
//! `tiercache_loader_seconds{kind,model}`, `tiercache_redis_seconds{op}`,
//! `tiercache_redis_errors_total{op}`, `tiercache_invalidations_total{model}`,
//! `tiercache_breaker_transitions_total{to}`, `tiercache_channel_up`.
//! `tracing`: one debug event per look-up with its outcome (`HIT`, `MISS`, `STALE`,
//! `BYPASS`) and tier.
#![warn(missing_docs)]

pub mod breaker;
mod cache;
pub mod envelope;
pub mod error;
mod invalidation;
pub mod key;
mod on_commit;
mod single_flight;
mod stats;
pub mod store;
pub mod ttl;

pub use cache::{Cache, CacheBuilder, CacheKey, KeyRequest, Lookup, Prefetched};
pub use envelope::{Envelope, Etag, Stamp};
pub use error::{Error, StoreError};
pub use invalidation::Dependencies;
pub use key::{KeyBuilder, Kind, Scope};
pub use on_commit::Transaction;
pub use stats::{StatsSnapshot, Status};
pub use store::memory::MemoryStore;
pub use store::redis::{RedisConfig, RedisStore};
pub use store::tiered::TieredStore;
pub use store::{Fetched, Health, Store, Tier};
pub use ttl::TtlPolicy;
