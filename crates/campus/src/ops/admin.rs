//! The admin endpoint of a server without Redis: its cache lives in its own
//! process, so `warm-cache` and `cache-stats` reach it here.
//!
//! It listens on a random loopback port (never on the public address) and
//! wants a random token; both are written to the admin file
//! (`CAMPUS_ADMIN_FILE`), created readable and writable by its owner only, so
//! only the user running the server (and root) can use the endpoint. The file
//! is removed when the server stops.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};

use super::report::{Report, Thresholds, gather_local};
use super::warm::{self, Plan, Progress, Summary};
use crate::state::AppState;

/// How long an admin call (a whole warming, streamed) may take before the CLI
/// gives up on the server.
const ADMIN_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(3600);

/// What the admin file holds.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct AdminFile {
    pub url: String,
    pub token: String,
    pub pid: u32,
}

#[derive(Clone)]
struct Admin {
    state: AppState,
    token: String,
    /// The address clients reach the API at (the `Host` warming uses by default).
    host: String,
}

/// Removes the admin file when the server stops.
#[derive(Debug)]
pub(crate) struct AdminGuard(PathBuf);

impl Drop for AdminGuard {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn write_private(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    // A file left by a server that died is replaced, not trusted.
    let _ = std::fs::remove_file(path);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(contents)
}

/// Starts the admin endpoint for `state` and writes `file`.
pub(crate) async fn start(
    state: AppState,
    file: &Path,
    api_host: String,
) -> anyhow::Result<AdminGuard> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", listener.local_addr()?);
    let token = crate::secret::secret_hex(16);
    let admin = Admin {
        state,
        token: token.clone(),
        host: api_host,
    };
    let contents = serde_json::to_vec_pretty(&AdminFile {
        url,
        token,
        pid: std::process::id(),
    })?;
    write_private(file, &contents)
        .map_err(|e| anyhow::anyhow!("CAMPUS_ADMIN_FILE: cannot write {}: {e}", file.display()))?;
    let router = Router::new()
        .route("/admin/cache/report", get(report))
        .route("/admin/cache/clear", post(clear))
        .route("/admin/cache/warm", post(warm_stream))
        .layer(middleware::from_fn_with_state(admin.clone(), require_token))
        .with_state(admin);
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, router).await {
            tracing::error!(error = %e, "admin endpoint stopped");
        }
    });
    Ok(AdminGuard(file.to_owned()))
}

async fn require_token(State(admin): State<Admin>, req: Request, next: Next) -> Response {
    let given = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    // Constant time: the comparison must not tell how much of a guess was right.
    let same = given.len() == admin.token.len()
        && given
            .bytes()
            .zip(admin.token.bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0;
    if !same {
        return (StatusCode::UNAUTHORIZED, "admin token required\n").into_response();
    }
    next.run(req).await
}

#[derive(Debug, Deserialize)]
struct ReportQuery {
    min_hit_rate: Option<f64>,
    min_lookups: Option<u64>,
}

async fn report(
    State(admin): State<Admin>,
    axum::extract::Query(q): axum::extract::Query<ReportQuery>,
) -> axum::Json<Report> {
    let mut t = Thresholds::default();
    if let Some(r) = q.min_hit_rate {
        t.min_hit_rate = r;
    }
    if let Some(n) = q.min_lookups {
        t.min_lookups = n;
    }
    axum::Json(gather_local(
        admin.state.backend.local(),
        &admin.state.cache,
        t,
    ))
}

async fn clear(State(admin): State<Admin>) -> axum::Json<serde_json::Value> {
    let cleared = admin.state.backend.local().map(|l| l.clear()).unwrap_or(0);
    axum::Json(serde_json::json!({ "cleared": cleared }))
}

/// One line of the warming stream.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "lowercase")]
pub(crate) enum WarmEvent {
    Progress(Progress),
    Done(Summary),
    Error { message: String },
}

/// Warms in the server and streams progress as JSON lines, so the CLI can show
/// its progress bar for work done in another process.
async fn warm_stream(
    State(admin): State<Admin>,
    axum::Json(mut plan): axum::Json<Plan>,
) -> Response {
    if plan.host.is_empty() {
        plan.host = admin.host.clone();
    }
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<WarmEvent>();
    tokio::spawn(async move {
        let progress_tx = tx.clone();
        let result = warm::warm(&admin.state, &plan, move |p| {
            let _ = progress_tx.send(WarmEvent::Progress(p));
        })
        .await;
        let _ = tx.send(match result {
            Ok(summary) => WarmEvent::Done(summary),
            Err(e) => WarmEvent::Error {
                message: format!("{e:#}"),
            },
        });
    });
    let lines = futures::stream::unfold(rx, |mut rx| async move {
        let event = rx.recv().await?;
        let mut line = serde_json::to_vec(&event).unwrap_or_default();
        line.push(b'\n');
        Some((
            Ok::<_, std::convert::Infallible>(bytes::Bytes::from(line)),
            rx,
        ))
    });
    (
        [(header::CONTENT_TYPE, "application/x-ndjson")],
        Body::from_stream(lines),
    )
        .into_response()
}

/// The CLI's side: the running server named by the admin file.
pub(crate) struct Client {
    file: AdminFile,
    http: reqwest::Client,
}

impl Client {
    /// Reads the admin file; says plainly when no server is running.
    pub(crate) async fn discover(path: &Path) -> anyhow::Result<Client> {
        let text = std::fs::read_to_string(path).map_err(|_| {
            anyhow::anyhow!(
                "no running campus server found: {} does not exist (REDIS_URL is unset, so the cache lives in the server's process; start `campus serve`, or point CAMPUS_ADMIN_FILE at its admin file)",
                path.display()
            )
        })?;
        let file: AdminFile = serde_json::from_str(&text).map_err(|e| {
            anyhow::anyhow!(
                "CAMPUS_ADMIN_FILE: {} is not an admin file: {e}",
                path.display()
            )
        })?;
        let client = Client {
            file,
            http: reqwest::Client::builder().timeout(ADMIN_TIMEOUT).build()?,
        };
        Ok(client)
    }

    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.http
            .request(method, format!("{}{path}", self.file.url))
            .bearer_auth(&self.file.token)
    }

    async fn send(&self, req: reqwest::RequestBuilder) -> anyhow::Result<reqwest::Response> {
        let response = req.send().await.map_err(|e| {
            if e.is_connect() {
                anyhow::anyhow!(
                    "no running campus server found: {} refused the connection (the admin file is from a server that stopped: pid {})",
                    self.file.url,
                    self.file.pid
                )
            } else {
                anyhow::anyhow!("admin endpoint {}: {e}", self.file.url)
            }
        })?;
        if !response.status().is_success() {
            anyhow::bail!("admin endpoint {}: {}", self.file.url, response.status());
        }
        Ok(response)
    }

    pub(crate) async fn report(&self, t: Thresholds) -> anyhow::Result<Report> {
        let req = self.request(
            reqwest::Method::GET,
            &format!(
                "/admin/cache/report?min_hit_rate={}&min_lookups={}",
                t.min_hit_rate, t.min_lookups
            ),
        );
        Ok(self.send(req).await?.json().await?)
    }

    pub(crate) async fn clear(&self) -> anyhow::Result<u64> {
        let v: serde_json::Value = self
            .send(self.request(reqwest::Method::POST, "/admin/cache/clear"))
            .await?
            .json()
            .await?;
        Ok(v["cleared"].as_u64().unwrap_or(0))
    }

    /// Warms in the server, calling `progress` as its lines arrive.
    pub(crate) async fn warm(
        &self,
        plan: &Plan,
        progress: impl Fn(Progress),
    ) -> anyhow::Result<Summary> {
        let mut response = self
            .send(
                self.request(reqwest::Method::POST, "/admin/cache/warm")
                    .json(plan),
            )
            .await?;
        let mut pending = Vec::new();
        while let Some(chunk) = response.chunk().await? {
            pending.extend_from_slice(&chunk);
            while let Some(end) = pending.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = pending.drain(..=end).collect();
                match serde_json::from_slice::<WarmEvent>(&line)? {
                    WarmEvent::Progress(p) => progress(p),
                    WarmEvent::Done(summary) => return Ok(summary),
                    WarmEvent::Error { message } => anyhow::bail!("{message}"),
                }
            }
        }
        anyhow::bail!(
            "admin endpoint {}: the warming stream ended early",
            self.file.url
        )
    }
}
