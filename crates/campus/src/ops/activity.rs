//! What the cache dashboard (`/admin/cache/`) shows of this instance: look-ups
//! per organization and model, the hit rate over the last minutes, and the
//! last invalidations with their cause.
//!
//! Everything is kept per organization, so an admin sees only their own
//! tenant's traffic and writes. Look-ups are counted per thread and summed when
//! the dashboard reads them: counts shared by the worker threads would be
//! written by all of them on every cached read, moving their cache lines
//! between cores on every request.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;
use tierstamp::Status;

use crate::model::Model;

/// The models the dashboard reports (anything else counts as `other`).
const MODELS: [Model; 6] = Model::ALL;

/// Seconds per point of the hit-rate plot, and how many points are kept
/// (10 minutes).
pub(crate) const BUCKET_SECONDS: u64 = 5;
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

/// One organization's look-up figures on one thread.
struct OrgFigures {
    /// Per model of [`MODELS`] (and `other` last), per status.
    counts: [[u64; 4]; MODELS.len() + 1],
    /// The plot's buckets, bucket `t` in slot `t / BUCKET_SECONDS % BUCKETS`.
    slots: [Slot; BUCKETS],
}

#[derive(Default, Clone, Copy)]
struct Slot {
    t: u64,
    hits: u64,
    misses: u64,
}

impl Default for OrgFigures {
    fn default() -> Self {
        OrgFigures {
            counts: Default::default(),
            slots: [Slot::default(); BUCKETS],
        }
    }
}

impl OrgFigures {
    /// The slot of `bucket`, emptied first if it still holds an older bucket.
    fn slot(&mut self, bucket: u64) -> &mut Slot {
        let slot = &mut self.slots[(bucket / BUCKET_SECONDS) as usize % BUCKETS];
        if slot.t != bucket {
            *slot = Slot {
                t: bucket,
                ..Slot::default()
            };
        }
        slot
    }
}

type Orgs = HashMap<i64, OrgFigures, foldhash::fast::RandomState>;

#[derive(Default)]
pub struct Activity {
    /// Per thread: taken by its own thread on every look-up, and by the
    /// dashboard's reads.
    orgs: thread_local::ThreadLocal<Shard>,
    invalidations: Mutex<VecDeque<Invalidation>>,
}

/// A thread's figures behind a mutex on cache lines of its own: `ThreadLocal`
/// keeps the threads' values side by side, and two mutexes on one line would
/// be shared again (128 bytes: x86 fetches lines in adjacent pairs).
#[derive(Default)]
#[repr(align(128))]
struct Shard(Mutex<Orgs>);

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
        .position(|m| m.name() == model)
        .unwrap_or(MODELS.len())
}

/// The organization of a scope `org_N`.
pub(crate) fn org_of(scope: &tierstamp::Scope) -> Option<i64> {
    scope.name().strip_prefix("org_")?.parse().ok()
}

impl Activity {
    /// One look-up of `model` for organization `org`.
    pub fn record(&self, org: i64, model: &str, status: Status) {
        let model = model_index(model);
        let bucket = now_secs() / BUCKET_SECONDS * BUCKET_SECONDS;
        let mut orgs = self
            .orgs
            .get_or_default()
            .0
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let figures = orgs.entry(org).or_default();
        figures.counts[model][status as usize] += 1;
        let slot = figures.slot(bucket);
        match status {
            Status::Hit | Status::Stale => slot.hits += 1,
            Status::Miss => slot.misses += 1,
            Status::Bypass => {}
        }
    }

    /// A committed write's invalidation of `model` (and what embeds it).
    pub fn invalidated(&self, org: i64, model: Model, cause: String) {
        let embedded_in = MODELS
            .into_iter()
            .filter(|m| m.embeds().contains(&model))
            .map(Model::name)
            .collect();
        let at = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        let mut invalidations = self.invalidations.lock().unwrap_or_else(|e| e.into_inner());
        invalidations.push_back(Invalidation {
            at,
            org,
            model: model.name(),
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
        let mut counts = [[0u64; 4]; MODELS.len()];
        let mut points: Vec<Point> = (0..BUCKETS as u64)
            .map(|i| Point {
                t: start + i * BUCKET_SECONDS,
                hits: 0,
                misses: 0,
            })
            .collect();
        for orgs in self.orgs.iter() {
            let orgs = orgs.0.lock().unwrap_or_else(|e| e.into_inner());
            let Some(figures) = orgs.get(&org) else {
                continue;
            };
            for (sum, c) in counts.iter_mut().zip(&figures.counts) {
                for (s, c) in sum.iter_mut().zip(c) {
                    *s += c;
                }
            }
            for p in &mut points {
                let slot = &figures.slots[(p.t / BUCKET_SECONDS) as usize % BUCKETS];
                if slot.t == p.t {
                    p.hits += slot.hits;
                    p.misses += slot.misses;
                }
            }
        }
        let counts = MODELS
            .iter()
            .zip(counts)
            .map(|(m, [hit, miss, stale, bypass])| {
                (
                    m.name(),
                    Counts {
                        hit,
                        miss,
                        stale,
                        bypass,
                    },
                )
            })
            .collect();
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
        a.invalidated(
            1,
            Model::Department,
            "update department #3 by user 1".into(),
        );
        a.invalidated(2, Model::Student, "delete student #9 by user 5".into());
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
        let mut f = OrgFigures::default();
        let t = 1_000_000 / BUCKET_SECONDS * BUCKET_SECONDS;
        f.slot(t).hits += 3;
        assert_eq!(f.slot(t).hits, 3);
        let later = t + BUCKET_SECONDS * BUCKETS as u64;
        let slot = f.slot(later);
        assert_eq!((slot.t, slot.hits), (later, 0));
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
