//! `build()` and `validate()` on the YAML fixtures in `operator/fixtures/`.

use k8s_openapi::api::core::v1::{Container, EnvVar, PodSpec};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
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
    let children = build(&c, &owner, &Rollout::settled(&c));
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
    assert_eq!(
        names,
        [
            "demo-rootcoord",
            "demo-datacoord",
            "demo-proxy",
            "demo-querynode"
        ]
    );
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
        assert_eq!(k.args.as_deref(), Some(&[role.subcommand().to_owned()][..]));
        let from = k.env_from.as_ref().expect("envFrom")[0]
            .config_map_ref
            .as_ref()
            .expect("configmap");
        assert_eq!(from.name, "demo-config");
        let advertise = env(k, role.listen_env().advertise).expect("advertise");
        assert_eq!(
            advertise.value.as_deref(),
            Some(format!("$(POD_IP):{}", role.grpc_port()).as_str())
        );
        assert_eq!(
            env(k, "MILVUS_LIKE_NODE_NAME").and_then(|e| e.value.as_deref()),
            Some("$(POD_NAME)")
        );
        let ports: Vec<i32> = k.ports.iter().flatten().map(|p| p.container_port).collect();
        assert_eq!(
            ports,
            [i32::from(role.grpc_port()), i32::from(role.http_port())]
        );
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
    let segments = |pod: &PodSpec| {
        let volume = pod
            .volumes
            .iter()
            .flatten()
            .find(|v| v.name == "segments")
            .and_then(|v| v.persistent_volume_claim.clone())
            .expect("the segment volume");
        let mount = pod.containers[0]
            .volume_mounts
            .iter()
            .flatten()
            .find(|m| m.name == "segments")
            .map(|m| m.mount_path.clone());
        (volume.claim_name, volume.read_only, mount)
    };
    assert_eq!(
        segments(dn),
        (
            "segments-rwx".to_owned(),
            Some(false),
            Some(DATA_NODE_MOUNT.to_owned())
        )
    );
    // Query nodes read the same volume, read-only, and stage index files in
    // a writable /tmp (the root filesystem is read-only).
    let qn = spec(3);
    assert_eq!(
        segments(qn),
        (
            "segments-rwx".to_owned(),
            Some(true),
            Some(DATA_NODE_MOUNT.to_owned())
        )
    );
    for pod in [dn, qn] {
        let tmp = pod.volumes.iter().flatten().find(|v| v.name == "tmp");
        assert!(tmp.is_some_and(|v| v.empty_dir.is_some()), "{pod:?}");
    }
    assert_eq!(
        ch.deployments[3].spec.as_ref().and_then(|s| s.replicas),
        Some(2)
    );
    assert_eq!(
        ch.config
            .data
            .as_ref()
            .and_then(|d| d.get("MILVUS_LIKE_QUERYNODE_MEMORY_MIB"))
            .map(String::as_str),
        Some("1536")
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
            ("prod-querynode".into(), None),
        ]
    );
    let budgets: Vec<String> = ch
        .disruption_budgets
        .iter()
        .map(|b| b.metadata.name.clone().unwrap_or_default())
        .collect();
    assert_eq!(
        budgets,
        [
            "prod-rootcoord",
            "prod-datacoord",
            "prod-datanode",
            "prod-querynode"
        ]
    );
    assert_eq!(ch.unwanted_budgets, ["prod-proxy"], "1 proxy: no budget");
}

#[test]
fn a_config_change_changes_the_pod_template_and_nothing_else_does_not() {
    let mc = fixture(MINIMAL);
    let owner = mc.controller_owner_ref(&()).expect("owner");
    let c = validate(&mc).expect("valid");
    let sum = |c: &Cluster| {
        build(c, &owner, &Rollout::settled(c))
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
    let ch = build(
        &c,
        &owner,
        &Rollout {
            data_node_replicas: 4,
            ..Rollout::settled(&c)
        },
    );
    assert_eq!(ch.data_nodes.spec.and_then(|s| s.replicas), Some(4));
    assert_eq!(pod_name("demo", 3), "demo-datanode-3");
}

const IN_CLUSTER: &str = include_str!("../../fixtures/incluster.yaml");

#[test]
fn in_cluster_dependencies_are_what_the_components_connect_to() {
    let (c, ch) = built(IN_CLUSTER);
    assert_eq!(
        c.etcd_endpoints,
        (0..3)
            .map(|i| format!("http://quick-etcd-{i}.quick-etcd.vectors.svc:2379"))
            .collect::<Vec<_>>()
    );
    assert_eq!(
        c.kafka_brokers[2],
        "quick-kafka-2.quick-kafka.vectors.svc:9092"
    );
    assert_eq!(c.kafka_replication, 3, "as many as the brokers, up to 3");
    assert_eq!(c.kafka_cluster_id.len(), 22, "{}", c.kafka_cluster_id);
    assert_eq!(
        c.kafka_cluster_id, "Dw4NDAsKCQgHBgUEAwIBAA",
        "the uid's bytes"
    );
    // A uid whose id would start with '-' (the kind scenario met one:
    // kafka-storage.sh took it for an option and the broker never started).
    let mut dashed = fixture(IN_CLUSTER);
    dashed.metadata.uid = Some("fb25dae5-3a1c-4125-a8cb-317078efa1ff".into());
    let id = validate(&dashed).expect("valid").kafka_cluster_id;
    assert_eq!(id, "eyXa5TocQSWoyzFweO-h_w");
    assert!(
        matches!(&c.storage, crate::validate::Storage::S3 { endpoint, bucket, secret_name, .. }
        if endpoint == "http://quick-minio.vectors.svc:9000" && bucket == "vectors" && secret_name == "quick-minio")
    );
    assert!(
        !c.deletes_external_metadata(),
        "the etcd volume goes with it"
    );
    // The data nodes read the generated credentials.
    let dn = container(&ch.data_nodes.spec.as_ref().expect("spec").template);
    let key = env(dn, "MILVUS_LIKE_S3_SECRET_KEY")
        .and_then(|e| e.value_from.as_ref())
        .and_then(|v| v.secret_key_ref.as_ref())
        .expect("secret ref");
    assert_eq!(
        (key.name.as_str(), key.key.as_str()),
        ("quick-minio", "secretKey")
    );
    let config = ch.config.data.as_ref().expect("data");
    assert_eq!(config["MILVUS_LIKE_KAFKA_REPLICATION"], "3");
    assert_eq!(
        config["MILVUS_LIKE_S3_ENDPOINT"],
        "http://quick-minio.vectors.svc:9000"
    );
}

#[test]
fn in_cluster_dependencies_are_stateful_sets_with_volumes_and_locked_down_pods() {
    let (_, ch) = built(IN_CLUSTER);
    let deps = &ch.dependencies;
    let names: Vec<&str> = deps
        .stateful_sets
        .iter()
        .filter_map(|s| s.metadata.name.as_deref())
        .collect();
    assert_eq!(names, ["quick-etcd", "quick-kafka", "quick-minio"]);
    for s in &deps.stateful_sets {
        let spec = s.spec.as_ref().expect("spec");
        let policy = spec
            .persistent_volume_claim_retention_policy
            .as_ref()
            .expect("retention");
        assert_eq!(
            policy.when_deleted.as_deref(),
            Some("Delete"),
            "deletionPolicy: Delete"
        );
        let claim = &spec.volume_claim_templates.as_ref().expect("claims")[0];
        assert_eq!(claim.metadata.name.as_deref(), Some("data"));
        let owner = &s.metadata.owner_references.as_ref().expect("owned")[0];
        assert_eq!(owner.name, "quick");
        let pod = pod_spec(&spec.template);
        let security = pod.security_context.as_ref().expect("pod security");
        assert_eq!(security.run_as_non_root, Some(true));
        assert!(
            security.fs_group.is_some(),
            "the volume is writable by the pod's user"
        );
        let k = container(&spec.template);
        let sc = k.security_context.as_ref().expect("container security");
        assert_eq!(sc.read_only_root_filesystem, Some(true));
        assert!(k.readiness_probe.is_some() && k.liveness_probe.is_some());
    }
    let kafka = &deps.stateful_sets[1].spec.as_ref().expect("spec");
    let claim = &kafka.volume_claim_templates.as_ref().expect("claims")[0];
    let claim = claim.spec.as_ref().expect("claim spec");
    assert_eq!(claim.storage_class_name.as_deref(), Some("fast"));
    assert_eq!(
        claim
            .resources
            .as_ref()
            .and_then(|r| r.requests.as_ref())
            .map(|r| r["storage"].0.as_str()),
        Some("5Gi")
    );
    let k = container(&kafka.template);
    assert_eq!(
        env(k, "KAFKA_HEAP_OPTS").and_then(|e| e.value.as_deref()),
        Some("-Xms1024m -Xmx1024m"),
        "half of the 2Gi limit"
    );
    // Kafka's configuration: every broker a voter, addressed by its pod name.
    let properties = &deps.config_maps[0].data.as_ref().expect("data")["server.properties"];
    assert!(
        properties
            .contains("controller.quorum.voters=0@quick-kafka-0.quick-kafka.vectors.svc:9093,1@"),
        "{properties}"
    );
    assert!(
        properties.contains("advertised.listeners=PLAINTEXT://@POD@.quick-kafka.vectors.svc:9092")
    );
    assert!(properties.contains("offsets.topic.replication.factor=3"));
    // etcd: the three members know each other.
    let etcd = container(&deps.stateful_sets[0].spec.as_ref().expect("spec").template);
    let args = etcd.args.as_ref().expect("args").join(" ");
    assert!(args.contains("--initial-cluster=quick-etcd-0=http://quick-etcd-0.quick-etcd.vectors.svc:2380,quick-etcd-1="), "{args}");
    assert_eq!(
        etcd.command.as_deref(),
        Some(&["/usr/local/bin/etcd".to_owned()][..])
    );
    // Headless Services for the quorum members, a plain one for MinIO.
    let headless: Vec<Option<&str>> = deps
        .services
        .iter()
        .map(|s| s.spec.as_ref().and_then(|s| s.cluster_ip.as_deref()))
        .collect();
    assert_eq!(headless, [Some("None"), Some("None"), None]);
    // The bucket Job uses MinIO's own client, with the credentials.
    let job = &deps.jobs[0];
    assert_eq!(job.metadata.name.as_deref(), Some("quick-minio-bucket"));
    let k = &pod_spec(&job.spec.as_ref().expect("spec").template).containers[0];
    assert!(k.command.as_ref().expect("command")[2].contains("mc mb --ignore-existing"));
    assert_eq!(
        env(k, "BUCKET").and_then(|e| e.value.as_deref()),
        Some("vectors")
    );
    // Quorum members get a budget, the single MinIO none.
    let budgets: Vec<&str> = deps
        .disruption_budgets
        .iter()
        .filter_map(|b| b.metadata.name.as_deref())
        .collect();
    assert_eq!(budgets, ["quick-etcd", "quick-kafka"]);
    assert_eq!(deps.unwanted_budgets, ["quick-minio"]);
}

#[test]
fn a_service_monitor_selects_every_role() {
    let (_, ch) = built(IN_CLUSTER);
    let m =
        serde_json::to_value(ch.service_monitor.as_ref().expect("a ServiceMonitor")).expect("json");
    assert_eq!(m["kind"], "ServiceMonitor");
    assert_eq!(m["metadata"]["labels"]["release"], "prom");
    assert_eq!(m["spec"]["endpoints"][0]["port"], "http");
    assert_eq!(m["spec"]["endpoints"][0]["path"], "/metrics");
    assert_eq!(
        m["spec"]["selector"]["matchExpressions"][0]["values"],
        serde_json::json!(["rootcoord", "datacoord", "proxy", "datanode", "querynode"])
    );
    // Every role's Service carries the labels it selects, and a port named http.
    for s in &ch.services {
        let labels = s.metadata.labels.as_ref().expect("labels");
        for (k, v) in m["spec"]["selector"]["matchLabels"]
            .as_object()
            .expect("labels")
        {
            assert_eq!(labels.get(k).map(String::as_str), v.as_str(), "{k}");
        }
        assert!(
            s.spec
                .as_ref()
                .and_then(|s| s.ports.as_ref())
                .expect("ports")
                .iter()
                .any(|p| p.name.as_deref() == Some("http"))
        );
    }
    let (_, plain) = built(MINIMAL);
    assert!(plain.service_monitor.is_none());
}

#[test]
fn a_new_version_changes_no_pod_template_but_through_the_image() {
    let mc = fixture(MINIMAL);
    let owner = mc.controller_owner_ref(&()).expect("owner");
    let c = validate(&mc).expect("valid");
    let mut newer = c.clone();
    newer.version = "9.9.9".into();
    newer.image = "milvus-like/node:9.9.9".into();
    // The upgrade holds every role on the old image: no pod template changes.
    let held = build(&newer, &owner, &Rollout::settled(&c));
    let before = build(&c, &owner, &Rollout::settled(&c));
    assert_eq!(
        held.data_nodes.spec.as_ref().map(|s| &s.template),
        before.data_nodes.spec.as_ref().map(|s| &s.template)
    );
    assert_eq!(
        held.deployments[2].spec.as_ref().map(|s| &s.template),
        before.deployments[2].spec.as_ref().map(|s| &s.template)
    );
}

#[test]
fn a_rollout_gives_each_role_its_own_image() {
    let mc = fixture(MINIMAL);
    let c = validate(&mc).expect("valid");
    let owner = mc.controller_owner_ref(&()).expect("owner");
    let mut rollout = Rollout::settled(&c);
    rollout
        .images
        .insert(Role::DataNode, "milvus-like/node:old".into());
    rollout
        .images
        .insert(Role::Proxy, "milvus-like/node:old".into());
    let ch = build(&c, &owner, &rollout);
    let image = |t: &k8s_openapi::api::core::v1::PodTemplateSpec| {
        container(t).image.clone().unwrap_or_default()
    };
    assert_eq!(
        image(&ch.deployments[0].spec.as_ref().expect("spec").template),
        c.image
    );
    assert_eq!(
        image(&ch.deployments[2].spec.as_ref().expect("spec").template),
        "milvus-like/node:old"
    );
    assert_eq!(
        image(&ch.data_nodes.spec.as_ref().expect("spec").template),
        "milvus-like/node:old"
    );
}

fn with(yaml: &str, edit: impl FnOnce(&mut MilvusCluster)) -> MilvusCluster {
    let mut mc = fixture(yaml);
    edit(&mut mc);
    mc
}

fn quantities(
    pairs: &[(&str, &str)],
) -> std::collections::BTreeMap<String, k8s_openapi::apimachinery::pkg::api::resource::Quantity> {
    pairs
        .iter()
        .map(|(k, v)| {
            (
                (*k).to_owned(),
                k8s_openapi::apimachinery::pkg::api::resource::Quantity((*v).to_owned()),
            )
        })
        .collect()
}

#[test]
fn the_data_node_memory_budget_must_fit_its_limit() {
    // Far beyond any limit.
    let mc = with(MINIMAL, |mc| {
        mc.spec.data_node.memory_mib = Some(99_999_999_999);
        mc.spec.data_node.component.resources =
            Some(k8s_openapi::api::core::v1::ResourceRequirements {
                limits: Some(quantities(&[("memory", "2Gi")])),
                ..Default::default()
            });
    });
    let Err(InvalidSpec(errors)) = validate(&mc) else {
        panic!("a budget beyond the limit validated");
    };
    assert!(
        errors[0].contains("spec.dataNode.memoryMiB 99999999999 needs"),
        "{errors:?}"
    );
    // No budget given: what fits the limit.
    let mc = with(MINIMAL, |mc| {
        mc.spec.data_node.component.resources =
            Some(k8s_openapi::api::core::v1::ResourceRequirements {
                limits: Some(quantities(&[("memory", "1Gi")])),
                ..Default::default()
            });
    });
    let c = validate(&mc).expect("valid");
    assert_eq!(c.memory_mib, 768);
    assert!(crate::validate::data_node_memory_need_mib(c.memory_mib) <= 1024);
}

#[test]
fn limits_below_requests_and_garbage_quantities_are_refused_with_the_field() {
    let mc = with(MINIMAL, |mc| {
        mc.spec.data_node.component.resources =
            Some(k8s_openapi::api::core::v1::ResourceRequirements {
                requests: Some(quantities(&[("memory", "2Gi"), ("cpu", "lots")])),
                limits: Some(quantities(&[("memory", "1Gi")])),
                ..Default::default()
            });
    });
    let Err(InvalidSpec(errors)) = validate(&mc) else {
        panic!("limits below requests validated");
    };
    let all = errors.join("\n");
    assert!(
        all.contains("spec.dataNode.resources.limits.memory 1Gi is below requests.memory 2Gi"),
        "{all}"
    );
    assert!(
        all.contains("spec.dataNode.resources.requests.cpu \"lots\" is not a quantity"),
        "{all}"
    );
}

#[test]
fn etcd_needs_an_odd_number_of_members() {
    let mc = with(IN_CLUSTER, |mc| {
        if let Some(e) = mc.spec.dependencies.etcd.in_cluster.as_mut() {
            e.replicas = Some(2);
        }
    });
    let Err(InvalidSpec(errors)) = validate(&mc) else {
        panic!("two etcd members validated");
    };
    assert!(errors[0].contains("odd number of members"), "{errors:?}");
}

#[test]
fn the_charts_examples_are_valid_clusters() {
    for (file, yaml) in [
        (
            "quickstart.yaml",
            include_str!("../../../charts/milvus-like-operator/examples/quickstart.yaml"),
        ),
        (
            "milvuscluster.yaml",
            include_str!("../../../charts/milvus-like-operator/examples/milvuscluster.yaml"),
        ),
    ] {
        let mut mc = fixture(yaml);
        mc.metadata.namespace = Some("default".into());
        mc.metadata.uid = Some("0f0e0d0c-0b0a-0908-0706-050403020100".into());
        let c = validate(&mc).unwrap_or_else(|e| panic!("{file}: {e}"));
        let owner = mc.controller_owner_ref(&()).expect("owner");
        let ch = build(&c, &owner, &Rollout::settled(&c));
        if file == "quickstart.yaml" {
            assert_eq!(
                ch.dependencies.stateful_sets.len(),
                3,
                "{file} runs its dependencies"
            );
        }
    }
}

/// No pod of ours is BestEffort: a resource the spec names neither a request
/// nor a limit of gets the role's default request; what the spec names stays.
#[test]
fn every_component_requests_cpu_and_memory_and_the_spec_wins() {
    let requests = |c: &Container| {
        c.resources
            .as_ref()
            .and_then(|r| r.requests.clone())
            .unwrap_or_default()
    };
    let quantity =
        |list: &BTreeMap<String, Quantity>, key: &str| list.get(key).map(|q| q.0.clone());
    let (_, minimal) = built(MINIMAL);
    let pods = DEPLOYMENT_ROLES
        .iter()
        .zip(&minimal.deployments)
        .map(|(role, d)| (*role, &d.spec.as_ref().expect("spec").template))
        .chain([(
            Role::DataNode,
            &minimal.data_nodes.spec.as_ref().expect("spec").template,
        )]);
    for (role, template) in pods {
        let asked = requests(container(template));
        let (cpu, memory) = crate::validate::default_requests(role);
        assert_eq!(quantity(&asked, "cpu").as_deref(), Some(cpu), "{role:?}");
        assert_eq!(
            quantity(&asked, "memory").as_deref(),
            Some(memory),
            "{role:?}"
        );
    }

    let (_, full) = built(FULL);
    // rootCoord names both requests: they stay.
    let root = requests(container(
        &full.deployments[0].spec.as_ref().expect("spec").template,
    ));
    assert_eq!(quantity(&root, "cpu").as_deref(), Some("500m"));
    assert_eq!(quantity(&root, "memory").as_deref(), Some("256Mi"));
    // The data nodes name only a memory limit: Kubernetes requests that, and
    // only the CPU request is added.
    let dn = container(&full.data_nodes.spec.as_ref().expect("spec").template);
    let resources = dn.resources.as_ref().expect("resources");
    assert_eq!(
        resources
            .limits
            .as_ref()
            .and_then(|l| quantity(l, "memory"))
            .as_deref(),
        Some("3Gi")
    );
    let dn_requests = requests(dn);
    assert_eq!(
        quantity(&dn_requests, "cpu").as_deref(),
        Some(crate::validate::default_requests(Role::DataNode).0)
    );
    assert_eq!(quantity(&dn_requests, "memory"), None);
}
