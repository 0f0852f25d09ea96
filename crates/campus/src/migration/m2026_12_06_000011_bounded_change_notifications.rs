//! The change triggers' notification is bounded, and never fails the
//! statement that fired it (SPEC §5.5: writes from outside the API, of any
//! size).
//!
//! `pg_notify` refuses a payload of 8,000 bytes or more, and migration 9's
//! function listed every organization a statement touched: an outside bulk
//! statement over ~1,600 organizations raised in the trigger and rolled back
//! the other program's statement. A list that would not fit is now sent as
//! `{table} *` (every organization: the listener invalidates the model in all
//! of them), and a `pg_notify` that fails anyway is reported as a `WARNING`
//! instead of an error: an invalidation is never worth another program's write.
//!
//! One failure stays out of the trigger's reach: PostgreSQL checks that its
//! notification queue (8 GB) has room at `COMMIT`, after the trigger ran, and
//! fails the transaction if not. The queue fills only when a listening session
//! stops reading for a long time; `pg_notification_queue_usage()` shows it.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::{ConnectionTrait, DbBackend};

/// Longest organization list sent as such; the payload adds the table name
/// and a space, well under PostgreSQL's 8,000-byte limit.
const MAX_ORGS_TEXT: usize = 7_800;

fn function() -> String {
    format!(
        r#"
CREATE OR REPLACE FUNCTION campus_notify_change() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    orgs text;
BEGIN
    IF current_setting('campus.origin', true) = 'api' THEN
        RETURN NULL;
    END IF;
    IF TG_OP = 'TRUNCATE' THEN
        orgs := '*';
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
    IF orgs IS NULL THEN
        RETURN NULL;
    END IF;
    IF octet_length(orgs) > {MAX_ORGS_TEXT} THEN
        orgs := '*';
    END IF;
    BEGIN
        PERFORM pg_notify('campus_changes', TG_TABLE_NAME || ' ' || orgs);
    EXCEPTION WHEN OTHERS THEN
        RAISE WARNING 'campus: change notification for % not sent: %', TG_TABLE_NAME, SQLERRM;
    END;
    RETURN NULL;
END
$$"#
    )
}

#[derive(DeriveMigrationName)]
pub(super) struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        if manager.get_database_backend() != DbBackend::Postgres {
            return Ok(());
        }
        manager
            .get_connection()
            .execute_unprepared(&function())
            .await?;
        Ok(())
    }

    async fn down(&self, _manager: &SchemaManager) -> Result<(), DbErr> {
        // Migration 9's function is the one that fails large statements; going
        // back to it is not offered.
        Ok(())
    }

    fn use_transaction(&self) -> Option<bool> {
        Some(true)
    }
}
