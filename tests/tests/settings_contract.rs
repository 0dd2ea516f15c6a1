//! The settings contract between the operator and the node: every environment
//! variable the operator gives a component is a setting that component's
//! subcommand reads, its value parses as that setting, and the ports the operator
//! exposes and probes are the ones the node listens on by default.
//!
//! The operator's children are built from its YAML fixtures (`operator/fixtures/`)
//! exactly as the controller builds them; the node's side is its own command line
//! (`milvus_like_node::settings::args::Cli`), the same tree that generates
//! docs/configuration.md.

use std::collections::BTreeMap;

use clap::{CommandFactory, Parser};
use k8s_openapi::api::core::v1::{Container, PodTemplateSpec};
use kube::Resource;
use milvus_like_node::settings::Settings;
use milvus_like_node::settings::args::Cli;
use milvus_like_operator::build::{Children, Role, Rollout, build};
use milvus_like_operator::crd::MilvusCluster;
use milvus_like_operator::validate::validate;

const FIXTURES: [(&str, &str); 3] = [
    (
        "minimal.yaml",
        include_str!("../../operator/fixtures/minimal.yaml"),
    ),
    (
        "full.yaml",
        include_str!("../../operator/fixtures/full.yaml"),
    ),
    (
        "incluster.yaml",
        include_str!("../../operator/fixtures/incluster.yaml"),
    ),
];

/// Variables Kubernetes fills in for the operator's own `$(...)` references; not settings.
const POD_FIELDS: [&str; 2] = ["POD_NAME", "POD_IP"];

fn children(yaml: &str) -> Children {
    let mc: MilvusCluster = serde_yaml::from_str(yaml).expect("fixture parses");
    let c = validate(&mc).expect("fixture is valid");
    let owner = mc.controller_owner_ref(&()).expect("owner reference");
    build(&c, &owner, &Rollout::settled(&c))
}

/// Each component's pod template, by role.
fn templates(children: &Children) -> Vec<(Role, &PodTemplateSpec)> {
    let mut out: Vec<(Role, &PodTemplateSpec)> = children
        .deployments
        .iter()
        .map(|d| {
            let spec = d.spec.as_ref().expect("deployment spec");
            let role = Role::ALL
                .into_iter()
                .find(|r| {
                    d.metadata
                        .name
                        .as_deref()
                        .is_some_and(|n| n.ends_with(&format!("-{}", r.subcommand())))
                })
                .expect("a deployment per role");
            (role, &spec.template)
        })
        .collect();
    let sts = children.data_nodes.spec.as_ref().expect("statefulset spec");
    out.push((Role::DataNode, &sts.template));
    out
}

fn container(t: &PodTemplateSpec) -> &Container {
    &t.spec.as_ref().expect("pod spec").containers[0]
}

/// What the container's process sees: the ConfigMap's variables, then the
/// container's own (a later one wins, as in Kubernetes), `$(...)` references
/// resolved the way the kubelet would.
fn environment(children: &Children, c: &Container) -> BTreeMap<String, String> {
    let mut env = BTreeMap::new();
    let from_config = c
        .env_from
        .iter()
        .flatten()
        .filter_map(|e| e.config_map_ref.as_ref())
        .any(|r| Some(&r.name) == children.config.metadata.name.as_ref());
    assert!(from_config, "the container reads the cluster's ConfigMap");
    env.extend(children.config.data.clone().unwrap_or_default());
    for var in c.env.iter().flatten() {
        let value = match &var.value {
            Some(v) => v
                .replace("$(POD_IP)", "10.1.2.3")
                .replace("$(POD_NAME)", "demo-datanode-0"),
            // From a Secret or a pod field: any string stands in.
            None => "from-a-secret".to_owned(),
        };
        env.insert(var.name.clone(), value);
    }
    for field in POD_FIELDS {
        env.remove(field);
    }
    env
}

#[test]
fn every_variable_the_operator_sets_is_a_setting_of_the_role_it_runs() {
    let command = Cli::command();
    let settings = Settings::of(&command);
    for (fixture, yaml) in FIXTURES {
        let children = children(yaml);
        for (role, template) in templates(&children) {
            let container = container(template);
            let subcommand = role.subcommand();
            assert_eq!(
                container.args.as_deref(),
                Some(&[subcommand.to_owned()][..]),
                "{fixture}: {subcommand} runs its subcommand"
            );
            let env = environment(&children, container);
            assert!(env.len() >= 10, "{fixture} {subcommand}: {env:?}");
            let mut argv = vec!["milvus-like".to_owned(), subcommand.to_owned()];
            for (name, value) in &env {
                let setting = settings.get(name).unwrap_or_else(|| {
                    panic!(
                        "{fixture}: the operator sets {name} for {subcommand}, which is no setting of the node"
                    )
                });
                let used = setting
                    .uses
                    .iter()
                    .find(|u| u.subcommand == subcommand || u.subcommand.is_empty());
                let Some(used) = used else {
                    // Read by other roles only: the ConfigMap is shared by all of them.
                    let others: Vec<&str> =
                        setting.uses.iter().map(|u| u.subcommand.as_str()).collect();
                    assert!(
                        Role::ALL.iter().any(|r| others.contains(&r.subcommand())),
                        "{fixture}: {name} is read by {others:?}, by no server role"
                    );
                    continue;
                };
                let flag = used.flag.as_deref().expect("every setting has a flag");
                argv.push(format!("--{flag}={value}"));
            }
            // The values as the node parses them (clap reads a variable with the
            // flag's parser): durations, numbers, addresses, choices.
            let parsed = Cli::try_parse_from(&argv);
            assert!(
                parsed.is_ok(),
                "{fixture}: {argv:?}: {}",
                parsed.err().map(|e| e.to_string()).unwrap_or_default()
            );
        }
    }
}

#[test]
fn the_operator_exposes_and_probes_the_ports_the_node_listens_on() {
    let command = Cli::command();
    let settings = Settings::of(&command);
    let default_port = |env: &str, subcommand: &str| -> i32 {
        let setting = settings.get(env).expect("a listen setting");
        let default = setting
            .uses
            .iter()
            .find(|u| u.subcommand == subcommand)
            .and_then(|u| u.default.clone())
            .unwrap_or_else(|| panic!("{env} has a default for {subcommand}"));
        default
            .rsplit_once(':')
            .and_then(|(_, p)| p.parse().ok())
            .unwrap_or_else(|| panic!("{env} default {default:?} ends in a port"))
    };
    let children = children(FIXTURES[0].1);
    for (role, template) in templates(&children) {
        let subcommand = role.subcommand();
        let vars = role.listen_env();
        let c = container(template);
        let ports: BTreeMap<String, i32> = c
            .ports
            .iter()
            .flatten()
            .map(|p| (p.name.clone().unwrap_or_default(), p.container_port))
            .collect();
        assert_eq!(
            ports.get("grpc"),
            Some(&default_port(vars.listen, subcommand)),
            "{subcommand}"
        );
        let http = default_port(vars.http_listen, subcommand);
        assert_eq!(ports.get("http"), Some(&http), "{subcommand}");
        for probe in [&c.readiness_probe, &c.liveness_probe] {
            let port = probe
                .as_ref()
                .and_then(|p| p.http_get.as_ref())
                .map(|g| g.port.clone());
            assert_eq!(
                port,
                Some(k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(http)),
                "{subcommand}: probes on the HTTP port"
            );
        }
    }
}
