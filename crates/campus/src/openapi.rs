//! The OpenAPI 3.1 document (`/api/schema/`) and Swagger UI (`/api/docs/`).
//!
//! Generated from the resources' own declarations: their fields
//! ([`crate::fields`], what writes are validated against), filters, ordering
//! and search fields, the same constants the handlers use; so the document
//! cannot drift from the code. `tests/api/openapi.rs` checks real responses of
//! every endpoint against it.
//!
//! Layout: this file makes the paths and operations; `schema` makes the JSON
//! Schemas of the bodies.

mod schema;

use serde_json::{Map, Value, json};

use crate::api::{auth, departments, faculty, programs, stats, students, users};
use crate::fields::{self, Type};
use crate::listing::{DEFAULT_PAGE_SIZE, FilterInt, FilterKind, MAX_PAGE_SIZE};
use crate::resource::Resource;
use schema::{component_name, reference};

/// `#/components/responses/{name}`.
fn shared(name: &str) -> Value {
    json!({ "$ref": format!("#/components/responses/{name}") })
}

fn json_response(description: &str, schema: Value) -> Value {
    json!({"description": description, "content": {"application/json": {"schema": schema}}})
}

/// A cached read's 200: the body, with `ETag` and `X-Cache`.
fn cached(description: &str, schema: Value) -> Value {
    let mut r = json_response(description, schema);
    r["headers"] = json!({
        "ETag": {"description": "strong validator of the body", "schema": {"type": "string"}},
        "X-Cache": {"schema": {"type": "string", "enum": ["HIT", "MISS", "STALE", "BYPASS"]}},
    });
    r
}

fn query(name: &str, description: &str, schema: Value) -> Value {
    json!({"name": name, "in": "query", "required": false, "description": description, "schema": schema})
}

fn if_none_match() -> Value {
    json!({"name": "If-None-Match", "in": "header", "required": false,
           "description": "an ETag from an earlier response: 304 while it is current",
           "schema": {"type": "string"}})
}

fn body(name: &str) -> Value {
    json!({"required": true, "content": {"application/json": {"schema": reference(name)}}})
}

/// The query parameters of a resource's list, from its declarations.
fn list_parameters<R: Resource>() -> Vec<Value> {
    let mut params = vec![
        // DRF's `query_params.get("page") or 1`: an empty value is page 1.
        query(
            "page",
            "1-based page; empty: the first; past the end or not a positive integer: 404 `Invalid page.`",
            json!({
                "anyOf": [{"type": "integer", "minimum": 1}, {"type": "string", "maxLength": 0}],
                "default": 1,
            }),
        ),
        // DRF reads page_size leniently (`crate::listing::page_size`): any
        // value is accepted, so the schema admits any; a positive integer is
        // the one that changes the page.
        query(
            "page_size",
            &format!(
                "rows per page: a positive integer, cut off at {MAX_PAGE_SIZE}; any other value is ignored (the default, {DEFAULT_PAGE_SIZE}, is used)"
            ),
            json!({
                "anyOf": [
                    {"type": "integer", "minimum": 1},
                    {"description": "any other value: ignored"},
                ],
                "default": DEFAULT_PAGE_SIZE,
            }),
        ),
        query(
            "search",
            &format!(
                "case-insensitive; terms separated by spaces or commas, each must occur in one of: {}",
                R::search().join(", ")
            ),
            json!({"type": "string", "maxLength": crate::listing::MAX_SEARCH_CHARS}),
        ),
    ];
    let orderings: Vec<String> = R::ordering()
        .iter()
        .flat_map(|f| [(*f).to_owned(), format!("-{f}")])
        .collect();
    // DRF's OrderingFilter drops the fields it does not know (SPEC §4), so any
    // string is accepted; the first branch names the ones that order.
    let mut ordering = query(
        "ordering",
        "comma-separated fields, `-` for descending; unknown fields are ignored; ties by id",
        json!({"type": "array", "items": {"anyOf": [
            {"type": "string", "enum": orderings},
            {"description": "any other value: ignored"},
        ]}}),
    );
    ordering["style"] = json!("form");
    ordering["explode"] = json!(false);
    params.push(ordering);
    for (name, kind) in R::filters() {
        let declared = fields::find(R::FIELDS, name).map(|f| f.ty);
        let (description, schema) = match (kind, declared) {
            (_, Some(Type::Related { .. })) => (
                format!("exact match: the {name}'s code"),
                json!({"type": "string"}),
            ),
            (FilterKind::Choice(choices), _) => (
                "exact match; another value is a field error".to_owned(),
                json!({"type": "string", "enum": choices}),
            ),
            (FilterKind::Text, _) => ("exact match".to_owned(), json!({"type": "string"})),
            (FilterKind::Int, _) => (
                "exact match; a value outside the range is a field error".to_owned(),
                json!({"type": "integer", "format": "int64",
                       "minimum": FilterInt::MIN, "maximum": FilterInt::MAX}),
            ),
            (FilterKind::Bool, _) => (
                "exact match (also 1/0, yes/no, on/off)".to_owned(),
                json!({"type": "boolean"}),
            ),
        };
        // django-filter skips a filter whose value is empty (here: nothing
        // but whitespace and NULs, which `crate::listing` drops).
        let schema = json!({"anyOf": [
            schema,
            {"type": "string", "pattern": schema::blank_pattern(), "description": "no filter"},
        ]});
        params.push(query(name, &description, schema));
    }
    params.push(if_none_match());
    params
}

fn operation(id: String, summary: String, responses: Value) -> Value {
    json!({"operationId": id, "summary": summary, "tags": [], "responses": responses})
}

/// The collection's path and its items' (`{path}{id}/`), named after the
/// collection ([`crate::model::Model::collection`]).
fn resource<R: Resource>(paths: &mut Map<String, Value>) {
    let name = R::MODEL.collection();
    let model = component_name(R::MODEL.name());
    let write_errors = |mut r: Value| {
        for (status, response) in [
            ("400", "BadRequest"),
            ("403", "Forbidden"),
            ("413", "PayloadTooLarge"),
            ("415", "UnsupportedMediaType"),
        ] {
            r[status] = shared(response);
        }
        r
    };
    let mut list = operation(
        format!("{name}_list"),
        format!("List {name} (paginated, cached)"),
        json!({
            "200": cached("one page", reference(&format!("Paginated{model}List"))),
            "304": shared("NotModified"),
            "400": shared("BadRequest"),
            "401": shared("Unauthorized"),
            "404": shared("NotFound"),
        }),
    );
    list["tags"] = json!([name]);
    list["parameters"] = json!(list_parameters::<R>());
    let mut create = operation(
        format!("{name}_create"),
        format!("Create a {}", R::MODEL),
        write_errors(json!({
            "201": json_response("created", reference(&model)),
            "401": shared("Unauthorized"),
        })),
    );
    create["tags"] = json!([name]);
    create["requestBody"] = body(&format!("{model}Create"));

    // `crate::resource::parse_id`'s type: an id outside it is a 404.
    let id = json!({"name": "id", "in": "path", "required": true,
                    "schema": {"type": "integer", "format": "int64",
                               "minimum": i64::MIN, "maximum": i64::MAX}});
    let detail = |op: &str, summary: &str, responses: Value| {
        let mut o = operation(
            format!("{name}_{op}"),
            format!("{summary} a {}", R::MODEL),
            responses,
        );
        o["tags"] = json!([name]);
        o["parameters"] = json!([id.clone()]);
        o["responses"]["401"] = shared("Unauthorized");
        o["responses"]["404"] = shared("NotFound");
        o
    };
    let mut retrieve = detail(
        "retrieve",
        "Retrieve",
        json!({"200": cached("the row", reference(&model)), "304": shared("NotModified")}),
    );
    if let Some(p) = retrieve["parameters"].as_array_mut() {
        p.push(if_none_match());
    }
    let write = |op: &str, summary: &str, schema: &str| {
        let mut o = detail(
            op,
            summary,
            write_errors(json!({"200": json_response("updated", reference(&model))})),
        );
        o["requestBody"] = body(&format!("{model}{schema}"));
        o
    };
    let destroy = detail(
        "destroy",
        "Delete",
        json!({
            "204": {"description": "deleted"},
            "400": shared("BadRequest"),
            "403": shared("Forbidden"),
            "409": shared("Conflict"),
        }),
    );
    paths.insert(
        R::MODEL.path().to_owned(),
        json!({"get": list, "post": create}),
    );
    paths.insert(
        format!("{}{{id}}/", R::MODEL.path()),
        json!({
            "get": retrieve,
            "put": write("update", "Replace", "Replace"),
            "patch": write("partial_update", "Update", "Patch"),
            "delete": destroy,
        }),
    );
}

fn components() -> Value {
    let mut schemas = Map::new();
    schema::errors(&mut schemas);
    schema::resource::<departments::Departments>(&mut schemas);
    schema::resource::<programs::Programs>(&mut schemas);
    schema::resource::<faculty::Faculty>(&mut schemas);
    schema::resource::<students::Students>(&mut schemas);
    schema::resource::<users::Users>(&mut schemas);
    let mut me = schema::object(&users::FIELDS, false);
    me["properties"]["organization_id"] =
        json!({"type": "integer", "format": "int64", "readOnly": true});
    if let Some(r) = me["required"].as_array_mut() {
        r.push(json!("organization_id"));
    }
    schemas.insert("CurrentUser".into(), me);
    schemas.insert(
        "TokenObtainRequest".into(),
        schema::strings(&auth::TOKEN_REQUEST, &["password"], false),
    );
    schemas.insert(
        "TokenPair".into(),
        schema::strings(&["access", "refresh"], &[], true),
    );
    schemas.insert(
        "TokenRefreshRequest".into(),
        schema::strings(&auth::REFRESH_REQUEST, &[], false),
    );
    schemas.insert(
        "AccessToken".into(),
        schema::strings(&["access"], &[], true),
    );
    schemas.insert(
        "Dashboard".into(),
        json!({
            "type": "object",
            "additionalProperties": false,
            "required": ["totals", "departments"],
            "properties": {
                "totals": schema::object(&stats::TOTALS, false),
                "departments": {"type": "array", "items": schema::object(&stats::PER_DEPARTMENT, false)},
            },
        }),
    );
    let detail = |description: &str| json_response(description, reference("Error"));
    json!({
        "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}},
        "schemas": schemas,
        "responses": {
            "BadRequest": json_response(
                "field errors (a write, a malformed filter value), or `detail` (malformed JSON or query string; `An organization must keep at least one active admin.`)",
                reference("BadRequest"),
            ),
            "Unauthorized": detail("no token (`Authentication credentials were not provided.`), or an invalid, expired or refresh token, or a user no longer active"),
            "Forbidden": detail("`You do not have permission to perform this action.`: the role may not write this resource; `You cannot delete, deactivate or demote yourself.`"),
            "NotFound": detail("`Not found.` (also another organization's row), or `Invalid page.`"),
            "MethodNotAllowed": detail("`Method \"PUT\" not allowed.`: any method a path does not list"),
            "Conflict": detail("the row is still referenced by others"),
            "UnsupportedMediaType": detail("the body is not `application/json`"),
            "PayloadTooLarge": detail("the body is over the server's limit"),
            "NotModified": {"description": "`If-None-Match` holds the current ETag; no body"},
            "TooManyRequests": retry_after(detail(
                "DRF's throttling: too many failed logins for this username or from this address (`Request was throttled. Expected available in N seconds.`)",
            )),
            "ServiceUnavailable": retry_after(detail(
                "the database is unreachable, the request ran past the server's time limit, or (a login) every password-hashing slot and queue place is taken",
            )),
        },
    })
}

/// `response` with the `Retry-After` (seconds) every 429 and 503 carries.
fn retry_after(mut response: Value) -> Value {
    response["headers"] = json!({"Retry-After": {
        "required": true,
        "description": "seconds to wait before trying again",
        "schema": {"type": "string", "pattern": "^[0-9]+$"},
    }});
    response
}

fn auth_paths(paths: &mut Map<String, Value>) {
    let open = |id: &str, summary: &str, request: &str, ok: &str| {
        json!({"post": {
            "operationId": id, "summary": summary, "tags": ["auth"], "security": [],
            "requestBody": body(request),
            "responses": {
                "200": json_response("issued", reference(ok)),
                "400": shared("BadRequest"),
                "401": shared("Unauthorized"),
                "415": shared("UnsupportedMediaType"),
            },
        }})
    };
    let mut obtain = open(
        "token_obtain",
        "Obtain an access/refresh token pair (bad credentials or an inactive user: 401 `No active account found with the given credentials`)",
        "TokenObtainRequest",
        "TokenPair",
    );
    // Failed logins are throttled (`crate::login`); 503 is declared for every
    // operation by `document`.
    obtain["post"]["responses"]["429"] = shared("TooManyRequests");
    paths.insert("/api/auth/token/".into(), obtain);
    paths.insert(
        "/api/auth/token/refresh/".into(),
        open(
            "token_refresh",
            "Exchange a refresh token for a new pair (the refresh token rotates: the one sent is blacklisted)",
            "TokenRefreshRequest",
            "TokenPair",
        ),
    );
    let mut me = operation(
        "me".into(),
        "The current user".into(),
        json!({
            "200": json_response("the caller", reference("CurrentUser")),
            "401": shared("Unauthorized"),
        }),
    );
    me["tags"] = json!(["auth"]);
    paths.insert("/api/auth/me/".into(), json!({"get": me}));
    let mut dashboard = operation(
        "dashboard".into(),
        "Totals and per-department counts of the caller's organization".into(),
        json!({
            "200": cached("the counts", reference("Dashboard")),
            "304": shared("NotModified"),
            "401": shared("Unauthorized"),
        }),
    );
    dashboard["tags"] = json!(["stats"]);
    dashboard["parameters"] = json!([if_none_match()]);
    paths.insert(
        crate::model::Model::Dashboard.path().into(),
        json!({"get": dashboard}),
    );
}

/// The whole document, as served at `/api/schema/`.
pub(crate) fn document() -> Value {
    let mut paths = Map::new();
    auth_paths(&mut paths);
    resource::<departments::Departments>(&mut paths);
    resource::<programs::Programs>(&mut paths);
    resource::<faculty::Faculty>(&mut paths);
    resource::<students::Students>(&mut paths);
    resource::<users::Users>(&mut paths);
    // Any request can meet an unreachable database or the request time limit
    // (`crate::server`), each answered 503 with `Retry-After`.
    for operation in paths
        .values_mut()
        .filter_map(Value::as_object_mut)
        .flat_map(|item| item.values_mut())
    {
        operation["responses"]["503"] = shared("ServiceUnavailable");
    }
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "Campus API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Django REST Framework conventions. Every request is scoped to the \
                caller's organization, taken from the token. A method a path does not list gets \
                405 (`components.responses.MethodNotAllowed`).",
        },
        "security": [{"bearer": []}],
        "paths": paths,
        "components": components(),
    })
}
