//! Validation and defaults: a `MilvusCluster` becomes a [`Cluster`], every
//! optional field resolved, or a list of everything wrong with it. Pure: the
//! apiserver's schema has refused what it can check already (types, ranges,
//! enums); this checks what it cannot.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Affinity, EnvVar, ResourceRequirements, Toleration};
use kube::ResourceExt;

use crate::crd::{
    Balancer, ComponentSpec, DeletionPolicy, KafkaCredentials, MilvusCluster, PullPolicy,
    SaslMechanism,
};

/// Longest `MilvusCluster` name: children are `<name>-datacoord` and the like, and
/// data-node pods `<name>-datanode-<n>`, whose `controller-revision-hash` label
/// (`<name>-datanode-<10 characters>`) must fit in 63 characters.
pub const MAX_NAME_LEN: usize = 40;

/// The version this operator deploys when the spec names none.
pub const OPERATOR_VERSION: &str = env!("CARGO_PKG_VERSION");

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
    pub image: String,
    pub image_pull_policy: PullPolicy,
    pub version: String,
    pub root_coord: Component,
    pub data_coord: Component,
    pub proxy: Component,
    pub data_node: Component,
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
}

/// Everything wrong with a spec, one sentence each.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", .0.join("; "))]
pub struct InvalidSpec(pub Vec<String>);

fn component(spec: &ComponentSpec, default_replicas: i32) -> Component {
    Component {
        replicas: spec.replicas.unwrap_or(default_replicas),
        resources: spec.resources.clone(),
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
    if deps.etcd.endpoints.is_empty() {
        errors.push(
            "spec.dependencies.etcd.endpoints is empty: name at least one etcd client URL".into(),
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
    if deps.kafka.brokers.is_empty() {
        errors.push("spec.dependencies.kafka.brokers is empty: name at least one host:port".into());
    }
    for b in &deps.kafka.brokers {
        if !is_host_port(b) {
            errors.push(format!(
                "spec.dependencies.kafka.brokers: {b:?} is not host:port"
            ));
        }
    }

    let storage = match (&deps.storage.s3, &deps.storage.volume) {
        (Some(s3), None) => Some(Storage::S3 {
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
        (None, Some(v)) => {
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
        (Some(_), Some(_)) => {
            errors.push("spec.dependencies.storage sets both s3 and volume: choose one".into());
            None
        }
        (None, None) => {
            errors.push("spec.dependencies.storage sets neither s3 nor volume: choose one".into());
            None
        }
    };

    if !(1..=1024).contains(&spec.channels) {
        errors.push(format!(
            "spec.channels is {}; it must be from 1 to 1024",
            spec.channels
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
    Ok(Cluster {
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
        root_coord: component(&spec.root_coord, 2),
        data_coord: component(&spec.data_coord, 2),
        proxy: component(&spec.proxy, 1),
        data_node: component(&dn.component, 2),
        memory_mib: dn.memory_mib.unwrap_or(1024),
        flush_rows: dn.flush.max_rows.unwrap_or(100_000),
        flush_mib: dn.flush.max_mib.unwrap_or(256),
        flush_age_seconds: dn.flush.max_age_seconds.unwrap_or(30),
        drain_timeout_seconds: dn.drain_timeout_seconds.unwrap_or(60),
        etcd_endpoints: deps.etcd.endpoints.clone(),
        kafka_brokers: deps.kafka.brokers.clone(),
        kafka_replication: deps.kafka.replication_factor.unwrap_or(1),
        sasl,
        storage,
        channels: spec.channels,
        balancer: spec.balancer.unwrap_or(Balancer::RoundRobin),
        deletion_policy: spec.deletion_policy.unwrap_or(DeletionPolicy::Retain),
        config: spec.config.clone(),
    })
}
