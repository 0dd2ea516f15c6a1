//! Pod templates and the workloads that run them: a Deployment per coordinator,
//! the proxy and the query nodes, a StatefulSet for the data nodes (stable names, so the operator
//! knows which pods a scale-down removes and drains them first).

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{
    Deployment, DeploymentSpec, DeploymentStrategy, RollingUpdateDeployment, StatefulSet,
    StatefulSetSpec,
};
use k8s_openapi::api::core::v1::{
    Capabilities, ConfigMapEnvSource, Container, ContainerPort, EmptyDirVolumeSource,
    EnvFromSource, EnvVar, EnvVarSource, HTTPGetAction, ObjectFieldSelector,
    PersistentVolumeClaimVolumeSource, PodSecurityContext, PodSpec, PodTemplateSpec, Probe,
    SeccompProfile, SecretKeySelector, SecurityContext, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use milvus_like_api::settings;

use super::{CONFIG_CHECKSUM, Role, child_name, component, config_map_name, labels, meta};
use crate::crd::PullPolicy;
use crate::validate::{Cluster, Storage};

/// Where a data node mounts its segment volume.
pub const DATA_NODE_MOUNT: &str = "/data";
/// The non-root user of the node image.
const RUN_AS_USER: i64 = 10001;

/// The pod of data node `ordinal` (a StatefulSet's naming).
pub fn pod_name(cluster: &str, ordinal: i32) -> String {
    format!("{}-{ordinal}", child_name(cluster, Role::DataNode))
}

pub(super) fn field_env(name: &str, path: &str) -> EnvVar {
    EnvVar {
        name: name.to_owned(),
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector {
                field_path: path.to_owned(),
                ..ObjectFieldSelector::default()
            }),
            ..EnvVarSource::default()
        }),
        ..EnvVar::default()
    }
}

pub(super) fn secret_env(name: &str, secret: &str, key: &str) -> EnvVar {
    EnvVar {
        name: name.to_owned(),
        value_from: Some(EnvVarSource {
            secret_key_ref: Some(SecretKeySelector {
                name: secret.to_owned(),
                key: key.to_owned(),
                optional: Some(false),
            }),
            ..EnvVarSource::default()
        }),
        ..EnvVar::default()
    }
}

pub(super) fn value_env(name: &str, value: String) -> EnvVar {
    EnvVar {
        name: name.to_owned(),
        value: Some(value),
        ..EnvVar::default()
    }
}

/// The container's environment besides the ConfigMap: pod identity, the advertised
/// address, secrets, then the component's own `env`.
fn env(c: &Cluster, role: Role) -> Vec<EnvVar> {
    let mut env = vec![
        field_env("POD_NAME", "metadata.name"),
        field_env("POD_IP", "status.podIP"),
        value_env(
            role.listen_env().advertise,
            format!("$(POD_IP):{}", role.grpc_port()),
        ),
        value_env(settings::env::NODE_NAME, "$(POD_NAME)".to_owned()),
    ];
    if let Some(sasl) = &c.sasl {
        env.push(secret_env(
            settings::env::KAFKA_SASL_USERNAME,
            &sasl.secret_name,
            &sasl.username_key,
        ));
        env.push(secret_env(
            settings::env::KAFKA_SASL_PASSWORD,
            &sasl.secret_name,
            &sasl.password_key,
        ));
    }
    if let (
        Role::DataNode | Role::QueryNode,
        Storage::S3 {
            secret_name,
            access_key_key,
            secret_key_key,
            ..
        },
    ) = (role, &c.storage)
    {
        env.push(secret_env(
            settings::env::S3_ACCESS_KEY,
            secret_name,
            access_key_key,
        ));
        env.push(secret_env(
            settings::env::S3_SECRET_KEY,
            secret_name,
            secret_key_key,
        ));
    }
    env.extend(component(c, role).env.iter().cloned());
    env
}

pub(super) fn http_probe(path: &str, port: i32, period: i32, failures: i32) -> Probe {
    Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.to_owned()),
            port: IntOrString::Int(port),
            ..HTTPGetAction::default()
        }),
        period_seconds: Some(period),
        failure_threshold: Some(failures),
        ..Probe::default()
    }
}

/// A container that cannot gain privileges, holds no capabilities and writes
/// only to its volumes.
pub(super) fn security() -> SecurityContext {
    SecurityContext {
        allow_privilege_escalation: Some(false),
        read_only_root_filesystem: Some(true),
        run_as_non_root: Some(true),
        capabilities: Some(Capabilities {
            drop: Some(vec!["ALL".to_owned()]),
            ..Capabilities::default()
        }),
        ..SecurityContext::default()
    }
}

/// A pod that runs as `uid` (never root), owns its volumes through that group,
/// and runs under the runtime's default seccomp profile (Pod Security "restricted").
pub(super) fn pod_security(uid: i64) -> PodSecurityContext {
    PodSecurityContext {
        run_as_non_root: Some(true),
        run_as_user: Some(uid),
        run_as_group: Some(uid),
        fs_group: Some(uid),
        seccomp_profile: Some(SeccompProfile {
            type_: "RuntimeDefault".to_owned(),
            ..SeccompProfile::default()
        }),
        ..PodSecurityContext::default()
    }
}

fn pull_policy(p: PullPolicy) -> &'static str {
    match p {
        PullPolicy::Always => "Always",
        PullPolicy::IfNotPresent => "IfNotPresent",
        PullPolicy::Never => "Never",
    }
}

fn template(c: &Cluster, role: Role, image: &str, checksum: &str) -> PodTemplateSpec {
    let comp = component(c, role);
    let port = |name: &str, p: i32| ContainerPort {
        name: Some(name.to_owned()),
        container_port: p,
        protocol: Some("TCP".to_owned()),
        ..ContainerPort::default()
    };
    let mut volumes = Vec::new();
    let mut mounts = Vec::new();
    if matches!(role, Role::DataNode | Role::QueryNode) {
        // Index builds and loads stage their files in the temporary directory;
        // the root filesystem is read-only.
        volumes.push(Volume {
            name: "tmp".to_owned(),
            empty_dir: Some(EmptyDirVolumeSource::default()),
            ..Volume::default()
        });
        mounts.push(VolumeMount {
            name: "tmp".to_owned(),
            mount_path: "/tmp".to_owned(),
            ..VolumeMount::default()
        });
    }
    if let (Role::DataNode | Role::QueryNode, Storage::Volume { claim_name, .. }) =
        (role, &c.storage)
    {
        volumes.push(Volume {
            name: "segments".to_owned(),
            persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                claim_name: claim_name.clone(),
                // Query nodes only read segment files.
                read_only: Some(role == Role::QueryNode),
            }),
            ..Volume::default()
        });
        mounts.push(VolumeMount {
            name: "segments".to_owned(),
            mount_path: DATA_NODE_MOUNT.to_owned(),
            ..VolumeMount::default()
        });
    }
    let container = Container {
        name: role.subcommand().to_owned(),
        image: Some(image.to_owned()),
        image_pull_policy: Some(pull_policy(c.image_pull_policy).to_owned()),
        args: Some(vec![role.subcommand().to_owned()]),
        env_from: Some(vec![EnvFromSource {
            config_map_ref: Some(ConfigMapEnvSource {
                name: config_map_name(&c.name),
                optional: Some(false),
            }),
            ..EnvFromSource::default()
        }]),
        env: Some(env(c, role)),
        ports: Some(vec![
            port("grpc", role.grpc_port().into()),
            port("http", role.http_port().into()),
        ]),
        readiness_probe: Some(http_probe("/readyz", role.http_port().into(), 5, 3)),
        liveness_probe: Some(http_probe("/healthz", role.http_port().into(), 10, 6)),
        resources: comp.resources.clone(),
        security_context: Some(security()),
        volume_mounts: (!mounts.is_empty()).then_some(mounts),
        ..Container::default()
    };
    let grace = match role {
        // A stopping data node lets the coordinator move its channels first.
        Role::DataNode => i64::from(c.drain_timeout_seconds) + 30,
        _ => 30,
    };
    PodTemplateSpec {
        metadata: Some(ObjectMeta {
            labels: Some(pod_labels(c, role)),
            annotations: Some(BTreeMap::from([(
                CONFIG_CHECKSUM.to_owned(),
                checksum.to_owned(),
            )])),
            ..ObjectMeta::default()
        }),
        spec: Some(PodSpec {
            containers: vec![container],
            volumes: (!volumes.is_empty()).then_some(volumes),
            node_selector: (!comp.node_selector.is_empty()).then(|| comp.node_selector.clone()),
            affinity: comp.affinity.clone(),
            tolerations: (!comp.tolerations.is_empty()).then(|| comp.tolerations.clone()),
            termination_grace_period_seconds: Some(grace),
            security_context: Some(pod_security(RUN_AS_USER)),
            ..PodSpec::default()
        }),
    }
}

/// A pod's labels: the workload's without the version, which changes for
/// every role at once when `spec.version` does, and would roll every role's
/// pods at once, while an upgrade rolls them one stage after another.
fn pod_labels(c: &Cluster, role: Role) -> BTreeMap<String, String> {
    let mut l = labels(c, Some(role));
    l.remove(super::LABEL_VERSION);
    l
}

fn selector(c: &Cluster, role: Role) -> LabelSelector {
    LabelSelector {
        match_labels: Some(super::selector_labels(&c.name, role)),
        ..LabelSelector::default()
    }
}

pub(super) fn deployment(
    c: &Cluster,
    role: Role,
    owner: &OwnerReference,
    image: &str,
    checksum: &str,
) -> Deployment {
    Deployment {
        metadata: meta(c, child_name(&c.name, role), Some(role), owner),
        spec: Some(DeploymentSpec {
            replicas: Some(component(c, role).replicas),
            selector: selector(c, role),
            template: template(c, role, image, checksum),
            // Coordinators: the new pod is up before the old one goes, so the
            // standby can take over without a gap.
            strategy: Some(DeploymentStrategy {
                type_: Some("RollingUpdate".to_owned()),
                rolling_update: Some(RollingUpdateDeployment {
                    max_surge: Some(IntOrString::Int(1)),
                    max_unavailable: Some(IntOrString::Int(0)),
                }),
            }),
            revision_history_limit: Some(5),
            ..DeploymentSpec::default()
        }),
        ..Deployment::default()
    }
}

pub(super) fn data_nodes(
    c: &Cluster,
    owner: &OwnerReference,
    image: &str,
    checksum: &str,
    replicas: i32,
) -> StatefulSet {
    StatefulSet {
        metadata: meta(
            c,
            child_name(&c.name, Role::DataNode),
            Some(Role::DataNode),
            owner,
        ),
        spec: Some(StatefulSetSpec {
            replicas: Some(replicas),
            selector: selector(c, Role::DataNode),
            service_name: Some(child_name(&c.name, Role::DataNode)),
            template: template(c, Role::DataNode, image, checksum),
            // Data nodes hold no state of their own: start and stop them all at once.
            pod_management_policy: Some("Parallel".to_owned()),
            revision_history_limit: Some(5),
            ..StatefulSetSpec::default()
        }),
        ..StatefulSet::default()
    }
}
