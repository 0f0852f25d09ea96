//! Each instance's own cache counters, published to Redis so `cache-stats`
//! reports the application's hits and misses summed over every running
//! instance (Redis' keyspace counters would count generation reads, leases and
//! other applications too).
//!
//! One hash per instance, `{prefix}:{version}:instance:{id}`, rewritten every
//! [`PERIOD`] with a TTL of three periods: an instance that stops or dies ages
//! out by itself, with no registry to clean.

use std::time::Duration;

use tierstamp::Cache;

/// The key segment in the kind position (`{prefix}:{version}:instance:…`).
pub(crate) const KIND: &str = "instance";

pub(crate) const PERIOD: Duration = Duration::from_secs(2);

/// This instance's key: host name, PID and a random suffix (PIDs repeat across
/// containers).
pub(crate) fn key(namespace: &str) -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_default();
    let host: String = host
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
        .take(40)
        .collect();
    format!(
        "{namespace}:{KIND}:{host}-{}-{:08x}",
        std::process::id(),
        fastrand::u32(..)
    )
}

/// Publishes `cache`'s counters under `key` until the runtime stops. Failures
/// are logged at debug level only: the breaker already reports an outage.
pub(crate) fn spawn_publisher(cache: Cache, mut conn: tierstamp::RedisConnection, key: String) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(PERIOD);
        loop {
            tick.tick().await;
            let s = cache.stats();
            let result: redis::RedisResult<()> = redis::pipe()
                .atomic()
                .hset_multiple(
                    &key,
                    &[
                        ("hits", s.hits),
                        ("stale", s.stale),
                        ("misses", s.misses),
                        ("bypass", s.bypass),
                    ],
                )
                .ignore()
                .pexpire(&key, (PERIOD.as_millis() * 3) as i64)
                .ignore()
                .query_async(&mut conn)
                .await;
            if let Err(e) = result {
                tracing::debug!(error = %e, "publishing cache counters failed");
            }
        }
    });
}
