//! The fault and load harness (issue 6): SPEC §5's guarantees checked against
//! real processes.
//!
//! Every scenario starts its own PostgreSQL cluster (with `pg_stat_statements`)
//! and its own `redis-server` on free loopback ports, seeds three
//! organizations, starts two `campus serve` processes sharing them, runs a
//! bounded mixed load from several tokens of each organization (see `load`),
//! injects its fault, and hands the recorded history to the checker (see
//! `history`). Each writes its row of `RELIABILITY.md` to
//! `target/chaos/<scenario>.md`.
//!
//! Short mode (the test suite) runs each load for seconds; `CHAOS_FULL=1`
//! (`bench/chaos.sh`) runs longer, with more readers.
#![allow(unreachable_pub)]

mod commit;
mod history;
mod load;
mod procs;
mod scaleout;
mod scenarios;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use load::{Summary, World};
use procs::{Campus, Pg, Proxy, Redis, Scratch};
use sea_orm::sqlx::{self, PgPool, Row as _};

pub const PREFIX: &str = "chaos";
const JWT_SECRET: &str = "chaos-secret-0f1e2d3c4b5a69788796a5b4";

/// How much load, and for how long.
#[derive(Debug, Clone, Copy)]
pub struct Mode {
    pub full: bool,
    pub readers: usize,
    /// Load before the fault, and after it ends.
    pub warm: Duration,
    pub after: Duration,
    /// Pause between two writes of one writer.
    pub write_pause: Duration,
}

impl Mode {
    pub fn get() -> Mode {
        if std::env::var("CHAOS_FULL").is_ok_and(|v| v == "1") {
            Mode {
                full: true,
                readers: 24,
                warm: Duration::from_secs(10),
                after: Duration::from_secs(15),
                write_pause: Duration::from_millis(5),
            }
        } else {
            Mode {
                full: false,
                readers: 6,
                warm: Duration::from_secs(2),
                after: Duration::from_secs(3),
                write_pause: Duration::from_millis(50),
            }
        }
    }
}

/// The processes of one scenario.
pub struct Rig {
    pub campus: Vec<Campus>,
    pub proxy: Option<Proxy>,
    pub redis: Redis,
    pub pg: Pg,
    pub db: PgPool,
    pub env: Vec<(String, String)>,
    pub scratch: Scratch,
}

impl Rig {
    /// PostgreSQL and Redis of its own, three seeded organizations, and one
    /// `campus serve` per entry of `instances` (extra environment of each).
    pub async fn start(tag: &str, instances: &[&[(&str, &str)]]) -> Rig {
        Self::start_with(tag, instances, false).await
    }

    /// [`start`](Self::start), with instance 0 reaching Redis through a
    /// [`Proxy`] of its own when `proxied`.
    pub async fn start_with(tag: &str, instances: &[&[(&str, &str)]], proxied: bool) -> Rig {
        let pg = Pg::start();
        let redis = Redis::start();
        let proxy = if proxied {
            Some(Proxy::start(redis.port).await)
        } else {
            None
        };
        let scratch = Scratch::new(tag);
        let db_url = pg.url("postgres");
        let env: Vec<(String, String)> = [
            ("DATABASE_URL", db_url.as_str()),
            ("REDIS_URL", &redis.url()),
            ("JWT_SECRET", JWT_SECRET),
            ("CACHE_KEY_PREFIX", PREFIX),
            ("RUST_LOG", "info"),
            ("NO_COLOR", "1"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let out = Campus::campus_cmd(&env)
            .args([
                "seed",
                "--orgs",
                "3",
                "--faculty",
                "40",
                "--students",
                "300",
            ])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "seed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let db = PgPool::connect(&db_url).await.unwrap();
        sqlx::query("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
            .execute(&db)
            .await
            .unwrap();
        let campus = instances
            .iter()
            .enumerate()
            .map(|(i, extra)| {
                let mut env = env.clone();
                env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
                if let (0, Some(p)) = (i, &proxy) {
                    env.push(("REDIS_URL".into(), p.url()));
                }
                Campus::spawn(&format!("campus{i}"), &scratch.0, &env)
            })
            .collect();
        let rig = Rig {
            campus,
            proxy,
            redis,
            pg,
            db,
            env,
            scratch,
        };
        for c in &rig.campus {
            rig.wait_ready(c).await;
        }
        rig
    }

    /// Until `/readyz` says the cache is ok and the outside-writes listener has
    /// swept (its first sweep bumps every counter).
    pub async fn wait_ready(&self, c: &Campus) {
        let client = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let v: serde_json::Value = match client.get(format!("{}/readyz", c.base)).send().await {
                Ok(r) => r.json().await.unwrap_or_default(),
                Err(_) => serde_json::Value::Null,
            };
            if v["outside_writes"] == "listening" && v["cache"] == "ok" {
                return;
            }
            assert!(Instant::now() < deadline, "{} never ready: {v}", c.name);
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub fn bases(&self) -> Vec<String> {
        self.campus.iter().map(|c| c.base.clone()).collect()
    }

    /// Fails if a token, the JWT secret or a password reached a log.
    pub fn assert_logs_keep_secrets(&self, world: &World) {
        let mut secrets: Vec<&str> = vec![JWT_SECRET, "campus-demo"];
        for o in &world.orgs {
            secrets.push(&o.token);
            secrets.push(&o.reader_token);
        }
        for c in &self.campus {
            let text = std::fs::read_to_string(&c.log).unwrap_or_default();
            for s in &secrets {
                assert!(
                    !text.contains(s),
                    "{}'s log holds a secret ({}…)",
                    c.name,
                    &s[..6]
                );
            }
        }
    }
}

/// The running load; stopping it waits for every task.
pub struct Load {
    world: Arc<World>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    pub fn start(world: &Arc<World>, mode: Mode) -> Load {
        let mut tasks = Vec::new();
        for _ in 0..mode.readers {
            tasks.push(tokio::spawn(load::reader(world.clone())));
        }
        for oi in 0..world.orgs.len() {
            tasks.push(tokio::spawn(load::writer(
                world.clone(),
                oi,
                mode.write_pause,
            )));
        }
        Load {
            world: world.clone(),
            tasks,
        }
    }

    pub async fn stop(self) {
        self.world.stop.store(true, Ordering::SeqCst);
        for t in self.tasks {
            t.await.unwrap();
        }
    }
}

/// Writes whose 2xx arrived but whose effect the database does not hold.
pub async fn lost_writes(db: &PgPool, world: &World) -> Vec<String> {
    use history::Key;
    let mut lost = Vec::new();
    for (key, version) in world.history.last_acked() {
        let have: Option<u64> = match key {
            Key::DeptName(id) => name_version(db, "departments", "name", id).await,
            Key::FacultyName(id) => name_version(db, "faculty", "last_name", id).await,
            Key::StudentName(id) => name_version(db, "students", "first_name", id).await,
            Key::DeptExists(id) => {
                let n: i64 = sqlx::query("SELECT count(*) FROM departments WHERE id = $1")
                    .bind(id)
                    .fetch_one(db)
                    .await
                    .unwrap()
                    .get(0);
                // Created (1) and present, or deleted (2) and absent.
                Some(if n == 1 { 1 } else { 2 })
            }
            Key::StudentCount(org) => {
                let n: i64 = sqlx::query(
                    "SELECT count(*) FROM students s JOIN organizations o \
                     ON o.id = s.organization_id WHERE o.code = $1",
                )
                .bind(format!("org{org}"))
                .fetch_one(db)
                .await
                .unwrap()
                .get(0);
                Some(n as u64)
            }
        };
        let ok = match key {
            Key::DeptExists(_) => have == Some(version),
            _ => have.is_some_and(|h| h >= version),
        };
        if !ok {
            lost.push(format!("{key:?}: acknowledged {version}, stored {have:?}"));
        }
    }
    lost
}

async fn name_version(db: &PgPool, table: &str, column: &str, id: i64) -> Option<u64> {
    // Table and column names are this file's own constants.
    let row = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {column} FROM {table} WHERE id = $1"
    )))
    .bind(id)
    .fetch_optional(db)
    .await
    .unwrap()?;
    let name: String = row.get(0);
    Some(history::version_of(&name))
}

/// A `RELIABILITY.md` row.
pub struct Row {
    pub scenario: &'static str,
    pub fault: String,
    pub load: Summary,
    pub readers: usize,
    /// One per organization in the mixed load; none in the stampede.
    pub writers: usize,
    pub stale: usize,
    pub in_window: String,
    pub lost: usize,
    pub during: Summary,
    pub notes: String,
}

impl Row {
    pub fn write(&self) {
        let dir = std::env::var("CARGO_TARGET_DIR")
            .map(std::path::PathBuf::from)
            .unwrap_or_else(|_| {
                std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target")
            })
            .join("chaos");
        std::fs::create_dir_all(&dir).unwrap();
        let line = format!(
            "| {} | {} requests, {} readers + {} writers, 2 instances | {} | {} ({} of them 503) | {} | {} | {} | {:.1} ms | {} | `CHAOS_FULL=1 cargo test --release -p campus --test chaos -- {} --nocapture` |\n",
            self.scenario,
            self.load.requests,
            self.readers,
            self.writers,
            self.fault,
            self.load.s5xx,
            self.load.s503,
            self.stale,
            self.in_window,
            self.lost,
            self.during.p99.as_secs_f64() * 1e3,
            self.notes,
            self.scenario,
        );
        println!("{line}");
        std::fs::write(dir.join(format!("{}.md", self.scenario)), line).unwrap();
    }
}

/// Sum of a Prometheus metric's samples (every label set) on one instance.
pub async fn metric_sum(base: &str, name: &str) -> f64 {
    let text = reqwest::get(format!("{base}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}
