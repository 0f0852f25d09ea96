//! Roles, and the caller a handler acts for.

use serde::{Deserialize, Serialize};
use tierstamp::Scope;

use crate::error::ApiError;
use crate::model::Model;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Role {
    Admin,
    Staff,
    Faculty,
    Student,
}

impl Role {
    pub(crate) fn parse(s: &str) -> Option<Role> {
        match s {
            "admin" => Some(Role::Admin),
            "staff" => Some(Role::Staff),
            "faculty" => Some(Role::Faculty),
            "student" => Some(Role::Student),
            _ => None,
        }
    }
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Staff => "staff",
            Role::Faculty => "faculty",
            Role::Student => "student",
        }
    }
}

/// The authenticated caller: what every scoped handler receives.
#[derive(Debug, Clone)]
pub(crate) struct Caller {
    pub user_id: i64,
    pub org_id: i64,
    pub role: Role,
    pub scope: Scope,
}

impl Caller {
    /// admin writes everything of its organization; staff all but users; the other
    /// roles read only.
    pub(crate) fn require_write(&self, model: Model) -> Result<(), ApiError> {
        match (self.role, model) {
            (Role::Admin, _) => Ok(()),
            (Role::Staff, m) if m != Model::User => Ok(()),
            _ => Err(ApiError::Forbidden),
        }
    }
}
