//! A circuit breaker around the shared store.
//!
//! Without one, every request pays the full Redis timeout while Redis is down or
//! hung. With one, after `threshold` consecutive failures (errors or calls slower
//! than the operation timeout) the circuit opens and calls are refused at once; after
//! `cooldown` a single probe is let through (half-open); its success closes the
//! circuit, its failure re-opens it with a doubled cooldown (up to `max_cooldown`).
//!
//! The state machine is pure (time comes in as an argument) so it is tested without
//! sleeping; [`RedisStore`](crate::RedisStore) drives it with `Instant::now()`.

use std::time::{Duration, Instant};

/// Tuning of the breaker.
#[derive(Debug, Clone, Copy)]
pub struct BreakerConfig {
    /// Consecutive failures that open the circuit.
    pub threshold: u32,
    /// First wait before a probe.
    pub cooldown: Duration,
    /// Longest wait before a probe, after repeated failed probes.
    pub max_cooldown: Duration,
    /// A probe that has not reported after this long is presumed lost (its task was
    /// cancelled), and another probe may go.
    pub probe_timeout: Duration,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        BreakerConfig {
            threshold: 3,
            cooldown: Duration::from_millis(500),
            max_cooldown: Duration::from_secs(5),
            probe_timeout: Duration::from_secs(1),
        }
    }
}

/// The breaker's state, as exported in metrics and health reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BreakerState {
    /// Calls go through.
    Closed,
    /// Calls are refused until the cooldown ends.
    Open,
    /// One probe is allowed.
    HalfOpen,
}

/// What a reported outcome changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Transition {
    /// The circuit just opened: the store is considered down.
    Opened,
    /// The circuit just closed: the store is back.
    Closed,
}

/// The circuit breaker state machine.
#[derive(Debug)]
pub(crate) struct Breaker {
    config: BreakerConfig,
    failures: u32,
    open_until: Option<Instant>,
    cooldown: Duration,
    probe_started: Option<Instant>,
}

impl Breaker {
    /// A closed breaker.
    pub(crate) fn new(config: BreakerConfig) -> Self {
        Breaker {
            config,
            failures: 0,
            open_until: None,
            cooldown: config.cooldown,
            probe_started: None,
        }
    }

    /// The current state.
    pub(crate) fn state(&self, now: Instant) -> BreakerState {
        match self.open_until {
            None => BreakerState::Closed,
            Some(until) if now < until => BreakerState::Open,
            Some(_) => BreakerState::HalfOpen,
        }
    }

    /// Whether a success would change nothing and any call would be allowed:
    /// closed, with no failure, probe or lengthened cooldown to forget.
    pub(crate) fn is_pristine(&self) -> bool {
        self.open_until.is_none()
            && self.failures == 0
            && self.probe_started.is_none()
            && self.cooldown == self.config.cooldown
    }

    /// Whether the circuit is open or half-open (not [`Closed`](BreakerState::Closed)),
    /// whatever the time.
    pub(crate) fn is_open(&self) -> bool {
        self.open_until.is_some()
    }

    /// Whether a call may go now. In half-open state only one probe is in flight.
    pub(crate) fn allow(&mut self, now: Instant) -> bool {
        match self.state(now) {
            BreakerState::Closed => true,
            BreakerState::Open => false,
            BreakerState::HalfOpen => match self.probe_started {
                Some(t) if now.duration_since(t) < self.config.probe_timeout => false,
                _ => {
                    self.probe_started = Some(now);
                    true
                }
            },
        }
    }

    /// Reports a successful call.
    pub(crate) fn success(&mut self) -> Option<Transition> {
        self.failures = 0;
        self.probe_started = None;
        self.cooldown = self.config.cooldown;
        self.open_until.take().map(|_| Transition::Closed)
    }

    /// Reports a failed or too slow call.
    pub(crate) fn failure(&mut self, now: Instant) -> Option<Transition> {
        self.failures = self.failures.saturating_add(1);
        if self.open_until.is_some() {
            // A failed probe (or a late failure of a call sent before the circuit
            // opened): stay open, wait longer before the next probe.
            if self.probe_started.take().is_some() {
                self.cooldown = (self.cooldown * 2).min(self.config.max_cooldown);
            }
            self.open_until = Some(now + self.cooldown);
            return None;
        }
        if self.failures >= self.config.threshold {
            self.open_until = Some(now + self.cooldown);
            return Some(Transition::Opened);
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> BreakerConfig {
        BreakerConfig {
            threshold: 3,
            cooldown: Duration::from_millis(100),
            max_cooldown: Duration::from_millis(400),
            probe_timeout: Duration::from_millis(50),
        }
    }

    #[test]
    fn opens_after_threshold_consecutive_failures() {
        let t0 = Instant::now();
        let mut b = Breaker::new(cfg());
        assert_eq!(b.failure(t0), None);
        assert_eq!(b.failure(t0), None);
        b.success();
        assert_eq!(b.failure(t0), None);
        assert_eq!(b.failure(t0), None);
        assert_eq!(b.failure(t0), Some(Transition::Opened));
        assert!(!b.allow(t0));
        assert_eq!(b.state(t0), BreakerState::Open);
    }

    #[test]
    fn is_open_answers_whether_the_state_is_not_closed_at_any_time() {
        let t0 = Instant::now();
        let later = [
            Duration::ZERO,
            Duration::from_millis(100),
            Duration::from_secs(60),
        ];
        let agrees = |b: &Breaker| {
            later
                .iter()
                .all(|d| b.is_open() == (b.state(t0 + *d) != BreakerState::Closed))
        };
        let mut b = Breaker::new(cfg());
        assert!(!b.is_open() && agrees(&b));
        for _ in 0..3 {
            b.failure(t0);
            assert!(agrees(&b));
        }
        assert!(b.is_open());
        assert!(b.allow(t0 + Duration::from_millis(100)));
        b.failure(t0 + Duration::from_millis(100));
        assert!(b.is_open() && agrees(&b));
        b.success();
        assert!(!b.is_open() && agrees(&b));
    }

    /// What the Redis store skips while the breaker is pristine must be a no-op:
    /// `allow` says yes and changes nothing, `success` changes nothing.
    #[test]
    fn a_pristine_breaker_allows_every_call_and_has_nothing_to_forget() {
        let t0 = Instant::now();
        let mut b = Breaker::new(cfg());
        let mut rng = fastrand::Rng::with_seed(7);
        let mut now = t0;
        let (mut pristine_seen, mut dirty_seen) = (0, 0);
        for _ in 0..10_000 {
            now += Duration::from_millis(rng.u64(0..60));
            if b.is_pristine() {
                pristine_seen += 1;
                let before = format!("{b:?}");
                assert!(b.allow(now));
                assert_eq!(format!("{b:?}"), before, "allow changed a pristine breaker");
                assert_eq!(b.success(), None);
                assert_eq!(
                    format!("{b:?}"),
                    before,
                    "success changed a pristine breaker"
                );
            } else {
                dirty_seen += 1;
            }
            match rng.u8(0..3) {
                0 => {
                    b.allow(now);
                }
                1 => {
                    b.success();
                }
                _ => {
                    b.failure(now);
                }
            }
        }
        assert!(pristine_seen > 100 && dirty_seen > 100);
    }

    #[test]
    fn half_open_lets_one_probe_through_and_closes_on_success() {
        let t0 = Instant::now();
        let mut b = Breaker::new(cfg());
        for _ in 0..3 {
            b.failure(t0);
        }
        let t1 = t0 + Duration::from_millis(100);
        assert_eq!(b.state(t1), BreakerState::HalfOpen);
        assert!(b.allow(t1));
        assert!(!b.allow(t1), "a second probe while the first is in flight");
        assert_eq!(b.success(), Some(Transition::Closed));
        assert!(b.allow(t1));
    }

    #[test]
    fn failed_probes_back_off_up_to_the_maximum() {
        let t0 = Instant::now();
        let mut b = Breaker::new(cfg());
        for _ in 0..3 {
            b.failure(t0);
        }
        let mut now = t0 + Duration::from_millis(100);
        let mut waits = Vec::new();
        for _ in 0..4 {
            assert!(b.allow(now));
            b.failure(now);
            let mut wait = Duration::ZERO;
            while !b.allow(now + wait) {
                wait += Duration::from_millis(10);
            }
            b.failure(now + wait); // the probe just allowed fails too
            waits.push(wait);
            now += wait;
            now += Duration::from_millis(1000);
        }
        assert_eq!(waits[0], Duration::from_millis(200));
        assert_eq!(*waits.last().unwrap(), Duration::from_millis(400));
    }

    #[test]
    fn a_lost_probe_does_not_wedge_the_breaker() {
        let t0 = Instant::now();
        let mut b = Breaker::new(cfg());
        for _ in 0..3 {
            b.failure(t0);
        }
        let t1 = t0 + Duration::from_millis(100);
        assert!(b.allow(t1));
        // The probe's task was cancelled and never reported.
        assert!(!b.allow(t1 + Duration::from_millis(10)));
        assert!(b.allow(t1 + Duration::from_millis(60)));
    }
}
