//! Authentication: SimpleJWT-compatible tokens (HS256), roles, and the `Caller`
//! extractor that gives every handler its organization from the verified token.
//!
//! The token carries user, organization and role, but a deactivated user or a
//! changed role must take effect at once: each request checks the user's auth
//! record, cached under the `user` generation of its organization, so a request
//! pays a cache look-up (an L1 hit, usually), not a query, and any write to users
//! invalidates it.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use bytes::Bytes;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
use serde::{Deserialize, Serialize};
use tiercache::{CacheKey, Kind, Prefetched, Scope};

use crate::entity::user;
use crate::error::ApiError;
use crate::state::AppState;

/// Access tokens live 30 minutes, refresh tokens a day (SimpleJWT-like).
const ACCESS_SECONDS: i64 = 30 * 60;
const REFRESH_SECONDS: i64 = 24 * 3600;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Admin,
    Staff,
    Faculty,
    Student,
}

impl Role {
    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "admin" => Some(Role::Admin),
            "staff" => Some(Role::Staff),
            "faculty" => Some(Role::Faculty),
            "student" => Some(Role::Student),
            _ => None,
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Staff => "staff",
            Role::Faculty => "faculty",
            Role::Student => "student",
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    pub token_type: String,
    pub exp: i64,
    pub iat: i64,
    pub jti: String,
    pub user_id: i64,
    pub org_id: i64,
}

/// Signs and verifies tokens.
pub struct Jwt {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    /// Access tokens already verified, by their exact text. A client sends the
    /// same token for up to 30 minutes, and checking its signature and decoding
    /// its claims again each time was a fifth of a cached read's own CPU time.
    /// Identical bytes verify identically; only the expiry is time-dependent and
    /// is checked on every hit. Bounded, so a flood of distinct valid tokens
    /// costs memory only up to the bound.
    verified: moka::sync::Cache<Box<str>, Arc<Claims>>,
}

impl std::fmt::Debug for Jwt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Jwt(<secret>)")
    }
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

impl Jwt {
    pub fn new(secret: &[u8]) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = 0;
        validation.set_required_spec_claims(&["exp"]);
        Jwt {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            validation,
            verified: moka::sync::Cache::builder()
                .max_capacity(100_000)
                .time_to_live(std::time::Duration::from_secs(ACCESS_SECONDS as u64))
                .build(),
        }
    }

    pub fn issue(&self, user_id: i64, org_id: i64, refresh: bool) -> anyhow::Result<String> {
        let iat = now();
        let claims = Claims {
            token_type: if refresh { "refresh" } else { "access" }.into(),
            exp: iat
                + if refresh {
                    REFRESH_SECONDS
                } else {
                    ACCESS_SECONDS
                },
            iat,
            jti: format!("{:032x}", fastrand::u128(..)),
            user_id,
            org_id,
        };
        Ok(jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &self.encoding,
        )?)
    }

    /// Verifies signature, algorithm (HS256 only: `alg: none` and others are
    /// refused), expiry and token type.
    pub fn verify(&self, token: &str, refresh: bool) -> Result<Arc<Claims>, ApiError> {
        if !refresh && let Some(claims) = self.verified.get(token) {
            // `exp` is the one check whose answer changes with time.
            if claims.exp >= now() {
                return Ok(claims);
            }
            self.verified.invalidate(token);
            return Err(ApiError::InvalidToken("Token is expired"));
        }
        let data = jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
            .map_err(|e| {
                ApiError::InvalidToken(match e.kind() {
                    jsonwebtoken::errors::ErrorKind::ExpiredSignature => "Token is expired",
                    _ => "Token is invalid",
                })
            })?;
        let expected = if refresh { "refresh" } else { "access" };
        if data.claims.token_type != expected {
            return Err(ApiError::InvalidToken("Token has wrong type"));
        }
        let claims = Arc::new(data.claims);
        if !refresh {
            self.verified.insert(token.into(), claims.clone());
        }
        Ok(claims)
    }
}

/// The authenticated caller: what every scoped handler receives.
#[derive(Debug, Clone)]
pub struct Caller {
    pub user_id: i64,
    pub org_id: i64,
    pub role: Role,
    pub scope: Scope,
}

impl Caller {
    /// admin writes everything of its organization; staff all but users; the other
    /// roles read only.
    pub fn require_write(&self, model: &str) -> Result<(), ApiError> {
        match (self.role, model) {
            (Role::Admin, _) => Ok(()),
            (Role::Staff, m) if m != "user" => Ok(()),
            _ => Err(ApiError::Forbidden),
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct AuthRecord {
    active: bool,
    role: String,
}

/// A verified token, before the user's record is checked: enough to build the
/// cache keys of the request, so the auth record and the response can be read
/// from the cache in one round trip ([`authorize`]).
#[derive(Debug, Clone)]
pub struct Claimed {
    pub user_id: i64,
    pub org_id: i64,
    pub scope: Scope,
}

impl FromRequestParts<AppState> for Claimed {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let header = parts
            .headers
            .get(AUTHORIZATION)
            .ok_or(ApiError::NotAuthenticated)?;
        let value = header
            .to_str()
            .map_err(|_| ApiError::InvalidToken("Token is invalid"))?;
        let mut words = value.split_ascii_whitespace();
        let (Some(kind), Some(token), None) = (words.next(), words.next(), words.next()) else {
            return Err(ApiError::NotAuthenticated);
        };
        if !kind.eq_ignore_ascii_case("bearer") {
            return Err(ApiError::NotAuthenticated);
        }
        let claims = state.jwt.verify(token, false)?;
        Ok(Claimed {
            user_id: claims.user_id,
            org_id: claims.org_id,
            scope: Scope::org(claims.org_id),
        })
    }
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let claimed = Claimed::from_request_parts(parts, state).await?;
        authorize(state, &claimed, None).await
    }
}

/// The cache key of a user's auth record.
pub fn auth_key(state: &AppState, claimed: &Claimed) -> Result<CacheKey, ApiError> {
    Ok(state
        .cache
        .key(Kind::Detail, "user", &claimed.scope)
        .param("auth", claimed.user_id)
        .build()
        .map_err(anyhow::Error::new)?)
}

/// Checks the user behind a verified token is still active, and takes its role
/// from the database (through the cache), not from the token.
///
/// `prefetched` is the auth record's key and the read of it that
/// [`AppState::authorized_read`] made together with the response's.
pub async fn authorize(
    state: &AppState,
    claimed: &Claimed,
    prefetched: Option<(CacheKey, Prefetched)>,
) -> Result<Caller, ApiError> {
    let (user_id, org_id) = (claimed.user_id, claimed.org_id);
    let (key, prefetched) = match prefetched {
        Some((key, read)) => (key, Some(read)),
        None => (auth_key(state, claimed)?, None),
    };
    let db = state.db.clone();
    let lookup = state
        .cached_with(&key, prefetched, move || async move {
            let row = user::Entity::find_by_id(user_id)
                .filter(user::Column::OrganizationId.eq(org_id))
                .one(&db)
                .await
                .map_err(ApiError::from)?;
            let record = row.map(|u| AuthRecord {
                active: u.is_active,
                role: u.role,
            });
            Ok(Bytes::from(
                serde_json::to_vec(&record).map_err(anyhow::Error::new)?,
            ))
        })
        .await?;
    let record: Option<AuthRecord> =
        serde_json::from_slice(&lookup.body).map_err(|e| ApiError::Internal(e.into()))?;
    let role = match record {
        Some(r) if r.active => {
            Role::parse(&r.role).ok_or(ApiError::InvalidToken("User role is unknown"))?
        }
        _ => return Err(ApiError::InvalidToken("User not found or inactive")),
    };
    Ok(Caller {
        user_id,
        org_id,
        role,
        scope: claimed.scope.clone(),
    })
}
