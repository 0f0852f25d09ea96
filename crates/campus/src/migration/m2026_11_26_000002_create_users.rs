//! Creates `users`: login accounts, each in one organization.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::{
    big_integer, big_pk_auto, boolean, string, timestamp_with_time_zone,
};

#[derive(DeriveMigrationName)]
pub(super) struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Users::Table)
                    .col(big_pk_auto(Users::Id))
                    .col(big_integer(Users::OrganizationId))
                    .col(string(Users::Username))
                    .col(string(Users::Email))
                    .col(string(Users::FirstName))
                    .col(string(Users::LastName))
                    .col(string(Users::Role))
                    .col(string(Users::PasswordHash))
                    .col(boolean(Users::IsActive).default(true))
                    .col(timestamp_with_time_zone(Users::DateJoined))
                    // The login form has no organization field: usernames are
                    // unique across tenants, emails only within one.
                    .index(
                        Index::create()
                            .name("uq_users_username")
                            .col(Users::Username)
                            .unique(),
                    )
                    .index(
                        Index::create()
                            .name("uq_users_organization_email")
                            .col(Users::OrganizationId)
                            .col(Users::Email)
                            .unique(),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_users_organization")
                            .from(Users::Table, Users::OrganizationId)
                            .to(Organizations::Table, Organizations::Id)
                            .on_delete(ForeignKeyAction::Restrict),
                    )
                    .check(Expr::col(Users::Role).is_in(["admin", "staff", "faculty", "student"]))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(Users::Table).to_owned())
            .await
    }

    fn use_transaction(&self) -> Option<bool> {
        Some(true)
    }
}

#[derive(DeriveIden)]
enum Users {
    Table,
    Id,
    OrganizationId,
    Username,
    Email,
    FirstName,
    LastName,
    Role,
    PasswordHash,
    IsActive,
    DateJoined,
}

#[derive(DeriveIden)]
enum Organizations {
    Table,
    Id,
}
