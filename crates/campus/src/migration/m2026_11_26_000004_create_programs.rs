//! Creates `programs`, each offered by one department of the same organization.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::{big_integer, big_pk_auto, integer, string};

#[derive(DeriveMigrationName)]
pub(super) struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Programs::Table)
                    .col(big_pk_auto(Programs::Id))
                    .col(big_integer(Programs::OrganizationId))
                    .col(big_integer(Programs::DepartmentId))
                    .col(string(Programs::Code))
                    .col(string(Programs::Name))
                    .col(integer(Programs::DurationYears))
                    .index(
                        Index::create()
                            .name("uq_programs_organization_code")
                            .col(Programs::OrganizationId)
                            .col(Programs::Code)
                            .unique(),
                    )
                    // Target of the students' tenant-consistent program key.
                    .index(
                        Index::create()
                            .name("uq_programs_organization_id")
                            .col(Programs::OrganizationId)
                            .col(Programs::Id)
                            .unique(),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_programs_organization")
                            .from(Programs::Table, Programs::OrganizationId)
                            .to(Organizations::Table, Organizations::Id)
                            .on_delete(ForeignKeyAction::Restrict),
                    )
                    // (organization_id, department_id), not department_id alone:
                    // the department must belong to the program's organization.
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_programs_department")
                            .from(
                                Programs::Table,
                                (Programs::OrganizationId, Programs::DepartmentId),
                            )
                            .to(
                                Departments::Table,
                                (Departments::OrganizationId, Departments::Id),
                            )
                            .on_delete(ForeignKeyAction::Restrict),
                    )
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(Programs::Table).to_owned())
            .await
    }

    fn use_transaction(&self) -> Option<bool> {
        Some(true)
    }
}

#[derive(DeriveIden)]
enum Programs {
    Table,
    Id,
    OrganizationId,
    DepartmentId,
    Code,
    Name,
    DurationYears,
}

#[derive(DeriveIden)]
enum Departments {
    Table,
    Id,
    OrganizationId,
}

#[derive(DeriveIden)]
enum Organizations {
    Table,
    Id,
}
