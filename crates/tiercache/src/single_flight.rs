//! Local single-flight: one load per (key, stamp) per process; concurrent callers
//! await the leader's result.
//!
//! Written by hand (rather than with moka's `get_with`) because the flight must be
//! keyed by the *captured stamp* as well as the key: a caller that arrives after a
//! write has committed must not join a load that started before it, or it would
//! receive pre-write data. Two callers that captured the same stamp may share.
//!
//! The load runs in its own task so that it completes (and its result is cached)
//! even if every caller that waited for it is cancelled.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};

use futures::FutureExt;
use futures::future::{BoxFuture, Shared};

type Flight<T> = Shared<BoxFuture<'static, T>>;

/// A map of in-flight loads.
pub(crate) struct SingleFlight<T: Clone + Send + Sync + 'static> {
    flights: Arc<Mutex<HashMap<String, Flight<T>>>>,
}

impl<T: Clone + Send + Sync + 'static> Default for SingleFlight<T> {
    fn default() -> Self {
        SingleFlight {
            flights: Arc::default(),
        }
    }
}

impl<T: Clone + Send + Sync + 'static> SingleFlight<T> {
    /// Runs `start()` unless a flight for `key` is in progress, and returns its
    /// result; `leader` tells whether this call started the flight.
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
        let (flight, leader) = {
            let mut flights = self.flights.lock().expect("flight lock");
            match flights.get(&key) {
                Some(f) => (f.clone(), false),
                None => {
                    let fut = start();
                    let map = self.flights.clone();
                    let k = key.clone();
                    let panic_key = key.clone();
                    let task = tokio::spawn(async move {
                        let out = fut.await;
                        map.lock().expect("flight lock").remove(&k);
                        out
                    });
                    let map = self.flights.clone();
                    let flight = async move {
                        match task.await {
                            Ok(v) => v,
                            Err(_) => {
                                map.lock().expect("flight lock").remove(&panic_key);
                                on_panic()
                            }
                        }
                    }
                    .boxed()
                    .shared();
                    flights.insert(key, flight.clone());
                    (flight, true)
                }
            }
        };
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
