//! `/api/schema/` against the API it describes: every endpoint's real responses
//! (lists, details, writes, every error status) validate against the schema the
//! document declares for that status, every field returned is documented and
//! every documented field is returned, and the write bodies' `required` lists
//! are exactly what the API answers "This field is required." for.

use std::collections::BTreeSet;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::both_backends;
use crate::helpers::*;

both_backends!(every_response_matches_the_documented_schema);

const RESOURCES: [&str; 5] = ["departments", "programs", "faculty", "students", "users"];

struct Doc(Value);

impl Doc {
    /// Follows a local `$ref` (`#/components/...`).
    fn resolve<'a>(&'a self, v: &'a Value) -> &'a Value {
        match v.get("$ref").and_then(Value::as_str) {
            Some(r) => {
                let target = self
                    .0
                    .pointer(r.trim_start_matches('#'))
                    .unwrap_or_else(|| panic!("dangling $ref {r}"));
                self.resolve(target)
            }
            None => v,
        }
    }

    fn schema(&self, name: &str) -> &Value {
        let s = &self.0["components"]["schemas"][name];
        assert!(s.is_object(), "no schema {name}");
        s
    }

    /// The documented response of `method path` for `status`. A 405 is
    /// documented once, for every method a path does not list.
    fn response(&self, method: &Method, path: &str, status: StatusCode) -> &Value {
        let item = &self.0["paths"][path];
        assert!(item.is_object(), "{path} undocumented");
        let op = &item[method.as_str().to_ascii_lowercase()];
        if status == StatusCode::METHOD_NOT_ALLOWED {
            assert!(
                op.is_null(),
                "{method} {path} is documented yet answered 405"
            );
            return self.resolve(&self.0["components"]["responses"]["MethodNotAllowed"]);
        }
        assert!(op.is_object(), "{method} {path} undocumented");
        let r = &op["responses"][status.as_str()];
        assert!(
            r.is_object(),
            "{method} {path}: status {status} undocumented"
        );
        self.resolve(r)
    }

    /// Checks one real response against the document.
    fn check(&self, method: &Method, path: &str, status: StatusCode, body: &Value) {
        let response = self.response(method, path, status);
        let schema = &response["content"]["application/json"]["schema"];
        if body.is_null() {
            assert!(
                schema.is_null(),
                "{method} {path} {status}: no body, but one is documented"
            );
            return;
        }
        assert!(
            !schema.is_null(),
            "{method} {path} {status}: a body, none documented: {body}"
        );
        self.validate(schema, body, &format!("{method} {path} {status}"));
        self.same_fields(schema, body, &format!("{method} {path} {status}"));
    }

    /// JSON Schema validation (formats included) of `body` against `schema`,
    /// with the document's components in reach of its `$ref`s.
    fn validate(&self, schema: &Value, body: &Value, what: &str) {
        let mut root = schema.clone();
        root["components"] = self.0["components"].clone();
        let validator = jsonschema::draft202012::options()
            .should_validate_formats(true)
            .build(&root)
            .unwrap_or_else(|e| panic!("{what}: the documented schema does not compile: {e}"));
        let errors: Vec<String> = validator
            .iter_errors(body)
            .map(|e| format!("{} at {}", e, e.instance_path()))
            .collect();
        assert!(
            errors.is_empty(),
            "{what}: the body does not match its documented schema:\n  {}\nbody: {body}",
            errors.join("\n  ")
        );
    }

    /// Every field returned is documented and every documented field returned,
    /// at every depth (the schemas also say so with `required` and
    /// `additionalProperties: false`; this names the difference).
    fn same_fields(&self, schema: &Value, body: &Value, at: &str) {
        let schema = self.resolve(schema);
        match body {
            Value::Object(map) => {
                let Some(props) = schema.get("properties").and_then(Value::as_object) else {
                    return; // a map of field errors, or a oneOf validated above
                };
                let documented: BTreeSet<&str> = props
                    .iter()
                    .filter(|(_, p)| p.get("writeOnly") != Some(&json!(true)))
                    .map(|(k, _)| k.as_str())
                    .filter(|k| {
                        // Optional members of the error body (SimpleJWT's extras).
                        !(matches!(*k, "code" | "messages") && props.contains_key("detail"))
                    })
                    .collect();
                let returned: BTreeSet<&str> = map
                    .keys()
                    .map(String::as_str)
                    .filter(|k| {
                        !(matches!(*k, "code" | "messages") && props.contains_key("detail"))
                    })
                    .collect();
                assert_eq!(
                    returned, documented,
                    "{at}: returned fields (left) differ from the documented ones (right)"
                );
                for (k, v) in map {
                    if let Some(p) = props.get(k) {
                        self.same_fields(p, v, &format!("{at}.{k}"));
                    }
                }
            }
            Value::Array(items) => {
                if let Some(item) = schema.get("items") {
                    for (i, v) in items.iter().enumerate() {
                        self.same_fields(item, v, &format!("{at}[{i}]"));
                    }
                }
            }
            _ => {}
        }
    }

    /// The names `required` by a write body schema.
    fn required(&self, name: &str) -> BTreeSet<String> {
        self.schema(name)["required"]
            .as_array()
            .map(|r| r.iter().map(|v| v.as_str().unwrap().to_owned()).collect())
            .unwrap_or_default()
    }

    fn list_parameters(&self, resource: &str) -> Vec<Value> {
        self.0["paths"][format!("/api/{resource}/")]["get"]["parameters"]
            .as_array()
            .unwrap()
            .clone()
    }
}

/// `department` → `Department`, as the document names components.
fn component(resource: &str) -> &'static str {
    match resource {
        "departments" => "Department",
        "programs" => "Program",
        "faculty" => "Faculty",
        "students" => "Student",
        "users" => "User",
        _ => unreachable!(),
    }
}

/// A test client that checks every response it gets against the document.
struct Checked<'a> {
    app: &'a TestApp,
    doc: &'a Doc,
    checked: std::cell::Cell<usize>,
}

impl Checked<'_> {
    async fn call(
        &self,
        method: Method,
        token: Option<&str>,
        path: &str,
        template: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut req = self.app.client.request(method.clone(), self.app.url(path));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let r = req.send().await.unwrap();
        let status = r.status();
        let bytes = r.bytes().await.unwrap();
        let body: Value = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("{path}: not JSON: {e}"))
        };
        self.doc.check(&method, template, status, &body);
        self.checked.set(self.checked.get() + 1);
        (status, body)
    }
}

/// A create body for `resource` from the documented `{M}Create` schema, with
/// values taken from an existing row (`like`) and made unique where they must be.
fn create_body(doc: &Doc, resource: &str, like: &Value, n: usize) -> Value {
    let schema = doc.schema(&format!("{}Create", component(resource)));
    let mut body = json!({});
    for (name, p) in schema["properties"].as_object().unwrap() {
        let p = doc.resolve(p);
        let related = name
            .strip_suffix("_id")
            .filter(|_| p.get("format") == Some(&json!("int64")));
        let v = if let Some(rel) = related {
            like[rel]["id"].clone()
        } else if p.get("format") == Some(&json!("password")) {
            json!("long-enough-password")
        } else if name == "email" {
            json!(format!("schema{n}@{resource}.example"))
        } else if p.get("pattern").is_some() || name == "username" {
            json!(format!("ZZ{n}"))
        } else {
            like[name.as_str()].clone()
        };
        body[name.as_str()] = v;
    }
    body
}

async fn every_response_matches_the_documented_schema(backend: Backend) {
    let app = spawn_app(backend).await;
    let r = app
        .client
        .get(app.url("/api/schema/"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let doc = Doc(r.json().await.unwrap());
    assert_eq!(doc.0["openapi"], "3.1.0");
    // Swagger UI reads the same document.
    let ui = app.client.get(app.url("/api/docs/")).send().await.unwrap();
    assert_eq!(ui.status(), StatusCode::OK);
    let config = app
        .client
        .get(app.url("/api/docs/swagger-initializer.js"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(config.contains("/api/schema/"), "{config}");

    // The representations are closed and complete: what the validator checks
    // is the whole set of fields, both ways.
    for name in RESOURCES
        .iter()
        .map(|r| component(r).to_owned())
        .chain(["CurrentUser", "Dashboard", "TokenPair", "AccessToken"].map(String::from))
    {
        let s = doc.schema(&name);
        assert_eq!(s["additionalProperties"], false, "{name}");
        let props: BTreeSet<&String> = s["properties"].as_object().unwrap().keys().collect();
        let required: BTreeSet<&String> = s["required"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| match v {
                Value::String(s) => s,
                _ => unreachable!(),
            })
            .collect();
        assert_eq!(props, required, "{name}: every field is always returned");
    }

    let c = Checked {
        app: &app,
        doc: &doc,
        checked: Default::default(),
    };
    let admin = app.login("org1-admin").await;
    let student = app.login("org1-student").await;
    let t = Some(admin.as_str());
    let get = Method::GET;

    for (n, resource) in RESOURCES.into_iter().enumerate() {
        let list = format!("/api/{resource}/");
        let item = format!("/api/{resource}/{{id}}/");
        let (status, page) = c.call(get.clone(), t, &list, &list, None).await;
        assert_eq!(status, StatusCode::OK);
        let first = page["results"][0].clone();
        assert!(
            first.is_object(),
            "{resource}: an empty first page proves little"
        );

        // Every documented query parameter, with a value of its documented type.
        for p in doc.list_parameters(resource) {
            let name = p["name"].as_str().unwrap();
            let values: Vec<String> = match name {
                "If-None-Match" => continue,
                "page" => vec!["1".into()],
                "page_size" => vec!["1".into(), "100000".into()],
                "search" => vec![
                    first["email"]
                        .as_str()
                        .or(first["code"].as_str())
                        .unwrap()
                        .to_owned(),
                ],
                "ordering" => p["schema"]["items"]["anyOf"][0]["enum"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|v| v.as_str().unwrap().to_owned())
                    .collect(),
                filter => {
                    // A related row filters by its code, the rest by the value.
                    let v = &first[filter];
                    vec![match v {
                        Value::Object(o) => o["code"].as_str().unwrap().to_owned(),
                        Value::String(s) => s.clone(),
                        other => other.to_string(),
                    }]
                }
            };
            for v in values {
                let path = format!(
                    "{list}?{}",
                    serde_urlencoded::to_string([(name, &v)]).unwrap()
                );
                let (status, body) = c.call(get.clone(), t, &path, &list, None).await;
                assert_eq!(status, StatusCode::OK, "{path}: {body}");
                if !matches!(name, "ordering" | "page_size") {
                    assert!(
                        body["count"].as_u64().unwrap() >= 1,
                        "{path} does not find the row it was taken from"
                    );
                }
            }
        }
        let (status, two) = c
            .call(
                get.clone(),
                t,
                &format!("{list}?page=2&page_size=1"),
                &list,
                None,
            )
            .await;
        assert_eq!(status, StatusCode::OK);
        assert!(
            two["next"].is_string() && two["previous"].is_string(),
            "{two}"
        );
        let (status, _) = c
            .call(get.clone(), t, &format!("{list}?page=9999"), &list, None)
            .await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        let (status, _) = c.call(get.clone(), None, &list, &list, None).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        let (status, _) = c.call(Method::PUT, t, &list, &list, Some(json!({}))).await;
        assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);

        // Details, and a 304 on the ETag.
        let id = first["id"].as_i64().unwrap();
        let path = format!("/api/{resource}/{id}/");
        let (status, got) = c.call(get.clone(), t, &path, &item, None).await;
        assert_eq!((status, &got), (StatusCode::OK, &first));
        let etag = app.get(&admin, &path).await.headers()["etag"].clone();
        let r = app
            .client
            .get(app.url(&path))
            .bearer_auth(&admin)
            .header("If-None-Match", etag)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::NOT_MODIFIED);
        doc.check(&get, &item, r.status(), &Value::Null);
        let (status, _) = c
            .call(
                get.clone(),
                t,
                &format!("/api/{resource}/999999999/"),
                &item,
                None,
            )
            .await;
        assert_eq!(status, StatusCode::NOT_FOUND);

        // Writes: what the API requires is what the document says it requires.
        let component = component(resource);
        let (status, errors) = c.call(Method::POST, t, &list, &list, Some(json!({}))).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        let asked: BTreeSet<String> = errors.as_object().unwrap().keys().cloned().collect();
        assert_eq!(
            asked,
            doc.required(&format!("{component}Create")),
            "POST {list} {{}}"
        );
        let (status, errors) = c.call(Method::PUT, t, &path, &item, Some(json!({}))).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        let asked: BTreeSet<String> = errors.as_object().unwrap().keys().cloned().collect();
        assert_eq!(
            asked,
            doc.required(&format!("{component}Replace")),
            "PUT {path} {{}}"
        );

        let body = create_body(&doc, resource, &first, n);
        doc.validate(
            doc.schema(&format!("{component}Create")),
            &body,
            "the create body",
        );
        let (status, created) = c
            .call(Method::POST, t, &list, &list, Some(body.clone()))
            .await;
        assert_eq!(status, StatusCode::CREATED, "{created}");
        let new = format!("/api/{resource}/{}/", created["id"]);
        let (status, _) = c.call(Method::PATCH, t, &new, &item, Some(json!({}))).await;
        assert_eq!(status, StatusCode::OK);
        let mut replace = body.clone();
        if let Some(m) = replace.as_object_mut() {
            m.remove("password");
        }
        doc.validate(
            doc.schema(&format!("{component}Replace")),
            &replace,
            "the replace body",
        );
        let (status, v) = c.call(Method::PUT, t, &new, &item, Some(replace)).await;
        assert_eq!(status, StatusCode::OK, "{v}");
        let (status, _) = c
            .call(
                Method::POST,
                Some(&student),
                &list,
                &list,
                Some(body.clone()),
            )
            .await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        let r = app
            .client
            .post(app.url(&list))
            .bearer_auth(&admin)
            .header("content-type", "text/plain")
            .body("x")
            .send()
            .await
            .unwrap();
        let status = r.status();
        doc.check(&Method::POST, &list, status, &r.json().await.unwrap());
        assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
        let (status, _) = c.call(Method::DELETE, t, &new, &item, None).await;
        assert_eq!(status, StatusCode::NO_CONTENT);
        if resource == "departments" {
            let (status, _) = c.call(Method::DELETE, t, &path, &item, None).await;
            assert_eq!(
                status,
                StatusCode::CONFLICT,
                "a department still referenced"
            );
        }
    }
    // A malformed filter value: DRF's field errors.
    let list = "/api/students/";
    let (status, v) = c
        .call(
            get.clone(),
            t,
            "/api/students/?semester=x&is_active=maybe",
            list,
            None,
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(v["semester"].is_array() && v["is_active"].is_array(), "{v}");

    // Authentication.
    let token = "/api/auth/token/";
    let (status, pair) = c
        .call(
            Method::POST,
            None,
            token,
            token,
            Some(json!({"username": "org1-staff", "password": PASSWORD})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = c
        .call(
            Method::POST,
            None,
            token,
            token,
            Some(json!({"username": "org1-staff", "password": "wrong"})),
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, v) = c
        .call(Method::POST, None, token, token, Some(json!({})))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let asked: BTreeSet<String> = v.as_object().unwrap().keys().cloned().collect();
    assert_eq!(asked, doc.required("TokenObtainRequest"));
    let refresh = "/api/auth/token/refresh/";
    let (status, _) = c
        .call(
            Method::POST,
            None,
            refresh,
            refresh,
            Some(json!({"refresh": pair["refresh"]})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = c
        .call(
            Method::POST,
            None,
            refresh,
            refresh,
            Some(json!({"refresh": pair["access"]})),
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = c
        .call(get.clone(), t, "/api/auth/me/", "/api/auth/me/", None)
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = c
        .call(
            get.clone(),
            Some("garbage"),
            "/api/auth/me/",
            "/api/auth/me/",
            None,
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = c
        .call(Method::DELETE, t, "/api/auth/me/", "/api/auth/me/", None)
        .await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    let dashboard = "/api/stats/dashboard/";
    let (status, stats) = c.call(get.clone(), t, dashboard, dashboard, None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(!stats["departments"].as_array().unwrap().is_empty());
    assert!(
        c.checked.get() > 150,
        "only {} responses checked",
        c.checked.get()
    );
}
