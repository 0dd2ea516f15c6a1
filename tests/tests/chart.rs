//! The Helm chart: `helm lint --strict` is clean, `helm template` renders the
//! operator with least-privilege RBAC (no wildcard) and a locked-down pod, and
//! `values.schema.json` refuses bad values. helm comes from
//! `tests/scripts/k8s.sh install` (built from its Go module, cached).

use std::path::PathBuf;
use std::process::Command;

use milvus_like_tests::workspace_root;

fn helm() -> PathBuf {
    let out = Command::new(workspace_root().join("tests/scripts/k8s.sh"))
        .arg("install")
        .output()
        .expect("run tests/scripts/k8s.sh install");
    assert!(
        out.status.success(),
        "k8s.sh install failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()).join("helm")
}

fn chart() -> PathBuf {
    workspace_root().join("charts/milvus-like-operator")
}

fn run(helm: &PathBuf, args: &[&str]) -> (bool, String) {
    let out = Command::new(helm).args(args).output().expect("run helm");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// The rendered documents, as JSON values.
fn template(helm: &PathBuf, extra: &[&str]) -> Vec<serde_json::Value> {
    let chart = chart();
    let mut args = vec![
        "template",
        "mlo",
        chart.to_str().expect("utf-8 path"),
        "--namespace",
        "ops",
        "--kube-version",
        "1.37.2",
    ];
    args.extend_from_slice(extra);
    let (ok, out) = run(helm, &args);
    assert!(ok, "helm template failed:\n{out}");
    // Every document must parse: one that does not would escape every check below.
    out.split("\n---")
        .map(|doc| {
            serde_yaml::from_str::<serde_json::Value>(doc).unwrap_or_else(|e| {
                panic!("helm rendered a document that is not YAML ({e}):\n{doc}")
            })
        })
        .filter(|v| v.is_object())
        .collect()
}

fn kinds(docs: &[serde_json::Value]) -> Vec<String> {
    docs.iter()
        .map(|d| d["kind"].as_str().unwrap_or_default().to_owned())
        .collect()
}

#[test]
fn the_chart_lints_clean() {
    let helm = helm();
    let chart = chart();
    let chart = chart.to_str().expect("utf-8 path");
    for extra in [&[][..], &["--set", "watchNamespace=vectors"][..]] {
        let mut args = vec!["lint", "--strict", chart];
        args.extend_from_slice(extra);
        let (ok, out) = run(&helm, &args);
        assert!(ok, "helm lint {extra:?}:\n{out}");
        assert!(out.contains("0 chart(s) failed"), "{out}");
    }
}

/// The operator may create Secrets (an in-cluster MinIO's generated
/// credentials) but never read, list, watch or change one.
fn assert_secrets_create_only(docs: &[serde_json::Value]) {
    let mut rules = 0;
    for role in docs
        .iter()
        .filter(|d| d["kind"] == "ClusterRole" || d["kind"] == "Role")
    {
        for rule in role["rules"].as_array().expect("rules") {
            if rule["resources"].to_string().contains("\"secrets\"") {
                rules += 1;
                assert_eq!(
                    rule["verbs"],
                    serde_json::json!(["create"]),
                    "Secrets: create only, never read: {rule}"
                );
                assert_eq!(rule["resources"], serde_json::json!(["secrets"]), "{rule}");
            }
        }
    }
    assert_eq!(rules, 1, "one rule on Secrets");
}

#[test]
fn rbac_is_least_privilege_and_the_pod_is_locked_down() {
    let helm = helm();
    let docs = template(&helm, &[]);
    let k = kinds(&docs);
    for kind in [
        "ServiceAccount",
        "ClusterRole",
        "ClusterRoleBinding",
        "Role",
        "RoleBinding",
        "Deployment",
        "Service",
    ] {
        assert!(k.iter().any(|x| x == kind), "no {kind} in {k:?}");
    }
    for role in docs
        .iter()
        .filter(|d| d["kind"] == "ClusterRole" || d["kind"] == "Role")
    {
        for rule in role["rules"].as_array().expect("rules") {
            for field in ["apiGroups", "resources", "verbs"] {
                let values = rule[field].as_array().expect(field);
                assert!(
                    values.iter().all(|v| v != "*"),
                    "a wildcard in {} {}: {rule}",
                    role["kind"],
                    role["metadata"]["name"]
                );
            }
            let verbs = rule["verbs"].as_array().expect("verbs");
            assert!(
                !(rule["resources"].to_string().contains("pods")
                    && verbs.iter().any(|v| v == "delete" || v == "create")),
                "the operator never writes pods: {rule}"
            );
        }
    }
    assert_secrets_create_only(&docs);
    let deployment = docs
        .iter()
        .find(|d| d["kind"] == "Deployment")
        .expect("deployment");
    let pod = &deployment["spec"]["template"]["spec"];
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    let container = &pod["containers"][0];
    assert_eq!(container["securityContext"]["readOnlyRootFilesystem"], true);
    assert_eq!(
        container["securityContext"]["allowPrivilegeEscalation"],
        false
    );
    assert_eq!(
        container["securityContext"]["capabilities"]["drop"][0],
        "ALL"
    );
    assert!(container["resources"]["limits"]["memory"].is_string());
    assert_eq!(container["image"], "milvus-like/operator:0.1.0");
    assert_eq!(pod["serviceAccountName"], "mlo-milvus-like-operator");
    // Each release elects its leader on its own Lease.
    assert!(
        container["args"]
            .as_array()
            .expect("args")
            .iter()
            .any(|a| a == "--lease-name=mlo-milvus-like-operator"),
        "{}",
        container["args"]
    );
}

#[test]
fn one_watched_namespace_gets_a_role_instead_of_a_cluster_role() {
    let helm = helm();
    let docs = template(&helm, &["--set", "watchNamespace=vectors"]);
    let k = kinds(&docs);
    assert!(!k.iter().any(|x| x == "ClusterRole"), "{k:?}");
    let watched = docs
        .iter()
        .find(|d| d["kind"] == "Role" && d["metadata"]["namespace"] == "vectors")
        .expect("a Role in the watched namespace");
    assert!(watched.to_string().contains("milvusclusters"));
    assert_secrets_create_only(&docs);
    let deployment = docs
        .iter()
        .find(|d| d["kind"] == "Deployment")
        .expect("deployment");
    assert!(
        deployment.to_string().contains("WATCH_NAMESPACE"),
        "the operator is told which namespace"
    );
}

#[test]
fn the_values_schema_refuses_bad_values() {
    let helm = helm();
    let chart = chart();
    let chart = chart.to_str().expect("utf-8 path");
    for (set, complaint) in [
        ("replicaCount=-1", "replicaCount"),
        ("logFormat=xml", "logFormat"),
        ("image.pullPolicy=Sometimes", "pullPolicy"),
        ("unknownKey=1", "unknownKey"),
    ] {
        let (ok, out) = run(&helm, &["template", "mlo", chart, "--set", set]);
        assert!(!ok, "helm accepted {set}");
        assert!(out.contains(complaint), "{set}: {out}");
    }
}

#[test]
fn monitoring_is_off_until_asked_for() {
    let helm = helm();
    let docs = template(&helm, &[]);
    let k = kinds(&docs);
    assert!(!k.iter().any(|x| x == "ServiceMonitor"), "{k:?}");
    let docs = template(
        &helm,
        &[
            "--set",
            "metrics.serviceMonitor.enabled=true",
            "--set",
            "metrics.serviceMonitor.labels.release=prom",
            "--set",
            "grafanaDashboard.enabled=true",
        ],
    );
    let monitor = docs
        .iter()
        .find(|d| d["kind"] == "ServiceMonitor")
        .expect("a ServiceMonitor");
    assert_eq!(monitor["metadata"]["labels"]["release"], "prom");
    assert_eq!(monitor["spec"]["endpoints"][0]["port"], "http");
    // It selects the metrics Service.
    let service = docs
        .iter()
        .find(|d| d["kind"] == "Service")
        .expect("the metrics Service");
    for (k, v) in monitor["spec"]["selector"]["matchLabels"]
        .as_object()
        .expect("selector")
    {
        assert_eq!(&service["metadata"]["labels"][k], v, "{k}");
    }
    let dashboard = docs
        .iter()
        .find(|d| d["kind"] == "ConfigMap")
        .expect("the dashboard ConfigMap");
    assert_eq!(dashboard["metadata"]["labels"]["grafana_dashboard"], "1");
    let json: serde_json::Value = serde_json::from_str(
        dashboard["data"]["milvus-like.json"]
            .as_str()
            .expect("dashboard JSON"),
    )
    .expect("the dashboard parses");
    let exprs = json.to_string();
    for metric in [
        "rootcoord_tso_timestamps_total",
        "datanode_consumer_lag",
        "datanode_flush_seconds_bucket",
        "datacoord_node_channels",
        "proxy_rows_inserted_total",
        "proxy_rejected_requests_total",
    ] {
        assert!(
            exprs.contains(metric),
            "the dashboard does not show {metric}"
        );
    }
}
