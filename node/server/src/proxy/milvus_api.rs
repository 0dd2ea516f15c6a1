//! Milvus's public gRPC API (`milvus.proto.milvus.MilvusService`, milvus-proto
//! v3.0.0) on the proxy's port, beside milvus-like's own, so that Milvus's
//! clients (pymilvus, the Go and Java SDKs) connect to milvus-like by changing
//! only the address (issue 16).
//!
//! Served so far: the handshake every client makes first (`Connect`), the
//! server's version (`GetVersion`) and health (`CheckHealth`). Every other
//! method answers UNIMPLEMENTED with a message naming it (the generated
//! default, reworded by `milvus-like-api`'s build script);
//! `docs/milvus-compatibility.md` lists them all.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use milvus_like_api::milvus_proto::common::{ServerInfo, Status as MilvusStatus};
use milvus_like_api::milvus_proto::milvus::milvus_service_server::MilvusService;
use milvus_like_api::milvus_proto::milvus::{
    CheckHealthRequest, CheckHealthResponse, ConnectRequest, ConnectResponse, GetVersionRequest,
    GetVersionResponse,
};
use tonic::{Request, Response, Status};

use super::ProxyService;

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
