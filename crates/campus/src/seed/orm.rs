//! The portable writer (SQLite): sea-orm multi-row `INSERT`s inside one
//! transaction per organization.
//!
//! A single write transaction is also what makes SQLite fast here: outside
//! one, every statement would be its own commit (and WAL sync).

use std::collections::HashMap;

use indicatif::ProgressBar;
use sea_orm::ActiveValue::Set;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, DatabaseConnection, DatabaseTransaction, EntityTrait, Iterable,
    QueryFilter, TransactionTrait,
};

use super::OrgPlan;
use super::data::{self, DEPARTMENTS};
use crate::entity::{Department, Faculty, Program, Student, User};
use crate::entity::{department, faculty, organization, program, student, user};

/// SQLite's default `SQLITE_MAX_VARIABLE_NUMBER` (since 3.32): an `INSERT`
/// binds one parameter per column per row.
const MAX_PARAMETERS: usize = 32_766;

pub(super) async fn write_org(
    db: &DatabaseConnection,
    plan: &OrgPlan<'_>,
    progress: &ProgressBar,
) -> anyhow::Result<()> {
    let txn = db.begin().await?;
    let now = plan.now;

    let org = organization::ActiveModel {
        code: Set(plan.code.clone()),
        name: Set(plan.name.clone()),
        created_at: Set(now),
        ..Default::default()
    }
    .insert(&txn)
    .await?;
    progress.inc(1);

    Department::insert_many(
        DEPARTMENTS
            .iter()
            .map(|(code, name)| department::ActiveModel {
                organization_id: Set(org.id),
                code: Set((*code).to_owned()),
                name: Set((*name).to_owned()),
                ..Default::default()
            }),
    )
    .exec_without_returning(&txn)
    .await?;
    let by_code: HashMap<String, i64> = Department::find()
        .filter(department::Column::OrganizationId.eq(org.id))
        .all(&txn)
        .await?
        .into_iter()
        .map(|d| (d.code, d.id))
        .collect();
    let department_ids: Vec<i64> = DEPARTMENTS.iter().map(|(code, _)| by_code[*code]).collect();
    progress.inc(DEPARTMENTS.len() as u64);

    let programs = data::programs();
    Program::insert_many(programs.iter().map(|(department, code, name, years)| {
        program::ActiveModel {
            organization_id: Set(org.id),
            department_id: Set(department_ids[*department]),
            code: Set(code.clone()),
            name: Set(name.clone()),
            duration_years: Set(*years),
            ..Default::default()
        }
    }))
    .exec_without_returning(&txn)
    .await?;
    let by_code: HashMap<String, i64> = Program::find()
        .filter(program::Column::OrganizationId.eq(org.id))
        .all(&txn)
        .await?
        .into_iter()
        .map(|p| (p.code, p.id))
        .collect();
    let program_ids: Vec<i64> = programs
        .iter()
        .map(|(_, code, _, _)| by_code[code])
        .collect();
    progress.inc(programs.len() as u64);

    let users = data::users(plan.number);
    let count = users.len() as u64;
    User::insert_many(users.into_iter().map(|u| user::ActiveModel {
        organization_id: Set(org.id),
        username: Set(u.username),
        email: Set(u.email),
        first_name: Set(u.first_name),
        last_name: Set(u.last_name),
        role: Set(u.role.to_owned()),
        password_hash: Set(plan.password_hash.to_owned()),
        is_active: Set(true),
        date_joined: Set(now),
        ..Default::default()
    }))
    .exec_without_returning(&txn)
    .await?;
    progress.inc(count);

    let rows = data::faculty(plan.seed, plan.number, plan.faculty).map(|f| faculty::ActiveModel {
        organization_id: Set(org.id),
        department_id: Set(department_ids[f.department]),
        employee_id: Set(f.employee_id),
        first_name: Set(f.first_name.to_owned()),
        last_name: Set(f.last_name.to_owned()),
        email: Set(f.email),
        designation: Set(f.designation.to_owned()),
        specialization: Set(f.specialization.to_owned()),
        max_hours_per_week: Set(f.max_hours_per_week),
        is_active: Set(f.is_active),
        created_at: Set(now),
        updated_at: Set(now),
        ..Default::default()
    });
    insert_in_batches::<Faculty>(&txn, rows, progress).await?;

    let rows =
        data::students(plan.seed, plan.number, plan.students).map(|s| student::ActiveModel {
            organization_id: Set(org.id),
            department_id: Set(department_ids[s.department]),
            program_id: Set(program_ids[s.program]),
            roll_number: Set(s.roll_number),
            first_name: Set(s.first_name.to_owned()),
            last_name: Set(s.last_name.to_owned()),
            email: Set(s.email),
            semester: Set(s.semester),
            batch: Set(s.batch),
            is_active: Set(s.is_active),
            created_at: Set(now),
            updated_at: Set(now),
            ..Default::default()
        });
    insert_in_batches::<Student>(&txn, rows, progress).await?;

    txn.commit().await?;
    Ok(())
}

/// Inserts `rows` with as many rows per statement as the parameter limit
/// allows (every column but the generated id is bound).
async fn insert_in_batches<E: EntityTrait>(
    txn: &DatabaseTransaction,
    rows: impl Iterator<Item = E::ActiveModel>,
    progress: &ProgressBar,
) -> anyhow::Result<()>
where
    E::ActiveModel: ActiveModelTrait<Entity = E>,
{
    let per_statement = MAX_PARAMETERS / (E::Column::iter().count() - 1).max(1);
    let mut rows = rows.peekable();
    while rows.peek().is_some() {
        let batch: Vec<E::ActiveModel> = rows.by_ref().take(per_statement).collect();
        let n = batch.len() as u64;
        E::insert_many(batch).exec_without_returning(txn).await?;
        progress.inc(n);
    }
    Ok(())
}
