//! The milvus-like Kubernetes operator: reconciles `MilvusCluster` objects into the
//! workloads of a cluster and keeps its channels balanced as data-node pods come
//! and go. It depends on the API crate only (no Kafka, Arrow or Parquet).

#![forbid(unsafe_code)]

pub mod build;
pub mod controller;
pub mod crd;
pub mod datacoord;
pub mod election;
pub mod metrics;
pub mod quantity;
pub mod status;
pub mod upgrade;
pub mod validate;

/// The CRD as YAML, as committed in `crds/milvusclusters.yaml`.
pub fn crd_yaml() -> Result<String, serde_yaml::Error> {
    serde_yaml::to_string(&crd::crd())
}
