//! List reads: the request parsed once and memoised with its keys, and each page
//! put together from cached parts (total, ids, row details) that a write moves
//! only when it changes them; a page never shows less than a query would.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use tierstamp::{Derivation, Kind};
use tierstamp_axum::CachedResponse;

use super::detail::{detail_key, detail_loader};
use super::{Resource, after_auth};
use crate::auth::Claimed;
use crate::error::{ApiError, ApiResult};
use crate::listing::{ListQuery, ParsedList, Results};
use crate::query::Part;
use crate::server::forwarded::Origin;
use crate::state::AppState;

/// `scheme://host/path`, for DRF's absolute page links.
fn base_url(origin: Origin<'_>, path: &str) -> String {
    format!("{}://{}{path}", origin.scheme, origin.host)
}

// Cached reads take the request itself (last) rather than `HeaderMap`, `Uri` and
// `RawQuery` extractors, which clone what they extract on every request.
pub(super) async fn list<R: Resource>(
    State(st): State<AppState>,
    claimed: Claimed,
    req: Request,
) -> ApiResult<Response> {
    let (parts, _) = req.into_parts();
    let headers = &parts.headers;
    let parsed = after_auth(&st, &claimed, parsed_list::<R>(&st, &claimed, &parts)).await?;
    if let Some(lookup) = st.derived_read(&claimed, &parsed.key).await? {
        return Ok(CachedResponse::new(lookup, headers).into_response());
    }
    let page = parsed.clone();
    let state = st.clone();
    let (org, scope) = (claimed.org_id(), claimed.scope().clone());
    let parts = [&parsed.total_key, &parsed.ids_key];
    let lookup = st
        .authorized_read_parts(&claimed, &parsed.key, &parts, move |read| async move {
            let (total, rows, from) = page_parts::<R>(&state, &page, &scope, org, read).await?;
            let body = page.query.render(total, rows, &page.base)?;
            if let Some(from) = from {
                state.cache.remember_derived(&page.key, from, body.clone());
            }
            Ok(body)
        })
        .await?;
    Ok(CachedResponse::new(lookup, headers).into_response())
}

/// Most rows of a page loaded one by one when the page is put together from
/// its rows' details; with more missing, one query reads the page's rows.
const MAX_ROWS_LOADED_APART: usize = 2;

/// A page's total and rows, for its entry's loader, and what they were read
/// from when that was their parts' entries.
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
///   row, or changes one of those fields, moves them
///   (`write::update` says which fields a write changed);
/// - each row's detail entry (its row and what it embeds), whose body is the
///   row's representation in a list, byte for byte.
///
/// The total and ids (`parts`) are read from the shared store, with the
/// page's lease and at its stamp ([`tierstamp::Cache::try_get_with_parts`];
/// one round trip on Redis): the page's entry is stored there, for every
/// instance, under a stamp read from there, and an in-process copy of a part
/// could predate a write that stamp already holds; the rows' details are read
/// from there after ([`tierstamp::Cache::prefetch_shared`]). Each part is
/// valid when read, so the page shows every
/// write whose invalidation ran before the read, as a page read in one query
/// would; the page itself is stored only if no write moved its stamp
/// meanwhile. Missing parts are loaded and cached. When the ids were not
/// cached (a cold page, a new search), the rows are read by the list's query
/// beside the total, and the ids taken from them (a deep page of a list
/// ordered by `id` read from its anchor, `anchored`); when they were, the rows come from their
/// details, missing ones loaded one by one when at most
/// [`MAX_ROWS_LOADED_APART`] miss, else by one query for the ids. A row gone
/// between the two reads: the page is read by the list's query.
///
/// A page whose ids were cached is also kept in this process as an entry
/// derived from its parts ([`tierstamp::Cache::remember_derived`]): a write
/// to a row of another page leaves it valid, where the page's own entry
/// (invalidated by every write to its model) is not.
async fn page_parts<R: Resource>(
    st: &AppState,
    page: &ParsedList,
    scope: &tierstamp::Scope,
    org: i64,
    parts: Vec<tierstamp::Prefetched>,
) -> ApiResult<(u64, Results, Option<Derivation>)> {
    // The total and the rows by the list's queries, at once.
    let by_queries = || async {
        let ((total, _), (_, rows)) = tokio::try_join!(
            R::list(&st.db, org, &page.query, Part::Total),
            R::list(&st.db, org, &page.query, Part::Rows)
        )?;
        Ok::<_, ApiError>((total, rows))
    };
    if !st.cache_enabled {
        let (total, rows) = by_queries().await?;
        return Ok((total, rows, None));
    }
    // Read with the page's lease, at the stamp the page is stored under.
    let mut found = parts.into_iter();
    let (Some(total_read), Some(ids_read)) = (found.next(), found.next()) else {
        return Err(anyhow::anyhow!("the cache answered another number of keys").into());
    };
    let unrendered = |part: Part| {
        let (db, query) = (st.db.clone(), page.query.clone());
        async move {
            let (total, listed) = R::list(&db, org, &query, part).await?;
            Ok::<_, ApiError>(match part {
                Part::Total => Bytes::from(total.to_string()),
                _ => listed.to_bytes(),
            })
        }
    };
    let mut from = Derivation::default();
    from.add(&page.total_key, &total_read);
    from.add(&page.ids_key, &ids_read);
    let total =
        st.cache
            .try_get_with_prefetched(&page.total_key, total_read, unrendered(Part::Total));
    let parsed_total = |total: tierstamp::Lookup| {
        // Only totals are ever stored under this key.
        std::str::from_utf8(&total.body)
            .ok()
            .and_then(|s| s.parse::<u64>().ok())
    };
    if !ids_read.is_hit() {
        // The ids were not cached: a page no write has left standing (a cold
        // one, another search), whose rows' details are unlikely to be
        // cached either. Its rows are read by the list's query, and its ids
        // are taken from them and cached for the next time, in the
        // background, under the stamp read before the query (not by a query
        // and a lease of their own: the page's lease already makes this the
        // one load of the page).
        // A deep page of a list ordered by `id` alone starts from the list's
        // anchors, read only here (a cold deep page is the one that needs them).
        let (anchored, anchors_missed) = match page.anchors_key.as_ref() {
            Some(key) => anchored(st, &page.query, key, unrendered(Part::Anchors)).await,
            None => (None, None),
        };
        let query = anchored.as_ref().unwrap_or(&page.query);
        let (total, rows) = tokio::join!(total, R::list(&st.db, org, query, Part::Rows));
        let (_, rows) = rows?;
        // Loaded for the next deep page, unless this one is past the end.
        if let Some((key, read)) = anchors_missed
            && rows.as_bytes() != b"[]"
        {
            let (cache, load) = (st.cache.clone(), unrendered(Part::Anchors));
            tokio::spawn(async move {
                let _ = cache.try_get_with_prefetched(&key, read, load).await;
            });
        }
        if ids_read.is_answered() {
            remember_ids(st, page.ids_key.clone(), ids_read, rows.to_bytes());
        }
        let total = match parsed_total(total?) {
            Some(total) => total,
            None => R::list(&st.db, org, &page.query, Part::Total).await?.0,
        };
        return Ok((total, rows, None));
    }
    let ids = st
        .cache
        .try_get_with_prefetched(&page.ids_key, ids_read, unrendered(Part::Ids));
    let parsed = |total: tierstamp::Lookup, ids: tierstamp::Lookup| {
        // Only ids are ever stored under this key.
        let ids = serde_json::from_slice::<Vec<i64>>(&ids.body).ok();
        (parsed_total(total), ids)
    };
    let (total, ids) = tokio::try_join!(total, ids)?;
    let (Some(total), Some(ids)) = parsed(total, ids) else {
        // Anything else stored under those keys: the list is read by queries.
        let (total, rows) = by_queries().await?;
        return Ok((total, rows, None));
    };
    let (rows, from) = rows::<R>(st, page, scope, org, ids, from).await?;
    Ok((total, rows, from))
}

/// The rows `ids` of a page, from their details ([`page_parts`]), and `from`
/// with their reads added (`None` when the page was read again by its query).
async fn rows<R: Resource>(
    st: &AppState,
    page: &ParsedList,
    scope: &tierstamp::Scope,
    org: i64,
    ids: Vec<i64>,
    mut from: Derivation,
) -> ApiResult<(Results, Option<Derivation>)> {
    if ids.is_empty() {
        return Ok((Results::joined([]), Some(from)));
    }
    let keys = ids
        .iter()
        .map(|id| detail_key::<R>(st, scope, *id))
        .collect::<ApiResult<Vec<_>>>()?;
    let prefetched = st
        .cache
        .prefetch_shared(&keys.iter().collect::<Vec<_>>())
        .await;
    for (key, read) in keys.iter().zip(&prefetched) {
        from.add(key, read);
    }
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
        return Ok((rows, Some(from)));
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
            Err(_) => return Ok((in_one_query(None).await?, None)),
        }
    }
    Ok((Results::joined(bodies.iter().map(|b| &b[..])), Some(from)))
}

/// A serialized row, read for its `id` alone (every representation has one).
#[derive(serde::Deserialize)]
struct Id {
    id: i64,
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

/// `query` read from its anchor ([`ListQuery::anchor_in`]) when the list's
/// anchors (`key`) are cached; when the store answered that they are not,
/// their key and read, for the caller to load them once it knows the page
/// exists. While the store is unavailable, neither: a load could not be kept.
async fn anchored(
    st: &AppState,
    query: &ListQuery,
    key: &tierstamp::CacheKey,
    load: impl Future<Output = ApiResult<Bytes>> + Send + 'static,
) -> (
    Option<ListQuery>,
    Option<(tierstamp::CacheKey, tierstamp::Prefetched)>,
) {
    let Some(read) = st.cache.prefetch_shared(&[key]).await.pop() else {
        return (None, None);
    };
    if !read.is_hit() {
        let missed = read.is_answered().then(|| (key.clone(), read));
        return (None, missed);
    }
    // Not run for a hit, but for its refresh once it is past its freshness.
    let Ok(found) = st.cache.try_get_with_prefetched(key, read, load).await else {
        return (None, None);
    };
    // Only anchors are ever stored under this key.
    let anchor = serde_json::from_slice::<Vec<i64>>(&found.body)
        .ok()
        .and_then(|anchors| query.anchor_in(&anchors));
    let anchored = anchor.map(|anchor| {
        let mut query = query.clone();
        query.anchor = Some(anchor);
        query
    });
    (anchored, None)
}

/// Caches the ids of a page's `rows` (its serialized rows, read by the list's
/// query) under `key`, if its counters are still those of `read`, the read
/// of `key` before that query ([`tierstamp::Cache::set_if_unchanged`]). In a
/// task of its own: the response does not wait for it.
fn remember_ids(st: &AppState, key: tierstamp::CacheKey, read: tierstamp::Prefetched, rows: Bytes) {
    let cache = st.cache.clone();
    tokio::spawn(async move {
        let Ok(rows) = serde_json::from_slice::<Vec<Id>>(&rows) else {
            return;
        };
        let ids: Vec<i64> = rows.into_iter().map(|Id { id }| id).collect();
        let Ok(body) = serde_json::to_vec(&ids) else {
            return;
        };
        cache.set_if_unchanged(&key, &read, Bytes::from(body)).await;
    });
}

/// The fields that choose and order a list's rows: its ordering (`ordered`),
/// its filters and, when it searches, the searched fields. Each is the name of
/// one of the resource's fields (a test holds every declaration to that), the
/// name a write reports it changed under
/// (`write::changed_fields`).
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

const MAX_MEMO_KEY: usize = 1024;

/// The parsed request, from the memo ([`ListMemo`](crate::listing::ListMemo)) when it was parsed before.
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
    if let Some(found) = st.lists.get(id.as_slice()) {
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
    // A list's anchors must move whenever its ids do: one list of
    // dependencies for both.
    let ids_depend_on = ids_fields::<R>(&query, true);
    let ids_key = st
        .cache
        .key(Kind::List, R::MODEL.name(), claimed.scope())
        .params(query.params())
        .param("part", "ids")
        .fields(ids_depend_on.iter().copied())
        .build()
        .map_err(anyhow::Error::new)?;
    let anchors_key = if query.starts_from_anchor() {
        Some(
            st.cache
                .key(Kind::List, R::MODEL.name(), claimed.scope())
                .params(query.order_params())
                .param("part", "anchors")
                .fields(ids_depend_on.iter().copied())
                .build()
                .map_err(anyhow::Error::new)?,
        )
    } else {
        None
    };
    let parsed = Arc::new(ParsedList {
        query,
        base,
        key,
        total_key,
        ids_key,
        anchors_key,
    });
    if id.len() <= MAX_MEMO_KEY {
        st.lists.insert(id.into_boxed_slice(), parsed.clone());
    }
    Ok(parsed)
}
