//! The history checker.
//!
//! Every tracked value carries a version: a renamed department is called
//! `Computer Science ~v3`, a created department exists (version 1) until it is
//! deleted (version 2), an organization's student count only grows. Each entity
//! has one writer, which writes in sequence, so versions are totally ordered.
//!
//! A write records when it was sent and when its 2xx arrived (`ack`); a read
//! records when it started and every version it saw. A read is *stale* when it
//! started after the ack of a write and shows a version older than that write's.
//! The write it missed tells who is to blame:
//!
//! * the read's own instance served the write: never allowed (read-your-writes);
//! * another instance: allowed only inside the broadcast window (another
//!   instance's L1 hears of the write through pub/sub), counted apart;
//! * a plain SQL write outside the API: allowed within the NOTIFY window (1 s).
//!
//! A write whose response was lost (timeout, 5xx) is not acknowledged: the reads
//! need not show it, and a read that does is not wrong.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The instance number of a write made with plain SQL.
pub const SQL: usize = usize::MAX;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Key {
    DeptName(i64),
    FacultyName(i64),
    StudentName(i64),
    DeptExists(i64),
    StudentCount(i64),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seen {
    Version(u64),
    Absent,
}

#[derive(Debug, Clone)]
pub struct Write {
    pub key: Key,
    pub version: u64,
    pub instance: usize,
    pub start: Instant,
    pub ack: Option<Instant>,
}

#[derive(Debug, Clone)]
pub struct Read {
    pub start: Instant,
    pub end: Instant,
    pub instance: usize,
    pub path: String,
    pub x_cache: String,
    pub seen: Vec<(Key, Seen)>,
}

#[derive(Default)]
pub struct History {
    writes: Mutex<Vec<Write>>,
    reads: Mutex<Vec<Read>>,
}

/// How long a read may lag a write it did not see, by where the write came from.
#[derive(Debug, Clone, Copy)]
pub struct Windows {
    /// Another instance's L1 (pub/sub broadcast).
    pub broadcast: Duration,
    /// A plain SQL write (trigger, NOTIFY, listener).
    pub outside: Duration,
}

#[derive(Debug, Default)]
pub struct Verdict {
    pub reads: usize,
    pub observations: usize,
    pub acked_writes: usize,
    /// Stale reads outside every window: the guarantee broken.
    pub stale: Vec<String>,
    /// Reads that lagged a write of another instance (or SQL) within its window.
    pub in_window: usize,
    pub max_lag_in_window: Duration,
}

impl History {
    pub fn write(&self, w: Write) {
        self.writes.lock().unwrap().push(w);
    }

    pub fn read(&self, r: Read) {
        self.reads.lock().unwrap().push(r);
    }

    pub fn writes(&self) -> Vec<Write> {
        self.writes.lock().unwrap().clone()
    }

    /// The newest acknowledged version of every key.
    pub fn last_acked(&self) -> HashMap<Key, u64> {
        let mut out = HashMap::new();
        for w in self.writes.lock().unwrap().iter() {
            if w.ack.is_some() {
                let v = out.entry(w.key).or_insert(0);
                *v = (*v).max(w.version);
            }
        }
        out
    }

    pub fn check(&self, windows: Windows) -> Verdict {
        let writes = self.writes.lock().unwrap();
        let reads = self.reads.lock().unwrap();
        let mut by_key: HashMap<Key, Vec<&Write>> = HashMap::new();
        for w in writes.iter() {
            by_key.entry(w.key).or_default().push(w);
        }
        for list in by_key.values_mut() {
            list.sort_by_key(|w| w.ack.unwrap_or(w.start));
        }
        let mut v = Verdict {
            reads: reads.len(),
            acked_writes: writes.iter().filter(|w| w.ack.is_some()).count(),
            ..Verdict::default()
        };
        for r in reads.iter() {
            for (key, seen) in &r.seen {
                v.observations += 1;
                let Some(list) = by_key.get(key) else {
                    continue;
                };
                let seen = match seen {
                    Seen::Version(n) => *n,
                    // Gone: deleted if a delete had been sent before the read ended
                    // (it may have committed while the read ran); otherwise it is
                    // shown as not created yet.
                    Seen::Absent => {
                        if list.iter().any(|w| w.version == 2 && w.start < r.end) {
                            continue;
                        }
                        0
                    }
                };
                // The first acknowledged write, before the read started, that the
                // read does not show.
                let Some(missed) = list
                    .iter()
                    .find(|w| w.ack.is_some_and(|a| a < r.start) && w.version > seen)
                else {
                    continue;
                };
                let lag = r.start - missed.ack.unwrap();
                let window = if missed.instance == SQL {
                    windows.outside
                } else if missed.instance != r.instance {
                    windows.broadcast
                } else {
                    Duration::ZERO
                };
                if lag <= window {
                    v.in_window += 1;
                    v.max_lag_in_window = v.max_lag_in_window.max(lag);
                } else {
                    v.stale.push(format!(
                        "{} on instance {} (X-Cache {}) saw {key:?} at version {seen}, {lag:?} \
                         after the 2xx of version {} written through {}",
                        r.path,
                        r.instance,
                        r.x_cache,
                        missed.version,
                        if missed.instance == SQL {
                            "SQL".to_owned()
                        } else {
                            format!("instance {}", missed.instance)
                        }
                    ));
                }
            }
        }
        v
    }
}

/// The version a tracked name carries (`… ~v3` → 3, no suffix → 0).
pub fn version_of(name: &str) -> u64 {
    name.rsplit_once("~v")
        .and_then(|(_, n)| n.parse().ok())
        .unwrap_or(0)
}

/// `name` with its version suffix replaced by `v`.
pub fn with_version(name: &str, v: u64) -> String {
    let base = match name.rsplit_once(" ~v") {
        Some((base, n)) if n.parse::<u64>().is_ok() => base,
        _ => name,
    };
    format!("{base} ~v{v}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(t0: Instant, ms: u64) -> Instant {
        t0 + Duration::from_millis(ms)
    }

    #[test]
    fn a_read_after_an_ack_showing_the_old_version_is_stale() {
        let t0 = Instant::now();
        let h = History::default();
        h.write(Write {
            key: Key::DeptName(1),
            version: 1,
            instance: 0,
            start: at(t0, 0),
            ack: Some(at(t0, 10)),
        });
        let read = |start, instance, seen| Read {
            start: at(t0, start),
            end: at(t0, start + 1),
            instance,
            path: "/x".into(),
            x_cache: "HIT".into(),
            seen: vec![(Key::DeptName(1), Seen::Version(seen))],
        };
        // Before the ack: either version is fine.
        h.read(read(5, 0, 0));
        // After: the same instance must show it; another may lag within the window.
        h.read(read(12, 1, 0));
        h.read(read(11, 0, 1));
        let w = Windows {
            broadcast: Duration::from_millis(5),
            outside: Duration::from_secs(1),
        };
        let v = h.check(w);
        assert_eq!((v.stale.len(), v.in_window), (0, 1));
        h.read(read(11, 0, 0));
        h.read(read(100, 1, 0));
        assert_eq!(h.check(w).stale.len(), 2);
    }

    #[test]
    fn versions_round_trip() {
        assert_eq!(version_of("Computer Science"), 0);
        let n = with_version("Computer Science", 3);
        assert_eq!((n.as_str(), version_of(&n)), ("Computer Science ~v3", 3));
        assert_eq!(version_of(&with_version(&n, 4)), 4);
    }
}
