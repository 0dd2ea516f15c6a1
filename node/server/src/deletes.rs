//! Which rows a delete hides, at a read timestamp (read-path design, step 3).
//!
//! A delete of primary key `pk` at timestamp `d` hides every row of `pk`
//! inserted before it (row timestamp `< d`); a row inserted after it (an
//! upsert's new value) stays. A reader at timestamp `r` sees the rows inserted at
//! or before `r` and the deletes at or before `r`. The read-back of flushed
//! files (`storage::content`) reads at "now", past every timestamp; query nodes
//! will read at a search's guarantee timestamp. Both decide with [`DeleteSet`].

use std::borrow::Borrow;
use std::cmp::Ordering;
use std::collections::HashMap;
use std::hash::Hash;

use crate::keys::{KeyRef, KeysRef};

/// The deletes a reader knows: for each primary key, its delete timestamps.
/// Keys of the two kinds are held apart, so that INT64 keys take no more than
/// an `i64` each.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeleteSet {
    ints: Deletes<i64>,
    strs: Deletes<String>,
}

/// The deletes of keys of one kind. Most keys are deleted once, so the newest
/// is held alone and only the earlier ones of a key deleted again go in a list
/// (a read-back of millions of deletes keeps one `u64` per key).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Deletes<K: Hash + Eq> {
    newest: HashMap<K, u64>,
    /// For a key deleted more than once, its earlier deletes: sorted, without
    /// repeats, all before its newest.
    earlier: HashMap<K, Vec<u64>>,
}

impl<K: Hash + Eq> Default for Deletes<K> {
    fn default() -> Self {
        Self {
            newest: HashMap::new(),
            earlier: HashMap::new(),
        }
    }
}

impl<K: Hash + Eq> Deletes<K> {
    /// Adds a delete of `pk` at `ts`; the key is copied only when it is new
    /// to a map (a VARCHAR key read back again costs no allocation).
    fn add<Q>(&mut self, pk: &Q, ts: u64)
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ToOwned<Owned = K> + ?Sized,
    {
        let Some(newest) = self.newest.get_mut(pk) else {
            self.newest.insert(pk.to_owned(), ts);
            return;
        };
        let older = match ts.cmp(newest) {
            Ordering::Equal => return,
            Ordering::Greater => std::mem::replace(newest, ts),
            Ordering::Less => ts,
        };
        let earlier = match self.earlier.get_mut(pk) {
            Some(earlier) => earlier,
            None => self.earlier.entry(pk.to_owned()).or_default(),
        };
        if let Err(i) = earlier.binary_search(&older) {
            earlier.insert(i, older);
        }
    }

    fn visible<Q: Hash + Eq + ?Sized>(&self, pk: &Q, ts: u64, read_ts: u64) -> bool
    where
        K: Borrow<Q>,
    {
        match self.newest.get(pk) {
            None => true,
            Some(&newest) if newest <= ts => true,
            Some(&newest) if newest <= read_ts => false,
            // The newest is after the read: an earlier delete may be in between.
            Some(_) => self.earlier.get(pk).is_none_or(|earlier| {
                let after = earlier.partition_point(|d| *d <= ts);
                earlier.get(after).is_none_or(|d| *d > read_ts)
            }),
        }
    }

    fn len(&self) -> usize {
        self.newest.len() + self.earlier.values().map(Vec::len).sum::<usize>()
    }
}

impl DeleteSet {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a delete of `pk` at `ts` (one already known changes nothing).
    pub fn add(&mut self, pk: KeyRef<'_>, ts: u64) {
        match pk {
            KeyRef::Int(pk) => self.ints.add(&pk, ts),
            KeyRef::Str(pk) => self.strs.add(pk, ts),
        }
    }

    /// Adds the deletes `(pks[i], timestamps[i])`.
    pub fn extend<'a>(&mut self, pks: impl Into<KeysRef<'a>>, timestamps: &[u64]) {
        for (pk, ts) in pks.into().iter().zip(timestamps) {
            self.add(pk, *ts);
        }
    }

    /// Whether a row of `pk` inserted at `ts` is seen by a reader at `read_ts`:
    /// inserted by then, and no delete of its key after it and by then.
    pub fn visible(&self, pk: KeyRef<'_>, ts: u64, read_ts: u64) -> bool {
        if ts > read_ts {
            return false;
        }
        match pk {
            KeyRef::Int(pk) => self.ints.visible(&pk, ts, read_ts),
            KeyRef::Str(pk) => self.strs.visible(pk, ts, read_ts),
        }
    }

    /// Number of (key, timestamp) deletes held.
    pub fn len(&self) -> usize {
        self.ints.len() + self.strs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ints.newest.is_empty() && self.strs.newest.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use proptest::test_runner::{Config, RngSeed};

    use super::*;

    proptest! {
        #![proptest_config(Config {
            cases: 512,
            rng_seed: RngSeed::Fixed(15),
            ..Config::default()
        })]

        /// Visibility is the definition applied to every delete one by one.
        #[test]
        fn visibility_is_the_naive_rule(
            deletes in prop::collection::vec((0i64..6, 0u64..40), 0..30),
            rows in prop::collection::vec((0i64..6, 0u64..40), 1..30),
            read_ts in 0u64..45,
        ) {
            let mut set = DeleteSet::new();
            for (pk, ts) in &deletes {
                set.add(KeyRef::Int(*pk), *ts);
            }
            for &(pk, ts) in &rows {
                let naive = ts <= read_ts
                    && !deletes.iter().any(|&(dpk, d)| dpk == pk && ts < d && d <= read_ts);
                prop_assert_eq!(set.visible(KeyRef::Int(pk), ts, read_ts), naive, "row ({}, {}) at {}", pk, ts, read_ts);
                // Read at "now": the newest delete of the key decides.
                let newest = deletes.iter().filter(|(dpk, _)| *dpk == pk).map(|(_, d)| *d).max();
                prop_assert_eq!(set.visible(KeyRef::Int(pk), ts, u64::MAX), newest.is_none_or(|d| d <= ts));
            }
            let distinct: std::collections::HashSet<_> = deletes.iter().collect();
            prop_assert_eq!(set.len(), distinct.len());
        }
    }

    #[test]
    fn a_delete_hides_older_rows_of_its_key_only() {
        let mut set = DeleteSet::new();
        set.extend(&vec![7, 7], &[10, 30]);
        let seven = KeyRef::Int(7);
        assert!(
            !set.visible(seven, 5, 100),
            "inserted before the delete at 10"
        );
        assert!(
            !set.visible(seven, 20, 100),
            "inserted before the delete at 30"
        );
        assert!(
            set.visible(seven, 30, 100),
            "the delete at 30 is not after it"
        );
        assert!(
            set.visible(seven, 31, 100),
            "an upsert after the last delete"
        );
        assert!(set.visible(seven, 20, 29), "read before the delete at 30");
        assert!(!set.visible(seven, 40, 39), "not inserted yet at 39");
        assert!(set.visible(KeyRef::Int(8), 5, 100), "another key");
        assert_eq!(set.len(), 2);
    }

    #[test]
    fn varchar_keys_are_deleted_alike_and_apart_from_integers() {
        let mut set = DeleteSet::new();
        let keys = ["7".to_owned(), "doc-a".to_owned()];
        set.extend(&keys[..], &[10, 20]);
        assert!(!set.visible(KeyRef::Str("7"), 5, 100));
        assert!(
            set.visible(KeyRef::Int(7), 5, 100),
            "the integer 7 is another key"
        );
        assert!(!set.visible(KeyRef::Str("doc-a"), 19, 100));
        assert!(
            set.visible(KeyRef::Str("doc-a"), 10, 15),
            "read before the delete"
        );
        assert!(set.visible(KeyRef::Str("doc-b"), 1, 100));
        assert_eq!(set.len(), 2);
        assert!(!set.is_empty());
    }
}
