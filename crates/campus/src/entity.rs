//! The sea-orm entities, one per table.
//!
//! The schema itself (constraints, indexes, foreign keys) is owned by
//! [`crate::migration`]; the entities only describe columns and the relations
//! needed for joins, so composite unique keys are not repeated here.
//!
//! ```ignore
//! use campus::entity::prelude::*;
//! use sea_orm::entity::prelude::*;
//! let cs = Department::find()
//!     .filter(department::Column::OrganizationId.eq(org_id))
//!     .filter(department::Column::Code.eq("CS"))
//!     .one(&db)
//!     .await?;
//! ```

pub mod department;
pub mod faculty;
pub mod organization;
pub mod outbox;
pub mod program;
pub mod student;
pub mod token_blacklist;
pub mod user;

pub use department::Entity as Department;
pub use faculty::Entity as Faculty;
pub use organization::Entity as Organization;
pub use program::Entity as Program;
pub use student::Entity as Student;
pub use user::Entity as User;

/// The entities under their table names and their modules (for `Column`,
/// `Model`, `ActiveModel`), as sea-orm-cli's generated prelude does; sea-orm's
/// own query traits come from `sea_orm::entity::prelude`.
pub mod prelude {
    pub use super::{
        Department, Faculty, Organization, Program, Student, User, department, faculty,
        organization, program, student, user,
    };
}
