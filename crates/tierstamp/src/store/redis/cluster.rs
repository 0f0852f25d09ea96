//! The store's one Redis Cluster connection, replaced when it stops answering.
//!
//! redis-rs's async cluster client can wedge. Seen in this project's chaos test
//! (a master SIGKILLed under load, redis 1.8.1 and 1.8.2): a slot refresh begun
//! while the cluster was down never completed, and from then on every command
//! on that client waited forever. The store bounds each call with its own
//! timeout, so all it saw was timeouts: its breaker stayed open and caching
//! never resumed, while the other instance, whose client did not wedge, was
//! serving hits again two seconds after the failover.
//!
//! A working client answers within its own timeouts, even about a dead node: a
//! value, a server error (`CLUSTERDOWN`, `MOVED`) or a refused connection is an
//! answer. So when calls have kept ending unanswered (dropped by the store's
//! timeout or by a client that left, or failed inside the client) for
//! [`WEDGED_FOR`], counted from the start of the first of them that began after
//! the last answer, the client is taken for stuck and replaced by a new one
//! built from the same seeds; it connects on first use. Counting from a call's
//! start, not from the last answer, keeps a quiet instance whose first calls
//! after a lull are cancelled from replacing a healthy client. Replacements are
//! spaced ([`SPACING`], doubling up to [`MAX_SPACING`]) so that a Redis that is
//! merely paused or slow does not cost a rebuild per call; an answer from the
//! new client resets the spacing. The replaced client's task ends when the last
//! call still holding it does.
//!
//! An answer costs one atomic maximum; only calls that end unanswered take the
//! lock.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant};

use redis::cluster::{ClusterClient, ClusterConfig};
use redis::cluster_async::ClusterConnection;

/// Calls have ended unanswered for this long: the client is stuck.
pub(super) const WEDGED_FOR: Duration = Duration::from_secs(1);
/// Calls that must have ended unanswered in that time.
const UNANSWERED: u32 = 2;
/// The first wait between two replacements.
pub(super) const SPACING: Duration = Duration::from_secs(1);
/// The longest wait between two replacements.
const MAX_SPACING: Duration = Duration::from_secs(30);

pub(super) struct Cluster {
    client: ClusterClient,
    config: ClusterConfig,
    current: RwLock<(u64, ClusterConnection)>,
    /// The generation of `current`, read without its lock.
    generation: AtomicU64,
    /// When the current client last answered, in microseconds since `base`.
    last_answer_us: AtomicU64,
    base: Instant,
    health: Mutex<Health>,
}

/// The replacement rule. Pure (times come in), so it is tested without a
/// cluster.
#[derive(Debug)]
pub(super) struct Health {
    generation: u64,
    /// The start of the first call that began after the last answer and ended
    /// unanswered.
    silent_since: Option<Instant>,
    unanswered: u32,
    last_replaced: Option<Instant>,
    spacing: Duration,
}

impl Health {
    pub(super) fn new() -> Self {
        Health {
            generation: 0,
            silent_since: None,
            unanswered: 0,
            last_replaced: None,
            spacing: SPACING,
        }
    }

    /// A call on client `generation`, started at `started`, ended at `now`
    /// without an answer; the client last answered at `last_answer`. Returns
    /// whether the client should be replaced now; if so, the new one is
    /// `generation + 1`.
    pub(super) fn unanswered(
        &mut self,
        generation: u64,
        started: Instant,
        last_answer: Instant,
        now: Instant,
    ) -> bool {
        if generation != self.generation {
            return false;
        }
        if self.last_replaced.is_some_and(|t| last_answer > t) {
            // The client that replaced a stuck one answers.
            self.spacing = SPACING;
        }
        if self.silent_since.is_some_and(|s| last_answer >= s) {
            self.silent_since = None;
            self.unanswered = 0;
        }
        if started < last_answer {
            // An answer came while it ran: the client is not silent.
            return false;
        }
        let since = self.silent_since.map_or(started, |s| s.min(started));
        self.silent_since = Some(since);
        self.unanswered = self.unanswered.saturating_add(1);
        let spaced = self
            .last_replaced
            .is_none_or(|t| now.duration_since(t) >= self.spacing);
        if now.duration_since(since) < WEDGED_FOR || self.unanswered < UNANSWERED || !spaced {
            return false;
        }
        if self.last_replaced.is_some() {
            self.spacing = (self.spacing * 2).min(MAX_SPACING);
        }
        self.generation += 1;
        self.last_replaced = Some(now);
        self.silent_since = None;
        self.unanswered = 0;
        true
    }
}

impl Cluster {
    pub(super) fn new(client: ClusterClient, config: ClusterConfig) -> Self {
        let conn = client.get_pending_async_connection_with_config(config.clone());
        Cluster {
            client,
            config,
            current: RwLock::new((0, conn)),
            generation: AtomicU64::new(0),
            last_answer_us: AtomicU64::new(0),
            base: Instant::now(),
            health: Mutex::new(Health::new()),
        }
    }

    /// The client to use, and its generation (to report the outcome with).
    pub(super) fn current(&self) -> (u64, ClusterConnection) {
        self.current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn answered(&self, generation: u64) {
        if generation == self.generation.load(Ordering::Acquire) {
            let us = self.base.elapsed().as_micros() as u64;
            self.last_answer_us.fetch_max(us, Ordering::AcqRel);
        }
    }

    fn unanswered(&self, generation: u64, started: Instant) {
        // A new client starts its task on the runtime: none is at hand when a
        // call is dropped as the runtime shuts down, and nothing needs one then.
        if tokio::runtime::Handle::try_current().is_err() {
            return;
        }
        let last_answer =
            self.base + Duration::from_micros(self.last_answer_us.load(Ordering::Acquire));
        let mut health = self.health.lock().unwrap_or_else(PoisonError::into_inner);
        if !health.unanswered(generation, started, last_answer, Instant::now()) {
            return;
        }
        // It connects on first use.
        let conn = self
            .client
            .get_pending_async_connection_with_config(self.config.clone());
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = (generation + 1, conn);
        self.generation.store(generation + 1, Ordering::Release);
        drop(health);
        tracing::warn!(
            "the Redis Cluster client answered nothing for {WEDGED_FOR:?}: replaced by a new one"
        );
    }
}

/// Reports a call that ends without an answer when it is dropped unfinished.
pub(super) struct Call<'a> {
    cluster: &'a Cluster,
    generation: u64,
    started: Instant,
    finished: bool,
}

impl<'a> Call<'a> {
    pub(super) fn new(cluster: &'a Cluster, generation: u64) -> Self {
        Call {
            cluster,
            generation,
            started: Instant::now(),
            finished: false,
        }
    }

    /// The call got `result`. A value, a server's error or a refused
    /// connection is an answer; a timeout or an error of the client itself
    /// (its task gone, a broken pipe) is not.
    pub(super) fn finish<T>(mut self, result: &redis::RedisResult<T>) {
        self.finished = true;
        match result {
            Ok(_) => self.cluster.answered(self.generation),
            Err(e) if e.code().is_some() || e.is_connection_refusal() => {
                self.cluster.answered(self.generation)
            }
            Err(_) => self.cluster.unanswered(self.generation, self.started),
        }
    }
}

impl Drop for Call<'_> {
    fn drop(&mut self) {
        if !self.finished {
            self.cluster.unanswered(self.generation, self.started);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn calls_unanswered_for_the_limit_replace_the_client_then_spaced() {
        let t0 = Instant::now();
        let mut h = Health::new();
        let never = t0;
        // Calls that began after the last answer and ended unanswered, for
        // less than the limit: a slow moment, not a wedge.
        assert!(!h.unanswered(0, t0 + MS, never, t0 + 251 * MS));
        assert!(!h.unanswered(0, t0 + 300 * MS, never, t0 + 550 * MS));
        // The first of them began a second ago.
        assert!(h.unanswered(0, t0 + 800 * MS, never, t0 + 1001 * MS));
        let t1 = t0 + 1001 * MS;
        // Late reports about the replaced client change nothing.
        assert!(!h.unanswered(0, t1, never, t1 + MS));
        // The new client stays silent: replaced again after a second more.
        assert!(!h.unanswered(1, t1 + MS, never, t1 + 500 * MS));
        assert!(h.unanswered(1, t1 + 600 * MS, never, t1 + 1001 * MS));
        // Then only after twice the spacing.
        let t2 = t1 + 1001 * MS;
        assert!(!h.unanswered(2, t2 + MS, never, t2 + 500 * MS));
        assert!(!h.unanswered(2, t2 + 600 * MS, never, t2 + 1500 * MS));
        assert!(h.unanswered(2, t2 + 1600 * MS, never, t2 + 2001 * MS));
    }

    #[test]
    fn a_lull_then_cancelled_calls_is_not_silence() {
        let t0 = Instant::now();
        let mut h = Health::new();
        // The last answer was long ago (no traffic); two calls start now and
        // are cancelled: silent for a quarter second, not for the limit.
        assert!(!h.unanswered(0, t0 + 5000 * MS, t0, t0 + 5250 * MS));
        assert!(!h.unanswered(0, t0 + 5010 * MS, t0, t0 + 5260 * MS));
    }

    #[test]
    fn an_answer_resets_the_silence_and_the_spacing() {
        let t0 = Instant::now();
        let mut h = Health::new();
        assert!(!h.unanswered(0, t0, t0, t0 + 250 * MS));
        // An answer at 900 ms: the silence counts from calls begun after it.
        let answer = t0 + 900 * MS;
        assert!(!h.unanswered(0, t0 + 800 * MS, answer, t0 + 1050 * MS));
        assert!(!h.unanswered(0, t0 + 950 * MS, answer, t0 + 1200 * MS));
        assert!(!h.unanswered(0, t0 + 1300 * MS, answer, t0 + 1550 * MS));
        assert!(h.unanswered(0, t0 + 1700 * MS, answer, t0 + 1950 * MS));
        // The new client answers: the spacing is back to its first value.
        let t1 = t0 + 1950 * MS;
        let answer = t1 + 100 * MS;
        assert!(!h.unanswered(1, t1 + 200 * MS, answer, t1 + 450 * MS));
        assert!(h.unanswered(1, t1 + 900 * MS, answer, t1 + 1200 * MS));
    }
}
