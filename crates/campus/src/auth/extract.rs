//! The extractors: [`Claimed`] (a verified bearer token) and [`Caller`] (its
//! user, checked active through the cache).

use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;

use super::role::Caller;
use super::token::Claimed;
use crate::error::ApiError;
use crate::read::authorize;
use crate::state::AppState;

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
