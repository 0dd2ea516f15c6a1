//! The operator's Prometheus metrics (`/metrics` on its HTTP port), one
//! sub-registry with the `milvus_like_operator` prefix.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabel {
    /// `ok` or `error`.
    pub result: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabel {
    /// `kube`, `datacoord`, `etcd`, `invalid_spec`, ...
    pub kind: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CallLabel {
    pub call: String,
    /// The gRPC code, `OK` on success.
    pub code: String,
}

#[derive(Debug)]
pub struct Metrics {
    pub reconciles: Family<ResultLabel, Counter>,
    pub reconcile_seconds: Histogram,
    pub errors: Family<ErrorLabel, Counter>,
    pub datacoord_calls: Family<CallLabel, Counter>,
    /// 1 while this replica holds the leader lease.
    pub leader: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Self {
            reconciles: Family::default(),
            reconcile_seconds: Histogram::new(exponential_buckets(0.001, 2.0, 16)),
            errors: Family::default(),
            datacoord_calls: Family::default(),
            leader: Gauge::default(),
        }
    }
}

impl Metrics {
    pub fn register(&self, registry: &mut Registry) {
        let r = registry.sub_registry_with_prefix("milvus_like_operator");
        r.register(
            "reconciles",
            "Reconciles of MilvusCluster objects, by result",
            self.reconciles.clone(),
        );
        r.register(
            "reconcile_seconds",
            "Time one reconcile took",
            self.reconcile_seconds.clone(),
        );
        r.register(
            "reconcile_errors",
            "Failed reconciles, by kind of error",
            self.errors.clone(),
        );
        r.register(
            "datacoord_calls",
            "Calls to data coordinators, by call and gRPC code",
            self.datacoord_calls.clone(),
        );
        r.register(
            "leader",
            "1 while this replica holds the leader lease",
            self.leader.clone(),
        );
    }

    pub fn reconciled(&self, ok: bool, seconds: f64) {
        self.reconciles
            .get_or_create(&ResultLabel {
                result: if ok { "ok" } else { "error" }.to_owned(),
            })
            .inc();
        self.reconcile_seconds.observe(seconds);
    }

    pub fn error(&self, kind: &str) {
        self.errors
            .get_or_create(&ErrorLabel {
                kind: kind.to_owned(),
            })
            .inc();
    }

    pub fn datacoord_call(&self, call: &str, code: &str) {
        self.datacoord_calls
            .get_or_create(&CallLabel {
                call: call.to_owned(),
                code: code.to_owned(),
            })
            .inc();
    }
}
