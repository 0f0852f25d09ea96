//! `/api/faculty/`: embeds its department, so it depends on `department` too.

use std::collections::HashMap;

use chrono::Utc;
use sea_orm::prelude::DateTimeUtc;
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, DatabaseConnection, DatabaseTransaction,
    EntityTrait, QueryFilter,
};
use serde_json::{Map, Value, json};

use super::departments;
use crate::entity::department;
use crate::entity::faculty::{self, Column, Entity};
use crate::error::ApiResult;
use crate::fields::{Field, Initial, Mode, Type, Unique};
use crate::input::{Input, missing_pk};
use crate::listing::{FilterValue, ListQuery, Results};
use crate::model::Model;
use crate::query::{self, Part};
use crate::resource::Resource;

pub(crate) struct Faculty;

const NAME: Type = Type::Text {
    max: 80,
    blank: false,
};

pub(crate) const FIELDS: [Field; 12] = [
    Field::read_only("id", Type::Id).orderable(),
    Field::required("employee_id", Type::Code { max: 32 })
        .unique(Unique::Organization)
        .orderable()
        .searchable(),
    Field::required("first_name", NAME).orderable().searchable(),
    Field::required("last_name", NAME).orderable().searchable(),
    Field::required("email", Type::Email)
        .unique(Unique::Organization)
        .orderable()
        .searchable(),
    Field::required("designation", NAME)
        .orderable()
        .filterable(),
    Field::required(
        "specialization",
        Type::Text {
            max: 120,
            blank: false,
        },
    ),
    Field::optional(
        "max_hours_per_week",
        Type::Int { min: 0, max: 80 },
        Initial::Int(18),
    )
    .orderable(),
    Field::optional("is_active", Type::Bool, Initial::Bool(true)).filterable(),
    Field::required(
        "department",
        Type::Related {
            fields: &departments::FIELDS,
        },
    )
    .filterable(),
    Field::read_only("created_at", Type::DateTime).orderable(),
    Field::read_only("updated_at", Type::DateTime).orderable(),
];

/// A faculty member as the API shows it ([`FIELDS`], in their order),
/// serialized straight from the row.
#[derive(serde::Serialize)]
struct Shown<'a> {
    id: i64,
    employee_id: &'a str,
    first_name: &'a str,
    last_name: &'a str,
    email: &'a str,
    designation: &'a str,
    specialization: &'a str,
    max_hours_per_week: i32,
    is_active: bool,
    department: Option<departments::Shown<'a>>,
    #[serde(serialize_with = "crate::listing::timestamp")]
    created_at: &'a DateTimeUtc,
    #[serde(serialize_with = "crate::listing::timestamp")]
    updated_at: &'a DateTimeUtc,
}

fn shown<'a>(f: &'a faculty::Model, depts: &'a HashMap<i64, department::Model>) -> Shown<'a> {
    Shown {
        id: f.id,
        employee_id: &f.employee_id,
        first_name: &f.first_name,
        last_name: &f.last_name,
        email: &f.email,
        designation: &f.designation,
        specialization: &f.specialization,
        max_hours_per_week: f.max_hours_per_week,
        is_active: f.is_active,
        department: departments::nested(depts, f.department_id),
        created_at: &f.created_at,
        updated_at: &f.updated_at,
    }
}

fn to_json(f: &faculty::Model, depts: &HashMap<i64, department::Model>) -> Value {
    json!(shown(f, depts))
}

async fn find(
    db: &impl sea_orm::ConnectionTrait,
    org: i64,
    id: i64,
) -> ApiResult<Option<faculty::Model>> {
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

impl Resource for Faculty {
    const MODEL: Model = Model::Faculty;
    const FIELDS: &'static [Field] = &FIELDS;
    type Row = faculty::Model;

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
        let select = query::filter_columns(select, q, Self::FIELDS);
        let select = query::search_fields(select, &q.search, &Self::search());
        if part != Part::Rows {
            return query::unrendered(db, org, select, q, Column::Id, part).await;
        }
        // The embedded departments are read beside the page.
        let (depts, (count, rows)) = tokio::try_join!(
            departments::of_org(db, org),
            query::page(db, select, q, Column::Id, part)
        )?;
        Ok((count, Results::of(rows.iter().map(|f| shown(f, &depts)))?))
    }

    async fn retrieve(db: &DatabaseConnection, org: i64, id: i64) -> ApiResult<Option<Value>> {
        let Some(f) = find(db, org, id).await? else {
            return Ok(None);
        };
        let depts = departments::of_org(db, org).await?;
        Ok(Some(to_json(&f, &depts)))
    }

    async fn find(
        tx: &DatabaseTransaction,
        org: i64,
        id: i64,
    ) -> ApiResult<Option<faculty::Model>> {
        find(tx, org, id).await
    }

    async fn save(
        tx: &DatabaseTransaction,
        org: i64,
        current: Option<faculty::Model>,
        input: &Map<String, Value>,
        partial: bool,
    ) -> ApiResult<Value> {
        let mut i = Input::new(input, &FIELDS, Mode::of(current.is_none(), partial));
        let employee_id = i.text("employee_id");
        let first_name = i.text("first_name");
        let last_name = i.text("last_name");
        let email = i.text("email");
        let designation = i.text("designation");
        let specialization = i.text("specialization");
        let max_hours = i.int("max_hours_per_week");
        let is_active = i.boolean("is_active");
        let dept = i.pk("department_id");
        let except = current.as_ref().map(|f| f.id);
        if let Some(d) = dept
            && !departments::exists(tx, org, d).await?
        {
            i.error("department_id", missing_pk(d));
        }
        if let Some(v) = &employee_id
            && taken(tx, org, Column::EmployeeId, v, except).await?
        {
            i.error(
                "employee_id",
                "faculty with this employee id already exists.",
            );
        }
        if let Some(v) = &email
            && taken(tx, org, Column::Email, v, except).await?
        {
            i.error("email", "faculty with this email already exists.");
        }
        i.finish()?;
        let now = Utc::now();
        let saved = match current {
            Some(f) => {
                let mut am: faculty::ActiveModel = f.into();
                if let Some(v) = employee_id {
                    am.employee_id = Set(v);
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
                if let Some(v) = designation {
                    am.designation = Set(v);
                }
                if let Some(v) = specialization {
                    am.specialization = Set(v);
                }
                if let Some(v) = max_hours {
                    am.max_hours_per_week = Set(v as i32);
                }
                if let Some(v) = is_active {
                    am.is_active = Set(v);
                }
                if let Some(v) = dept {
                    am.department_id = Set(v);
                }
                am.updated_at = Set(now);
                am.update(tx).await?
            }
            None => {
                faculty::ActiveModel {
                    organization_id: Set(org),
                    department_id: Set(dept.unwrap_or_default()),
                    employee_id: Set(employee_id.unwrap_or_default()),
                    first_name: Set(first_name.unwrap_or_default()),
                    last_name: Set(last_name.unwrap_or_default()),
                    email: Set(email.unwrap_or_default()),
                    designation: Set(designation.unwrap_or_default()),
                    specialization: Set(specialization.unwrap_or_default()),
                    max_hours_per_week: Set(max_hours.unwrap_or_default() as i32),
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
        Ok(to_json(&saved, &depts))
    }

    async fn remove(tx: &DatabaseTransaction, row: faculty::Model) -> ApiResult<()> {
        Entity::delete_by_id(row.id).exec(tx).await?;
        Ok(())
    }
}
