//! Which models an entry depends on.
//!
//! Invalidation is by generation counter per (model, scope): a write bumps the
//! counter of the model it changed, O(1), and never enumerates entries. An entry
//! records the counters of every model it was computed from, so bumping
//! `department` kills the faculty lists that embed department names as well. The
//! dependency graph is declared once, here, instead of at every write site.

use crate::hash::FastMap;

/// Declared dependencies: `faculty` entries are computed from `faculty` and
/// `department` rows, and so on.
///
/// ```
/// use tierstamp::Dependencies;
/// let deps = Dependencies::new()
///     .model("faculty", ["department"])
///     .model("dashboard", ["department", "faculty", "student"]);
/// assert_eq!(deps.of("faculty"), ["faculty", "department"]);
/// assert_eq!(deps.of("user"), ["user"]);
/// ```
#[derive(Debug, Clone, Default)]
pub struct Dependencies {
    map: FastMap<String, Vec<String>>,
}

impl Dependencies {
    /// No dependencies: every model depends on itself only.
    pub fn new() -> Self {
        Self::default()
    }

    /// Declares that entries of `model` are computed from `depends_on` too.
    pub fn model<I, S>(mut self, model: &str, depends_on: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let list = self.map.entry(model.to_owned()).or_default();
        for d in depends_on {
            let d = d.into();
            if d != model && !list.contains(&d) {
                list.push(d);
            }
        }
        self
    }

    /// The models an entry of `model` depends on: itself first, then the declared
    /// ones in declaration order.
    pub fn of<'a>(&'a self, model: &'a str) -> Vec<&'a str> {
        self.each(model).collect()
    }

    /// [`of`](Self::of) without collecting: keys are built on every request.
    pub(crate) fn each<'a>(&'a self, model: &'a str) -> impl Iterator<Item = &'a str> {
        let declared = self.map.get(model).map(Vec::as_slice).unwrap_or_default();
        std::iter::once(model).chain(declared.iter().map(String::as_str))
    }
}
