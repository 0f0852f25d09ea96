//! The random requests: lists with hostile filters, searches and orderings,
//! details of own, foreign and junk ids, and writes that reach for other
//! organizations, each with what it must get (`Expect`). All of it comes from
//! one seed (`Gen`), so a seed replays a run.

use proptest::strategy::{Strategy, ValueTree};
use proptest::test_runner::{Config as PropConfig, RngAlgorithm, TestRng, TestRunner};
use serde_json::json;

use super::{Expect, ORGS, RESOURCES, ROLES, Req, World};

impl World {
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
pub(super) struct Gen {
    rng: fastrand::Rng,
    runner: TestRunner,
}

impl Gen {
    pub(super) fn new(seed: u64) -> Gen {
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

pub(super) fn generate(g: &mut Gen, w: &World) -> Req {
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
