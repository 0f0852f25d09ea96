//! The hasher of the maps a look-up touches.
//!
//! std's SipHash over entry and generation keys (60 to 150 bytes each, several
//! per cached read) showed in profiles of the L1 hit path; foldhash is several
//! times faster on such keys. Its `quality` variant, randomly seeded, keeps the
//! maps' layout unpredictable to clients (keys carry their query strings).

use std::collections::HashMap;

/// A randomly seeded foldhash.
pub(crate) type Hasher = foldhash::quality::RandomState;

/// A `HashMap` with [`Hasher`].
pub(crate) type FastMap<K, V> = HashMap<K, V, Hasher>;
