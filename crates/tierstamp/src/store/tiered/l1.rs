//! L1: the in-process entries and the mirror of the generation counters, and
//! how the mirror learns values (own bumps, the channel's messages, Redis
//! reads) and drops them (a bump, the overflow, the channel going up or down,
//! an outage).

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::hash::FastMap;
use crate::store::memory::{Entries, is_row};
use crate::store::redis::Listener;

/// Most generation values mirrored before the mirror is reset (it only costs L1
/// hits until the values are read again).
const MAX_MIRRORED: usize = 200_000;

pub(super) struct L1 {
    pub(super) entries: Entries,
    pub(super) gens: Mutex<FastMap<String, u64>>,
    /// Counts every removal of mirrored values (`forget`, the overflow), under
    /// the mirror's lock. A value from this instance's own bump reply is
    /// learned only if nothing was removed since the bump was sent: a removed
    /// counter lost its `max`, and the reply may be older than a message
    /// learned before the removal.
    pub(super) drops: AtomicU64,
    /// Odd while the channel is up; changes on every transition.
    pub(super) session: AtomicU64,
    pub(super) max_l1_ttl: Duration,
}

impl L1 {
    pub(super) fn usable_session(&self) -> Option<u64> {
        let s = self.session.load(Ordering::SeqCst);
        (!s.is_multiple_of(2)).then_some(s)
    }

    pub(super) fn mirrored(&self, gen_keys: &[String]) -> Option<Vec<u64>> {
        let gens = self.gens.lock().expect("mirror lock");
        gen_keys.iter().map(|k| gens.get(k).copied()).collect()
    }

    /// Learns generation values. `session` is the channel session a Redis read
    /// started in (`None` for authoritative values: a bump's result or a
    /// message); `bumped`, for this instance's own bump reply, the `drops`
    /// count read before the bump was sent. Returns whether the values were
    /// learned.
    pub(super) fn learn(
        &self,
        pairs: impl Iterator<Item = (String, u64)>,
        session: Option<u64>,
        bumped: Option<u64>,
    ) -> bool {
        let mut gens = self.gens.lock().expect("mirror lock");
        // Checked under the lock: `on_channel` and the overflow reset change the
        // session under it too, and every removal counts `drops` under it.
        if session.is_some_and(|s| s != self.session.load(Ordering::SeqCst))
            || bumped.is_some_and(|t| t != self.drops.load(Ordering::SeqCst))
        {
            return false;
        }
        let overflow = gens.len() > MAX_MIRRORED;
        if overflow {
            // Rows' counters go (one per row read: they are what fills it), and
            // everything if model counters alone come near the bound. A read in
            // flight may carry values older than a bump learned since: start a
            // new session so it is refused (as `forget` does). An entry whose
            // counters are no longer mirrored is not served until a Redis read
            // teaches them again.
            gens.retain(|k, _| !is_row(k));
            self.drops.fetch_add(1, Ordering::SeqCst);
            let cleared = gens.len() > MAX_MIRRORED / 2;
            if cleared {
                gens.clear();
            }
            self.session.fetch_add(2, Ordering::SeqCst);
            if cleared {
                drop(gens);
                // Nothing held validates against an empty mirror; freed outside
                // the lock every L1 hit takes (emptying takes a while).
                self.entries.clear();
                return false;
            }
        }
        if overflow && session.is_some() {
            return false;
        }
        for (k, v) in pairs {
            let g = gens.entry(k).or_insert(v);
            *g = (*g).max(v);
        }
        true
    }

    /// Drops the mirrored values of `gen_keys`, and starts a new session: a
    /// Redis read in flight may carry a value older than one learned since
    /// (forgetting it removes the `max` that kept such a value out), so no
    /// read begun before this point may teach the mirror again.
    pub(super) fn forget(&self, gen_keys: &[String]) {
        let mut gens = self.gens.lock().expect("mirror lock");
        for k in gen_keys {
            gens.remove(k);
        }
        self.drops.fetch_add(1, Ordering::SeqCst);
        self.session.fetch_add(2, Ordering::SeqCst);
    }

    fn reset(&self) {
        self.gens.lock().expect("mirror lock").clear();
        self.entries.clear();
    }
}

impl Listener for L1 {
    fn on_channel(&self, up: bool) {
        let mut gens = self.gens.lock().expect("mirror lock");
        // Always a new session (odd when up), so reads begun before this point can
        // never teach the mirror.
        let s = self.session.load(Ordering::SeqCst);
        let next = if up == s.is_multiple_of(2) {
            s + 1
        } else {
            s + 2
        };
        self.session.store(next, Ordering::SeqCst);
        gens.clear();
        drop(gens);
        self.entries.clear();
    }
    fn on_gens(&self, pairs: &[(String, u64)]) {
        // Authoritative values (the channel's messages, in order): learned
        // whatever the session, a reset on reconnect clears them anyway.
        self.learn(pairs.iter().cloned(), None, None);
    }
    fn before_bump(&self) -> u64 {
        self.drops.load(Ordering::SeqCst)
    }
    fn on_bumped(&self, pairs: &[(String, u64)], token: u64) {
        // Not learned after a removal (the reply may be older than a value
        // the removal took). A read begun after this bump's own `forget` may
        // have taught the mirror a value from before the bump meanwhile: the
        // counters are forgotten again, so that this write, once it returns,
        // is never hidden by this instance's L1.
        if !self.learn(pairs.iter().cloned(), None, Some(token)) {
            let keys: Vec<String> = pairs.iter().map(|(k, _)| k.clone()).collect();
            self.forget(&keys);
        }
    }
    fn on_epoch(&self, _epoch: u64) {
        // Entries stamped with an older epoch are already invalid; free the memory.
        self.entries.clear();
    }
    fn on_outage(&self) {
        self.reset();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn l1() -> L1 {
        L1 {
            entries: Entries::new(1 << 20),
            gens: Mutex::default(),
            session: AtomicU64::new(1),
            drops: AtomicU64::new(0),
            max_l1_ttl: Duration::from_secs(60),
        }
    }

    /// This instance bumps X (the reply will say 10); another instance's bump
    /// (11) is heard first; X is then dropped from the mirror (the overflow,
    /// or another bump's `forget`); the late reply must not teach 10 back, or
    /// an entry stamped 10 (without the other write) would be served.
    #[test]
    fn a_late_bump_reply_does_not_undo_a_newer_value_after_a_drop() {
        let l1 = l1();
        let x = "p:gen:faculty:{org_1}:5".to_owned();
        let token = l1.before_bump();
        l1.on_gens(&[(x.clone(), 11)]);
        assert_eq!(l1.mirrored(std::slice::from_ref(&x)), Some(vec![11]));
        l1.forget(std::slice::from_ref(&x));
        l1.on_bumped(&[(x.clone(), 10)], token);
        assert_eq!(l1.mirrored(std::slice::from_ref(&x)), None);
        // With nothing dropped since, a reply is learned (read-your-writes).
        let token = l1.before_bump();
        l1.on_bumped(&[(x.clone(), 12)], token);
        assert_eq!(l1.mirrored(std::slice::from_ref(&x)), Some(vec![12]));
    }

    /// This instance bumps X (its `forget` starts a new session); a read begun
    /// after that, but answered before the bump ran in Redis, teaches the old
    /// value 9; another bump's `forget` then makes this bump's reply (10) be
    /// refused. The old value must not stay mirrored once this write returns,
    /// or its L1 entries would hide the write from this instance.
    #[test]
    fn a_refused_bump_reply_leaves_no_older_value_mirrored() {
        let l1 = l1();
        let (x, y) = (
            "p:gen:faculty:{org_1}:5".to_owned(),
            "p:gen:faculty:{org_1}:6".to_owned(),
        );
        let token = l1.before_bump();
        l1.forget(std::slice::from_ref(&x));
        let session = l1.usable_session();
        assert!(l1.learn(std::iter::once((x.clone(), 9)), session, None));
        l1.forget(std::slice::from_ref(&y));
        l1.on_bumped(&[(x.clone(), 10)], token);
        assert_eq!(l1.mirrored(std::slice::from_ref(&x)), None);
    }
}
