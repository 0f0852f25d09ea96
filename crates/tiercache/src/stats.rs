//! Outcome counters of one cache instance.
//!
//! The `metrics` facade exports the same events for Prometheus; these plain
//! counters exist so an application can report them itself (`cache-stats`) and
//! tests can assert on them without installing a recorder.

use std::sync::atomic::{AtomicU64, Ordering};

/// What a look-up was answered with: the value of the `X-Cache` header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Status {
    /// A valid entry.
    Hit,
    /// No valid entry: the loader ran (here or, for a coalesced caller, in the flight
    /// it joined).
    Miss,
    /// An entry past its soft expiry, served while one task refreshes it.
    Stale,
    /// The shared store is unavailable: the loader ran and nothing was cached.
    Bypass,
}

impl Status {
    /// `HIT`, `MISS`, `STALE` or `BYPASS`.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Hit => "HIT",
            Status::Miss => "MISS",
            Status::Stale => "STALE",
            Status::Bypass => "BYPASS",
        }
    }
}

#[derive(Debug, Default)]
pub(crate) struct Counters {
    hits: AtomicU64,
    misses: AtomicU64,
    stale: AtomicU64,
    bypass: AtomicU64,
    loads: AtomicU64,
    invalidations: AtomicU64,
    invalidation_failures: AtomicU64,
}

/// A snapshot of one instance's outcome counters ([`Cache::stats`](crate::Cache::stats)).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StatsSnapshot {
    /// Look-ups answered `HIT`.
    pub hits: u64,
    /// Look-ups answered `MISS`.
    pub misses: u64,
    /// Look-ups answered `STALE`.
    pub stale: u64,
    /// Look-ups answered `BYPASS`.
    pub bypass: u64,
    /// Loader runs (misses coalesced onto one load count once).
    pub loads: u64,
    /// Invalidations requested.
    pub invalidations: u64,
    /// Invalidations that did not reach the shared store at once (replayed later).
    pub invalidation_failures: u64,
}

impl StatsSnapshot {
    /// Hits (fresh or stale) over all look-ups, in percent; 0 without look-ups.
    pub fn hit_rate(&self) -> f64 {
        let served = self.hits + self.stale;
        let total = served + self.misses + self.bypass;
        if total == 0 {
            0.0
        } else {
            served as f64 * 100.0 / total as f64
        }
    }
}

impl Counters {
    pub(crate) fn record(&self, status: Status) {
        let c = match status {
            Status::Hit => &self.hits,
            Status::Miss => &self.misses,
            Status::Stale => &self.stale,
            Status::Bypass => &self.bypass,
        };
        c.fetch_add(1, Ordering::Relaxed);
    }
    pub(crate) fn load(&self) {
        self.loads.fetch_add(1, Ordering::Relaxed);
    }
    pub(crate) fn invalidation(&self, delivered: bool) {
        self.invalidations.fetch_add(1, Ordering::Relaxed);
        if !delivered {
            self.invalidation_failures.fetch_add(1, Ordering::Relaxed);
        }
    }
    pub(crate) fn snapshot(&self) -> StatsSnapshot {
        StatsSnapshot {
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            stale: self.stale.load(Ordering::Relaxed),
            bypass: self.bypass.load(Ordering::Relaxed),
            loads: self.loads.load(Ordering::Relaxed),
            invalidations: self.invalidations.load(Ordering::Relaxed),
            invalidation_failures: self.invalidation_failures.load(Ordering::Relaxed),
        }
    }
}
