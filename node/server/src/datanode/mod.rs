//! The data node (port 21121): consumes the channels the data coordinator gives it,
//! buffers rows per segment, flushes Parquet files to object storage, and commits
//! file paths with the channel checkpoint in one epoch-checked transaction.
//!
//! Exactly once: a channel's checkpoint (the next insert and delete offsets) is
//! committed together with the files holding everything consumed before it. After
//! a crash or a move, consumption restarts at the checkpoint and messages below it
//! are skipped; nothing after it was committed. A flush takes the whole channel
//! buffer so that the checkpoint is exact.

mod buffer;
mod compact;
mod consume;
mod flush;
pub mod index_build;
mod sealed;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use milvus_like_api::leader_pool::LeaderPool;
use milvus_like_api::proto::data_node_server::{DataNode, DataNodeServer};
use milvus_like_api::proto::{self, ChannelCheckpoint, Role};
use milvus_like_api::root_coord_link::RootCoordLink;
use milvus_like_api::settings::{self, defaults};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};

use self::buffer::ChannelBuffer;
pub use self::buffer::{BufferStats, FlushPolicy, ThresholdPolicy};
use crate::meta::MetaStore;
use crate::msgstream::{Log, LogConsumer, LogProducer};
use crate::role::{RoleConfig, RoleProcess};
use crate::storage::{SegmentStore, StorageConfig};

/// Why the data node refuses or fails a request about a channel.
#[derive(Debug, thiserror::Error)]
pub enum DataNodeError {
    /// The request names another epoch than the one the node holds the channel at.
    #[error("channel {channel} is held at epoch {held}, not {asked}")]
    Epoch { channel: u32, held: u64, asked: u64 },
    #[error("channel {0} is not watched by this node")]
    NotWatched(u32),
    /// Consuming would skip (as duplicates) whatever is appended below the checkpoint.
    #[error(
        "the {stream} log of channel {channel} ends at offset {end} but its checkpoint is {next}: the log was recreated or lost records; not consuming it, so that nothing is skipped"
    )]
    LogBehindCheckpoint {
        stream: &'static str,
        channel: u32,
        end: i64,
        next: i64,
    },
    /// The final flush of a released channel did not commit; the next owner
    /// reads from the checkpoint.
    #[error("the final flush of channel {0} was not committed")]
    NotCommitted(u32),
    #[error(transparent)]
    Log(#[from] crate::msgstream::StreamError),
}

#[derive(Debug, Clone)]
pub struct DataNodeConfig {
    pub role: RoleConfig,
    pub rootcoord: Vec<String>,
    pub datacoord: Vec<String>,
    pub storage: StorageConfig,
    pub policy: ThresholdPolicy,
    /// Memory for buffers, data being flushed and the encoders of the flushes
    /// writing ([`crate::storage::WRITE_MEMORY_BYTES`] each): consumption pauses
    /// while they hold this much, and the largest channel is flushed from
    /// `memory_limit * 3 / 4` on. Flushes that start near the limit take it past
    /// by their encoders. Outside it: librdkafka's prefetch (up to
    /// `memory_limit / 16` queued plus one fetch of that size) and the process.
    pub memory_limit: u64,
    /// Flushes that encode and write at the same time; the others wait with their
    /// data still counted in `memory_limit`.
    pub max_concurrent_flushes: usize,
    /// Threads of one index build.
    pub index_build_threads: usize,
    /// How long a graceful stop waits for the coordinator to take the channels.
    pub drain_timeout: Duration,
}

impl Default for DataNodeConfig {
    fn default() -> Self {
        Self {
            role: RoleConfig::of(settings::Role::DataNode),
            rootcoord: vec![RoleConfig::local_endpoint(settings::Role::RootCoord)],
            datacoord: vec![RoleConfig::local_endpoint(settings::Role::DataCoord)],
            storage: StorageConfig::Local {
                root: defaults::STORAGE_ROOT.into(),
            },
            policy: ThresholdPolicy::default(),
            memory_limit: defaults::DATANODE_MEMORY_MIB << 20,
            max_concurrent_flushes: defaults::DATANODE_CONCURRENT_FLUSHES,
            index_build_threads: defaults::INDEX_BUILD_THREADS,
            drain_timeout: defaults::DRAIN_TIMEOUT,
        }
    }
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelSet)]
pub struct ChannelLabel {
    pub channel: u32,
}

#[derive(Debug)]
pub struct DataNodeMetrics {
    pub rows_consumed: Counter,
    pub messages_consumed: Counter,
    pub duplicates_skipped: Counter,
    pub dead_lettered: Counter,
    pub rows_flushed: Counter,
    pub bytes_flushed: Counter,
    pub flushes: Counter,
    pub flush_seconds: Histogram,
    pub buffered_bytes: Gauge,
    pub stale_commits: Counter,
    pub consumer_lag: Family<ChannelLabel, Gauge>,
    pub backpressure_pauses: Counter,
    pub log_gaps: Counter,
    pub index_builds: Counter,
    pub index_build_seconds: Histogram,
    pub compactions: Counter,
    pub files_deleted: Counter,
}

impl Default for DataNodeMetrics {
    fn default() -> Self {
        Self {
            rows_consumed: Counter::default(),
            messages_consumed: Counter::default(),
            duplicates_skipped: Counter::default(),
            dead_lettered: Counter::default(),
            rows_flushed: Counter::default(),
            bytes_flushed: Counter::default(),
            flushes: Counter::default(),
            flush_seconds: Histogram::new(
                prometheus_client::metrics::histogram::exponential_buckets(0.005, 2.0, 14),
            ),
            buffered_bytes: Gauge::default(),
            stale_commits: Counter::default(),
            consumer_lag: Family::default(),
            backpressure_pauses: Counter::default(),
            log_gaps: Counter::default(),
            index_builds: Counter::default(),
            index_build_seconds: Histogram::new(
                prometheus_client::metrics::histogram::exponential_buckets(0.05, 2.0, 14),
            ),
            compactions: Counter::default(),
            files_deleted: Counter::default(),
        }
    }
}

impl DataNodeMetrics {
    pub fn register(&self, registry: &mut prometheus_client::registry::Registry) {
        let r = registry.sub_registry_with_prefix("datanode");
        r.register(
            "rows_consumed",
            "Rows read from the insert log",
            self.rows_consumed.clone(),
        );
        r.register(
            "messages_consumed",
            "Messages read from the logs",
            self.messages_consumed.clone(),
        );
        r.register(
            "duplicates_skipped",
            "Messages below the checkpoint, skipped",
            self.duplicates_skipped.clone(),
        );
        r.register(
            "dead_lettered",
            "Malformed messages copied to the dead-letter topic and skipped",
            self.dead_lettered.clone(),
        );
        r.register(
            "rows_flushed",
            "Rows written to object storage and committed",
            self.rows_flushed.clone(),
        );
        r.register(
            "bytes_flushed",
            "Bytes of Parquet written",
            self.bytes_flushed.clone(),
        );
        r.register("flushes", "Channel flushes committed", self.flushes.clone());
        r.register(
            "flush_seconds",
            "Time from taking a buffer to its commit",
            self.flush_seconds.clone(),
        );
        r.register(
            "index_builds",
            "Indexes of committed insert logs built and stored",
            self.index_builds.clone(),
        );
        r.register(
            "index_build_seconds",
            "Time to read an insert log, build its index and store it",
            self.index_build_seconds.clone(),
        );
        r.register(
            "compactions",
            "Flushed segments rewritten as one file with one index",
            self.compactions.clone(),
        );
        r.register(
            "files_deleted",
            "Files deleted when the data coordinator asked (replaced by compactions)",
            self.files_deleted.clone(),
        );
        r.register(
            "buffered_bytes",
            "Bytes held in buffers and in-flight flushes",
            self.buffered_bytes.clone(),
        );
        r.register(
            "stale_commits",
            "Commits refused because the channel moved away",
            self.stale_commits.clone(),
        );
        r.register(
            "consumer_lag",
            "Messages not consumed yet, per channel",
            self.consumer_lag.clone(),
        );
        r.register(
            "backpressure_pauses",
            "Times consumption paused at the memory limit",
            self.backpressure_pauses.clone(),
        );
        r.register(
            "log_gaps",
            "Records whose offset skipped ahead of the channel's next one (stale or missing); the channel is read again",
            self.log_gaps.clone(),
        );
    }
}

/// A channel this node owns.
#[derive(Debug)]
struct Channel {
    epoch: u64,
    /// Next offsets to consume (typed "next", never "last").
    insert_next: i64,
    delete_next: i64,
    /// Largest record timestamp consumed from either log (the checkpoint's).
    max_ts: u64,
    /// Both logs are consumed through this timestamp in what was taken for flushes
    /// (the checkpoint's `flushed_ts`).
    flushed_ts: u64,
    buffer: ChannelBuffer,
    /// Segments the coordinator wants completed once consumed past their timestamp.
    sealed: sealed::Sealed,
    flushing: bool,
    /// The last checkpoint the coordinator accepted from us.
    committed: ChannelCheckpoint,
    /// Another flush was asked for while one ran.
    flush_again: bool,
    rows_consumed: u64,
}

impl Channel {
    fn new(epoch: u64, checkpoint: Option<ChannelCheckpoint>) -> Self {
        let cp = checkpoint.unwrap_or_default();
        Self {
            epoch,
            insert_next: cp.insert_next_offset,
            delete_next: cp.delete_next_offset,
            max_ts: cp.timestamp,
            flushed_ts: cp.flushed_ts,
            buffer: ChannelBuffer::default(),
            sealed: sealed::Sealed::default(),
            flushing: false,
            committed: ChannelCheckpoint {
                channel: cp.channel,
                ..cp
            },
            flush_again: false,
            rows_consumed: 0,
        }
    }

    /// The next offset to consume from `stream`.
    fn next_mut(&mut self, stream: crate::msgstream::Stream) -> &mut i64 {
        match stream {
            crate::msgstream::Stream::Insert => &mut self.insert_next,
            crate::msgstream::Stream::Delete => &mut self.delete_next,
        }
    }

    fn checkpoint(&self, channel: u32) -> ChannelCheckpoint {
        ChannelCheckpoint {
            channel,
            insert_next_offset: self.insert_next,
            delete_next_offset: self.delete_next,
            timestamp: self.max_ts,
            flushed_ts: self.flushed_ts,
        }
    }
}

/// State shared by the RPC handlers, the consumer loop and flush tasks.
#[derive(Debug)]
pub struct Node {
    node_id: i64,
    config: DataNodeConfig,
    root: Arc<RootCoordLink>,
    datacoord: LeaderPool,
    storage: SegmentStore,
    consumer: Arc<dyn LogConsumer>,
    producer: Arc<dyn LogProducer>,
    policy: Arc<dyn FlushPolicy>,
    channels: tokio::sync::Mutex<BTreeMap<u32, Channel>>,
    /// Bytes in buffers and in-flight flushes.
    buffered: AtomicU64,
    /// Fires after every flush ends.
    flushed: Notify,
    /// Wakes the periodic pass early (sealed segments to complete).
    tick_wake: Notify,
    /// Flushes writing files at once ([`DataNodeConfig::max_concurrent_flushes`]).
    flush_permits: tokio::sync::Semaphore,
    /// Which records count: the others are dead-lettered, not buffered.
    records: crate::ingest::RecordChecker,
    /// One index build at a time (its permit is held until the build's
    /// threads are done, even when the call that asked for it went away).
    index_builds: Arc<tokio::sync::Semaphore>,
    /// Fires when the node stops: a running index build gives up.
    index_stop: CancellationToken,
    metrics: Arc<DataNodeMetrics>,
}

impl Node {
    fn add_buffered(&self, delta: i64) {
        let v = if delta >= 0 {
            self.buffered
                .fetch_add(delta.unsigned_abs(), Ordering::AcqRel)
                + delta.unsigned_abs()
        } else {
            let d = delta.unsigned_abs();
            self.buffered
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |v| {
                    Some(v.saturating_sub(d))
                })
                .map_or(0, |old| old.saturating_sub(d))
        };
        self.metrics
            .buffered_bytes
            .set(i64::try_from(v).unwrap_or(i64::MAX));
    }

    fn buffered(&self) -> u64 {
        self.buffered.load(Ordering::Acquire)
    }
}

#[derive(Debug, Clone)]
pub struct DataNodeService {
    node: Arc<Node>,
}

#[tonic::async_trait]
impl DataNode for DataNodeService {
    #[tracing::instrument(skip_all, fields(node_id = self.node.node_id, channel = request.get_ref().channel, epoch = request.get_ref().epoch))]
    async fn watch_channel(
        &self,
        request: Request<proto::WatchChannelRequest>,
    ) -> Result<Response<proto::WatchChannelResponse>, Status> {
        let r = request.into_inner();
        let node = &self.node;
        let mut channels = node.channels.lock().await;
        if let Some(ch) = channels.get(&r.channel) {
            if ch.epoch == r.epoch {
                return Ok(Response::new(proto::WatchChannelResponse {}));
            }
            if ch.epoch > r.epoch {
                return Err(DataNodeError::Epoch {
                    channel: r.channel,
                    held: ch.epoch,
                    asked: r.epoch,
                }
                .into());
            }
            // Re-assigned at a newer epoch: what we buffered is not ours to commit.
            let dropped = channels.remove(&r.channel).map_or(0, |c| c.buffer.bytes());
            node.add_buffered(-(dropped as i64));
            node.consumer
                .unassign(r.channel)
                .map_err(DataNodeError::from)?;
        }
        let ch = Channel::new(r.epoch, r.checkpoint);
        // A checkpoint past the end of the log means the log was recreated or lost
        // records: consuming would skip (as duplicates) whatever is appended below
        // the checkpoint. Refuse, loudly.
        for (stream, next) in [
            (crate::msgstream::Stream::Insert, ch.insert_next),
            (crate::msgstream::Stream::Delete, ch.delete_next),
        ] {
            if let Ok(end) = node.consumer.high_watermark(stream, r.channel).await
                && end < next
            {
                tracing::error!(
                    stream = stream.name(),
                    end,
                    checkpoint = next,
                    "the log ends before the channel's checkpoint; not consuming it"
                );
                return Err(DataNodeError::LogBehindCheckpoint {
                    stream: stream.name(),
                    channel: r.channel,
                    end,
                    next,
                }
                .into());
            }
        }
        node.consumer
            .assign(r.channel, ch.insert_next, ch.delete_next)
            .map_err(DataNodeError::from)?;
        tracing::info!(
            insert_next = ch.insert_next,
            delete_next = ch.delete_next,
            "watching channel"
        );
        channels.insert(r.channel, ch);
        Ok(Response::new(proto::WatchChannelResponse {}))
    }

    #[tracing::instrument(skip_all, fields(node_id = self.node.node_id, channel = request.get_ref().channel, epoch = request.get_ref().epoch))]
    async fn release_channel(
        &self,
        request: Request<proto::ReleaseChannelRequest>,
    ) -> Result<Response<proto::ReleaseChannelResponse>, Status> {
        let r = request.into_inner();
        let checkpoint = flush::release(&self.node, r.channel, r.epoch).await?;
        Ok(Response::new(proto::ReleaseChannelResponse {
            checkpoint: Some(checkpoint),
        }))
    }

    #[tracing::instrument(skip_all, fields(node_id = self.node.node_id, channel = request.get_ref().channel))]
    async fn flush_segments(
        &self,
        request: Request<proto::FlushSegmentsRequest>,
    ) -> Result<Response<proto::FlushSegmentsResponse>, Status> {
        let r = request.into_inner();
        let mut channels = self.node.channels.lock().await;
        let Some(ch) = channels.get_mut(&r.channel) else {
            return Err(DataNodeError::NotWatched(r.channel).into());
        };
        if ch.epoch != r.epoch {
            return Err(DataNodeError::Epoch {
                channel: r.channel,
                held: ch.epoch,
                asked: r.epoch,
            }
            .into());
        }
        ch.sealed.push(r.segment_ids, r.flush_ts);
        if ch.sealed.any_ready() {
            flush::start(&self.node, r.channel, ch, "segments sealed");
        } else {
            // Maybe everything in the log is consumed already: check now.
            self.node.tick_wake.notify_one();
        }
        Ok(Response::new(proto::FlushSegmentsResponse {}))
    }

    async fn get_load(
        &self,
        _request: Request<proto::GetLoadRequest>,
    ) -> Result<Response<proto::ReportLoadRequest>, Status> {
        Ok(Response::new(consume::load_report(&self.node).await))
    }

    async fn build_index(
        &self,
        request: Request<proto::BuildIndexRequest>,
    ) -> Result<Response<proto::BuildIndexResponse>, Status> {
        index_build::build(&self.node, request.into_inner())
            .await
            .map(Response::new)
    }

    async fn compact_segment(
        &self,
        request: Request<proto::CompactSegmentRequest>,
    ) -> Result<Response<proto::CompactSegmentResponse>, Status> {
        compact::compact(&self.node, request.into_inner())
            .await
            .map(Response::new)
    }

    async fn delete_files(
        &self,
        request: Request<proto::DeleteFilesRequest>,
    ) -> Result<Response<proto::DeleteFilesResponse>, Status> {
        let mut done = Vec::new();
        for path in request.into_inner().paths {
            match self.node.storage.delete_file(&path).await {
                Ok(()) => done.push(path),
                Err(e) => tracing::warn!(path, error = %e, "cannot delete a replaced file"),
            }
        }
        self.node.metrics.files_deleted.inc_by(done.len() as u64);
        tracing::info!(files = done.len(), "deleted files nothing names any more");
        Ok(Response::new(proto::DeleteFilesResponse { done }))
    }
}

/// How long a stopping data node tries to flush the channels nobody took.
const FINAL_FLUSH_DEADLINE: Duration = Duration::from_secs(20);

/// Runs a data node until `cancel` fires; on the way out it announces it is
/// stopping, lets the coordinator take its channels (flushing each), then leaves.
pub async fn run(
    store: Arc<dyn MetaStore>,
    log: Arc<dyn Log>,
    config: DataNodeConfig,
    cancel: CancellationToken,
) -> anyhow::Result<()> {
    // The role's span; `serve` records the node id (see `crate::spawn`).
    let span = tracing::info_span!("datanode", node_id = tracing::field::Empty);
    tracing::Instrument::instrument(serve(store, log, config, cancel), span).await
}

async fn serve(
    store: Arc<dyn MetaStore>,
    log: Arc<dyn Log>,
    config: DataNodeConfig,
    cancel: CancellationToken,
) -> anyhow::Result<()> {
    let metrics = Arc::new(DataNodeMetrics::default());
    let mut registry = prometheus_client::registry::Registry::default();
    metrics.register(&mut registry);
    let storage = SegmentStore::open(&config.storage)?;
    let process = RoleProcess::start(store, Role::DataNode, config.role.clone(), &cancel).await?;
    let node_id = process.node_id();
    process.watch_log(&log);
    // Left by a data node killed in the middle of a write (never committed),
    // before the server takes channels and writes anything.
    match storage.remove_stale_temporaries().await {
        Ok(0) => {}
        Ok(removed) => {
            tracing::info!(removed, store = %storage.describe(), "removed temporary files left by stopped processes")
        }
        Err(e) => tracing::warn!(error = %e, "could not remove stale temporary files"),
    }
    let probe_store = storage.clone();
    process
        .readiness()
        .watch("storage", storage.describe(), move || {
            let store = probe_store.clone();
            async move { store.probe().await.map_err(|e| e.to_string()) }
        });
    tracing::Span::current().record("node_id", node_id);
    let consumer = log.consumer(
        &format!("milvus-like-datanode-{node_id}"),
        config.memory_limit / 16,
    )?;
    let root = Arc::new(RootCoordLink::connect(
        &config.rootcoord,
        Duration::from_secs(10),
    )?);
    let datacoord = LeaderPool::new(&config.datacoord, Duration::from_secs(30))?;
    let node = Arc::new(Node {
        node_id,
        records: crate::ingest::RecordChecker::new(root.clone(), datacoord.clone()),
        index_builds: Arc::new(tokio::sync::Semaphore::new(1)),
        index_stop: cancel.child_token(),
        root,
        datacoord,
        storage,
        consumer,
        producer: log.producer()?,
        policy: Arc::new(config.policy.clone()),
        channels: tokio::sync::Mutex::new(BTreeMap::new()),
        buffered: AtomicU64::new(0),
        flushed: Notify::new(),
        tick_wake: Notify::new(),
        flush_permits: tokio::sync::Semaphore::new(config.max_concurrent_flushes.max(1)),
        metrics,
        config,
    });
    let service = DataNodeService { node: node.clone() };
    // The server outlives `cancel`: the coordinator releases our channels through it
    // while we drain.
    let server_stop = CancellationToken::new();
    let servers = process
        .serve(DataNodeServer::new(service), registry, &server_stop)
        .await?;
    servers
        .health
        .set_service_status(
            <DataNodeServer<DataNodeService> as tonic::server::NamedService>::NAME,
            tonic_health::ServingStatus::Serving,
        )
        .await;
    let stop_consuming = CancellationToken::new();
    let consumer_task = crate::spawn(consume::run(node.clone(), stop_consuming.clone()));
    let ticker = crate::spawn(consume::tick(node.clone(), stop_consuming.clone()));
    cancel.cancelled().await;

    // Graceful stop: the coordinator drains us (release = flush + commit per channel).
    process.session.mark_stopping();
    let deadline = tokio::time::Instant::now() + node.config.drain_timeout;
    while tokio::time::Instant::now() < deadline && !node.channels.lock().await.is_empty() {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let left: Vec<u32> = node.channels.lock().await.keys().copied().collect();
    if !left.is_empty() {
        tracing::warn!(channels = ?left, "the coordinator did not take these channels; flushing them here");
        // Bounded: with the coordinator gone the commit would be retried forever.
        // Giving up loses nothing; the next owner reads from the checkpoint.
        let final_flushes = async {
            for channel in left {
                let epoch = node.channels.lock().await.get(&channel).map(|c| c.epoch);
                if let Some(epoch) = epoch
                    && let Err(error) = flush::release(&node, channel, epoch).await
                {
                    tracing::warn!(channel, %error, "final flush failed; the next owner re-reads from the checkpoint");
                }
            }
        };
        if tokio::time::timeout(FINAL_FLUSH_DEADLINE, final_flushes)
            .await
            .is_err()
        {
            tracing::warn!(
                "final flushes unfinished after {FINAL_FLUSH_DEADLINE:?} (is the data coordinator gone?); stopping anyway, the next owner re-reads from the checkpoints"
            );
        }
    }
    stop_consuming.cancel();
    server_stop.cancel();
    let _ = consumer_task.await;
    let _ = ticker.await;
    // librdkafka's consumer drop can hang: drop it off the runtime, bounded.
    let dropper = tokio::task::spawn_blocking(move || drop(node));
    let _ = tokio::time::timeout(Duration::from_secs(5), dropper).await;
    process.shut_down(servers).await;
    Ok(())
}
