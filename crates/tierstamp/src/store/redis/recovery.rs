//! Outage replay and the epoch: bumps that did not reach Redis are kept and
//! replayed, and an outage is covered by an epoch bump, before Redis is read
//! again. While either is pending the store is dirty: a read first recovers,
//! and is refused if it cannot.

use std::sync::atomic::Ordering;

use crate::error::StoreError;

use super::{RedisStore, by_slot, parse_u64};

impl RedisStore {
    pub(super) async fn refresh_epoch(&self) -> Result<u64, StoreError> {
        self.epoch_script("get").await
    }

    /// Runs `epoch.lua` (`get` or `bump`) and adopts the epoch it returns.
    async fn epoch_script(&self, op: &'static str) -> Result<u64, StoreError> {
        let inner = &self.inner;
        let local = self.epoch();
        let raw: String = self
            .call("epoch", |mut c| async move {
                inner
                    .scripts
                    .epoch
                    .key(&inner.epoch_key)
                    .arg(op)
                    .arg(&inner.channel)
                    .arg(local)
                    .invoke_async(&mut c)
                    .await
            })
            .await?;
        let e = parse_u64(&raw)?;
        self.observe_epoch(e);
        Ok(e)
    }

    pub(super) fn observe_epoch(&self, e: u64) {
        let before = self.inner.epoch.fetch_max(e, Ordering::SeqCst);
        if e > before
            && before != 0
            && let Some(l) = self.listener()
        {
            l.on_epoch(e);
        }
    }

    /// An outage has not been covered by an epoch bump yet, or bumps wait to be
    /// replayed: Redis must not be read.
    pub(super) fn is_dirty(&self) -> bool {
        self.inner.outages.load(Ordering::SeqCst) != self.inner.recovered.load(Ordering::SeqCst)
            || self.inner.pending_len.load(Ordering::SeqCst) > 0
            || self.inner.replaying.load(Ordering::SeqCst) > 0
    }

    pub(super) fn add_pending(&self, keys: impl IntoIterator<Item = String>) {
        let mut p = self.inner.pending.lock().expect("pending lock");
        p.extend(keys);
        self.inner.pending_len.store(p.len(), Ordering::SeqCst);
    }

    /// Makes the store safe to read: bumps the epoch after an outage, replays
    /// bumps that did not land. Refuses (so the caller bypasses) while another task
    /// is doing it or Redis still fails. The work runs in its own task: a caller
    /// cancelled half-way must not leave a recovery half-done.
    pub(super) async fn ready(&self) -> Result<(), StoreError> {
        if !self.is_dirty() {
            return Ok(());
        }
        let Ok(guard) = self.inner.recovering.clone().try_lock_owned() else {
            return Err(StoreError::Unavailable);
        };
        let store = self.clone();
        let task = tokio::spawn(async move {
            let _guard = guard;
            store.recover().await
        });
        task.await.unwrap_or(Err(StoreError::Unavailable))
    }

    /// Kills every entry of this namespace on every instance: bumps the epoch
    /// (entries carry the epoch they were written under, and an older one never
    /// validates) and publishes it, so each instance's L1 drops its entries too.
    /// What an operator's "clear the cache" means; removing Redis' keys alone
    /// would leave every L1 serving what it holds. Returns the new epoch.
    pub async fn bump_epoch(&self) -> Result<u64, StoreError> {
        self.epoch_script("bump").await
    }

    async fn recover(&self) -> Result<(), StoreError> {
        let inner = &self.inner;
        let seen = inner.outages.load(Ordering::SeqCst);
        if seen != inner.recovered.load(Ordering::SeqCst) {
            let e = self.bump_epoch().await?;
            tracing::info!(
                epoch = e,
                "epoch bumped after an outage: entries written before it are dead"
            );
            inner.recovered.fetch_max(seen, Ordering::SeqCst);
        }
        let taken: Vec<String> = {
            let mut p = inner.pending.lock().expect("pending lock");
            inner.replaying.store(p.len(), Ordering::SeqCst);
            inner.pending_len.store(0, Ordering::SeqCst);
            std::mem::take(&mut *p).into_iter().collect()
        };
        let mut groups = by_slot(&taken).into_iter();
        while let Some(group) = groups.next() {
            if let Err(e) = self.bump_now(&group).await {
                self.add_pending(group.into_iter().chain(groups.flatten()));
                inner.replaying.store(0, Ordering::SeqCst);
                return Err(e);
            }
            inner.replaying.fetch_sub(group.len(), Ordering::SeqCst);
            tracing::info!(
                keys = group.len(),
                "replayed invalidations missed during an outage"
            );
        }
        if self.is_dirty() {
            Err(StoreError::Unavailable)
        } else {
            Ok(())
        }
    }
}
