//! What a data node holds in memory per channel until it flushes: one
//! `SegmentBuffer` per segment, the deletes per partition, and the flush policy
//! that decides when enough is enough.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use milvus_like_api::schema::CollectionSchema;
use milvus_like_api::settings::defaults;

use crate::columns::RowBatch;
use crate::keys::Keys;
use crate::storage::InsertLog;

/// Rows of one segment not flushed yet, already in the form the flush writes
/// (each consumed batch's columns moved into Arrow arrays, not copied again).
#[derive(Debug, Clone)]
pub struct SegmentBuffer {
    pub collection: i64,
    pub partition: i64,
    pub log: InsertLog,
    /// When the first row arrived.
    pub since: Instant,
}

impl SegmentBuffer {
    pub fn new(collection: i64, partition: i64, schema: &CollectionSchema) -> Self {
        Self {
            collection,
            partition,
            log: InsertLog::new(schema),
            since: Instant::now(),
        }
    }

    /// Appends a consumed batch whose rows carry the consecutive timestamps from
    /// `first_ts`. Spare capacity left by decoding is given back first, so what
    /// is held is what is counted.
    pub fn append(&mut self, mut rows: RowBatch, first_ts: u64) -> Result<(), String> {
        rows.shrink_to_fit();
        let n = rows.num_rows as u64;
        self.log.push(rows, (first_ts..first_ts + n).collect())
    }

    /// Memory held (allocated, not only used).
    pub fn bytes(&self) -> usize {
        self.log.bytes()
    }

    pub fn rows(&self) -> u64 {
        self.log.num_rows() as u64
    }

    pub fn stats(&self) -> BufferStats {
        BufferStats {
            bytes: self.bytes() as u64,
            rows: self.rows(),
            age: self.since.elapsed(),
        }
    }
}

/// Deletes of one partition not flushed yet.
#[derive(Debug, Clone, Default)]
pub struct DeleteBuffer {
    pub primary_keys: Keys,
    pub timestamps: Vec<u64>,
}

/// Everything a channel holds, taken whole by a flush.
#[derive(Debug, Clone, Default)]
pub struct ChannelBuffer {
    pub segments: BTreeMap<i64, SegmentBuffer>,
    /// (collection, partition) -> deletes.
    pub deletes: BTreeMap<(i64, i64), DeleteBuffer>,
}

impl ChannelBuffer {
    pub fn bytes(&self) -> usize {
        self.segments
            .values()
            .map(SegmentBuffer::bytes)
            .sum::<usize>()
            + self
                .deletes
                .values()
                .map(|d| d.primary_keys.byte_size() + d.timestamps.capacity() * 8)
                .sum::<usize>()
    }

    pub fn is_empty(&self) -> bool {
        self.segments.is_empty() && self.deletes.is_empty()
    }

    pub fn rows(&self) -> u64 {
        self.segments.values().map(SegmentBuffer::rows).sum()
    }

    /// Age of the oldest buffered data.
    pub fn age(&self) -> Duration {
        self.segments
            .values()
            .map(|s| s.since.elapsed())
            .max()
            .unwrap_or_default()
    }
}

/// What a flush policy looks at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BufferStats {
    pub bytes: u64,
    pub rows: u64,
    pub age: Duration,
}

/// Decides when a segment buffer must be flushed. Users may add their own; the
/// data node flushes the whole channel when any segment's policy says so, so that
/// the channel checkpoint covers exactly what was written.
pub trait FlushPolicy: Send + Sync + std::fmt::Debug {
    /// `Some(reason)` when the buffer should be flushed now.
    fn should_flush(&self, stats: &BufferStats) -> Option<&'static str>;
}

/// When a segment buffer is flushed: at a size, a row count or an age, whichever
/// comes first (defaults in `milvus_like_api::settings::defaults`).
#[derive(Debug, Clone)]
pub struct ThresholdPolicy {
    pub max_bytes: u64,
    pub max_rows: u64,
    pub max_age: Duration,
}

impl Default for ThresholdPolicy {
    fn default() -> Self {
        Self {
            max_bytes: defaults::FLUSH_MIB << 20,
            max_rows: defaults::FLUSH_ROWS,
            max_age: defaults::FLUSH_AGE,
        }
    }
}

impl FlushPolicy for ThresholdPolicy {
    fn should_flush(&self, s: &BufferStats) -> Option<&'static str> {
        if s.bytes >= self.max_bytes {
            Some("size")
        } else if s.rows >= self.max_rows {
            Some("rows")
        } else if s.age >= self.max_age && s.rows > 0 {
            Some("age")
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thresholds() {
        let p = ThresholdPolicy {
            max_bytes: 1000,
            max_rows: 10,
            max_age: Duration::from_secs(30),
        };
        let stats = |bytes, rows, secs| BufferStats {
            bytes,
            rows,
            age: Duration::from_secs(secs),
        };
        assert_eq!(p.should_flush(&stats(10, 1, 0)), None);
        assert_eq!(p.should_flush(&stats(1000, 1, 0)), Some("size"));
        assert_eq!(p.should_flush(&stats(10, 10, 0)), Some("rows"));
        assert_eq!(p.should_flush(&stats(10, 1, 30)), Some("age"));
        assert_eq!(p.should_flush(&stats(0, 0, 31)), None, "nothing to flush");
    }
}
