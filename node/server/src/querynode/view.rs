//! What a query node serves for one channel: per loaded collection, the rows of
//! the files committed at or below a checkpoint C plus the rows read from the
//! log from C on (docs/read-path-design.md, 3.6).
//!
//! The handoff is by offsets, never by timestamps: a file is tagged with the
//! checkpoint of the commit that recorded it, and a checkpoint covers exactly
//! the records below it. Moving a collection from C to C' adds the files tagged
//! in (C, C'] and drops the log records below C': each record is then counted
//! from exactly one side, whatever the timestamps. Deletes are a union (adding
//! one twice changes nothing), so those from delete logs and those from the log
//! all go into one [`DeleteSet`].
//!
//! Every collection remembers the offsets below which it holds everything
//! (`have`). A record at offset `o` of a stream extends every collection whose
//! `have` is `o` (the record's own collection takes its rows; the others just
//! move on), is old news to those past it, and reveals a gap to those below it:
//! then the follower reads again from the lowest `have` ([`ChannelView::want`]).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use milvus_like_api::schema::{CollectionSchema, Metric};

use crate::columns::{Column, RowBatch};
use crate::deletes::DeleteSet;
use crate::filter::Filter;
use crate::index::HnswIndex;
use crate::keys::{KeyRef, Keys, KeysRef};
use crate::msgstream::Stream;
use crate::search::{self, Hit, SearchError};
use crate::storage::content::row_checksum;

/// Next offsets of a channel's insert and delete streams.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Offsets {
    pub insert: i64,
    pub delete: i64,
}

impl Offsets {
    pub fn get(&self, stream: Stream) -> i64 {
        match stream {
            Stream::Insert => self.insert,
            Stream::Delete => self.delete,
        }
    }

    fn get_mut(&mut self, stream: Stream) -> &mut i64 {
        match stream {
            Stream::Insert => &mut self.insert,
            Stream::Delete => &mut self.delete,
        }
    }

    /// Both offsets at or past `other`'s.
    pub fn covers(&self, other: &Offsets) -> bool {
        self.insert >= other.insert && self.delete >= other.delete
    }

    fn max(self, other: Offsets) -> Offsets {
        Offsets {
            insert: self.insert.max(other.insert),
            delete: self.delete.max(other.delete),
        }
    }

    fn min(self, other: Offsets) -> Offsets {
        Offsets {
            insert: self.insert.min(other.insert),
            delete: self.delete.min(other.delete),
        }
    }
}

/// Rows with their timestamps: a loaded insert log or one insert record.
#[derive(Debug, Clone)]
pub struct Block {
    rows: RowBatch,
    timestamps: Vec<u64>,
    /// The newest of `timestamps` (0 for no rows): a read at or after it sees
    /// every row inserted. `u64::MAX` when there is not one timestamp per row,
    /// so that every row is then checked on its own (and one without a
    /// timestamp refused).
    newest_ts: u64,
}

impl Block {
    pub fn new(rows: RowBatch, timestamps: Vec<u64>) -> Self {
        let newest_ts = if timestamps.len() == rows.num_rows {
            timestamps.iter().copied().max().unwrap_or(0)
        } else {
            u64::MAX
        };
        Self {
            rows,
            timestamps,
            newest_ts,
        }
    }
}

/// What a record of the log holds, once checked (`crate::ingest`).
#[derive(Debug)]
pub enum Record {
    Insert {
        collection: i64,
        block: Block,
    },
    Delete {
        collection: i64,
        keys: Keys,
        timestamps: Vec<u64>,
    },
    /// Junk, or nothing a reader takes: only its offset counts.
    Nothing,
}

/// The files of a collection on a channel at or below `checkpoint`
/// (from the data coordinator's `GetRecoveryInfo`), read.
#[derive(Debug, Default)]
pub struct Target {
    pub checkpoint: Offsets,
    /// Insert logs by path.
    pub insert_logs: Vec<(String, Block)>,
    /// Delete logs by path: keys and timestamps.
    pub delete_logs: Vec<(String, Keys, Vec<u64>)>,
    /// Indexes of `insert_logs`, read ahead: (insert log, index, bytes stored).
    pub indexes: Vec<(String, Arc<HnswIndex>, u64)>,
    /// Insert logs held that the target's files replace (a compaction wrote
    /// their rows into one of `insert_logs`): dropped in the same step, so
    /// that no read sees those rows twice or not at all.
    pub replaced: Vec<String>,
}

/// Why a view cannot answer.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ViewError {
    #[error("collection {0} is not loaded on this channel")]
    NotLoaded(i64),
    #[error(transparent)]
    Search(#[from] SearchError),
    /// A column could not be read back (a damaged block).
    #[error("{0}")]
    Field(String),
}

/// One loaded collection on one channel.
#[derive(Debug)]
struct Collection {
    schema: CollectionSchema,
    /// C: the files cover every record below it.
    checkpoint: Offsets,
    /// Loaded insert logs.
    sealed: BTreeMap<String, Block>,
    /// Insert records at offsets from `checkpoint.insert` on, by offset.
    growing: BTreeMap<i64, Block>,
    /// Delete logs loaded, by path.
    delete_logs: HashSet<String>,
    /// Indexes of loaded insert logs, by the insert log's path, with their
    /// bytes as stored (about what they hold in memory).
    indexes: HashMap<String, (Arc<HnswIndex>, u64)>,
    deletes: DeleteSet,
    /// Every record below these offsets is held (in files or from the log).
    have: Offsets,
}

impl Collection {
    /// Searches the loaded insert log at `path` through `index` from now on;
    /// false when the file is not loaded, the index does not match it, or the
    /// collection has no graph index (FLAT, or dropped: graphs left from an
    /// earlier index are not followed).
    fn attach(&mut self, path: &str, index: Arc<HnswIndex>, bytes: u64) -> bool {
        let Some(block) = self.sealed.get(path) else {
            return false;
        };
        if block.rows.num_rows != index.rows()
            || index.metric() != self.schema.metric
            || !self.schema.is_graph_indexed()
        {
            return false;
        }
        self.indexes.insert(path.to_owned(), (index, bytes));
        true
    }

    fn index_bytes(&self) -> u64 {
        self.indexes.values().map(|(_, bytes)| bytes).sum()
    }

    fn blocks(&self) -> impl Iterator<Item = &Block> {
        self.sealed.values().chain(self.growing.values())
    }

    fn add_target(&mut self, target: Target) {
        for path in &target.replaced {
            self.sealed.remove(path);
            self.indexes.remove(path);
        }
        for (path, block) in target.insert_logs {
            self.sealed.entry(path).or_insert(block);
        }
        for (path, index, bytes) in target.indexes {
            self.attach(&path, index, bytes);
        }
        for (path, keys, timestamps) in target.delete_logs {
            if self.delete_logs.insert(path) {
                self.deletes.extend(&keys, &timestamps);
            }
        }
        self.growing = self.growing.split_off(&target.checkpoint.insert);
        self.checkpoint = target.checkpoint;
        self.have = self.have.max(target.checkpoint);
    }
}

/// Rows and the checksum of what a reader sees.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Count {
    pub rows: u64,
    /// Wrapping sum of the rows' `storage::content::row_checksum`s: equal to the
    /// read-back's for the same rows.
    pub checksum: u64,
}

/// Sizes, for reports and metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ViewStats {
    pub checkpoint: Offsets,
    pub have: Offsets,
    pub sealed_files: usize,
    pub sealed_rows: u64,
    pub growing_rows: u64,
    pub deletes: u64,
    pub indexed_files: usize,
}

/// A channel's loaded collections.
#[derive(Debug, Default)]
pub struct ChannelView {
    collections: HashMap<i64, Collection>,
}

/// What the follower must do after a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    Done,
    /// A collection is missing records below this record: read again from
    /// [`ChannelView::want`].
    Gap,
}

impl ChannelView {
    pub fn is_loaded(&self, collection: i64) -> bool {
        self.collections.contains_key(&collection)
    }

    pub fn collections(&self) -> impl Iterator<Item = i64> + '_ {
        self.collections.keys().copied()
    }

    /// Starts serving `collection` from `target`; a collection loaded already is
    /// moved to the target instead (see [`Self::advance`]).
    pub fn load(&mut self, collection: i64, schema: CollectionSchema, target: Target) {
        if self.collections.contains_key(&collection) {
            self.advance(collection, target);
            return;
        }
        let mut c = Collection {
            schema,
            checkpoint: Offsets::default(),
            sealed: BTreeMap::new(),
            growing: BTreeMap::new(),
            delete_logs: HashSet::new(),
            indexes: HashMap::new(),
            deletes: DeleteSet::new(),
            have: target.checkpoint,
        };
        c.add_target(target);
        self.collections.insert(collection, c);
    }

    pub fn release(&mut self, collection: i64) {
        self.collections.remove(&collection);
    }

    /// Whether `collection` holds the insert or delete log at `path`.
    pub fn has_file(&self, collection: i64, path: &str) -> bool {
        self.collections
            .get(&collection)
            .is_some_and(|c| c.sealed.contains_key(path) || c.delete_logs.contains(path))
    }

    /// Whether the insert log at `path` is searched through its index.
    pub fn has_index(&self, collection: i64, path: &str) -> bool {
        self.collections
            .get(&collection)
            .is_some_and(|c| c.indexes.contains_key(path))
    }

    /// Searches the loaded insert log at `path` through `index` (`bytes` as
    /// stored) from now on; false when the file is not loaded (or no longer) or
    /// the index does not match it.
    pub fn attach_index(
        &mut self,
        collection: i64,
        path: &str,
        index: Arc<HnswIndex>,
        bytes: u64,
    ) -> bool {
        self.collections
            .get_mut(&collection)
            .is_some_and(|c| c.attach(path, index, bytes))
    }

    /// The insert logs `collection` holds (none when not loaded).
    pub fn insert_logs(&self, collection: i64) -> Vec<String> {
        self.collections
            .get(&collection)
            .map(|c| c.sealed.keys().cloned().collect())
            .unwrap_or_default()
    }

    /// Bytes the loaded collections hold: rows with their timestamps, deletes
    /// and indexes, as accounted for the memory limit.
    pub fn bytes(&self) -> u64 {
        self.collections
            .values()
            .map(|c| {
                let rows: usize = c
                    .blocks()
                    .map(|b| b.rows.byte_size() + b.timestamps.len() * 8)
                    .sum();
                rows as u64 + c.deletes.len() as u64 * 16 + c.index_bytes()
            })
            .sum()
    }

    /// The collection's checkpoint C (`None` when not loaded).
    pub fn checkpoint(&self, collection: i64) -> Option<Offsets> {
        self.collections.get(&collection).map(|c| c.checkpoint)
    }

    /// Moves `collection` to a newer target: adds its files, drops the log
    /// records it covers. A target not at or past the current checkpoint (an
    /// older answer arriving late) changes nothing; returns whether it moved.
    pub fn advance(&mut self, collection: i64, target: Target) -> bool {
        let Some(c) = self.collections.get_mut(&collection) else {
            return false;
        };
        if !target.checkpoint.covers(&c.checkpoint) {
            return false;
        }
        c.add_target(target);
        true
    }

    /// Where the log must be read from so that no collection misses a record:
    /// the lowest `have` (`None` with nothing loaded).
    pub fn want(&self) -> Option<Offsets> {
        self.collections
            .values()
            .map(|c| c.have)
            .reduce(Offsets::min)
    }

    /// Takes the record at `offset` of `stream`.
    pub fn apply(&mut self, stream: Stream, offset: i64, record: Record) -> Applied {
        let mut gap = false;
        let (owner, mut record) = match record {
            Record::Insert { collection, .. } | Record::Delete { collection, .. } => {
                (Some(collection), Some(record))
            }
            Record::Nothing => (None, None),
        };
        for (id, c) in &mut self.collections {
            let have = c.have.get_mut(stream);
            if *have > offset {
                continue;
            }
            if *have < offset {
                gap = true;
                continue;
            }
            *have = offset + 1;
            if owner != Some(*id) {
                continue;
            }
            match record.take() {
                Some(Record::Insert { block, .. }) => {
                    c.growing.insert(offset, block);
                }
                Some(Record::Delete {
                    keys, timestamps, ..
                }) => c.deletes.extend(&keys, &timestamps),
                Some(Record::Nothing) | None => {}
            }
        }
        if gap { Applied::Gap } else { Applied::Done }
    }

    /// Whether `collection` holds every record below `offsets`.
    pub fn has(&self, collection: i64, offsets: &Offsets) -> Result<bool, ViewError> {
        let c = self.get(collection)?;
        Ok(c.have.covers(offsets))
    }

    fn get(&self, collection: i64) -> Result<&Collection, ViewError> {
        self.collections
            .get(&collection)
            .ok_or(ViewError::NotLoaded(collection))
    }

    /// Live rows of `collection` a reader at `read_ts` sees (those `filter`
    /// keeps, with one), with their checksum.
    pub fn count(
        &self,
        collection: i64,
        read_ts: u64,
        filter: Option<&Filter>,
    ) -> Result<Count, ViewError> {
        let c = self.get(collection)?;
        let mut count = Count::default();
        for block in c.blocks() {
            let keep = Selection::of(c, block, read_ts, filter);
            for row in (0..block.rows.num_rows).filter(|&i| keep.row(i)) {
                count.rows += 1;
                count.checksum =
                    count
                        .checksum
                        .wrapping_add(row_checksum(&c.schema, &block.rows, row));
            }
        }
        Ok(count)
    }

    /// The primary keys of the live rows at `read_ts`, sorted (repeats kept: a
    /// key seen twice is a row counted twice): the handoff tests' view of it.
    #[cfg(test)]
    pub fn live_keys(&self, collection: i64, read_ts: u64) -> Result<Vec<i64>, ViewError> {
        let rows = self.query(collection, read_ts, None, &[], usize::MAX)?;
        match rows.into_iter().next() {
            Some(Column::Long(keys)) => Ok(keys),
            _ => Ok(Vec::new()),
        }
    }

    /// The first `limit` live rows at `read_ts` that `filter` keeps, in primary
    /// key order: the primary key column, then the `output` columns (schema
    /// positions).
    pub fn query(
        &self,
        collection: i64,
        read_ts: u64,
        filter: Option<&Filter>,
        output: &[usize],
        limit: usize,
    ) -> Result<Vec<Column>, ViewError> {
        let c = self.get(collection)?;
        let blocks: Vec<&Block> = c.blocks().collect();
        let mut rows: Vec<(KeyRef<'_>, usize, usize)> = Vec::new();
        for (b, block) in blocks.iter().enumerate() {
            let keep = Selection::of(c, block, read_ts, filter);
            let keys = block.rows.primary_keys(&c.schema);
            rows.extend(
                keys.iter()
                    .enumerate()
                    .filter(|&(i, _)| keep.row(i))
                    .map(|(i, pk)| (pk, b, i)),
            );
        }
        rows.sort_unstable();
        rows.truncate(limit);
        let picks: Vec<(usize, usize)> = rows.iter().map(|&(_, b, i)| (b, i)).collect();
        let primary = c.schema.primary_key_index();
        std::iter::once(primary)
            .chain(output.iter().copied())
            .map(|column| gather(&c.schema, &blocks, column, &picks))
            .collect()
    }

    /// The `k` live rows at `read_ts` that the filter keeps nearest to each
    /// query, nearest first, with the output columns of each. Insert logs with
    /// an index are searched through it with breadth `ef` (unless the filter
    /// keeps few of their rows: then exactly); the others (small files, growing
    /// data) exactly.
    pub fn search(
        &self,
        collection: i64,
        params: &SearchParams<'_>,
    ) -> Result<(Metric, Vec<Found>), ViewError> {
        let c = self.get(collection)?;
        let metric = c.schema.metric;
        let k = params.k;
        let blocks: Vec<(&Block, Option<&Arc<HnswIndex>>)> = c
            .sealed
            .iter()
            .map(|(path, block)| (block, c.indexes.get(path).map(|(index, _)| index)))
            .chain(c.growing.values().map(|block| (block, None)))
            .collect();
        let selections: Vec<Selection<'_>> = blocks
            .iter()
            .map(|(block, _)| Selection::of(c, block, params.read_ts, params.filter))
            .collect();
        let rows: Vec<&Block> = blocks.iter().map(|(block, _)| *block).collect();
        let mut results = Vec::with_capacity(params.queries.len());
        for query in params.queries {
            let mut lists = Vec::new();
            for (b, ((block, index), keep)) in blocks.iter().zip(&selections).enumerate() {
                let Some((dim, values)) = block.rows.vectors(&c.schema) else {
                    continue;
                };
                let keys = block.rows.primary_keys(&c.schema);
                let visible = |i: usize| keep.row(i);
                let hits: Vec<(Hit, (usize, usize))> = match index.filter(|_| keep.dense) {
                    Some(index) => index
                        .search(query, k, params.ef, (!keep.all()).then_some(&visible))?
                        .into_iter()
                        .filter_map(|(row, score)| {
                            let id = keys.get(row)?.to_owned();
                            Some((Hit { id, score }, (b, row)))
                        })
                        .collect(),
                    None => search::flat_top_k_rows(metric, dim, values, keys, query, k, visible)?
                        .into_iter()
                        .map(|(hit, row)| (hit, (b, row)))
                        .collect(),
                };
                lists.push(hits);
            }
            let merged = search::merge_with(metric, &lists, k);
            let picks: Vec<(usize, usize)> = merged.iter().map(|(_, at)| *at).collect();
            let fields = params
                .output
                .iter()
                .map(|&column| gather(&c.schema, &rows, column, &picks))
                .collect::<Result<_, _>>()?;
            results.push(Found {
                hits: merged.into_iter().map(|(hit, _)| hit).collect(),
                fields,
            });
        }
        Ok((metric, results))
    }

    pub fn stats(&self, collection: i64) -> Result<ViewStats, ViewError> {
        let c = self.get(collection)?;
        Ok(ViewStats {
            checkpoint: c.checkpoint,
            have: c.have,
            sealed_files: c.sealed.len(),
            sealed_rows: c.sealed.values().map(|b| b.rows.num_rows as u64).sum(),
            growing_rows: c.growing.values().map(|b| b.rows.num_rows as u64).sum(),
            deletes: c.deletes.len() as u64,
            indexed_files: c.indexes.len(),
        })
    }
}

/// The answers of several channels to the same queries merged: per query the
/// `k` nearest hits, with the output columns (`output`, schema positions) of
/// the hits kept.
pub fn merge_found(
    schema: &CollectionSchema,
    output: &[usize],
    mut channels: Vec<Vec<Found>>,
    k: usize,
) -> Result<Vec<Found>, ViewError> {
    if channels.len() == 1 {
        return Ok(channels.pop().unwrap_or_default());
    }
    let queries = channels.first().map_or(0, Vec::len);
    if let Some(short) = channels.iter().find(|c| c.len() != queries) {
        return Err(ViewError::Field(format!(
            "a channel answered {} of {queries} queries",
            short.len()
        )));
    }
    (0..queries)
        .map(|q| {
            let answers: Vec<&Found> = channels.iter().map(|c| &c[q]).collect();
            let lists: Vec<Vec<(Hit, (usize, usize))>> = answers
                .iter()
                .enumerate()
                .map(|(a, found)| {
                    found
                        .hits
                        .iter()
                        .enumerate()
                        .map(|(row, hit)| (hit.clone(), (a, row)))
                        .collect()
                })
                .collect();
            let merged = search::merge_with(schema.metric, &lists, k);
            let picks: Vec<(usize, usize)> = merged.iter().map(|(_, at)| *at).collect();
            let fields: Vec<&[Column]> = answers.iter().map(|f| f.fields.as_slice()).collect();
            let fields = gather_columns(schema, output, &fields, &picks)?;
            Ok(Found {
                hits: merged.into_iter().map(|(hit, _)| hit).collect(),
                fields,
            })
        })
        .collect()
}

/// The answers of several channels to the same query ([`ChannelView::query`]:
/// columns `columns` (schema positions, the primary key first), rows in
/// primary key order) merged in primary key order, the first `limit` kept.
pub fn merge_rows(
    schema: &CollectionSchema,
    columns: &[usize],
    mut channels: Vec<Vec<Column>>,
    limit: usize,
) -> Result<Vec<Column>, ViewError> {
    if channels.len() == 1 {
        return Ok(channels.pop().unwrap_or_default());
    }
    let mut rows: Vec<(KeyRef<'_>, usize, usize)> = Vec::new();
    for (a, answer) in channels.iter().enumerate() {
        let keys = match answer.first() {
            Some(column @ (Column::Long(_) | Column::Str(_))) => KeysRef::of(Some(column)),
            _ => {
                return Err(ViewError::Field(
                    "a channel answered a query without primary keys".to_owned(),
                ));
            }
        };
        rows.extend(keys.iter().enumerate().map(|(row, pk)| (pk, a, row)));
    }
    rows.sort_unstable();
    rows.truncate(limit);
    let picks: Vec<(usize, usize)> = rows.iter().map(|&(_, a, row)| (a, row)).collect();
    let answers: Vec<&[Column]> = channels.iter().map(Vec::as_slice).collect();
    gather_columns(schema, columns, &answers, &picks)
}

/// Columns `columns` (schema positions) of the rows `picks` (answer, row) of
/// `answers`, whose `i`-th column holds `columns[i]`. An answer without one of
/// them is an error (leaving it out would shift the answers `picks` names).
fn gather_columns(
    schema: &CollectionSchema,
    columns: &[usize],
    answers: &[&[Column]],
    picks: &[(usize, usize)],
) -> Result<Vec<Column>, ViewError> {
    columns
        .iter()
        .enumerate()
        .map(|(i, &column)| {
            let sources = answers
                .iter()
                .map(|a| a.get(i))
                .collect::<Option<Vec<&Column>>>()
                .ok_or_else(|| ViewError::Field(format!("an answer has no column {i}")))?;
            gather_from(schema, &sources, column, picks)
        })
        .collect()
}

/// What a search asks of a channel.
#[derive(Debug, Clone, Copy)]
pub struct SearchParams<'a> {
    pub queries: &'a [Vec<f32>],
    pub k: usize,
    /// Search breadth in indexed files.
    pub ef: usize,
    pub read_ts: u64,
    pub filter: Option<&'a Filter>,
    /// Columns returned with each hit (schema positions).
    pub output: &'a [usize],
}

/// One query's answer: hits nearest first, and the output columns of them.
#[derive(Debug, Clone, PartialEq)]
pub struct Found {
    pub hits: Vec<Hit>,
    pub fields: Vec<Column>,
}

/// The rows of a block a reader sees: live at its timestamp, and kept by its
/// filter.
struct Selection<'a> {
    keys: KeysRef<'a>,
    timestamps: &'a [u64],
    deletes: &'a DeleteSet,
    read_ts: u64,
    /// The filter's answer per row (`None`: no filter).
    kept: Option<Vec<bool>>,
    /// Whether the filter keeps enough rows for a graph search to find its
    /// nearest among them: a graph walk through mostly refused rows misses
    /// results, so a selective filter is searched exactly (as Milvus does).
    dense: bool,
    /// Every row was inserted by `read_ts` and no delete is known: only the
    /// filter decides (a search then asks nothing per row when there is none).
    all_live: bool,
}

impl<'a> Selection<'a> {
    fn of(c: &'a Collection, block: &'a Block, read_ts: u64, filter: Option<&Filter>) -> Self {
        let kept = filter.map(|f| f.select(&block.rows));
        let dense = kept.as_ref().is_none_or(|kept| {
            kept.iter().filter(|k| **k).count() * DENSE_FILTER_DIVISOR >= kept.len()
        });
        Self {
            keys: block.rows.primary_keys(&c.schema),
            timestamps: &block.timestamps,
            deletes: &c.deletes,
            read_ts,
            kept,
            dense,
            all_live: block.newest_ts <= read_ts && c.deletes.is_empty(),
        }
    }

    fn row(&self, i: usize) -> bool {
        self.kept
            .as_ref()
            .is_none_or(|kept| kept.get(i).copied().unwrap_or(false))
            && (self.all_live
                || self
                    .keys
                    .get(i)
                    .zip(self.timestamps.get(i))
                    .is_some_and(|(pk, ts)| self.deletes.visible(pk, *ts, self.read_ts)))
    }

    /// Whether every row is selected.
    fn all(&self) -> bool {
        self.all_live && self.kept.is_none()
    }
}

/// A filter keeping fewer than 1 row in this many makes a search exact.
const DENSE_FILTER_DIVISOR: usize = 8;

/// Column `column` of the rows `picks` (block, row) of `blocks`.
fn gather(
    schema: &CollectionSchema,
    blocks: &[&Block],
    column: usize,
    picks: &[(usize, usize)],
) -> Result<Column, ViewError> {
    let sources = blocks
        .iter()
        .map(|b| b.rows.columns.get(column))
        .collect::<Option<Vec<&Column>>>()
        .ok_or_else(|| ViewError::Field(format!("a block has no column {column}")))?;
    gather_from(schema, &sources, column, picks)
}

/// The rows `picks` (source, row) of `sources`, which hold column `column`
/// (a schema position).
fn gather_from(
    schema: &CollectionSchema,
    sources: &[&Column],
    column: usize,
    picks: &[(usize, usize)],
) -> Result<Column, ViewError> {
    let field = schema
        .fields()
        .get(column)
        .ok_or_else(|| ViewError::Field(format!("no field at position {column}")))?;
    Column::gather(field.ty, sources, picks).map_err(|e| ViewError::Field(e.0))
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use proptest::test_runner::{Config, RngSeed};

    use super::*;
    use crate::cli::source::tests::minimal;
    use crate::keys::Key;

    const X: i64 = 1;
    const Y: i64 = 2;

    fn block(schema: &CollectionSchema, keys: &[i64], ts: u64) -> Block {
        let dim = schema.vector_field().1 as usize;
        let vectors: Vec<f32> = keys
            .iter()
            .flat_map(|k| std::iter::repeat_n(*k as f32, dim))
            .collect();
        let rows = RowBatch {
            columns: vec![
                Column::Long(keys.to_vec()),
                Column::Vector {
                    dim: dim as u32,
                    values: milvus_like_api::vectors::Floats::from(vectors),
                },
            ],
            num_rows: keys.len(),
        };
        Block::new(rows, (ts..ts + keys.len() as u64).collect())
    }

    /// One record of the model log.
    #[derive(Debug, Clone)]
    enum Rec {
        /// Rows of a collection: keys and first timestamp.
        Insert(i64, Vec<i64>, u64),
        /// A delete of a key of a collection at a timestamp.
        Delete(i64, i64, u64),
        Junk,
    }

    fn rec() -> impl Strategy<Value = (Stream, Rec)> {
        prop_oneof![
            3 => (prop_oneof![Just(X), Just(Y)], prop::collection::vec(0i64..40, 1..4), 1u64..100)
                .prop_map(|(c, k, t)| (Stream::Insert, Rec::Insert(c, k, t))),
            2 => (prop_oneof![Just(X), Just(Y)], 0i64..40, 1u64..100)
                .prop_map(|(c, k, t)| (Stream::Delete, Rec::Delete(c, k, t))),
            1 => prop_oneof![Just(Stream::Insert), Just(Stream::Delete)].prop_map(|s| (s, Rec::Junk)),
        ]
    }

    /// The model data node: commits a prefix of the log into files tagged with it.
    struct Commits {
        /// (checkpoint, insert files of X, delete files of X), in commit order.
        list: Vec<Target>,
    }

    /// The records of both streams, with offsets.
    fn streams(records: &[(Stream, Rec)]) -> Vec<(Stream, i64, Rec)> {
        let mut next = Offsets::default();
        records
            .iter()
            .map(|(s, r)| {
                let o = next.get_mut(*s);
                *o += 1;
                (*s, *o - 1, r.clone())
            })
            .collect()
    }

    fn to_record(schema: &CollectionSchema, r: &Rec) -> Record {
        match r {
            Rec::Insert(c, keys, ts) => Record::Insert {
                collection: *c,
                block: block(schema, keys, *ts),
            },
            Rec::Delete(c, key, ts) => Record::Delete {
                collection: *c,
                keys: Keys::Int(vec![*key]),
                timestamps: vec![*ts],
            },
            Rec::Junk => Record::Nothing,
        }
    }

    /// Commits at the given cut points (indexes into the record list, sorted):
    /// each commit's files hold X's records between the previous cut and it.
    fn commits(schema: &CollectionSchema, log: &[(Stream, i64, Rec)], cuts: &[usize]) -> Commits {
        let mut list = Vec::new();
        let mut from = 0;
        for (n, &cut) in cuts.iter().enumerate() {
            let mut target = Target::default();
            for (s, o, _) in &log[..cut] {
                *target.checkpoint.get_mut(*s) = o + 1;
            }
            for (i, (_, o, r)) in log.iter().enumerate().take(cut).skip(from) {
                match r {
                    Rec::Insert(c, keys, ts) if *c == X => target
                        .insert_logs
                        .push((format!("i/{n}/{i}/{o}"), block(schema, keys, *ts))),
                    Rec::Delete(c, key, ts) if *c == X => target.delete_logs.push((
                        format!("d/{n}/{i}/{o}"),
                        Keys::Int(vec![*key]),
                        vec![*ts],
                    )),
                    _ => {}
                }
            }
            from = cut;
            list.push(target);
        }
        Commits { list }
    }

    /// The targets up to commit `n` (all files of commits 0..=n, checkpoint of n).
    fn target_at(commits: &Commits, n: usize) -> Target {
        let mut t = Target {
            checkpoint: commits.list[n].checkpoint,
            ..Target::default()
        };
        for c in &commits.list[..=n] {
            t.insert_logs.extend(c.insert_logs.iter().cloned());
            t.delete_logs.extend(c.delete_logs.iter().cloned());
        }
        t
    }

    /// X's live keys if every record of X below `upto` was applied once.
    fn oracle(log: &[(Stream, i64, Rec)], upto: Offsets, read_ts: u64) -> Vec<i64> {
        let below = |s: &Stream, o: &i64| *o < upto.get(*s);
        let mut deletes = DeleteSet::new();
        for (s, o, r) in log {
            if let Rec::Delete(c, key, ts) = r
                && *c == X
                && below(s, o)
            {
                deletes.add(KeyRef::Int(*key), *ts);
            }
        }
        let mut keys = Vec::new();
        for (s, o, r) in log {
            if let Rec::Insert(c, ks, ts) = r
                && *c == X
                && below(s, o)
            {
                for (i, k) in ks.iter().enumerate() {
                    if deletes.visible(KeyRef::Int(*k), ts + i as u64, read_ts) {
                        keys.push(*k);
                    }
                }
            }
        }
        keys.sort_unstable();
        keys
    }

    /// One step of the model follower.
    #[derive(Debug, Clone)]
    enum Step {
        /// Read the next `n` records from where the follower is.
        Read(usize),
        /// Move X to the target of commit `n` (modulo the commit count).
        Advance(usize),
        /// Read again from `want` (a restart of the consumer).
        Seek,
        /// The consumer skips records of a stream (a log that lost them, or
        /// records fetched for an earlier position).
        Lose(Stream, i64),
    }

    fn step() -> impl Strategy<Value = Step> {
        prop_oneof![
            4 => (1usize..6).prop_map(Step::Read),
            2 => (0usize..8).prop_map(Step::Advance),
            1 => Just(Step::Seek),
            1 => (prop_oneof![Just(Stream::Insert), Just(Stream::Delete)], 1i64..4)
                .prop_map(|(s, n)| Step::Lose(s, n)),
        ]
    }

    proptest! {
        #![proptest_config(Config {
            cases: 512,
            rng_seed: RngSeed::Fixed(15),
            ..Config::default()
        })]

        /// Whatever the order of reads, commits and target moves (behind or ahead
        /// of the follower, older targets arriving late), X holds exactly the
        /// records below its `have`, each once, and reads at any timestamp agree
        /// with applying those records one by one.
        #[test]
        fn handoff_counts_every_record_once(
            records in prop::collection::vec(rec(), 1..40),
            cut_points in prop::collection::vec(0usize..40, 1..5),
            load_at in 0usize..8,
            steps in prop::collection::vec(step(), 1..30),
            read_ts in prop_oneof![Just(u64::MAX), 0u64..120],
        ) {
            let schema = minimal(2);
            let log = streams(&records);
            let mut cuts: Vec<usize> = cut_points.iter().map(|c| c % (log.len() + 1)).collect();
            cuts.sort_unstable();
            let commits = commits(&schema, &log, &cuts);
            let mut view = ChannelView::default();
            // Y is followed from the start of the log, X from a commit.
            view.load(Y, schema.clone(), Target::default());
            view.load(X, schema.clone(), target_at(&commits, load_at % commits.list.len()));
            // Where the follower reads: the position in each stream.
            let mut reading = view.want().unwrap_or_default();
            for step in steps {
                match step {
                    Step::Read(n) => {
                        let next = log.iter().filter(|(s, o, _)| *o >= reading.get(*s));
                        // Streams interleave in log order from the follower's positions.
                        let batch: Vec<_> = next.take(n).cloned().collect();
                        for (s, o, r) in batch {
                            *reading.get_mut(s) = o + 1;
                            if view.apply(s, o, to_record(&schema, &r)) == Applied::Gap {
                                reading = view.want().unwrap_or_default();
                                break;
                            }
                        }
                    }
                    Step::Advance(n) => {
                        view.advance(X, target_at(&commits, n % commits.list.len()));
                        let want = view.want().unwrap_or_default();
                        if !reading.covers(&want) {
                            reading = want;
                        }
                    }
                    Step::Seek => reading = view.want().unwrap_or_default(),
                    Step::Lose(s, n) => *reading.get_mut(s) += n,
                }
                let have = view.stats(X).map(|s| s.have);
                prop_assert!(have.is_ok());
                let have = have.unwrap_or_default();
                prop_assert_eq!(view.live_keys(X, read_ts).ok(), Some(oracle(&log, have, read_ts)));
                let count = view.count(X, read_ts, None).map(|c| c.rows);
                prop_assert_eq!(count.ok(), Some(oracle(&log, have, read_ts).len() as u64));
            }
        }
    }

    #[test]
    fn a_record_past_the_next_offset_is_a_gap_and_an_older_target_is_ignored() {
        let schema = minimal(2);
        let mut view = ChannelView::default();
        let at = |insert, delete| Target {
            checkpoint: Offsets { insert, delete },
            ..Target::default()
        };
        view.load(X, schema.clone(), at(5, 2));
        assert_eq!(
            view.want(),
            Some(Offsets {
                insert: 5,
                delete: 2
            })
        );
        let insert = |keys: &[i64]| Record::Insert {
            collection: X,
            block: block(&schema, keys, 10),
        };
        assert_eq!(
            view.apply(Stream::Insert, 4, insert(&[1])),
            Applied::Done,
            "below C: old news"
        );
        assert_eq!(view.apply(Stream::Insert, 6, insert(&[2])), Applied::Gap);
        assert_eq!(view.apply(Stream::Insert, 5, insert(&[3])), Applied::Done);
        assert_eq!(view.live_keys(X, u64::MAX), Ok(vec![3]));
        assert!(!view.advance(X, at(4, 2)), "an older target");
        assert!(view.advance(X, at(6, 2)));
        assert_eq!(
            view.live_keys(X, u64::MAX),
            Ok(vec![]),
            "offset 5 is in files now"
        );
        assert_eq!(view.count(Y, 0, None), Err(ViewError::NotLoaded(Y)));
    }

    #[test]
    fn indexed_files_are_searched_through_their_index_and_the_rest_exactly() {
        let schema = minimal(2);
        let keys: Vec<i64> = (0..200).collect();
        let mut view = ChannelView::default();
        let target = Target {
            checkpoint: Offsets {
                insert: 1,
                delete: 0,
            },
            insert_logs: vec![("f".into(), block(&schema, &keys, 10))],
            ..Target::default()
        };
        view.load(X, schema.clone(), target);
        let query = vec![vec![0.0, 0.0]];
        let exact = nearest(&view, &query, None).expect("search");
        assert_eq!(exact[0].hits[0].id, 0, "row 0 holds the vector (0, 0)");
        // An index of other vectors (row i holds 199 - i): answers that can only
        // come from it show that the file is searched through it.
        let reversed: Vec<f32> = keys
            .iter()
            .rev()
            .flat_map(|k| [*k as f32, *k as f32])
            .collect();
        let build = |vectors: Vec<f32>| {
            let params = crate::index::HnswParams::default();
            Arc::new(
                HnswIndex::build(Metric::L2, 2, &vectors.into(), params, &|| false).expect("build"),
            )
        };
        let index = build(reversed);
        assert!(
            !view.attach_index(X, "f", build(vec![0.0; 4]), 10),
            "rows differ"
        );
        assert!(
            !view.attach_index(X, "g", index.clone(), 10),
            "no such file"
        );
        let before = view.bytes();
        assert!(view.attach_index(X, "f", index, 1000));
        assert_eq!(view.bytes(), before + 1000, "the index is accounted");
        assert!(view.has_index(X, "f"));
        let through = nearest(&view, &query, None).expect("search");
        assert_eq!(through[0].hits[0].id, 199);
        // Rows inserted after the read (row i at timestamp 10 + i) are not
        // returned, even with no delete known: row 40 is the nearest of rows 0..=40.
        let early = nearest_at(&view, &query, None, 50).expect("search");
        assert_eq!(early[0].hits[0].id, 40);
        // A filter keeping few rows is searched exactly, one keeping many
        // through the index.
        let few = Filter::parse("id in [3, 4]", &schema).expect("filter");
        let found = nearest(&view, &query, Some(&few)).expect("search");
        assert_eq!(found[0].hits[0].id, 3);
        let many = Filter::parse("id >= 3", &schema).expect("filter");
        let found = nearest(&view, &query, Some(&many)).expect("search");
        assert_eq!(found[0].hits[0].id, 199);
        // Nor a row deleted by the read, through the index.
        let delete = Record::Delete {
            collection: X,
            keys: Keys::Int(vec![199]),
            timestamps: vec![500],
        };
        assert_eq!(view.apply(Stream::Delete, 0, delete), Applied::Done);
        let after = nearest(&view, &query, None).expect("search");
        assert_eq!(after[0].hits[0].id, 198, "199 is deleted");
        let before = nearest_at(&view, &query, None, 499).expect("search");
        assert_eq!(before[0].hits[0].id, 199, "not deleted yet at 499");
        assert_eq!(
            nearest(&view, &[vec![0.0; 3]], None),
            Err(ViewError::Search(SearchError::WrongDimension {
                got: 3,
                dim: 2
            }))
        );
    }

    /// The nearest row of X to each query, at any time.
    fn nearest(
        view: &ChannelView,
        queries: &[Vec<f32>],
        filter: Option<&Filter>,
    ) -> Result<Vec<Found>, ViewError> {
        nearest_at(view, queries, filter, u64::MAX)
    }

    /// The nearest row of X to each query, read at `read_ts`.
    fn nearest_at(
        view: &ChannelView,
        queries: &[Vec<f32>],
        filter: Option<&Filter>,
        read_ts: u64,
    ) -> Result<Vec<Found>, ViewError> {
        let params = SearchParams {
            queries,
            k: 1,
            ef: 16,
            read_ts,
            filter,
            output: &[],
        };
        view.search(X, &params).map(|(_, found)| found)
    }

    /// A compaction's file comes in with its index and the files it replaces
    /// go in the same step, at the same checkpoint: every row once.
    #[test]
    fn replaced_files_leave_as_their_compacted_file_comes() {
        let schema = minimal(2);
        let mut view = ChannelView::default();
        let at = Offsets {
            insert: 10,
            delete: 0,
        };
        view.load(
            X,
            schema.clone(),
            Target {
                checkpoint: at,
                insert_logs: vec![
                    ("a".into(), block(&schema, &[1, 2], 1)),
                    ("b".into(), block(&schema, &[3], 3)),
                ],
                ..Target::default()
            },
        );
        let merged = block(&schema, &[1, 2, 3], 1);
        let vectors = merged.rows.vectors(&schema).expect("vectors").1.clone();
        let index = HnswIndex::build(schema.metric, 2, &vectors, Default::default(), &|| false)
            .expect("index");
        let moved = view.advance(
            X,
            Target {
                checkpoint: at,
                insert_logs: vec![("ab".into(), merged)],
                indexes: vec![("ab".into(), Arc::new(index), 100)],
                replaced: vec!["a".into(), "b".into()],
                ..Target::default()
            },
        );
        assert!(moved);
        assert_eq!(view.insert_logs(X), vec!["ab".to_owned()]);
        assert!(view.has_index(X, "ab"));
        assert_eq!(view.count(X, u64::MAX, None).expect("count").rows, 3);
        let stats = view.stats(X).expect("stats");
        assert_eq!(
            (stats.sealed_files, stats.indexed_files, stats.sealed_rows),
            (1, 1, 3)
        );
    }

    #[test]
    fn filters_and_output_fields_read_the_rows_of_every_block() {
        let schema = minimal(2);
        let mut view = ChannelView::default();
        let target = Target {
            checkpoint: Offsets {
                insert: 10,
                delete: 0,
            },
            insert_logs: vec![("f".into(), block(&schema, &[5, 1, 9], 10))],
            ..Target::default()
        };
        view.load(X, schema.clone(), target);
        let growing = block(&schema, &[4, 7, 2], 20);
        let record = Record::Insert {
            collection: X,
            block: growing,
        };
        assert_eq!(view.apply(Stream::Insert, 10, record), Applied::Done);
        let delete = Record::Delete {
            collection: X,
            keys: Keys::Int(vec![7]),
            timestamps: vec![30],
        };
        assert_eq!(view.apply(Stream::Delete, 0, delete), Applied::Done);

        let odd = Filter::parse("id in [1, 5, 7, 9] and id != 9", &schema).expect("filter");
        let rows = view
            .query(X, u64::MAX, Some(&odd), &[1], 10)
            .expect("query");
        assert_eq!(rows[0], Column::Long(vec![1, 5]), "7 is deleted, 9 refused");
        assert_eq!(
            rows[1],
            Column::Vector {
                dim: 2,
                values: vec![1.0, 1.0, 5.0, 5.0].into()
            }
        );
        let before_delete = view.query(X, 25, Some(&odd), &[], 10).expect("query");
        assert_eq!(before_delete[0], Column::Long(vec![1, 5, 7]));
        let first_two = view.query(X, u64::MAX, None, &[], 2).expect("query");
        assert_eq!(first_two, [Column::Long(vec![1, 2])]);
        assert_eq!(view.count(X, u64::MAX, Some(&odd)).expect("count").rows, 2);
        assert_eq!(view.count(X, u64::MAX, None).expect("count").rows, 5);

        let params = SearchParams {
            queries: &[vec![6.0, 6.0], vec![0.0, 0.0]],
            k: 2,
            ef: 16,
            read_ts: u64::MAX,
            filter: Some(&odd),
            output: &[0, 1],
        };
        let (_, found) = view.search(X, &params).expect("search");
        let ids: Vec<Vec<Key>> = found
            .iter()
            .map(|f| f.hits.iter().map(|h| h.id.clone()).collect())
            .collect();
        assert_eq!(ids, [[5, 1].map(Key::Int), [1, 5].map(Key::Int)]);
        assert_eq!(found[0].fields[0], Column::Long(vec![5, 1]));
        assert_eq!(
            found[1].fields[1],
            Column::Vector {
                dim: 2,
                values: vec![1.0, 1.0, 5.0, 5.0].into()
            }
        );
    }

    #[test]
    fn channels_merge_nearest_first_with_their_fields_and_rows_in_key_order() {
        let schema = minimal(2);
        let found = |hits: &[(i64, f32)]| Found {
            hits: hits
                .iter()
                .map(|&(id, score)| Hit {
                    id: Key::Int(id),
                    score,
                })
                .collect(),
            fields: vec![Column::Long(hits.iter().map(|h| h.0).collect())],
        };
        let merged = merge_found(
            &schema,
            &[0],
            vec![
                vec![found(&[(1, 0.5), (3, 2.0)]), found(&[(5, 1.0)])],
                vec![found(&[(2, 1.0), (4, 3.0)]), found(&[])],
            ],
            3,
        )
        .expect("merge");
        assert_eq!(
            merged,
            [found(&[(1, 0.5), (2, 1.0), (3, 2.0)]), found(&[(5, 1.0)])]
        );
        let short = merge_found(&schema, &[0], vec![vec![found(&[])], vec![]], 3);
        assert!(
            short.is_err(),
            "a channel answering fewer queries is an error"
        );

        let keys = |k: &[i64]| vec![Column::Long(k.to_vec())];
        let rows = merge_rows(&schema, &[0], vec![keys(&[2, 8, 9]), keys(&[1, 5])], 4)
            .expect("merge rows");
        assert_eq!(rows, keys(&[1, 2, 5, 8]));
        // VARCHAR keys merge in string order.
        let mut varchar = milvus_like_api::proto::CollectionSchema::from(&schema);
        varchar.fields[0].data_type = milvus_like_api::proto::DataType::Varchar.into();
        varchar.fields[0].max_length = 8;
        let varchar = CollectionSchema::try_from(varchar).expect("a VARCHAR key");
        let strs = |k: &[&str]| vec![Column::Str(k.iter().map(|s| (*s).to_owned()).collect())];
        let rows = merge_rows(
            &varchar,
            &[0],
            vec![strs(&["b", "d"]), strs(&["a", "c"])],
            3,
        )
        .expect("merge rows");
        assert_eq!(rows, strs(&["a", "b", "c"]));
        let found = merge_found(
            &schema,
            &[],
            vec![
                vec![Found {
                    hits: vec![Hit {
                        id: Key::Str("x".into()),
                        score: 1.0,
                    }],
                    fields: vec![],
                }],
                vec![Found {
                    hits: vec![Hit {
                        id: Key::Str("y".into()),
                        score: 0.5,
                    }],
                    fields: vec![],
                }],
            ],
            2,
        )
        .expect("merge");
        let ids: Vec<&Key> = found[0].hits.iter().map(|h| &h.id).collect();
        assert_eq!(ids, [&Key::Str("y".into()), &Key::Str("x".into())]);
    }
}
