//! The bad-input corpus: every case is a DRF-style 4xx (never a 5xx) and changes
//! nothing in the database or the cache.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::both_backends;
use crate::helpers::*;

both_backends!(bad_input_gets_a_clear_4xx_and_changes_nothing);

async fn bad_input_gets_a_clear_4xx_and_changes_nothing(backend: Backend) {
    let app = spawn_app(backend).await;
    let t = app.login("org1-admin").await;
    let (_, before) = app.get_json(&t, "/api/faculty/?page_size=500").await;
    let cs = app.department(&t, "CS").await["id"].as_i64().unwrap();

    let long = "x".repeat(10_000);
    for query in [
        "page=0",
        "page=-1",
        "page=abc",
        "page=1e3",
        "page_size=100000",
        "page_size=-5",
        "search=%00",
        "search=%E2%9C%93%F0%9F%98%80",
        "search=a:b*c",
        "search=50%25",
        "search=_",
        "ordering=password",
        "is_active=maybe",
        "department=%00%27%22",
        &format!("search={long}"),
    ] {
        let r = app.get(&t, &format!("/api/faculty/?{query}")).await;
        let status = r.status();
        let body: Value = r.json().await.unwrap_or(Value::Null);
        assert!(
            status.is_success() || status.is_client_error(),
            "{query}: {status}"
        );
        assert!(body.is_object(), "{query}: {body}");
    }
    for id in ["abc", "1.5", "99999999999999999999999", "-1", "0", "%00"] {
        let (status, v) = app.get_json(&t, &format!("/api/faculty/{id}/")).await;
        assert_eq!(
            (status, v),
            (StatusCode::NOT_FOUND, json!({"detail": "Not found."})),
            "id {id}"
        );
    }

    let post = |body: reqwest::Body, ctype: &'static str| {
        app.client
            .post(app.url("/api/faculty/"))
            .bearer_auth(&t)
            .header("content-type", ctype)
            .body(body)
            .send()
    };
    let r = post("{\"first_name\": ".into(), "application/json")
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert!(
        r.json::<Value>().await.unwrap()["detail"]
            .as_str()
            .unwrap()
            .starts_with("JSON parse error")
    );
    let r = post("[1,2]".into(), "application/json").await.unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let r = post("first_name=x".into(), "application/x-www-form-urlencoded")
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let big = format!("{{\"first_name\": \"{}\"}}", "a".repeat(1 << 20));
    // Refused from its Content-Length, before it is read: the client sees the 413,
    // or (if it was still uploading when the server closed) a reset connection.
    // On a client of its own: the server closes that connection.
    let upload = reqwest::Client::new()
        .post(app.url("/api/faculty/"))
        .bearer_auth(&t)
        .header("content-type", "application/json")
        .body(big)
        .send();
    match upload.await {
        Ok(r) => assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE),
        Err(e) => assert!(e.is_request() || e.is_body(), "{e}"),
    }

    let wrong_types = json!({"employee_id": 5, "first_name": ["x"], "last_name": null, "email": "not-an-email",
        "designation": "Lecturer", "specialization": "x", "department_id": "abc", "max_hours_per_week": "many", "is_active": "maybe"});
    let (status, v) = app
        .send(Method::POST, &t, "/api/faculty/", wrong_types)
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    for field in [
        "employee_id",
        "first_name",
        "last_name",
        "email",
        "department_id",
        "max_hours_per_week",
        "is_active",
    ] {
        assert!(v[field].is_array(), "{field} in {v}");
    }
    let (status, v) = app
        .send(
            Method::POST,
            &t,
            "/api/faculty/",
            json!({"employee_id": "E\u{0}1", "first_name": "x", "last_name": "y", "email": "a@b.example",
                   "designation": "d", "specialization": "s", "department_id": cs, "max_hours_per_week": 1e30}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{v}");

    let (_, after) = app.get_json(&t, "/api/faculty/?page_size=500").await;
    assert_eq!(
        before["count"], after["count"],
        "bad input changed the database"
    );
    assert_eq!(before, after);
}
