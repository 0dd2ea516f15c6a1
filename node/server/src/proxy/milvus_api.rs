//! Milvus's public gRPC API (`milvus.proto.milvus.MilvusService`, milvus-proto
//! v3.0.0) on the proxy's port, beside milvus-like's own, so that Milvus's
//! clients (pymilvus, the Go and Java SDKs) connect to milvus-like by changing
//! only the address (issue 16).
//!
//! Served so far: the handshake every client makes first (`Connect`), the
//! server's version (`GetVersion`) and health (`CheckHealth`), and reading
//! and dropping collections (`HasCollection`, `ShowCollections`,
//! `DescribeCollection` with the schema in Milvus's terms, whose field types
//! share our numbers, and `DropCollection`). Errors a client should see as
//! Milvus's (an unknown collection) are answered as Milvus does, in the
//! response's `status`, which pymilvus raises as a `MilvusException`. Every
//! other method answers UNIMPLEMENTED with a message naming it (the generated
//! default, reworded by `milvus-like-api`'s build script);
//! `docs/milvus-compatibility.md` lists them all.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use milvus_like_api::Timestamp;
use milvus_like_api::milvus_proto::common::{
    ErrorCode, KeyValuePair, ServerInfo, Status as MilvusStatus,
};
use milvus_like_api::milvus_proto::milvus::milvus_service_server::MilvusService;
use milvus_like_api::milvus_proto::milvus::{
    BoolResponse, CheckHealthRequest, CheckHealthResponse, ConnectRequest, ConnectResponse,
    DescribeCollectionRequest, DescribeCollectionResponse, DropCollectionRequest,
    GetVersionRequest, GetVersionResponse, HasCollectionRequest, ShowCollectionsRequest,
    ShowCollectionsResponse,
};
use milvus_like_api::milvus_proto::schema;
use milvus_like_api::proto::{self, CollectionInfo};
use tonic::{Code, Request, Response, Status};

use super::ProxyService;

/// Milvus's code for an unknown collection (`merr.ErrCollectionNotFound`).
const COLLECTION_NOT_FOUND: i32 = 100;
/// The first field id Milvus hands out (`common.StartOfUserFieldID`).
const FIRST_FIELD_ID: i64 = 100;

/// Milvus's answer for an unknown collection, in the response's status (with
/// the deprecated `error_code` too, which older clients read).
#[allow(deprecated)]
fn collection_not_found(name: &str) -> Option<MilvusStatus> {
    Some(MilvusStatus {
        error_code: ErrorCode::CollectionNotExists.into(),
        code: COLLECTION_NOT_FOUND,
        reason: format!("collection not found[collection={name}]"),
        ..MilvusStatus::default()
    })
}

/// A collection's schema in Milvus's terms. Field ids are Milvus's numbering
/// (100, 101, ... in schema order); our types share Milvus's numbers.
fn milvus_schema(info: &CollectionInfo) -> schema::CollectionSchema {
    let ours = info.schema.clone().unwrap_or_default();
    let fields = ours
        .fields
        .iter()
        .zip(FIRST_FIELD_ID..)
        .map(|(f, id)| {
            let mut type_params = Vec::new();
            if f.dim > 0 {
                type_params.push(KeyValuePair {
                    key: "dim".into(),
                    value: f.dim.to_string(),
                });
            }
            if f.max_length > 0 {
                type_params.push(KeyValuePair {
                    key: "max_length".into(),
                    value: f.max_length.to_string(),
                });
            }
            schema::FieldSchema {
                field_id: id,
                name: f.name.clone(),
                is_primary_key: f.is_primary_key,
                description: f.description.clone(),
                data_type: f.data_type,
                type_params,
                ..schema::FieldSchema::default()
            }
        })
        .collect();
    schema::CollectionSchema {
        name: ours.name,
        description: ours.description,
        fields,
        ..schema::CollectionSchema::default()
    }
}

/// Milvus's creation time in milliseconds since the epoch, from our TSO stamp.
fn created_ms(info: &CollectionInfo) -> u64 {
    Timestamp::from_u64(info.created_ts).physical()
}

/// What `GetVersion` and `Connect` report: milvus-like's own version, not a
/// Milvus version it is not.
pub const VERSION: &str = concat!("milvus-like ", env!("CARGO_PKG_VERSION"));

/// Milvus's success status.
fn ok() -> Option<MilvusStatus> {
    Some(MilvusStatus::default())
}

#[derive(Debug)]
pub struct MilvusApi {
    proxy: Arc<ProxyService>,
    /// Identifiers handed to connecting clients (Milvus's are per connection).
    next_client: AtomicI64,
}

impl MilvusApi {
    pub fn new(proxy: Arc<ProxyService>) -> Self {
        Self {
            proxy,
            next_client: AtomicI64::new(1),
        }
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

    async fn has_collection(
        &self,
        request: Request<HasCollectionRequest>,
    ) -> Result<Response<BoolResponse>, Status> {
        let name = request.into_inner().collection_name;
        let value = match self.proxy.root.collection_by_name(&name).await {
            Ok(_) => true,
            Err(status) if status.code() == Code::NotFound => false,
            Err(status) => return Err(status),
        };
        Ok(Response::new(BoolResponse {
            status: ok(),
            value,
        }))
    }

    async fn show_collections(
        &self,
        _request: Request<ShowCollectionsRequest>,
    ) -> Result<Response<ShowCollectionsResponse>, Status> {
        use milvus_like_api::proto::proxy_server::Proxy;
        let listed = Proxy::list_collections(
            self.proxy.as_ref(),
            Request::new(proto::ListCollectionsRequest {}),
        )
        .await?
        .into_inner()
        .collections;
        let shards = i32::try_from(self.proxy.channels).unwrap_or(i32::MAX);
        Ok(Response::new(ShowCollectionsResponse {
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
        }))
    }

    async fn describe_collection(
        &self,
        request: Request<DescribeCollectionRequest>,
    ) -> Result<Response<DescribeCollectionResponse>, Status> {
        let req = request.into_inner();
        let found = if req.collection_name.is_empty() && req.collection_id != 0 {
            self.proxy.root.collection(req.collection_id).await
        } else {
            self.proxy
                .root
                .collection_by_name(&req.collection_name)
                .await
        };
        let info = match found {
            Ok(info) => info,
            Err(status) if status.code() == Code::NotFound => {
                let name = if req.collection_name.is_empty() {
                    req.collection_id.to_string()
                } else {
                    req.collection_name
                };
                return Ok(Response::new(DescribeCollectionResponse {
                    status: collection_not_found(&name),
                    ..DescribeCollectionResponse::default()
                }));
            }
            Err(status) => return Err(status),
        };
        let schema = milvus_schema(&info);
        Ok(Response::new(DescribeCollectionResponse {
            status: ok(),
            collection_name: schema.name.clone(),
            schema: Some(schema),
            collection_id: info.id,
            created_timestamp: info.created_ts,
            created_utc_timestamp: created_ms(&info),
            shards_num: i32::try_from(self.proxy.channels).unwrap_or(i32::MAX),
            num_partitions: i64::try_from(info.partitions.len()).unwrap_or(i64::MAX),
            db_name: "default".into(),
            ..DescribeCollectionResponse::default()
        }))
    }

    /// As Milvus: a collection that does not exist is dropped already.
    async fn drop_collection(
        &self,
        request: Request<DropCollectionRequest>,
    ) -> Result<Response<MilvusStatus>, Status> {
        use milvus_like_api::proto::proxy_server::Proxy;
        let name = request.into_inner().collection_name;
        let dropped = Proxy::drop_collection(
            self.proxy.as_ref(),
            Request::new(proto::DropCollectionRequest { name }),
        )
        .await;
        match dropped {
            Ok(_) => Ok(Response::new(MilvusStatus::default())),
            Err(status) if status.code() == Code::NotFound => {
                Ok(Response::new(MilvusStatus::default()))
            }
            Err(status) => Err(status),
        }
    }

    /// Healthy when the proxy can take a timestamp from the root coordinator
    /// (what every write and strong read needs first).
    async fn check_health(
        &self,
        _request: Request<CheckHealthRequest>,
    ) -> Result<Response<CheckHealthResponse>, Status> {
        let reasons = match self.proxy.root.timestamp().await {
            Ok(_) => Vec::new(),
            Err(status) => vec![format!(
                "the root coordinator did not give a timestamp: {}",
                status.message()
            )],
        };
        Ok(Response::new(CheckHealthResponse {
            status: ok(),
            is_healthy: reasons.is_empty(),
            reasons,
            quota_states: Vec::new(),
        }))
    }
}
