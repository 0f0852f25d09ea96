//! Building the application and serving it: `run(listener, state, shutdown)` is
//! what `campus serve` and the tests both call.

use std::future::Future;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request};
use axum::http::HeaderName;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tokio::net::TcpListener;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{
    MakeRequestId, PropagateRequestIdLayer, RequestId, SetRequestIdLayer,
};
use tower_http::trace::TraceLayer;

pub mod connections;
pub mod forwarded;

use crate::auth::Jwt;
use crate::config::Config;
use crate::error::ApiError;
use crate::state::{AppState, Shared, build_cache};

/// Request bodies above this are refused (413) before they are read.
pub const MAX_BODY_BYTES: usize = 256 * 1024;

/// The process-wide Prometheus recorder (the `metrics` facade allows one).
fn prometheus() -> Option<PrometheusHandle> {
    static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();
    HANDLE
        .get_or_init(|| PrometheusBuilder::new().install_recorder().ok())
        .clone()
}

/// Connects the database and the cache the configuration names.
pub async fn build_state(
    config: &Config,
    db: sea_orm::DatabaseConnection,
    jwt_secret: &[u8],
) -> anyhow::Result<AppState> {
    // The recorder first: the Redis store makes its first calls while it is built,
    // and metric handles made before a recorder exists record nothing, ever.
    let metrics = prometheus();
    let (cache, backend) = build_cache(config).await?;
    Ok(AppState::new(Shared {
        db,
        cache,
        backend,
        cache_enabled: !config.cache_disabled,
        bench_routes: config.bench_routes,
        jwt: Arc::new(Jwt::new(jwt_secret)),
        activity: Default::default(),
        lists: Default::default(),
        changes: Default::default(),
        reports: Default::default(),
        metrics,
        login: crate::login::LoginGuard::new(&config.limits),
        limits: config.limits.clone(),
    }))
}

/// Request ids `{process prefix}-{counter}`: unique per process start, and cheap
/// (a UUID v4 costs a `getrandom` syscall per request). The prefix is public
/// (every response carries it) and comes from `fastrand`, which makes no
/// secret: those come from the OS generator ([`crate::secret`]).
#[derive(Clone)]
struct SequentialRequestId {
    prefix: Arc<str>,
    next: Arc<std::sync::atomic::AtomicU64>,
}

impl MakeRequestId for SequentialRequestId {
    fn make_request_id<B>(&mut self, _: &axum::http::Request<B>) -> Option<RequestId> {
        let n = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        axum::http::HeaderValue::from_str(&format!("{}-{n}", self.prefix))
            .ok()
            .map(RequestId::new)
    }
}

/// The method as a label. Methods outside the standard ones are `OTHER`: a
/// client must not be able to grow the metric's label set at will.
fn method_label(m: &axum::http::Method) -> &'static str {
    use axum::http::Method;
    match *m {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "OTHER",
    }
}

/// The metric handles of one (route, method, status), kept so a request
/// increments atomics instead of building and hashing its label set in the
/// recorder's registry.
type Handles = (metrics::Counter, metrics::Histogram);

fn route_handles(route: &str, method: &'static str, status: u16) -> Handles {
    // By route first, so a look-up borrows the route instead of allocating a key.
    type Map = HashMap<Box<str>, HashMap<(&'static str, u16), Handles, Hasher>, Hasher>;
    type Hasher = foldhash::quality::RandomState;
    use std::collections::HashMap;
    static HANDLES: OnceLock<std::sync::RwLock<Map>> = OnceLock::new();
    let map = HANDLES.get_or_init(Default::default);
    if let Some(h) = map
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .get(route)
        .and_then(|by_status| by_status.get(&(method, status)))
    {
        return h.clone();
    }
    let shared_route = metrics::SharedString::from(Arc::<str>::from(route));
    let handles = (
        metrics::counter!(
            "http_requests_total",
            "method" => method,
            "route" => shared_route.clone(),
            "status" => status.to_string()
        ),
        metrics::histogram!(
            "http_request_duration_seconds",
            "method" => method,
            "route" => shared_route
        ),
    );
    map.write()
        .unwrap_or_else(|e| e.into_inner())
        .entry(route.into())
        .or_default()
        .insert((method, status), handles.clone());
    handles
}

async fn record_metrics(req: Request, next: Next) -> Response {
    let route = req.extensions().get::<MatchedPath>().cloned();
    let method = method_label(req.method());
    let start = Instant::now();
    let response = next.run(req).await;
    let route = route.as_ref().map_or("unmatched", |r| r.as_str());
    let (counter, histogram) = route_handles(route, method, response.status().as_u16());
    counter.increment(1);
    histogram.record(start.elapsed().as_secs_f64());
    response
}

/// Answers 503 for a request not answered within `limit` (its handler is
/// dropped: what it committed is still invalidated, SPEC §5.4).
async fn request_timeout(limit: Duration, req: Request, next: Next) -> Response {
    match tokio::time::timeout(limit, next.run(req)).await {
        Ok(response) => response,
        Err(_) => {
            tracing::warn!(?limit, "request timed out");
            ApiError::Overloaded("Request timed out.").into_response()
        }
    }
}

/// The API with `/metrics` (what tests and a server without `METRICS_BIND` serve).
pub fn app(state: AppState) -> Router {
    app_with(state, true)
}

/// `/metrics` alone, for its own listener (`METRICS_BIND`).
pub fn metrics_app(state: AppState) -> Router {
    layered(
        Router::new().route("/metrics", axum::routing::get(crate::api::health::metrics)),
        state,
    )
}

/// The API, with or without `/metrics`.
pub fn app_with(state: AppState, with_metrics: bool) -> Router {
    let mut router = crate::api::router();
    if with_metrics {
        router = router.route("/metrics", axum::routing::get(crate::api::health::metrics));
    }
    if state.bench_routes {
        router = router.merge(crate::api::bench::router());
    }
    layered(router, state)
}

/// The middleware every route gets: metrics, body limit, request timeout,
/// panics as 500s, request ids, tracing.
fn layered(router: Router<AppState>, state: AppState) -> Router {
    let request_id = HeaderName::from_static("x-request-id");
    let limit = state.limits.request_timeout();
    router
        .route_layer(middleware::from_fn(record_metrics))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(middleware::from_fn(move |req: Request, next: Next| {
            request_timeout(limit, req, next)
        }))
        .layer(CatchPanicLayer::new())
        .layer(PropagateRequestIdLayer::new(request_id.clone()))
        .layer(TraceLayer::new_for_http())
        .layer(SetRequestIdLayer::new(
            request_id,
            SequentialRequestId {
                prefix: Arc::from(format!("{:08x}", fastrand::u32(..))),
                next: Arc::default(),
            },
        ))
        .with_state(state)
}

/// Serves `api` until `shutdown` resolves; in-flight requests finish first.
/// Connections are capped and timed out as `state.limits` says
/// ([`connections`]); `/metrics` is on `metrics` alone when given
/// (`METRICS_BIND`). The router is built beforehand
/// ([`crate::app::Application::build`]), so a request sent once `serve` says
/// it listens is accepted and handled at once.
pub async fn serve_app(
    listener: TcpListener,
    metrics: Option<TcpListener>,
    state: AppState,
    api: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    use futures::FutureExt as _;
    crate::changes::spawn(state.clone());
    crate::outbox::spawn(state.clone());
    let limits = connections::ConnectionLimits {
        max_connections: state.limits.max_connections(),
        header_timeout: state.limits.header_timeout(),
    };
    let shutdown = shutdown.shared();
    match metrics {
        None => connections::serve(listener, api, limits, shutdown).await?,
        Some(m) => {
            let scrapes = connections::serve(m, metrics_app(state), limits, shutdown.clone());
            let (a, b) = tokio::join!(connections::serve(listener, api, limits, shutdown), scrapes);
            a?;
            b?;
        }
    }
    Ok(())
}

/// Resolves on SIGINT or SIGTERM.
///
/// The SIGTERM handler is installed by the call itself, not when the future
/// is first polled: `serve` calls it before it prints that it listens, and the
/// future is polled only once the router is built. A SIGTERM in between used
/// to meet the default action and kill the process, resetting the requests in
/// flight (seen on a slower machine, where the debug build's router took over
/// the test's 400 ms).
pub fn shutdown_signal() -> impl std::future::Future<Output = ()> + Send + 'static {
    #[cfg(unix)]
    let term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    let ctrl_c = tokio::signal::ctrl_c();
    async move {
        #[cfg(unix)]
        let term = async move {
            match term {
                Some(mut s) => {
                    s.recv().await;
                }
                None => std::future::pending::<()>().await,
            }
        };
        #[cfg(not(unix))]
        let term = std::future::pending::<()>();
        tokio::select! { _ = ctrl_c => {}, _ = term => {} }
        tracing::info!("shutting down: finishing in-flight requests");
    }
}
