//! [`RedisConfig`]: where a store finds Redis and its tuning, with the
//! defaults of each topology. Its `Debug` never prints the node URLs, which may
//! hold passwords.

use std::time::Duration;

use crate::breaker::BreakerConfig;

use super::Topology;

/// Where a [`RedisStore`](super::RedisStore) finds Redis, and its tuning.
///
/// ```
/// # #[cfg(feature = "redis")] {
/// use tierstamp::{RedisConfig, Topology};
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
