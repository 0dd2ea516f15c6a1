//! The dependencies the operator runs for a cluster (`inCluster`): etcd, Kafka
//! (KRaft, every broker also a controller) and MinIO, each a StatefulSet with a
//! volume per pod behind a Service, plus Kafka's configuration and a Job that
//! creates MinIO's bucket. The MinIO credentials are not built here: the
//! controller generates them into a Secret once (they are random).
//!
//! The images are the upstream projects' own, so the pods rely only on what
//! those images have: `/usr/local/bin/etcd` (a distroless image, no shell), the
//! Kafka distribution under `/opt/kafka` with `sh` and `sed`, `minio` and `mc`.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{
    StatefulSet, StatefulSetPersistentVolumeClaimRetentionPolicy, StatefulSetSpec,
};
use k8s_openapi::api::batch::v1::{Job, JobSpec};
use k8s_openapi::api::core::v1::{
    ConfigMap, ConfigMapVolumeSource, Container, ContainerPort, EmptyDirVolumeSource, EnvVar,
    PersistentVolumeClaim, PersistentVolumeClaimSpec, PodSpec, PodTemplateSpec, Probe, Service,
    ServicePort, ServiceSpec, TCPSocketAction, Volume, VolumeMount, VolumeResourceRequirements,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::pods::{field_env, http_probe, pod_security, secret_env, security, value_env};
use super::{
    CONFIG_CHECKSUM, Dependency, LABEL_COMPONENT, LABEL_INSTANCE, LABEL_MANAGED_BY, LABEL_NAME,
    checksum, dependency_name, disruption_budget,
};
use crate::crd::DeletionPolicy;
use crate::quantity;
use crate::validate::{Cluster, DependencyPods, Storage};

/// The uid the dependency containers run as: Kafka's image user (`appuser`),
/// and an unprivileged one for etcd and MinIO, whose images do not care.
fn run_as(d: Dependency) -> i64 {
    match d {
        Dependency::Kafka => 1000,
        Dependency::Etcd | Dependency::Minio => 10001,
    }
}

/// Where each dependency keeps its data (its volume).
fn data_path(d: Dependency) -> &'static str {
    match d {
        Dependency::Etcd => "/var/lib/etcd",
        Dependency::Kafka => "/var/lib/kafka",
        Dependency::Minio => "/data",
    }
}

/// Labels of a dependency's objects; the first three select its pods.
pub fn dependency_labels(cluster: &str, d: Dependency) -> BTreeMap<String, String> {
    BTreeMap::from([
        (LABEL_NAME.to_owned(), "milvus-like".to_owned()),
        (LABEL_INSTANCE.to_owned(), cluster.to_owned()),
        (LABEL_COMPONENT.to_owned(), d.suffix().to_owned()),
    ])
}

fn object_labels(c: &Cluster, d: Dependency) -> BTreeMap<String, String> {
    let mut l = dependency_labels(&c.name, d);
    l.insert(LABEL_MANAGED_BY.to_owned(), super::FIELD_MANAGER.to_owned());
    l
}

fn meta(c: &Cluster, name: String, d: Dependency, owner: &OwnerReference) -> ObjectMeta {
    ObjectMeta {
        name: Some(name),
        namespace: Some(c.namespace.clone()),
        labels: Some(object_labels(c, d)),
        owner_references: Some(vec![owner.clone()]),
        ..ObjectMeta::default()
    }
}

/// Every object of the in-cluster dependencies, in the order they are applied.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DependencyChildren {
    pub config_maps: Vec<ConfigMap>,
    pub services: Vec<Service>,
    pub stateful_sets: Vec<StatefulSet>,
    pub jobs: Vec<Job>,
    pub disruption_budgets: Vec<k8s_openapi::api::policy::v1::PodDisruptionBudget>,
    /// Budgets of dependencies now under 2 pods (to delete).
    pub unwanted_budgets: Vec<String>,
}

pub fn build(c: &Cluster, owner: &OwnerReference) -> DependencyChildren {
    let mut out = DependencyChildren::default();
    for d in Dependency::ALL {
        let name = dependency_name(&c.name, d);
        let Some(pods) = c.in_cluster.get(d) else {
            continue;
        };
        let (template, service) = match d {
            Dependency::Etcd => (
                etcd(c, pods),
                headless(
                    c,
                    d,
                    owner,
                    &[("client", 2379), ("peer", 2380), ("metrics", 2381)],
                ),
            ),
            Dependency::Kafka => {
                let config = kafka_config(c, pods, owner);
                let sum = checksum(config.data.as_ref().unwrap_or(&BTreeMap::new()));
                out.config_maps.push(config);
                let mut t = kafka(c, pods);
                annotate(&mut t, &sum);
                (
                    t,
                    headless(c, d, owner, &[("broker", 9092), ("controller", 9093)]),
                )
            }
            Dependency::Minio => {
                out.jobs.push(bucket_job(c, pods, owner));
                (minio(c, pods), cluster_ip(c, d, owner, &[("s3", 9000)]))
            }
        };
        out.services.push(service);
        out.stateful_sets
            .push(stateful_set(c, d, pods, owner, template));
        if pods.replicas >= 2 {
            out.disruption_budgets.push(disruption_budget(
                meta(c, name, d, owner),
                dependency_labels(&c.name, d),
            ));
        } else {
            out.unwanted_budgets.push(name);
        }
    }
    out
}

fn annotate(t: &mut PodTemplateSpec, sum: &str) {
    t.metadata
        .get_or_insert_with(ObjectMeta::default)
        .annotations
        .get_or_insert_with(BTreeMap::new)
        .insert(CONFIG_CHECKSUM.to_owned(), sum.to_owned());
}

fn service(
    c: &Cluster,
    d: Dependency,
    owner: &OwnerReference,
    ports: &[(&str, i32)],
    headless: bool,
) -> Service {
    Service {
        metadata: meta(c, dependency_name(&c.name, d), d, owner),
        spec: Some(ServiceSpec {
            selector: Some(dependency_labels(&c.name, d)),
            ports: Some(
                ports
                    .iter()
                    .map(|(name, port)| ServicePort {
                        name: Some((*name).to_owned()),
                        port: *port,
                        target_port: Some(IntOrString::Int(*port)),
                        protocol: Some("TCP".to_owned()),
                        ..ServicePort::default()
                    })
                    .collect(),
            ),
            cluster_ip: headless.then(|| "None".to_owned()),
            // Members find each other by their pod names before they are ready
            // (a quorum needs them all up).
            publish_not_ready_addresses: headless.then_some(true),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    }
}

fn headless(c: &Cluster, d: Dependency, owner: &OwnerReference, ports: &[(&str, i32)]) -> Service {
    service(c, d, owner, ports, true)
}

fn cluster_ip(
    c: &Cluster,
    d: Dependency,
    owner: &OwnerReference,
    ports: &[(&str, i32)],
) -> Service {
    service(c, d, owner, ports, false)
}

/// `<pod>.<service>.<namespace>.svc`: a member's stable DNS name.
fn member_host(c: &Cluster, d: Dependency, ordinal: i32) -> String {
    let s = dependency_name(&c.name, d);
    format!("{s}-{ordinal}.{s}.{}.svc", c.namespace)
}

fn port(name: &str, p: i32) -> ContainerPort {
    ContainerPort {
        name: Some(name.to_owned()),
        container_port: p,
        protocol: Some("TCP".to_owned()),
        ..ContainerPort::default()
    }
}

fn tcp_probe(port: i32, initial_delay: i32, period: i32, failures: i32) -> Probe {
    Probe {
        tcp_socket: Some(TCPSocketAction {
            port: IntOrString::Int(port),
            ..TCPSocketAction::default()
        }),
        initial_delay_seconds: Some(initial_delay),
        period_seconds: Some(period),
        failure_threshold: Some(failures),
        ..Probe::default()
    }
}

fn mount(name: &str, path: &str) -> VolumeMount {
    VolumeMount {
        name: name.to_owned(),
        mount_path: path.to_owned(),
        ..VolumeMount::default()
    }
}

fn empty_dir(name: &str) -> Volume {
    Volume {
        name: name.to_owned(),
        empty_dir: Some(EmptyDirVolumeSource::default()),
        ..Volume::default()
    }
}

/// The container every dependency pod has: its image, resources, the data
/// volume, a scratch /tmp, locked down like the cluster's own pods.
fn container(d: Dependency, pods: &DependencyPods) -> Container {
    Container {
        name: d.suffix().to_owned(),
        image: Some(pods.image.clone()),
        image_pull_policy: Some("IfNotPresent".to_owned()),
        resources: Some(pods.resources.clone()),
        security_context: Some(security()),
        volume_mounts: Some(vec![mount("data", data_path(d)), mount("tmp", "/tmp")]),
        ..Container::default()
    }
}

fn pod(
    d: Dependency,
    containers: Vec<Container>,
    mut volumes: Vec<Volume>,
    labels: BTreeMap<String, String>,
) -> PodTemplateSpec {
    volumes.push(empty_dir("tmp"));
    PodTemplateSpec {
        metadata: Some(ObjectMeta {
            labels: Some(labels),
            ..ObjectMeta::default()
        }),
        spec: Some(PodSpec {
            containers,
            volumes: Some(volumes),
            security_context: Some(pod_security(run_as(d))),
            termination_grace_period_seconds: Some(60),
            ..PodSpec::default()
        }),
    }
}

fn etcd(c: &Cluster, pods: &DependencyPods) -> PodTemplateSpec {
    let d = Dependency::Etcd;
    let s = dependency_name(&c.name, d);
    let ns = &c.namespace;
    let initial: Vec<String> = (0..pods.replicas)
        .map(|i| format!("{s}-{i}=http://{}:2380", member_host(c, d, i)))
        .collect();
    // etcd's quota on its database: 80% of the volume, at most etcd's 8 GiB.
    let quota = quantity::parse(&pods.volume_size.0)
        .map_or(2u64 << 30, |bytes| (bytes * 0.8) as u64)
        .min(8 << 30);
    let me = format!("$(POD_NAME).{s}.{ns}.svc");
    let mut container = container(d, pods);
    container.command = Some(vec!["/usr/local/bin/etcd".to_owned()]);
    container.args = Some(vec![
        "--name=$(POD_NAME)".to_owned(),
        "--data-dir=/var/lib/etcd/data".to_owned(),
        "--listen-client-urls=http://0.0.0.0:2379".to_owned(),
        format!("--advertise-client-urls=http://{me}:2379"),
        "--listen-peer-urls=http://0.0.0.0:2380".to_owned(),
        format!("--initial-advertise-peer-urls=http://{me}:2380"),
        format!("--initial-cluster={}", initial.join(",")),
        "--initial-cluster-state=new".to_owned(),
        format!("--initial-cluster-token={ns}-{}", c.name),
        "--listen-metrics-urls=http://0.0.0.0:2381".to_owned(),
        "--auto-compaction-mode=periodic".to_owned(),
        "--auto-compaction-retention=1h".to_owned(),
        format!("--quota-backend-bytes={quota}"),
    ]);
    container.env = Some(vec![field_env("POD_NAME", "metadata.name")]);
    container.ports = Some(vec![
        port("client", 2379),
        port("peer", 2380),
        port("metrics", 2381),
    ]);
    // Ready with a leader; alive while it answers locally (no quorum needed).
    container.readiness_probe = Some(http_probe("/health", 2381, 5, 3));
    container.liveness_probe = Some(Probe {
        initial_delay_seconds: Some(15),
        ..http_probe("/health?serializable=true", 2381, 10, 6)
    });
    pod(d, vec![container], Vec::new(), object_labels(c, d))
}

/// Kafka's `server.properties`, `@ID@` and `@POD@` filled in per pod at start.
fn kafka_config(c: &Cluster, pods: &DependencyPods, owner: &OwnerReference) -> ConfigMap {
    let d = Dependency::Kafka;
    let n = pods.replicas;
    let r = n.clamp(1, 3);
    let voters: Vec<String> = (0..n)
        .map(|i| format!("{i}@{}:9093", member_host(c, d, i)))
        .collect();
    let s = dependency_name(&c.name, d);
    let properties = [
        "process.roles=broker,controller".to_owned(),
        "node.id=@ID@".to_owned(),
        format!("controller.quorum.voters={}", voters.join(",")),
        "listeners=PLAINTEXT://:9092,CONTROLLER://:9093".to_owned(),
        format!(
            "advertised.listeners=PLAINTEXT://@POD@.{s}.{}.svc:9092",
            c.namespace
        ),
        "controller.listener.names=CONTROLLER".to_owned(),
        "inter.broker.listener.name=PLAINTEXT".to_owned(),
        "listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT".to_owned(),
        "log.dirs=/var/lib/kafka/data".to_owned(),
        format!("offsets.topic.replication.factor={r}"),
        format!("transaction.state.log.replication.factor={r}"),
        format!(
            "transaction.state.log.min.isr={}",
            if r >= 3 { 2 } else { 1 }
        ),
        format!("default.replication.factor={r}"),
        format!("min.insync.replicas={}", if r >= 3 { 2 } else { 1 }),
        // The logs' records are batches of rows: up to 8 MiB (the proxy's limit).
        "message.max.bytes=8388608".to_owned(),
        "replica.fetch.max.bytes=8388608".to_owned(),
        "group.initial.rebalance.delay.ms=0".to_owned(),
        String::new(),
    ]
    .join("\n");
    ConfigMap {
        metadata: meta(c, s, d, owner),
        data: Some(BTreeMap::from([(
            "server.properties".to_owned(),
            properties,
        )])),
        ..ConfigMap::default()
    }
}

/// Half the container's memory limit (else request) for the Java heap.
fn kafka_heap_mib(pods: &DependencyPods) -> i64 {
    let memory = |list: Option<&BTreeMap<String, Quantity>>| {
        list.and_then(|l| l.get("memory"))
            .and_then(|q| quantity::parse(&q.0))
    };
    memory(pods.resources.limits.as_ref())
        .or_else(|| memory(pods.resources.requests.as_ref()))
        .map_or(512, |bytes| (quantity::mib(bytes) / 2).max(128))
}

fn kafka(c: &Cluster, pods: &DependencyPods) -> PodTemplateSpec {
    let d = Dependency::Kafka;
    let heap = kafka_heap_mib(pods);
    let mut container = container(d, pods);
    container.command = Some(vec![
        "/bin/sh".to_owned(),
        "-c".to_owned(),
        // The pod's ordinal is its node id; the log directory is formatted once
        // (a restarted broker keeps its data).
        [
            "set -eu",
            "sed -e \"s/@ID@/${POD_NAME##*-}/\" -e \"s/@POD@/$POD_NAME/\" /etc/kafka-config/server.properties > /tmp/server.properties",
            "/opt/kafka/bin/kafka-storage.sh format --ignore-formatted -t \"$KAFKA_CLUSTER_ID\" -c /tmp/server.properties",
            "exec /opt/kafka/bin/kafka-server-start.sh /tmp/server.properties",
        ]
        .join("\n"),
    ]);
    container.env = Some(vec![
        field_env("POD_NAME", "metadata.name"),
        value_env("KAFKA_CLUSTER_ID", c.kafka_cluster_id.clone()),
        value_env("KAFKA_HEAP_OPTS", format!("-Xms{heap}m -Xmx{heap}m")),
        value_env("LOG_DIR", "/tmp/logs".to_owned()),
    ]);
    container.ports = Some(vec![port("broker", 9092), port("controller", 9093)]);
    container.readiness_probe = Some(tcp_probe(9092, 5, 5, 3));
    container.liveness_probe = Some(tcp_probe(9092, 60, 10, 6));
    if let Some(mounts) = container.volume_mounts.as_mut() {
        mounts.push(VolumeMount {
            read_only: Some(true),
            ..mount("config", "/etc/kafka-config")
        });
    }
    let config = Volume {
        name: "config".to_owned(),
        config_map: Some(ConfigMapVolumeSource {
            name: dependency_name(&c.name, d),
            ..ConfigMapVolumeSource::default()
        }),
        ..Volume::default()
    };
    pod(d, vec![container], vec![config], object_labels(c, d))
}

/// The root user and password of MinIO, from the Secret the controller made.
fn minio_credentials(c: &Cluster) -> Vec<EnvVar> {
    let Storage::S3 {
        secret_name,
        access_key_key,
        secret_key_key,
        ..
    } = &c.storage
    else {
        return Vec::new();
    };
    vec![
        secret_env("MINIO_ROOT_USER", secret_name, access_key_key),
        secret_env("MINIO_ROOT_PASSWORD", secret_name, secret_key_key),
    ]
}

fn minio(c: &Cluster, pods: &DependencyPods) -> PodTemplateSpec {
    let d = Dependency::Minio;
    let mut container = container(d, pods);
    container.command = Some(vec!["minio".to_owned()]);
    container.args = Some(vec![
        "server".to_owned(),
        "/data".to_owned(),
        "--address=:9000".to_owned(),
    ]);
    let mut env = minio_credentials(c);
    env.push(value_env("MINIO_BROWSER", "off".to_owned()));
    // MinIO keeps its certificates directory under $HOME.
    env.push(value_env("HOME", "/tmp".to_owned()));
    container.env = Some(env);
    container.ports = Some(vec![port("s3", 9000)]);
    container.readiness_probe = Some(http_probe("/minio/health/ready", 9000, 5, 3));
    container.liveness_probe = Some(Probe {
        initial_delay_seconds: Some(10),
        ..http_probe("/minio/health/live", 9000, 10, 6)
    });
    pod(d, vec![container], Vec::new(), object_labels(c, d))
}

/// A Job that creates the bucket once MinIO answers (retrying until then),
/// with the MinIO image's own client.
fn bucket_job(c: &Cluster, pods: &DependencyPods, owner: &OwnerReference) -> Job {
    let d = Dependency::Minio;
    let bucket = match &c.storage {
        Storage::S3 { bucket, .. } => bucket.clone(),
        Storage::Volume { .. } => String::new(),
    };
    let endpoint = format!(
        "http://{}",
        super::dependency_endpoint(&c.name, &c.namespace, d, None)
    );
    let mut env = minio_credentials(c);
    env.push(value_env("MC_CONFIG_DIR", "/tmp/mc".to_owned()));
    env.push(value_env("MINIO_ENDPOINT", endpoint));
    env.push(value_env("BUCKET", bucket));
    let container = Container {
        name: "create-bucket".to_owned(),
        image: Some(pods.image.clone()),
        image_pull_policy: Some("IfNotPresent".to_owned()),
        command: Some(vec![
            "/bin/sh".to_owned(),
            "-c".to_owned(),
            "mc alias set cluster \"$MINIO_ENDPOINT\" \"$MINIO_ROOT_USER\" \"$MINIO_ROOT_PASSWORD\" >/dev/null && mc mb --ignore-existing \"cluster/$BUCKET\"".to_owned(),
        ]),
        env: Some(env),
        security_context: Some(security()),
        volume_mounts: Some(vec![mount("tmp", "/tmp")]),
        ..Container::default()
    };
    let mut labels = object_labels(c, d);
    labels.insert(LABEL_COMPONENT.to_owned(), "minio-bucket".to_owned());
    let mut template = pod(d, vec![container], Vec::new(), labels);
    if let Some(spec) = template.spec.as_mut() {
        spec.restart_policy = Some("OnFailure".to_owned());
        spec.termination_grace_period_seconds = Some(5);
    }
    Job {
        metadata: meta(
            c,
            format!("{}-bucket", dependency_name(&c.name, d)),
            d,
            owner,
        ),
        spec: Some(JobSpec {
            // MinIO may take a while to come up: retry for minutes.
            backoff_limit: Some(30),
            template,
            ..JobSpec::default()
        }),
        ..Job::default()
    }
}

fn stateful_set(
    c: &Cluster,
    d: Dependency,
    pods: &DependencyPods,
    owner: &OwnerReference,
    template: PodTemplateSpec,
) -> StatefulSet {
    let claim = PersistentVolumeClaim {
        metadata: ObjectMeta {
            name: Some("data".to_owned()),
            labels: Some(dependency_labels(&c.name, d)),
            ..ObjectMeta::default()
        },
        spec: Some(PersistentVolumeClaimSpec {
            access_modes: Some(vec!["ReadWriteOnce".to_owned()]),
            storage_class_name: pods.storage_class.clone(),
            resources: Some(VolumeResourceRequirements {
                requests: Some(BTreeMap::from([(
                    "storage".to_owned(),
                    pods.volume_size.clone(),
                )])),
                ..VolumeResourceRequirements::default()
            }),
            ..PersistentVolumeClaimSpec::default()
        }),
        ..PersistentVolumeClaim::default()
    };
    let when_deleted = match c.deletion_policy {
        DeletionPolicy::Delete => "Delete",
        DeletionPolicy::Retain => "Retain",
    };
    StatefulSet {
        metadata: meta(c, dependency_name(&c.name, d), d, owner),
        spec: Some(StatefulSetSpec {
            replicas: Some(pods.replicas),
            selector: LabelSelector {
                match_labels: Some(dependency_labels(&c.name, d)),
                ..LabelSelector::default()
            },
            service_name: Some(dependency_name(&c.name, d)),
            template,
            // Quorum members start together: each waits for the others.
            pod_management_policy: Some("Parallel".to_owned()),
            volume_claim_templates: Some(vec![claim]),
            persistent_volume_claim_retention_policy: Some(
                StatefulSetPersistentVolumeClaimRetentionPolicy {
                    when_deleted: Some(when_deleted.to_owned()),
                    when_scaled: Some("Retain".to_owned()),
                },
            ),
            revision_history_limit: Some(5),
            ..StatefulSetSpec::default()
        }),
        ..StatefulSet::default()
    }
}
