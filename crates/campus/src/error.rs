//! The one error type of the HTTP API, shaped like Django REST Framework's.
//!
//! Every failure a client can cause maps to a 4xx with DRF's body; anything else
//! is an opaque 500 whose cause is logged, never sent. Database constraint
//! violations are mapped here, in one place.

use std::collections::BTreeMap;

use axum::Json;
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

/// DRF field errors: `{"email": ["This field is required."]}`.
pub(crate) type FieldErrors = BTreeMap<String, Vec<String>>;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("not authenticated")]
    NotAuthenticated,
    #[error("invalid token: {0}")]
    InvalidToken(&'static str),
    /// A refresh token refused: SimpleJWT's refresh view answers
    /// `{"detail", "code"}` (no per-token-class messages).
    #[error("invalid refresh token: {0}")]
    InvalidRefresh(&'static str),
    /// A refresh token of a user deleted or deactivated since.
    #[error("no active account for the refresh token")]
    NoActiveAccount,
    #[error("bad credentials")]
    BadCredentials,
    #[error("forbidden")]
    Forbidden,
    /// A 403 that says why (DRF's `PermissionDenied(detail)`).
    #[error("forbidden: {0}")]
    ForbiddenBecause(&'static str),
    #[error("not found")]
    NotFound,
    #[error("invalid page")]
    InvalidPage,
    #[error("method not allowed")]
    MethodNotAllowed(Method),
    #[error("validation failed")]
    Validation(FieldErrors),
    #[error("bad request: {0}")]
    BadRequest(String),
    #[error("conflict: {0}")]
    Conflict(String),
    #[error("unsupported media type")]
    UnsupportedMediaType,
    #[error("request body too large")]
    PayloadTooLarge,
    /// The database is unreachable or restarting: 503, so clients and load
    /// balancers retry instead of reporting a server bug.
    #[error("database unavailable")]
    Unavailable,
    /// A bounded resource is full (login hashing, the request's time): 503
    /// with `Retry-After`, and this detail.
    #[error("overloaded: {0}")]
    Overloaded(&'static str),
    /// DRF's throttling: 429, available again in this many seconds.
    #[error("throttled for {0} s")]
    Throttled(u64),
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl ApiError {
    /// One field error.
    pub fn field(name: &str, message: impl Into<String>) -> Self {
        let mut e = FieldErrors::new();
        e.insert(name.to_owned(), vec![message.into()]);
        ApiError::Validation(e)
    }
}

impl From<sea_orm::DbErr> for ApiError {
    fn from(e: sea_orm::DbErr) -> Self {
        // The handlers check uniqueness and references first, with field errors;
        // these cover the races, on both backends.
        if crate::db::is_unique_violation(&e) {
            ApiError::BadRequest("A record with these unique fields already exists.".into())
        } else if crate::db::is_unavailable(&e) {
            tracing::warn!(error = %e, "database unavailable");
            ApiError::Unavailable
        } else if crate::db::is_foreign_key_violation(&e) {
            ApiError::Conflict(
                "This object is still referenced by other objects and cannot be deleted.".into(),
            )
        } else {
            ApiError::Internal(anyhow::Error::new(e))
        }
    }
}

/// A loader's error, returned through the cache to every caller that waited on
/// the same load: each gets the same answer ([`ApiError::shared`]); the caller
/// holding the last copy keeps an internal error's cause chain.
impl From<tierstamp::LoadError<ApiError>> for ApiError {
    fn from(e: tierstamp::LoadError<ApiError>) -> Self {
        let shared = match e {
            tierstamp::LoadError::Failed(e) => e,
            _ => return ApiError::Internal(anyhow::anyhow!("the loader panicked")),
        };
        match std::sync::Arc::try_unwrap(shared) {
            Ok(own) => own,
            Err(shared) => shared.shared(),
        }
    }
}

impl ApiError {
    /// The same error, for another caller of a shared load: every variant as
    /// it is, but an internal error by its message and causes (`anyhow::Error`
    /// does not clone), which answers the same 500.
    pub(crate) fn shared(&self) -> ApiError {
        use ApiError::*;
        match self {
            NotAuthenticated => NotAuthenticated,
            InvalidToken(m) => InvalidToken(m),
            InvalidRefresh(m) => InvalidRefresh(m),
            NoActiveAccount => NoActiveAccount,
            BadCredentials => BadCredentials,
            Forbidden => Forbidden,
            ForbiddenBecause(m) => ForbiddenBecause(m),
            NotFound => NotFound,
            InvalidPage => InvalidPage,
            MethodNotAllowed(m) => MethodNotAllowed(m.clone()),
            Validation(e) => Validation(e.clone()),
            BadRequest(m) => BadRequest(m.clone()),
            Conflict(m) => Conflict(m.clone()),
            UnsupportedMediaType => UnsupportedMediaType,
            PayloadTooLarge => PayloadTooLarge,
            Unavailable => Unavailable,
            Overloaded(m) => Overloaded(m),
            Throttled(s) => Throttled(*s),
            Internal(e) => Internal(anyhow::anyhow!("{e:#}")),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, body) = match &self {
            ApiError::NotAuthenticated => (
                StatusCode::UNAUTHORIZED,
                json!({"detail": "Authentication credentials were not provided."}),
            ),
            ApiError::InvalidToken(why) => (
                StatusCode::UNAUTHORIZED,
                json!({
                    "detail": "Given token not valid for any token type",
                    "code": "token_not_valid",
                    "messages": [{"token_class": "AccessToken", "token_type": "access", "message": why}],
                }),
            ),
            ApiError::InvalidRefresh(why) => (
                StatusCode::UNAUTHORIZED,
                json!({"detail": why, "code": "token_not_valid"}),
            ),
            ApiError::NoActiveAccount => (
                StatusCode::UNAUTHORIZED,
                json!({"detail": "No active account found for the given token.", "code": "no_active_account"}),
            ),
            ApiError::BadCredentials => (
                StatusCode::UNAUTHORIZED,
                json!({"detail": "No active account found with the given credentials"}),
            ),
            ApiError::Forbidden => (
                StatusCode::FORBIDDEN,
                json!({"detail": "You do not have permission to perform this action."}),
            ),
            ApiError::ForbiddenBecause(why) => (StatusCode::FORBIDDEN, json!({"detail": why})),
            ApiError::NotFound => (StatusCode::NOT_FOUND, json!({"detail": "Not found."})),
            ApiError::InvalidPage => (StatusCode::NOT_FOUND, json!({"detail": "Invalid page."})),
            ApiError::MethodNotAllowed(m) => (
                StatusCode::METHOD_NOT_ALLOWED,
                json!({"detail": format!("Method \"{m}\" not allowed.")}),
            ),
            ApiError::Validation(fields) => (StatusCode::BAD_REQUEST, json!(fields)),
            ApiError::BadRequest(detail) => (StatusCode::BAD_REQUEST, json!({"detail": detail})),
            ApiError::Conflict(detail) => (StatusCode::CONFLICT, json!({"detail": detail})),
            ApiError::UnsupportedMediaType => (
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                json!({"detail": "Unsupported media type in request."}),
            ),
            ApiError::PayloadTooLarge => (
                StatusCode::PAYLOAD_TOO_LARGE,
                json!({"detail": "Request body too large."}),
            ),
            ApiError::Unavailable => (
                StatusCode::SERVICE_UNAVAILABLE,
                json!({"detail": "Service temporarily unavailable, try again later."}),
            ),
            ApiError::Overloaded(detail) => {
                (StatusCode::SERVICE_UNAVAILABLE, json!({"detail": detail}))
            }
            ApiError::Throttled(wait) => (
                StatusCode::TOO_MANY_REQUESTS,
                // DRF's `Throttled` exception, word for word.
                json!({"detail": format!(
                    "Request was throttled. Expected available in {wait} second{}.",
                    if *wait == 1 { "" } else { "s" }
                )}),
            ),
            ApiError::Internal(e) => {
                tracing::error!(error = format!("{e:#}"), "internal error");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    json!({"detail": "A server error occurred."}),
                )
            }
        };
        let mut response = (status, Json::<Value>(body)).into_response();
        if status == StatusCode::PAYLOAD_TOO_LARGE {
            // The body was refused unread: this connection cannot carry another
            // request, so say so rather than let the client's pool reuse it.
            response.headers_mut().insert(
                axum::http::header::CONNECTION,
                axum::http::HeaderValue::from_static("close"),
            );
        }
        if status == StatusCode::SERVICE_UNAVAILABLE {
            response.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                axum::http::HeaderValue::from_static("1"),
            );
        }
        if let ApiError::Throttled(wait) = self {
            response.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                axum::http::HeaderValue::from(wait),
            );
        }
        response
    }
}

pub(crate) type ApiResult<T> = Result<T, ApiError>;

#[cfg(test)]
mod tests {
    use super::*;

    /// Callers sharing one failed load answer alike: the one holding the
    /// last copy of the error and the others (a 400 stayed a 500 before).
    #[test]
    fn every_caller_of_a_shared_load_gets_the_same_status() {
        let errors = [
            ApiError::NotFound,
            ApiError::field("semester", "A valid integer is required."),
            ApiError::BadRequest("bad".into()),
            ApiError::Conflict("referenced".into()),
            ApiError::Unavailable,
            ApiError::Internal(anyhow::anyhow!("boom")),
        ];
        for e in errors {
            let arc = std::sync::Arc::new(e);
            let other = ApiError::from(tierstamp::LoadError::Failed(arc.clone()));
            let last = ApiError::from(tierstamp::LoadError::Failed(arc));
            assert_eq!(
                other.into_response().status(),
                last.into_response().status()
            );
        }
    }
}
