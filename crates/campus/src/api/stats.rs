//! `/api/stats/dashboard/`: totals and per-department counts of the caller's
//! organization, cached in the stats tier (60 s) and invalidated by a write to any
//! model it counts.

use std::collections::HashMap;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use sea_orm::{
    ColumnTrait, DatabaseConnection, EntityTrait, PaginatorTrait, QueryFilter, QuerySelect,
};
use serde_json::json;
use tierstamp::Kind;
use tierstamp_axum::CachedResponse;

use super::departments;
use crate::auth::Claimed;
use crate::entity::{faculty, program, student, user};
use crate::error::ApiResult;
use crate::fields::{Field, Type};
use crate::model::Model;
use crate::state::AppState;

const fn count(name: &'static str) -> Field {
    Field::read_only(name, Type::Count)
}

/// The body's `totals` (what the OpenAPI document describes).
pub(crate) const TOTALS: [Field; 7] = [
    count("departments"),
    count("programs"),
    count("faculty"),
    count("active_faculty"),
    count("students"),
    count("active_students"),
    count("users"),
];

/// One entry of the body's `departments`.
pub(crate) const PER_DEPARTMENT: [Field; 5] = [
    departments::FIELDS[0],
    departments::FIELDS[1],
    departments::FIELDS[2],
    count("faculty"),
    count("students"),
];

async fn per_department<E, C>(
    db: &DatabaseConnection,
    org: i64,
    org_col: C,
    dept_col: C,
) -> ApiResult<HashMap<i64, i64>>
where
    E: EntityTrait<Column = C>,
    C: ColumnTrait,
{
    let rows: Vec<(i64, i64)> = E::find()
        .select_only()
        .column(dept_col)
        .column_as(dept_col.count(), "n")
        .filter(org_col.eq(org))
        .group_by(dept_col)
        .into_tuple()
        .all(db)
        .await?;
    Ok(rows.into_iter().collect())
}

async fn compute(db: &DatabaseConnection, org: i64) -> ApiResult<Bytes> {
    let depts = departments::of_org(db, org).await?;
    let fac = per_department::<faculty::Entity, _>(
        db,
        org,
        faculty::Column::OrganizationId,
        faculty::Column::DepartmentId,
    )
    .await?;
    let stu = per_department::<student::Entity, _>(
        db,
        org,
        student::Column::OrganizationId,
        student::Column::DepartmentId,
    )
    .await?;
    let programs = program::Entity::find()
        .filter(program::Column::OrganizationId.eq(org))
        .count(db)
        .await?;
    let users = user::Entity::find()
        .filter(user::Column::OrganizationId.eq(org))
        .count(db)
        .await?;
    let active_faculty = faculty::Entity::find()
        .filter(faculty::Column::OrganizationId.eq(org))
        .filter(faculty::Column::IsActive.eq(true))
        .count(db)
        .await?;
    let active_students = student::Entity::find()
        .filter(student::Column::OrganizationId.eq(org))
        .filter(student::Column::IsActive.eq(true))
        .count(db)
        .await?;
    let mut per_dept: Vec<_> = depts.values().collect();
    per_dept.sort_by_key(|d| d.id);
    let body = json!({
        "totals": {
            "departments": depts.len(),
            "programs": programs,
            "faculty": fac.values().sum::<i64>(),
            "active_faculty": active_faculty,
            "students": stu.values().sum::<i64>(),
            "active_students": active_students,
            "users": users,
        },
        "departments": per_dept.iter().map(|d| json!({
            "id": d.id, "code": d.code, "name": d.name,
            "faculty": fac.get(&d.id).copied().unwrap_or(0),
            "students": stu.get(&d.id).copied().unwrap_or(0),
        })).collect::<Vec<_>>(),
    });
    Ok(Bytes::from(
        serde_json::to_vec(&body).map_err(anyhow::Error::new)?,
    ))
}

pub(crate) async fn dashboard(
    State(st): State<AppState>,
    claimed: Claimed,
    req: axum::extract::Request,
) -> ApiResult<Response> {
    // The request, not a `HeaderMap` extractor, which would clone the headers.
    let headers = req.into_parts().0.headers;
    let key = st
        .cache
        .key(Kind::Stats, Model::Dashboard.name(), claimed.scope())
        .build()
        .map_err(anyhow::Error::new)?;
    let (db, org) = (st.db.clone(), claimed.org_id());
    let lookup = st
        .authorized_read(
            &claimed,
            &key,
            move || async move { compute(&db, org).await },
        )
        .await?;
    Ok(CachedResponse::new(lookup, &headers).into_response())
}
