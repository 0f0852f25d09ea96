//! `/api/auth/`: SimpleJWT's token pair, refresh, and the current user.

use axum::Json;

use axum::extract::State;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
use serde_json::{Value, json};

use crate::auth::Caller;
use crate::entity::token_blacklist;
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
            // DRF's CharField refuses NUL (ProhibitNullCharactersValidator);
            // PostgreSQL could not even look such a username up.
            Some(Value::String(s)) if s.contains('\0') => {
                errors.insert((*f).into(), vec!["Null characters are not allowed.".into()]);
            }
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
pub(crate) const TOKEN_REQUEST: [&str; 2] = ["username", "password"];
/// The fields of the refresh request.
pub(crate) const REFRESH_REQUEST: [&str; 1] = ["refresh"];

/// `POST /api/auth/token/` `{"username","password"}` → `{"access","refresh"}`.
///
/// Failed logins are throttled per username and per client address, and the
/// password hash runs in a bounded pool ([`crate::login`]).
pub(crate) async fn token(
    State(st): State<AppState>,
    client: ClientAddr,
    JsonObject(body): JsonObject,
) -> ApiResult<Json<Value>> {
    let v = required_string(&body, &TOKEN_REQUEST)?;
    let (username, password) = (v[0].clone(), v[1].clone());
    let attempt = st.login.attempt(&username, client.0)?;
    let row = Entity::find()
        .filter(Column::Username.eq(username.as_str()))
        .one(&st.db)
        .await
        .inspect_err(|_| st.login.undecided(attempt))?;
    // Verify even without a user (against a fixed hash) so timing does not tell
    // which usernames exist.
    let (hash, row) = match row {
        Some(u) => (u.password_hash.clone(), Some(u)),
        None => (DUMMY_HASH.clone(), None),
    };
    let ok = st
        .login
        .hashes
        .run(move || crate::password::verify(&password, &hash))
        .await
        .inspect_err(|_| st.login.undecided(attempt))?;
    let user = match row {
        Some(u) if ok && u.is_active => u,
        _ => return Err(ApiError::BadCredentials),
    };
    st.login.succeeded(attempt);
    Ok(Json(json!({
        "refresh": st.jwt.issue(user.id, user.organization_id, user.token_version, true)?,
        "access": st.jwt.issue(user.id, user.organization_id, user.token_version, false)?,
    })))
}

/// The client's address: the connection's peer, or what a trusted proxy says
/// ([`crate::server::forwarded`]); `None` when the router is called in
/// process, without a connection.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ClientAddr(pub Option<std::net::IpAddr>);

impl axum::extract::FromRequestParts<AppState> for ClientAddr {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        st: &AppState,
    ) -> Result<Self, Self::Rejection> {
        Ok(ClientAddr(st.limits.trusted_proxies.client(parts)))
    }
}

/// The hash of a random password: what unknown usernames are checked against.
static DUMMY_HASH: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    crate::password::hash(&crate::secret::secret_hex(16)).unwrap_or_default()
});

/// `POST /api/auth/token/refresh/` `{"refresh"}` → `{"access","refresh"}`.
///
/// Refresh tokens rotate (SimpleJWT's `ROTATE_REFRESH_TOKENS` with
/// `BLACKLIST_AFTER_ROTATION`): the one exchanged is blacklisted, so a stolen
/// refresh token works at most once, and a refresh token issued before the
/// user's last password change, deactivation or role change is refused.
pub(crate) async fn refresh(
    State(st): State<AppState>,
    JsonObject(body): JsonObject,
) -> ApiResult<Json<Value>> {
    use sea_orm::{ActiveModelTrait, ActiveValue::Set};

    let v = required_string(&body, &REFRESH_REQUEST)?;
    // SimpleJWT's words: a token it cannot use is "invalid or expired",
    // whichever it is.
    let claims = st.jwt.verify(&v[0], true).map_err(|e| match e {
        ApiError::InvalidToken("Token has wrong type") => {
            ApiError::InvalidRefresh("Token has wrong type")
        }
        ApiError::InvalidToken(_) => ApiError::InvalidRefresh("Token is invalid or expired"),
        other => other,
    })?;
    // It reads, then writes: on SQLite it must take the write lock at BEGIN,
    // or a write committed in between (an outbox clean-up) makes this one a
    // `database is locked` 500 (see `begin_write`).
    let tx = crate::resource::begin_write(&st.db).await?;
    let user = Entity::find_by_id(claims.user_id)
        .filter(Column::OrganizationId.eq(claims.org_id))
        .one(&tx)
        .await?
        .filter(|u: &user::Model| u.is_active)
        .ok_or(ApiError::NoActiveAccount)?;
    if user.token_version != claims.ver {
        return Err(ApiError::InvalidRefresh("Token is invalid or expired"));
    }
    // The primary key makes a second exchange of the same token fail here,
    // however close the two requests are.
    let blacklisted = token_blacklist::ActiveModel {
        jti: Set(claims.jti.clone()),
        expires_at: Set(claims.exp),
    }
    .insert(&tx)
    .await;
    match blacklisted {
        Ok(_) => {}
        Err(e) if crate::db::is_unique_violation(&e) => {
            return Err(ApiError::InvalidRefresh("Token is blacklisted"));
        }
        Err(e) => return Err(e.into()),
    }
    // Tokens past their expiry need no blacklisting: the table stays as small
    // as one refresh lifetime's exchanges.
    token_blacklist::Entity::delete_many()
        .filter(token_blacklist::Column::ExpiresAt.lt(crate::auth::now_secs()))
        .exec(&tx)
        .await?;
    tx.commit().await?;
    let (id, org, ver) = (user.id, user.organization_id, user.token_version);
    Ok(Json(json!({
        "access": st.jwt.issue(id, org, ver, false)?,
        "refresh": st.jwt.issue(id, org, ver, true)?,
    })))
}

/// `GET /api/auth/me/`.
pub(crate) async fn me(State(st): State<AppState>, caller: Caller) -> ApiResult<Json<Value>> {
    let user = super::users::find(&st.db, caller.org_id, caller.user_id)
        .await?
        .ok_or(ApiError::NotFound)?;
    let mut v = super::users::to_json(&user);
    v["organization_id"] = json!(caller.org_id);
    Ok(Json(v))
}
