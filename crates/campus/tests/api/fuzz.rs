//! Tenant isolation under random traffic (SPEC §5.8): 10,000 requests in all,
//! 2,500 in each of the four runs (SQLite and PostgreSQL, each with Redis behind
//! L1 and with L1 alone), from tokens of three organizations (every role), through the cache (Redis
//! behind L1, or L1 alone), served in process by the application's router.
//!
//! Requests: lists with random filters (other organizations' ids and codes,
//! `organization`-like parameters a client must not be able to use), searches
//! (other organizations' names and e-mails, odd Unicode, very long strings,
//! percent-encoded braces and colons that look like cache keys), orderings,
//! pages, page sizes; details of own, foreign and junk ids; and writes that
//! target other organizations' rows or reference them.
//!
//! Every response must be free of another organization's data: no object of
//! another organization (its id, for the model it is; embedded departments and
//! programs included), no `organization` field but the caller's, no string
//! (e-mail, username, name, code) that only another organization has; no 5xx;
//! another organization's row is a 404 and a reference to one a 400.
//!
//! Requests go 8 at a time (`IN_FLIGHT`), as concurrent clients send them. The
//! seed is random per run and printed with any failure; `CAMPUS_FUZZ_SEED=N`
//! replays a run: the same requests in the same batches (the server may still
//! interleave a batch differently).

use std::collections::{BTreeSet, HashMap, HashSet};

use axum::body::Body;
use axum::http::{Request, StatusCode};
use proptest::strategy::{Strategy, ValueTree};
use proptest::test_runner::{Config as PropConfig, RngAlgorithm, TestRng, TestRunner};
use sea_orm::EntityTrait;
use serde_json::{Value, json};
use tower::ServiceExt;

use crate::helpers::*;

/// Requests per run; four runs make the 10,000 of issue 6.
const REQUESTS: usize = 2_500;
/// Requests in flight at once.
const IN_FLIGHT: usize = 8;
const ORGS: usize = 3;
const ROLES: [&str; 4] = ["admin", "staff", "faculty", "student"];
const RESOURCES: [(&str, &str); 5] = [
    ("departments", "department"),
    ("programs", "program"),
    ("faculty", "faculty"),
    ("students", "student"),
    ("users", "user"),
];

mod tenant_isolation {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sqlite_redis() {
        run(Backend::Sqlite, true).await
    }
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sqlite_l1() {
        run(Backend::Sqlite, false).await
    }
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres_redis() {
        run(Backend::Postgres, true).await
    }
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres_l1() {
        run(Backend::Postgres, false).await
    }
}

/// What each organization owns: row ids per model, codes, and the strings only
/// it has.
#[derive(Default)]
struct Org {
    id: i64,
    ids: HashMap<&'static str, BTreeSet<i64>>,
    /// Department and program codes (shared across organizations by the seed,
    /// so filters with them are legitimate everywhere).
    codes: Vec<String>,
    /// E-mails, usernames, names, employee ids, roll numbers.
    strings: BTreeSet<String>,
}

struct World {
    orgs: Vec<Org>,
    /// Per organization: the strings that only other organizations have.
    foreign_strings: Vec<HashSet<String>>,
}

impl World {
    async fn load(db: &sea_orm::DatabaseConnection) -> World {
        use campus::entity::prelude::*;
        let mut orgs: Vec<Org> = Organization::find()
            .all(db)
            .await
            .unwrap()
            .into_iter()
            .map(|o| Org {
                id: o.id,
                ..Default::default()
            })
            .collect();
        orgs.sort_by_key(|o| o.id);
        assert_eq!(orgs.len(), ORGS);
        let index: HashMap<i64, usize> = orgs.iter().enumerate().map(|(i, o)| (o.id, i)).collect();
        let mut add = |org: i64, model: &'static str, id: i64, strings: Vec<String>| {
            let o = &mut orgs[index[&org]];
            o.ids.entry(model).or_default().insert(id);
            o.strings.extend(strings);
        };
        let depts = Department::find().all(db).await.unwrap();
        for d in &depts {
            add(d.organization_id, "department", d.id, vec![d.name.clone()]);
        }
        let progs = Program::find().all(db).await.unwrap();
        for p in &progs {
            add(p.organization_id, "program", p.id, vec![p.name.clone()]);
        }
        for f in Faculty::find().all(db).await.unwrap() {
            let s = vec![f.email, f.employee_id, f.first_name, f.last_name];
            add(f.organization_id, "faculty", f.id, s);
        }
        for s in Student::find().all(db).await.unwrap() {
            let v = vec![s.email, s.roll_number, s.first_name, s.last_name];
            add(s.organization_id, "student", s.id, v);
        }
        for u in User::find().all(db).await.unwrap() {
            let v = vec![u.email, u.username, u.first_name, u.last_name];
            add(u.organization_id, "user", u.id, v);
        }
        for d in depts {
            orgs[index[&d.organization_id]].codes.push(d.code);
        }
        for p in progs {
            orgs[index[&p.organization_id]].codes.push(p.code);
        }
        let foreign_strings = (0..ORGS)
            .map(|me| {
                let mine = &orgs[me].strings;
                orgs.iter()
                    .enumerate()
                    .filter(|(i, _)| *i != me)
                    .flat_map(|(_, o)| o.strings.iter())
                    .filter(|s| !s.is_empty() && !mine.contains(*s))
                    .cloned()
                    .collect()
            })
            .collect();
        World {
            orgs,
            foreign_strings,
        }
    }

    fn is_foreign(&self, me: usize, model: &str, id: i64) -> bool {
        self.orgs
            .iter()
            .enumerate()
            .any(|(i, o)| i != me && o.ids.get(model).is_some_and(|s| s.contains(&id)))
    }

    /// Another organization's id of `model`, if any.
    fn foreign_id(&self, g: &mut Gen, me: usize, model: &str) -> i64 {
        let other = (me + 1 + g.rng.usize(..ORGS - 1)) % ORGS;
        let ids: Vec<i64> = self.orgs[other].ids[model].iter().copied().collect();
        ids[g.rng.usize(..ids.len())]
    }

    fn own_id(&self, g: &mut Gen, me: usize, model: &str) -> i64 {
        let ids: Vec<i64> = self.orgs[me].ids[model].iter().copied().collect();
        ids[g.rng.usize(..ids.len())]
    }

    fn any_string(&self, g: &mut Gen) -> String {
        let o = &self.orgs[g.rng.usize(..ORGS)];
        let n = g.rng.usize(..o.strings.len());
        o.strings.iter().nth(n).unwrap().clone()
    }
}

/// The seeded sources of randomness: fastrand for choices, proptest's
/// strategies for strings.
struct Gen {
    rng: fastrand::Rng,
    runner: TestRunner,
}

impl Gen {
    fn new(seed: u64) -> Gen {
        let mut bytes = [0u8; 32];
        bytes[..8].copy_from_slice(&seed.to_le_bytes());
        Gen {
            rng: fastrand::Rng::with_seed(seed),
            runner: TestRunner::new_with_rng(
                PropConfig::default(),
                TestRng::from_seed(RngAlgorithm::ChaCha, &bytes),
            ),
        }
    }

    fn from<S: Strategy>(&mut self, s: S) -> S::Value {
        s.new_tree(&mut self.runner).unwrap().current()
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.rng.usize(..items.len())]
    }

    /// A search term or filter value meant to hurt.
    fn nasty(&mut self, world: &World) -> String {
        match self.rng.u8(..10) {
            0 | 1 => world.any_string(self),
            2 => self.from("\\PC{0,24}"),
            3 => self.from(proptest::arbitrary::any::<String>()),
            4 => "x".repeat(self.rng.usize(500..4000)),
            5 => self
                .pick(&[
                    "{org_2}",
                    "org_2:",
                    "campustest:v1:list:faculty:org_2:page_1",
                    "}:{",
                    "%7Borg_1%7D%3A",
                    "*",
                    "%",
                    "_",
                    "\\",
                    "' OR 1=1 --",
                ])
                .to_string(),
            6 => format!("{}", self.rng.i64(-5..100_000)),
            7 => world.orgs[self.rng.usize(..ORGS)].codes[0].clone(),
            _ => self.from("[a-z]{1,3}"),
        }
    }
}

/// One request to send.
struct Req {
    org: usize,
    role: &'static str,
    method: &'static str,
    uri: String,
    body: Option<Value>,
    /// The model of the object(s) a success returns.
    model: Option<&'static str>,
    list: bool,
    /// What this request must get: another organization's row is a 404; a
    /// reference to one is a 400; a role that may not write gets 403 first.
    expect: Expect,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Expect {
    Any,
    /// A foreign row as the target.
    NotFound,
    /// A foreign row referenced by a write body.
    Rejected,
}

fn enc(pairs: &[(String, String)]) -> String {
    serde_urlencoded::to_string(pairs).unwrap()
}

fn list_request(g: &mut Gen, w: &World, me: usize) -> (String, &'static str) {
    let (resource, model) = *g.pick(&RESOURCES);
    let mut q: Vec<(String, String)> = Vec::new();
    let mut raw = Vec::new();
    for _ in 0..g.rng.usize(0..5) {
        let (k, v) = match g.rng.u8(..12) {
            0 => (
                "page".into(),
                g.pick(&["1", "2", "3", "0", "-1", "x", "99999999999999999999"])
                    .to_string(),
            ),
            1 => (
                "page_size".into(),
                g.pick(&["1", "2", "7", "50", "500", "600", "0", "x"])
                    .to_string(),
            ),
            2 | 3 => ("search".into(), g.nasty(w)),
            4 => {
                let f = g
                    .pick(&[
                        "id",
                        "-id",
                        "name",
                        "-code",
                        "email",
                        "-last_name",
                        "semester",
                        "role",
                        "created_at",
                        "-updated_at",
                        "organization",
                        "-organization_id",
                        "password",
                        "password_hash",
                    ])
                    .to_string();
                let n = g.rng.usize(1..3);
                let mut fs = vec![f];
                for _ in 1..n {
                    fs.push(
                        g.pick(&["id", "-first_name", "batch", "-date_joined"])
                            .to_string(),
                    );
                }
                ("ordering".into(), fs.join(","))
            }
            5 => (
                g.pick(&["organization", "organization_id", "org", "org_id"])
                    .to_string(),
                w.orgs[g.rng.usize(..ORGS)].id.to_string(),
            ),
            6 => {
                let other = w.foreign_id(g, me, model);
                (
                    g.pick(&["id", "department", "program", "department_id"])
                        .to_string(),
                    other.to_string(),
                )
            }
            7 => (g.pick(&["department", "program"]).to_string(), {
                let o = &w.orgs[g.rng.usize(..ORGS)];
                g.pick(&o.codes).clone()
            }),
            8 => (
                g.pick(&["semester", "batch", "is_active", "role", "designation"])
                    .to_string(),
                g.nasty(w),
            ),
            9 => (
                "is_active".into(),
                g.pick(&["true", "false", "1", "no", "maybe"]).to_string(),
            ),
            10 => (
                "role".into(),
                g.pick(&["admin", "staff", "student", "root"]).to_string(),
            ),
            _ => {
                // Hand-made percent-encoding, braces and colons included.
                raw.push(
                    g.pick(&[
                        "search=%7B%7D%3A%3A",
                        "search=org_2%3Apage_1",
                        "search=%00",
                        "department=%7BCS%7D",
                        "search=a%2Cb%20c",
                        "page=1&page=2",
                        "search=%F0%9F%98%80",
                        "search=%E2%80%AE",
                    ])
                    .to_string(),
                );
                continue;
            }
        };
        q.push((k, v));
    }
    let mut query = enc(&q);
    for r in raw {
        if !query.is_empty() {
            query.push('&');
        }
        query.push_str(&r);
    }
    let uri = if query.is_empty() {
        format!("/api/{resource}/")
    } else {
        format!("/api/{resource}/?{query}")
    };
    (uri, model)
}

fn generate(g: &mut Gen, w: &World) -> Req {
    let org = g.rng.usize(..ORGS);
    let role = *g.pick(&ROLES);
    let mut req = Req {
        org,
        role,
        method: "GET",
        uri: String::new(),
        body: None,
        model: None,
        list: false,
        expect: Expect::Any,
    };
    match g.rng.u8(..100) {
        0..=54 => {
            let (uri, model) = list_request(g, w, org);
            req.uri = uri;
            req.model = Some(model);
            req.list = true;
        }
        55..=74 => {
            let (resource, model) = *g.pick(&RESOURCES);
            req.model = Some(model);
            let id = match g.rng.u8(..4) {
                0 | 1 => {
                    req.expect = Expect::NotFound;
                    w.foreign_id(g, org, model).to_string()
                }
                2 => w.own_id(g, org, model).to_string(),
                _ => g
                    .pick(&["0", "-1", "abc", "1.5", "99999999999", "%7B1%7D", "1%3A2"])
                    .to_string(),
            };
            req.uri = format!("/api/{resource}/{id}/");
        }
        75..=79 => req.uri = "/api/auth/me/".into(),
        80..=84 => req.uri = "/api/stats/dashboard/".into(),
        _ => write_request(g, w, &mut req),
    }
    req
}

/// Writes that reach for other organizations: their rows as targets, their ids
/// in bodies, organization fields a client must not be able to set.
fn write_request(g: &mut Gen, w: &World, req: &mut Req) {
    let org = req.org;
    let n = g.rng.u64(..u64::MAX);
    let other_org = w.orgs[(org + 1) % ORGS].id;
    match g.rng.u8(..6) {
        0 => {
            // A foreign department referenced by a new faculty member.
            req.method = "POST";
            req.uri = "/api/faculty/".into();
            req.model = Some("faculty");
            req.expect = Expect::Rejected;
            req.body = Some(json!({
                "employee_id": format!("FZ{n}"), "first_name": "Fuzz", "last_name": "Fuzz",
                "email": format!("fz{n}@fuzz.example"), "designation": "Lecturer", "specialization": "x",
                "department_id": w.foreign_id(g, org, "department"), "organization_id": other_org,
            }));
        }
        1 => {
            // An own student moved to a foreign program or department.
            req.method = *g.pick(&["PATCH", "PUT"]);
            req.uri = format!("/api/students/{}/", w.own_id(g, org, "student"));
            req.model = Some("student");
            req.expect = Expect::Rejected;
            let field = *g.pick(&["program_id", "department_id"]);
            let model = &field[..field.len() - 3];
            req.body =
                Some(json!({ field: w.foreign_id(g, org, model), "organization": other_org }));
        }
        2 => {
            // Another organization's row as the target.
            let (resource, model) = *g.pick(&RESOURCES);
            req.method = *g.pick(&["PATCH", "PUT", "DELETE"]);
            req.uri = format!("/api/{resource}/{}/", w.foreign_id(g, org, model));
            req.model = Some(model);
            req.expect = Expect::NotFound;
            if req.method != "DELETE" {
                req.body = Some(json!({"first_name": format!("fz{n}"), "name": format!("fz{n}")}));
            }
        }
        3 => {
            // A legitimate create that tries to name another organization.
            req.method = "POST";
            req.uri = "/api/departments/".into();
            req.model = Some("department");
            req.body = Some(json!({
                "code": format!("FZ{}", n % 1_000_000), "name": format!("fz{n}"),
                "organization": other_org, "organization_id": other_org, "id": w.foreign_id(g, org, "department"),
            }));
        }
        4 => {
            // A legitimate change of an own row.
            let (resource, model) = *g.pick(&RESOURCES[2..4]);
            req.method = "PATCH";
            req.uri = format!("/api/{resource}/{}/", w.own_id(g, org, model));
            req.model = Some(model);
            req.body = Some(json!({"first_name": format!("fz{n}"), "organization_id": other_org}));
        }
        _ => {
            // One's own user record, with another organization in it.
            req.method = "PATCH";
            req.uri = "/api/users/{self}/".into();
            req.model = Some("user");
            req.body = Some(
                json!({"organization": other_org, "organization_id": other_org, "last_name": format!("fz{n}")}),
            );
        }
    }
}

/// Checks a response body for anything of another organization.
fn inspect(w: &World, me: usize, model: Option<&str>, v: &Value, ctx: &str) {
    match v {
        Value::Object(map) => {
            for key in ["organization", "organization_id", "org", "org_id"] {
                if let Some(o) = map.get(key) {
                    assert_eq!(
                        o,
                        &json!(w.orgs[me].id),
                        "{ctx}: `{key}` of another organization in {v}"
                    );
                }
            }
            if let (Some(model), Some(id)) = (model, map.get("id").and_then(Value::as_i64)) {
                assert!(
                    !w.is_foreign(me, model, id),
                    "{ctx}: {model} #{id} of another organization: {v}"
                );
            }
            for (k, child) in map {
                let child_model = match k.as_str() {
                    "department" => Some("department"),
                    "program" => Some("program"),
                    "results" => model,
                    // The dashboard's per-department counts.
                    "departments" => Some("department"),
                    _ => None,
                };
                inspect(w, me, child_model, child, ctx);
            }
        }
        Value::Array(items) => {
            for item in items {
                inspect(w, me, model, item, ctx);
            }
        }
        Value::String(s) => {
            assert!(
                !w.foreign_strings[me].contains(s),
                "{ctx}: {s:?} belongs to another organization"
            );
        }
        _ => {}
    }
}

/// Sends one request through the router: status, whether the cache answered,
/// the body.
async fn send(router: &axum::Router, req: &Req, token: &str) -> (StatusCode, bool, bytes::Bytes) {
    let mut builder = Request::builder()
        .method(req.method)
        .uri(&req.uri)
        .header("host", "fuzz.test")
        .header("authorization", format!("Bearer {token}"));
    let body = match &req.body {
        Some(b) => {
            builder = builder.header("content-type", "application/json");
            Body::from(b.to_string())
        }
        None => Body::empty(),
    };
    let response = router
        .clone()
        .oneshot(builder.body(body).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let hit = response
        .headers()
        .get("x-cache")
        .is_some_and(|v| v == "HIT");
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap();
    (status, hit, bytes)
}

/// The assertions on one response.
fn check(w: &World, req: &Req, status: StatusCode, bytes: &[u8], body: Option<&Value>, ctx: &str) {
    assert!(
        !status.is_server_error(),
        "{ctx}: {status} {}",
        String::from_utf8_lossy(bytes)
    );
    let may_write = match (req.role, req.model) {
        ("admin", _) => true,
        ("staff", Some(m)) => m != "user",
        _ => false,
    };
    match req.expect {
        Expect::NotFound if req.method == "GET" || may_write => {
            assert_eq!(status, StatusCode::NOT_FOUND, "{ctx}")
        }
        Expect::NotFound => assert_eq!(status, StatusCode::FORBIDDEN, "{ctx}"),
        Expect::Rejected if may_write => assert_eq!(status, StatusCode::BAD_REQUEST, "{ctx}"),
        Expect::Rejected => assert_eq!(status, StatusCode::FORBIDDEN, "{ctx}"),
        Expect::Any => {}
    }
    if req.method != "GET" && status.is_success() {
        assert!(may_write, "{ctx}: a role that may not write got {status}");
    }
    if bytes.is_empty() {
        return;
    }
    let v = body.unwrap_or_else(|| panic!("{ctx}: not JSON: {}", String::from_utf8_lossy(bytes)));
    let me = req.uri.starts_with("/api/auth/me/");
    let model = if me { Some("user") } else { req.model };
    inspect(w, req.org, model, v, ctx);
    if me && status.is_success() {
        assert_eq!(v["organization_id"], w.orgs[req.org].id, "{ctx}");
    }
}

async fn run(backend: Backend, redis: bool) {
    let seed: u64 = std::env::var("CAMPUS_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| fastrand::u64(..));
    // A 500's cause is logged, not sent: show it with the failure.
    let _ = tracing_subscriber::fmt()
        .with_test_writer()
        .with_env_filter("campus=error")
        .try_init();
    let app = spawn_app_with(
        backend,
        AppOptions {
            orgs: ORGS as u32,
            redis,
            ..AppOptions::default()
        },
    )
    .await;
    let mut world = World::load(&app.db).await;
    let mut tokens = HashMap::new();
    let mut user_ids = HashMap::new();
    for (i, o) in world.orgs.iter().enumerate() {
        for role in ROLES {
            let t = app.login(&format!("org{}-{role}", i + 1)).await;
            let (_, me) = app.get_json(&t, "/api/auth/me/").await;
            assert_eq!(me["organization_id"], o.id);
            user_ids.insert((i, role), me["id"].as_i64().unwrap());
            tokens.insert((i, role), t);
        }
    }
    let router = app.router();
    let mut g = Gen::new(seed);
    let mut statuses: HashMap<u16, usize> = HashMap::new();
    let mut hits = 0usize;
    let mut created: Vec<(usize, &'static str, i64)> = Vec::new();
    let started = std::time::Instant::now();
    let mut sent = 0;
    while sent < REQUESTS {
        // A few requests at a time, as concurrent clients would send them; the
        // batch is generated in order, so a seed replays it.
        let batch: Vec<Req> = (0..IN_FLIGHT.min(REQUESTS - sent))
            .map(|_| {
                let mut req = generate(&mut g, &world);
                req.uri = req
                    .uri
                    .replace("{self}", &user_ids[&(req.org, req.role)].to_string());
                req
            })
            .collect();
        let responses = futures::future::join_all(
            batch
                .iter()
                .map(|req| send(&router, req, &tokens[&(req.org, req.role)])),
        )
        .await;
        // What this batch created counts as its creator's before any response
        // of the batch is inspected.
        let bodies: Vec<Option<Value>> = responses
            .iter()
            .map(|(_, _, bytes)| serde_json::from_slice(bytes).ok())
            .collect();
        for (req, ((status, _, _), body)) in batch.iter().zip(responses.iter().zip(&bodies)) {
            if req.method == "POST" && *status == StatusCode::CREATED {
                let (model, id) = (
                    req.model.unwrap(),
                    body.as_ref().unwrap()["id"].as_i64().unwrap(),
                );
                world.orgs[req.org].ids.entry(model).or_default().insert(id);
                created.push((req.org, model, id));
            }
        }
        for (i, (req, ((status, hit, bytes), body))) in
            batch.iter().zip(responses.iter().zip(&bodies)).enumerate()
        {
            let ctx = format!(
                "seed {seed} (CAMPUS_FUZZ_SEED={seed} replays it), request #{}: {} {} as org{}-{} with {}",
                sent + i,
                req.method,
                req.uri,
                req.org + 1,
                req.role,
                req.body.as_ref().map(Value::to_string).unwrap_or_default()
            );
            hits += usize::from(*hit);
            *statuses.entry(status.as_u16()).or_default() += 1;
            check(&world, req, *status, bytes, body.as_ref(), &ctx);
        }
        sent += batch.len();
    }
    let elapsed = started.elapsed();
    eprintln!(
        "fuzz seed {seed}: {REQUESTS} requests in {elapsed:?} ({} cache hits), statuses {statuses:?}",
        hits
    );
    // The traffic reached the cache and every kind of answer.
    assert!(hits > REQUESTS / 20, "seed {seed}: only {hits} cache hits");
    for s in [200, 201, 400, 403, 404] {
        assert!(
            statuses.contains_key(&s),
            "seed {seed}: no {s} in {statuses:?}"
        );
    }
    // What the writes created belongs to their writer, whatever the bodies said.
    use campus::entity::prelude::*;
    for (org, model, id) in created {
        let owner = match model {
            "department" => Department::find_by_id(id)
                .one(&app.db)
                .await
                .unwrap()
                .map(|r| r.organization_id),
            "faculty" => Faculty::find_by_id(id)
                .one(&app.db)
                .await
                .unwrap()
                .map(|r| r.organization_id),
            other => panic!("seed {seed}: unexpected create of {other}"),
        };
        assert_eq!(
            owner,
            Some(world.orgs[org].id),
            "seed {seed}: {model} #{id}"
        );
    }
    for (&(org, _), &id) in &user_ids {
        let u = User::find_by_id(id).one(&app.db).await.unwrap().unwrap();
        assert_eq!(
            u.organization_id, world.orgs[org].id,
            "seed {seed}: user #{id} moved"
        );
    }
}
