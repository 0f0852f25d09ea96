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

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use redis::Script;

use super::{Fetched, Health, Store, Tier, lease_key};
use crate::breaker::{Breaker, BreakerConfig, Transition};
use crate::envelope::{Envelope, Stamp};
use crate::error::{Error, StoreError};
use crate::key::KeyBuilder;

mod cluster;
mod errors;
mod identity;
mod master;
mod topology;

use errors::from_redis;
pub use topology::{RedisConnection, Topology};

/// What the invalidation channel and the breaker tell an in-process tier.
pub(crate) trait Listener: Send + Sync + 'static {
    /// The subscription came up (after a successful SUBSCRIBE) or went down.
    fn on_channel(&self, up: bool);
    /// Generations moved to these values (the channel's messages, in the
    /// order Redis published them).
    fn on_gens(&self, gens: &[(String, u64)]);
    /// A token read just before this instance sends a bump of its own; the
    /// bump's reply goes to [`on_bumped`](Self::on_bumped) with it.
    fn before_bump(&self) -> u64 {
        0
    }
    /// This instance's own bump answered with these values. Unlike a message,
    /// a reply can arrive after newer values were published (another
    /// instance's bump of the same counter): a listener that may have dropped
    /// a counter since `token` must not learn it from the reply.
    fn on_bumped(&self, gens: &[(String, u64)], _token: u64) {
        self.on_gens(gens);
    }
    /// The epoch moved.
    fn on_epoch(&self, epoch: u64);
    /// The breaker opened: the shared store is considered down.
    fn on_outage(&self);
}

/// Where a [`RedisStore`] finds Redis, and its tuning.
///
/// ```
/// # #[cfg(feature = "redis")] {
/// use tiercache::{RedisConfig, Topology};
///
/// let one = RedisConfig::new("redis://127.0.0.1:6379/");
/// let cluster = RedisConfig::cluster(["redis://10.0.0.1:7000/", "redis://10.0.0.2:7000/"]);
/// let sentinel = RedisConfig::sentinel(["redis://10.0.0.1:26379/"], "mymaster");
/// assert_eq!(cluster.topology, Topology::Cluster);
/// # let _ = (one, sentinel); }
/// ```
#[derive(Clone)]
#[non_exhaustive]
pub struct RedisConfig {
    /// How Redis is deployed; decides what `nodes` lists.
    pub topology: Topology,
    /// `redis://` or `rediss://` URLs: the server ([`Topology::Standalone`], one
    /// URL), seed nodes of a Cluster, or the sentinels. May hold passwords: never
    /// printed (`Debug` leaves them out).
    pub nodes: Vec<String>,
    /// A call slower than this counts as a failure (and is abandoned).
    pub op_timeout: Duration,
    /// Timeout of one connection attempt.
    pub connect_timeout: Duration,
    /// The circuit breaker's tuning.
    pub breaker: BreakerConfig,
    /// How often the subscription is pinged (at most every `op_timeout / 3`,
    /// whatever this says); a ping unanswered within `op_timeout * 2` marks the
    /// channel down (and L1 unused until it is back). Each answered ping also
    /// renews the in-process tier's trust for `op_timeout` (see
    /// [`TieredStore`](crate::TieredStore)), so the pings must come well within
    /// that.
    pub ping_interval: Duration,
    /// How often the server's identity is checked apart from new connections
    /// (an operator emptying the server, a Cluster master restarted without a
    /// failed call): one
    /// script per interval per instance, plus one `INFO server` per Cluster
    /// master. See the crate guide, "A Redis that comes back with older data".
    pub identity_interval: Duration,
    /// How long a failed invalidation keeps being retried before it is left for
    /// replay (and [`Cache::invalidate`](crate::Cache::invalidate) returns).
    /// Default: zero for one server; 5 s for a Cluster or Sentinel, where a
    /// failover makes instances reconnect at different times: a bump left for
    /// replay would let a peer that reconnected first serve what the write
    /// replaced until this instance's next call. Raise it to cover your
    /// failover time (`cluster-node-timeout`, `down-after-milliseconds`), lower
    /// it to bound a write's latency during an outage.
    pub bump_retry: Duration,
}

impl std::fmt::Debug for RedisConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisConfig")
            .field("topology", &self.topology)
            .field("nodes", &self.nodes.len())
            .field("op_timeout", &self.op_timeout)
            .field("connect_timeout", &self.connect_timeout)
            .field("breaker", &self.breaker)
            .field("ping_interval", &self.ping_interval)
            .field("identity_interval", &self.identity_interval)
            .field("bump_retry", &self.bump_retry)
            .finish()
    }
}

impl RedisConfig {
    /// One Redis server. Defaults: 250 ms per call, 500 ms to connect, 3 failures
    /// open the breaker.
    pub fn new(url: impl Into<String>) -> Self {
        Self::with_topology(Topology::Standalone, [url.into()])
    }

    /// A Redis Cluster reached through any of these seed nodes.
    pub fn cluster<I, S>(urls: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self::with_topology(Topology::Cluster, urls)
    }

    /// The master named `master`, found through these sentinels.
    pub fn sentinel<I, S>(urls: I, master: impl Into<String>) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self::with_topology(
            Topology::Sentinel {
                master: master.into(),
            },
            urls,
        )
    }

    fn with_topology<I, S>(topology: Topology, urls: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        RedisConfig {
            nodes: urls.into_iter().map(Into::into).collect(),
            op_timeout: Duration::from_millis(250),
            connect_timeout: Duration::from_millis(500),
            breaker: BreakerConfig::default(),
            ping_interval: Duration::from_millis(80),
            identity_interval: Duration::from_secs(1),
            bump_retry: if topology == Topology::Standalone {
                Duration::ZERO
            } else {
                Duration::from_secs(5)
            },
            topology,
        }
    }
}

struct Scripts {
    fetch: Script,
    fetch_many: Script,
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
    /// while they succeed. See the wait in [`Store::bump`].
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

    /// How many times the invalidation channel was (re)subscribed.
    pub fn channel_connects(&self) -> u64 {
        self.inner.connects.load(Ordering::SeqCst)
    }

    /// Whether the invalidation subscription is up.
    pub fn channel_up(&self) -> bool {
        self.inner.channel_up.load(Ordering::SeqCst)
    }

    /// Whether Redis answered a ping on the channel sent less than `op_timeout`
    /// ago: while it did not, a message for this instance may be stuck in a
    /// hung Redis, and the in-process tier must not answer.
    ///
    /// Why `op_timeout` closes the window of a hung Redis: a ping sent at `s`
    /// and answered was processed before the hang began (at `h`), so `s < h` and
    /// this instance stops trusting its L1 before `h + op_timeout`. A writer
    /// whose invalidation failed saw its first failure of the outage (`f`) no
    /// earlier than `h`, and [`Store::bump`] reports the failure no earlier
    /// than `f + op_timeout`: by the time the write's response can be sent, no
    /// instance trusts an L1 that could not hear of it.
    ///
    /// What it does not cover: the channel lives on one node, so in a Cluster
    /// it proves that node alive, not the master of every slot; and a writer
    /// cut off from a Redis that its peers still reach leaves their channel
    /// healthy. There, the writer's failed invalidation is relayed another way
    /// (Campus sends it through PostgreSQL) and peers learn of it within that
    /// relay's delay.
    pub(crate) fn heard_recently(&self) -> bool {
        let heard = self.inner.heard_at_us.load(Ordering::Relaxed);
        heard != 0
            && mono_us() < heard.saturating_add(self.inner.config.op_timeout.as_micros() as u64)
    }

    /// The breaker is closed and no recovery is pending: reads may trust Redis.
    pub fn is_clean(&self) -> bool {
        !self.is_dirty() && !self.inner.breaker_open.load(Ordering::SeqCst)
    }

    /// Calls sent to Redis so far, and calls the open breaker refused without
    /// touching the network.
    pub fn call_counts(&self) -> (u64, u64) {
        (
            self.inner.attempts.load(Ordering::Relaxed),
            self.inner.refused.load(Ordering::Relaxed),
        )
    }

    /// Removes every entry of a namespace (one version) with `SCAN` + `UNLINK`
    /// (never a blocking listing of every key, never a database flush), a batch
    /// at a time; returns how many were removed. The generation counters and the
    /// epoch are shared by every version and stay (see [`KeyBuilder`]). Not
    /// breaker-guarded: an administrative call that should report its errors.
    pub async fn unlink_namespace(&self, keys: &KeyBuilder) -> Result<u64, StoreError> {
        self.unlink_prefix(keys.namespace()).await
    }

    /// [`unlink_namespace`](Self::unlink_namespace) for every key under
    /// `{prefix}:` (every version of an application's keys, for example).
    /// Keys of other prefixes, `{prefix}x:…` included, are untouched. Walks every
    /// primary: each master of a Cluster, the master behind Sentinel.
    pub async fn unlink_prefix(&self, prefix: &str) -> Result<u64, StoreError> {
        let pattern = format!("{prefix}:*");
        let mut removed = 0u64;
        for (_, mut conn) in self.primaries().await? {
            let mut cursor: u64 = 0;
            loop {
                let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
                    .arg(cursor)
                    .arg("MATCH")
                    .arg(&pattern)
                    .arg("COUNT")
                    .arg(1000)
                    .query_async(&mut conn)
                    .await
                    .map_err(from_redis)?;
                if !batch.is_empty() {
                    // One UNLINK per key, pipelined: a Cluster node refuses a
                    // multi-key command whose keys live in different slots.
                    let mut pipe = redis::pipe();
                    for k in &batch {
                        pipe.cmd("UNLINK").arg(k);
                    }
                    let counts: Vec<u64> = pipe.query_async(&mut conn).await.map_err(from_redis)?;
                    removed += counts.iter().sum::<u64>();
                }
                if next == 0 {
                    break;
                }
                cursor = next;
            }
        }
        Ok(removed)
    }

    /// A plain connection to every primary, with its address: the server, the
    /// master behind Sentinel, or every master of a Cluster. For what must see
    /// every key (`SCAN`, memory figures); not breaker-guarded.
    ///
    /// An escape hatch like [`connection`](Self::connection): the connections
    /// are the `redis` crate's (1.x) type.
    pub async fn primaries(
        &self,
    ) -> Result<Vec<(String, redis::aio::MultiplexedConnection)>, StoreError> {
        self.inner.conn.primaries().await
    }

    /// The deployment this store talks to.
    pub fn topology(&self) -> &Topology {
        &self.inner.config.topology
    }

    /// A connection for direct use (statistics, clean-up); not breaker-guarded.
    /// It implements the `redis` crate's `aio::ConnectionLike` whatever the
    /// [`Topology`] (routed by key in a Cluster, to the current master behind
    /// Sentinel).
    ///
    /// An escape hatch: code using it depends on the `redis` crate's version (1.x)
    /// as well as on this one's.
    pub fn connection(&self) -> RedisConnection {
        self.inner.conn.clone()
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

    async fn refresh_epoch(&self) -> Result<u64, StoreError> {
        self.epoch_script("get").await
    }

    /// Runs `epoch.lua` (`get` or `bump`) and adopts the epoch it returns.
    async fn epoch_script(&self, op: &'static str) -> Result<u64, StoreError> {
        let inner = &self.inner;
        let local = self.epoch();
        let raw: String = self
            .call("epoch", |mut c| async move {
                inner
                    .scripts
                    .epoch
                    .key(&inner.epoch_key)
                    .arg(op)
                    .arg(&inner.channel)
                    .arg(local)
                    .invoke_async(&mut c)
                    .await
            })
            .await?;
        let e = parse_u64(&raw)?;
        self.observe_epoch(e);
        Ok(e)
    }

    fn observe_epoch(&self, e: u64) {
        let before = self.inner.epoch.fetch_max(e, Ordering::SeqCst);
        if e > before
            && before != 0
            && let Some(l) = self.listener()
        {
            l.on_epoch(e);
        }
    }

    /// An outage has not been covered by an epoch bump yet, or bumps wait to be
    /// replayed: Redis must not be read.
    fn is_dirty(&self) -> bool {
        self.inner.outages.load(Ordering::SeqCst) != self.inner.recovered.load(Ordering::SeqCst)
            || self.inner.pending_len.load(Ordering::SeqCst) > 0
            || self.inner.replaying.load(Ordering::SeqCst) > 0
    }

    fn add_pending(&self, keys: impl IntoIterator<Item = String>) {
        let mut p = self.inner.pending.lock().expect("pending lock");
        p.extend(keys);
        self.inner.pending_len.store(p.len(), Ordering::SeqCst);
    }

    /// Makes the store safe to read: bumps the epoch after an outage, replays
    /// bumps that did not land. Refuses (so the caller bypasses) while another task
    /// is doing it or Redis still fails. The work runs in its own task: a caller
    /// cancelled half-way must not leave a recovery half-done.
    async fn ready(&self) -> Result<(), StoreError> {
        if !self.is_dirty() {
            return Ok(());
        }
        let Ok(guard) = self.inner.recovering.clone().try_lock_owned() else {
            return Err(StoreError::Unavailable);
        };
        let store = self.clone();
        let task = tokio::spawn(async move {
            let _guard = guard;
            store.recover().await
        });
        task.await.unwrap_or(Err(StoreError::Unavailable))
    }

    /// Kills every entry of this namespace on every instance: bumps the epoch
    /// (entries carry the epoch they were written under, and an older one never
    /// validates) and publishes it, so each instance's L1 drops its entries too.
    /// What an operator's "clear the cache" means; removing Redis' keys alone
    /// would leave every L1 serving what it holds. Returns the new epoch.
    pub async fn bump_epoch(&self) -> Result<u64, StoreError> {
        self.epoch_script("bump").await
    }

    async fn recover(&self) -> Result<(), StoreError> {
        let inner = &self.inner;
        let seen = inner.outages.load(Ordering::SeqCst);
        if seen != inner.recovered.load(Ordering::SeqCst) {
            let e = self.bump_epoch().await?;
            tracing::info!(
                epoch = e,
                "epoch bumped after an outage: entries written before it are dead"
            );
            inner.recovered.fetch_max(seen, Ordering::SeqCst);
        }
        let taken: Vec<String> = {
            let mut p = inner.pending.lock().expect("pending lock");
            inner.replaying.store(p.len(), Ordering::SeqCst);
            inner.pending_len.store(0, Ordering::SeqCst);
            std::mem::take(&mut *p).into_iter().collect()
        };
        let mut groups = by_slot(&taken).into_iter();
        while let Some(group) = groups.next() {
            if let Err(e) = self.bump_now(&group).await {
                self.add_pending(group.into_iter().chain(groups.flatten()));
                inner.replaying.store(0, Ordering::SeqCst);
                return Err(e);
            }
            inner.replaying.fetch_sub(group.len(), Ordering::SeqCst);
            tracing::info!(
                keys = group.len(),
                "replayed invalidations missed during an outage"
            );
        }
        if self.is_dirty() {
            Err(StoreError::Unavailable)
        } else {
            Ok(())
        }
    }

    async fn bump_now(&self, gen_keys: &[String]) -> Result<Vec<u64>, StoreError> {
        let inner = &self.inner;
        let token = self.listener().map(|l| l.before_bump());
        let raw: Vec<String> = self
            .call("bump", |mut c| async move {
                let mut inv = inner.scripts.bump.prepare_invoke();
                for k in gen_keys {
                    inv.key(k);
                }
                inv.arg(&inner.channel);
                inv.invoke_async(&mut c).await
            })
            .await?;
        let values = raw
            .iter()
            .map(|v| parse_u64(v))
            .collect::<Result<Vec<_>, _>>()?;
        if let Some(l) = self.listener() {
            let pairs: Vec<(String, u64)> = gen_keys
                .iter()
                .cloned()
                .zip(values.iter().copied())
                .collect();
            l.on_bumped(&pairs, token.unwrap_or(0));
        }
        Ok(values)
    }

    /// The current stamp only (no entry): what strict L1 validation reads.
    pub(crate) async fn fetch_stamp(
        &self,
        key: &str,
        gen_keys: &[String],
    ) -> Result<Stamp, StoreError> {
        self.fetch_inner(key, gen_keys, false)
            .await
            .map(|f| f.stamp)
    }

    /// The fast path of a read: one `MGET` of the entries and their counters.
    /// It is atomic like the scripts and reads the same keys, but Redis runs it
    /// without the Lua VM, which was half of Redis' time per cached read. Only
    /// when a counter is missing (first use, or evicted) must the script run,
    /// since creating the counter is a write. `None` if the reply is malformed.
    async fn mget(
        &self,
        op: &'static str,
        keys: &[&str],
    ) -> Result<Option<Vec<Option<Vec<u8>>>>, StoreError> {
        let reply = self
            .call(op, |mut c| async move {
                // Sized up front: grown argument by argument, its buffers were
                // reallocated several times on every cached read.
                let bytes = 4 + keys.iter().map(|k| k.len()).sum::<usize>();
                let mut cmd = redis::Cmd::with_capacity(keys.len() + 1, bytes);
                cmd.arg("MGET");
                for k in keys {
                    cmd.arg(*k);
                }
                // The reply is taken apart here rather than by `query_async`,
                // whose error scan and generic conversion walk it twice more.
                match redis::aio::ConnectionLike::req_packed_command(&mut c, &cmd).await? {
                    redis::Value::ServerError(e) => Err(e.into()),
                    other => Ok(other),
                }
            })
            .await?;
        Ok(mget_values(reply, keys.len()))
    }

    async fn fetch_inner(
        &self,
        key: &str,
        gen_keys: &[String],
        with_entry: bool,
    ) -> Result<Fetched, StoreError> {
        self.ready().await?;
        let mut keys: Vec<&str> = Vec::with_capacity(gen_keys.len() + 1);
        if with_entry {
            keys.push(key);
        }
        keys.extend(gen_keys.iter().map(String::as_str));
        if let Some(mut raw) = self.mget("fetch", &keys).await? {
            // Read after the call, never before: the call may have reconnected
            // to a server that came back with older data, whose identity check
            // bumps the epoch before the read runs. The epoch only grows; a
            // newer one only makes validation stricter.
            let epoch = self.epoch();
            let entry = if with_entry {
                decode_entry(key, raw.remove(0))
            } else {
                None
            };
            if let Some(gens) = present_gens(raw) {
                return Ok(Fetched {
                    entry,
                    stamp: Stamp { epoch, gens },
                    tier: Tier::L2,
                });
            }
        }
        let inner = &self.inner;
        let raw: Vec<Option<Vec<u8>>> = self
            .call("fetch", |mut c| async move {
                let mut inv = inner.scripts.fetch.key(key);
                for k in gen_keys {
                    inv.key(k);
                }
                inv.arg(if with_entry { "1" } else { "0" });
                inv.invoke_async(&mut c).await
            })
            .await?;
        if raw.len() != gen_keys.len() + 1 {
            return Err(StoreError::Malformed("fetch reply length"));
        }
        let epoch = self.epoch();
        let mut it = raw.into_iter();
        let entry = decode_entry(key, it.next().flatten());
        let gens = it
            .map(|g| {
                g.ok_or(StoreError::Malformed("missing generation"))
                    .and_then(|b| parse_u64_bytes(&b))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Fetched {
            entry,
            stamp: Stamp { epoch, gens },
            tier: Tier::L2,
        })
    }

    async fn fetch_many_inner(
        &self,
        items: &[(&str, &[String])],
    ) -> Result<Vec<Fetched>, StoreError> {
        self.ready().await?;
        let keys: Vec<&str> = items
            .iter()
            .flat_map(|(key, gens)| std::iter::once(*key).chain(gens.iter().map(String::as_str)))
            .collect();
        if let Some(raw) = self.mget("fetch_many", &keys).await? {
            // After the call, as in `fetch_inner`.
            let epoch = self.epoch();
            let mut it = raw.into_iter();
            let mut out = Vec::with_capacity(items.len());
            for (key, gen_keys) in items {
                let entry = decode_entry(key, it.next().flatten());
                let Some(gens) = present_gens(it.by_ref().take(gen_keys.len())) else {
                    break;
                };
                out.push(Fetched {
                    entry,
                    stamp: Stamp { epoch, gens },
                    tier: Tier::L2,
                });
            }
            if out.len() == items.len() {
                return Ok(out);
            }
        }
        let inner = &self.inner;
        let raw: Vec<Option<Vec<u8>>> = self
            .call("fetch_many", |mut c| async move {
                let mut inv = inner.scripts.fetch_many.prepare_invoke();
                for (key, gen_keys) in items {
                    inv.key(*key);
                    for g in *gen_keys {
                        inv.key(g);
                    }
                    inv.arg(gen_keys.len());
                }
                inv.invoke_async(&mut c).await
            })
            .await?;
        let expected: usize = items.iter().map(|(_, g)| g.len() + 1).sum();
        if raw.len() != expected {
            return Err(StoreError::Malformed("fetch_many reply length"));
        }
        let epoch = self.epoch();
        let mut it = raw.into_iter();
        let mut out = Vec::with_capacity(items.len());
        for (key, gen_keys) in items {
            let entry = decode_entry(key, it.next().flatten());
            let gens = it
                .by_ref()
                .take(gen_keys.len())
                .map(|g| {
                    g.ok_or(StoreError::Malformed("missing generation"))
                        .and_then(|b| parse_u64_bytes(&b))
                })
                .collect::<Result<Vec<_>, _>>()?;
            out.push(Fetched {
                entry,
                stamp: Stamp { epoch, gens },
                tier: Tier::L2,
            });
        }
        Ok(out)
    }

    fn handle_message(&self, payload: &[u8]) {
        let Ok(text) = std::str::from_utf8(payload) else {
            return;
        };
        let mut gens = Vec::new();
        for line in text.lines() {
            let mut parts = line.split(' ');
            match (parts.next(), parts.next(), parts.next()) {
                (Some("g"), Some(key), Some(v)) => {
                    if let Ok(v) = v.parse() {
                        gens.push((key.to_owned(), v));
                    }
                }
                (Some("e"), Some(v), None) => {
                    if let Ok(e) = v.parse() {
                        self.observe_epoch(e);
                    }
                }
                _ => tracing::debug!(line, "ignored invalidation message"),
            }
        }
        if !gens.is_empty()
            && let Some(l) = self.listener()
        {
            l.on_gens(&gens);
        }
    }

    fn set_channel(&self, up: bool) {
        self.inner.channel_up.store(up, Ordering::SeqCst);
        crate::telemetry::channel(up);
        if let Some(l) = self.listener() {
            l.on_channel(up);
        }
    }
}

/// An `MGET` reply's values, `None` if it is not `len` strings and nils (the
/// caller then reads through the script, which reports any error properly).
fn mget_values(reply: redis::Value, len: usize) -> Option<Vec<Option<Vec<u8>>>> {
    let redis::Value::Array(items) = reply else {
        return None;
    };
    if items.len() != len {
        return None;
    }
    items
        .into_iter()
        .map(|v| match v {
            redis::Value::BulkString(b) => Some(Some(b)),
            redis::Value::Nil => Some(None),
            _ => None,
        })
        .collect()
}

/// Generations as read by `MGET`, or `None` if one is missing or not a number
/// (the script then creates it).
fn present_gens(raw: impl IntoIterator<Item = Option<Vec<u8>>>) -> Option<Vec<u64>> {
    raw.into_iter()
        .map(|g| g.and_then(|b| parse_u64_bytes(&b).ok()))
        .collect()
}

fn decode_entry(key: &str, raw: Option<Vec<u8>>) -> Option<Arc<Envelope>> {
    match Envelope::decode(Bytes::from(raw?)) {
        Ok(e) => Some(Arc::new(e)),
        Err(e) => {
            tracing::warn!(key, error = %e, "undecodable cache entry treated as a miss");
            None
        }
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

fn parse_u64_bytes(b: &[u8]) -> Result<u64, StoreError> {
    // Counters are read on every cached request, as plain digits (what INCR
    // writes): those are folded directly, 19 digits at most so nothing overflows.
    // Anything else takes the general parse and its error.
    if !b.is_empty()
        && b.len() <= 19
        && let Some(n) = b.iter().try_fold(0u64, |n, d| {
            d.is_ascii_digit().then(|| n * 10 + u64::from(d - b'0'))
        })
    {
        return Ok(n);
    }
    std::str::from_utf8(b)
        .map_err(|_| StoreError::Malformed("counter"))
        .and_then(parse_u64)
}

/// Counters bumped by one script outside a Cluster (one statement over
/// thousands of tenants stays a few round trips, each script short).
const BUMP_BATCH: usize = 1000;

/// Microseconds on the monotonic clock since this process first asked: the time
/// base of the channel's heartbeat (an `Instant` cannot sit in an atomic).
fn mono_us() -> u64 {
    static BASE: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    // +1: 0 means "never" in `heard_at_us`.
    BASE.get_or_init(Instant::now).elapsed().as_micros() as u64 + 1
}

/// Keeps a subscription to the invalidation channel, reconnecting with backoff,
/// and pings it so a hung connection is noticed (a paused Redis keeps TCP open).
async fn subscriber(weak: Weak<Inner>) {
    let mut backoff = Duration::from_millis(50);
    let mut attempt = 0usize;
    loop {
        let Some((channel, config, conn)) = weak
            .upgrade()
            .map(|i| (i.channel.clone(), i.config.clone(), i.conn.clone()))
        else {
            return;
        };
        let (connect_timeout, op_timeout, ping_every) = (
            config.connect_timeout,
            config.op_timeout,
            config.ping_interval.min(config.op_timeout / 3),
        );
        attempt += 1;
        let connected = async {
            let client = topology::subscriber_client(&conn, attempt).await?;
            let subscribed = async {
                let mut ps = client.get_async_pubsub().await?;
                ps.subscribe(&channel).await?;
                Ok::<_, redis::RedisError>(ps)
            }
            .await;
            if subscribed.is_err() {
                // Behind Sentinel: an idle instance learns here that its master is
                // gone, and asks the sentinels again next time.
                topology::unreachable(&conn, &client);
            }
            subscribed
        };
        if let Ok(Ok(ps)) = tokio::time::timeout(connect_timeout + op_timeout, connected).await {
            let Some(store) = weak.upgrade().map(|inner| RedisStore { inner }) else {
                return;
            };
            // An epoch bump published while we were not listening must not be
            // missed: the epoch is read before the channel counts as up, so no
            // read trusts L1 (nor judges an entry) under the old one meanwhile.
            let asked = mono_us();
            let epoch_ok = store.refresh_epoch().await.is_ok();
            if epoch_ok {
                store.inner.heard_at_us.fetch_max(asked, Ordering::SeqCst);
                store.set_channel(true);
                store.inner.connects.fetch_add(1, Ordering::SeqCst);
            }
            drop(store);
            if epoch_ok {
                backoff = Duration::from_millis(50);
                let (mut sink, mut stream) = ps.split();
                let mut ping = tokio::time::interval(ping_every);
                ping.tick().await;
                loop {
                    tokio::select! {
                        msg = stream.next() => match msg {
                            Some(msg) => match weak.upgrade() {
                                Some(inner) => RedisStore { inner }.handle_message(msg.get_payload_bytes()),
                                None => return,
                            },
                            None => break,
                        },
                        _ = ping.tick() => {
                            let sent = mono_us();
                            let pong = tokio::time::timeout(op_timeout * 2, sink.ping::<redis::Value>()).await;
                            if !matches!(pong, Ok(Ok(_))) {
                                break;
                            }
                            match weak.upgrade() {
                                Some(inner) => inner.heard_at_us.fetch_max(sent, Ordering::SeqCst),
                                None => return,
                            };
                        }
                    }
                }
            }
            match weak.upgrade() {
                Some(inner) => RedisStore { inner }.set_channel(false),
                None => return,
            }
            tracing::warn!("invalidation channel down: in-process tier disabled until it is back");
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(1));
    }
}

#[async_trait]
impl Store for RedisStore {
    async fn fetch(&self, key: &str, gen_keys: &[String]) -> Result<Fetched, StoreError> {
        self.fetch_inner(key, gen_keys, true).await
    }

    async fn fetch_many(&self, items: &[(&str, &[String])]) -> Result<Vec<Fetched>, StoreError> {
        if let [(key, gen_keys)] = items {
            return Ok(vec![self.fetch_inner(key, gen_keys, true).await?]);
        }
        // Outside a Cluster one MGET (or script) may read keys of any slot.
        if self.inner.config.topology != Topology::Cluster
            || items
                .windows(2)
                .all(|w| hash_tag(w[0].0) == hash_tag(w[1].0))
        {
            return self.fetch_many_inner(items).await;
        }
        // A Cluster refuses a multi-key command across slots: one read per hash
        // tag, sent together (the multiplexed connections pipeline them).
        let mut groups: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
        for (i, (key, _)) in items.iter().enumerate() {
            groups.entry(hash_tag(key)).or_default().push(i);
        }
        let reads = groups.into_values().map(|idx| async move {
            let part: Vec<(&str, &[String])> = idx.iter().map(|&i| items[i]).collect();
            let fetched = match part.as_slice() {
                [(key, gen_keys)] => vec![self.fetch_inner(key, gen_keys, true).await?],
                _ => self.fetch_many_inner(&part).await?,
            };
            Ok::<_, StoreError>((idx, fetched))
        });
        let mut out: Vec<Option<Fetched>> = items.iter().map(|_| None).collect();
        for (idx, fetched) in futures::future::try_join_all(reads).await? {
            for (i, f) in idx.into_iter().zip(fetched) {
                out[i] = Some(f);
            }
        }
        out.into_iter()
            .map(|f| f.ok_or(StoreError::Malformed("fetch_many reply length")))
            .collect()
    }

    async fn put(
        &self,
        key: &str,
        gen_keys: &[String],
        entry: &Envelope,
        ttl: Duration,
        lease: Option<u64>,
    ) -> Result<bool, StoreError> {
        let inner = &self.inner;
        let lease_key = lease_key(key);
        let body = entry.encode();
        let stored: i64 = self
            .call("put", |mut c| async move {
                let mut inv = inner.scripts.put.key(key);
                inv.key(&lease_key);
                for k in gen_keys {
                    inv.key(k);
                }
                inv.arg(body.as_ref())
                    .arg(ttl.as_millis().max(1) as u64)
                    .arg(lease.map(|t| t.to_string()).unwrap_or_default());
                for g in &entry.stamp.gens {
                    inv.arg(g.to_string());
                }
                inv.invoke_async(&mut c).await
            })
            .await?;
        Ok(stored == 1)
    }

    async fn bump(&self, gen_keys: &[String]) -> Result<Vec<u64>, StoreError> {
        // Replays earlier misses first (an instance that only writes must not keep
        // them forever); its failure does not stop this bump from being tried.
        let _ = self.ready().await;
        let deadline = Instant::now() + self.inner.config.bump_retry;
        // Bumped a slot at a time in a Cluster (a script stays in one slot),
        // in batches elsewhere, answered in the callers' order.
        let mut by_key: HashMap<String, u64> = HashMap::new();
        let groups = if self.inner.config.topology == Topology::Cluster {
            by_slot(gen_keys)
        } else {
            gen_keys
                .chunks(BUMP_BATCH)
                .map(<[String]>::to_vec)
                .collect()
        };
        for group in groups {
            loop {
                match self.bump_now(&group).await {
                    Ok(v) => {
                        by_key.extend(group.iter().cloned().zip(v));
                        break;
                    }
                    Err(_) if Instant::now() < deadline => {
                        // A failover in progress: the breaker's probes and the
                        // connection's rebuild get through once it is over.
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                    Err(e) => {
                        // Not lost: replayed before this instance reads Redis again.
                        self.add_pending(gen_keys.iter().cloned());
                        // Other instances may still trust their L1 for up to
                        // `op_timeout` after Redis stopped answering them, which
                        // was no later than this instance's first failure of
                        // the outage: the caller's response must not go out
                        // before then (see `heard_recently`). Once the outage
                        // is that old, nothing is waited.
                        let since = match self.inner.failing_since_us.load(Ordering::SeqCst) {
                            0 => mono_us(),
                            t => t,
                        };
                        let until = since + self.inner.config.op_timeout.as_micros() as u64;
                        let wait = until.saturating_sub(mono_us());
                        tokio::time::sleep(Duration::from_micros(wait)).await;
                        return Err(e);
                    }
                }
            }
        }
        gen_keys
            .iter()
            .map(|k| {
                by_key
                    .get(k)
                    .copied()
                    .ok_or(StoreError::Malformed("bump reply length"))
            })
            .collect()
    }

    async fn acquire_lease(
        &self,
        key: &str,
        token: u64,
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        let lk = lease_key(key);
        let ok: Option<String> = self
            .call("lease", |mut c| async move {
                redis::cmd("SET")
                    .arg(&lk)
                    .arg(token.to_string())
                    .arg("NX")
                    .arg("PX")
                    .arg(ttl.as_millis().max(1) as u64)
                    .query_async(&mut c)
                    .await
            })
            .await?;
        Ok(ok.is_some())
    }

    async fn release_lease(&self, key: &str, token: u64) -> Result<(), StoreError> {
        let inner = &self.inner;
        let lk = lease_key(key);
        let _: i64 = self
            .call("release", |mut c| async move {
                inner
                    .scripts
                    .release
                    .key(&lk)
                    .arg(token.to_string())
                    .invoke_async(&mut c)
                    .await
            })
            .await?;
        Ok(())
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        let _: i64 = self
            .call("delete", |mut c| async move {
                redis::cmd("UNLINK").arg(key).query_async(&mut c).await
            })
            .await?;
        Ok(())
    }

    fn health(&self) -> Health {
        if self.is_clean() {
            Health::Ok
        } else {
            Health::Degraded
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mget_replies_are_strings_and_nils_of_the_asked_length() {
        use redis::Value;
        let reply = || {
            Value::Array(vec![
                Value::BulkString(b"a".to_vec()),
                Value::Nil,
                Value::BulkString(b"7".to_vec()),
            ])
        };
        assert_eq!(
            mget_values(reply(), 3),
            Some(vec![Some(b"a".to_vec()), None, Some(b"7".to_vec())])
        );
        assert_eq!(mget_values(reply(), 2), None);
        assert_eq!(mget_values(Value::Nil, 0), None);
        assert_eq!(mget_values(Value::Int(1), 1), None);
        let odd = Value::Array(vec![Value::Int(3), Value::Nil]);
        assert_eq!(mget_values(odd, 2), None);
    }

    #[test]
    fn counters_parse_like_the_general_parse() {
        for ok in ["0", "7", "0042", "1796543809702064", "9999999999999999999"] {
            assert_eq!(
                parse_u64_bytes(ok.as_bytes()).unwrap(),
                ok.parse::<u64>().unwrap()
            );
        }
        // Past the fast path: the general parse answers.
        assert_eq!(parse_u64_bytes(b" 12 ").unwrap(), 12);
        assert_eq!(parse_u64_bytes(b"18446744073709551615").unwrap(), u64::MAX);
        for bad in ["", "-1", "1a", "99999999999999999999", "\u{1F600}"] {
            assert!(parse_u64_bytes(bad.as_bytes()).is_err(), "{bad:?}");
        }
    }

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
