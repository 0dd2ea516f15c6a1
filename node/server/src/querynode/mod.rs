//! The query node (port 21123): follows channels and serves reads of the
//! collections loaded on it (docs/read-path-design.md, step 4).
//!
//! For each watched channel and loaded collection it holds the files the data
//! coordinator lists at or below the channel's checkpoint (`GetRecoveryInfo`) and
//! the records of the log from that checkpoint on ([`view`]). A target loop moves
//! every collection to the newest checkpoint as data nodes commit; the follower
//! ([`follow`]) reads the logs with the same record checks as the data nodes
//! (`crate::ingest`), so both sides agree on every record.
//!
//! Reads: a STRONG read of guarantee timestamp G reads the logs' ends after it
//! arrives and waits until the channel has read up to them; every write
//! acknowledged before G was issued is below those ends (the proxy acknowledges
//! only durable writes). It then sees the rows and deletes at or below G.
//! A SESSION read waits for the offsets of the writes its proxy acknowledged
//! instead (read-your-writes through a proxy, without asking the log); a
//! BOUNDED read for the logs' ends as some read of the last
//! [`BOUNDED_STALENESS`] found them (so a busy node asks the log about once per
//! channel per 5 s); EVENTUALLY reads whatever the channel holds.

mod follow;
mod target;
pub mod view;

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use milvus_like_api::leader_pool::LeaderPool;
use milvus_like_api::proto::query_node_server::{QueryNode, QueryNodeServer};
use milvus_like_api::proto::{self, ConsistencyLevel, Role};
use milvus_like_api::root_coord_link::RootCoordLink;
use milvus_like_api::schema::CollectionSchema;
use milvus_like_api::settings;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};

use self::view::{ChannelView, Found, Offsets, SearchParams, ViewError};
use crate::columns::Column;
use crate::filter::{Filter, output_columns};
use crate::keys;
use crate::meta::MetaStore;
use crate::msgstream::{Log, LogConsumer, Stream};
use crate::role::{RoleConfig, RoleProcess};
use crate::search::SearchError;
use crate::storage::{SegmentStore, StorageConfig};

/// Largest `top_k` (Milvus's limit).
pub const MAX_TOP_K: u32 = 16_384;
/// Most rows a query returns at once (Milvus's limit).
pub const MAX_QUERY_ROWS: u32 = 16_384;
/// Search breadth in indexed files when the request sets none.
const DEFAULT_EF: usize = 64;
/// How long a STRONG read waits for its channel by default.
const DEFAULT_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// How old the logs' ends a BOUNDED read waits for may be (Milvus's default
/// graceful time).
pub const BOUNDED_STALENESS: Duration = Duration::from_secs(5);

#[derive(Debug, Clone)]
pub struct QueryNodeConfig {
    pub role: RoleConfig,
    pub rootcoord: Vec<String>,
    pub datacoord: Vec<String>,
    pub storage: StorageConfig,
    /// How often loaded collections move to the newest committed files.
    pub target_interval: Duration,
    /// Bytes for loaded collections (0: three quarters of what the process may
    /// use, [`memory_limit`]).
    pub memory_limit: u64,
}

impl Default for QueryNodeConfig {
    fn default() -> Self {
        Self {
            role: RoleConfig::new(
                std::net::SocketAddr::from(([0, 0, 0, 0], settings::querynode::GRPC_PORT)),
                std::net::SocketAddr::from(([0, 0, 0, 0], settings::querynode::HTTP_PORT)),
            ),
            rootcoord: vec![RoleConfig::local_endpoint(settings::Role::RootCoord)],
            datacoord: vec![RoleConfig::local_endpoint(settings::Role::DataCoord)],
            storage: StorageConfig::Local {
                root: settings::defaults::STORAGE_ROOT.into(),
            },
            target_interval: settings::defaults::QUERYNODE_TARGET_INTERVAL,
            memory_limit: settings::defaults::QUERYNODE_MEMORY_MIB << 20,
        }
    }
}

#[derive(Debug)]
pub struct QueryNodeMetrics {
    pub records_read: Counter,
    pub log_gaps: Counter,
    pub target_moves: Counter,
    pub files_loaded: Counter,
    pub indexes_loaded: Counter,
    pub index_load_failures: Counter,
    pub read_wait_seconds: Histogram,
    pub memory_bytes: Gauge,
    pub memory_limit_bytes: Gauge,
    pub loads_refused: Counter,
}

impl Default for QueryNodeMetrics {
    fn default() -> Self {
        Self {
            records_read: Counter::default(),
            log_gaps: Counter::default(),
            target_moves: Counter::default(),
            files_loaded: Counter::default(),
            indexes_loaded: Counter::default(),
            index_load_failures: Counter::default(),
            read_wait_seconds: Histogram::new(
                prometheus_client::metrics::histogram::exponential_buckets(0.001, 2.0, 16),
            ),
            memory_bytes: Gauge::default(),
            memory_limit_bytes: Gauge::default(),
            loads_refused: Counter::default(),
        }
    }
}

impl QueryNodeMetrics {
    pub fn register(&self, registry: &mut prometheus_client::registry::Registry) {
        let r = registry.sub_registry_with_prefix("querynode");
        r.register(
            "records_read",
            "Records read from the insert and delete logs",
            self.records_read.clone(),
        );
        r.register(
            "log_gaps",
            "Records past a collection's next offset (stale or missing); the channel is read again",
            self.log_gaps.clone(),
        );
        r.register(
            "target_moves",
            "Times a collection on a channel moved to newer committed files",
            self.target_moves.clone(),
        );
        r.register(
            "files_loaded",
            "Insert and delete logs read from object storage",
            self.files_loaded.clone(),
        );
        r.register(
            "indexes_loaded",
            "Indexes of insert logs loaded (those files are searched through them)",
            self.indexes_loaded.clone(),
        );
        r.register(
            "index_load_failures",
            "Indexes that could not be read or did not match their file (searched exactly)",
            self.index_load_failures.clone(),
        );
        r.register(
            "read_wait_seconds",
            "Time a consistent read waited for its channel to catch up",
            self.read_wait_seconds.clone(),
        );
        r.register(
            "memory_bytes",
            "Bytes the loaded collections hold (rows, deletes, indexes), as accounted",
            self.memory_bytes.clone(),
        );
        r.register(
            "memory_limit_bytes",
            "Bytes loaded collections may hold (--memory-mib)",
            self.memory_limit_bytes.clone(),
        );
        r.register(
            "loads_refused",
            "Loads refused because the collection would not fit in memory",
            self.loads_refused.clone(),
        );
    }
}

/// A channel this node follows.
#[derive(Debug)]
struct Watched {
    epoch: u64,
    view: Arc<RwLock<ChannelView>>,
    /// Where the consumer reads the channel (`None`: not assigned).
    reading: Option<Offsets>,
    /// Fires whenever the view takes a record or moves.
    progress: Arc<Notify>,
}

/// State shared by the RPC handlers, the follower and the target loop.
#[derive(Debug)]
pub struct Node {
    node_id: i64,
    config: QueryNodeConfig,
    root: Arc<RootCoordLink>,
    datacoord: LeaderPool,
    storage: SegmentStore,
    consumer: Arc<dyn LogConsumer>,
    records: crate::ingest::RecordChecker,
    channels: std::sync::Mutex<BTreeMap<u32, Watched>>,
    loaded: std::sync::Mutex<BTreeMap<i64, CollectionSchema>>,
    /// Index files that could not be loaded or did not match their insert log:
    /// not read again (their files are searched exactly).
    bad_indexes: std::sync::Mutex<std::collections::HashSet<String>>,
    /// One target sync at a time (load, watch and the periodic loop).
    syncing: tokio::sync::Mutex<()>,
    /// Bytes loaded collections may hold.
    memory_limit: u64,
    /// The logs' ends of each channel as last read, and when (BOUNDED reads
    /// wait for these while they are recent).
    ends: std::sync::Mutex<std::collections::HashMap<u32, (std::time::Instant, Offsets)>>,
    metrics: Arc<QueryNodeMetrics>,
}

impl Node {
    fn channels(&self) -> std::sync::MutexGuard<'_, BTreeMap<u32, Watched>> {
        self.channels.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The view of a watched channel.
    fn view(&self, channel: u32) -> Option<Arc<RwLock<ChannelView>>> {
        self.channels().get(&channel).map(|w| w.view.clone())
    }

    fn bad_indexes(&self) -> std::sync::MutexGuard<'_, std::collections::HashSet<String>> {
        self.bad_indexes.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn loaded(&self) -> std::sync::MutexGuard<'_, BTreeMap<i64, CollectionSchema>> {
        self.loaded.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Bytes the watched channels' views hold, as accounted (also the gauge).
    fn memory_used(&self) -> u64 {
        let views: Vec<Arc<RwLock<ChannelView>>> =
            self.channels().values().map(|w| w.view.clone()).collect();
        let used = views.iter().map(|v| read(v).bytes()).sum();
        self.metrics
            .memory_bytes
            .set(i64::try_from(used).unwrap_or(i64::MAX));
        used
    }

    /// Stops following `channel` (if followed), refusing an `epoch` older than
    /// the one it is followed at.
    fn unfollow(
        &self,
        channels: &mut BTreeMap<u32, Watched>,
        channel: u32,
        epoch: u64,
    ) -> Result<(), Status> {
        let Some(w) = channels.get(&channel) else {
            return Ok(());
        };
        if epoch < w.epoch {
            return Err(Status::failed_precondition(format!(
                "channel {channel} is followed at epoch {}, not {epoch}",
                w.epoch
            )));
        }
        if w.reading.is_some() {
            self.consumer
                .unassign(channel)
                .map_err(|e| Status::unavailable(e.to_string()))?;
        }
        channels.remove(&channel);
        Ok(())
    }

    /// The view of a watched channel, checked against the caller's epoch.
    fn watched(
        &self,
        channel: u32,
        epoch: u64,
    ) -> Result<(Arc<RwLock<ChannelView>>, Arc<Notify>), Status> {
        let channels = self.channels();
        let w = channels.get(&channel).ok_or_else(|| {
            Status::failed_precondition(format!(
                "channel {channel} is not followed by query node {}",
                self.node_id
            ))
        })?;
        if epoch != 0 && epoch != w.epoch {
            return Err(Status::failed_precondition(format!(
                "query node {} follows channel {channel} at epoch {}, not {epoch}",
                self.node_id, w.epoch
            )));
        }
        Ok((w.view.clone(), w.progress.clone()))
    }

    /// The logs' ends of `channel` as a read at most `max_age` ago found them
    /// (read now when there is none that recent).
    async fn ends(&self, channel: u32, max_age: Duration) -> Result<Offsets, Status> {
        let known = self
            .ends
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&channel)
            .filter(|(at, _)| at.elapsed() <= max_age)
            .map(|(_, ends)| *ends);
        if let Some(ends) = known {
            return Ok(ends);
        }
        let read_at = std::time::Instant::now();
        let end = |stream| async move {
            self.consumer
                .high_watermark(stream, channel)
                .await
                .map_err(|e| {
                    Status::unavailable(format!("cannot read the end of channel {channel}: {e}"))
                })
        };
        let ends = Offsets {
            insert: end(Stream::Insert).await?,
            delete: end(Stream::Delete).await?,
        };
        let mut cache = self.ends.lock().unwrap_or_else(|p| p.into_inner());
        let newer = cache.get(&channel).is_none_or(|(at, _)| *at < read_at);
        if newer {
            cache.insert(channel, (read_at, ends));
        }
        Ok(ends)
    }

    /// Waits until `collection` on `channel` holds every record below `ends`.
    async fn catch_up(
        &self,
        channel: u32,
        collection: i64,
        view: &RwLock<ChannelView>,
        progress: &Notify,
        ends: Offsets,
        timeout: Duration,
    ) -> Result<(), Status> {
        let started = std::time::Instant::now();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let woken = progress.notified();
            let has = read(view).has(collection, &ends).map_err(view_status)?;
            if has {
                self.metrics
                    .read_wait_seconds
                    .observe(started.elapsed().as_secs_f64());
                return Ok(());
            }
            tokio::select! {
                () = woken => {}
                () = tokio::time::sleep(Duration::from_millis(50)) => {}
                () = tokio::time::sleep_until(deadline) => {
                    let have = read(view).stats(collection).map(|s| s.have).unwrap_or_default();
                    return Err(Status::deadline_exceeded(format!(
                        "channel {channel} has read up to offsets {}/{} (insert/delete) of {}/{} within {timeout:?}",
                        have.insert, have.delete, ends.insert, ends.delete
                    )));
                }
            }
        }
    }

    /// Checks a read's place and time (before any wait), waits as its
    /// consistency level says, and returns what to read and when.
    async fn prepare(&self, at: proto::ReadAt) -> Result<Prepared, Status> {
        let (view, progress) = self.watched(at.channel, at.epoch)?;
        if !read(&view).is_loaded(at.collection_id) {
            return Err(Status::failed_precondition(format!(
                "collection {} is not loaded on query node {}",
                at.collection_id, self.node_id
            )));
        }
        let level = ConsistencyLevel::try_from(at.consistency).map_err(|_| {
            Status::invalid_argument(format!("unknown consistency level {}", at.consistency))
        })?;
        let read_ts = match level {
            ConsistencyLevel::ConsistencyEventually => {
                if at.guarantee_ts == 0 {
                    u64::MAX
                } else {
                    at.guarantee_ts
                }
            }
            ConsistencyLevel::ConsistencyStrong
            | ConsistencyLevel::ConsistencySession
            | ConsistencyLevel::ConsistencyBounded => {
                if at.guarantee_ts == 0 {
                    return Err(Status::invalid_argument(
                        "a consistent read needs a guarantee timestamp from the TSO",
                    ));
                }
                let timeout = match at.timeout_ms {
                    0 => DEFAULT_READ_TIMEOUT,
                    ms => Duration::from_millis(u64::from(ms)),
                };
                let ends = match level {
                    ConsistencyLevel::ConsistencySession => Offsets {
                        insert: at.session_insert_next,
                        delete: at.session_delete_next,
                    },
                    ConsistencyLevel::ConsistencyBounded => {
                        self.ends(at.channel, BOUNDED_STALENESS).await?
                    }
                    _ => self.ends(at.channel, Duration::ZERO).await?,
                };
                self.catch_up(
                    at.channel,
                    at.collection_id,
                    &view,
                    &progress,
                    ends,
                    timeout,
                )
                .await?;
                at.guarantee_ts
            }
        };
        Ok(Prepared {
            view,
            collection: at.collection_id,
            read_ts,
        })
    }

    /// The filter checked once, then [`Node::prepare`] for each channel of a
    /// read (all at once); they must be distinct channels of one collection.
    async fn prepare_all(&self, ats: Vec<proto::ReadAt>, filter: &str) -> Result<Reads, Status> {
        let Some(first) = ats.first() else {
            return Err(Status::invalid_argument(
                "a read needs `at`: one or more channels",
            ));
        };
        let collection = first.collection_id;
        let mut channels: Vec<u32> = ats.iter().map(|at| at.channel).collect();
        channels.sort_unstable();
        channels.dedup();
        if channels.len() != ats.len() || ats.iter().any(|at| at.collection_id != collection) {
            return Err(Status::invalid_argument(
                "a read names each channel once, all of one collection",
            ));
        }
        let (schema, filter) = self.filter(collection, filter)?;
        let each =
            futures::future::try_join_all(ats.into_iter().map(|at| self.prepare(at))).await?;
        Ok(Reads {
            read_ts: each.iter().map(|p| p.read_ts).min().unwrap_or(u64::MAX),
            each,
            channels,
            schema,
            filter,
        })
    }

    /// The schema of a loaded collection and `text` parsed against it (`None`
    /// when blank).
    fn filter(
        &self,
        collection: i64,
        text: &str,
    ) -> Result<(CollectionSchema, Option<Filter>), Status> {
        let schema = self.loaded().get(&collection).cloned().ok_or_else(|| {
            Status::failed_precondition(format!(
                "collection {collection} is not loaded on query node {}",
                self.node_id
            ))
        })?;
        let filter = Filter::parse_optional(text, &schema)
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        Ok((schema, filter))
    }
}

/// A read of one channel checked and ready: where and at which timestamp.
struct Prepared {
    view: Arc<RwLock<ChannelView>>,
    collection: i64,
    read_ts: u64,
}

/// The channels of one read, each prepared.
struct Reads {
    each: Vec<Prepared>,
    /// The channels, in order.
    channels: Vec<u32>,
    /// The oldest of the channels' read timestamps.
    read_ts: u64,
    /// The collection's schema.
    schema: CollectionSchema,
    /// The read's filter, parsed once for every channel.
    filter: Option<Filter>,
}

impl Reads {
    /// `read` on each channel, in a blocking task of its own, all at once (a
    /// request's latency is its slowest channel's); the answers in channel
    /// order. `what` names the read in an error.
    async fn on_each_channel<T, F>(self, what: &str, read: F) -> Result<Vec<T>, Status>
    where
        T: Send + 'static,
        F: Fn(&Prepared, Option<&Filter>) -> Result<T, ViewError> + Send + Sync + 'static,
    {
        let (read, filter) = (Arc::new(read), Arc::new(self.filter));
        let tasks = self.each.into_iter().map(|p| {
            let (read, filter) = (read.clone(), filter.clone());
            tokio::task::spawn_blocking(move || read(&p, filter.as_ref().as_ref()))
        });
        futures::future::try_join_all(tasks)
            .await
            .map_err(|e| Status::internal(format!("the {what} failed: {e}")))?
            .into_iter()
            .collect::<Result<Vec<_>, _>>()
            .map_err(view_status)
    }
}

fn read(view: &RwLock<ChannelView>) -> std::sync::RwLockReadGuard<'_, ChannelView> {
    view.read().unwrap_or_else(|p| p.into_inner())
}

fn write(view: &RwLock<ChannelView>) -> std::sync::RwLockWriteGuard<'_, ChannelView> {
    view.write().unwrap_or_else(|p| p.into_inner())
}

fn view_status(e: ViewError) -> Status {
    match e {
        ViewError::NotLoaded(_) => Status::failed_precondition(e.to_string()),
        ViewError::Search(SearchError::Index(_)) => Status::internal(e.to_string()),
        ViewError::Search(_) => Status::invalid_argument(e.to_string()),
        ViewError::Field(_) => Status::internal(e.to_string()),
    }
}

/// Columns at schema `positions`, named for the wire.
fn wire_columns(
    schema: &CollectionSchema,
    positions: &[usize],
    columns: Vec<Column>,
) -> Vec<proto::FieldData> {
    positions
        .iter()
        .zip(columns)
        .map(|(&p, column)| {
            let name = schema.fields().get(p).map_or("", |f| f.name.as_str());
            column.into_field_data(name)
        })
        .collect()
}

/// Search answers for the wire, with the `output` columns of each hit.
fn wire_hits(
    schema: &CollectionSchema,
    output: &[usize],
    found: Vec<Found>,
) -> Vec<proto::SearchHits> {
    found
        .into_iter()
        .map(|f| {
            let (ids, string_ids) = keys::to_wire(f.hits.iter().map(|h| &h.id));
            proto::SearchHits {
                ids,
                string_ids,
                scores: f.hits.iter().map(|h| h.score).collect(),
                fields: wire_columns(schema, output, f.fields),
            }
        })
        .collect()
}

#[derive(Debug, Clone)]
pub struct QueryNodeService {
    node: Arc<Node>,
}

#[tonic::async_trait]
impl QueryNode for QueryNodeService {
    #[tracing::instrument(skip_all, fields(node_id = self.node.node_id, channel = request.get_ref().channel, epoch = request.get_ref().epoch))]
    async fn watch_channel(
        &self,
        request: Request<proto::QueryWatchChannelRequest>,
    ) -> Result<Response<proto::QueryWatchChannelResponse>, Status> {
        let r = request.into_inner();
        let node = &self.node;
        {
            let mut channels = node.channels();
            match channels.get(&r.channel) {
                Some(w) if w.epoch == r.epoch => {
                    return Ok(Response::new(proto::QueryWatchChannelResponse {}));
                }
                _ => node.unfollow(&mut channels, r.channel, r.epoch)?,
            }
            channels.insert(
                r.channel,
                Watched {
                    epoch: r.epoch,
                    view: Arc::default(),
                    reading: None,
                    progress: Arc::default(),
                },
            );
        }
        tracing::info!("following channel");
        target::sync_all(node).await?;
        Ok(Response::new(proto::QueryWatchChannelResponse {}))
    }

    #[tracing::instrument(skip_all, fields(node_id = self.node.node_id, channel = request.get_ref().channel, epoch = request.get_ref().epoch))]
    async fn release_channel(
        &self,
        request: Request<proto::QueryReleaseChannelRequest>,
    ) -> Result<Response<proto::QueryReleaseChannelResponse>, Status> {
        let r = request.into_inner();
        let mut channels = self.node.channels();
        if channels.contains_key(&r.channel) {
            self.node.unfollow(&mut channels, r.channel, r.epoch)?;
            tracing::info!("released channel");
        }
        Ok(Response::new(proto::QueryReleaseChannelResponse {}))
    }

    #[tracing::instrument(skip_all, fields(node_id = self.node.node_id, collection_id = request.get_ref().collection_id))]
    async fn load_collection(
        &self,
        request: Request<proto::QueryLoadCollectionRequest>,
    ) -> Result<Response<proto::QueryLoadCollectionResponse>, Status> {
        let id = request.into_inner().collection_id;
        // Fresh: its index and metric may have changed while it was released.
        let info = self.node.root.collection_fresh(id).await?;
        let schema = CollectionSchema::try_from(&info)
            .map_err(|e| Status::internal(format!("the stored schema is invalid: {e}")))?;
        self.node.loaded().insert(id, schema.clone());
        if let Err(status) = target::sync_collection(&self.node, id, &schema).await {
            if status.code() == tonic::Code::ResourceExhausted {
                self.node.loaded().remove(&id);
                self.node.metrics.loads_refused.inc();
                tracing::warn!(%status, "load refused");
            }
            return Err(status);
        }
        tracing::info!("loaded collection");
        Ok(Response::new(proto::QueryLoadCollectionResponse {}))
    }

    #[tracing::instrument(skip_all, fields(node_id = self.node.node_id, collection_id = request.get_ref().collection_id))]
    async fn release_collection(
        &self,
        request: Request<proto::QueryReleaseCollectionRequest>,
    ) -> Result<Response<proto::QueryReleaseCollectionResponse>, Status> {
        let id = request.into_inner().collection_id;
        let node = &self.node;
        node.loaded().remove(&id);
        let channels: Vec<u32> = node.channels().keys().copied().collect();
        for channel in channels {
            if let Some(view) = node.view(channel) {
                write(&view).release(id);
            }
            follow::reposition(node, channel, false);
        }
        Ok(Response::new(proto::QueryReleaseCollectionResponse {}))
    }

    #[tracing::instrument(skip_all, fields(node_id = self.node.node_id))]
    async fn search_channel(
        &self,
        request: Request<proto::SearchChannelRequest>,
    ) -> Result<Response<proto::SearchChannelResponse>, Status> {
        let r = request.into_inner();
        let queries = r
            .queries
            .ok_or_else(|| Status::invalid_argument("a search needs query vectors"))?;
        if r.top_k == 0 || r.top_k > MAX_TOP_K {
            return Err(Status::invalid_argument(format!(
                "top_k must be 1 to {MAX_TOP_K}, not {}",
                r.top_k
            )));
        }
        let dim = queries.dim as usize;
        if dim == 0 || queries.values.len() % dim != 0 {
            return Err(Status::invalid_argument(format!(
                "{} query floats are not whole vectors of dimension {dim}",
                queries.values.len()
            )));
        }
        let queries: Vec<Vec<f32>> = queries
            .values
            .to_vec()
            .chunks_exact(dim)
            .map(<[f32]>::to_vec)
            .collect();
        let reads = self.node.prepare_all(r.at, &r.filter).await?;
        let schema = reads.schema.clone();
        let output = output_columns(&schema, &r.output_fields).map_err(Status::invalid_argument)?;
        let k = r.top_k as usize;
        let ef = match r.ef {
            0 => k.max(DEFAULT_EF),
            ef => (ef as usize).max(k),
        };
        let (read_ts, channels) = (reads.read_ts, reads.channels.clone());
        let metric = schema.metric.name().to_owned();
        let (queries, output) = (Arc::new(queries), Arc::new(output));
        let (q, o) = (queries.clone(), output.clone());
        let per_channel = reads
            .on_each_channel("search", move |p, filter| {
                let params = SearchParams {
                    queries: &q,
                    k,
                    ef,
                    read_ts: p.read_ts,
                    filter,
                    output: &o,
                };
                read(&p.view)
                    .search(p.collection, &params)
                    .map(|(_, found)| found)
            })
            .await?;
        let found = view::merge_found(&schema, &output, per_channel, k).map_err(view_status)?;
        let results = wire_hits(&schema, &output, found);
        Ok(Response::new(proto::SearchChannelResponse {
            results,
            metric,
            read_ts,
            channels,
        }))
    }

    #[tracing::instrument(skip_all, fields(node_id = self.node.node_id))]
    async fn count_channel(
        &self,
        request: Request<proto::CountChannelRequest>,
    ) -> Result<Response<proto::CountChannelResponse>, Status> {
        let r = request.into_inner();
        let reads = self.node.prepare_all(r.at, &r.filter).await?;
        let (read_ts, channels) = (reads.read_ts, reads.channels.clone());
        let counts = reads
            .on_each_channel("count", |p, filter| {
                read(&p.view).count(p.collection, p.read_ts, filter)
            })
            .await?;
        let count = counts
            .iter()
            .fold(view::Count::default(), |total, count| view::Count {
                rows: total.rows + count.rows,
                checksum: total.checksum.wrapping_add(count.checksum),
            });
        Ok(Response::new(proto::CountChannelResponse {
            rows: count.rows,
            checksum: count.checksum,
            read_ts,
            channels,
        }))
    }

    #[tracing::instrument(skip_all, fields(node_id = self.node.node_id))]
    async fn query_channel(
        &self,
        request: Request<proto::QueryChannelRequest>,
    ) -> Result<Response<proto::QueryChannelResponse>, Status> {
        let r = request.into_inner();
        let reads = self.node.prepare_all(r.at, &r.filter).await?;
        let schema = reads.schema.clone();
        let primary = schema.primary_key_index();
        let output: Vec<usize> = output_columns(&schema, &r.output_fields)
            .map_err(Status::invalid_argument)?
            .into_iter()
            .filter(|c| *c != primary)
            .collect();
        let positions: Vec<usize> = std::iter::once(primary)
            .chain(output.iter().copied())
            .collect();
        let limit = r.limit as usize;
        let (read_ts, channels) = (reads.read_ts, reads.channels.clone());
        let per_channel = reads
            .on_each_channel("query", move |p, filter| {
                read(&p.view).query(p.collection, p.read_ts, filter, &output, limit)
            })
            .await?;
        // Up to MAX_QUERY_ROWS rows with their columns: gathered off the runtime.
        let (merge_schema, merge_positions) = (schema.clone(), positions.clone());
        let columns = tokio::task::spawn_blocking(move || {
            view::merge_rows(&merge_schema, &merge_positions, per_channel, limit)
        })
        .await
        .map_err(|e| Status::internal(format!("the query failed: {e}")))?
        .map_err(view_status)?;
        let num_rows = columns.first().map_or(0, Column::len);
        Ok(Response::new(proto::QueryChannelResponse {
            columns: wire_columns(&schema, &positions, columns),
            num_rows: u32::try_from(num_rows).unwrap_or(u32::MAX),
            read_ts,
            channels,
        }))
    }

    async fn get_distribution(
        &self,
        _request: Request<proto::QueryDistributionRequest>,
    ) -> Result<Response<proto::QueryDistributionResponse>, Status> {
        let node = &self.node;
        let channels = node
            .channels()
            .iter()
            .map(|(channel, w)| {
                let view = read(&w.view);
                let collections = view
                    .collections()
                    .filter_map(|id| view.stats(id).ok().map(|s| (id, s)))
                    .map(|(id, s)| proto::LoadedCollection {
                        collection_id: id,
                        checkpoint: Some(proto::ChannelCheckpoint {
                            channel: *channel,
                            insert_next_offset: s.checkpoint.insert,
                            delete_next_offset: s.checkpoint.delete,
                            ..proto::ChannelCheckpoint::default()
                        }),
                        insert_next_offset: s.have.insert,
                        delete_next_offset: s.have.delete,
                        sealed_files: u32::try_from(s.sealed_files).unwrap_or(u32::MAX),
                        sealed_rows: s.sealed_rows,
                        growing_rows: s.growing_rows,
                        deletes: s.deletes,
                        indexed_files: u32::try_from(s.indexed_files).unwrap_or(u32::MAX),
                    })
                    .collect();
                proto::WatchedChannel {
                    channel: *channel,
                    epoch: w.epoch,
                    collections,
                }
            })
            .collect();
        Ok(Response::new(proto::QueryDistributionResponse {
            node_id: node.node_id,
            channels,
            loaded_collections: node.loaded().keys().copied().collect(),
        }))
    }
}

/// The bytes loaded collections may hold: `configured`, or with 0 three
/// quarters of what the process may use (its cgroup's limit, else the
/// machine's memory; 1 GiB when neither can be read).
pub fn memory_limit(configured: u64) -> u64 {
    if configured > 0 {
        return configured;
    }
    crate::sys::MemoryUsage::read().map_or(1 << 30, |m| m.total_bytes / 4 * 3)
}

/// How long a stopping query node keeps serving while the data coordinator
/// moves its channels to other query nodes (within Kubernetes' default grace
/// period of 30 s).
const DRAIN_TIMEOUT: Duration = Duration::from_secs(25);

/// Keeps serving until the data coordinator has moved every channel of this
/// (stopping) node to other query nodes, which it does make-before-break:
/// reads never find a channel unserved. Returns at once when no other query
/// node runs (nothing could take the channels), and after `timeout` at most.
async fn drain(node: &Node, nodes: &crate::session::NodeRegistry, timeout: Duration) {
    let others = || {
        nodes
            .nodes_of(Role::QueryNode)
            .iter()
            .any(|n| n.node_id != node.node_id && !n.stopping)
    };
    if node.channels().is_empty() || !others() {
        return;
    }
    tracing::info!("draining: handing the channels to other query nodes");
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let held: Vec<u32> = node.channels().keys().copied().collect();
        if held.is_empty() {
            tracing::info!("drained");
            return;
        }
        if tokio::time::Instant::now() >= deadline || !others() {
            tracing::warn!(
                channels = ?held,
                "stopping with channels not yet handed over; reads of them fail until another query node serves them"
            );
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Runs a query node until `cancel` fires.
pub async fn run(
    store: Arc<dyn MetaStore>,
    log: Arc<dyn Log>,
    config: QueryNodeConfig,
    cancel: CancellationToken,
) -> anyhow::Result<()> {
    let span = tracing::info_span!("querynode", node_id = tracing::field::Empty);
    tracing::Instrument::instrument(serve(store, log, config, cancel), span).await
}

async fn serve(
    store: Arc<dyn MetaStore>,
    log: Arc<dyn Log>,
    config: QueryNodeConfig,
    cancel: CancellationToken,
) -> anyhow::Result<()> {
    let metrics = Arc::new(QueryNodeMetrics::default());
    let mut registry = prometheus_client::registry::Registry::default();
    metrics.register(&mut registry);
    let storage = SegmentStore::open(&config.storage)?;
    let process = RoleProcess::start(store, Role::QueryNode, config.role.clone(), &cancel).await?;
    let node_id = process.node_id();
    tracing::Span::current().record("node_id", node_id);
    process.watch_log(&log);
    let probe_store = storage.clone();
    process
        .readiness()
        .watch("storage", storage.describe(), move || {
            let store = probe_store.clone();
            async move { store.probe().await.map_err(|e| e.to_string()) }
        });
    // Its own group: the query node never commits offsets and never truncates
    // the embedded log (`checkpointed` is the data nodes' call).
    let consumer = log.consumer(&format!("milvus-like-querynode-{node_id}"), 64 << 20)?;
    let root = Arc::new(RootCoordLink::connect(
        &config.rootcoord,
        Duration::from_secs(10),
    )?);
    let datacoord = LeaderPool::new(&config.datacoord, Duration::from_secs(30))?;
    let memory_limit = memory_limit(config.memory_limit);
    metrics
        .memory_limit_bytes
        .set(i64::try_from(memory_limit).unwrap_or(i64::MAX));
    tracing::info!(
        memory_limit_mib = memory_limit >> 20,
        "memory for loaded collections"
    );
    let node = Arc::new(Node {
        node_id,
        memory_limit,
        ends: std::sync::Mutex::default(),
        records: crate::ingest::RecordChecker::new(root.clone(), datacoord.clone()),
        root,
        datacoord,
        storage,
        consumer,
        channels: std::sync::Mutex::default(),
        loaded: std::sync::Mutex::default(),
        bad_indexes: std::sync::Mutex::default(),
        syncing: tokio::sync::Mutex::new(()),
        metrics,
        config,
    });
    let service = QueryNodeService { node: node.clone() };
    let server_stop = CancellationToken::new();
    let servers = process
        .serve(QueryNodeServer::new(service), registry, &server_stop)
        .await?;
    servers
        .health
        .set_service_status(
            <QueryNodeServer<QueryNodeService> as tonic::server::NamedService>::NAME,
            tonic_health::ServingStatus::Serving,
        )
        .await;
    // The follower and the target loop run until the node has drained, so that
    // it keeps answering consistent reads while its channels move.
    let work = CancellationToken::new();
    let follower = crate::spawn(follow::run(node.clone(), work.clone()));
    let targets = crate::spawn(target::run(node.clone(), work.clone()));
    cancel.cancelled().await;
    process.session.mark_stopping();
    drain(&node, &process.nodes, DRAIN_TIMEOUT).await;
    work.cancel();
    server_stop.cancel();
    let _ = follower.await;
    let _ = targets.await;
    // librdkafka's consumer drop can hang: drop it off the runtime, bounded.
    let dropper = tokio::task::spawn_blocking(move || drop(node));
    let _ = tokio::time::timeout(Duration::from_secs(5), dropper).await;
    process.shut_down(servers).await;
    Ok(())
}
