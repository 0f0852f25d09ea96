//! Each organization's row count per cached table, kept by triggers
//! (PostgreSQL), so that a list's unfiltered total is a read of a few rows
//! rather than a walk of the organization's index (issue 22: the count was
//! the longest query of a cold 500-row page, 10,000 index entries per
//! organization, 100,000 at 1M students).
//!
//! `row_counts` holds deltas, not one row per count: every statement that
//! inserts or deletes rows adds one row per organization it touched (the
//! number it added or removed), and a total is their sum
//! (`query::row_count`). Adding a row takes no lock another writer waits on:
//! an `UPDATE` of one counter row per organization would have made every
//! writer of an organization wait for the others' commits (a bulk import of
//! another program would hold up the API's inserts until it committed) and
//! could deadlock two transactions writing two organizations in opposite
//! orders. The deltas of one organization are folded into one row, by one
//! statement, once a read finds more than a few (`query::row_count`).
//!
//! The deltas are written by the statement's own transaction, so a snapshot
//! sees exactly the deltas of the rows it sees: the sum equals `count(*)` of
//! the organization's rows under any snapshot, a committed write included, a
//! rolled-back one not. The triggers are the same kind as the change
//! triggers (`m2026_11_27_000009`): statement-level with transition tables,
//! so a statement over every organization adds one delta per organization,
//! and for the API's writes as for everyone's. An `UPDATE` can change a row's
//! count only by moving it to another organization: a row-level trigger on
//! `organization_id` alone, with a `WHEN` that skips every other update
//! before it runs. A `TRUNCATE` removes the table's deltas.
//!
//! The functions run as their owner (`SECURITY DEFINER`, with the schema
//! they were created in): another program allowed to write a table but not
//! `row_counts` still writes, and its deltas are still kept.
//!
//! Existing rows are counted once, after the triggers exist and under a
//! `SHARE` lock that waits for every writer in flight and holds off new ones
//! until the migration commits: no row is counted twice or missed.
//!
//! Writes that bypass triggers (`session_replication_role = replica`, a
//! disabled trigger) bypass the count as they bypass the change
//! notifications. SQLite keeps no counts: its totals are counted.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::{ConnectionTrait, DbBackend};

use super::m2026_11_27_000009_create_change_triggers::TABLES;

const CREATE: &str = "
CREATE TABLE row_counts (
    table_name text NOT NULL,
    organization_id bigint NOT NULL,
    n bigint NOT NULL
);
CREATE INDEX idx_row_counts ON row_counts (table_name, organization_id);

CREATE FUNCTION campus_count_rows() RETURNS trigger LANGUAGE plpgsql
SECURITY DEFINER SET search_path FROM CURRENT AS $$
BEGIN
    IF TG_OP = 'TRUNCATE' THEN
        DELETE FROM row_counts WHERE table_name = TG_TABLE_NAME;
    ELSIF TG_OP = 'INSERT' THEN
        INSERT INTO row_counts (table_name, organization_id, n)
        SELECT TG_TABLE_NAME, organization_id, count(*) FROM new_rows GROUP BY organization_id;
    ELSIF TG_OP = 'DELETE' THEN
        INSERT INTO row_counts (table_name, organization_id, n)
        SELECT TG_TABLE_NAME, organization_id, -count(*) FROM old_rows GROUP BY organization_id;
    END IF;
    RETURN NULL;
END
$$;

CREATE FUNCTION campus_count_moved_row() RETURNS trigger LANGUAGE plpgsql
SECURITY DEFINER SET search_path FROM CURRENT AS $$
BEGIN
    INSERT INTO row_counts (table_name, organization_id, n)
    VALUES (TG_TABLE_NAME, OLD.organization_id, -1), (TG_TABLE_NAME, NEW.organization_id, 1);
    RETURN NULL;
END
$$;
";

#[derive(DeriveMigrationName)]
pub(super) struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        if manager.get_database_backend() != DbBackend::Postgres {
            return Ok(());
        }
        let db = manager.get_connection();
        db.execute_unprepared(&format!("LOCK TABLE {} IN SHARE MODE", TABLES.join(", ")))
            .await?;
        db.execute_unprepared(CREATE).await?;
        for t in TABLES {
            db.execute_unprepared(&format!(
                "CREATE TRIGGER campus_{t}_count_insert AFTER INSERT ON {t} \
                   REFERENCING NEW TABLE AS new_rows \
                   FOR EACH STATEMENT EXECUTE FUNCTION campus_count_rows();
                 CREATE TRIGGER campus_{t}_count_delete AFTER DELETE ON {t} \
                   REFERENCING OLD TABLE AS old_rows \
                   FOR EACH STATEMENT EXECUTE FUNCTION campus_count_rows();
                 CREATE TRIGGER campus_{t}_count_truncate AFTER TRUNCATE ON {t} \
                   FOR EACH STATEMENT EXECUTE FUNCTION campus_count_rows();
                 CREATE TRIGGER campus_{t}_count_move AFTER UPDATE OF organization_id ON {t} \
                   FOR EACH ROW WHEN (OLD.organization_id IS DISTINCT FROM NEW.organization_id) \
                   EXECUTE FUNCTION campus_count_moved_row();
                 INSERT INTO row_counts (table_name, organization_id, n) \
                   SELECT '{t}', organization_id, count(*) FROM {t} GROUP BY organization_id;"
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
            for op in ["insert", "delete", "truncate", "move"] {
                db.execute_unprepared(&format!(
                    "DROP TRIGGER IF EXISTS campus_{t}_count_{op} ON {t}"
                ))
                .await?;
            }
        }
        db.execute_unprepared(
            "DROP FUNCTION IF EXISTS campus_count_rows();
             DROP FUNCTION IF EXISTS campus_count_moved_row();
             DROP TABLE IF EXISTS row_counts;",
        )
        .await?;
        Ok(())
    }

    fn use_transaction(&self) -> Option<bool> {
        Some(true)
    }
}
