//! [`Memo`]: a map from what a request carries to what it was worked out into
//! (a key segment's digest, a model's generation keys; for an application, a
//! verified token or a parsed query string), read on every request and bounded
//! by its number of entries.
//!
//! A full memo empties (after first dropping what its owner says is dead,
//! with [`Memo::insert_pruning`]): its
//! values are cheap to work out again, and emptying keeps memory bounded
//! whatever clients send, with no bookkeeping on reads. An LRU such as moka's
//! pays for recency and expiry on every look-up, which costs more than the
//! look-up itself on a cache hit's path.
//!
//! Hashed with a randomly seeded foldhash: keys are often chosen by clients
//! (tokens, query strings) and hashed on every request, where SipHash showed
//! in profiles; the seed keeps the map's layout unpredictable to them.

use std::borrow::Borrow;
use std::hash::Hash;
use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

use crate::hash::FastMap;

/// A map of at most `MAX` entries that empties when full.
///
/// ```
/// use tierstamp::Memo;
///
/// let parsed: Memo<Box<str>, u32, 2> = Memo::default();
/// parsed.insert("?page=1".into(), 1);
/// parsed.insert("?page=2".into(), 2);
/// assert_eq!(parsed.get("?page=1"), Some(1));
/// parsed.insert("?page=3".into(), 3); // full: emptied first
/// assert_eq!((parsed.get("?page=1"), parsed.get("?page=3")), (None, Some(3)));
/// ```
#[derive(Debug)]
pub struct Memo<K, V, const MAX: usize> {
    map: RwLock<FastMap<K, V>>,
}

impl<K, V, const MAX: usize> Default for Memo<K, V, MAX> {
    fn default() -> Self {
        Memo {
            map: RwLock::new(FastMap::default()),
        }
    }
}

impl<K: Hash + Eq, V, const MAX: usize> Memo<K, V, MAX> {
    /// A clone of the value remembered for `key`.
    pub fn get<Q>(&self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
        V: Clone,
    {
        self.read().get(key).cloned()
    }

    /// `read` applied to the value remembered for `key`, under the memo's read
    /// lock (for a value that is read in part, or costs more to clone).
    pub fn read_with<Q, R>(&self, key: &Q, read: impl FnOnce(&V) -> R) -> Option<R>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.read().get(key).map(read)
    }

    /// Remembers `value` for `key`; a full memo is emptied first.
    pub fn insert(&self, key: K, value: V) {
        self.insert_pruning(key, value, |_| true);
    }

    /// [`insert`](Self::insert), but a full memo first keeps only the values
    /// `keep` accepts, and is emptied if that is not enough.
    pub fn insert_pruning(&self, key: K, value: V, keep: impl FnMut(&V) -> bool) {
        let mut map = self.write();
        if map.len() >= MAX && !map.contains_key(&key) {
            let mut keep = keep;
            map.retain(|_, v| keep(v));
            if map.len() >= MAX {
                map.clear();
            }
        }
        map.insert(key, value);
    }

    /// Forgets `key`.
    pub fn remove<Q>(&self, key: &Q)
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.write().remove(key);
    }

    /// How many entries it holds.
    pub fn len(&self) -> usize {
        self.read().len()
    }

    /// Whether it holds nothing.
    pub fn is_empty(&self) -> bool {
        self.read().is_empty()
    }

    /// Whether it remembers `key`.
    pub fn contains<Q>(&self, key: &Q) -> bool
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.read().contains_key(key)
    }

    // A panic while a lock was held leaves a map that is still whole (every
    // change is one std call): the memo keeps being used.
    fn read(&self) -> RwLockReadGuard<'_, FastMap<K, V>> {
        self.map.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, FastMap<K, V>> {
        self.map.write().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_memo_drops_the_dead_then_empties() {
        let memo: Memo<Box<[u8]>, u32, 3> = Memo::default();
        for i in 0..3u32 {
            memo.insert(vec![i as u8].into(), i);
        }
        // Replacing a value of a full memo drops nothing.
        memo.insert(vec![0].into(), 0);
        assert_eq!(memo.len(), 3);
        // Full: the odd values are dead, so one is dropped and nothing else.
        memo.insert_pruning(b"x".as_slice().into(), 10, |v| v % 2 == 0);
        assert_eq!(memo.len(), 3);
        assert!(!memo.contains(&[1][..]));
        assert_eq!(memo.get(&b"x"[..]), Some(10));
        assert_eq!(memo.read_with(&b"x"[..], |v| v + 1), Some(11));
        // Full of live values: emptied, then the new one.
        memo.insert(b"y".as_slice().into(), 11);
        assert_eq!(memo.len(), 1);
        assert_eq!(memo.get(&b"y"[..]), Some(11));
        memo.remove(&b"y"[..]);
        assert!(memo.is_empty());
    }
}
