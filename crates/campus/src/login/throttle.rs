//! A throttle of failures per key (username, client address), in DRF's rate
//! form, bounded in memory.
//!
//! Each key holds one instant, its GCRA "theoretical arrival time" (the
//! algorithm `governor` implements): a failure moves it one interval
//! (`period / count`) later, and a key whose instant is more than
//! `period - interval` ahead of now has used its `count` failures. A key whose
//! instant has passed is as good as absent, which is what makes the map cheap to
//! bound: when it is full the passed keys go first, then the half closest to
//! passing.
//!
//! Hand-written rather than `governor`'s keyed limiter: that one's map grows
//! with every key until `retain_recent` is called and has no bound of its own,
//! and a throttle of failures also needs a refund (a success takes its attempt
//! back), which a rate limiter does not offer.

use std::collections::HashMap;
use std::hash::Hash;
use std::str::FromStr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// `count` per `period`, written as DRF writes it: `10/minute`, `5/s`,
/// `100/hour`, `1000/day` (the period's first letter is what counts).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    pub count: u32,
    pub period: Duration,
}

impl FromStr for Rate {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("{s:?} is not a rate like 10/minute (s, m, h or d)");
        let (count, period) = s.trim().split_once('/').ok_or_else(bad)?;
        let count: u32 = count.trim().parse().map_err(|_| bad())?;
        let seconds = match period.trim().chars().next() {
            Some('s') => 1,
            Some('m') => 60,
            Some('h') => 3600,
            Some('d') => 86_400,
            _ => return Err(bad()),
        };
        if count == 0 {
            return Err(format!("{s:?}: the count must be at least 1"));
        }
        Ok(Rate {
            count,
            period: Duration::from_secs(seconds),
        })
    }
}

impl Rate {
    fn interval(&self) -> Duration {
        self.period / self.count
    }
    fn tolerance(&self) -> Duration {
        self.period - self.interval()
    }
}

/// Failures per key at `rate`, remembering at most `capacity` keys.
#[derive(Debug)]
pub(crate) struct Throttle<K> {
    rate: Rate,
    capacity: usize,
    due: Mutex<HashMap<K, Instant>>,
}

impl<K: Hash + Eq + Copy> Throttle<K> {
    pub(crate) fn new(rate: Rate, capacity: usize) -> Self {
        Throttle {
            rate,
            capacity: capacity.max(2),
            due: Mutex::default(),
        }
    }

    /// Charges one failure to `key` in advance, so concurrent attempts cannot
    /// all pass the check before any of them fails. `Err(wait)`: the key has
    /// used its failures; one more is allowed after `wait`.
    pub(crate) fn charge(&self, key: K, now: Instant) -> Result<(), Duration> {
        let mut due = self.due.lock().unwrap_or_else(|e| e.into_inner());
        let tat = due.get(&key).copied().unwrap_or(now).max(now);
        let ahead = tat - now;
        if ahead > self.rate.tolerance() {
            return Err(ahead - self.rate.tolerance());
        }
        if due.len() >= self.capacity && !due.contains_key(&key) {
            self.shrink(&mut due, now);
        }
        due.insert(key, tat + self.rate.interval());
        Ok(())
    }

    /// Takes back a charge: the attempt did not fail.
    pub(crate) fn refund(&self, key: K, now: Instant) {
        let mut due = self.due.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(tat) = due.get_mut(&key) {
            match tat.checked_sub(self.rate.interval()) {
                Some(back) if back > now => *tat = back,
                _ => {
                    due.remove(&key);
                }
            }
        }
    }

    /// Forgets `key` (a successful login clears its username's failures).
    pub(crate) fn clear(&self, key: K) {
        self.due
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&key);
    }

    /// Keys remembered.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.due.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    #[cfg(test)]
    pub(crate) fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Makes room: drops the keys whose failures have all aged out, then, if
    /// that is not a quarter of the map, the half closest to aging out. Either
    /// way the next `capacity / 4` new keys insert without another pass.
    fn shrink(&self, due: &mut HashMap<K, Instant>, now: Instant) {
        due.retain(|_, tat| *tat > now);
        if due.len() < self.capacity - self.capacity / 4 {
            return;
        }
        let mut tats: Vec<Instant> = due.values().copied().collect();
        let middle = tats.len() / 2;
        let (_, median, _) = tats.select_nth_unstable(middle);
        let median = *median;
        due.retain(|_, tat| *tat > median);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rate(s: &str) -> Rate {
        s.parse().unwrap()
    }

    #[test]
    fn rates_read_like_drf() {
        assert_eq!(rate("10/minute"), rate("10/m"));
        assert_eq!(rate("5/s").period, Duration::from_secs(1));
        assert_eq!(rate("100/hour").period, Duration::from_secs(3600));
        assert_eq!(rate("1000/day").count, 1000);
        for bad in ["", "10", "x/minute", "10/week", "0/minute", "-1/s"] {
            assert!(bad.parse::<Rate>().is_err(), "{bad}");
        }
    }

    #[test]
    fn count_failures_pass_then_the_key_waits_one_interval() {
        let t = Throttle::new(rate("3/minute"), 100);
        let now = Instant::now();
        for _ in 0..3 {
            assert!(t.charge(1, now).is_ok());
        }
        let wait = t.charge(1, now).unwrap_err();
        assert_eq!(wait, Duration::from_secs(20));
        assert!(t.charge(2, now).is_ok(), "another key is not affected");
        assert!(t.charge(1, now + Duration::from_secs(19)).is_err());
        assert!(t.charge(1, now + Duration::from_secs(20)).is_ok());
    }

    #[test]
    fn a_refund_gives_the_attempt_back_and_clear_forgets() {
        let t = Throttle::new(rate("2/minute"), 100);
        let now = Instant::now();
        t.charge(1, now).unwrap();
        t.charge(1, now).unwrap();
        t.refund(1, now);
        assert!(t.charge(1, now).is_ok());
        assert!(t.charge(1, now).is_err());
        t.clear(1);
        assert!(t.charge(1, now).is_ok());
        t.refund(1, now);
        assert!(t.is_empty(), "a key back to no debt is dropped");
    }

    #[test]
    fn the_map_stays_within_its_capacity_and_keeps_the_most_indebted() {
        let t = Throttle::new(rate("2/minute"), 1000);
        let now = Instant::now();
        // Key 0 has used its failures; then a flood of distinct keys.
        t.charge(0u32, now).unwrap();
        t.charge(0u32, now).unwrap();
        for k in 1..100_000u32 {
            let _ = t.charge(k, now);
            assert!(t.len() <= 1000);
        }
        assert!(t.charge(0, now).is_err(), "the most indebted key survived");
        // Once their failures have aged out, keys are dropped first.
        let mut k = 300_000;
        while t.len() < 1000 {
            t.charge(k, now).unwrap();
            k += 1;
        }
        let later = now + Duration::from_secs(3600);
        let _ = t.charge(200_000, later);
        assert_eq!(t.len(), 1);
    }
}
