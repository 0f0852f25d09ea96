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

/// PostgreSQL serves `?search=` from the trigram index: the expression the
/// query filters on is the one the index was built on. Were they to drift apart
/// (a column added to one only, a bound `' '`), the plan would fall back to a
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
    assert!(plan.contains("idx_students_search_trgm"), "{sql}\n{plan}");
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
