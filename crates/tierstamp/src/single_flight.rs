//! Local single-flight: one load per (key, stamp) per process; concurrent callers
//! await the leader's result.
//!
//! Written by hand (rather than with moka's `get_with`) because the flight must be
//! keyed by the *captured stamp* as well as the key: a caller that arrives after a
//! write has committed must not join a load that started before it, or it would
//! receive pre-write data. Two callers that captured the same stamp may share.
//! The cache names the flights: a miss's by key and stamp, a bypassed look-up's
//! (the shared store unavailable, so no stamp) by key and the count of this
//! process's invalidations (`Inner::bypass_shared` in `cache/load.rs`).
//!
//! The load runs in its own task so that it completes (and its result is cached)
//! even if every caller that waited for it is cancelled. That task removes the
//! flight from the map when it ends, however it ends: a loader that panics gives
//! the callers waiting on its flight the fallback, and the next caller a new
//! flight.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use futures::FutureExt;
use futures::future::{BoxFuture, Shared};

type Flight<T> = Shared<BoxFuture<'static, T>>;

/// The flights in progress by key, each with its number.
type Flights<T> = Mutex<HashMap<String, (u64, Flight<T>)>>;

/// A map of in-flight loads.
pub(crate) struct SingleFlight<T: Clone + Send + Sync + 'static> {
    flights: Arc<Flights<T>>,
    next_id: AtomicU64,
}

impl<T: Clone + Send + Sync + 'static> Default for SingleFlight<T> {
    fn default() -> Self {
        SingleFlight {
            flights: Arc::default(),
            next_id: AtomicU64::new(0),
        }
    }
}

/// Removes its flight from the map when the flight's task ends, whether the load
/// returned, panicked or was dropped unfinished. A flight is removed by its own
/// task only: its callers all being cancelled cannot leave it behind (the next
/// caller would get the fallback of a panic nobody heard of), and a waiter that
/// hears of a panic late cannot remove a newer flight of the key.
struct Landing<T: Clone + Send + Sync + 'static> {
    flights: Arc<Flights<T>>,
    key: String,
    id: u64,
}

impl<T: Clone + Send + Sync + 'static> Drop for Landing<T> {
    fn drop(&mut self) {
        let mut flights = self.flights.lock().unwrap_or_else(|e| e.into_inner());
        if flights.get(&self.key).is_some_and(|(id, _)| *id == self.id) {
            flights.remove(&self.key);
        }
    }
}

impl<T: Clone + Send + Sync + 'static> SingleFlight<T> {
    /// Runs `start()` unless a flight for `key` is in progress, and returns its
    /// result; `leader` tells whether this call started the flight. If the load
    /// panics, the callers waiting on it get `on_panic()`; a later call starts a
    /// new flight.
    pub(crate) async fn run<F, Fut>(
        &self,
        key: String,
        start: F,
        on_panic: impl FnOnce() -> T + Send + 'static,
    ) -> (T, bool)
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = T> + Send + 'static,
    {
        let (flight, launch) = {
            let mut flights = self.flights.lock().expect("flight lock");
            match flights.get(&key) {
                Some((_, f)) => (f.clone(), None),
                None => {
                    let fut = start();
                    let id = self.next_id.fetch_add(1, Ordering::Relaxed);
                    // The load's outcome comes through a channel rather than the
                    // task's handle, so that the task is spawned after the lock
                    // is released: a task dropped at once (no runtime, or one
                    // shutting down) drops its `Landing`, which takes the lock.
                    let (done, outcome) = tokio::sync::oneshot::channel();
                    let flight = async move { outcome.await.unwrap_or_else(|_| on_panic()) }
                        .boxed()
                        .shared();
                    flights.insert(key.clone(), (id, flight.clone()));
                    let landing = Landing {
                        flights: self.flights.clone(),
                        key,
                        id,
                    };
                    (flight, Some((fut, landing, done)))
                }
            }
        };
        let leader = launch.is_some();
        if let Some((fut, landing, done)) = launch {
            // The entry is removed by the task however it ends: the load returned
            // (before its result is sent: a caller arriving now starts a new
            // flight), panicked (dropping `done` tells the waiters), or never ran.
            tokio::spawn(async move {
                let out = fut.await;
                drop(landing);
                let _ = done.send(out);
            });
        }
        (flight.await, leader)
    }

    /// Flights in progress (for tests).
    #[cfg(test)]
    pub(crate) fn in_flight(&self) -> usize {
        self.flights.lock().expect("flight lock").len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    #[tokio::test]
    async fn concurrent_callers_share_one_load() {
        let sf = Arc::new(SingleFlight::<u32>::default());
        let runs = Arc::new(AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for _ in 0..50 {
            let sf = sf.clone();
            let runs = runs.clone();
            tasks.push(tokio::spawn(async move {
                sf.run(
                    "k".into(),
                    || async move {
                        runs.fetch_add(1, Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        7
                    },
                    || 0,
                )
                .await
            }));
        }
        let mut leaders = 0;
        for t in tasks {
            let (v, leader) = t.await.unwrap();
            assert_eq!(v, 7);
            leaders += leader as usize;
        }
        assert_eq!(runs.load(Ordering::SeqCst), 1);
        assert_eq!(leaders, 1);
        assert_eq!(sf.in_flight(), 0);
    }

    #[tokio::test]
    async fn a_load_survives_its_callers_being_cancelled() {
        let sf = Arc::new(SingleFlight::<u32>::default());
        let done = Arc::new(AtomicUsize::new(0));
        let d = done.clone();
        let caller = sf.run(
            "k".into(),
            || async move {
                tokio::time::sleep(Duration::from_millis(30)).await;
                d.fetch_add(1, Ordering::SeqCst);
                1
            },
            || 0,
        );
        let _ = tokio::time::timeout(Duration::from_millis(5), caller).await;
        tokio::time::sleep(Duration::from_millis(60)).await;
        assert_eq!(done.load(Ordering::SeqCst), 1);
        assert_eq!(sf.in_flight(), 0);
    }

    /// A loader that waits for `release`, then panics; `ended` is told (by its
    /// sender being dropped) when the flight's task has dropped the loader.
    async fn panicking_after(
        release: tokio::sync::oneshot::Receiver<()>,
        ended: tokio::sync::oneshot::Sender<()>,
    ) -> u32 {
        let _ended = ended;
        let _ = release.await;
        panic!("loader bug")
    }

    /// Every caller of a flight was cancelled, then its loader panicked: nobody
    /// was left to hear of the panic, and the next caller must get a load of its
    /// own, not the old flight's fallback.
    #[tokio::test]
    async fn a_panic_after_every_caller_left_does_not_fail_the_next_caller() {
        let sf = SingleFlight::<u32>::default();
        let (release, released) = tokio::sync::oneshot::channel();
        let (ended, loader_dropped) = tokio::sync::oneshot::channel::<()>();
        let first = sf.run("k".into(), || panicking_after(released, ended), || 0);
        assert!(first.now_or_never().is_none(), "the load waits for release");
        assert_eq!(sf.in_flight(), 1);
        release.send(()).unwrap();
        // On this single-threaded runtime the task drops its future (and with it
        // the loader) in one go, before this test runs again.
        assert!(loader_dropped.await.is_err());
        let (v, leader) = sf.run("k".into(), || async { 2 }, || 0).await;
        assert_eq!(
            (v, leader),
            (2, true),
            "the next caller got the dead flight"
        );
        assert_eq!(sf.in_flight(), 0);
    }

    /// A panic is reported to the waiters of its flight, and to them only: a
    /// waiter that hears of it after a new flight for the key began must leave
    /// that flight in place for the callers that join it.
    #[tokio::test]
    async fn a_panic_is_reported_to_the_waiters_of_its_own_flight_only() {
        let sf = SingleFlight::<u32>::default();
        let (release, released) = tokio::sync::oneshot::channel();
        let (ended, loader_dropped) = tokio::sync::oneshot::channel::<()>();
        let mut waiter = Box::pin(sf.run("k".into(), || panicking_after(released, ended), || 0));
        assert!((&mut waiter).now_or_never().is_none());
        release.send(()).unwrap();
        assert!(loader_dropped.await.is_err());

        let (release_next, next_released) = tokio::sync::oneshot::channel::<()>();
        let mut next = Box::pin(sf.run(
            "k".into(),
            || async move {
                let _ = next_released.await;
                2
            },
            || 0,
        ));
        assert!((&mut next).now_or_never().is_none());
        assert_eq!(waiter.await, (0, true), "the panicked flight's leader");
        assert_eq!(sf.in_flight(), 1, "the new flight is still there");
        let mut joined = Box::pin(sf.run("k".into(), || async { 3 }, || 0));
        assert!((&mut joined).now_or_never().is_none());
        release_next.send(()).unwrap();
        let (next, joined) = tokio::join!(next, joined);
        assert_eq!((next, joined), ((2, true), (2, false)));
        assert_eq!(sf.in_flight(), 0);
    }

    #[tokio::test]
    async fn a_panicking_load_gives_every_caller_the_fallback() {
        let sf = SingleFlight::<u32>::default();
        let (v, _) = sf
            .run("k".into(), || async { panic!("loader bug") }, || 42)
            .await;
        assert_eq!(v, 42);
        assert_eq!(sf.in_flight(), 0);
    }
}
