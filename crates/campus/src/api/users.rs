//! `/api/users/`: the organization's accounts. Only admins write them; a password
//! is write-only (hashed with argon2, never returned). Any write invalidates the
//! `user` generation, which also kills the cached auth records: a deactivated
//! user or a changed role takes effect on the next request.

use chrono::Utc;
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, DatabaseConnection, DatabaseTransaction,
    EntityTrait, QueryFilter,
};
use serde_json::{Map, Value, json};

use crate::auth::Role;
use crate::entity::user::{self, Column, Entity};
use crate::error::{ApiError, ApiResult};
use crate::input::Input;
use crate::listing::{FilterKind, FilterValue, ListQuery};
use crate::query;
use crate::resource::Resource;

pub struct Users;

pub fn to_json(u: &user::Model) -> Value {
    json!({
        "id": u.id, "username": u.username, "email": u.email, "first_name": u.first_name,
        "last_name": u.last_name, "role": u.role, "is_active": u.is_active, "date_joined": u.date_joined,
    })
}

pub async fn find(
    db: &impl sea_orm::ConnectionTrait,
    org: i64,
    id: i64,
) -> ApiResult<Option<user::Model>> {
    query::find_in_org::<Entity>(db, Column::OrganizationId, org, Column::Id, id).await
}

impl Resource for Users {
    const MODEL: &'static str = "user";
    const FILTERS: &'static [(&'static str, FilterKind)] =
        &[("role", FilterKind::Text), ("is_active", FilterKind::Bool)];
    const ORDERING: &'static [&'static str] = &[
        "id",
        "username",
        "email",
        "first_name",
        "last_name",
        "role",
        "date_joined",
    ];
    type Row = user::Model;

    async fn list(
        db: &DatabaseConnection,
        org: i64,
        q: &ListQuery,
    ) -> ApiResult<(u64, Vec<Value>)> {
        let mut select = Entity::find().filter(Column::OrganizationId.eq(org));
        if let Some(FilterValue::Text(r)) = q.filter("role") {
            select = select.filter(Column::Role.eq(r.as_str()));
        }
        if let Some(FilterValue::Bool(b)) = q.filter("is_active") {
            select = select.filter(Column::IsActive.eq(*b));
        }
        let select = query::search(
            select,
            &q.search,
            &[
                Column::Username,
                Column::Email,
                Column::FirstName,
                Column::LastName,
            ],
        );
        let select = query::order(
            select,
            q,
            |f| match f {
                "username" => Some(Column::Username),
                "email" => Some(Column::Email),
                "first_name" => Some(Column::FirstName),
                "last_name" => Some(Column::LastName),
                "role" => Some(Column::Role),
                "date_joined" => Some(Column::DateJoined),
                _ => None,
            },
            Column::Id,
        );
        let (count, rows) = query::page(db, select, q, Column::Id).await?;
        Ok((count, rows.iter().map(to_json).collect()))
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
        let creating = current.is_none();
        let mut i = Input::new(input, partial);
        let username = i.string("username", 150);
        let email = i.email("email");
        let first_name = i.optional_string("first_name", 150);
        let last_name = i.optional_string("last_name", 150);
        let role = i.string("role", 20);
        let is_active = i.boolean("is_active");
        let password = if creating || input.contains_key("password") {
            Input::new(input, false)
                .string("password", 128)
                .or_else(|| {
                    i.error(
                        "password",
                        if input.contains_key("password") {
                            "This field may not be blank."
                        } else {
                            "This field is required."
                        },
                    );
                    None
                })
        } else {
            None
        };
        if let Some(p) = &password
            && p.chars().count() < 8
        {
            i.error("password", "Ensure this field has at least 8 characters.");
        }
        if let Some(r) = &role
            && Role::parse(r).is_none()
        {
            i.error("role", format!("\"{r}\" is not a valid choice."));
        }
        if let Some(u) = &username {
            if !u
                .chars()
                .all(|c| c.is_alphanumeric() || "@.+-_".contains(c))
            {
                i.error("username", "Enter a valid username. This value may contain only letters, numbers, and @/./+/-/_ characters.");
            } else {
                // Usernames are unique across organizations (one login form).
                let mut q = Entity::find().filter(Column::Username.eq(u.as_str()));
                if let Some(c) = &current {
                    q = q.filter(Column::Id.ne(c.id));
                }
                if q.one(tx).await?.is_some() {
                    i.error("username", "A user with that username already exists.");
                }
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
                    is_active: Set(is_active.unwrap_or(true)),
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
        Entity::delete_by_id(row.id).exec(tx).await?;
        Ok(())
    }
}
