//! The cached resource layer: the Rust counterpart of the original
//! `SmartCachedViewSet`. A [`Resource`] says how to read and write its rows; the
//! generic handlers here add authentication, tenant scope, roles, DRF semantics,
//! caching (list and detail entries under SPEC §4's keys and TTL tiers) and
//! invalidation after commit, before the 2xx is sent.
//!
//! The handlers live by concept: [`list`] (parsing, keys, pages put together
//! from cached parts), [`detail`] (a row's entry) and [`write`] (the
//! transaction, invalidation after commit, the outbox).

mod detail;
mod list;
mod write;

use std::future::Future;

use axum::Router;
use axum::http::Method;
use axum::routing::{MethodRouter, get};
use sea_orm::{DatabaseConnection, DatabaseTransaction};
use serde_json::{Map, Value};

use crate::auth::{Caller, Claimed};
use crate::error::{ApiError, ApiResult};
use crate::fields::Field;
use crate::listing::{FilterKind, ListQuery, Results};
use crate::model::Model;
use crate::query::Part;
use crate::read::authorize;
use crate::state::AppState;

use detail::retrieve;
use list::list;
pub(crate) use write::{JsonObject, begin_write};
use write::{create, destroy, modify, replace};

/// What a resource implements: how to list, find, show, save and remove its
/// rows within one organization. Create, update and delete follow from those.
pub(crate) trait Resource: Send + Sync + 'static {
    /// Its model: the name in cache keys and generation counters, its table.
    const MODEL: Model;
    /// The representation's fields and what writes accept ([`crate::fields`]):
    /// what `save` validates against and what the OpenAPI document shows.
    const FIELDS: &'static [Field];
    type Row: Send + Sync;

    /// The total and the page's rows, serialized ([`Results`]), or either
    /// alone ([`Part`]).
    fn list(
        db: &DatabaseConnection,
        org: i64,
        q: &ListQuery,
        part: Part,
    ) -> impl Future<Output = ApiResult<(u64, Results)>> + Send;
    fn retrieve(
        db: &DatabaseConnection,
        org: i64,
        id: i64,
    ) -> impl Future<Output = ApiResult<Option<Value>>> + Send;
    /// Row `id` of `org`, for update and delete.
    fn find(
        tx: &DatabaseTransaction,
        org: i64,
        id: i64,
    ) -> impl Future<Output = ApiResult<Option<Self::Row>>> + Send;
    /// Validates `input` and inserts (`current` is `None`) or updates a row.
    fn save(
        tx: &DatabaseTransaction,
        org: i64,
        current: Option<Self::Row>,
        input: &Map<String, Value>,
        partial: bool,
    ) -> impl Future<Output = ApiResult<Value>> + Send;
    fn remove(
        tx: &DatabaseTransaction,
        row: Self::Row,
    ) -> impl Future<Output = ApiResult<()>> + Send;

    /// The filters a list takes, from [`FIELDS`](Self::FIELDS).
    fn filters() -> Vec<(&'static str, FilterKind)> {
        Self::FIELDS
            .iter()
            .filter_map(|f| f.list.filter.map(|k| (f.name, k)))
            .collect()
    }

    /// The fields `?search=` looks in, in the order of the model's trigram
    /// index ([`crate::migration::SEARCH_INDEXES`]): PostgreSQL uses the
    /// index only for the very expression it was built on.
    fn search() -> Vec<&'static str> {
        let mut fields: Vec<&'static str> = Self::FIELDS
            .iter()
            .filter(|f| f.list.searchable)
            .map(|f| f.name)
            .collect();
        let indexed = crate::migration::SEARCH_INDEXES
            .iter()
            .find(|(_, table, _)| Some(*table) == Self::MODEL.table());
        if let Some((_, _, columns)) = indexed {
            fields.sort_by_key(|f| columns.iter().position(|c| c == f).unwrap_or(usize::MAX));
        }
        fields
    }

    /// The fields a list may be ordered by.
    fn ordering() -> Vec<&'static str> {
        Self::FIELDS
            .iter()
            .filter(|f| f.list.orderable)
            .map(|f| f.name)
            .collect()
    }

    /// Refuses a change the caller may not make to row `id` even with the
    /// role to write the model (a user demoting itself, say). `input` is the
    /// body of an update, `None` for a delete.
    fn guard(caller: &Caller, id: i64, input: Option<&Map<String, Value>>) -> ApiResult<()> {
        let _ = (caller, id, input);
        Ok(())
    }

    fn create(
        tx: &DatabaseTransaction,
        org: i64,
        input: &Map<String, Value>,
    ) -> impl Future<Output = ApiResult<Value>> + Send {
        Self::save(tx, org, None, input, false)
    }

    fn update(
        tx: &DatabaseTransaction,
        org: i64,
        id: i64,
        input: &Map<String, Value>,
        partial: bool,
    ) -> impl Future<Output = ApiResult<Option<Value>>> + Send {
        async move {
            match Self::find(tx, org, id).await? {
                Some(row) => Self::save(tx, org, Some(row), input, partial)
                    .await
                    .map(Some),
                None => Ok(None),
            }
        }
    }

    fn delete(
        tx: &DatabaseTransaction,
        org: i64,
        id: i64,
    ) -> impl Future<Output = ApiResult<bool>> + Send {
        async move {
            match Self::find(tx, org, id).await? {
                Some(row) => Self::remove(tx, row).await.map(|()| true),
                None => Ok(false),
            }
        }
    }
}

/// `/api/{name}/` and `/api/{name}/{id}/` for a resource.
pub(crate) fn routes<R: Resource>() -> Router<AppState> {
    let path = R::MODEL.path();
    Router::new()
        .route(path, not_allowed(get(list::<R>).post(create::<R>)))
        .route(
            &format!("{path}{{id}}/"),
            not_allowed(
                get(retrieve::<R>)
                    .put(replace::<R>)
                    .patch(modify::<R>)
                    .delete(destroy::<R>),
            ),
        )
}

/// DRF's 405 body for the methods a URL does not allow.
pub(crate) fn not_allowed(router: MethodRouter<AppState>) -> MethodRouter<AppState> {
    router.fallback(|method: Method| async move { ApiError::MethodNotAllowed(method) })
}

fn parse_id(raw: &str) -> ApiResult<i64> {
    raw.parse::<i64>().map_err(|_| ApiError::NotFound)
}

/// A client error found before authorization is reported only once the caller
/// is known to be valid (DRF authenticates first: a deactivated user gets 401).
async fn after_auth<T>(st: &AppState, claimed: &Claimed, r: ApiResult<T>) -> ApiResult<T> {
    if r.is_err() {
        authorize(st, claimed, None).await?;
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A list orders, searches and filters only by fields it returns: a
    /// write-only field (a password) must never be reachable through a list.
    #[test]
    fn every_listed_field_is_returned() {
        fn check<R: Resource>() {
            let names = R::filters()
                .into_iter()
                .map(|(name, _)| name)
                .chain(R::search())
                .chain(R::ordering());
            for name in names {
                assert!(
                    R::FIELDS.iter().any(|f| f.name == name && f.is_returned()),
                    "{}: `{name}` is not a returned field",
                    R::MODEL
                );
            }
            assert!(
                R::ordering().contains(&"id"),
                "{}: ties are broken by id",
                R::MODEL
            );
        }
        use crate::api::*;
        check::<departments::Departments>();
        check::<programs::Programs>();
        check::<faculty::Faculty>();
        check::<students::Students>();
        check::<users::Users>();
    }

    /// A resource's search filters on the very expression its trigram index
    /// (if it has one) was built on (migration 8's frozen copy), else PostgreSQL scans every
    /// row of the organization: searched fields taken in the order of their
    /// declaration once made every search a scan (4-9 ms instead of 0.4).
    #[test]
    fn every_search_is_the_expression_of_its_trigram_index() {
        fn check<R: Resource>() -> Option<&'static str> {
            let searched = R::search();
            if searched.is_empty() {
                return None;
            }
            let table = R::MODEL.table().expect("a searched model has a table");
            // Small tables (departments, programs) have none: a scan is cheap.
            let (_, _, columns) = crate::migration::SEARCH_INDEXES
                .iter()
                .find(|(_, t, _)| *t == table)?;
            assert_eq!(
                crate::query::search_text(table, &searched),
                crate::migration::indexed_search_text(table, columns),
                "{table}"
            );
            Some(table)
        }
        use crate::api::*;
        let checked: Vec<_> = [
            check::<departments::Departments>(),
            check::<programs::Programs>(),
            check::<faculty::Faculty>(),
            check::<students::Students>(),
            check::<users::Users>(),
        ]
        .into_iter()
        .flatten()
        .collect();
        for (_, table, _) in crate::migration::SEARCH_INDEXES {
            assert!(checked.contains(table), "{table}: indexed, never searched");
        }
    }
}
