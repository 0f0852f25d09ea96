//! [`Store`] over Redis: reads (per hash tag in a Cluster), the checked put,
//! bumps (retried for `bump_retry`, then left for replay), leases and delete.
//! Every operation goes through the breaker-guarded call.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use async_trait::async_trait;

use crate::envelope::Envelope;
use crate::error::StoreError;
use crate::store::{Fetched, Health, Store, lease_key};

use super::{RedisStore, Topology, by_slot, hash_tag, mono_us, parse_u64};

/// Counters bumped by one script outside a Cluster (one statement over
/// thousands of tenants stays a few round trips, each script short).
const BUMP_BATCH: usize = 1000;

impl RedisStore {
    pub(super) async fn bump_now(&self, gen_keys: &[String]) -> Result<Vec<u64>, StoreError> {
        let inner = &self.inner;
        let token = self.listener().map(|l| l.before_bump());
        let raw: Vec<String> = self
            .call("bump", |mut c| async move {
                let mut inv = inner.scripts.bump.prepare_invoke();
                for k in gen_keys {
                    inv.key(k);
                }
                inv.arg(&inner.channel);
                inv.invoke_async(&mut c).await
            })
            .await?;
        let values = raw
            .iter()
            .map(|v| parse_u64(v))
            .collect::<Result<Vec<_>, _>>()?;
        if let Some(l) = self.listener() {
            let pairs: Vec<(String, u64)> = gen_keys
                .iter()
                .cloned()
                .zip(values.iter().copied())
                .collect();
            l.on_bumped(&pairs, token.unwrap_or(0));
        }
        Ok(values)
    }
}

#[async_trait]
impl Store for RedisStore {
    async fn fetch(&self, key: &str, gen_keys: &[String]) -> Result<Fetched, StoreError> {
        self.fetch_inner(key, gen_keys, true).await
    }

    async fn fetch_many(&self, items: &[(&str, &[String])]) -> Result<Vec<Fetched>, StoreError> {
        if let [(key, gen_keys)] = items {
            return Ok(vec![self.fetch_inner(key, gen_keys, true).await?]);
        }
        // Outside a Cluster one MGET (or script) may read keys of any slot.
        if self.inner.config.topology != Topology::Cluster
            || items
                .windows(2)
                .all(|w| hash_tag(w[0].0) == hash_tag(w[1].0))
        {
            return self.fetch_many_inner(items).await;
        }
        // A Cluster refuses a multi-key command across slots: one read per hash
        // tag, sent together (the multiplexed connections pipeline them).
        let mut groups: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
        for (i, (key, _)) in items.iter().enumerate() {
            groups.entry(hash_tag(key)).or_default().push(i);
        }
        let reads = groups.into_values().map(|idx| async move {
            let part: Vec<(&str, &[String])> = idx.iter().map(|&i| items[i]).collect();
            let fetched = match part.as_slice() {
                [(key, gen_keys)] => vec![self.fetch_inner(key, gen_keys, true).await?],
                _ => self.fetch_many_inner(&part).await?,
            };
            Ok::<_, StoreError>((idx, fetched))
        });
        let mut out: Vec<Option<Fetched>> = items.iter().map(|_| None).collect();
        for (idx, fetched) in futures::future::try_join_all(reads).await? {
            for (i, f) in idx.into_iter().zip(fetched) {
                out[i] = Some(f);
            }
        }
        out.into_iter()
            .map(|f| f.ok_or(StoreError::Malformed("fetch_many reply length")))
            .collect()
    }

    async fn put(
        &self,
        key: &str,
        gen_keys: &[String],
        entry: &Envelope,
        ttl: Duration,
        lease: Option<u64>,
    ) -> Result<bool, StoreError> {
        let inner = &self.inner;
        let lease_key = lease_key(key);
        let body = entry.encode();
        let stored: i64 = self
            .call("put", |mut c| async move {
                let mut inv = inner.scripts.put.key(key);
                inv.key(&lease_key);
                for k in gen_keys {
                    inv.key(k);
                }
                inv.arg(body.as_ref())
                    .arg(ttl.as_millis().max(1) as u64)
                    .arg(lease.map(|t| t.to_string()).unwrap_or_default());
                for g in &entry.stamp.gens {
                    inv.arg(g.to_string());
                }
                inv.invoke_async(&mut c).await
            })
            .await?;
        Ok(stored == 1)
    }

    async fn bump(&self, gen_keys: &[String]) -> Result<Vec<u64>, StoreError> {
        // Replays earlier misses first (an instance that only writes must not keep
        // them forever); its failure does not stop this bump from being tried.
        let _ = self.ready().await;
        let deadline = Instant::now() + self.inner.config.bump_retry;
        // Bumped a slot at a time in a Cluster (a script stays in one slot),
        // in batches elsewhere, answered in the callers' order.
        let mut by_key: HashMap<String, u64> = HashMap::new();
        let groups = if self.inner.config.topology == Topology::Cluster {
            by_slot(gen_keys)
        } else {
            gen_keys
                .chunks(BUMP_BATCH)
                .map(<[String]>::to_vec)
                .collect()
        };
        for group in groups {
            loop {
                match self.bump_now(&group).await {
                    Ok(v) => {
                        by_key.extend(group.iter().cloned().zip(v));
                        break;
                    }
                    Err(_) if Instant::now() < deadline => {
                        // A failover in progress: the breaker's probes and the
                        // connection's rebuild get through once it is over.
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                    Err(e) => {
                        // Not lost: replayed before this instance reads Redis again.
                        self.add_pending(gen_keys.iter().cloned());
                        // Other instances may still trust their L1 for up to
                        // `op_timeout` after Redis stopped answering them, which
                        // was no later than this instance's first failure of
                        // the outage: the caller's response must not go out
                        // before then (see `heard_recently`). Once the outage
                        // is that old, nothing is waited.
                        let since = match self.inner.failing_since_us.load(Ordering::SeqCst) {
                            0 => mono_us(),
                            t => t,
                        };
                        let until = since + self.inner.config.op_timeout.as_micros() as u64;
                        let wait = until.saturating_sub(mono_us());
                        tokio::time::sleep(Duration::from_micros(wait)).await;
                        return Err(e);
                    }
                }
            }
        }
        gen_keys
            .iter()
            .map(|k| {
                by_key
                    .get(k)
                    .copied()
                    .ok_or(StoreError::Malformed("bump reply length"))
            })
            .collect()
    }

    async fn acquire_lease(
        &self,
        key: &str,
        token: u64,
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        let lk = lease_key(key);
        let ok: Option<String> = self
            .call("lease", |mut c| async move {
                redis::cmd("SET")
                    .arg(&lk)
                    .arg(token.to_string())
                    .arg("NX")
                    .arg("PX")
                    .arg(ttl.as_millis().max(1) as u64)
                    .query_async(&mut c)
                    .await
            })
            .await?;
        Ok(ok.is_some())
    }

    async fn lease_and_fetch(
        &self,
        items: &[(&str, &[String])],
        token: u64,
        ttl: Duration,
    ) -> Result<Option<Vec<Fetched>>, StoreError> {
        let Some((key, _)) = items.first() else {
            return Err(StoreError::Malformed("lease_and_fetch of no key"));
        };
        // A script stays in one slot: in a Cluster, parts of another hash tag
        // than the key's are read after the lease, in a call of their own.
        if self.inner.config.topology != Topology::Cluster
            || items.iter().all(|(k, _)| hash_tag(k) == hash_tag(key))
        {
            return self.lease_and_fetch_inner(items, token, ttl).await;
        }
        let Some(mut fetched) = self.lease_and_fetch_inner(&items[..1], token, ttl).await? else {
            return Ok(None);
        };
        match self.fetch_many(&items[1..]).await {
            Ok(parts) => {
                fetched.extend(parts);
                Ok(Some(fetched))
            }
            Err(e) => {
                let _ = self.release_lease(key, token).await;
                Err(e)
            }
        }
    }

    async fn release_lease(&self, key: &str, token: u64) -> Result<(), StoreError> {
        let inner = &self.inner;
        let lk = lease_key(key);
        let _: i64 = self
            .call("release", |mut c| async move {
                inner
                    .scripts
                    .release
                    .key(&lk)
                    .arg(token.to_string())
                    .invoke_async(&mut c)
                    .await
            })
            .await?;
        Ok(())
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        let _: i64 = self
            .call("delete", |mut c| async move {
                redis::cmd("UNLINK").arg(key).query_async(&mut c).await
            })
            .await?;
        Ok(())
    }

    fn health(&self) -> Health {
        if self.is_clean() {
            Health::Ok
        } else {
            Health::Degraded
        }
    }
}
