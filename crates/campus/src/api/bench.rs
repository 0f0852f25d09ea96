//! The load benchmark's floors (`CAMPUS_BENCH_ROUTES=1` only): a fixed 2 KB body,
//! and one plain Redis `GET` of a 2 KB value through the same connection the
//! cache uses. A cached route is judged against these, measured in the same run.
//! `/bench/sleep?ms=N` holds a request open, so a test can stop the server with
//! a request in flight.

use axum::Router;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use bytes::Bytes;

use crate::error::ApiError;
use crate::state::AppState;

const KEY: &str = "campus-bench:redis-get";

fn body() -> Bytes {
    static BODY: std::sync::OnceLock<Bytes> = std::sync::OnceLock::new();
    BODY.get_or_init(|| {
        Bytes::from(format!(
            "{{\"count\":1,\"results\":[\"{}\"]}}",
            "x".repeat(2000)
        ))
    })
    .clone()
}

async fn fixed() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], body()).into_response()
}

async fn redis_get(State(st): State<AppState>) -> Result<Response, ApiError> {
    let redis = st.redis.as_ref().ok_or(ApiError::NotFound)?;
    let mut conn = redis.connection();
    let value: Option<Vec<u8>> = redis::cmd("GET")
        .arg(KEY)
        .query_async(&mut conn)
        .await
        .map_err(anyhow::Error::new)?;
    let value = match value {
        Some(v) => Bytes::from(v),
        None => {
            let _: () = redis::cmd("SET")
                .arg(KEY)
                .arg(body().as_ref())
                .query_async(&mut conn)
                .await
                .map_err(anyhow::Error::new)?;
            body()
        }
    };
    Ok(([(header::CONTENT_TYPE, "application/json")], value).into_response())
}

#[derive(serde::Deserialize)]
struct Sleep {
    ms: u64,
}

async fn sleep(axum::extract::Query(q): axum::extract::Query<Sleep>) -> Response {
    // Bounded: a benchmark route must not hold a connection forever.
    tokio::time::sleep(std::time::Duration::from_millis(q.ms.min(10_000))).await;
    (
        [(header::CONTENT_TYPE, "application/json")],
        "{\"slept\":true}",
    )
        .into_response()
}

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/bench/static", get(fixed))
        .route("/bench/sleep", get(sleep))
        .route("/bench/redis-get", get(redis_get))
}
