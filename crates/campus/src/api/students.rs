//! `/api/students/`: embeds department and program, so it depends on both.

use std::collections::HashMap;

use chrono::Utc;
use sea_orm::prelude::DateTimeUtc;
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, DatabaseConnection, DatabaseTransaction,
    EntityTrait, QueryFilter,
};
use serde_json::{Map, Value, json};

use super::{departments, programs};
use crate::entity::student::{self, Column, Entity};
use crate::entity::{department, program};
use crate::error::ApiResult;
use crate::fields::{Field, Initial, Mode, Type, Unique};
use crate::input::{Input, missing_pk};
use crate::listing::{FilterValue, ListQuery, Results};
use crate::model::Model;
use crate::query::{self, Part};
use crate::resource::Resource;

pub(crate) struct Students;

const NAME: Type = Type::Text {
    max: 80,
    blank: false,
};

pub(crate) const FIELDS: [Field; 12] = [
    Field::read_only("id", Type::Id).orderable(),
    Field::required("roll_number", Type::Code { max: 32 })
        .unique(Unique::Organization)
        .orderable()
        .searchable(),
    Field::required("first_name", NAME).orderable().searchable(),
    Field::required("last_name", NAME).orderable().searchable(),
    Field::required("email", Type::Email)
        .unique(Unique::Organization)
        .orderable()
        .searchable(),
    Field::required("semester", Type::Int { min: 1, max: 12 })
        .orderable()
        .filterable(),
    Field::required(
        "batch",
        Type::Int {
            min: 1900,
            max: 2200,
        },
    )
    .orderable()
    .filterable(),
    Field::optional("is_active", Type::Bool, Initial::Bool(true)).filterable(),
    Field::required(
        "department",
        Type::Related {
            fields: &departments::FIELDS,
        },
    )
    .filterable(),
    Field::required(
        "program",
        Type::Related {
            fields: &programs::EMBEDDED,
        },
    )
    .filterable(),
    Field::read_only("created_at", Type::DateTime).orderable(),
    Field::read_only("updated_at", Type::DateTime).orderable(),
];

/// A student as the API shows it ([`FIELDS`], in their order), serialized
/// straight from the row.
#[derive(serde::Serialize)]
struct Shown<'a> {
    id: i64,
    roll_number: &'a str,
    first_name: &'a str,
    last_name: &'a str,
    email: &'a str,
    semester: i32,
    batch: i32,
    is_active: bool,
    department: Option<departments::Shown<'a>>,
    program: Option<programs::Nested<'a>>,
    #[serde(serialize_with = "crate::listing::timestamp")]
    created_at: &'a DateTimeUtc,
    #[serde(serialize_with = "crate::listing::timestamp")]
    updated_at: &'a DateTimeUtc,
}

fn shown<'a>(
    s: &'a student::Model,
    depts: &'a HashMap<i64, department::Model>,
    progs: &'a HashMap<i64, program::Model>,
) -> Shown<'a> {
    Shown {
        id: s.id,
        roll_number: &s.roll_number,
        first_name: &s.first_name,
        last_name: &s.last_name,
        email: &s.email,
        semester: s.semester,
        batch: s.batch,
        is_active: s.is_active,
        department: departments::nested(depts, s.department_id),
        program: programs::nested(progs, s.program_id),
        created_at: &s.created_at,
        updated_at: &s.updated_at,
    }
}

fn to_json(
    s: &student::Model,
    depts: &HashMap<i64, department::Model>,
    progs: &HashMap<i64, program::Model>,
) -> Value {
    json!(shown(s, depts, progs))
}

async fn find(
    db: &impl sea_orm::ConnectionTrait,
    org: i64,
    id: i64,
) -> ApiResult<Option<student::Model>> {
    query::find_in_org::<Entity>(db, Column::OrganizationId, org, Column::Id, id).await
}

async fn taken(
    tx: &DatabaseTransaction,
    org: i64,
    column: Column,
    value: &str,
    except: Option<i64>,
) -> ApiResult<bool> {
    query::taken::<Entity>(
        tx,
        (Column::OrganizationId, org),
        (column, value),
        (Column::Id, except),
    )
    .await
}

impl Resource for Students {
    const MODEL: Model = Model::Student;
    const FIELDS: &'static [Field] = &FIELDS;
    type Row = student::Model;

    async fn list(
        db: &DatabaseConnection,
        org: i64,
        q: &ListQuery,
        part: Part,
    ) -> ApiResult<(u64, Results)> {
        let mut select = Entity::find().filter(Column::OrganizationId.eq(org));
        if let Some(FilterValue::Text(code)) = q.filter("department") {
            select = query::having_code::<department::Entity, _>(
                select,
                Column::DepartmentId,
                org,
                code,
            );
        }
        if let Some(FilterValue::Text(code)) = q.filter("program") {
            select = query::having_code::<program::Entity, _>(select, Column::ProgramId, org, code);
        }
        let select = query::filter_columns(select, q, Self::FIELDS);
        let select = query::search_fields(select, &q.search, &Self::search());
        if part != Part::Rows {
            return query::unrendered(db, org, select, q, Column::Id, part).await;
        }
        // The embedded departments and programs are read beside the page.
        let (depts, progs, (count, rows)) = tokio::try_join!(
            departments::of_org(db, org),
            programs::of_org(db, org),
            query::page(db, select, q, Column::Id, part)
        )?;
        Ok((
            count,
            Results::of(rows.iter().map(|s| shown(s, &depts, &progs)))?,
        ))
    }

    async fn retrieve(db: &DatabaseConnection, org: i64, id: i64) -> ApiResult<Option<Value>> {
        let Some(s) = find(db, org, id).await? else {
            return Ok(None);
        };
        let depts = departments::of_org(db, org).await?;
        let progs = programs::of_org(db, org).await?;
        Ok(Some(to_json(&s, &depts, &progs)))
    }

    async fn find(
        tx: &DatabaseTransaction,
        org: i64,
        id: i64,
    ) -> ApiResult<Option<student::Model>> {
        find(tx, org, id).await
    }

    async fn save(
        tx: &DatabaseTransaction,
        org: i64,
        current: Option<student::Model>,
        input: &Map<String, Value>,
        partial: bool,
    ) -> ApiResult<Value> {
        let mut i = Input::new(input, &FIELDS, Mode::of(current.is_none(), partial));
        let roll = i.text("roll_number");
        let first_name = i.text("first_name");
        let last_name = i.text("last_name");
        let email = i.text("email");
        let semester = i.int("semester");
        let batch = i.int("batch");
        let is_active = i.boolean("is_active");
        let dept = i.pk("department_id");
        let prog = i.pk("program_id");
        let except = current.as_ref().map(|s| s.id);
        let progs = programs::of_org(tx, org).await?;
        if let Some(d) = dept
            && !departments::exists(tx, org, d).await?
        {
            i.error("department_id", missing_pk(d));
        }
        if let Some(p) = prog
            && !progs.contains_key(&p)
        {
            i.error("program_id", missing_pk(p));
        }
        if let Some(v) = &roll
            && taken(tx, org, Column::RollNumber, v, except).await?
        {
            i.error(
                "roll_number",
                "student with this roll number already exists.",
            );
        }
        if let Some(v) = &email
            && taken(tx, org, Column::Email, v, except).await?
        {
            i.error("email", "student with this email already exists.");
        }
        i.finish()?;
        let now = Utc::now();
        let saved = match current {
            Some(s) => {
                let mut am: student::ActiveModel = s.into();
                if let Some(v) = roll {
                    am.roll_number = Set(v);
                }
                if let Some(v) = first_name {
                    am.first_name = Set(v);
                }
                if let Some(v) = last_name {
                    am.last_name = Set(v);
                }
                if let Some(v) = email {
                    am.email = Set(v);
                }
                if let Some(v) = semester {
                    am.semester = Set(v as i32);
                }
                if let Some(v) = batch {
                    am.batch = Set(v as i32);
                }
                if let Some(v) = is_active {
                    am.is_active = Set(v);
                }
                if let Some(v) = dept {
                    am.department_id = Set(v);
                }
                if let Some(v) = prog {
                    am.program_id = Set(v);
                }
                am.updated_at = Set(now);
                am.update(tx).await?
            }
            None => {
                student::ActiveModel {
                    organization_id: Set(org),
                    department_id: Set(dept.unwrap_or_default()),
                    program_id: Set(prog.unwrap_or_default()),
                    roll_number: Set(roll.unwrap_or_default()),
                    first_name: Set(first_name.unwrap_or_default()),
                    last_name: Set(last_name.unwrap_or_default()),
                    email: Set(email.unwrap_or_default()),
                    semester: Set(semester.unwrap_or_default() as i32),
                    batch: Set(batch.unwrap_or_default() as i32),
                    is_active: Set(is_active.unwrap_or_default()),
                    created_at: Set(now),
                    updated_at: Set(now),
                    ..Default::default()
                }
                .insert(tx)
                .await?
            }
        };
        let depts = departments::of_org(tx, org).await?;
        Ok(to_json(&saved, &depts, &progs))
    }

    async fn remove(tx: &DatabaseTransaction, row: student::Model) -> ApiResult<()> {
        Entity::delete_by_id(row.id).exec(tx).await?;
        Ok(())
    }
}
