//! The HTTP API: one module per resource, assembled here.

pub(crate) mod auth;
pub(crate) mod bench;
pub(crate) mod departments;
pub(crate) mod faculty;
pub(crate) mod health;
pub(crate) mod programs;
pub(crate) mod stats;
pub(crate) mod students;
pub(crate) mod users;

use axum::Router;
use axum::routing::{get, post};

use crate::error::ApiError;
use crate::model::Model;
use crate::resource::{not_allowed, routes};
use crate::state::AppState;

pub(crate) fn router() -> Router<AppState> {
    Router::new()
        .route("/api/auth/token/", not_allowed(post(auth::token)))
        .route("/api/auth/token/refresh/", not_allowed(post(auth::refresh)))
        .route("/api/auth/me/", not_allowed(get(auth::me)))
        .merge(routes::<departments::Departments>())
        .merge(routes::<programs::Programs>())
        .merge(routes::<faculty::Faculty>())
        .merge(routes::<students::Students>())
        .merge(routes::<users::Users>())
        .route(Model::Dashboard.path(), not_allowed(get(stats::dashboard)))
        .merge(crate::ops::dashboard::router())
        .merge(crate::web::router())
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .merge(
            utoipa_swagger_ui::SwaggerUi::new("/api/docs")
                .external_url_unchecked("/api/schema/", crate::openapi::document()),
        )
        .fallback(|| async { ApiError::NotFound })
}
