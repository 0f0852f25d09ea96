//! Administrative operations, none breaker-guarded: call counts, clearing a
//! namespace or prefix with `SCAN` + `UNLINK`, and direct connections for
//! statistics and clean-up.

use std::sync::atomic::Ordering;

use crate::error::StoreError;
use crate::key::KeyBuilder;

use super::{RedisConnection, RedisStore, Topology, from_redis};

impl RedisStore {
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
}
