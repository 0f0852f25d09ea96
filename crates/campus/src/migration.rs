//! The database schema, as sea-orm migrations: one file per table, then the
//! secondary indexes. They use the schema builder only, so the same files run
//! on PostgreSQL and SQLite.
//!
//! Applied by [`crate::db::migrate`] (`campus migrate`, and `campus serve`
//! before it listens). A migration that has been released is never edited;
//! changes go in a new file appended to [`Migrator::migrations`].

// `MigrationTrait` declares `manager: &SchemaManager` with an elided lifetime,
// and `async_trait` rejects an impl that spells it `SchemaManager<'_>`.
#![allow(elided_lifetimes_in_paths)]

use sea_orm_migration::prelude::*;

mod m2026_11_26_000001_create_organizations;
mod m2026_11_26_000002_create_users;
mod m2026_11_26_000003_create_departments;
mod m2026_11_26_000004_create_programs;
mod m2026_11_26_000005_create_faculty;
mod m2026_11_26_000006_create_students;
mod m2026_11_26_000007_create_indexes;
mod m2026_11_27_000008_create_search_indexes;
mod m2026_11_27_000009_create_change_triggers;
mod m2026_12_06_000010_create_cache_outbox;
mod m2026_12_06_000011_bounded_change_notifications;
mod m2026_12_06_000012_token_versions;
mod m2026_12_07_000013_organization_first_indexes;
mod m2026_12_07_000014_row_counts;

/// The trigram indexes' columns, in the order of their expressions: what a
/// resource's search must join in the same order, or PostgreSQL will not use
/// the index.
pub(crate) use m2026_11_27_000008_create_search_indexes::SEARCH_INDEXES;
#[cfg(test)]
pub(crate) use m2026_11_27_000008_create_search_indexes::search_text as indexed_search_text;
pub(crate) use m2026_11_27_000009_create_change_triggers::TABLES as CACHED_TABLES;
pub(crate) use m2026_12_07_000014_row_counts::UNKNOWN as UNKNOWN_COUNT;

/// Every migration of the schema, in the order they apply.
pub(crate) struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m2026_11_26_000001_create_organizations::Migration),
            Box::new(m2026_11_26_000002_create_users::Migration),
            Box::new(m2026_11_26_000003_create_departments::Migration),
            Box::new(m2026_11_26_000004_create_programs::Migration),
            Box::new(m2026_11_26_000005_create_faculty::Migration),
            Box::new(m2026_11_26_000006_create_students::Migration),
            Box::new(m2026_11_26_000007_create_indexes::Migration),
            Box::new(m2026_11_27_000008_create_search_indexes::Migration),
            Box::new(m2026_11_27_000009_create_change_triggers::Migration),
            Box::new(m2026_12_06_000010_create_cache_outbox::Migration),
            Box::new(m2026_12_06_000011_bounded_change_notifications::Migration),
            Box::new(m2026_12_06_000012_token_versions::Migration),
            Box::new(m2026_12_07_000013_organization_first_indexes::Migration),
            Box::new(m2026_12_07_000014_row_counts::Migration),
        ]
    }
}
