//! `/api/schema/` and the server agree on which requests are valid (issue 20
//! item 7, the disagreements a schema-driven fuzzer found): for each value
//! below, the document admits it exactly when the server accepts it. A query
//! value is read as a client or fuzzer reads it (an integer, a boolean, else a
//! string) and checked against the parameter's schema; a body field against
//! the `{M}Patch` schema. The document also names the unique fields (the ones
//! a duplicate is refused for) and the login's 429 and 503.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::both_backends;
use crate::helpers::*;

both_backends!(schema_and_server_agree_on_what_is_valid);

fn validates(doc: &Value, schema: &Value, value: &Value) -> bool {
    let mut root = schema.clone();
    root["components"] = doc["components"].clone();
    jsonschema::draft202012::options()
        .should_validate_formats(true)
        .build(&root)
        .expect("the documented schema compiles")
        .is_valid(value)
}

/// A `$ref`-free schema: follows a local `$ref`.
fn resolve<'a>(doc: &'a Value, v: &'a Value) -> &'a Value {
    match v.get("$ref").and_then(Value::as_str) {
        Some(r) => resolve(doc, doc.pointer(r.trim_start_matches('#')).unwrap()),
        None => v,
    }
}

/// A query string's value as a typed client would have sent it.
fn typed(raw: &str) -> Value {
    if let Ok(n) = raw.parse::<i64>() {
        json!(n)
    } else if let Ok(n) = raw.parse::<u64>() {
        json!(n)
    } else if raw.bytes().all(|b| b.is_ascii_digit()) && !raw.is_empty() {
        // Past u64: a JSON number all the same (arbitrary precision).
        serde_json::from_str(raw).unwrap()
    } else if let Ok(b) = raw.parse::<bool>() {
        json!(b)
    } else {
        json!(raw)
    }
}

async fn document(app: &TestApp) -> Value {
    let r = app
        .client
        .get(app.url("/api/schema/"))
        .send()
        .await
        .unwrap();
    r.json().await.unwrap()
}

fn query_schema<'a>(doc: &'a Value, resource: &str, name: &str) -> &'a Value {
    doc["paths"][format!("/api/{resource}/")]["get"]["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == name)
        .map(|p| &p["schema"])
        .unwrap_or_else(|| panic!("{resource}: no query parameter {name}"))
}

async fn schema_and_server_agree_on_what_is_valid(backend: Backend) {
    let app = spawn_app(backend).await;
    let doc = document(&app).await;
    let admin = app.login("org1-admin").await;

    const I64_MAX: &str = "9223372036854775807";
    const PAST_I64_MAX: &str = "9223372036854775808";
    const BELOW_I64_MIN: &str = "-9223372036854775809";
    // (resource, parameter, value, accepted)
    let queries = [
        ("students", "batch", "2019", true),
        ("students", "batch", I64_MAX, true),
        ("students", "batch", "-9223372036854775808", true),
        ("students", "batch", PAST_I64_MAX, false),
        ("students", "batch", BELOW_I64_MIN, false),
        ("students", "semester", "123456789012345678901", false),
        ("students", "semester", "x", false),
        // DRF ignores a page_size it cannot use and cuts a large one off.
        ("faculty", "page_size", "0", true),
        ("faculty", "page_size", "-5", true),
        ("faculty", "page_size", "true", true),
        ("faculty", "page_size", "abc", true),
        ("faculty", "page_size", "100000000000000000000000", true),
        ("faculty", "page", "0", false),
        ("faculty", "page", "1", true),
        // DRF's `query_params.get("page") or 1`.
        ("faculty", "page", "", true),
        ("faculty", "page", "abc", false),
        // django-filter skips an empty filter.
        ("users", "is_active", "", true),
        ("students", "batch", " ", true),
        ("users", "role", "staff", true),
        ("users", "role", "AAA", false),
        ("users", "is_active", "false", true),
        ("users", "is_active", "maybe", false),
        // Unknown ordering fields are ignored (DRF's OrderingFilter).
        ("programs", "ordering", "bogus", true),
        ("programs", "ordering", "-code", true),
        ("programs", "ordering", "1", true),
    ];
    for (resource, name, raw, accepted) in queries {
        let schema = query_schema(&doc, resource, name);
        let value = if schema["type"] == "array" {
            json!([typed(raw)])
        } else {
            typed(raw)
        };
        let path = format!(
            "/api/{resource}/?{}",
            serde_urlencoded::to_string([(name, raw)]).unwrap()
        );
        let r = app.get(&admin, &path).await;
        let status = r.status();
        assert_eq!(
            status.is_success(),
            accepted,
            "{path}: the server answered {status}"
        );
        assert_eq!(
            validates(&doc, schema, &value),
            accepted,
            "{path}: the document's {schema} disagrees with the server's {status}"
        );
    }

    // An unusable page_size is the default page; a huge one is the largest.
    let (_, default) = app.get_json(&admin, "/api/students/?page_size=1").await;
    let (_, ignored) = app
        .get_json(&admin, "/api/students/?page_size=1&page_size=0")
        .await;
    let (_, first) = app.get_json(&admin, "/api/students/").await;
    assert_ne!(default, first, "page_size=1 changes the page");
    assert!(ignored == first, "page_size=0 is not ignored");
    let (_, huge) = app
        .get_json(&admin, "/api/students/?page_size=99999999999999999999999")
        .await;
    let (_, largest) = app.get_json(&admin, "/api/students/?page_size=500").await;
    assert!(huge == largest, "a huge page_size is not cut off");

    let (_, users) = app.get_json(&admin, "/api/users/?role=student").await;
    let student = users["results"][0]["id"].as_i64().unwrap();
    let (_, programs) = app.get_json(&admin, "/api/programs/").await;
    let department = programs["results"][0]["department"]["id"].as_i64().unwrap();
    let program = programs["results"][0]["id"].as_i64().unwrap();
    // (resource, id, field, value, accepted): one PATCH each.
    let bodies = [
        ("departments", None, "name", json!("a\u{0}b"), false),
        (
            "departments",
            None,
            "name",
            json!(" \u{3000}\u{85}\t"),
            false,
        ),
        ("departments", None, "name", json!(" Physics "), true),
        // Lengths are checked once trimmed.
        (
            "departments",
            None,
            "name",
            json!(format!("  {}  ", "n".repeat(120))),
            true,
        ),
        ("departments", None, "name", json!("n".repeat(121)), false),
        ("departments", None, "code", json!("  ZZ9 "), true),
        ("departments", None, "code", json!("Z Z"), false),
        ("users", Some(student), "password", json!("       a"), false),
        (
            "users",
            Some(student),
            "password",
            json!(" pass word "),
            true,
        ),
        ("users", Some(student), "first_name", json!("a\u{0}"), false),
        ("users", Some(student), "first_name", json!("  "), true),
        ("users", Some(student), "is_active", json!(0), true),
        ("users", Some(student), "is_active", json!(1.0), true),
        ("users", Some(student), "is_active", json!("Yes"), true),
        ("users", Some(student), "is_active", json!("maybe"), false),
        ("users", Some(student), "is_active", json!(2), false),
        (
            "users",
            Some(student),
            "email",
            json!(" A@B.example "),
            true,
        ),
        (
            "users",
            Some(student),
            "email",
            json!("a@b@c.example"),
            true,
        ),
        ("users", Some(student), "email", json!("a@localhost"), false),
        ("users", Some(student), "email", json!("a@.example"), false),
        (
            "users",
            Some(student),
            "email",
            json!("a b@c.example"),
            false,
        ),
        ("users", Some(student), "username", json!("D\u{9c}q"), false),
        ("users", Some(student), "username", json!("zoë.ß-1"), true),
        (
            "users",
            Some(student),
            "password",
            json!("\u{0}\u{0}\u{0}\u{0}\u{0}\u{0}\u{0}\u{0}"),
            false,
        ),
        (
            "programs",
            Some(program),
            "department_id",
            json!(department as f64),
            true,
        ),
        (
            "programs",
            Some(program),
            "department_id",
            json!(1.5),
            false,
        ),
    ];
    for (resource, id, field, value, accepted) in bodies {
        let id = match id {
            Some(id) => id,
            None => {
                let (_, page) = app.get_json(&admin, &format!("/api/{resource}/")).await;
                page["results"][0]["id"].as_i64().unwrap()
            }
        };
        let component = match resource {
            "departments" => "Department",
            "programs" => "Program",
            _ => "User",
        };
        let body = json!({ field: value });
        let status = app
            .client
            .patch(app.url(&format!("/api/{resource}/{id}/")))
            .bearer_auth(&admin)
            .json(&body)
            .send()
            .await
            .unwrap()
            .status();
        let schema = &doc["components"]["schemas"][format!("{component}Patch")];
        assert_eq!(
            status.is_success(),
            accepted,
            "PATCH {resource} {body}: the server answered {status}"
        );
        assert_eq!(
            validates(&doc, schema, &body),
            accepted,
            "PATCH {resource} {body}: the document disagrees with the server's {status}"
        );
    }
    // 0 deactivated the student and "Yes" reactivated it; the rows above are
    // the server's answers, whatever the order.

    // The token request's strings: a NUL is a field error, as in DRF.
    let body = json!({"username": "org1-\u{0}admin", "password": PASSWORD});
    let r = app
        .client
        .post(app.url("/api/auth/token/"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST, "a NUL in a username");
    let request = &doc["components"]["schemas"]["TokenObtainRequest"];
    assert!(
        !validates(&doc, request, &body),
        "the document admits a NUL"
    );

    // The unique fields: a copy of an existing row is refused for exactly the
    // fields the document marks `x-unique`.
    for (resource, component) in [
        ("departments", "Department"),
        ("programs", "Program"),
        ("faculty", "Faculty"),
        ("students", "Student"),
        ("users", "User"),
    ] {
        let (_, page) = app
            .get_json(&admin, &format!("/api/{resource}/?ordering=-id"))
            .await;
        let row = &page["results"][0];
        let create = resolve(
            &doc,
            &doc["components"]["schemas"][format!("{component}Create")],
        );
        let mut body = json!({});
        let mut unique = std::collections::BTreeSet::new();
        for (name, p) in create["properties"].as_object().unwrap() {
            if p.get("x-unique").is_some() {
                unique.insert(name.clone());
            }
            body[name.as_str()] = match name.strip_suffix("_id") {
                Some(related) if p["format"] == "int64" => row[related]["id"].clone(),
                _ if p["format"] == "password" => json!("long-enough-password"),
                _ => row[name.as_str()].clone(),
            };
        }
        assert!(validates(&doc, create, &body), "{resource}: {body}");
        let r = app
            .client
            .post(app.url(&format!("/api/{resource}/")))
            .bearer_auth(&admin)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{resource}: a copy");
        let errors: Value = r.json().await.unwrap();
        let refused: std::collections::BTreeSet<String> =
            errors.as_object().unwrap().keys().cloned().collect();
        assert_eq!(
            refused, unique,
            "{resource}: the fields a copy is refused for (left) are not the ones marked x-unique (right)"
        );
    }

    // Every operation can answer 503 (the database, the request's time limit),
    // with Retry-After.
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            assert!(
                op["responses"]["503"].is_object(),
                "{method} {path}: no 503"
            );
        }
    }
    for name in ["TooManyRequests", "ServiceUnavailable"] {
        assert_eq!(
            doc["components"]["responses"][name]["headers"]["Retry-After"]["required"], true,
            "{name}"
        );
    }
}

/// Login's 429 is in the document, and the throttled answer matches it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_schema_declares_the_login_throttle() {
    let app = spawn_app_with(
        Backend::Sqlite,
        AppOptions {
            configure: |c| {
                c.limits.login_throttle_username = "1/minute".parse().unwrap();
            },
            ..AppOptions::default()
        },
    )
    .await;
    let doc = document(&app).await;
    let login = |password: &'static str| {
        app.client
            .post(app.url("/api/auth/token/"))
            .json(&json!({"username": "org1-admin", "password": password}))
            .send()
    };
    assert_eq!(
        login("wrong").await.unwrap().status(),
        StatusCode::UNAUTHORIZED
    );
    let r = login("wrong").await.unwrap();
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    let declared = resolve(
        &doc,
        &doc["paths"]["/api/auth/token/"]["post"]["responses"]["429"],
    );
    assert!(declared.is_object(), "login's 429 is not documented");
    let retry = r.headers()["retry-after"].to_str().unwrap().to_owned();
    let header = &declared["headers"]["Retry-After"]["schema"];
    assert!(
        validates(&doc, header, &json!(retry)),
        "Retry-After: {retry}"
    );
    let body: Value = r.json().await.unwrap();
    let schema = &declared["content"]["application/json"]["schema"];
    assert!(validates(&doc, schema, &body), "{body}");
    assert!(
        doc["paths"]["/api/auth/token/"]["post"]["responses"]["503"].is_object(),
        "login's 503 (the hash pool full) is not documented"
    );
}
