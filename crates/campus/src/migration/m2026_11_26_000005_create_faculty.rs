//! Creates `faculty`: teaching staff, each in one department of the same
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
                    .table(Faculty::Table)
                    .col(big_pk_auto(Faculty::Id))
                    .col(big_integer(Faculty::OrganizationId))
                    .col(big_integer(Faculty::DepartmentId))
                    .col(string(Faculty::EmployeeId))
                    .col(string(Faculty::FirstName))
                    .col(string(Faculty::LastName))
                    .col(string(Faculty::Email))
                    .col(string(Faculty::Designation))
                    .col(string(Faculty::Specialization))
                    .col(integer(Faculty::MaxHoursPerWeek))
                    .col(boolean(Faculty::IsActive).default(true))
                    .col(timestamp_with_time_zone(Faculty::CreatedAt))
                    .col(timestamp_with_time_zone(Faculty::UpdatedAt))
                    .index(
                        Index::create()
                            .name("uq_faculty_organization_employee_id")
                            .col(Faculty::OrganizationId)
                            .col(Faculty::EmployeeId)
                            .unique(),
                    )
                    .index(
                        Index::create()
                            .name("uq_faculty_organization_email")
                            .col(Faculty::OrganizationId)
                            .col(Faculty::Email)
                            .unique(),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_faculty_organization")
                            .from(Faculty::Table, Faculty::OrganizationId)
                            .to(Organizations::Table, Organizations::Id)
                            .on_delete(ForeignKeyAction::Restrict),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_faculty_department")
                            .from(
                                Faculty::Table,
                                (Faculty::OrganizationId, Faculty::DepartmentId),
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
            .drop_table(Table::drop().table(Faculty::Table).to_owned())
            .await
    }

    fn use_transaction(&self) -> Option<bool> {
        Some(true)
    }
}

#[derive(DeriveIden)]
enum Faculty {
    Table,
    Id,
    OrganizationId,
    DepartmentId,
    EmployeeId,
    FirstName,
    LastName,
    Email,
    Designation,
    Specialization,
    MaxHoursPerWeek,
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
enum Organizations {
    Table,
    Id,
}
