//! Cache-visible behaviour: X-Cache, ETag/304, read-your-writes through embedded
//! data and the dashboard, tenant isolation through the cache.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::both_backends;
use crate::helpers::*;

both_backends!(
    responses_are_missed_then_hit_with_a_strong_etag,
    renaming_a_department_refreshes_every_view_that_embeds_it,
    tenants_never_see_each_other_through_lists_details_search_or_the_cache,
    a_list_parsed_before_is_told_apart_by_its_host_and_query,
    a_write_to_one_row_keeps_the_other_rows_cached,
    a_list_total_cached_apart_follows_every_write,
    a_patch_reaches_every_list_its_fields_choose_or_order,
    a_page_put_together_from_its_rows_is_the_page_read_in_one_query,
);

/// A list's total is cached apart from its pages, shared by every page, size
/// and order of one search and filter set (issue 22): a page read for the
/// first time after a write must still show the total after it.
async fn a_list_total_cached_apart_follows_every_write(backend: Backend) {
    let app = spawn_app(backend).await;
    let admin = app.login("org1-admin").await;
    let count = |v: &Value| v["count"].as_u64().unwrap();
    let (_, first) = app.get_json(&admin, "/api/faculty/?page_size=1").await;
    // A filter the deleted row matches.
    let filtered = |size: u32| {
        format!(
            "/api/faculty/?page_size={size}&is_active={}",
            first["results"][0]["is_active"]
        )
    };
    let (_, matching) = app.get_json(&admin, &filtered(1)).await;
    let total = count(&first);
    let (_, second) = app.get_json(&admin, "/api/faculty/?page_size=2").await;
    assert_eq!(count(&second), total, "the same total for another size");
    let gone = first["results"][0]["id"].as_i64().unwrap();
    let (status, _) = app
        .send(
            Method::DELETE,
            &admin,
            &format!("/api/faculty/{gone}/"),
            Value::Null,
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    for path in [
        "/api/faculty/?page_size=3",
        "/api/faculty/?ordering=-id&page_size=2",
        "/api/faculty/?page=2&page_size=1",
    ] {
        let r = app.get(&admin, path).await;
        assert_eq!(r.headers()["x-cache"], "MISS", "{path}");
        let v: Value = r.json().await.unwrap();
        assert_eq!(count(&v), total - 1, "{path}: {v}");
    }
    let (_, after) = app.get_json(&admin, &filtered(2)).await;
    assert_eq!(count(&after), count(&matching) - 1, "a filtered total too");
}

/// Row-level invalidation (issue 22): a PATCH of one faculty member reaches its
/// own detail, the lists and the dashboard, and leaves every other faculty
/// member's detail a HIT; a PATCH of a user leaves other users' auth records
/// cached (their next request costs no database read for authorization).
async fn a_write_to_one_row_keeps_the_other_rows_cached(backend: Backend) {
    let app = spawn_app(backend).await;
    let admin = app.login("org1-admin").await;
    let (_, fac) = app.get_json(&admin, "/api/faculty/?page_size=3").await;
    let ids: Vec<i64> = fac["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["id"].as_i64().unwrap())
        .collect();
    let details: Vec<String> = ids.iter().map(|id| format!("/api/faculty/{id}/")).collect();
    for path in details
        .iter()
        .chain(["/api/stats/dashboard/".to_owned()].iter())
    {
        app.get(&admin, path).await;
        assert_eq!(
            app.get(&admin, path).await.headers()["x-cache"],
            "HIT",
            "{path}"
        );
    }
    let (status, _) = app
        .send(
            Method::PATCH,
            &admin,
            &details[0],
            json!({"first_name": "Renamed"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let written = app.get(&admin, &details[0]).await;
    assert_eq!(written.headers()["x-cache"], "MISS");
    assert_eq!(
        written.json::<Value>().await.unwrap()["first_name"],
        "Renamed"
    );
    for path in &details[1..] {
        assert_eq!(
            app.get(&admin, path).await.headers()["x-cache"],
            "HIT",
            "another row's detail: {path}"
        );
    }
    let (_, fac) = app.get_json(&admin, "/api/faculty/?page_size=3").await;
    assert_eq!(fac["results"][0]["first_name"], "Renamed");
    assert_eq!(
        app.get(&admin, "/api/stats/dashboard/").await.headers()["x-cache"],
        "MISS"
    );

    // A user's write: the staff member's own auth record stays cached.
    let staff = app.login("org1-staff").await;
    app.get(&staff, &details[1]).await;
    let (_, users) = app
        .get_json(&admin, "/api/users/?search=org1-faculty")
        .await;
    let faculty_user = users["results"][0]["id"].as_i64().unwrap();
    let (status, _) = app
        .send(
            Method::PATCH,
            &admin,
            &format!("/api/users/{faculty_user}/"),
            json!({"first_name": "Changed"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let before = app.state.cache.stats();
    assert_eq!(
        app.get(&staff, &details[1]).await.headers()["x-cache"],
        "HIT"
    );
    let after = app.state.cache.stats();
    assert_eq!(
        after.misses, before.misses,
        "another user's write cost the staff member's auth record"
    );
}

async fn responses_are_missed_then_hit_with_a_strong_etag(backend: Backend) {
    let app = spawn_app(backend).await;
    let token = app.login("org1-faculty").await;
    let first = app.get(&token, "/api/faculty/?page=1").await;
    assert_eq!(first.status(), StatusCode::OK);
    assert_eq!(first.headers()["x-cache"], "MISS");
    let etag = first.headers()["etag"].to_str().unwrap().to_owned();
    assert!(etag.starts_with('"') && etag.len() == 34, "{etag}");
    let body = first.bytes().await.unwrap();
    // `?page=1` and no page share one key.
    let second = app.get(&token, "/api/faculty/").await;
    assert_eq!(second.headers()["x-cache"], "HIT");
    assert_eq!(second.headers()["etag"], etag.as_str());
    assert_eq!(
        second.bytes().await.unwrap(),
        body,
        "a hit serves the stored bytes"
    );
    // The default order spelled out, or with `id` after a field, is the same
    // order: one key.
    for (first, same) in [
        ("/api/faculty/", "/api/faculty/?ordering=id"),
        (
            "/api/faculty/?ordering=-last_name",
            "/api/faculty/?ordering=-last_name,id",
        ),
        (
            "/api/faculty/?ordering=-id",
            "/api/faculty/?ordering=-id,last_name",
        ),
    ] {
        let _ = app.get(&token, first).await;
        assert_eq!(
            app.get(&token, same).await.headers()["x-cache"],
            "HIT",
            "{same} shares the entry of {first}"
        );
    }
    let r = app
        .client
        .get(app.url("/api/faculty/"))
        .bearer_auth(&token)
        .header("If-None-Match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_MODIFIED);
    assert!(r.bytes().await.unwrap().is_empty());
    let detail = app.get(&token, "/api/faculty/1/").await;
    assert_eq!(detail.headers()["x-cache"], "MISS");
    let stats = app.get(&token, "/api/stats/dashboard/").await;
    assert_eq!(stats.headers()["x-cache"], "MISS");
    assert_eq!(
        app.get(&token, "/api/stats/dashboard/").await.headers()["x-cache"],
        "HIT"
    );
    // What was served shows in /metrics (the handles kept per label set).
    let metrics = app
        .client
        .get(app.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let has = |name: &str, labels: &[&str]| {
        metrics
            .lines()
            .any(|l| l.starts_with(name) && labels.iter().all(|x| l.contains(x)))
    };
    assert!(
        has(
            "http_requests_total{",
            &[
                r#"method="GET""#,
                r#"route="/api/faculty/""#,
                r#"status="200""#
            ]
        ),
        "{metrics}"
    );
    assert!(
        has(
            "tiercache_lookups_total{",
            &[r#"outcome="HIT""#, r#"model="faculty""#]
        ),
        "{metrics}"
    );
}

async fn renaming_a_department_refreshes_every_view_that_embeds_it(backend: Backend) {
    let app = spawn_app(backend).await;
    let admin = app.login("org1-admin").await;
    let cs = app.department(&admin, "CS").await;
    let id = cs["id"].as_i64().unwrap();
    // Warm every view that embeds the department.
    let (_, fac) = app
        .get_json(&admin, "/api/faculty/?department=CS&page_size=500")
        .await;
    let (_, stu) = app
        .get_json(&admin, "/api/students/?department=CS&page_size=500")
        .await;
    let fid = fac["results"][0]["id"].as_i64().unwrap();
    let sid = stu["results"][0]["id"].as_i64().unwrap();
    for path in [
        format!("/api/faculty/{fid}/"),
        format!("/api/students/{sid}/"),
        "/api/stats/dashboard/".into(),
        "/api/programs/?department=CS".into(),
    ] {
        app.get(&admin, &path).await;
        assert_eq!(
            app.get(&admin, &path).await.headers()["x-cache"],
            "HIT",
            "{path}"
        );
    }
    let (status, _) = app
        .send(
            Method::PATCH,
            &admin,
            &format!("/api/departments/{id}/"),
            json!({"name": "Computing"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (_, fac) = app
        .get_json(&admin, "/api/faculty/?department=CS&page_size=500")
        .await;
    assert_eq!(fac["results"][0]["department"]["name"], "Computing");
    let (_, stu) = app
        .get_json(&admin, "/api/students/?department=CS&page_size=500")
        .await;
    assert_eq!(stu["results"][0]["department"]["name"], "Computing");
    assert_eq!(
        app.get_json(&admin, &format!("/api/faculty/{fid}/"))
            .await
            .1["department"]["name"],
        "Computing"
    );
    assert_eq!(
        app.get_json(&admin, &format!("/api/students/{sid}/"))
            .await
            .1["department"]["name"],
        "Computing"
    );
    let (_, programs) = app.get_json(&admin, "/api/programs/?department=CS").await;
    assert_eq!(programs["results"][0]["department"]["name"], "Computing");
    let (_, dash) = app.get_json(&admin, "/api/stats/dashboard/").await;
    let row = dash["departments"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["id"] == id)
        .unwrap()
        .clone();
    assert_eq!(row["name"], "Computing");

    // A new student shows in the dashboard and the list at once.
    let before = dash["totals"]["students"].as_i64().unwrap();
    let prog = programs["results"][0]["id"].as_i64().unwrap();
    let (status, created) = app
        .send(
            Method::POST,
            &admin,
            "/api/students/",
            json!({"roll_number": "NEW001", "first_name": "Grace", "last_name": "Hopper", "email": "grace@campus.example",
                   "semester": 3, "batch": 2024, "department_id": id, "program_id": prog}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let (_, dash) = app.get_json(&admin, "/api/stats/dashboard/").await;
    assert_eq!(dash["totals"]["students"].as_i64().unwrap(), before + 1);
    let (_, found) = app.get_json(&admin, "/api/students/?search=hopper").await;
    assert_eq!(found["count"], 1);
}

async fn tenants_never_see_each_other_through_lists_details_search_or_the_cache(backend: Backend) {
    let app = spawn_app(backend).await;
    let one = app.login("org1-admin").await;
    let two = app.login("org2-admin").await;
    let (_, fac1) = app.get_json(&one, "/api/faculty/?page_size=500").await;
    let (_, fac2) = app.get_json(&two, "/api/faculty/?page_size=500").await;
    let ids1: Vec<i64> = fac1["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["id"].as_i64().unwrap())
        .collect();
    let ids2: Vec<i64> = fac2["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["id"].as_i64().unwrap())
        .collect();
    assert!(!ids1.is_empty() && !ids2.is_empty());
    assert!(
        ids1.iter().all(|i| !ids2.contains(i)),
        "lists overlap across organizations"
    );
    // Same URL, other tenant: never the cached body of the first.
    for id in &ids1 {
        let (status, v) = app.get_json(&two, &format!("/api/faculty/{id}/")).await;
        assert_eq!(
            (status, v),
            (StatusCode::NOT_FOUND, json!({"detail": "Not found."}))
        );
    }
    let email = fac1["results"][0]["email"].as_str().unwrap();
    let (_, found) = app
        .get_json(&two, &format!("/api/faculty/?search={email}"))
        .await;
    assert_eq!(found["count"], 0);
    let (status, _) = app
        .send(
            Method::PATCH,
            &two,
            &format!("/api/faculty/{}/", ids1[0]),
            json!({"first_name": "Mallory"}),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = app
        .send(
            Method::DELETE,
            &two,
            &format!("/api/faculty/{}/", ids1[0]),
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    // A department of org 1 cannot be referenced from org 2.
    let cs1 = app.department(&one, "CS").await["id"].as_i64().unwrap();
    let (status, v) = app
        .send(
            Method::POST,
            &two,
            "/api/faculty/",
            json!({"employee_id": "X1", "first_name": "A", "last_name": "B", "email": "ab@x.example",
                   "designation": "Lecturer", "specialization": "AI", "department_id": cs1}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        v["department_id"][0],
        format!("Invalid pk \"{cs1}\" - object does not exist.")
    );
}

/// List requests are parsed once and remembered (`listing::ListMemo`): every
/// input of the parse must still tell two requests apart once they are.
async fn a_list_parsed_before_is_told_apart_by_its_host_and_query(backend: Backend) {
    let app = spawn_app(backend).await;
    let token = app.login("org1-admin").await;
    let next = |host: &'static str, query: &'static str| {
        let (app, token) = (&app, &token);
        async move {
            let r = app
                .client
                .get(app.url(&format!("/api/faculty/{query}")))
                .bearer_auth(token)
                .header("Host", host)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), StatusCode::OK);
            let cache = r.headers()["x-cache"].to_str().unwrap().to_owned();
            let body: Value = r.json().await.unwrap();
            (
                cache,
                body["next"].clone(),
                body["results"].as_array().unwrap().len(),
            )
        }
    };
    for _ in 0..2 {
        let (_, link, n) = next("a.example", "?page_size=7").await;
        assert_eq!(link, "http://a.example/api/faculty/?page=2&page_size=7");
        assert_eq!(n, 7);
        let (_, link, _) = next("b.example:8080", "?page_size=7").await;
        assert_eq!(
            link,
            "http://b.example:8080/api/faculty/?page=2&page_size=7"
        );
        let (_, link, n) = next("a.example", "?page_size=8").await;
        assert_eq!(link, "http://a.example/api/faculty/?page=2&page_size=8");
        assert_eq!(n, 8);
    }
    // A host no name can have is not used in links (nor kept in the memo).
    let long = "h".repeat(300);
    let r = app
        .client
        .get(app.url("/api/faculty/?page_size=7"))
        .bearer_auth(&token)
        .header("Host", long.as_str())
        .send()
        .await
        .unwrap();
    let body: Value = r.json().await.unwrap();
    assert_eq!(
        body["next"],
        "http://localhost/api/faculty/?page=2&page_size=7"
    );
    // Another spelling of the same query is the same entry (a hit), as before.
    let (cache, link, _) = next("a.example", "?page_size=07&utm=x").await;
    assert_eq!(
        (cache.as_str(), link),
        (
            "HIT",
            json!("http://a.example/api/faculty/?page=2&page_size=7")
        )
    );
    // An invalid query is refused every time, not only before it is remembered.
    for _ in 0..2 {
        let (status, body) = app.get_json(&token, "/api/faculty/?page=abc").await;
        assert_eq!(
            (status, body),
            (StatusCode::NOT_FOUND, json!({"detail": "Invalid page."}))
        );
    }
}

async fn readyz(app: &TestApp) -> Value {
    app.client
        .get(app.url("/readyz"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// Waits until `/readyz` reports the outside-writes listener up with at least
/// `connects` connections made; returns the count.
async fn listening(app: &TestApp, connects: u64) -> u64 {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let v = readyz(app).await;
        let n = v["outside_writes_connects"].as_u64().unwrap_or(0);
        if v["outside_writes"] == "listening" && n >= connects {
            return n;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "listener never up: {v}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// Polls `path` until `check` holds, for at most one second (SPEC §5.5).
async fn within_a_second(app: &TestApp, token: &str, path: &str, check: impl Fn(&Value) -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(1);
    loop {
        let (_, v) = app.get_json(token, path).await;
        if check(&v) {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "not visible within 1 s: {v}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}

/// SPEC §5.5 on PostgreSQL: a plain SQL `UPDATE`/`DELETE`, a bulk
/// `update_many` and a `TRUNCATE`-free bulk delete from another connection
/// show through the API within a second, by the triggers' `NOTIFY`; and after
/// the listener's connection is cut, everything cached is invalidated (what
/// was missed meanwhile cannot be known).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_from_outside_the_api_reach_the_cache() {
    use campus::entity::faculty;
    use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, sea_query::Expr};

    let app = spawn_app(Backend::Postgres).await;
    let connects = listening(&app, 1).await;
    let t = app.login("org1-admin").await;
    let list = "/api/faculty/?ordering=id";
    let (_, page) = app.get_json(&t, list).await;
    let id = page["results"][0]["id"].as_i64().unwrap();
    let x_cache = |r: reqwest::Response| r.headers()["x-cache"].to_str().unwrap().to_owned();
    assert_eq!(x_cache(app.get(&t, list).await), "HIT");

    app.db
        .execute_unprepared(&format!(
            "UPDATE faculty SET first_name = 'Outsider' WHERE id = {id}"
        ))
        .await
        .unwrap();
    within_a_second(&app, &t, list, |v| {
        v["results"][0]["first_name"] == "Outsider"
    })
    .await;
    within_a_second(&app, &t, &format!("/api/faculty/{id}/"), |v| {
        v["first_name"] == "Outsider"
    })
    .await;

    // A bulk update through the ORM, another organization's rows included.
    faculty::Entity::update_many()
        .col_expr(faculty::Column::LastName, Expr::value("Bulk"))
        .filter(faculty::Column::IsActive.eq(true))
        .exec(&app.db)
        .await
        .unwrap();
    within_a_second(&app, &t, list, |v| v["results"][0]["last_name"] == "Bulk").await;

    let (_, before) = app.get_json(&t, "/api/students/").await;
    app.db
        .execute_unprepared("DELETE FROM students WHERE organization_id = 1 AND id IN (SELECT id FROM students WHERE organization_id = 1 ORDER BY id LIMIT 3)")
        .await
        .unwrap();
    let expected = before["count"].as_i64().unwrap() - 3;
    within_a_second(&app, &t, "/api/students/", |v| v["count"] == expected).await;

    // Cut the listener's connection: once it is back, nothing cached before
    // survives.
    app.get(&t, list).await;
    assert_eq!(x_cache(app.get(&t, list).await), "HIT");
    app.db
        .execute_unprepared(&format!(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE datname = current_database() AND query LIKE 'LISTEN%{}%'",
            campus::changes::CHANNEL
        ))
        .await
        .unwrap();
    listening(&app, connects + 1).await;
    assert_eq!(x_cache(app.get(&t, list).await), "MISS");
}

both_backends!(
    a_committed_write_left_without_its_invalidation_is_swept_from_the_outbox,
    an_api_write_leaves_nothing_in_the_outbox
);

/// What a writer killed between its `COMMIT` and its invalidation leaves
/// behind: the rows changed, and its outbox row. Any instance's sweep must
/// invalidate what the row names (on PostgreSQL the write is marked as the
/// API's, so the change triggers stay silent, as they do for a real API write).
async fn a_committed_write_left_without_its_invalidation_is_swept_from_the_outbox(
    backend: Backend,
) {
    use sea_orm::{ConnectionTrait, TransactionTrait};

    let app = spawn_app(backend).await;
    let t = app.login("org1-admin").await;
    let (_, page) = app.get_json(&t, "/api/faculty/?ordering=id").await;
    let id = page["results"][0]["id"].as_i64().unwrap();
    let detail = format!("/api/faculty/{id}/");
    let _ = app.get(&t, &detail).await;
    assert_eq!(app.get(&t, &detail).await.headers()["x-cache"], "HIT");

    let old = chrono::Utc::now().timestamp_millis() - 60_000;
    let tx = app.db.begin().await.unwrap();
    if backend == Backend::Postgres {
        tx.execute_unprepared("SET LOCAL campus.origin = 'api'")
            .await
            .unwrap();
    }
    tx.execute_unprepared(&format!(
        "UPDATE faculty SET first_name = 'Recovered' WHERE id = {id}"
    ))
    .await
    .unwrap();
    tx.execute_unprepared(&format!(
        "INSERT INTO cache_outbox (model, organization_id, created_at_ms) VALUES ('faculty', 1, {old})"
    ))
    .await
    .unwrap();
    tx.commit().await.unwrap();

    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let (_, v) = app.get_json(&t, &detail).await;
        if v["first_name"] == "Recovered" {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the outbox row was never swept: {v}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(outbox_rows(&app).await, 0, "the swept row is deleted");
}

/// A write whose invalidation reached the cache deletes its outbox row: the
/// table stays empty in normal operation.
async fn an_api_write_leaves_nothing_in_the_outbox(backend: Backend) {
    let app = spawn_app(backend).await;
    let t = app.login("org1-admin").await;
    let dept = app.department(&t, "CS").await;
    let (status, _) = app
        .send(
            Method::PATCH,
            &t,
            &format!("/api/departments/{}/", dept["id"]),
            json!({"name": "Computing"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while outbox_rows(&app).await != 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the write's outbox row stayed"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}

async fn outbox_rows(app: &TestApp) -> i64 {
    use sea_orm::{ConnectionTrait, Statement};
    let row = app
        .db
        .query_one_raw(Statement::from_string(
            app.db.get_database_backend(),
            "SELECT COUNT(*) AS n FROM cache_outbox",
        ))
        .await
        .unwrap()
        .unwrap();
    row.try_get("", "n").unwrap()
}

/// An outside bulk statement over 2,000 organizations (its organization list
/// longer than `pg_notify`'s 8,000 bytes) succeeds, and still invalidates.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outside_statement_over_two_thousand_organizations_succeeds_and_invalidates() {
    use sea_orm::ConnectionTrait;

    let app = spawn_app(Backend::Postgres).await;
    let t = app.login("org1-admin").await;
    app.db
        .execute_unprepared(
            "INSERT INTO organizations (code, name, created_at) \
               SELECT 'bulk' || i, 'Bulk ' || i, now() FROM generate_series(1, 2000) i; \
             INSERT INTO departments (organization_id, code, name) \
               SELECT id, 'CS', 'Computer Science' FROM organizations WHERE code LIKE 'bulk%';",
        )
        .await
        .unwrap();
    let path = "/api/departments/?ordering=id";
    // The inserts' own notification invalidates too, a moment later.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while app.get(&t, path).await.headers()["x-cache"] != "HIT" {
        assert!(std::time::Instant::now() < deadline, "never cached");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let touched = app
        .db
        .execute_unprepared("UPDATE departments SET name = name || ' (bulk)'")
        .await
        .expect("the other program's statement is not failed by our trigger");
    assert!(touched.rows_affected() > 2000);
    within_a_second(&app, &t, path, |v| {
        v["results"][0]["name"]
            .as_str()
            .is_some_and(|n| n.ends_with(" (bulk)"))
    })
    .await;
}

/// When the listener cannot list the organizations (for a `TRUNCATE`, or a
/// statement over too many of them), it says so on `/readyz` and retries until
/// it can, then invalidates: it never takes the failure for "no organization".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_organization_listing_is_retried_and_reported() {
    use sea_orm::ConnectionTrait;

    let app = spawn_app(Backend::Postgres).await;
    let t = app.login("org1-admin").await;
    let path = "/api/departments/?ordering=id";
    let _ = app.get(&t, path).await;
    assert_eq!(app.get(&t, path).await.headers()["x-cache"], "HIT");

    // The listing fails while the table is away; a plain-SQL write whose
    // notification says "every organization" arrives meanwhile.
    app.db
        .execute_unprepared("ALTER TABLE organizations RENAME TO organizations_away")
        .await
        .unwrap();
    // The update itself is silent (marked as the API's, whose writes the
    // triggers skip): only the "every organization" notification carries it.
    app.db
        .execute_unprepared(
            "BEGIN; SET LOCAL campus.origin = 'api'; \
             UPDATE departments SET name = 'Renamed in the dark' \
               WHERE id = (SELECT min(id) FROM departments WHERE organization_id = 1); \
             NOTIFY campus_changes, 'departments *'; COMMIT;",
        )
        .await
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let v = readyz(&app).await;
        if v["outside_writes"] == "retrying" && v["outside_writes_failures"].as_u64() >= Some(1) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the failure is never reported: {v}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    app.db
        .execute_unprepared("ALTER TABLE organizations_away RENAME TO organizations")
        .await
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let (_, v) = app.get_json(&t, path).await;
        if v["results"][0]["name"] == "Renamed in the dark" {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the retry never invalidated: {v}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let v = readyz(&app).await;
    assert_eq!(v["outside_writes"], "listening", "{v}");
}

async fn patch(app: &TestApp, token: &str, id: i64, body: Value) {
    let (status, v) = app
        .send(Method::PATCH, token, &format!("/api/students/{id}/"), body)
        .await;
    assert_eq!(status, StatusCode::OK, "{v}");
}

/// Reads `path` until it is a HIT, and returns it.
async fn warm(app: &TestApp, token: &str, path: &str) -> Value {
    app.get(token, path).await;
    let r = app.get(token, path).await;
    assert_eq!(r.headers()["x-cache"], "HIT", "{path}");
    r.json().await.unwrap()
}

fn ids_of(page: &Value) -> Vec<i64> {
    page["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_i64().unwrap())
        .collect()
}

/// Field-level invalidation of lists (issue 22): a page's ids and a list's
/// total survive writes to fields they are not chosen or ordered by, so each
/// must name every field it is. After a PATCH, every list a written field
/// filters, searches or orders by shows it, and so does a list ordered by a
/// field only the server sets (`updated_at`).
async fn a_patch_reaches_every_list_its_fields_choose_or_order(backend: Backend) {
    let app = spawn_app(backend).await;
    let admin = app.login("org1-admin").await;
    let (_, all) = app.get_json(&admin, "/api/students/?page_size=20").await;
    // Not the first by id: seeded rows share one `updated_at`, so the first
    // by id is first in every order until a write.
    let (x, y) = (&all["results"][19], &all["results"][18]);
    let (x_id, y_id) = (x["id"].as_i64().unwrap(), y["id"].as_i64().unwrap());
    let (_, depts) = app.get_json(&admin, "/api/departments/").await;
    let other = depts["results"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["id"] != y["department"]["id"])
        .expect("two departments");
    let by_dept = format!(
        "/api/students/?department={}",
        other["code"].as_str().unwrap()
    );
    let lists = [
        "/api/students/?ordering=-semester,id&page_size=1",
        "/api/students/?semester=12",
        "/api/students/?search=zyxwv",
        "/api/students/?ordering=-updated_at&page_size=1",
        "/api/students/?is_active=false",
        &by_dept,
    ];
    let mut before = Vec::new();
    for path in lists {
        before.push(warm(&app, &admin, path).await);
    }
    let count = |v: &Value| v["count"].as_u64().unwrap();
    assert_eq!(count(&before[1]), 0, "seeded semesters are 1 to 8");
    assert_ne!(ids_of(&before[0]), [x_id]);
    assert_ne!(ids_of(&before[3]), [x_id]);

    patch(
        &app,
        &admin,
        x_id,
        json!({"semester": 12, "first_name": "Zyxwv", "is_active": false}),
    )
    .await;
    let now = |path: &str| {
        let (app, admin, path) = (&app, &admin, path.to_owned());
        async move { app.get_json(admin, &path).await.1 }
    };
    // Highest semester first, then the lowest id: x, the first student.
    assert_eq!(ids_of(&now(lists[0]).await), [x_id], "ordered by semester");
    assert_eq!(ids_of(&now(lists[1]).await), [x_id], "filtered by semester");
    assert_eq!(
        ids_of(&now(lists[2]).await),
        [x_id],
        "searched by first name"
    );
    assert_eq!(
        ids_of(&now(lists[3]).await),
        [x_id],
        "ordered by the server's updated_at"
    );
    let v = now(lists[4]).await;
    let x_was_active = x["is_active"] == true;
    assert_eq!(
        count(&v),
        count(&before[4]) + u64::from(x_was_active),
        "filtered by is_active"
    );

    patch(&app, &admin, y_id, json!({"department_id": other["id"]})).await;
    let (_, v) = app.get_json(&admin, &by_dept).await;
    assert_eq!(
        count(&v),
        count(&before[5]) + 1,
        "filtered by department: {v}"
    );
    assert_eq!(ids_of(&now(lists[3]).await), [y_id], "updated_at again");
}

/// A page whose rows a write left alone is put together from their details
/// (issue 22), and must be the very bytes of the page read in one query, for
/// every resource; the instance that put it together keeps it (derived from
/// those parts) through writes to other rows; a page holding the written row
/// shows the write.
async fn a_page_put_together_from_its_rows_is_the_page_read_in_one_query(backend: Backend) {
    let app = spawn_app(backend).await;
    let admin = app.login("org1-admin").await;
    // Another instance of the deployment, which holds no page of its own.
    let other_instance = app.other_instance().await.expect("a Redis deployment");
    for name in ["departments", "programs", "faculty", "students", "users"] {
        let path = format!("/api/{name}/?page_size=3");
        // Cold: its rows' details are not cached, so one query reads it.
        let first = app.get(&admin, &path).await;
        assert_eq!(first.headers()["x-cache"], "MISS", "{name}");
        let in_one_query = first.bytes().await.unwrap();
        let page: Value = serde_json::from_slice(&in_one_query).unwrap();
        // A row on another page (an empty PATCH still sets what the server
        // sets): this page's entry goes, its ids and rows stay.
        let (_, later) = app
            .get_json(&admin, &format!("/api/{name}/?page=2&page_size=3"))
            .await;
        let other = format!("/api/{name}/{}/", ids_of(&later)[0]);
        let write = || {
            let (app, admin, other) = (&app, &admin, &other);
            async move {
                let (status, v) = app.send(Method::PATCH, admin, other, json!({})).await;
                assert_eq!(status, StatusCode::OK, "{name}: {v}");
            }
        };
        // The ids are cached, the rows' details are not: the rows are read
        // by their ids.
        write().await;
        let again = app.get(&admin, &path).await;
        assert_eq!(again.headers()["x-cache"], "MISS", "{name}");
        assert_eq!(
            again.bytes().await.unwrap(),
            in_one_query,
            "{name}: by the ids"
        );
        // Those rows were cached as their details on the way (by a task the
        // response does not wait for).
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
        for id in ids_of(&page) {
            let r = app.get(&admin, &format!("/api/{name}/{id}/")).await;
            assert_eq!(r.headers()["x-cache"], "HIT", "{name} {id}");
        }
        write().await;
        // This instance kept the page it put together: none of its parts moved.
        let kept = app.get(&admin, &path).await;
        assert_eq!(kept.headers()["x-cache"], "HIT", "{name}: kept");
        assert_eq!(kept.bytes().await.unwrap(), in_one_query, "{name}: kept");
        // Another instance puts the page together from the rows' details.
        let (status, body) = app.get_from(&other_instance, &admin, &path).await;
        assert_eq!(status, "MISS", "{name}");
        assert_eq!(body, in_one_query, "{name}: put together from the details");
    }

    let path = "/api/students/?page_size=3";
    let (_, page) = app.get_json(&admin, path).await;
    let ids = ids_of(&page);
    // A student on this page: its row is read again, the others are not.
    patch(&app, &admin, ids[1], json!({"last_name": "Renamed"})).await;
    let (_, v) = app.get_json(&admin, path).await;
    assert_eq!(ids_of(&v), ids);
    assert_eq!(v["results"][1]["last_name"], "Renamed", "{v}");
    for (i, id) in ids.iter().enumerate() {
        let (_, detail) = app.get_json(&admin, &format!("/api/students/{id}/")).await;
        assert_eq!(v["results"][i], detail, "row {i}");
    }
}
