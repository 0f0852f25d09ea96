//! `/api/departments/`: reference data (24 h TTL tier), embedded by programs,
//! faculty, students and the dashboard.

use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, DatabaseConnection, DatabaseTransaction,
    EntityTrait, QueryFilter,
};
use serde_json::{Map, Value, json};

use crate::entity::department::{self, Column, Entity};
use crate::error::{ApiError, ApiResult};
use crate::fields::{Field, Mode, Type, Unique};
use crate::input::Input;
use crate::listing::{ListQuery, Results};
use crate::model::Model;
use crate::query::{self, Part};
use crate::resource::Resource;

pub(crate) struct Departments;

/// `{id, code, name}`: also how programs, faculty and students embed a department.
pub(crate) const FIELDS: [Field; 3] = [
    Field::read_only("id", Type::Id).orderable(),
    Field::required("code", Type::Code { max: 20 })
        .unique(Unique::Organization)
        .orderable()
        .searchable(),
    Field::required(
        "name",
        Type::Text {
            max: 120,
            blank: false,
        },
    )
    .orderable()
    .searchable(),
];

/// A department as the API shows it ([`FIELDS`]), embedded or not.
#[derive(serde::Serialize)]
pub(crate) struct Shown<'a> {
    id: i64,
    code: &'a str,
    name: &'a str,
}

impl<'a> From<&'a department::Model> for Shown<'a> {
    fn from(d: &'a department::Model) -> Self {
        Shown {
            id: d.id,
            code: &d.code,
            name: &d.name,
        }
    }
}

pub(crate) fn to_json(d: &department::Model) -> Value {
    json!(Shown::from(d))
}

async fn find(
    db: &impl sea_orm::ConnectionTrait,
    org: i64,
    id: i64,
) -> ApiResult<Option<department::Model>> {
    query::find_in_org::<Entity>(db, Column::OrganizationId, org, Column::Id, id).await
}

async fn code_taken(
    tx: &DatabaseTransaction,
    org: i64,
    code: &str,
    except: Option<i64>,
) -> ApiResult<bool> {
    query::taken::<Entity>(
        tx,
        (Column::OrganizationId, org),
        (Column::Code, code),
        (Column::Id, except),
    )
    .await
}

impl Resource for Departments {
    const MODEL: Model = Model::Department;
    const FIELDS: &'static [Field] = &FIELDS;
    type Row = department::Model;

    async fn list(
        db: &DatabaseConnection,
        org: i64,
        q: &ListQuery,
        part: Part,
    ) -> ApiResult<(u64, Results)> {
        let select = Entity::find().filter(Column::OrganizationId.eq(org));
        let select = query::filter_columns(select, q, Self::FIELDS);
        let select = query::search_fields(select, &q.search, &Self::search());
        if part != Part::Rows {
            return query::unrendered(db, org, select, q, Column::Id, part).await;
        }
        let (count, rows) = query::page(db, select, q, Column::Id, part).await?;
        Ok((count, Results::of(rows.iter().map(to_json))?))
    }

    async fn retrieve(db: &DatabaseConnection, org: i64, id: i64) -> ApiResult<Option<Value>> {
        Ok(find(db, org, id).await?.as_ref().map(to_json))
    }

    async fn find(
        tx: &DatabaseTransaction,
        org: i64,
        id: i64,
    ) -> ApiResult<Option<department::Model>> {
        find(tx, org, id).await
    }

    async fn save(
        tx: &DatabaseTransaction,
        org: i64,
        current: Option<department::Model>,
        input: &Map<String, Value>,
        partial: bool,
    ) -> ApiResult<Value> {
        let mut i = Input::new(input, &FIELDS, Mode::of(current.is_none(), partial));
        let code = i.text("code");
        let name = i.text("name");
        if let Some(c) = &code
            && code_taken(tx, org, c, current.as_ref().map(|d| d.id)).await?
        {
            i.error("code", "department with this code already exists.");
        }
        i.finish()?;
        let saved = match current {
            Some(d) => {
                let mut am: department::ActiveModel = d.into();
                if let Some(c) = code {
                    am.code = Set(c);
                }
                if let Some(n) = name {
                    am.name = Set(n);
                }
                am.update(tx).await?
            }
            None => {
                department::ActiveModel {
                    organization_id: Set(org),
                    code: Set(code.unwrap_or_default()),
                    name: Set(name.unwrap_or_default()),
                    ..Default::default()
                }
                .insert(tx)
                .await?
            }
        };
        Ok(to_json(&saved))
    }

    async fn remove(tx: &DatabaseTransaction, row: department::Model) -> ApiResult<()> {
        Entity::delete_by_id(row.id).exec(tx).await.map_err(|e| match ApiError::from(e) {
            ApiError::Conflict(_) => ApiError::Conflict(
                "Cannot delete this department: programs, faculty or students still refer to it.".into(),
            ),
            other => other,
        })?;
        Ok(())
    }
}

/// Every department of an organization by id (a few dozen rows): what lists that
/// embed departments join against, and how a `department` code filter resolves.
pub(crate) async fn of_org(
    db: &impl sea_orm::ConnectionTrait,
    org: i64,
) -> ApiResult<std::collections::HashMap<i64, department::Model>> {
    let rows = Entity::find()
        .filter(Column::OrganizationId.eq(org))
        .all(db)
        .await?;
    Ok(rows.into_iter().map(|d| (d.id, d)).collect())
}

/// Checks that `id` names a department of `org` (another tenant's is "missing").
pub(crate) async fn exists(
    db: &impl sea_orm::ConnectionTrait,
    org: i64,
    id: i64,
) -> ApiResult<bool> {
    Ok(find(db, org, id).await?.is_some())
}

/// Department `id` as a row embeds it (`null` if it is not in `map`).
pub(crate) fn nested(
    map: &std::collections::HashMap<i64, department::Model>,
    id: i64,
) -> Option<Shown<'_>> {
    map.get(&id).map(Shown::from)
}

impl query::Coded for Entity {
    const ORGANIZATION: Column = Column::OrganizationId;
    const CODE: Column = Column::Code;
    const ID: Column = Column::Id;
}
