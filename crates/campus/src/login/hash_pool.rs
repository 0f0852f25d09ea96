//! The bounded pool that runs password hashes.
//!
//! An argon2 hash takes 19 MiB and tens of milliseconds of a core: run without
//! a bound (one `spawn_blocking` per login), 500 concurrent logins took ~9.5 GiB
//! and every core, and cached reads starved. Here at most `limit` hashes run at
//! once, at most `queue` logins wait for a slot, and any further login is told
//! to come back (503 with `Retry-After`) at once instead of waiting.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::{Semaphore, TryAcquireError};

use crate::error::ApiError;

#[derive(Debug)]
pub struct HashPool {
    slots: Arc<Semaphore>,
    limit: usize,
    queue: usize,
    waiting: AtomicUsize,
    running: Arc<AtomicUsize>,
    peak: Arc<AtomicUsize>,
}

/// One place in the queue, given back when dropped (the login was served or
/// went away).
struct Waiting<'a>(&'a AtomicUsize);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl HashPool {
    pub fn new(limit: usize, queue: usize) -> Self {
        let limit = limit.max(1);
        HashPool {
            slots: Arc::new(Semaphore::new(limit)),
            limit,
            queue,
            waiting: AtomicUsize::new(0),
            running: Arc::default(),
            peak: Arc::default(),
        }
    }

    /// Runs `hash` on a blocking thread once a slot is free; `Overloaded` (503)
    /// when the slots and the queue are all taken.
    pub async fn run<T, F>(&self, hash: F) -> Result<T, ApiError>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        let slot = match self.slots.clone().try_acquire_owned() {
            Ok(slot) => slot,
            Err(TryAcquireError::Closed) => unreachable!("the slots are never closed"),
            Err(TryAcquireError::NoPermits) => {
                let _waiting = self.enqueue().ok_or_else(|| {
                    metrics::counter!("campus_login_rejected_total", "reason" => "busy")
                        .increment(1);
                    ApiError::Overloaded("Too many logins at once; try again in a moment.")
                })?;
                self.slots
                    .clone()
                    .acquire_owned()
                    .await
                    .expect("the slots are never closed")
            }
        };
        let (running, peak) = (self.running.clone(), self.peak.clone());
        tokio::task::spawn_blocking(move || {
            // The slot moves here: it is freed when the hash ends, not when the
            // request does. A client that hangs up mid-hash must not free a slot
            // while its hash still runs.
            let _slot = slot;
            let now = running.fetch_add(1, Ordering::AcqRel) + 1;
            peak.fetch_max(now, Ordering::AcqRel);
            metrics::gauge!("campus_login_hashes_running").increment(1.0);
            let out = hash();
            running.fetch_sub(1, Ordering::AcqRel);
            metrics::gauge!("campus_login_hashes_running").decrement(1.0);
            out
        })
        .await
        .map_err(|e| ApiError::Internal(e.into()))
    }

    fn enqueue(&self) -> Option<Waiting<'_>> {
        let before = self.waiting.fetch_add(1, Ordering::AcqRel);
        let place = Waiting(&self.waiting);
        (before < self.queue).then_some(place)
    }

    /// Hashes allowed at once.
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// Hashes running now.
    pub fn running(&self) -> usize {
        self.running.load(Ordering::Acquire)
    }

    /// The most hashes that ever ran at once (what the tests hold to `limit`).
    pub fn peak(&self) -> usize {
        self.peak.load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn at_most_limit_run_and_past_the_queue_logins_are_refused_at_once() {
        let pool = Arc::new(HashPool::new(2, 3));
        let mut tasks = Vec::new();
        for _ in 0..20 {
            let pool = pool.clone();
            tasks.push(tokio::spawn(async move {
                pool.run(|| std::thread::sleep(Duration::from_millis(50)))
                    .await
            }));
        }
        let mut refused = 0;
        for t in tasks {
            match t.await.unwrap() {
                Ok(()) => {}
                Err(ApiError::Overloaded(_)) => refused += 1,
                Err(e) => panic!("{e}"),
            }
        }
        assert_eq!(pool.peak(), 2);
        assert!(refused >= 20 - 2 - 3, "{refused} refused");
        assert_eq!(pool.running(), 0);
        assert_eq!(pool.waiting.load(Ordering::Acquire), 0);
    }
}
