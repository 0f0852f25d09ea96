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

/// The look-up counters of one model, by outcome and kind, made on first use.
#[cfg(feature = "metrics")]
type ModelCounters = [[Option<metrics::Counter>; 4]; 4];

/// One look-up answered with `status`.
pub(crate) fn lookup(status: Status, kind: Kind, model: &std::sync::Arc<str>) {
    #[cfg(feature = "metrics")]
    {
        // Looked up by `&str` and incremented under the read lock: no clone of the
        // model's name or of the handle, whose shared reference counts every
        // worker thread would otherwise write on every look-up.
        static HANDLES: Handles<std::sync::Arc<str>, ModelCounters> = Handles::new();
        let (s, k) = (status as usize, kind as usize);
        let handles = HANDLES.get_or_init(Default::default);
        if let Some(c) = handles
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&**model)
            .and_then(|m| m.get(s)?.get(k)?.as_ref())
        {
            c.increment(1);
            return;
        }
        let counter = metrics::counter!(
            "tiercache_lookups_total",
            "outcome" => status.as_str(),
            "kind" => kind.as_str(),
            "model" => model.clone(),
        );
        counter.increment(1);
        let mut handles = handles.write().unwrap_or_else(|e| e.into_inner());
        if let Some(slot) = handles
            .entry(model.clone())
            .or_default()
            .get_mut(s)
            .and_then(|row| row.get_mut(k))
        {
            *slot = Some(counter);
        }
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
