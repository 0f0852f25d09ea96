//! Detail reads: a row's entry under its detail key, whose body is byte for byte
//! the row's representation in a list (pages are put together from it).

use axum::extract::{Path, Request, State};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use sea_orm::DatabaseConnection;
use tierstamp::Kind;
use tierstamp_axum::CachedResponse;

use super::{Resource, after_auth, parse_id};
use crate::auth::Claimed;
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

pub(super) async fn retrieve<R: Resource>(
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

/// The key of row `id`'s detail.
pub(super) fn detail_key<R: Resource>(
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
pub(super) fn detail_loader<R: Resource>(
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
