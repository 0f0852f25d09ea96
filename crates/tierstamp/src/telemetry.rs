//! What the cache reports through the `metrics` facade, in one place so that the
//! `metrics` feature can compile it away: without it these are empty functions and
//! the facade is not a dependency.
//!
//! The names are listed in the crate documentation (Observability).

#![cfg_attr(not(feature = "metrics"), allow(unused_variables))]

use crate::key::Kind;
use crate::stats::Status;

/// Metric handles, one per label set, kept so a hot path increments an atomic
/// instead of building and hashing its labels in the recorder's registry (two of
/// those per cached request were visible in profiles). Handles belong to the
/// recorder installed when they were made: install it before the first call, as
/// every application does.
#[cfg(feature = "metrics")]
type Handles<K, H> = std::sync::OnceLock<std::sync::RwLock<crate::hash::FastMap<K, H>>>;

/// The handle of `key` in `handles`, made by `make` the first time.
#[cfg(feature = "metrics")]
fn handle<K, H>(handles: &'static Handles<K, H>, key: K, make: impl FnOnce() -> H) -> H
where
    K: std::hash::Hash + Eq,
    H: Clone,
{
    let handles = handles.get_or_init(Default::default);
    if let Some(h) = handles.read().unwrap_or_else(|e| e.into_inner()).get(&key) {
        return h.clone();
    }
    let h = make();
    handles
        .write()
        .unwrap_or_else(|e| e.into_inner())
        .insert(key, h.clone());
    h
}

/// Look-ups of one model not yet given to the recorder, by outcome and kind.
#[cfg(feature = "metrics")]
type ModelCounts = [[u64; 4]; 4];

/// One thread's look-ups not yet given to the recorder.
#[cfg(feature = "metrics")]
#[derive(Default)]
struct Pending {
    counts: crate::hash::FastMap<std::sync::Arc<str>, ModelCounts>,
    total: u32,
}

/// Look-ups a thread counts before it hands them to the recorder.
#[cfg(feature = "metrics")]
const PUBLISH_EVERY: u32 = 256;

/// Look-ups are counted per thread and handed to the recorder in batches: an
/// increment of the recorder's counter on every look-up wrote a cache line that
/// every worker thread shares, twice per cached read, and cost more than the
/// rest of an L1 hit's bookkeeping. Each thread's mutex is taken by that thread
/// and, rarely, by [`publish`], so it is not contended.
#[cfg(feature = "metrics")]
static PENDING: thread_local::ThreadLocal<Padded> = thread_local::ThreadLocal::new();

/// A thread's pending counts on cache lines of their own: `ThreadLocal` keeps
/// the threads' values side by side, and two mutexes on one line would be
/// shared again. 128 bytes: x86 fetches lines in adjacent pairs.
#[cfg(feature = "metrics")]
#[derive(Default)]
#[repr(align(128))]
struct Padded(std::sync::Mutex<Pending>);

#[cfg(feature = "metrics")]
impl Pending {
    fn publish(&mut self) {
        for (model, counts) in &mut self.counts {
            for (s, row) in counts.iter_mut().enumerate() {
                for (k, n) in row.iter_mut().enumerate() {
                    if *n > 0 {
                        lookup_counter(model, s, k).increment(std::mem::take(n));
                    }
                }
            }
        }
        self.total = 0;
    }
}

/// The recorder's counter of look-ups of `model` answered with outcome `s` for
/// kind `k` (indexes of [`Status`] and [`Kind`]).
#[cfg(feature = "metrics")]
fn lookup_counter(model: &std::sync::Arc<str>, s: usize, k: usize) -> metrics::Counter {
    const STATUSES: [Status; 4] = [Status::Hit, Status::Miss, Status::Stale, Status::Bypass];
    const KINDS: [Kind; 4] = [Kind::List, Kind::Detail, Kind::Count, Kind::Stats];
    static HANDLES: Handles<(std::sync::Arc<str>, usize, usize), metrics::Counter> = Handles::new();
    handle(&HANDLES, (model.clone(), s, k), || {
        metrics::counter!(
            "tiercache_lookups_total",
            "outcome" => STATUSES[s].as_str(),
            "kind" => KINDS[k].as_str(),
            "model" => model.clone(),
        )
    })
}

/// One look-up answered with `status`.
pub(crate) fn lookup(status: Status, kind: Kind, model: &std::sync::Arc<str>) {
    #[cfg(feature = "metrics")]
    {
        let mut pending = PENDING
            .get_or_default()
            .0
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let counts = match pending.counts.get_mut(&**model) {
            Some(counts) => counts,
            None => pending.counts.entry(model.clone()).or_default(),
        };
        counts[status as usize][kind as usize] += 1;
        pending.total += 1;
        if pending.total >= PUBLISH_EVERY {
            pending.publish();
        }
    }
}

/// Hands every thread's pending look-up counts to the `metrics` recorder.
///
/// `tiercache_lookups_total` is counted per thread and handed over every 256
/// look-ups of a thread; call this before the recorder's values are read (a
/// Prometheus scrape handler does it first) to see every look-up made so far.
pub fn publish() {
    #[cfg(feature = "metrics")]
    for pending in PENDING.iter() {
        pending
            .0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .publish();
    }
}

/// One loader run, and how long it took.
pub(crate) fn loader(kind: Kind, model: &std::sync::Arc<str>, seconds: f64) {
    #[cfg(feature = "metrics")]
    metrics::histogram!(
        "tiercache_loader_seconds",
        "kind" => kind.as_str(),
        "model" => model.clone(),
    )
    .record(seconds);
}

/// One invalidation of `model`.
pub(crate) fn invalidation(model: &str) {
    #[cfg(feature = "metrics")]
    metrics::counter!("tiercache_invalidations_total", "model" => model.to_owned()).increment(1);
}

#[cfg(all(feature = "metrics", feature = "redis"))]
fn redis_histogram(op: &'static str) -> metrics::Histogram {
    static HANDLES: Handles<&'static str, metrics::Histogram> = Handles::new();
    handle(
        &HANDLES,
        op,
        || metrics::histogram!("tiercache_redis_seconds", "op" => op),
    )
}

/// One Redis call, and how long it took.
#[cfg(feature = "redis")]
pub(crate) fn redis_call(op: &'static str, seconds: f64, failed: bool) {
    #[cfg(feature = "metrics")]
    {
        redis_histogram(op).record(seconds);
        if failed {
            metrics::counter!("tiercache_redis_errors_total", "op" => op).increment(1);
        }
    }
}

/// The circuit breaker moved to `to` (`open` or `closed`).
#[cfg(feature = "redis")]
pub(crate) fn breaker(to: &'static str) {
    #[cfg(feature = "metrics")]
    metrics::counter!("tiercache_breaker_transitions_total", "to" => to).increment(1);
}

/// The invalidation channel went up or down.
#[cfg(feature = "redis")]
pub(crate) fn channel(up: bool) {
    #[cfg(feature = "metrics")]
    metrics::gauge!("tiercache_channel_up").set(if up { 1.0 } else { 0.0 });
}

#[cfg(all(test, feature = "metrics"))]
mod tests {
    use super::*;
    use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};

    /// Counts of `tiercache_lookups_total{model="telemetry-test"}` by outcome,
    /// added up over snapshots (a snapshot hands over a counter and zeroes it).
    #[derive(Default)]
    struct Recorded(std::collections::HashMap<String, u64>);

    impl Recorded {
        fn get(&mut self, snapshotter: &Snapshotter, outcome: &str) -> u64 {
            for (key, .., value) in snapshotter.snapshot().into_vec() {
                let key = key.key();
                let label = |name: &str| {
                    key.labels()
                        .find(|l| l.key() == name)
                        .map(|l| l.value().to_owned())
                };
                if key.name() == "tiercache_lookups_total"
                    && label("model").as_deref() == Some("telemetry-test")
                    && let (Some(o), DebugValue::Counter(n)) = (label("outcome"), value)
                {
                    *self.0.entry(o).or_default() += n;
                }
            }
            self.0.get(outcome).copied().unwrap_or(0)
        }
    }

    #[test]
    fn look_ups_reach_the_recorder_in_batches_and_on_publish() {
        let recorder = DebuggingRecorder::new();
        let snapshotter = recorder.snapshotter();
        let mut recorded = Recorded::default();
        // Start with nothing pending on this thread. Outside the local recorder:
        // other tests' pending counts go to the global one, whose handles are
        // kept, not to this short-lived one.
        publish();
        metrics::with_local_recorder(&recorder, || {
            let model: std::sync::Arc<str> = "telemetry-test".into();
            for _ in 1..PUBLISH_EVERY {
                lookup(Status::Hit, Kind::List, &model);
            }
            assert_eq!(
                recorded.get(&snapshotter, "HIT"),
                0,
                "held until the batch is full"
            );
            lookup(Status::Hit, Kind::List, &model);
            assert_eq!(recorded.get(&snapshotter, "HIT"), u64::from(PUBLISH_EVERY));
            lookup(Status::Miss, Kind::List, &model);
            assert_eq!(recorded.get(&snapshotter, "MISS"), 0);
            publish();
            assert_eq!(recorded.get(&snapshotter, "MISS"), 1);
            assert_eq!(recorded.get(&snapshotter, "HIT"), u64::from(PUBLISH_EVERY));
        });
    }
}
