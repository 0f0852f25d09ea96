//! The tests' toolkit. Throwaway Redis deployments: a Redis Cluster (masters + replicas)
//! and a master + replica watched by three sentinels, each on free loopback
//! ports, in a directory of its own, and stopped by PID when dropped (never by
//! name: other tests' servers and the machine's own Redis are left alone).
//!
//! The `redis-server` binary comes from `TIERCACHE_REDIS_SERVER` (default
//! `redis-server` on `PATH`); `redis-cli` is looked up next to it, then on
//! `PATH`. A missing binary panics with a message saying so: a test that needs
//! a deployment fails rather than skips.
//!
//! A crate of its own, `publish = false`, so that both tierstamp's and campus's
//! tests use one copy without a published dependency.
//!
//! Layout: `process.rs` (one server process, ports, binaries), `cluster.rs`
//! ([`Cluster`]), `sentinel.rs` ([`Sentinels`]), `namespace.rs` (a test's keys
//! in a shared Redis, removed when it ends).

mod cluster;
mod namespace;
mod process;
mod sentinel;

pub use cluster::Cluster;
pub use namespace::{PrefixGuard, remove_prefix, scan, unique};
pub use process::{Server, free_ports, redis_cli, redis_server};
pub use sentinel::Sentinels;

/// Polls `cond` every 50 ms until it holds or `timeout` passes; panics with
/// `what` then.
pub fn wait_until(timeout: std::time::Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let start = std::time::Instant::now();
    while !cond() {
        if start.elapsed() > timeout {
            panic!("timed out after {timeout:?} waiting for: {what}");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}
