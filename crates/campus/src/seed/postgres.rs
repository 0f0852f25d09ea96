//! The PostgreSQL writer: the small tables through multi-row `INSERT …
//! RETURNING`, faculty and students through `COPY … FROM STDIN` (text
//! format), all on one connection inside one transaction per organization.
//!
//! It talks to sqlx directly (the pool sea-orm wraps) because `COPY` has to
//! run in the same transaction as the inserts, and sea-orm's transactions do
//! not expose their connection.

use std::collections::HashMap;
use std::fmt::Write as _;

use chrono::{DateTime, Utc};
use indicatif::ProgressBar;
use sea_orm::sqlx::{self, PgConnection, PgPool, Postgres, QueryBuilder};

use super::OrgPlan;
use super::data::{self, DEPARTMENTS};

/// Rows per `COPY` statement: large enough that per-statement costs vanish,
/// small enough for the progress bar to move every second or so.
const COPY_BATCH: usize = 25_000;

/// Bytes buffered before they are handed to the connection, so generating
/// rows overlaps with the server parsing the previous chunk.
const SEND_CHUNK: usize = 256 * 1024;

pub(super) async fn write_org(
    pool: &PgPool,
    plan: &OrgPlan<'_>,
    progress: &ProgressBar,
) -> anyhow::Result<()> {
    let mut tx = pool.begin().await?;
    let now = plan.now;

    let org_id: i64 = sqlx::query_scalar(
        "INSERT INTO organizations (code, name, created_at) VALUES ($1, $2, $3) RETURNING id",
    )
    .bind(&plan.code)
    .bind(&plan.name)
    .bind(now)
    .fetch_one(&mut *tx)
    .await?;
    progress.inc(1);
    let stamp = copy_timestamp(now);

    let mut insert =
        QueryBuilder::<Postgres>::new("INSERT INTO departments (organization_id, code, name) ");
    insert.push_values(DEPARTMENTS, |mut row, (code, name)| {
        row.push_bind(org_id).push_bind(code).push_bind(name);
    });
    insert.push(" RETURNING code, id");
    let by_code: HashMap<String, i64> = insert
        .build_query_as()
        .fetch_all(&mut *tx)
        .await?
        .into_iter()
        .collect();
    let department_ids: Vec<i64> = DEPARTMENTS.iter().map(|(code, _)| by_code[*code]).collect();
    progress.inc(DEPARTMENTS.len() as u64);

    let programs = data::programs();
    let mut insert = QueryBuilder::<Postgres>::new(
        "INSERT INTO programs (organization_id, department_id, code, name, duration_years) ",
    );
    insert.push_values(&programs, |mut row, (department, code, name, years)| {
        row.push_bind(org_id)
            .push_bind(department_ids[*department])
            .push_bind(code)
            .push_bind(name)
            .push_bind(years);
    });
    insert.push(" RETURNING code, id");
    let by_code: HashMap<String, i64> = insert
        .build_query_as()
        .fetch_all(&mut *tx)
        .await?
        .into_iter()
        .collect();
    let program_ids: Vec<i64> = programs
        .iter()
        .map(|(_, code, _, _)| by_code[code])
        .collect();
    progress.inc(programs.len() as u64);

    let users = data::users(plan.number);
    let mut insert = QueryBuilder::<Postgres>::new(
        "INSERT INTO users (organization_id, username, email, first_name, last_name, role, \
         password_hash, is_active, date_joined) ",
    );
    insert.push_values(&users, |mut row, user| {
        row.push_bind(org_id)
            .push_bind(&user.username)
            .push_bind(&user.email)
            .push_bind(&user.first_name)
            .push_bind(&user.last_name)
            .push_bind(user.role)
            .push_bind(plan.password_hash)
            .push_bind(true)
            .push_bind(now);
    });
    insert.build().execute(&mut *tx).await?;
    progress.inc(users.len() as u64);

    copy_rows(
        &mut tx,
        "COPY faculty (organization_id, department_id, employee_id, first_name, last_name, email, \
         designation, specialization, max_hours_per_week, is_active, created_at, updated_at) \
         FROM STDIN",
        data::faculty(plan.seed, plan.number, plan.faculty),
        |line, f| {
            write_fields(
                line,
                &[
                    Field::Int(org_id),
                    Field::Int(department_ids[f.department]),
                    Field::Text(&f.employee_id),
                    Field::Text(f.first_name),
                    Field::Text(f.last_name),
                    Field::Text(&f.email),
                    Field::Text(f.designation),
                    Field::Text(f.specialization),
                    Field::Int(f.max_hours_per_week.into()),
                    Field::Bool(f.is_active),
                    Field::Time(&stamp),
                    Field::Time(&stamp),
                ],
            );
        },
        progress,
    )
    .await?;

    copy_rows(
        &mut tx,
        "COPY students (organization_id, department_id, program_id, roll_number, first_name, \
         last_name, email, semester, batch, is_active, created_at, updated_at) FROM STDIN",
        data::students(plan.seed, plan.number, plan.students),
        |line, s| {
            write_fields(
                line,
                &[
                    Field::Int(org_id),
                    Field::Int(department_ids[s.department]),
                    Field::Int(program_ids[s.program]),
                    Field::Text(&s.roll_number),
                    Field::Text(s.first_name),
                    Field::Text(s.last_name),
                    Field::Text(&s.email),
                    Field::Int(s.semester.into()),
                    Field::Int(s.batch.into()),
                    Field::Bool(s.is_active),
                    Field::Time(&stamp),
                    Field::Time(&stamp),
                ],
            );
        },
        progress,
    )
    .await?;

    tx.commit().await?;
    Ok(())
}

/// Streams `rows` into `statement` (a `COPY … FROM STDIN` in text format),
/// [`COPY_BATCH`] rows per statement.
async fn copy_rows<T>(
    conn: &mut PgConnection,
    statement: &str,
    rows: impl Iterator<Item = T>,
    encode: impl Fn(&mut String, &T),
    progress: &ProgressBar,
) -> anyhow::Result<()> {
    let mut rows = rows.peekable();
    let mut buf = String::with_capacity(SEND_CHUNK + 4096);
    while rows.peek().is_some() {
        let mut copy = conn.copy_in_raw(statement).await?;
        let mut in_batch = 0u64;
        for row in rows.by_ref().take(COPY_BATCH) {
            encode(&mut buf, &row);
            in_batch += 1;
            if buf.len() >= SEND_CHUNK {
                copy.send(buf.as_bytes()).await?;
                buf.clear();
            }
        }
        if !buf.is_empty() {
            copy.send(buf.as_bytes()).await?;
            buf.clear();
        }
        copy.finish().await?;
        progress.inc(in_batch);
    }
    Ok(())
}

enum Field<'a> {
    Int(i64),
    Text(&'a str),
    Bool(bool),
    /// A timestamp already in `COPY` form (see [`copy_timestamp`]): formatted
    /// once per organization rather than twice per row.
    Time(&'a str),
}

fn copy_timestamp(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S%.6f+00").to_string()
}

/// Appends one row in `COPY`'s text format: tab-separated, newline-ended,
/// with backslash, tab, newline and carriage return escaped in text.
fn write_fields(line: &mut String, fields: &[Field<'_>]) {
    for (i, field) in fields.iter().enumerate() {
        if i > 0 {
            line.push('\t');
        }
        match field {
            Field::Int(n) => {
                let _ = write!(line, "{n}");
            }
            Field::Bool(b) => line.push(if *b { 't' } else { 'f' }),
            Field::Time(t) => line.push_str(t),
            Field::Text(s) => {
                for c in s.chars() {
                    match c {
                        '\\' => line.push_str("\\\\"),
                        '\t' => line.push_str("\\t"),
                        '\n' => line.push_str("\\n"),
                        '\r' => line.push_str("\\r"),
                        c => line.push(c),
                    }
                }
            }
        }
    }
    line.push('\n');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copy_text_escapes_separators() {
        let mut line = String::new();
        let t = copy_timestamp(DateTime::from_timestamp(1_700_000_000, 0).unwrap());
        write_fields(
            &mut line,
            &[
                Field::Int(-7),
                Field::Text("a\tb\\c\nd\re"),
                Field::Bool(false),
                Field::Time(&t),
            ],
        );
        assert_eq!(
            line,
            "-7\ta\\tb\\\\c\\nd\\re\tf\t2023-11-14 22:13:20.000000+00\n"
        );
    }
}
