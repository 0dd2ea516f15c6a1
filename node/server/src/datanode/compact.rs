//! `CompactSegment`: the insert logs of a flushed segment rewritten as one file
//! with one HNSW graph over all its rows, so that a query walks one graph per
//! segment instead of one per file (Milvus's compaction, within a segment).
//!
//! The new file holds the old files' rows in their order. The graph of the
//! first file (built while the segment was growing) is therefore the start of
//! the new one: it is read and grown by the other files' rows, which costs
//! what building the whole graph at once would, not more. Without it (no index
//! yet, unreadable, or an engine whose graphs cannot grow) the graph is built
//! from all the rows. Nothing is committed here: the data coordinator records
//! the new file in place of the old ones when this answers.

use std::sync::Arc;
use std::time::Instant;

use milvus_like_api::proto;
use milvus_like_api::schema::{CollectionSchema, IndexSpec};
use milvus_like_api::vectors::Floats;
use tonic::Status;

use super::Node;
use super::index_build::{build_slot, collection_schema, index_path, off_thread};
use crate::columns::RowBatch;
use crate::index::{Engine, HnswIndex, HnswParams, IndexError};
use crate::storage::{InsertLog, SegmentStore};

#[tracing::instrument(skip_all, fields(segment_id = req.segment_id, files = req.insert_logs.len()))]
pub(super) async fn compact(
    node: &Node,
    req: proto::CompactSegmentRequest,
) -> Result<proto::CompactSegmentResponse, Status> {
    if req.insert_logs.len() < 2 {
        return Err(Status::invalid_argument(format!(
            "segment {}: a compaction needs at least two insert logs, got {}",
            req.segment_id,
            req.insert_logs.len()
        )));
    }
    let slot = build_slot(node).await?;
    let started = Instant::now();
    let schema = collection_schema(node, req.collection_id, req.index_generation).await?;
    let unavailable = |e: crate::storage::StorageError| Status::unavailable(e.to_string());
    // The rows, file by file, checked against what the segment records.
    let mut files = Vec::with_capacity(req.insert_logs.len());
    for file in &req.insert_logs {
        let (rows, timestamps) = node
            .storage
            .read_insert_log(&file.path, &schema)
            .await
            .map_err(unavailable)?;
        if rows.num_rows as u64 != file.num_rows {
            return Err(Status::data_loss(format!(
                "{} holds {} rows, its segment records {}",
                file.path, rows.num_rows, file.num_rows
            )));
        }
        files.push((rows, timestamps));
    }
    let read = started.elapsed();
    let num_rows: u64 = files.iter().map(|(r, _)| r.num_rows as u64).sum();
    let files = Arc::new(files);
    // The graph first: a build that fails or stops leaves no file behind.
    let mut graph = None;
    let mut base_rows = 0;
    if let IndexSpec::Hnsw { m, ef_construction } = schema.index {
        let params = HnswParams { m, ef_construction };
        let first = &req.insert_logs[0];
        let base = if first.index_generation == req.index_generation {
            base_graph(node, &schema, params, first).await
        } else {
            None
        };
        base_rows = base.as_ref().map_or(0, HnswIndex::rows) as u64;
        let (owned, rows) = (schema.clone(), files.clone());
        let (blob, took) = off_thread(node, slot, move |stop| {
            grown_graph(&owned, params, base, &rows, stop)
        })
        .await?;
        tracing::info!(graph = ?took, base_rows, "segment graph built");
        graph = Some(blob);
    }
    // The rows as one insert log, after the graph: the two are not held at once.
    let files = Arc::try_unwrap(files).unwrap_or_else(|shared| (*shared).clone());
    let mut log = InsertLog::new(&schema);
    for (rows, timestamps) in files {
        log.push(rows, timestamps)
            .map_err(|e| Status::internal(format!("the rows do not fit the schema: {e}")))?;
    }
    let log_id = node
        .root
        .alloc_id()
        .await
        .map_err(|e| Status::unavailable(format!("allocating a log id: {e}")))?;
    let path =
        SegmentStore::insert_log_path(req.collection_id, req.partition_id, req.segment_id, log_id);
    let file_bytes = node
        .storage
        .write_insert(&path, &log)
        .await
        .map_err(unavailable)?;
    drop(log);
    let mut insert_log = proto::CommittedFile {
        path: path.clone(),
        num_rows,
        ..proto::CommittedFile::default()
    };
    if let Some(blob) = graph {
        let index = index_path(&path, req.index_generation);
        insert_log.index_generation = req.index_generation;
        match node.storage.write_blob(&index, blob).await {
            Ok(bytes) => insert_log.index_bytes = bytes,
            Err(e) => {
                // Nothing names the new file yet: it goes, and the compaction is asked again.
                if let Err(cleanup) = node.storage.delete_file(&path).await {
                    tracing::warn!(path, error = %cleanup, "cannot delete the unrecorded file");
                }
                return Err(unavailable(e));
            }
        }
        insert_log.index_path = index;
    }
    let elapsed = started.elapsed();
    node.metrics.compactions.inc();
    tracing::info!(
        rows = num_rows,
        file_bytes,
        index_bytes = insert_log.index_bytes,
        ?read,
        ?elapsed,
        path,
        "segment compacted"
    );
    Ok(proto::CompactSegmentResponse {
        insert_log: Some(insert_log),
        build_ms: u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX),
        index_base_rows: base_rows,
    })
}

/// The stored graph of the segment's first file, when it can start the
/// segment's: readable, of this collection's metric and parameters, of that
/// file's rows. Anything else is logged and the graph built from nothing.
async fn base_graph(
    node: &Node,
    schema: &CollectionSchema,
    params: HnswParams,
    first: &proto::CommittedFile,
) -> Option<HnswIndex> {
    if first.index_path.is_empty() {
        return None;
    }
    let bytes = match node.storage.read_blob(&first.index_path).await {
        Ok(bytes) => bytes,
        Err(e) => {
            tracing::warn!(index_path = first.index_path, error = %e, "cannot read the first file's index; building the segment's from nothing");
            return None;
        }
    };
    match HnswIndex::decode(bytes).await {
        Ok(index)
            if index.engine().grows()
                && index.rows() as u64 == first.num_rows
                && index.metric() == schema.metric
                && index.params() == params =>
        {
            Some(index)
        }
        Ok(index) => {
            tracing::warn!(
                index_path = first.index_path,
                ?index,
                "the first file's index does not match it or cannot grow; building the segment's from nothing"
            );
            None
        }
        Err(e) => {
            tracing::warn!(index_path = first.index_path, error = %e, "the first file's index cannot be read; building the segment's from nothing");
            None
        }
    }
}

/// The graph of all of `files`' vectors in order: `base` (the first file's,
/// one that grows) grown by the others'. Without a base, an engine whose
/// graphs grow builds the first file's graph and grows it the same way (no
/// copy of all the vectors); one whose graphs do not builds one of all rows.
fn grown_graph(
    schema: &CollectionSchema,
    params: HnswParams,
    base: Option<HnswIndex>,
    files: &[(RowBatch, Vec<u64>)],
    stop: &dyn Fn() -> bool,
) -> Result<HnswIndex, IndexError> {
    let vectors = files
        .iter()
        .map(|(rows, _)| {
            rows.vectors(schema)
                .ok_or_else(|| IndexError::Engine("an insert log has no vector column".into()))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let Some(&(dim, first)) = vectors.first() else {
        return Err(IndexError::Engine("no insert log to index".into()));
    };
    let start = match base {
        Some(index) => Some(index),
        None if Engine::best().grows() => {
            Some(HnswIndex::build(schema.metric, dim, first, params, stop)?)
        }
        None => None,
    };
    if let Some(mut index) = start {
        for (_, values) in &vectors[1..] {
            index.extend(values, stop)?;
        }
        return Ok(index);
    }
    let all: Vec<f32> = vectors
        .iter()
        .flat_map(|(_, values)| values.to_vec())
        .collect();
    HnswIndex::build(schema.metric, dim, &Floats::from(all), params, stop)
}
