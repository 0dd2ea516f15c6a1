//! Build: the desired children of a [`Cluster`], as plain objects. Pure (no
//! client, no clock), so every child is unit-tested on YAML fixtures; the
//! controller applies what this returns with server-side apply.
//!
//! | child | name | kind |
//! |---|---|---|
//! | node configuration (environment) | `<name>-config` | ConfigMap |
//! | root coordinator, data coordinator, proxy, query nodes | `<name>-rootcoord`, `-datacoord`, `-proxy`, `-querynode` | Deployment + Service |
//! | data nodes | `<name>-datanode` | StatefulSet + headless Service |
//! | disruption budgets (components with 2+ pods) | same names | PodDisruptionBudget |
//! | in-cluster etcd, Kafka, MinIO (`inCluster`) | `<name>-etcd`, `-kafka`, `-minio` | StatefulSet + Service (+ Kafka's ConfigMap, the bucket Job) |
//! | scraping by prometheus-operator (`monitoring`) | `<name>` | ServiceMonitor |

mod deps;
mod pods;
mod services;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{ConfigMap, Service};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use milvus_like_api::settings::env;
use sha2::{Digest, Sha256};

use crate::validate::{Cluster, Storage};

pub use deps::{DependencyChildren, dependency_labels};
pub use pods::{DATA_NODE_MOUNT, pod_name};
use services::disruption_budget;

/// The four roles (the node's own, in the order their objects are applied).
pub use milvus_like_api::settings::Role;

/// A role's field in a `MilvusCluster`'s spec and status (camelCase).
pub trait SpecName {
    fn spec_name(self) -> &'static str;
}

impl SpecName for Role {
    fn spec_name(self) -> &'static str {
        match self {
            Role::RootCoord => "rootCoord",
            Role::DataCoord => "dataCoord",
            Role::Proxy => "proxy",
            Role::DataNode => "dataNode",
            Role::QueryNode => "queryNode",
        }
    }
}

/// The services the operator can run for a cluster (`inCluster`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Dependency {
    Etcd,
    Kafka,
    Minio,
}

impl Dependency {
    pub const ALL: [Dependency; 3] = [Dependency::Etcd, Dependency::Kafka, Dependency::Minio];

    /// The children's name suffix and component label.
    pub fn suffix(self) -> &'static str {
        match self {
            Self::Etcd => "etcd",
            Self::Kafka => "kafka",
            Self::Minio => "minio",
        }
    }

    /// Its field under `spec.dependencies`.
    pub fn spec_field(self) -> &'static str {
        match self {
            Self::Etcd => "etcd",
            Self::Kafka => "kafka",
            Self::Minio => "storage",
        }
    }

    /// The port clients use.
    pub fn client_port(self) -> i32 {
        match self {
            Self::Etcd => 2379,
            Self::Kafka => 9092,
            Self::Minio => 9000,
        }
    }
}

/// The StatefulSet, Service and pod name prefix of a dependency.
pub fn dependency_name(cluster: &str, d: Dependency) -> String {
    format!("{cluster}-{}", d.suffix())
}

/// `host:port` of a dependency: of its pod `ordinal` through the headless
/// Service, or of its Service.
pub fn dependency_endpoint(
    cluster: &str,
    namespace: &str,
    d: Dependency,
    ordinal: Option<i32>,
) -> String {
    let service = dependency_name(cluster, d);
    match ordinal {
        Some(i) => format!(
            "{service}-{i}.{service}.{namespace}.svc:{}",
            d.client_port()
        ),
        None => format!("{service}.{namespace}.svc:{}", d.client_port()),
    }
}

pub const FIELD_MANAGER: &str = "milvus-like-operator";
pub const LABEL_NAME: &str = "app.kubernetes.io/name";
pub const LABEL_INSTANCE: &str = "app.kubernetes.io/instance";
pub const LABEL_COMPONENT: &str = "app.kubernetes.io/component";
pub const LABEL_MANAGED_BY: &str = "app.kubernetes.io/managed-by";
pub const LABEL_VERSION: &str = "app.kubernetes.io/version";
/// On pod templates: the hash of the node configuration, so that a change rolls the pods.
pub const CONFIG_CHECKSUM: &str = "milvuslike.io/config-checksum";

/// The name of a role's children.
pub fn child_name(cluster: &str, role: Role) -> String {
    format!("{cluster}-{}", role.subcommand())
}

pub fn config_map_name(cluster: &str) -> String {
    format!("{cluster}-config")
}

/// The labels that select a role's pods.
pub fn selector_labels(cluster: &str, role: Role) -> BTreeMap<String, String> {
    BTreeMap::from([
        (LABEL_NAME.to_owned(), "milvus-like".to_owned()),
        (LABEL_INSTANCE.to_owned(), cluster.to_owned()),
        (LABEL_COMPONENT.to_owned(), role.subcommand().to_owned()),
    ])
}

/// `app.kubernetes.io/name=milvus-like,app.kubernetes.io/instance=...,...`
pub fn selector_string(cluster: &str, role: Role) -> String {
    selector_labels(cluster, role)
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// Selector labels plus who manages the object and which version it runs.
fn labels(c: &Cluster, role: Option<Role>) -> BTreeMap<String, String> {
    let mut l = match role {
        Some(r) => selector_labels(&c.name, r),
        None => BTreeMap::from([
            (LABEL_NAME.to_owned(), "milvus-like".to_owned()),
            (LABEL_INSTANCE.to_owned(), c.name.clone()),
        ]),
    };
    l.insert(LABEL_MANAGED_BY.to_owned(), FIELD_MANAGER.to_owned());
    l.insert(LABEL_VERSION.to_owned(), label_value(&c.version));
    l
}

/// A label value: at most 63 characters of `[A-Za-z0-9._-]`.
fn label_value(s: &str) -> String {
    let v: String = s
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .take(63)
        .collect();
    v.trim_matches(|c: char| !c.is_ascii_alphanumeric())
        .to_owned()
}

fn meta(c: &Cluster, name: String, role: Option<Role>, owner: &OwnerReference) -> ObjectMeta {
    ObjectMeta {
        name: Some(name),
        namespace: Some(c.namespace.clone()),
        labels: Some(labels(c, role)),
        owner_references: Some(vec![owner.clone()]),
        ..ObjectMeta::default()
    }
}

/// The roles that run as a Deployment (the data nodes are a StatefulSet), in
/// the order of [`Children::deployments`].
pub const DEPLOYMENT_ROLES: [Role; 4] = [
    Role::RootCoord,
    Role::DataCoord,
    Role::Proxy,
    Role::QueryNode,
];

/// Every child of a cluster.
#[derive(Debug, Clone, PartialEq)]
pub struct Children {
    /// Applied first: what the components connect to.
    pub dependencies: DependencyChildren,
    pub config: ConfigMap,
    pub services: Vec<Service>,
    /// One per role of [`DEPLOYMENT_ROLES`], in that order.
    pub deployments: Vec<Deployment>,
    pub data_nodes: StatefulSet,
    pub disruption_budgets: Vec<PodDisruptionBudget>,
    /// Names of the budgets of components now under 2 pods (to delete).
    pub unwanted_budgets: Vec<String>,
    /// A ServiceMonitor (monitoring.coreos.com/v1), when `monitoring` asks for one.
    pub service_monitor: Option<kube::api::DynamicObject>,
}

/// What a reconcile applies beyond the spec: the data-node StatefulSet's size
/// while departing data nodes drain, and each role's image while an upgrade
/// rolls through the roles in order ([`crate::upgrade`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Rollout {
    pub data_node_replicas: i32,
    pub images: BTreeMap<Role, String>,
}

impl Rollout {
    /// Everything as the spec says.
    pub fn settled(c: &Cluster) -> Self {
        Self {
            data_node_replicas: c.data_node.replicas,
            images: Role::ALL
                .into_iter()
                .map(|r| (r, c.image.clone()))
                .collect(),
        }
    }

    fn image<'a>(&'a self, c: &'a Cluster, role: Role) -> &'a str {
        self.images
            .get(&role)
            .map_or(c.image.as_str(), String::as_str)
    }
}

/// `host:port` of a component's Service, as the other components reach it.
pub fn service_endpoint(cluster: &str, namespace: &str, role: Role) -> String {
    format!(
        "{}.{namespace}.svc:{}",
        child_name(cluster, role),
        role.grpc_port()
    )
}

/// The environment every component reads (its flags' variables), without secrets:
/// those come from Secret references in the pod spec. `spec.config` goes last
/// and wins.
pub fn node_config(c: &Cluster) -> BTreeMap<String, String> {
    let svc = |role: Role| service_endpoint(&c.name, &c.namespace, role);
    let mut env = BTreeMap::from([
        (env::LOG_FORMAT, "json".to_owned()),
        (env::ETCD_ENDPOINTS, c.etcd_endpoints.join(",")),
        (env::META_ROOT, c.meta_root.clone()),
        (env::KAFKA_BROKERS, c.kafka_brokers.join(",")),
        (env::TOPIC_PREFIX, c.topic_prefix.clone()),
        (env::KAFKA_REPLICATION, c.kafka_replication.to_string()),
        (env::ROOTCOORD_ENDPOINTS, svc(Role::RootCoord)),
        (env::DATACOORD_ENDPOINTS, svc(Role::DataCoord)),
        (env::CHANNELS, c.channels.to_string()),
        (env::BALANCER, c.balancer.flag().to_owned()),
        (env::FLUSH_ROWS, c.flush_rows.to_string()),
        (env::FLUSH_MIB, c.flush_mib.to_string()),
        (env::FLUSH_AGE, format!("{}s", c.flush_age_seconds)),
        (env::DATANODE_MEMORY_MIB, c.memory_mib.to_string()),
        (env::DRAIN_TIMEOUT, format!("{}s", c.drain_timeout_seconds)),
    ])
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect::<BTreeMap<_, _>>();
    if let Some(mib) = c.query_node_memory_mib {
        env.insert(env::QUERYNODE_MEMORY_MIB.into(), mib.to_string());
    }
    match &c.storage {
        Storage::S3 {
            endpoint,
            bucket,
            region,
            ..
        } => {
            env.insert("MILVUS_LIKE_S3_BUCKET".into(), bucket.clone());
            env.insert("MILVUS_LIKE_S3_ENDPOINT".into(), endpoint.clone());
            env.insert("MILVUS_LIKE_S3_REGION".into(), region.clone());
        }
        Storage::Volume { sub_path, .. } => {
            env.insert(
                env::STORAGE_ROOT.into(),
                format!("{DATA_NODE_MOUNT}/{sub_path}"),
            );
        }
    }
    if let Some(sasl) = &c.sasl {
        env.insert(
            env::KAFKA_SECURITY_PROTOCOL.into(),
            if sasl.tls {
                "SASL_SSL"
            } else {
                "SASL_PLAINTEXT"
            }
            .into(),
        );
        env.insert(
            env::KAFKA_SASL_MECHANISM.into(),
            sasl.mechanism.name().into(),
        );
    }
    env.extend(c.config.clone());
    env
}

/// The hash on pod templates: any change of the configuration rolls the pods.
pub fn checksum(config: &BTreeMap<String, String>) -> String {
    let mut h = Sha256::new();
    for (k, v) in config {
        h.update(k.as_bytes());
        h.update([0]);
        h.update(v.as_bytes());
        h.update([0]);
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// Every child of `c`, owned by `owner`, as `rollout` says for now.
pub fn build(c: &Cluster, owner: &OwnerReference, rollout: &Rollout) -> Children {
    let data = node_config(c);
    let sum = checksum(&data);
    let config = ConfigMap {
        metadata: meta(c, config_map_name(&c.name), None, owner),
        data: Some(data),
        ..ConfigMap::default()
    };
    let deployments = DEPLOYMENT_ROLES
        .into_iter()
        .map(|role| pods::deployment(c, role, owner, rollout.image(c, role), &sum))
        .collect();
    let (disruption_budgets, unwanted_budgets) = services::disruption_budgets(c, owner);
    Children {
        dependencies: deps::build(c, owner),
        config,
        services: Role::ALL
            .into_iter()
            .map(|role| services::service(c, role, owner))
            .collect(),
        deployments,
        data_nodes: pods::data_nodes(
            c,
            owner,
            rollout.image(c, Role::DataNode),
            &sum,
            rollout.data_node_replicas,
        ),
        disruption_budgets,
        unwanted_budgets,
        service_monitor: service_monitor(c, owner),
    }
}

/// prometheus-operator's ServiceMonitor kind.
pub fn service_monitor_resource() -> kube::api::ApiResource {
    kube::api::ApiResource {
        group: "monitoring.coreos.com".into(),
        version: "v1".into(),
        api_version: "monitoring.coreos.com/v1".into(),
        kind: "ServiceMonitor".into(),
        plural: "servicemonitors".into(),
    }
}

/// A ServiceMonitor over the four roles' Services (not the dependencies'):
/// port `http`, `/metrics`, each target labelled with its cluster and component
/// (the labels the chart's Grafana dashboard selects by).
fn service_monitor(c: &Cluster, owner: &OwnerReference) -> Option<kube::api::DynamicObject> {
    let m = c.monitoring.as_ref()?;
    let mut metadata = meta(c, c.name.clone(), None, owner);
    if let Some(labels) = metadata.labels.as_mut() {
        labels.extend(m.labels.clone());
    }
    let object = serde_json::json!({
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "ServiceMonitor",
        "metadata": metadata,
        "spec": {
            "selector": {
                "matchLabels": {
                    LABEL_NAME: "milvus-like",
                    LABEL_INSTANCE: c.name,
                    LABEL_MANAGED_BY: FIELD_MANAGER,
                },
                "matchExpressions": [{
                    "key": LABEL_COMPONENT,
                    "operator": "In",
                    "values": Role::ALL.map(Role::subcommand),
                }],
            },
            "namespaceSelector": {"matchNames": [c.namespace]},
            "endpoints": [{"port": "http", "path": "/metrics", "interval": m.interval}],
            "targetLabels": [LABEL_INSTANCE, LABEL_COMPONENT],
        },
    });
    serde_json::from_value(object).ok()
}

/// A role's settings.
fn component(c: &Cluster, role: Role) -> &crate::validate::Component {
    match role {
        Role::RootCoord => &c.root_coord,
        Role::DataCoord => &c.data_coord,
        Role::Proxy => &c.proxy,
        Role::DataNode => &c.data_node,
        Role::QueryNode => &c.query_node,
    }
}
