//! Creates `cache_outbox`: the durable record of an API write's invalidation
//! ([`crate::outbox`]). A write inserts its row in its own transaction, so the
//! row exists exactly when the write committed; the row is deleted once the
//! invalidation reached the cache, and swept by every instance otherwise.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::{big_integer, big_pk_auto, string_len};

#[derive(DeriveMigrationName)]
pub(super) struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(CacheOutbox::Table)
                    .col(big_pk_auto(CacheOutbox::Id))
                    .col(string_len(CacheOutbox::Model, 32))
                    // No foreign key: the row outlives nothing it names, and it
                    // must never make deleting an organization fail.
                    .col(big_integer(CacheOutbox::OrganizationId))
                    .col(big_integer(CacheOutbox::CreatedAtMs))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(CacheOutbox::Table).to_owned())
            .await
    }

    fn use_transaction(&self) -> Option<bool> {
        Some(true)
    }
}

#[derive(DeriveIden)]
enum CacheOutbox {
    Table,
    Id,
    Model,
    OrganizationId,
    CreatedAtMs,
}
