//! The bounded mixed load: readers of lists, details, the dashboard and search,
//! and one writer per organization (department renames and replacements,
//! faculty and student edits, created students, created then deleted
//! departments), spread over the instances that are up, from several tokens.

mod readers;
mod writers;

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use reqwest::{Client, Method};
use serde_json::{Value, json};

use crate::history::History;
pub use readers::reader;
pub use writers::writer;

/// One request as the client saw it.
#[derive(Debug, Clone)]
pub struct Sample {
    pub start: Instant,
    pub took: Duration,
    pub instance: usize,
    /// 0: no HTTP answer (connection refused or reset, timeout).
    pub status: u16,
    pub x_cache: String,
    pub write: bool,
    pub path: String,
}

/// What the requests of a time range came to.
#[derive(Debug, Default, Clone)]
pub struct Summary {
    pub requests: usize,
    pub s5xx: usize,
    pub s503: usize,
    pub transport: usize,
    pub p50: Duration,
    pub p99: Duration,
    pub max: Duration,
    pub x_cache: HashMap<String, usize>,
    pub unexpected: Vec<String>,
}

impl Summary {
    pub fn of<'a>(samples: impl IntoIterator<Item = &'a Sample>) -> Summary {
        let mut s = Summary::default();
        let mut took = Vec::new();
        for x in samples {
            s.requests += 1;
            match x.status {
                0 => s.transport += 1,
                503 => {
                    s.s503 += 1;
                    s.s5xx += 1;
                }
                500..=599 => {
                    s.s5xx += 1;
                    s.unexpected.push(format!("{} {}", x.status, x.path));
                }
                200..=299 => {}
                _ => s.unexpected.push(format!("{} {}", x.status, x.path)),
            }
            if !x.x_cache.is_empty() {
                *s.x_cache.entry(x.x_cache.clone()).or_default() += 1;
            }
            took.push(x.took);
        }
        took.sort();
        let q = |p: f64| {
            took.get(((took.len() as f64 * p).ceil() as usize).saturating_sub(1))
                .copied()
                .unwrap_or_default()
        };
        s.p50 = q(0.50);
        s.p99 = q(0.99);
        s.max = took.last().copied().unwrap_or_default();
        s
    }

    pub fn hits(&self) -> usize {
        self.x_cache.get("HIT").copied().unwrap_or(0)
            + self.x_cache.get("STALE").copied().unwrap_or(0)
    }

    pub fn bypass(&self) -> usize {
        self.x_cache.get("BYPASS").copied().unwrap_or(0)
    }
}

/// An organization as the load sees it.
#[derive(Debug, Clone)]
pub struct Org {
    pub index: i64,
    pub token: String,
    pub reader_token: String,
    pub depts: Vec<(i64, String, String)>,
    pub faculty: Vec<(i64, String)>,
    pub students: Vec<(i64, String, String)>,
    pub programs: Vec<(i64, i64)>,
    pub student_count: u64,
}

pub struct World {
    pub bases: Vec<String>,
    pub up: Vec<AtomicBool>,
    pub orgs: Vec<Org>,
    /// Departments the writers created and not yet deleted, per organization.
    pub created: Vec<Mutex<Vec<i64>>>,
    pub history: History,
    pub samples: Mutex<Vec<Sample>>,
    pub client: Client,
    pub stop: AtomicBool,
    /// The instance every write goes to, or `usize::MAX` for any.
    pub writes_to: std::sync::atomic::AtomicUsize,
}

pub async fn login(client: &Client, base: &str, user: &str) -> String {
    let v: Value = client
        .post(format!("{base}/api/auth/token/"))
        .json(&json!({"username": user, "password": "campus-demo"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    v["access"]
        .as_str()
        .unwrap_or_else(|| panic!("login {user}: {v}"))
        .to_owned()
}

async fn get_all(client: &Client, base: &str, token: &str, path: &str) -> Vec<Value> {
    let v: Value = client
        .get(format!("{base}{path}"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    v["results"].as_array().cloned().unwrap_or_default()
}

impl World {
    pub async fn new(bases: Vec<String>, orgs: i64) -> World {
        let client = Client::builder()
            .timeout(Duration::from_secs(15))
            .pool_max_idle_per_host(64)
            .build()
            .unwrap();
        let base = &bases[0];
        let mut list = Vec::new();
        for i in 1..=orgs {
            let token = login(&client, base, &format!("org{i}-admin")).await;
            let reader_token = login(&client, base, &format!("org{i}-staff")).await;
            let depts = get_all(&client, base, &token, "/api/departments/?page_size=500")
                .await
                .iter()
                .map(|d| {
                    (
                        d["id"].as_i64().unwrap(),
                        d["name"].as_str().unwrap().to_owned(),
                        d["code"].as_str().unwrap().to_owned(),
                    )
                })
                .collect();
            let faculty = get_all(&client, base, &token, "/api/faculty/?page_size=500")
                .await
                .iter()
                .map(|d| {
                    (
                        d["id"].as_i64().unwrap(),
                        d["last_name"].as_str().unwrap().to_owned(),
                    )
                })
                .collect();
            let students: Vec<(i64, String, String)> =
                get_all(&client, base, &token, "/api/students/?page_size=500")
                    .await
                    .iter()
                    .map(|d| {
                        (
                            d["id"].as_i64().unwrap(),
                            d["first_name"].as_str().unwrap().to_owned(),
                            d["roll_number"].as_str().unwrap().to_owned(),
                        )
                    })
                    .collect();
            let programs = get_all(&client, base, &token, "/api/programs/?page_size=500")
                .await
                .iter()
                .map(|d| {
                    (
                        d["id"].as_i64().unwrap(),
                        d["department"]["id"].as_i64().unwrap(),
                    )
                })
                .collect();
            let student_count = students.len() as u64;
            list.push(Org {
                index: i,
                token,
                reader_token,
                depts,
                faculty,
                students,
                programs,
                student_count,
            });
        }
        World {
            up: bases.iter().map(|_| AtomicBool::new(true)).collect(),
            created: list.iter().map(|_| Mutex::new(Vec::new())).collect(),
            bases,
            orgs: list,
            history: History::default(),
            samples: Mutex::new(Vec::new()),
            client,
            stop: AtomicBool::new(false),
            writes_to: std::sync::atomic::AtomicUsize::new(usize::MAX),
        }
    }

    fn pick_instance(&self) -> usize {
        let up: Vec<usize> = (0..self.bases.len())
            .filter(|&i| self.up[i].load(Ordering::SeqCst))
            .collect();
        up[fastrand::usize(..up.len())]
    }

    pub fn samples_between(&self, from: Instant, to: Instant) -> Summary {
        let samples = self.samples.lock().unwrap();
        Summary::of(samples.iter().filter(|s| s.start >= from && s.start < to))
    }

    pub fn all_samples(&self) -> Summary {
        Summary::of(self.samples.lock().unwrap().iter())
    }

    /// Sends one request and records it; the body is parsed when it is JSON.
    pub async fn send(
        &self,
        instance: usize,
        method: Method,
        path: &str,
        token: &str,
        body: Option<Value>,
    ) -> (Instant, Instant, u16, String, Value) {
        self.send_opt(instance, method, path, token, body, false)
            .await
    }

    /// [`send`](Self::send), where a 404 is an expected answer (a department the
    /// writer may just have deleted).
    pub async fn send_opt(
        &self,
        instance: usize,
        method: Method,
        path: &str,
        token: &str,
        body: Option<Value>,
        may_404: bool,
    ) -> (Instant, Instant, u16, String, Value) {
        let url = format!("{}{path}", self.bases[instance]);
        let write = method != Method::GET;
        let mut req = self.client.request(method, url).bearer_auth(token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let start = Instant::now();
        let (status, x_cache, value) = match req.send().await {
            Ok(r) => {
                let status = r.status().as_u16();
                let x = r
                    .headers()
                    .get("x-cache")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("")
                    .to_owned();
                let v = r.json::<Value>().await.unwrap_or(Value::Null);
                (status, x, v)
            }
            Err(_) => (0, String::new(), Value::Null),
        };
        let end = Instant::now();
        self.samples.lock().unwrap().push(Sample {
            start,
            took: end - start,
            instance,
            status: if may_404 && status == 404 {
                200
            } else {
                status
            },
            x_cache: x_cache.clone(),
            write,
            path: path.to_owned(),
        });
        (start, end, status, x_cache, value)
    }
}
