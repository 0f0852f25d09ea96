//! The shared store: Redis, behind a circuit breaker, with outage replay.
//!
//! Every operation is one round trip (a Lua script where a check must be atomic).
//! Every call goes through [`RedisStore::call`], which applies the operation
//! timeout, feeds the breaker and records latency.
//!
//! # What an outage costs, and why nothing stale survives it
//!
//! * A bump that fails is remembered (`pending`). The store is then *dirty*: before
//!   its next read it replays the pending bumps, so this instance never reads an
//!   entry its own write should have invalidated.
//! * When the breaker opens, this instance has seen an outage, during which other
//!   instances' bumps may have failed too and it cannot know which. Before its next
//!   read it bumps the global epoch. Entries carry the epoch they were computed
//!   under and are valid only if it is not older than the reader's epoch, so every
//!   entry written before the outage is dead for every instance that saw the outage
//!   (and, through the channel, for the others). The cost is a cold cache after an
//!   outage, which a Redis restart would have caused anyway.
//! * A read sent while the store is dirty or the circuit open is refused at once
//!   (`Unavailable`): the caller goes to the database (`BYPASS`).
//! * A server that came back with older data (a restart from persistence, a
//!   promoted replica, a flush) may answer before any call failed: its identity
//!   is checked on every new connection and periodically (`redis/identity.rs`),
//!   and a changed one bumps the epoch like an outage.
//!
//! This file holds the store's state, its connection and the breaker-guarded
//! call; `redis/` holds the rest, a file per concern: `config.rs`,
//! `channel.rs` (the invalidation channel), `recovery.rs` (outage replay, the
//! epoch), `read.rs`, `ops.rs` (the `Store` operations), `admin.rs`, and the
//! connections (`topology.rs`, `master.rs`, `cluster.rs`, `identity.rs`).

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use redis::Script;

use crate::breaker::{Breaker, Transition};
use crate::error::{Error, StoreError};
use crate::key::KeyBuilder;

mod admin;
mod channel;
mod cluster;
mod config;
mod errors;
mod identity;
mod master;
mod ops;
mod read;
mod recovery;
mod topology;

pub(crate) use channel::Listener;
use channel::subscriber;
pub use config::RedisConfig;
use errors::from_redis;
pub use topology::{RedisConnection, Topology};

struct Scripts {
    fetch: Script,
    fetch_many: Script,
    lease: Script,
    put: Script,
    bump: Script,
    epoch: Script,
    identity: Script,
    release: Script,
}

struct Inner {
    conn: RedisConnection,
    config: RedisConfig,
    epoch_key: String,
    /// `{prefix:epoch}:identity`: the `run_id` the epoch was validated on.
    identity_key: String,
    channel: String,
    scripts: Scripts,
    breaker: Mutex<Breaker>,
    /// Whether the breaker is open (or half-open), written under its lock after
    /// every change, so that [`RedisStore::is_clean`], asked twice per cached
    /// read, takes no lock.
    breaker_open: AtomicBool,
    /// Whether the breaker is [pristine](Breaker::is_pristine), written under its
    /// lock after every change. While it is, a call neither asks the breaker nor
    /// reports a success to it: two locks of one mutex, taken by every worker
    /// thread on every Redis call, were a visible part of an L2 read. A call that
    /// reads it just before another call's failure changes it is ordered before
    /// that failure, as it could have been with the lock.
    breaker_pristine: AtomicBool,
    /// The epoch this instance reads under; 0 until known.
    epoch: AtomicU64,
    /// Generation keys whose bump did not reach Redis, and their number (readable
    /// without the lock).
    pending: Mutex<HashSet<String>>,
    pending_len: AtomicUsize,
    /// Keys taken from `pending` by a recovery and not replayed yet.
    replaying: AtomicUsize,
    /// Outages seen (breaker openings, a start without Redis), and how many of them
    /// an epoch bump has covered. Counters rather than a flag, so that a recovery
    /// that races with a new outage cannot clear it.
    outages: AtomicU64,
    recovered: AtomicU64,
    recovering: Arc<tokio::sync::Mutex<()>>,
    channel_up: AtomicBool,
    /// When ([`mono_us`]) the last ping that Redis answered on the channel was
    /// sent; 0 before the first. See [`RedisStore::heard_recently`].
    heard_at_us: AtomicU64,
    /// When ([`mono_us`]) the calls began failing without a success since; 0
    /// while they succeed. See the wait in [`Store::bump`](crate::Store::bump).
    failing_since_us: AtomicU64,
    /// Calls sent to Redis, and calls refused by the open breaker.
    attempts: AtomicU64,
    refused: AtomicU64,
    /// Successful subscriptions to the channel so far.
    connects: AtomicU64,
    listener: Mutex<Option<Arc<dyn Listener>>>,
    /// The subscriber and the identity watch, stopped with the store.
    tasks: Mutex<Vec<tokio::task::JoinHandle<()>>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Ok(tasks) = self.tasks.get_mut() {
            for task in tasks.drain(..) {
                task.abort();
            }
        }
    }
}

/// The Redis store. Cheap to clone; clones share one connection and one breaker.
#[derive(Clone)]
pub struct RedisStore {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URL may hold a password: never print it.
        f.debug_struct("RedisStore")
            .field("channel", &self.inner.channel)
            .field("epoch", &self.inner.epoch.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

/// How long a row's generation counter lives once a bump created it; `put`
/// extends it to the TTL of any entry stored under it. Any value is safe: a
/// lost counter restarts above every value it had.
pub(crate) const ROW_GEN_TTL: Duration = Duration::from_secs(3600);

/// How long a row's counter lives once a read created it: enough for the
/// load whose entry will extend it. Reads of ids that hold nothing (any id a
/// client names) leave at most this many seconds of request rate in keys. A
/// load slower than this is not stored (its counter is gone at the put).
pub(crate) const ROW_GEN_READ_TTL: Duration = Duration::from_secs(10);

/// A script that reads or creates counters: `counters.lua` (their helpers,
/// declared once) before `source`, with the two row TTLs written in.
fn with_counters(source: &str) -> Script {
    let script = format!("{}{source}", include_str!("redis/counters.lua"));
    Script::new(
        &script
            .replace(
                "ROW_GEN_READ_TTL_SECONDS",
                &ROW_GEN_READ_TTL.as_secs().to_string(),
            )
            .replace("ROW_GEN_TTL_SECONDS", &ROW_GEN_TTL.as_secs().to_string()),
    )
}

impl RedisStore {
    /// Connects lazily (start-up never blocks on an unreachable Redis; it starts
    /// degraded and recovers by itself) and starts the invalidation subscriber.
    /// Must be called inside a Tokio runtime.
    pub async fn connect(config: RedisConfig, keys: &KeyBuilder) -> Result<Self, Error> {
        let conn = RedisConnection::open(&config)?;
        let inner = Arc::new(Inner {
            conn,
            epoch_key: keys.epoch(),
            identity_key: keys.identity(),
            channel: keys.channel(),
            scripts: Scripts {
                fetch: with_counters(include_str!("redis/fetch.lua")),
                fetch_many: with_counters(include_str!("redis/fetch_many.lua")),
                lease: with_counters(include_str!("redis/lease.lua")),
                put: with_counters(include_str!("redis/put.lua")),
                bump: with_counters(include_str!("redis/bump.lua")),
                epoch: Script::new(include_str!("redis/epoch.lua")),
                identity: Script::new(include_str!("redis/identity.lua")),
                release: Script::new(include_str!("redis/release.lua")),
            },
            breaker: Mutex::new(Breaker::new(config.breaker)),
            breaker_open: AtomicBool::new(false),
            breaker_pristine: AtomicBool::new(true),
            config,
            epoch: AtomicU64::new(0),
            pending: Mutex::default(),
            pending_len: AtomicUsize::new(0),
            replaying: AtomicUsize::new(0),
            outages: AtomicU64::new(0),
            recovered: AtomicU64::new(0),
            recovering: Arc::new(tokio::sync::Mutex::new(())),
            channel_up: AtomicBool::new(false),
            heard_at_us: AtomicU64::new(0),
            failing_since_us: AtomicU64::new(0),
            attempts: AtomicU64::new(0),
            refused: AtomicU64::new(0),
            connects: AtomicU64::new(0),
            listener: Mutex::new(None),
            tasks: Mutex::default(),
        });
        // Before anything connects (connecting is lazy): every connection to
        // the master checks the server's identity before it serves a command.
        inner
            .conn
            .set_on_connect(identity::on_connect(Arc::downgrade(&inner)));
        let store = RedisStore { inner };
        if let Err(e) = store.refresh_epoch().await {
            // Starting without Redis counts as having seen an outage: others may be
            // missing invalidations we cannot know of.
            tracing::warn!(error = %e, "redis unreachable at start: cache degraded until it answers");
            store.inner.outages.fetch_add(1, Ordering::SeqCst);
        }
        let weak = Arc::downgrade(&store.inner);
        let tasks = [
            tokio::spawn(subscriber(weak.clone())),
            tokio::spawn(identity::watch(weak)),
        ];
        store.inner.tasks.lock().expect("tasks lock").extend(tasks);
        Ok(store)
    }

    pub(crate) fn set_listener(&self, listener: Arc<dyn Listener>) {
        *self.inner.listener.lock().expect("listener lock") = Some(listener);
    }

    fn listener(&self) -> Option<Arc<dyn Listener>> {
        self.inner.listener.lock().expect("listener lock").clone()
    }

    /// The epoch this instance reads under.
    pub fn epoch(&self) -> u64 {
        self.inner.epoch.load(Ordering::SeqCst)
    }

    /// The breaker is closed and no recovery is pending: reads may trust Redis.
    pub fn is_clean(&self) -> bool {
        !self.is_dirty() && !self.inner.breaker_open.load(Ordering::SeqCst)
    }

    /// Changes the breaker, and its mirrors with it.
    fn breaker<T>(&self, change: impl FnOnce(&mut Breaker) -> T) -> T {
        let mut breaker = self.inner.breaker.lock().expect("breaker lock");
        let out = change(&mut breaker);
        self.inner
            .breaker_open
            .store(breaker.is_open(), Ordering::SeqCst);
        self.inner
            .breaker_pristine
            .store(breaker.is_pristine(), Ordering::SeqCst);
        out
    }

    /// Runs one Redis operation under the breaker and the operation timeout.
    async fn call<T, F, Fut>(&self, op: &'static str, f: F) -> Result<T, StoreError>
    where
        F: FnOnce(RedisConnection) -> Fut,
        Fut: Future<Output = redis::RedisResult<T>>,
    {
        let pristine = &self.inner.breaker_pristine;
        if !pristine.load(Ordering::SeqCst) && !self.breaker(|b| b.allow(Instant::now())) {
            self.inner.refused.fetch_add(1, Ordering::Relaxed);
            return Err(StoreError::Unavailable);
        }
        self.inner.attempts.fetch_add(1, Ordering::Relaxed);
        let start = Instant::now();
        let timeout = self.inner.config.op_timeout;
        let result = match tokio::time::timeout(timeout, f(self.inner.conn.clone())).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(from_redis(e)),
            Err(_) => Err(StoreError::Timeout(timeout)),
        };
        crate::telemetry::redis_call(op, start.elapsed().as_secs_f64(), result.is_err());
        match &result {
            Err(e) if e.is_outage() => {
                let _ = self.inner.failing_since_us.compare_exchange(
                    0,
                    mono_us(),
                    Ordering::SeqCst,
                    Ordering::SeqCst,
                );
            }
            Ok(_) if self.inner.failing_since_us.load(Ordering::Relaxed) != 0 => {
                self.inner.failing_since_us.store(0, Ordering::SeqCst);
            }
            _ => {}
        }
        let transition = match &result {
            Err(e) if e.is_outage() => self.breaker(|b| b.failure(Instant::now())),
            // The server answered (perhaps with an error about our data): it is up.
            // A pristine breaker has nothing to forget.
            _ if pristine.load(Ordering::SeqCst) => None,
            _ => self.breaker(Breaker::success),
        };
        if let Err(e) = &result {
            tracing::debug!(op, error = %e, "redis call failed");
            if e.is_outage()
                && self.inner.config.topology != Topology::Standalone
                && transition != Some(Transition::Opened)
            {
                // Replication is asynchronous: a master that dies (or is demoted)
                // may have acknowledged bumps its successor never received, and
                // this failure may be the only sign of that failover this
                // instance gets. Treated like an outage: the epoch is bumped
                // before Redis is read again.
                self.inner.outages.fetch_add(1, Ordering::SeqCst);
                if let Some(l) = self.listener() {
                    l.on_outage();
                }
            }
        }
        match transition {
            Some(Transition::Opened) => {
                tracing::warn!("redis circuit opened: serving from the loader (BYPASS)");
                crate::telemetry::breaker("open");
                self.inner.outages.fetch_add(1, Ordering::SeqCst);
                if let Some(l) = self.listener() {
                    l.on_outage();
                }
            }
            Some(Transition::Closed) => {
                tracing::info!("redis circuit closed");
                crate::telemetry::breaker("closed");
            }
            None => {}
        }
        result
    }
}

fn hash_tag(k: &str) -> &str {
    k.find('{')
        .and_then(|s| k[s..].find('}').map(|e| &k[s..s + e + 1]))
        .unwrap_or(k)
}

/// Groups keys by their hash tag: one script call may only touch one slot.
fn by_slot(keys: &[String]) -> Vec<Vec<String>> {
    let mut groups: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for k in keys {
        groups.entry(hash_tag(k)).or_default().push(k.clone());
    }
    groups.into_values().collect()
}

fn parse_u64(s: &str) -> Result<u64, StoreError> {
    s.trim()
        .parse()
        .map_err(|_| StoreError::Malformed("counter"))
}

/// Microseconds on the monotonic clock since this process first asked: the time
/// base of the channel's heartbeat (an `Instant` cannot sit in an atomic).
fn mono_us() -> u64 {
    static BASE: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    // +1: 0 means "never" in `heard_at_us`.
    BASE.get_or_init(Instant::now).elapsed().as_micros() as u64 + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_identity_marker_shares_the_epochs_slot() {
        // The epoch key has no hash tag, so its slot is its whole name's; the
        // marker's hash tag is that name.
        let keys = KeyBuilder::new("app", "v1").unwrap();
        assert!(!keys.epoch().contains('{'));
        assert_eq!(hash_tag(&keys.identity()), format!("{{{}}}", keys.epoch()));
    }

    #[test]
    fn keys_are_grouped_by_hash_tag() {
        let keys: Vec<String> = ["a:gen:x:{org_1}", "a:gen:y:{org_2}", "a:gen:z:{org_1}"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let groups = by_slot(&keys);
        assert_eq!(groups.len(), 2);
        assert_eq!(
            groups[0],
            vec!["a:gen:x:{org_1}".to_owned(), "a:gen:z:{org_1}".to_owned()]
        );
    }
}
