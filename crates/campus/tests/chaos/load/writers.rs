//! The writers, one per organization: each entity it changes is its alone and
//! it writes in sequence, so every acknowledged write has a version the
//! history can order.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{Value, json};

use super::World;
use crate::history::{Key, Write, with_version};

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
