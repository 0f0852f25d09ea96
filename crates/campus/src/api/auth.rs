//! `/api/auth/`: SimpleJWT's token pair, refresh, and the current user.

use axum::Json;
use axum::extract::State;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
use serde_json::{Value, json};

use crate::auth::Caller;
use crate::entity::user::{self, Column, Entity};
use crate::error::{ApiError, ApiResult, FieldErrors};
use crate::resource::JsonObject;
use crate::state::AppState;

fn required_string(
    body: &serde_json::Map<String, Value>,
    fields: &[&str],
) -> ApiResult<Vec<String>> {
    let mut errors = FieldErrors::new();
    let mut out = Vec::new();
    for f in fields {
        match body.get(*f) {
            Some(Value::String(s)) if !s.is_empty() => out.push(s.clone()),
            Some(Value::String(_)) => {
                errors.insert((*f).into(), vec!["This field may not be blank.".into()]);
            }
            Some(_) => {
                errors.insert((*f).into(), vec!["Not a valid string.".into()]);
            }
            None => {
                errors.insert((*f).into(), vec!["This field is required.".into()]);
            }
        }
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(ApiError::Validation(errors))
    }
}

/// The fields of the token request; all required.
pub const TOKEN_REQUEST: [&str; 2] = ["username", "password"];
/// The fields of the refresh request.
pub const REFRESH_REQUEST: [&str; 1] = ["refresh"];

/// `POST /api/auth/token/` `{"username","password"}` → `{"access","refresh"}`.
pub async fn token(
    State(st): State<AppState>,
    JsonObject(body): JsonObject,
) -> ApiResult<Json<Value>> {
    let v = required_string(&body, &TOKEN_REQUEST)?;
    let (username, password) = (v[0].clone(), v[1].clone());
    let row = Entity::find()
        .filter(Column::Username.eq(username.as_str()))
        .one(&st.db)
        .await?;
    // Verify even without a user (against a fixed hash) so timing does not tell
    // which usernames exist.
    let (hash, row) = match row {
        Some(u) => (u.password_hash.clone(), Some(u)),
        None => (DUMMY_HASH.clone(), None),
    };
    let ok = tokio::task::spawn_blocking(move || crate::password::verify(&password, &hash))
        .await
        .map_err(anyhow::Error::new)?;
    let user = match row {
        Some(u) if ok && u.is_active => u,
        _ => return Err(ApiError::BadCredentials),
    };
    Ok(Json(json!({
        "refresh": st.jwt.issue(user.id, user.organization_id, true)?,
        "access": st.jwt.issue(user.id, user.organization_id, false)?,
    })))
}

/// The hash of a random password: what unknown usernames are checked against.
static DUMMY_HASH: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    crate::password::hash(&crate::secret::secret_hex(16)).unwrap_or_default()
});

/// `POST /api/auth/token/refresh/` `{"refresh"}` → `{"access"}`.
pub async fn refresh(
    State(st): State<AppState>,
    JsonObject(body): JsonObject,
) -> ApiResult<Json<Value>> {
    let v = required_string(&body, &REFRESH_REQUEST)?;
    let claims = st.jwt.verify(&v[0], true)?;
    let user = Entity::find_by_id(claims.user_id)
        .filter(Column::OrganizationId.eq(claims.org_id))
        .one(&st.db)
        .await?
        .filter(|u: &user::Model| u.is_active)
        .ok_or(ApiError::InvalidToken("User not found or inactive"))?;
    Ok(Json(
        json!({"access": st.jwt.issue(user.id, user.organization_id, false)?}),
    ))
}

/// `GET /api/auth/me/`.
pub async fn me(State(st): State<AppState>, caller: Caller) -> ApiResult<Json<Value>> {
    let user = super::users::find(&st.db, caller.org_id, caller.user_id)
        .await?
        .ok_or(ApiError::NotFound)?;
    let mut v = super::users::to_json(&user);
    v["organization_id"] = json!(caller.org_id);
    Ok(Json(v))
}
