//! The application, assembled in one place: the database (migrated, and
//! seeded in demo mode), the cache and the state, the listeners, the router,
//! and the operators' side-tasks. `campus serve` runs it, and the tests spawn
//! it the same way (zero2prod's `Application::build`).

use std::net::SocketAddr;

use axum::Router;
use tokio::net::TcpListener;

use crate::config::Config;
use crate::ops::admin::AdminGuard;
use crate::state::AppState;

/// What [`Application::build`] does beyond the configuration.
#[derive(Debug, Clone)]
pub struct Options {
    /// Where the API listens (port 0: any free port).
    pub bind: SocketAddr,
    /// Where `/metrics` listens apart from the API, if anywhere.
    pub metrics_bind: Option<SocketAddr>,
    /// Seed the demo organizations after migrating.
    pub demo: bool,
    /// Start what operators' commands reach: the loopback admin endpoint
    /// without Redis, this instance's counters in Redis with it.
    pub operators: bool,
}

/// Built, bound, not yet serving.
pub struct Application {
    state: AppState,
    listener: TcpListener,
    metrics: Option<TcpListener>,
    api: Router,
    _admin: Option<AdminGuard>,
}

impl Application {
    /// Everything `serve` needs before it says it listens: a request sent
    /// once this returns is accepted (the router is built, the sockets bound).
    pub async fn build(config: &Config, secret: &[u8], options: &Options) -> anyhow::Result<Self> {
        let db = crate::db::connect(&config.database_url).await?;
        crate::db::migrate(&db).await?;
        if options.demo {
            crate::seed::seed(&db, &crate::seed::demo_options()).await?;
        }
        // Migrating and seeding may take long; serving gets the statement timeout.
        let db = match config.limits.statement_timeout() {
            Some(limit) if crate::db::backend(&db) == sea_orm::DbBackend::Postgres => {
                let _ = db.close().await;
                crate::db::connect_with(&config.database_url, Some(limit)).await?
            }
            _ => db,
        };
        let state = crate::server::build_state(config, db, secret).await?;
        let listener = TcpListener::bind(options.bind)
            .await
            .map_err(|e| anyhow::anyhow!("BIND: cannot listen on {}: {e}", options.bind))?;
        let metrics = match options.metrics_bind {
            Some(at) => Some(
                TcpListener::bind(at)
                    .await
                    .map_err(|e| anyhow::anyhow!("METRICS_BIND: cannot listen on {at}: {e}"))?,
            ),
            None => None,
        };
        let addr = listener.local_addr()?;
        // Without Redis the cache lives here: the operators' commands reach it
        // through the loopback admin endpoint. With Redis, this instance's
        // counters go there for `cache-stats` to sum.
        let admin = match (state.backend.redis(), options.operators) {
            (_, false) => None,
            (None, true) => Some(
                crate::ops::admin::start(state.clone(), &config.admin_file, addr.to_string())
                    .await?,
            ),
            (Some(redis), true) => {
                let namespace = format!("{}:{}", config.cache_key_prefix, config.cache_version);
                crate::ops::instances::spawn_publisher(
                    state.cache.clone(),
                    redis.connection(),
                    crate::ops::instances::key(&namespace),
                );
                None
            }
        };
        let api = crate::server::app_with(state.clone(), metrics.is_none());
        Ok(Application {
            state,
            listener,
            metrics,
            api,
            _admin: admin,
        })
    }

    /// Where the API listens.
    pub fn address(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Where `/metrics` listens, when apart from the API.
    pub fn metrics_address(&self) -> Option<std::io::Result<SocketAddr>> {
        self.metrics.as_ref().map(TcpListener::local_addr)
    }

    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Serves until `shutdown` resolves; in-flight requests finish first.
    pub async fn run_until_stopped(
        self,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let cache = self.state.cache.clone();
        let result =
            crate::server::serve_app(self.listener, self.metrics, self.state, self.api, shutdown)
                .await;
        // The last loads' entries stored and their leases released.
        cache.settle().await;
        drop(self._admin);
        result
    }
}
