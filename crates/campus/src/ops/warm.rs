//! Filling the cache ahead of traffic.
//!
//! Warming sends real requests through the application's own router, in
//! process, as an active user of each organization: the entries written are
//! therefore exactly the ones a client's request would write (same keys, same
//! generations, same bytes), and a request right after warming is a `HIT`.
//! Each (organization, model) pair is one unit of work, and at most
//! `concurrency` units run at once, so the database sees at most that many
//! queries in flight.

use std::time::Instant;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use futures::StreamExt;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder};
use serde::{Deserialize, Serialize};
use tower::ServiceExt;

use crate::entity::{organization, user};
use crate::model::Model;
use crate::state::AppState;

/// `--model` names are the collections' ([`Model::collection`]), matched
/// case-insensitively, singular or plural (`Faculty`, `student`,
/// `departments`); `stats` is the dashboard.
pub(crate) fn parse_model(name: &str) -> anyhow::Result<Model> {
    let lower = name.trim().to_ascii_lowercase();
    let singular = lower.strip_suffix('s').unwrap_or(&lower);
    Model::ALL
        .into_iter()
        .find(|m| {
            let c = m.collection();
            c == lower || c.strip_suffix('s').unwrap_or(c) == singular
        })
        .or((lower == "stats").then_some(Model::Dashboard))
        .ok_or_else(|| {
            let names: Vec<&str> = Model::ALL.into_iter().map(Model::collection).collect();
            anyhow::anyhow!(
                "--model: unknown model {name:?} (valid: {})",
                names.join(", ")
            )
        })
}

/// What to warm.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Plan {
    /// Models by [`parse_model`] name; empty means all.
    pub models: Vec<String>,
    /// An organization id or code; `None` means all.
    pub org: Option<String>,
    /// List pages per model (details follow for the rows on them).
    pub pages: u64,
    pub concurrency: usize,
    /// The `Host` clients send (list pages embed absolute links, so a page is
    /// cached per host).
    pub host: String,
}

/// One finished unit of work.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Progress {
    pub org: i64,
    pub model: String,
    pub written: u64,
    pub done: u64,
    pub total: u64,
}

/// The closing summary.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct Summary {
    pub orgs: u64,
    pub models: u64,
    /// Entries this run stored (the request missed the cache).
    pub written: u64,
    /// Bytes of those entries' bodies.
    pub bytes: u64,
    /// Entries that were already cached (the request hit).
    pub already_cached: u64,
    pub errors: u64,
    /// The first few errors, for the report.
    pub error_samples: Vec<String>,
    pub seconds: f64,
}

impl Summary {
    pub(crate) fn render(&self) -> String {
        let mut out = format!(
            "Warmed {} organization(s) x {} model(s) in {:.1} s\n  Keys written: {} ({})\n  Already cached: {}\n  Errors: {}\n",
            self.orgs,
            self.models,
            self.seconds,
            crate::ops::report::thousands(self.written),
            crate::ops::report::human_bytes(self.bytes),
            crate::ops::report::thousands(self.already_cached),
            self.errors,
        );
        for e in &self.error_samples {
            out.push_str(&format!("    {e}\n"));
        }
        out
    }
}

/// The organizations named by `org` (id or code), or all of them.
async fn organizations(state: &AppState, org: Option<&str>) -> anyhow::Result<Vec<(i64, String)>> {
    let all: Vec<(i64, String)> = organization::Entity::find()
        .order_by_asc(organization::Column::Id)
        .all(&state.db)
        .await?
        .into_iter()
        .map(|o| (o.id, o.code))
        .collect();
    let Some(wanted) = org else { return Ok(all) };
    let found = all
        .iter()
        .find(|(id, code)| wanted == code || wanted.parse::<i64>().ok() == Some(*id));
    match found {
        Some(o) => Ok(vec![o.clone()]),
        None => {
            let mut names: Vec<String> = all
                .iter()
                .take(20)
                .map(|(id, code)| format!("{id} ({code})"))
                .collect();
            if all.len() > 20 {
                names.push(format!("… {} more", all.len() - 20));
            }
            anyhow::bail!(
                "--org: unknown organization {wanted:?} (valid: {})",
                if names.is_empty() {
                    "none; run `campus seed` first".to_owned()
                } else {
                    names.join(", ")
                }
            )
        }
    }
}

/// Checks the plan against the database before any work starts.
pub(crate) async fn resolve(
    state: &AppState,
    plan: &Plan,
) -> anyhow::Result<(Vec<(i64, String)>, Vec<Model>)> {
    if !state.cache_enabled {
        anyhow::bail!("CACHE_DISABLED: the cache is disabled, there is nothing to warm");
    }
    if plan.pages == 0 {
        anyhow::bail!("--pages: must be at least 1");
    }
    let models = if plan.models.is_empty() {
        Model::ALL.to_vec()
    } else {
        plan.models
            .iter()
            .map(|m| parse_model(m))
            .collect::<anyhow::Result<Vec<_>>>()?
    };
    Ok((organizations(state, plan.org.as_deref()).await?, models))
}

struct Fetched {
    status: StatusCode,
    cache: String,
    body: bytes::Bytes,
}

async fn get(app: &axum::Router, host: &str, token: &str, uri: &str) -> anyhow::Result<Fetched> {
    let request = Request::get(uri)
        .header(header::HOST, host)
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .body(Body::empty())?;
    let response = app.clone().oneshot(request).await?;
    let status = response.status();
    let cache = response
        .headers()
        .get("x-cache")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let body = axum::body::to_bytes(response.into_body(), 64 << 20).await?;
    Ok(Fetched {
        status,
        cache,
        body,
    })
}

#[derive(Default)]
struct Tally {
    written: u64,
    bytes: u64,
    already: u64,
    errors: Vec<String>,
}

impl Tally {
    fn count(&mut self, uri: &str, f: &Fetched) {
        if !f.status.is_success() {
            self.errors.push(format!("GET {uri}: {}", f.status));
        } else if f.cache == "HIT" {
            self.already += 1;
        } else {
            // MISS stored the entry; STALE served the old one and refreshed it.
            self.written += 1;
            self.bytes += f.body.len() as u64;
        }
    }
}

/// One organization and model: list pages, then the details of their rows.
async fn unit(app: &axum::Router, plan: &Plan, token: &str, model: Model) -> Tally {
    let path = model.path();
    let mut tally = Tally::default();
    if model == Model::Dashboard {
        match get(app, &plan.host, token, path).await {
            Ok(f) => tally.count(path, &f),
            Err(e) => tally.errors.push(format!("GET {path}: {e}")),
        }
        return tally;
    }
    let mut ids = Vec::new();
    for page in 1..=plan.pages {
        let uri = format!("{path}?page={page}");
        let fetched = match get(app, &plan.host, token, &uri).await {
            Ok(f) => f,
            Err(e) => {
                tally.errors.push(format!("GET {uri}: {e}"));
                break;
            }
        };
        tally.count(&uri, &fetched);
        if !fetched.status.is_success() {
            break;
        }
        let Ok(page) = serde_json::from_slice::<serde_json::Value>(&fetched.body) else {
            break;
        };
        if let Some(rows) = page["results"].as_array() {
            ids.extend(rows.iter().filter_map(|r| r["id"].as_i64()));
        }
        if page["next"].is_null() {
            break;
        }
    }
    for id in ids {
        let uri = format!("{path}{id}/");
        match get(app, &plan.host, token, &uri).await {
            Ok(f) => tally.count(&uri, &f),
            Err(e) => tally.errors.push(format!("GET {uri}: {e}")),
        }
    }
    tally
}

/// Warms what `plan` names, calling `progress` after each unit of work.
pub(crate) async fn warm(
    state: &AppState,
    plan: &Plan,
    progress: impl Fn(Progress),
) -> anyhow::Result<Summary> {
    let start = Instant::now();
    let (orgs, models) = resolve(state, plan).await?;
    let app = crate::server::app(state.clone());
    let mut summary = Summary {
        orgs: orgs.len() as u64,
        models: models.len() as u64,
        ..Summary::default()
    };
    // Reads as an active user of each organization (any role may read every
    // cached view), preferring an admin.
    let mut units: Vec<(i64, String, Model)> = Vec::new();
    for (org, code) in &orgs {
        let reader = user::Entity::find()
            .filter(user::Column::OrganizationId.eq(*org))
            .filter(user::Column::IsActive.eq(true))
            .order_by_asc(user::Column::Role)
            .one(&state.db)
            .await?;
        let Some(reader) = reader else {
            summary.errors += 1;
            summary.error_samples.push(format!(
                "organization {org} ({code}): no active user to read as"
            ));
            continue;
        };
        let token = state
            .jwt
            .issue(reader.id, *org, reader.token_version, false)?;
        for model in &models {
            units.push((*org, token.clone(), *model));
        }
    }
    let total = units.len() as u64;
    let mut done = 0;
    // Owned captures: a future borrowing from its closure is not provably
    // `Send` for every lifetime, and the admin endpoint spawns this.
    let shared = std::sync::Arc::new(plan.clone());
    let jobs: Vec<_> = units
        .into_iter()
        .map(|(org, token, model)| {
            let (app, plan) = (app.clone(), shared.clone());
            async move { (org, model, unit(&app, &plan, &token, model).await) }
        })
        .collect();
    let mut results = futures::stream::iter(jobs).buffer_unordered(plan.concurrency.max(1));
    while let Some((org, model, tally)) = results.next().await {
        done += 1;
        summary.written += tally.written;
        summary.bytes += tally.bytes;
        summary.already_cached += tally.already;
        summary.errors += tally.errors.len() as u64;
        for e in tally.errors {
            if summary.error_samples.len() < 5 {
                summary
                    .error_samples
                    .push(format!("organization {org}: {e}"));
            }
        }
        progress(Progress {
            org,
            model: model.collection().to_owned(),
            written: tally.written,
            done,
            total,
        });
    }
    // What was counted as written is stored before the summary says so.
    state.cache.settle().await;
    summary.seconds = start.elapsed().as_secs_f64();
    Ok(summary)
}
