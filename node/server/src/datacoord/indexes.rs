//! Index builds: every committed insert log of an indexed collection with at
//! least [`MIN_INDEX_ROWS`] rows gets an HNSW index. The data coordinator hands
//! each build to a live data node (`BuildIndex`, one at a time per node), records
//! the stored index on the file's segment when the node answers, and retries a
//! failed build later with a growing pause. Builds never hold up ingest: nothing
//! on the write path waits for them, and a file without an index is searched
//! exactly until it has one.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use milvus_like_api::proto::{self, Role};
use milvus_like_api::root_coord_link::RootCoordLink;
use milvus_like_api::schema::{CollectionSchema, IndexSpec};

use super::DataCoordMetrics;
use super::channels::DataNodeClients;
use super::segments::SegmentManager;
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

#[derive(Debug)]
struct Failure {
    attempts: u32,
    retry_at: Instant,
}

/// Builds in flight and failed builds waiting for their retry, by file.
#[derive(Debug, Default)]
pub struct IndexScheduler {
    running: Mutex<HashMap<String, i64>>,
    failures: Mutex<HashMap<String, Failure>>,
}

impl IndexScheduler {
    fn running(&self) -> std::sync::MutexGuard<'_, HashMap<String, i64>> {
        self.running.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn failures(&self) -> std::sync::MutexGuard<'_, HashMap<String, Failure>> {
        self.failures.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Starts builds of unindexed files on idle data nodes; sets
    /// `indexes_waiting` to the files that must wait.
    pub async fn pass(
        self: &Arc<Self>,
        segments: &Arc<SegmentManager>,
        root: &RootCoordLink,
        nodes: &NodeRegistry,
        clients: &Arc<DataNodeClients>,
        metrics: &Arc<DataCoordMetrics>,
    ) {
        let files = segments.unindexed(MIN_INDEX_ROWS).await;
        // Failures of files that no longer wait (dropped) are forgotten.
        self.failures()
            .retain(|path, _| files.iter().any(|(_, _, p)| p == path));
        let mut waiting = 0i64;
        let busy: BTreeSet<i64> = self.running().values().copied().collect();
        let mut idle: Vec<proto::NodeInfo> = nodes
            .nodes_of(Role::DataNode)
            .into_iter()
            .filter(|n| !n.stopping && !busy.contains(&n.node_id))
            .collect();
        let mut indexed: HashMap<i64, bool> = HashMap::new();
        let now = Instant::now();
        for (collection, segment, path) in files {
            if self.running().contains_key(&path)
                || self.failures().get(&path).is_some_and(|f| f.retry_at > now)
            {
                waiting += 1;
                continue;
            }
            let wanted = match indexed.get(&collection) {
                Some(w) => *w,
                None => {
                    let w = match root.collection(collection).await {
                        Ok(info) => info
                            .schema
                            .and_then(|s| CollectionSchema::try_from(s).ok())
                            .is_some_and(|s| matches!(s.index, IndexSpec::Hnsw { .. })),
                        Err(_) => false, // dropped, or the root is away: next pass
                    };
                    indexed.insert(collection, w);
                    w
                }
            };
            if !wanted {
                continue;
            }
            let Some(node) = idle.pop() else {
                waiting += 1;
                continue;
            };
            let Some(mut client) = clients.get(&node.address) else {
                continue;
            };
            self.running().insert(path.clone(), node.node_id);
            let (me, segments, metrics) = (self.clone(), segments.clone(), metrics.clone());
            crate::spawn(async move {
                let request = proto::BuildIndexRequest {
                    collection_id: collection,
                    segment_id: segment,
                    insert_log_path: path.clone(),
                };
                // The client's calls time out after BUILD_TIMEOUT.
                let result = match client.build_index(request).await {
                    Ok(r) => {
                        let r = r.into_inner();
                        segments
                            .record_index(segment, &path, &r.index_path, r.index_bytes)
                            .await
                            .map(|_| r)
                            .map_err(|e| format!("could not record it: {e}"))
                    }
                    Err(status) => Err(status.message().to_owned()),
                };
                me.running().remove(&path);
                match result {
                    Ok(r) => {
                        me.failures().remove(&path);
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
                    }
                    Err(reason) => {
                        let mut failures = me.failures();
                        let f = failures.entry(path.clone()).or_insert(Failure {
                            attempts: 0,
                            retry_at: Instant::now(),
                        });
                        f.attempts += 1;
                        let pause = Duration::from_secs(1u64 << f.attempts.min(9)).min(MAX_BACKOFF);
                        f.retry_at = Instant::now() + pause;
                        tracing::warn!(
                            node_id = node.node_id,
                            segment,
                            path,
                            attempts = f.attempts,
                            ?pause,
                            "index build failed: {reason}; retrying later"
                        );
                        metrics.index_build_failures.inc();
                    }
                }
            });
        }
        metrics.indexes_waiting.set(waiting);
    }
}
