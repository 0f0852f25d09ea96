//! Creates `organizations`, the tenant table every other table points to.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::{big_pk_auto, string, timestamp_with_time_zone};

#[derive(DeriveMigrationName)]
pub(super) struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Organizations::Table)
                    .col(big_pk_auto(Organizations::Id))
                    .col(string(Organizations::Code))
                    .col(string(Organizations::Name))
                    .col(timestamp_with_time_zone(Organizations::CreatedAt))
                    .index(
                        Index::create()
                            .name("uq_organizations_code")
                            .col(Organizations::Code)
                            .unique(),
                    )
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(Organizations::Table).to_owned())
            .await
    }

    // SQLite runs DDL outside a transaction by default; a half-applied
    // migration would then be left unrecorded and fail again on every start.
    fn use_transaction(&self) -> Option<bool> {
        Some(true)
    }
}

#[derive(DeriveIden)]
enum Organizations {
    Table,
    Id,
    Code,
    Name,
    CreatedAt,
}
