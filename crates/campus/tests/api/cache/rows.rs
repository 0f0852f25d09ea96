//! Row- and field-level invalidation (issue 22): a write reaches exactly the
//! entries that hold its row or choose, order or count by its fields; list
//! totals and pages put together from rows stay right through every write.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::both_backends;
use crate::helpers::*;

both_backends!(
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
