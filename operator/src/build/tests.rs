//! `build()` and `validate()` on the YAML fixtures in `operator/fixtures/`.

use k8s_openapi::api::core::v1::{Container, EnvVar, PodSpec};
use kube::Resource;

use super::*;
use crate::crd::MilvusCluster;
use crate::validate::{InvalidSpec, validate};

fn fixture(yaml: &str) -> MilvusCluster {
    serde_yaml::from_str(yaml).expect("fixture parses")
}

const MINIMAL: &str = include_str!("../../fixtures/minimal.yaml");
const FULL: &str = include_str!("../../fixtures/full.yaml");
const INVALID: &str = include_str!("../../fixtures/invalid.yaml");

fn built(yaml: &str) -> (Cluster, Children) {
    let mc = fixture(yaml);
    let c = validate(&mc).expect("valid");
    let owner = mc.controller_owner_ref(&()).expect("owner");
    let children = build(&c, &owner, c.data_node.replicas);
    (c, children)
}

fn pod_spec(t: &k8s_openapi::api::core::v1::PodTemplateSpec) -> &PodSpec {
    t.spec.as_ref().expect("pod spec")
}

fn container(t: &k8s_openapi::api::core::v1::PodTemplateSpec) -> &Container {
    &pod_spec(t).containers[0]
}

fn env<'a>(c: &'a Container, name: &str) -> Option<&'a EnvVar> {
    c.env.iter().flatten().find(|e| e.name == name)
}

#[test]
fn defaults_fill_every_optional_field() {
    let c = validate(&fixture(MINIMAL)).expect("valid");
    assert_eq!(c.name, "demo");
    assert_eq!(c.namespace, "vectors");
    assert_eq!(
        c.image,
        format!("milvus-like/node:{}", crate::validate::OPERATOR_VERSION)
    );
    assert_eq!(
        (
            c.root_coord.replicas,
            c.data_coord.replicas,
            c.proxy.replicas,
            c.data_node.replicas
        ),
        (2, 2, 1, 2)
    );
    assert_eq!(
        c.channels, 3,
        "the schema default, also when the YAML omits it"
    );
    assert_eq!(c.meta_root, "milvus-like/vectors/demo");
    assert_eq!(c.topic_prefix, "vectors-demo");
    assert_eq!(c.data_coord_endpoint, "demo-datacoord.vectors.svc:13333");
    assert_eq!(
        (c.memory_mib, c.flush_rows, c.flush_mib, c.flush_age_seconds),
        (1024, 100_000, 256, 30)
    );
    assert_eq!(c.drain_timeout_seconds, 60);
    assert_eq!(c.deletion_policy, crate::crd::DeletionPolicy::Retain);
    assert!(
        matches!(c.storage, crate::validate::Storage::S3 { ref region, ref access_key_key, .. } if region == "us-east-1" && access_key_key == "accessKey")
    );
}

#[test]
fn every_problem_of_an_invalid_spec_is_reported() {
    let Err(InvalidSpec(errors)) = validate(&fixture(INVALID)) else {
        panic!("the invalid fixture validated");
    };
    let all = errors.join("\n");
    for expected in [
        "metadata.name",
        "etcd.endpoints: \"etcd\"",
        "kafka.brokers: \"kafka:port\"",
        "sets both s3 and volume",
        "spec.config key \"not-an-env-name\"",
    ] {
        assert!(all.contains(expected), "{expected:?} missing from:\n{all}");
    }
    assert_eq!(errors.len(), 5, "{all}");
}

#[test]
fn children_are_named_labelled_and_owned() {
    let (_, ch) = built(MINIMAL);
    let names: Vec<String> = ch
        .deployments
        .iter()
        .map(|d| d.metadata.name.clone().unwrap_or_default())
        .collect();
    assert_eq!(names, ["demo-rootcoord", "demo-datacoord", "demo-proxy"]);
    assert_eq!(
        ch.data_nodes.metadata.name.as_deref(),
        Some("demo-datanode")
    );
    assert_eq!(ch.config.metadata.name.as_deref(), Some("demo-config"));
    let metas = ch
        .deployments
        .iter()
        .map(|d| &d.metadata)
        .chain(ch.services.iter().map(|s| &s.metadata))
        .chain(ch.disruption_budgets.iter().map(|b| &b.metadata))
        .chain([&ch.data_nodes.metadata, &ch.config.metadata]);
    for m in metas {
        assert_eq!(m.namespace.as_deref(), Some("vectors"));
        let owner = &m.owner_references.as_ref().expect("owned")[0];
        assert_eq!(
            (owner.kind.as_str(), owner.name.as_str()),
            ("MilvusCluster", "demo")
        );
        assert_eq!(owner.controller, Some(true));
        let labels = m.labels.as_ref().expect("labels");
        assert_eq!(labels.get(LABEL_INSTANCE).map(String::as_str), Some("demo"));
        assert_eq!(
            labels.get(LABEL_MANAGED_BY).map(String::as_str),
            Some(FIELD_MANAGER)
        );
    }
}

#[test]
fn pods_run_their_role_with_the_configuration_and_their_identity() {
    let (c, ch) = built(MINIMAL);
    for (role, template) in [
        (
            Role::RootCoord,
            &ch.deployments[0].spec.as_ref().expect("spec").template,
        ),
        (
            Role::DataCoord,
            &ch.deployments[1].spec.as_ref().expect("spec").template,
        ),
        (
            Role::Proxy,
            &ch.deployments[2].spec.as_ref().expect("spec").template,
        ),
        (
            Role::DataNode,
            &ch.data_nodes.spec.as_ref().expect("spec").template,
        ),
    ] {
        let k = container(template);
        assert_eq!(k.image.as_deref(), Some(c.image.as_str()));
        assert_eq!(k.args.as_deref(), Some(&[role.command().to_owned()][..]));
        let from = k.env_from.as_ref().expect("envFrom")[0]
            .config_map_ref
            .as_ref()
            .expect("configmap");
        assert_eq!(from.name, "demo-config");
        let advertise = env(k, &format!("{}_ADVERTISE", role.env_prefix())).expect("advertise");
        assert_eq!(
            advertise.value.as_deref(),
            Some(format!("$(POD_IP):{}", role.grpc_port()).as_str())
        );
        assert_eq!(
            env(k, "MILVUS_LIKE_NODE_NAME").and_then(|e| e.value.as_deref()),
            Some("$(POD_NAME)")
        );
        let ports: Vec<i32> = k.ports.iter().flatten().map(|p| p.container_port).collect();
        assert_eq!(ports, [role.grpc_port(), role.http_port()]);
        let ready = k
            .readiness_probe
            .as_ref()
            .and_then(|p| p.http_get.as_ref())
            .expect("probe");
        assert_eq!(ready.path.as_deref(), Some("/readyz"));
        let sc = k.security_context.as_ref().expect("security context");
        assert_eq!(sc.read_only_root_filesystem, Some(true));
        assert_eq!(sc.run_as_non_root, Some(true));
        let annotations = template
            .metadata
            .as_ref()
            .and_then(|m| m.annotations.as_ref())
            .expect("annotations");
        assert_eq!(
            annotations.get(CONFIG_CHECKSUM),
            Some(&checksum(ch.config.data.as_ref().expect("data")))
        );
    }
    // Only data nodes get the S3 keys, from the Secret.
    let dn = container(&ch.data_nodes.spec.as_ref().expect("spec").template);
    let key = env(dn, "MILVUS_LIKE_S3_ACCESS_KEY")
        .and_then(|e| e.value_from.as_ref())
        .and_then(|v| v.secret_key_ref.as_ref())
        .expect("secret ref");
    assert_eq!(
        (key.name.as_str(), key.key.as_str()),
        ("minio-credentials", "accessKey")
    );
    let proxy = container(&ch.deployments[2].spec.as_ref().expect("spec").template);
    assert!(env(proxy, "MILVUS_LIKE_S3_ACCESS_KEY").is_none());
}

#[test]
fn the_configuration_carries_the_spec_and_the_overrides_win() {
    let (_, ch) = built(FULL);
    let data = ch.config.data.as_ref().expect("data");
    let get = |k: &str| data.get(k).map(String::as_str);
    assert_eq!(
        get("MILVUS_LIKE_ETCD_ENDPOINTS"),
        Some("https://etcd-0.etcd:2379,https://etcd-1.etcd:2379")
    );
    assert_eq!(get("MILVUS_LIKE_META_ROOT"), Some("tenants/prod"));
    assert_eq!(get("MILVUS_LIKE_KAFKA_BROKERS"), Some("broker:9093"));
    assert_eq!(get("MILVUS_LIKE_TOPIC_PREFIX"), Some("prod"));
    assert_eq!(get("MILVUS_LIKE_KAFKA_REPLICATION"), Some("3"));
    assert_eq!(get("MILVUS_LIKE_CHANNELS"), Some("8"));
    assert_eq!(get("MILVUS_LIKE_BALANCER"), Some("consistent_hash"));
    assert_eq!(get("MILVUS_LIKE_DATANODE_MEMORY_MIB"), Some("2048"));
    assert_eq!(get("MILVUS_LIKE_FLUSH_ROWS"), Some("50000"));
    assert_eq!(get("MILVUS_LIKE_FLUSH_MIB"), Some("128"));
    assert_eq!(
        get("MILVUS_LIKE_FLUSH_AGE"),
        Some("15s"),
        "spec.config overrides flush.maxAgeSeconds"
    );
    assert_eq!(get("MILVUS_LIKE_SESSION_TTL"), Some("20s"));
    assert_eq!(get("MILVUS_LIKE_DRAIN_TIMEOUT"), Some("120s"));
    assert_eq!(get("MILVUS_LIKE_STORAGE_ROOT"), Some("/data/prod/segments"));
    assert_eq!(get("MILVUS_LIKE_KAFKA_SECURITY_PROTOCOL"), Some("SASL_SSL"));
    assert_eq!(
        get("MILVUS_LIKE_KAFKA_SASL_MECHANISM"),
        Some("SCRAM-SHA-512")
    );
    assert!(get("MILVUS_LIKE_S3_BUCKET").is_none());
    assert!(
        !data
            .keys()
            .any(|k| k.contains("PASSWORD") || k.contains("SECRET")),
        "no secret in the ConfigMap"
    );
}

#[test]
fn component_settings_reach_their_pods() {
    let (_, ch) = built(FULL);
    let spec = |i: usize| pod_spec(&ch.deployments[i].spec.as_ref().expect("spec").template);
    assert_eq!(
        ch.deployments[0].spec.as_ref().and_then(|s| s.replicas),
        Some(3)
    );
    let root = &spec(0).containers[0];
    assert!(
        root.resources
            .as_ref()
            .and_then(|r| r.requests.as_ref())
            .is_some()
    );
    assert_eq!(
        spec(1)
            .node_selector
            .as_ref()
            .and_then(|n| n.get("disk"))
            .map(String::as_str),
        Some("ssd")
    );
    assert_eq!(spec(2).tolerations.as_ref().map(Vec::len), Some(1));
    assert_eq!(
        env(&spec(2).containers[0], "RUST_LOG").and_then(|e| e.value.as_deref()),
        Some("debug")
    );
    let sts = ch.data_nodes.spec.as_ref().expect("spec");
    assert_eq!(sts.replicas, Some(4));
    assert_eq!(sts.service_name.as_deref(), Some("prod-datanode"));
    assert_eq!(sts.pod_management_policy.as_deref(), Some("Parallel"));
    let dn = pod_spec(&sts.template);
    assert!(dn.affinity.is_some());
    assert_eq!(
        dn.termination_grace_period_seconds,
        Some(150),
        "drain timeout + 30 s"
    );
    let volume = &dn.volumes.as_ref().expect("volumes")[0];
    assert_eq!(
        volume
            .persistent_volume_claim
            .as_ref()
            .map(|p| p.claim_name.as_str()),
        Some("segments-rwx")
    );
    assert_eq!(
        dn.containers[0].volume_mounts.as_ref().expect("mounts")[0].mount_path,
        DATA_NODE_MOUNT
    );
    let sasl_user = env(&dn.containers[0], "MILVUS_LIKE_KAFKA_SASL_USERNAME")
        .and_then(|e| e.value_from.as_ref())
        .and_then(|v| v.secret_key_ref.as_ref())
        .expect("sasl secret");
    assert_eq!(
        (sasl_user.name.as_str(), sasl_user.key.as_str()),
        ("kafka-user", "username")
    );
    assert_eq!(
        container(&ch.deployments[0].spec.as_ref().expect("spec").template)
            .image_pull_policy
            .as_deref(),
        Some("Always")
    );
}

#[test]
fn services_and_budgets_follow_the_replicas() {
    let (_, ch) = built(FULL);
    let svc: Vec<(String, Option<String>)> = ch
        .services
        .iter()
        .map(|s| {
            (
                s.metadata.name.clone().unwrap_or_default(),
                s.spec.as_ref().and_then(|s| s.cluster_ip.clone()),
            )
        })
        .collect();
    assert_eq!(
        svc,
        [
            ("prod-rootcoord".into(), None),
            ("prod-datacoord".into(), None),
            ("prod-proxy".into(), None),
            ("prod-datanode".into(), Some("None".into())),
        ]
    );
    let budgets: Vec<String> = ch
        .disruption_budgets
        .iter()
        .map(|b| b.metadata.name.clone().unwrap_or_default())
        .collect();
    assert_eq!(
        budgets,
        ["prod-rootcoord", "prod-datacoord", "prod-datanode"]
    );
    assert_eq!(ch.unwanted_budgets, ["prod-proxy"], "1 proxy: no budget");
}

#[test]
fn a_config_change_changes_the_pod_template_and_nothing_else_does_not() {
    let mc = fixture(MINIMAL);
    let owner = mc.controller_owner_ref(&()).expect("owner");
    let c = validate(&mc).expect("valid");
    let sum = |c: &Cluster| {
        build(c, &owner, 2)
            .data_nodes
            .spec
            .and_then(|s| s.template.metadata)
            .and_then(|m| m.annotations)
            .and_then(|a| a.get(CONFIG_CHECKSUM).cloned())
            .expect("checksum")
    };
    let mut more_replicas = c.clone();
    more_replicas.data_node.replicas = 5;
    assert_eq!(sum(&c), sum(&more_replicas), "scaling does not roll pods");
    let mut changed = c.clone();
    changed
        .config
        .insert("MILVUS_LIKE_SESSION_TTL".into(), "20s".into());
    assert_ne!(sum(&c), sum(&changed));
}

#[test]
fn the_stateful_set_takes_the_replicas_it_is_given() {
    let mc = fixture(MINIMAL);
    let c = validate(&mc).expect("valid");
    let owner = mc.controller_owner_ref(&()).expect("owner");
    // During a drain the controller keeps the old size.
    let ch = build(&c, &owner, 4);
    assert_eq!(ch.data_nodes.spec.and_then(|s| s.replicas), Some(4));
    assert_eq!(pod_name("demo", 3), "demo-datanode-3");
}
