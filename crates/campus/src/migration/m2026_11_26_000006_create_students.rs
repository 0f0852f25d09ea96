//! Creates `students`, each in one department and one program of the same
//! organization.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::{
    big_integer, big_pk_auto, boolean, integer, string, timestamp_with_time_zone,
};

#[derive(DeriveMigrationName)]
pub(super) struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Students::Table)
                    .col(big_pk_auto(Students::Id))
                    .col(big_integer(Students::OrganizationId))
                    .col(big_integer(Students::DepartmentId))
                    .col(big_integer(Students::ProgramId))
                    .col(string(Students::RollNumber))
                    .col(string(Students::FirstName))
                    .col(string(Students::LastName))
                    .col(string(Students::Email))
                    .col(integer(Students::Semester))
                    .col(integer(Students::Batch))
                    .col(boolean(Students::IsActive).default(true))
                    .col(timestamp_with_time_zone(Students::CreatedAt))
                    .col(timestamp_with_time_zone(Students::UpdatedAt))
                    .index(
                        Index::create()
                            .name("uq_students_organization_roll_number")
                            .col(Students::OrganizationId)
                            .col(Students::RollNumber)
                            .unique(),
                    )
                    .index(
                        Index::create()
                            .name("uq_students_organization_email")
                            .col(Students::OrganizationId)
                            .col(Students::Email)
                            .unique(),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_students_organization")
                            .from(Students::Table, Students::OrganizationId)
                            .to(Organizations::Table, Organizations::Id)
                            .on_delete(ForeignKeyAction::Restrict),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_students_department")
                            .from(
                                Students::Table,
                                (Students::OrganizationId, Students::DepartmentId),
                            )
                            .to(
                                Departments::Table,
                                (Departments::OrganizationId, Departments::Id),
                            )
                            .on_delete(ForeignKeyAction::Restrict),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_students_program")
                            .from(
                                Students::Table,
                                (Students::OrganizationId, Students::ProgramId),
                            )
                            .to(Programs::Table, (Programs::OrganizationId, Programs::Id))
                            .on_delete(ForeignKeyAction::Restrict),
                    )
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(Students::Table).to_owned())
            .await
    }

    fn use_transaction(&self) -> Option<bool> {
        Some(true)
    }
}

#[derive(DeriveIden)]
enum Students {
    Table,
    Id,
    OrganizationId,
    DepartmentId,
    ProgramId,
    RollNumber,
    FirstName,
    LastName,
    Email,
    Semester,
    Batch,
    IsActive,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum Departments {
    Table,
    Id,
    OrganizationId,
}

#[derive(DeriveIden)]
enum Programs {
    Table,
    Id,
    OrganizationId,
}

#[derive(DeriveIden)]
enum Organizations {
    Table,
    Id,
}
