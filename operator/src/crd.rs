//! The `MilvusCluster` custom resource (`milvuslike.io/v1alpha1`): what a user
//! asks for (spec) and what the operator reports (status). Every field's `///`
//! comment becomes its description in the CRD, which `kubectl explain` shows.
//! Optional fields get their defaults in [`crate::validate::Cluster`], not in the
//! schema, so that an upgrade of the operator can change a default.

// `printcolumn(type_ = "string", ...)` repeats on purpose, one per column.
#![allow(clippy::duplicated_attributes)]

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Affinity, EnvVar, ResourceRequirements, Toleration};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use milvus_like_api::settings::{balancer, limits};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A milvus-like cluster: root coordinator, data coordinator, proxy and data nodes,
/// on etcd, Kafka and object storage that already exist or that the operator runs.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[kube(
    group = "milvuslike.io",
    version = "v1alpha1",
    kind = "MilvusCluster",
    namespaced,
    shortname = "mvc",
    category = "milvus-like",
    status = "MilvusClusterStatus",
    derive = "PartialEq",
    derive = "Default",
    doc = "A milvus-like vector database cluster: coordinators, proxies and data nodes on etcd, Kafka and object storage, existing or run by the operator.",
    scale(
        spec_replicas_path = ".spec.dataNode.replicas",
        status_replicas_path = ".status.dataNodes",
        label_selector_path = ".status.dataNodeSelector"
    ),
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(
        name = "Version",
        type_ = "string",
        description = "The version every pod runs",
        json_path = ".status.version"
    ),
    printcolumn(
        name = "Ready",
        type_ = "string",
        description = "Components with all their replicas ready, of all components",
        json_path = ".status.readyComponents"
    ),
    printcolumn(
        name = "Data nodes",
        type_ = "integer",
        description = "Data-node pods ready",
        json_path = ".status.dataNodes"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct MilvusClusterSpec {
    /// Container image every component runs (one binary, one subcommand per role),
    /// e.g. `registry.example.com/milvus-like/node:0.1.0`. Default:
    /// `milvus-like/node:<version>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// Pull policy of that image: Always, IfNotPresent or Never. Default: IfNotPresent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_pull_policy: Option<PullPolicy>,
    /// milvus-like version, the image tag when `image` is not set. Default: the
    /// operator's own version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// Root coordinator (TSO, ids, collection metadata). Runs active/standby:
    /// 2 replicas (the default) keep a standby ready to take over.
    #[serde(default)]
    pub root_coord: ComponentSpec,
    /// Data coordinator (segments, flushes, channel ownership). Active/standby,
    /// 2 replicas by default.
    #[serde(default)]
    pub data_coord: ComponentSpec,
    /// Proxy: the client API on port 19531. 1 replica by default.
    #[serde(default)]
    pub proxy: ComponentSpec,
    /// Data nodes: consume the logs and write segments. 2 replicas by default;
    /// `kubectl scale mvc NAME --replicas=N` and an HPA change `replicas`.
    #[serde(default)]
    pub data_node: DataNodeSpec,
    /// Query nodes: serve searches and queries of loaded collections. 1 replica
    /// by default; the data coordinator spreads the channels over them and moves
    /// them make-before-break when pods come and go.
    #[serde(default)]
    pub query_node: QueryNodeSpec,
    /// The services the cluster stores its state in. Required.
    pub dependencies: Dependencies,
    /// Channels: partitions of the insert and delete topics, each consumed by one
    /// data node. Fixed when the cluster is created. Default 3.
    // A schema default (not a reconciler one) so that the apiserver stores it at
    // creation and the immutability rule always has an old value to compare.
    #[serde(default = "default_channels")]
    #[schemars(range(min = 1, max = limits::MAX_CHANNELS))]
    #[x_kube(validation = Rule::new("self == oldSelf").message("channels is fixed when the cluster is created"))]
    pub channels: i32,
    /// How the data coordinator spreads channels over data nodes: roundRobin
    /// (dealt in turn; the default), leastLoad (each channel to the node with the
    /// least buffered data and lag) or consistentHash (a hash ring: a node joining
    /// or leaving moves only its share).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub balancer: Option<Balancer>,
    /// What happens to the cluster's data when this object is deleted: Retain
    /// (the default: the metadata in etcd and the volumes of in-cluster
    /// dependencies stay, so a cluster created again with the same name finds its
    /// collections and segments) or Delete (the operator removes the cluster's
    /// keys from an external etcd before the object goes, and the in-cluster
    /// dependencies' volumes are deleted with their StatefulSets).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deletion_policy: Option<DeletionPolicy>,
    /// Extra environment variables for every component, e.g.
    /// `MILVUS_LIKE_SESSION_TTL: 20s` (each flag of `milvus-like <role> --help`
    /// has one). They override what the operator derives from the fields above.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub config: BTreeMap<String, String>,
    /// gRPC address (`host:port`) at which the operator reaches the data
    /// coordinator to rebalance and drain data nodes. Default: the cluster's own
    /// data-coordinator Service. Set it when the operator runs outside the cluster.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_coord_endpoint: Option<String>,
    /// Prometheus scraping of the cluster's components through prometheus-operator.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub monitoring: Option<MonitoringSpec>,
}

/// Scraping by a Prometheus that prometheus-operator runs.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MonitoringSpec {
    /// Create a ServiceMonitor `<name>` (monitoring.coreos.com/v1) that selects
    /// the Services of the root coordinator, data coordinator, proxy and data
    /// nodes: port `http`, path `/metrics`. Needs prometheus-operator's CRDs.
    #[serde(default)]
    pub service_monitor: bool,
    /// Scrape interval, e.g. `15s`. Default 30s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<String>,
    /// Extra labels of the ServiceMonitor, e.g. the `release` label a Prometheus
    /// selects ServiceMonitors by.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
}

pub const DEFAULT_CHANNELS: i32 = milvus_like_api::settings::defaults::CHANNELS as i32;

fn default_channels() -> i32 {
    DEFAULT_CHANNELS
}

/// The CRD as installed: `MilvusCluster::crd()` with `null` taken out of the
/// enums of optional fields (schemars lists it; `nullable: true` already says
/// it, and the apiserver would print it among the supported values).
pub fn crd()
-> k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition {
    use kube::CustomResourceExt as _;
    let mut crd = MilvusCluster::crd();
    for version in &mut crd.spec.versions {
        if let Some(schema) = version
            .schema
            .as_mut()
            .and_then(|s| s.open_api_v3_schema.as_mut())
        {
            drop_null_enum_values(schema);
        }
    }
    crd
}

fn drop_null_enum_values(
    schema: &mut k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::JSONSchemaProps,
) {
    if let Some(values) = schema.enum_.as_mut() {
        values.retain(|v| !v.0.is_null());
    }
    for child in schema.properties.iter_mut().flat_map(|p| p.values_mut()) {
        drop_null_enum_values(child);
    }
    if let Some(k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::JSONSchemaPropsOrArray::Schema(items)) = schema.items.as_mut() {
        drop_null_enum_values(items);
    }
    if let Some(k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::JSONSchemaPropsOrBool::Schema(extra)) = schema.additional_properties.as_mut() {
        drop_null_enum_values(extra);
    }
}

/// Settings of one component's pods.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ComponentSpec {
    /// Number of pods. 0 stops the component.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 1000))]
    pub replicas: Option<i32>,
    /// CPU and memory requests and limits of the container. A resource named
    /// in neither gets a small request, so that no pod is BestEffort (starved
    /// of CPU under load): cpu 20m and memory 64Mi for the coordinators, 50m
    /// and 128Mi for the proxy, 50m and 256Mi for data and query nodes. Size
    /// production clusters here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    /// Extra environment variables of the container (after the operator's own).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<EnvVar>,
    /// Node labels the pods must match.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub node_selector: BTreeMap<String, String>,
    /// Pod affinity and anti-affinity rules.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub affinity: Option<Affinity>,
    /// Taints the pods tolerate.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tolerations: Vec<Toleration>,
}

/// Data nodes: the component settings plus their buffering and flushing.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DataNodeSpec {
    #[serde(flatten)]
    pub component: ComponentSpec,
    /// Memory for buffers and flushes per data node, MiB; consumption pauses
    /// above it. The container needs about 1.25x this plus 64 MiB: with
    /// `resources.limits.memory` set, that must fit in the limit. Default 1024,
    /// or what fits the memory limit when it is lower.
    #[serde(default, rename = "memoryMiB", skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = limits::MIN_DATANODE_MEMORY_MIB, max = limits::MAX_DATANODE_MEMORY_MIB))]
    pub memory_mib: Option<i64>,
    /// When a segment buffer is flushed to object storage.
    #[serde(default)]
    pub flush: FlushSpec,
    /// Seconds a stopping data node waits for its channels to be flushed and
    /// moved before it exits (also its pods' termination grace period, plus 30).
    /// Default 60.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 3600))]
    pub drain_timeout_seconds: Option<i32>,
}

/// Query nodes: the component settings plus their memory for loaded collections.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct QueryNodeSpec {
    #[serde(flatten)]
    pub component: ComponentSpec,
    /// Memory for loaded collections per query node, MiB: a load that would
    /// need more is refused. Default: three quarters of the container's memory
    /// limit (or of the node's memory without one).
    #[serde(default, rename = "memoryMiB", skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub memory_mib: Option<i64>,
}

/// Flush triggers of a segment buffer; the first one reached flushes it.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FlushSpec {
    /// Rows buffered. Default 100000.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub max_rows: Option<i64>,
    /// MiB buffered. Default 256.
    #[serde(default, rename = "maxMiB", skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub max_mib: Option<i64>,
    /// Seconds since the buffer's first row. Default 30.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub max_age_seconds: Option<i64>,
}

/// The services a cluster stores its state in: each one either external
/// (endpoints, brokers, a bucket or a volume) or run by the operator in the
/// cluster's namespace (`inCluster`).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct Dependencies {
    /// Metadata store.
    #[x_kube(validation = Rule::new("has(self.inCluster) != (has(self.endpoints) && size(self.endpoints) > 0)").message("spec.dependencies.etcd: set either endpoints or inCluster"))]
    pub etcd: EtcdSpec,
    /// The insert, delete and dead-letter logs.
    #[x_kube(validation = Rule::new("has(self.inCluster) != (has(self.brokers) && size(self.brokers) > 0)").message("spec.dependencies.kafka: set either brokers or inCluster"))]
    pub kafka: KafkaSpec,
    /// Where data nodes write segment files.
    pub storage: StorageSpec,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EtcdSpec {
    /// Client URLs of an etcd that already runs, e.g. `http://etcd-0.etcd:2379`.
    /// Leave empty with `inCluster`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub endpoints: Vec<String>,
    /// Key prefix of this cluster, so that clusters can share one etcd. Default:
    /// `milvus-like/<namespace>/<name>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub root_path: Option<String>,
    /// Run etcd for this cluster: a StatefulSet `<name>-etcd` with a volume per
    /// member, owned by this object.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub in_cluster: Option<InClusterEtcd>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct KafkaSpec {
    /// Bootstrap servers of a Kafka that already runs, e.g. `kafka-0.kafka:9092`.
    /// Leave empty with `inCluster`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub brokers: Vec<String>,
    /// Topic names start with this: `<prefix>-insert-log`, `<prefix>-delete-log`,
    /// `<prefix>-dead-letter`. Default: `<namespace>-<name>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topic_prefix: Option<String>,
    /// Replication factor of the topics the cluster creates. Default 1, or with
    /// `inCluster` the number of brokers up to 3.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 16))]
    pub replication_factor: Option<i32>,
    /// SASL credentials, from a Secret in the cluster's namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials: Option<KafkaCredentials>,
    /// Run Kafka for this cluster (KRaft: every broker is also a controller): a
    /// StatefulSet `<name>-kafka` with a volume per broker, owned by this object.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub in_cluster: Option<InClusterKafka>,
}

/// etcd run by the operator.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct InClusterEtcd {
    /// Members: 1, 3 or 5 (an odd number keeps a quorum). Fixed once created. Default 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 5))]
    pub replicas: Option<i32>,
    #[serde(flatten)]
    pub pod: InClusterPod,
}

/// Kafka run by the operator.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct InClusterKafka {
    /// Brokers (each also a KRaft controller). Fixed once created. Default 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 9))]
    pub replicas: Option<i32>,
    #[serde(flatten)]
    pub pod: InClusterPod,
}

/// MinIO run by the operator: one server, one volume, and a bucket.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct InClusterStorage {
    /// Bucket the data nodes write to (created by a Job). Default `milvus-like`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 3, max = 63))]
    pub bucket: Option<String>,
    #[serde(flatten)]
    pub pod: InClusterPod,
}

/// The pods of a dependency the operator runs.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct InClusterPod {
    /// Container image. Defaults: `quay.io/coreos/etcd:v3.7.0`,
    /// `apache/kafka:3.9.1`, `quay.io/minio/minio:RELEASE.2025-09-07T16-13-09Z`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// CPU and memory requests and limits of the container (defaults fit a
    /// small cluster; Kafka's Java heap is half its memory limit).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    /// The volume of each pod.
    #[serde(default)]
    pub volume: VolumeClaim,
}

/// A PersistentVolumeClaim per pod.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VolumeClaim {
    /// Size, e.g. `10Gi`. Defaults: etcd 1Gi, Kafka 10Gi, MinIO 20Gi.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<Quantity>,
    /// StorageClass. Default: the cluster's default StorageClass.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_class_name: Option<String>,
}

/// SASL over plaintext or TLS, with the user name and password in a Secret.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct KafkaCredentials {
    /// Name of the Secret.
    pub secret_name: String,
    /// Key of the user name in the Secret. Default `username`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username_key: Option<String>,
    /// Key of the password in the Secret. Default `password`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_key: Option<String>,
    /// SASL mechanism: PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512. Default PLAIN.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mechanism: Option<SaslMechanism>,
    /// Use TLS to the brokers (`SASL_SSL`). Default false (`SASL_PLAINTEXT`).
    #[serde(default)]
    pub tls: bool,
}

/// Exactly one of `s3`, `volume` and `inCluster`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StorageSpec {
    /// An S3-compatible bucket (AWS S3, MinIO, ...). The bucket must exist.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub s3: Option<S3Spec>,
    /// A PersistentVolumeClaim mounted by every data node and query node
    /// (ReadWriteMany when there is more than one pod): segment files go to a directory on it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume: Option<VolumeStorage>,
    /// Run MinIO for this cluster: a StatefulSet `<name>-minio` with one volume,
    /// credentials generated into the Secret `<name>-minio`, and a Job that
    /// creates the bucket.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub in_cluster: Option<InClusterStorage>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct S3Spec {
    /// Endpoint URL, e.g. `http://minio.storage:9000`; empty for AWS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// Bucket name.
    #[schemars(length(min = 3, max = 63))]
    pub bucket: String,
    /// Region. Default `us-east-1`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// Secret holding the access key and the secret key.
    pub secret_name: String,
    /// Key of the access key id in the Secret. Default `accessKey`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_key_key: Option<String>,
    /// Key of the secret access key in the Secret. Default `secretKey`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_key_key: Option<String>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VolumeStorage {
    /// Name of the PersistentVolumeClaim, in the cluster's namespace.
    pub claim_name: String,
    /// Directory inside the volume. Default `segments`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sub_path: Option<String>,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum PullPolicy {
    Always,
    IfNotPresent,
    Never,
}

// No doc comments on the enums: they would replace the fields' descriptions.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum Balancer {
    RoundRobin,
    LeastLoad,
    ConsistentHash,
}

impl Balancer {
    /// The data coordinator's `--balancer` name.
    pub fn flag(self) -> &'static str {
        match self {
            Self::RoundRobin => balancer::ROUND_ROBIN,
            Self::LeastLoad => balancer::LEAST_LOAD,
            Self::ConsistentHash => balancer::CONSISTENT_HASH,
        }
    }
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum DeletionPolicy {
    Retain,
    Delete,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum SaslMechanism {
    #[serde(rename = "PLAIN")]
    Plain,
    #[serde(rename = "SCRAM-SHA-256")]
    ScramSha256,
    #[serde(rename = "SCRAM-SHA-512")]
    ScramSha512,
}

impl SaslMechanism {
    pub fn name(self) -> &'static str {
        match self {
            Self::Plain => "PLAIN",
            Self::ScramSha256 => "SCRAM-SHA-256",
            Self::ScramSha512 => "SCRAM-SHA-512",
        }
    }
}

/// What the operator last saw and did.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MilvusClusterStatus {
    /// Pending (children being created), Ready, Progressing (rolling out or
    /// scaling), Degraded (a component short of ready pods) or Invalid (the spec
    /// cannot be built: see the Ready condition's message).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<Phase>,
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Ready, Progressing and Degraded, each with a reason and a message.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// Pods per component.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub components: Vec<ComponentStatus>,
    /// `ready/total` components, e.g. `4/4`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready_components: Option<String>,
    /// Data-node pods ready (the scale subresource's replicas).
    #[serde(default)]
    pub data_nodes: i32,
    /// Label selector of the data-node pods (for the scale subresource and HPAs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_node_selector: Option<String>,
    /// Which data node owns each channel, as the data coordinator reports it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub channels: Vec<ChannelOwner>,
    /// Which query node serves each channel, and the loaded collections it
    /// serves there, as the data coordinator reports it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub query_channels: Vec<QueryChannelOwner>,
    /// The last rebalance or drain the operator asked the data coordinator for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_rebalance: Option<RebalanceRecord>,
    /// The image every pod of the cluster runs, written once they all do: an
    /// upgrade is done when this is the image the spec asks for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// The version of that image (`spec.version` when it was applied).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum Phase {
    Pending,
    Progressing,
    Ready,
    Degraded,
    Invalid,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ComponentStatus {
    /// rootCoord, dataCoord, proxy, dataNode, or an in-cluster dependency
    /// (etcd, kafka, minio).
    pub name: String,
    /// Pods asked for.
    pub replicas: i32,
    /// Pods ready.
    pub ready_replicas: i32,
    /// Pods running the current pod template.
    pub updated_replicas: i32,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ChannelOwner {
    /// Channel number: partition of the insert and delete topics.
    pub channel: i32,
    /// Data node id (its session in etcd).
    pub node_id: i64,
    /// The data node's pod, when it is one of this cluster's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod: Option<String>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct QueryChannelOwner {
    /// Channel number.
    pub channel: i32,
    /// Query node id (its session in etcd).
    pub node_id: i64,
    /// The query node's pod, when it is one of this cluster's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod: Option<String>,
    /// Ids of the loaded collections it serves on the channel.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub collections: Vec<i64>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RebalanceRecord {
    /// RFC 3339 time of the call.
    pub time: String,
    /// Rebalance or DrainNode.
    pub call: String,
    /// Why: the ready data-node pods changed, a scale-down, ...
    pub reason: String,
    /// The data-node pods the channels were balanced over: those that stay
    /// (not departing nor terminating) and that the data coordinator knew.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pods: Vec<String>,
    /// Channels that changed owner.
    #[serde(default)]
    pub moved_channels: i32,
    /// Why the call failed, when it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}
