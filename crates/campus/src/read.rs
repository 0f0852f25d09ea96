//! The cached read, in one place: a handler's response read from the cache
//! (computed by its loader on a miss), with the caller's auth record read in
//! the same round trip, and counted on the dashboard. With the cache disabled,
//! every read is computed (`BYPASS`).

use std::future::Future;

use bytes::Bytes;
use tierstamp::{CacheKey, Etag, Lookup, Prefetched, Status};

use crate::auth::record;
use crate::auth::{Caller, Claimed};
use crate::error::ApiError;
use crate::state::AppState;

impl AppState {
    /// The cached value of `key`, computed by `loader` on a miss; with the cache
    /// disabled, always computed (`BYPASS`).
    pub async fn cached<F, Fut>(&self, key: &CacheKey, loader: F) -> Result<Lookup, ApiError>
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = Result<Bytes, ApiError>> + Send + 'static,
    {
        self.cached_with(key, None, loader).await
    }

    /// [`cached`](Self::cached), starting from a prefetched read when there is one.
    pub async fn cached_with<F, Fut>(
        &self,
        key: &CacheKey,
        prefetched: Option<Prefetched>,
        loader: F,
    ) -> Result<Lookup, ApiError>
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = Result<Bytes, ApiError>> + Send + 'static,
    {
        self.cached_with_parts(key, prefetched, &[], move |_| loader())
            .await
    }

    /// [`cached_with`](Self::cached_with) for a value put together from other
    /// entries, `parts`: `loader` gets their reads, made from the shared store
    /// with the key's lease ([`tierstamp::Cache::try_get_with_parts`]); none
    /// with the cache disabled.
    pub async fn cached_with_parts<F, Fut>(
        &self,
        key: &CacheKey,
        prefetched: Option<Prefetched>,
        parts: &[&CacheKey],
        loader: F,
    ) -> Result<Lookup, ApiError>
    where
        F: FnOnce(Vec<Prefetched>) -> Fut + Send + 'static,
        Fut: Future<Output = Result<Bytes, ApiError>> + Send + 'static,
    {
        if !self.cache_enabled {
            let body = loader(Vec::new()).await?;
            self.count(key, Status::Bypass);
            return Ok(Lookup {
                etag: Etag::of(&body),
                body,
                status: Status::Bypass,
                tier: None,
            });
        }
        // Polled, and so `loader` called, only on a miss. The loader's future
        // is boxed when it starts: held inline, it would make every look-up's
        // future as large as the loader's (a list query's is kilobytes), copied
        // on every hit.
        let init = move |parts| async move { Box::pin(loader(parts)).await };
        let prefetched = match prefetched {
            Some(p) => p,
            None if parts.is_empty() => {
                let lookup = self.cache.try_get_with(key, init(Vec::new())).await?;
                self.count(key, lookup.status);
                return Ok(lookup);
            }
            None => match self.cache.prefetch(&[key]).await.pop() {
                Some(p) => p,
                None => return Err(anyhow::anyhow!("the cache answered no key").into()),
            },
        };
        let result = self
            .cache
            .try_get_with_parts(key, prefetched, parts, init)
            .await;
        let lookup = result?;
        self.count(key, lookup.status);
        Ok(lookup)
    }

    /// The entry this process derived for `key` from its parts, if it is still
    /// valid ([`tierstamp::Cache::get_derived`]), once the caller is authorized.
    pub async fn derived_read(
        &self,
        claimed: &Claimed,
        key: &CacheKey,
    ) -> Result<Option<Lookup>, ApiError> {
        if !self.cache_enabled {
            return Ok(None);
        }
        let Some(lookup) = self.cache.get_derived(key) else {
            return Ok(None);
        };
        // Nothing of the response is used before the user is known to be active.
        authorize(self, claimed, None).await?;
        self.count(key, lookup.status);
        Ok(Some(lookup))
    }

    /// Counts a read of `key` on the dashboard (per organization and model).
    fn count(&self, key: &CacheKey, status: Status) {
        if let Some(org) = crate::ops::activity::org_of(key.scope()) {
            self.activity.record(org, key.model(), status);
        }
    }

    /// Authorizes the caller and reads `key` with one cache round trip for both.
    pub async fn authorized_read<F, Fut>(
        &self,
        claimed: &Claimed,
        key: &CacheKey,
        loader: F,
    ) -> Result<Lookup, ApiError>
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = Result<Bytes, ApiError>> + Send + 'static,
    {
        self.authorized_read_parts(claimed, key, &[], move |_| loader())
            .await
    }

    /// [`authorized_read`](Self::authorized_read) of a value put together
    /// from `parts` ([`cached_with_parts`](Self::cached_with_parts)).
    pub async fn authorized_read_parts<F, Fut>(
        &self,
        claimed: &Claimed,
        key: &CacheKey,
        parts: &[&CacheKey],
        loader: F,
    ) -> Result<Lookup, ApiError>
    where
        F: FnOnce(Vec<Prefetched>) -> Fut + Send + 'static,
        Fut: Future<Output = Result<Bytes, ApiError>> + Send + 'static,
    {
        if !self.cache_enabled {
            authorize(self, claimed, None).await?;
            return self.cached_with_parts(key, None, parts, loader).await;
        }
        let auth_key = record::auth_key(&self.cache, claimed)?;
        let mut found = self.cache.prefetch(&[auth_key, key]).await.into_iter();
        let (auth, page) = (found.next(), found.next());
        if auth.as_ref().is_some_and(Prefetched::is_hit) {
            // Nothing of the response is used before the user is known to be
            // active, and here that is known without another round trip.
            authorize(self, claimed, auth).await?;
            return self.cached_with_parts(key, page, parts, loader).await;
        }
        // The record is not cached (the first request of a session, or after a
        // clear or a write to the user): it is loaded beside the response, not
        // before it, and the response is still not answered, nor its error,
        // unless the record says the user is active. What the response's load
        // stores is the organization's data under its own key, which a caller
        // refused here never sees.
        // A refusal is answered as soon as it is known (the load, if it
        // started, goes on in its own flight and is stored for the
        // organization's next reader); a response waits for the record.
        let authorized = authorize(self, claimed, auth);
        let read = self.cached_with_parts(key, page, parts, loader);
        tokio::pin!(authorized, read);
        tokio::select! {
            caller = &mut authorized => {
                caller?;
                read.await
            }
            lookup = &mut read => {
                authorized.await?;
                lookup
            }
        }
    }
}

/// Checks the user behind a verified token is still active, and takes its role
/// from the database (through the cache), not from the token.
///
/// `prefetched` is the read of the auth record ([`record::auth_key`]) that
/// [`AppState::authorized_read`] made together with the response's.
pub(crate) async fn authorize(
    state: &AppState,
    claimed: &Claimed,
    prefetched: Option<Prefetched>,
) -> Result<Caller, ApiError> {
    let (user_id, org_id) = (claimed.user_id(), claimed.org_id());
    let key = record::auth_key(&state.cache, claimed)?;
    let db = state.db.clone();
    let lookup = state
        .cached_with(key, prefetched, move || record::load(db, user_id, org_id))
        .await?;
    record::check(claimed, &lookup.body)
}
