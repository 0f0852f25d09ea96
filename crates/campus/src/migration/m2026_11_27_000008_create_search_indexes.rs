//! Trigram indexes for DRF search on PostgreSQL (`pg_trgm`), so `?search=` over
//! a million students is an index scan instead of a sequential one.
//!
//! Search matches a term against any of a resource's searched fields. Terms never
//! contain a space (the query string is split on whitespace), so "the term occurs
//! in one of the fields" is exactly "the term occurs in the fields joined by
//! spaces": one GIN index over that joined, lower-cased text serves the whole
//! search, where one index per field would need a bitmap OR of four scans per
//! term. The expression here and [`crate::query::search`]'s must stay identical,
//! or PostgreSQL will not match the index (a test checks the plan).
//!
//! `pg_trgm` is a trusted extension (PostgreSQL 13+), so a database owner can
//! create it. Where it cannot be created the migration logs a notice and search
//! stays a scan: correct, only slower. SQLite has no such index and skips this.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::{ConnectionTrait, DbBackend};

/// (index name, table, searched columns in the order the resource searches them).
pub(crate) const SEARCH_INDEXES: &[(&str, &str, &[&str])] = &[
    (
        "idx_users_search_trgm",
        "users",
        &["username", "email", "first_name", "last_name"],
    ),
    (
        "idx_faculty_search_trgm",
        "faculty",
        &["first_name", "last_name", "email", "employee_id"],
    ),
    (
        "idx_students_search_trgm",
        "students",
        &["first_name", "last_name", "email", "roll_number"],
    ),
];

/// A frozen copy of [`crate::query::search_text`] as it was when this migration
/// was released: the index must not change with later code, and the test that
/// checks the plan then catches the query drifting away from it.
pub(crate) fn search_text(table: &str, columns: &[&str]) -> String {
    let joined = columns
        .iter()
        .map(|c| format!("\"{table}\".\"{c}\""))
        .collect::<Vec<_>>()
        .join(" || ' ' || ");
    format!("lower({joined})")
}

#[derive(DeriveMigrationName)]
pub(super) struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        if manager.get_database_backend() != DbBackend::Postgres {
            return Ok(());
        }
        let db = manager.get_connection();
        db.execute_unprepared(
            "DO $$ BEGIN
                CREATE EXTENSION IF NOT EXISTS pg_trgm;
             EXCEPTION WHEN insufficient_privilege OR undefined_file THEN
                RAISE NOTICE 'pg_trgm unavailable (%): search stays a sequential scan', SQLERRM;
             END $$",
        )
        .await?;
        let available = db
            .query_one_raw(sea_orm_migration::sea_orm::Statement::from_string(
                DbBackend::Postgres,
                "SELECT 1 AS one FROM pg_extension WHERE extname = 'pg_trgm'",
            ))
            .await?
            .is_some();
        if !available {
            return Ok(());
        }
        for &(name, table, columns) in SEARCH_INDEXES {
            db.execute_unprepared(&format!(
                "CREATE INDEX IF NOT EXISTS {name} ON {table} USING gin ({} gin_trgm_ops)",
                search_text(table, columns)
            ))
            .await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        if manager.get_database_backend() != DbBackend::Postgres {
            return Ok(());
        }
        for &(name, _, _) in SEARCH_INDEXES {
            manager
                .get_connection()
                .execute_unprepared(&format!("DROP INDEX IF EXISTS {name}"))
                .await?;
        }
        Ok(())
    }

    fn use_transaction(&self) -> Option<bool> {
        Some(true)
    }
}
