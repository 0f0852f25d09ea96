//! Indexes that lead with the organization, for the list misses (issue 22).
//!
//! - `(organization_id, id)` on the listed tables: a list's default order is
//!   `id` within one organization. Without it, PostgreSQL walked the primary
//!   key in `id` order and dropped every other organization's rows on the way
//!   (90,000 of them before the last organization's first page at 10 x 10,000
//!   students), and the count read the rows themselves. With it, the count is
//!   an index-only scan and a page starts at its organization.
//! - On PostgreSQL, the trigram index of each searched table becomes one over
//!   `(organization_id, search text)` (`btree_gin` lets a GIN index hold the
//!   integer): every search is within one organization, and the old index
//!   matched the term in every organization before a bitmap AND with a second
//!   index threw most of it away. Where `btree_gin` cannot be created the old
//!   index stays: correct, only slower.
//!
//! It runs in one transaction, like every migration here, so the three tables
//! take no writes while their indexes build (`CREATE INDEX CONCURRENTLY`
//! cannot run in a transaction). On a large database, build the indexes by
//! hand with `CONCURRENTLY` under these names first: `IF NOT EXISTS` then
//! skips them, and only the short `DROP INDEX` of the old trigram indexes
//! remains.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::{ConnectionTrait, DbBackend};

use super::m2026_11_27_000008_create_search_indexes::{SEARCH_INDEXES, search_text};

/// (index name, table): `(organization_id, id)` on each.
const ORGANIZATION_ID: &[(&str, &str)] = &[
    ("idx_students_organization_id", "students"),
    ("idx_faculty_organization_id", "faculty"),
    ("idx_users_organization_id", "users"),
];

/// The new trigram index's name for the old one's.
fn organization_search_index(old: &str) -> String {
    old.replace("_search_trgm", "_organization_search_trgm")
}

#[derive(DeriveMigrationName)]
pub(super) struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        for &(name, table) in ORGANIZATION_ID {
            db.execute_unprepared(&format!(
                "CREATE INDEX IF NOT EXISTS {name} ON {table} (organization_id, id)"
            ))
            .await?;
        }
        if manager.get_database_backend() != DbBackend::Postgres {
            return Ok(());
        }
        db.execute_unprepared(
            "DO $$ BEGIN
                CREATE EXTENSION IF NOT EXISTS btree_gin;
             EXCEPTION WHEN OTHERS THEN
                -- Any refusal (no privilege, not installed, not allowed by a
                -- managed service): the index is an optimisation only.
                RAISE NOTICE 'btree_gin unavailable (%): search keeps its trigram index', SQLERRM;
             END $$",
        )
        .await?;
        let both = db
            .query_one_raw(sea_orm_migration::sea_orm::Statement::from_string(
                DbBackend::Postgres,
                "SELECT 1 AS one FROM pg_extension WHERE extname = 'btree_gin' \
                 AND EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'pg_trgm')",
            ))
            .await?
            .is_some();
        if !both {
            return Ok(());
        }
        for &(old, table, columns) in SEARCH_INDEXES {
            db.execute_unprepared(&format!(
                "CREATE INDEX IF NOT EXISTS {} ON {table} USING gin (organization_id, {} gin_trgm_ops)",
                organization_search_index(old),
                search_text(table, columns)
            ))
            .await?;
        }
        // Dropped last: `DROP INDEX` locks its table against reads until the
        // migration commits, so no table is unreadable while another's index
        // is still being built.
        for &(old, _, _) in SEARCH_INDEXES {
            db.execute_unprepared(&format!("DROP INDEX IF EXISTS {old}"))
                .await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        if manager.get_database_backend() == DbBackend::Postgres {
            let trgm = db
                .query_one_raw(sea_orm_migration::sea_orm::Statement::from_string(
                    DbBackend::Postgres,
                    "SELECT 1 AS one FROM pg_extension WHERE extname = 'pg_trgm'",
                ))
                .await?
                .is_some();
            for &(old, table, columns) in SEARCH_INDEXES {
                if trgm {
                    db.execute_unprepared(&format!(
                        "CREATE INDEX IF NOT EXISTS {old} ON {table} USING gin ({} gin_trgm_ops)",
                        search_text(table, columns)
                    ))
                    .await?;
                }
                db.execute_unprepared(&format!(
                    "DROP INDEX IF EXISTS {}",
                    organization_search_index(old)
                ))
                .await?;
            }
        }
        for &(name, _) in ORGANIZATION_ID {
            db.execute_unprepared(&format!("DROP INDEX IF EXISTS {name}"))
                .await?;
        }
        Ok(())
    }

    fn use_transaction(&self) -> Option<bool> {
        Some(true)
    }
}
