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
//! A working client answers within its own timeouts, even about a dead node: an
//! error (refused, `CLUSTERDOWN`, `MOVED`) is an answer. So a client that has
//! answered nothing for [`WEDGED_FOR`] while calls kept ending unanswered
//! (dropped by the store's timeout, or by a client that left) is taken for
//! stuck and replaced by a new one built from the same seeds; it connects on
//! first use. Replacements are spaced ([`SPACING`], doubling up to
//! [`MAX_SPACING`]) so that a Redis that is merely paused or slow does not
//! cost a rebuild per call; an answer resets both. A wedged client's task
//! cannot be stopped from outside and stays behind, idle; the spacing bounds
//! how many can pile up.

use std::sync::{Mutex, RwLock};
use std::time::{Duration, Instant};

use redis::cluster::{ClusterClient, ClusterConfig};
use redis::cluster_async::ClusterConnection;

/// No answer for this long, with calls ending unanswered, means the client is stuck.
pub(super) const WEDGED_FOR: Duration = Duration::from_secs(1);
/// Calls that must have ended unanswered since the last answer.
const UNANSWERED: u32 = 2;
/// The first wait between two replacements.
pub(super) const SPACING: Duration = Duration::from_secs(1);
/// The longest wait between two replacements.
const MAX_SPACING: Duration = Duration::from_secs(30);

pub(super) struct Cluster {
    client: ClusterClient,
    config: ClusterConfig,
    current: RwLock<(u64, ClusterConnection)>,
    health: Mutex<Health>,
}

/// Whether the client answers, as calls report it. Pure (time comes in), so the
/// rule is tested without a cluster.
#[derive(Debug)]
pub(super) struct Health {
    generation: u64,
    last_answer: Instant,
    unanswered: u32,
    last_replaced: Option<Instant>,
    spacing: Duration,
}

impl Health {
    pub(super) fn new(now: Instant) -> Self {
        Health {
            generation: 0,
            last_answer: now,
            unanswered: 0,
            last_replaced: None,
            spacing: SPACING,
        }
    }

    /// A call on client `generation` got an answer (a value or a server error).
    pub(super) fn answered(&mut self, generation: u64, now: Instant) {
        if generation == self.generation {
            self.last_answer = now;
            self.unanswered = 0;
            self.spacing = SPACING;
        }
    }

    /// A call on client `generation` ended without an answer. Returns whether
    /// the client should be replaced now; if so, the new one is `generation + 1`.
    pub(super) fn unanswered(&mut self, generation: u64, now: Instant) -> bool {
        if generation != self.generation {
            return false;
        }
        self.unanswered = self.unanswered.saturating_add(1);
        let silent = now.duration_since(self.last_answer) >= WEDGED_FOR;
        let spaced = self
            .last_replaced
            .is_none_or(|t| now.duration_since(t) >= self.spacing);
        if !(silent && spaced && self.unanswered >= UNANSWERED) {
            return false;
        }
        if self.last_replaced.is_some() {
            self.spacing = (self.spacing * 2).min(MAX_SPACING);
        }
        self.generation += 1;
        self.last_replaced = Some(now);
        // The new client gets its own chance to answer.
        self.last_answer = now;
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
            health: Mutex::new(Health::new(Instant::now())),
        }
    }

    /// The client to use, and its generation (to report the outcome with).
    pub(super) fn current(&self) -> (u64, ClusterConnection) {
        self.current.read().expect("cluster lock").clone()
    }

    pub(super) fn answered(&self, generation: u64) {
        self.health
            .lock()
            .expect("cluster health lock")
            .answered(generation, Instant::now());
    }

    pub(super) fn unanswered(&self, generation: u64) {
        let replace = self
            .health
            .lock()
            .expect("cluster health lock")
            .unanswered(generation, Instant::now());
        if replace {
            let conn = self
                .client
                .get_pending_async_connection_with_config(self.config.clone());
            *self.current.write().expect("cluster lock") = (generation + 1, conn);
            tracing::warn!(
                "the Redis Cluster client answered nothing for {WEDGED_FOR:?}: replaced by a new one"
            );
        }
    }
}

/// Reports a call that ends without an answer when it is dropped unfinished.
pub(super) struct Call<'a> {
    cluster: &'a Cluster,
    generation: u64,
    finished: bool,
}

impl<'a> Call<'a> {
    pub(super) fn new(cluster: &'a Cluster, generation: u64) -> Self {
        Call {
            cluster,
            generation,
            finished: false,
        }
    }

    /// The call got `result`: a timeout inside the client counts as no answer.
    pub(super) fn finish<T>(mut self, result: &redis::RedisResult<T>) {
        self.finished = true;
        match result {
            Err(e) if e.is_timeout() => self.cluster.unanswered(self.generation),
            _ => self.cluster.answered(self.generation),
        }
    }
}

impl Drop for Call<'_> {
    fn drop(&mut self) {
        if !self.finished {
            self.cluster.unanswered(self.generation);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn a_client_silent_past_the_limit_is_replaced_once_then_spaced() {
        let t0 = Instant::now();
        let mut h = Health::new(t0);
        // Unanswered calls within the limit: a slow moment, not a wedge.
        assert!(!h.unanswered(0, t0 + 100 * MS));
        assert!(!h.unanswered(0, t0 + 900 * MS));
        // Silent for the limit, and calls keep ending unanswered.
        assert!(h.unanswered(0, t0 + WEDGED_FOR + MS));
        // Late reports about the replaced client change nothing.
        assert!(!h.unanswered(0, t0 + WEDGED_FOR + 2 * MS));
        // The new client stays silent: replaced again, but only after the spacing.
        let t1 = t0 + WEDGED_FOR + MS;
        assert!(!h.unanswered(1, t1 + 500 * MS));
        assert!(h.unanswered(1, t1 + SPACING));
        let t2 = t1 + SPACING;
        assert!(!h.unanswered(2, t2 + SPACING));
        assert!(!h.unanswered(2, t2 + SPACING + MS));
        assert!(h.unanswered(2, t2 + 2 * SPACING));
    }

    #[test]
    fn an_answer_resets_the_silence_and_the_spacing() {
        let t0 = Instant::now();
        let mut h = Health::new(t0);
        assert!(!h.unanswered(0, t0 + 500 * MS));
        h.answered(0, t0 + 900 * MS);
        // Silent since 900 ms only.
        assert!(!h.unanswered(0, t0 + 1500 * MS));
        assert!(!h.unanswered(0, t0 + 1800 * MS));
        assert!(h.unanswered(0, t0 + 1900 * MS + MS));
        // An answer from a replaced client does not count for the new one.
        h.answered(0, t0 + 2000 * MS);
        assert_eq!(h.generation, 1);
        assert_eq!(h.last_answer, t0 + 1900 * MS + MS);
    }
}
