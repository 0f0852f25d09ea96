//! What keeps logins from exhausting the instance (SPEC §5.13): a bounded pool
//! for the password hashes, and throttles of failed logins per username and per
//! client address, answered as DRF answers throttling (429 with
//! `Retry-After`).
//!
//! Each attempt is charged to both throttles before its hash runs, so a
//! throttled attempt costs no hash and concurrent attempts cannot slip past
//! the check together; a successful login takes its charge back from the
//! address and clears its username.

mod hash_pool;
pub(crate) mod throttle;

use std::hash::BuildHasher;
use std::net::IpAddr;
use std::time::{Duration, Instant};

pub(crate) use hash_pool::HashPool;
pub(crate) use throttle::Throttle;

use crate::config::Limits;
use crate::error::ApiError;

#[derive(Debug)]
pub struct LoginGuard {
    pub hashes: HashPool,
    by_username: Throttle<u64>,
    by_address: Throttle<u128>,
    /// Usernames are remembered by a keyed hash, not their text: an entry's
    /// size does not depend on what a client sends.
    keys: foldhash::quality::RandomState,
}

/// One login's charge on the throttles, settled by [`LoginGuard::succeeded`].
#[derive(Debug, Clone, Copy)]
pub struct Attempt {
    username: u64,
    address: Option<u128>,
}

impl LoginGuard {
    pub fn new(limits: &Limits) -> Self {
        let entries = limits.login_throttle_entries as usize;
        LoginGuard {
            hashes: HashPool::new(limits.hash_concurrency(), limits.login_hash_queue),
            by_username: Throttle::new(limits.login_throttle_username, entries),
            by_address: Throttle::new(limits.login_throttle_address, entries),
            keys: Default::default(),
        }
    }

    /// Charges a login attempt for `username` from `address` (unknown when the
    /// router is called in process); `Throttled` if either has used its
    /// failures.
    pub fn attempt(&self, username: &str, address: Option<IpAddr>) -> Result<Attempt, ApiError> {
        let now = Instant::now();
        let attempt = Attempt {
            username: self.keys.hash_one(username),
            address: address.map(address_key),
        };
        let by_address = match attempt.address {
            Some(a) => self.by_address.charge(a, now),
            None => Ok(()),
        };
        let refused = match (self.by_username.charge(attempt.username, now), by_address) {
            (Ok(()), Ok(())) => return Ok(attempt),
            (Err(wait), Ok(())) => {
                if let Some(a) = attempt.address {
                    self.by_address.refund(a, now);
                }
                wait
            }
            (Ok(()), Err(wait)) => {
                self.by_username.refund(attempt.username, now);
                wait
            }
            (Err(a), Err(b)) => a.max(b),
        };
        metrics::counter!("campus_login_rejected_total", "reason" => "throttled").increment(1);
        Err(ApiError::Throttled(wait_seconds(refused)))
    }

    /// The login succeeded: its username's failures are forgotten and the
    /// address gets its charge back.
    pub fn succeeded(&self, attempt: Attempt) {
        self.by_username.clear(attempt.username);
        if let Some(a) = attempt.address {
            self.by_address.refund(a, Instant::now());
        }
    }
}

impl LoginGuard {
    /// The attempt was not decided (no hash slot, no database): its charge is
    /// taken back from both throttles.
    pub fn undecided(&self, attempt: Attempt) {
        let now = Instant::now();
        self.by_username.refund(attempt.username, now);
        if let Some(a) = attempt.address {
            self.by_address.refund(a, now);
        }
    }
}

/// DRF rounds the wait up to whole seconds.
fn wait_seconds(wait: Duration) -> u64 {
    wait.as_secs() + u64::from(wait.subsec_nanos() > 0)
}

/// An IPv4 address, or an IPv6 address's /64: one host usually holds a whole
/// /64, and throttling its addresses one by one would throttle nothing.
fn address_key(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(v4) => u128::from(u32::from(v4)),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => u128::from(u32::from(v4)),
            None => (u128::from(v6) & !u128::from(u64::MAX)) | (1 << 32),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_group_ipv6_by_64_and_never_collide_with_ipv4() {
        let k = |s: &str| address_key(s.parse().unwrap());
        assert_eq!(k("2001:db8::1"), k("2001:db8::ffff:1"));
        assert_ne!(k("2001:db8::1"), k("2001:db8:0:1::1"));
        assert_eq!(k("::ffff:10.0.0.1"), k("10.0.0.1"));
        assert_ne!(k("::"), k("0.0.0.0"));
    }

    #[test]
    fn waits_round_up_like_drf() {
        assert_eq!(wait_seconds(Duration::from_millis(1)), 1);
        assert_eq!(wait_seconds(Duration::from_secs(6)), 6);
        assert_eq!(wait_seconds(Duration::from_millis(6001)), 7);
    }
}
