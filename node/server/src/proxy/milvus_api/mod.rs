//! Milvus's public gRPC API (`milvus.proto.milvus.MilvusService`, milvus-proto
//! v3.0.0) on the proxy's port, beside milvus-like's own, so that Milvus's
//! clients (pymilvus, the Go and Java SDKs) connect to milvus-like by changing
//! only the address (issue 16).
//!
//! Each method is a translation: the request in Milvus's terms becomes a
//! call of the proxy's own API ([`Proxy`]) or the coordinators', and the
//! answer goes back in Milvus's terms ([`schema`], [`data`]). Failures are
//! answered in the response's status with Milvus's codes ([`refusal`]), as
//! Milvus does, and what Milvus offers that milvus-like does not is refused
//! by name. Served: the handshake (`Connect`, `GetVersion`, `CheckHealth`,
//! `GetComponentStates`, `AllocTimestamp`), collections (create, describe,
//! has, show, drop, statistics, persistent segments), data (insert, upsert,
//! delete by expression, flush and its state), the index (create, describe,
//! state, build progress, drop), load, release and load state, search
//! and query; INT64 and VARCHAR primary keys. Every other method answers UNIMPLEMENTED naming
//! it (the generated default, reworded by `milvus-like-api`'s build script);
//! `docs/milvus-compatibility.md` lists them all.

mod collections;
mod data;
mod reads;
mod refusal;
mod schema;
mod writes;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use milvus_like_api::Timestamp;
use milvus_like_api::milvus_proto::common::{
    ConsistencyLevel as MilvusConsistency, IndexState, KeyValuePair, LoadState, ServerInfo,
    StateCode, Status as MilvusStatus,
};
use milvus_like_api::milvus_proto::milvus::milvus_service_server::MilvusService;
use milvus_like_api::milvus_proto::milvus::*;
use milvus_like_api::milvus_proto::schema::{
    self as milvus_schema, IDs, LongArray, SearchResultData, StringArray, i_ds::IdField,
};
use milvus_like_api::proto::proxy_server::Proxy;
use milvus_like_api::proto::{self, CollectionInfo, field_data::Data};
use milvus_like_api::schema::{CollectionSchema, FieldType, IndexSpec, Metric};
use tonic::{Code, Request, Response, Status};

use self::refusal::{Refusal, WithStatus, ok, with_status};
use super::ProxyService;
use crate::filter::Filter;
use crate::keys::Keys;

with_status!(
    BoolResponse,
    ShowCollectionsResponse,
    DescribeCollectionResponse,
    AllocTimestampResponse,
    GetCollectionStatisticsResponse,
    DescribeIndexResponse,
    GetLoadStateResponse,
    GetLoadingProgressResponse,
    ShowPartitionsResponse,
    MutationResult,
    FlushResponse,
    GetFlushStateResponse,
    GetIndexStateResponse,
    GetIndexBuildProgressResponse,
    GetPersistentSegmentInfoResponse,
    SearchResults,
    QueryResults,
);

/// The only database milvus-like has (Milvus's default one).
const DATABASE: &str = "default";
/// What Milvus calls a row count in `count(*)` queries.
const COUNT_STAR: &str = "count(*)";

/// The answer of a method: its failure in the response's status.
fn answer<T: WithStatus>(result: Result<T, Refusal>) -> Result<Response<T>, Status> {
    Ok(Response::new(result.unwrap_or_else(|refusal| {
        tracing::debug!(code = refusal.0.code, reason = %refusal.0.reason, "Milvus API call refused");
        let mut failed = T::default();
        failed.set_status(refusal.0);
        failed
    })))
}

/// Milvus's databases: only the default one exists here.
fn database(name: &str) -> Result<(), Refusal> {
    if name.is_empty() || name == DATABASE {
        Ok(())
    } else {
        Err(Refusal::unsupported(format!(
            "databases other than {DATABASE:?} (asked for {name:?})"
        )))
    }
}

/// Partitions: only the default one, by that name or none.
fn default_partition_only(names: &[String]) -> Result<(), Refusal> {
    match names
        .iter()
        .find(|n| n.as_str() != milvus_like_api::schema::DEFAULT_PARTITION)
    {
        None => Ok(()),
        Some(name) => Err(Refusal::unsupported(format!(
            "partitions other than {:?} (asked for {name:?})",
            milvus_like_api::schema::DEFAULT_PARTITION
        ))),
    }
}

/// Milvus's consistency level as ours; the collection's default (Milvus's
/// `use_default_consistency`) is STRONG here, every collection's.
fn consistency(level: i32, use_default: bool) -> Result<i32, Refusal> {
    if use_default {
        return Ok(proto::ConsistencyLevel::ConsistencyStrong.into());
    }
    match MilvusConsistency::try_from(level) {
        // The same numbers as ours.
        Ok(
            MilvusConsistency::Strong
            | MilvusConsistency::Session
            | MilvusConsistency::Bounded
            | MilvusConsistency::Eventually,
        ) => Ok(level),
        _ => Err(Refusal::unsupported(format!(
            "the consistency level {level}; it is Strong, Session, Bounded or Eventually"
        ))),
    }
}

/// A `True`/`False` parameter as Python's `str()` writes it.
fn flag(key: &str, value: &str) -> Result<bool, Refusal> {
    match value.trim().to_ascii_lowercase().as_str() {
        "true" => Ok(true),
        "false" | "" => Ok(false),
        _ => Err(Refusal::invalid(format!(
            "{key} is {value:?}, not true or false"
        ))),
    }
}

fn whole(key: &str, value: &str) -> Result<i64, Refusal> {
    value
        .trim()
        .parse()
        .map_err(|_| Refusal::invalid(format!("{key} is {value:?}, not a whole number")))
}

/// Milvus's ids: Int64 or VarChar primary keys.
fn milvus_ids(ids: Keys) -> IDs {
    let id_field = match ids {
        Keys::Int(data) => IdField::IntId(LongArray { data }),
        Keys::Str(data) => IdField::StrId(StringArray { data }),
    };
    IDs {
        id_field: Some(id_field),
    }
}

/// Milvus's creation time in milliseconds since the epoch, from our TSO stamp.
fn created_ms(info: &CollectionInfo) -> u64 {
    Timestamp::from_u64(info.created_ts).physical()
}

/// What `GetVersion` and `Connect` report: milvus-like's own version, not a
/// Milvus version it is not.
pub const VERSION: &str = concat!("milvus-like ", env!("CARGO_PKG_VERSION"));

#[derive(Debug)]
pub struct MilvusApi {
    proxy: Arc<ProxyService>,
    /// Identifiers handed to connecting clients (Milvus's are per connection).
    next_client: AtomicI64,
}

/// A collection as a Milvus call names it, resolved.
struct Named {
    info: CollectionInfo,
    schema: CollectionSchema,
}

impl MilvusApi {
    pub fn new(proxy: Arc<ProxyService>) -> Self {
        Self {
            proxy,
            next_client: AtomicI64::new(1),
        }
    }

    /// The collection `name` (unknown: Milvus's "collection not found").
    async fn named(&self, db: &str, name: &str) -> Result<Named, Refusal> {
        database(db)?;
        let info = match self.proxy.root.collection_by_name(name).await {
            Ok(info) => info,
            Err(status) if status.code() == Code::NotFound => {
                return Err(Refusal::collection_not_found(name));
            }
            Err(status) => return Err(status.into()),
        };
        let schema = CollectionSchema::try_from(&info).map_err(|e| {
            Refusal::from(Status::internal(format!(
                "the stored schema is invalid: {e}"
            )))
        })?;
        Ok(Named { info, schema })
    }
}

#[tonic::async_trait]
impl MilvusService for MilvusApi {
    #[tracing::instrument(skip_all, fields(client = ?request.get_ref().client_info.as_ref().map(|c| (&c.sdk_type, &c.sdk_version))))]
    async fn connect(
        &self,
        request: Request<ConnectRequest>,
    ) -> Result<Response<ConnectResponse>, Status> {
        let identifier = self.next_client.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(identifier, "Milvus client connected");
        drop(request);
        Ok(Response::new(ConnectResponse {
            status: ok(),
            server_info: Some(ServerInfo {
                build_tags: VERSION.to_owned(),
                deploy_mode: "milvus-like".to_owned(),
                ..ServerInfo::default()
            }),
            identifier,
        }))
    }

    async fn get_version(
        &self,
        _request: Request<GetVersionRequest>,
    ) -> Result<Response<GetVersionResponse>, Status> {
        Ok(Response::new(GetVersionResponse {
            status: ok(),
            version: VERSION.to_owned(),
        }))
    }

    async fn alloc_timestamp(
        &self,
        _request: Request<AllocTimestampRequest>,
    ) -> Result<Response<AllocTimestampResponse>, Status> {
        answer(
            async {
                Ok(AllocTimestampResponse {
                    status: ok(),
                    timestamp: self.proxy.root.timestamp().await?.as_u64(),
                })
            }
            .await,
        )
    }

    async fn has_collection(
        &self,
        request: Request<HasCollectionRequest>,
    ) -> Result<Response<BoolResponse>, Status> {
        let req = request.into_inner();
        answer(
            async {
                database(&req.db_name)?;
                let value = match self
                    .proxy
                    .root
                    .collection_by_name(&req.collection_name)
                    .await
                {
                    Ok(_) => true,
                    Err(status) if status.code() == Code::NotFound => false,
                    Err(status) => return Err(status.into()),
                };
                Ok(BoolResponse {
                    status: ok(),
                    value,
                })
            }
            .await,
        )
    }

    async fn show_collections(
        &self,
        request: Request<ShowCollectionsRequest>,
    ) -> Result<Response<ShowCollectionsResponse>, Status> {
        let req = request.into_inner();
        answer(
            async {
                database(&req.db_name)?;
                let listed = Proxy::list_collections(
                    self.proxy.as_ref(),
                    Request::new(proto::ListCollectionsRequest {}),
                )
                .await?
                .into_inner()
                .collections;
                let shards = i32::try_from(self.proxy.channels).unwrap_or(i32::MAX);
                Ok(ShowCollectionsResponse {
                    status: ok(),
                    collection_names: listed
                        .iter()
                        .map(|c| {
                            c.schema
                                .as_ref()
                                .map(|s| s.name.clone())
                                .unwrap_or_default()
                        })
                        .collect(),
                    collection_ids: listed.iter().map(|c| c.id).collect(),
                    created_timestamps: listed.iter().map(|c| c.created_ts).collect(),
                    created_utc_timestamps: listed.iter().map(created_ms).collect(),
                    shards_num: vec![shards; listed.len()],
                    ..ShowCollectionsResponse::default()
                })
            }
            .await,
        )
    }

    #[tracing::instrument(skip_all, fields(collection = %request.get_ref().collection_name))]
    async fn create_collection(
        &self,
        request: Request<CreateCollectionRequest>,
    ) -> Result<Response<MilvusStatus>, Status> {
        answer(self.create(request.into_inner()).await)
    }

    async fn describe_collection(
        &self,
        request: Request<DescribeCollectionRequest>,
    ) -> Result<Response<DescribeCollectionResponse>, Status> {
        answer(self.describe(request.into_inner()).await)
    }

    /// As Milvus: a collection that does not exist is dropped already.
    #[tracing::instrument(skip_all, fields(collection = %request.get_ref().collection_name))]
    async fn drop_collection(
        &self,
        request: Request<DropCollectionRequest>,
    ) -> Result<Response<MilvusStatus>, Status> {
        let req = request.into_inner();
        answer(
            async {
                database(&req.db_name)?;
                let dropped = Proxy::drop_collection(
                    self.proxy.as_ref(),
                    Request::new(proto::DropCollectionRequest {
                        name: req.collection_name,
                    }),
                )
                .await;
                match dropped {
                    Ok(_) => Ok(MilvusStatus::default()),
                    Err(status) if status.code() == Code::NotFound => Ok(MilvusStatus::default()),
                    Err(status) => Err(status.into()),
                }
            }
            .await,
        )
    }

    /// The default partition, the only one a collection has here.
    async fn show_partitions(
        &self,
        request: Request<ShowPartitionsRequest>,
    ) -> Result<Response<ShowPartitionsResponse>, Status> {
        let req = request.into_inner();
        answer(
            async {
                let named = self.named(&req.db_name, &req.collection_name).await?;
                default_partition_only(&req.partition_names)?;
                let partitions = &named.info.partitions;
                Ok(ShowPartitionsResponse {
                    status: ok(),
                    partition_names: partitions.iter().map(|p| p.name.clone()).collect(),
                    partition_i_ds: partitions.iter().map(|p| p.id).collect(),
                    created_timestamps: vec![named.info.created_ts; partitions.len()],
                    created_utc_timestamps: vec![created_ms(&named.info); partitions.len()],
                    ..ShowPartitionsResponse::default()
                })
            }
            .await,
        )
    }

    async fn has_partition(
        &self,
        request: Request<HasPartitionRequest>,
    ) -> Result<Response<BoolResponse>, Status> {
        let req = request.into_inner();
        answer(
            async {
                let named = self.named(&req.db_name, &req.collection_name).await?;
                let value = named
                    .info
                    .partitions
                    .iter()
                    .any(|p| p.name == req.partition_name);
                Ok(BoolResponse {
                    status: ok(),
                    value,
                })
            }
            .await,
        )
    }

    async fn create_partition(
        &self,
        request: Request<CreatePartitionRequest>,
    ) -> Result<Response<MilvusStatus>, Status> {
        let req = request.into_inner();
        answer(
            async {
                self.named(&req.db_name, &req.collection_name).await?;
                Err(Refusal::unsupported(format!(
                    "partitions other than {:?} (asked to create {:?})",
                    milvus_like_api::schema::DEFAULT_PARTITION,
                    req.partition_name
                )))
            }
            .await,
        )
    }

    async fn drop_partition(
        &self,
        request: Request<DropPartitionRequest>,
    ) -> Result<Response<MilvusStatus>, Status> {
        let req = request.into_inner();
        answer(async {
            self.named(&req.db_name, &req.collection_name).await?;
            Err(Refusal::unsupported(format!(
                "dropping partitions (asked to drop {:?}); a collection keeps its {:?} partition",
                req.partition_name,
                milvus_like_api::schema::DEFAULT_PARTITION
            )))
        }
        .await)
    }

    async fn get_collection_statistics(
        &self,
        request: Request<GetCollectionStatisticsRequest>,
    ) -> Result<Response<GetCollectionStatisticsResponse>, Status> {
        answer(self.statistics(request.into_inner()).await)
    }

    #[tracing::instrument(skip_all, fields(collection = %request.get_ref().collection_name))]
    async fn create_index(
        &self,
        request: Request<CreateIndexRequest>,
    ) -> Result<Response<MilvusStatus>, Status> {
        answer(self.create_index(request.into_inner()).await)
    }

    async fn describe_index(
        &self,
        request: Request<DescribeIndexRequest>,
    ) -> Result<Response<DescribeIndexResponse>, Status> {
        answer(self.describe_index(request.into_inner()).await)
    }

    async fn get_index_state(
        &self,
        request: Request<GetIndexStateRequest>,
    ) -> Result<Response<GetIndexStateResponse>, Status> {
        answer(self.index_state(request.into_inner()).await)
    }

    async fn get_index_build_progress(
        &self,
        request: Request<GetIndexBuildProgressRequest>,
    ) -> Result<Response<GetIndexBuildProgressResponse>, Status> {
        answer(self.index_build_progress(request.into_inner()).await)
    }

    async fn get_persistent_segment_info(
        &self,
        request: Request<GetPersistentSegmentInfoRequest>,
    ) -> Result<Response<GetPersistentSegmentInfoResponse>, Status> {
        answer(self.persistent_segments(request.into_inner()).await)
    }

    #[tracing::instrument(skip_all, fields(collection = %request.get_ref().collection_name))]
    async fn drop_index(
        &self,
        request: Request<DropIndexRequest>,
    ) -> Result<Response<MilvusStatus>, Status> {
        answer(self.drop_index(request.into_inner()).await)
    }

    #[tracing::instrument(skip_all, fields(collection = %request.get_ref().collection_name))]
    async fn load_collection(
        &self,
        request: Request<LoadCollectionRequest>,
    ) -> Result<Response<MilvusStatus>, Status> {
        answer(self.load(request.into_inner()).await)
    }

    #[tracing::instrument(skip_all, fields(collection = %request.get_ref().collection_name))]
    async fn release_collection(
        &self,
        request: Request<ReleaseCollectionRequest>,
    ) -> Result<Response<MilvusStatus>, Status> {
        answer(self.release(request.into_inner()).await)
    }

    async fn get_load_state(
        &self,
        request: Request<GetLoadStateRequest>,
    ) -> Result<Response<GetLoadStateResponse>, Status> {
        let req = request.into_inner();
        answer(
            async {
                let state = self
                    .load_state(&req.db_name, &req.collection_name, &req.partition_names)
                    .await?;
                Ok(GetLoadStateResponse {
                    status: ok(),
                    state: state.into(),
                })
            }
            .await,
        )
    }

    /// 100 once loaded (a load answers only then); an unloaded collection is
    /// refused as in Milvus.
    async fn get_loading_progress(
        &self,
        request: Request<GetLoadingProgressRequest>,
    ) -> Result<Response<GetLoadingProgressResponse>, Status> {
        let req = request.into_inner();
        answer(
            async {
                let progress = match self
                    .load_state(&req.db_name, &req.collection_name, &req.partition_names)
                    .await?
                {
                    LoadState::Loaded => 100,
                    LoadState::Loading => 0,
                    LoadState::NotExist => {
                        return Err(Refusal::collection_not_found(&req.collection_name));
                    }
                    LoadState::NotLoad => {
                        return Err(Refusal::from(Status::failed_precondition(format!(
                            "collection {:?} is not loaded",
                            req.collection_name
                        ))));
                    }
                };
                Ok(GetLoadingProgressResponse {
                    status: ok(),
                    progress,
                    refresh_progress: progress,
                })
            }
            .await,
        )
    }

    #[tracing::instrument(skip_all, fields(collection = %request.get_ref().collection_name, rows = request.get_ref().num_rows))]
    async fn insert(
        &self,
        request: Request<InsertRequest>,
    ) -> Result<Response<MutationResult>, Status> {
        answer(self.insert(request.into_inner()).await)
    }

    #[tracing::instrument(skip_all, fields(collection = %request.get_ref().collection_name, rows = request.get_ref().num_rows))]
    async fn upsert(
        &self,
        request: Request<UpsertRequest>,
    ) -> Result<Response<MutationResult>, Status> {
        answer(self.upsert(request.into_inner()).await)
    }

    #[tracing::instrument(skip_all, fields(collection = %request.get_ref().collection_name))]
    async fn delete(
        &self,
        request: Request<DeleteRequest>,
    ) -> Result<Response<MutationResult>, Status> {
        answer(self.delete(request.into_inner()).await)
    }

    #[tracing::instrument(skip_all, fields(collections = ?request.get_ref().collection_names))]
    async fn flush(
        &self,
        request: Request<FlushRequest>,
    ) -> Result<Response<FlushResponse>, Status> {
        answer(self.flush(request.into_inner()).await)
    }

    async fn get_flush_state(
        &self,
        request: Request<GetFlushStateRequest>,
    ) -> Result<Response<GetFlushStateResponse>, Status> {
        answer(self.flush_state(request.into_inner()).await)
    }

    #[tracing::instrument(skip_all, fields(collection = %request.get_ref().collection_name, nq = request.get_ref().nq))]
    async fn search(
        &self,
        request: Request<SearchRequest>,
    ) -> Result<Response<SearchResults>, Status> {
        answer(self.search(request.into_inner()).await)
    }

    #[tracing::instrument(skip_all, fields(collection = %request.get_ref().collection_name))]
    async fn query(
        &self,
        request: Request<QueryRequest>,
    ) -> Result<Response<QueryResults>, Status> {
        answer(self.query(request.into_inner()).await)
    }

    /// Healthy when the proxy can take a timestamp from the root coordinator
    /// (what every write and strong read needs first).
    async fn check_health(
        &self,
        _request: Request<CheckHealthRequest>,
    ) -> Result<Response<CheckHealthResponse>, Status> {
        let reasons = self.unhealthy().await;
        Ok(Response::new(CheckHealthResponse {
            status: ok(),
            is_healthy: reasons.is_empty(),
            reasons,
            quota_states: Vec::new(),
        }))
    }

    /// The proxy's state: healthy while the root coordinator gives it
    /// timestamps (what every write needs).
    async fn get_component_states(
        &self,
        _request: Request<GetComponentStatesRequest>,
    ) -> Result<Response<ComponentStates>, Status> {
        let reasons = self.unhealthy().await;
        let state_code = if reasons.is_empty() {
            StateCode::Healthy
        } else {
            StateCode::Abnormal
        };
        let extra_info = reasons
            .into_iter()
            .map(|value| KeyValuePair {
                key: "reason".into(),
                value,
            })
            .collect();
        Ok(Response::new(ComponentStates {
            state: Some(ComponentInfo {
                node_id: self.proxy.grants.proxy_id(),
                role: "Proxy".into(),
                state_code: state_code.into(),
                extra_info,
            }),
            subcomponent_states: Vec::new(),
            status: ok(),
        }))
    }
}

impl MilvusApi {
    /// Why the proxy cannot serve writes now (none: healthy).
    async fn unhealthy(&self) -> Vec<String> {
        match self.proxy.root.timestamp().await {
            Ok(_) => Vec::new(),
            Err(status) => vec![format!(
                "the root coordinator did not give a timestamp: {}",
                status.message()
            )],
        }
    }
}
