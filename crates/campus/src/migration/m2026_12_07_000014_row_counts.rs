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
//! so a statement over every organization adds one delta per organization it
//! changed, for the API's writes as for everyone's. An `UPDATE` adds, per
//! organization, its new rows less its old ones where they differ (a row
//! moved to another organization; nothing for every other update).
//!
//! A `TRUNCATE` is not MVCC-safe: it removes rows whose deltas a snapshot
//! taken before it may not see, so no `DELETE` of deltas run by its trigger
//! could be trusted to match it. It adds a marker instead (organization
//! [`UNKNOWN`]): while a table has one, its totals are counted, and a read
//! rebuilds the table's deltas from its rows in one snapshot
//! (`query::rebuild_row_counts`).
//!
//! The function runs as its owner (`SECURITY DEFINER`, `search_path` fixed
//! to the schema it was created in, temporary tables last): another program
//! allowed to write a table but not `row_counts` still writes, and its deltas
//! are still kept. No one else may execute it, so no other table can be given
//! a trigger that writes deltas in a cached table's name.
//!
//! Existing rows are counted once, after the triggers exist and under a lock
//! that waits for every writer in flight and holds off new ones until the
//! migration commits: no row is counted twice or missed.
//!
//! Writes that bypass triggers (`session_replication_role = replica`, a
//! disabled trigger) bypass the count as they bypass the change
//! notifications; `campus cache-stats --clear` rebuilds every count after
//! them. SQLite keeps no counts: its totals are counted.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::{ConnectionTrait, DbBackend};

use super::m2026_11_27_000009_create_change_triggers::TABLES;

/// The organization of a table's marker: its deltas are not to be trusted
/// (a `TRUNCATE`), its totals are counted until they are rebuilt. No
/// organization has it (ids are positive).
pub(crate) const UNKNOWN: i64 = -1;

fn create() -> String {
    format!(
        "
CREATE TABLE row_counts (
    table_name text NOT NULL,
    organization_id bigint NOT NULL,
    n bigint NOT NULL
);
CREATE INDEX idx_row_counts ON row_counts (table_name, organization_id);

CREATE FUNCTION campus_count_rows() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER AS $$
BEGIN
    IF TG_OP = 'TRUNCATE' THEN
        INSERT INTO row_counts (table_name, organization_id, n) VALUES (TG_TABLE_NAME, {UNKNOWN}, 0);
    ELSIF TG_OP = 'INSERT' THEN
        INSERT INTO row_counts (table_name, organization_id, n)
        SELECT TG_TABLE_NAME, organization_id, count(*) FROM new_rows GROUP BY organization_id;
    ELSIF TG_OP = 'DELETE' THEN
        INSERT INTO row_counts (table_name, organization_id, n)
        SELECT TG_TABLE_NAME, organization_id, -count(*) FROM old_rows GROUP BY organization_id;
    ELSE
        INSERT INTO row_counts (table_name, organization_id, n)
        SELECT TG_TABLE_NAME, o, sum(d) FROM (
            SELECT organization_id AS o, 1 AS d FROM new_rows
            UNION ALL SELECT organization_id, -1 FROM old_rows
        ) changed GROUP BY o HAVING sum(d) <> 0;
    END IF;
    RETURN NULL;
END
$$;
REVOKE EXECUTE ON FUNCTION campus_count_rows() FROM PUBLIC;
DO $$ BEGIN
    EXECUTE format('ALTER FUNCTION campus_count_rows() SET search_path = pg_catalog, %I, pg_temp',
                   current_schema());
END $$;
"
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
        let db = manager.get_connection();
        // The mode `CREATE TRIGGER` takes (a weaker one, upgraded there,
        // could deadlock with another session's), and bounded: a migration
        // gives up rather than queue every write behind a long transaction.
        db.execute_unprepared(&format!(
            "SET LOCAL lock_timeout = '10s'; LOCK TABLE {} IN SHARE ROW EXCLUSIVE MODE",
            TABLES.join(", ")
        ))
        .await?;
        db.execute_unprepared(&create()).await?;
        for t in TABLES {
            db.execute_unprepared(&format!(
                "CREATE TRIGGER campus_{t}_count_insert AFTER INSERT ON {t} \
                   REFERENCING NEW TABLE AS new_rows \
                   FOR EACH STATEMENT EXECUTE FUNCTION campus_count_rows();
                 CREATE TRIGGER campus_{t}_count_update AFTER UPDATE ON {t} \
                   REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows \
                   FOR EACH STATEMENT EXECUTE FUNCTION campus_count_rows();
                 CREATE TRIGGER campus_{t}_count_delete AFTER DELETE ON {t} \
                   REFERENCING OLD TABLE AS old_rows \
                   FOR EACH STATEMENT EXECUTE FUNCTION campus_count_rows();
                 CREATE TRIGGER campus_{t}_count_truncate AFTER TRUNCATE ON {t} \
                   FOR EACH STATEMENT EXECUTE FUNCTION campus_count_rows();
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
            for op in ["insert", "update", "delete", "truncate"] {
                db.execute_unprepared(&format!(
                    "DROP TRIGGER IF EXISTS campus_{t}_count_{op} ON {t}"
                ))
                .await?;
            }
        }
        db.execute_unprepared(
            "DROP FUNCTION IF EXISTS campus_count_rows();
             DROP TABLE IF EXISTS row_counts;",
        )
        .await?;
        Ok(())
    }

    fn use_transaction(&self) -> Option<bool> {
        Some(true)
    }
}
