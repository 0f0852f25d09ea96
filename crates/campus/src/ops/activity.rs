//! What the cache dashboard (`/admin/cache/`) shows of this instance: look-ups
//! per organization and model, the hit rate over the last minutes, and the
//! last invalidations with their cause.
//!
//! Everything is kept per organization, so an admin sees only their own
//! tenant's traffic and writes. A look-up increments two atomics of its
//! organization under a shared read lock.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, RwLock};
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

/// One organization's look-up figures, counted with atomics: every cached read
/// records one or two look-ups, and one mutex for all of them (the first
/// version) was contended by every worker thread on every request.
struct OrgFigures {
    /// Per model of [`MODELS`] (and `other` last), per status.
    counts: [[AtomicU64; 4]; MODELS.len() + 1],
    /// The plot's buckets, bucket `t` in slot `t / BUCKET_SECONDS % BUCKETS`.
    slots: [Slot; BUCKETS],
    /// Taken only to move a slot on to a new bucket.
    roll: Mutex<()>,
}

#[derive(Default)]
struct Slot {
    t: AtomicU64,
    hits: AtomicU64,
    misses: AtomicU64,
}

impl Default for OrgFigures {
    fn default() -> Self {
        OrgFigures {
            counts: Default::default(),
            slots: std::array::from_fn(|_| Slot::default()),
            roll: Mutex::new(()),
        }
    }
}

impl OrgFigures {
    /// The slot of `bucket`, emptied first if it still holds an older bucket.
    /// A look-up racing with the move may be counted in the new bucket instead
    /// of the one before it: a plot point, not a ledger.
    fn slot(&self, bucket: u64) -> &Slot {
        let slot = &self.slots[(bucket / BUCKET_SECONDS) as usize % BUCKETS];
        if slot.t.load(Ordering::Acquire) != bucket {
            let _roll = self.roll.lock().unwrap_or_else(|e| e.into_inner());
            if slot.t.load(Ordering::Acquire) != bucket {
                slot.hits.store(0, Ordering::Relaxed);
                slot.misses.store(0, Ordering::Relaxed);
                slot.t.store(bucket, Ordering::Release);
            }
        }
        slot
    }
}

type Orgs = HashMap<i64, OrgFigures, foldhash::fast::RandomState>;

#[derive(Default)]
pub struct Activity {
    orgs: RwLock<Orgs>,
    invalidations: Mutex<VecDeque<Invalidation>>,
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The index of a model in [`MODELS`], `MODELS.len()` for any other.
fn model_index(model: &str) -> usize {
    MODELS
        .iter()
        .position(|m| *m == model)
        .unwrap_or(MODELS.len())
}

fn model_name(model: &str) -> &'static str {
    MODELS.get(model_index(model)).copied().unwrap_or("other")
}

/// The organization of a scope `org_N`.
pub fn org_of(scope: &tiercache::Scope) -> Option<i64> {
    scope.name().strip_prefix("org_")?.parse().ok()
}

impl Activity {
    fn orgs(&self) -> std::sync::RwLockReadGuard<'_, Orgs> {
        self.orgs.read().unwrap_or_else(|e| e.into_inner())
    }

    /// One look-up of `model` for organization `org`.
    pub fn record(&self, org: i64, model: &str, status: Status) {
        let model = model_index(model);
        let bucket = now_secs() / BUCKET_SECONDS * BUCKET_SECONDS;
        let orgs = self.orgs();
        let orgs = match orgs.get(&org) {
            Some(_) => orgs,
            None => {
                drop(orgs);
                self.orgs
                    .write()
                    .unwrap_or_else(|e| e.into_inner())
                    .entry(org)
                    .or_default();
                self.orgs()
            }
        };
        let figures = &orgs[&org];
        let column = match status {
            Status::Hit => 0,
            Status::Miss => 1,
            Status::Stale => 2,
            Status::Bypass => 3,
        };
        figures.counts[model][column].fetch_add(1, Ordering::Relaxed);
        let slot = figures.slot(bucket);
        match status {
            Status::Hit | Status::Stale => slot.hits.fetch_add(1, Ordering::Relaxed),
            Status::Miss => slot.misses.fetch_add(1, Ordering::Relaxed),
            Status::Bypass => 0,
        };
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
        let mut invalidations = self.invalidations.lock().unwrap_or_else(|e| e.into_inner());
        invalidations.push_back(Invalidation {
            at,
            org,
            model,
            embedded_in,
            cause,
        });
        if invalidations.len() > INVALIDATIONS {
            invalidations.pop_front();
        }
    }

    /// Organization `org`'s figures: counts per model, the plot's points (oldest
    /// first, empty buckets filled with zeros), the last 20 invalidations
    /// (newest first).
    pub fn of_org(&self, org: i64) -> (Vec<(&'static str, Counts)>, Vec<Point>, Vec<Invalidation>) {
        let now = now_secs() / BUCKET_SECONDS * BUCKET_SECONDS;
        let start = now.saturating_sub(BUCKET_SECONDS * (BUCKETS as u64 - 1));
        let (counts, points) = {
            let orgs = self.orgs();
            let figures = orgs.get(&org);
            let counts = MODELS
                .iter()
                .enumerate()
                .map(|(i, m)| {
                    let c = figures.map_or([0; 4], |f| {
                        f.counts[i].each_ref().map(|a| a.load(Ordering::Relaxed))
                    });
                    let [hit, miss, stale, bypass] = c;
                    (
                        *m,
                        Counts {
                            hit,
                            miss,
                            stale,
                            bypass,
                        },
                    )
                })
                .collect();
            let points = (0..BUCKETS as u64)
                .map(|i| start + i * BUCKET_SECONDS)
                .map(|t| {
                    let slot = figures
                        .map(|f| &f.slots[(t / BUCKET_SECONDS) as usize % BUCKETS])
                        .filter(|s| s.t.load(Ordering::Acquire) == t);
                    Point {
                        t,
                        hits: slot.map_or(0, |s| s.hits.load(Ordering::Relaxed)),
                        misses: slot.map_or(0, |s| s.misses.load(Ordering::Relaxed)),
                    }
                })
                .collect();
            (counts, points)
        };
        let invalidations = self
            .invalidations
            .lock()
            .unwrap_or_else(|e| e.into_inner())
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

    #[test]
    fn a_slot_reused_ten_minutes_later_starts_from_zero() {
        let f = OrgFigures::default();
        let t = 1_000_000 / BUCKET_SECONDS * BUCKET_SECONDS;
        f.slot(t).hits.fetch_add(3, Ordering::Relaxed);
        assert_eq!(f.slot(t).hits.load(Ordering::Relaxed), 3);
        let later = t + BUCKET_SECONDS * BUCKETS as u64;
        let slot = f.slot(later);
        assert!(std::ptr::eq(
            slot,
            f.slot(t + BUCKET_SECONDS * BUCKETS as u64)
        ));
        assert_eq!(slot.t.load(Ordering::Relaxed), later);
        assert_eq!(slot.hits.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn concurrent_look_ups_are_all_counted() {
        let a = std::sync::Arc::new(Activity::default());
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let a = a.clone();
                std::thread::spawn(move || {
                    for _ in 0..10_000 {
                        a.record(1, "student", Status::Hit);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let (counts, _, _) = a.of_org(1);
        let student = counts.iter().find(|(m, _)| *m == "student").unwrap().1;
        assert_eq!(student.hit, 40_000);
    }
}
