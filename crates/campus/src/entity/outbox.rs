//! `cache_outbox`: invalidations of committed API writes not yet known to have
//! reached the cache ([`crate::outbox`]).

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "cache_outbox")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    /// A cache model name (`faculty`, `department`, …).
    pub model: String,
    pub organization_id: i64,
    /// When the write began, in ms since the Unix epoch (the writer's clock).
    pub created_at_ms: i64,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
