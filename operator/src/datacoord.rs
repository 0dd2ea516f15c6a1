//! The operator's calls to a cluster's data coordinator: where the channels
//! are, `Rebalance` when the ready data-node pods change, `DrainNode` before a
//! data-node pod is removed. One connection pool per endpoint, shared by every
//! reconcile of that cluster.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use milvus_like_api::leader_pool::LeaderPool;
use milvus_like_api::proto::data_coord_client::DataCoordClient;
use milvus_like_api::proto::{
    DrainNodeRequest, GetChannelDistributionRequest, GetChannelDistributionResponse,
    RebalanceRequest,
};
use tonic::{Code, Status};

use crate::metrics::Metrics;

/// How long one call may take, failing over between coordinators included.
/// Short: a reconcile waits for it, and an unreachable coordinator must not
/// hold up the rest of the cluster's reconcile.
const CALL_DEADLINE: Duration = Duration::from_secs(3);
/// A drain flushes and moves every channel of the node: give it longer.
const DRAIN_DEADLINE: Duration = Duration::from_secs(30);

/// Where the channels are, with each data node's registered name (its pod name
/// in Kubernetes).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Distribution {
    /// channel -> node id
    pub owners: BTreeMap<u32, i64>,
    /// registered data node name -> node id (the newest session of a name wins)
    pub nodes_by_name: BTreeMap<String, i64>,
    /// The query node serving each channel.
    pub query_channels: Vec<milvus_like_api::proto::QueryChannelOwner>,
}

impl From<GetChannelDistributionResponse> for Distribution {
    fn from(r: GetChannelDistributionResponse) -> Self {
        let mut nodes_by_name = BTreeMap::new();
        for n in r.nodes.iter().filter(|n| !n.name.is_empty()) {
            let id = nodes_by_name.entry(n.name.clone()).or_insert(n.node_id);
            *id = (*id).max(n.node_id);
        }
        Self {
            owners: r.channels.iter().map(|a| (a.channel, a.node_id)).collect(),
            nodes_by_name,
            query_channels: r.query_channels,
        }
    }
}

/// What a drain did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Drained {
    /// Its channels moved (maybe none: it owned none).
    Moved(u32),
    /// The coordinator does not know the node (never registered, or gone).
    Unknown,
}

/// Connection pools by endpoint.
#[derive(Debug)]
pub struct DataCoords {
    pools: Mutex<HashMap<String, LeaderPool>>,
    metrics: Arc<Metrics>,
}

impl DataCoords {
    pub fn new(metrics: Arc<Metrics>) -> Self {
        Self {
            pools: Mutex::default(),
            metrics,
        }
    }

    fn pool(&self, endpoint: &str) -> Result<LeaderPool, Status> {
        let mut pools = self.pools.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(p) = pools.get(endpoint) {
            return Ok(p.clone());
        }
        let pool = LeaderPool::new(&[endpoint.to_owned()], CALL_DEADLINE)
            .map_err(|e| Status::invalid_argument(format!("data coordinator endpoint: {e}")))?;
        pools.insert(endpoint.to_owned(), pool.clone());
        Ok(pool)
    }

    fn count<T>(&self, call: &'static str, result: &Result<T, Status>) {
        let code = match result {
            Ok(_) => tonic::Code::Ok,
            Err(s) => s.code(),
        };
        self.metrics
            .datacoord_call(call, milvus_like_api::process::code_name(code));
    }

    #[tracing::instrument(skip(self))]
    pub async fn distribution(&self, endpoint: &str) -> Result<Distribution, Status> {
        let pool = self.pool(endpoint)?;
        let result = pool
            .call(CALL_DEADLINE, |c| async move {
                DataCoordClient::new(c)
                    .get_channel_distribution(GetChannelDistributionRequest {})
                    .await
            })
            .await
            .map(|r| Distribution::from(r.into_inner()));
        self.count("GetChannelDistribution", &result);
        result
    }

    /// Recomputes ownership; with `expected`, the nodes that should own channels
    /// (the coordinator drains the others). Returns the channels that moved.
    #[tracing::instrument(skip(self))]
    pub async fn rebalance(&self, endpoint: &str, expected: Vec<i64>) -> Result<u32, Status> {
        let pool = self.pool(endpoint)?;
        let request = RebalanceRequest {
            expected_node_ids: expected,
        };
        let request = &request;
        let result = pool
            .call(CALL_DEADLINE, |c| async move {
                DataCoordClient::new(c).rebalance(request.clone()).await
            })
            .await
            .map(|r| r.into_inner().moved);
        self.count("Rebalance", &result);
        result
    }

    /// Moves every channel off `node_id` (the coordinator flushes each first).
    #[tracing::instrument(skip(self))]
    pub async fn drain(&self, endpoint: &str, node_id: i64) -> Result<Drained, Status> {
        let pool = self.pool(endpoint)?;
        let result = pool
            .call(DRAIN_DEADLINE, |c| async move {
                DataCoordClient::new(c)
                    .drain_node(DrainNodeRequest { node_id })
                    .await
            })
            .await;
        self.count("DrainNode", &result);
        match result {
            Ok(r) => Ok(Drained::Moved(
                u32::try_from(r.into_inner().moved_channels.len()).unwrap_or(u32::MAX),
            )),
            Err(s) if s.code() == Code::NotFound => Ok(Drained::Unknown),
            Err(s) => Err(s),
        }
    }
}
