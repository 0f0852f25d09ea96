//! Query building shared by the resources: scoped selects, DRF search (every term
//! must match one of the searched fields, case-insensitively, `%`/`_` literal),
//! ordering with an `id` tie-breaker, and one page of rows plus the total.

use sea_orm::sea_query::QueryStatementBuilder as _;
use sea_orm::sea_query::{Expr, ExprTrait, LikeExpr};
use sea_orm::{
    ColumnTrait, Condition, ConnectionTrait, DatabaseConnection, DbBackend, EntityTrait,
    FromQueryResult, IdenStatic, Order, QueryFilter, QueryOrder, QuerySelect, QueryTrait, Select,
    Statement,
};

use crate::error::ApiResult;
use crate::fields::Field;
use crate::listing::{FilterValue, ListQuery, Results};

/// Escapes LIKE's wildcards so a search for `50%` means the characters.
fn like_pattern(term: &str) -> String {
    let mut p = String::with_capacity(term.len() + 2);
    p.push('%');
    for c in term.chars() {
        if matches!(c, '%' | '_' | '\\') {
            p.push('\\');
        }
        p.push(c);
    }
    p.push('%');
    p
}

/// The text DRF search looks in: the searched columns, lower-cased and joined by
/// spaces. Written out as SQL (not built from sea-query expressions, which would
/// bind the `' '` as a parameter) so it is the very expression the PostgreSQL
/// trigram index is built on (`migration::m2026_11_27_000008`).
pub fn search_text(table: &str, columns: &[&str]) -> String {
    let joined = columns
        .iter()
        .map(|c| format!("\"{table}\".\"{c}\""))
        .collect::<Vec<_>>()
        .join(" || ' ' || ");
    format!("lower({joined})")
}

/// Every term must occur, case-insensitively, in one of `columns`. A term never
/// contains whitespace (the query splits on it), so it occurs in one of the
/// columns exactly when it occurs in their space-joined text.
pub fn search<E: EntityTrait>(
    select: Select<E>,
    terms: &[String],
    columns: &[E::Column],
) -> Select<E> {
    if terms.is_empty() || columns.is_empty() {
        return select;
    }
    let names: Vec<&str> = columns.iter().map(|c| c.as_str()).collect();
    let text = search_text(E::default().table_name(), &names);
    let mut all = Condition::all();
    for term in terms {
        all =
            all.add(Expr::cust(text.clone()).like(LikeExpr::new(like_pattern(term)).escape('\\')));
    }
    select.filter(all)
}

/// The request's filters on the resource's own columns: each declared
/// filterable field but the related ones (filtered by the related row's code,
/// which the resource joins itself), matched exactly on the column of its name.
pub(crate) fn filter_columns<E: EntityTrait>(
    mut select: Select<E>,
    q: &ListQuery,
    fields: &[Field],
) -> Select<E> {
    for (name, value) in &q.filters {
        let related = crate::fields::find(fields, name)
            .is_some_and(|f| matches!(f.ty, crate::fields::Type::Related { .. }));
        if related {
            continue;
        }
        let column = column_of::<E>(name);
        select = match value {
            FilterValue::Text(v) => select.filter(column.eq(v.as_str())),
            FilterValue::Int(n) => select.filter(column.eq(*n)),
            FilterValue::Bool(b) => select.filter(column.eq(*b)),
        };
    }
    select
}

/// [`search`] over the columns a resource declares by name (its `SEARCH`, also
/// what the OpenAPI document lists).
pub fn search_fields<E: EntityTrait>(
    select: Select<E>,
    terms: &[String],
    fields: &[&str],
) -> Select<E> {
    let columns: Vec<E::Column> = fields.iter().map(|f| column_of::<E>(f)).collect();
    search(select, terms, &columns)
}

/// The column of a declared field: the name of every field a list orders by or
/// searches ([`crate::fields::Listed`]) is its column's name, so the name is the one
/// declaration and the column follows from it. A name that is not a column is a
/// programming error, caught by the tests that walk every declared field.
fn column_of<E: EntityTrait>(field: &str) -> E::Column {
    <E::Column as std::str::FromStr>::from_str(field)
        .unwrap_or_else(|_| panic!("declared field `{field}` is not a column"))
}

/// Orders by the requested fields, then by `id` ascending unless the ordering
/// already holds `id` ([`ListQuery::parse`] ends the ordering at `id`, since
/// `id` is unique and nothing after it can change the order).
pub fn order<E: EntityTrait>(mut select: Select<E>, q: &ListQuery, id: E::Column) -> Select<E> {
    let mut has_id = false;
    for (field, desc) in &q.ordering {
        let c = column_of::<E>(field);
        has_id |= c.as_str() == id.as_str();
        select = select.order_by(c, if *desc { Order::Desc } else { Order::Asc });
    }
    if !has_id {
        select = select.order_by(id, Order::Asc);
    }
    select
}

/// What [`page`] reads: a list's total or one page of its rows. The two are
/// read apart, at once, since the total is cached apart from the pages
/// (`resource::list::page_parts`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    /// The total alone (no rows).
    Total,
    /// The page's rows alone (the total returned is 0).
    Rows,
    /// The ids of the page's rows, in its order, as a JSON array ([`unrendered`]).
    Ids,
    /// The list's anchors ([`crate::listing::ANCHOR_EVERY`]), as a JSON array
    /// of ids ([`unrendered`]); only for a list ordered by `id` alone.
    Anchors,
}

/// The total, or one page in the list's order ([`order`]), of a filtered,
/// unordered select.
///
/// - The total counts ids, without the ordering: counting the ordered,
///   all-column select made PostgreSQL walk the ordering index and fetch every
///   matching row from the heap. With `(organization_id, id)` indexed
///   (migration 13) it is an index-only scan.
/// - A page near the start (not [`ListQuery::is_deep`]) is read by the list's select
///   itself, `ORDER BY <order> LIMIT <size> OFFSET <offset>`: one walk of the
///   ordering index, reading each row once.
/// - A deeper page is found by ids first (a deferred join):
///   `SELECT t.* FROM t JOIN (SELECT t.id FROM t WHERE <filter> ORDER BY
///   <order> LIMIT <size> OFFSET <offset>) AS page ON t.id = page.id
///   ORDER BY <order>`. The `OFFSET` skips index entries, not rows, so a deep
///   page does not read every row before it from the heap; only the page's
///   own rows are read. A join, not `t.id IN (…)`: PostgreSQL hashed and
///   re-sorted the `IN` list (1.1 ms of a 1.5 ms page 1), while the join's
///   nested loop keeps the inner select's order.
pub async fn page<E>(
    db: &DatabaseConnection,
    select: Select<E>,
    q: &ListQuery,
    id: E::Column,
    part: Part,
) -> ApiResult<(u64, Vec<E::Model>)>
where
    E: EntityTrait,
    E::Model: FromQueryResult + Send + Sync,
{
    match part {
        Part::Total => {
            let mut counting = select.into_query();
            counting.clear_selects();
            counting.expr(Expr::col((E::default(), id)).count());
            let backend = db.get_database_backend();
            let total: i64 = match db.query_one_raw(backend.build(&counting)).await? {
                Some(row) => row.try_get_by_index(0)?,
                None => 0,
            };
            Ok((u64::try_from(total).unwrap_or(0), Vec::new()))
        }
        Part::Anchors => Err(anyhow::anyhow!("a list's anchors are read by `unrendered`").into()),
        Part::Rows | Part::Ids if q.only_ids.is_some() => {
            let ids = q.only_ids.iter().flatten().copied();
            let rows = order(select.filter(id.is_in(ids)), q, id).all(db).await?;
            Ok((0, rows))
        }
        Part::Rows | Part::Ids if !q.is_deep() => {
            let rows = order(select, q, id)
                .offset(q.offset())
                .limit(q.page_size)
                .all(db)
                .await?;
            Ok((0, rows))
        }
        Part::Rows | Part::Ids => {
            let ids = page_ids(select, q, id).into_query();
            let page = sea_orm::sea_query::Alias::new("page");
            let mut rows = E::find();
            QuerySelect::query(&mut rows).join_subquery(
                sea_orm::JoinType::InnerJoin,
                ids,
                page.clone(),
                Expr::col((page, id)).equals((E::default(), id)),
            );
            // The outer select orders the page's rows as the inner one chose them.
            let rows = order(rows, q, id).all(db).await?;
            Ok((0, rows))
        }
    }
}

/// The ids of one page of a filtered select, in the list's order: what a
/// page's rows are found by and what its cached ids are, one definition.
///
/// From the page's [`Anchor`](crate::listing::Anchor) when it has one: the
/// rows from the anchor's on, the `OFFSET` counted from its position, which
/// is the same page while the anchor is valid (they are cached under the
/// ids' own generations).
fn page_ids<E: EntityTrait>(select: Select<E>, q: &ListQuery, id: E::Column) -> Select<E> {
    let (select, offset) = match (q.anchor, q.by_id()) {
        (Some(a), Some(desc)) => (
            select.filter(if desc { id.lte(a.id) } else { id.gte(a.id) }),
            q.offset().saturating_sub(a.position),
        ),
        _ => (select, q.offset()),
    };
    order(select, q, id)
        .select_only()
        .column(id)
        .offset(offset)
        .limit(q.page_size)
}

/// The ids at positions 0, [`ANCHOR_EVERY`](crate::listing::ANCHOR_EVERY),
/// … of a list ordered by `id` alone, in its order: one walk of its index.
async fn anchors<E>(
    db: &DatabaseConnection,
    select: Select<E>,
    q: &ListQuery,
    id: E::Column,
) -> ApiResult<Vec<i64>>
where
    E: EntityTrait,
{
    use sea_orm::sea_query::{Alias, Query};
    let Some(desc) = q.by_id() else {
        return Ok(Vec::new());
    };
    let column = format!("\"{}\".\"{}\"", E::default().table_name(), id.as_str());
    let direction = if desc { "DESC" } else { "ASC" };
    let mut numbered = select.select_only().column(id).into_query();
    numbered.expr_as(
        Expr::cust(format!("ROW_NUMBER() OVER (ORDER BY {column} {direction})")),
        Alias::new("n"),
    );
    let every = crate::listing::ANCHOR_EVERY;
    let outer = Query::select()
        .column(Alias::new(id.as_str()))
        .from_subquery(numbered, Alias::new("numbered"))
        .and_where(Expr::cust(format!("(\"n\" - 1) % {every} = 0")))
        .order_by(Alias::new("n"), Order::Asc)
        .to_owned();
    let backend = db.get_database_backend();
    let rows = db.query_all_raw(backend.build(&outer)).await?;
    rows.iter()
        .map(|row| Ok(row.try_get_by_index::<i64>(0)?))
        .collect()
}

/// What a list reads without its rows: the total ([`Part::Total`]), the ids
/// of the page in its order ([`Part::Ids`]: the index alone answers it, no
/// row is read) or its anchors ([`Part::Anchors`]). Every resource's `list`
/// answers those parts here.
///
/// `select` is organization `org`'s rows filtered and searched by `q` and by
/// nothing else: the total of a list that neither filters nor searches is
/// the organization's row count ([`row_count`]), on PostgreSQL, unless its
/// deltas cannot be trusted.
pub async fn unrendered<E>(
    db: &DatabaseConnection,
    org: i64,
    select: Select<E>,
    q: &ListQuery,
    id: E::Column,
    part: Part,
) -> ApiResult<(u64, Results)>
where
    E: EntityTrait,
    E::Model: FromQueryResult + Send + Sync,
{
    if part == Part::Total
        && q.filters.is_empty()
        && q.search.is_empty()
        && db.get_database_backend() == DbBackend::Postgres
        && let Some(total) = row_count(db, E::default().table_name(), org).await?
    {
        return Ok((total, Results::empty()));
    }
    if part == Part::Ids {
        let ids: Vec<i64> = page_ids(select, q, id).into_tuple().all(db).await?;
        return Ok((0, Results::ids(&ids)?));
    }
    if part == Part::Anchors {
        return Ok((0, Results::ids(&anchors(db, select, q, id).await?)?));
    }
    let (total, _) = page(db, select, q, id, Part::Total).await?;
    Ok((total, Results::empty()))
}

/// More deltas than this in one organization's count, and a read folds them
/// into one row (`migration::m2026_12_07_000014_row_counts`).
const FOLD_ABOVE: i64 = 16;

/// Folds and rebuilds running at once in this process, at most: each only
/// saves later reads some work, so one past the bound is left to a later read.
const MAX_FOLDS: usize = 2;

static FOLDS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// The number of organization `org`'s rows in `table` (one of the cached
/// tables), from the deltas its triggers keep
/// (`migration::m2026_12_07_000014_row_counts`): the same number as
/// `count(*)` under this statement's snapshot, read from a few rows rather
/// than the organization's index. PostgreSQL only.
///
/// `None` when the deltas cannot be trusted, and the caller counts: the table
/// was truncated since its deltas were last rebuilt (a rebuild is started),
/// or they sum to less than nothing (written by hand). Past [`FOLD_ABOVE`]
/// deltas, they are folded into one row. Both in a task of their own: a
/// dropped request leaves them whole.
pub async fn row_count(db: &DatabaseConnection, table: &str, org: i64) -> ApiResult<Option<u64>> {
    let table = counted_table(table)?;
    let unknown = crate::migration::UNKNOWN_COUNT;
    let read = Statement::from_sql_and_values(
        db.get_database_backend(),
        format!(
            "SELECT COALESCE(SUM(n) FILTER (WHERE organization_id = $2), 0)::bigint, \
               COUNT(*) FILTER (WHERE organization_id = $2), \
               COUNT(*) FILTER (WHERE organization_id = {unknown}) \
             FROM row_counts WHERE table_name = $1 AND organization_id IN ($2, {unknown})"
        ),
        [table.into(), org.into()],
    );
    let (total, deltas, truncated): (i64, i64, i64) = match db.query_one_raw(read).await? {
        Some(row) => (
            row.try_get_by_index(0)?,
            row.try_get_by_index(1)?,
            row.try_get_by_index(2)?,
        ),
        None => (0, 0, 0),
    };
    if truncated > 0 {
        if !REBUILDING.swap(true, std::sync::atomic::Ordering::AcqRel) {
            let done = Rebuilt;
            in_background(db, move |db| async move {
                let _done = done;
                rebuild_row_counts(&db, table).await
            });
        }
        return Ok(None);
    }
    if deltas > FOLD_ABOVE {
        in_background(db, move |db| async move { fold(&db, table, org).await });
    }
    match u64::try_from(total) {
        Ok(total) => Ok(Some(total)),
        Err(_) => {
            tracing::warn!(table, org, total, "row counts below zero: counted instead");
            Ok(None)
        }
    }
}

/// `table` as one of the cached tables (the only names put in SQL here).
fn counted_table(table: &str) -> ApiResult<&'static str> {
    crate::migration::CACHED_TABLES
        .iter()
        .copied()
        .find(|t| *t == table)
        .ok_or_else(|| anyhow::anyhow!("no row counts are kept for `{table}`").into())
}

/// Runs `work` in a task of its own if one of the [`MAX_FOLDS`] slots is free.
fn in_background<F, Fut>(db: &DatabaseConnection, work: F)
where
    F: FnOnce(DatabaseConnection) -> Fut + Send + 'static,
    Fut: Future<Output = Result<(), sea_orm::DbErr>> + Send + 'static,
{
    use std::sync::atomic::Ordering;
    let taken = FOLDS.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
        (n < MAX_FOLDS).then_some(n + 1)
    });
    if taken.is_err() {
        return;
    }
    // Made before the task, so that a task dropped unrun gives it back.
    let done = FoldDone;
    let db = db.clone();
    tokio::spawn(async move {
        let _done = done;
        if let Err(e) = work(db).await {
            tracing::warn!(error = %e, "keeping row counts");
        }
    });
}

/// Whether this process is rebuilding a table's counts (one at a time: two
/// at once would fail one another).
static REBUILDING: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Clears [`REBUILDING`] however the rebuild ends, or if it never starts.
struct Rebuilt;

impl Drop for Rebuilt {
    fn drop(&mut self) {
        REBUILDING.store(false, std::sync::atomic::Ordering::Release);
    }
}

/// Gives its slot back however the task ends.
struct FoldDone;

impl Drop for FoldDone {
    fn drop(&mut self) {
        FOLDS.fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
    }
}

/// A transaction at `isolation` (whatever the database's default) that gives
/// up on a lock after a second and on a statement after `limit`.
async fn bounded(
    db: &DatabaseConnection,
    isolation: sea_orm::IsolationLevel,
    limit: std::time::Duration,
) -> Result<sea_orm::DatabaseTransaction, sea_orm::DbErr> {
    use sea_orm::TransactionTrait;
    let tx = db.begin_with_config(Some(isolation), None).await?;
    tx.execute_unprepared(&format!(
        "SET LOCAL lock_timeout = '1s'; SET LOCAL statement_timeout = '{}ms'",
        limit.as_millis()
    ))
    .await?;
    Ok(tx)
}

/// Folds organization `org`'s deltas of `table` into one row: one statement
/// deletes them and adds their sum, so a reader sees either. Under `READ
/// COMMITTED`, a fold running at once deletes only what this one has not (so
/// each delta is summed once), and a delta committed meanwhile is not seen,
/// so it stays. Writers never wait for it: they only add rows.
async fn fold(
    db: &DatabaseConnection,
    table: &'static str,
    org: i64,
) -> Result<(), sea_orm::DbErr> {
    let tx = bounded(
        db,
        sea_orm::IsolationLevel::ReadCommitted,
        std::time::Duration::from_secs(5),
    )
    .await?;
    tx.execute_raw(Statement::from_sql_and_values(
        tx.get_database_backend(),
        "WITH gone AS (DELETE FROM row_counts \
           WHERE table_name = $1 AND organization_id = $2 RETURNING n) \
         INSERT INTO row_counts (table_name, organization_id, n) \
         SELECT $1, $2, SUM(n)::bigint FROM gone HAVING SUM(n) <> 0",
        [table.into(), org.into()],
    ))
    .await?;
    tx.commit().await
}

/// Replaces `table`'s deltas (and its marker) with one row per organization
/// counted from the rows: after a `TRUNCATE`, or writes that bypassed the
/// triggers.
///
/// In one `REPEATABLE READ` transaction, without a lock on the table: its
/// delete and its count see one snapshot, so it deletes exactly the deltas
/// of the rows it counts; a write committed after that snapshot keeps its
/// delta, not counted. Writers never wait for it. A fold or another rebuild
/// that deleted one of those deltas first makes it fail (a serialization
/// failure, never a double count); a read starts it again while the marker
/// is there, and reads count meanwhile. A `TRUNCATE` that commits after its
/// snapshot leaves its marker, not seen, so not deleted.
pub async fn rebuild_row_counts(
    db: &DatabaseConnection,
    table: &'static str,
) -> Result<(), sea_orm::DbErr> {
    let tx = bounded(
        db,
        sea_orm::IsolationLevel::RepeatableRead,
        std::time::Duration::from_secs(60),
    )
    .await?;
    tx.execute_raw(Statement::from_sql_and_values(
        tx.get_database_backend(),
        "DELETE FROM row_counts WHERE table_name = $1",
        [table.into()],
    ))
    .await?;
    tx.execute_raw(Statement::from_sql_and_values(
        tx.get_database_backend(),
        format!(
            "INSERT INTO row_counts (table_name, organization_id, n) \
             SELECT $1, organization_id, count(*) FROM {table} GROUP BY organization_id"
        ),
        [table.into()],
    ))
    .await?;
    tx.commit().await
}

/// [`rebuild_row_counts`] of every cached table (PostgreSQL; nothing to do on
/// SQLite).
pub async fn rebuild_all_row_counts(db: &DatabaseConnection) -> Result<(), sea_orm::DbErr> {
    if db.get_database_backend() != DbBackend::Postgres {
        return Ok(());
    }
    for table in crate::migration::CACHED_TABLES {
        // A fold or another rebuild at once fails it: tried again.
        let mut tries = 0;
        while let Err(e) = rebuild_row_counts(db, table).await {
            tries += 1;
            if tries == 3 {
                return Err(e);
            }
        }
    }
    Ok(())
}

/// A table whose rows have a code unique per organization (departments,
/// programs), which lists of other tables filter by.
pub trait Coded: EntityTrait {
    const ORGANIZATION: Self::Column;
    const CODE: Self::Column;
    const ID: Self::Column;
}

/// `column = (SELECT id FROM <C> WHERE organization_id = org AND code = code)`:
/// a filter by the code of a related row, one value since the code is unique
/// per organization (`NULL`, matching nothing, for an unknown code). It runs
/// inside the list's own statement, so the list need not read the related
/// rows before it can start.
pub fn having_code<C: Coded, S: EntityTrait>(
    select: Select<S>,
    column: S::Column,
    org: i64,
    code: &str,
) -> Select<S> {
    let related = C::find()
        .select_only()
        .column(C::ID)
        .filter(C::ORGANIZATION.eq(org))
        .filter(C::CODE.eq(code))
        .into_query();
    select.filter(Expr::col((S::default(), column)).eq(Expr::SubQuery(
        None,
        Box::new(related.into_sub_query_statement()),
    )))
}

/// `column = value` if the filter is given.
pub fn eq_filter<E: EntityTrait, V: Into<sea_orm::Value>>(
    select: Select<E>,
    column: E::Column,
    value: Option<V>,
) -> Select<E> {
    match value {
        Some(v) => select.filter(column.eq(v)),
        None => select,
    }
}

/// Row `id` of organization `org`. Another organization's row is "not found",
/// exactly like a row that does not exist (SPEC §4).
pub async fn find_in_org<E: EntityTrait>(
    db: &impl ConnectionTrait,
    org_col: E::Column,
    org: i64,
    id_col: E::Column,
    id: i64,
) -> ApiResult<Option<E::Model>>
where
    E::Model: FromQueryResult + Send + Sync,
{
    Ok(E::find()
        .filter(id_col.eq(id))
        .filter(org_col.eq(org))
        .one(db)
        .await?)
}

/// Whether a row of `org` other than `except` already holds `value` in a column
/// unique per organization (checked first so the client gets a field error).
pub async fn taken<E: EntityTrait>(
    db: &impl ConnectionTrait,
    (org_col, org): (E::Column, i64),
    (column, value): (E::Column, &str),
    (id_col, except): (E::Column, Option<i64>),
) -> ApiResult<bool>
where
    E::Model: FromQueryResult + Send + Sync,
{
    let mut q = E::find().filter(org_col.eq(org)).filter(column.eq(value));
    if let Some(id) = except {
        q = q.filter(id_col.ne(id));
    }
    Ok(q.one(db).await?.is_some())
}
