//! An in-process data node that speaks the real protocol: it registers a real
//! session in etcd, serves the `DataNode` gRPC service, and commits to the data
//! coordinator the way a data node must (epoch-checked `CommitFlush`). It consumes
//! nothing: its "checkpoint" is a counter it advances at every commit. It exists to
//! test the data coordinator before (and independently of) the real data node.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use milvus_like_api::proto::data_coord_client::DataCoordClient;
use milvus_like_api::proto::data_node_server::{DataNode, DataNodeServer};
use milvus_like_api::proto::{
    ChannelCheckpoint, ChannelLoad, CommitFlushRequest, DeleteLog, FlushSegmentsRequest,
    FlushSegmentsResponse, GetLoadRequest, ReleaseChannelRequest, ReleaseChannelResponse,
    ReportLoadRequest, Role, SegmentBinlogs, WatchChannelRequest, WatchChannelResponse,
};
use milvus_like_node::meta::{EtcdConfig, EtcdStore};
use milvus_like_node::session::{Session, SessionConfig, basic_health};
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;
use tonic::{Request, Response, Status};

use crate::wait::free_port;

/// What the coordinator asked of the node, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Call {
    Watch {
        channel: u32,
        epoch: u64,
        offset: i64,
    },
    Release {
        channel: u32,
        epoch: u64,
    },
    Flush {
        channel: u32,
        segments: Vec<i64>,
    },
}

#[derive(Debug, Default)]
struct State {
    /// Channel -> epoch this node believes it owns it at.
    owned: BTreeMap<u32, u64>,
    /// Channel -> next offset (a stand-in for Kafka offsets).
    offsets: BTreeMap<u32, i64>,
    /// Channel -> the largest flush timestamp asked for (it has no logs to wait
    /// for: every flush reaches it at once).
    flushed_ts: BTreeMap<u32, u64>,
    calls: Vec<Call>,
}

#[derive(Debug, Clone)]
struct Service {
    node_id: i64,
    state: Arc<Mutex<State>>,
    datacoord: DataCoordClient<Channel>,
}

impl Service {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Commits `segments` (and `flushed`) for `channel` at the epoch it holds,
    /// advancing its checkpoint by one.
    async fn commit(
        &self,
        channel: u32,
        segments: Vec<SegmentBinlogs>,
        flushed: Vec<i64>,
    ) -> Result<(), Status> {
        self.commit_with_deletes(channel, segments, flushed, vec![])
            .await
    }

    async fn commit_with_deletes(
        &self,
        channel: u32,
        segments: Vec<SegmentBinlogs>,
        flushed: Vec<i64>,
        delete_logs: Vec<DeleteLog>,
    ) -> Result<(), Status> {
        let (epoch, offset, flushed_ts) = {
            let mut s = self.lock();
            let epoch = *s.owned.get(&channel).ok_or_else(|| {
                Status::failed_precondition(format!("channel {channel} is not ours"))
            })?;
            let flushed_ts = s.flushed_ts.get(&channel).copied().unwrap_or_default();
            let offset = s.offsets.entry(channel).or_default();
            *offset += 1;
            (epoch, *offset, flushed_ts)
        };
        self.datacoord
            .clone()
            .commit_flush(CommitFlushRequest {
                node_id: self.node_id,
                channel,
                epoch,
                segments,
                checkpoint: Some(ChannelCheckpoint {
                    channel,
                    insert_next_offset: offset,
                    delete_next_offset: offset,
                    timestamp: 0,
                    flushed_ts,
                }),
                flushed_segment_ids: flushed,
                delete_logs,
            })
            .await
            .map(drop)
    }
}

#[tonic::async_trait]
impl DataNode for Service {
    async fn watch_channel(
        &self,
        request: Request<WatchChannelRequest>,
    ) -> Result<Response<WatchChannelResponse>, Status> {
        let r = request.into_inner();
        let offset = r.checkpoint.map_or(0, |c| c.insert_next_offset);
        let mut s = self.lock();
        s.owned.insert(r.channel, r.epoch);
        s.offsets.insert(r.channel, offset);
        s.calls.push(Call::Watch {
            channel: r.channel,
            epoch: r.epoch,
            offset,
        });
        Ok(Response::new(WatchChannelResponse {}))
    }

    async fn release_channel(
        &self,
        request: Request<ReleaseChannelRequest>,
    ) -> Result<Response<ReleaseChannelResponse>, Status> {
        let r = request.into_inner();
        self.lock().calls.push(Call::Release {
            channel: r.channel,
            epoch: r.epoch,
        });
        // Flush what is buffered, commit, then stop: the handshake's first half.
        self.commit(r.channel, vec![], vec![]).await?;
        let offset = {
            let mut s = self.lock();
            s.owned.remove(&r.channel);
            s.offsets.get(&r.channel).copied().unwrap_or_default()
        };
        Ok(Response::new(ReleaseChannelResponse {
            checkpoint: Some(ChannelCheckpoint {
                channel: r.channel,
                insert_next_offset: offset,
                delete_next_offset: offset,
                timestamp: 0,
                flushed_ts: 0,
            }),
        }))
    }

    async fn flush_segments(
        &self,
        request: Request<FlushSegmentsRequest>,
    ) -> Result<Response<FlushSegmentsResponse>, Status> {
        let r = request.into_inner();
        {
            let mut s = self.lock();
            s.calls.push(Call::Flush {
                channel: r.channel,
                segments: r.segment_ids.clone(),
            });
            // As the real node: only the channel's holder at this epoch flushes it.
            if s.owned.get(&r.channel) != Some(&r.epoch) {
                return Err(Status::failed_precondition(format!(
                    "channel {} is not watched by this node at epoch {}",
                    r.channel, r.epoch
                )));
            }
            let flushed_ts = s.flushed_ts.entry(r.channel).or_default();
            *flushed_ts = (*flushed_ts).max(r.flush_ts);
        }
        // Write one fake file per segment and complete them, after answering.
        let this = self.clone();
        tokio::spawn(async move {
            let binlogs = r
                .segment_ids
                .iter()
                .map(|id| SegmentBinlogs {
                    segment_id: *id,
                    num_rows: 10,
                    insert_log_paths: vec![format!("fake://insert/{id}/0.parquet")],
                    delete_log_paths: vec![],
                })
                .collect();
            if let Err(status) = this.commit(r.channel, binlogs, r.segment_ids).await {
                tracing::warn!(%status, "fake data node: flush commit refused");
            }
        });
        Ok(Response::new(FlushSegmentsResponse {}))
    }

    async fn get_load(
        &self,
        _request: Request<GetLoadRequest>,
    ) -> Result<Response<ReportLoadRequest>, Status> {
        Ok(Response::new(ReportLoadRequest {
            node_id: self.node_id,
            ..ReportLoadRequest::default()
        }))
    }

    async fn build_index(
        &self,
        _request: Request<milvus_like_api::proto::BuildIndexRequest>,
    ) -> Result<Response<milvus_like_api::proto::BuildIndexResponse>, Status> {
        Err(Status::unimplemented("a fake data node builds no indexes"))
    }

    async fn compact_segment(
        &self,
        _request: Request<milvus_like_api::proto::CompactSegmentRequest>,
    ) -> Result<Response<milvus_like_api::proto::CompactSegmentResponse>, Status> {
        Err(Status::unimplemented("a fake data node compacts nothing"))
    }

    async fn delete_files(
        &self,
        _request: Request<milvus_like_api::proto::DeleteFilesRequest>,
    ) -> Result<Response<milvus_like_api::proto::DeleteFilesResponse>, Status> {
        Err(Status::unimplemented("a fake data node deletes nothing"))
    }
}

/// A running fake data node.
#[derive(Debug)]
pub struct FakeDataNode {
    pub node_id: i64,
    pub address: String,
    service: Service,
    session: Option<Session>,
    stop: CancellationToken,
}

impl FakeDataNode {
    /// Registers a session (TTL `ttl`) under `meta_root` and serves on a free port.
    pub async fn start(
        etcd_endpoint: &str,
        meta_root: &str,
        datacoord_endpoint: &str,
        ttl: Duration,
    ) -> anyhow::Result<Self> {
        let store = EtcdStore::connect(EtcdConfig {
            endpoints: vec![etcd_endpoint.to_owned()],
            root: meta_root.to_owned(),
            ..EtcdConfig::default()
        })
        .await?;
        let port = free_port();
        let address = format!("127.0.0.1:{port}");
        let session = Session::register(
            Arc::new(store),
            Role::DataNode,
            address.clone(),
            SessionConfig {
                ttl,
                heartbeat: ttl / 3,
                name: format!("fake-datanode-{port}"),
            },
            Arc::new(basic_health),
        )
        .await?;
        let node_id = session.node_id();
        let datacoord = DataCoordClient::new(
            Channel::from_shared(datacoord_endpoint.to_owned())?.connect_lazy(),
        );
        let service = Service {
            node_id,
            state: Arc::default(),
            datacoord,
        };
        let stop = CancellationToken::new();
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
        let server = tonic::transport::Server::builder()
            .add_service(DataNodeServer::new(service.clone()))
            .serve_with_incoming_shutdown(
                tokio_stream::wrappers::TcpListenerStream::new(listener),
                stop.clone().cancelled_owned(),
            );
        tokio::spawn(server);
        Ok(Self {
            node_id,
            address,
            service,
            session: Some(session),
            stop,
        })
    }

    pub fn calls(&self) -> Vec<Call> {
        self.service.lock().calls.clone()
    }

    /// Channels it believes it owns, with epochs.
    pub fn owned(&self) -> BTreeMap<u32, u64> {
        self.service.lock().owned.clone()
    }

    /// Commits for `channel` at an explicit epoch (to test fencing).
    pub async fn commit_at(&self, channel: u32, epoch: u64) -> Result<(), Status> {
        self.service.lock().owned.insert(channel, epoch);
        self.service.commit(channel, vec![], vec![]).await
    }

    /// Commits files for a channel it owns, as a flush would (also to re-send one).
    pub async fn commit_files(
        &self,
        channel: u32,
        segments: Vec<SegmentBinlogs>,
        delete_logs: Vec<DeleteLog>,
    ) -> Result<(), Status> {
        self.service
            .commit_with_deletes(channel, segments, vec![], delete_logs)
            .await
    }

    /// Gives `channel` up without telling the coordinator, as a real node does
    /// when a commit of it is refused.
    pub fn forget(&self, channel: u32) {
        self.service.lock().owned.remove(&channel);
    }

    /// Reports its load as a data node does every few seconds: the channels it
    /// holds, nothing buffered.
    pub async fn report_load(&self) -> Result<(), Status> {
        let channels = self
            .owned()
            .keys()
            .map(|&channel| ChannelLoad {
                channel,
                ..ChannelLoad::default()
            })
            .collect();
        self.service
            .datacoord
            .clone()
            .report_load(ReportLoadRequest {
                node_id: self.node_id,
                memory_used_bytes: 0,
                channels,
            })
            .await
            .map(drop)
    }

    /// Dies like a kill -9: the server stops answering and heartbeats stop, so the
    /// session expires after its TTL.
    pub fn crash(&mut self) {
        self.stop.cancel();
        drop(self.session.take());
    }

    /// Announces a graceful stop in its session.
    pub fn mark_stopping(&self) {
        if let Some(s) = &self.session {
            s.mark_stopping();
        }
    }
}

impl Drop for FakeDataNode {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// How long to give an RPC in tests.
pub const RPC_TIMEOUT: Duration = Duration::from_secs(10);
