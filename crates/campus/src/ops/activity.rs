//! What the cache dashboard (`/admin/cache/`) shows of this instance: look-ups
//! per organization and model, the hit rate over the last minutes, and the
//! last invalidations with their cause.
//!
//! Everything is kept per organization, so an admin sees only their own
//! tenant's traffic and writes. One mutex guards it all: a look-up holds it
//! for a few map operations, far below the cost of the look-up itself.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;
use tiercache::Status;

/// The models the dashboard reports (anything else counts as `other`).
pub const MODELS: [&str; 6] = [
    "department",
    "program",
    "faculty",
    "student",
    "user",
    "dashboard",
];

/// Seconds per point of the hit-rate plot, and how many points are kept
/// (10 minutes).
pub const BUCKET_SECONDS: u64 = 5;
const BUCKETS: usize = 120;
const INVALIDATIONS: usize = 200;

#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq, Eq)]
pub struct Counts {
    pub hit: u64,
    pub miss: u64,
    pub stale: u64,
    pub bypass: u64,
}

#[derive(Debug, Clone, Copy, Serialize)]
pub struct Point {
    /// Start of the bucket, Unix seconds.
    pub t: u64,
    pub hits: u64,
    pub misses: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Invalidation {
    /// Unix milliseconds.
    pub at: u64,
    #[serde(skip)]
    pub org: i64,
    pub model: &'static str,
    /// The models whose cached views embed it and died with it.
    pub embedded_in: Vec<&'static str>,
    pub cause: String,
}

#[derive(Default)]
struct Inner {
    counts: HashMap<(i64, &'static str), Counts, foldhash::fast::RandomState>,
    series: HashMap<i64, VecDeque<Point>, foldhash::fast::RandomState>,
    invalidations: VecDeque<Invalidation>,
}

#[derive(Default)]
pub struct Activity {
    inner: Mutex<Inner>,
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn model_name(model: &str) -> &'static str {
    MODELS
        .iter()
        .copied()
        .find(|m| *m == model)
        .unwrap_or("other")
}

/// The organization of a scope `org_N`.
pub fn org_of(scope: &tiercache::Scope) -> Option<i64> {
    scope.name().strip_prefix("org_")?.parse().ok()
}

impl Activity {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// One look-up of `model` for organization `org`.
    pub fn record(&self, org: i64, model: &str, status: Status) {
        let model = model_name(model);
        let bucket = now_secs() / BUCKET_SECONDS * BUCKET_SECONDS;
        let mut inner = self.lock();
        let c = inner.counts.entry((org, model)).or_default();
        match status {
            Status::Hit => c.hit += 1,
            Status::Miss => c.miss += 1,
            Status::Stale => c.stale += 1,
            Status::Bypass => c.bypass += 1,
        }
        let series = inner.series.entry(org).or_default();
        if series.back().map(|p| p.t) != Some(bucket) {
            series.push_back(Point {
                t: bucket,
                hits: 0,
                misses: 0,
            });
            if series.len() > BUCKETS {
                series.pop_front();
            }
        }
        let point = series.back_mut().expect("just pushed");
        match status {
            Status::Hit | Status::Stale => point.hits += 1,
            Status::Miss => point.misses += 1,
            Status::Bypass => {}
        }
    }

    /// A committed write's invalidation of `model` (and what embeds it).
    pub fn invalidated(&self, org: i64, model: &str, cause: String) {
        let deps = crate::state::dependencies();
        let model = model_name(model);
        let embedded_in = MODELS
            .iter()
            .copied()
            .filter(|m| *m != model && deps.of(m).contains(&model))
            .collect();
        let at = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        let mut inner = self.lock();
        inner.invalidations.push_back(Invalidation {
            at,
            org,
            model,
            embedded_in,
            cause,
        });
        if inner.invalidations.len() > INVALIDATIONS {
            inner.invalidations.pop_front();
        }
    }

    /// Organization `org`'s figures: counts per model, the plot's points (oldest
    /// first, empty buckets filled with zeros), the last 20 invalidations
    /// (newest first).
    pub fn of_org(&self, org: i64) -> (Vec<(&'static str, Counts)>, Vec<Point>, Vec<Invalidation>) {
        let inner = self.lock();
        let counts = MODELS
            .iter()
            .map(|m| {
                (
                    *m,
                    inner.counts.get(&(org, *m)).copied().unwrap_or_default(),
                )
            })
            .collect();
        let now = now_secs() / BUCKET_SECONDS * BUCKET_SECONDS;
        let start = now.saturating_sub(BUCKET_SECONDS * (BUCKETS as u64 - 1));
        let recorded = inner.series.get(&org);
        let points = (0..BUCKETS as u64)
            .map(|i| start + i * BUCKET_SECONDS)
            .map(|t| {
                recorded
                    .and_then(|s| s.iter().find(|p| p.t == t).copied())
                    .unwrap_or(Point {
                        t,
                        hits: 0,
                        misses: 0,
                    })
            })
            .collect();
        let invalidations = inner
            .invalidations
            .iter()
            .rev()
            .filter(|i| i.org == org)
            .take(20)
            .cloned()
            .collect();
        (counts, points, invalidations)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn figures_are_kept_per_organization() {
        let a = Activity::default();
        a.record(1, "faculty", Status::Hit);
        a.record(1, "faculty", Status::Miss);
        a.record(2, "faculty", Status::Hit);
        a.invalidated(1, "department", "update department #3 by user 1".into());
        a.invalidated(2, "student", "delete student #9 by user 5".into());
        let (counts, points, invalidations) = a.of_org(1);
        let faculty = counts.iter().find(|(m, _)| *m == "faculty").unwrap().1;
        assert_eq!((faculty.hit, faculty.miss), (1, 1));
        assert_eq!(points.len(), BUCKETS);
        let last = points.last().unwrap();
        assert_eq!((last.hits, last.misses), (1, 1));
        assert_eq!(invalidations.len(), 1);
        assert_eq!(invalidations[0].model, "department");
        assert_eq!(
            invalidations[0].embedded_in,
            vec!["program", "faculty", "student", "dashboard"]
        );
    }
}
