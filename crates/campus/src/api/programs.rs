//! `/api/programs/`: reference data, each program in one department.

use std::collections::HashMap;

use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, DatabaseConnection, DatabaseTransaction,
    EntityTrait, QueryFilter,
};
use serde_json::{Map, Value, json};

use super::departments;
use crate::entity::department;
use crate::entity::program::{self, Column, Entity};
use crate::error::{ApiError, ApiResult};
use crate::fields::{Field, Mode, Type, Unique};
use crate::input::{Input, missing_pk};
use crate::listing::{FilterValue, ListQuery, Results};
use crate::model::Model;
use crate::query::{self, Part};
use crate::resource::Resource;

pub(crate) struct Programs;

pub(crate) const FIELDS: [Field; 5] = [
    Field::read_only("id", Type::Id).orderable(),
    Field::required("code", Type::Code { max: 20 })
        .unique(Unique::Organization)
        .orderable()
        .searchable(),
    Field::required(
        "name",
        Type::Text {
            max: 160,
            blank: false,
        },
    )
    .orderable()
    .searchable(),
    Field::required("duration_years", Type::Int { min: 1, max: 10 }).orderable(),
    Field::required(
        "department",
        Type::Related {
            fields: &departments::FIELDS,
        },
    )
    .filterable(),
];

/// `{id, code, name}`: how students embed a program ([`nested`]).
pub(crate) const EMBEDDED: [Field; 3] = [FIELDS[0], FIELDS[1], FIELDS[2]];

fn to_json(p: &program::Model, depts: &HashMap<i64, department::Model>) -> Value {
    json!({
        "id": p.id, "code": p.code, "name": p.name, "duration_years": p.duration_years,
        "department": departments::nested(depts, p.department_id),
    })
}

/// `{id, code, name}` of a program ([`EMBEDDED`]), as students embed it.
#[derive(serde::Serialize)]
pub(crate) struct Nested<'a> {
    id: i64,
    code: &'a str,
    name: &'a str,
}

/// Program `id` as a student embeds it (`null` if it is not in `map`).
pub(crate) fn nested(map: &HashMap<i64, program::Model>, id: i64) -> Option<Nested<'_>> {
    map.get(&id).map(|p| Nested {
        id: p.id,
        code: &p.code,
        name: &p.name,
    })
}

pub(crate) async fn of_org(
    db: &impl sea_orm::ConnectionTrait,
    org: i64,
) -> ApiResult<HashMap<i64, program::Model>> {
    let rows = Entity::find()
        .filter(Column::OrganizationId.eq(org))
        .all(db)
        .await?;
    Ok(rows.into_iter().map(|p| (p.id, p)).collect())
}

async fn find(
    db: &impl sea_orm::ConnectionTrait,
    org: i64,
    id: i64,
) -> ApiResult<Option<program::Model>> {
    query::find_in_org::<Entity>(db, Column::OrganizationId, org, Column::Id, id).await
}

impl Resource for Programs {
    const MODEL: Model = Model::Program;
    const FIELDS: &'static [Field] = &FIELDS;
    type Row = program::Model;

    async fn list(
        db: &DatabaseConnection,
        org: i64,
        q: &ListQuery,
        part: Part,
    ) -> ApiResult<(u64, Results)> {
        let mut select = Entity::find().filter(Column::OrganizationId.eq(org));
        if let Some(FilterValue::Text(code)) = q.filter("department") {
            // An unknown code matches nothing (exact filter), like django-filter.
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
        Ok((count, Results::of(rows.iter().map(|p| to_json(p, &depts)))?))
    }

    async fn retrieve(db: &DatabaseConnection, org: i64, id: i64) -> ApiResult<Option<Value>> {
        let Some(p) = find(db, org, id).await? else {
            return Ok(None);
        };
        let depts = departments::of_org(db, org).await?;
        Ok(Some(to_json(&p, &depts)))
    }

    async fn find(
        tx: &DatabaseTransaction,
        org: i64,
        id: i64,
    ) -> ApiResult<Option<program::Model>> {
        find(tx, org, id).await
    }

    async fn save(
        tx: &DatabaseTransaction,
        org: i64,
        current: Option<program::Model>,
        input: &Map<String, Value>,
        partial: bool,
    ) -> ApiResult<Value> {
        let mut i = Input::new(input, &FIELDS, Mode::of(current.is_none(), partial));
        let code = i.text("code");
        let name = i.text("name");
        let years = i.int("duration_years");
        let dept = i.pk("department_id");
        if let Some(d) = dept
            && !departments::exists(tx, org, d).await?
        {
            i.error("department_id", missing_pk(d));
        }
        if let Some(c) = &code {
            let mut q = Entity::find()
                .filter(Column::OrganizationId.eq(org))
                .filter(Column::Code.eq(c.as_str()));
            if let Some(p) = &current {
                q = q.filter(Column::Id.ne(p.id));
            }
            if q.one(tx).await?.is_some() {
                i.error("code", "program with this code already exists.");
            }
        }
        i.finish()?;
        let saved = match current {
            Some(p) => {
                let mut am: program::ActiveModel = p.into();
                if let Some(v) = code {
                    am.code = Set(v);
                }
                if let Some(v) = name {
                    am.name = Set(v);
                }
                if let Some(v) = years {
                    am.duration_years = Set(v as i32);
                }
                if let Some(v) = dept {
                    am.department_id = Set(v);
                }
                am.update(tx).await?
            }
            None => {
                program::ActiveModel {
                    organization_id: Set(org),
                    department_id: Set(dept.unwrap_or_default()),
                    code: Set(code.unwrap_or_default()),
                    name: Set(name.unwrap_or_default()),
                    duration_years: Set(years.unwrap_or_default() as i32),
                    ..Default::default()
                }
                .insert(tx)
                .await?
            }
        };
        let depts = departments::of_org(tx, org).await?;
        Ok(to_json(&saved, &depts))
    }

    async fn remove(tx: &DatabaseTransaction, row: program::Model) -> ApiResult<()> {
        Entity::delete_by_id(row.id)
            .exec(tx)
            .await
            .map_err(|e| match ApiError::from(e) {
                ApiError::Conflict(_) => ApiError::Conflict(
                    "Cannot delete this program: students still refer to it.".into(),
                ),
                other => other,
            })?;
        Ok(())
    }
}

impl query::Coded for Entity {
    const ORGANIZATION: Column = Column::OrganizationId;
    const CODE: Column = Column::Code;
    const ID: Column = Column::Id;
}
