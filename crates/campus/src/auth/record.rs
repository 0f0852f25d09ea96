//! The auth record: whether a token's user is still active, its role and its
//! token version, cached under the `user` generation of its organization.

use bytes::Bytes;
use sea_orm::{ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter};
use serde::{Deserialize, Serialize};
use tierstamp::{Cache, CacheKey, Kind};

use super::role::{Caller, Role};
use super::token::Claimed;
use crate::entity::user;
use crate::error::ApiError;
use crate::model::Model;

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
pub(crate) fn auth_key<'a>(cache: &Cache, claimed: &'a Claimed) -> Result<&'a CacheKey, ApiError> {
    let memo = claimed.auth_key_memo();
    if let Some(key) = memo.get() {
        return Ok(key);
    }
    let key = cache
        .key(Kind::Detail, Model::User.name(), claimed.scope())
        .param("view", "auth")
        .row(claimed.user_id())
        .build()
        .map_err(anyhow::Error::new)?;
    Ok(memo.get_or_init(|| key))
}

/// The auth record of `user_id` in `org_id`, read from the database: what a
/// miss of [`auth_key`] caches.
pub(crate) async fn load(
    db: DatabaseConnection,
    user_id: i64,
    org_id: i64,
) -> Result<Bytes, ApiError> {
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
}

/// The caller a token stands for, given its user's auth record: refused when
/// the user is inactive or gone, or its tokens were revoked since this one
/// was issued (a password change, a deactivation, a role change). The role
/// comes from the record, not from the token.
pub(crate) fn check(claimed: &Claimed, body: &[u8]) -> Result<Caller, ApiError> {
    let (role, ver) = active_role(body)?;
    if ver != claimed.version() {
        return Err(ApiError::InvalidToken("Token is invalid"));
    }
    Ok(Caller {
        user_id: claimed.user_id(),
        org_id: claimed.org_id(),
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
