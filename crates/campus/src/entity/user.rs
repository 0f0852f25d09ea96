//! `users`: API accounts. A user logs in to exactly one organization, and its
//! role decides what it may write there.

use sea_orm::entity::prelude::*;

/// The roles a user may have, from most to least privileged.
pub const ROLES: [&str; 4] = ["admin", "staff", "faculty", "student"];

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "users")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub organization_id: i64,
    // Globally unique, not per organization: the login form has no
    // organization field, so the username alone must find the account.
    #[sea_orm(unique)]
    pub username: String,
    pub email: String,
    pub first_name: String,
    pub last_name: String,
    /// One of [`ROLES`].
    pub role: String,
    /// A PHC string (`crate::password`), never the password.
    pub password_hash: String,
    pub is_active: bool,
    pub date_joined: DateTimeUtc,
    /// Carried by every token issued to the user; bumped by a password change,
    /// a deactivation or a role change, which refuses every older token.
    pub token_version: i64,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {
    #[sea_orm(
        belongs_to = "super::organization::Entity",
        from = "Column::OrganizationId",
        to = "super::organization::Column::Id",
        on_delete = "Restrict"
    )]
    Organization,
}

impl Related<super::organization::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Organization.def()
    }
}

impl ActiveModelBehavior for ActiveModel {}
