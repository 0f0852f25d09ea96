//! The bounded mixed load: readers of lists, details, the dashboard and search,
//! and one writer per organization (department renames and replacements,
//! faculty and student edits, created students, created then deleted
//! departments), spread over the instances that are up, from several tokens.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::{Client, Method};
use serde_json::{Value, json};

use crate::history::{History, Key, Read, Seen, Write, version_of, with_version};

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

fn dept_seen(d: &Value, seen: &mut Vec<(Key, Seen)>) {
    if let (Some(id), Some(name)) = (d["id"].as_i64(), d["name"].as_str()) {
        seen.push((Key::DeptName(id), Seen::Version(version_of(name))));
    }
}

/// One reader: random organization, instance, endpoint, until told to stop.
pub async fn reader(world: Arc<World>) {
    while !world.stop.load(Ordering::SeqCst) {
        let org = &world.orgs[fastrand::usize(..world.orgs.len())];
        let oi = (org.index - 1) as usize;
        let instance = world.pick_instance();
        let token = if fastrand::bool() {
            &org.token
        } else {
            &org.reader_token
        };
        let created: Vec<i64> = world.created[oi].lock().unwrap().clone();
        let mut may_404 = false;
        let (path, kind) = match fastrand::u8(..9) {
            0 => ("/api/departments/?page_size=500".to_owned(), "depts"),
            1 => {
                let id = if !created.is_empty() && fastrand::bool() {
                    may_404 = true;
                    created[fastrand::usize(..created.len())]
                } else {
                    org.depts[fastrand::usize(..org.depts.len())].0
                };
                (format!("/api/departments/{id}/"), "dept")
            }
            2 | 3 => ("/api/faculty/?page_size=500".to_owned(), "faculty"),
            4 => {
                let id = org.faculty[fastrand::usize(..org.faculty.len())].0;
                (format!("/api/faculty/{id}/"), "one_faculty")
            }
            5 => {
                let page = 1 + fastrand::usize(..org.students.len().div_ceil(100));
                (
                    format!("/api/students/?page_size=100&page={page}"),
                    "students",
                )
            }
            6 => {
                let id = org.students[fastrand::usize(..org.students.len())].0;
                (format!("/api/students/{id}/"), "one_student")
            }
            7 => ("/api/stats/dashboard/".to_owned(), "dashboard"),
            _ => {
                let roll = &org.students[fastrand::usize(..org.students.len())].2;
                (format!("/api/students/?search={roll}"), "students")
            }
        };
        let (start, end, status, x_cache, v) = world
            .send_opt(instance, Method::GET, &path, token, None, may_404)
            .await;
        let mut seen = Vec::new();
        match (status, kind) {
            (200, "depts") => {
                let rows = v["results"].as_array().cloned().unwrap_or_default();
                for d in &rows {
                    dept_seen(d, &mut seen);
                }
                for id in &created {
                    let present = rows.iter().any(|d| d["id"].as_i64() == Some(*id));
                    seen.push((
                        Key::DeptExists(*id),
                        if present {
                            Seen::Version(1)
                        } else {
                            Seen::Absent
                        },
                    ));
                }
            }
            (200, "dept") => {
                dept_seen(&v, &mut seen);
                if let Some(id) = v["id"].as_i64() {
                    seen.push((Key::DeptExists(id), Seen::Version(1)));
                }
            }
            (404, "dept") => {
                if let Some(id) = path
                    .trim_end_matches('/')
                    .rsplit('/')
                    .next()
                    .and_then(|s| s.parse().ok())
                {
                    seen.push((Key::DeptExists(id), Seen::Absent));
                }
            }
            (200, "faculty" | "students") => {
                for f in v["results"].as_array().cloned().unwrap_or_default() {
                    observe_person(&f, &mut seen);
                }
            }
            (200, "one_faculty" | "one_student") => observe_person(&v, &mut seen),
            (200, "dashboard") => {
                if let Some(n) = v["totals"]["students"].as_u64() {
                    seen.push((Key::StudentCount(org.index), Seen::Version(n)));
                }
                for d in v["departments"].as_array().cloned().unwrap_or_default() {
                    dept_seen(&d, &mut seen);
                }
            }
            _ => {}
        }
        if !seen.is_empty() {
            world.history.read(Read {
                start,
                end,
                instance,
                path,
                x_cache,
                seen,
            });
        }
    }
}

fn observe_person(p: &Value, seen: &mut Vec<(Key, Seen)>) {
    let Some(id) = p["id"].as_i64() else { return };
    if let Some(n) = p["last_name"].as_str()
        && p.get("employee_id").is_some()
    {
        seen.push((Key::FacultyName(id), Seen::Version(version_of(n))));
    }
    if let Some(n) = p["first_name"].as_str()
        && p.get("roll_number").is_some()
    {
        seen.push((Key::StudentName(id), Seen::Version(version_of(n))));
    }
    dept_seen(&p["department"], seen);
}

/// The one writer of an organization: every entity it changes is its alone, and it
/// writes in sequence, so versions are totally ordered.
pub async fn writer(world: Arc<World>, oi: usize, pause: Duration) {
    let org = world.orgs[oi].clone();
    let mut versions: HashMap<Key, (u64, String)> = HashMap::new();
    for (id, name, _) in &org.depts {
        versions.insert(Key::DeptName(*id), (0, name.clone()));
    }
    for (id, name) in &org.faculty {
        versions.insert(Key::FacultyName(*id), (0, name.clone()));
    }
    for (id, name, _) in &org.students {
        versions.insert(Key::StudentName(*id), (0, name.clone()));
    }
    let mut count = org.student_count;
    let mut serial = 0u64;
    while !world.stop.load(Ordering::SeqCst) {
        serial += 1;
        let instance = match world.writes_to.load(Ordering::SeqCst) {
            usize::MAX => world.pick_instance(),
            i => i,
        };
        let roll = fastrand::u8(..100);
        let (method, path, body, key, version) = if roll < 30 {
            // The first department of each organization is left to the outside
            // (plain SQL) writer of the outside-writes scenario.
            let (id, _, _) = org.depts[1 + fastrand::usize(..org.depts.len() - 1)];
            let (v, name) = versions.get(&Key::DeptName(id)).unwrap().clone();
            let name = with_version(&name, v + 1);
            if roll < 22 {
                (
                    Method::PATCH,
                    format!("/api/departments/{id}/"),
                    json!({"name": name}),
                    Key::DeptName(id),
                    v + 1,
                )
            } else {
                // PUT replaces: every writable field. The code is left as it was.
                let code = org.depts.iter().find(|d| d.0 == id).unwrap().2.clone();
                (
                    Method::PUT,
                    format!("/api/departments/{id}/"),
                    json!({"code": code, "name": name}),
                    Key::DeptName(id),
                    v + 1,
                )
            }
        } else if roll < 50 {
            let (id, _) = org.faculty[fastrand::usize(..org.faculty.len())];
            let (v, name) = versions.get(&Key::FacultyName(id)).unwrap().clone();
            (
                Method::PATCH,
                format!("/api/faculty/{id}/"),
                json!({"last_name": with_version(&name, v + 1)}),
                Key::FacultyName(id),
                v + 1,
            )
        } else if roll < 70 {
            let (id, _, _) = org.students[fastrand::usize(..org.students.len())];
            let (v, name) = versions.get(&Key::StudentName(id)).unwrap().clone();
            (
                Method::PATCH,
                format!("/api/students/{id}/"),
                json!({"first_name": with_version(&name, v + 1)}),
                Key::StudentName(id),
                v + 1,
            )
        } else if roll < 80 {
            let (program, dept) = org.programs[fastrand::usize(..org.programs.len())];
            let tag = format!("{}x{}x{serial}", org.index, fastrand::u32(..));
            (
                Method::POST,
                "/api/students/".to_owned(),
                json!({
                    "roll_number": format!("C{tag}"), "first_name": "Chaos", "last_name": "Student",
                    "email": format!("c{tag}@chaos.example"), "semester": 1, "batch": 2026,
                    "department_id": dept, "program_id": program,
                }),
                Key::StudentCount(org.index),
                count + 1,
            )
        } else {
            let created: Vec<i64> = world.created[oi].lock().unwrap().clone();
            if roll < 90 || created.is_empty() {
                let code = format!("X{}{serial}", fastrand::u32(..1000));
                (
                    Method::POST,
                    "/api/departments/".to_owned(),
                    json!({"code": code, "name": format!("Chaos {code}")}),
                    Key::DeptExists(0),
                    1,
                )
            } else {
                let id = created[fastrand::usize(..created.len())];
                (
                    Method::DELETE,
                    format!("/api/departments/{id}/"),
                    Value::Null,
                    Key::DeptExists(id),
                    2,
                )
            }
        };
        let body = (!body.is_null()).then_some(body);
        let start = Instant::now();
        // A delete is recorded as sent before it is sent: a read that finds the
        // row gone while it runs is not stale.
        if key != Key::DeptExists(0) && version == 2 && method == Method::DELETE {
            world.history.write(Write {
                key,
                version,
                instance,
                start,
                ack: None,
            });
        }
        let (_, end, status, _, v) = world
            .send(instance, method.clone(), &path, &org.token, body)
            .await;
        let ok = (200..300).contains(&status);
        match (method, key) {
            (Method::POST, Key::DeptExists(_)) => {
                if let (true, Some(id)) = (ok, v["id"].as_i64()) {
                    world.history.write(Write {
                        key: Key::DeptExists(id),
                        version: 1,
                        instance,
                        start,
                        ack: Some(end),
                    });
                    world.created[oi].lock().unwrap().push(id);
                }
            }
            (Method::DELETE, Key::DeptExists(id)) => {
                if ok {
                    world.history.write(Write {
                        key,
                        version: 2,
                        instance,
                        start,
                        ack: Some(end),
                    });
                    world.created[oi].lock().unwrap().retain(|&x| x != id);
                }
            }
            (_, Key::StudentCount(_)) => {
                if ok {
                    count += 1;
                    world.history.write(Write {
                        key,
                        version: count,
                        instance,
                        start,
                        ack: Some(end),
                    });
                }
            }
            _ => {
                let entry = versions.get_mut(&key).unwrap();
                // Lost or not, the next write of this entity gets a higher version.
                entry.0 = version;
                world.history.write(Write {
                    key,
                    version,
                    instance,
                    start,
                    ack: ok.then_some(end),
                });
            }
        }
        tokio::time::sleep(pause).await;
    }
}
