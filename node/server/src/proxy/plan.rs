//! How a write is cut into log messages: pure functions, so that the rules are
//! tested without a cluster.
//!
//! An insert's rows are routed to channels by primary-key hash ([`route`]); each
//! channel's rows get rows in growing segments (the grants, fetched between the two
//! steps); then [`insert`] cuts them into messages. Its invariants, checked by the
//! property tests below:
//! - every row is in exactly one message, in the channel of its primary key;
//! - a message holds rows of one segment grant, at most `per_message` of them, with
//!   consecutive timestamps starting at its `first_ts` (the data node reads the k-th
//!   row's timestamp as `first_ts + k`);
//! - the k-th row in routed order (channel by channel, request order within a
//!   channel) gets the k-th timestamp of the TSO ranges, so every timestamp is used
//!   once and a channel's rows fill large messages.

use super::grants::Slice;
use crate::keys::KeysRef;

/// Indices of rows per channel (by [`KeyRef::channel`](crate::keys::KeyRef::channel)),
/// in row order; channels without rows are left out.
pub fn route(pks: KeysRef<'_>, channels: u32) -> Vec<(u32, Vec<usize>)> {
    let mut by_channel: Vec<Vec<usize>> = vec![Vec::new(); channels.max(1) as usize];
    for (i, pk) in pks.iter().enumerate() {
        by_channel[pk.channel(channels) as usize].push(i);
    }
    by_channel
        .into_iter()
        .enumerate()
        .filter(|(_, rows)| !rows.is_empty())
        .map(|(ch, rows)| (u32::try_from(ch).unwrap_or(0), rows))
        .collect()
}

/// Contiguous ranges of timestamps from the TSO, `(first, count)`, in order.
#[derive(Debug, Clone, Copy)]
pub struct Stamps<'a>(pub &'a [(u64, usize)]);

impl Stamps<'_> {
    /// The k-th timestamp of the ranges and how many consecutive ones follow from
    /// it, itself included, to the end of its range (`None` past the last range).
    fn run_at(&self, k: usize) -> Option<(u64, usize)> {
        let mut k = k;
        for &(first, n) in self.0 {
            if k < n {
                return Some((first + k as u64, n - k));
            }
            k -= n;
        }
        None
    }
}

/// One insert message: rows of the request (by index) for one segment of one channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InsertMessage {
    pub channel: u32,
    pub segment_id: i64,
    pub first_ts: u64,
    pub rows: Vec<usize>,
}

/// Why a plan cannot be made: the inputs do not add up (a bug upstream).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    #[error("the grants for channel {channel} cover {granted} rows, not {routed}")]
    GrantMismatch {
        channel: u32,
        granted: usize,
        routed: usize,
    },
    #[error("{rows} rows but only {stamps} timestamps")]
    TooFewTimestamps { rows: usize, stamps: usize },
}

/// Cuts routed rows into messages. `grants[i]` are the segment slices of
/// `routes[i]`'s channel, covering its rows in order.
pub fn insert(
    routes: &[(u32, Vec<usize>)],
    grants: &[Vec<Slice>],
    stamps: Stamps<'_>,
    per_message: usize,
) -> Result<Vec<InsertMessage>, PlanError> {
    let rows: usize = routes.iter().map(|(_, r)| r.len()).sum();
    let available: usize = stamps.0.iter().map(|(_, n)| n).sum();
    if available < rows {
        return Err(PlanError::TooFewTimestamps {
            rows,
            stamps: available,
        });
    }
    let per_message = per_message.max(1);
    let mut messages = Vec::new();
    // Position of the next row in routed order: its timestamp is the position-th.
    let mut position = 0;
    for ((channel, indices), slices) in routes.iter().zip(grants) {
        let granted: usize = slices.iter().map(|s| s.rows as usize).sum();
        if granted != indices.len() {
            return Err(PlanError::GrantMismatch {
                channel: *channel,
                granted,
                routed: indices.len(),
            });
        }
        let mut start = 0;
        for slice in slices {
            let segment_rows = &indices[start..start + slice.rows as usize];
            start += segment_rows.len();
            for chunk in segment_rows.chunks(per_message) {
                // One message needs consecutive timestamps: cut where a TSO range ends.
                let mut start = 0;
                while start < chunk.len() {
                    // Never None: the ranges cover every row (checked above).
                    let (first_ts, left) = stamps.run_at(position).unwrap_or((0, usize::MAX));
                    let n = left.min(chunk.len() - start);
                    messages.push(InsertMessage {
                        channel: *channel,
                        segment_id: slice.segment_id,
                        first_ts,
                        rows: chunk[start..start + n].to_vec(),
                    });
                    start += n;
                    position += n;
                }
            }
        }
    }
    Ok(messages)
}

/// One delete message: keys of the request (by index) for one channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeleteMessage {
    pub channel: u32,
    pub first_ts: u64,
    pub keys: Vec<usize>,
}

/// Cuts routed keys into messages with consecutive timestamps: `stamps[i]` are the
/// TSO ranges taken for `routes[i]`'s channel, covering its keys.
pub fn delete(
    routes: &[(u32, Vec<usize>)],
    stamps: &[Vec<(u64, usize)>],
) -> Result<Vec<DeleteMessage>, PlanError> {
    let mut messages = Vec::new();
    for ((channel, indices), ranges) in routes.iter().zip(stamps) {
        let available: usize = ranges.iter().map(|(_, n)| n).sum();
        if available < indices.len() {
            return Err(PlanError::TooFewTimestamps {
                rows: indices.len(),
                stamps: available,
            });
        }
        let mut start = 0;
        for &(first, count) in ranges {
            let count = count.min(indices.len() - start);
            if count == 0 {
                break;
            }
            messages.push(DeleteMessage {
                channel: *channel,
                first_ts: first,
                keys: indices[start..start + count].to_vec(),
            });
            start += count;
        }
    }
    Ok(messages)
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use proptest::prelude::*;

    use super::*;
    use crate::keys::KeyRef;

    /// Splits `n` rows into segment slices of the given sizes (the last takes the rest).
    fn slices(n: usize, sizes: &[usize], first_segment: i64) -> Vec<Slice> {
        let mut out = Vec::new();
        let mut left = n;
        for (i, size) in sizes.iter().enumerate() {
            if left == 0 {
                break;
            }
            let take = (*size).clamp(1, left);
            out.push(Slice {
                segment_id: first_segment + i as i64,
                rows: u32::try_from(take).expect("small"),
            });
            left -= take;
        }
        if left > 0 {
            out.push(Slice {
                segment_id: first_segment + sizes.len() as i64,
                rows: u32::try_from(left).expect("small"),
            });
        }
        out
    }

    fn ranges(rows: usize, cuts: &[usize], start: u64) -> Vec<(u64, usize)> {
        let mut out = Vec::new();
        let mut left = rows;
        let mut next = start;
        for c in cuts {
            if left == 0 {
                break;
            }
            let n = (*c).clamp(1, left);
            out.push((next, n));
            // A gap between ranges, as between two TSO calls.
            next += n as u64 + 1000;
            left -= n;
        }
        if left > 0 {
            out.push((next, left));
        }
        out
    }

    proptest! {
        #[test]
        fn every_row_once_in_its_channel_with_consecutive_timestamps(
            pks in proptest::collection::vec(any::<i64>(), 1..400),
            channels in 1u32..9,
            segment_sizes in proptest::collection::vec(1usize..80, 0..6),
            ts_cuts in proptest::collection::vec(1usize..150, 0..5),
            per_message in 1usize..64,
        ) {
            let routes = route(KeysRef::Int(&pks), channels);
            let grants: Vec<Vec<Slice>> = routes
                .iter()
                .enumerate()
                .map(|(i, (_, rows))| slices(rows.len(), &segment_sizes, 100 * i as i64))
                .collect();
            let stamp_ranges = ranges(pks.len(), &ts_cuts, 1 << 30);
            let messages = insert(&routes, &grants, Stamps(&stamp_ranges), per_message)
                .expect("inputs add up");

            let mut seen = BTreeSet::new();
            let mut timestamps = BTreeSet::new();
            let mut last_ts_of_channel: BTreeMap<u32, u64> = BTreeMap::new();
            let mut rows_per_segment: BTreeMap<(u32, i64), usize> = BTreeMap::new();
            for m in &messages {
                prop_assert!(!m.rows.is_empty());
                prop_assert!(m.rows.len() <= per_message);
                *rows_per_segment.entry((m.channel, m.segment_id)).or_default() += m.rows.len();
                for (k, &row) in m.rows.iter().enumerate() {
                    prop_assert!(seen.insert(row), "row {} twice", row);
                    prop_assert_eq!(KeyRef::Int(pks[row]).channel(channels), m.channel);
                    let ts = m.first_ts + k as u64;
                    prop_assert!(timestamps.insert(ts), "timestamp {} twice", ts);
                    // Request order within a channel, timestamps rising with it.
                    if let Some(&last) = last_ts_of_channel.get(&m.channel) {
                        prop_assert!(ts > last);
                    }
                    last_ts_of_channel.insert(m.channel, ts);
                }
            }
            prop_assert_eq!(seen.len(), pks.len());
            // Exactly the timestamps the TSO gave.
            let given: BTreeSet<u64> = stamp_ranges
                .iter()
                .flat_map(|&(first, n)| first..first + n as u64)
                .collect();
            prop_assert_eq!(timestamps, given);
            // Each segment got exactly the rows it granted.
            for ((channel, _), slices) in routes.iter().zip(&grants) {
                for s in slices {
                    prop_assert_eq!(
                        rows_per_segment.get(&(*channel, s.segment_id)).copied(),
                        Some(s.rows as usize)
                    );
                }
            }
        }

        #[test]
        fn every_key_deleted_once_in_its_channel(
            pks in proptest::collection::vec(any::<i64>(), 1..300),
            channels in 1u32..9,
            ts_cuts in proptest::collection::vec(1usize..50, 0..4),
        ) {
            let routes = route(KeysRef::Int(&pks), channels);
            let stamps: Vec<Vec<(u64, usize)>> = routes
                .iter()
                .enumerate()
                .map(|(i, (_, keys))| ranges(keys.len(), &ts_cuts, 1_000_000 * (i as u64 + 1)))
                .collect();
            let messages = delete(&routes, &stamps).expect("inputs add up");
            let mut seen = BTreeSet::new();
            let mut timestamps = BTreeSet::new();
            for m in &messages {
                for (k, &key) in m.keys.iter().enumerate() {
                    prop_assert!(seen.insert(key));
                    prop_assert_eq!(KeyRef::Int(pks[key]).channel(channels), m.channel);
                    prop_assert!(timestamps.insert(m.first_ts + k as u64));
                }
            }
            prop_assert_eq!(seen.len(), pks.len());
        }
    }

    #[test]
    fn a_message_is_cut_where_a_timestamp_range_ends() {
        let routes = vec![(0, vec![0, 1, 2, 3])];
        let grants = vec![vec![Slice {
            segment_id: 7,
            rows: 4,
        }]];
        let stamps = [(10, 3), (50, 1)];
        let messages = insert(&routes, &grants, Stamps(&stamps), 100).expect("adds up");
        assert_eq!(
            messages,
            vec![
                InsertMessage {
                    channel: 0,
                    segment_id: 7,
                    first_ts: 10,
                    rows: vec![0, 1, 2]
                },
                InsertMessage {
                    channel: 0,
                    segment_id: 7,
                    first_ts: 50,
                    rows: vec![3]
                },
            ]
        );
    }

    #[test]
    fn grants_that_do_not_cover_the_rows_are_refused() {
        let routes = vec![(2, vec![0, 1, 2])];
        let grants = vec![vec![Slice {
            segment_id: 1,
            rows: 2,
        }]];
        assert_eq!(
            insert(&routes, &grants, Stamps(&[(1, 3)]), 10),
            Err(PlanError::GrantMismatch {
                channel: 2,
                granted: 2,
                routed: 3
            })
        );
        assert_eq!(
            insert(
                &routes,
                &[vec![Slice {
                    segment_id: 1,
                    rows: 3
                }]],
                Stamps(&[(1, 2)]),
                10
            ),
            Err(PlanError::TooFewTimestamps { rows: 3, stamps: 2 })
        );
    }
}
