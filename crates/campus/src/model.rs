//! The models Campus caches, each declared once: its name (in cache keys, the
//! outbox, the dashboard), the table that holds its rows, where the API serves
//! it, and the models its cached views embed. Every list of models (the cache's
//! dependencies, the change listener's tables, the dashboard's rows, the
//! warm-up's routes) derives from [`Model::ALL`].

use tierstamp::Dependencies;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Model {
    Department,
    Program,
    Faculty,
    Student,
    User,
    /// The organization's statistics (`/api/stats/dashboard/`): no table of
    /// its own, it embeds every other model.
    Dashboard,
}

impl Model {
    pub const ALL: [Model; 6] = [
        Model::Department,
        Model::Program,
        Model::Faculty,
        Model::Student,
        Model::User,
        Model::Dashboard,
    ];

    /// The name in cache keys, generation counters and the outbox.
    pub const fn name(self) -> &'static str {
        match self {
            Model::Department => "department",
            Model::Program => "program",
            Model::Faculty => "faculty",
            Model::Student => "student",
            Model::User => "user",
            Model::Dashboard => "dashboard",
        }
    }

    /// The table its rows live in (what a change notification names).
    pub const fn table(self) -> Option<&'static str> {
        match self {
            Model::Department => Some("departments"),
            Model::Program => Some("programs"),
            Model::Faculty => Some("faculty"),
            Model::Student => Some("students"),
            Model::User => Some("users"),
            Model::Dashboard => None,
        }
    }

    /// The collection's path in the API.
    pub const fn path(self) -> &'static str {
        match self {
            Model::Department => "/api/departments/",
            Model::Program => "/api/programs/",
            Model::Faculty => "/api/faculty/",
            Model::Student => "/api/students/",
            Model::User => "/api/users/",
            Model::Dashboard => "/api/stats/dashboard/",
        }
    }

    /// The collection's name: the last segment of its [`path`](Self::path)
    /// (what `warm-cache --model` takes and reports).
    pub fn collection(self) -> &'static str {
        let path = self.path().trim_end_matches('/');
        &path[path.rfind('/').map_or(0, |i| i + 1)..]
    }

    /// The models whose rows its cached views embed: a write to one of them
    /// reaches this model's entries too (SPEC §5.1: renaming a department
    /// changes the faculty and student lists that embed it, and the dashboard).
    pub const fn embeds(self) -> &'static [Model] {
        match self {
            Model::Department | Model::User => &[],
            Model::Program | Model::Faculty => &[Model::Department],
            Model::Student => &[Model::Department, Model::Program],
            Model::Dashboard => &[
                Model::Department,
                Model::Program,
                Model::Faculty,
                Model::Student,
                Model::User,
            ],
        }
    }

    pub fn from_name(name: &str) -> Option<Model> {
        Model::ALL.into_iter().find(|m| m.name() == name)
    }

    pub fn from_table(table: &str) -> Option<Model> {
        Model::ALL.into_iter().find(|m| m.table() == Some(table))
    }
}

impl std::fmt::Display for Model {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The cache's dependency graph, from [`Model::embeds`].
pub(crate) fn dependencies() -> Dependencies {
    Model::ALL
        .into_iter()
        .filter(|m| !m.embeds().is_empty())
        .fold(Dependencies::new(), |d, m| {
            d.model(m.name(), m.embeds().iter().map(|e| e.name()))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_tables_read_both_ways() {
        for m in Model::ALL {
            assert_eq!(Model::from_name(m.name()), Some(m));
            if let Some(t) = m.table() {
                assert_eq!(Model::from_table(t), Some(m));
            }
        }
        assert_eq!(Model::from_name("departments"), None);
        assert_eq!(Model::from_table("department"), None);
        assert_eq!(Model::Student.collection(), "students");
        assert_eq!(Model::Faculty.collection(), "faculty");
        assert_eq!(Model::Dashboard.collection(), "dashboard");
    }

    /// The table a change notification names is the one the entity maps.
    #[test]
    fn each_models_table_is_its_entitys() {
        use crate::entity::{department, faculty, program, student, user};
        use sea_orm::EntityName;
        let entities = [
            (Model::Department, department::Entity.table_name()),
            (Model::Program, program::Entity.table_name()),
            (Model::Faculty, faculty::Entity.table_name()),
            (Model::Student, student::Entity.table_name()),
            (Model::User, user::Entity.table_name()),
        ];
        for (model, table) in entities {
            assert_eq!(model.table(), Some(table), "{model}");
        }
        assert_eq!(
            Model::ALL.iter().filter(|m| m.table().is_some()).count(),
            entities.len()
        );
    }

    #[test]
    fn a_model_never_embeds_itself_or_the_dashboard() {
        for m in Model::ALL {
            assert!(!m.embeds().contains(&m), "{m:?}");
            assert!(!m.embeds().contains(&Model::Dashboard), "{m:?}");
        }
    }
}
