//! Index builds and compactions: every committed insert log of an indexed
//! collection with at least [`MIN_INDEX_ROWS`] rows gets an HNSW index, and a
//! flushed segment of several files is rewritten as one file with one index
//! over all its rows (a query walks one graph per segment, not one per file).
//! The data coordinator hands each job to a live data node (`BuildIndex`,
//! `CompactSegment`; one at a time per node), records what the node stored
//! when it answers, and retries a failed job later with a growing pause. Jobs
//! never hold up ingest: nothing on the write path waits for them, and a file
//! without an index is searched exactly until it has one.
//!
//! The files a compaction replaced are garbage: the data coordinator asks a
//! data node to delete them once `--garbage-grace` has passed, when no query
//! node can still be reading them (one that was is told of the new file by
//! its next look at the segments).

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use milvus_like_api::proto::{self, Role};
use milvus_like_api::root_coord_link::RootCoordLink;
use milvus_like_api::schema::CollectionSchema;

use super::DataCoordMetrics;
use super::channels::DataNodeClients;
use super::segments::{BuiltIndex, Compactable, SegmentError, SegmentManager};
use crate::session::NodeRegistry;

/// Files below this many rows are searched exactly (Milvus's small-segment rule).
pub const MIN_INDEX_ROWS: u64 = 1024;
/// How long one build may take (the timeout of the clients the coordinator
/// asks for builds with): a file of up to `--flush-mib` (256 MiB by
/// default) on `--index-build-threads` (one by default) takes minutes, more on
/// a node busy with ingest; an hour leaves room.
pub const BUILD_TIMEOUT: Duration = Duration::from_secs(3600);
/// The longest pause before a failed build is tried again.
const MAX_BACKOFF: Duration = Duration::from_secs(300);
/// Failed compactions of a segment after which its files get graphs of their
/// own while the compaction is still retried.
const FALLBACK_AFTER_FAILURES: u32 = 5;
/// How often the garbage records are read (each look scans them in etcd).
const GARBAGE_INTERVAL: Duration = Duration::from_secs(10);
/// Garbage files deleted by one call.
const GARBAGE_BATCH: usize = 256;

#[derive(Debug)]
struct Failure {
    attempts: u32,
    retry_at: Instant,
}

/// Jobs in flight and failed jobs waiting for their retry, by file path (a
/// build) or [`compaction_key`] (a compaction).
#[derive(Debug, Default)]
pub struct IndexScheduler {
    running: Mutex<HashMap<String, i64>>,
    failures: Mutex<HashMap<String, Failure>>,
    /// A deletion of garbage is under way.
    collecting: AtomicBool,
    /// When garbage was last looked for.
    collected_at: Mutex<Option<Instant>>,
}

fn compaction_key(segment: i64) -> String {
    format!("compaction of segment {segment}")
}

/// What the pass needs of the coordinator.
#[derive(Debug)]
pub struct Context<'a> {
    pub segments: &'a Arc<SegmentManager>,
    pub root: &'a RootCoordLink,
    pub nodes: &'a NodeRegistry,
    pub clients: &'a Arc<DataNodeClients>,
    pub metrics: &'a Arc<DataCoordMetrics>,
}

impl IndexScheduler {
    fn running(&self) -> std::sync::MutexGuard<'_, HashMap<String, i64>> {
        self.running.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn failures(&self) -> std::sync::MutexGuard<'_, HashMap<String, Failure>> {
        self.failures.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether the job `key` runs or waits for its retry.
    fn busy(&self, key: &str, now: Instant) -> bool {
        self.running().contains_key(key)
            || self.failures().get(key).is_some_and(|f| f.retry_at > now)
    }

    /// Starts compactions of flushed segments and builds of unindexed files
    /// on idle data nodes, and the deletion of due garbage; sets
    /// `indexes_waiting` to the jobs that must wait.
    pub async fn pass(self: &Arc<Self>, cx: &Context<'_>) {
        let compactions = cx.segments.compactable(MIN_INDEX_ROWS).await;
        let files = cx.segments.indexable(MIN_INDEX_ROWS).await;
        // Failures of jobs that no longer wait (dropped, compacted) are forgotten.
        self.failures().retain(|key, _| {
            files.iter().any(|f| f.path == *key)
                || compactions
                    .iter()
                    .any(|c| compaction_key(c.segment) == *key)
        });
        let mut waiting = 0i64;
        let busy: BTreeSet<i64> = self.running().values().copied().collect();
        let mut idle: Vec<proto::NodeInfo> = cx
            .nodes
            .nodes_of(Role::DataNode)
            .into_iter()
            .filter(|n| !n.stopping && !busy.contains(&n.node_id))
            .collect();
        let mut indexed: HashMap<i64, Option<u64>> = HashMap::new();
        let now = Instant::now();
        let pending: BTreeSet<i64> = compactions.iter().map(|c| c.segment).collect();
        for job in compactions {
            let key = compaction_key(job.segment);
            // A build of one of its files finishes first: its graph starts the segment's.
            let building = job
                .files
                .iter()
                .any(|f| self.running().contains_key(&f.path));
            if building || self.busy(&key, now) {
                waiting += 1;
                continue;
            }
            let Some(generation) = index_generation(cx.root, &mut indexed, job.collection).await
            else {
                continue;
            };
            let Some(node) = idle.pop() else {
                waiting += 1;
                continue;
            };
            self.start_compaction(cx, node, key, job, generation);
        }
        for file in files {
            let Some(generation) = index_generation(cx.root, &mut indexed, file.collection).await
            else {
                continue;
            };
            if file.built_for == Some(generation) {
                continue;
            }
            let (segment, path) = (file.segment, file.path);
            // A segment waiting for its compaction gets no per-file graphs,
            // unless the compaction keeps failing: then its files are indexed
            // one by one meanwhile, not searched exactly for ever.
            let compacting = pending.contains(&segment)
                && self
                    .failures()
                    .get(&compaction_key(segment))
                    .is_none_or(|f| f.attempts < FALLBACK_AFTER_FAILURES);
            if compacting {
                continue;
            }
            if self.busy(&path, now) {
                waiting += 1;
                continue;
            }
            let Some(node) = idle.pop() else {
                waiting += 1;
                continue;
            };
            let job = BuildJob {
                collection: file.collection,
                segment,
                path,
                generation,
            };
            self.start_build(cx, node, job);
        }
        cx.metrics.indexes_waiting.set(waiting);
        self.collect_garbage(cx);
    }

    fn start_build(self: &Arc<Self>, cx: &Context<'_>, node: proto::NodeInfo, job: BuildJob) {
        let BuildJob {
            collection,
            segment,
            path,
            generation,
        } = job;
        let Some(mut client) = cx.clients.get(&node.address) else {
            return;
        };
        self.running().insert(path.clone(), node.node_id);
        let (me, segments, metrics) = (self.clone(), cx.segments.clone(), cx.metrics.clone());
        crate::spawn(async move {
            let request = proto::BuildIndexRequest {
                collection_id: collection,
                segment_id: segment,
                insert_log_path: path.clone(),
                index_generation: generation,
            };
            // The client's calls time out after BUILD_TIMEOUT.
            let result = match client.build_index(request).await {
                Ok(r) => {
                    let r = r.into_inner();
                    let built = BuiltIndex {
                        path: r.index_path.clone(),
                        bytes: r.index_bytes,
                        generation,
                    };
                    segments
                        .record_index(segment, &path, &built)
                        .await
                        .map(|_| r)
                        .map_err(|e| format!("could not record it: {e}"))
                }
                Err(status) => Err(status.message().to_owned()),
            };
            if let Ok(r) = &result {
                tracing::info!(
                    node_id = node.node_id,
                    segment,
                    path,
                    rows = r.rows,
                    bytes = r.index_bytes,
                    build_ms = r.build_ms,
                    "index recorded"
                );
                metrics.index_builds.inc();
            } else {
                metrics.index_build_failures.inc();
            }
            me.finished(
                &path,
                node.node_id,
                segment,
                "index build",
                result.map(drop),
            );
        });
    }

    fn start_compaction(
        self: &Arc<Self>,
        cx: &Context<'_>,
        node: proto::NodeInfo,
        key: String,
        job: Compactable,
        generation: u64,
    ) {
        let Some(mut client) = cx.clients.get(&node.address) else {
            return;
        };
        self.running().insert(key.clone(), node.node_id);
        let (me, segments, metrics) = (self.clone(), cx.segments.clone(), cx.metrics.clone());
        crate::spawn(async move {
            let request = proto::CompactSegmentRequest {
                collection_id: job.collection,
                partition_id: job.partition,
                segment_id: job.segment,
                insert_logs: job.files.clone(),
                index_generation: generation,
            };
            let result = match client.compact_segment(request).await {
                Ok(r) => record_compaction(&segments, &job, r.into_inner()).await,
                Err(status) => Err(status.message().to_owned()),
            };
            let result = match result {
                Ok(true) => {
                    metrics.compactions.inc();
                    Ok(())
                }
                // Not a failure: the next pass compacts the segment as it is now.
                Ok(false) => Ok(()),
                Err(e) => {
                    metrics.compaction_failures.inc();
                    Err(e)
                }
            };
            me.finished(&key, node.node_id, job.segment, "compaction", result);
        });
    }

    /// Forgets a finished job, or schedules its retry with a growing pause.
    fn finished(
        &self,
        key: &str,
        node_id: i64,
        segment: i64,
        what: &str,
        result: Result<(), String>,
    ) {
        self.running().remove(key);
        let reason = match result {
            Ok(()) => {
                self.failures().remove(key);
                return;
            }
            Err(reason) => reason,
        };
        let mut failures = self.failures();
        let f = failures.entry(key.to_owned()).or_insert(Failure {
            attempts: 0,
            retry_at: Instant::now(),
        });
        f.attempts += 1;
        let pause = Duration::from_secs(1u64 << f.attempts.min(9)).min(MAX_BACKOFF);
        f.retry_at = Instant::now() + pause;
        tracing::warn!(
            node_id,
            segment,
            key,
            attempts = f.attempts,
            ?pause,
            "{what} failed: {reason}; retrying later"
        );
    }

    /// Asks a live data node to delete garbage whose grace has passed, one
    /// deletion at a time, every [`GARBAGE_INTERVAL`].
    fn collect_garbage(self: &Arc<Self>, cx: &Context<'_>) {
        {
            let mut at = self.collected_at.lock().unwrap_or_else(|p| p.into_inner());
            if at.is_some_and(|t| t.elapsed() < GARBAGE_INTERVAL) {
                return;
            }
            *at = Some(Instant::now());
        }
        if self.collecting.swap(true, Ordering::AcqRel) {
            return;
        }
        let client = cx
            .nodes
            .nodes_of(Role::DataNode)
            .into_iter()
            .filter(|n| !n.stopping)
            .find_map(|n| cx.clients.get(&n.address));
        let Some(mut client) = client else {
            self.collecting.store(false, Ordering::Release);
            return;
        };
        let (me, segments, metrics) = (self.clone(), cx.segments.clone(), cx.metrics.clone());
        crate::spawn(async move {
            let result = async {
                let due = segments
                    .due_garbage(crate::sys::unix_ms(), GARBAGE_BATCH)
                    .await
                    .map_err(|e| e.to_string())?;
                if due.is_empty() {
                    return Ok(0);
                }
                let done = client
                    .delete_files(proto::DeleteFilesRequest { paths: due })
                    .await
                    .map_err(|s| s.message().to_owned())?
                    .into_inner()
                    .done;
                segments
                    .garbage_deleted(&done)
                    .await
                    .map_err(|e| e.to_string())?;
                Ok::<_, String>(done.len())
            }
            .await;
            match result {
                Ok(0) => {}
                Ok(n) => {
                    metrics.garbage_deleted.inc_by(n as u64);
                    tracing::info!(files = n, "deleted replaced files");
                }
                Err(e) => tracing::warn!("could not delete replaced files: {e}; retrying later"),
            }
            me.collecting.store(false, Ordering::Release);
        });
    }
}

/// A build of one insert log's index.
struct BuildJob {
    collection: i64,
    segment: i64,
    path: String,
    /// The collection's index generation to build for.
    generation: u64,
}

/// The index generation of `collection` when it is indexed (HNSW), asked of
/// the root once per pass; `None` when it is not, is dropped, or the root is
/// away (next pass).
async fn index_generation(
    root: &RootCoordLink,
    known: &mut HashMap<i64, Option<u64>>,
    collection: i64,
) -> Option<u64> {
    if let Some(w) = known.get(&collection) {
        return *w;
    }
    let w = match root.collection(collection).await {
        Ok(info) => {
            let generation = info.index_generation;
            info.schema
                .and_then(|s| CollectionSchema::try_from(s).ok())
                .filter(CollectionSchema::is_graph_indexed)
                .map(|_| generation)
        }
        Err(_) => None,
    };
    known.insert(collection, w);
    w
}

/// Records a data node's compaction of `job`: true once recorded, false when
/// the segment changed meanwhile (a late file, dropped); its new files are
/// garbage then, and the compaction runs again on the segment as it is now.
async fn record_compaction(
    segments: &SegmentManager,
    job: &Compactable,
    answer: proto::CompactSegmentResponse,
) -> Result<bool, String> {
    let file = answer
        .insert_log
        .ok_or("the data node's answer names no file")?;
    let written: Vec<String> = [&file.path, &file.index_path]
        .into_iter()
        .filter(|p| !p.is_empty())
        .cloned()
        .collect();
    let (path, rows, index_bytes) = (file.path.clone(), file.num_rows, file.index_bytes);
    match segments
        .record_compaction(job.segment, &job.files, file)
        .await
    {
        Ok(true) => {
            tracing::info!(
                segment = job.segment,
                files = job.files.len(),
                rows,
                path,
                index_bytes,
                base_rows = answer.index_base_rows,
                build_ms = answer.build_ms,
                "compaction recorded"
            );
            Ok(true)
        }
        Ok(false) => {
            segments
                .add_garbage(&written)
                .await
                .map_err(|e| format!("the segment changed meanwhile, and its new files could not be marked as garbage: {e}"))?;
            tracing::info!(
                segment = job.segment,
                "the segment changed during its compaction (a late file); its new files are garbage, and it is compacted again"
            );
            Ok(false)
        }
        Err(e @ SegmentError::Invalid(_)) => {
            // Refused before any write: the new files are garbage.
            segments
                .add_garbage(&written)
                .await
                .map_err(|g| format!("{e}; its new files could not be marked as garbage: {g}"))?;
            Err(e.to_string())
        }
        Err(e) => {
            // The write may have landed (its outcome is unknown), so the new
            // files may be named now: they are left alone, and the next term
            // finds the segment as the store has it.
            Err(format!(
                "could not record it: {e}; its new files {written:?} are left in place"
            ))
        }
    }
}
