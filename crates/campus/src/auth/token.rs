//! Tokens: SimpleJWT-compatible (HS256) access and refresh tokens, verified
//! once per token text and remembered; [`Claimed`] is a verified token before
//! its user's record is checked.

use std::sync::{Arc, OnceLock};
use std::time::{SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use tierstamp::{CacheKey, Scope};

use crate::error::ApiError;
use tierstamp::Memo;

/// Access tokens live 30 minutes, refresh tokens a day (SimpleJWT-like).
const ACCESS_SECONDS: i64 = 30 * 60;
const REFRESH_SECONDS: i64 = 24 * 3600;
/// Most verified access tokens remembered ([`Jwt::verify`]).
const MAX_VERIFIED: usize = 100_000;

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
    /// The auth record's key ([`auth_key`](super::record::auth_key)), built on first use from these
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
type Known = Memo<Box<[u8]>, Arc<Verified>, MAX_VERIFIED>;

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
    /// Its entries never change and carry their own expiry, so they need no
    /// eviction policy ([`Memo`]).
    verified: Known,
}

impl std::fmt::Debug for Jwt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Jwt(<secret>)")
    }
}

/// Seconds since the Unix epoch (what `exp` and `iat` hold).
pub(crate) fn now_secs() -> i64 {
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
            verified: Known::default(),
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
            let now = now();
            self.verified
                .insert_pruning(token.as_bytes().into(), claims.clone(), |v| v.exp >= now);
        }
        Ok(claims)
    }

    /// The answer for an access token verified before, `None` if it was not.
    pub(super) fn remembered(&self, token: &[u8]) -> Option<Result<Arc<Verified>, ApiError>> {
        let claims = self.verified.get(token)?;
        // `exp` is the one check whose answer changes with time.
        if claims.exp >= now() {
            return Some(Ok(claims));
        }
        self.verified.remove(token);
        Some(Err(ApiError::InvalidToken("Token is expired")))
    }
}

/// A verified token, before the user's record is checked: enough to build the
/// cache keys of the request, so the auth record and the response can be read
/// from the cache in one round trip ([`authorize`](crate::read::authorize)).
///
/// Everything it says comes from the verified token (shared by the requests that
/// carry it), read through accessors: nothing can make it say another user.
#[derive(Debug, Clone)]
pub struct Claimed {
    pub(super) verified: Arc<Verified>,
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
    /// The user's token version when the token was issued.
    pub fn version(&self) -> i64 {
        self.verified.claims.ver
    }
    /// Where [`auth_key`](super::record::auth_key) keeps the key it builds.
    pub(super) fn auth_key_memo(&self) -> &OnceLock<CacheKey> {
        &self.verified.auth_key
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn remembered(jwt: &Jwt) -> usize {
        jwt.verified.len()
    }

    #[test]
    fn a_remembered_token_is_still_refused_once_expired() {
        let jwt = Jwt::new(b"test-secret-0123456789abcdef0123");
        let token = jwt.issue(7, 1, 0, false).unwrap();
        assert_eq!(jwt.verify(&token, false).unwrap().user_id, 7);
        assert_eq!(remembered(&jwt), 1);
        // Age the remembered claims past their expiry: the signature is not
        // checked again, the expiry is.
        let mut aged = jwt.verified.get(token.as_bytes()).unwrap().claims.clone();
        aged.exp = now() - 1;
        jwt.verified
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
        for i in 0..MAX_VERIFIED - 1 {
            jwt.verified
                .insert(format!("t{i}").into_bytes().into(), valid.clone());
        }
        jwt.verified.insert(b"old".as_slice().into(), expired);
        let token = jwt.issue(7, 1, 0, false).unwrap();
        assert!(jwt.verify(&token, false).is_ok());
        assert_eq!(
            remembered(&jwt),
            MAX_VERIFIED,
            "a full map first drops its expired tokens"
        );
        assert!(!jwt.verified.contains(b"old".as_slice()));
        let another = jwt.issue(8, 1, 0, false).unwrap();
        assert!(jwt.verify(&another, false).is_ok());
        assert_eq!(
            remembered(&jwt),
            1,
            "a map full of live tokens is emptied before an insert"
        );
    }
}
