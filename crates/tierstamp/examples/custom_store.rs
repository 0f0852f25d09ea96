//! A store of your own behind the [`Store`] trait: here a key-value service that
//! holds bytes (think memcached, DynamoDB, an in-house cache), simulated in process
//! so the example runs anywhere, with a switch to take it down.
//!
//! ```sh
//! cargo run -p tierstamp --no-default-features --example custom_store
//! ```
//!
//! What the cache needs from a store, and why (the comments on each method say
//! more):
//!
//! * entries are [`Envelope`]s: [`Envelope::encode`] gives the bytes to keep,
//!   [`Envelope::decode`] reads them back (a hit costs no re-serialisation);
//! * generation counters are never reset to a value they had before (a lost counter
//!   restarts from the clock), and a `put` is checked against them atomically: that
//!   is what keeps a slow reader from storing stale data over a write;
//! * a failed `bump` is not lost: it is replayed before the store is read again;
//! * errors that mean "unreachable" are reported as outages: the cache then answers
//!   from the loader (`BYPASS`) instead of failing.
//!
//! It checks what it shows and exits non-zero otherwise.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::ensure;
use bytes::Bytes;
use tierstamp::store::{Envelope, Fetched, Stamp, Tier};
use tierstamp::{Cache, Health, Kind, Scope, Status, Store, StoreError, async_trait};

/// The remote service: values with an expiry, counters, and whether it answers.
#[derive(Default)]
struct Remote {
    values: Mutex<HashMap<String, (Bytes, Instant)>>,
    counters: Mutex<HashMap<String, u64>>,
    down: AtomicBool,
}

/// The store: a client of [`Remote`].
#[derive(Clone, Default)]
struct KvStore {
    remote: Arc<Remote>,
    /// Bumps the service did not take, replayed before the next read.
    pending: Arc<Mutex<HashSet<String>>>,
}

fn now_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(1, |d| d.as_micros() as u64)
}

impl KvStore {
    /// A network call: fails while the service is down.
    fn call(&self) -> Result<&Remote, StoreError> {
        if self.remote.down.load(Ordering::SeqCst) {
            let refused = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "kv down");
            return Err(StoreError::backend(refused, true));
        }
        Ok(&self.remote)
    }

    fn bump_now(&self, keys: &[String]) -> Result<Vec<u64>, StoreError> {
        let mut counters = self.call()?.counters.lock().unwrap();
        Ok(keys
            .iter()
            .map(|k| {
                let c = counters.entry(k.clone()).or_insert_with(now_micros);
                *c += 1;
                *c
            })
            .collect())
    }

    /// Delivers the bumps that failed before: until then, an entry that one of them
    /// should have killed could still validate.
    fn replay(&self) -> Result<(), StoreError> {
        let keys: Vec<String> = self.pending.lock().unwrap().iter().cloned().collect();
        if !keys.is_empty() {
            self.bump_now(&keys)?;
            let mut pending = self.pending.lock().unwrap();
            keys.iter().for_each(|k| {
                pending.remove(k);
            });
        }
        Ok(())
    }
}

#[async_trait]
impl Store for KvStore {
    async fn fetch(&self, key: &str, gen_keys: &[String]) -> Result<Fetched, StoreError> {
        self.replay()?;
        let remote = self.call()?;
        // A missing counter starts from the clock: had it restarted at a fixed value,
        // an old entry stored under that value could validate again.
        let gens = {
            let mut counters = remote.counters.lock().unwrap();
            gen_keys
                .iter()
                .map(|k| *counters.entry(k.clone()).or_insert_with(now_micros))
                .collect()
        };
        let raw = remote
            .values
            .lock()
            .unwrap()
            .get(key)
            .filter(|(_, until)| *until > Instant::now())
            .map(|(bytes, _)| bytes.clone());
        // Someone else's bytes under our key are a miss, not an error.
        let entry = raw.and_then(|b| Envelope::decode(b).ok()).map(Arc::new);
        Ok(Fetched {
            entry,
            stamp: Stamp { epoch: 0, gens },
            tier: Tier::L2,
        })
    }

    async fn put(
        &self,
        key: &str,
        gen_keys: &[String],
        entry: &Envelope,
        ttl: Duration,
        lease: Option<u64>,
    ) -> Result<bool, StoreError> {
        let remote = self.call()?;
        // Check and write under the counters' lock: a bump cannot land in between
        // (on a real service: a compare-and-set, a transaction or a script).
        let stored = {
            let counters = remote.counters.lock().unwrap();
            let current: Vec<u64> = gen_keys
                .iter()
                .map(|k| counters.get(k).copied().unwrap_or(0))
                .collect();
            let fresh = current == entry.stamp.gens;
            if fresh {
                let value = (entry.encode(), Instant::now() + ttl);
                remote.values.lock().unwrap().insert(key.to_owned(), value);
            }
            fresh
        };
        if let Some(token) = lease {
            self.release_lease(key, token).await?;
        }
        Ok(stored)
    }

    async fn bump(&self, gen_keys: &[String]) -> Result<Vec<u64>, StoreError> {
        self.bump_now(gen_keys).inspect_err(|_| {
            self.pending
                .lock()
                .unwrap()
                .extend(gen_keys.iter().cloned());
        })
    }

    async fn acquire_lease(
        &self,
        key: &str,
        token: u64,
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        let mut values = self.call()?.values.lock().unwrap();
        let lease = format!("{key}:lease");
        let now = Instant::now();
        if values.get(&lease).is_some_and(|(_, until)| *until > now) {
            return Ok(false);
        }
        values.insert(lease, (Bytes::from(token.to_string()), now + ttl));
        Ok(true)
    }

    async fn release_lease(&self, key: &str, token: u64) -> Result<(), StoreError> {
        let mut values = self.call()?.values.lock().unwrap();
        let lease = format!("{key}:lease");
        if values
            .get(&lease)
            .is_some_and(|(t, _)| *t == token.to_string())
        {
            values.remove(&lease);
        }
        Ok(())
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        self.call()?.values.lock().unwrap().remove(key);
        Ok(())
    }

    fn health(&self) -> Health {
        if self.remote.down.load(Ordering::SeqCst) || !self.pending.lock().unwrap().is_empty() {
            Health::Degraded
        } else {
            Health::Ok
        }
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tokio::time::timeout(Duration::from_secs(30), run()).await?
}

async fn run() -> anyhow::Result<()> {
    let store = KvStore::default();
    let cache = Cache::builder(store.clone()).build();
    let org = Scope::org(1);
    let key = cache
        .key(Kind::Detail, "invoice", &org)
        .param("id", 7)
        .build()?;
    let row = |v: &'static str| async move { Bytes::from_static(v.as_bytes()) };

    ensure!(cache.get_with(&key, row("draft")).await.status == Status::Miss);
    let hit = cache.get_with(&key, row("draft")).await;
    ensure!((hit.status, hit.tier) == (Status::Hit, Some(Tier::L2)));
    println!("miss, then a hit from the custom store");

    // The service goes down: reads are answered by the loader, without errors, and
    // an invalidation made meanwhile is kept for later.
    store.remote.down.store(true, Ordering::SeqCst);
    let bypass = cache.get_with(&key, row("paid")).await;
    ensure!((bypass.status, &bypass.body[..]) == (Status::Bypass, &b"paid"[..]));
    cache.invalidate("invoice", &org).await;
    ensure!(cache.health() == Health::Degraded);
    println!("service down: BYPASS, invalidation deferred");

    // Back up: the deferred invalidation is replayed before the first read, so the
    // entry stored before the outage ("draft") is never served again.
    store.remote.down.store(false, Ordering::SeqCst);
    let after = cache.get_with(&key, row("paid")).await;
    ensure!(
        (after.status, &after.body[..]) == (Status::Miss, &b"paid"[..]),
        "{after:?}"
    );
    ensure!(cache.get_with(&key, row("paid")).await.status == Status::Hit);
    ensure!(cache.health() == Health::Ok);
    println!("service back: the outage's invalidation was replayed, nothing stale served");
    Ok(())
}
