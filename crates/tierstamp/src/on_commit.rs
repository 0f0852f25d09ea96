//! The on-commit buffer.
//!
//! Invalidating before a database transaction commits lets a reader, between the
//! invalidation and the commit, cache the old rows again; invalidating for a
//! transaction that rolls back is wasted. So cache effects of a transaction are
//! queued here and applied after the commit, before the response is sent:
//!
//! ```no_run
//! # async fn demo(cache: tierstamp::Cache) {
//! use tierstamp::Scope;
//! let scope = Scope::org(1);
//! let mut effects = cache.transaction();
//! // ... UPDATE departments ... inside the database transaction
//! effects.invalidate("department", &scope);
//! // db_tx.commit().await?;
//! effects.commit().await; // only now do other readers see the invalidation
//! # }
//! ```
//!
//! Dropping the buffer (or [`Transaction::rollback`]) discards every effect.
//! Reads made inside an open write transaction should call their loader directly:
//! they may see uncommitted rows, which must never be cached.

use std::collections::{BTreeMap, HashMap};

use bytes::Bytes;

use crate::cache::{Cache, CacheKey, Target};
use crate::envelope::Stamp;
use crate::key::Scope;

/// One queued invalidation (see [`Target`]).
#[derive(Debug, PartialEq, Eq)]
enum Queued {
    Model(String),
    Row(String, String),
    Fields(String, String, Vec<String>),
}

enum Effect {
    Set(CacheKey, Stamp, Bytes),
    Delete(CacheKey),
}

/// Cache effects waiting for a database commit; see the module docs.
#[must_use = "a transaction's effects are applied by commit() and dropped otherwise"]
pub struct Transaction {
    cache: Cache,
    /// Per scope: what to invalidate, deduplicated.
    invalidations: BTreeMap<Scope, Vec<Queued>>,
    effects: Vec<Effect>,
}

impl std::fmt::Debug for Transaction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transaction")
            .field("invalidations", &self.invalidations)
            .field("effects", &self.effects.len())
            .finish()
    }
}

impl Cache {
    /// Starts an on-commit buffer: cache effects queued in it are applied by
    /// [`Transaction::commit`] after the database transaction commits, and dropped
    /// with it otherwise.
    pub fn transaction(&self) -> Transaction {
        Transaction::new(self.clone())
    }
}

impl Transaction {
    pub(crate) fn new(cache: Cache) -> Self {
        Transaction {
            cache,
            invalidations: BTreeMap::new(),
            effects: Vec::new(),
        }
    }

    /// Queues the invalidation of `model` in `scope` (deduplicated), as
    /// [`Cache::invalidate`].
    pub fn invalidate(&mut self, model: &str, scope: &Scope) {
        self.queue(Queued::Model(model.to_owned()), scope);
    }

    /// Queues the invalidation of one row of `model` in `scope`, as
    /// [`Cache::invalidate_row`].
    pub fn invalidate_row(&mut self, model: &str, row: impl ToString, scope: &Scope) {
        self.queue(Queued::Row(model.to_owned(), row.to_string()), scope);
    }

    /// Queues the invalidation of `fields` of one row of `model` in `scope`,
    /// as [`Cache::invalidate_fields`].
    pub fn invalidate_fields<F: AsRef<str>>(
        &mut self,
        model: &str,
        row: impl ToString,
        fields: &[F],
        scope: &Scope,
    ) {
        let fields = fields.iter().map(|f| f.as_ref().to_owned()).collect();
        self.queue(
            Queued::Fields(model.to_owned(), row.to_string(), fields),
            scope,
        );
    }

    fn queue(&mut self, item: Queued, scope: &Scope) {
        let queued = self.invalidations.entry(scope.clone()).or_default();
        if !queued.contains(&item) {
            queued.push(item);
        }
    }

    /// Queues storing `body` under `key` after the commit.
    ///
    /// `stamp` must be captured with [`Cache::stamp`] *before* `body` is computed.
    /// At commit the stamp is advanced past this transaction's own invalidations,
    /// and the set happens only if nothing else moved it: a write by anyone else
    /// since the capture (whose data `body` may lack) cancels the set, never the
    /// other way round.
    pub fn set(&mut self, key: CacheKey, stamp: Stamp, body: Bytes) {
        self.effects.push(Effect::Set(key, stamp, body));
    }

    /// Queues removing the entry under `key`.
    pub fn delete(&mut self, key: CacheKey) {
        self.effects.push(Effect::Delete(key));
    }

    /// Whether nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.invalidations.is_empty() && self.effects.is_empty()
    }

    /// Applies the queued effects: invalidations first (one round trip per scope),
    /// then sets and deletes in order. Call it after the database commit succeeded.
    ///
    /// Returns whether every invalidation reached the shared store. When one did
    /// not, this instance replays it before it reads the store again, but other
    /// instances do not know of the write until then: an application with another
    /// way to reach them (a database notification, say) should use it.
    pub async fn commit(self) -> bool {
        // In its own task: the database has committed, so the effects must not be
        // lost to the caller being cancelled.
        let task = tokio::spawn(async move {
            let mut bumped: HashMap<String, u64> = HashMap::new();
            let mut all_delivered = true;
            for (scope, queued) in &self.invalidations {
                let targets: Vec<Target<'_>> = queued
                    .iter()
                    .map(|q| match q {
                        Queued::Model(m) => Target::Model(m),
                        Queued::Row(m, r) => Target::Row(m, r),
                        Queued::Fields(m, r, f) => Target::Fields(m, r, f),
                    })
                    .collect();
                match self.cache.bump(&targets, scope).await {
                    Some(values) => bumped.extend(values),
                    None => all_delivered = false,
                }
            }
            for effect in self.effects {
                match effect {
                    Effect::Set(key, stamp, body) => {
                        if all_delivered && let Some(stamp) = advance(&key, stamp, &bumped) {
                            self.cache.put_checked(&key, stamp, body).await;
                        }
                    }
                    Effect::Delete(key) => self.cache.delete(&key).await,
                }
            }
            all_delivered
        });
        task.await.unwrap_or(false)
    }

    /// Runs the database commit and then [`commit`](Self::commit), in one task
    /// the caller cannot cancel, and returns the commit's result with whether
    /// every invalidation reached the shared store.
    ///
    /// Awaiting the commit and then calling [`commit`](Self::commit) leaves a
    /// gap: a caller dropped between the two (a client gone during a slow
    /// `COMMIT`, a request timeout, a shutdown) has committed rows whose
    /// invalidation never runs, and readers get the old rows until the TTL.
    /// Here both run in a spawned task, so dropping the returned future changes
    /// nothing.
    ///
    /// When the commit fails, the queued invalidations and deletes are applied
    /// anyway and the sets dropped: an error may only mean the reply was lost (the
    /// connection broke after the server committed), and an extra invalidation
    /// costs a miss where a missing one costs a stale read.
    ///
    /// ```no_run
    /// # async fn demo(cache: tierstamp::Cache, db_commit: impl std::future::Future<Output = Result<(), std::io::Error>> + Send + 'static) -> Result<(), std::io::Error> {
    /// let mut effects = cache.transaction();
    /// effects.invalidate("department", &tierstamp::Scope::org(1));
    /// let (committed, _delivered) = effects.commit_after(db_commit).await;
    /// committed?;
    /// # Ok(()) }
    /// ```
    pub async fn commit_after<F, T, E>(mut self, db_commit: F) -> (Result<T, E>, bool)
    where
        F: std::future::Future<Output = Result<T, E>> + Send + 'static,
        T: Send + 'static,
        E: Send + 'static,
    {
        let task = tokio::spawn(async move {
            let committed = db_commit.await;
            if committed.is_err() {
                // The commit may not have landed: no set (it could store rows
                // that were rolled back); deletes and invalidations are safe.
                self.effects.retain(|e| matches!(e, Effect::Delete(_)));
            }
            let delivered = self.commit().await;
            (committed, delivered)
        });
        match task.await {
            Ok(done) => done,
            Err(e) => match e.try_into_panic() {
                // A panic in the commit future: the caller's to see.
                Ok(panic) => std::panic::resume_unwind(panic),
                // Cancelled: only a runtime shutting down does that, and it drops
                // this caller too.
                Err(_) => std::future::pending().await,
            },
        }
    }

    /// Discards the queued effects (the database transaction rolled back).
    pub fn rollback(self) {}
}

/// The stamp `captured` would have after this transaction's own bumps, if they were
/// the only writes since: each bumped counter must have moved by exactly one.
fn advance(key: &CacheKey, mut captured: Stamp, bumped: &HashMap<String, u64>) -> Option<Stamp> {
    for (gen_key, value) in key.gen_keys().iter().zip(captured.gens.iter_mut()) {
        if let Some(new) = bumped.get(gen_key) {
            if *new != value.checked_add(1)? {
                return None;
            }
            *value = *new;
        }
    }
    Some(captured)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use bytes::Bytes;

    use crate::{Cache, Kind, MemoryStore, Scope, Status};

    /// The caller is dropped while the database commit is in flight (a client
    /// gone during a slow `COMMIT`): the commit still completes and its
    /// invalidation still runs.
    #[tokio::test]
    async fn commit_after_invalidates_though_its_caller_is_dropped_mid_commit() {
        let cache = Cache::builder(MemoryStore::new(1 << 20)).build();
        let org = Scope::org(1);
        let key = cache
            .key(Kind::Detail, "faculty", &org)
            .param("id", 5)
            .build()
            .unwrap();
        let load = || async { Ok::<_, std::io::Error>(Bytes::from_static(b"old")) };
        cache.try_get_with(&key, load()).await.unwrap();
        assert_eq!(
            cache.try_get_with(&key, load()).await.unwrap().status,
            Status::Hit
        );

        let started = Arc::new(tokio::sync::Notify::new());
        let release = Arc::new(tokio::sync::Notify::new());
        let (committed_tx, committed_rx) = tokio::sync::oneshot::channel();
        let db_commit = {
            let (started, release) = (started.clone(), release.clone());
            async move {
                started.notify_one();
                release.notified().await;
                let _ = committed_tx.send(());
                Ok::<_, std::io::Error>(())
            }
        };
        let mut effects = cache.transaction();
        effects.invalidate("faculty", &org);
        let caller = tokio::spawn(async move { effects.commit_after(db_commit).await });
        started.notified().await;
        caller.abort();
        let _ = caller.await;
        release.notify_one();
        committed_rx.await.unwrap();
        let mut status = Status::Hit;
        for _ in 0..1000 {
            status = cache.try_get_with(&key, load()).await.unwrap().status;
            if status != Status::Hit {
                break;
            }
            tokio::task::yield_now().await;
        }
        assert_eq!(
            status,
            Status::Miss,
            "the committed write's invalidation ran"
        );
    }

    /// A commit that fails may have landed (its reply lost): the invalidation
    /// runs anyway, and the error reaches the caller.
    #[tokio::test]
    async fn commit_after_invalidates_when_the_commit_reports_an_error() {
        let cache = Cache::builder(MemoryStore::new(1 << 20)).build();
        let org = Scope::org(1);
        let key = cache.key(Kind::List, "faculty", &org).build().unwrap();
        let load = || async { Ok::<_, std::io::Error>(Bytes::from_static(b"[]")) };
        cache.try_get_with(&key, load()).await.unwrap();
        let mut effects = cache.transaction();
        effects.invalidate("faculty", &org);
        let lost_reply = async { Err::<(), _>(std::io::Error::other("connection reset")) };
        let (committed, _) = effects.commit_after(lost_reply).await;
        assert!(committed.is_err());
        assert_eq!(
            cache.try_get_with(&key, load()).await.unwrap().status,
            Status::Miss
        );
    }
}
