//! `spawn_app()`: the real server, a fresh database, a private cache namespace.

use std::time::Duration;

use campus::config::Config;
use reqwest::{Client, Response, StatusCode};
use serde_json::Value;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Generates one test per database backend.
#[macro_export]
macro_rules! both_backends {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$name($crate::helpers::Backend::Sqlite).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                super::$name($crate::helpers::Backend::Postgres).await
            }
        }
    )*};
}

pub const PASSWORD: &str = "campus-demo";

enum DbGuard {
    File(std::path::PathBuf),
    Postgres { admin_url: String, name: String },
}

impl Drop for DbGuard {
    fn drop(&mut self) {
        match self {
            DbGuard::File(path) => {
                for suffix in ["", "-wal", "-shm"] {
                    let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
                }
            }
            DbGuard::Postgres { admin_url, name } => {
                let (url, name) = (admin_url.clone(), name.clone());
                // Drop runs outside any runtime: a thread with its own.
                let _ = std::thread::spawn(move || {
                    let rt = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .unwrap();
                    rt.block_on(async {
                        use sea_orm::ConnectionTrait;
                        if let Ok(db) = sea_orm::Database::connect(&url).await {
                            let _ = db
                                .execute_unprepared(&format!(
                                    "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                                ))
                                .await;
                        }
                    });
                })
                .join();
            }
        }
    }
}

pub struct TestApp {
    pub base: String,
    pub client: Client,
    pub backend: Backend,
    pub db: sea_orm::DatabaseConnection,
    /// The running server's state: [`TestApp::router`] serves requests in
    /// process, without a socket.
    pub state: campus::state::AppState,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<()>>,
    // The database goes first: dropping it (WITH FORCE) cuts the app's
    // outside-writes listener, which would sweep (recreate every counter) on
    // reconnecting if the database were still there after the namespace's
    // clean-up.
    _db: DbGuard,
    _ns: testkit::PrefixGuard,
}

/// What a test app is made of, beyond a fresh database.
#[derive(Debug, Clone, Copy)]
pub struct AppOptions {
    /// Seeded organizations `org1..=orgs`.
    pub orgs: u32,
    /// Redis (L2) behind the in-process L1, or the in-process cache alone.
    pub redis: bool,
    /// Adjusts the configuration before the app is built (limits, flags).
    pub configure: fn(&mut Config),
}

impl std::default::Default for AppOptions {
    fn default() -> Self {
        AppOptions {
            orgs: 2,
            redis: true,
            configure: |_| {},
        }
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(s) = self.server.take() {
            s.abort();
        }
    }
}

fn unique() -> String {
    format!("{}_{:x}", std::process::id(), fastrand::u64(..))
}

async fn fresh_database(backend: Backend) -> (String, DbGuard) {
    match backend {
        Backend::Sqlite => {
            let path = std::env::temp_dir().join(format!("campus-test-{}.db", unique()));
            (
                format!("sqlite://{}?mode=rwc", path.display()),
                DbGuard::File(path),
            )
        }
        Backend::Postgres => {
            let admin_url = std::env::var("TEST_DATABASE_URL")
                .expect("TEST_DATABASE_URL is unset: run the tests with scripts/test.sh, which starts PostgreSQL");
            let name = format!("campus_api_{}", unique());
            use sea_orm::ConnectionTrait;
            let admin = sea_orm::Database::connect(&admin_url)
                .await
                .expect("TEST_DATABASE_URL reachable");
            admin
                .execute_unprepared(&format!("CREATE DATABASE {name}"))
                .await
                .unwrap();
            let _ = admin.close().await;
            let (head, _) = admin_url
                .rsplit_once('/')
                .expect("a database in TEST_DATABASE_URL");
            (
                format!("{head}/{name}"),
                DbGuard::Postgres { admin_url, name },
            )
        }
    }
}

pub fn config(database_url: &str, prefix: &str) -> Config {
    Config {
        database_url: database_url.to_owned(),
        redis_url: Some(
            std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379/".into()),
        ),
        cache_key_prefix: prefix.into(),
        cache_l1_max_mb: 16,
        admin_file: std::env::temp_dir().join(format!("campus-admin-{prefix}.json")),
        jwt_secret: Some("test-secret-0123456789abcdef01234567".into()),
        ..Config::default()
    }
}

pub async fn spawn_app(backend: Backend) -> TestApp {
    spawn_app_with(backend, AppOptions::default()).await
}

pub async fn spawn_app_with(backend: Backend, opts: AppOptions) -> TestApp {
    let (url, db_guard) = fresh_database(backend).await;
    // A prefix of its own, not only a version: generation counters are shared by
    // every version of a prefix, and another test's writes must not turn this
    // test's hits into misses.
    let prefix = format!("campustest{}", unique());
    let mut config = config(&url, &prefix);
    let ns = testkit::PrefixGuard {
        url: config.redis_url.clone().unwrap(),
        prefix: prefix.clone(),
    };
    if !opts.redis {
        config.redis_url = None;
    }
    (opts.configure)(&mut config);
    let db = campus::db::connect(&url).await.unwrap();
    campus::db::migrate(&db).await.unwrap();
    let options = campus::seed::SeedOptions {
        orgs: opts.orgs,
        faculty: 12,
        students: 30,
        password: PASSWORD.into(),
        seed: 7,
        progress: false,
    };
    campus::seed::seed(&db, &options).await.unwrap();
    let options = campus::app::Options {
        bind: "127.0.0.1:0".parse().unwrap(),
        metrics_bind: None,
        demo: false,
        operators: false,
    };
    let secret = config.jwt_secret.clone().unwrap();
    let app = campus::app::Application::build(&config, secret.as_bytes(), &options)
        .await
        .unwrap();
    let base = format!("http://{}", app.address().unwrap());
    let served = app.state().clone();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        app.run_until_stopped(async {
            let _ = rx.await;
        })
        .await
        .unwrap();
    });
    let client = Client::new();
    if backend == Backend::Postgres {
        // The listener for outside writes sweeps (bumps every counter) once it
        // is connected; let that happen now, not after the test's clean-up of
        // its namespace.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let ready: Value = match client.get(format!("{base}/readyz")).send().await {
                Ok(r) => r.json().await.unwrap_or(Value::Null),
                Err(_) => Value::Null,
            };
            if ready["outside_writes"] == "listening" {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "listener never up: {ready}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    TestApp {
        base,
        client,
        backend,
        db,
        state: served,
        shutdown: Some(tx),
        server: Some(server),
        _ns: ns,
        _db: db_guard,
    }
}

impl TestApp {
    /// The application's router on the running server's state: requests served
    /// in process (the same middleware, handlers, database and cache).
    pub fn router(&self) -> axum::Router {
        campus::server::app(self.state.clone())
    }

    /// A second instance of this deployment (the same database, Redis and
    /// prefix), served in process; `None` without Redis.
    pub async fn other_instance(&self) -> Option<axum::Router> {
        let campus::state::Backend::Redis { prefix, .. } = &self.state.backend else {
            return None;
        };
        let config = config("sqlite::memory:", prefix);
        let other = campus::server::build_state(
            &config,
            self.db.clone(),
            config.jwt_secret.as_deref().unwrap().as_bytes(),
        )
        .await
        .unwrap();
        Some(campus::server::app(other))
    }

    /// GET `path` from `router` as `token`, with this server's `Host`: its
    /// `X-Cache` and body.
    pub async fn get_from(
        &self,
        router: &axum::Router,
        token: &str,
        path: &str,
    ) -> (String, bytes::Bytes) {
        use tower::ServiceExt;
        let req = axum::http::Request::builder()
            .uri(path)
            .header("host", self.base.trim_start_matches("http://"))
            .header("authorization", format!("Bearer {token}"))
            .body(axum::body::Body::empty())
            .unwrap();
        let r = router.clone().oneshot(req).await.unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{path}");
        let cache = r.headers()["x-cache"].to_str().unwrap().to_owned();
        let body = axum::body::to_bytes(r.into_body(), usize::MAX)
            .await
            .unwrap();
        (cache, body)
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub async fn login(&self, username: &str) -> String {
        let r = self
            .client
            .post(self.url("/api/auth/token/"))
            .json(&serde_json::json!({"username": username, "password": PASSWORD}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK, "login {username}");
        let v: Value = r.json().await.unwrap();
        v["access"].as_str().unwrap().to_owned()
    }

    pub async fn get(&self, token: &str, path: &str) -> Response {
        self.client
            .get(self.url(path))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
    }

    pub async fn get_json(&self, token: &str, path: &str) -> (StatusCode, Value) {
        let r = self.get(token, path).await;
        let status = r.status();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    pub async fn send(
        &self,
        method: reqwest::Method,
        token: &str,
        path: &str,
        body: Value,
    ) -> (StatusCode, Value) {
        let r = self
            .client
            .request(method, self.url(path))
            .bearer_auth(token)
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = r.status();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    /// The id of a department of the caller's organization by code.
    pub async fn department(&self, token: &str, code: &str) -> Value {
        let (_, v) = self
            .get_json(token, "/api/departments/?page_size=500")
            .await;
        v["results"]
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["code"] == code)
            .cloned()
            .unwrap()
    }
}
