//! A memo: a map from request bytes to what they were worked out into, read on
//! every request and bounded by its number of entries. A full memo first drops
//! what its owner says is dead, then empties: its values are cheap to work out
//! again, and emptying keeps memory bounded whatever clients send, with no
//! bookkeeping on reads (an LRU such as moka's pays for recency and expiry on
//! every look-up, which cost more than the look-up on the hit path).
//!
//! Keyed by bytes, hashed with foldhash (not SipHash: keys are tokens and
//! query strings, hashed on every request); each key holds every input in full,
//! so two requests share an entry only if their inputs are equal.

use std::collections::HashMap;
use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

type Map<V> = HashMap<Box<[u8]>, V, foldhash::quality::RandomState>;

/// At most `MAX` entries.
#[derive(Debug)]
pub struct Memo<V, const MAX: usize> {
    map: RwLock<Map<V>>,
}

impl<V, const MAX: usize> Default for Memo<V, MAX> {
    fn default() -> Self {
        Memo {
            map: RwLock::default(),
        }
    }
}

impl<V: Clone, const MAX: usize> Memo<V, MAX> {
    /// The value remembered for `key`.
    pub fn get(&self, key: &[u8]) -> Option<V> {
        self.read().get(key).cloned()
    }

    /// Remembers `value` for `key`; a full memo is emptied first.
    pub fn insert(&self, key: Box<[u8]>, value: V) {
        self.insert_pruning(key, value, |_| true);
    }

    /// [`insert`](Self::insert), but a full memo first keeps only the values
    /// `keep` accepts, and is emptied if that is not enough.
    pub fn insert_pruning(&self, key: Box<[u8]>, value: V, keep: impl FnMut(&V) -> bool) {
        let mut map = self.write();
        if map.len() >= MAX {
            let mut keep = keep;
            map.retain(|_, v| keep(v));
            if map.len() >= MAX {
                map.clear();
            }
        }
        map.insert(key, value);
    }

    pub fn remove(&self, key: &[u8]) {
        self.write().remove(key);
    }

    pub fn len(&self) -> usize {
        self.read().len()
    }

    pub fn is_empty(&self) -> bool {
        self.read().is_empty()
    }

    pub fn contains(&self, key: &[u8]) -> bool {
        self.read().contains_key(key)
    }

    // A panic while a lock was held leaves a map that is still whole (every
    // change is one std call): the memo keeps being used.
    fn read(&self) -> RwLockReadGuard<'_, Map<V>> {
        self.map.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, Map<V>> {
        self.map.write().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_memo_drops_the_dead_then_empties() {
        let memo: Memo<u32, 3> = Memo::default();
        for i in 0..3u32 {
            memo.insert(vec![i as u8].into(), i);
        }
        // Full: the odd values are dead, so one is dropped and nothing else.
        memo.insert_pruning(b"x".as_slice().into(), 10, |v| v % 2 == 0);
        assert_eq!(memo.len(), 3);
        assert!(!memo.contains(&[1]));
        assert_eq!(memo.get(b"x"), Some(10));
        // Full of live values: emptied, then the new one.
        memo.insert(b"y".as_slice().into(), 11);
        assert_eq!(memo.len(), 1);
        assert_eq!(memo.get(b"y"), Some(11));
        memo.remove(b"y");
        assert!(memo.is_empty());
    }
}
