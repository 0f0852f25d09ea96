//! What a database error means: a constraint violation the API turns into a
//! 400 or 409, a database that is unavailable (503), and the error's own
//! message on one line, for the operator.

use sea_orm::sqlx;
use sea_orm::{DbErr, RuntimeErr};

/// Whether `err` is a foreign key violation: inserting a row that points to
/// a missing (or other-tenant) row, or deleting a row still referenced
/// (the API's 409).
///
/// Use this rather than sea-orm's `DbErr::sql_err` alone: deleting a row
/// that an `ON DELETE RESTRICT` key still references fails with codes it
/// does not recognise, PostgreSQL's `restrict_violation` (23001) and
/// SQLite's `SQLITE_CONSTRAINT_TRIGGER` (1811, "FOREIGN KEY constraint
/// failed").
pub fn is_foreign_key_violation(err: &DbErr) -> bool {
    if matches!(
        err.sql_err(),
        Some(sea_orm::SqlErr::ForeignKeyConstraintViolation(_))
    ) {
        return true;
    }
    match database_error(err) {
        Some((code, _)) if code == "23001" => true,
        Some((code, message)) => code == "1811" && message.contains("FOREIGN KEY"),
        None => false,
    }
}

/// Whether `err` is a unique constraint violation (a duplicate code, email,
/// username, ...: the API's 400).
pub fn is_unique_violation(err: &DbErr) -> bool {
    matches!(
        err.sql_err(),
        Some(sea_orm::SqlErr::UniqueConstraintViolation(_))
    )
}

/// The database cannot be reached or is restarting: nothing about the request is
/// wrong, and the same request may succeed in a moment (503, not 500).
pub fn is_unavailable(err: &DbErr) -> bool {
    let sqlx_err = match err {
        DbErr::ConnectionAcquire(_) => return true,
        DbErr::Conn(RuntimeErr::SqlxError(e))
        | DbErr::Exec(RuntimeErr::SqlxError(e))
        | DbErr::Query(RuntimeErr::SqlxError(e)) => e,
        DbErr::Conn(_) => return true,
        _ => return false,
    };
    match &**sqlx_err {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => true,
        // SQLSTATE class 08: connection exception; 57P01-57P03: the server is
        // shutting down, crashed, or not accepting connections yet.
        // 57014: a statement cancelled by `statement_timeout`, an overloaded
        // database rather than a wrong request.
        sqlx::Error::Database(db) => db.code().is_some_and(|c| {
            c.starts_with("08") || matches!(&*c, "57014" | "57P01" | "57P02" | "57P03")
        }),
        _ => false,
    }
}

/// The database's error code (PostgreSQL SQLSTATE, SQLite extended code) and
/// message, if `err` came from the database.
fn database_error(err: &DbErr) -> Option<(String, String)> {
    let (DbErr::Exec(RuntimeErr::SqlxError(e))
    | DbErr::Query(RuntimeErr::SqlxError(e))
    | DbErr::Conn(RuntimeErr::SqlxError(e))) = err
    else {
        return None;
    };
    let db = e.as_database_error()?;
    Some((db.code()?.into_owned(), db.message().to_owned()))
}

/// The innermost useful message of a sea-orm error, on one line: sea-orm's
/// "Connection Error: " prefixes say nothing the caller's context doesn't.
pub(super) fn db_err_reason(err: &DbErr) -> String {
    let reason = match err {
        DbErr::Conn(RuntimeErr::SqlxError(e))
        | DbErr::Exec(RuntimeErr::SqlxError(e))
        | DbErr::Query(RuntimeErr::SqlxError(e)) => sqlx_reason(e),
        DbErr::Conn(RuntimeErr::Internal(s)) => s.clone(),
        other => other.to_string(),
    };
    reason.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// A database's own message without sqlx's decoration ("error returned from
/// database: ", PostgreSQL's source line number).
pub(super) fn sqlx_reason(err: &sqlx::Error) -> String {
    match err {
        sqlx::Error::Database(e) => e.message().to_owned(),
        other => other.to_string(),
    }
}
