//! The data coordinator (port 13333): decides where data goes.
//!
//! - [`channels`]: which data node consumes each channel, moved by handshake and
//!   fenced by an ownership epoch.
//! - [`segments`]: row grants in growing segments, seal policies, flush scheduling,
//!   and the epoch-checked commits of flushed files and checkpoints.
//! - [`balancer`]: the pluggable strategies that pick channel owners.
//! - [`indexes`]: HNSW index builds of committed files, handed to data nodes.
//! - [`queries`]: which query node serves each channel, and which collections
//!   are loaded (the read path).
//!
//! Active/standby like the root coordinator (leader key `election/datacoord`); a
//! standby answers `Unavailable` with the leader's address.

pub mod balancer;
pub mod channels;
pub mod indexes;
pub mod queries;
pub mod segments;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use milvus_like_api::proto::data_coord_server::{DataCoord, DataCoordServer};
use milvus_like_api::proto::data_node_client::DataNodeClient;
use milvus_like_api::proto::proxy_client::ProxyClient;
use milvus_like_api::proto::query_node_client::QueryNodeClient;
use milvus_like_api::proto::{self, Role};
use milvus_like_api::retry::Retry;
use milvus_like_api::root_coord_link::RootCoordLink;
use milvus_like_api::schema::{CollectionSchema, IndexSpec};
use milvus_like_api::settings::{self, defaults};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};

use self::balancer::{BalancerRegistry, NodeLoad};
use self::channels::{ChannelManager, Clients, DataNodeClients, HandshakeConfig};
use self::queries::{QueryNodeClients, QueryPlacement};
use self::segments::{SegmentConfig, SegmentManager};
use crate::election::Leadership;
use crate::meta::MetaStore;
use crate::role::{Office, RoleConfig, RoleProcess, Seat};

/// Leader key of the data coordinators.
pub const LEADER_KEY: &str = "election/datacoord";

#[derive(Debug, Clone)]
pub struct DataCoordConfig {
    pub role: RoleConfig,
    /// Root coordinator endpoints (all of them; the leader is found).
    pub rootcoord: Vec<String>,
    /// Channels = partitions of the insert and delete topics. Fixed at creation.
    pub channels: u32,
    /// Balancer strategy name (see [`BalancerRegistry`]).
    pub balancer: String,
    pub segments: SegmentConfig,
    pub handshake: HandshakeConfig,
    /// How long `Flush(wait)` and `DrainNode` wait at most.
    pub wait_deadline: Duration,
}

impl Default for DataCoordConfig {
    fn default() -> Self {
        Self {
            role: RoleConfig::of(settings::Role::DataCoord),
            rootcoord: vec![RoleConfig::local_endpoint(settings::Role::RootCoord)],
            channels: defaults::CHANNELS,
            balancer: defaults::BALANCER.into(),
            segments: SegmentConfig::default(),
            handshake: HandshakeConfig::default(),
            wait_deadline: Duration::from_secs(60),
        }
    }
}

#[derive(Debug, Default)]
pub struct DataCoordMetrics {
    pub is_leader: Gauge,
    pub channels_moved: Counter,
    pub query_channels_moved: Counter,
    pub index_builds: Counter,
    pub index_build_failures: Counter,
    pub indexes_waiting: Gauge,
    pub compactions: Counter,
    pub compaction_failures: Counter,
    pub garbage_deleted: Counter,
    pub orphaned_channels: Gauge,
    pub segments_sealed: Counter,
    pub commits: Counter,
    pub stale_commits: Counter,
    /// The load distribution over the live data nodes, as last reported.
    pub node_channels: NodeGauges,
    pub node_buffered_bytes: NodeGauges,
    pub node_lag: NodeGauges,
    pub node_memory_bytes: NodeGauges,
}

type NodeGauges = prometheus_client::metrics::family::Family<crate::metrics::NodeLabels, Gauge>;

impl DataCoordMetrics {
    pub fn register(&self, registry: &mut prometheus_client::registry::Registry) {
        let r = registry.sub_registry_with_prefix("datacoord");
        r.register(
            "is_leader",
            "1 when this process is the active data coordinator",
            self.is_leader.clone(),
        );
        r.register(
            "channels_moved",
            "Channel ownership changes",
            self.channels_moved.clone(),
        );
        r.register(
            "query_channels_moved",
            "Changes of the query node serving a channel",
            self.query_channels_moved.clone(),
        );
        r.register(
            "index_builds",
            "Indexes of committed files built and recorded",
            self.index_builds.clone(),
        );
        r.register(
            "index_build_failures",
            "Index builds that failed (each is retried later)",
            self.index_build_failures.clone(),
        );
        r.register(
            "indexes_waiting",
            "Committed files waiting for an index (no idle data node, or a retry pause)",
            self.indexes_waiting.clone(),
        );
        r.register(
            "compactions",
            "Flushed segments rewritten as one file with one index, and recorded",
            self.compactions.clone(),
        );
        r.register(
            "compaction_failures",
            "Compactions that failed (each is retried later)",
            self.compaction_failures.clone(),
        );
        r.register(
            "garbage_deleted",
            "Replaced files deleted after their grace",
            self.garbage_deleted.clone(),
        );
        r.register(
            "orphaned_channels",
            "Channels no data node can own right now",
            self.orphaned_channels.clone(),
        );
        r.register("commits", "Flush commits accepted", self.commits.clone());
        r.register(
            "stale_commits",
            "Flush commits refused because the sender no longer owns the channel",
            self.stale_commits.clone(),
        );
        r.register(
            "node_channels",
            "Channels each live data node owns",
            self.node_channels.clone(),
        );
        r.register(
            "node_buffered_bytes",
            "Unflushed bytes each live data node reported",
            self.node_buffered_bytes.clone(),
        );
        r.register(
            "node_lag",
            "Messages each live data node is behind on its channels, as reported",
            self.node_lag.clone(),
        );
        r.register(
            "node_memory_bytes",
            "Resident memory each live data node reported",
            self.node_memory_bytes.clone(),
        );
    }

    /// Redraws the load distribution (nodes that left disappear from it).
    fn show_loads(&self, loads: &[(NodeLoad, usize)]) {
        let gauges = [
            &self.node_channels,
            &self.node_buffered_bytes,
            &self.node_lag,
            &self.node_memory_bytes,
        ];
        for g in gauges {
            g.clear();
        }
        for (load, channels) in loads {
            let labels = crate::metrics::NodeLabels {
                node_id: load.node_id,
            };
            let clamp = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
            self.node_channels
                .get_or_create(&labels)
                .set(clamp(*channels as u64));
            self.node_buffered_bytes
                .get_or_create(&labels)
                .set(clamp(load.buffered_bytes));
            self.node_lag.get_or_create(&labels).set(load.lag);
            self.node_memory_bytes
                .get_or_create(&labels)
                .set(clamp(load.memory_used_bytes));
        }
    }
}

#[derive(Debug)]
struct Active {
    channels: Arc<ChannelManager>,
    segments: Arc<SegmentManager>,
    queries: Arc<QueryPlacement>,
    indexes: Arc<indexes::IndexScheduler>,
}

#[derive(Debug)]
struct Shared {
    store: Arc<dyn MetaStore>,
    config: DataCoordConfig,
    nodes: crate::session::NodeRegistry,
    root: Arc<RootCoordLink>,
    balancers: BalancerRegistry,
    clients: Arc<DataNodeClients>,
    /// The data nodes' clients for index builds, whose calls last as long as
    /// a build may (the others' minute is too short for a large file's).
    index_clients: Arc<DataNodeClients>,
    proxies: Clients<ProxyClient<tonic::transport::Channel>>,
    query_nodes: Arc<QueryNodeClients>,
    seat: Seat<Active>,
    metrics: Arc<DataCoordMetrics>,
}

#[derive(Debug, Clone)]
pub struct DataCoordService {
    shared: Arc<Shared>,
}

impl DataCoordService {
    async fn leader_only(&self) -> Result<Arc<Active>, Status> {
        self.shared
            .seat
            .leader_only(self.shared.store.as_ref())
            .await
    }

    async fn assignments(&self, active: &Active) -> Result<Vec<proto::ChannelAssignment>, Status> {
        Ok(active.channels.distribution().await?.0)
    }

    async fn reconcile(&self, active: &Active, reason: &str) -> Result<Vec<u32>, Status> {
        match active.channels.reconcile(reason).await {
            Ok(r) => {
                self.shared
                    .metrics
                    .channels_moved
                    .inc_by(r.moved.len() as u64);
                self.shared
                    .metrics
                    .orphaned_channels
                    .set(i64::try_from(r.orphaned.len()).unwrap_or(i64::MAX));
                Ok(r.moved)
            }
            Err(e) => Err(e.into()),
        }
    }
}

#[tonic::async_trait]
impl DataCoord for DataCoordService {
    #[tracing::instrument(skip_all)]
    async fn assign_segment_id(
        &self,
        request: Request<proto::AssignSegmentIdRequest>,
    ) -> Result<Response<proto::AssignSegmentIdResponse>, Status> {
        let active = self.leader_only().await?;
        let request = request.into_inner();
        let assignments = run_to_end(async move {
            Ok(active
                .segments
                .assign(&request.requests, request.proxy_id)
                .await?)
        })
        .await?;
        Ok(Response::new(proto::AssignSegmentIdResponse {
            assignments,
        }))
    }

    #[tracing::instrument(skip_all, fields(collection_id))]
    async fn flush(
        &self,
        request: Request<proto::FlushRequest>,
    ) -> Result<Response<proto::FlushResponse>, Status> {
        let req = request.into_inner();
        tracing::Span::current().record("collection_id", req.collection_id);
        let active = self.leader_only().await?;
        self.shared.root.collection(req.collection_id).await?;
        let (sealed, through) = run_to_end({
            let active = active.clone();
            async move {
                let sealed = active.segments.seal_collection(req.collection_id).await?;
                // The collection's deletes may be on any channel, with no segment sealed.
                let through = active.segments.flush_channels().await?;
                Ok((sealed, through))
            }
        })
        .await?;
        if !req.wait {
            return Ok(Response::new(proto::FlushResponse {
                sealed_segment_ids: sealed,
                flushed_segment_ids: vec![],
            }));
        }
        let pending = active
            .segments
            .wait_flushed(&sealed, through, self.shared.config.wait_deadline)
            .await;
        if !pending.is_empty() {
            return Err(Status::deadline_exceeded(format!(
                "segments {:?} and channels {:?} were not flushed within {:?}; they will be, keep polling ListSegments",
                pending.segments, pending.channels, self.shared.config.wait_deadline
            )));
        }
        Ok(Response::new(proto::FlushResponse {
            flushed_segment_ids: sealed.clone(),
            sealed_segment_ids: sealed,
        }))
    }

    async fn list_segments(
        &self,
        request: Request<proto::ListSegmentsRequest>,
    ) -> Result<Response<proto::ListSegmentsResponse>, Status> {
        let collection = request.into_inner().collection_id;
        let active = self.leader_only().await?;
        self.shared.root.collection(collection).await?;
        let delete_logs = active.segments.delete_logs(collection).await?;
        Ok(Response::new(proto::ListSegmentsResponse {
            segments: active.segments.list(collection).await,
            delete_logs,
        }))
    }

    #[tracing::instrument(skip_all, fields(collection_id))]
    async fn get_recovery_info(
        &self,
        request: Request<proto::GetRecoveryInfoRequest>,
    ) -> Result<Response<proto::GetRecoveryInfoResponse>, Status> {
        let collection = request.into_inner().collection_id;
        tracing::Span::current().record("collection_id", collection);
        let active = self.leader_only().await?;
        self.shared.root.collection(collection).await?;
        Ok(Response::new(proto::GetRecoveryInfoResponse {
            channels: active.segments.recovery_info(collection).await?,
        }))
    }

    #[tracing::instrument(skip_all, fields(node_id, channel, epoch))]
    async fn commit_flush(
        &self,
        request: Request<proto::CommitFlushRequest>,
    ) -> Result<Response<proto::CommitFlushResponse>, Status> {
        let req = request.into_inner();
        let span = tracing::Span::current();
        span.record("node_id", req.node_id);
        span.record("channel", req.channel);
        span.record("epoch", req.epoch);
        let active = self.leader_only().await?;
        match run_to_end(async move { Ok(active.segments.commit_flush(&req).await?) }).await {
            Ok(()) => {
                self.shared.metrics.commits.inc();
                Ok(Response::new(proto::CommitFlushResponse {}))
            }
            Err(status) => {
                if status.code() == tonic::Code::FailedPrecondition {
                    self.shared.metrics.stale_commits.inc();
                    tracing::warn!(message = status.message(), "commit refused");
                }
                Err(status)
            }
        }
    }

    async fn report_load(
        &self,
        request: Request<proto::ReportLoadRequest>,
    ) -> Result<Response<proto::ReportLoadResponse>, Status> {
        let req = request.into_inner();
        let active = self.leader_only().await?;
        let load = NodeLoad {
            node_id: req.node_id,
            buffered_bytes: req.channels.iter().map(|c| c.buffered_bytes).sum(),
            rows_per_second: req.channels.iter().map(|c| c.rows_per_second).sum(),
            memory_used_bytes: req.memory_used_bytes,
            lag: req.channels.iter().map(|c| c.lag.max(0)).sum(),
        };
        let held: Vec<u32> = req.channels.iter().map(|c| c.channel).collect();
        active.channels.report_load(load, &held);
        self.shared
            .metrics
            .show_loads(&active.channels.node_loads());
        Ok(Response::new(proto::ReportLoadResponse {}))
    }

    async fn get_channel_distribution(
        &self,
        _request: Request<proto::GetChannelDistributionRequest>,
    ) -> Result<Response<proto::GetChannelDistributionResponse>, Status> {
        async move {
            let active = self.leader_only().await?;
            let (channels, nodes, last) = active.channels.distribution().await?;
            Ok(Response::new(proto::GetChannelDistributionResponse {
                channels,
                balancer: active.channels.balancer_name().to_owned(),
                nodes: nodes
                    .into_iter()
                    .map(|(n, channels, draining)| {
                        let load = active.channels.last_load(n.node_id);
                        proto::NodeChannels {
                            node_id: n.node_id,
                            address: n.address,
                            name: n.name,
                            channels,
                            draining,
                            buffered_bytes: load.buffered_bytes,
                            lag: load.lag,
                            rows_per_second: load.rows_per_second,
                            memory_used_bytes: load.memory_used_bytes,
                        }
                    })
                    .collect(),
                last_rebalance_ms: last,
                query_channels: active.queries.owners(),
            }))
        }
        .await
    }

    #[tracing::instrument(skip_all)]
    async fn rebalance(
        &self,
        request: Request<proto::RebalanceRequest>,
    ) -> Result<Response<proto::RebalanceResponse>, Status> {
        async move {
            let expected: BTreeSet<i64> =
                request.into_inner().expected_node_ids.into_iter().collect();
            let active = self.leader_only().await?;
            if !expected.is_empty() {
                let live = active.channels.live_node_ids();
                let unknown: Vec<i64> = expected.difference(&live).copied().collect();
                if !unknown.is_empty() {
                    return Err(Status::invalid_argument(format!(
                        "unknown data nodes {unknown:?}; live data nodes are {live:?}"
                    )));
                }
                let extra: Vec<i64> = live.difference(&expected).copied().collect();
                active.channels.drain(&extra).await?;
            }
            let moved = self.reconcile(&active, "rebalance request").await?;
            Ok(Response::new(proto::RebalanceResponse {
                channels: self.assignments(&active).await?,
                moved: u32::try_from(moved.len()).unwrap_or(u32::MAX),
            }))
        }
        .await
    }

    #[tracing::instrument(skip_all, fields(node_id))]
    async fn drain_node(
        &self,
        request: Request<proto::DrainNodeRequest>,
    ) -> Result<Response<proto::DrainNodeResponse>, Status> {
        async move {
            let node = request.into_inner().node_id;
            tracing::Span::current().record("node_id", node);
            let active = self.leader_only().await?;
            let before = self.assignments(&active).await?;
            let owned = channels_of(&before, node);
            if owned.is_empty() && !active.channels.live_node_ids().contains(&node) {
                return Err(Status::not_found(format!(
                    "data node {node} is not registered and owns no channel"
                )));
            }
            active.channels.drain(&[node]).await?;
            self.reconcile(&active, "drain").await?;
            let after = self.assignments(&active).await?;
            let still = channels_of(&after, node);
            if !still.is_empty() {
                return Err(Status::unavailable(format!(
                    "channels {still:?} of node {node} could not move yet (no other data node?); retry"
                )));
            }
            Ok(Response::new(proto::DrainNodeResponse {
                moved_channels: owned,
            }))
        }
        .await
    }

    #[tracing::instrument(skip_all, fields(collection_id = request.get_ref().collection_id))]
    async fn load_collection(
        &self,
        request: Request<proto::LoadCollectionRequest>,
    ) -> Result<Response<proto::LoadCollectionResponse>, Status> {
        let collection = request.into_inner().collection_id;
        let active = self.leader_only().await?;
        // Fresh: its index may have been dropped a moment ago.
        let info = self.shared.root.collection_fresh(collection).await?;
        let schema = CollectionSchema::try_from(&info)
            .map_err(|e| Status::internal(format!("the stored schema is invalid: {e}")))?;
        if schema.index == IndexSpec::NotChosen {
            return Err(Status::failed_precondition(format!(
                "collection {:?} has no index yet; create one (CreateIndex) before loading it",
                schema.name
            )));
        }
        if !active.queries.has_query_nodes() {
            return Err(Status::failed_precondition(format!(
                "no query node is running to load collection {collection}; start one (milvus-like querynode)"
            )));
        }
        let deadline = tokio::time::Instant::now() + self.shared.config.wait_deadline;
        // To its end even if the caller gives up: a fenced write cut short ends the term.
        run_to_end(async move {
            active.queries.mark_loaded(collection).await?;
            loop {
                let pass = active.queries.reconcile("load").await?;
                if let Some((_, why)) = pass.refused.iter().find(|(c, _)| *c == collection) {
                    // Nothing half-loaded stays behind: the collection is released
                    // everywhere, and the caller learns why.
                    active.queries.mark_released(collection).await?;
                    active.queries.reconcile("load refused").await?;
                    tracing::warn!(why, "load refused");
                    return Err(Status::resource_exhausted(why.clone()));
                }
                let waiting: Vec<String> = active
                    .queries
                    .leaders(collection)?
                    .into_iter()
                    .filter(|l| !l.unavailable.is_empty())
                    .map(|l| l.unavailable)
                    .collect();
                if waiting.is_empty() {
                    tracing::info!("collection loaded");
                    return Ok(Response::new(proto::LoadCollectionResponse {}));
                }
                if tokio::time::Instant::now() >= deadline {
                    // Not UNAVAILABLE: clients read that as "ask another coordinator".
                    return Err(Status::deadline_exceeded(format!(
                        "the load did not finish in time: {}",
                        waiting
                            .into_iter()
                            .chain(pass.problems)
                            .collect::<Vec<_>>()
                            .join("; ")
                    )));
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        })
        .await
    }

    #[tracing::instrument(skip_all, fields(collection_id = request.get_ref().collection_id))]
    async fn release_collection(
        &self,
        request: Request<proto::ReleaseCollectionRequest>,
    ) -> Result<Response<proto::ReleaseCollectionResponse>, Status> {
        let collection = request.into_inner().collection_id;
        let active = self.leader_only().await?;
        run_to_end(async move {
            active.queries.mark_released(collection).await?;
            active.queries.reconcile("release").await?;
            Ok(Response::new(proto::ReleaseCollectionResponse {}))
        })
        .await
    }

    async fn get_shard_leaders(
        &self,
        request: Request<proto::GetShardLeadersRequest>,
    ) -> Result<Response<proto::GetShardLeadersResponse>, Status> {
        let collection = request.into_inner().collection_id;
        let active = self.leader_only().await?;
        Ok(Response::new(proto::GetShardLeadersResponse {
            leaders: active.queries.leaders(collection)?,
        }))
    }
}

/// Runs a change of the segments to its end even when the caller hangs up (tonic
/// drops the handler of a request whose client went away). A change cut short in
/// the middle of a write ends the term (see [`Leadership::write`]); a data node
/// killed while committing must not cause that.
async fn run_to_end<T: Send + 'static>(
    change: impl std::future::Future<Output = Result<T, Status>> + Send + 'static,
) -> Result<T, Status> {
    tokio::spawn(tracing::Instrument::in_current_span(change))
        .await
        .map_err(|e| Status::internal(format!("the change stopped: {e}")))?
}

/// Keeps ownership current: after every change of the data-node set, and every second.
async fn reconcile_loop(service: DataCoordService, active: Arc<Active>, term: CancellationToken) {
    let mut changes = service.shared.nodes.subscribe();
    loop {
        if let Err(status) = service
            .reconcile(&active, "node change or periodic check")
            .await
        {
            tracing::warn!(%status, "channel reconciliation failed; retrying");
        }
        tokio::select! {
            () = term.cancelled() => return,
            _ = changes.changed() => {}
            () = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
}

/// Keeps the read path's placement current, apart from the data nodes' loop: a
/// query node loading a collection must not hold up channel ownership.
async fn query_loop(service: DataCoordService, active: Arc<Active>, term: CancellationToken) {
    let mut changes = service.shared.nodes.subscribe();
    loop {
        // A dropped collection is no longer loaded.
        for collection in active.queries.loaded() {
            let gone = matches!(
                service.shared.root.collection(collection).await,
                Err(status) if status.code() == tonic::Code::NotFound
            );
            if gone && let Err(e) = active.queries.mark_released(collection).await {
                tracing::warn!(collection, error = %e, "could not release a dropped collection");
            }
        }
        match active
            .queries
            .reconcile("node change or periodic check")
            .await
        {
            Ok(r) => {
                service
                    .shared
                    .metrics
                    .query_channels_moved
                    .inc_by(r.moved.len() as u64);
            }
            Err(e) => tracing::warn!(error = %e, "query placement failed; retrying"),
        }
        tokio::select! {
            () = term.cancelled() => return,
            _ = changes.changed() => {}
            () = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
}

/// Starts index builds, compactions and garbage deletions, every second.
async fn index_loop(service: DataCoordService, active: Arc<Active>, term: CancellationToken) {
    loop {
        tokio::select! {
            () = term.cancelled() => return,
            () = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
        let shared = &service.shared;
        active
            .indexes
            .pass(&indexes::Context {
                segments: &active.segments,
                root: &shared.root,
                nodes: &shared.nodes,
                clients: &shared.index_clients,
                metrics: &shared.metrics,
            })
            .await;
    }
}

/// How long a proxy may take to give grants back (it waits for the inserts
/// using them); one that takes longer keeps them until they expire.
const RELEASE_TIMEOUT: Duration = Duration::from_secs(2);

impl DataCoordService {
    /// Asks every live proxy that holds grants of sealed segments to give them
    /// back, so that their flush need not wait for the grants to expire. A proxy
    /// that is gone or does not answer keeps them until they expire.
    async fn release_grants(&self, active: &Active) {
        let wanted = active.segments.grants_to_release().await;
        if wanted.is_empty() {
            return;
        }
        let proxies: std::collections::HashMap<i64, String> = self
            .shared
            .nodes
            .nodes_of(Role::Proxy)
            .into_iter()
            .map(|n| (n.node_id, n.address))
            .collect();
        let calls = wanted.into_iter().filter_map(|(holder, segment_ids)| {
            let mut client = self.shared.proxies.get(proxies.get(&holder)?)?;
            Some(async move {
                let request = proto::ReleaseGrantsRequest {
                    segment_ids: segment_ids.clone(),
                    proxy_id: holder,
                };
                match tokio::time::timeout(RELEASE_TIMEOUT, client.release_grants(request)).await {
                    Ok(Ok(_)) => Some((holder, segment_ids)),
                    Ok(Err(status)) => {
                        tracing::warn!(proxy = holder, %status, "a proxy did not give its grants back; they must expire");
                        None
                    }
                    Err(_) => {
                        tracing::warn!(proxy = holder, "a proxy took too long to give its grants back; they must expire");
                        None
                    }
                }
            })
        });
        for (holder, segment_ids) in futures::future::join_all(calls).await.into_iter().flatten() {
            tracing::debug!(proxy = holder, segments = ?segment_ids, "grants given back");
            active.segments.grants_released(holder, &segment_ids).await;
        }
    }
}

async fn segment_loop(service: DataCoordService, active: Arc<Active>, term: CancellationToken) {
    loop {
        tokio::select! {
            () = term.cancelled() => return,
            () = tokio::time::sleep(Duration::from_secs(1)) => {}
            () = active.segments.woken() => {}
        }
        tokio::select! {
            () = term.cancelled() => return,
            () = service.release_grants(&active) => {}
        }
        // Every call inside is bounded, but a pass must never wedge the loop: seal
        // and flush scheduling would stop for good.
        match tokio::time::timeout(Duration::from_secs(30), active.segments.tick()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "segment policies failed; retrying"),
            Err(_) => {
                tracing::error!("a segment policy pass took over 30 s; abandoned it, retrying")
            }
        }
    }
}

#[async_trait::async_trait]
impl Office for DataCoordService {
    async fn take_office(
        &self,
        leadership: Leadership,
        term: CancellationToken,
    ) -> anyhow::Result<()> {
        let shared = &self.shared;
        let balancer = shared.balancers.build(&shared.config.balancer)?;
        let channels = Arc::new(
            ChannelManager::load(
                shared.store.clone(),
                leadership.clone(),
                shared.config.channels,
                balancer,
                shared.nodes.clone(),
                shared.clients.clone(),
                shared.config.handshake.clone(),
            )
            .await?,
        );
        let segments = Arc::new(
            SegmentManager::load(
                shared.store.clone(),
                leadership.clone(),
                shared.root.clone(),
                channels.clone(),
                shared.config.segments.clone(),
            )
            .await?,
        );
        let queries = Arc::new(
            QueryPlacement::load(
                shared.store.clone(),
                leadership.clone(),
                shared.config.channels,
                shared.balancers.build(&shared.config.balancer)?,
                shared.nodes.clone(),
                shared.query_nodes.clone(),
            )
            .await?,
        );
        let active = Arc::new(Active {
            channels,
            segments,
            queries,
            indexes: Arc::default(),
        });
        shared.seat.take(leadership, active.clone());
        crate::spawn(reconcile_loop(self.clone(), active.clone(), term.clone()));
        crate::spawn(query_loop(self.clone(), active.clone(), term.clone()));
        crate::spawn(index_loop(self.clone(), active.clone(), term.clone()));
        crate::spawn(segment_loop(self.clone(), active, term));
        Ok(())
    }

    fn leave_office(&self) {
        self.shared.seat.leave();
    }
}

/// The channels `node` owns in `assignments`.
fn channels_of(assignments: &[proto::ChannelAssignment], node: i64) -> Vec<u32> {
    assignments
        .iter()
        .filter(|a| a.node_id == node)
        .map(|a| a.channel)
        .collect()
}

/// Creates the logs (one partition per channel), retrying while the log is away.
async fn create_topics(
    log: Arc<dyn crate::msgstream::Log>,
    channels: u32,
    cancel: CancellationToken,
) {
    let created = Retry::new("cannot create the log topics yet")
        .backoff(Duration::from_millis(500), Duration::from_secs(10))
        .until_cancelled(&cancel)
        .run(|| log.ensure(channels))
        .await;
    match created {
        Ok(()) => {
            tracing::info!(log = %log.describe(), channels, "insert and delete logs ready");
        }
        Err(e) if !cancel.is_cancelled() => {
            tracing::error!(error = %e, "the logs do not match the channel count; fix the topics or the configuration");
        }
        Err(_) => {}
    }
}

/// Runs a data coordinator until `cancel` fires. With a `log`, the coordinator
/// creates the insert and delete logs with one channel each per configured channel;
/// `None`: they are managed elsewhere.
pub async fn run(
    store: Arc<dyn MetaStore>,
    log: Option<Arc<dyn crate::msgstream::Log>>,
    config: DataCoordConfig,
    balancers: BalancerRegistry,
    cancel: CancellationToken,
) -> anyhow::Result<()> {
    // The role's span; `serve` records the node id (see `crate::spawn`).
    let span = tracing::info_span!("datacoord", node_id = tracing::field::Empty);
    tracing::Instrument::instrument(serve(store, log, config, balancers, cancel), span).await
}

async fn serve(
    store: Arc<dyn MetaStore>,
    log: Option<Arc<dyn crate::msgstream::Log>>,
    config: DataCoordConfig,
    balancers: BalancerRegistry,
    cancel: CancellationToken,
) -> anyhow::Result<()> {
    // Fail fast on a bad strategy name, before registering anywhere.
    balancers.build(&config.balancer)?;
    let metrics = Arc::new(DataCoordMetrics::default());
    let mut registry = prometheus_client::registry::Registry::default();
    metrics.register(&mut registry);
    let process =
        RoleProcess::start(store.clone(), Role::DataCoord, config.role.clone(), &cancel).await?;
    let node_id = process.node_id();
    tracing::Span::current().record("node_id", node_id);
    let root = Arc::new(RootCoordLink::connect(
        &config.rootcoord,
        Duration::from_secs(10),
    )?);
    let service = DataCoordService {
        shared: Arc::new(Shared {
            store: store.clone(),
            config: config.clone(),
            nodes: process.nodes.clone(),
            root,
            balancers,
            clients: Arc::new(DataNodeClients::new(DataNodeClient::new)),
            index_clients: Arc::new(DataNodeClients::with_timeout(
                DataNodeClient::new,
                indexes::BUILD_TIMEOUT,
            )),
            proxies: Clients::new(ProxyClient::new),
            query_nodes: Arc::new(Clients::new(QueryNodeClient::new)),
            seat: Seat::new(LEADER_KEY, "data coordinator", metrics.is_leader.clone()),
            metrics,
        }),
    };
    let servers = process
        .serve(DataCoordServer::new(service.clone()), registry, &cancel)
        .await?;
    if let Some(log) = log {
        process.watch_log(&log);
        crate::spawn(create_topics(log, config.channels, cancel.clone()));
    }
    process
        .lead(
            LEADER_KEY,
            &service,
            &servers,
            <DataCoordServer<DataCoordService> as tonic::server::NamedService>::NAME,
            &cancel,
        )
        .await;
    process.shut_down(servers).await;
    Ok(())
}
