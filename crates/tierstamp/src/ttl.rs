//! Time-to-live policy by kind of entry.
//!
//! TTLs are a backstop, not the invalidation mechanism: generations make entries
//! invalid the moment a write commits. A TTL bounds memory and the life of entries
//! whose data changed without an invalidation (a program that bypassed the hooks on a
//! database without triggers).

use std::collections::HashMap;
use std::time::Duration;

use crate::key::Kind;

/// TTL per [`Kind`], with per-model overrides for reference data.
#[derive(Debug, Clone)]
pub struct TtlPolicy {
    list: Duration,
    detail: Duration,
    stats: Duration,
    reference: Duration,
    reference_models: Vec<String>,
    overrides: HashMap<(Kind, String), Duration>,
}

impl Default for TtlPolicy {
    /// Lists 300 s, details 3600 s, stats 60 s, reference data 86400 s.
    fn default() -> Self {
        TtlPolicy {
            list: Duration::from_secs(300),
            detail: Duration::from_secs(3600),
            stats: Duration::from_secs(60),
            reference: Duration::from_secs(86_400),
            reference_models: Vec::new(),
            overrides: HashMap::new(),
        }
    }
}

impl TtlPolicy {
    /// Sets the TTL of list (and count) entries.
    pub fn list(mut self, ttl: Duration) -> Self {
        self.list = ttl;
        self
    }
    /// Sets the TTL of detail entries.
    pub fn detail(mut self, ttl: Duration) -> Self {
        self.detail = ttl;
        self
    }
    /// Sets the TTL of stats entries.
    pub fn stats(mut self, ttl: Duration) -> Self {
        self.stats = ttl;
        self
    }
    /// Sets the TTL of every entry of a reference model.
    pub fn reference(mut self, ttl: Duration) -> Self {
        self.reference = ttl;
        self
    }
    /// Declares models whose entries (lists and details) get the reference TTL: data
    /// that changes rarely, such as departments.
    pub fn reference_models<I, S>(mut self, models: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.reference_models
            .extend(models.into_iter().map(Into::into));
        self
    }
    /// Overrides the TTL of one kind of one model.
    pub fn set(mut self, kind: Kind, model: &str, ttl: Duration) -> Self {
        self.overrides.insert((kind, model.to_owned()), ttl);
        self
    }

    /// The TTL of an entry of `kind` for `model`.
    pub fn ttl(&self, kind: Kind, model: &str) -> Duration {
        if let Some(ttl) = self.overrides.get(&(kind, model.to_owned())) {
            return *ttl;
        }
        if kind != Kind::Stats && self.reference_models.iter().any(|m| m == model) {
            return self.reference;
        }
        match kind {
            Kind::List | Kind::Count => self.list,
            Kind::Detail => self.detail,
            Kind::Stats => self.stats,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_follow_the_spec_tiers() {
        let p = TtlPolicy::default().reference_models(["department"]);
        assert_eq!(p.ttl(Kind::List, "faculty"), Duration::from_secs(300));
        assert_eq!(p.ttl(Kind::Count, "faculty"), Duration::from_secs(300));
        assert_eq!(p.ttl(Kind::Detail, "faculty"), Duration::from_secs(3600));
        assert_eq!(p.ttl(Kind::Stats, "dashboard"), Duration::from_secs(60));
        assert_eq!(p.ttl(Kind::List, "department"), Duration::from_secs(86_400));
        assert_eq!(
            p.ttl(Kind::Detail, "department"),
            Duration::from_secs(86_400)
        );
    }

    #[test]
    fn overrides_win() {
        let p = TtlPolicy::default().list(Duration::from_secs(5)).set(
            Kind::Detail,
            "student",
            Duration::from_secs(7),
        );
        assert_eq!(p.ttl(Kind::List, "x"), Duration::from_secs(5));
        assert_eq!(p.ttl(Kind::Detail, "student"), Duration::from_secs(7));
        assert_eq!(p.ttl(Kind::Detail, "faculty"), Duration::from_secs(3600));
    }
}
