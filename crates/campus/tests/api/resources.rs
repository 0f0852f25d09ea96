//! Resource endpoints: DRF lists, CRUD, roles, statuses.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::both_backends;
use crate::helpers::*;

both_backends!(
    lists_follow_drf_pagination_search_ordering_and_filters,
    crud_with_drf_statuses,
    roles_limit_writes,
    concurrent_writes_all_succeed
);

async fn lists_follow_drf_pagination_search_ordering_and_filters(backend: Backend) {
    let app = spawn_app(backend).await;
    let t = app.login("org1-student").await;
    let (status, page) = app.get_json(&t, "/api/students/?page_size=7").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(page["count"], 30);
    assert_eq!(page["results"].as_array().unwrap().len(), 7);
    assert!(page["previous"].is_null());
    assert!(
        page["next"]
            .as_str()
            .unwrap()
            .ends_with("/api/students/?page=2&page_size=7"),
        "{}",
        page["next"]
    );
    let s = &page["results"][0];
    for field in [
        "id",
        "roll_number",
        "first_name",
        "last_name",
        "email",
        "semester",
        "batch",
        "is_active",
        "created_at",
        "updated_at",
    ] {
        assert!(s.get(field).is_some(), "missing {field}");
    }
    assert!(s["department"]["code"].is_string() && s["program"]["code"].is_string());
    let (status, last) = app.get_json(&t, "/api/students/?page_size=7&page=5").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(last["results"].as_array().unwrap().len(), 2);
    assert!(last["next"].is_null());
    let (status, v) = app.get_json(&t, "/api/students/?page_size=7&page=6").await;
    assert_eq!(
        (status, v),
        (StatusCode::NOT_FOUND, json!({"detail": "Invalid page."}))
    );

    let (_, ordered) = app
        .get_json(&t, "/api/students/?ordering=-last_name&page_size=500")
        .await;
    let names: Vec<String> = ordered["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["last_name"].as_str().unwrap().to_owned())
        .collect();
    let mut sorted = names.clone();
    sorted.sort_by(|a, b| b.cmp(a));
    assert_eq!(names, sorted);

    let some = page["results"][0].clone();
    let term = some["last_name"].as_str().unwrap().to_uppercase();
    let (_, found) = app
        .get_json(&t, &format!("/api/students/?search={term}&page_size=500"))
        .await;
    assert!(found["count"].as_i64().unwrap() >= 1);
    assert!(found["results"].as_array().unwrap().iter().all(|s| {
        s["last_name"]
            .as_str()
            .unwrap()
            .to_uppercase()
            .contains(&term)
            || s["first_name"]
                .as_str()
                .unwrap()
                .to_uppercase()
                .contains(&term)
            || s["email"].as_str().unwrap().to_uppercase().contains(&term)
    }));

    let sem = some["semester"].as_i64().unwrap();
    let dept = some["department"]["code"].as_str().unwrap();
    let (_, filtered) = app
        .get_json(
            &t,
            &format!("/api/students/?semester={sem}&department={dept}&page_size=500"),
        )
        .await;
    assert!(filtered["count"].as_i64().unwrap() >= 1);
    for s in filtered["results"].as_array().unwrap() {
        assert_eq!(s["semester"], sem);
        assert_eq!(s["department"]["code"], dept);
    }
    let (_, none) = app.get_json(&t, "/api/students/?department=NOPE").await;
    assert_eq!(none["count"], 0);
    let (status, v) = app.get_json(&t, "/api/students/?semester=abc").await;
    assert_eq!(
        (status, v),
        (
            StatusCode::BAD_REQUEST,
            json!({"semester": ["A valid integer is required."]})
        )
    );
    let (_, users) = app.get_json(&t, "/api/users/?role=admin").await;
    assert_eq!(users["count"], 1);
    assert!(users["results"][0].get("password_hash").is_none());
}

async fn crud_with_drf_statuses(backend: Backend) {
    let app = spawn_app(backend).await;
    let t = app.login("org1-staff").await;
    let cs = app.department(&t, "CS").await["id"].as_i64().unwrap();
    let new = json!({"employee_id": "FNEW1", "first_name": "Ada", "last_name": "Lovelace", "email": "ada@campus.example",
                     "designation": "Professor", "specialization": "Analytical engines", "department_id": cs, "id": 999999});
    let (status, created) = app
        .send(Method::POST, &t, "/api/faculty/", new.clone())
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let id = created["id"].as_i64().unwrap();
    assert_ne!(id, 999999, "read-only id is ignored");
    assert_eq!(created["department"]["code"], "CS");
    let (status, dup) = app.send(Method::POST, &t, "/api/faculty/", new).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        dup["employee_id"].is_array() && dup["email"].is_array(),
        "{dup}"
    );
    let (status, v) = app
        .send(
            Method::POST,
            &t,
            "/api/faculty/",
            json!({"first_name": "x"}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(v["email"][0], "This field is required.");
    assert_eq!(v["department_id"][0], "This field is required.");

    let path = format!("/api/faculty/{id}/");
    let (status, v) = app
        .send(Method::PUT, &t, &path, json!({"first_name": "Augusta"}))
        .await;
    assert_eq!(
        status,
        StatusCode::BAD_REQUEST,
        "PUT replaces: every field required"
    );
    assert_eq!(v["last_name"][0], "This field is required.");
    let (status, v) = app
        .send(Method::PATCH, &t, &path, json!({"first_name": "Augusta"}))
        .await;
    assert_eq!(
        (status, v["first_name"].clone(), v["last_name"].clone()),
        (StatusCode::OK, json!("Augusta"), json!("Lovelace"))
    );
    let (_, got) = app.get_json(&t, &path).await;
    assert_eq!(got["first_name"], "Augusta");

    // A department still referenced cannot go: 409.
    let (status, v) = app
        .send(
            Method::DELETE,
            &t,
            &format!("/api/departments/{cs}/"),
            Value::Null,
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert!(v["detail"].is_string());
    let r = app
        .client
        .delete(app.url(&path))
        .bearer_auth(&t)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let (status, v) = app.get_json(&t, &path).await;
    assert_eq!(
        (status, v),
        (StatusCode::NOT_FOUND, json!({"detail": "Not found."}))
    );

    let r = app
        .client
        .put(app.url("/api/faculty/"))
        .bearer_auth(&t)
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(
        r.json::<Value>().await.unwrap(),
        json!({"detail": "Method \"PUT\" not allowed."})
    );

    let (status, dept) = app
        .send(
            Method::POST,
            &t,
            "/api/departments/",
            json!({"code": "MA", "name": "Mathematics"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let r = app
        .client
        .delete(app.url(&format!("/api/departments/{}/", dept["id"])))
        .bearer_auth(&t)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
}

async fn roles_limit_writes(backend: Backend) {
    let app = spawn_app(backend).await;
    let forbidden = json!({"detail": "You do not have permission to perform this action."});
    for who in ["org1-student", "org1-faculty"] {
        let t = app.login(who).await;
        assert_eq!(app.get_json(&t, "/api/faculty/").await.0, StatusCode::OK);
        let (status, v) = app
            .send(
                Method::POST,
                &t,
                "/api/departments/",
                json!({"code": "ZZ", "name": "Z"}),
            )
            .await;
        assert_eq!(
            (status, v),
            (StatusCode::FORBIDDEN, forbidden.clone()),
            "{who}"
        );
    }
    let staff = app.login("org1-staff").await;
    let user = json!({"username": "newbie", "email": "newbie@campus.example", "role": "student", "password": "long-enough-1"});
    let (status, v) = app
        .send(Method::POST, &staff, "/api/users/", user.clone())
        .await;
    assert_eq!((status, v), (StatusCode::FORBIDDEN, forbidden));
    let admin = app.login("org1-admin").await;
    let (status, v) = app.send(Method::POST, &admin, "/api/users/", user).await;
    assert_eq!(status, StatusCode::CREATED, "{v}");
    assert!(v.get("password").is_none() && v.get("password_hash").is_none());
    let r = app
        .client
        .post(app.url("/api/auth/token/"))
        .json(&json!({"username": "newbie", "password": "long-enough-1"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
}

/// PostgreSQL serves `?search=` from the trigram index over `(organization_id,
/// search text)` (a GIN index serves a condition on either column alone): the
/// expression the query filters on is the one the index was built on. Were they to drift apart (a column added
/// to one only, a bound `' '`), the plan would fall back to another index or a
/// sequential scan even with sequential scans disabled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn search_on_postgres_uses_the_trigram_index() {
    use campus::entity::student::{Column, Entity};
    use sea_orm::{
        ConnectionTrait, DbBackend, EntityTrait, QueryTrait, Statement, TransactionTrait,
    };

    let app = spawn_app(Backend::Postgres).await;
    let select = campus::query::search(
        Entity::find(),
        &["lovelace".to_owned(), "ada".to_owned()],
        &[
            Column::FirstName,
            Column::LastName,
            Column::Email,
            Column::RollNumber,
        ],
    );
    let sql = select.build(DbBackend::Postgres).to_string();
    // One connection for both statements: the setting is per session.
    let txn = app.db.begin().await.unwrap();
    txn.execute_unprepared("SET LOCAL enable_seqscan = off")
        .await
        .unwrap();
    let plan = txn
        .query_all_raw(Statement::from_string(
            DbBackend::Postgres,
            format!("EXPLAIN {sql}"),
        ))
        .await
        .unwrap()
        .iter()
        .map(|row| row.try_get_by_index::<String>(0).unwrap())
        .collect::<Vec<_>>()
        .join("\n");
    txn.rollback().await.unwrap();
    assert!(
        plan.contains("idx_students_organization_search_trgm"),
        "{sql}\n{plan}"
    );
}

/// Writes that overlap: each reads (the row, the uniqueness checks) before it
/// writes. On SQLite, deferred transactions made all but one of them fail with
/// `database is locked` (a 500); write transactions now take the lock at BEGIN
/// and queue.
async fn concurrent_writes_all_succeed(backend: Backend) {
    let app = spawn_app(backend).await;
    let t = app.login("org1-staff").await;
    let (_, page) = app.get_json(&t, "/api/students/?page_size=16").await;
    let ids: Vec<i64> = page["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_i64().unwrap())
        .collect();
    assert_eq!(ids.len(), 16);
    let paths: Vec<String> = ids
        .iter()
        .map(|id| format!("/api/students/{id}/"))
        .collect();
    let writes = ids.iter().zip(&paths).map(|(id, path)| {
        app.send(
            Method::PATCH,
            &t,
            path,
            json!({"first_name": format!("Concurrent{id}")}),
        )
    });
    for (status, v) in futures::future::join_all(writes).await {
        assert_eq!(status, StatusCode::OK, "{v}");
    }
    let (_, after) = app
        .get_json(&t, "/api/students/?search=Concurrent&page_size=50")
        .await;
    assert_eq!(after["count"], 16);
}

both_backends!(every_declared_ordering_in_both_directions);

/// Compares two values of one field as the database orders them. Text is
/// compared by bytes only where the database does too (SQLite; PostgreSQL
/// with the C collation that scripts/test.sh's cluster uses): `None` means
/// "cannot tell here", and only the reverse and tie-breaker checks apply.
fn db_cmp(a: &Value, b: &Value, bytewise_text: bool) -> Option<std::cmp::Ordering> {
    use chrono::{DateTime, Utc};
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64()?.partial_cmp(&y.as_f64()?),
        (Value::Bool(x), Value::Bool(y)) => Some(x.cmp(y)),
        (Value::String(x), Value::String(y)) => {
            // Timestamps: RFC 3339 with a varying number of fraction digits, so
            // their text does not sort as their time does.
            match (x.parse::<DateTime<Utc>>(), y.parse::<DateTime<Utc>>()) {
                (Ok(x), Ok(y)) => Some(x.cmp(&y)),
                _ => bytewise_text.then(|| x.as_bytes().cmp(y.as_bytes())),
            }
        }
        _ => panic!("unordered field values {a} and {b}"),
    }
}

/// Every field each list declares as orderable (read from the OpenAPI document,
/// which is generated from the declaration), ascending and descending: the rows
/// come in the field's order, ties by ascending id, and the descending values
/// are the ascending ones reversed.
async fn every_declared_ordering_in_both_directions(backend: Backend) {
    let app = spawn_app(backend).await;
    let t = app.login("org1-admin").await;
    let (status, doc) = app.get_json(&t, "/api/schema/").await;
    assert_eq!(status, StatusCode::OK);
    let bytewise_text = match backend {
        Backend::Sqlite => true,
        Backend::Postgres => {
            use sea_orm::{ConnectionTrait, Statement};
            let row = app
                .db
                .query_one_raw(Statement::from_string(
                    app.db.get_database_backend(),
                    "SELECT datcollate FROM pg_database WHERE datname = current_database()",
                ))
                .await
                .unwrap()
                .unwrap();
            let collate: String = row.try_get("", "datcollate").unwrap();
            collate == "C" || collate == "POSIX"
        }
    };
    let mut walked = 0;
    for resource in ["departments", "programs", "faculty", "students", "users"] {
        let params = doc["paths"][format!("/api/{resource}/")]["get"]["parameters"]
            .as_array()
            .unwrap_or_else(|| panic!("{resource}: no documented list parameters"));
        // The document lists each field and its descending form.
        let documented: Vec<&str> = params
            .iter()
            .find(|p| p["name"] == "ordering")
            .and_then(|p| p["schema"]["items"]["anyOf"][0]["enum"].as_array())
            .unwrap_or_else(|| panic!("{resource}: no documented ordering"))
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        let fields: Vec<&str> = documented
            .iter()
            .copied()
            .filter(|f| !f.starts_with('-'))
            .collect();
        for f in &fields {
            assert!(
                documented.contains(&format!("-{f}").as_str()),
                "{resource}: -{f}"
            );
        }
        assert!(fields.contains(&"id"), "{resource}: id is orderable");
        let (_, all) = app
            .get_json(&t, &format!("/api/{resource}/?page_size=500"))
            .await;
        let count = all["count"].as_u64().unwrap();
        assert!(count >= 3, "{resource}: too few rows to tell orders apart");
        for field in fields {
            let rows = |v: &Value| -> Vec<(Value, i64)> {
                v["results"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|r| (r[field].clone(), r["id"].as_i64().unwrap()))
                    .collect()
            };
            let mut seen = Vec::new();
            for desc in [false, true] {
                let q = format!("{}{field}", if desc { "-" } else { "" });
                let (status, page) = app
                    .get_json(&t, &format!("/api/{resource}/?ordering={q}&page_size=500"))
                    .await;
                assert_eq!(status, StatusCode::OK, "{resource} ordering={q}");
                let rows = rows(&page);
                assert_eq!(rows.len() as u64, count, "{resource} ordering={q}");
                for pair in rows.windows(2) {
                    let ((a, a_id), (b, b_id)) = (&pair[0], &pair[1]);
                    if a == b {
                        assert!(a_id < b_id, "{resource} ordering={q}: tie not by id");
                        continue;
                    }
                    if let Some(o) = db_cmp(a, b, bytewise_text) {
                        let o = if desc { o.reverse() } else { o };
                        assert_eq!(
                            o,
                            std::cmp::Ordering::Less,
                            "{resource} ordering={q}: {a} (id {a_id}) before {b} (id {b_id})"
                        );
                    }
                }
                seen.push(rows.into_iter().map(|(v, _)| v).collect::<Vec<_>>());
            }
            let (asc, desc) = (&seen[0], &seen[1]);
            let reversed: Vec<Value> = desc.iter().rev().cloned().collect();
            assert_eq!(
                asc, &reversed,
                "{resource}: ordering=-{field} is not ordering={field} reversed"
            );
            // Page by page, the same rows, ties included: the first pages
            // are read by the list's select, deeper ones by ids first
            // (`query::page`).
            let size = (count / 7).max(1);
            for q in [field.to_owned(), format!("-{field}")] {
                let (_, whole) = app
                    .get_json(&t, &format!("/api/{resource}/?ordering={q}&page_size=500"))
                    .await;
                let mut paged = Vec::new();
                for n in 1..=count.div_ceil(size) {
                    let (status, page) = app
                        .get_json(
                            &t,
                            &format!("/api/{resource}/?ordering={q}&page_size={size}&page={n}"),
                        )
                        .await;
                    assert_eq!(status, StatusCode::OK, "{resource} {q} page {n}");
                    paged.extend(rows(&page));
                }
                assert_eq!(paged, rows(&whole), "{resource}: ordering={q} page by page");
            }
            walked += 1;
        }
    }
    assert!(walked >= 5 * 3, "walked only {walked} ordering fields");
}
