//! The cached resource layer: the Rust counterpart of the original
//! `SmartCachedViewSet`. A [`Resource`] says how to read and write its rows; the
//! generic handlers here add authentication, tenant scope, roles, DRF semantics,
//! caching (list and detail entries under SPEC §4's keys and TTL tiers) and
//! invalidation after commit, before the 2xx is sent.

use std::future::Future;
use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::extract::{FromRequest, Path, Request, State};
use axum::http::{Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, get};
use bytes::Bytes;
use sea_orm::{DatabaseConnection, DatabaseTransaction, TransactionTrait};
use serde_json::{Map, Value};
use tierstamp::Kind;
use tierstamp_axum::CachedResponse;

use crate::auth::{Caller, Claimed};
use crate::error::{ApiError, ApiResult, FieldErrors};
use crate::fields::Field;
use crate::listing::{FilterKind, ListQuery, ParsedList, Results};
use crate::model::Model;
use crate::query::Part;
use crate::read::authorize;
use crate::server::forwarded::Origin;
use crate::state::AppState;

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

    /// The fields `?search=` looks in.
    fn search() -> Vec<&'static str> {
        Self::FIELDS
            .iter()
            .filter(|f| f.list.searchable)
            .map(|f| f.name)
            .collect()
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
pub(crate) fn routes<R: Resource>(name: &str) -> Router<AppState> {
    Router::new()
        .route(
            &format!("/api/{name}/"),
            not_allowed(get(list::<R>).post(create::<R>)),
        )
        .route(
            &format!("/api/{name}/{{id}}/"),
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

/// `scheme://host/path`, for DRF's absolute page links.
fn base_url(origin: Origin<'_>, path: &str) -> String {
    format!("{}://{}{path}", origin.scheme, origin.host)
}

/// A client error found before authorization is reported only once the caller
/// is known to be valid (DRF authenticates first: a deactivated user gets 401).
async fn after_auth<T>(st: &AppState, claimed: &Claimed, r: ApiResult<T>) -> ApiResult<T> {
    if r.is_err() {
        authorize(st, claimed, None).await?;
    }
    r
}

// Cached reads take the request itself (last) rather than `HeaderMap`, `Uri` and
// `RawQuery` extractors, which clone what they extract on every request.
async fn list<R: Resource>(
    State(st): State<AppState>,
    claimed: Claimed,
    req: Request,
) -> ApiResult<Response> {
    let (parts, _) = req.into_parts();
    let headers = &parts.headers;
    let parsed = after_auth(&st, &claimed, parsed_list::<R>(&st, &claimed, &parts)).await?;
    let page = parsed.clone();
    let state = st.clone();
    let (org, scope) = (claimed.org_id(), claimed.scope().clone());
    let lookup = st
        .authorized_read(&claimed, &parsed.key, move || async move {
            let (total, rows) = page_parts::<R>(&state, &page, &scope, org).await?;
            page.query.render(total, rows, &page.base)
        })
        .await?;
    Ok(CachedResponse::new(lookup, headers).into_response())
}

/// Most rows of a page loaded one by one when the page is put together from
/// its rows' details; with more missing, one query reads the page's rows.
const MAX_ROWS_LOADED_APART: usize = 2;

/// A page's total and rows, for its entry's loader.
///
/// A page is invalidated by every write to its model in its organization, but
/// most writes change neither which rows it holds nor their order: a PATCH of
/// one student's semester changes one row of one page. So a page is put
/// together from entries such a write leaves valid:
///
/// - the list's total, keyed by the search and the filters alone (every page,
///   size and order of one filtered list shares it) and by the fields they
///   read ([`tierstamp::KeyRequest::fields`], [`ids_fields`]);
/// - the ids of the page's rows in its order, keyed by its parameters and by
///   the fields that choose and order them: a write that adds or removes a
///   row, or changes one of those fields, moves them ([`update`] says which
///   fields a write changed);
/// - each row's detail entry (its row and what it embeds), whose body is the
///   row's representation in a list, byte for byte.
///
/// The parts are read from the shared store ([`tierstamp::Cache::prefetch_shared`]):
/// the page's entry is stored there, for every instance, under a stamp read
/// from there, and an in-process copy of a part could predate a write that
/// stamp already holds. Each part is valid when read, so the page shows every
/// write whose invalidation ran before the read, as a page read in one query
/// would; the page itself is stored only if no write moved its stamp
/// meanwhile. Missing parts are loaded and cached. When the ids were not
/// cached (a cold page, a new search), the rows are read by the list's query
/// beside the ids' and the total's; when they were, the rows come from their
/// details, missing ones loaded one by one when at most
/// [`MAX_ROWS_LOADED_APART`] miss, else by one query for the ids. A row gone
/// between the two reads: the page is read by the list's query.
async fn page_parts<R: Resource>(
    st: &AppState,
    page: &ParsedList,
    scope: &tierstamp::Scope,
    org: i64,
) -> ApiResult<(u64, Results)> {
    // The total and the rows by the list's queries, at once.
    let by_queries = || async {
        let ((total, _), (_, rows)) = tokio::try_join!(
            R::list(&st.db, org, &page.query, Part::Total),
            R::list(&st.db, org, &page.query, Part::Rows)
        )?;
        Ok::<_, ApiError>((total, rows))
    };
    if !st.cache_enabled {
        return by_queries().await;
    }
    let mut found = st
        .cache
        .prefetch_shared(&[&page.total_key, &page.ids_key])
        .await
        .into_iter();
    let (Some(total_read), Some(ids_read)) = (found.next(), found.next()) else {
        return Err(anyhow::anyhow!("the cache answered another number of keys").into());
    };
    let unrendered = |part: Part| {
        let (db, query) = (st.db.clone(), page.query.clone());
        async move {
            let (total, listed) = R::list(&db, org, &query, part).await?;
            Ok::<_, ApiError>(match part {
                Part::Total => Bytes::from(total.to_string()),
                _ => Bytes::from(listed.into_bytes()),
            })
        }
    };
    let total =
        st.cache
            .try_get_with_prefetched(&page.total_key, total_read, unrendered(Part::Total));
    let by_ids = ids_read.is_hit();
    let ids = st
        .cache
        .try_get_with_prefetched(&page.ids_key, ids_read, unrendered(Part::Ids));
    let parsed = |total: tierstamp::Lookup, ids: Option<tierstamp::Lookup>| {
        // Only totals and ids are ever stored under these keys.
        let total = std::str::from_utf8(&total.body)
            .ok()
            .and_then(|s| s.parse::<u64>().ok());
        let ids = ids.map(|ids| serde_json::from_slice::<Vec<i64>>(&ids.body).ok());
        (total, ids)
    };
    if !by_ids {
        // The ids were not cached: a page no write has left standing (a cold
        // one, another search), whose rows' details are unlikely to be
        // cached either. Its rows are read by the list's query, beside the
        // ids' own (cheaper) query, which caches them for the next time.
        let (total, ids, rows) =
            tokio::join!(total, ids, R::list(&st.db, org, &page.query, Part::Rows));
        let _ = ids.map_err(ApiError::from_cache)?;
        let (_, rows) = rows?;
        return match parsed(total.map_err(ApiError::from_cache)?, None).0 {
            Some(total) => Ok((total, rows)),
            None => Ok((
                R::list(&st.db, org, &page.query, Part::Total).await?.0,
                rows,
            )),
        };
    }
    let (total, ids) = tokio::try_join!(total, ids).map_err(ApiError::from_cache)?;
    let (Some(total), Some(Some(ids))) = parsed(total, Some(ids)) else {
        // Anything else stored under those keys: the list is read by queries.
        return by_queries().await;
    };
    Ok((total, rows::<R>(st, page, scope, org, ids).await?))
}

/// The rows `ids` of a page, from their details ([`page_parts`]).
async fn rows<R: Resource>(
    st: &AppState,
    page: &ParsedList,
    scope: &tierstamp::Scope,
    org: i64,
    ids: Vec<i64>,
) -> ApiResult<Results> {
    if ids.is_empty() {
        return Ok(Results::joined([]));
    }
    let keys = ids
        .iter()
        .map(|id| detail_key::<R>(st, scope, *id))
        .collect::<ApiResult<Vec<_>>>()?;
    let prefetched = st
        .cache
        .prefetch_shared(&keys.iter().collect::<Vec<_>>())
        .await;
    let missing = prefetched.iter().filter(|p| !p.is_hit()).count();
    let in_one_query = |ids: Option<Vec<i64>>| async move {
        let mut query = page.query.clone();
        query.only_ids = ids;
        Ok::<_, ApiError>(R::list(&st.db, org, &query, Part::Rows).await?.1)
    };
    if missing > MAX_ROWS_LOADED_APART {
        let rows = in_one_query(Some(ids.clone())).await?;
        remember_rows(
            st,
            rows.as_bytes(),
            ids.into_iter().zip(keys).zip(prefetched),
        );
        return Ok(rows);
    }
    let reads = keys
        .iter()
        .zip(prefetched)
        .zip(&ids)
        .map(|((key, pre), &id)| {
            st.cache
                .try_get_with_prefetched(key, pre, detail_loader::<R>(st.db.clone(), org, id)())
        });
    let mut bodies = Vec::with_capacity(ids.len());
    for read in futures::future::join_all(reads).await {
        match read {
            Ok(found) => bodies.push(found.body),
            // Deleted since its id was read: the page has changed.
            Err(_) => return in_one_query(None).await,
        }
    }
    Ok(Results::joined(bodies.iter().map(|b| &b[..])))
}

/// Caches the rows of `page` (the serialized rows of a page, each the very
/// bytes of its detail) whose details `read` (id, key, what the read before
/// the page's query found) found missing, so that the page
/// can be put together from them after the next write. In a task of its own:
/// the response does not wait for it. Each is stored only if its row's
/// counters are still those read before the page's query
/// ([`tierstamp::Cache::set_if_unchanged`]), and matched to its key by its
/// `id`, never by its position.
fn remember_rows(
    st: &AppState,
    page: &[u8],
    read: impl Iterator<Item = ((i64, tierstamp::CacheKey), tierstamp::Prefetched)>,
) {
    #[derive(serde::Deserialize)]
    struct Id {
        id: i64,
    }
    let Ok(rows) = serde_json::from_slice::<Vec<&serde_json::value::RawValue>>(page) else {
        return;
    };
    let mut bodies: std::collections::HashMap<i64, Bytes> = rows
        .iter()
        .filter_map(|raw| {
            let id = serde_json::from_str::<Id>(raw.get()).ok()?.id;
            Some((id, Bytes::copy_from_slice(raw.get().as_bytes())))
        })
        .collect();
    let wanted: Vec<_> = read
        .filter(|(_, read)| !read.is_hit())
        .filter_map(|((id, key), read)| Some((key, read, bodies.remove(&id)?)))
        .collect();
    if wanted.is_empty() {
        return;
    }
    let cache = st.cache.clone();
    tokio::spawn(async move {
        let puts = wanted
            .iter()
            .map(|(key, read, body)| cache.set_if_unchanged(key, read, body.clone()));
        futures::future::join_all(puts).await;
    });
}

/// The fields that choose and order a list's rows: its ordering (`ordered`),
/// its filters and, when it searches, the searched fields. Each is the name of
/// one of the resource's fields (a test holds every declaration to that), the
/// name a write reports it changed under ([`changed_fields`]).
fn ids_fields<R: Resource>(q: &ListQuery, ordered: bool) -> Vec<&'static str> {
    let mut fields: Vec<&'static str> = q.filters.iter().map(|(name, _)| *name).collect();
    if ordered {
        fields.extend(q.ordering.iter().map(|(name, _)| *name));
    }
    if !q.search.is_empty() {
        fields.extend(R::search());
    }
    fields
}

/// The fields a write through the API may change in an existing row: those
/// its body names and those the server sets itself (`updated_at`); `None`
/// when that is not known (a PUT, which may reset optional fields, or a body
/// with a key the resource does not declare), and the write then counts as
/// changing every field.
fn changed_fields<R: Resource>(
    input: &Map<String, Value>,
    partial: bool,
) -> Option<Vec<&'static str>> {
    if !partial {
        return None;
    }
    let mut fields = Vec::with_capacity(input.len() + 2);
    for key in input.keys() {
        fields.push(crate::fields::find(R::FIELDS, key)?.name);
    }
    // A primary key never changes; the other read-only fields may be set by
    // the server on any write.
    fields.extend(
        R::FIELDS
            .iter()
            .filter(|f| !f.is_writable() && !matches!(f.ty, crate::fields::Type::Id))
            .map(|f| f.name),
    );
    Some(fields)
}

/// The key of row `id`'s detail.
fn detail_key<R: Resource>(
    st: &AppState,
    scope: &tierstamp::Scope,
    id: i64,
) -> ApiResult<tierstamp::CacheKey> {
    Ok(st
        .cache
        .key(Kind::Detail, R::MODEL.name(), scope)
        .row(id)
        .build()
        .map_err(anyhow::Error::new)?)
}

/// Reads row `id`'s detail body; `NotFound` if it is not in `org`.
fn detail_loader<R: Resource>(
    db: DatabaseConnection,
    org: i64,
    id: i64,
) -> impl FnOnce() -> futures::future::BoxFuture<'static, ApiResult<Bytes>> + Send + 'static {
    move || {
        Box::pin(async move {
            let row = R::retrieve(&db, org, id).await?.ok_or(ApiError::NotFound)?;
            Ok(Bytes::from(
                serde_json::to_vec(&row).map_err(anyhow::Error::new)?,
            ))
        })
    }
}

const MAX_MEMO_KEY: usize = 1024;

/// The parsed request, from the memo ([`ListMemo`]) when it was parsed before.
fn parsed_list<R: Resource>(
    st: &AppState,
    claimed: &Claimed,
    parts: &axum::http::request::Parts,
) -> ApiResult<Arc<ParsedList>> {
    let uri = &parts.uri;
    let raw = uri.query().unwrap_or("");
    let origin = st.limits.trusted_proxies.origin(parts);
    let scope = claimed.scope().name();
    // No input contains 0xFF (all are UTF-8), so the parts cannot run into
    // each other; the query, the only part of any length, comes last.
    let mut id = Vec::with_capacity(
        R::MODEL.name().len()
            + scope.len()
            + origin.scheme.len()
            + origin.host.len()
            + uri.path().len()
            + raw.len()
            + 5,
    );
    for part in [
        R::MODEL.name(),
        scope,
        origin.scheme,
        origin.host,
        uri.path(),
    ] {
        id.extend_from_slice(part.as_bytes());
        id.push(0xFF);
    }
    id.extend_from_slice(raw.as_bytes());
    if let Some(found) = st.lists.get(&id) {
        return Ok(found);
    }
    let query = ListQuery::parse(uri.query(), &R::filters(), &R::ordering())?;
    let base = base_url(origin, uri.path());
    let key = st
        .cache
        .key(Kind::List, R::MODEL.name(), claimed.scope())
        .params(query.params())
        .param("base", &base)
        .build()
        .map_err(anyhow::Error::new)?;
    let total_key = st
        .cache
        .key(Kind::Count, R::MODEL.name(), claimed.scope())
        .params(query.total_params())
        .fields(ids_fields::<R>(&query, false))
        .build()
        .map_err(anyhow::Error::new)?;
    // No client parameter is named `part` (only declared filters are kept).
    let ids_key = st
        .cache
        .key(Kind::List, R::MODEL.name(), claimed.scope())
        .params(query.params())
        .param("part", "ids")
        .fields(ids_fields::<R>(&query, true))
        .build()
        .map_err(anyhow::Error::new)?;
    let parsed = Arc::new(ParsedList {
        query,
        base,
        key,
        total_key,
        ids_key,
    });
    if id.len() <= MAX_MEMO_KEY {
        st.lists.insert(id.into_boxed_slice(), parsed.clone());
    }
    Ok(parsed)
}

async fn retrieve<R: Resource>(
    State(st): State<AppState>,
    claimed: Claimed,
    Path(id): Path<String>,
    req: Request,
) -> ApiResult<Response> {
    let headers = req.into_parts().0.headers;
    let id = after_auth(&st, &claimed, parse_id(&id)).await?;
    let key = detail_key::<R>(&st, claimed.scope(), id)?;
    let lookup = st
        .authorized_read(
            &claimed,
            &key,
            detail_loader::<R>(st.db.clone(), claimed.org_id(), id),
        )
        .await?;
    Ok(CachedResponse::new(lookup, &headers).into_response())
}

/// A write in progress: its database transaction, the cache effects it will
/// apply once committed, and its row in the outbox ([`crate::outbox`]).
struct Write {
    tx: DatabaseTransaction,
    effects: tierstamp::Transaction,
    outbox: i64,
}

/// Starts a write: checks the role, opens a database transaction and an
/// on-commit buffer with the target row's invalidation queued, and records that
/// invalidation in the outbox inside the transaction. Dropping the [`Write`]
/// (any error before [`finish`]) rolls back and invalidates nothing.
///
/// `target` is the row an update (with its body) or a delete is aimed at, for
/// [`Resource::guard`]; `None` for a create.
async fn begin<R: Resource>(
    st: &AppState,
    caller: &Caller,
    target: Option<(i64, Option<&Map<String, Value>>)>,
) -> ApiResult<Write> {
    caller.require_write(R::MODEL)?;
    if let Some((id, input)) = target {
        R::guard(caller, id, input)?;
    }
    let tx = begin_write(&st.db).await?;
    if sea_orm::ConnectionTrait::get_database_backend(&tx) == sea_orm::DatabaseBackend::Postgres {
        // This write invalidates through its own task and the outbox: the change
        // triggers (migration 9) need not tell the listener about it again.
        sea_orm::ConnectionTrait::execute_unprepared(&tx, "SET LOCAL campus.origin = 'api'")
            .await?;
    }
    let outbox = crate::outbox::record(&tx, R::MODEL, caller.org_id).await?;
    let mut effects = st.cache.transaction();
    // The model's lists and the target's detail; through the dependency graph
    // also everything that embeds the model. A create's row is queued once it
    // has an id ([`create`]), an update's once its fields are known ([`update`]).
    if let Some((id, None)) = target {
        effects.invalidate_row(R::MODEL.name(), id, &caller.scope);
    }
    Ok(Write {
        tx,
        effects,
        outbox,
    })
}

/// Opens a write transaction. On SQLite it takes the write lock at `BEGIN
/// IMMEDIATE`: a deferred transaction reads first (the row, the uniqueness
/// checks) and asks for the lock at its first write, and if another writer
/// committed in between SQLite cannot upgrade it and answers `database is
/// locked` at once, without waiting out the busy timeout; two concurrent writes
/// made one of them a 500 (found by `tests/api/fuzz.rs`). Waiting for the lock at
/// `BEGIN` queues writers instead, as the busy timeout intends.
pub(crate) async fn begin_write(db: &DatabaseConnection) -> ApiResult<DatabaseTransaction> {
    let options = match sea_orm::ConnectionTrait::get_database_backend(db) {
        sea_orm::DatabaseBackend::Sqlite => sea_orm::TransactionOptions {
            sqlite_transaction_mode: Some(sea_orm::SqliteTransactionMode::Immediate),
            ..Default::default()
        },
        _ => sea_orm::TransactionOptions::default(),
    };
    Ok(db.begin_with_options(options).await?)
}

/// Rolls a failed write back at once. Dropping the transaction would only queue
/// the rollback until its connection is next used, and on SQLite the write lock it
/// holds until then makes the next writer fail with `database is locked`.
async fn settle<T>(w: Write, result: ApiResult<T>) -> ApiResult<(Write, T)> {
    match result {
        Ok(v) => Ok((w, v)),
        Err(e) => {
            let _ = w.tx.rollback().await;
            Err(e)
        }
    }
}

/// Commits, then invalidates, before the response is sent (read-your-writes).
/// `cause` is what the cache dashboard lists beside the invalidation.
///
/// Everything from the `COMMIT` on runs in a task of its own: the request
/// future may be dropped at any await here (a client gone during a slow
/// `COMMIT`), and a committed write's invalidation must still happen (see
/// [`crate::outbox`] for a process that dies).
async fn finish<R: Resource>(
    st: &AppState,
    caller: &Caller,
    cause: String,
    w: Write,
) -> ApiResult<()> {
    let Write {
        tx,
        effects,
        outbox,
    } = w;
    let db_commit = async move {
        let committed = tx.commit().await;
        if committed.is_ok() && crate::outbox::abort_after_commit() {
            std::process::exit(70);
        }
        committed
    };
    let (st, org, user) = (st.clone(), caller.org_id, caller.user_id);
    let (reply, answer) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let (committed, delivered) = effects.commit_after(db_commit).await;
        if !delivered {
            crate::changes::notify_undelivered(&st, R::MODEL, org).await;
        }
        let ok = committed.is_ok();
        if ok {
            st.activity
                .invalidated(org, R::MODEL, format!("{cause} by user {user}"));
        }
        let _ = reply.send(committed);
        if ok && delivered {
            crate::outbox::done(&st, outbox).await;
        }
    });
    match answer.await {
        Ok(committed) => Ok(committed?),
        Err(_) => Err(anyhow::anyhow!("the write's commit task ended without an answer").into()),
    }
}

async fn create<R: Resource>(
    State(st): State<AppState>,
    caller: Caller,
    JsonObject(input): JsonObject,
) -> ApiResult<Response> {
    let w = begin::<R>(&st, &caller, None).await?;
    let result = R::create(&w.tx, caller.org_id, &input).await;
    let (mut w, value) = settle(w, result).await?;
    // Ids are never reused (AUTOINCREMENT, sequences); moving the new row's
    // counter too costs nothing and keeps that assumption out of the cache.
    match value["id"].as_i64() {
        Some(id) => w.effects.invalidate_row(R::MODEL.name(), id, &caller.scope),
        None => w.effects.invalidate(R::MODEL.name(), &caller.scope),
    }
    let cause = format!("create {} #{}", R::MODEL, value["id"]);
    finish::<R>(&st, &caller, cause, w).await?;
    Ok((StatusCode::CREATED, Json(value)).into_response())
}

async fn update<R: Resource>(
    st: AppState,
    caller: Caller,
    id: String,
    input: Map<String, Value>,
    partial: bool,
) -> ApiResult<Response> {
    let id = parse_id(&id)?;
    let w = begin::<R>(&st, &caller, Some((id, Some(&input)))).await?;
    let result = R::update(&w.tx, caller.org_id, id, &input, partial).await;
    let (mut w, value) = settle(w, result.and_then(|v| v.ok_or(ApiError::NotFound))).await?;
    match changed_fields::<R>(&input, partial) {
        Some(fields) => w
            .effects
            .invalidate_fields(R::MODEL.name(), id, &fields, &caller.scope),
        None => w.effects.invalidate_row(R::MODEL.name(), id, &caller.scope),
    }
    let verb = if partial { "patch" } else { "update" };
    let cause = format!("{verb} {} #{id}", R::MODEL);
    finish::<R>(&st, &caller, cause, w).await?;
    Ok(Json(value).into_response())
}

async fn replace<R: Resource>(
    State(st): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    JsonObject(input): JsonObject,
) -> ApiResult<Response> {
    update::<R>(st, caller, id, input, false).await
}

async fn modify<R: Resource>(
    State(st): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    JsonObject(input): JsonObject,
) -> ApiResult<Response> {
    update::<R>(st, caller, id, input, true).await
}

async fn destroy<R: Resource>(
    State(st): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let id = parse_id(&id)?;
    let w = begin::<R>(&st, &caller, Some((id, None))).await?;
    let found = R::delete(&w.tx, caller.org_id, id).await;
    let (w, ()) = settle(
        w,
        found.and_then(|f| if f { Ok(()) } else { Err(ApiError::NotFound) }),
    )
    .await?;
    let cause = format!("delete {} #{id}", R::MODEL);
    finish::<R>(&st, &caller, cause, w).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// A JSON object body, with DRF's errors for anything else.
pub(crate) struct JsonObject(pub Map<String, Value>);

impl<S: Send + Sync> FromRequest<S> for JsonObject {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let is_json = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|v| {
                v.split(';')
                    .next()
                    .unwrap_or("")
                    .trim()
                    .eq_ignore_ascii_case("application/json")
            })
            .unwrap_or(false);
        if !is_json {
            return Err(ApiError::UnsupportedMediaType);
        }
        let bytes = Bytes::from_request(req, state)
            .await
            .map_err(|_| ApiError::PayloadTooLarge)?;
        let value: Value = serde_json::from_slice(&bytes)
            .map_err(|e| ApiError::BadRequest(format!("JSON parse error - {e}")))?;
        match value {
            Value::Object(map) => Ok(JsonObject(map)),
            other => {
                let kind = match other {
                    Value::Array(_) => "list",
                    Value::String(_) => "str",
                    Value::Number(_) => "int",
                    Value::Bool(_) => "bool",
                    _ => "NoneType",
                };
                let mut e = FieldErrors::new();
                e.insert(
                    "non_field_errors".into(),
                    vec![format!(
                        "Invalid data. Expected a dictionary, but got {kind}."
                    )],
                );
                Err(ApiError::Validation(e))
            }
        }
    }
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

    #[test]
    fn a_patch_changes_what_it_names_and_what_the_server_sets() {
        use crate::api::students::Students;
        let body = |v: Value| v.as_object().unwrap().clone();
        let patch = changed_fields::<Students>(
            &body(serde_json::json!({"semester": 3, "department_id": 2})),
            true,
        );
        assert_eq!(
            patch.unwrap(),
            ["semester", "department", "created_at", "updated_at"]
        );
        // Unknown keys and PUTs: every field may have changed.
        assert_eq!(
            changed_fields::<Students>(&body(serde_json::json!({"nickname": "x"})), true),
            None
        );
        assert_eq!(
            changed_fields::<Students>(&body(serde_json::json!({"semester": 3})), false),
            None
        );
    }
}
