//! The readers: random organization, instance and endpoint, and what each
//! answer showed of every entity the history tracks (names by version,
//! departments present or absent, student counts).

use std::sync::Arc;
use std::sync::atomic::Ordering;

use reqwest::Method;
use serde_json::Value;

use super::World;
use crate::history::{Key, Read, Seen, version_of};

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
