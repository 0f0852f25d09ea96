//! Creates `departments`.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::{big_integer, big_pk_auto, string};

#[derive(DeriveMigrationName)]
pub(super) struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Departments::Table)
                    .col(big_pk_auto(Departments::Id))
                    .col(big_integer(Departments::OrganizationId))
                    .col(string(Departments::Code))
                    .col(string(Departments::Name))
                    .index(
                        Index::create()
                            .name("uq_departments_organization_code")
                            .col(Departments::OrganizationId)
                            .col(Departments::Code)
                            .unique(),
                    )
                    // Redundant with the primary key as a uniqueness rule, but a
                    // foreign key may only target a unique column set: programs,
                    // faculty and students reference (organization_id, id), so
                    // the database itself refuses a row pointing into another
                    // tenant's department.
                    .index(
                        Index::create()
                            .name("uq_departments_organization_id")
                            .col(Departments::OrganizationId)
                            .col(Departments::Id)
                            .unique(),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_departments_organization")
                            .from(Departments::Table, Departments::OrganizationId)
                            .to(Organizations::Table, Organizations::Id)
                            .on_delete(ForeignKeyAction::Restrict),
                    )
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(Departments::Table).to_owned())
            .await
    }

    fn use_transaction(&self) -> Option<bool> {
        Some(true)
    }
}

#[derive(DeriveIden)]
enum Departments {
    Table,
    Id,
    OrganizationId,
    Code,
    Name,
}

#[derive(DeriveIden)]
enum Organizations {
    Table,
    Id,
}
