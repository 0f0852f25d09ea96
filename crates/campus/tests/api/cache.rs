//! Cache-visible behaviour: X-Cache, ETag/304, read-your-writes through embedded
//! data and the dashboard, tenant isolation through the cache.

mod anchors;
mod outbox;
mod outside_writes;
mod row_counts;
mod rows;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::both_backends;
use crate::helpers::*;

both_backends!(
    responses_are_missed_then_hit_with_a_strong_etag,
    renaming_a_department_refreshes_every_view_that_embeds_it,
    tenants_never_see_each_other_through_lists_details_search_or_the_cache,
    a_list_parsed_before_is_told_apart_by_its_host_and_query,
);

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
