//! `BuildIndex`: the HNSW index of one committed insert log, built when the data
//! coordinator asks, off the ingest path (its own thread, one build at a time),
//! and stored beside the file as `<insert log>.hnsw` (`crate::index`), or
//! `<insert log>.g<generation>.hnsw` after the collection's index was dropped
//! and chosen again.

use std::path::Path;
use std::time::{Duration, Instant};

use milvus_like_api::proto;
use milvus_like_api::schema::{CollectionSchema, IndexSpec};
use tokio::sync::OwnedSemaphorePermit;
use tokio_util::sync::CancellationToken;
use tonic::Status;

use super::Node;
use crate::index::{HnswIndex, HnswParams, IndexError};

/// Where the index of `insert_log` for index generation `generation` is
/// stored (each generation's apart, so that a reader never takes an index of
/// one for another's).
pub fn index_path(insert_log: &str, generation: u64) -> String {
    if generation == 0 {
        format!("{insert_log}.hnsw")
    } else {
        format!("{insert_log}.g{generation}.hnsw")
    }
}

#[tracing::instrument(skip_all, fields(segment_id = req.segment_id, path = %req.insert_log_path))]
pub(super) async fn build(
    node: &Node,
    req: proto::BuildIndexRequest,
) -> Result<proto::BuildIndexResponse, Status> {
    let one = build_slot(node).await?;
    let started = Instant::now();
    let schema = collection_schema(node, req.collection_id, req.index_generation).await?;
    let IndexSpec::Hnsw { m, ef_construction } = schema.index else {
        return Err(Status::failed_precondition(format!(
            "collection {} is not indexed ({})",
            req.collection_id,
            schema.index.name()
        )));
    };
    let (rows, _) = node
        .storage
        .read_insert_log(&req.insert_log_path, &schema)
        .await
        .map_err(|e| Status::unavailable(e.to_string()))?;
    let (dim, values) = rows
        .vectors(&schema)
        .map(|(dim, values)| (dim, values.clone()))
        .ok_or_else(|| Status::internal("the insert log has no vector column"))?;
    let read = started.elapsed();
    let metric = schema.metric;
    let params = HnswParams { m, ef_construction };
    let (blob, graph) = off_thread(node, one, move |stopped| {
        HnswIndex::build(metric, dim, &values, params, stopped)
    })
    .await?;
    let serialized = started.elapsed();
    let path = index_path(&req.insert_log_path, req.index_generation);
    let bytes = node
        .storage
        .write_blob(&path, blob)
        .await
        .map_err(|e| Status::unavailable(e.to_string()))?;
    let elapsed = started.elapsed();
    node.metrics.index_builds.inc();
    node.metrics
        .index_build_seconds
        .observe(elapsed.as_secs_f64());
    // Where the time went: reading the file, the graph, serializing it (the
    // rest of `serialized`), writing the blob (the rest of `elapsed`).
    tracing::info!(
        rows = rows.num_rows,
        bytes,
        ?elapsed,
        ?read,
        ?graph,
        ?serialized,
        "index built"
    );
    Ok(proto::BuildIndexResponse {
        index_path: path,
        index_bytes: bytes,
        rows: rows.num_rows as u64,
        build_ms: u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX),
    })
}

/// The stored schema of `collection` at index generation `generation`: a
/// cached description of another generation is asked again, and a
/// collection at another one refuses the job (FAILED_PRECONDITION) rather
/// than build an index of a metric or parameters no longer chosen.
pub(super) async fn collection_schema(
    node: &Node,
    collection: i64,
    generation: u64,
) -> Result<CollectionSchema, Status> {
    let mut info = node.root.collection(collection).await?;
    if info.index_generation != generation {
        info = node.root.collection_fresh(collection).await?;
    }
    if info.index_generation != generation {
        return Err(Status::failed_precondition(format!(
            "collection {collection} is at index generation {}, the job at {generation}",
            info.index_generation
        )));
    }
    CollectionSchema::try_from(&info)
        .map_err(|e| Status::internal(format!("the stored schema is invalid: {e}")))
}

/// The build slot of the data node (one heavy job at a time, builds and
/// compactions alike).
pub(super) async fn build_slot(node: &Node) -> Result<OwnedSemaphorePermit, Status> {
    node.index_builds
        .clone()
        .acquire_owned()
        .await
        .map_err(|_| Status::unavailable("the data node is stopping"))
}

/// Runs `build` on a blocking thread with a pool of `--index-build-threads`,
/// then serializes the graph: the blob and how long the graph took. `build` is
/// given the node's stop signal to look at between batches of rows: a stopping
/// node gives the build up (it cannot be cancelled otherwise, and the process
/// waits for it); the coordinator asks again later. The permit `slot` goes
/// with the build's threads and comes back with the blob: a caller that gives
/// up (a timeout) does not let a second build start while this one still runs.
pub(super) async fn off_thread<F>(
    node: &Node,
    slot: OwnedSemaphorePermit,
    build: F,
) -> Result<(Vec<u8>, Duration), Status>
where
    F: FnOnce(&dyn Fn() -> bool) -> Result<HnswIndex, IndexError> + Send + 'static,
{
    let stop = node.index_stop.clone();
    let threads = node.config.index_build_threads.max(1);
    let scratch = HnswIndex::scratch_root();
    let (built, _slot) = tokio::task::spawn_blocking(move || {
        let built = on_pool(threads, &stop, &scratch, build);
        (built, slot)
    })
    .await
    .map_err(|e| Status::internal(format!("the build stopped: {e}")))?;
    built
}

fn on_pool<F>(
    threads: usize,
    stop: &CancellationToken,
    scratch: &Path,
    build: F,
) -> Result<(Vec<u8>, Duration), Status>
where
    F: FnOnce(&dyn Fn() -> bool) -> Result<HnswIndex, IndexError> + Send,
{
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .thread_name(|i| format!("index-build-{i}"))
        .build()
        .map_err(|e| Status::internal(format!("no thread for the build: {e}")))?;
    pool.install(|| {
        let stopped = || stop.is_cancelled();
        let building = Instant::now();
        let index = build(&stopped).map_err(|e| match e {
            IndexError::Stopped => Status::unavailable("the data node is stopping"),
            e @ (IndexError::Params(_) | IndexError::Shape { .. }) => {
                Status::invalid_argument(e.to_string())
            }
            other => Status::internal(other.to_string()),
        })?;
        let graph = building.elapsed();
        let blob = index
            .to_bytes(scratch)
            .map_err(|e| Status::internal(e.to_string()))?;
        Ok((blob, graph))
    })
}
