//! [`Clock`]: the wall clock a cache reads its entries' freshness against.
//!
//! An entry's freshness is a wall-clock instant (milliseconds since the Unix
//! epoch) written into the entry itself, since instances share entries through
//! the store; so the cache's clock is a wall clock, not a monotonic one. Tests
//! of expiry, stale serving and early refresh move a manual clock instead of
//! sleeping. The store's own expiry (Redis's TTL, the memory store's) keeps
//! real time: entries live at least as long as the cache's clock is moved.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// The system's wall clock, or a manual one moved by [`advance`](Clock::advance).
///
/// ```
/// use std::time::Duration;
/// use tierstamp::Clock;
///
/// let clock = Clock::manual();
/// let before = clock.now_millis();
/// clock.advance(Duration::from_secs(60));
/// assert_eq!(clock.now_millis(), before + 60_000);
/// ```
#[derive(Debug, Clone, Default)]
pub struct Clock {
    /// `None`: the system's clock. Otherwise milliseconds since the Unix epoch,
    /// shared by the clones.
    manual: Option<Arc<AtomicU64>>,
}

impl Clock {
    /// The system's wall clock (the default).
    pub fn system() -> Self {
        Clock::default()
    }

    /// A clock that starts at the system's time and moves only by
    /// [`advance`](Clock::advance); its clones move together.
    pub fn manual() -> Self {
        Clock {
            manual: Some(Arc::new(AtomicU64::new(crate::store::now_millis()))),
        }
    }

    /// Moves a manual clock forward by `by`; a system clock is not moved.
    pub fn advance(&self, by: Duration) {
        if let Some(ms) = &self.manual {
            let by = u64::try_from(by.as_millis()).unwrap_or(u64::MAX);
            ms.fetch_add(by, Ordering::SeqCst);
        }
    }

    /// Milliseconds since the Unix epoch.
    pub fn now_millis(&self) -> u64 {
        match &self.manual {
            None => crate::store::now_millis(),
            Some(ms) => ms.load(Ordering::SeqCst),
        }
    }
}
