//! Writes: one database transaction per request, its invalidation recorded in
//! the outbox inside it and applied after commit, before the 2xx is sent; a
//! failed write rolls back and invalidates nothing.

use axum::Json;
use axum::extract::{FromRequest, Path, Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use sea_orm::{DatabaseConnection, DatabaseTransaction, TransactionTrait};
use serde_json::{Map, Value};

use super::{Resource, parse_id};
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult, FieldErrors};
use crate::state::AppState;

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

pub(super) async fn create<R: Resource>(
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

pub(super) async fn replace<R: Resource>(
    State(st): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    JsonObject(input): JsonObject,
) -> ApiResult<Response> {
    update::<R>(st, caller, id, input, false).await
}

pub(super) async fn modify<R: Resource>(
    State(st): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    JsonObject(input): JsonObject,
) -> ApiResult<Response> {
    update::<R>(st, caller, id, input, true).await
}

pub(super) async fn destroy<R: Resource>(
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
