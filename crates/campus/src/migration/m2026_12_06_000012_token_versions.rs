//! Tokens die with the password (SPEC §5.13): `users.token_version`, carried
//! by every token and checked against the user's cached auth record, is bumped
//! by a password change, a deactivation and a role change; and
//! `token_blacklist` holds the refresh tokens already exchanged (refresh
//! tokens rotate, as SimpleJWT's `ROTATE_REFRESH_TOKENS` with its blacklist).

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::{big_integer, string_len};

#[derive(DeriveMigrationName)]
pub(super) struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(Users::Table)
                    .add_column(big_integer(Users::TokenVersion).default(0))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(TokenBlacklist::Table)
                    .col(string_len(TokenBlacklist::Jti, 64).primary_key())
                    .col(big_integer(TokenBlacklist::ExpiresAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ix_token_blacklist_expires_at")
                    .table(TokenBlacklist::Table)
                    .col(TokenBlacklist::ExpiresAt)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(TokenBlacklist::Table).to_owned())
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(Users::Table)
                    .drop_column(Users::TokenVersion)
                    .to_owned(),
            )
            .await
    }

    fn use_transaction(&self) -> Option<bool> {
        Some(true)
    }
}

#[derive(DeriveIden)]
enum Users {
    Table,
    TokenVersion,
}

#[derive(DeriveIden)]
enum TokenBlacklist {
    Table,
    Jti,
    ExpiresAt,
}
