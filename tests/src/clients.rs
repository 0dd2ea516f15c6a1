//! gRPC clients of the roles, and waits until a role serves.

use std::collections::HashSet;
use std::time::Duration;

use milvus_like_api::proto::data_coord_client::DataCoordClient;
use milvus_like_api::proto::proxy_client::ProxyClient;
use milvus_like_api::proto::root_coord_client::RootCoordClient;
use milvus_like_api::proto::{
    AllocTimestampRequest, CollectionInfo, ConsistencyLevel, CountRequest, CreateCollectionRequest,
    GetChannelDistributionRequest, GetChannelDistributionResponse, ListCollectionsRequest,
    ProxyFlushRequest, ProxyFlushResponse,
};
use milvus_like_api::schema::CollectionSchema;
use tonic::Code;
use tonic::transport::Channel;

use anyhow::Context;

use crate::data::test_schema;
use crate::process::Process;
use crate::wait::wait_for;

/// A channel to `endpoint` that connects on first use.
pub fn lazy(endpoint: &str) -> Channel {
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
pub async fn serving(endpoint: &str, timeout: Duration) -> anyhow::Result<u64> {
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
}

/// [`serving`], panicking with the log of `process` on timeout.
pub async fn wait_serving(endpoint: &str, process: &Process, timeout: Duration) -> u64 {
    serving(endpoint, timeout)
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

/// Waits until the data coordinator behind `datacoord` answers
/// `GetChannelDistribution` (it leads) with a distribution that `ready` accepts;
/// that distribution.
pub async fn wait_distribution(
    datacoord: &DataCoordClient<Channel>,
    what: &str,
    timeout: Duration,
    ready: impl Fn(&GetChannelDistributionResponse) -> bool,
) -> anyhow::Result<GetChannelDistributionResponse> {
    wait_for(what, timeout, || {
        let mut dc = datacoord.clone();
        let ready = &ready;
        async move {
            let d = dc
                .get_channel_distribution(GetChannelDistributionRequest {})
                .await
                .ok()?
                .into_inner();
            ready(&d).then_some(d)
        }
    })
    .await
}

/// Waits (60 s at most) until every one of the `channels` channels has an owner,
/// and the owners are `nodes` data nodes.
pub async fn wait_channels_owned(
    datacoord: &DataCoordClient<Channel>,
    channels: u32,
    nodes: usize,
) -> anyhow::Result<()> {
    let owned = |d: &GetChannelDistributionResponse| {
        let owners: HashSet<i64> = d.channels.iter().map(|c| c.node_id).collect();
        d.channels.len() == channels as usize && !owners.contains(&0) && owners.len() == nodes
    };
    wait_distribution(
        datacoord,
        "every channel to have an owner",
        Duration::from_secs(60),
        owned,
    )
    .await
    .map(drop)
}

/// Creates collection `name` of [`test_schema`]`(name, dim)` through the proxy;
/// its info and schema.
pub async fn create_collection(
    proxy: &ProxyClient<Channel>,
    name: &str,
    dim: u32,
) -> anyhow::Result<(CollectionInfo, CollectionSchema)> {
    let info = proxy
        .clone()
        .create_collection(CreateCollectionRequest {
            schema: Some(test_schema(name, dim)),
        })
        .await
        .with_context(|| format!("create collection {name}"))?
        .into_inner()
        .collection
        .context("no collection info")?;
    let schema = CollectionSchema::try_from(info.schema.clone().context("no schema")?)?;
    Ok((info, schema))
}

/// Flush(wait) of `collection` through the proxy. A busy machine may take longer
/// than the coordinator's own wait; the flush goes on regardless, so it is asked
/// again (five times at most) while the answer is a timeout.
pub async fn flush(
    proxy: &ProxyClient<Channel>,
    collection: &str,
) -> Result<ProxyFlushResponse, tonic::Status> {
    let mut last = None;
    for _ in 0..5 {
        match proxy
            .clone()
            .flush(ProxyFlushRequest {
                collection: collection.to_owned(),
                wait: true,
            })
            .await
        {
            Ok(r) => return Ok(r.into_inner()),
            Err(s) if matches!(s.code(), Code::DeadlineExceeded | Code::Unavailable) => {
                last = Some(s);
            }
            Err(s) => return Err(s),
        }
    }
    Err(last.unwrap_or_else(|| tonic::Status::unknown("no flush was asked")))
}

/// The rows of `collection` a STRONG count through the proxy sees.
pub async fn strong_count(
    proxy: &ProxyClient<Channel>,
    collection: &str,
) -> Result<u64, tonic::Status> {
    proxy
        .clone()
        .count(CountRequest {
            collection: collection.to_owned(),
            consistency: ConsistencyLevel::ConsistencyStrong.into(),
            timeout_ms: 20_000,
            filter: String::new(),
        })
        .await
        .map(|r| r.into_inner().rows)
}

/// Rows committed in a collection's segments, as the data coordinator lists them
/// (the sum of their `num_rows`).
pub async fn committed_rows(
    datacoord: &DataCoordClient<Channel>,
    collection_id: i64,
) -> anyhow::Result<u64> {
    let listed = datacoord
        .clone()
        .list_segments(milvus_like_api::proto::ListSegmentsRequest { collection_id })
        .await
        .context("list segments")?
        .into_inner();
    Ok(listed.segments.iter().map(|s| s.num_rows).sum())
}
