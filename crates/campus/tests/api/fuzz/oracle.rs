//! What every response must be free of: another organization's objects,
//! `organization` fields or strings; no 5xx; a foreign row is a 404 and a
//! reference to one a 400 (or a 403 for a role that may not write).

use axum::http::StatusCode;
use serde_json::{Value, json};

use super::{Expect, Req, World};

/// Checks a response body for anything of another organization.
fn inspect(w: &World, me: usize, model: Option<&str>, v: &Value, ctx: &str) {
    match v {
        Value::Object(map) => {
            for key in ["organization", "organization_id", "org", "org_id"] {
                if let Some(o) = map.get(key) {
                    assert_eq!(
                        o,
                        &json!(w.orgs[me].id),
                        "{ctx}: `{key}` of another organization in {v}"
                    );
                }
            }
            if let (Some(model), Some(id)) = (model, map.get("id").and_then(Value::as_i64)) {
                assert!(
                    !w.is_foreign(me, model, id),
                    "{ctx}: {model} #{id} of another organization: {v}"
                );
            }
            for (k, child) in map {
                let child_model = match k.as_str() {
                    "department" => Some("department"),
                    "program" => Some("program"),
                    "results" => model,
                    // The dashboard's per-department counts.
                    "departments" => Some("department"),
                    _ => None,
                };
                inspect(w, me, child_model, child, ctx);
            }
        }
        Value::Array(items) => {
            for item in items {
                inspect(w, me, model, item, ctx);
            }
        }
        Value::String(s) => {
            assert!(
                !w.foreign_strings[me].contains(s),
                "{ctx}: {s:?} belongs to another organization"
            );
        }
        _ => {}
    }
}

/// The assertions on one response.
pub(super) fn check(
    w: &World,
    req: &Req,
    status: StatusCode,
    bytes: &[u8],
    body: Option<&Value>,
    ctx: &str,
) {
    assert!(
        !status.is_server_error(),
        "{ctx}: {status} {}",
        String::from_utf8_lossy(bytes)
    );
    let may_write = match (req.role, req.model) {
        ("admin", _) => true,
        ("staff", Some(m)) => m != "user",
        _ => false,
    };
    match req.expect {
        Expect::NotFound if req.method == "GET" || may_write => {
            assert_eq!(status, StatusCode::NOT_FOUND, "{ctx}")
        }
        Expect::NotFound => assert_eq!(status, StatusCode::FORBIDDEN, "{ctx}"),
        Expect::Rejected if may_write => assert_eq!(status, StatusCode::BAD_REQUEST, "{ctx}"),
        Expect::Rejected => assert_eq!(status, StatusCode::FORBIDDEN, "{ctx}"),
        Expect::Any => {}
    }
    if req.method != "GET" && status.is_success() {
        assert!(may_write, "{ctx}: a role that may not write got {status}");
    }
    if bytes.is_empty() {
        return;
    }
    let v = body.unwrap_or_else(|| panic!("{ctx}: not JSON: {}", String::from_utf8_lossy(bytes)));
    let me = req.uri.starts_with("/api/auth/me/");
    let model = if me { Some("user") } else { req.model };
    inspect(w, req.org, model, v, ctx);
    if me && status.is_success() {
        assert_eq!(v["organization_id"], w.orgs[req.org].id, "{ctx}");
    }
}
