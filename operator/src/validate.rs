//! Validation and defaults: a `MilvusCluster` becomes a [`Cluster`], every
//! optional field resolved, or a list of everything wrong with it. Pure: the
//! apiserver's schema has refused what it can check already (types, ranges,
//! enums); this checks what it cannot.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Affinity, EnvVar, ResourceRequirements, Toleration};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kube::ResourceExt;
use milvus_like_api::settings::{defaults, limits};

use crate::build::{Dependency, Role, SpecName, dependency_endpoint, dependency_name};
use crate::crd::{
    Balancer, ComponentSpec, DeletionPolicy, InClusterPod, KafkaCredentials, MilvusCluster,
    PullPolicy, SaslMechanism,
};
use crate::quantity;

/// Longest `MilvusCluster` name: children are `<name>-datacoord` and the like, and
/// data-node pods `<name>-datanode-<n>`, whose `controller-revision-hash` label
/// (`<name>-datanode-<10 characters>`) must fit in 63 characters.
pub const MAX_NAME_LEN: usize = 40;

/// The version this operator deploys when the spec names none.
pub const OPERATOR_VERSION: &str = env!("CARGO_PKG_VERSION");

/// Images of the in-cluster dependencies, the upstream projects' own.
pub const ETCD_IMAGE: &str = "quay.io/coreos/etcd:v3.7.0";
pub const KAFKA_IMAGE: &str = "apache/kafka:3.9.1";
pub const MINIO_IMAGE: &str = "quay.io/minio/minio:RELEASE.2025-09-07T16-13-09Z";
/// The bucket of an in-cluster MinIO when the spec names none.
pub const DEFAULT_BUCKET: &str = "milvus-like";
/// The data node's memory budget when neither the spec nor a limit says.
pub const DEFAULT_MEMORY_MIB: i64 = defaults::DATANODE_MEMORY_MIB as i64;
/// What a data node needs besides its budget: `budget * 5/4 + 64 MiB`.
pub fn data_node_memory_need_mib(memory_mib: i64) -> i64 {
    memory_mib.saturating_mul(5) / 4 + 64
}

/// One component's pod settings, defaults applied.
#[derive(Debug, Clone, PartialEq)]
pub struct Component {
    pub replicas: i32,
    pub resources: Option<ResourceRequirements>,
    pub env: Vec<EnvVar>,
    pub node_selector: BTreeMap<String, String>,
    pub affinity: Option<Affinity>,
    pub tolerations: Vec<Toleration>,
}

/// Where segment files go.
#[derive(Debug, Clone, PartialEq)]
pub enum Storage {
    S3 {
        endpoint: String,
        bucket: String,
        region: String,
        secret_name: String,
        access_key_key: String,
        secret_key_key: String,
    },
    Volume {
        claim_name: String,
        sub_path: String,
    },
}

/// The pods of a dependency the operator runs, defaults applied.
#[derive(Debug, Clone, PartialEq)]
pub struct DependencyPods {
    pub replicas: i32,
    pub image: String,
    pub resources: ResourceRequirements,
    pub volume_size: Quantity,
    pub storage_class: Option<String>,
}

/// The dependencies the operator runs for this cluster (`inCluster`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct InCluster {
    pub etcd: Option<DependencyPods>,
    pub kafka: Option<DependencyPods>,
    /// MinIO; its bucket and Secret are those of [`Storage::S3`].
    pub minio: Option<DependencyPods>,
}

impl InCluster {
    pub fn get(&self, d: Dependency) -> Option<&DependencyPods> {
        match d {
            Dependency::Etcd => self.etcd.as_ref(),
            Dependency::Kafka => self.kafka.as_ref(),
            Dependency::Minio => self.minio.as_ref(),
        }
    }
}

/// A ServiceMonitor for the components.
#[derive(Debug, Clone, PartialEq)]
pub struct Monitoring {
    pub interval: String,
    pub labels: BTreeMap<String, String>,
}

/// Kafka SASL settings, defaults applied.
#[derive(Debug, Clone, PartialEq)]
pub struct Sasl {
    pub secret_name: String,
    pub username_key: String,
    pub password_key: String,
    pub mechanism: SaslMechanism,
    pub tls: bool,
}

/// A `MilvusCluster` with every default applied: what the builders read.
#[derive(Debug, Clone, PartialEq)]
pub struct Cluster {
    pub name: String,
    pub namespace: String,
    /// The KRaft cluster id of an in-cluster Kafka: the object's uid, base64url.
    pub kafka_cluster_id: String,
    pub image: String,
    pub image_pull_policy: PullPolicy,
    pub version: String,
    pub root_coord: Component,
    pub data_coord: Component,
    pub proxy: Component,
    pub data_node: Component,
    pub query_node: Component,
    /// The query nodes' memory for loaded collections (`None`: their own default).
    pub query_node_memory_mib: Option<i64>,
    pub memory_mib: i64,
    pub flush_rows: i64,
    pub flush_mib: i64,
    pub flush_age_seconds: i64,
    pub drain_timeout_seconds: i32,
    pub etcd_endpoints: Vec<String>,
    pub meta_root: String,
    pub kafka_brokers: Vec<String>,
    pub topic_prefix: String,
    pub kafka_replication: i32,
    pub sasl: Option<Sasl>,
    pub storage: Storage,
    pub channels: i32,
    pub balancer: Balancer,
    pub deletion_policy: DeletionPolicy,
    pub config: BTreeMap<String, String>,
    pub data_coord_endpoint: String,
    pub in_cluster: InCluster,
    pub monitoring: Option<Monitoring>,
}

impl Cluster {
    /// Whether deleting the object must delete keys in an etcd the operator
    /// does not run (an in-cluster etcd's volume goes with its StatefulSet).
    pub fn deletes_external_metadata(&self) -> bool {
        self.deletion_policy == DeletionPolicy::Delete && self.in_cluster.etcd.is_none()
    }
}

/// Everything wrong with a spec, one sentence each.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", .0.join("; "))]
pub struct InvalidSpec(pub Vec<String>);

fn component(spec: &ComponentSpec, default_replicas: i32, role: Role) -> Component {
    Component {
        replicas: spec.replicas.unwrap_or(default_replicas),
        resources: Some(with_default_requests(spec.resources.as_ref(), role)),
        env: spec.env.clone(),
        node_selector: spec.node_selector.clone(),
        affinity: spec.affinity.clone(),
        tolerations: spec.tolerations.clone(),
    }
}

fn is_env_name(key: &str) -> bool {
    let mut chars = key.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// `host:port` with a numeric port and no separators or spaces.
fn is_host_port(s: &str) -> bool {
    match s.rsplit_once(':') {
        Some((host, port)) => {
            !host.is_empty()
                && !host.contains([',', ' ', '/'])
                && port.parse::<u16>().is_ok_and(|p| p > 0)
        }
        None => false,
    }
}

fn quantity(
    resources: Option<&ResourceRequirements>,
    which: &str,
    resource: &str,
) -> Option<Result<f64, String>> {
    let list = match which {
        "limits" => resources?.limits.as_ref()?,
        _ => resources?.requests.as_ref()?,
    };
    let q = list.get(resource)?;
    Some(quantity::parse(&q.0).ok_or_else(|| q.0.clone()))
}

/// Quantities the apiserver would refuse, and limits below requests.
fn check_resources(
    field: &str,
    resources: Option<&ResourceRequirements>,
    errors: &mut Vec<String>,
) {
    for resource in ["cpu", "memory"] {
        let mut values = [None, None];
        for (i, which) in ["requests", "limits"].into_iter().enumerate() {
            match quantity(resources, which, resource) {
                Some(Ok(v)) => values[i] = Some(v),
                Some(Err(q)) => errors.push(format!(
                    "{field}.resources.{which}.{resource} {q:?} is not a quantity (like 500m, 512Mi or 2Gi)"
                )),
                None => {}
            }
        }
        if let [Some(request), Some(limit)] = values
            && limit < request
        {
            let show = |which: &str| {
                resources
                    .and_then(|r| match which {
                        "limits" => r.limits.as_ref(),
                        _ => r.requests.as_ref(),
                    })
                    .and_then(|l| l.get(resource))
                    .map(|q| q.0.clone())
                    .unwrap_or_default()
            };
            errors.push(format!(
                "{field}.resources.limits.{resource} {} is below requests.{resource} {}: the apiserver refuses such a pod",
                show("limits"),
                show("requests")
            ));
        }
    }
}

/// The KRaft cluster id: 16 bytes, base64url without padding, from the uid.
fn kafka_cluster_id(uid: Option<&str>, namespace: &str, name: &str) -> String {
    use sha2::{Digest, Sha256};
    let hex: String = uid
        .unwrap_or_default()
        .chars()
        .filter(char::is_ascii_hexdigit)
        .collect();
    let mut bytes: Vec<u8> = (0..hex.len() / 2)
        .filter_map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).ok())
        .collect();
    if bytes.len() != 16 {
        bytes = Sha256::digest(format!("{namespace}/{name}").as_bytes())[..16].to_vec();
    }
    // An id starting with '-' (first six bits 62) reads as an option to
    // kafka-storage.sh, which then refuses to format; Kafka's own random ids
    // never start with it either. Clearing the top bit makes it 'e'.
    if bytes[0] >> 2 == 62 {
        bytes[0] &= 0x7f;
    }
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |acc, (i, b)| acc | u32::from(*b) << (16 - 8 * i));
        for i in 0..=chunk.len() {
            out.push(char::from(ALPHABET[(n >> (18 - 6 * i) & 63) as usize]));
        }
    }
    out
}

/// The CPU and memory a component's pod requests when its spec names neither a
/// request nor a limit of that resource: a floor that keeps the pod out of
/// BestEffort, small enough that the quick start with four data nodes, a
/// rollout's extra pod and the control plane fit on a 2-core kind node. Not a
/// sizing: production specs set their own.
pub fn default_requests(role: Role) -> (&'static str, &'static str) {
    match role {
        Role::RootCoord | Role::DataCoord => ("20m", "64Mi"),
        Role::Proxy => ("50m", "128Mi"),
        Role::DataNode | Role::QueryNode => ("50m", "256Mi"),
    }
}

/// `given` with a request for each of CPU and memory it leaves open: a pod
/// without requests is BestEffort, and under load (a data node building
/// indexes) the BestEffort pods together get almost no CPU, so their probes
/// time out and the kubelet restarts them. A resource with only a limit keeps
/// it: Kubernetes requests the limit then.
fn with_default_requests(given: Option<&ResourceRequirements>, role: Role) -> ResourceRequirements {
    let mut out = given.cloned().unwrap_or_default();
    let (cpu, memory) = default_requests(role);
    for (resource, default) in [("cpu", cpu), ("memory", memory)] {
        let named = |list: &Option<BTreeMap<String, Quantity>>| {
            list.as_ref().is_some_and(|l| l.contains_key(resource))
        };
        if !named(&out.requests) && !named(&out.limits) {
            out.requests
                .get_or_insert_with(BTreeMap::new)
                .insert(resource.to_owned(), Quantity(default.to_owned()));
        }
    }
    out
}

/// Default requests and limits of an in-cluster dependency.
fn dependency_resources(d: Dependency) -> ResourceRequirements {
    let (cpu, request, limit) = match d {
        Dependency::Etcd => ("100m", "128Mi", "512Mi"),
        Dependency::Kafka => ("200m", "1Gi", "1Gi"),
        Dependency::Minio => ("100m", "256Mi", "1Gi"),
    };
    let q = |s: &str| Quantity(s.to_owned());
    ResourceRequirements {
        requests: Some(BTreeMap::from([
            ("cpu".to_owned(), q(cpu)),
            ("memory".to_owned(), q(request)),
        ])),
        limits: Some(BTreeMap::from([("memory".to_owned(), q(limit))])),
        ..ResourceRequirements::default()
    }
}

fn dependency_pods(
    d: Dependency,
    replicas: Option<i32>,
    pod: &InClusterPod,
    errors: &mut Vec<String>,
) -> DependencyPods {
    let (image, size) = match d {
        Dependency::Etcd => (ETCD_IMAGE, "1Gi"),
        Dependency::Kafka => (KAFKA_IMAGE, "10Gi"),
        Dependency::Minio => (MINIO_IMAGE, "20Gi"),
    };
    let field = format!("spec.dependencies.{}.inCluster", d.spec_field());
    let replicas = replicas.unwrap_or(1);
    if d == Dependency::Etcd && replicas % 2 == 0 {
        errors.push(format!(
            "{field}.replicas is {replicas}: etcd needs an odd number of members (1, 3 or 5)"
        ));
    }
    check_resources(&field, pod.resources.as_ref(), errors);
    let volume_size = pod
        .volume
        .size
        .clone()
        .unwrap_or_else(|| Quantity(size.to_owned()));
    if quantity::parse(&volume_size.0).is_none_or(|v| v <= 0.0) {
        errors.push(format!(
            "{field}.volume.size {:?} is not a size (like 10Gi)",
            volume_size.0
        ));
    }
    let image = pod.image.clone().unwrap_or_else(|| image.to_owned());
    if image.trim().is_empty() || image.contains(char::is_whitespace) {
        errors.push(format!("{field}.image {image:?} is not an image reference"));
    }
    DependencyPods {
        replicas,
        image,
        resources: pod
            .resources
            .clone()
            .unwrap_or_else(|| dependency_resources(d)),
        volume_size,
        storage_class: pod.volume.storage_class_name.clone(),
    }
}

/// The etcd key prefix of a cluster's metadata: `spec.dependencies.etcd.rootPath`,
/// else `milvus-like/<namespace>/<name>`. What `deletionPolicy: Delete` removes.
pub fn meta_root(etcd: &crate::crd::EtcdSpec, namespace: &str, name: &str) -> String {
    etcd.root_path
        .clone()
        .unwrap_or_else(|| format!("milvus-like/{namespace}/{name}"))
}

/// Checks `mc` and applies the defaults.
pub fn validate(mc: &MilvusCluster) -> Result<Cluster, InvalidSpec> {
    let spec = &mc.spec;
    let name = mc.name_any();
    let namespace = mc.namespace().unwrap_or_else(|| "default".into());
    let mut errors = Vec::new();

    if name.len() > MAX_NAME_LEN {
        errors.push(format!(
            "metadata.name {name:?} is {} characters long; at most {MAX_NAME_LEN} fit the names of the cluster's pods",
            name.len()
        ));
    }

    let version = spec
        .version
        .clone()
        .unwrap_or_else(|| OPERATOR_VERSION.to_owned());
    let image = spec
        .image
        .clone()
        .unwrap_or_else(|| format!("milvus-like/node:{version}"));
    if image.trim().is_empty() || image.contains(char::is_whitespace) {
        errors.push(format!("spec.image {image:?} is not an image reference"));
    }

    let deps = &spec.dependencies;
    let mut in_cluster = InCluster::default();
    let etcd_endpoints = match &deps.etcd.in_cluster {
        Some(e) => {
            let pods = dependency_pods(Dependency::Etcd, e.replicas, &e.pod, &mut errors);
            let endpoints = (0..pods.replicas)
                .map(|i| {
                    format!(
                        "http://{}",
                        dependency_endpoint(&name, &namespace, Dependency::Etcd, Some(i))
                    )
                })
                .collect();
            in_cluster.etcd = Some(pods);
            endpoints
        }
        None => deps.etcd.endpoints.clone(),
    };
    if etcd_endpoints.is_empty() {
        errors.push(
            "spec.dependencies.etcd.endpoints is empty: name at least one etcd client URL, or set inCluster".into(),
        );
    }
    for e in &deps.etcd.endpoints {
        let bare = e
            .strip_prefix("http://")
            .or_else(|| e.strip_prefix("https://"))
            .unwrap_or(e);
        if !is_host_port(bare) {
            errors.push(format!(
                "spec.dependencies.etcd.endpoints: {e:?} is not a URL like http://etcd:2379"
            ));
        }
    }
    let kafka_brokers = match &deps.kafka.in_cluster {
        Some(k) => {
            let pods = dependency_pods(Dependency::Kafka, k.replicas, &k.pod, &mut errors);
            let brokers = (0..pods.replicas)
                .map(|i| dependency_endpoint(&name, &namespace, Dependency::Kafka, Some(i)))
                .collect();
            in_cluster.kafka = Some(pods);
            brokers
        }
        None => deps.kafka.brokers.clone(),
    };
    if kafka_brokers.is_empty() {
        errors.push(
            "spec.dependencies.kafka.brokers is empty: name at least one host:port, or set inCluster".into(),
        );
    }
    for b in &deps.kafka.brokers {
        if !is_host_port(b) {
            errors.push(format!(
                "spec.dependencies.kafka.brokers: {b:?} is not host:port"
            ));
        }
    }

    let storage = match (
        &deps.storage.s3,
        &deps.storage.volume,
        &deps.storage.in_cluster,
    ) {
        (Some(s3), None, None) => Some(Storage::S3 {
            endpoint: s3.endpoint.clone().unwrap_or_default(),
            bucket: s3.bucket.clone(),
            region: s3.region.clone().unwrap_or_else(|| "us-east-1".into()),
            secret_name: s3.secret_name.clone(),
            access_key_key: s3
                .access_key_key
                .clone()
                .unwrap_or_else(|| "accessKey".into()),
            secret_key_key: s3
                .secret_key_key
                .clone()
                .unwrap_or_else(|| "secretKey".into()),
        }),
        (None, Some(v), None) => {
            let sub_path = v.sub_path.clone().unwrap_or_else(|| "segments".into());
            if sub_path.starts_with('/') || sub_path.split('/').any(|p| p == "..") {
                errors.push(format!(
                    "spec.dependencies.storage.volume.subPath {sub_path:?} must be a relative path inside the volume"
                ));
            }
            Some(Storage::Volume {
                claim_name: v.claim_name.clone(),
                sub_path,
            })
        }
        (None, None, Some(m)) => {
            in_cluster.minio = Some(dependency_pods(
                Dependency::Minio,
                None,
                &m.pod,
                &mut errors,
            ));
            Some(Storage::S3 {
                endpoint: format!(
                    "http://{}",
                    dependency_endpoint(&name, &namespace, Dependency::Minio, None)
                ),
                bucket: m.bucket.clone().unwrap_or_else(|| DEFAULT_BUCKET.into()),
                region: "us-east-1".into(),
                secret_name: dependency_name(&name, Dependency::Minio),
                access_key_key: "accessKey".into(),
                secret_key_key: "secretKey".into(),
            })
        }
        (None, None, None) => {
            errors.push(
                "spec.dependencies.storage sets none of s3, volume and inCluster: choose one"
                    .into(),
            );
            None
        }
        (s3, volume, in_cluster) => {
            let set: Vec<&str> = [
                s3.as_ref().map(|_| "s3"),
                volume.as_ref().map(|_| "volume"),
                in_cluster.as_ref().map(|_| "inCluster"),
            ]
            .into_iter()
            .flatten()
            .collect();
            errors.push(format!(
                "spec.dependencies.storage sets both {}: choose one",
                set.join(" and ")
            ));
            None
        }
    };

    let roles = [
        (Role::RootCoord, &spec.root_coord),
        (Role::DataCoord, &spec.data_coord),
        (Role::Proxy, &spec.proxy),
        (Role::DataNode, &spec.data_node.component),
        (Role::QueryNode, &spec.query_node.component),
    ];
    for (role, comp) in roles {
        check_resources(
            &format!("spec.{}", role.spec_name()),
            comp.resources.as_ref(),
            &mut errors,
        );
    }
    let memory_mib = data_node_memory(spec, &mut errors);

    if !(1..=i64::from(limits::MAX_CHANNELS)).contains(&i64::from(spec.channels)) {
        errors.push(format!(
            "spec.channels is {}; it must be from 1 to {}",
            spec.channels,
            limits::MAX_CHANNELS
        ));
    }
    for key in spec.config.keys() {
        if !is_env_name(key) {
            errors.push(format!(
                "spec.config key {key:?} is not an environment variable name (letters, digits and _)"
            ));
        }
    }

    let sasl = deps
        .kafka
        .credentials
        .as_ref()
        .map(|c: &KafkaCredentials| Sasl {
            secret_name: c.secret_name.clone(),
            username_key: c.username_key.clone().unwrap_or_else(|| "username".into()),
            password_key: c.password_key.clone().unwrap_or_else(|| "password".into()),
            mechanism: c.mechanism.unwrap_or(SaslMechanism::Plain),
            tls: c.tls,
        });

    let Some(storage) = storage else {
        return Err(InvalidSpec(errors));
    };
    if !errors.is_empty() {
        return Err(InvalidSpec(errors));
    }
    let dn = &spec.data_node;
    let monitoring = spec
        .monitoring
        .as_ref()
        .filter(|m| m.service_monitor)
        .map(|m| Monitoring {
            interval: m.interval.clone().unwrap_or_else(|| "30s".into()),
            labels: m.labels.clone(),
        });
    let kafka_replication = deps.kafka.replication_factor.unwrap_or_else(|| {
        in_cluster
            .kafka
            .as_ref()
            .map_or(1, |k| k.replicas.clamp(1, 3))
    });
    Ok(Cluster {
        kafka_cluster_id: kafka_cluster_id(mc.uid().as_deref(), &namespace, &name),
        data_coord_endpoint: spec.data_coord_endpoint.clone().unwrap_or_else(|| {
            crate::build::service_endpoint(&name, &namespace, crate::build::Role::DataCoord)
        }),
        meta_root: meta_root(&deps.etcd, &namespace, &name),
        topic_prefix: deps
            .kafka
            .topic_prefix
            .clone()
            .unwrap_or_else(|| format!("{namespace}-{name}")),
        name,
        namespace,
        image,
        image_pull_policy: spec.image_pull_policy.unwrap_or(PullPolicy::IfNotPresent),
        version,
        root_coord: component(&spec.root_coord, 2, Role::RootCoord),
        data_coord: component(&spec.data_coord, 2, Role::DataCoord),
        proxy: component(&spec.proxy, 1, Role::Proxy),
        data_node: component(&dn.component, 2, Role::DataNode),
        query_node: component(&spec.query_node.component, 1, Role::QueryNode),
        query_node_memory_mib: spec.query_node.memory_mib,
        memory_mib,
        flush_rows: dn.flush.max_rows.unwrap_or(defaults::FLUSH_ROWS as i64),
        flush_mib: dn.flush.max_mib.unwrap_or(defaults::FLUSH_MIB as i64),
        flush_age_seconds: dn
            .flush
            .max_age_seconds
            .unwrap_or(defaults::FLUSH_AGE.as_secs() as i64),
        drain_timeout_seconds: dn
            .drain_timeout_seconds
            .unwrap_or(defaults::DRAIN_TIMEOUT.as_secs() as i32),
        etcd_endpoints,
        kafka_brokers,
        kafka_replication,
        sasl,
        storage,
        channels: spec.channels,
        balancer: spec.balancer.unwrap_or(Balancer::RoundRobin),
        deletion_policy: spec.deletion_policy.unwrap_or(DeletionPolicy::Retain),
        config: spec.config.clone(),
        in_cluster,
        monitoring,
    })
}

/// The data node's memory budget: the spec's, else 1024 MiB or what fits the
/// container's memory limit; it must fit that limit (`data_node_memory_need_mib`).
fn data_node_memory(spec: &crate::crd::MilvusClusterSpec, errors: &mut Vec<String>) -> i64 {
    let dn = &spec.data_node;
    let limit = quantity(dn.component.resources.as_ref(), "limits", "memory")
        .and_then(Result::ok)
        .map(quantity::mib);
    let memory_mib = match (dn.memory_mib, limit) {
        (Some(m), _) => m,
        (None, Some(limit)) => DEFAULT_MEMORY_MIB.min((limit - 64).max(0) * 4 / 5),
        (None, None) => DEFAULT_MEMORY_MIB,
    };
    if memory_mib < limits::MIN_DATANODE_MEMORY_MIB as i64 {
        errors.push(format!(
            "spec.dataNode.resources.limits.memory leaves {memory_mib} MiB for buffers; a data node needs at least {} MiB plus 84",
            limits::MIN_DATANODE_MEMORY_MIB
        ));
    } else if let Some(limit) = limit
        && data_node_memory_need_mib(memory_mib) > limit
    {
        errors.push(format!(
            "spec.dataNode.memoryMiB {memory_mib} needs a container memory limit of about {} MiB (1.25x plus 64 MiB), but resources.limits.memory is {limit} MiB: raise the limit or lower memoryMiB",
            data_node_memory_need_mib(memory_mib)
        ));
    }
    memory_mib
}
