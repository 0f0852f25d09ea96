//! Authentication: SimpleJWT-compatible tokens (HS256), roles, and the `Caller`
//! extractor that gives every handler its organization from the verified token.
//!
//! The token carries user, organization and role, but a deactivated user or a
//! changed role must take effect at once: each request checks the user's auth
//! record, cached under the `user` generation of its organization, so a request
//! pays a cache look-up (an L1 hit, usually), not a query, and any write to users
//! invalidates it.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock, RwLock};
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
use crate::model::Model;
use crate::state::AppState;

/// Access tokens live 30 minutes, refresh tokens a day (SimpleJWT-like).
const ACCESS_SECONDS: i64 = 30 * 60;
const REFRESH_SECONDS: i64 = 24 * 3600;
/// Most verified access tokens remembered ([`Jwt::verify`]).
const MAX_VERIFIED: usize = 100_000;

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
    /// The user's token version when the token was issued (0 in tokens issued
    /// before versions existed, which is every user's first version).
    #[serde(default)]
    pub ver: i64,
}

/// A verified token's claims, with what every request of its bearer derives from
/// them, derived once.
#[derive(Debug)]
pub struct Verified {
    pub claims: Claims,
    scope: Scope,
    /// The auth record's key ([`auth_key`]), built on first use from these
    /// claims. It assumes one cache per `Jwt`: [`crate::server::build_state`]
    /// makes both, once per application state.
    auth_key: OnceLock<CacheKey>,
}

impl Verified {
    fn new(claims: Claims) -> Self {
        Verified {
            scope: Scope::org(claims.org_id),
            claims,
            auth_key: OnceLock::new(),
        }
    }
}

impl std::ops::Deref for Verified {
    type Target = Claims;
    fn deref(&self) -> &Claims {
        &self.claims
    }
}

// Keyed by the token's bytes: a header is looked up without a UTF-8 check.
type Known = HashMap<Box<[u8]>, Arc<Verified>, foldhash::quality::RandomState>;

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
    /// costs memory only up to the bound: a full map drops its expired tokens,
    /// and is emptied if that is not enough.
    ///
    /// A plain map, not moka: its entries never change and carry their own
    /// expiry, so they need no eviction policy, and moka's bookkeeping on every
    /// read (recency, expiry clock) cost a quarter of a microsecond per request.
    /// foldhash, not SipHash: the key is a 200-byte token hashed on every request.
    verified: RwLock<Known>,
}

impl std::fmt::Debug for Jwt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Jwt(<secret>)")
    }
}

/// Seconds since the Unix epoch (what `exp` and `iat` hold).
pub fn now_secs() -> i64 {
    now()
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
            verified: RwLock::default(),
        }
    }

    /// A token for `user_id` of `org_id` at the user's token version `ver`.
    pub fn issue(
        &self,
        user_id: i64,
        org_id: i64,
        ver: i64,
        refresh: bool,
    ) -> anyhow::Result<String> {
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
            jti: crate::secret::secret_hex(16),
            user_id,
            org_id,
            ver,
        };
        Ok(jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &self.encoding,
        )?)
    }

    /// Verifies signature, algorithm (HS256 only: `alg: none` and others are
    /// refused), expiry and token type.
    pub fn verify(&self, token: &str, refresh: bool) -> Result<Arc<Verified>, ApiError> {
        if !refresh && let Some(known) = self.remembered(token.as_bytes()) {
            return known;
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
        let claims = Arc::new(Verified::new(data.claims));
        if !refresh {
            let mut known = self.verified.write().unwrap_or_else(|e| e.into_inner());
            if known.len() >= MAX_VERIFIED {
                let now = now();
                known.retain(|_, v| v.exp >= now);
                if known.len() >= MAX_VERIFIED {
                    known.clear();
                }
            }
            known.insert(token.as_bytes().into(), claims.clone());
        }
        Ok(claims)
    }

    /// The answer for an access token verified before, `None` if it was not.
    fn remembered(&self, token: &[u8]) -> Option<Result<Arc<Verified>, ApiError>> {
        let claims = self
            .verified
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(token)
            .cloned()?;
        // `exp` is the one check whose answer changes with time.
        if claims.exp >= now() {
            return Some(Ok(claims));
        }
        self.verified
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(token);
        Some(Err(ApiError::InvalidToken("Token is expired")))
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
    pub fn require_write(&self, model: Model) -> Result<(), ApiError> {
        match (self.role, model) {
            (Role::Admin, _) => Ok(()),
            (Role::Staff, m) if m != Model::User => Ok(()),
            _ => Err(ApiError::Forbidden),
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct AuthRecord {
    active: bool,
    role: String,
    /// The user's token version; left out while 0, so the record of a user
    /// whose tokens were never revoked keeps the bytes [`ACTIVE`] compares.
    #[serde(default, skip_serializing_if = "is_zero")]
    ver: i64,
}

fn is_zero(v: &i64) -> bool {
    *v == 0
}

/// A verified token, before the user's record is checked: enough to build the
/// cache keys of the request, so the auth record and the response can be read
/// from the cache in one round trip ([`authorize`]).
///
/// Everything it says comes from the verified token (shared by the requests that
/// carry it), read through accessors: nothing can make it say another user.
#[derive(Debug, Clone)]
pub struct Claimed {
    verified: Arc<Verified>,
}

impl Claimed {
    pub fn user_id(&self) -> i64 {
        self.verified.claims.user_id
    }
    pub fn org_id(&self) -> i64 {
        self.verified.claims.org_id
    }
    /// The organization's cache scope.
    pub fn scope(&self) -> &Scope {
        &self.verified.scope
    }
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
        // The common case first: `Bearer ` and a token verified before. Checking
        // and splitting the whole header byte by byte cost more than this look-up;
        // anything else (other spacing or case, an unknown token) is not found
        // here and takes the full path below.
        if let Some(known) = header
            .as_bytes()
            .strip_prefix(b"Bearer ")
            .and_then(|t| state.jwt.remembered(t))
        {
            return known.map(|verified| Claimed { verified });
        }
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
        Ok(Claimed {
            verified: state.jwt.verify(token, false)?,
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

/// The auth record's body for each active role. The record is read on every
/// request and is one of these in almost every case: comparing bytes is cheaper
/// than parsing (a test checks they are exactly what `serde_json` writes).
/// Anything else is parsed.
const ACTIVE: [(&[u8], Role); 4] = [
    (br#"{"active":true,"role":"admin"}"#, Role::Admin),
    (br#"{"active":true,"role":"staff"}"#, Role::Staff),
    (br#"{"active":true,"role":"faculty"}"#, Role::Faculty),
    (br#"{"active":true,"role":"student"}"#, Role::Student),
];

/// The role and token version of an active user, from the auth record's
/// cached body.
fn active_role(body: &[u8]) -> Result<(Role, i64), ApiError> {
    if let Some((_, role)) = ACTIVE.iter().find(|(b, _)| *b == body) {
        return Ok((*role, 0));
    }
    let record: Option<AuthRecord> =
        serde_json::from_slice(body).map_err(|e| ApiError::Internal(e.into()))?;
    match record {
        Some(r) if r.active => Role::parse(&r.role)
            .map(|role| (role, r.ver))
            .ok_or(ApiError::InvalidToken("User role is unknown")),
        _ => Err(ApiError::InvalidToken("User not found or inactive")),
    }
}

/// The cache key of a user's auth record, built once per token.
pub fn auth_key<'a>(state: &AppState, claimed: &'a Claimed) -> Result<&'a CacheKey, ApiError> {
    let memo = &claimed.verified.auth_key;
    if let Some(key) = memo.get() {
        return Ok(key);
    }
    let key = state
        .cache
        .key(Kind::Detail, "user", claimed.scope())
        .param("view", "auth")
        .row(claimed.user_id())
        .build()
        .map_err(anyhow::Error::new)?;
    Ok(memo.get_or_init(|| key))
}

/// Checks the user behind a verified token is still active, and takes its role
/// from the database (through the cache), not from the token.
///
/// `prefetched` is the read of the auth record ([`auth_key`]) that
/// [`AppState::authorized_read`] made together with the response's.
pub async fn authorize(
    state: &AppState,
    claimed: &Claimed,
    prefetched: Option<Prefetched>,
) -> Result<Caller, ApiError> {
    let (user_id, org_id) = (claimed.user_id(), claimed.org_id());
    let key = auth_key(state, claimed)?;
    let db = state.db.clone();
    let lookup = state
        .cached_with(key, prefetched, move || async move {
            let row = user::Entity::find_by_id(user_id)
                .filter(user::Column::OrganizationId.eq(org_id))
                .one(&db)
                .await
                .map_err(ApiError::from)?;
            let record = row.map(|u| AuthRecord {
                active: u.is_active,
                role: u.role,
                ver: u.token_version,
            });
            Ok(Bytes::from(
                serde_json::to_vec(&record).map_err(anyhow::Error::new)?,
            ))
        })
        .await?;
    let (role, ver) = active_role(&lookup.body)?;
    // A password change, a deactivation or a role change since the token was
    // issued: it is revoked.
    if ver != claimed.verified.claims.ver {
        return Err(ApiError::InvalidToken("Token is invalid"));
    }
    Ok(Caller {
        user_id,
        org_id,
        role,
        scope: claimed.scope().clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(active: bool, role: &str) -> Vec<u8> {
        serde_json::to_vec(&Some(AuthRecord {
            active,
            role: role.to_owned(),
            ver: 0,
        }))
        .unwrap()
    }

    fn remembered(jwt: &Jwt) -> usize {
        jwt.verified.read().unwrap().len()
    }

    #[test]
    fn a_remembered_token_is_still_refused_once_expired() {
        let jwt = Jwt::new(b"test-secret-0123456789abcdef0123");
        let token = jwt.issue(7, 1, 0, false).unwrap();
        assert_eq!(jwt.verify(&token, false).unwrap().user_id, 7);
        assert_eq!(remembered(&jwt), 1);
        // Age the remembered claims past their expiry: the signature is not
        // checked again, the expiry is.
        let mut aged = jwt.verified.read().unwrap()[token.as_bytes()]
            .claims
            .clone();
        aged.exp = now() - 1;
        jwt.verified
            .write()
            .unwrap()
            .insert(token.as_bytes().into(), Arc::new(Verified::new(aged)));
        assert!(matches!(
            jwt.verify(&token, false),
            Err(ApiError::InvalidToken("Token is expired"))
        ));
        assert_eq!(remembered(&jwt), 0, "an expired token is forgotten");
        // A refresh token is never remembered, and an access token is not
        // accepted as one.
        let refresh = jwt.issue(7, 1, 0, true).unwrap();
        assert!(jwt.verify(&refresh, true).is_ok());
        assert!(jwt.verify(&token, true).is_err());
        assert_eq!(remembered(&jwt), 0);
    }

    #[test]
    fn the_remembered_tokens_are_bounded() {
        let jwt = Jwt::new(b"test-secret-0123456789abcdef0123");
        let claims = |exp: i64| {
            Arc::new(Verified::new(Claims {
                token_type: "access".into(),
                exp,
                iat: now(),
                jti: String::new(),
                user_id: 1,
                org_id: 1,
                ver: 0,
            }))
        };
        let (valid, expired) = (claims(now() + 60), claims(now() - 1));
        {
            let mut known = jwt.verified.write().unwrap();
            for i in 0..MAX_VERIFIED - 1 {
                known.insert(format!("t{i}").into_bytes().into(), valid.clone());
            }
            known.insert(b"old".as_slice().into(), expired);
        }
        let token = jwt.issue(7, 1, 0, false).unwrap();
        assert!(jwt.verify(&token, false).is_ok());
        assert_eq!(
            remembered(&jwt),
            MAX_VERIFIED,
            "a full map first drops its expired tokens"
        );
        assert!(!jwt.verified.read().unwrap().contains_key(b"old".as_slice()));
        let another = jwt.issue(8, 1, 0, false).unwrap();
        assert!(jwt.verify(&another, false).is_ok());
        assert_eq!(
            remembered(&jwt),
            1,
            "a map full of live tokens is emptied before an insert"
        );
    }

    #[test]
    fn every_active_role_takes_the_byte_comparison_and_agrees_with_parsing() {
        for role in [Role::Admin, Role::Staff, Role::Faculty, Role::Student] {
            let written = body(true, role.as_str());
            assert!(ACTIVE.contains(&(written.as_slice(), role)));
            assert_eq!(active_role(&written).unwrap(), (role, 0));
            let parsed: Option<AuthRecord> = serde_json::from_slice(&written).unwrap();
            assert_eq!(parsed.unwrap().role, role.as_str());
        }
    }

    #[test]
    fn a_records_token_version_is_read_and_left_out_at_zero() {
        let record = |ver| AuthRecord {
            active: true,
            role: "staff".into(),
            ver,
        };
        let zero = serde_json::to_vec(&Some(record(0))).unwrap();
        assert_eq!(zero.as_slice(), br#"{"active":true,"role":"staff"}"#);
        let three = serde_json::to_vec(&Some(record(3))).unwrap();
        assert_eq!(active_role(&three).unwrap(), (Role::Staff, 3));
    }

    #[test]
    fn inactive_missing_and_unknown_records_are_refused() {
        for written in [
            body(false, "admin"),
            b"null".to_vec(),
            body(true, "root"),
            b"{\"active\":true}".to_vec(),
        ] {
            assert!(
                matches!(
                    active_role(&written),
                    Err(ApiError::InvalidToken(_) | ApiError::Internal(_))
                ),
                "{}",
                String::from_utf8_lossy(&written)
            );
        }
        assert!(matches!(
            active_role(&body(false, "admin")),
            Err(ApiError::InvalidToken("User not found or inactive"))
        ));
    }
}
