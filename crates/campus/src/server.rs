//! Building the application and serving it: `run(listener, state, shutdown)` is
//! what `campus serve` and the tests both call.

use std::future::Future;
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use axum::Router;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request};
use axum::http::HeaderName;
use axum::middleware::{self, Next};
use axum::response::Response;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tokio::net::TcpListener;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{
    MakeRequestId, PropagateRequestIdLayer, RequestId, SetRequestIdLayer,
};
use tower_http::trace::TraceLayer;

use crate::auth::Jwt;
use crate::config::Config;
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
    let (cache, redis, local) = build_cache(config).await?;
    Ok(AppState::new(Shared {
        db,
        cache,
        redis,
        local,
        cache_enabled: !config.cache_disabled,
        bench_routes: config.bench_routes,
        jwt: Arc::new(Jwt::new(jwt_secret)),
        activity: Default::default(),
        changes: Default::default(),
        redis_target: config
            .redis_url
            .clone()
            .map(|u| (u, config.cache_key_prefix.clone())),
        report: Default::default(),
        metrics: prometheus(),
    }))
}

/// Request ids `{process prefix}-{counter}`: unique per process start, and cheap
/// (a UUID v4 costs a `getrandom` syscall per request).
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

/// The method as a `'static` label: the common ones need no allocation.
fn method_label(m: &axum::http::Method) -> metrics::SharedString {
    use axum::http::Method;
    let known = [
        Method::GET,
        Method::POST,
        Method::PUT,
        Method::PATCH,
        Method::DELETE,
        Method::HEAD,
        Method::OPTIONS,
    ];
    match known.iter().position(|k| k == m) {
        Some(i) => ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"][i].into(),
        None => m.as_str().to_owned().into(),
    }
}

/// The handles of one route's HTTP metrics. Kept per route so a request
/// increments atomics instead of building and hashing label sets in the
/// recorder's registry.
#[derive(Default)]
struct RouteMetrics {
    requests: Vec<((&'static str, u16), metrics::Counter)>,
    durations: Vec<(&'static str, metrics::Histogram)>,
}

type Handles = std::sync::RwLock<std::collections::HashMap<Arc<str>, RouteMetrics>>;

fn route_handles(
    route: &str,
    method: &metrics::SharedString,
    status: u16,
) -> (metrics::Counter, metrics::Histogram) {
    static HANDLES: OnceLock<Handles> = OnceLock::new();
    let handles = HANDLES.get_or_init(Default::default);
    // Only the methods `method_label` names statically are kept; the rest are
    // rare enough to pay for their labels.
    let key_method: Option<&'static str> = match method.as_ref() {
        "GET" => Some("GET"),
        "POST" => Some("POST"),
        "PUT" => Some("PUT"),
        "PATCH" => Some("PATCH"),
        "DELETE" => Some("DELETE"),
        "HEAD" => Some("HEAD"),
        "OPTIONS" => Some("OPTIONS"),
        _ => None,
    };
    if let Some(m) = key_method {
        let found = handles
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(route)
            .and_then(|r| {
                let c = r
                    .requests
                    .iter()
                    .find(|(k, _)| *k == (m, status))?
                    .1
                    .clone();
                let h = r.durations.iter().find(|(k, _)| *k == m)?.1.clone();
                Some((c, h))
            });
        if let Some(found) = found {
            return found;
        }
    }
    let shared_route: Arc<str> = Arc::from(route);
    let counter = metrics::counter!(
        "http_requests_total",
        "method" => method.clone(),
        "route" => metrics::SharedString::from(shared_route.clone()),
        "status" => status.to_string()
    );
    let histogram = metrics::histogram!(
        "http_request_duration_seconds",
        "method" => method.clone(),
        "route" => metrics::SharedString::from(shared_route.clone())
    );
    if let Some(m) = key_method {
        let mut map = handles.write().unwrap_or_else(|e| e.into_inner());
        let r = map.entry(shared_route).or_default();
        if !r.requests.iter().any(|(k, _)| *k == (m, status)) {
            r.requests.push(((m, status), counter.clone()));
        }
        if !r.durations.iter().any(|(k, _)| *k == m) {
            r.durations.push((m, histogram.clone()));
        }
    }
    (counter, histogram)
}

async fn record_metrics(req: Request, next: Next) -> Response {
    let route = req.extensions().get::<MatchedPath>().cloned();
    let method = method_label(req.method());
    let start = Instant::now();
    let response = next.run(req).await;
    let route = route.as_ref().map_or("unmatched", |r| r.as_str());
    let (counter, histogram) = route_handles(route, &method, response.status().as_u16());
    counter.increment(1);
    histogram.record(start.elapsed().as_secs_f64());
    response
}

pub fn app(state: AppState) -> Router {
    let request_id = HeaderName::from_static("x-request-id");
    let mut router = crate::api::router();
    if state.bench_routes {
        router = router.merge(crate::api::bench::router());
    }
    router
        .route_layer(middleware::from_fn(record_metrics))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
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

/// Serves until `shutdown` resolves; in-flight requests finish first.
pub async fn run(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    crate::ops::changes::spawn(state.clone());
    axum::serve(listener, app(state))
        .with_graceful_shutdown(shutdown)
        .await?;
    Ok(())
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
    tracing::info!("shutting down: finishing in-flight requests");
}
