//! A collection's content read back from its segment files, with deletes applied,
//! and the order-independent checksum that lets tests compare it with what they
//! inserted.
//!
//! # Row checksum
//!
//! `row_checksum = fmix64(fnv1a64(bytes))`, where `bytes` encodes the row's value of
//! every schema field, in schema order, each followed by the separator byte `0x1F`:
//!
//! | field type        | bytes                                               |
//! |-------------------|-----------------------------------------------------|
//! | BOOL              | `0x00` or `0x01`                                    |
//! | INT8, INT16, INT32| the value as i32, 4 bytes little-endian             |
//! | INT64             | 8 bytes little-endian (the primary key is one)      |
//! | FLOAT             | `f32::to_bits`, 4 bytes little-endian               |
//! | DOUBLE            | `f64::to_bits`, 8 bytes little-endian               |
//! | VARCHAR           | byte length as u32 little-endian, then the UTF-8    |
//! | FLOAT_VECTOR      | each component's `f32::to_bits`, 4 bytes LE each    |
//!
//! FNV-1a 64: start at `0xcbf29ce484222325`; for each byte `h = (h ^ b) * 0x100000001b3`
//! (wrapping). fmix64 (MurmurHash3's finalizer) spreads FNV's weak low bits:
//! `h ^= h >> 33; h *= 0xff51afd7ed558ccd; h ^= h >> 33; h *= 0xc4ceb9fe1a85ec53;
//! h ^= h >> 33`. The timestamp is not part of it. A collection's checksum is the
//! wrapping sum of its live rows' checksums, so neither row order nor how the rows
//! are split into files changes it.

use std::collections::{BTreeMap, HashSet};

use futures::{StreamExt, TryStreamExt};
use milvus_like_api::proto::{DeleteLog, SegmentInfo};
use milvus_like_api::schema::CollectionSchema;

use super::{SegmentStore, StorageError};
use crate::columns::{Column, RowBatch};
use crate::deletes::DeleteSet;
use crate::keys::{Key, KeyRef};

/// Insert logs read at the same time.
const READ_CONCURRENCY: usize = 4;
/// Vector components shown in a sample row.
const SAMPLE_VECTOR_COMPONENTS: usize = 4;

/// What a collection holds once deletes are applied.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CollectionContent {
    /// Live rows.
    pub rows: u64,
    /// Wrapping sum of the live rows' [`row_checksum`]s.
    pub checksum: u64,
    /// Insert-log rows hidden by a later delete of their primary key.
    pub deleted: u64,
    /// The first live rows (segments, then files, then rows in the order given),
    /// rendered as `id=1, vec=[0.1, 0.2, 0.3, 0.4, … 128 dims], _ts=4500`.
    pub sample: Vec<String>,
}

/// Live rows counted per block of `size` consecutive primary keys (block
/// `key.div_euclid(size)`), with each block's checksum, and the keys found
/// more than once: to compare a collection, block by block, with the insert
/// requests that were acknowledged (one request = one block of keys) and to
/// prove that none landed twice. Holds every key: for tests and checks, not
/// for billions of rows. VARCHAR keys are counted as duplicates only (they
/// have no blocks).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyBlocks {
    pub size: u64,
    /// block -> (rows, wrapping sum of their row checksums)
    pub blocks: BTreeMap<i64, (u64, u64)>,
    /// Keys met again after their first row.
    pub duplicates: u64,
    seen: HashSet<Key>,
}

impl KeyBlocks {
    pub fn new(size: u64) -> Self {
        Self {
            size: size.max(1),
            ..Self::default()
        }
    }

    pub fn add(&mut self, schema: &CollectionSchema, rows: &RowBatch) {
        let size = i64::try_from(self.size).unwrap_or(i64::MAX);
        for (row, key) in rows.primary_keys(schema).iter().enumerate() {
            if !self.seen.insert(key.to_owned()) {
                self.duplicates += 1;
            }
            let KeyRef::Int(key) = key else { continue };
            let block = self.blocks.entry(key.div_euclid(size)).or_default();
            block.0 += 1;
            block.1 = block.1.wrapping_add(row_checksum(schema, rows, row));
        }
    }
}

/// Reads every insert log of `segments` (`SegmentInfo.insert_log_paths`) and every
/// delete log (`delete_logs` and `SegmentInfo.delete_log_paths`; a path listed
/// twice is read once), and applies the deletes: a row (pk, ts) is gone if a
/// delete (pk, dts) with dts > ts exists. A row inserted after the delete of its
/// key stays. The caller picks the segments (e.g. leaves out dropped ones).
pub async fn read_collection(
    store: &SegmentStore,
    schema: &CollectionSchema,
    segments: &[SegmentInfo],
    delete_logs: &[DeleteLog],
    sample: usize,
) -> Result<CollectionContent, StorageError> {
    read_collection_blocks(store, schema, segments, delete_logs, sample, None).await
}

/// [`read_collection`], also counting the live rows into `blocks`.
pub async fn read_collection_blocks(
    store: &SegmentStore,
    schema: &CollectionSchema,
    segments: &[SegmentInfo],
    delete_logs: &[DeleteLog],
    sample: usize,
    mut blocks: Option<&mut KeyBlocks>,
) -> Result<CollectionContent, StorageError> {
    let mut content = CollectionContent::default();
    let deleted = for_each_live_batch(
        store,
        schema,
        segments,
        delete_logs,
        |rows: RowBatch, timestamps: Vec<u64>| {
            if let Some(b) = blocks.as_deref_mut() {
                b.add(schema, &rows);
            }
            content.rows += rows.num_rows as u64;
            content.checksum = content.checksum.wrapping_add(batch_checksum(schema, &rows));
            for (row, ts) in timestamps.iter().enumerate() {
                if content.sample.len() >= sample {
                    break;
                }
                content.sample.push(render_row(schema, &rows, row, *ts));
            }
            Ok::<_, StorageError>(())
        },
    )
    .await?;
    content.deleted = deleted;
    Ok(content)
}

/// The live rows of a collection, one insert log at a time, for callers that
/// need the rows themselves (`milvus-like export`): reads the files as
/// [`read_collection`] does, applies the deletes the same way, and hands `each`
/// every insert log's surviving rows (in segment, then file, then row order) with
/// their timestamps. Files without a surviving row are skipped. Returns how many
/// rows the deletes hid. An error of `each` stops the reading and is returned.
pub async fn for_each_live_batch<E, F>(
    store: &SegmentStore,
    schema: &CollectionSchema,
    segments: &[SegmentInfo],
    delete_logs: &[DeleteLog],
    mut each: F,
) -> Result<u64, E>
where
    E: From<StorageError>,
    F: FnMut(RowBatch, Vec<u64>) -> Result<(), E>,
{
    let mut seen = HashSet::new();
    let delete_paths: Vec<&str> = delete_logs
        .iter()
        .map(|d| d.path.as_str())
        .chain(
            segments
                .iter()
                .flat_map(|s| s.delete_log_paths.iter().map(String::as_str)),
        )
        .filter(|p| seen.insert(*p))
        .collect();
    // Read at "now": a row is gone iff a delete of its key came after it.
    let mut delete_set = DeleteSet::new();
    let mut deletes = futures::stream::iter(&delete_paths)
        .map(|path| store.read_delete_log(path))
        .buffered(READ_CONCURRENCY);
    while let Some((keys, timestamps)) = deletes.try_next().await? {
        delete_set.extend(&keys, &timestamps);
    }

    let mut seen = HashSet::new();
    let insert_paths: Vec<&str> = segments
        .iter()
        .flat_map(|s| s.insert_log_paths.iter().map(String::as_str))
        .filter(|p| seen.insert(*p))
        .collect();
    let mut deleted = 0;
    let mut files = futures::stream::iter(&insert_paths)
        .map(|path| async move {
            Ok::<_, StorageError>((path, store.read_insert_log(path, schema).await?))
        })
        .buffered(READ_CONCURRENCY);
    while let Some((path, (rows, timestamps))) = files.try_next().await? {
        let keys = rows.primary_keys(schema);
        if keys.len() != rows.num_rows || timestamps.len() != rows.num_rows {
            return Err(StorageError::Corrupt {
                path: (*path).to_owned(),
                reason: format!(
                    "{} rows but {} primary keys and {} timestamps",
                    rows.num_rows,
                    keys.len(),
                    timestamps.len()
                ),
            }
            .into());
        }
        let live: Vec<usize> = keys
            .iter()
            .zip(&timestamps)
            .enumerate()
            .filter(|(_, (pk, ts))| delete_set.visible(*pk, **ts, u64::MAX))
            .map(|(row, _)| row)
            .collect();
        deleted += (rows.num_rows - live.len()) as u64;
        if live.is_empty() {
            continue;
        }
        if live.len() == rows.num_rows {
            each(rows, timestamps)?;
        } else {
            let kept = live.iter().map(|&row| timestamps[row]).collect();
            each(rows.take(&live), kept)?;
        }
    }
    Ok(deleted)
}

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;
const FIELD_SEPARATOR: u8 = 0x1f;

/// FNV-1a 64 of `bytes` (the raw state, without [`Fnv1a::finish`]'s mix).
pub fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h = Fnv1a(FNV_OFFSET);
    h.write(bytes);
    h.0
}

/// FNV-1a 64, fed incrementally.
struct Fnv1a(u64);

impl Fnv1a {
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0 ^ u64::from(*b)).wrapping_mul(FNV_PRIME);
        }
    }

    /// FNV-1a's state through MurmurHash3's fmix64.
    fn finish(&self) -> u64 {
        let mut h = self.0;
        h ^= h >> 33;
        h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
        h ^= h >> 33;
        h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
        h ^ (h >> 33)
    }
}

/// Order-independent content checksum of one row: a 64-bit hash of every field
/// value (the primary key included, bitwise for floats), not the timestamp; see
/// the module documentation for the exact definition. A row index past the end
/// hashes as if the row had no values (it never panics).
pub fn row_checksum(schema: &CollectionSchema, rows: &RowBatch, row: usize) -> u64 {
    let mut h = Fnv1a(FNV_OFFSET);
    for column in rows.columns.iter().take(schema.fields().len()) {
        match column {
            Column::Bool(v) => {
                if let Some(x) = v.get(row) {
                    h.write(&[u8::from(*x)]);
                }
            }
            Column::Int(v) => {
                if let Some(x) = v.get(row) {
                    h.write(&x.to_le_bytes());
                }
            }
            Column::Long(v) => {
                if let Some(x) = v.get(row) {
                    h.write(&x.to_le_bytes());
                }
            }
            Column::Float(v) => {
                if let Some(x) = v.get(row) {
                    h.write(&x.to_bits().to_le_bytes());
                }
            }
            Column::Double(v) => {
                if let Some(x) = v.get(row) {
                    h.write(&x.to_bits().to_le_bytes());
                }
            }
            Column::Str(v) => {
                if let Some(s) = v.get(row) {
                    let len = u32::try_from(s.len()).unwrap_or(u32::MAX);
                    h.write(&len.to_le_bytes());
                    h.write(s.as_bytes());
                }
            }
            Column::Vector { dim, values } => {
                // Each float's bits, little-endian: the bytes as held.
                if let Some(vector) = values.row_le_bytes(*dim as usize, row) {
                    h.write(vector);
                }
            }
        }
        h.write(&[FIELD_SEPARATOR]);
    }
    h.finish()
}

/// Wrapping sum of [`row_checksum`] over every row of `rows`: what
/// [`read_collection`] reports for the same rows, however they were split.
pub fn batch_checksum(schema: &CollectionSchema, rows: &RowBatch) -> u64 {
    (0..rows.num_rows).fold(0u64, |sum, row| {
        sum.wrapping_add(row_checksum(schema, rows, row))
    })
}

/// `id=1, vec=[0.1, 0.2, 0.3, 0.4, … 128 dims], title="a", _ts=4500`
fn render_row(schema: &CollectionSchema, rows: &RowBatch, row: usize, ts: u64) -> String {
    let mut parts: Vec<String> = schema
        .fields()
        .iter()
        .zip(&rows.columns)
        .map(|(f, column)| {
            let value = match column {
                Column::Bool(v) => v.get(row).map(ToString::to_string),
                Column::Int(v) => v.get(row).map(ToString::to_string),
                Column::Long(v) => v.get(row).map(ToString::to_string),
                Column::Float(v) => v.get(row).map(ToString::to_string),
                Column::Double(v) => v.get(row).map(ToString::to_string),
                Column::Str(v) => v.get(row).map(|s| format!("{s:?}")),
                Column::Vector { dim, values } => {
                    let d = *dim as usize;
                    values.row(d, row).map(|vector| {
                        let shown: Vec<String> = vector
                            .take(SAMPLE_VECTOR_COMPONENTS)
                            .map(|x| x.to_string())
                            .collect();
                        if d > SAMPLE_VECTOR_COMPONENTS {
                            format!("[{}, … {d} dims]", shown.join(", "))
                        } else {
                            format!("[{}]", shown.join(", "))
                        }
                    })
                }
            };
            format!("{}={}", f.name, value.unwrap_or_else(|| "?".into()))
        })
        .collect();
    parts.push(format!("{}={ts}", super::format::TS_COLUMN));
    parts.join(", ")
}
