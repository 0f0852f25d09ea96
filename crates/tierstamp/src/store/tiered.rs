//! L1 (in-process) in front of L2 (Redis), kept coherent by the invalidation channel.
//!
//! L1 holds envelopes and a mirror of the generation counters. An L1 entry is served
//! only when all of these hold:
//!
//! * the invalidation channel is up and Redis is clean (breaker closed, nothing to
//!   replay): otherwise L1 cannot hear about writes, so it is not trusted at all;
//! * Redis answered a ping on the channel sent less than `op_timeout` ago: a hung
//!   Redis holds the messages it has not sent, so L1 stops answering within
//!   `op_timeout` of a hang, before any writer's failed invalidation returns (the
//!   store waits that long before reporting it); entries stay, and L1 answers
//!   again with the next ping answered;
//! * the mirror knows every generation the entry depends on, and they equal the
//!   entry's stamp (and the entry's epoch is current).
//!
//! The mirror is fed by this instance's own bumps (synchronously, before a write's
//! response is sent: read-your-writes on this instance), by the channel (other
//! instances' bumps, within the broadcast delay) and by values read from Redis.
//! Values only ever move up (`max`), so a late reply carrying an older value cannot
//! undo a newer bump. Values read from Redis are learned only if the channel did not
//! reconnect while the read was in flight (`session`): a value read before a
//! reconnect may predate a message missed while the channel was down.
//!
//! Strict mode closes the broadcast window: an L1 entry is checked against the
//! generations read from Redis (a few bytes instead of the body) before it is served.
//!
//! L1 itself (the entries, the mirror, how the mirror learns and drops values)
//! is in [`l1`]; this module decides when L1 may answer and what it keeps.

use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;

use super::memory::Entries;
use super::redis::{Listener, RedisStore};
use super::{Fetched, Health, Store, Tier};
use crate::envelope::{Envelope, Stamp};
use crate::error::StoreError;

mod l1;

use l1::L1;

/// An L1 in front of a [`RedisStore`].
#[derive(Clone)]
pub struct TieredStore {
    l1: Arc<L1>,
    l2: RedisStore,
    check: L1Check,
}

impl std::fmt::Debug for TieredStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TieredStore")
            .field("l2", &self.l2)
            .field("check", &self.check)
            .finish()
    }
}

/// How an L1 hit is checked before it is served.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum L1Check {
    /// Against this process's mirror of the generations, kept current by the
    /// invalidation channel (served only while the channel is known to be up).
    #[default]
    Mirror,
    /// Against Redis' generations, one small round trip per hit: no window
    /// of a broadcast's delay.
    Strict,
}

impl TieredStore {
    /// Puts an L1 of at most `l1_max_bytes` in front of `l2`, its hits checked
    /// as `check` says.
    pub fn new(l2: RedisStore, l1_max_bytes: u64, check: L1Check) -> Self {
        let l1 = Arc::new(L1 {
            entries: Entries::new(l1_max_bytes),
            gens: Mutex::default(),
            session: AtomicU64::new(0),
            drops: AtomicU64::new(0),
            max_l1_ttl: Duration::from_secs(3600),
        });
        l2.set_listener(l1.clone());
        // Read the channel state only after the listener is in place: a transition
        // after this line is reported to it, one before is reflected here.
        l1.on_channel(l2.channel_up());
        TieredStore { l1, l2, check }
    }

    /// The shared store behind L1.
    pub fn l2(&self) -> &RedisStore {
        &self.l2
    }

    /// Number of entries in L1.
    pub fn l1_entry_count(&self) -> u64 {
        self.l1.entries.len()
    }

    fn l1_usable(&self) -> Option<u64> {
        let session = self.l1.usable_session()?;
        (self.l2.is_clean() && self.l2.heard_recently()).then_some(session)
    }

    /// A valid L1 entry, if L1 may answer and holds one.
    async fn l1_hit(&self, key: &str, gen_keys: &[String]) -> Result<Option<Fetched>, StoreError> {
        if self.check == L1Check::Mirror {
            return Ok(self.l1_hit_mirrored(key, gen_keys));
        }
        if self.l1_usable().is_none() {
            return Ok(None);
        }
        let Some(held) = self.l1.entries.get(key) else {
            return Ok(None);
        };
        let stamp = self.l2.fetch_stamp(key, gen_keys).await?;
        Ok(stamp.validates(&held.env.stamp).then(|| Fetched {
            entry: Some(held.env),
            stamp,
            tier: Tier::L1,
        }))
    }

    /// [`l1_hit`](Self::l1_hit) outside strict mode: checked against the mirror.
    fn l1_hit_mirrored(&self, key: &str, gen_keys: &[String]) -> Option<Fetched> {
        self.l1_usable()?;
        let held = self.l1.entries.get(key)?;
        let stamp = Stamp {
            epoch: self.l2.epoch(),
            gens: self.l1.mirrored(gen_keys)?,
        };
        stamp.validates(&held.env.stamp).then(|| Fetched {
            entry: Some(held.env),
            stamp,
            tier: Tier::L1,
        })
    }

    /// Learns what a Redis read returned: its generations (if the channel session
    /// it started in is still current) and its entry, if valid.
    fn absorb(&self, key: &str, gen_keys: &[String], fetched: &Fetched, session: Option<u64>) {
        if session.is_none() {
            return;
        }
        self.l1.learn(
            gen_keys
                .iter()
                .cloned()
                .zip(fetched.stamp.gens.iter().copied()),
            session,
            None,
        );
        if let Some(e) = &fetched.entry
            && fetched.stamp.validates(&e.stamp)
        {
            let left = e.soft_expiry_ms.saturating_sub(super::now_millis());
            self.remember(key, e.clone(), Duration::from_millis(left.max(1)));
        }
    }

    fn remember(&self, key: &str, entry: Arc<Envelope>, ttl: Duration) {
        let ttl = ttl.min(self.l1.max_l1_ttl);
        self.l1.entries.insert(key.to_owned(), entry, ttl);
    }
}

#[async_trait]
impl Store for TieredStore {
    fn fetch_local(&self, key: &str, gen_keys: &[String]) -> Option<Fetched> {
        // Strict mode checks every hit against Redis: nothing is local.
        (self.check == L1Check::Mirror)
            .then(|| self.l1_hit_mirrored(key, gen_keys))
            .flatten()
    }

    fn fetch_derived(&self, key: &str) -> Option<Fetched> {
        // Checked against the mirror alone: strict mode keeps none.
        if self.check != L1Check::Mirror {
            return None;
        }
        self.l1_usable()?;
        let held = self.l1.entries.get(key)?;
        let gens = self.l1.mirrored(held.deps.as_ref()?)?;
        Some(Fetched {
            entry: Some(held.env),
            stamp: Stamp {
                epoch: self.l2.epoch(),
                gens,
            },
            tier: Tier::L1,
        })
    }

    fn keep_derived(
        &self,
        key: &str,
        deps: Arc<[String]>,
        entry: Arc<Envelope>,
        ttl: Duration,
    ) -> bool {
        if self.check != L1Check::Mirror || self.l1_usable().is_none() {
            return false;
        }
        // Kept only if the mirror holds exactly its values now: then it is as
        // valid as any L1 entry the mirror validates. A value learned after
        // this check makes it invalid at its next read.
        let current = entry.stamp.epoch == self.l2.epoch()
            && deps.len() == entry.stamp.gens.len()
            && self
                .l1
                .mirrored(&deps)
                .is_some_and(|now| now == entry.stamp.gens);
        if current {
            let ttl = ttl.min(self.l1.max_l1_ttl);
            self.l1
                .entries
                .insert_derived(key.to_owned(), entry, deps, ttl);
        }
        current
    }

    async fn fetch(&self, key: &str, gen_keys: &[String]) -> Result<Fetched, StoreError> {
        if let Some(hit) = self.l1_hit(key, gen_keys).await? {
            return Ok(hit);
        }
        let session = self.l1_usable();
        let fetched = self.l2.fetch(key, gen_keys).await?;
        self.absorb(key, gen_keys, &fetched, session);
        Ok(fetched)
    }

    async fn fetch_many(&self, items: &[(&str, &[String])]) -> Result<Vec<Fetched>, StoreError> {
        let mut out: Vec<Fetched> = Vec::with_capacity(items.len());
        let mut missing = Vec::new();
        for (i, (key, gen_keys)) in items.iter().enumerate() {
            match self.l1_hit(key, gen_keys).await? {
                Some(hit) => out.push(hit),
                None => {
                    missing.push(i);
                    // Replaced below by the Redis read (an empty stamp allocates nothing).
                    out.push(Fetched {
                        entry: None,
                        stamp: Stamp::default(),
                        tier: Tier::L2,
                    });
                }
            }
        }
        if !missing.is_empty() {
            let session = self.l1_usable();
            let wanted: Vec<(&str, &[String])> = missing.iter().map(|i| items[*i]).collect();
            let fetched = self.l2.fetch_many(&wanted).await?;
            if fetched.len() != missing.len() {
                return Err(StoreError::Malformed(
                    "fetch_many answered another number of keys",
                ));
            }
            for (i, f) in missing.into_iter().zip(fetched) {
                let (key, gen_keys) = items[i];
                self.absorb(key, gen_keys, &f, session);
                out[i] = f;
            }
        }
        Ok(out)
    }

    async fn fetch_many_shared(
        &self,
        items: &[(&str, &[String])],
    ) -> Result<Vec<Fetched>, StoreError> {
        // L1 is checked against the mirror, which hears of another instance's
        // write only when its message arrives: a part read from it may predate
        // a write whose counters the caller's own stamp (read from Redis)
        // already holds.
        let session = self.l1_usable();
        let fetched = self.l2.fetch_many(items).await?;
        if fetched.len() != items.len() {
            return Err(StoreError::Malformed(
                "fetch_many answered another number of keys",
            ));
        }
        for ((key, gen_keys), f) in items.iter().zip(&fetched) {
            self.absorb(key, gen_keys, f, session);
        }
        Ok(fetched)
    }

    async fn put(
        &self,
        key: &str,
        gen_keys: &[String],
        entry: &Envelope,
        ttl: Duration,
        lease: Option<u64>,
    ) -> Result<bool, StoreError> {
        let stored = self.l2.put(key, gen_keys, entry, ttl, lease).await?;
        if stored && self.l1_usable().is_some() {
            self.remember(key, Arc::new(entry.clone()), ttl);
        }
        Ok(stored)
    }

    async fn bump(&self, gen_keys: &[String]) -> Result<Vec<u64>, StoreError> {
        // Forgotten first: an invalidation this instance hears of another way
        // (Campus's PostgreSQL notification, while Redis hangs) stops its L1 at
        // once, not after the Redis call times out.
        self.l1.forget(gen_keys);
        match self.l2.bump(gen_keys).await {
            // The listener already learned the new values (synchronously).
            Ok(v) => Ok(v),
            Err(e) => {
                // L2 is now dirty, which disables L1 until the bump is replayed; drop
                // the mirrored values again, in case a read taught them meanwhile.
                self.l1.forget(gen_keys);
                Err(e)
            }
        }
    }

    async fn acquire_lease(
        &self,
        key: &str,
        token: u64,
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        self.l2.acquire_lease(key, token, ttl).await
    }

    async fn lease_and_fetch(
        &self,
        items: &[(&str, &[String])],
        token: u64,
        ttl: Duration,
    ) -> Result<Option<Vec<Fetched>>, StoreError> {
        // From L2 itself, as `fetch_many_shared` reads.
        let session = self.l1_usable();
        let fetched = self.l2.lease_and_fetch(items, token, ttl).await?;
        if let Some(fetched) = &fetched {
            for ((key, gen_keys), f) in items.iter().zip(fetched) {
                self.absorb(key, gen_keys, f, session);
            }
        }
        Ok(fetched)
    }

    async fn release_lease(&self, key: &str, token: u64) -> Result<(), StoreError> {
        self.l2.release_lease(key, token).await
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        self.l1.entries.remove(key);
        self.l2.delete(key).await
    }

    fn health(&self) -> Health {
        self.l2.health()
    }
}
