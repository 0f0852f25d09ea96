//! The OpenAPI 3 document (`/api/schema/`) and Swagger UI (`/api/docs/`).
//!
//! Generated from the resources' own declarations (their filters, ordering
//! fields and routes, the same constants the handlers use), so the document
//! cannot drift from the code: a filter added to a resource appears here.

use utoipa::openapi::path::{
    HttpMethod, OperationBuilder, ParameterBuilder, ParameterIn, PathItem, PathsBuilder,
};
use utoipa::openapi::request_body::RequestBodyBuilder;
use utoipa::openapi::response::ResponseBuilder;
use utoipa::openapi::schema::{ObjectBuilder, Type};
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{
    ComponentsBuilder, ContentBuilder, InfoBuilder, OpenApi, OpenApiBuilder, Required,
};

use crate::api::{departments, faculty, programs, students, users};
use crate::listing::{FilterKind, MAX_PAGE_SIZE};
use crate::resource::Resource;

fn param(
    name: &str,
    kind: Type,
    location: ParameterIn,
    description: &str,
    required: bool,
) -> utoipa::openapi::path::Parameter {
    ParameterBuilder::new()
        .name(name)
        .parameter_in(location)
        .required(if required {
            Required::True
        } else {
            Required::False
        })
        .description(Some(description))
        .schema(Some(ObjectBuilder::new().schema_type(kind)))
        .build()
}

fn json_response(description: &str) -> utoipa::openapi::Response {
    ResponseBuilder::new()
        .description(description)
        .content(
            "application/json",
            ContentBuilder::new()
                .schema(Some(ObjectBuilder::new().schema_type(Type::Object)))
                .build(),
        )
        .build()
}

fn json_body() -> utoipa::openapi::request_body::RequestBody {
    RequestBodyBuilder::new()
        .content(
            "application/json",
            ContentBuilder::new()
                .schema(Some(ObjectBuilder::new().schema_type(Type::Object)))
                .build(),
        )
        .required(Some(Required::True))
        .build()
}

fn op(id: String, summary: String) -> OperationBuilder {
    OperationBuilder::new()
        .operation_id(Some(id))
        .summary(Some(summary))
        .security(SecurityRequirement::new("bearer", Vec::<String>::new()))
        .response(
            "401",
            json_response("Authentication credentials were not provided, or the token is invalid."),
        )
}

fn resource<R: Resource>(paths: PathsBuilder, name: &str) -> PathsBuilder {
    let mut list = op(
        format!("{name}_list"),
        format!("List {name} (paginated, cached)"),
    )
    .parameter(param(
        "page",
        Type::Integer,
        ParameterIn::Query,
        "1-based page; past the end: 404 Invalid page.",
        false,
    ))
    .parameter(param(
        "page_size",
        Type::Integer,
        ParameterIn::Query,
        &format!("default 50, clamped to {MAX_PAGE_SIZE}"),
        false,
    ))
    .parameter(param(
        "search",
        Type::String,
        ParameterIn::Query,
        "case-insensitive substring search",
        false,
    ))
    .parameter(param(
        "ordering",
        Type::String,
        ParameterIn::Query,
        &format!(
            "comma-separated, `-` for descending: {}",
            R::ORDERING.join(", ")
        ),
        false,
    ));
    for (filter, kind) in R::FILTERS {
        let t = match kind {
            FilterKind::Text => Type::String,
            FilterKind::Int => Type::Integer,
            FilterKind::Bool => Type::Boolean,
        };
        list = list.parameter(param(filter, t, ParameterIn::Query, "exact match", false));
    }
    let list = list
        .response(
            "200",
            json_response("{count, next, previous, results}; X-Cache and ETag headers"),
        )
        .response("400", json_response("malformed filter value"))
        .response("404", json_response("Invalid page."));
    let create = op(format!("{name}_create"), format!("Create a {}", R::MODEL))
        .request_body(Some(json_body()))
        .response("201", json_response("created"))
        .response("400", json_response("field errors"))
        .response("403", json_response("role may not write"));
    let id = || param("id", Type::Integer, ParameterIn::Path, "row id", true);
    let detail = |method: &str, summary: &str| {
        op(
            format!("{name}_{method}"),
            format!("{summary} a {}", R::MODEL),
        )
        .parameter(id())
        .response("404", json_response("Not found."))
    };
    let mut collection = PathItem::new(HttpMethod::Get, list.build());
    collection.post = Some(create.build());
    let mut item = PathItem::new(
        HttpMethod::Get,
        detail("retrieve", "Retrieve")
            .response("200", json_response("the row (cached)"))
            .build(),
    );
    let write = |m: &str, s: &str| {
        detail(m, s)
            .request_body(Some(json_body()))
            .response("200", json_response("updated"))
            .response("400", json_response("field errors"))
            .response("403", json_response("role may not write"))
            .build()
    };
    item.put = Some(write("update", "Replace"));
    item.patch = Some(write("partial_update", "Update"));
    item.delete = Some(
        detail("destroy", "Delete")
            .response("204", ResponseBuilder::new().description("deleted").build())
            .response("409", json_response("still referenced"))
            .build(),
    );
    paths
        .path(format!("/api/{name}/"), collection)
        .path(format!("/api/{name}/{{id}}/"), item)
}

pub fn document() -> OpenApi {
    let mut paths = PathsBuilder::new();
    paths = resource::<departments::Departments>(paths, "departments");
    paths = resource::<programs::Programs>(paths, "programs");
    paths = resource::<faculty::Faculty>(paths, "faculty");
    paths = resource::<students::Students>(paths, "students");
    paths = resource::<users::Users>(paths, "users");
    let token = OperationBuilder::new()
        .operation_id(Some("token_obtain"))
        .summary(Some("Obtain an access/refresh token pair"))
        .request_body(Some(json_body()))
        .response("200", json_response("{access, refresh}"))
        .response(
            "401",
            json_response("No active account found with the given credentials"),
        )
        .build();
    let refresh = OperationBuilder::new()
        .operation_id(Some("token_refresh"))
        .summary(Some("Exchange a refresh token for an access token"))
        .request_body(Some(json_body()))
        .response("200", json_response("{access}"))
        .response("401", json_response("invalid token"))
        .build();
    paths = paths
        .path("/api/auth/token/", PathItem::new(HttpMethod::Post, token))
        .path(
            "/api/auth/token/refresh/",
            PathItem::new(HttpMethod::Post, refresh),
        )
        .path(
            "/api/auth/me/",
            PathItem::new(
                HttpMethod::Get,
                op("me".into(), "The current user".into())
                    .response("200", json_response("user"))
                    .build(),
            ),
        )
        .path(
            "/api/stats/dashboard/",
            PathItem::new(
                HttpMethod::Get,
                op(
                    "dashboard".into(),
                    "Totals and per-department counts".into(),
                )
                .response("200", json_response("stats (cached)"))
                .build(),
            ),
        );
    OpenApiBuilder::new()
        .info(
            InfoBuilder::new()
                .title("Campus API")
                .version(env!("CARGO_PKG_VERSION"))
                .build(),
        )
        .paths(paths.build())
        .components(Some(
            ComponentsBuilder::new()
                .security_scheme(
                    "bearer",
                    SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
                )
                .build(),
        ))
        .build()
}
