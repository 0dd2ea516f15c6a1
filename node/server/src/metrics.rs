//! Prometheus metrics, one sub-registry per component, served at `/metrics`.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RpcLabels {
    pub method: &'static str,
    pub code: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RoleLabels {
    pub role: &'static str,
}

/// One data node, in the data coordinator's view of the load.
#[derive(Debug, Clone, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelSet)]
pub struct NodeLabels {
    pub node_id: i64,
}

pub use milvus_like_api::process::code_name;

/// Counts one RPC under its method and the code it ended with.
pub fn count_rpc(
    rpcs: &Family<RpcLabels, Counter>,
    method: &'static str,
    result: &Result<impl Sized, tonic::Status>,
) {
    let code = match result {
        Ok(_) => "OK",
        Err(s) => code_name(s.code()),
    };
    rpcs.get_or_create(&RpcLabels { method, code }).inc();
}

/// What the root coordinator counts.
#[derive(Debug, Default)]
pub struct RootCoordMetrics {
    pub tso_timestamps: Counter,
    pub tso_logical_overflows: Counter,
    pub tso_window_persists: Counter,
    pub tso_window_persist_errors: Counter,
    pub ids_allocated: Counter,
    pub is_leader: Gauge,
    pub leader_elections: Counter,
    pub rpcs: Family<RpcLabels, Counter>,
    pub nodes: Family<RoleLabels, Gauge>,
    pub unhealthy_nodes: Gauge,
}

impl RootCoordMetrics {
    pub fn register(&self, registry: &mut Registry) {
        let r = registry.sub_registry_with_prefix("rootcoord");
        r.register(
            "tso_timestamps",
            "Timestamps issued",
            self.tso_timestamps.clone(),
        );
        r.register(
            "tso_logical_overflows",
            "Times the logical counter ran out within a millisecond",
            self.tso_logical_overflows.clone(),
        );
        r.register(
            "tso_window_persists",
            "TSO window extensions written to the metadata store",
            self.tso_window_persists.clone(),
        );
        r.register(
            "tso_window_persist_errors",
            "TSO window extensions that failed",
            self.tso_window_persist_errors.clone(),
        );
        r.register(
            "ids_allocated",
            "Global ids handed out",
            self.ids_allocated.clone(),
        );
        r.register(
            "is_leader",
            "1 when this process is the active root coordinator",
            self.is_leader.clone(),
        );
        r.register(
            "leader_elections",
            "Terms this process won",
            self.leader_elections.clone(),
        );
        r.register(
            "rpcs",
            "gRPC calls by method and status code",
            self.rpcs.clone(),
        );
        r.register("nodes", "Registered processes by role", self.nodes.clone());
        r.register(
            "unhealthy_nodes",
            "Registered processes flagged unhealthy",
            self.unhealthy_nodes.clone(),
        );
    }
}

/// Encodes a registry in the Prometheus text format.
pub fn encode(registry: &Registry) -> String {
    let mut out = String::new();
    if let Err(e) = prometheus_client::encoding::text::encode(&mut out, registry) {
        tracing::error!(error = %e, "could not encode metrics");
    }
    out
}
