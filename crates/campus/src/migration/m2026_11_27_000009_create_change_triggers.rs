//! Writes from outside the API reach the cache (SPEC §5.5): on PostgreSQL,
//! statement-level triggers on every cached table `NOTIFY campus_changes` with
//! the table and the organizations the statement touched (`faculty 1,3`, or
//! `faculty *` for a `TRUNCATE`), delivered only if the transaction commits.
//! [`crate::changes`] listens and invalidates.
//!
//! Statement-level with transition tables, not row-level: a bulk `UPDATE` of a
//! million rows sends one notification per statement, not a million. The API's
//! own writes set `campus.origin = 'api'` for their transaction and are skipped:
//! they already invalidated before their response, and a second bump would only
//! cost readers a miss.
//!
//! SQLite has no `NOTIFY`; there, only the API writes.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::{ConnectionTrait, DbBackend};

/// The tables whose rows are cached (every one has `organization_id`).
pub(crate) const TABLES: &[&str] = &["departments", "programs", "faculty", "students", "users"];

const FUNCTION: &str = r#"
CREATE OR REPLACE FUNCTION campus_notify_change() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    orgs text;
BEGIN
    IF current_setting('campus.origin', true) = 'api' THEN
        RETURN NULL;
    END IF;
    IF TG_OP = 'TRUNCATE' THEN
        PERFORM pg_notify('campus_changes', TG_TABLE_NAME || ' *');
        RETURN NULL;
    ELSIF TG_OP = 'INSERT' THEN
        SELECT string_agg(DISTINCT organization_id::text, ',') INTO orgs FROM new_rows;
    ELSIF TG_OP = 'DELETE' THEN
        SELECT string_agg(DISTINCT organization_id::text, ',') INTO orgs FROM old_rows;
    ELSE
        SELECT string_agg(DISTINCT o::text, ',') INTO orgs FROM (
            SELECT organization_id AS o FROM new_rows
            UNION SELECT organization_id FROM old_rows
        ) touched;
    END IF;
    IF orgs IS NOT NULL THEN
        PERFORM pg_notify('campus_changes', TG_TABLE_NAME || ' ' || orgs);
    END IF;
    RETURN NULL;
END
$$"#;

#[derive(DeriveMigrationName)]
pub(super) struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        if manager.get_database_backend() != DbBackend::Postgres {
            return Ok(());
        }
        let db = manager.get_connection();
        db.execute_unprepared(FUNCTION).await?;
        for t in TABLES {
            db.execute_unprepared(&format!(
                "CREATE TRIGGER campus_{t}_insert AFTER INSERT ON {t} \
                   REFERENCING NEW TABLE AS new_rows \
                   FOR EACH STATEMENT EXECUTE FUNCTION campus_notify_change();
                 CREATE TRIGGER campus_{t}_update AFTER UPDATE ON {t} \
                   REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows \
                   FOR EACH STATEMENT EXECUTE FUNCTION campus_notify_change();
                 CREATE TRIGGER campus_{t}_delete AFTER DELETE ON {t} \
                   REFERENCING OLD TABLE AS old_rows \
                   FOR EACH STATEMENT EXECUTE FUNCTION campus_notify_change();
                 CREATE TRIGGER campus_{t}_truncate AFTER TRUNCATE ON {t} \
                   FOR EACH STATEMENT EXECUTE FUNCTION campus_notify_change();"
            ))
            .await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        if manager.get_database_backend() != DbBackend::Postgres {
            return Ok(());
        }
        let db = manager.get_connection();
        for t in TABLES {
            for op in ["insert", "update", "delete", "truncate"] {
                db.execute_unprepared(&format!("DROP TRIGGER IF EXISTS campus_{t}_{op} ON {t}"))
                    .await?;
            }
        }
        db.execute_unprepared("DROP FUNCTION IF EXISTS campus_notify_change()")
            .await?;
        Ok(())
    }

    fn use_transaction(&self) -> Option<bool> {
        Some(true)
    }
}
