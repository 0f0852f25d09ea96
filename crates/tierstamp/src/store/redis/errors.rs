//! What the store makes of the `redis` crate's errors: which ones mean the
//! master is lost or a failover is under way (an outage, for the breaker and
//! the epoch), and configuration errors that never repeat a URL.

use redis::RedisError;

use crate::error::{Error, StoreError};

pub(crate) fn config_error(what: &str, e: impl std::fmt::Display) -> Error {
    // The `redis` crate's URL errors do not repeat the URL (nor its password).
    Error::Config(format!("{what}: {e}"))
}

/// Whether an error means the connection no longer reaches a usable master: it
/// broke, or the server it reaches was demoted (a failover happened).
pub(crate) fn lost_master(e: &RedisError) -> bool {
    e.is_io_error()
        || e.is_connection_dropped()
        || e.is_connection_refusal()
        || e.is_timeout()
        || is_topology_error(e)
}

/// Kept out of the public API (no `From` impl) so the crate's interface does not
/// depend on the Redis client's version.
pub(crate) fn from_redis(e: redis::RedisError) -> StoreError {
    // A failover in progress (CLUSTERDOWN, READONLY, …) is an outage too: the
    // call did not run where it should have.
    let outage = lost_master(&e);
    StoreError::backend(e, outage)
}

/// Errors a server gives while a failover moves its role or slots: the call did
/// not run, and the data it would have read may be behind.
///
/// Not `TRYAGAIN`: a slot being migrated (routine resharding) refuses multi-key
/// calls for a moment, nothing is lost, and counting it as an outage would
/// open breakers and bump the epoch, emptying the whole cache, at every scale-out.
/// That one call fails and is bypassed (or, for a bump, replayed).
pub(crate) fn is_topology_error(e: &RedisError) -> bool {
    const CODES: [&str; 4] = ["READONLY", "MASTERDOWN", "CLUSTERDOWN", "LOADING"];
    e.code().is_some_and(|c| CODES.contains(&c))
        // A script's `redis.call` error arrives wrapped in the script's error.
        || CODES.iter().any(|c| e.to_string().contains(c))
}
