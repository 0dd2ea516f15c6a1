//! Which rows a delete hides, at a read timestamp (read-path design, step 3).
//!
//! A delete of primary key `pk` at timestamp `d` hides every row of `pk`
//! inserted before it (row timestamp `< d`); a row inserted after it (an
//! upsert's new value) stays. A reader at timestamp `r` sees the rows inserted at
//! or before `r` and the deletes at or before `r`. The read-back of flushed
//! files (`storage::content`) reads at "now", past every timestamp; query nodes
//! will read at a search's guarantee timestamp. Both decide with [`DeleteSet`].

use std::cmp::Ordering;
use std::collections::HashMap;

/// The deletes a reader knows: for each primary key, its delete timestamps.
/// Most keys are deleted once, so the newest is held alone and only the earlier
/// ones of a key deleted again go in a list (a read-back of millions of deletes
/// keeps one `u64` per key, as it did before reads at a timestamp existed).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeleteSet {
    newest: HashMap<i64, u64>,
    /// For a key deleted more than once, its earlier deletes: sorted, without
    /// repeats, all before its newest.
    earlier: HashMap<i64, Vec<u64>>,
}

impl DeleteSet {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a delete of `pk` at `ts` (one already known changes nothing).
    pub fn add(&mut self, pk: i64, ts: u64) {
        let newest = self.newest.entry(pk).or_insert(ts);
        let older = match ts.cmp(newest) {
            Ordering::Equal => return,
            Ordering::Greater => std::mem::replace(newest, ts),
            Ordering::Less => ts,
        };
        let earlier = self.earlier.entry(pk).or_default();
        if let Err(i) = earlier.binary_search(&older) {
            earlier.insert(i, older);
        }
    }

    /// Adds the deletes `(pks[i], timestamps[i])`.
    pub fn extend(&mut self, pks: &[i64], timestamps: &[u64]) {
        for (pk, ts) in pks.iter().zip(timestamps) {
            self.add(*pk, *ts);
        }
    }

    /// Whether a row of `pk` inserted at `ts` is seen by a reader at `read_ts`:
    /// inserted by then, and no delete of its key after it and by then.
    pub fn visible(&self, pk: i64, ts: u64, read_ts: u64) -> bool {
        if ts > read_ts {
            return false;
        }
        match self.newest.get(&pk) {
            None => true,
            Some(&newest) if newest <= ts => true,
            Some(&newest) if newest <= read_ts => false,
            // The newest is after the read: an earlier delete may be in between.
            Some(_) => self.earlier.get(&pk).is_none_or(|earlier| {
                let after = earlier.partition_point(|d| *d <= ts);
                earlier.get(after).is_none_or(|d| *d > read_ts)
            }),
        }
    }

    /// Number of (key, timestamp) deletes held.
    pub fn len(&self) -> usize {
        self.newest.len() + self.earlier.values().map(Vec::len).sum::<usize>()
    }

    pub fn is_empty(&self) -> bool {
        self.newest.is_empty()
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
                set.add(*pk, *ts);
            }
            for &(pk, ts) in &rows {
                let naive = ts <= read_ts
                    && !deletes.iter().any(|&(dpk, d)| dpk == pk && ts < d && d <= read_ts);
                prop_assert_eq!(set.visible(pk, ts, read_ts), naive, "row ({}, {}) at {}", pk, ts, read_ts);
                // Read at "now": the newest delete of the key decides.
                let newest = deletes.iter().filter(|(dpk, _)| *dpk == pk).map(|(_, d)| *d).max();
                prop_assert_eq!(set.visible(pk, ts, u64::MAX), newest.is_none_or(|d| d <= ts));
            }
            let distinct: std::collections::HashSet<_> = deletes.iter().collect();
            prop_assert_eq!(set.len(), distinct.len());
        }
    }

    #[test]
    fn a_delete_hides_older_rows_of_its_key_only() {
        let mut set = DeleteSet::new();
        set.extend(&[7, 7], &[10, 30]);
        assert!(!set.visible(7, 5, 100), "inserted before the delete at 10");
        assert!(!set.visible(7, 20, 100), "inserted before the delete at 30");
        assert!(set.visible(7, 30, 100), "the delete at 30 is not after it");
        assert!(set.visible(7, 31, 100), "an upsert after the last delete");
        assert!(set.visible(7, 20, 29), "read before the delete at 30");
        assert!(!set.visible(7, 40, 39), "not inserted yet at 39");
        assert!(set.visible(8, 5, 100), "another key");
        assert_eq!(set.len(), 2);
    }
}
