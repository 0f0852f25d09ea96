//! `/api/users/`: the organization's accounts. Only admins write them; a password
//! is write-only (hashed with argon2, never returned). Any write invalidates the
//! `user` generation, which also kills the cached auth records: a deactivated
//! user or a changed role takes effect on the next request.

use chrono::Utc;
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, ConnectionTrait, DatabaseConnection,
    DatabaseTransaction, EntityTrait, PaginatorTrait, QueryFilter, QuerySelect,
};
use serde_json::{Map, Value, json};

use crate::auth::Caller;
use crate::entity::user::ROLES;
use crate::entity::user::{self, Column, Entity};
use crate::error::{ApiError, ApiResult};
use crate::fields::{Field, Initial, Mode, Type, Unique};
use crate::input::Input;
use crate::listing::{ListQuery, Results};
use crate::model::Model;
use crate::query::{self, Part};
use crate::resource::Resource;

pub(crate) struct Users;

const NAME: Type = Type::Text {
    max: 150,
    blank: true,
};

/// The password is write-only: required to create a user, never returned.
pub(crate) const FIELDS: [Field; 9] = [
    Field::read_only("id", Type::Id).orderable(),
    Field::required("username", Type::Username { max: 150 })
        .unique(Unique::Everywhere)
        .orderable()
        .searchable(),
    Field::required("email", Type::Email)
        .unique(Unique::Organization)
        .orderable()
        .searchable(),
    Field::optional("first_name", NAME, Initial::Blank)
        .orderable()
        .searchable(),
    Field::optional("last_name", NAME, Initial::Blank)
        .orderable()
        .searchable(),
    Field::required("role", Type::Choice(&ROLES))
        .orderable()
        .filterable(),
    Field::optional("is_active", Type::Bool, Initial::Bool(true)).filterable(),
    Field::read_only("date_joined", Type::DateTime).orderable(),
    Field::secret("password", Type::Password { min: 8, max: 128 }),
];

pub(crate) fn to_json(u: &user::Model) -> Value {
    json!({
        "id": u.id, "username": u.username, "email": u.email, "first_name": u.first_name,
        "last_name": u.last_name, "role": u.role, "is_active": u.is_active, "date_joined": u.date_joined,
    })
}

pub(crate) async fn find(
    db: &impl sea_orm::ConnectionTrait,
    org: i64,
    id: i64,
) -> ApiResult<Option<user::Model>> {
    query::find_in_org::<Entity>(db, Column::OrganizationId, org, Column::Id, id).await
}

impl Resource for Users {
    const MODEL: Model = Model::User;
    const FIELDS: &'static [Field] = &FIELDS;
    type Row = user::Model;

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

    async fn find(tx: &DatabaseTransaction, org: i64, id: i64) -> ApiResult<Option<user::Model>> {
        find(tx, org, id).await
    }

    async fn save(
        tx: &DatabaseTransaction,
        org: i64,
        current: Option<user::Model>,
        input: &Map<String, Value>,
        partial: bool,
    ) -> ApiResult<Value> {
        let mut i = Input::new(input, &FIELDS, Mode::of(current.is_none(), partial));
        let username = i.text("username");
        let email = i.text("email");
        let first_name = i.text("first_name");
        let last_name = i.text("last_name");
        let role = i.text("role");
        let is_active = i.boolean("is_active");
        let password = i.text("password");
        if let Some(u) = &username {
            // Usernames are unique across organizations (one login form).
            let mut q = Entity::find().filter(Column::Username.eq(u.as_str()));
            if let Some(c) = &current {
                q = q.filter(Column::Id.ne(c.id));
            }
            if q.one(tx).await?.is_some() {
                i.error("username", "A user with that username already exists.");
            }
        }
        if let Some(e) = &email {
            let mut q = Entity::find()
                .filter(Column::OrganizationId.eq(org))
                .filter(Column::Email.eq(e.as_str()));
            if let Some(c) = &current {
                q = q.filter(Column::Id.ne(c.id));
            }
            if q.one(tx).await?.is_some() {
                i.error("email", "user with this email already exists.");
            }
        }
        i.finish()?;
        if let Some(u) = &current {
            let stays = is_active.unwrap_or(u.is_active)
                && role.as_deref().unwrap_or(u.role.as_str()) == "admin";
            keeps_an_admin(tx, u, stays).await?;
        }
        let hash = match password {
            Some(p) => Some(
                tokio::task::spawn_blocking(move || crate::password::hash(&p))
                    .await
                    .map_err(anyhow::Error::new)??,
            ),
            None => None,
        };
        let saved = match current {
            Some(u) => {
                // What revokes the user's tokens: a new password, a
                // deactivation, another role.
                let revoke = hash.is_some()
                    || is_active.is_some_and(|a| !a && u.is_active)
                    || role.as_deref().is_some_and(|r| r != u.role);
                let current_version = u.token_version;
                let mut am: user::ActiveModel = u.into();
                if let Some(v) = username {
                    am.username = Set(v);
                }
                if let Some(v) = email {
                    am.email = Set(v);
                }
                if let Some(v) = first_name {
                    am.first_name = Set(v);
                }
                if let Some(v) = last_name {
                    am.last_name = Set(v);
                }
                if let Some(v) = role {
                    am.role = Set(v);
                }
                if let Some(v) = is_active {
                    am.is_active = Set(v);
                }
                if revoke {
                    am.token_version = Set(current_version + 1);
                }
                if let Some(v) = hash {
                    am.password_hash = Set(v);
                }
                am.update(tx).await?
            }
            None => {
                user::ActiveModel {
                    organization_id: Set(org),
                    username: Set(username.unwrap_or_default()),
                    email: Set(email.unwrap_or_default()),
                    first_name: Set(first_name.unwrap_or_default()),
                    last_name: Set(last_name.unwrap_or_default()),
                    role: Set(role.unwrap_or_default()),
                    is_active: Set(is_active.unwrap_or_default()),
                    password_hash: Set(
                        hash.ok_or_else(|| ApiError::field("password", "This field is required."))?
                    ),
                    date_joined: Set(Utc::now()),
                    ..Default::default()
                }
                .insert(tx)
                .await?
            }
        };
        Ok(to_json(&saved))
    }

    async fn remove(tx: &DatabaseTransaction, row: user::Model) -> ApiResult<()> {
        keeps_an_admin(tx, &row, false).await?;
        Entity::delete_by_id(row.id).exec(tx).await?;
        Ok(())
    }

    fn guard(caller: &Caller, id: i64, input: Option<&Map<String, Value>>) -> ApiResult<()> {
        if id != caller.user_id {
            return Ok(());
        }
        let refused = match input {
            None => true,
            Some(i) => {
                i.get("is_active") == Some(&Value::Bool(false))
                    // An unknown role is the validation's to refuse (400).
                    || i
                        .get("role")
                        .and_then(Value::as_str)
                        .is_some_and(|r| r != "admin" && ROLES.contains(&r))
            }
        };
        if refused {
            return Err(ApiError::ForbiddenBecause(
                "You cannot delete, deactivate or demote yourself.",
            ));
        }
        Ok(())
    }
}

/// Refuses to leave an organization without an active admin: `row` is being
/// deleted (`stays` false) or changed into `stays` = whether it is still an
/// active admin afterwards. On PostgreSQL the organization's row is locked
/// first, so two admins demoting each other at once are serialised (SQLite
/// runs one write transaction at a time anyway).
async fn keeps_an_admin(tx: &DatabaseTransaction, row: &user::Model, stays: bool) -> ApiResult<()> {
    if stays || !(row.is_active && row.role == "admin") {
        return Ok(());
    }
    if tx.get_database_backend() == sea_orm::DatabaseBackend::Postgres {
        crate::entity::organization::Entity::find_by_id(row.organization_id)
            .lock_exclusive()
            .one(tx)
            .await?;
    }
    let others = Entity::find()
        .filter(Column::OrganizationId.eq(row.organization_id))
        .filter(Column::Role.eq("admin"))
        .filter(Column::IsActive.eq(true))
        .filter(Column::Id.ne(row.id))
        .count(tx)
        .await?;
    if others == 0 {
        return Err(ApiError::BadRequest(
            "An organization must keep at least one active admin.".into(),
        ));
    }
    Ok(())
}
