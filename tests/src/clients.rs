//! gRPC clients of the roles, and waits until a role serves.

use std::time::Duration;

use milvus_like_api::proto::data_coord_client::DataCoordClient;
use milvus_like_api::proto::proxy_client::ProxyClient;
use milvus_like_api::proto::root_coord_client::RootCoordClient;
use milvus_like_api::proto::{AllocTimestampRequest, ListCollectionsRequest};
use tonic::transport::Channel;

use crate::process::Process;
use crate::wait::wait_for;

/// A channel to `endpoint` that connects on first use.
fn lazy(endpoint: &str) -> Channel {
    Channel::from_shared(endpoint.to_owned())
        .expect("a valid endpoint uri")
        .connect_lazy()
}

/// A lazily connecting root coordinator client.
pub fn root_coord_client(endpoint: &str) -> RootCoordClient<Channel> {
    RootCoordClient::new(lazy(endpoint))
}

/// A lazily connecting data coordinator client.
pub fn data_coord_client(endpoint: &str) -> DataCoordClient<Channel> {
    DataCoordClient::new(lazy(endpoint))
}

/// A lazily connecting proxy client, for requests of up to 64 MiB.
pub fn proxy_client(endpoint: &str) -> ProxyClient<Channel> {
    ProxyClient::new(lazy(endpoint))
        .max_decoding_message_size(64 << 20)
        .max_encoding_message_size(64 << 20)
}

/// Waits until the root coordinator at `endpoint` issues timestamps; returns one.
/// On timeout, panics with the process log.
pub async fn wait_serving(endpoint: &str, process: &Process, timeout: Duration) -> u64 {
    let client = root_coord_client(endpoint);
    wait_for("the root coordinator to serve", timeout, || {
        let mut c = client.clone();
        async move {
            c.alloc_timestamp(AllocTimestampRequest { count: 1 })
                .await
                .ok()
                .map(|r| r.into_inner().timestamp)
        }
    })
    .await
    .unwrap_or_else(|e| panic!("{e}; log:\n{}", process.log()))
}

/// Waits (60 s at most) until the proxy behind `proxy` answers `ListCollections`.
pub async fn wait_for_proxy(proxy: &ProxyClient<Channel>) -> anyhow::Result<()> {
    wait_for("the proxy to answer", Duration::from_secs(60), || {
        let mut p = proxy.clone();
        async move { p.list_collections(ListCollectionsRequest {}).await.ok() }
    })
    .await
    .map(drop)
}
