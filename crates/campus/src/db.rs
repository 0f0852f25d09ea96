//! Opening the database (`DATABASE_URL`: PostgreSQL or SQLite), applying the
//! migrations, and recognising the constraint errors the API turns into
//! 400/409 responses (`errors`); a URL's password is masked in whatever is
//! shown of it (`mask`).

use std::time::Duration;

use sea_orm::sqlx;
use sea_orm::sqlx::sqlite::{SqliteJournalMode, SqliteSynchronous};
use sea_orm::{ConnectOptions, Database, DatabaseConnection, DbBackend, DbErr, RuntimeErr};
use sea_orm_migration::MigratorTrait;

use crate::migration::Migrator;

mod errors;
mod mask;

use errors::{db_err_reason, sqlx_reason};
pub use errors::{is_foreign_key_violation, is_unavailable, is_unique_violation};
pub use mask::mask_url;
use mask::scrub;

/// Connections of the PostgreSQL pool: enough for a few dozen concurrent
/// requests on a small server without exhausting `max_connections` (100 by
/// default) when a few instances share one database.
const POSTGRES_POOL: u32 = 20;

/// SQLite has a single writer: more connections only add readers, and
/// writers queue on the file lock (up to [`SQLITE_BUSY_TIMEOUT`]).
const SQLITE_POOL: u32 = 4;

const SQLITE_BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Longest wait for a pooled PostgreSQL connection: at start-up, how long an
/// unreachable server is retried; under load, how long a request queues for a
/// connection before failing.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);

/// Key of the PostgreSQL advisory lock held while migrating, so that several
/// instances starting at once apply each migration once ("campus" in ASCII).
const MIGRATION_LOCK_KEY: i64 = 0x63_61_6d_70_75_73;

/// Whether `url` names a PostgreSQL database.
pub fn is_postgres_url(url: &str) -> bool {
    url.starts_with("postgres://") || url.starts_with("postgresql://")
}

/// Opens a pool on `url` (`sqlite:…` or `postgres://…`).
///
/// Errors are one line, name `DATABASE_URL` and show the URL with its
/// password masked (see [`mask_url`]).
pub async fn connect(url: &str) -> anyhow::Result<DatabaseConnection> {
    connect_with(url, None).await
}

/// [`connect`], with PostgreSQL's `statement_timeout` set on every connection
/// of the pool (the serving pool: migrations and seeding may run longer, so
/// they use [`connect`]). SQLite has no statement timeout; it is ignored there.
/// The outside-writes listener's connection gets it too, which is harmless:
/// waiting for notifications is no statement.
pub async fn connect_with(
    url: &str,
    statement_timeout: Option<Duration>,
) -> anyhow::Result<DatabaseConnection> {
    let shown = mask_url(url);
    let fail = |reason: String| {
        anyhow::anyhow!(
            "DATABASE_URL: cannot connect to {shown}: {}",
            scrub(&reason, url)
        )
    };

    let mut options = ConnectOptions::new(url);
    // sea-orm already traces statements at debug level; sqlx's own statement
    // log would print every query a second time at info.
    options.sqlx_logging(false);
    if url.starts_with("sqlite:") {
        if is_sqlite_memory(url) {
            // An in-memory database lives as long as its connections: keep
            // exactly one, forever, or the data vanishes when the pool
            // recycles it (and a second connection would see another database).
            options
                .max_connections(1)
                .min_connections(1)
                .idle_timeout(None)
                .max_lifetime(None);
        } else {
            options.max_connections(SQLITE_POOL);
            if url.contains("mode=rwc") {
                create_private(url).map_err(|e| fail(e.to_string()))?;
            }
        }
        options.map_sqlx_sqlite_opts(|o| {
            o.journal_mode(SqliteJournalMode::Wal)
                // NORMAL is durable in WAL mode except for the last commits
                // before a power loss, and avoids an fsync per transaction.
                .synchronous(SqliteSynchronous::Normal)
                .foreign_keys(true)
                .busy_timeout(SQLITE_BUSY_TIMEOUT)
        });
    } else if is_postgres_url(url) {
        options
            .max_connections(POSTGRES_POOL)
            .min_connections(1)
            .connect_timeout(Duration::from_secs(3))
            .acquire_timeout(ACQUIRE_TIMEOUT);
        if let Some(limit) = statement_timeout {
            let ms = limit.as_millis().max(1).to_string();
            options
                .map_sqlx_postgres_opts(move |o| o.options([("statement_timeout", ms.as_str())]));
        }
    } else {
        return Err(fail(
            "unsupported scheme (expected sqlite:… or postgres://…)".to_owned(),
        ));
    }

    match Database::connect(options).await {
        Ok(db) => Ok(db),
        // The pool retries until its acquire timeout, then reports only that
        // it timed out; one direct attempt says why (refused, unknown host).
        Err(DbErr::Conn(RuntimeErr::SqlxError(e))) if matches!(*e, sqlx::Error::PoolTimedOut) => {
            let reason = match probe_postgres(url).await {
                Some(reason) => format!(
                    "{reason} (gave up after retrying for {} s)",
                    ACQUIRE_TIMEOUT.as_secs()
                ),
                None => sqlx_reason(&e),
            };
            Err(fail(reason))
        }
        Err(e) => {
            let mut reason = db_err_reason(&e);
            if url.starts_with("sqlite:") && !url.contains("mode=") {
                reason.push_str(" (a missing file is created only with ?mode=rwc)");
            }
            Err(fail(reason))
        }
    }
}

/// Creates the SQLite file of `url` readable by its owner only, if it does not
/// exist yet (SQLite would create it with the process's umask, usually
/// world-readable: password hashes and every tenant's rows). SQLite gives its
/// `-wal` and `-shm` files the database file's permissions.
fn create_private(url: &str) -> std::io::Result<()> {
    let path = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
        .unwrap_or(url);
    let path = path.split('?').next().unwrap_or(path);
    if path.is_empty() {
        return Ok(());
    }
    let mut open = std::fs::OpenOptions::new();
    open.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut open, 0o600);
    match open.open(path) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
    }
}

/// Why a single PostgreSQL connection attempt to `url` fails, if it does.
async fn probe_postgres(url: &str) -> Option<String> {
    use sqlx::Connection as _;
    let attempt = sqlx::PgConnection::connect(url);
    match tokio::time::timeout(Duration::from_secs(5), attempt).await {
        Ok(Ok(conn)) => {
            let _ = conn.close().await;
            None
        }
        Ok(Err(e)) => Some(sqlx_reason(&e)),
        Err(_) => Some("no answer within 5 s".to_owned()),
    }
}

/// Applies the pending migrations and returns how many there were.
///
/// On PostgreSQL a session advisory lock serialises concurrent callers (two
/// instances starting together): the second one waits, then finds nothing
/// pending.
pub async fn migrate(db: &DatabaseConnection) -> anyhow::Result<usize> {
    let fail = |e: DbErr| anyhow::anyhow!("migrating the database: {}", db_err_reason(&e));

    let _lock = if db.get_database_backend() == DbBackend::Postgres {
        let mut conn = db
            .get_postgres_connection_pool()
            .acquire()
            .await
            .map_err(|e| anyhow::anyhow!("migrating the database: {e}"))?;
        // The lock belongs to the session: closing the connection when this
        // guard drops releases it even if a migration fails half-way, and the
        // pool never hands out a connection still holding it.
        conn.close_on_drop();
        sqlx::query("SELECT pg_advisory_lock($1)")
            .bind(MIGRATION_LOCK_KEY)
            .execute(&mut *conn)
            .await
            .map_err(|e| anyhow::anyhow!("migrating the database: taking the lock: {e}"))?;
        Some(conn)
    } else {
        None
    };

    Migrator::install(db).await.map_err(fail)?;
    let pending = Migrator::get_pending_migrations(db)
        .await
        .map_err(fail)?
        .len();
    if pending > 0 {
        Migrator::up(db, None).await.map_err(fail)?;
    }
    Ok(pending)
}

/// The backend behind `db` (`DbBackend::Postgres` or `DbBackend::Sqlite`).
pub fn backend(db: &DatabaseConnection) -> DbBackend {
    db.get_database_backend()
}

fn is_sqlite_memory(url: &str) -> bool {
    url.contains(":memory:") || url.contains("mode=memory")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(unix)]
    #[tokio::test]
    async fn a_new_sqlite_file_is_readable_by_its_owner_only() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("campus-perm-{:x}", fastrand::u64(..)));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("campus.db");
        let db = connect(&format!("sqlite://{}?mode=rwc", file.display()))
            .await
            .unwrap();
        migrate(&db).await.unwrap();
        db.close().await.unwrap();
        let mode = std::fs::metadata(&file).unwrap().permissions().mode();
        let _ = std::fs::remove_dir_all(&dir);
        assert_eq!(mode & 0o077, 0, "mode {mode:o}");
    }

    #[tokio::test]
    async fn connection_errors_are_one_line_and_hide_the_password() {
        let err = connect("postgres://app:hunter22@127.0.0.1:1/campus")
            .await
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with(
                "DATABASE_URL: cannot connect to postgres://app:***@127.0.0.1:1/campus: "
            ),
            "{err}"
        );
        assert!(!err.contains("hunter22"), "{err}");
        assert!(!err.contains('\n'), "{err}");

        let err = connect("mysql://root:pw@localhost/x")
            .await
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with(
                "DATABASE_URL: cannot connect to mysql://root:***@localhost/x: unsupported scheme"
            ),
            "{err}"
        );
    }

    #[tokio::test]
    async fn migrating_twice_applies_nothing_the_second_time() {
        let db = connect("sqlite::memory:").await.unwrap();
        let applied = migrate(&db).await.unwrap();
        assert_eq!(applied, Migrator::migrations().len());
        assert_eq!(migrate(&db).await.unwrap(), 0);
        assert_eq!(backend(&db), DbBackend::Sqlite);
    }
}
