//! Moves loaded collections to the newest committed files: asks the data
//! coordinator which files are at or below each channel's checkpoint
//! (`GetRecoveryInfo`), reads the ones not held yet, and swaps them in.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use milvus_like_api::proto::data_coord_client::DataCoordClient;
use milvus_like_api::proto::{ChannelRecovery, GetRecoveryInfoRequest, SegmentState};
use milvus_like_api::schema::CollectionSchema;
use tokio_util::sync::CancellationToken;
use tonic::Status;

use super::view::{Block, Offsets, Target};
use super::{Node, follow, read, write};
use crate::columns::RowBatch;
use crate::index::HnswIndex;

/// Files read at the same time.
const READ_CONCURRENCY: usize = 4;

pub(super) async fn run(node: Arc<Node>, stop: CancellationToken) {
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(node.config.target_interval) => {}
        }
        if let Err(status) = sync_all(&node).await {
            tracing::warn!(%status, "could not move the loaded collections to their newest files");
        }
        // Retries a consumer assignment that failed.
        let channels: Vec<u32> = node.channels().keys().copied().collect();
        for channel in channels {
            follow::reposition(&node, channel, false);
        }
    }
}

/// [`sync_collection`] for every loaded collection.
pub(super) async fn sync_all(node: &Node) -> Result<(), Status> {
    let loaded: Vec<(i64, CollectionSchema)> = node
        .loaded()
        .iter()
        .map(|(id, s)| (*id, s.clone()))
        .collect();
    // Every collection is tried: one that cannot move does not hold back the others.
    let mut first_error = None;
    for (id, schema) in loaded {
        if let Err(status) = sync_collection(node, id, &schema).await {
            first_error.get_or_insert(status);
        }
    }
    node.memory_used();
    first_error.map_or(Ok(()), Err)
}

/// Moves `collection` on every watched channel to the files at or below the
/// channel's checkpoint now (loading it where it is not yet).
#[tracing::instrument(level = "debug", skip_all, fields(collection_id = collection))]
pub(super) async fn sync_collection(
    node: &Node,
    collection: i64,
    schema: &CollectionSchema,
) -> Result<(), Status> {
    let _one = node.syncing.lock().await;
    let info = node
        .datacoord
        .call(Duration::from_secs(10), |c| async move {
            DataCoordClient::new(c)
                .get_recovery_info(GetRecoveryInfoRequest {
                    collection_id: collection,
                })
                .await
        })
        .await?
        .into_inner();
    fits(node, collection, schema, &info.channels)?;
    for recovery in &info.channels {
        let channel = recovery.channel;
        let Some(view) = node.view(channel) else {
            continue;
        };
        if !node.loaded().contains_key(&collection) {
            return Ok(()); // released meanwhile
        }
        let cp = recovery.checkpoint.unwrap_or_default();
        let checkpoint = Offsets {
            insert: cp.insert_next_offset,
            delete: cp.delete_next_offset,
        };
        let (current, missing, replaced) = {
            let view = read(&view);
            let named = named_insert_logs(recovery);
            let replaced: Vec<String> = view
                .insert_logs(collection)
                .into_iter()
                .filter(|p| !named.contains(p.as_str()))
                .collect();
            (
                view.checkpoint(collection),
                missing_files(recovery, &named, |p| view.has_file(collection, p)),
                replaced,
            )
        };
        // An older answer (arriving late) changes nothing; one at the same
        // checkpoint only when a compaction replaced files.
        if current
            .is_some_and(|c| !checkpoint.covers(&c) || (c == checkpoint && replaced.is_empty()))
        {
            continue;
        }
        let mut target = read_files(node, schema, checkpoint, missing).await?;
        if schema.is_graph_indexed() {
            target.indexes = read_indexes(node, recovery, &target).await;
        }
        target.replaced = replaced;
        let files = target.insert_logs.len() + target.delete_logs.len();
        let read_ahead: Vec<String> = target.indexes.iter().map(|(p, _, _)| p.clone()).collect();
        {
            let mut view = write(&view);
            if view.is_loaded(collection) {
                view.advance(collection, target);
            } else {
                view.load(collection, schema.clone(), target);
            }
            // An index that did not fit its file is left for `attach_indexes`,
            // which marks it.
            let attached = read_ahead
                .iter()
                .filter(|p| view.has_index(collection, p))
                .count();
            node.metrics.indexes_loaded.inc_by(attached as u64);
        }
        node.metrics.target_moves.inc();
        node.metrics.files_loaded.inc_by(files as u64);
        tracing::debug!(
            channel,
            insert = checkpoint.insert,
            delete = checkpoint.delete,
            files,
            "moved to newer files"
        );
        follow::reposition(node, channel, false);
        if let Some(w) = node.channels().get(&channel) {
            w.progress.notify_waiters();
        }
    }
    if schema.is_graph_indexed() {
        attach_indexes(node, collection, &info.channels).await;
    }
    Ok(())
}

/// Refuses a first load of `collection` on watched channels when its files
/// would take the node past its memory limit. Moving a loaded collection to
/// newer files is never refused (those rows are in memory already, in the log).
fn fits(
    node: &Node,
    collection: i64,
    schema: &CollectionSchema,
    channels: &[ChannelRecovery],
) -> Result<(), Status> {
    let row_bytes = RowBatch::estimated_row_bytes(schema);
    let mut need = 0u64;
    let mut fresh = Vec::new();
    for recovery in channels {
        let Some(view) = node.view(recovery.channel) else {
            continue;
        };
        if read(&view).is_loaded(collection) {
            continue;
        }
        fresh.push(recovery.channel);
        need += recovery
            .segments
            .iter()
            .filter(|s| s.state() != SegmentState::Dropped)
            .flat_map(|s| &s.insert_logs)
            .map(|f| f.num_rows * row_bytes + f.index_bytes)
            .sum::<u64>();
    }
    if need == 0 {
        return Ok(());
    }
    let used = node.memory_used();
    if used.saturating_add(need) <= node.memory_limit {
        return Ok(());
    }
    let mib = |b: u64| b.div_ceil(1 << 20);
    Err(Status::resource_exhausted(format!(
        "collection {collection} does not fit on query node {}: its files on channels {fresh:?} need about {} MiB, and the node holds {} MiB of its {} MiB for loaded collections (--memory-mib); add query nodes, raise --memory-mib or release other collections",
        node.node_id,
        mib(need),
        mib(used),
        mib(node.memory_limit)
    )))
}

/// Loads the indexes of held insert logs that have one and are still searched
/// exactly. A missing or damaged index is logged and the file stays exact.
async fn attach_indexes(node: &Node, collection: i64, channels: &[ChannelRecovery]) {
    for recovery in channels {
        let Some(view) = node.view(recovery.channel) else {
            continue;
        };
        let wanted: Vec<(String, String)> = {
            let view = read(&view);
            recovery
                .segments
                .iter()
                .flat_map(|s| &s.insert_logs)
                .filter(|f| !f.index_path.is_empty())
                .filter(|f| {
                    view.has_file(collection, &f.path)
                        && !view.has_index(collection, &f.path)
                        && !node.bad_indexes().contains(&f.index_path)
                })
                .map(|f| (f.path.clone(), f.index_path.clone()))
                .collect()
        };
        for (path, index_path) in wanted {
            let Some((index, stored)) = read_index(node, &path, &index_path).await else {
                continue;
            };
            let attached = {
                let mut view = write(&view);
                if view.attach_index(collection, &path, index, stored) {
                    Some(true)
                } else {
                    // None: the file was released meanwhile.
                    view.has_file(collection, &path).then_some(false)
                }
            };
            match attached {
                Some(true) => {
                    node.metrics.indexes_loaded.inc();
                    tracing::debug!(path, index_path, "searching through the index");
                }
                Some(false) => unusable_index(node, &path, &index_path),
                None => {}
            }
        }
    }
}

/// Reads the index at `index_path` of the insert log at `path`. A read that
/// fails is tried again next time (`None`); a blob that is damaged is marked
/// and not read again.
async fn read_index(node: &Node, path: &str, index_path: &str) -> Option<(Arc<HnswIndex>, u64)> {
    let bytes = match node.storage.read_blob(index_path).await {
        Ok(bytes) => bytes,
        Err(e) => {
            node.metrics.index_load_failures.inc();
            tracing::warn!(path, index_path, error = %e, "cannot read the index; searching the file exactly for now");
            return None;
        }
    };
    let stored = bytes.len() as u64;
    match HnswIndex::decode(bytes).await {
        Ok(index) => Some((Arc::new(index), stored)),
        Err(e) => {
            tracing::warn!(path, index_path, error = %e, "the index cannot be read");
            unusable_index(node, path, index_path);
            None
        }
    }
}

/// An index that cannot serve its file: the file is searched exactly, and
/// the index not read again.
fn unusable_index(node: &Node, path: &str, index_path: &str) {
    node.metrics.index_load_failures.inc();
    tracing::warn!(
        path,
        index_path,
        "the index cannot serve its file; searching the file exactly"
    );
    node.bad_indexes().insert(index_path.to_owned());
}

/// The indexes of the insert logs `target` read, read too, so that a file
/// comes in with its index (a compacted segment's file is never searched
/// exactly in between). One that cannot be read is attached later or never.
async fn read_indexes(
    node: &Node,
    recovery: &ChannelRecovery,
    target: &Target,
) -> Vec<(String, Arc<HnswIndex>, u64)> {
    let mut out = Vec::new();
    for (path, _) in &target.insert_logs {
        let index_path = recovery
            .segments
            .iter()
            .flat_map(|s| &s.insert_logs)
            .find(|f| f.path == *path)
            .map(|f| f.index_path.as_str())
            .unwrap_or_default();
        if index_path.is_empty() || node.bad_indexes().contains(index_path) {
            continue;
        }
        if let Some((index, stored)) = read_index(node, path, index_path).await {
            out.push((path.clone(), index, stored));
        }
    }
    out
}

/// The insert logs of the segments of `recovery` that are not dropped.
fn named_insert_logs(recovery: &ChannelRecovery) -> BTreeSet<&str> {
    recovery
        .segments
        .iter()
        .filter(|s| s.state() != SegmentState::Dropped)
        .flat_map(|s| &s.insert_log_paths)
        .map(String::as_str)
        .collect()
}

/// Paths of the insert logs `named` and the delete logs of `recovery` that
/// `held` does not hold.
fn missing_files(
    recovery: &ChannelRecovery,
    named: &BTreeSet<&str>,
    held: impl Fn(&str) -> bool,
) -> (Vec<String>, Vec<String>) {
    let inserts = named
        .iter()
        .filter(|p| !held(p))
        .map(|p| (*p).to_owned())
        .collect();
    let deletes = recovery
        .delete_logs
        .iter()
        .map(|d| d.path.clone())
        .filter(|p| !held(p))
        .collect();
    (inserts, deletes)
}

async fn read_files(
    node: &Node,
    schema: &CollectionSchema,
    checkpoint: Offsets,
    (inserts, deletes): (Vec<String>, Vec<String>),
) -> Result<Target, Status> {
    let store = &node.storage;
    let failed = |e: crate::storage::StorageError| Status::unavailable(e.to_string());
    let insert_logs = futures::stream::iter(inserts)
        .map(|path| async move {
            let (rows, timestamps) = store.read_insert_log(&path, schema).await?;
            Ok::<_, crate::storage::StorageError>((path, Block::new(rows, timestamps)))
        })
        .buffered(READ_CONCURRENCY)
        .try_collect()
        .await
        .map_err(failed)?;
    let delete_logs = futures::stream::iter(deletes)
        .map(|path| async move {
            let (keys, timestamps) = store.read_delete_log(&path).await?;
            Ok::<_, crate::storage::StorageError>((path, keys, timestamps))
        })
        .buffered(READ_CONCURRENCY)
        .try_collect()
        .await
        .map_err(failed)?;
    Ok(Target {
        checkpoint,
        insert_logs,
        delete_logs,
        ..Target::default()
    })
}
