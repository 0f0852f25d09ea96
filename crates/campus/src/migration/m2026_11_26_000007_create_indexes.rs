//! Secondary indexes for the organization scope and every list filter and
//! ordering the API offers.
//!
//! Every index leads with `organization_id` because every query is scoped to
//! one tenant. The unique constraints created with the tables already cover
//! look-ups by code, email, employee id and roll number, and the foreign keys'
//! `(organization_id, department_id)` / `(organization_id, program_id)` checks
//! (a department delete scans its referencing rows) use the indexes below.

use sea_orm_migration::prelude::*;

// Orderings end with `id` (the API's tie-breaker), so the `last_name` indexes do
// too: `ORDER BY last_name, id LIMIT 50` is then an index range scan, not a sort
// of every matching row.

/// (index name, table, columns). Names are global on PostgreSQL, hence the
/// table prefix.
const INDEXES: &[(&str, &str, &[&str])] = &[
    (
        "idx_users_organization_role",
        "users",
        &["organization_id", "role"],
    ),
    (
        "idx_users_organization_is_active",
        "users",
        &["organization_id", "is_active"],
    ),
    (
        "idx_programs_organization_department",
        "programs",
        &["organization_id", "department_id"],
    ),
    (
        "idx_faculty_organization_department",
        "faculty",
        &["organization_id", "department_id"],
    ),
    (
        "idx_faculty_organization_designation",
        "faculty",
        &["organization_id", "designation"],
    ),
    (
        "idx_faculty_organization_is_active",
        "faculty",
        &["organization_id", "is_active"],
    ),
    (
        "idx_faculty_organization_last_name",
        "faculty",
        &["organization_id", "last_name", "id"],
    ),
    (
        "idx_students_organization_department_last_name",
        "students",
        &["organization_id", "department_id", "last_name", "id"],
    ),
    (
        "idx_students_organization_program",
        "students",
        &["organization_id", "program_id"],
    ),
    (
        "idx_students_organization_semester",
        "students",
        &["organization_id", "semester"],
    ),
    (
        "idx_students_organization_batch",
        "students",
        &["organization_id", "batch"],
    ),
    (
        "idx_students_organization_is_active",
        "students",
        &["organization_id", "is_active"],
    ),
    (
        "idx_students_organization_last_name",
        "students",
        &["organization_id", "last_name", "id"],
    ),
];

#[derive(DeriveMigrationName)]
pub(super) struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for &(name, table, columns) in INDEXES {
            let mut index = Index::create();
            index.name(name).table(table);
            for &column in columns {
                index.col(column);
            }
            manager.create_index(index).await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for &(name, table, _) in INDEXES.iter().rev() {
            manager
                .drop_index(Index::drop().name(name).table(table).to_owned())
                .await?;
        }
        Ok(())
    }

    fn use_transaction(&self) -> Option<bool> {
        Some(true)
    }
}
