//! The proxy (port 19531): the client API.
//!
//! Inserts are checked against the schema, stamped with a contiguous range of TSO
//! timestamps, routed to channels by primary-key hash, given rows in growing
//! segments by the data coordinator, and produced to the insert log; the client is
//! answered only after Kafka acknowledged every message. Deletes go the same way to
//! the delete log. Collection calls are passed to the root coordinator. Reads
//! (`Search`, `Count`) fan out to the query nodes serving the collection's
//! channels ([`reads`]).

mod grants;
pub mod milvus_api;
mod plan;
mod reads;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use milvus_like_api::leader_pool::LeaderPool;
use milvus_like_api::milvus_proto::milvus::milvus_service_server::MilvusServiceServer;
use milvus_like_api::proto::data_coord_client::DataCoordClient;
use milvus_like_api::proto::proxy_server::{Proxy, ProxyServer};
use milvus_like_api::proto::query_node_client::QueryNodeClient;
use milvus_like_api::proto::root_coord_client::RootCoordClient;
use milvus_like_api::proto::{
    self, CollectionInfo, ConsistencyLevel, DeleteBatch, InsertBatch, Role,
};
use milvus_like_api::root_coord_link::RootCoordLink;
use milvus_like_api::schema::{CollectionSchema, FieldType};
use milvus_like_api::settings;
use milvus_like_api::tso_client::MAX_TIMESTAMP_COUNT;
use prometheus_client::metrics::counter::Counter;
use prost::Message;
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;
use tonic::{Request, Response, Status};

use self::grants::GrantCache;
use crate::columns::{Column, RowBatch};
use crate::filter::{Filter, output_columns};
use crate::keys::Keys;
use crate::meta::MetaStore;
use crate::msgstream::{Log, LogProducer, Stream, TARGET_MESSAGE_BYTES};
use crate::querynode::MAX_QUERY_ROWS;
use crate::role::{RoleConfig, RoleProcess};

/// Largest insert request accepted, encoded.
pub const MAX_REQUEST_BYTES: usize = 64 << 20;
/// Most rows of one insert into an auto_id collection (ids are reserved
/// before the rows are checked).
const MAX_AUTO_IDS: usize = 1_000_000;
/// How long a collection looked up by name is trusted.
const NAME_CACHE_TTL: Duration = Duration::from_secs(5);

#[derive(Debug, Clone)]
pub struct ProxyConfig {
    pub role: RoleConfig,
    pub rootcoord: Vec<String>,
    pub datacoord: Vec<String>,
}

impl Default for ProxyConfig {
    fn default() -> Self {
        Self {
            role: RoleConfig::of(settings::Role::Proxy),
            rootcoord: vec![RoleConfig::local_endpoint(settings::Role::RootCoord)],
            datacoord: vec![RoleConfig::local_endpoint(settings::Role::DataCoord)],
        }
    }
}

#[derive(Debug)]
pub struct ProxyMetrics {
    pub rows_inserted: Counter,
    pub rows_deleted: Counter,
    pub bytes_produced: Counter,
    pub rejected_requests: Counter,
    pub grants_released: Counter,
    pub searches: Counter,
    pub search_seconds: prometheus_client::metrics::histogram::Histogram,
    /// From an insert's first send to its last acknowledgement.
    pub produce_seconds: prometheus_client::metrics::histogram::Histogram,
}

impl Default for ProxyMetrics {
    fn default() -> Self {
        Self {
            rows_inserted: Counter::default(),
            rows_deleted: Counter::default(),
            bytes_produced: Counter::default(),
            rejected_requests: Counter::default(),
            grants_released: Counter::default(),
            searches: Counter::default(),
            search_seconds: crate::metrics::latency_histogram(),
            produce_seconds: crate::metrics::latency_histogram(),
        }
    }
}

impl ProxyMetrics {
    pub fn register(&self, registry: &mut prometheus_client::registry::Registry) {
        let r = registry.sub_registry_with_prefix("proxy");
        r.register(
            "rows_inserted",
            "Rows acknowledged to clients",
            self.rows_inserted.clone(),
        );
        r.register(
            "rows_deleted",
            "Deletes acknowledged to clients",
            self.rows_deleted.clone(),
        );
        r.register(
            "bytes_produced",
            "Bytes produced to the logs",
            self.bytes_produced.clone(),
        );
        r.register(
            "rejected_requests",
            "Requests refused as invalid",
            self.rejected_requests.clone(),
        );
        r.register(
            "grants_released",
            "Segment grants given back to the data coordinator when it sealed their segments",
            self.grants_released.clone(),
        );
        r.register("searches", "Searches answered", self.searches.clone());
        r.register(
            "search_seconds",
            "Time to answer a search, fan-out and merge included",
            self.search_seconds.clone(),
        );
        r.register(
            "produce_seconds",
            "Time from an insert's first send to the log to its last acknowledgement",
            self.produce_seconds.clone(),
        );
    }
}

#[derive(Debug)]
pub struct ProxyService {
    root: Arc<RootCoordLink>,
    datacoord: LeaderPool,
    grants: GrantCache,
    producer: Arc<dyn LogProducer>,
    channels: u32,
    names: Mutex<HashMap<String, (Instant, CollectionInfo)>>,
    leaders: reads::Leaders,
    /// What SESSION reads wait for.
    written: Arc<reads::Written>,
    metrics: Arc<ProxyMetrics>,
}

/// A collection resolved for a write: ids and the validated schema.
struct Target {
    collection: i64,
    partition: i64,
    schema: CollectionSchema,
}

impl ProxyService {
    async fn collection(&self, name: &str) -> Result<CollectionInfo, Status> {
        if let Some((at, info)) = self
            .names
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
            && at.elapsed() < NAME_CACHE_TTL
        {
            return Ok(info.clone());
        }
        let info = self.root.collection_by_name(name).await?;
        if milvus_like_api::root_coord_link::index_unchosen(&info) {
            // It changes when CreateIndex chooses one: not cached.
            return Ok(info);
        }
        self.names
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(name.to_owned(), (Instant::now(), info.clone()));
        Ok(info)
    }

    /// Forgets the cached description of collection `name` (its index changed).
    fn forget_name(&self, name: &str) {
        self.names
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(name);
    }

    async fn target(&self, collection: &str, partition: &str) -> Result<Target, Status> {
        let info = self.collection(collection).await?;
        let partition_name = if partition.is_empty() {
            milvus_like_api::schema::DEFAULT_PARTITION
        } else {
            partition
        };
        let partition = info
            .partitions
            .iter()
            .find(|p| p.name == partition_name)
            .ok_or_else(|| {
                Status::not_found(format!(
                    "partition {partition_name:?} does not exist in collection {collection:?}"
                ))
            })?
            .id;
        let schema = CollectionSchema::try_from(&info)
            .map_err(|e| Status::internal(format!("the stored schema is invalid: {e}")))?;
        Ok(Target {
            collection: info.id,
            partition,
            schema,
        })
    }

    /// `count` contiguous timestamps in ranges of at most the TSO's maximum.
    async fn timestamps(&self, count: usize) -> Result<Vec<(u64, usize)>, Status> {
        let mut out = Vec::new();
        let mut left = count;
        while left > 0 {
            let n = left.min(MAX_TIMESTAMP_COUNT as usize);
            let range = self
                .root
                .tso()
                .timestamps(u32::try_from(n).unwrap_or(MAX_TIMESTAMP_COUNT))
                .await?;
            out.push((range.first.as_u64(), n));
            left -= n;
        }
        Ok(out)
    }

    /// Gives the rows of an insert into a collection whose primary key is
    /// auto_id their keys (a column added to the request): the keys, or none
    /// when the key is not auto_id.
    async fn assign_ids(
        &self,
        schema: &CollectionSchema,
        req: &mut proto::InsertRequest,
    ) -> Result<Vec<i64>, Status> {
        let key = schema.primary_key();
        if !key.auto_id {
            return Ok(Vec::new());
        }
        if req.columns.iter().any(|c| c.field_name == key.name) {
            return Err(self.refuse(Status::invalid_argument(format!(
                "insert into {:?}: primary key {:?} is auto_id, so the server gives each row its key; leave the field out",
                req.collection, key.name
            ))));
        }
        if req.num_rows == 0 || req.num_rows as usize > MAX_AUTO_IDS {
            return Err(self.refuse(Status::invalid_argument(format!(
                "insert into {:?}: {} rows; an insert holds 1 to {MAX_AUTO_IDS}",
                req.collection, req.num_rows
            ))));
        }
        let ids = self.root.alloc_ids(req.num_rows as usize).await?;
        // A VARCHAR key is the id in decimal.
        let column = match key.ty {
            FieldType::VarChar { .. } => Column::Str(ids.iter().map(i64::to_string).collect()),
            _ => Column::Long(ids.clone()),
        };
        req.columns.push(column.into_field_data(&key.name));
        Ok(ids)
    }

    fn refuse(&self, status: Status) -> Status {
        self.metrics.rejected_requests.inc();
        status
    }

    /// A read's filter and output fields checked against the schema: the
    /// output columns and their names.
    fn selection(
        &self,
        schema: &CollectionSchema,
        filter: &str,
        output_fields: &[String],
    ) -> Result<reads::Selection, Status> {
        Filter::parse_optional(filter, schema)
            .map_err(|e| self.refuse(Status::invalid_argument(e.to_string())))?;
        let columns = output_columns(schema, output_fields)
            .map_err(|e| self.refuse(Status::invalid_argument(e)))?;
        let names = columns
            .iter()
            .filter_map(|&c| schema.fields().get(c).map(|f| f.name.clone()))
            .collect();
        Ok(reads::Selection { columns, names })
    }

    /// Asks the query nodes serving the channels of loaded collection `name`
    /// (`collection`) with `call`, each once for its channels, at the
    /// consistency level asked for: the plan and the answers (one per node
    /// asked, every channel covered once).
    async fn read_channels<T, F, Fut>(
        &self,
        name: &str,
        collection: i64,
        consistency: i32,
        timeout_ms: u32,
        call: F,
    ) -> Result<(reads::ReadPlan, Vec<T>), Status>
    where
        T: reads::Answer,
        F: Fn(QueryNodeClient<Channel>, Vec<proto::ReadAt>) -> Fut,
        Fut: std::future::Future<Output = Result<T, Status>>,
    {
        let plan = self.read_plan(collection, consistency, timeout_ms).await?;
        let answers = self
            .leaders
            .fan_out(plan.collection, |client, leaders| {
                call(client, plan.at_each(&leaders))
            })
            .await
            .map_err(|s| not_loaded(s, name))?;
        Ok((plan, answers))
    }

    /// How to read `collection` at `level`: the guarantee timestamp is now for
    /// every level that waits, none for EVENTUALLY.
    async fn read_plan(
        &self,
        collection: i64,
        level: i32,
        timeout_ms: u32,
    ) -> Result<reads::ReadPlan, Status> {
        let level = ConsistencyLevel::try_from(level).map_err(|_| {
            self.refuse(Status::invalid_argument(format!(
                "unknown consistency level {level}; it is 0 (strong), 1 (session), 2 (bounded) or 3 (eventually)"
            )))
        })?;
        let guarantee_ts = match level {
            ConsistencyLevel::ConsistencyEventually => 0,
            _ => self.root.tso().timestamps(1).await?.first.as_u64(),
        };
        let session = if level == ConsistencyLevel::ConsistencySession {
            self.written.snapshot()
        } else {
            HashMap::new()
        };
        Ok(reads::ReadPlan {
            collection,
            level,
            guarantee_ts,
            timeout_ms,
            session,
        })
    }

    async fn load_call(&self, collection: &str, load: bool) -> Result<(), Status> {
        let target = self.target(collection, "").await?;
        let id = target.collection;
        self.leaders.forget(id);
        // Loading reads every file of the collection: allow it the coordinator's wait.
        self.datacoord
            .call(Duration::from_secs(90), |ch| async move {
                let mut c = DataCoordClient::new(ch);
                if load {
                    let request = proto::LoadCollectionRequest { collection_id: id };
                    match c.load_collection(request).await {
                        // An answer, not an overload to wait out: the collection
                        // does not fit the query nodes' memory.
                        Err(s) if s.code() == tonic::Code::ResourceExhausted => Ok(Err(s)),
                        other => other.map(|_| Ok(())),
                    }
                } else {
                    let request = proto::ReleaseCollectionRequest { collection_id: id };
                    c.release_collection(request).await.map(|_| Ok(()))
                }
            })
            .await?
    }
}

#[tonic::async_trait]
impl Proxy for ProxyService {
    async fn create_collection(
        &self,
        request: Request<proto::CreateCollectionRequest>,
    ) -> Result<Response<proto::CreateCollectionResponse>, Status> {
        let req = request.into_inner();
        self.root
            .pool()
            .call(self.root.deadline(), |ch| {
                let req = req.clone();
                async move { RootCoordClient::new(ch).create_collection(req).await }
            })
            .await
    }

    async fn describe_collection(
        &self,
        request: Request<proto::DescribeCollectionRequest>,
    ) -> Result<Response<proto::DescribeCollectionResponse>, Status> {
        let req = request.into_inner();
        self.root
            .pool()
            .call(self.root.deadline(), |ch| {
                let req = req.clone();
                async move { RootCoordClient::new(ch).describe_collection(req).await }
            })
            .await
    }

    async fn list_collections(
        &self,
        request: Request<proto::ListCollectionsRequest>,
    ) -> Result<Response<proto::ListCollectionsResponse>, Status> {
        let req = request.into_inner();
        self.root
            .pool()
            .call(self.root.deadline(), |ch| async move {
                RootCoordClient::new(ch).list_collections(req).await
            })
            .await
    }

    async fn drop_collection(
        &self,
        request: Request<proto::DropCollectionRequest>,
    ) -> Result<Response<proto::DropCollectionResponse>, Status> {
        let req = request.into_inner();
        self.names
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&req.name);
        self.root
            .pool()
            .call(self.root.deadline(), |ch| {
                let req = req.clone();
                async move { RootCoordClient::new(ch).drop_collection(req).await }
            })
            .await
    }

    #[tracing::instrument(skip_all, fields(collection = %request.get_ref().collection, rows = request.get_ref().num_rows))]
    async fn insert(
        &self,
        request: Request<proto::InsertRequest>,
    ) -> Result<Response<proto::InsertResponse>, Status> {
        let mut req = request.into_inner();
        let target = self.target(&req.collection, &req.partition).await?;
        let num_rows = req.num_rows as usize;
        let assigned_ids = self.assign_ids(&target.schema, &mut req).await?;
        let rows = RowBatch::from_wire(&target.schema, req.columns, num_rows).map_err(|e| {
            self.refuse(Status::invalid_argument(format!(
                "insert into {:?}: {e}",
                req.collection
            )))
        })?;
        let routes = plan::route(rows.primary_keys(&target.schema), self.channels);
        let row_bytes = rows.byte_size() / num_rows.max(1) + 1;
        let per_message = (TARGET_MESSAGE_BYTES / row_bytes).max(1);
        // Until the rows are acknowledged or failed, a release of the segments they
        // go to waits for this insert.
        let mut lease = self.grants.lease();
        let stamps = self.timestamps(num_rows).await?;
        let now = milvus_like_api::Timestamp::from_u64(stamps[0].0);
        let mut grants = Vec::with_capacity(routes.len());
        for (channel, indices) in &routes {
            let count = u32::try_from(indices.len()).unwrap_or(u32::MAX);
            let slices = self
                .grants
                .take(
                    target.collection,
                    target.partition,
                    *channel,
                    count,
                    now,
                    &mut lease,
                )
                .await?;
            grants.push(slices);
        }
        let messages = plan::insert(&routes, &grants, plan::Stamps(&stamps), per_message)
            .map_err(|e| Status::internal(format!("cannot plan the insert: {e}")))?;
        let sends: Vec<(u32, bytes::Bytes)> = messages
            .iter()
            .map(|m| {
                let header = InsertBatch {
                    collection_id: target.collection,
                    partition_id: target.partition,
                    segment_id: m.segment_id,
                    channel: m.channel,
                    first_ts: m.first_ts,
                    num_rows: u32::try_from(m.rows.len()).unwrap_or(u32::MAX),
                    columns: Vec::new(),
                };
                let message = rows.encode_rows(&target.schema, header, &m.rows);
                (m.channel, message.into())
            })
            .collect();
        let bytes: usize = sends.iter().map(|(_, b)| b.len()).sum();
        // The sends run in their own task with the lease: a client that gives up
        // (cancelling this call) does not recall messages already handed to the
        // producer, so the lease must last until they are acknowledged or failed.
        let producer = self.producer.clone();
        let metrics = self.metrics.clone();
        let written = self.written.clone();
        let sent = tokio::spawn(async move {
            let started = Instant::now();
            let results = futures::future::join_all(sends.into_iter().map(|(channel, payload)| {
                let sent = producer.send(Stream::Insert, channel, payload);
                async move { (channel, sent.await) }
            }))
            .await;
            drop(lease);
            metrics
                .produce_seconds
                .observe(started.elapsed().as_secs_f64());
            results
                .into_iter()
                .map(|(channel, result)| {
                    result.inspect(|&offset| written.record(Stream::Insert, channel, offset))
                })
                .collect::<Result<Vec<_>, _>>()
        });
        sent.await
            .map_err(|e| Status::internal(format!("the insert's sends failed: {e}")))??;
        self.metrics.rows_inserted.inc_by(num_rows as u64);
        self.metrics.bytes_produced.inc_by(bytes as u64);
        Ok(Response::new(proto::InsertResponse {
            inserted: num_rows as u64,
            timestamp: stamps[0].0,
            assigned_ids,
        }))
    }

    #[tracing::instrument(skip_all, fields(collection = %request.get_ref().collection, keys = request.get_ref().primary_keys.len()))]
    async fn delete(
        &self,
        request: Request<proto::DeleteRequest>,
    ) -> Result<Response<proto::DeleteResponse>, Status> {
        let mut req = request.into_inner();
        let keys = Keys::from_wire(
            std::mem::take(&mut req.primary_keys),
            std::mem::take(&mut req.string_keys),
        )
        .map_err(|e| self.refuse(Status::invalid_argument(format!("the delete has {e}"))))?;
        if keys.is_empty() {
            return Err(self.refuse(Status::invalid_argument("the delete names no primary keys")));
        }
        let target = self.target(&req.collection, &req.partition).await?;
        let key = target.schema.primary_key();
        let fits = match &keys {
            Keys::Int(_) => key.ty == FieldType::Int64,
            Keys::Str(_) => matches!(key.ty, FieldType::VarChar { .. }),
        };
        if !fits {
            return Err(self.refuse(Status::invalid_argument(format!(
                "delete from {:?}: primary key {:?} is {}; the delete names keys of the other kind",
                req.collection,
                key.name,
                key.ty.name()
            ))));
        }
        let n = keys.len();
        let routes = plan::route(keys.as_ref(), self.channels);
        let mut stamps = Vec::with_capacity(routes.len());
        for (_, indices) in &routes {
            stamps.push(self.timestamps(indices.len()).await?);
        }
        let messages = plan::delete(&routes, &stamps)
            .map_err(|e| Status::internal(format!("cannot plan the delete: {e}")))?;
        let sends: Vec<(u32, bytes::Bytes)> = messages
            .iter()
            .map(|m| {
                let (primary_keys, string_keys) = keys.as_ref().take(&m.keys).into_wire();
                let batch = DeleteBatch {
                    collection_id: target.collection,
                    partition_id: target.partition,
                    channel: m.channel,
                    first_ts: m.first_ts,
                    primary_keys,
                    string_keys,
                };
                (m.channel, bytes::Bytes::from(batch.encode_to_vec()))
            })
            .collect();
        let results = futures::future::join_all(sends.into_iter().map(|(channel, payload)| {
            let sent = self.producer.send(Stream::Delete, channel, payload);
            async move { (channel, sent.await) }
        }))
        .await;
        for (channel, result) in results {
            self.written.record(Stream::Delete, channel, result?);
        }
        self.metrics.rows_deleted.inc_by(n as u64);
        Ok(Response::new(proto::DeleteResponse {
            deleted: n as u64,
            // The newest stamp of the deletes: a read at or after it sees them.
            timestamp: stamps
                .iter()
                .flatten()
                .map(|&(first, count)| first + (count as u64).saturating_sub(1))
                .max()
                .unwrap_or(0),
        }))
    }

    async fn flush(
        &self,
        request: Request<proto::ProxyFlushRequest>,
    ) -> Result<Response<proto::ProxyFlushResponse>, Status> {
        let req = request.into_inner();
        let target = self.target(&req.collection, "").await?;
        let flush = proto::FlushRequest {
            collection_id: target.collection,
            wait: req.wait,
        };
        let resp = self
            .datacoord
            .call(Duration::from_secs(120), |ch| async move {
                DataCoordClient::new(ch).flush(flush).await
            })
            .await?
            .into_inner();
        Ok(Response::new(proto::ProxyFlushResponse {
            flushed_segment_ids: resp.flushed_segment_ids,
        }))
    }

    #[tracing::instrument(skip_all, fields(collection = %request.get_ref().collection))]
    async fn load_collection(
        &self,
        request: Request<proto::ProxyLoadCollectionRequest>,
    ) -> Result<Response<proto::ProxyLoadCollectionResponse>, Status> {
        self.load_call(&request.into_inner().collection, true)
            .await?;
        Ok(Response::new(proto::ProxyLoadCollectionResponse {}))
    }

    #[tracing::instrument(skip_all, fields(collection = %request.get_ref().collection))]
    async fn release_collection(
        &self,
        request: Request<proto::ProxyReleaseCollectionRequest>,
    ) -> Result<Response<proto::ProxyReleaseCollectionResponse>, Status> {
        self.load_call(&request.into_inner().collection, false)
            .await?;
        Ok(Response::new(proto::ProxyReleaseCollectionResponse {}))
    }

    #[tracing::instrument(skip_all, fields(collection = %request.get_ref().collection, top_k = request.get_ref().top_k))]
    async fn search(
        &self,
        request: Request<proto::SearchRequest>,
    ) -> Result<Response<proto::SearchResponse>, Status> {
        let started = Instant::now();
        let req = request.into_inner();
        let target = self.target(&req.collection, "").await?;
        let (_, dim) = target.schema.vector_field();
        let vectors = req
            .vectors
            .ok_or_else(|| self.refuse(Status::invalid_argument("a search needs query vectors")))?;
        if vectors.dim != dim {
            return Err(self.refuse(Status::invalid_argument(format!(
                "the query vectors have dimension {}, collection {:?} has dimension {dim}",
                vectors.dim, req.collection
            ))));
        }
        if vectors.values.is_empty() || vectors.values.len() % dim as usize != 0 {
            return Err(self.refuse(Status::invalid_argument(format!(
                "{} query floats are not whole vectors of dimension {dim}",
                vectors.values.len()
            ))));
        }
        if req.top_k == 0 || req.top_k > crate::querynode::MAX_TOP_K {
            return Err(self.refuse(Status::invalid_argument(format!(
                "top_k must be 1 to {}, not {}",
                crate::querynode::MAX_TOP_K,
                req.top_k
            ))));
        }
        if let Some(i) = vectors.values.first_non_finite() {
            return Err(self.refuse(Status::invalid_argument(format!(
                "query vector {} holds a NaN or infinite value",
                i / dim as usize + 1
            ))));
        }
        let queries = vectors.values.len() / dim as usize;
        let selection = self.selection(&target.schema, &req.filter, &req.output_fields)?;
        let (plan, answers) = self
            .read_channels(
                &req.collection,
                target.collection,
                req.consistency,
                req.timeout_ms,
                |mut client, at| {
                    let request = proto::SearchChannelRequest {
                        at,
                        queries: Some(vectors.clone()),
                        top_k: req.top_k,
                        ef: req.ef,
                        filter: req.filter.clone(),
                        output_fields: selection.names.clone(),
                    };
                    async move { Ok(client.search_channel(request).await?.into_inner()) }
                },
            )
            .await?;
        let metric = reads::answers_metric(&target.schema, &answers)?;
        let results = reads::merge_channels(
            &target.schema,
            metric,
            &selection.columns,
            &answers,
            queries,
            req.top_k as usize,
        )?;
        self.metrics.searches.inc();
        self.metrics
            .search_seconds
            .observe(started.elapsed().as_secs_f64());
        Ok(Response::new(proto::SearchResponse {
            results,
            metric: metric.name().to_owned(),
            read_ts: plan.read_ts(answers.iter().map(|a| a.read_ts)),
        }))
    }

    #[tracing::instrument(skip_all, fields(collection = %request.get_ref().collection))]
    async fn count(
        &self,
        request: Request<proto::CountRequest>,
    ) -> Result<Response<proto::CountResponse>, Status> {
        let req = request.into_inner();
        let target = self.target(&req.collection, "").await?;
        self.selection(&target.schema, &req.filter, &[])?;
        let (plan, answers) = self
            .read_channels(
                &req.collection,
                target.collection,
                req.consistency,
                req.timeout_ms,
                |mut client, at| {
                    let request = proto::CountChannelRequest {
                        at,
                        filter: req.filter.clone(),
                    };
                    async move { Ok(client.count_channel(request).await?.into_inner()) }
                },
            )
            .await?;
        Ok(Response::new(proto::CountResponse {
            rows: answers.iter().map(|a| a.rows).sum(),
            read_ts: plan.read_ts(answers.iter().map(|a| a.read_ts)),
        }))
    }

    #[tracing::instrument(skip_all, fields(collection = %request.get_ref().collection, limit = request.get_ref().limit))]
    async fn query(
        &self,
        request: Request<proto::QueryRequest>,
    ) -> Result<Response<proto::QueryResponse>, Status> {
        let req = request.into_inner();
        let target = self.target(&req.collection, "").await?;
        let window = u64::from(req.limit) + u64::from(req.offset);
        if window > u64::from(MAX_QUERY_ROWS) {
            return Err(self.refuse(Status::invalid_argument(format!(
                "limit + offset is {window}; at most {MAX_QUERY_ROWS} rows are returned at once"
            ))));
        }
        let selection = self.selection(&target.schema, &req.filter, &req.output_fields)?;
        let primary = target.schema.primary_key_index();
        let mut columns = vec![primary];
        columns.extend(selection.columns.iter().copied().filter(|&c| c != primary));
        // Each query node sends the first rows of its channels; without a
        // limit, one more than may be returned, to tell "all of them" from
        // "too many".
        let per_node = if req.limit == 0 {
            MAX_QUERY_ROWS + 1
        } else {
            req.limit + req.offset
        };
        let (plan, answers) = self
            .read_channels(
                &req.collection,
                target.collection,
                req.consistency,
                req.timeout_ms,
                |mut client, at| {
                    let request = proto::QueryChannelRequest {
                        at,
                        filter: req.filter.clone(),
                        output_fields: selection.names.clone(),
                        limit: per_node,
                    };
                    async move { Ok(client.query_channel(request).await?.into_inner()) }
                },
            )
            .await?;
        let (num_rows, columns) = reads::merge_rows(
            &target.schema,
            &columns,
            &answers,
            req.offset as usize,
            (req.limit != 0).then_some(req.limit as usize),
        )?;
        Ok(Response::new(proto::QueryResponse {
            columns,
            num_rows: u32::try_from(num_rows).unwrap_or(u32::MAX),
            read_ts: plan.read_ts(answers.iter().map(|a| a.read_ts)),
        }))
    }

    #[tracing::instrument(skip_all, fields(segments = ?request.get_ref().segment_ids))]
    async fn release_grants(
        &self,
        request: Request<proto::ReleaseGrantsRequest>,
    ) -> Result<Response<proto::ReleaseGrantsResponse>, Status> {
        let request = request.into_inner();
        let released = self
            .grants
            .release(request.proxy_id, &request.segment_ids)
            .await
            .map_err(|e| Status::failed_precondition(e.to_string()))?;
        self.metrics.grants_released.inc_by(u64::from(released));
        tracing::debug!(released, "grants given back");
        Ok(Response::new(proto::ReleaseGrantsResponse { released }))
    }
}

/// The coordinator's "not loaded" (which knows ids only), naming the collection
/// and the fix. A read fails with FAILED_PRECONDITION only when the coordinator
/// says the collection is not loaded: a channel's refusals become UNAVAILABLE.
fn not_loaded(status: Status, name: &str) -> Status {
    if status.code() == tonic::Code::FailedPrecondition {
        Status::failed_precondition(format!(
            "collection {name:?} is not loaded; load it first (LoadCollection, or `milvus-like collection load {name}`)"
        ))
    } else {
        status
    }
}

/// Runs a proxy until `cancel` fires.
pub async fn run(
    store: Arc<dyn MetaStore>,
    log: Arc<dyn Log>,
    config: ProxyConfig,
    cancel: CancellationToken,
) -> anyhow::Result<()> {
    // The role's span; `serve` records the node id (see `crate::spawn`).
    let span = tracing::info_span!("proxy", node_id = tracing::field::Empty);
    tracing::Instrument::instrument(serve(store, log, config, cancel), span).await
}

async fn serve(
    store: Arc<dyn MetaStore>,
    log: Arc<dyn Log>,
    config: ProxyConfig,
    cancel: CancellationToken,
) -> anyhow::Result<()> {
    let metrics = Arc::new(ProxyMetrics::default());
    let mut registry = prometheus_client::registry::Registry::default();
    metrics.register(&mut registry);
    // The topics are created by the data coordinator; wait for them.
    let channels = loop {
        match log.channel_count().await {
            Ok(n) => break n,
            Err(e) => {
                tracing::warn!(error = %e, "waiting for the insert and delete logs");
                tokio::select! {
                    () = cancel.cancelled() => return Ok(()),
                    () = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
            }
        }
    };
    let process = RoleProcess::start(store, Role::Proxy, config.role.clone(), &cancel).await?;
    let node_id = process.node_id();
    process.watch_log(&log);
    tracing::Span::current().record("node_id", node_id);
    // Flush(wait) may take a minute; other calls answer at once.
    let datacoord = LeaderPool::new(&config.datacoord, Duration::from_secs(90))?;
    let service = Arc::new(ProxyService {
        root: Arc::new(RootCoordLink::connect(
            &config.rootcoord,
            Duration::from_secs(10),
        )?),
        grants: GrantCache::new(datacoord.clone(), node_id),
        leaders: reads::Leaders::new(datacoord.clone(), channels),
        written: Arc::default(),
        datacoord,
        producer: log.producer()?,
        channels,
        names: Mutex::new(HashMap::new()),
        metrics,
    });
    let server = ProxyServer::from_arc(service.clone())
        .max_decoding_message_size(MAX_REQUEST_BYTES)
        .max_encoding_message_size(MAX_REQUEST_BYTES);
    // Milvus's API on the same port: its clients need only this address.
    let milvus = MilvusServiceServer::new(milvus_api::MilvusApi::new(service))
        .max_decoding_message_size(MAX_REQUEST_BYTES)
        .max_encoding_message_size(MAX_REQUEST_BYTES);
    let servers = process
        .serve_routes(
            <ProxyServer<ProxyService> as tonic::server::NamedService>::NAME,
            tonic::service::Routes::new(server).add_service(milvus),
            registry,
            &cancel,
        )
        .await?;
    servers
        .health
        .set_service_status(
            <ProxyServer<ProxyService> as tonic::server::NamedService>::NAME,
            tonic_health::ServingStatus::Serving,
        )
        .await;
    tracing::info!(channels, "proxy ready");
    cancel.cancelled().await;
    process.shut_down(servers).await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::{KeyRef, KeysRef};

    #[test]
    fn keys_spread_evenly_over_channels() {
        let mut counts = [0usize; 3];
        for pk in 0..30_000 {
            counts[KeyRef::Int(pk).channel(3) as usize] += 1;
        }
        for c in counts {
            assert!((9_000..11_000).contains(&c), "{counts:?}");
        }
        assert_eq!(KeyRef::Int(42).channel(1), 0);
    }

    #[test]
    fn routing_keeps_row_order_per_channel() {
        let pks: Vec<i64> = (0..100).collect();
        let routed = plan::route(KeysRef::Int(&pks), 3);
        let total: usize = routed.iter().map(|(_, r)| r.len()).sum();
        assert_eq!(total, 100);
        for (ch, rows) in routed {
            assert!(rows.windows(2).all(|w| w[0] < w[1]));
            assert!(rows.iter().all(|&i| KeyRef::Int(pks[i]).channel(3) == ch));
        }
    }
}
