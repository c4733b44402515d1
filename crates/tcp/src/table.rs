//! The endpoint's connection table: 4-tuple to slot index, in 8 bytes a bucket.
//!
//! A `HashMap<FourTuple, ConnId>` keeps the 64-byte tuple in every bucket: 73 bytes a bucket,
//! about 150 bytes a connection at the table's load, and a lookup among a million connections
//! touches a bucket array of 150 MB. This table keeps only the upper half of the tuple's keyed
//! hash ([`TupleHashBuilder`](crate::hash::TupleHashBuilder)) and the slot index, both 32-bit,
//! in one `u64` (16 MB for a million): the tuple itself lives once, in the connection, and a
//! candidate whose hash matches is confirmed against it by the caller. Open addressing with
//! linear probing keeps a lookup's probes within one or two cache lines; deletion shifts the
//! entries behind back (no tombstones), so probes never lengthen with churn.
//!
//! The bucket of an entry is a function of its stored hash alone, so the table grows without
//! the tuples. A tuple maps to at most one index: inserting a tuple already present replaces
//! its index.

/// An empty bucket. An entry is `(hash >> 32) << 32 | (index + 1)`, never zero.
const EMPTY: u64 = 0;

/// The table holds at most 3/4 of its buckets.
const MAX_LOAD_NUM: usize = 3;
const MAX_LOAD_DEN: usize = 4;

/// A map from tuple hashes to slot indices; the caller confirms candidates (see the module
/// documentation).
#[derive(Debug, Default)]
pub(crate) struct ConnTable {
    buckets: Vec<u64>,
    len: usize,
}

#[inline(always)]
fn tag(hash: u64) -> u32 {
    (hash >> 32) as u32
}

#[inline(always)]
fn entry(tag: u32, index: u32) -> u64 {
    (u64::from(tag) << 32) | u64::from(index + 1)
}

#[inline(always)]
fn entry_tag(e: u64) -> u32 {
    (e >> 32) as u32
}

#[inline(always)]
fn entry_index(e: u64) -> u32 {
    (e as u32).wrapping_sub(1)
}

impl ConnTable {
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    #[inline(always)]
    fn mask(&self) -> usize {
        self.buckets.len().wrapping_sub(1)
    }

    /// The index stored for `hash` whose slot `is` confirms as the tuple's.
    #[inline]
    pub(crate) fn find(&self, hash: u64, mut is: impl FnMut(u32) -> bool) -> Option<u32> {
        if self.len == 0 {
            return None;
        }
        let t = tag(hash);
        let mask = self.mask();
        let mut i = t as usize & mask;
        loop {
            let e = self.buckets[i];
            if e == EMPTY {
                return None;
            }
            if entry_tag(e) == t && is(entry_index(e)) {
                return Some(entry_index(e));
            }
            i = (i + 1) & mask;
        }
    }

    /// Map the tuple of `hash` (confirmed by `is`, as in [`find`](Self::find)) to `index`,
    /// replacing the index it had.
    pub(crate) fn insert(&mut self, hash: u64, index: u32, mut is: impl FnMut(u32) -> bool) {
        debug_assert!(index < u32::MAX);
        if (self.len + 1) * MAX_LOAD_DEN > self.buckets.len() * MAX_LOAD_NUM {
            self.grow();
        }
        let t = tag(hash);
        let mask = self.mask();
        let mut i = t as usize & mask;
        loop {
            let e = self.buckets[i];
            if e == EMPTY {
                self.buckets[i] = entry(t, index);
                self.len += 1;
                return;
            }
            if entry_tag(e) == t && is(entry_index(e)) {
                self.buckets[i] = entry(t, index);
                return;
            }
            i = (i + 1) & mask;
        }
    }

    /// Forget the entry of `hash` if it holds `index` (it may hold a newer connection's).
    /// Returns whether it did.
    pub(crate) fn remove(&mut self, hash: u64, index: u32) -> bool {
        if self.len == 0 {
            return false;
        }
        let want = entry(tag(hash), index);
        let mask = self.mask();
        let mut hole = tag(hash) as usize & mask;
        loop {
            let e = self.buckets[hole];
            if e == EMPTY {
                return false;
            }
            if e == want {
                break;
            }
            hole = (hole + 1) & mask;
        }
        // Shift back every entry behind the hole that may move there (its home bucket is not
        // cyclically within (hole, j]), so that no probe meets an empty bucket early.
        let mut j = hole;
        loop {
            j = (j + 1) & mask;
            let e = self.buckets[j];
            if e == EMPTY {
                break;
            }
            let home = entry_tag(e) as usize & mask;
            let stays = if hole <= j {
                hole < home && home <= j
            } else {
                hole < home || home <= j
            };
            if !stays {
                self.buckets[hole] = e;
                hole = j;
            }
        }
        self.buckets[hole] = EMPTY;
        self.len -= 1;
        true
    }

    /// Every stored index, in bucket order.
    pub(crate) fn indices(&self) -> impl Iterator<Item = u32> + '_ {
        self.buckets
            .iter()
            .filter(|&&e| e != EMPTY)
            .map(|&e| entry_index(e))
    }

    fn grow(&mut self) {
        let new_len = (self.buckets.len() * 2).max(16);
        let old = std::mem::replace(&mut self.buckets, vec![EMPTY; new_len]);
        let mask = new_len - 1;
        for e in old.into_iter().filter(|&e| e != EMPTY) {
            let mut i = entry_tag(e) as usize & mask;
            while self.buckets[i] != EMPTY {
                i = (i + 1) & mask;
            }
            self.buckets[i] = e;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    /// A model check: random inserts, replacements and removals, with hashes forced to
    /// collide in their buckets (few distinct tags), against a `HashMap`.
    #[test]
    fn matches_a_hash_map_under_collisions() {
        let mut t = ConnTable::default();
        // key -> index; the "tuple" of a slot index is kept in `owner`.
        let mut model: HashMap<u64, u32> = HashMap::new();
        let mut owner: HashMap<u32, u64> = HashMap::new();
        let mut x: u64 = 0x1234_5678_9abc_def1;
        let mut next_index = 0u32;
        let hash_of = |k: u64| (k % 7) << 32 | k; // 7 tags: long probe runs
        for _ in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let key = x % 300;
            let h = hash_of(key);
            if x & 0x300 == 0x300 {
                if let Some(i) = model.remove(&key) {
                    assert!(t.remove(h, i));
                    owner.remove(&i);
                }
            } else {
                let i = next_index;
                next_index += 1;
                t.insert(h, i, |c| owner.get(&c) == Some(&key));
                if let Some(old) = model.insert(key, i) {
                    owner.remove(&old);
                    assert!(!t.remove(h, old), "a replaced index is gone");
                }
                owner.insert(i, key);
            }
            assert_eq!(t.len(), model.len());
        }
        for (&key, &i) in &model {
            assert_eq!(
                t.find(hash_of(key), |c| owner.get(&c) == Some(&key)),
                Some(i)
            );
        }
        let mut all: Vec<u32> = t.indices().collect();
        all.sort_unstable();
        let mut want: Vec<u32> = model.values().copied().collect();
        want.sort_unstable();
        assert_eq!(all, want);
        assert_eq!(t.find(99 << 32, |_| true), None);
    }
}
